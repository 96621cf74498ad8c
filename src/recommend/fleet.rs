//! The live decision loop for every target of a policy file: load history, forecast models
//! (fit, refit, update) and one [`TargetRecommender`] per target.
//!
//! The pipeline feeds each target's load with [`Fleet::observe`] (one value per evaluation
//! interval, e.g. from the target's SQL query over the aggregates) and calls
//! [`Fleet::decide`] once per interval. For predictive and hybrid targets the fleet keeps the
//! load on a regular grid (`evaluation_interval_secs`), fits the configured model once
//! `min_history_secs` of history exist, refits every `refit_every_secs` on at most
//! `max_history_secs`, feeds every new slot to the model in between, and passes the forecast
//! to the recommender. Before that, or when the model fails, the reactive part decides and the
//! record's reason says so. Nothing here reads the wall clock or does I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::forecast::{Model, ModelConfig, Series, model_by_name};
use crate::recommend::decide::{Inputs, Observation, TargetRecommender};
use crate::recommend::policy::{PolicyFile, PredictiveConfig, TargetPolicy};
use crate::recommend::predictive::{ForecastWindow, lookahead_secs};
use crate::recommend::record::Recommendation;
use crate::recommend::vertical::UsageSample;
use crate::recommend::{RecommendError, Result};

/// One target's state in a [`Fleet`].
struct Member {
    recommender: TargetRecommender,
    /// Grid step, milliseconds (the evaluation interval).
    step_ms: i64,
    /// Absolute slot number (`ts / step`) of `history[0]`.
    base: i64,
    /// Load per slot; `NaN` = no value.
    history: Vec<f64>,
    model: Option<Box<dyn Model>>,
    /// Absolute slot after the last one the model has seen.
    model_next: i64,
    /// Absolute slot at which the model was last fitted.
    fitted_at: Option<i64>,
    /// Last fit error, reported in logs once.
    fit_error: Option<String>,
    last_recommended: Option<u32>,
}

/// Every target of a policy file with its history and models.
pub struct Fleet {
    members: BTreeMap<String, Member>,
}

impl Member {
    fn predictive(&self) -> Option<&PredictiveConfig> {
        self.recommender.predictive_config()
    }

    fn max_slots(&self) -> usize {
        let keep_secs = self
            .predictive()
            .map_or(3_600, |c| c.max_history_secs.max(c.min_history_secs));
        let step_secs = (self.step_ms / 1000).max(1) as u64;
        (keep_secs / step_secs).max(2) as usize
    }

    fn observe(&mut self, ts: DateTime<Utc>, value: f64) {
        let slot = ts.timestamp_millis().div_euclid(self.step_ms);
        if self.history.is_empty() {
            self.base = slot;
        }
        if slot < self.base {
            return; // older than everything kept
        }
        let idx = (slot - self.base) as usize;
        if idx >= self.history.len() {
            self.history.resize(idx + 1, f64::NAN);
        }
        // The latest value for a slot wins (a late, more complete aggregate).
        self.history[idx] = if value.is_finite() { value } else { f64::NAN };
        let max = self.max_slots();
        if self.history.len() > max {
            let drop = self.history.len() - max;
            self.history.drain(..drop);
            self.base += drop as i64;
        }
    }

    fn last_finite(&self) -> Option<(i64, f64)> {
        self.history
            .iter()
            .enumerate()
            .rev()
            .find(|(_, v)| v.is_finite())
            .map(|(i, v)| (self.base + i as i64, *v))
    }

    fn forecast(&mut self, data_slot: i64, data_ts: DateTime<Utc>) -> Option<ForecastWindow> {
        let cfg = self.predictive()?.clone();
        let policy = self.recommender.policy();
        let step_secs = (self.step_ms / 1000).max(1) as u64;
        let horizon = lookahead_secs(policy, &cfg).div_ceil(step_secs).max(1) as usize;
        let end = data_slot + 1; // exclusive
        let span_secs = (end - self.base) as u64 * step_secs;
        if span_secs < cfg.min_history_secs {
            return None;
        }
        let refit_slots = (cfg.refit_every_secs / step_secs).max(1) as i64;
        let needs_fit = match (self.model.as_ref(), self.fitted_at) {
            (Some(_), Some(at)) => end - at >= refit_slots || end < self.model_next,
            _ => true,
        };
        if needs_fit {
            let mcfg = ModelConfig {
                horizon,
                ..ModelConfig::default()
            };
            let series = Series {
                start_ms: self.base * self.step_ms,
                step_ms: self.step_ms,
                values: self.history[..(end - self.base) as usize].to_vec(),
            };
            let fitted = model_by_name(&cfg.model, &mcfg).and_then(|mut m| {
                m.fit(&series)?;
                Ok(m)
            });
            match fitted {
                Ok(m) => {
                    self.model = Some(m);
                    self.fitted_at = Some(end);
                    self.model_next = end;
                    self.fit_error = None;
                }
                Err(e) => {
                    let msg = e.to_string();
                    if self.fit_error.as_deref() != Some(msg.as_str()) {
                        tracing::warn!(target = %policy.name, error = %msg, "forecast fit failed; reactive only");
                    }
                    self.fit_error = Some(msg);
                    self.model = None;
                    return None;
                }
            }
        }
        let model = self.model.as_mut()?;
        while self.model_next < end {
            let idx = (self.model_next - self.base) as usize;
            model.update(self.history.get(idx).copied().unwrap_or(f64::NAN));
            self.model_next += 1;
        }
        match model.predict(horizon) {
            Ok(f) => Some(ForecastWindow::from_forecast(data_ts, &f)),
            Err(e) => {
                tracing::warn!(target = %policy.name, error = %e, "forecast failed");
                None
            }
        }
    }
}

impl Fleet {
    /// Builds the fleet for a (validated) policy file; `policy_name` names it in records.
    pub fn new(file: &PolicyFile, policy_name: &str) -> Result<Self> {
        file.validate().map_err(|errs| {
            RecommendError::Invalid(errs.iter().map(|e| e.to_string()).collect())
        })?;
        let mut members = BTreeMap::new();
        for t in &file.targets {
            let recommender = TargetRecommender::new(t.clone(), policy_name)?;
            let step_ms = i64::try_from(t.evaluation_interval_secs)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000)
                .max(1000);
            members.insert(
                t.name.clone(),
                Member {
                    recommender,
                    step_ms,
                    base: 0,
                    history: Vec::new(),
                    model: None,
                    model_next: 0,
                    fitted_at: None,
                    fit_error: None,
                    last_recommended: None,
                },
            );
        }
        Ok(Fleet { members })
    }

    /// The targets' policies, by name.
    pub fn targets(&self) -> impl Iterator<Item = &TargetPolicy> {
        self.members.values().map(|m| m.recommender.policy())
    }

    fn member(&mut self, target: &str) -> Result<&mut Member> {
        self.members
            .get_mut(target)
            .ok_or_else(|| RecommendError::Input(format!("unknown target {target:?}")))
    }

    /// Records the target's total load for the evaluation slot containing `ts`.
    pub fn observe(&mut self, target: &str, ts: DateTime<Utc>, load: f64) -> Result<()> {
        self.member(target)?.observe(ts, load);
        Ok(())
    }

    /// The fitted model's forecast for `target`, `h` evaluation intervals ahead of the
    /// last slot it has seen (for dashboards); `None` before the first fit.
    pub fn forecast(&self, target: &str, h: usize) -> Option<crate::forecast::Forecast> {
        let m = self.members.get(target)?;
        m.model.as_ref()?.predict(h.max(1)).ok()
    }

    /// Number of slots of load history kept for `target`.
    pub fn history_len(&self, target: &str) -> usize {
        self.members.get(target).map_or(0, |m| m.history.len())
    }

    /// Decides for `target` at `now`. `current_replicas` is what the actuator reports; `None`
    /// (shadow mode without an actuator) uses the previous recommendation, or `min_replicas`
    /// for the first decision. Vertical/hybrid targets need per-replica usage samples.
    pub fn decide(
        &mut self,
        target: &str,
        now: DateTime<Utc>,
        current_replicas: Option<u32>,
        cpu_usage: &[UsageSample],
        memory_usage: &[UsageSample],
    ) -> Result<Recommendation> {
        let m = self.member(target)?;
        let (slot, load) = m.last_finite().ok_or_else(|| {
            RecommendError::Input(format!("no load observed yet for target {target:?}"))
        })?;
        let data_ts = DateTime::<Utc>::from_timestamp_millis(slot.saturating_mul(m.step_ms))
            .ok_or_else(|| RecommendError::Input(format!("slot {slot} is out of range")))?;
        let forecast = m.forecast(slot, data_ts);
        let current = current_replicas
            .or(m.last_recommended)
            .unwrap_or(m.recommender.policy().min_replicas);
        let obs = Observation {
            ts: now,
            data_ts,
            load,
            current_replicas: current,
        };
        let rec = m.recommender.decide(Inputs {
            obs,
            forecast: forecast.as_ref(),
            cpu_usage,
            memory_usage,
        })?;
        m.last_recommended = Some(rec.recommended_replicas);
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    const YAML: &str = r#"
targets:
  - name: web
    metric: { name: load }
    capacity_per_replica: 1
    min_replicas: 1
    max_replicas: 100
    evaluation_interval_secs: 300
    cooldown_secs: 0
    scale_down_stabilization_secs: 0
    recommender:
      kind: predictive
      model: seasonal_naive
      provisioning_lead_time_secs: 300
      min_history_secs: 172800
      refit_every_secs: 21600
  - name: api
    metric: { name: load }
    capacity_per_replica: 1
    min_replicas: 2
    max_replicas: 10
    evaluation_interval_secs: 300
"#;

    fn t(slot: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + TimeDelta::seconds(300 * slot)
    }

    /// A daily square wave: 7 at night, 35 from 08:00 to 20:00.
    fn load(slot: i64) -> f64 {
        let hour = (slot % 288) / 12;
        if (8..20).contains(&hour) { 35.0 } else { 7.0 }
    }

    #[test]
    fn forecasts_start_after_min_history_and_anticipate_the_daily_rise() {
        let file = PolicyFile::from_yaml_str(YAML).expect("parses");
        let mut fleet = Fleet::new(&file, "test").expect("valid");
        assert_eq!(fleet.targets().count(), 2);
        let mut first_forecast = None;
        let mut ahead = None;
        for slot in 0..(288 * 3) {
            fleet
                .observe("web", t(slot), load(slot))
                .expect("known target");
            let rec = fleet
                .decide("web", t(slot), None, &[], &[])
                .expect("decides");
            if rec.forecast.is_some() && first_forecast.is_none() {
                first_forecast = Some(slot);
            }
            // Day 3, 07:55: the load is still 7 (needs 10 at 70 %) but 08:00 brings 35 (50).
            if slot == 2 * 288 + 8 * 12 - 1 {
                ahead = Some(rec.clone());
            }
        }
        assert_eq!(first_forecast, Some(576 - 1), "after 48 h of history");
        let rec = ahead.expect("decided at 07:55 on day 3");
        assert_eq!(rec.load, 7.0);
        assert_eq!(rec.recommended_replicas, 50, "{}", rec.reason);
        assert_eq!(rec.decided_by, "predictive");
        assert_eq!(rec.data_ts, t(2 * 288 + 8 * 12 - 1));
    }

    #[test]
    fn shadow_current_and_errors() {
        let file = PolicyFile::from_yaml_str(YAML).expect("parses");
        let mut fleet = Fleet::new(&file, "test").expect("valid");
        assert!(
            fleet.decide("api", t(0), None, &[], &[]).is_err(),
            "no data yet"
        );
        assert!(fleet.observe("nope", t(0), 1.0).is_err());
        fleet.observe("api", t(0), 7.0).expect("observe");
        let rec = fleet.decide("api", t(0), None, &[], &[]).expect("decides");
        assert_eq!((rec.current_replicas, rec.recommended_replicas), (2, 10));
        let rec = fleet.decide("api", t(1), None, &[], &[]).expect("decides");
        assert_eq!(
            rec.current_replicas, 10,
            "shadow mode continues from the last record"
        );
        let rec = fleet
            .decide("api", t(2), Some(4), &[], &[])
            .expect("decides");
        assert_eq!(rec.current_replicas, 4, "an actuator's count wins");
        // Gaps and late values: the newest finite slot is the load.
        fleet.observe("api", t(5), f64::NAN).expect("observe");
        assert_eq!(fleet.history_len("api"), 6);
        let rec = fleet.decide("api", t(5), None, &[], &[]).expect("decides");
        assert_eq!(rec.data_ts, t(0));
    }

    #[test]
    fn history_is_bounded() {
        let file = PolicyFile::from_yaml_str(YAML).expect("parses");
        let mut fleet = Fleet::new(&file, "test").expect("valid");
        for slot in 0..5000 {
            fleet.observe("web", t(slot), 1.0).expect("observe");
        }
        // max_history_secs default 14 days = 4032 slots of 300 s.
        assert_eq!(fleet.history_len("web"), 4032);
    }
}
