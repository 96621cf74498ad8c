//! Parser for the Prometheus text exposition format (0.0.4) and the
//! OpenMetrics 1.0 text format.
//!
//! Why not the `prometheus-parse` crate (0.2.5): it splits label sets on `,`
//! and `=` (`m{a="x,y=z"}` comes out as `a="x"`, `y="z"`), does not unescape
//! `\"`, `\\` or `\n`, silently drops lines with `}` inside a label value and
//! metric names with `:`, ignores OpenMetrics timestamps (float seconds),
//! accepts or skips malformed lines instead of failing the scrape, and folds
//! histogram and summary lines into per-family structs (so the per-line count
//! Prometheus reports as `scrape_samples_scraped` is lost). This parser
//! returns one [`ParsedSample`] per sample line, like Prometheus's own
//! parsers, and fails the whole scrape on the first malformed line, as
//! Prometheus does.
//!
//! Accepted syntax, per line:
//!
//! * `# HELP name text`, `# TYPE name type`, `# UNIT name unit` (OpenMetrics),
//!   other `# ...` comments (ignored), `# EOF` (OpenMetrics: required, last);
//! * `name{label="value",...} value [timestamp]`, where label values may use the
//!   escapes `\\`, `\"` and `\n`; a trailing comma in the label set is allowed;
//!   a quoted metric name inside the braces (`{"my.metric",a="b"} 1`) is accepted;
//! * values are Go floats: `1`, `-2.5e-3`, `NaN`, `+Inf`, `-Inf`;
//! * timestamps are integer milliseconds (text format) or float seconds
//!   (OpenMetrics); OpenMetrics exemplars (` # {trace_id="x"} 1 [ts]`) are skipped.

use std::fmt;

/// Which text format a body is in (chosen from the `Content-Type` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Text,
    /// OpenMetrics 1.0 (`application/openmetrics-text`).
    OpenMetrics,
}

impl Format {
    /// The format announced by a `Content-Type` header value (text when absent
    /// or unknown, like Prometheus).
    pub fn from_content_type(ct: Option<&str>) -> Format {
        match ct {
            Some(ct)
                if ct
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/openmetrics-text") =>
            {
                Format::OpenMetrics
            }
            _ => Format::Text,
        }
    }
}

/// The metric type declared by a `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `gaugehistogram` (OpenMetrics).
    GaugeHistogram,
    /// `summary`.
    Summary,
    /// `info` (OpenMetrics).
    Info,
    /// `stateset` (OpenMetrics).
    StateSet,
    /// `untyped` (text) or `unknown` (OpenMetrics).
    Unknown,
}

impl MetricType {
    fn parse(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "untyped" | "unknown" => MetricType::Unknown,
            _ => return None,
        })
    }
}

/// Metadata of one metric family (`# HELP` / `# TYPE` / `# UNIT`).
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Family name as written in the comment.
    pub name: String,
    /// Declared type (`Unknown` when only HELP was given).
    pub metric_type: MetricType,
    /// Help text, unescaped.
    pub help: Option<String>,
    /// Unit (OpenMetrics only).
    pub unit: Option<String>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample {
    /// Metric name.
    pub name: String,
    /// Labels in exposition order, unescaped (empty values kept).
    pub labels: Vec<(String, String)>,
    /// Sample value.
    pub value: f64,
    /// Explicit timestamp, milliseconds since the epoch, if the line had one.
    pub timestamp_ms: Option<i64>,
}

/// A parsed exposition body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// Every sample line, in order.
    pub samples: Vec<ParsedSample>,
    /// Families declared by `# HELP`/`# TYPE`/`# UNIT` comments, in order.
    pub families: Vec<Family>,
}

/// Why a body could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole body. Invalid UTF-8 and the first malformed line fail the
/// parse, as in Prometheus (the scrape then reports `up = 0`).
pub fn parse_bytes(body: &[u8], format: Format) -> Result<Parsed, ParseError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        let line = body[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        ParseError {
            line,
            reason: "invalid UTF-8".into(),
        }
    })?;
    parse(text, format)
}

/// Parses a body already known to be UTF-8.
pub fn parse(text: &str, format: Format) -> Result<Parsed, ParseError> {
    let om = format == Format::OpenMetrics;
    let mut out = Parsed::default();
    let mut saw_eof = false;
    for (i, raw) in text.split('\n').enumerate() {
        let lineno = i + 1;
        let err = |reason: String| ParseError {
            line: lineno,
            reason,
        };
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if saw_eof {
            if om && !line.is_empty() {
                return Err(err("content after \"# EOF\"".into()));
            }
            continue;
        }
        if om {
            if line.is_empty() {
                // Only the final newline may produce an empty line.
                if i + 1 == text.split('\n').count() {
                    continue;
                }
                return Err(err("empty line (not allowed in OpenMetrics)".into()));
            }
        } else if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.trim_start().strip_prefix('#') {
            if comment.trim() == "EOF" {
                saw_eof = true;
                continue;
            }
            parse_comment(comment, om, &mut out.families).map_err(err)?;
            continue;
        }
        let s = parse_sample(line, om).map_err(err)?;
        out.samples.push(s);
    }
    if om && !saw_eof {
        return Err(ParseError {
            line: text.split('\n').count(),
            reason: "OpenMetrics body does not end with \"# EOF\"".into(),
        });
    }
    Ok(out)
}

/// Handles the text after `#`. Unknown comments are ignored.
fn parse_comment(comment: &str, om: bool, families: &mut Vec<Family>) -> Result<(), String> {
    let mut rest = comment.trim_start_matches([' ', '\t']);
    let keyword = take_token(&mut rest);
    if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
        return Ok(()); // a plain comment
    }
    if keyword == "UNIT" && !om {
        return Ok(());
    }
    rest = rest.trim_start_matches([' ', '\t']);
    let name = take_token(&mut rest);
    if !is_metric_name(name) {
        return Err(format!("invalid metric name {name:?} in # {keyword}"));
    }
    let rest = rest.strip_prefix([' ', '\t']).unwrap_or(rest);
    let idx = match families.iter().rposition(|f| f.name == name) {
        Some(i) => i,
        None => {
            families.push(Family {
                name: name.to_string(),
                metric_type: MetricType::Unknown,
                help: None,
                unit: None,
            });
            families.len() - 1
        }
    };
    let fam = &mut families[idx];
    match keyword {
        "HELP" => fam.help = Some(unescape_help(rest)),
        "TYPE" => {
            let t = rest.trim();
            fam.metric_type =
                MetricType::parse(t).ok_or_else(|| format!("unknown metric type {t:?}"))?;
        }
        _ => fam.unit = Some(rest.trim().to_string()),
    }
    Ok(())
}

fn take_token<'a>(s: &mut &'a str) -> &'a str {
    let end = s.find([' ', '\t']).unwrap_or(s.len());
    let (tok, rest) = s.split_at(end);
    *s = rest;
    tok
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

struct Cur<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cur<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }
    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > start
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }
    fn token(&mut self) -> &'a str {
        self.take_while(|c| c != b' ' && c != b'\t')
    }
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
    /// A `"`-quoted string starting at the cursor; returns it unescaped.
    fn quoted(&mut self) -> Result<String, String> {
        if self.peek() != Some(b'"') {
            return Err(format!("expected '\"' at {:?}", preview(self.rest())));
        }
        self.pos += 1;
        let mut out = String::new();
        let bytes = self.s.as_bytes();
        let mut run_start = self.pos;
        while self.pos < bytes.len() {
            match bytes[self.pos] {
                b'"' => {
                    out.push_str(&self.s[run_start..self.pos]);
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.s[run_start..self.pos]);
                    match bytes.get(self.pos + 1) {
                        Some(b'\\') => out.push('\\'),
                        Some(b'"') => out.push('"'),
                        Some(b'n') => out.push('\n'),
                        Some(_) => {
                            // Unknown escapes are kept as written (Prometheus
                            // only replaces the three above).
                            out.push('\\');
                            self.pos += 1;
                            run_start = self.pos;
                            continue;
                        }
                        None => return Err("unterminated escape in label value".into()),
                    }
                    self.pos += 2;
                    run_start = self.pos;
                }
                _ => self.pos += 1,
            }
        }
        Err("unterminated quoted string".into())
    }
}

fn preview(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Parses a Go-style float (`NaN`, `+Inf`, `-Inf`, decimal, exponent).
pub fn parse_float(s: &str) -> Option<f64> {
    if s.is_empty() || s.starts_with('_') || s.contains('_') {
        return None;
    }
    // Rust accepts "inf", "infinity" and "nan" in any case, like Go.
    s.parse::<f64>().ok()
}

fn parse_sample(line: &str, om: bool) -> Result<ParsedSample, String> {
    let mut c = Cur { s: line, pos: 0 };
    let mut name: Option<String> = None;
    let mut spaced = false;
    if c.peek() != Some(b'{') {
        let n = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
        if !is_metric_name(n) {
            return Err(format!("invalid metric name at {:?}", preview(line)));
        }
        name = Some(n.to_string());
        spaced = c.skip_ws();
    }
    let mut labels: Vec<(String, String)> = Vec::new();
    if c.peek() == Some(b'{') && !(om && spaced) {
        spaced = false;
        c.pos += 1;
        loop {
            c.skip_ws();
            match c.peek() {
                Some(b'}') => {
                    c.pos += 1;
                    break;
                }
                None => return Err("unterminated label set".into()),
                _ => {}
            }
            let lname = if c.peek() == Some(b'"') {
                let q = c.quoted()?;
                c.skip_ws();
                if matches!(c.peek(), Some(b',' | b'}')) {
                    // A quoted metric name (UTF-8 names, Prometheus 3 syntax).
                    if name.is_some() {
                        return Err(format!("metric name given twice ({q:?})"));
                    }
                    if q.is_empty() {
                        return Err("empty quoted metric name".into());
                    }
                    name = Some(q);
                    if c.peek() == Some(b',') {
                        c.pos += 1;
                    }
                    continue;
                }
                q
            } else {
                let n = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !is_label_name(n) {
                    return Err(format!("invalid label name at {:?}", preview(c.rest())));
                }
                n.to_string()
            };
            c.skip_ws();
            if c.peek() != Some(b'=') {
                return Err(format!(
                    "expected '=' after label name {lname:?}, found {:?}",
                    preview(c.rest())
                ));
            }
            c.pos += 1;
            c.skip_ws();
            let value = c.quoted()?;
            if labels.iter().any(|(k, _)| *k == lname) {
                return Err(format!("duplicate label name {lname:?}"));
            }
            labels.push((lname, value));
            c.skip_ws();
            match c.peek() {
                Some(b',') => c.pos += 1,
                Some(b'}') => {}
                _ => {
                    return Err(format!(
                        "expected ',' or '}}' in label set, found {:?}",
                        preview(c.rest())
                    ));
                }
            }
        }
    }
    let Some(name) = name else {
        return Err("sample without a metric name".into());
    };
    if !(c.skip_ws() || spaced) {
        return Err(format!(
            "expected a space before the value of {name}, found {:?}",
            preview(c.rest())
        ));
    }
    let vtok = c.token();
    let value = parse_float(vtok).ok_or_else(|| format!("invalid value {vtok:?} for {name}"))?;
    c.skip_ws();
    let mut timestamp_ms = None;
    if c.peek().is_some() && c.peek() != Some(b'#') {
        let ttok = c.token();
        timestamp_ms = Some(if om {
            let secs = parse_float(ttok)
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("invalid timestamp {ttok:?}"))?;
            (secs * 1000.0).round() as i64
        } else {
            ttok.parse::<i64>()
                .map_err(|_| format!("invalid timestamp {ttok:?}"))?
        });
        c.skip_ws();
    }
    match c.peek() {
        None => {}
        Some(b'#') if om => {
            // Exemplar: ` # {labels} value [timestamp]`; checked for shape only.
            let ex = c.rest()[1..].trim_start();
            if !ex.starts_with('{') {
                return Err(format!("malformed exemplar {:?}", preview(ex)));
            }
        }
        Some(_) => {
            return Err(format!(
                "unexpected text after the sample: {:?}",
                preview(c.rest())
            ));
        }
    }
    Ok(ParsedSample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str, f: Format) -> ParsedSample {
        let body = if f == Format::OpenMetrics {
            format!("{line}\n# EOF\n")
        } else {
            format!("{line}\n")
        };
        let p = parse(&body, f).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(p.samples.len(), 1);
        p.samples
            .into_iter()
            .next()
            .unwrap_or_else(|| unreachable!())
    }

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn real_node_exporter_output() {
        let body = include_str!("../../../tests/fixtures/node_exporter_1.5.0.prom");
        let p = parse(body, Format::Text).expect("node_exporter output parses");
        let sample_lines = body
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        let type_lines = body.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(p.samples.len(), sample_lines);
        assert_eq!(
            p.families
                .iter()
                .filter(|f| f.metric_type != MetricType::Unknown || f.help.is_some())
                .count(),
            type_lines
        );
        // Histograms and summaries come out as one sample per line.
        let gc: Vec<_> = p
            .samples
            .iter()
            .filter(|s| s.name.starts_with("go_gc_duration_seconds"))
            .collect();
        assert_eq!(gc.len(), 7, "5 quantiles + _sum + _count");
        assert_eq!(gc[0].labels, l(&[("quantile", "0")]));
        let fam = p
            .families
            .iter()
            .find(|f| f.name == "go_gc_duration_seconds")
            .expect("family");
        assert_eq!(fam.metric_type, MetricType::Summary);
        // Every sample's text round-trips: the label count equals the number
        // of `="` pairs on its line.
        let lines: Vec<&str> = body
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        for (s, line) in p.samples.iter().zip(&lines) {
            assert!(line.starts_with(&s.name), "{line}");
            let quoted_eq = line.matches("=\"").count();
            assert!(s.labels.len() <= quoted_eq, "{line}: {:?}", s.labels);
            assert!(s.timestamp_ms.is_none());
        }
        // node_uname_info carries free-text values (spaces, '#', parentheses).
        let uname = p
            .samples
            .iter()
            .find(|s| s.name == "node_uname_info")
            .expect("node_uname_info");
        assert!(uname.labels.iter().any(|(k, _)| k == "version"));
        assert_eq!(uname.value, 1.0);
    }

    #[test]
    fn escapes_commas_braces_and_equals_in_values() {
        let s = one(
            r#"m{a="x,y=z",b="q\"uo\\te\nnl",c="}{",d="\t"} 1"#,
            Format::Text,
        );
        assert_eq!(
            s.labels,
            l(&[
                ("a", "x,y=z"),
                ("b", "q\"uo\\te\nnl"),
                ("c", "}{"),
                ("d", "\\t")
            ])
        );
    }

    #[test]
    fn values_and_timestamps() {
        assert!(one("a NaN", Format::Text).value.is_nan());
        assert_eq!(one("a +Inf", Format::Text).value, f64::INFINITY);
        assert_eq!(one("a -Inf", Format::Text).value, f64::NEG_INFINITY);
        assert_eq!(one("a 1.5e3", Format::Text).value, 1500.0);
        let s = one("a{b=\"c\",} -2 1700000000123", Format::Text);
        assert_eq!(s.value, -2.0);
        assert_eq!(s.timestamp_ms, Some(1_700_000_000_123));
        assert_eq!(s.labels, l(&[("b", "c")]));
        // OpenMetrics timestamps are float seconds.
        let s = one("a_total 3 1700000000.5", Format::OpenMetrics);
        assert_eq!(s.timestamp_ms, Some(1_700_000_000_500));
        // Names with colons (recording rules) and whitespace before braces.
        let s = one("job:rate5m {x=\"1\"}\t7", Format::Text);
        assert_eq!((s.name.as_str(), s.value), ("job:rate5m", 7.0));
        // Quoted metric names.
        let s = one(r#"{"my.metric",a="b"} 2"#, Format::Text);
        assert_eq!(s.name, "my.metric");
        assert_eq!(s.labels, l(&[("a", "b")]));
    }

    #[test]
    fn histograms_summaries_and_openmetrics() {
        let body = "# HELP rpc_seconds RPC latency.\n# TYPE rpc_seconds histogram\n# UNIT rpc_seconds seconds\n\
rpc_seconds_bucket{le=\"0.1\"} 2 # {trace_id=\"abc\"} 0.05 1700000000.1\n\
rpc_seconds_bucket{le=\"+Inf\"} 5\nrpc_seconds_sum 1.25\nrpc_seconds_count 5\n\
rpc_seconds_created 1700000000\n# TYPE q summary\nq{quantile=\"0.5\"} 0.2\nq_sum 3\nq_count 9\n# EOF\n";
        let p = parse(body, Format::OpenMetrics).expect("parses");
        assert_eq!(p.samples.len(), 8);
        assert_eq!(p.samples[1].labels, l(&[("le", "+Inf")]));
        assert_eq!(p.samples[0].value, 2.0);
        assert_eq!(p.families[0].metric_type, MetricType::Histogram);
        assert_eq!(p.families[0].unit.as_deref(), Some("seconds"));
        assert_eq!(p.families[0].help.as_deref(), Some("RPC latency."));
        assert_eq!(p.families[1].metric_type, MetricType::Summary);
        // # EOF is required in OpenMetrics, and must be last.
        let e = parse("a 1\n", Format::OpenMetrics).expect_err("no EOF");
        assert!(e.reason.contains("EOF"), "{e}");
        let e = parse("a 1\n# EOF\nb 2\n", Format::OpenMetrics).expect_err("after EOF");
        assert_eq!(e.line, 3);
        // In the text format a stray # EOF is harmless.
        assert_eq!(
            parse("a 1\n# EOF\n", Format::Text)
                .expect("ok")
                .samples
                .len(),
            1
        );
    }

    #[test]
    fn malformed_lines_fail_with_the_line_number() {
        for (body, line) in [
            ("a 1\nb{c=\"d} 2\n", 2),
            ("a 1\n\nb{c=d} 2\n", 3),
            ("a x\n", 1),
            ("a 1 2 3\n", 1),
            ("a{b=\"1\",b=\"2\"} 1\n", 1),
            ("9a 1\n", 1),
            ("a 1 1.5\n", 1),
            ("a{} \n", 1),
            ("# TYPE a nonsense\n", 1),
        ] {
            let e = parse(body, Format::Text).expect_err(body);
            assert_eq!(e.line, line, "{body:?}: {e}");
        }
        let e = parse_bytes(b"a 1\nb{c=\"\xff\"} 1\n", Format::Text).expect_err("utf8");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn content_type_selects_format() {
        assert_eq!(
            Format::from_content_type(Some(
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type(Some("text/plain; version=0.0.4")),
            Format::Text
        );
        assert_eq!(Format::from_content_type(None), Format::Text);
    }
}
