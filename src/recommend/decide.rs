//! One target's decision loop: recommender → limits → [`Recommendation`] record.
//!
//! [`TargetRecommender`] owns a target's policy, its parsed schedules and the state the limits
//! need (last actions, stabilization history). Call [`TargetRecommender::decide`] once per
//! evaluation interval with the newest load, the current replica count and, for the
//! predictive/hybrid recommenders, a forecast; vertical/hybrid also take per-replica usage
//! samples. Nothing reads the wall clock: `Observation::ts` is "now".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::recommend::limits::{self, CompiledSchedule, Direction, LimitState};
use crate::recommend::policy::{
    HpaConfig, PredictiveConfig, ReactiveFallback, RecommenderConfig, TargetPolicy,
};
use crate::recommend::predictive::{self, ForecastWindow, QuantilePoint};
use crate::recommend::record::{ForecastUsed, Recommendation};
use crate::recommend::vertical::{self, UsageSample};
use crate::recommend::{Result, hpa, reactive};

/// What a decision sees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Decision time ("now").
    pub ts: DateTime<Utc>,
    /// Time of the newest load sample.
    pub data_ts: DateTime<Utc>,
    /// Total load of the target, in the metric's unit.
    pub load: f64,
    /// Replicas the target currently has (desired count).
    pub current_replicas: u32,
}

/// A recommender's proposal before the policy's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// Proposed replicas.
    pub replicas: u32,
    /// Which recommender proposed it (`reactive`, `hpa`, `predictive`, `hybrid`, ...).
    pub by: &'static str,
    /// Why, in words.
    pub reason: String,
    /// The forecast step and quantile value that sized it, if any.
    pub forecast_point: Option<(QuantilePoint, f64)>,
}

impl Proposal {
    /// A proposal without forecast.
    pub fn new(replicas: u32, by: &'static str, reason: impl Into<String>) -> Self {
        Proposal {
            replicas,
            by,
            reason: reason.into(),
            forecast_point: None,
        }
    }
}

/// Everything one decision takes.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The observation.
    pub obs: Observation,
    /// A forecast of the load (predictive and hybrid).
    pub forecast: Option<&'a ForecastWindow>,
    /// Per-replica CPU usage samples, cores (vertical and hybrid).
    pub cpu_usage: &'a [UsageSample],
    /// Per-replica memory usage samples, GiB (vertical and hybrid).
    pub memory_usage: &'a [UsageSample],
}

impl<'a> Inputs<'a> {
    /// Inputs with only an observation.
    pub fn new(obs: Observation) -> Self {
        Inputs {
            obs,
            forecast: None,
            cpu_usage: &[],
            memory_usage: &[],
        }
    }

    /// Adds a forecast.
    pub fn with_forecast(mut self, f: Option<&'a ForecastWindow>) -> Self {
        self.forecast = f;
        self
    }
}

/// One target's recommender with its state.
#[derive(Debug, Clone)]
pub struct TargetRecommender {
    policy: TargetPolicy,
    policy_name: String,
    schedules: Vec<CompiledSchedule>,
    state: LimitState,
}

impl TargetRecommender {
    /// Builds the recommender for `policy` (validated first); `policy_name` names the policy
    /// set in records.
    pub fn new(policy: TargetPolicy, policy_name: &str) -> Result<Self> {
        policy.validate("target").map_err(|errs| {
            crate::recommend::RecommendError::Invalid(errs.iter().map(|e| e.to_string()).collect())
        })?;
        let schedules = limits::compile_schedules(&policy)?;
        Ok(TargetRecommender {
            policy,
            policy_name: policy_name.to_string(),
            schedules,
            state: LimitState::default(),
        })
    }

    /// The target's policy.
    pub fn policy(&self) -> &TargetPolicy {
        &self.policy
    }

    /// The predictive settings, if the recommender uses a forecast.
    pub fn predictive_config(&self) -> Option<&PredictiveConfig> {
        match &self.policy.recommender {
            RecommenderConfig::Predictive(p) => Some(p),
            RecommenderConfig::Hybrid(h) => h.predictive.as_ref(),
            _ => None,
        }
    }

    fn reactive_part(&self, cfg: &PredictiveConfig, obs: &Observation) -> Option<Proposal> {
        match cfg.reactive {
            ReactiveFallback::Hpa => Some(hpa::recommend(
                &self.policy,
                &HpaConfig {
                    tolerance: cfg.reactive_tolerance,
                },
                obs,
            )),
            ReactiveFallback::Reactive => {
                Some(reactive::recommend(&self.policy, &Default::default(), obs))
            }
            ReactiveFallback::None => None,
        }
    }

    /// Takes one decision and returns its record. The limits' state is updated as if the
    /// recommendation were carried out.
    pub fn decide(&mut self, inputs: Inputs<'_>) -> Result<Recommendation> {
        let obs = inputs.obs;
        let policy = &self.policy;
        let mut vertical_rec = None;
        let proposal = match &policy.recommender {
            RecommenderConfig::Reactive(c) => reactive::recommend(policy, c, &obs),
            RecommenderConfig::Hpa(c) => hpa::recommend(policy, c, &obs),
            RecommenderConfig::Predictive(c) => {
                let re = self.reactive_part(c, &obs);
                predictive::recommend(policy, c, &obs, inputs.forecast, re)
            }
            RecommenderConfig::Vertical(c) => {
                let v = vertical::recommend(c, obs.ts, inputs.cpu_usage, inputs.memory_usage)?;
                let p = Proposal::new(obs.current_replicas, "vertical", v.reason.clone());
                vertical_rec = Some(v);
                p
            }
            RecommenderConfig::Hybrid(c) => {
                let (p, v) = vertical::recommend_hybrid(
                    policy,
                    c,
                    &obs,
                    inputs.forecast,
                    inputs.cpu_usage,
                    inputs.memory_usage,
                )?;
                vertical_rec = Some(v);
                p
            }
        };
        let limited = limits::apply(
            policy,
            &self.schedules,
            &mut self.state,
            obs.ts,
            obs.current_replicas,
            proposal.replicas,
        );
        let recommended = limited.replicas;
        let policy = &self.policy;

        let quantile_cfg = self.predictive_config();
        let forecast_used = match (&proposal.forecast_point, inputs.forecast, quantile_cfg) {
            (Some((point, value)), Some(f), Some(c)) => Some(ForecastUsed {
                model: f.model.clone(),
                quantile: c.quantile,
                value: *value,
                at: point.ts,
                p50: point.p50,
                p90: point.p90,
                lookahead_secs: predictive::lookahead_secs(policy, c),
            }),
            _ => None,
        };
        let under_prob = match (inputs.forecast, quantile_cfg) {
            (Some(f), Some(c)) => {
                predictive::under_provisioning_probability(policy, c, obs.ts, f, recommended)
            }
            _ => None,
        };

        let current_res = policy.resources.clone();
        let (rec_cpu, rec_mem) = match &vertical_rec {
            Some(v) => (Some(v.cpu_cores.target), Some(v.memory_gib.target)),
            None => (None, None),
        };
        let cost_before = policy
            .replica_hour_usd()
            .map(|c| c * f64::from(obs.current_replicas));
        let cost_after = match (&vertical_rec, policy.pricing.replica_hour_usd) {
            (Some(v), None) => Some(
                f64::from(recommended)
                    * (v.cpu_cores.target * policy.pricing.cpu_core_hour_usd
                        + v.memory_gib.target * policy.pricing.memory_gib_hour_usd),
            ),
            _ => policy
                .replica_hour_usd()
                .map(|c| c * f64::from(recommended)),
        };

        let mut reason = proposal.reason.clone();
        for n in &limited.notes {
            reason.push_str("; ");
            reason.push_str(n);
        }
        if recommended == obs.current_replicas && proposal.replicas != obs.current_replicas {
            reason.push_str(&format!("; stays at {recommended}"));
        }
        let decided_by = limited
            .limited_by
            .clone()
            .unwrap_or_else(|| proposal.by.to_string());
        Ok(Recommendation {
            ts: obs.ts,
            data_ts: obs.data_ts,
            target: policy.name.clone(),
            policy: self.policy_name.clone(),
            recommender: policy.recommender.name().to_string(),
            decided_by,
            mode: policy.mode,
            current_replicas: obs.current_replicas,
            recommended_replicas: recommended,
            direction: Direction::of(obs.current_replicas, recommended),
            load: obs.load,
            forecast: forecast_used,
            current_cpu_cores: current_res.as_ref().map(|r| r.cpu_cores),
            recommended_cpu_cores: rec_cpu,
            current_memory_gib: current_res.as_ref().map(|r| r.memory_gib),
            recommended_memory_gib: rec_mem,
            cost_per_hour_before: cost_before,
            cost_per_hour_after: cost_after,
            under_provisioning_probability: under_prob,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::policy::{HybridConfig, Pricing, Resources};
    use chrono::{TimeDelta, TimeZone};

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(secs)
    }

    fn obs(secs: i64, load: f64, current: u32) -> Observation {
        Observation {
            ts: t(secs),
            data_ts: t(secs - 15),
            load,
            current_replicas: current,
        }
    }

    #[test]
    fn record_carries_cost_reason_and_decider() {
        let mut p = TargetPolicy::example("web", 1.0, 1, 8);
        p.pricing = Pricing {
            replica_hour_usd: Some(0.5),
            ..Pricing::default()
        };
        let mut r = TargetRecommender::new(p, "prod-policies").expect("valid");
        let rec = r.decide(Inputs::new(obs(0, 3.5, 2))).expect("decides");
        assert_eq!(rec.target, "web");
        assert_eq!(rec.policy, "prod-policies");
        assert_eq!(rec.recommender, "hpa");
        assert_eq!(rec.decided_by, "hpa");
        assert_eq!((rec.current_replicas, rec.recommended_replicas), (2, 5));
        assert_eq!(rec.direction, Direction::Up);
        assert_eq!(rec.data_ts, t(-15));
        assert_eq!(rec.cost_per_hour_before, Some(1.0));
        assert_eq!(rec.cost_per_hour_after, Some(2.5));
        assert_eq!(rec.under_provisioning_probability, None, "no forecast");
        assert!(rec.reason.contains("ceil(2 × 2.500) = 5"), "{}", rec.reason);
        // 14 / 0.7 = 20 > max 8: capped, and the record says the limit decided.
        let rec = r.decide(Inputs::new(obs(60, 14.0, 5))).expect("decides");
        assert_eq!(
            (rec.recommended_replicas, rec.decided_by.as_str()),
            (8, "max_replicas")
        );
        assert!(
            rec.reason.contains("capped at max_replicas 8"),
            "{}",
            rec.reason
        );
        // A drop right after is held by the default 300 s stabilization.
        let rec = r.decide(Inputs::new(obs(120, 0.7, 8))).expect("decides");
        assert_eq!(rec.recommended_replicas, 8);
        assert_eq!(rec.decided_by, "stabilization");
        assert_eq!(rec.direction, Direction::None);
    }

    #[test]
    fn predictive_record_has_forecast_and_probability() {
        let mut p = TargetPolicy::example("web", 10.0, 1, 50);
        p.recommender = RecommenderConfig::Predictive(PredictiveConfig::default());
        let mut r = TargetRecommender::new(p, "p").expect("valid");
        let f = ForecastWindow {
            model: "ets".into(),
            issued_at: t(0),
            points: vec![QuantilePoint {
                ts: t(300),
                mean: 60.0,
                p10: 50.0,
                p50: 60.0,
                p90: 70.0,
            }],
        };
        let rec = r
            .decide(Inputs::new(obs(0, 14.0, 2)).with_forecast(Some(&f)))
            .expect("decides");
        assert_eq!(rec.recommended_replicas, 10, "p90 70 / 7 per replica");
        assert_eq!(rec.decided_by, "predictive");
        let fu = rec.forecast.expect("forecast recorded");
        assert_eq!(
            (fu.model.as_str(), fu.quantile, fu.value),
            ("ets", 0.9, 70.0)
        );
        assert_eq!(fu.lookahead_secs, 360);
        let prob = rec.under_provisioning_probability.expect("probability");
        assert!((prob - 0.1).abs() < 1e-6, "sized at p90 → 10 %: {prob}");
    }

    #[test]
    fn vertical_and_hybrid_records_have_requests_and_costs() {
        let samples = |scale: f64| -> Vec<UsageSample> {
            (1..=10)
                .map(|i| UsageSample {
                    ts: t(0),
                    value: f64::from(i) * scale / 10.0,
                })
                .collect()
        };
        let (cpu, mem) = (samples(1.0), samples(4.0));
        let mut p = TargetPolicy::example("api", 1.0, 1, 20);
        p.resources = Some(Resources {
            cpu_cores: 2.0,
            memory_gib: 8.0,
        });
        p.recommender = RecommenderConfig::Vertical(Default::default());
        let mut r = TargetRecommender::new(p.clone(), "p").expect("valid");
        let inputs = Inputs {
            obs: obs(0, 2.0, 3),
            forecast: None,
            cpu_usage: &cpu,
            memory_usage: &mem,
        };
        let rec = r.decide(inputs).expect("decides");
        assert_eq!(rec.recommended_replicas, 3, "vertical keeps replicas");
        assert_eq!(rec.current_cpu_cores, Some(2.0));
        assert!((rec.recommended_cpu_cores.expect("cpu") - 1.035).abs() < 1e-12);
        assert!((rec.recommended_memory_gib.expect("mem") - 4.14).abs() < 1e-12);
        let before = 3.0 * (2.0 * 0.031611 + 8.0 * 0.004237);
        let after = 3.0 * (1.035 * 0.031611 + 4.14 * 0.004237);
        assert!((rec.cost_per_hour_before.expect("before") - before).abs() < 1e-12);
        assert!((rec.cost_per_hour_after.expect("after") - after).abs() < 1e-12);
        // No samples: an error, not a panic.
        let empty = Inputs::new(obs(60, 2.0, 3));
        assert!(r.decide(empty).is_err());

        p.recommender = RecommenderConfig::Hybrid(HybridConfig::default());
        let mut h = TargetRecommender::new(p, "p").expect("valid");
        let rec = h
            .decide(Inputs {
                obs: obs(0, 5.0, 3),
                forecast: None,
                cpu_usage: &cpu,
                memory_usage: &mem,
            })
            .expect("decides");
        assert_eq!(rec.recommender, "hybrid");
        assert_eq!(rec.recommended_replicas, 7);
        assert!(rec.recommended_cpu_cores.is_some());
    }

    #[test]
    fn extreme_windows_do_not_panic() {
        let mut p = TargetPolicy::example("x", 1.0, 1, 10);
        p.cooldown_secs = u64::MAX;
        p.scale_up_cooldown_secs = u64::MAX;
        p.scale_down_stabilization_secs = u64::MAX;
        p.evaluation_interval_secs = u64::MAX;
        p.recommender = RecommenderConfig::Predictive(PredictiveConfig {
            provisioning_lead_time_secs: u64::MAX,
            lookahead_secs: Some(u64::MAX),
            ..PredictiveConfig::default()
        });
        let mut r = TargetRecommender::new(p, "p").expect("valid");
        let f = ForecastWindow {
            model: "m".into(),
            issued_at: t(0),
            points: vec![QuantilePoint {
                ts: t(60),
                mean: 5.0,
                p10: 4.0,
                p50: 5.0,
                p90: 6.0,
            }],
        };
        let a = r
            .decide(Inputs::new(obs(0, 3.0, 2)).with_forecast(Some(&f)))
            .expect("decides");
        assert_eq!(a.recommended_replicas, 9, "p90 6 / 0.7 → 9");
        let b = r.decide(Inputs::new(obs(60, 0.0, 9))).expect("decides");
        assert_eq!(b.recommended_replicas, 9, "held by the endless cooldown");
    }

    #[test]
    fn invalid_policy_is_rejected() {
        let p = TargetPolicy::example("x", 1.0, 5, 2);
        assert!(TargetRecommender::new(p, "p").is_err());
    }
}
