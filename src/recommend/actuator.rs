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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::decide::{Inputs, Observation, TargetRecommender};
    use crate::recommend::policy::TargetKind;
    use chrono::{TimeDelta, TimeZone, Utc};
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};

    /// Records every call.
    #[derive(Default)]
    struct Recording {
        calls: Mutex<Vec<(String, u32)>>,
        fail: bool,
    }

    impl Actuator for Recording {
        fn name(&self) -> &str {
            "recording"
        }
        fn set_replicas<'a>(
            &'a self,
            target: &'a TargetPolicy,
            rec: &'a Recommendation,
        ) -> ActuatorFuture<'a> {
            Box::pin(async move {
                if let Ok(mut c) = self.calls.lock() {
                    c.push((target.name.clone(), rec.recommended_replicas));
                }
                if self.fail {
                    Err(crate::recommend::RecommendError::Actuator {
                        actuator: "recording".into(),
                        reason: "HTTP 409 conflict".into(),
                    })
                } else {
                    Ok(())
                }
            })
        }
    }

    /// Drives a future that never waits (the fake completes immediately).
    fn block_on<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    /// Runs a load ramp up and down through an HPA-like target and dispatches every record.
    fn drive(policy: TargetPolicy, act: &Recording) -> Vec<Dispatch> {
        let mut rec = TargetRecommender::new(policy, "test").expect("valid");
        let t0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let mut current = 2;
        let mut out = Vec::new();
        for (i, load) in [1.0, 5.0, 20.0, 40.0, 40.0, 10.0, 1.0, 1.0]
            .iter()
            .enumerate()
        {
            let ts = t0 + TimeDelta::seconds(600 * i as i64);
            let obs = Observation {
                ts,
                data_ts: ts,
                load: *load,
                current_replicas: current,
            };
            let r = rec.decide(Inputs::new(obs)).expect("decides");
            out.push(block_on(dispatch(rec.policy(), &r, act)));
            current = r.recommended_replicas;
        }
        out
    }

    fn k8s(mode: Mode) -> TargetPolicy {
        let mut p = TargetPolicy::example("web", 1.0, 1, 100);
        p.kind = TargetKind::K8sDeployment;
        p.namespace = Some("prod".into());
        p.deployment = Some("web".into());
        p.mode = mode;
        p
    }

    #[test]
    fn forecast_only_never_calls_the_actuator() {
        let act = Recording::default();
        let out = drive(k8s(Mode::ForecastOnly), &act);
        assert!(
            out.iter().all(|d| matches!(d, Dispatch::Shadow(_))),
            "{out:?}"
        );
        assert!(act.calls.lock().expect("lock").is_empty());
    }

    #[test]
    fn publish_only_kind_never_calls_the_actuator() {
        let act = Recording::default();
        // kind none + forecast_and_scale fails validation, so force it past the loader.
        let mut p = k8s(Mode::ForecastOnly);
        p.kind = TargetKind::None;
        let rec = Recommendation {
            mode: Mode::ForecastAndScale,
            ..sample_record()
        };
        p.mode = Mode::ForecastAndScale;
        let d = block_on(dispatch(&p, &rec, &act));
        assert!(matches!(d, Dispatch::Shadow(_)));
        assert!(act.calls.lock().expect("lock").is_empty());
    }

    #[test]
    fn forecast_and_scale_calls_once_per_change() {
        let act = Recording::default();
        let out = drive(k8s(Mode::ForecastAndScale), &act);
        let applied = out.iter().filter(|d| **d == Dispatch::Applied).count();
        let unchanged = out.iter().filter(|d| **d == Dispatch::NoChange).count();
        let calls = act.calls.lock().expect("lock").clone();
        assert_eq!(applied, calls.len());
        assert_eq!(applied + unchanged, out.len());
        assert!(applied >= 3, "the ramp changes the count: {out:?}");
        assert!(calls.iter().all(|(n, _)| n == "web"));
        // 40 at 70 % per replica → 58 replicas at the peak.
        assert!(calls.iter().any(|(_, r)| *r == 58), "{calls:?}");
    }

    #[test]
    fn actuator_failures_are_reported() {
        let act = Recording {
            fail: true,
            ..Default::default()
        };
        let p = k8s(Mode::ForecastAndScale);
        let d = block_on(dispatch(&p, &sample_record(), &act));
        match d {
            Dispatch::Failed(m) => assert!(m.contains("409"), "{m}"),
            other => panic!("expected failure, got {other:?}"),
        }
    }

    fn sample_record() -> Recommendation {
        let t = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        Recommendation {
            ts: t,
            data_ts: t,
            target: "web".into(),
            policy: "p".into(),
            recommender: "hpa".into(),
            decided_by: "hpa".into(),
            mode: Mode::ForecastOnly,
            current_replicas: 2,
            recommended_replicas: 5,
            direction: crate::recommend::limits::Direction::Up,
            load: 3.3,
            reason: "test".into(),
            ..Default::default()
        }
    }
}
