//! Prometheus remote-write 1.0 receiver: `POST /api/v1/write`.
//!
//! The body is a snappy **block** (not framed) compressed protobuf
//! `WriteRequest`. A request is decoded and validated completely before
//! anything is written; a request with one bad series is refused whole with
//! 400, like Prometheus's own receiver. A valid request is appended to the
//! write-ahead log and answered `204` only after the log is fsynced.
//!
//! | answer | when |
//! |---|---|
//! | 204 | stored durably (also for metadata-only and empty requests) |
//! | 400 | bad snappy, bad protobuf, empty/duplicate label name, missing `__name__` |
//! | 413 | body above `max_body_bytes`, or decompressed size above `max_decompressed_bytes` |
//! | 415 | `Content-Encoding` not `snappy`, or `Content-Type` not `application/x-protobuf` |
//! | 503 + `Retry-After` | ingest queue full (Prometheus retries 5xx without loss) |
//!
//! Prometheus staleness markers (a NaN with the exact bit pattern
//! `0x7ff0000000000002`) are dropped and counted, since scalecast's aggregates
//! have no use for them; every other value, NaN included, is stored.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;
use serde::{Deserialize, Serialize};

use super::prompb::{self, WriteRequest};
use crate::api::{AppState, api_error};
use crate::error::Error;
use crate::schema::{Label, METRIC_NAME_LABEL, Sample, SamplesBuilder, series_id};
use crate::store::IngestRecord;

/// Bit pattern of Prometheus's staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Configuration of a `remote_write` source.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// HTTP path served on the API listener.
    #[serde(default = "default_path")]
    pub path: String,
    /// Largest accepted (compressed) body, bytes. Larger bodies get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest accepted decompressed body, bytes (guards against snappy bombs).
    #[serde(default = "default_max_decompressed_bytes")]
    pub max_decompressed_bytes: usize,
    /// Seconds sent in `Retry-After` when the ingest queue is full.
    #[serde(default = "default_retry_after_secs")]
    pub retry_after_secs: u64,
}

fn default_path() -> String {
    "/api/v1/write".into()
}
fn default_max_body_bytes() -> usize {
    10 * 1024 * 1024
}
fn default_max_decompressed_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_retry_after_secs() -> u64 {
    2
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        Self {
            path: default_path(),
            max_body_bytes: default_max_body_bytes(),
            max_decompressed_bytes: default_max_decompressed_bytes(),
            retry_after_secs: default_retry_after_secs(),
        }
    }
}

impl RemoteWriteConfig {
    /// Checks the values; errors name the field.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        if !self.path.starts_with('/') {
            return Err(("path".into(), "must start with '/'".into()));
        }
        if self.max_body_bytes == 0 {
            return Err(("max_body_bytes".into(), "must be greater than 0".into()));
        }
        if self.max_decompressed_bytes < self.max_body_bytes {
            return Err((
                "max_decompressed_bytes".into(),
                "must be at least max_body_bytes".into(),
            ));
        }
        Ok(())
    }
}

/// A decoded, validated write request.
#[derive(Debug)]
pub struct Decoded {
    /// The samples as one batch of the samples schema.
    pub batch: RecordBatch,
    /// Number of series in the request.
    pub series: usize,
    /// Number of metadata entries (accepted and ignored).
    pub metadata: usize,
    /// Staleness markers dropped.
    pub stale_dropped: usize,
}

/// Why a request was refused; used as the `reason` label of
/// `scalecast_samples_rejected_total` and in the 400 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Body is not valid snappy block data.
    Snappy,
    /// Decompressed body is not a valid protobuf `WriteRequest`.
    Protobuf,
    /// A label set is invalid.
    Labels,
    /// Too large.
    TooLarge,
}

impl Reject {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Snappy => "snappy",
            Reject::Protobuf => "protobuf",
            Reject::Labels => "labels",
            Reject::TooLarge => "too_large",
        }
    }
}

/// Decompresses a snappy block body, refusing bodies that claim more than `max`
/// bytes once decompressed.
pub fn decompress(body: &[u8], max: usize) -> std::result::Result<Vec<u8>, (Reject, String)> {
    let len =
        snap::raw::decompress_len(body).map_err(|e| (Reject::Snappy, format!("snappy: {e}")))?;
    if len > max {
        return Err((
            Reject::TooLarge,
            format!("decompressed body of {len} bytes is above the limit of {max} bytes"),
        ));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| (Reject::Snappy, format!("snappy: {e}")))
}

/// Validates one series' labels and returns (name, sorted labels without
/// `__name__` and without empty values).
pub fn normalize_labels(
    labels: &[prompb::Label],
) -> std::result::Result<(String, Vec<Label>), String> {
    let mut name: Option<&str> = None;
    let mut out: Vec<Label> = Vec::with_capacity(labels.len().saturating_sub(1));
    for l in labels {
        if l.name.is_empty() {
            return Err(format!("empty label name (value {:?})", l.value));
        }
        if l.name == METRIC_NAME_LABEL {
            if name.is_some() {
                return Err("duplicate label name \"__name__\"".into());
            }
            name = Some(&l.value);
            continue;
        }
        // An empty value means the label is absent (Prometheus semantics),
        // but the name still counts for duplicate detection.
        out.push((l.name.clone(), l.value.clone()));
    }
    let name = match name {
        Some(n) if !n.is_empty() => n.to_string(),
        Some(_) => return Err("empty metric name (\"__name__\" has an empty value)".into()),
        None => {
            let shown: Vec<String> = labels
                .iter()
                .map(|l| format!("{}={:?}", l.name, l.value))
                .collect();
            return Err(format!(
                "series without \"__name__\" label: {{{}}}",
                shown.join(", ")
            ));
        }
    };
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for w in out.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(format!(
                "duplicate label name {:?} in series {name}",
                w[0].0
            ));
        }
    }
    out.retain(|(_, v)| !v.is_empty());
    Ok((name, out))
}

/// Decodes and validates a decompressed `WriteRequest`.
pub fn decode_request(raw: &[u8]) -> std::result::Result<Decoded, (Reject, String)> {
    let req =
        WriteRequest::decode(raw).map_err(|e| (Reject::Protobuf, format!("protobuf: {e}")))?;
    let total: usize = req.timeseries.iter().map(|t| t.samples.len()).sum();
    let mut b = SamplesBuilder::with_capacity(total);
    let mut stale = 0usize;
    for ts in &req.timeseries {
        let (name, labels) = normalize_labels(&ts.labels).map_err(|e| (Reject::Labels, e))?;
        let id = series_id(&name, &labels);
        let before = b.len();
        b.append_series(
            &name,
            &labels,
            id,
            ts.samples
                .iter()
                .filter(|s| s.value.to_bits() != STALE_NAN_BITS)
                .map(|s| (s.timestamp, s.value)),
        );
        stale += ts.samples.len() - (b.len() - before);
    }
    Ok(Decoded {
        batch: b.finish(),
        series: req.timeseries.len(),
        metadata: req.metadata.len(),
        stale_dropped: stale,
    })
}

/// Decompresses, decodes and validates a remote-write body.
pub fn decode_body(
    body: &[u8],
    max_decompressed: usize,
) -> std::result::Result<Decoded, (Reject, String)> {
    let raw = decompress(body, max_decompressed)?;
    decode_request(&raw)
}

/// Encodes samples as a snappy-compressed `WriteRequest` (the WAL record format
/// shared by every source, and what load generators send).
pub fn encode_samples(samples: &[Sample]) -> Vec<u8> {
    let mut series: Vec<prompb::TimeSeries> = Vec::new();
    let mut index: std::collections::HashMap<(&str, &[Label]), usize> = Default::default();
    for s in samples {
        let key = (s.name.as_str(), s.labels.as_slice());
        let i = *index.entry(key).or_insert_with(|| {
            let mut labels = Vec::with_capacity(s.labels.len() + 1);
            labels.push(prompb::Label {
                name: METRIC_NAME_LABEL.into(),
                value: s.name.clone(),
            });
            labels.extend(s.labels.iter().map(|(k, v)| prompb::Label {
                name: k.clone(),
                value: v.clone(),
            }));
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            series.push(prompb::TimeSeries {
                labels,
                samples: Vec::new(),
            });
            series.len() - 1
        });
        series[i].samples.push(prompb::Sample {
            value: s.value,
            timestamp: s.ts_ms,
        });
    }
    let req = WriteRequest {
        timeseries: series,
        metadata: Vec::new(),
    };
    compress(&req.encode_to_vec())
}

/// Snappy block compression.
pub fn compress(raw: &[u8]) -> Vec<u8> {
    // Compression into a Vec only fails for inputs above ~4 GiB, which no
    // caller produces (bodies are bounded by `max_body_bytes`).
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .unwrap_or_default()
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, want: &str) -> Option<bool> {
    headers.get(name).map(|v| {
        v.to_str()
            .map(|s| {
                s.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case(want))
            })
            .unwrap_or(false)
    })
}

/// The axum handler for `POST /api/v1/write`.
pub async fn handle(
    state: Arc<AppState>,
    cfg: Arc<RemoteWriteConfig>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let m = &state.metrics;
    let store = match state.store() {
        Ok(s) => s,
        Err(r) => return r,
    };
    if header_is(&headers, header::CONTENT_ENCODING, "snappy") != Some(true) {
        m.reject("content_encoding", 0);
        return api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Encoding must be \"snappy\" (remote write 1.0 sends snappy block-compressed protobuf)",
        );
    }
    if header_is(&headers, header::CONTENT_TYPE, "application/x-protobuf") == Some(false) {
        m.reject("content_type", 0);
        return api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be \"application/x-protobuf\"",
        );
    }
    let too_large = || {
        m.reject(Reject::TooLarge.as_str(), 0);
        api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "body is above the limit of {} bytes (max_body_bytes)",
                cfg.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > cfg.max_body_bytes) {
        return too_large();
    }
    let body: Bytes = match axum::body::to_bytes(body, cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            // The only failures are the length limit and a broken connection.
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                return too_large();
            }
            m.reject("read", 0);
            return api_error(StatusCode::BAD_REQUEST, &format!("cannot read body: {e}"));
        }
    };
    let max = cfg.max_decompressed_bytes;
    let body_for_decode = body.clone();
    let decoded =
        match tokio::task::spawn_blocking(move || decode_body(&body_for_decode, max)).await {
            Ok(Ok(d)) => d,
            Ok(Err((reason, msg))) => {
                m.reject(reason.as_str(), 0);
                let code = if reason == Reject::TooLarge {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                return api_error(code, &msg);
            }
            Err(e) => {
                return api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("decoder task failed: {e}"),
                );
            }
        };
    m.stale_dropped(decoded.stale_dropped);
    let samples = decoded.batch.num_rows();
    if samples == 0 {
        // Metadata-only or empty request: nothing to make durable.
        m.request_ok(0);
        return StatusCode::NO_CONTENT.into_response();
    }
    let rec = IngestRecord {
        wal_payload: body,
        batch: decoded.batch,
    };
    match store.ingest(rec).await {
        Ok(()) => {
            m.request_ok(samples);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(Error::Overloaded(msg)) => {
            m.reject("overloaded", samples);
            let mut r = api_error(StatusCode::SERVICE_UNAVAILABLE, &msg);
            if let Ok(v) = header::HeaderValue::from_str(&cfg.retry_after_secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Err(e) => {
            m.reject("internal", samples);
            api_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::batch_to_samples;

    fn lbl(n: &str, v: &str) -> prompb::Label {
        prompb::Label {
            name: n.into(),
            value: v.into(),
        }
    }

    type TestSeries = (Vec<prompb::Label>, Vec<(i64, f64)>);

    fn req(series: Vec<TestSeries>) -> Vec<u8> {
        let r = WriteRequest {
            timeseries: series
                .into_iter()
                .map(|(labels, s)| prompb::TimeSeries {
                    labels,
                    samples: s
                        .into_iter()
                        .map(|(t, v)| prompb::Sample {
                            value: v,
                            timestamp: t,
                        })
                        .collect(),
                })
                .collect(),
            metadata: vec![],
        };
        compress(&r.encode_to_vec())
    }

    #[test]
    fn decodes_unsorted_labels_and_drops_empty_values() {
        let body = req(vec![(
            vec![
                lbl("job", "node"),
                lbl("__name__", "up"),
                lbl("empty", ""),
                lbl("instance", "a"),
            ],
            vec![(1000, 1.0), (2000, 0.0)],
        )]);
        let d = decode_body(&body, 1 << 20).expect("valid");
        let s = batch_to_samples(&d.batch);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "up");
        assert_eq!(
            s[0].labels,
            vec![
                ("instance".into(), "a".into()),
                ("job".into(), "node".into())
            ]
        );
        assert_eq!((s[1].ts_ms, s[1].value), (2000, 0.0));
    }

    #[test]
    fn rejects_bad_label_sets() {
        let cases = [
            (vec![lbl("", "x"), lbl("__name__", "m")], "empty label name"),
            (
                vec![lbl("a", "1"), lbl("a", "2"), lbl("__name__", "m")],
                "duplicate label name \"a\"",
            ),
            (
                vec![lbl("a", "1"), lbl("a", ""), lbl("__name__", "m")],
                "duplicate label name \"a\"",
            ),
            (vec![lbl("a", "1")], "without \"__name__\""),
            (
                vec![lbl("__name__", "m"), lbl("__name__", "n")],
                "duplicate label name \"__name__\"",
            ),
        ];
        for (labels, want) in cases {
            let body = req(vec![(labels, vec![(1, 1.0)])]);
            let (r, msg) = decode_body(&body, 1 << 20).expect_err("must be refused");
            assert_eq!(r, Reject::Labels);
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        }
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert_eq!(
            decode_body(b"garbage!", 1 << 20).unwrap_err().0,
            Reject::Snappy
        );
        let good = req(vec![(vec![lbl("__name__", "m")], vec![(1, 1.0)])]);
        assert_eq!(
            decode_body(&good[..good.len() - 2], 1 << 20).unwrap_err().0,
            Reject::Snappy
        );
        let bad_proto = compress(&[0xff, 0xff, 0xff, 0x07, 0x01]);
        assert_eq!(
            decode_body(&bad_proto, 1 << 20).unwrap_err().0,
            Reject::Protobuf
        );
        let big = compress(&vec![0u8; 4096]);
        assert_eq!(decode_body(&big, 1024).unwrap_err().0, Reject::TooLarge);
    }

    #[test]
    fn empty_and_metadata_only_requests_are_valid() {
        let d = decode_body(&compress(&[]), 1024).expect("empty is valid");
        assert_eq!(d.batch.num_rows(), 0);
        let r = WriteRequest {
            timeseries: vec![],
            metadata: vec![prompb::MetricMetadata {
                r#type: 1,
                metric_family_name: "m".into(),
                help: "h".into(),
                unit: String::new(),
            }],
        };
        let d = decode_body(&compress(&r.encode_to_vec()), 1024).expect("metadata only");
        assert_eq!((d.batch.num_rows(), d.metadata), (0, 1));
    }

    #[test]
    fn drops_only_exact_staleness_markers() {
        let body = req(vec![(
            vec![lbl("__name__", "m")],
            vec![(1, f64::from_bits(STALE_NAN_BITS)), (2, f64::NAN), (3, 3.0)],
        )]);
        let d = decode_body(&body, 1 << 20).expect("valid");
        assert_eq!(d.stale_dropped, 1);
        assert_eq!(d.batch.num_rows(), 2);
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let samples = vec![
            Sample {
                name: "a".into(),
                labels: vec![("x".into(), "1".into())],
                ts_ms: 5,
                value: 1.5,
            },
            Sample {
                name: "b".into(),
                labels: vec![],
                ts_ms: 6,
                value: -2.0,
            },
            Sample {
                name: "a".into(),
                labels: vec![("x".into(), "1".into())],
                ts_ms: 7,
                value: 2.5,
            },
        ];
        let d = decode_body(&encode_samples(&samples), 1 << 20).expect("valid");
        let mut got = batch_to_samples(&d.batch);
        got.sort_by_key(|s| s.ts_ms);
        assert_eq!(got, samples);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bodies(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_body(&body, 1 << 16);
            let _ = decode_request(&body);
        }
    }
}
