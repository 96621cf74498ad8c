//! Pipeline files: YAML in the spirit of Vector.
//!
//! ```yaml
//! data_dir: ./data            # optional; --data-dir overrides it
//! api:
//!   listen: 127.0.0.1:9201
//!   auth: { bearer_token_file: /etc/scalecast/token }
//! storage:
//!   retention_secs: 1296000
//! sources:
//!   prometheus:
//!     type: remote_write
//!     max_body_bytes: 10485760
//! ```
//!
//! Parsing is strict (`deny_unknown_fields` everywhere): a misspelt field is an
//! error, not a silently ignored line. Every error is reported as
//! `file:line:column: reason` — serde's own location for syntax and type
//! errors, and the location of the offending key for semantic checks
//! ([`PipelineConfig::validate`]). `docs/configuration.md` is the reference.
//!
//! Config structs follow Vector's "config → build → runtime" split: this
//! module only describes and checks; [`crate::pipeline`] builds the running
//! components from it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::query::QueryConfig;
use crate::sources::remote_write::RemoteWriteConfig;
use crate::store::StorageConfig;

/// The embedded default pipeline (`scalecast serve` without `--config`).
pub const DEFAULT_PIPELINE: &str = include_str!("../pipelines/default.yaml");

/// The `scalecast demo` pipeline; `{{TRACE}}` stands for the trace path.
pub const DEMO_PIPELINE: &str = include_str!("../pipelines/demo.yaml");

/// The trace `scalecast demo` replays (NAB `ec2_cpu_utilization_5f5533`, MIT).
pub const DEMO_TRACE: &str =
    include_str!("../datasets/nab/realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv");

/// The demo pipeline with its trace path filled in.
pub fn demo_pipeline(trace: &Path) -> String {
    // YAML double-quoted string: escape backslashes and quotes.
    let p = trace
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    DEMO_PIPELINE.replace("{{TRACE}}", &p)
}

/// A whole pipeline file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Where the WAL and Parquet tables live; `--data-dir` overrides it.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// HTTP API listener and auth.
    #[serde(default)]
    pub api: ApiConfig,
    /// WAL, Parquet and retention.
    #[serde(default)]
    pub storage: StorageConfig,
    /// SQL limits.
    #[serde(default)]
    pub query: QueryConfig,
    /// Sources by id.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Transforms by id (the stream engine); their rows go to the
    /// `aggregates` table.
    #[serde(default)]
    pub transforms: BTreeMap<String, TransformConfig>,
    /// Scaling targets and their policies (the shape of a policy file,
    /// `docs/recommend.md`); their decisions go to the `recommendations` table.
    #[serde(default)]
    pub scaling: Option<crate::recommend::PolicyFile>,
    /// Live forecasts by series name; rows go to the `forecasts` table.
    #[serde(default)]
    pub forecasts: BTreeMap<String, crate::pipeline::forecasts::ForecastSeriesConfig>,
    /// How `forecast_and_scale` targets act (dry-run by default), `docs/actuators.md`.
    #[serde(default)]
    pub actuators: crate::actuators::ActuatorConfig,
    /// Signed webhooks for recommendations, actions and alerts.
    #[serde(default)]
    pub webhooks: Option<crate::sinks::webhook::WebhookConfig>,
    /// Threshold alerts and alerts on scaling operations (sent through `webhooks`).
    #[serde(default)]
    pub alerts: Option<crate::alerts::AlertsConfig>,
    /// Publish every recommendation to a Kafka topic (key: target name).
    #[serde(default)]
    pub recommendations_kafka: Option<crate::sinks::kafka::KafkaSinkConfig>,
}

/// A transform entry: `inputs` plus a body tagged by `type`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TransformConfig {
    /// Ids of the sources or transforms it reads.
    pub inputs: Vec<String>,
    /// The transform itself.
    #[serde(flatten)]
    pub body: TransformBody,
}

/// The body of a transform, tagged by `type`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransformBody {
    /// Windowed aggregates of selected series ([`crate::engine::config::WindowTransformConfig`]).
    Window(crate::engine::config::WindowTransformConfig),
    /// usage / request / capacity per workload ([`crate::engine::config::UtilizationTransformConfig`]).
    Utilization(Box<crate::engine::config::UtilizationTransformConfig>),
    /// OpenCost allocation of utilization rows ([`crate::engine::config::CostTransformConfig`]).
    Cost(crate::engine::config::CostTransformConfig),
}

impl<'de> Deserialize<'de> for TransformConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        // `inputs` sits beside the variant's own fields, which reject unknown
        // keys: take it out first, then deserialize the rest as the variant.
        let mut map = serde_yaml::Mapping::deserialize(d)?;
        let inputs = match map.remove("inputs") {
            Some(v) => Vec::<String>::deserialize(v)
                .map_err(|e| D::Error::custom(format!("inputs: {e}")))?,
            None => return Err(D::Error::custom("missing field `inputs`")),
        };
        let body = TransformBody::deserialize(serde_yaml::Value::Mapping(map))
            .map_err(D::Error::custom)?;
        Ok(TransformConfig { inputs, body })
    }
}

impl TransformConfig {
    /// The engine's view of this transform.
    pub fn to_engine(&self) -> crate::engine::EngineTransform {
        use crate::engine::EngineTransform;
        match &self.body {
            TransformBody::Window(c) => EngineTransform::Window(c.clone()),
            TransformBody::Utilization(c) => EngineTransform::Utilization(c.as_ref().clone()),
            TransformBody::Cost(c) => EngineTransform::Cost {
                inputs: self.inputs.clone(),
                config: c.clone(),
            },
        }
    }

    fn validate_body(&self) -> std::result::Result<(), crate::engine::EngineError> {
        match &self.body {
            TransformBody::Window(c) => c.validate(),
            TransformBody::Utilization(c) => c.validate(),
            TransformBody::Cost(c) => c.validate(),
        }
    }
}

/// HTTP API settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on, `host:port`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Bearer-token auth for write and query endpoints; off when absent.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
}

fn default_listen() -> String {
    "127.0.0.1:9201".into()
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            auth: None,
        }
    }
}

/// Bearer-token auth: give the token inline or in a file (one of them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The token itself.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// A file whose content (trimmed) is the token.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

impl AuthConfig {
    /// Checks that exactly one token source is set (the file is read at start).
    pub fn check(&self) -> std::result::Result<(), String> {
        match (&self.bearer_token, &self.bearer_token_file) {
            (Some(t), None) if !t.is_empty() => Ok(()),
            (None, Some(_)) => Ok(()),
            (Some(_), Some(_)) => Err("set bearer_token or bearer_token_file, not both".into()),
            _ => Err("set bearer_token (non-empty) or bearer_token_file".into()),
        }
    }

    /// Resolves the token (reading the file if configured).
    pub fn token(&self) -> std::result::Result<String, String> {
        match (&self.bearer_token, &self.bearer_token_file) {
            (Some(t), None) if !t.is_empty() => Ok(t.clone()),
            (None, Some(p)) => {
                let t = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                let t = t.trim().to_string();
                if t.is_empty() {
                    Err(format!("{} is empty", p.display()))
                } else {
                    Ok(t)
                }
            }
            (Some(_), Some(_)) => Err("set bearer_token or bearer_token_file, not both".into()),
            _ => Err("set bearer_token (non-empty) or bearer_token_file".into()),
        }
    }
}

/// A source, tagged by `type`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Prometheus remote-write receiver on the API listener.
    RemoteWrite(RemoteWriteConfig),
    /// Prometheus scraper (text format and OpenMetrics).
    Scrape(crate::sources::scrape::ScrapeConfig),
    /// CloudWatch `GetMetricData` poller.
    Cloudwatch(crate::sources::cloudwatch::CloudwatchConfig),
    /// Kafka consumer (remote-write protobuf or JSON lines).
    Kafka(crate::sources::kafka::KafkaSourceConfig),
    /// Replays a CSV/Parquet trace at a chosen speed, shifted to now.
    Replay(crate::sources::replay::ReplayConfig),
}

impl SourceConfig {
    /// The source's own field checks: `(dotted field path, reason)`.
    pub fn validate_fields(&self) -> std::result::Result<(), (String, String)> {
        match self {
            SourceConfig::RemoteWrite(c) => c.validate(),
            SourceConfig::Scrape(c) => c.validate(),
            SourceConfig::Cloudwatch(c) => c.validate(),
            SourceConfig::Kafka(c) => c.validate(),
            SourceConfig::Replay(c) => c.validate(),
        }
    }
}

impl PipelineConfig {
    /// Parses YAML text; `file` is used in error messages only.
    pub fn parse(text: &str, file: &Path) -> Result<Self> {
        let cfg: PipelineConfig = serde_yaml::from_str(text).map_err(|e| {
            let (mut line, mut column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            let reason = strip_location(&e.to_string());
            // Tagged enums are buffered by serde, so the location is that of the
            // enclosing map: move it to the offending key when we can see it.
            if let Some(field) = reason
                .split("unknown field `")
                .nth(1)
                .and_then(|r| r.split('`').next())
                && let Some((l, c)) = find_key_after(text, field, line)
            {
                (line, column) = (l, c);
            }
            Error::Config {
                file: file.to_path_buf(),
                line,
                column,
                reason,
            }
        })?;
        Ok(cfg)
    }

    /// Reads, parses and validates a pipeline file, returning every error.
    pub fn load(file: &Path) -> std::result::Result<Self, Vec<Error>> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            vec![Error::Config {
                file: file.to_path_buf(),
                line: 0,
                column: 0,
                reason: format!("cannot read file: {e}"),
            }]
        })?;
        Self::load_str(&text, file)
    }

    /// Parses and validates YAML text, returning every error.
    pub fn load_str(text: &str, file: &Path) -> std::result::Result<Self, Vec<Error>> {
        let cfg = Self::parse(text, file).map_err(|e| vec![e])?;
        let errors = cfg.validate(text, file);
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    /// The embedded default pipeline.
    pub fn embedded_default() -> Self {
        // The embedded file is checked by a unit test; fall back to defaults
        // rather than panic if it were ever broken.
        Self::parse(DEFAULT_PIPELINE, Path::new("<embedded default>")).unwrap_or_default()
    }

    /// Semantic checks; each error carries the location of the offending key.
    pub fn validate(&self, text: &str, file: &Path) -> Vec<Error> {
        let mut errs = Vec::new();
        let mut err = |path: &[&str], reason: String| {
            let (line, column) = locate(text, path);
            errs.push(Error::Config {
                file: file.to_path_buf(),
                line,
                column,
                reason: format!("{}: {reason}", path.join(".")),
            });
        };
        if self.api.listen.parse::<SocketAddr>().is_err() {
            err(
                &["api", "listen"],
                format!(
                    "{:?} is not an address like 127.0.0.1:9201",
                    self.api.listen
                ),
            );
        }
        if let Some(auth) = &self.api.auth
            && let Err(e) = auth.check()
        {
            err(&["api", "auth"], e);
        }
        if let Err((field, reason)) = self.storage.validate() {
            let mut path = vec!["storage"];
            path.extend(field.split('.'));
            err(&path, reason);
        }
        if self.query.memory_limit_bytes < 1 << 20 {
            err(
                &["query", "memory_limit_bytes"],
                "must be at least 1048576 (1 MiB)".into(),
            );
        }
        if self.query.timeout_secs == 0 {
            err(&["query", "timeout_secs"], "must be at least 1".into());
        }
        let mut paths: BTreeMap<&str, &str> = BTreeMap::new();
        for (id, source) in &self.sources {
            if let Err((field, reason)) = source.validate_fields() {
                let mut path = vec!["sources", id.as_str()];
                path.extend(field.split('.'));
                err(&path, reason);
            }
            if let SourceConfig::RemoteWrite(rw) = source
                && let Some(other) = paths.insert(rw.path.as_str(), id.as_str())
            {
                err(
                    &["sources", id, "path"],
                    format!("path {:?} is already served by source {other:?}", rw.path),
                );
            }
        }
        if let Some(policy) = &self.scaling
            && let Err(issues) = policy.validate()
        {
            for issue in issues {
                // `targets[0].schedules[1].cron` → targets.0.schedules.1.cron
                let field = issue.field.replace('[', ".").replace(']', "");
                let mut path = vec!["scaling"];
                path.extend(field.split('.').filter(|p| !p.is_empty()));
                err(&path, issue.reason);
            }
        }
        if let Err((field, reason)) = self.actuators.validate() {
            let mut path = vec!["actuators"];
            path.extend(field.split('.'));
            err(&path, reason);
        }
        if let Some(w) = &self.webhooks
            && let Err((field, reason)) = w.validate()
        {
            let mut path = vec!["webhooks"];
            path.extend(field.split('.'));
            err(&path, reason);
        }
        if let Some(k) = &self.recommendations_kafka
            && let Err((field, reason)) = k.validate()
        {
            let mut path = vec!["recommendations_kafka"];
            path.extend(field.split('.'));
            err(&path, reason);
        }
        if let Some(a) = &self.alerts {
            if let Err((field, reason)) = a.validate() {
                let mut path = vec!["alerts"];
                path.extend(field.split('.'));
                err(&path, reason);
            }
            if self.webhooks.is_none() {
                err(
                    &["alerts"],
                    "alerts are sent through webhooks: add a `webhooks:` section".into(),
                );
            }
        }
        for (name, f) in &self.forecasts {
            if let Err((field, reason)) = f.validate() {
                err(&["forecasts", name, &field], reason);
            }
        }
        let mut transform_issues = false;
        for (id, t) in &self.transforms {
            transform_issues |= t.validate_body().is_err();
            if t.inputs.is_empty() {
                err(
                    &["transforms", id, "inputs"],
                    "must name at least one source or transform".into(),
                );
            }
            for input in &t.inputs {
                let known = self.sources.contains_key(input) || self.transforms.contains_key(input);
                if !known {
                    err(
                        &["transforms", id, "inputs"],
                        format!("unknown input {input:?} (not a source or transform id)"),
                    );
                } else if matches!(t.body, TransformBody::Cost(_))
                    && !matches!(
                        self.transforms.get(input).map(|x| &x.body),
                        Some(TransformBody::Utilization(_))
                    )
                {
                    err(
                        &["transforms", id, "inputs"],
                        format!(
                            "a cost transform reads utilization transforms; {input:?} is not one"
                        ),
                    );
                } else if let (TransformBody::Cost(_), Some(TransformBody::Utilization(u))) =
                    (&t.body, self.transforms.get(input).map(|x| &x.body))
                    && matches!(u.window, crate::engine::config::WindowSpec::Sliding { .. })
                {
                    err(
                        &["transforms", id, "inputs"],
                        format!(
                            "{input:?} has a sliding window: overlapping windows would count each second of cost several times; give it a tumbling window"
                        ),
                    );
                } else if !matches!(t.body, TransformBody::Cost(_))
                    && !self.sources.contains_key(input)
                {
                    err(
                        &["transforms", id, "inputs"],
                        format!(
                            "{input:?} is a transform; window and utilization transforms read sources"
                        ),
                    );
                }
            }
            if let TransformBody::Utilization(u) = &t.body
                && u.pricing.is_some()
                && matches!(u.window, crate::engine::config::WindowSpec::Sliding { .. })
            {
                err(
                    &["transforms", id, "pricing"],
                    "cost columns need a tumbling window: overlapping sliding windows would count each second of cost several times".into(),
                );
            }
            if let Err(e) = t.validate_body() {
                match e {
                    crate::engine::EngineError::InvalidConfig { issues } => {
                        for issue in issues {
                            let mut path = vec!["transforms", id.as_str()];
                            // `matchers[1]` → locate the `matchers` key.
                            path.extend(
                                issue
                                    .path
                                    .split('.')
                                    .map(|p| p.split('[').next().unwrap_or(p))
                                    .filter(|p| !p.is_empty()),
                            );
                            err(&path, issue.reason);
                        }
                    }
                    other => err(&["transforms", id], other.to_string()),
                }
            }
        }
        if !self.transforms.is_empty() && !transform_issues {
            let engine: Vec<(String, crate::engine::EngineTransform)> = self
                .transforms
                .iter()
                .map(|(id, t)| (id.clone(), t.to_engine()))
                .collect();
            if let Err(e) = crate::engine::Engine::build(&engine) {
                err(&["transforms"], e.to_string());
            }
        }
        errs
    }

    /// The remote-write sources.
    pub fn remote_write_sources(&self) -> impl Iterator<Item = (&String, &RemoteWriteConfig)> {
        self.sources.iter().filter_map(|(id, s)| match s {
            SourceConfig::RemoteWrite(rw) => Some((id, rw)),
            _ => None,
        })
    }
}

/// serde_yaml appends " at line L column C" to messages; the location is
/// printed in front instead.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The first line at or after `from_line` (1-based) whose key is `key`.
fn find_key_after(text: &str, key: &str, from_line: usize) -> Option<(usize, usize)> {
    text.lines()
        .enumerate()
        .skip(from_line.saturating_sub(1))
        .find_map(|(i, raw)| {
            let trimmed = raw.trim_start().trim_start_matches("- ");
            let rest = trimmed.strip_prefix(key)?;
            rest.trim_start()
                .starts_with(':')
                .then(|| (i + 1, raw.len() - trimmed.len() + 1))
        })
}

/// Finds the 1-based (line, column) of the key at `path` in YAML `text`
/// (block style). A numeric segment is the n-th (0-based) `- ` item of the
/// list under the previous key. Falls back to the deepest prefix found, then
/// (0, 0).
pub fn locate(text: &str, path: &[&str]) -> (usize, usize) {
    struct Entry {
        indent: usize,
        key: String,
        item: bool,
        items_seen: usize,
    }
    let mut stack: Vec<Entry> = Vec::new();
    let mut best = (0usize, 0usize, 0usize); // (depth, line, col)
    let mut consider = |stack: &Vec<Entry>, line: usize, col: usize| -> bool {
        let depth = stack.len();
        if depth <= path.len() && stack.iter().zip(path).all(|(e, p)| e.key == *p) && depth > best.0
        {
            best = (depth, line, col);
            return depth == path.len();
        }
        false
    };
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut indent = raw.len() - trimmed.len();
        let mut body = trimmed;
        while body == "-" || body.starts_with("- ") {
            // A list item of the key at or above this indent.
            while stack
                .last()
                .is_some_and(|e| e.indent > indent || (e.item && e.indent == indent))
            {
                stack.pop();
            }
            let n = stack.last_mut().map(|e| {
                e.items_seen += 1;
                e.items_seen - 1
            });
            stack.push(Entry {
                indent,
                key: n.unwrap_or(0).to_string(),
                item: true,
                items_seen: 0,
            });
            if consider(&stack, i + 1, indent + 1) {
                return (best.1, best.2);
            }
            indent += 2;
            body = body.get(2..).unwrap_or("").trim_start();
        }
        let Some(colon) = body.find(':') else {
            continue;
        };
        let key = body[..colon].trim().trim_matches(|c| c == '"' || c == '\'');
        if key.is_empty() || key.contains(' ') {
            continue;
        }
        while stack
            .last()
            .is_some_and(|e| e.indent > indent || (!e.item && e.indent == indent))
        {
            stack.pop();
        }
        stack.push(Entry {
            indent,
            key: key.to_string(),
            item: false,
            items_seen: 0,
        });
        if consider(&stack, i + 1, indent + 1) {
            break;
        }
    }
    (best.1, best.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(yaml: &str) -> Vec<String> {
        match PipelineConfig::load_str(yaml, Path::new("p.yaml")) {
            Ok(_) => vec![],
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn embedded_default_is_valid() {
        let cfg =
            PipelineConfig::load_str(DEFAULT_PIPELINE, Path::new("default.yaml")).expect("valid");
        assert_eq!(cfg.api.listen, "127.0.0.1:9201");
        assert_eq!(cfg.remote_write_sources().count(), 1);
    }

    #[test]
    fn unknown_field_names_file_line_and_column() {
        let e = errs("sources:\n  prom:\n    type: remote_write\n    max_body_byte: 10\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("p.yaml:4:"), "{e:?}");
        assert!(e[0].contains("unknown field `max_body_byte`"), "{e:?}");
    }

    #[test]
    fn unknown_source_type_is_reported() {
        let e = errs("sources:\n  prom:\n    type: remote_wrte\n");
        assert!(e[0].contains("unknown variant `remote_wrte`"), "{e:?}");
        assert!(e[0].starts_with("p.yaml:"), "{e:?}");
    }

    #[test]
    fn semantic_errors_point_at_the_key() {
        let yaml = "api:\n  listen: nowhere\nstorage:\n  wal:\n    segment_max_bytes: 10\nsources:\n  a:\n    type: remote_write\n    path: nope\n";
        let e = errs(yaml);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("p.yaml:2:3: api.listen:"), "{e:?}");
        assert!(
            e[1].starts_with("p.yaml:5:5: storage.wal.segment_max_bytes:"),
            "{e:?}"
        );
        assert!(e[2].starts_with("p.yaml:9:5: sources.a.path:"), "{e:?}");
    }

    #[test]
    fn demo_pipeline_is_valid() {
        let dir = tempfile::tempdir().expect("tmp");
        let trace = dir.path().join("trace.csv");
        std::fs::write(&trace, DEMO_TRACE).expect("write");
        let cfg = PipelineConfig::load_str(&demo_pipeline(&trace), Path::new("demo.yaml"))
            .expect("valid");
        assert!(cfg.scaling.is_some() && !cfg.transforms.is_empty());
    }

    #[test]
    fn shipped_pipelines_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).expect("pipelines/") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "yaml") && !p.ends_with("demo.yaml") {
                if let Err(errs) = PipelineConfig::load(&p) {
                    panic!("{}: {errs:?}", p.display());
                }
                n += 1;
            }
        }
        assert!(n >= 2);
    }

    #[test]
    fn locate_follows_list_items() {
        let yaml = "sources:\n  s:\n    static_configs:\n      - targets: [a]\n      - targets:\n          - b\n          - c\n    other: 1\n";
        assert_eq!(
            locate(yaml, &["sources", "s", "static_configs", "1", "targets"]),
            (5, 9)
        );
        assert_eq!(
            locate(
                yaml,
                &["sources", "s", "static_configs", "1", "targets", "1"]
            ),
            (7, 11)
        );
        assert_eq!(locate(yaml, &["sources", "s", "other"]), (8, 5));
        let flush_left = "queries:\n- name: a\n- name: b\n  period_secs: 0\n";
        assert_eq!(locate(flush_left, &["queries", "1", "period_secs"]), (4, 3));
        // Unknown leaf: the deepest known prefix.
        assert_eq!(
            locate(yaml, &["sources", "s", "librdkafka_options", "x"]),
            (2, 3)
        );
    }

    #[test]
    fn transforms_are_validated_with_locations() {
        let yaml = "sources:\n  p:\n    type: remote_write\ntransforms:\n  t:\n    type: window\n    inputs: [nope]\n    metric: m\n    window: { type: tumbling, size_secs: 0 }\n    aggregates: [avg]\n";
        let e = errs(yaml);
        assert!(
            e.iter()
                .any(|x| x.starts_with("p.yaml:7:5: transforms.t.inputs: unknown input \"nope\"")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|x| x.starts_with("p.yaml:9:5: transforms.t.window")),
            "{e:?}"
        );
        let typo = "sources:\n  p:\n    type: remote_write\ntransforms:\n  t:\n    type: window\n    inputs: [p]\n    metric: m\n    window: { type: tumbling, size_secs: 60 }\n    aggregates: [avg]\n    group_bi: [x]\n";
        let e = errs(typo);
        assert!(
            e.len() == 1
                && e[0].contains("unknown field `group_bi`")
                && e[0].starts_with("p.yaml:11:"),
            "{e:?}"
        );
        let ok = typo.replace("group_bi", "group_by");
        assert!(errs(&ok).is_empty(), "{:?}", errs(&ok));
    }

    #[test]
    fn cost_needs_tumbling_windows() {
        let util = |window: &str, pricing: &str| {
            format!(
                "sources:\n  p:\n    type: remote_write\ntransforms:\n  u:\n    type: utilization\n    inputs: [p]\n    window: {window}\n    usage: {{ metric: m }}\n{pricing}  c:\n    type: cost\n    inputs: [u]\n"
            )
        };
        let sliding = "{ type: sliding, size_secs: 300, slide_secs: 60 }";
        let tumbling = "{ type: tumbling, size_secs: 60 }";
        let e = errs(&util(sliding, ""));
        assert!(
            e.len() == 1
                && e[0].starts_with("p.yaml:12:5: transforms.c.inputs:")
                && e[0].contains("sliding window"),
            "{e:?}"
        );
        let priced = "    pricing: { cpu_core_hour_usd: 0.03 }\n";
        let e = errs(&util(sliding, priced));
        assert!(
            e.iter()
                .any(|x| x.starts_with("p.yaml:10:5: transforms.u.pricing:")),
            "{e:?}"
        );
        assert!(
            errs(&util(tumbling, priced)).is_empty(),
            "{:?}",
            errs(&util(tumbling, priced))
        );
    }

    #[test]
    fn auth_needs_exactly_one_token_source() {
        let e = errs("api:\n  auth:\n    bearer_token: a\n    bearer_token_file: /x\n");
        assert!(e[0].contains("not both"), "{e:?}");
        let cfg =
            PipelineConfig::load_str("api:\n  auth:\n    bearer_token: s3cret\n", Path::new("p"))
                .expect("ok");
        assert_eq!(
            cfg.api.auth.expect("auth").token().expect("token"),
            "s3cret"
        );
    }
}
