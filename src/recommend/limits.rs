//! The policy's hard limits, applied to every recommender's proposal in a fixed order.
//!
//! 1. **Scheduled overrides**: every active schedule raises the minimum to its
//!    `min_replicas` (the highest active one wins) and may set a maximum.
//! 2. **Bounds**: the proposal is clamped to `[min, max]`.
//! 3. **Scale-down stabilization** (HPA): a scale-down goes only to the *highest* (bounded)
//!    proposal seen within `scale_down_stabilization_secs`, including the current one.
//! 4. **Cooldowns**: no scale-down within `cooldown_secs` of the previous action; no scale-up
//!    within `scale_up_cooldown_secs` of the previous scale-up.
//! 5. **Max step** per decision, up and down: with both an absolute and a percent limit the
//!    larger step is allowed (HPA `selectPolicy: Max`); percent steps round up for scale-up and
//!    down (at least one replica) for scale-down.
//! 6. **Bounds again**: min/max always win over cooldowns and steps, so a target outside its
//!    bounds (e.g. a schedule just raised the minimum) is brought inside in one decision.

use std::collections::VecDeque;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::recommend::Result;
use crate::recommend::policy::{ScheduledOverride, TargetPolicy};

/// Direction of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// More replicas (or larger requests).
    Up,
    /// Fewer replicas (or smaller requests).
    Down,
    /// No change.
    #[default]
    None,
}

impl Direction {
    /// Direction from `current` to `recommended`.
    pub fn of(current: u32, recommended: u32) -> Self {
        match recommended.cmp(&current) {
            std::cmp::Ordering::Greater => Direction::Up,
            std::cmp::Ordering::Less => Direction::Down,
            std::cmp::Ordering::Equal => Direction::None,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::None => "none",
        }
    }
}

/// What a target's limits remember between decisions.
#[derive(Debug, Clone, Default)]
pub struct LimitState {
    /// Time of the last change (any direction).
    pub last_action: Option<DateTime<Utc>>,
    /// Time of the last scale-up.
    pub last_scale_up: Option<DateTime<Utc>>,
    /// Bounded proposals within the stabilization window, oldest first.
    pub history: VecDeque<(DateTime<Utc>, u32)>,
}

/// A schedule with its parsed cron expression.
#[derive(Debug, Clone)]
pub struct CompiledSchedule {
    /// The configuration.
    pub config: ScheduledOverride,
    /// The parsed cron expression.
    pub schedule: cron::Schedule,
}

/// Parses every schedule of a policy.
pub fn compile_schedules(policy: &TargetPolicy) -> Result<Vec<CompiledSchedule>> {
    policy
        .schedules
        .iter()
        .map(|s| {
            Ok(CompiledSchedule {
                config: s.clone(),
                schedule: s.schedule()?,
            })
        })
        .collect()
}

/// The outcome of [`apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    /// Final replica count.
    pub replicas: u32,
    /// The limit that determined the final count, when it differs from the proposal:
    /// `schedule:<name>`, `min_replicas`, `max_replicas`, `stabilization`, `cooldown`,
    /// `scale_up_cooldown` or `max_step`.
    pub limited_by: Option<String>,
    /// One sentence per limit that changed something.
    pub notes: Vec<String>,
    /// The effective bounds at this time (after schedules).
    pub bounds: (u32, u32),
}

/// Effective `(min, max, schedule names)` at `now`.
pub fn effective_bounds(
    policy: &TargetPolicy,
    schedules: &[CompiledSchedule],
    now: DateTime<Utc>,
) -> (u32, u32, Option<String>) {
    let mut min = policy.min_replicas;
    let mut max = policy.max_replicas;
    let mut by = None;
    for s in schedules {
        if s.config.is_active(&s.schedule, now) {
            if let Some(mx) = s.config.max_replicas {
                max = max.max(mx);
            }
            if s.config.min_replicas > min {
                min = s.config.min_replicas;
                by = Some(s.config.name.clone());
            }
        }
    }
    (min, max.max(min), by)
}

/// `d` seconds as a [`TimeDelta`], saturating at [`TimeDelta::MAX`] (never panics).
pub fn secs(d: u64) -> TimeDelta {
    i64::try_from(d)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .unwrap_or(TimeDelta::MAX)
}

fn within(last: Option<DateTime<Utc>>, now: DateTime<Utc>, window_secs: u64) -> bool {
    window_secs > 0 && last.is_some_and(|t| now.signed_duration_since(t) < secs(window_secs))
}

/// Largest step allowed from `current`, `None` when unlimited.
pub fn max_step(current: u32, abs: Option<u32>, percent: Option<f64>, up: bool) -> Option<u32> {
    let pct = percent.map(|p| {
        let raw = f64::from(current) * p / 100.0;
        let r = if up { raw.ceil() } else { raw.floor() };
        (r.clamp(1.0, u32::MAX as f64)) as u32
    });
    match (abs, pct) {
        (None, None) => None,
        (Some(a), None) => Some(a),
        (None, Some(p)) => Some(p),
        (Some(a), Some(p)) => Some(a.max(p)),
    }
}

/// Applies the limits to `proposed` for a target currently at `current` replicas, and updates
/// `state` (history and action times) as if the result were carried out.
pub fn apply(
    policy: &TargetPolicy,
    schedules: &[CompiledSchedule],
    state: &mut LimitState,
    now: DateTime<Utc>,
    current: u32,
    proposed: u32,
) -> Limited {
    let (min, max, sched) = effective_bounds(policy, schedules, now);
    let mut notes = Vec::new();
    let mut limited_by: Option<String> = None;

    // 1-2. bounds (with schedules).
    let mut desired = proposed;
    if desired < min {
        desired = min;
        let who = match &sched {
            Some(name) => format!("schedule:{name}"),
            None => "min_replicas".to_string(),
        };
        notes.push(match &sched {
            Some(name) => format!("scheduled override {name:?} raises the minimum to {min}"),
            None => format!("raised to min_replicas {min}"),
        });
        limited_by = Some(who);
    } else if desired > max {
        desired = max;
        notes.push(format!("capped at max_replicas {max}"));
        limited_by = Some("max_replicas".into());
    }

    // 3. stabilization: remember the bounded proposal; scale down only to the window's max.
    let window = secs(policy.scale_down_stabilization_secs);
    while state
        .history
        .front()
        .is_some_and(|(t, _)| now.signed_duration_since(*t) >= window)
    {
        state.history.pop_front();
    }
    state.history.push_back((now, desired));
    if desired < current && policy.scale_down_stabilization_secs > 0 {
        let peak = state
            .history
            .iter()
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(desired);
        let stabilized = peak.min(current);
        if stabilized > desired {
            notes.push(format!(
                "scale-down stabilized to {stabilized} (highest recommendation within {} s)",
                policy.scale_down_stabilization_secs
            ));
            desired = stabilized;
            limited_by = Some("stabilization".into());
        }
    }

    // 4. cooldowns.
    if desired < current && within(state.last_action, now, policy.cooldown_secs) {
        notes.push(format!(
            "scale-down to {desired} held: cooldown of {} s since the last action",
            policy.cooldown_secs
        ));
        desired = current;
        limited_by = Some("cooldown".into());
    } else if desired > current && within(state.last_scale_up, now, policy.scale_up_cooldown_secs) {
        notes.push(format!(
            "scale-up to {desired} held: scale-up cooldown of {} s",
            policy.scale_up_cooldown_secs
        ));
        desired = current;
        limited_by = Some("scale_up_cooldown".into());
    }

    // 5. max step.
    if desired > current
        && let Some(step) = max_step(
            current,
            policy.max_step_up_replicas,
            policy.max_step_up_percent,
            true,
        )
        && desired - current > step
    {
        let to = current.saturating_add(step);
        notes.push(format!(
            "scale-up limited to +{step} per decision ({desired} → {to})"
        ));
        desired = to;
        limited_by = Some("max_step".into());
    } else if desired < current
        && let Some(step) = max_step(
            current,
            policy.max_step_down_replicas,
            policy.max_step_down_percent,
            false,
        )
        && current - desired > step
    {
        let to = current.saturating_sub(step);
        notes.push(format!(
            "scale-down limited to -{step} per decision ({desired} → {to})"
        ));
        desired = to;
        limited_by = Some("max_step".into());
    }

    // 6. bounds win.
    if desired < min {
        desired = min;
        limited_by = Some(match &sched {
            Some(name) => format!("schedule:{name}"),
            None => "min_replicas".into(),
        });
        notes.push(format!("bounds win: raised to the minimum {min}"));
    } else if desired > max {
        desired = max;
        limited_by = Some("max_replicas".into());
        notes.push(format!("bounds win: lowered to the maximum {max}"));
    }

    if desired != current {
        state.last_action = Some(now);
        if desired > current {
            state.last_scale_up = Some(now);
        }
    }
    if desired == proposed {
        limited_by = None;
    }
    Limited {
        replicas: desired,
        limited_by,
        notes,
        bounds: (min, max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t(secs: i64) -> DateTime<Utc> {
        // 2024-01-01 is a Monday, 00:00 UTC.
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(secs)
    }

    fn free(min: u32, max: u32) -> TargetPolicy {
        let mut p = TargetPolicy::example("t", 1.0, min, max);
        p.cooldown_secs = 0;
        p.scale_down_stabilization_secs = 0;
        p
    }

    #[test]
    fn clamps_to_min_and_max() {
        let p = free(2, 10);
        let mut s = LimitState::default();
        let r = apply(&p, &[], &mut s, t(0), 5, 0);
        assert_eq!(
            (r.replicas, r.limited_by.as_deref()),
            (2, Some("min_replicas"))
        );
        let r = apply(&p, &[], &mut s, t(60), 5, 50);
        assert_eq!(
            (r.replicas, r.limited_by.as_deref()),
            (10, Some("max_replicas"))
        );
        let r = apply(&p, &[], &mut s, t(120), 5, 7);
        assert_eq!((r.replicas, r.limited_by), (7, None));
    }

    #[test]
    fn scale_down_stabilization_keeps_the_window_max() {
        let mut p = free(1, 100);
        p.scale_down_stabilization_secs = 300;
        let mut s = LimitState::default();
        assert_eq!(apply(&p, &[], &mut s, t(0), 10, 10).replicas, 10);
        let r = apply(&p, &[], &mut s, t(60), 10, 5);
        assert_eq!(
            (r.replicas, r.limited_by.as_deref()),
            (10, Some("stabilization"))
        );
        assert_eq!(apply(&p, &[], &mut s, t(120), 10, 8).replicas, 10);
        assert_eq!(apply(&p, &[], &mut s, t(299), 10, 4).replicas, 10);
        // At 300 s the proposal of t=0 (10) left the window; the max is now 8 (t=120).
        assert_eq!(apply(&p, &[], &mut s, t(300), 10, 4).replicas, 8);
        // At 420 s only 4s remain in the window (t=299, 300, 420).
        assert_eq!(apply(&p, &[], &mut s, t(420), 8, 4).replicas, 4);
        // Scale-up is never stabilized.
        assert_eq!(apply(&p, &[], &mut s, t(480), 4, 9).replicas, 9);
    }

    #[test]
    fn cooldowns() {
        let mut p = free(1, 100);
        p.cooldown_secs = 300;
        p.scale_up_cooldown_secs = 120;
        let mut s = LimitState::default();
        assert_eq!(
            apply(&p, &[], &mut s, t(0), 5, 8).replicas,
            8,
            "first scale-up"
        );
        let r = apply(&p, &[], &mut s, t(100), 8, 4);
        assert_eq!((r.replicas, r.limited_by.as_deref()), (8, Some("cooldown")));
        let r = apply(&p, &[], &mut s, t(100), 8, 9);
        assert_eq!(
            (r.replicas, r.limited_by.as_deref()),
            (8, Some("scale_up_cooldown"))
        );
        assert_eq!(
            apply(&p, &[], &mut s, t(120), 8, 9).replicas,
            9,
            "up cooldown over"
        );
        // The scale-up at 120 restarts the scale-down cooldown.
        assert_eq!(apply(&p, &[], &mut s, t(300), 9, 4).replicas, 9);
        assert_eq!(apply(&p, &[], &mut s, t(420), 9, 4).replicas, 4);
    }

    #[test]
    fn max_step_takes_the_larger_of_absolute_and_percent() {
        let mut p = free(1, 1000);
        p.max_step_up_replicas = Some(4);
        p.max_step_up_percent = Some(100.0);
        p.max_step_down_percent = Some(50.0);
        let mut s = LimitState::default();
        let r = apply(&p, &[], &mut s, t(0), 2, 20);
        assert_eq!(
            (r.replicas, r.limited_by.as_deref()),
            (6, Some("max_step")),
            "+4 > +100 %"
        );
        assert_eq!(
            apply(&p, &[], &mut s, t(15), 10, 50).replicas,
            20,
            "+100 % > +4"
        );
        assert_eq!(apply(&p, &[], &mut s, t(30), 10, 1).replicas, 5, "-50 %");
        assert_eq!(
            apply(&p, &[], &mut s, t(45), 3, 1).replicas,
            2,
            "floor(1.5) = 1 step"
        );
        assert_eq!(max_step(3, None, Some(10.0), true), Some(1), "at least one");
        assert_eq!(max_step(3, None, None, true), None);
    }

    #[test]
    fn schedules_raise_the_minimum_and_bounds_beat_steps() {
        let mut p = free(1, 20);
        p.max_step_up_replicas = Some(2);
        p.cooldown_secs = 7200;
        p.schedules = vec![ScheduledOverride {
            name: "biz".into(),
            cron: "0 9 * * Mon-Fri".into(),
            duration_secs: 3600,
            min_replicas: 10,
            max_replicas: Some(30),
        }];
        let sch = compile_schedules(&p).expect("cron parses");
        let mut s = LimitState::default();
        let nine = 9 * 3600;
        assert_eq!(apply(&p, &sch, &mut s, t(nine - 60), 2, 2).replicas, 2);
        let r = apply(&p, &sch, &mut s, t(nine), 2, 2);
        assert_eq!(r.replicas, 10, "min wins over the +2 step");
        assert_eq!(r.limited_by.as_deref(), Some("schedule:biz"));
        assert_eq!(r.bounds, (10, 30));
        assert_eq!(apply(&p, &sch, &mut s, t(nine + 60), 10, 25).replicas, 12);
        // After the window the minimum is 1 again but the cooldown holds the scale-down.
        let r = apply(&p, &sch, &mut s, t(nine + 3600), 12, 1);
        assert_eq!(r.bounds, (1, 20));
        assert_eq!(r.replicas, 12);
    }

    proptest! {
        #[test]
        fn result_always_within_bounds(
            min in 0u32..50,
            span in 0u32..100,
            current in 0u32..300,
            proposals in proptest::collection::vec(0u32..400, 1..30),
            up_abs in proptest::option::of(1u32..10),
            down_pct in proptest::option::of(1.0f64..100.0),
            stab in 0u64..900,
            cool in 0u64..900,
        ) {
            let max = min + span.max(1);
            let mut p = free(min, max);
            p.max_step_up_replicas = up_abs;
            p.max_step_down_percent = down_pct;
            p.scale_down_stabilization_secs = stab;
            p.cooldown_secs = cool;
            let mut s = LimitState::default();
            let mut cur = current;
            for (i, prop) in proposals.iter().enumerate() {
                let r = apply(&p, &[], &mut s, t(i as i64 * 60), cur, *prop);
                prop_assert!(r.replicas >= min && r.replicas <= max,
                    "{} outside [{min}, {max}]", r.replicas);
                cur = r.replicas;
            }
        }
    }
}
