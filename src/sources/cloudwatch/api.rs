//! The two CloudWatch calls the poller needs, behind a small trait so the
//! polling logic (paging, retries, alignment, de-duplication) is tested
//! without AWS, and [`SdkApi`], the implementation over `aws-sdk-cloudwatch`.
//!
//! `aws-sdk-cloudwatch` is pinned at `=1.99.0`, the last release that speaks
//! the awsQuery protocol; 1.100.0 and later speak Smithy RPC v2 CBOR, which
//! the moto mock server used by the tests (and some CloudWatch-compatible
//! endpoints) do not implement.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_cloudwatch::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, DimensionFilter, Metric, MetricDataQuery, MetricStat, RecentlyActive, ScanBy,
};

/// A CloudWatch metric: namespace, name and dimensions (sorted by name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId {
    /// Namespace, e.g. `AWS/EC2`.
    pub namespace: String,
    /// Metric name, e.g. `CPUUtilization`.
    pub metric_name: String,
    /// Dimensions `(name, value)`, sorted by name.
    pub dimensions: Vec<(String, String)>,
}

/// One `MetricDataQuery` of type `MetricStat`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatRequest {
    /// Query id, unique in its request (`[a-z][a-zA-Z0-9_]*`).
    pub id: String,
    /// The metric.
    pub metric: MetricId,
    /// Statistic (`Average`, `p99`, ...).
    pub stat: String,
    /// Period, seconds.
    pub period_secs: u32,
}

/// A `GetMetricData` request (one page).
#[derive(Debug, Clone, PartialEq)]
pub struct DataRequest {
    /// Queries (at most 500).
    pub queries: Vec<StatRequest>,
    /// Inclusive start, ms since the epoch.
    pub start_ms: i64,
    /// Exclusive end, ms since the epoch.
    pub end_ms: i64,
    /// Paging token from the previous page.
    pub next_token: Option<String>,
}

/// One query's datapoints in a page.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataResult {
    /// The query id.
    pub id: String,
    /// Datapoint timestamps (period starts), ms since the epoch.
    pub timestamps_ms: Vec<i64>,
    /// Values, same length as `timestamps_ms`.
    pub values: Vec<f64>,
}

/// One page of `GetMetricData`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataPage {
    /// Results by query id.
    pub results: Vec<DataResult>,
    /// Token for the next page, if any.
    pub next_token: Option<String>,
}

/// A `ListMetrics` request (one page).
#[derive(Debug, Clone, PartialEq)]
pub struct ListRequest {
    /// Namespace.
    pub namespace: String,
    /// Metric name.
    pub metric_name: String,
    /// Dimension filters: name with a value (exact) or without (any value).
    pub dimensions: Vec<(String, Option<String>)>,
    /// Only metrics with data in the last 3 hours.
    pub recently_active: bool,
    /// Paging token.
    pub next_token: Option<String>,
}

/// One page of `ListMetrics`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListPage {
    /// Metrics found.
    pub metrics: Vec<MetricId>,
    /// Token for the next page, if any.
    pub next_token: Option<String>,
}

/// How a failed call should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Throttled by the service: retry with backoff.
    Throttled,
    /// Network trouble, timeout, 5xx: retry with backoff.
    Transient,
    /// Anything else (bad request, auth): do not retry.
    Fatal,
}

/// A failed call.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// Retry class.
    pub kind: ErrorKind,
    /// Description (error code and message when the service sent one).
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

/// The CloudWatch calls used by the poller and the backfill.
pub trait CloudwatchApi: Send + Sync {
    /// One page of `GetMetricData`.
    fn get_metric_data(
        &self,
        req: &DataRequest,
    ) -> impl Future<Output = Result<DataPage, ApiError>> + Send;
    /// One page of `ListMetrics`.
    fn list_metrics(
        &self,
        req: &ListRequest,
    ) -> impl Future<Output = Result<ListPage, ApiError>> + Send;
}

/// Where and how to connect.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectOptions {
    /// Region; the standard chain (`AWS_REGION`, profile) when None.
    pub region: Option<String>,
    /// Endpoint override (moto, LocalStack, compatible services).
    pub endpoint_url: Option<String>,
    /// Profile name in the shared config/credentials files.
    pub profile: Option<String>,
    /// A credentials file used instead of `~/.aws/credentials`.
    pub credentials_file: Option<PathBuf>,
    /// Per-attempt timeout of a call.
    pub attempt_timeout: Option<Duration>,
}

/// `CloudwatchApi` over the AWS SDK.
#[derive(Debug, Clone)]
pub struct SdkApi {
    client: aws_sdk_cloudwatch::Client,
    region: String,
}

impl SdkApi {
    /// Loads credentials and region with the standard AWS chain (environment,
    /// shared files, SSO, web identity, ECS/EC2 metadata) plus the overrides in
    /// `o`. SDK-level retries are off: the poller retries itself, so that
    /// throttling is counted. Fails when no region can be found.
    pub async fn connect(o: &ConnectOptions) -> Result<SdkApi, String> {
        let sdk = crate::aws::load(
            crate::aws::SdkOverrides {
                region: o.region.as_deref(),
                endpoint_url: o.endpoint_url.as_deref(),
                profile: o.profile.as_deref(),
                credentials_file: o.credentials_file.as_deref(),
            },
            aws_config::retry::RetryConfig::disabled(),
            o.attempt_timeout.unwrap_or(Duration::from_secs(30)),
        )
        .await;
        let Some(region) = sdk.region().map(|r| r.to_string()) else {
            return Err("no AWS region: set `region` (or AWS_REGION / a profile region)".into());
        };
        Ok(SdkApi {
            client: aws_sdk_cloudwatch::Client::new(&sdk),
            region,
        })
    }

    /// The region in use.
    pub fn region(&self) -> &str {
        &self.region
    }
}

fn to_datetime(ms: i64) -> DateTime {
    DateTime::from_millis(ms)
}

fn classify<E>(e: &SdkError<E, aws_sdk_cloudwatch::config::http::HttpResponse>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    const THROTTLE_CODES: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
    ];
    let message = aws_sdk_cloudwatch::error::DisplayErrorContext(e).to_string();
    let kind = match e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("");
            if THROTTLE_CODES.contains(&code) {
                ErrorKind::Throttled
            } else if code == "InternalServiceError"
                || code == "InternalFailure"
                || code == "ServiceUnavailable"
            {
                ErrorKind::Transient
            } else {
                ErrorKind::Fatal
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ErrorKind::Transient
        }
        _ => ErrorKind::Fatal,
    };
    // HTTP 429 and 5xx without a recognisable code.
    let kind = match (kind, e.raw_response().map(|r| r.status().as_u16())) {
        (ErrorKind::Fatal, Some(429)) => ErrorKind::Throttled,
        (ErrorKind::Fatal, Some(s)) if s >= 500 => ErrorKind::Transient,
        (k, _) => k,
    };
    ApiError { kind, message }
}

impl CloudwatchApi for SdkApi {
    async fn get_metric_data(&self, req: &DataRequest) -> Result<DataPage, ApiError> {
        let mut call = self
            .client
            .get_metric_data()
            .start_time(to_datetime(req.start_ms))
            .end_time(to_datetime(req.end_ms))
            .scan_by(ScanBy::TimestampAscending);
        for q in &req.queries {
            let mut metric = Metric::builder()
                .namespace(&q.metric.namespace)
                .metric_name(&q.metric.metric_name);
            for (k, v) in &q.metric.dimensions {
                metric = metric.dimensions(Dimension::builder().name(k).value(v).build());
            }
            call = call.metric_data_queries(
                MetricDataQuery::builder()
                    .id(&q.id)
                    .return_data(true)
                    .metric_stat(
                        MetricStat::builder()
                            .metric(metric.build())
                            .period(q.period_secs as i32)
                            .stat(&q.stat)
                            .build(),
                    )
                    .build(),
            );
        }
        if let Some(t) = &req.next_token {
            call = call.next_token(t);
        }
        let out = call.send().await.map_err(|e| classify(&e))?;
        let results = out
            .metric_data_results()
            .iter()
            .map(|r| {
                let ts: Vec<i64> = r
                    .timestamps()
                    .iter()
                    .map(|t| t.to_millis().unwrap_or(i64::MIN))
                    .collect();
                let mut timestamps_ms = Vec::with_capacity(ts.len());
                let mut values = Vec::with_capacity(ts.len());
                for (t, v) in ts.into_iter().zip(r.values().iter().copied()) {
                    if t != i64::MIN {
                        timestamps_ms.push(t);
                        values.push(v);
                    }
                }
                DataResult {
                    id: r.id().unwrap_or_default().to_string(),
                    timestamps_ms,
                    values,
                }
            })
            .collect();
        for m in out.messages() {
            tracing::debug!(code = ?m.code(), message = ?m.value(), "GetMetricData message");
        }
        Ok(DataPage {
            results,
            next_token: out.next_token().map(str::to_string),
        })
    }

    async fn list_metrics(&self, req: &ListRequest) -> Result<ListPage, ApiError> {
        let mut call = self
            .client
            .list_metrics()
            .namespace(&req.namespace)
            .metric_name(&req.metric_name);
        for (k, v) in &req.dimensions {
            let mut f = DimensionFilter::builder().name(k);
            if let Some(v) = v {
                f = f.value(v);
            }
            call = call.dimensions(f.build());
        }
        if req.recently_active {
            call = call.recently_active(RecentlyActive::Pt3H);
        }
        if let Some(t) = &req.next_token {
            call = call.next_token(t);
        }
        let out = call.send().await.map_err(|e| classify(&e))?;
        let metrics = out
            .metrics()
            .iter()
            .filter_map(|m| {
                let mut dimensions: Vec<(String, String)> = m
                    .dimensions()
                    .iter()
                    .filter_map(|d| Some((d.name()?.to_string(), d.value()?.to_string())))
                    .collect();
                dimensions.sort();
                Some(MetricId {
                    namespace: m.namespace()?.to_string(),
                    metric_name: m.metric_name()?.to_string(),
                    dimensions,
                })
            })
            .collect();
        Ok(ListPage {
            metrics,
            next_token: out.next_token().map(str::to_string),
        })
    }
}
