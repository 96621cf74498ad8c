//! Zero-copy decoding of remote-write 1.0 bodies into a samples batch.
//!
//! The protobuf `WriteRequest` is walked in place: label names and values are
//! `&str` slices of the decompressed body, validated as UTF-8, and copied once,
//! straight into the Arrow builders. Decoding through the prost structs in
//! [`super::prompb`] instead allocates two `String`s per label and two `Vec`s
//! per series, which made allocation the largest cost of ingest (see
//! docs/performance.md). The prost structs stay the reference: a property test
//! checks that this walker accepts exactly what prost accepts and yields the
//! same samples, and they are what [`super::encode_samples`] writes.
//!
//! Wire rules followed (those of prost, for the fields declared in `prompb`):
//! unknown fields are skipped (groups included), a known field with the wrong
//! wire type is an error, a repeated scalar field keeps its last value, strings
//! must be UTF-8, nesting deeper than 100 is refused.

use arrow::record_batch::RecordBatch;

use crate::schema::{METRIC_NAME_LABEL, SamplesBuilder, series_id};

/// Bit pattern of Prometheus's staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

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

type Refusal = (Reject, String);

/// Decompresses a snappy block body, refusing bodies that claim more than `max`
/// bytes once decompressed.
pub fn decompress(body: &[u8], max: usize) -> Result<Vec<u8>, Refusal> {
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

/// Decompresses, decodes and validates a remote-write body.
pub fn decode_body(body: &[u8], max_decompressed: usize) -> Result<Decoded, Refusal> {
    let raw = decompress(body, max_decompressed)?;
    decode_request(&raw)
}

/// Validates one series' labels in place: checks names, removes `__name__`
/// (returned), sorts by name if needed, refuses duplicate names, then drops
/// empty values (an empty value means the label is absent in Prometheus, but
/// its name still counts for duplicate detection).
pub fn normalize_labels<'a>(labels: &mut Vec<(&'a str, &'a str)>) -> Result<&'a str, String> {
    let mut name: Option<&'a str> = None;
    for &(k, v) in labels.iter() {
        if k.is_empty() {
            return Err(format!("empty label name (value {v:?})"));
        }
        if k == METRIC_NAME_LABEL {
            if name.is_some() {
                return Err("duplicate label name \"__name__\"".into());
            }
            name = Some(v);
        }
    }
    let name = match name {
        Some(n) if !n.is_empty() => n,
        Some(_) => return Err("empty metric name (\"__name__\" has an empty value)".into()),
        None => {
            let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            return Err(format!(
                "series without \"__name__\" label: {{{}}}",
                shown.join(", ")
            ));
        }
    };
    labels.retain(|&(k, _)| k != METRIC_NAME_LABEL);
    // Senders should sort (Prometheus does): strictly increasing names are
    // sorted and free of duplicates in one comparison per pair.
    if !labels.is_sorted_by(|a, b| a.0 < b.0) {
        labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if let Some(w) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(format!(
                "duplicate label name {:?} in series {name}",
                w[0].0
            ));
        }
    }
    labels.retain(|&(_, v)| !v.is_empty());
    Ok(name)
}

/// Decodes and validates a decompressed `WriteRequest`. A request with one bad
/// series is refused whole.
pub fn decode_request(raw: &[u8]) -> Result<Decoded, Refusal> {
    let proto = |e: &'static str| (Reject::Protobuf, format!("protobuf: {e}"));
    // Room for the usual case (one sample per series, ~100 encoded bytes
    // each) without a counting pass; the builders grow if needed.
    let mut out = SamplesBuilder::with_capacity(raw.len() / 96 + 1);
    let mut labels: Vec<(&str, &str)> = Vec::with_capacity(16);
    let (mut series, mut metadata, mut stale) = (0usize, 0usize, 0usize);
    let mut w = Wire::new(raw);
    while !w.is_empty() {
        let (tag, wt) = w.key().map_err(proto)?;
        match tag {
            1 => {
                let ts = w.message(wt).map_err(proto)?;
                series += 1;
                stale += append_series(ts, &mut labels, &mut out)?;
            }
            3 => {
                check_metadata(w.message(wt).map_err(proto)?).map_err(proto)?;
                metadata += 1;
            }
            _ => w.skip(wt, tag, MAX_DEPTH).map_err(proto)?,
        }
    }
    Ok(Decoded {
        batch: out.finish(),
        series,
        metadata,
        stale_dropped: stale,
    })
}

/// Decodes one `TimeSeries` into `out`; returns the staleness markers dropped.
fn append_series<'a>(
    ts: &'a [u8],
    labels: &mut Vec<(&'a str, &'a str)>,
    out: &mut SamplesBuilder,
) -> Result<usize, Refusal> {
    let proto = |e: &'static str| (Reject::Protobuf, format!("protobuf: {e}"));
    labels.clear();
    // Fields may come in any order: labels first, then the samples, from
    // the first samples field on.
    let mut w = Wire::new(ts);
    let mut samples_at = ts.len();
    while !w.is_empty() {
        let at = ts.len() - w.buf.len();
        let (tag, wt) = w.key().map_err(proto)?;
        match tag {
            1 => labels.push(decode_label(w.message(wt).map_err(proto)?).map_err(proto)?),
            2 => {
                samples_at = samples_at.min(at);
                w.message(wt).map_err(proto)?;
            }
            _ => w.skip(wt, tag, MAX_DEPTH - 1).map_err(proto)?,
        }
    }
    let name = normalize_labels(labels).map_err(|e| (Reject::Labels, e))?;
    let id = series_id(name, labels);
    let mut stale = 0;
    let mut w = Wire::new(&ts[samples_at..]);
    while !w.is_empty() {
        let (tag, wt) = w.key().map_err(proto)?;
        match tag {
            2 => {
                let (t, v) = decode_sample(w.message(wt).map_err(proto)?).map_err(proto)?;
                if v.to_bits() == STALE_NAN_BITS {
                    stale += 1;
                } else {
                    out.append_series(name, labels, id, [(t, v)]);
                }
            }
            // Validated by the first pass.
            _ => w.skip(wt, tag, MAX_DEPTH - 1).map_err(proto)?,
        }
    }
    Ok(stale)
}

fn decode_label(buf: &[u8]) -> Result<(&str, &str), &'static str> {
    let (mut name, mut value) = ("", "");
    let mut w = Wire::new(buf);
    while !w.is_empty() {
        let (tag, wt) = w.key()?;
        match tag {
            1 => name = w.string(wt)?,
            2 => value = w.string(wt)?,
            _ => w.skip(wt, tag, MAX_DEPTH - 2)?,
        }
    }
    Ok((name, value))
}

fn decode_sample(buf: &[u8]) -> Result<(i64, f64), &'static str> {
    let (mut ts, mut value) = (0i64, 0f64);
    let mut w = Wire::new(buf);
    while !w.is_empty() {
        let (tag, wt) = w.key()?;
        match tag {
            1 => {
                expect(wt, FIXED64)?;
                value = f64::from_bits(w.fixed64()?);
            }
            2 => {
                expect(wt, VARINT)?;
                // int64: two's complement in a 10-byte varint.
                ts = w.varint()? as i64;
            }
            _ => w.skip(wt, tag, MAX_DEPTH - 2)?,
        }
    }
    Ok((ts, value))
}

/// `MetricMetadata` is accepted and ignored, but must be well formed.
fn check_metadata(buf: &[u8]) -> Result<(), &'static str> {
    let mut w = Wire::new(buf);
    while !w.is_empty() {
        let (tag, wt) = w.key()?;
        match tag {
            1 => {
                expect(wt, VARINT)?;
                w.varint()?;
            }
            2 | 4 | 5 => {
                w.string(wt)?;
            }
            _ => w.skip(wt, tag, MAX_DEPTH - 1)?,
        }
    }
    Ok(())
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;
/// prost's default recursion limit.
const MAX_DEPTH: u32 = 100;

fn expect(got: u8, want: u8) -> Result<(), &'static str> {
    if got == want {
        Ok(())
    } else {
        Err("invalid wire type for a known field")
    }
}

/// A cursor over protobuf wire data.
struct Wire<'a> {
    buf: &'a [u8],
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, &'static str> {
        // Keys and most lengths are one byte.
        if let Some((&b, rest)) = self.buf.split_first()
            && b < 0x80
        {
            self.buf = rest;
            return Ok(u64::from(b));
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, &'static str> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(i) else {
                return Err("buffer underflow");
            };
            if i == 9 && b > 1 {
                return Err("invalid varint");
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(v);
            }
        }
        Err("invalid varint")
    }

    /// A field key: (field number, wire type).
    #[inline(always)]
    fn key(&mut self) -> Result<(u32, u8), &'static str> {
        let k = self.varint()?;
        if k > u64::from(u32::MAX) {
            return Err("invalid key value");
        }
        let wt = (k & 7) as u8;
        if wt > FIXED32 {
            return Err("invalid wire type value");
        }
        let tag = (k >> 3) as u32;
        if tag == 0 {
            return Err("invalid tag value: 0");
        }
        Ok((tag, wt))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.buf.len() {
            return Err("buffer underflow");
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| "buffer underflow")?)
    }

    /// The body of an embedded message field.
    fn message(&mut self, wt: u8) -> Result<&'a [u8], &'static str> {
        expect(wt, LEN)?;
        self.bytes()
    }

    fn string(&mut self, wt: u8) -> Result<&'a str, &'static str> {
        expect(wt, LEN)?;
        std::str::from_utf8(self.bytes()?)
            .map_err(|_| "invalid string value: data is not UTF-8 encoded")
    }

    fn fixed64(&mut self) -> Result<u64, &'static str> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Skips the value of an unknown field.
    fn skip(&mut self, wt: u8, tag: u32, depth: u32) -> Result<(), &'static str> {
        if depth == 0 {
            return Err("recursion limit reached");
        }
        match wt {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            START_GROUP => loop {
                let (t, w) = self.key()?;
                if w == END_GROUP {
                    return if t == tag {
                        Ok(())
                    } else {
                        Err("unexpected end group tag")
                    };
                }
                self.skip(w, t, depth - 1)?;
            },
            _ => Err("unexpected end group tag"),
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::super::{compress, encode_samples};
    use super::*;
    use crate::schema::{Sample, batch_to_samples};
    use crate::sources::prompb::{self, WriteRequest};

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
        assert_eq!(
            crate::schema::SamplesView::new(&d.batch)
                .expect("schema")
                .series_id
                .value(0),
            series_id("up", &s[0].labels)
        );
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
            (vec![lbl("__name__", "")], "empty metric name"),
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
    fn rejects_invalid_utf8_and_wrong_wire_types() {
        // TimeSeries{labels: [Label{name: b"\xff"}]}
        let label = [0x0a, 0x01, 0xff];
        let series = [&[0x0a, label.len() as u8][..], &label].concat();
        let body = [&[0x0a, series.len() as u8][..], &series].concat();
        let (r, msg) = decode_request(&body).expect_err("not UTF-8");
        assert_eq!(r, Reject::Protobuf);
        assert!(msg.contains("UTF-8"), "{msg}");
        // timeseries (field 1) sent as a varint.
        assert_eq!(
            decode_request(&[0x08, 0x01]).unwrap_err().0,
            Reject::Protobuf
        );
    }

    #[test]
    fn skips_unknown_fields_and_groups() {
        let mut raw = WriteRequest {
            timeseries: vec![prompb::TimeSeries {
                labels: vec![lbl("__name__", "m")],
                samples: vec![prompb::Sample {
                    value: 2.5,
                    timestamp: 7,
                }],
            }],
            metadata: vec![],
        }
        .encode_to_vec();
        // Field 9 as a group holding a varint, then field 10 as fixed32.
        raw.extend_from_slice(&[0x4b, 0x08, 0x01, 0x4c, 0x55, 1, 2, 3, 4]);
        let d = decode_request(&raw).expect("unknown fields are skipped");
        assert_eq!(d.batch.num_rows(), 1);
        // A group closed by the wrong tag is refused.
        assert!(decode_request(&[0x4b, 0x54]).is_err());
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
                ts_ms: -6,
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
        let mut want = samples;
        want.sort_by_key(|s| s.ts_ms);
        assert_eq!(got, want);
    }

    /// The same request through prost and the reference label rules.
    fn via_prost(raw: &[u8]) -> Option<Vec<Sample>> {
        let req = WriteRequest::decode(raw).ok()?;
        let mut out = Vec::new();
        for ts in &req.timeseries {
            let mut labels: Vec<(&str, &str)> = ts
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            let name = normalize_labels(&mut labels).ok()?;
            for s in &ts.samples {
                if s.value.to_bits() != STALE_NAN_BITS {
                    out.push(Sample {
                        name: name.to_string(),
                        labels: labels
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        ts_ms: s.timestamp,
                        value: s.value,
                    });
                }
            }
        }
        Some(out)
    }

    fn same(a: &[Sample], b: &[Sample]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                (x.name.as_str(), &x.labels, x.ts_ms, x.value.to_bits())
                    == (y.name.as_str(), &y.labels, y.ts_ms, y.value.to_bits())
            })
    }

    fn arb_request() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let label = (
            prop::sample::select(vec!["__name__", "job", "instance", "a", "", "cpu"]),
            prop::sample::select(vec!["up", "node", "", "x:9100", "é"]),
        )
            .prop_map(|(n, v)| lbl(n, v));
        let sample = (any::<i64>(), any::<f64>()).prop_map(|(t, v)| prompb::Sample {
            value: v,
            timestamp: t,
        });
        let series = (
            prop::collection::vec(label, 0..5),
            prop::collection::vec(sample, 0..4),
        )
            .prop_map(|(labels, samples)| prompb::TimeSeries { labels, samples });
        prop::collection::vec(series, 0..5).prop_map(|timeseries| {
            WriteRequest {
                timeseries,
                metadata: vec![],
            }
            .encode_to_vec()
        })
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bodies(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_body(&body, 1 << 16);
            let _ = decode_request(&body);
        }

        /// Arbitrary bytes: accepted exactly when prost (plus the label rules)
        /// accepts them, with the same samples.
        #[test]
        fn agrees_with_prost_on_arbitrary_bytes(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let ours = decode_request(&raw).ok().map(|d| batch_to_samples(&d.batch));
            let theirs = via_prost(&raw);
            proptest::prop_assert_eq!(ours.is_some(), theirs.is_some());
            if let (Some(a), Some(b)) = (ours, theirs) {
                proptest::prop_assert!(same(&a, &b));
            }
        }

        /// Well-formed requests with valid and invalid label sets, cut at
        /// every length and with one byte flipped.
        #[test]
        fn agrees_with_prost_on_mutated_requests(raw in arb_request(), cut in 0usize..1000, flip in 0usize..1000, bits in 1u8..=255) {
            let mut variants = vec![raw.clone(), raw[..cut.min(raw.len())].to_vec()];
            if !raw.is_empty() {
                let mut m = raw.clone();
                let i = flip % m.len();
                m[i] ^= bits;
                variants.push(m);
            }
            for v in variants {
                let ours = decode_request(&v).ok().map(|d| batch_to_samples(&d.batch));
                let theirs = via_prost(&v);
                proptest::prop_assert_eq!(ours.is_some(), theirs.is_some(), "input {:?}", v);
                if let (Some(a), Some(b)) = (ours, theirs) {
                    proptest::prop_assert!(same(&a, &b));
                }
            }
        }
    }
}
