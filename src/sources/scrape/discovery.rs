//! Target discovery: `static_configs` and `file_sd_configs`, and turning
//! target groups into scrape targets (target relabeling, `job`/`instance`).
//!
//! file_sd files use Prometheus's format, JSON or YAML (chosen by the file
//! extension: `.json`, `.yml`, `.yaml`):
//!
//! ```json
//! [ { "targets": ["10.0.0.1:9100", "10.0.0.2:9100"], "labels": { "env": "prod" } } ]
//! ```
//!
//! Files are re-read when their modification time or size changes (polled
//! every `refresh_interval_secs`). A file that fails to parse keeps its
//! previous targets (and the failure is logged and counted), like Prometheus.
//! `*` and `?` wildcards are allowed in the file name (last path component).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::parse::is_label_name;
use super::relabel::{LabelMap, Relabeler};
use crate::schema::{Label, series_id};

/// A group of targets sharing labels (`static_configs` entry, or one entry of
/// a file_sd file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetGroup {
    /// `host:port` addresses.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels added to every target of the group.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A `file_sd_configs` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Files (JSON or YAML) to read target groups from; the file name may
    /// contain `*` and `?` wildcards.
    pub files: Vec<PathBuf>,
    /// How often the files are checked for changes, seconds. Default 30.
    #[serde(default = "default_refresh_interval_secs")]
    pub refresh_interval_secs: f64,
}

fn default_refresh_interval_secs() -> f64 {
    30.0
}

/// Checks a `host:port` target address; `Err(reason)` when it is not one.
pub fn check_address(addr: &str) -> Result<(), String> {
    if addr.contains("://") {
        return Err(format!(
            "{addr:?} must be host:port without a scheme (set `scheme` instead)"
        ));
    }
    if addr.contains('/') {
        return Err(format!(
            "{addr:?} must be host:port without a path (set `metrics_path` instead)"
        ));
    }
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let Some((h, p)) = rest.split_once("]:") else {
            return Err(format!("{addr:?} is not [ipv6]:port"));
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{addr:?}: {h:?} is not an IPv6 address"));
        }
        (h, p)
    } else {
        match addr.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => return Err(format!("{addr:?} has no port (want host:port)")),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{addr:?} has an invalid host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{addr:?} has an invalid port {port:?}")),
    }
}

/// Reads one file_sd file. Errors name the file.
pub fn read_file(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let groups: Vec<TargetGroup> = match ext.as_str() {
        "json" => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?,
        "yml" | "yaml" => {
            if text.trim().is_empty() {
                Vec::new()
            } else {
                serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
        }
        _ => {
            return Err(format!(
                "{}: unknown extension (want .json, .yml or .yaml)",
                path.display()
            ));
        }
    };
    for g in &groups {
        for k in g.labels.keys() {
            if !is_label_name(k) {
                return Err(format!("{}: invalid label name {k:?}", path.display()));
            }
        }
    }
    Ok(groups)
}

/// `*` and `?` matching of a file name.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard(&pattern[1..], name) || (!name.is_empty() && wildcard(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => wildcard(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// The files a pattern names now (sorted). Without wildcards: the path itself,
/// whether or not it exists (so its absence is reported).
pub fn expand(pattern: &Path) -> Vec<PathBuf> {
    let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else {
        return vec![pattern.to_path_buf()];
    };
    if !name.contains(['*', '?']) {
        return vec![pattern.to_path_buf()];
    }
    let dir = match pattern.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| wildcard(name.as_bytes(), n.as_bytes()))
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[derive(Debug, Clone)]
struct FileState {
    stamp: Option<(SystemTime, u64)>,
    groups: Vec<TargetGroup>,
}

/// Polls file_sd files and keeps the last good target groups of each.
#[derive(Debug, Default)]
pub struct FileSd {
    files: BTreeMap<PathBuf, FileState>,
}

/// What one refresh did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RefreshOutcome {
    /// True when any file's groups changed (or files appeared/disappeared).
    pub changed: bool,
    /// Files that failed to read or parse (their previous groups are kept).
    pub errors: Vec<String>,
}

impl FileSd {
    /// Re-reads every file whose mtime or size changed.
    pub fn refresh(&mut self, cfgs: &[FileSdConfig]) -> RefreshOutcome {
        let mut out = RefreshOutcome::default();
        let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
        for cfg in cfgs {
            for pattern in &cfg.files {
                for path in expand(pattern) {
                    seen.insert(path.clone());
                    let stamp = std::fs::metadata(&path)
                        .ok()
                        .and_then(|m| Some((m.modified().ok()?, m.len())));
                    let prev = self.files.get(&path);
                    if let Some(p) = prev
                        && p.stamp.is_some()
                        && p.stamp == stamp
                    {
                        continue;
                    }
                    match read_file(&path) {
                        Ok(groups) => {
                            let changed = prev.is_none_or(|p| p.groups != groups);
                            out.changed |= changed;
                            self.files.insert(path, FileState { stamp, groups });
                        }
                        Err(e) => {
                            out.errors.push(e);
                            // Keep the last good groups; retry next time.
                            let groups = prev.map(|p| p.groups.clone()).unwrap_or_default();
                            self.files.insert(
                                path,
                                FileState {
                                    stamp: None,
                                    groups,
                                },
                            );
                        }
                    }
                }
            }
        }
        let before = self.files.len();
        self.files.retain(|p, _| seen.contains(p));
        out.changed |= self.files.len() != before;
        out
    }

    /// Current groups with the file each came from.
    pub fn groups(&self) -> impl Iterator<Item = (&Path, &TargetGroup)> {
        self.files
            .iter()
            .flat_map(|(p, s)| s.groups.iter().map(move |g| (p.as_path(), g)))
    }
}

/// A resolved scrape target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// URL scraped.
    pub url: String,
    /// Labels added to every sample (sorted; `job`, `instance`, group labels,
    /// relabeling results; no `__` labels).
    pub labels: Vec<Label>,
    /// Stable identity: hash of URL and labels (also seeds the scrape offset).
    pub key: u64,
}

/// Settings that shape every target of a job.
#[derive(Debug, Clone)]
pub struct TargetDefaults<'a> {
    /// `job` label.
    pub job: &'a str,
    /// `__scheme__`.
    pub scheme: &'a str,
    /// `__metrics_path__`.
    pub metrics_path: &'a str,
    /// URL query parameters (`__param_<name>`).
    pub params: &'a BTreeMap<String, String>,
    /// Scrape interval, seconds (`__scrape_interval__`).
    pub interval_secs: f64,
    /// Scrape timeout, seconds (`__scrape_timeout__`).
    pub timeout_secs: f64,
}

fn fmt_duration(secs: f64) -> String {
    if secs.fract() == 0.0 {
        format!("{}s", secs as u64)
    } else {
        format!("{}ms", (secs * 1000.0).round() as u64)
    }
}

fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds the targets of `groups` (with the file each came from, if any):
/// adds the `__` labels, runs target relabeling, sets `instance` to
/// `__address__` when absent, builds the URL and drops `__` labels. Targets
/// without a valid address after relabeling are skipped (returned as errors).
pub fn build_targets<'g>(
    groups: impl IntoIterator<Item = (Option<&'g Path>, &'g TargetGroup)>,
    d: &TargetDefaults<'_>,
    relabel: &Relabeler,
) -> (Vec<Target>, Vec<String>) {
    let mut out: Vec<Target> = Vec::new();
    let mut keys: HashMap<u64, ()> = HashMap::new();
    let mut errors = Vec::new();
    for (file, g) in groups {
        for addr in &g.targets {
            let mut l: LabelMap = g.labels.clone();
            l.insert("job".into(), d.job.into());
            l.insert("__address__".into(), addr.clone());
            l.insert("__scheme__".into(), d.scheme.into());
            l.insert("__metrics_path__".into(), d.metrics_path.into());
            l.insert("__scrape_interval__".into(), fmt_duration(d.interval_secs));
            l.insert("__scrape_timeout__".into(), fmt_duration(d.timeout_secs));
            for (k, v) in d.params {
                l.insert(format!("__param_{k}"), v.clone());
            }
            if let Some(f) = file {
                l.insert("__meta_filepath".into(), f.display().to_string());
            }
            if !relabel.apply(&mut l) {
                continue;
            }
            let Some(address) = l.get("__address__").cloned() else {
                errors.push(format!("target {addr:?}: no __address__ after relabeling"));
                continue;
            };
            if let Err(e) = check_address(&address) {
                errors.push(format!("target {addr:?}: {e}"));
                continue;
            }
            let scheme = l
                .get("__scheme__")
                .cloned()
                .unwrap_or_else(|| "http".into());
            let mut path = l
                .get("__metrics_path__")
                .cloned()
                .unwrap_or_else(|| "/metrics".into());
            if !path.starts_with('/') {
                path.insert(0, '/');
            }
            let params: Vec<String> = l
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("__param_")
                        .map(|p| format!("{}={}", query_escape(p), query_escape(v)))
                })
                .collect();
            let mut url = format!("{scheme}://{address}{path}");
            if !params.is_empty() {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&params.join("&"));
            }
            l.entry("instance".into()).or_insert(address);
            let labels: Vec<Label> = l
                .into_iter()
                .filter(|(k, v)| !k.starts_with("__") && !v.is_empty())
                .collect();
            let key = series_id(&url, &labels);
            if keys.insert(key, ()).is_none() {
                out.push(Target { url, labels, key });
            }
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::super::relabel::RelabelConfig;
    use super::*;

    fn defaults(params: &BTreeMap<String, String>) -> TargetDefaults<'_> {
        TargetDefaults {
            job: "node",
            scheme: "http",
            metrics_path: "/metrics",
            params,
            interval_secs: 15.0,
            timeout_secs: 0.5,
        }
    }

    #[test]
    fn addresses() {
        for ok in ["127.0.0.1:9100", "db-1.example:80", "[::1]:9100"] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://a:1",
            "a:1/metrics",
            "a",
            "a:0",
            "a:99999",
            ":80",
            "[zz]:1",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_get_job_instance_and_relabeling() {
        let groups = [TargetGroup {
            targets: vec!["a:1".into(), "b:2".into(), "c:3".into()],
            labels: [("env".to_string(), "prod".to_string())].into(),
        }];
        let rules: Vec<RelabelConfig> = serde_yaml::from_str(
            "- source_labels: [__address__]\n  regex: 'c:.*'\n  action: drop\n\
             - source_labels: [__address__]\n  regex: 'b:(.*)'\n  target_label: __metrics_path__\n  replacement: '/m$1'\n\
             - source_labels: [__address__]\n  regex: '([^:]+):.*'\n  target_label: instance\n",
        )
        .expect("yaml");
        let relabel = Relabeler::new(&rules).expect("rules");
        let params: BTreeMap<String, String> = [("module".to_string(), "a b".to_string())].into();
        let (t, errs) = build_targets(
            groups.iter().map(|g| (None, g)),
            &defaults(&params),
            &relabel,
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].url, "http://a:1/metrics?module=a%20b");
        assert_eq!(t[1].url, "http://b:2/m2?module=a%20b");
        let l = |v: &[(&str, &str)]| -> Vec<Label> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            t[0].labels,
            l(&[("env", "prod"), ("instance", "a"), ("job", "node")])
        );
        assert_ne!(t[0].key, t[1].key);
    }

    #[test]
    fn wildcards() {
        assert!(wildcard(b"*.json", b"a.json"));
        assert!(wildcard(b"t?.yml", b"t1.yml"));
        assert!(!wildcard(b"*.json", b"a.yaml"));
        assert!(wildcard(b"*", b""));
    }

    #[test]
    fn file_sd_reloads_on_change_and_keeps_last_good() {
        let dir = tempfile::tempdir().expect("tmp");
        let json = dir.path().join("a.json");
        let yaml = dir.path().join("b.yaml");
        std::fs::write(&json, r#"[{"targets":["h1:1"],"labels":{"env":"x"}}]"#).expect("write");
        std::fs::write(&yaml, "- targets: ['h2:2', 'h3:3']\n").expect("write");
        let cfgs = vec![FileSdConfig {
            files: vec![dir.path().join("*.json"), yaml.clone()],
            refresh_interval_secs: 1.0,
        }];
        let mut sd = FileSd::default();
        let o = sd.refresh(&cfgs);
        assert!(o.changed && o.errors.is_empty(), "{o:?}");
        let count = |sd: &FileSd| sd.groups().map(|(_, g)| g.targets.len()).sum::<usize>();
        assert_eq!(count(&sd), 3);
        // No change: nothing re-read.
        assert_eq!(sd.refresh(&cfgs), RefreshOutcome::default());
        // A change of content (and size) is picked up.
        std::fs::write(&yaml, "- targets: ['h2:2']\n  labels: {team: db}\n").expect("write");
        let o = sd.refresh(&cfgs);
        assert!(o.changed, "{o:?}");
        assert_eq!(count(&sd), 2);
        // A broken file keeps its last good targets and reports the error.
        std::fs::write(&yaml, "- targets: [unterminated\n").expect("write");
        let o = sd.refresh(&cfgs);
        assert!(!o.changed);
        assert_eq!(o.errors.len(), 1, "{o:?}");
        assert!(o.errors[0].contains("b.yaml"), "{o:?}");
        assert_eq!(count(&sd), 2);
        // A new file matching the wildcard appears; a removed file goes away.
        std::fs::write(dir.path().join("c.json"), r#"[{"targets":["h4:4"]}]"#).expect("write");
        std::fs::remove_file(&json).expect("rm");
        let o = sd.refresh(&cfgs);
        assert!(o.changed);
        let files: Vec<String> = sd
            .groups()
            .map(|(p, _)| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert!(files.contains(&"c.json".to_string()), "{files:?}");
        assert!(!files.contains(&"a.json".to_string()), "{files:?}");
        // Bad label names are refused.
        std::fs::write(
            dir.path().join("c.json"),
            r#"[{"targets":["h4:4"],"labels":{"a-b":"1"}}]"#,
        )
        .expect("write");
        let o = sd.refresh(&cfgs);
        assert_eq!(o.errors.len(), 2, "{o:?}");
    }
}
