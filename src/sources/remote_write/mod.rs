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

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;
use serde::{Deserialize, Serialize};

use super::prompb::{self, WriteRequest};
use crate::api::{AppState, api_error};
use crate::error::Error;
use crate::schema::{Label, METRIC_NAME_LABEL, Sample};
use crate::store::IngestRecord;

mod decode;
pub use decode::{
    Decoded, Reject, STALE_NAN_BITS, decode_body, decode_request, decompress, normalize_labels,
};

/// Bodies that decompress to at most this many bytes (~4,000 samples, well
/// under a millisecond of CPU) are decoded on the async worker; larger ones
/// on the blocking pool. Prometheus sends 500–2,000 samples per request.
const INLINE_DECODE_MAX_BYTES: usize = 512 * 1024;

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
    // A body whose snappy header is invalid fails at once, inline too.
    let large = snap::raw::decompress_len(&body).is_ok_and(|n| n > INLINE_DECODE_MAX_BYTES);
    let decoded = if !large {
        decode_body(&body, max)
    } else {
        let body_for_decode = body.clone();
        match tokio::task::spawn_blocking(move || decode_body(&body_for_decode, max)).await {
            Ok(d) => d,
            Err(e) => {
                return api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("decoder task failed: {e}"),
                );
            }
        }
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err((reason, msg)) => {
            m.reject(reason.as_str(), 0);
            let code = if reason == Reject::TooLarge {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return api_error(code, &msg);
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
