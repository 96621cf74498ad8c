//! [`SnapshotTable`]: a DataFusion table over Parquet files plus in-memory rows.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::memory::MemTable;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;

use super::TableSource;
use crate::error::{Error, Result};

/// A table whose rows are a fixed set of Parquet files and batches.
#[derive(Debug)]
pub struct SnapshotTable {
    schema: SchemaRef,
    files: Option<ListingTable>,
    memory: MemTable,
}

impl SnapshotTable {
    /// Builds the table; files must exist and have `source.schema`.
    pub async fn try_new(source: TableSource) -> Result<Self> {
        let files = if source.files.is_empty() {
            None
        } else {
            let mut urls = Vec::with_capacity(source.files.len());
            for f in &source.files {
                let s = f
                    .to_str()
                    .ok_or_else(|| Error::Storage(format!("non-UTF-8 path {}", f.display())))?;
                urls.push(ListingTableUrl::parse(s).map_err(Error::DataFusion)?);
            }
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(source.schema.clone());
            Some(ListingTable::try_new(config).map_err(Error::DataFusion)?)
        };
        let partitions = if source.batches.is_empty() {
            vec![vec![]]
        } else {
            vec![source.batches]
        };
        let memory =
            MemTable::try_new(source.schema.clone(), partitions).map_err(Error::DataFusion)?;
        Ok(Self {
            schema: source.schema,
            files,
            memory,
        })
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Parquet pruning uses the filters; DataFusion re-applies them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut plans = Vec::with_capacity(2);
        if let Some(files) = &self.files {
            plans.push(files.scan(state, projection, filters, limit).await?);
        }
        plans.push(self.memory.scan(state, projection, filters, limit).await?);
        UnionExec::try_new(plans)
    }
}
