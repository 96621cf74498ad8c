//! Prometheus-style relabeling: `replace`, `keep`, `drop`, `labelmap`,
//! `labeldrop` and `labelkeep`, with regexes anchored at both ends like
//! Prometheus's (`regex: foo` matches exactly `foo`).
//!
//! The same rules serve `relabel_configs` (on a target's labels before it is
//! scraped: `__address__`, `__scheme__`, `__metrics_path__`, `job`, file_sd
//! labels...) and `metric_relabel_configs` (on every scraped sample, with its
//! name in `__name__`).

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::parse::is_label_name;

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Set `target_label` to `replacement` (with `$1`, `${name}` expanded)
    /// when `regex` matches the joined `source_labels`; an empty result
    /// removes the label.
    #[default]
    Replace,
    /// Drop the target/sample unless `regex` matches the joined `source_labels`.
    Keep,
    /// Drop the target/sample when `regex` matches the joined `source_labels`.
    Drop,
    /// Copy every label whose name matches `regex` to the name given by
    /// `replacement` (expanded).
    Labelmap,
    /// Remove every label whose name matches `regex`.
    Labeldrop,
    /// Remove every label whose name does not match `regex`.
    Labelkeep,
}

/// One relabeling rule, as in Prometheus's `relabel_config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` and matched by `regex`.
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Separator for joining `source_labels`. Default `;`.
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Regular expression (Rust `regex` syntax, anchored). Default `(.*)`.
    #[serde(default = "default_regex")]
    pub regex: String,
    /// Label written by `replace` (may use `$1`...).
    #[serde(default)]
    pub target_label: Option<String>,
    /// Replacement for `replace` and `labelmap`. Default `$1`.
    #[serde(default = "default_replacement")]
    pub replacement: String,
    /// The action. Default `replace`.
    #[serde(default)]
    pub action: Action,
}

fn default_separator() -> String {
    ";".into()
}
fn default_regex() -> String {
    "(.*)".into()
}
fn default_replacement() -> String {
    "$1".into()
}

impl Default for RelabelConfig {
    fn default() -> Self {
        Self {
            source_labels: Vec::new(),
            separator: default_separator(),
            regex: default_regex(),
            target_label: None,
            replacement: default_replacement(),
            action: Action::Replace,
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    cfg: RelabelConfig,
    re: Regex,
}

/// Compiled rules.
#[derive(Debug, Clone, Default)]
pub struct Relabeler {
    rules: Vec<Rule>,
}

/// Labels being relabeled: name → value (`__name__` included for samples).
pub type LabelMap = BTreeMap<String, String>;

impl Relabeler {
    /// Compiles and checks `cfgs`. Errors are `(field path, reason)` with the
    /// path relative to the list, e.g. `2.regex` (list indices are 0-based path segments).
    pub fn new(cfgs: &[RelabelConfig]) -> Result<Relabeler, (String, String)> {
        let mut rules = Vec::with_capacity(cfgs.len());
        for (i, cfg) in cfgs.iter().enumerate() {
            let at = |f: &str| format!("{i}.{f}");
            let re = Regex::new(&format!("^(?:{})$", cfg.regex))
                .map_err(|e| (at("regex"), format!("invalid regex {:?}: {e}", cfg.regex)))?;
            for (j, l) in cfg.source_labels.iter().enumerate() {
                if !is_label_name(l) {
                    return Err((
                        format!("{i}.source_labels.{j}"),
                        format!("{l:?} is not a valid label name"),
                    ));
                }
            }
            match cfg.action {
                Action::Replace => match &cfg.target_label {
                    None => {
                        return Err((at("target_label"), "required by action replace".into()));
                    }
                    Some(t) if !t.contains('$') && !is_label_name(t) => {
                        return Err((
                            at("target_label"),
                            format!("{t:?} is not a valid label name"),
                        ));
                    }
                    Some(_) => {}
                },
                Action::Keep | Action::Drop => {
                    if cfg.source_labels.is_empty() {
                        return Err((
                            at("source_labels"),
                            format!("required by action {:?}", cfg.action).to_lowercase(),
                        ));
                    }
                }
                Action::Labelmap | Action::Labeldrop | Action::Labelkeep => {
                    if cfg.target_label.is_some() {
                        return Err((
                            at("target_label"),
                            "not used by label* actions; remove it".into(),
                        ));
                    }
                }
            }
            rules.push(Rule {
                cfg: cfg.clone(),
                re,
            });
        }
        Ok(Relabeler { rules })
    }

    /// True when there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies every rule in order. Returns false when a `keep`/`drop` rule
    /// dropped the labels.
    pub fn apply(&self, labels: &mut LabelMap) -> bool {
        for r in &self.rules {
            let joined = || {
                r.cfg
                    .source_labels
                    .iter()
                    .map(|l| labels.get(l).map(String::as_str).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(&r.cfg.separator)
            };
            match r.cfg.action {
                Action::Keep => {
                    if !r.re.is_match(&joined()) {
                        return false;
                    }
                }
                Action::Drop => {
                    if r.re.is_match(&joined()) {
                        return false;
                    }
                }
                Action::Replace => {
                    let src = joined();
                    let Some(caps) = r.re.captures(&src) else {
                        continue;
                    };
                    let Some(target) = &r.cfg.target_label else {
                        continue;
                    };
                    let mut name = String::new();
                    caps.expand(target, &mut name);
                    if !is_label_name(&name) {
                        continue; // Prometheus skips invalid expanded names
                    }
                    let mut value = String::new();
                    caps.expand(&r.cfg.replacement, &mut value);
                    if value.is_empty() {
                        labels.remove(&name);
                    } else {
                        labels.insert(name, value);
                    }
                }
                Action::Labelmap => {
                    let mut add = Vec::new();
                    for (k, v) in labels.iter() {
                        if let Some(caps) = r.re.captures(k) {
                            let mut name = String::new();
                            caps.expand(&r.cfg.replacement, &mut name);
                            if is_label_name(&name) {
                                add.push((name, v.clone()));
                            }
                        }
                    }
                    labels.extend(add);
                }
                Action::Labeldrop => labels.retain(|k, _| !r.re.is_match(k)),
                Action::Labelkeep => labels.retain(|k, _| r.re.is_match(k)),
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lm(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn rules(yaml: &str) -> Relabeler {
        let cfgs: Vec<RelabelConfig> = serde_yaml::from_str(yaml).expect("yaml");
        Relabeler::new(&cfgs).expect("valid rules")
    }

    #[test]
    fn replace_with_groups_and_removal() {
        let r = rules(
            "- source_labels: [__address__]\n  regex: '([^:]+):(\\d+)'\n  target_label: host\n  replacement: '${1}'\n\
             - source_labels: [__address__]\n  regex: '[^:]+:(\\d+)'\n  target_label: port\n\
             - source_labels: [nothing]\n  target_label: host\n  regex: ''\n  replacement: ''\n",
        );
        let mut l = lm(&[("__address__", "db-1:9100")]);
        assert!(r.apply(&mut l));
        // The third rule matched the empty string and removed `host`.
        assert_eq!(l, lm(&[("__address__", "db-1:9100"), ("port", "9100")]));
    }

    #[test]
    fn regex_is_anchored() {
        let r = rules("- source_labels: [job]\n  regex: node\n  action: keep\n");
        assert!(r.apply(&mut lm(&[("job", "node")])));
        assert!(!r.apply(&mut lm(&[("job", "node2")])));
        assert!(!r.apply(&mut lm(&[("job", "xnode")])));
    }

    #[test]
    fn keep_drop_on_joined_labels() {
        let r = rules(
            "- source_labels: [__name__, mode]\n  separator: '/'\n  regex: 'node_cpu_seconds_total/(idle|user)'\n  action: keep\n\
             - source_labels: [cpu]\n  regex: '1'\n  action: drop\n",
        );
        let s = |name: &str, mode: &str, cpu: &str| {
            lm(&[("__name__", name), ("mode", mode), ("cpu", cpu)])
        };
        assert!(r.apply(&mut s("node_cpu_seconds_total", "idle", "0")));
        assert!(!r.apply(&mut s("node_cpu_seconds_total", "system", "0")));
        assert!(!r.apply(&mut s("node_cpu_seconds_total", "idle", "1")));
        assert!(!r.apply(&mut s("node_load1", "", "0")));
    }

    #[test]
    fn label_actions() {
        let r = rules(
            "- action: labelmap\n  regex: '__meta_(.+)'\n\
             - action: labeldrop\n  regex: '__meta_.*'\n\
             - action: labelkeep\n  regex: '(zone|team|__.*)'\n",
        );
        let mut l = lm(&[
            ("__meta_zone", "a"),
            ("__meta_team", "x"),
            ("other", "1"),
            ("__address__", "h:1"),
        ]);
        assert!(r.apply(&mut l));
        assert_eq!(
            l,
            lm(&[("__address__", "h:1"), ("team", "x"), ("zone", "a")])
        );
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |yaml: &str| {
            let cfgs: Vec<RelabelConfig> = serde_yaml::from_str(yaml).expect("yaml");
            Relabeler::new(&cfgs).expect_err(yaml)
        };
        assert_eq!(
            bad("- {}\n- regex: '(a'\n  target_label: x\n").0,
            "0.target_label"
        );
        let e = bad("- target_label: x\n- regex: '(a'\n  target_label: x\n");
        assert_eq!(e.0, "1.regex");
        assert!(e.1.contains("invalid regex"), "{e:?}");
        assert_eq!(bad("- action: keep\n").0, "0.source_labels");
        assert_eq!(
            bad("- source_labels: ['a-b']\n  target_label: x\n").0,
            "0.source_labels.0"
        );
        assert_eq!(bad("- target_label: '1x'\n").0, "0.target_label");
        assert!(serde_yaml::from_str::<Vec<RelabelConfig>>("- action: hashmod\n").is_err());
    }
}
