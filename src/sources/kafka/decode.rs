//! Payload formats of the Kafka source.
//!
//! Every message is decoded on its own into a validated samples batch plus the
//! uncompressed protobuf `WriteRequest` bytes that describe the same samples.
//! Protobuf messages concatenate (repeated fields append), so the source joins
//! the raw bytes of every message of a batch and snappy-compresses them once
//! into a single WAL record.
//!
//! | format | payload |
//! |---|---|
//! | `remote_write` | a Prometheus remote-write `WriteRequest`, snappy block-compressed (as Prometheus sends it) or raw protobuf |
//! | `json` | JSON lines: one sample per line, or one series object with `samples` per line |
//! | `auto` (default) | `json` when the first non-blank byte is `{`, else `remote_write` |
//!
//! JSON, one sample per line:
//! `{"name":"cpu","labels":{"host":"a"},"ts_ms":1700000000000,"value":0.5}`
//!
//! JSON, one series per line:
//! `{"name":"cpu","labels":{"host":"a"},"samples":[[1700000000000,0.5],{"ts_ms":1700000015000,"value":0.7}]}`
//!
//! `name` may instead be given as the `__name__` label. `value` is a JSON number
//! or one of the strings `"NaN"`, `"+Inf"`, `"Inf"`, `"-Inf"` or a number in a
//! string (Prometheus's JSON style). Label rules are those of remote write: no
//! empty or duplicate names, empty values mean "absent". A message with one bad
//! line is refused whole (it goes to the dead-letter topic).

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::schema::METRIC_NAME_LABEL;
use crate::sources::prompb;
use crate::sources::remote_write::{Reject, decode_request};

/// How message payloads are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// JSON when the payload starts with `{`, remote write otherwise.
    #[default]
    Auto,
    /// Prometheus remote-write protobuf, snappy-compressed or raw.
    RemoteWrite,
    /// JSON lines (see the module docs).
    Json,
}

/// A decoded message.
#[derive(Debug)]
pub struct DecodedPayload {
    /// Uncompressed protobuf `WriteRequest` with the same samples.
    pub raw: Vec<u8>,
    /// The samples (samples schema), validated.
    pub batch: RecordBatch,
    /// Prometheus staleness markers dropped.
    pub stale_dropped: usize,
}

/// Why a message could not be decoded: a short kind (for metrics and the
/// dead-letter header) and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// `snappy`, `protobuf`, `labels`, `too_large`, `json`.
    pub kind: &'static str,
    /// Human-readable reason.
    pub message: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

fn reject((r, msg): (Reject, String)) -> DecodeError {
    DecodeError {
        kind: r.as_str(),
        message: msg,
    }
}

/// Decodes one message payload. `max_decompressed` bounds the size of a
/// snappy payload once decompressed and of a raw or JSON payload.
pub fn decode_payload(
    payload: &[u8],
    format: PayloadFormat,
    max_decompressed: usize,
) -> Result<DecodedPayload, DecodeError> {
    let json = match format {
        PayloadFormat::Json => true,
        PayloadFormat::RemoteWrite => false,
        PayloadFormat::Auto => payload
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'{'),
    };
    if json {
        if payload.len() > max_decompressed {
            return Err(DecodeError {
                kind: Reject::TooLarge.as_str(),
                message: format!(
                    "payload of {} bytes is above max_decompressed_bytes ({max_decompressed})",
                    payload.len()
                ),
            });
        }
        let raw = json_to_write_request(payload)?.encode_to_vec();
        return finish(raw);
    }
    decode_remote_write(payload, max_decompressed)
}

fn finish(raw: Vec<u8>) -> Result<DecodedPayload, DecodeError> {
    let d = decode_request(&raw).map_err(reject)?;
    Ok(DecodedPayload {
        raw,
        batch: d.batch,
        stale_dropped: d.stale_dropped,
    })
}

/// Snappy first (what Prometheus and most shippers send); raw protobuf when
/// the payload is not valid snappy.
fn decode_remote_write(payload: &[u8], max: usize) -> Result<DecodedPayload, DecodeError> {
    match crate::sources::remote_write::decompress(payload, max) {
        Ok(raw) => finish(raw),
        Err((Reject::TooLarge, msg)) => Err(reject((Reject::TooLarge, msg))),
        Err((_, snappy_err)) => {
            if payload.len() > max {
                return Err(DecodeError {
                    kind: Reject::TooLarge.as_str(),
                    message: format!(
                        "payload of {} bytes is above max_decompressed_bytes ({max})",
                        payload.len()
                    ),
                });
            }
            match finish(payload.to_vec()) {
                Ok(d) => Ok(d),
                Err(e) if e.kind == Reject::Protobuf.as_str() => Err(DecodeError {
                    kind: Reject::Protobuf.as_str(),
                    message: format!(
                        "neither snappy-compressed nor raw remote-write protobuf ({snappy_err}; raw {})",
                        e.message
                    ),
                }),
                Err(e) => Err(e),
            }
        }
    }
}

/// A sample value in JSON: a number or a Prometheus-style string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonValue {
    Num(f64),
    Str(String),
}

impl JsonValue {
    fn to_f64(&self) -> Result<f64, String> {
        match self {
            JsonValue::Num(v) => Ok(*v),
            JsonValue::Str(s) => match s.as_str() {
                "NaN" => Ok(f64::NAN),
                "+Inf" | "Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                other => other
                    .parse::<f64>()
                    .map_err(|_| format!("value {other:?} is not a number")),
            },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonPoint {
    Pair(i64, JsonValue),
    Object { ts_ms: i64, value: JsonValue },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    ts_ms: Option<i64>,
    #[serde(default)]
    value: Option<JsonValue>,
    #[serde(default)]
    samples: Option<Vec<JsonPoint>>,
}

fn json_to_write_request(payload: &[u8]) -> Result<prompb::WriteRequest, DecodeError> {
    let err = |line: usize, message: String| DecodeError {
        kind: "json",
        message: format!("line {line}: {message}"),
    };
    let text = std::str::from_utf8(payload).map_err(|e| DecodeError {
        kind: "json",
        message: format!("payload is not UTF-8: {e}"),
    })?;
    let mut req = prompb::WriteRequest::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let l: JsonLine = serde_json::from_str(line).map_err(|e| err(n, e.to_string()))?;
        let mut labels: Vec<prompb::Label> = Vec::with_capacity(l.labels.len() + 1);
        if let Some(name) = &l.name {
            if l.labels.contains_key(METRIC_NAME_LABEL) {
                return Err(err(
                    n,
                    "give the metric name as \"name\" or as the \"__name__\" label, not both"
                        .into(),
                ));
            }
            labels.push(prompb::Label {
                name: METRIC_NAME_LABEL.into(),
                value: name.clone(),
            });
        }
        labels.extend(
            l.labels
                .into_iter()
                .map(|(name, value)| prompb::Label { name, value }),
        );
        let samples = match (l.samples, l.ts_ms, l.value) {
            (Some(points), None, None) => {
                let mut out = Vec::with_capacity(points.len());
                for p in points {
                    let (ts, v) = match p {
                        JsonPoint::Pair(ts, v)
                        | JsonPoint::Object {
                            ts_ms: ts,
                            value: v,
                        } => (ts, v),
                    };
                    out.push(prompb::Sample {
                        value: v.to_f64().map_err(|e| err(n, e))?,
                        timestamp: ts,
                    });
                }
                out
            }
            (None, Some(ts), Some(v)) => vec![prompb::Sample {
                value: v.to_f64().map_err(|e| err(n, e))?,
                timestamp: ts,
            }],
            (None, None, _) => {
                return Err(err(
                    n,
                    "a line needs \"ts_ms\" and \"value\", or \"samples\"".into(),
                ));
            }
            (None, _, None) => return Err(err(n, "\"value\" is missing".into())),
            (Some(_), _, _) => {
                return Err(err(
                    n,
                    "\"samples\" cannot be combined with \"ts_ms\"/\"value\"".into(),
                ));
            }
        };
        req.timeseries.push(prompb::TimeSeries { labels, samples });
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Sample, batch_to_samples};
    use crate::sources::remote_write::{compress, encode_samples};

    fn s(name: &str, labels: &[(&str, &str)], ts: i64, v: f64) -> Sample {
        Sample::new(name, labels, ts, v)
    }

    fn samples(d: &DecodedPayload) -> Vec<Sample> {
        batch_to_samples(&d.batch)
    }

    #[test]
    fn remote_write_snappy_and_raw_decode_to_the_same_samples() {
        let input = vec![
            s("up", &[("job", "a")], 1000, 1.0),
            s("up", &[("job", "a")], 2000, 0.0),
            s("cpu", &[], 1000, 0.25),
        ];
        let snappy = encode_samples(&input);
        let raw = crate::sources::remote_write::decompress(&snappy, 1 << 20).expect("snappy");
        for (payload, fmt) in [
            (&snappy, PayloadFormat::Auto),
            (&snappy, PayloadFormat::RemoteWrite),
            (&raw, PayloadFormat::Auto),
            (&raw, PayloadFormat::RemoteWrite),
        ] {
            let d = decode_payload(payload, fmt, 1 << 20).expect("valid");
            let mut got = samples(&d);
            got.sort_by(|a, b| (&a.name, a.ts_ms).cmp(&(&b.name, b.ts_ms)));
            assert_eq!(got.len(), 3);
            assert_eq!(got[0], input[2]);
            assert_eq!(got[1], input[0]);
            assert_eq!(got[2], input[1]);
            assert_eq!(d.raw, raw);
        }
    }

    #[test]
    fn json_sample_lines_and_series_objects() {
        let payload = br#"{"name":"cpu","labels":{"host":"a","empty":""},"ts_ms":1000,"value":0.5}

{"labels":{"__name__":"mem","host":"b"},"samples":[[1000,1],{"ts_ms":2000,"value":"NaN"},[3000,"+Inf"],[4000,"2.5"]]}
"#;
        let d = decode_payload(payload, PayloadFormat::Auto, 1 << 20).expect("valid");
        let got = samples(&d);
        assert_eq!(got.len(), 5);
        assert_eq!(got[0], s("cpu", &[("host", "a")], 1000, 0.5));
        assert_eq!(got[1], s("mem", &[("host", "b")], 1000, 1.0));
        assert!(got[2].value.is_nan());
        assert_eq!(got[3].value, f64::INFINITY);
        assert_eq!(got[4].value, 2.5);
        // The raw bytes describe the same samples (they become the WAL record).
        let again = decode_request(&d.raw).expect("raw is a valid WriteRequest");
        assert_eq!(again.batch.num_rows(), 5);
    }

    #[test]
    fn concatenated_raw_payloads_are_one_request() {
        let a = decode_payload(
            br#"{"name":"a","ts_ms":1,"value":1}"#,
            PayloadFormat::Json,
            1 << 20,
        )
        .expect("a");
        let b = decode_payload(
            &encode_samples(&[s("b", &[("k", "v")], 2, 2.0)]),
            PayloadFormat::Auto,
            1 << 20,
        )
        .expect("b");
        let mut joined = a.raw.clone();
        joined.extend_from_slice(&b.raw);
        let body = compress(&joined);
        let d = crate::sources::remote_write::decode_body(&body, 1 << 20).expect("joined");
        let got = batch_to_samples(&d.batch);
        assert_eq!(
            got,
            vec![s("a", &[], 1, 1.0), s("b", &[("k", "v")], 2, 2.0)]
        );
    }

    #[test]
    fn poison_payloads_are_refused_with_a_kind() {
        let cases: Vec<(&[u8], PayloadFormat, &str, &str)> = vec![
            (b"\xff\xfe garbage", PayloadFormat::Auto, "protobuf", "neither"),
            (b"{not json", PayloadFormat::Auto, "json", "line 1"),
            (br#"{"name":"x","ts_ms":1}"#, PayloadFormat::Json, "json", "\"value\" is missing"),
            (br#"{"name":"x","value":1}"#, PayloadFormat::Json, "json", "needs"),
            (br#"{"labels":{"a":"b"},"ts_ms":1,"value":1}"#, PayloadFormat::Json, "labels", "__name__"),
            (br#"{"name":"x","labels":{"__name__":"y"},"ts_ms":1,"value":1}"#, PayloadFormat::Json, "json", "not both"),
            (br#"{"name":"x","ts_ms":1,"value":"abc"}"#, PayloadFormat::Json, "json", "not a number"),
            (br#"{"name":"x","ts_ms":1,"value":1,"extra":2}"#, PayloadFormat::Json, "json", "unknown field"),
            (br#"{"name":"x","ts_ms":1.5,"value":1}"#, PayloadFormat::Json, "json", "line 1"),
            (b"{\"name\":\"ok\",\"ts_ms\":1,\"value\":1}\n{\"name\":\"\",\"ts_ms\":1,\"value\":1}", PayloadFormat::Json, "labels", "empty metric name"),
            (b"\xc3\x28", PayloadFormat::Json, "json", "UTF-8"),
        ];
        for (payload, fmt, kind, needle) in cases {
            let e = decode_payload(payload, fmt, 1 << 20).expect_err("must be refused");
            assert_eq!(
                e.kind,
                kind,
                "{e} for {:?}",
                String::from_utf8_lossy(payload)
            );
            assert!(
                e.message.contains(needle),
                "{e:?} should contain {needle:?}"
            );
        }
    }

    #[test]
    fn size_limits_apply_to_every_format() {
        let big = encode_samples(&(0..2000).map(|i| s("m", &[], i, 1.0)).collect::<Vec<_>>());
        let e = decode_payload(&big, PayloadFormat::RemoteWrite, 100).expect_err("too large");
        assert_eq!(e.kind, "too_large");
        let line = br#"{"name":"x","ts_ms":1,"value":1}"#;
        let e = decode_payload(line, PayloadFormat::Json, 10).expect_err("too large");
        assert_eq!(e.kind, "too_large");
    }

    #[test]
    fn empty_payload_is_an_empty_batch() {
        let d = decode_payload(b"", PayloadFormat::Auto, 1 << 20).expect("empty is valid");
        assert_eq!(d.batch.num_rows(), 0);
    }
}
