//! The polling logic: resolving queries (ListMetrics discovery), period
//! alignment, paged and retried `GetMetricData`, de-duplication of re-polled
//! periods, and turning datapoints into samples.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::api::{
    ApiError, CloudwatchApi, DataRequest, ErrorKind, ListRequest, MetricId, StatRequest,
};
use super::{CloudwatchMetrics, QueryConfig, SourceLabel};
use crate::schema::{Label, Sample, series_id};

/// A resolved query: one metric and one statistic, with the sample name and
/// labels its datapoints get.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedQuery {
    /// The metric.
    pub metric: MetricId,
    /// Statistic.
    pub stat: String,
    /// Period, seconds.
    pub period_secs: u32,
    /// Sample name.
    pub name: String,
    /// Sample labels (sorted).
    pub labels: Vec<Label>,
}

/// `CPUUtilization` → `cpuutilization`, `AWS/EC2` → `aws_ec2`, `p99.9` →
/// `p99_9`: lower case, anything outside `[a-z0-9_]` becomes `_`.
pub fn sanitize_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

/// `InstanceId` → `instance_id`, `DBInstanceIdentifier` →
/// `db_instance_identifier`, `AutoScalingGroupName` →
/// `auto_scaling_group_name`.
pub fn snake_label(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

/// Sample name of `stat` of a query: `<name or namespace_metric>_<stat>`.
pub fn sample_name(q: &QueryConfig, stat: &str) -> String {
    let base = match &q.name {
        Some(n) => n.clone(),
        None => sanitize_name(&format!("{}_{}", q.namespace, q.metric_name)),
    };
    format!("{base}_{}", sanitize_name(stat).trim_start_matches('_'))
}

/// Builds the resolved queries of `q` for the metrics it covers.
pub fn resolve(q: &QueryConfig, metrics: &[MetricId], region: &str) -> Vec<ResolvedQuery> {
    let mut out = Vec::new();
    for m in metrics {
        for stat in &q.statistics {
            let mut labels: BTreeMap<String, String> = q.labels.clone();
            for (k, v) in &m.dimensions {
                if !v.is_empty() {
                    labels.insert(snake_label(k), v.clone());
                }
            }
            if !region.is_empty() {
                labels
                    .entry("region".into())
                    .or_insert_with(|| region.into());
            }
            out.push(ResolvedQuery {
                metric: m.clone(),
                stat: stat.clone(),
                period_secs: q.period_secs,
                name: sample_name(q, stat),
                labels: labels.into_iter().collect(),
            });
        }
    }
    out
}

/// The fixed metric of a query without discovery.
pub fn static_metric(q: &QueryConfig) -> MetricId {
    MetricId {
        namespace: q.namespace.clone(),
        metric_name: q.metric_name.clone(),
        dimensions: q
            .dimensions
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Retries and their accounting.
#[derive(Clone)]
pub struct Caller {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff.
    pub base: Duration,
    /// Longest backoff.
    pub cap: Duration,
    /// Self-metrics.
    pub metrics: CloudwatchMetrics,
    /// Source id for the metrics' label.
    pub source: String,
}

impl Caller {
    /// Runs `f` with exponential backoff (full jitter) on throttling and
    /// transient errors. Counts calls, throttles and errors per operation.
    pub async fn call<T, F, Fut>(&self, op: &str, mut f: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let l = super::OpLabel {
            source: self.source.clone(),
            operation: op.into(),
        };
        let mut attempt = 0u32;
        loop {
            self.metrics.api_calls.get_or_create(&l).inc();
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if e.kind == ErrorKind::Throttled {
                        self.metrics.throttles.get_or_create(&l).inc();
                    } else {
                        self.metrics.api_errors.get_or_create(&l).inc();
                    }
                    if e.kind == ErrorKind::Fatal || attempt >= self.max_retries {
                        return Err(e);
                    }
                    let exp = self
                        .base
                        .saturating_mul(2u32.saturating_pow(attempt))
                        .min(self.cap);
                    // Full jitter in [exp/2, exp).
                    let ms = exp.as_millis().max(2) as u64;
                    let wait = Duration::from_millis(rand::random_range(ms / 2..ms));
                    tracing::debug!(op, error = %e, ?wait, "CloudWatch call failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// Lists the metrics a discovery query covers: ListMetrics (all pages)
/// filtered to metrics whose dimension names are exactly the query's fixed
/// dimensions plus its `discover_dimensions`.
pub async fn discover<A: CloudwatchApi>(
    api: &A,
    caller: &Caller,
    q: &QueryConfig,
) -> Result<Vec<MetricId>, ApiError> {
    let mut filters: Vec<(String, Option<String>)> = q
        .dimensions
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    filters.extend(q.discover_dimensions.iter().map(|k| (k.clone(), None)));
    let mut want: Vec<&str> = q
        .dimensions
        .keys()
        .map(String::as_str)
        .chain(q.discover_dimensions.iter().map(String::as_str))
        .collect();
    want.sort_unstable();
    let mut req = ListRequest {
        namespace: q.namespace.clone(),
        metric_name: q.metric_name.clone(),
        dimensions: filters,
        recently_active: q.recently_active_only,
        next_token: None,
    };
    let mut out: Vec<MetricId> = Vec::new();
    let mut pages = 0;
    loop {
        let page = caller
            .call("ListMetrics", || api.list_metrics(&req))
            .await?;
        for m in page.metrics {
            let names: Vec<&str> = m.dimensions.iter().map(|(k, _)| k.as_str()).collect();
            let exact = names == want
                && q.dimensions
                    .iter()
                    .all(|(k, v)| m.dimensions.iter().any(|(a, b)| a == k && b == v));
            if exact && m.namespace == q.namespace && m.metric_name == q.metric_name {
                out.push(m);
            }
        }
        pages += 1;
        match page.next_token {
            Some(t) if !t.is_empty() && pages < 10_000 => req.next_token = Some(t),
            _ => break,
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Fetches `[start_ms, end_ms)` for `queries` (≤ 500, same period), following
/// `NextToken` pages. Returns `(query index, ts_ms, value)`.
pub async fn fetch_window<A: CloudwatchApi>(
    api: &A,
    caller: &Caller,
    queries: &[&ResolvedQuery],
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<(usize, i64, f64)>, ApiError> {
    let mut req = DataRequest {
        queries: queries
            .iter()
            .enumerate()
            .map(|(i, q)| StatRequest {
                id: format!("q{i}"),
                metric: q.metric.clone(),
                stat: q.stat.clone(),
                period_secs: q.period_secs,
            })
            .collect(),
        start_ms,
        end_ms,
        next_token: None,
    };
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let page = caller
            .call("GetMetricData", || api.get_metric_data(&req))
            .await?;
        for r in page.results {
            let Some(i) = r.id.strip_prefix('q').and_then(|n| n.parse::<usize>().ok()) else {
                continue;
            };
            if i >= queries.len() {
                continue;
            }
            for (t, v) in r.timestamps_ms.iter().zip(&r.values) {
                if *t >= start_ms && *t < end_ms {
                    out.push((i, *t, *v));
                }
            }
        }
        pages += 1;
        match page.next_token {
            Some(t) if !t.is_empty() && pages < 100_000 => req.next_token = Some(t),
            _ => break,
        }
    }
    Ok(out)
}

/// The window a poll fetches for `period_secs` at `now_ms`: the last
/// `periods` complete periods, aligned to period boundaries (UTC epoch
/// multiples, which is how CloudWatch buckets data).
pub fn window(now_ms: i64, period_secs: u32, periods: u32) -> (i64, i64) {
    let p = i64::from(period_secs.max(1)) * 1000;
    let end = now_ms.div_euclid(p) * p;
    (end - i64::from(periods.max(1)) * p, end)
}

/// What [`Dedup::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// First time this (series, timestamp) is seen: store it.
    New,
    /// Seen with another value (late data changed the aggregate): store the
    /// correction.
    Changed,
    /// Seen with the same value: skip.
    Same,
}

/// Remembers the datapoints of the re-polled window so a datapoint is
/// stored once (and again only when its value changes).
#[derive(Debug, Default)]
pub struct Dedup {
    seen: HashMap<u64, BTreeMap<i64, u64>>,
}

impl Dedup {
    /// Checks and records one datapoint.
    pub fn admit(&mut self, series: u64, ts_ms: i64, value: f64) -> Admit {
        let m = self.seen.entry(series).or_default();
        match m.insert(ts_ms, value.to_bits()) {
            None => Admit::New,
            Some(old) if old == value.to_bits() => Admit::Same,
            Some(_) => Admit::Changed,
        }
    }

    /// Forgets datapoints older than `before_ms` (outside any future window).
    pub fn prune(&mut self, before_ms: i64) {
        self.seen.retain(|_, m| {
            *m = m.split_off(&before_ms);
            !m.is_empty()
        });
    }

    /// Datapoints remembered.
    pub fn len(&self) -> usize {
        self.seen.values().map(BTreeMap::len).sum()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Counts of one poll.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollStats {
    /// Datapoints returned by CloudWatch.
    pub datapoints: usize,
    /// New datapoints stored.
    pub new: usize,
    /// Corrections stored (value changed on re-poll).
    pub changed: usize,
    /// Re-polled datapoints skipped as duplicates.
    pub duplicates: usize,
    /// `GetMetricData` requests that failed after retries.
    pub failed_requests: usize,
}

/// Polls every query once at `now_ms`: per period, the last `repoll`
/// complete periods, in requests of at most `max_queries` queries. Returns
/// the samples to store (deduplicated) and counts.
pub async fn poll_once<A: CloudwatchApi>(
    api: &A,
    caller: &Caller,
    queries: &[ResolvedQuery],
    now_ms: i64,
    repoll: u32,
    max_queries: usize,
    dedup: &mut Dedup,
) -> (Vec<Sample>, PollStats) {
    let mut by_period: BTreeMap<u32, Vec<&ResolvedQuery>> = BTreeMap::new();
    for q in queries {
        by_period.entry(q.period_secs).or_default().push(q);
    }
    let mut samples = Vec::new();
    let mut st = PollStats::default();
    let mut oldest = i64::MAX;
    for (period, qs) in by_period {
        let (start, end) = window(now_ms, period, repoll);
        oldest = oldest.min(start);
        for chunk in qs.chunks(max_queries.clamp(1, 500)) {
            match fetch_window(api, caller, chunk, start, end).await {
                Ok(points) => {
                    st.datapoints += points.len();
                    for (i, ts, v) in points {
                        let q = chunk[i];
                        let id = series_id(&q.name, &q.labels);
                        match dedup.admit(id, ts, v) {
                            Admit::Same => {
                                st.duplicates += 1;
                                continue;
                            }
                            Admit::New => st.new += 1,
                            Admit::Changed => st.changed += 1,
                        }
                        samples.push(Sample {
                            name: q.name.clone(),
                            labels: q.labels.clone(),
                            ts_ms: ts,
                            value: v,
                        });
                    }
                }
                Err(e) => {
                    st.failed_requests += 1;
                    tracing::warn!(source = %caller.source, error = %e, queries = chunk.len(), "GetMetricData failed");
                }
            }
        }
    }
    if oldest != i64::MAX {
        dedup.prune(oldest);
    }
    let l = SourceLabel {
        source: caller.source.clone(),
    };
    caller
        .metrics
        .duplicates
        .get_or_create(&l)
        .inc_by(st.duplicates as u64);
    caller
        .metrics
        .corrections
        .get_or_create(&l)
        .inc_by(st.changed as u64);
    (samples, st)
}
