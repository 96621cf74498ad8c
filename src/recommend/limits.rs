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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// More replicas (or larger requests).
    Up,
    /// Fewer replicas (or smaller requests).
    Down,
    /// No change.
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

fn secs(d: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(d).unwrap_or(i64::MAX / 4_000))
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
