//! Actuators: carry out scaling decisions on real targets, safely.
//!
//! | backend | module | target kind |
//! |---|---|---|
//! | dry-run (default) | [`dry_run`] | any: records what would be done |
//! | AWS Auto Scaling | [`aws_asg`] | `aws_asg`: `DescribeAutoScalingGroups` + `SetDesiredCapacity` |
//! | Kubernetes | [`k8s`] | `k8s_deployment`: `GET`/`PATCH …/deployments/{name}/scale` |
//!
//! Every backend is wrapped in a [`safety::SafeActuator`], the actuator layer's own guard
//! whatever the recommender says: the global kill switch, min/max (policy and, for AWS, the
//! group's own), the max step per action and the cooldowns. [`build`] returns that wrapper;
//! it implements [`crate::recommend::Actuator`], so [`crate::recommend::dispatch`] can call
//! it, and records one [`ActionRecord`] per attempt (ok, blocked or failed, with a reason).
//!
//! Configuration (`actuators:` in the pipeline file, see [`ActuatorConfig`]):
//!
//! ```yaml
//! actuators:
//!   dry_run: false               # default true: only record what would be done
//!   aws: { region: us-east-1, endpoint_url: http://127.0.0.1:5000, honor_cooldown: true }
//!   kubernetes: { kubeconfig: ~/.kube/config, context: prod, max_conflict_retries: 3 }
//! ```

pub mod aws_asg;
pub mod dry_run;
pub mod k8s;
pub mod safety;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::recommend::policy::{Mode, TargetKind, TargetPolicy};

pub use safety::SafeActuator;

/// Errors of the actuators. Every message names the target and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    /// The configuration or the target's policy is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// Credentials could not be found or read.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The scaled object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The API refused the credentials (HTTP 401).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The credentials are valid but not allowed to do this (HTTP 403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Optimistic-concurrency conflicts did not resolve within the retries (HTTP 409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Any other API error (status and message).
    #[error("API error: {0}")]
    Api(String),
    /// The request could not be sent or the answer could not be read.
    #[error("transport: {0}")]
    Transport(String),
}

/// Result alias of the actuators.
pub type Result<T, E = ActuatorError> = std::result::Result<T, E>;

/// A boxed future of a backend call.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What a backend reports about a target before acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Desired replicas now, when the backend knows them.
    pub replicas: Option<u32>,
    /// The target system's own lower bound (an ASG's `MinSize`), if any.
    pub min: Option<u32>,
    /// The target system's own upper bound (an ASG's `MaxSize`), if any.
    pub max: Option<u32>,
}

/// A system that can read and set a target's replica count; wrapped by [`SafeActuator`].
pub trait Backend: Send + Sync {
    /// `dry_run`, `aws_asg` or `k8s`.
    fn name(&self) -> &str;
    /// Reads the current desired replicas (and the system's own bounds).
    fn observe<'a>(&'a self, target: &'a TargetPolicy) -> BackendFuture<'a, Observed>;
    /// Sets the desired replicas to `to` (already checked by the safety layer).
    fn scale<'a>(&'a self, target: &'a TargetPolicy, from: u32, to: u32) -> BackendFuture<'a, ()>;
}

/// The outcome of one attempted action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionResult {
    /// The backend accepted the change (or, dry-run, recorded it).
    Ok,
    /// The safety layer refused (kill switch, cooldown, limits leave nothing to do).
    Blocked,
    /// The backend failed.
    Failed,
}

impl ActionResult {
    /// Lower-case name (`ok`, `blocked`, `failed`), as used in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionResult::Ok => "ok",
            ActionResult::Blocked => "blocked",
            ActionResult::Failed => "failed",
        }
    }
}

/// One attempted action, successful or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// When the action was attempted.
    pub ts: DateTime<Utc>,
    /// Target name.
    pub target: String,
    /// Backend name (`dry_run`, `aws_asg`, `k8s`).
    pub actuator: String,
    /// `recommendation` (from the scaling loop) or `manual` (`POST /api/v1/scale`).
    pub source: String,
    /// Replicas before (as the backend reported them, else as the recommendation said).
    pub from_replicas: u32,
    /// Replicas asked for, before the safety layer.
    pub requested_replicas: u32,
    /// Replicas set (equal to `from_replicas` when blocked or failed).
    pub to_replicas: u32,
    /// Outcome.
    pub result: ActionResult,
    /// Why: the limits that changed the request, the block reason or the error.
    pub reason: String,
}

impl ActionRecord {
    /// `up`, `down` or `none` (from `from_replicas` to `requested_replicas`).
    pub fn direction(&self) -> &'static str {
        crate::recommend::limits::Direction::of(self.from_replicas, self.requested_replicas)
            .as_str()
    }
}

/// `actuators:` section of the pipeline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActuatorConfig {
    /// Only record what would be done (default `true`). Set `false` to let
    /// `forecast_and_scale` targets act through their real backend.
    #[serde(default = "default_true")]
    pub dry_run: bool,
    /// Settings of the AWS Auto Scaling backend (`kind: aws_asg` targets).
    #[serde(default)]
    pub aws: AwsActuatorConfig,
    /// Settings of the Kubernetes backend (`kind: k8s_deployment` targets).
    #[serde(default)]
    pub kubernetes: K8sActuatorConfig,
    /// Action records kept in memory per actuator (default 1000).
    #[serde(default = "default_history")]
    pub history: usize,
}

impl Default for ActuatorConfig {
    fn default() -> Self {
        ActuatorConfig {
            dry_run: true,
            aws: AwsActuatorConfig::default(),
            kubernetes: K8sActuatorConfig::default(),
            history: default_history(),
        }
    }
}

/// AWS Auto Scaling backend settings. Credentials come from the standard chain
/// (environment, shared files, SSO, web identity, ECS/EC2 metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsActuatorConfig {
    /// Default region (a target's `region` wins; else the chain's region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint override (moto, LocalStack, a VPC endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Named profile of the shared config files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// A shared credentials file to use instead of `~/.aws/credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// Pass `HonorCooldown` to `SetDesiredCapacity` (default `true`): AWS refuses the
    /// change while the group's own cooldown runs.
    #[serde(default = "default_true")]
    pub honor_cooldown: bool,
    /// Per-attempt timeout of an API call (default 30 s).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// SDK attempts per call, including the first (default 3).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

impl Default for AwsActuatorConfig {
    fn default() -> Self {
        AwsActuatorConfig {
            region: None,
            endpoint_url: None,
            profile: None,
            credentials_file: None,
            honor_cooldown: true,
            timeout_secs: default_timeout(),
            max_attempts: default_attempts(),
        }
    }
}

/// Kubernetes backend settings. Without `kubeconfig`, the in-cluster service account
/// (`/var/run/secrets/kubernetes.io/serviceaccount` + `KUBERNETES_SERVICE_HOST/PORT`) is
/// used, then `$KUBECONFIG`, then `~/.kube/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sActuatorConfig {
    /// Path of a kubeconfig file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig (default: its `current-context`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Per-request timeout (default 30 s).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Re-read-and-retry rounds on HTTP 409 (default 3).
    #[serde(default = "default_attempts")]
    pub max_conflict_retries: u32,
}

impl Default for K8sActuatorConfig {
    fn default() -> Self {
        K8sActuatorConfig {
            kubeconfig: None,
            context: None,
            timeout_secs: default_timeout(),
            max_conflict_retries: default_attempts(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_history() -> usize {
    1000
}
fn default_timeout() -> u64 {
    30
}
fn default_attempts() -> u32 {
    3
}

impl ActuatorConfig {
    /// Checks the settings; the error names the field (relative to `actuators`).
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        if let Some(u) = &self.aws.endpoint_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err((
                "aws.endpoint_url".into(),
                format!("must be an http:// or https:// URL, got {u:?}"),
            ));
        }
        if self
            .aws
            .region
            .as_deref()
            .is_some_and(|r| r.trim().is_empty())
        {
            return Err(("aws.region".into(), "must not be empty".into()));
        }
        if self.aws.timeout_secs == 0 {
            return Err(("aws.timeout_secs".into(), "must be at least 1".into()));
        }
        if self.aws.max_attempts == 0 {
            return Err(("aws.max_attempts".into(), "must be at least 1".into()));
        }
        if self.kubernetes.timeout_secs == 0 {
            return Err((
                "kubernetes.timeout_secs".into(),
                "must be at least 1".into(),
            ));
        }
        if self
            .kubernetes
            .context
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return Err(("kubernetes.context".into(), "must not be empty".into()));
        }
        if self.history == 0 {
            return Err(("history".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

/// Builds the actuator of `target`: its backend (dry-run when `cfg.dry_run`, else by the
/// target's kind) wrapped in the safety layer sharing the global `paused` switch.
///
/// AWS clients are created here (region and credentials are resolved lazily by the SDK);
/// Kubernetes credentials are read here, so a missing token or kubeconfig is reported at
/// start-up, not at the first action.
pub async fn build(
    target: &TargetPolicy,
    cfg: &ActuatorConfig,
    paused: Arc<AtomicBool>,
) -> Result<SafeActuator> {
    let backend: Arc<dyn Backend> = if cfg.dry_run {
        Arc::new(dry_run::DryRun::new())
    } else {
        match target.kind {
            TargetKind::AwsAsg => {
                Arc::new(aws_asg::AwsAsg::connect(&cfg.aws, target.region.as_deref()).await?)
            }
            TargetKind::K8sDeployment => Arc::new(k8s::K8s::from_config(&cfg.kubernetes)?),
            TargetKind::None => Arc::new(dry_run::DryRun::new()),
        }
    };
    Ok(SafeActuator::new(backend, paused).with_history(cfg.history))
}

/// Builds the actuators of every target that may act (`mode: forecast_and_scale` and a
/// kind other than `none`), keyed by target name; the other targets get none (dispatch
/// never calls an actuator for them). The error names the target.
pub async fn build_all(
    targets: &[TargetPolicy],
    cfg: &ActuatorConfig,
    paused: Arc<AtomicBool>,
) -> std::result::Result<BTreeMap<String, Arc<SafeActuator>>, (String, ActuatorError)> {
    let mut out = BTreeMap::new();
    for t in targets {
        if t.mode != Mode::ForecastAndScale || t.kind == TargetKind::None {
            continue;
        }
        let a = build(t, cfg, paused.clone())
            .await
            .map_err(|e| (t.name.clone(), e))?;
        out.insert(t.name.clone(), Arc::new(a));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: ActuatorConfig = serde_yaml::from_str("{}").expect("empty is valid");
        assert!(c.dry_run);
        assert!(c.aws.honor_cooldown);
        assert_eq!(c.kubernetes.max_conflict_retries, 3);
        assert_eq!(c.validate(), Ok(()));
        assert!(serde_yaml::from_str::<ActuatorConfig>("dryrun: false").is_err());
        assert!(serde_yaml::from_str::<ActuatorConfig>("aws: {regon: x}").is_err());
        assert!(
            serde_yaml::from_str::<ActuatorConfig>("kubernetes: {kubeconfig: a, ctx: b}").is_err()
        );
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = ActuatorConfig::default();
        c.aws.endpoint_url = Some("localhost:5000".into());
        assert_eq!(
            c.validate().map_err(|e| e.0),
            Err("aws.endpoint_url".to_string())
        );
        let mut c = ActuatorConfig::default();
        c.kubernetes.timeout_secs = 0;
        assert_eq!(
            c.validate().map_err(|e| e.0),
            Err("kubernetes.timeout_secs".to_string())
        );
    }

    #[tokio::test]
    async fn build_picks_dry_run_by_default_and_the_kind_otherwise() {
        let paused = Arc::new(AtomicBool::new(false));
        let mut t = TargetPolicy::example("web", 1.0, 1, 10);
        t.kind = TargetKind::K8sDeployment;
        let a = build(&t, &ActuatorConfig::default(), paused.clone())
            .await
            .expect("dry run");
        assert_eq!(a.backend_name(), "dry_run");
        t.kind = TargetKind::AwsAsg;
        t.asg_name = Some("g".into());
        let cfg = ActuatorConfig {
            dry_run: false,
            aws: AwsActuatorConfig {
                region: Some("us-east-1".into()),
                endpoint_url: Some("http://127.0.0.1:9".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let a = build(&t, &cfg, paused.clone()).await.expect("aws client");
        assert_eq!(a.backend_name(), "aws_asg");

        // build_all: only targets that may act get an actuator; errors name the target.
        let mut acting = t.clone();
        acting.mode = Mode::ForecastAndScale;
        let shadow = TargetPolicy::example("shadow", 1.0, 1, 10);
        let all = build_all(&[acting.clone(), shadow], &cfg, paused.clone())
            .await
            .expect("builds");
        assert_eq!(all.keys().collect::<Vec<_>>(), vec!["web"]);
        let mut k8s = TargetPolicy::example("k", 1.0, 1, 10);
        k8s.kind = TargetKind::K8sDeployment;
        k8s.mode = Mode::ForecastAndScale;
        let bad = ActuatorConfig {
            kubernetes: K8sActuatorConfig {
                kubeconfig: Some("/nonexistent/kubeconfig".into()),
                ..Default::default()
            },
            ..cfg
        };
        match build_all(&[acting, k8s], &bad, paused).await {
            Err((name, e)) => {
                assert_eq!(name, "k");
                assert!(e.to_string().contains("/nonexistent/kubeconfig"), "{e}");
            }
            Ok(_) => panic!("a missing kubeconfig must fail"),
        }
    }
}
