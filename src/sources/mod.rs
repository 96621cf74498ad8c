//! Sources: everything that brings samples in.
//!
//! Every source turns what it receives into the samples schema
//! ([`crate::schema`]) and hands an [`crate::store::IngestRecord`] to the
//! store, which acknowledges only once the record is durable in the WAL.

pub mod cloudwatch;
pub mod kafka;
pub mod prompb;
pub mod remote_write;
pub mod replay;
pub mod scrape;
