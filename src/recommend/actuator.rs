//! The boundary to the actuators of issue 9 (AWS Auto Scaling, Kubernetes scale, dry-run).
//!
//! An [`Actuator`] carries out a recommendation. The decision stage only calls it through
//! [`dispatch`], which enforces the policy's mode: a `forecast_only` target (the default) or a
//! `kind: none` target is **never** passed to an actuator, and neither is a recommendation
//! that changes nothing. Actuators still apply their own safety checks (min/max, step,
//! cooldown, kill switch) as issue 9 requires.
//!
//! The trait is object safe and runtime-agnostic: `set_replicas` returns a boxed future, so
//! an implementation can be `async` (AWS SDK, HTTP) and callers can hold `&dyn Actuator`.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::recommend::Result;
use crate::recommend::policy::{Mode, TargetKind, TargetPolicy};
use crate::recommend::record::Recommendation;

/// The future returned by [`Actuator::set_replicas`].
pub type ActuatorFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Something that can set a target's replica count.
pub trait Actuator: Send + Sync {
    /// Name for logs and records (`aws_asg`, `k8s`, `dry_run`, ...).
    fn name(&self) -> &str;
    /// Sets `target`'s desired replicas to `rec.recommended_replicas`.
    fn set_replicas<'a>(
        &'a self,
        target: &'a TargetPolicy,
        rec: &'a Recommendation,
    ) -> ActuatorFuture<'a>;
}

/// What [`dispatch`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum Dispatch {
    /// `forecast_only` mode or `kind: none`: recorded, not executed.
    Shadow(String),
    /// Nothing to do: the recommendation equals the current count.
    NoChange,
    /// The actuator accepted the change.
    Applied,
    /// The actuator failed; the message says why.
    Failed(String),
}

/// Calls `actuator` for `rec` only when the target's mode and kind allow it and the count
/// changes; never calls it in `forecast_only` mode.
pub async fn dispatch(
    target: &TargetPolicy,
    rec: &Recommendation,
    actuator: &dyn Actuator,
) -> Dispatch {
    if target.mode == Mode::ForecastOnly {
        return Dispatch::Shadow("forecast_only mode: recorded, not executed".into());
    }
    if target.kind == TargetKind::None {
        return Dispatch::Shadow("kind none: publish-only target".into());
    }
    if rec.recommended_replicas == rec.current_replicas {
        return Dispatch::NoChange;
    }
    match actuator.set_replicas(target, rec).await {
        Ok(()) => Dispatch::Applied,
        Err(e) => Dispatch::Failed(e.to_string()),
    }
}
