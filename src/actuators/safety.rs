//! The actuator layer's own guard, whatever the recommender (or an operator) asks for.
//!
//! [`SafeActuator`] wraps any [`Backend`] and checks every action, in this order:
//!
//! 1. **Kill switch**: while the shared `paused` flag is on (`POST /api/v1/pause`), every
//!    action is blocked, manual ones included.
//! 2. **Bounds**: the request is clamped to the policy's `[min_replicas, max_replicas]`
//!    intersected with the system's own bounds (an ASG's `MinSize`/`MaxSize`). A target
//!    found outside its bounds is brought inside in one action (bounds win over 3 and 4).
//! 3. **Cooldowns** (automatic actions only): no scale-down within `cooldown_secs` of this
//!    layer's previous action on the target, no scale-up within `scale_up_cooldown_secs`
//!    of its previous scale-up.
//! 4. **Max step** (automatic actions only): at most `max_step_up_*`/`max_step_down_*`
//!    per action (the larger of the absolute and percent limits, as in the policy).
//!
//! A request the guard reduces to "no change" is **blocked**, with the reason; a request it
//! only shrinks is carried out and the record says which limit applied. The decision itself
//! is the pure function [`guard`] (explicit time, no I/O), so it is tested directly.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::actuators::{ActionRecord, ActionResult, Backend, Observed, Result};
use crate::recommend::limits::{max_step, secs};
use crate::recommend::policy::TargetPolicy;
use crate::recommend::record::Recommendation;
use crate::recommend::{ActuatorFuture, RecommendError};

/// What the guard remembers per target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardState {
    /// Time of the last change this layer made (any direction).
    pub last_action: Option<DateTime<Utc>>,
    /// Time of the last scale-up this layer made.
    pub last_scale_up: Option<DateTime<Utc>>,
}

/// The guard's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Set the target to this count; the notes say which limits changed the request.
    Scale {
        /// Replicas to set.
        to: u32,
        /// One sentence per limit that applied (empty when none did).
        notes: Vec<String>,
    },
    /// Nothing to do: the request equals the current count.
    NoChange,
    /// Refused, with the reason.
    Blocked(String),
}

/// Decides what may be done for `target` at `now`: `current` replicas (as the backend
/// reports them), `requested` replicas, the system's own bounds in `observed`, `manual`
/// for operator requests (no step or cooldown). Pure: no clock, no I/O.
#[allow(clippy::too_many_arguments)] // every input explicit keeps it a pure function
pub fn guard(
    target: &TargetPolicy,
    state: &GuardState,
    now: DateTime<Utc>,
    paused: bool,
    current: u32,
    requested: u32,
    observed: &Observed,
    manual: bool,
) -> Verdict {
    if paused {
        return Verdict::Blocked("scaling is paused (global kill switch)".into());
    }
    if requested == current && (target.min_replicas..=target.max_replicas).contains(&current) {
        return Verdict::NoChange;
    }
    let lo = target.min_replicas.max(observed.min.unwrap_or(0));
    let hi = target.max_replicas.min(observed.max.unwrap_or(u32::MAX));
    if lo > hi {
        return Verdict::Blocked(format!(
            "policy bounds [{}, {}] and the system's bounds [{}, {}] do not overlap",
            target.min_replicas,
            target.max_replicas,
            observed.min.unwrap_or(0),
            observed
                .max
                .map_or_else(|| "∞".to_string(), |m| m.to_string()),
        ));
    }
    let mut notes = Vec::new();
    let mut to = requested;
    if to < lo {
        notes.push(format!("raised from {requested} to the minimum {lo}"));
        to = lo;
    } else if to > hi {
        notes.push(format!("capped from {requested} at the maximum {hi}"));
        to = hi;
    }
    let out_of_bounds = current < lo || current > hi;
    if !manual && !out_of_bounds && to != current {
        let up = to > current;
        if up {
            if target.scale_up_cooldown_secs > 0
                && let Some(t) = state.last_scale_up
                && now.signed_duration_since(t) < secs(target.scale_up_cooldown_secs)
            {
                return Verdict::Blocked(format!(
                    "scale-up cooldown: last scale-up at {t}, scale_up_cooldown_secs {}",
                    target.scale_up_cooldown_secs
                ));
            }
        } else if target.cooldown_secs > 0
            && let Some(t) = state.last_action
            && now.signed_duration_since(t) < secs(target.cooldown_secs)
        {
            return Verdict::Blocked(format!(
                "cooldown: last action at {t}, cooldown_secs {}",
                target.cooldown_secs
            ));
        }
        let step = if up {
            max_step(
                current,
                target.max_step_up_replicas,
                target.max_step_up_percent,
                true,
            )
        } else {
            max_step(
                current,
                target.max_step_down_replicas,
                target.max_step_down_percent,
                false,
            )
        };
        if let Some(step) = step {
            let limited = if up {
                current.saturating_add(step).min(to)
            } else {
                current.saturating_sub(step).max(to)
            };
            if limited != to {
                notes.push(format!(
                    "max step {step}: {} instead of {to}",
                    if up { "up to" } else { "down to" }
                ));
                to = limited;
            }
        }
    }
    if to == current {
        let why = if notes.is_empty() {
            "no change".to_string()
        } else {
            notes.join("; ")
        };
        return Verdict::Blocked(format!(
            "requested {requested}, but the limits keep {current}: {why}"
        ));
    }
    Verdict::Scale { to, notes }
}

type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// A [`Backend`] behind the safety checks, with the kill switch, per-target cooldown state
/// and a bounded history of [`ActionRecord`]s. Implements [`crate::recommend::Actuator`].
pub struct SafeActuator {
    backend: Arc<dyn Backend>,
    paused: Arc<AtomicBool>,
    state: Mutex<BTreeMap<String, GuardState>>,
    records: Mutex<VecDeque<ActionRecord>>,
    history: usize,
    clock: Clock,
    events: broadcast::Sender<ActionRecord>,
    serial: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SafeActuator {
    /// Wraps `backend`; `paused` is the global kill switch shared with the control API.
    pub fn new(backend: Arc<dyn Backend>, paused: Arc<AtomicBool>) -> Self {
        let (events, _) = broadcast::channel(1024);
        SafeActuator {
            backend,
            paused,
            state: Mutex::default(),
            records: Mutex::default(),
            history: 1000,
            clock: Arc::new(Utc::now),
            events,
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// Keeps at most `n` records in memory (at least 1).
    pub fn with_history(mut self, n: usize) -> Self {
        self.history = n.max(1);
        self
    }

    /// Replaces the wall clock (tests, replays).
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The wrapped backend's name.
    pub fn backend_name(&self) -> &str {
        self.backend.name()
    }

    /// True while the kill switch is on.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Every record from now on (alerts on failed/blocked actions, metrics). A slow
    /// receiver loses the oldest records (`RecvError::Lagged`), never blocks actions.
    pub fn subscribe(&self) -> broadcast::Receiver<ActionRecord> {
        self.events.subscribe()
    }

    /// The records kept, oldest first.
    pub fn records(&self) -> Vec<ActionRecord> {
        lock(&self.records).iter().cloned().collect()
    }

    /// The newest record of `target`.
    pub fn last_action(&self, target: &str) -> Option<ActionRecord> {
        lock(&self.records)
            .iter()
            .rev()
            .find(|r| r.target == target)
            .cloned()
    }

    /// The current desired replicas as the backend reports them (`None` for a dry run
    /// that has not acted yet).
    pub async fn current_replicas(&self, target: &TargetPolicy) -> Result<Option<u32>> {
        Ok(self.backend.observe(target).await?.replicas)
    }

    /// Carries out a recommendation (automatic: all checks) at the clock's time.
    pub async fn apply(&self, target: &TargetPolicy, rec: &Recommendation) -> ActionRecord {
        self.execute(
            target,
            rec.current_replicas,
            rec.recommended_replicas,
            false,
            "recommendation",
        )
        .await
    }

    /// An operator's request (`POST /api/v1/scale`): still clamped to the bounds and
    /// refused while paused, but not limited by step or cooldown.
    pub async fn scale_manual(&self, target: &TargetPolicy, replicas: u32) -> ActionRecord {
        self.execute(target, replicas, replicas, true, "manual")
            .await
    }

    /// The common path: observe, guard, scale, record. `assumed_current` is used when the
    /// backend does not know the count.
    pub async fn execute(
        &self,
        target: &TargetPolicy,
        assumed_current: u32,
        requested: u32,
        manual: bool,
        source: &str,
    ) -> ActionRecord {
        let _serial = self.serial.lock().await;
        let now = (self.clock)();
        let mut record = ActionRecord {
            ts: now,
            target: target.name.clone(),
            actuator: self.backend.name().to_string(),
            source: source.to_string(),
            from_replicas: assumed_current,
            requested_replicas: requested,
            to_replicas: assumed_current,
            result: ActionResult::Blocked,
            reason: String::new(),
        };
        if self.is_paused() {
            record.reason = "scaling is paused (global kill switch)".into();
            return self.finish(record);
        }
        let observed = match self.backend.observe(target).await {
            Ok(o) => o,
            Err(e) => {
                record.result = ActionResult::Failed;
                record.reason = format!("reading the current state failed: {e}");
                return self.finish(record);
            }
        };
        let current = observed.replicas.unwrap_or(assumed_current);
        record.from_replicas = current;
        record.to_replicas = current;
        let state = lock(&self.state)
            .get(&target.name)
            .copied()
            .unwrap_or_default();
        let verdict = guard(
            target,
            &state,
            now,
            self.is_paused(),
            current,
            requested,
            &observed,
            manual,
        );
        match verdict {
            Verdict::NoChange => {
                record.result = ActionResult::Ok;
                record.reason = format!("already at {current} replicas");
            }
            Verdict::Blocked(why) => {
                record.reason = why;
            }
            Verdict::Scale { to, notes } => match self.backend.scale(target, current, to).await {
                Ok(()) => {
                    record.result = ActionResult::Ok;
                    record.to_replicas = to;
                    record.reason = if notes.is_empty() {
                        format!("scaled from {current} to {to}")
                    } else {
                        format!("scaled from {current} to {to} ({})", notes.join("; "))
                    };
                    let mut st = lock(&self.state);
                    let e = st.entry(target.name.clone()).or_default();
                    e.last_action = Some(now);
                    if to > current {
                        e.last_scale_up = Some(now);
                    }
                }
                Err(e) => {
                    record.result = ActionResult::Failed;
                    record.reason = format!("scaling from {current} to {to} failed: {e}");
                }
            },
        }
        self.finish(record)
    }

    fn finish(&self, record: ActionRecord) -> ActionRecord {
        match record.result {
            ActionResult::Ok => {
                tracing::info!(target = %record.target, actuator = %record.actuator, from = record.from_replicas, to = record.to_replicas, "{}", record.reason)
            }
            _ => {
                tracing::warn!(target = %record.target, actuator = %record.actuator, result = record.result.as_str(), "{}", record.reason)
            }
        }
        {
            let mut r = lock(&self.records);
            r.push_back(record.clone());
            while r.len() > self.history {
                r.pop_front();
            }
        }
        // No subscriber is fine.
        let _ = self.events.send(record.clone());
        record
    }
}

impl crate::recommend::Actuator for SafeActuator {
    fn name(&self) -> &str {
        self.backend.name()
    }

    fn set_replicas<'a>(
        &'a self,
        target: &'a TargetPolicy,
        rec: &'a Recommendation,
    ) -> ActuatorFuture<'a> {
        Box::pin(async move {
            let r = self.apply(target, rec).await;
            match r.result {
                ActionResult::Ok => Ok(()),
                other => Err(RecommendError::Actuator {
                    actuator: r.actuator,
                    reason: format!("{}: {}", other.as_str(), r.reason),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuators::dry_run::DryRun;
    use crate::actuators::{ActuatorError, BackendFuture};
    use chrono::{TimeDelta, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn policy() -> TargetPolicy {
        let mut p = TargetPolicy::example("web", 1.0, 1, 10);
        p.cooldown_secs = 300;
        p.scale_up_cooldown_secs = 60;
        p
    }

    const NONE: Observed = Observed {
        replicas: None,
        min: None,
        max: None,
    };

    #[test]
    fn clamps_zero_and_ten_thousand_to_the_bounds() {
        let p = policy();
        let s = GuardState::default();
        assert_eq!(
            guard(&p, &s, t0(), false, 3, 10_000, &NONE, false),
            Verdict::Scale {
                to: 10,
                notes: vec!["capped from 10000 at the maximum 10".into()]
            }
        );
        assert_eq!(
            guard(&p, &s, t0(), false, 3, 0, &NONE, false),
            Verdict::Scale {
                to: 1,
                notes: vec!["raised from 0 to the minimum 1".into()]
            }
        );
        // Already at the bound: the request is refused with the reason.
        match guard(&p, &s, t0(), false, 10, 10_000, &NONE, false) {
            Verdict::Blocked(why) => assert!(why.contains("maximum 10"), "{why}"),
            v => panic!("expected blocked, got {v:?}"),
        }
    }

    #[test]
    fn system_bounds_narrow_the_policy_and_must_overlap() {
        let p = policy();
        let s = GuardState::default();
        let asg = Observed {
            replicas: Some(3),
            min: Some(2),
            max: Some(6),
        };
        assert!(matches!(
            guard(&p, &s, t0(), false, 3, 9, &asg, false),
            Verdict::Scale { to: 6, .. }
        ));
        let disjoint = Observed {
            replicas: Some(3),
            min: Some(20),
            max: Some(30),
        };
        match guard(&p, &s, t0(), false, 3, 9, &disjoint, false) {
            Verdict::Blocked(why) => assert!(why.contains("do not overlap"), "{why}"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn max_step_and_cooldowns() {
        let mut p = policy();
        p.max_step_up_replicas = Some(2);
        p.max_step_down_percent = Some(50.0);
        let s = GuardState::default();
        assert!(matches!(
            guard(&p, &s, t0(), false, 3, 9, &NONE, false),
            Verdict::Scale { to: 5, .. }
        ));
        assert!(matches!(
            guard(&p, &s, t0(), false, 8, 1, &NONE, false),
            Verdict::Scale { to: 4, .. }
        ));
        // Manual requests skip step limits.
        assert!(matches!(
            guard(&p, &s, t0(), false, 3, 9, &NONE, true),
            Verdict::Scale { to: 9, .. }
        ));
        let s = GuardState {
            last_action: Some(t0()),
            last_scale_up: Some(t0()),
        };
        let soon = t0() + TimeDelta::seconds(30);
        assert!(matches!(
            guard(&p, &s, soon, false, 5, 6, &NONE, false),
            Verdict::Blocked(w) if w.contains("scale-up cooldown")
        ));
        assert!(matches!(
            guard(&p, &s, soon, false, 5, 4, &NONE, false),
            Verdict::Blocked(w) if w.starts_with("cooldown")
        ));
        let later = t0() + TimeDelta::seconds(61);
        assert!(matches!(
            guard(&p, &s, later, false, 5, 6, &NONE, false),
            Verdict::Scale { to: 6, .. }
        ));
        // Bounds win over the cooldown: a target below its minimum is raised at once.
        assert!(matches!(
            guard(&p, &s, soon, false, 0, 0, &NONE, false),
            Verdict::Scale { to: 1, .. }
        ));
    }

    #[test]
    fn the_kill_switch_blocks_everything() {
        let p = policy();
        for manual in [false, true] {
            assert!(matches!(
                guard(&p, &GuardState::default(), t0(), true, 3, 5, &NONE, manual),
                Verdict::Blocked(w) if w.contains("paused")
            ));
        }
    }

    fn rec(current: u32, recommended: u32) -> Recommendation {
        Recommendation {
            ts: t0(),
            data_ts: t0(),
            target: "web".into(),
            policy: "p".into(),
            recommender: "hpa".into(),
            decided_by: "hpa".into(),
            mode: crate::recommend::policy::Mode::ForecastAndScale,
            current_replicas: current,
            recommended_replicas: recommended,
            direction: crate::recommend::limits::Direction::of(current, recommended),
            load: 1.0,
            reason: "test".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn safe_actuator_records_ok_blocked_and_failed() {
        let paused = Arc::new(AtomicBool::new(false));
        let now = Arc::new(Mutex::new(t0()));
        let clock = now.clone();
        let a = SafeActuator::new(Arc::new(DryRun::new()), paused.clone())
            .with_clock(move || *lock(&clock));
        let mut rx = a.subscribe();
        let p = policy();
        let r = a.apply(&p, &rec(3, 10_000)).await;
        assert_eq!(
            (r.result, r.from_replicas, r.to_replicas),
            (ActionResult::Ok, 3, 10)
        );
        assert_eq!(a.current_replicas(&p).await.expect("dry run"), Some(10));
        // The dry run now reports 10, whatever the stale recommendation says.
        *lock(&now) = t0() + TimeDelta::seconds(10);
        let r = a.apply(&p, &rec(3, 0)).await;
        assert_eq!(r.result, ActionResult::Blocked);
        assert!(r.reason.starts_with("cooldown"), "{}", r.reason);
        *lock(&now) = t0() + TimeDelta::seconds(400);
        let r = a.apply(&p, &rec(10, 0)).await;
        assert_eq!((r.result, r.to_replicas), (ActionResult::Ok, 1));
        paused.store(true, Ordering::SeqCst);
        let r = a.scale_manual(&p, 4).await;
        assert_eq!(r.result, ActionResult::Blocked);
        let err = crate::recommend::Actuator::set_replicas(&a, &p, &rec(1, 4))
            .await
            .expect_err("paused");
        assert!(
            err.to_string().contains("blocked: scaling is paused"),
            "{err}"
        );
        assert_eq!(a.records().len(), 5);
        assert_eq!(
            a.last_action("web").map(|r| r.source),
            Some("recommendation".into())
        );
        let first = rx.recv().await.expect("event");
        assert_eq!(first.to_replicas, 10);

        struct Broken;
        impl Backend for Broken {
            fn name(&self) -> &str {
                "broken"
            }
            fn observe<'a>(&'a self, _: &'a TargetPolicy) -> BackendFuture<'a, Observed> {
                Box::pin(async { Ok(NONE) })
            }
            fn scale<'a>(&'a self, _: &'a TargetPolicy, _: u32, _: u32) -> BackendFuture<'a, ()> {
                Box::pin(async { Err(ActuatorError::Forbidden("no rights".into())) })
            }
        }
        let b = SafeActuator::new(Arc::new(Broken), Arc::new(AtomicBool::new(false)));
        let r = b.apply(&p, &rec(2, 4)).await;
        assert_eq!((r.result, r.to_replicas), (ActionResult::Failed, 2));
        assert!(r.reason.contains("forbidden: no rights"), "{}", r.reason);
    }
}
