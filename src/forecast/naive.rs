//! Naive (random walk) forecaster: every future step equals the last observation.
//!
//! No parameters. The reference every other model has to beat on noisy series; `auto` falls
//! back to it (or to a blend with it) when nothing does better in its validation backtest.

use crate::forecast::PointModel;
use crate::forecast::error::{ForecastError, Result};

/// Last-value forecaster. Construct with [`Naive::new`] or `model_by_name("naive", ..)`.
#[derive(Debug, Clone, Default)]
pub struct Naive {
    last: Option<f64>,
}

impl Naive {
    /// An unfitted naive model.
    pub fn new() -> Self {
        Naive { last: None }
    }
}

impl PointModel for Naive {
    fn name(&self) -> String {
        "naive".to_string()
    }

    fn min_points(&self) -> usize {
        1
    }

    fn fit_params(&mut self, y: &[f64], _start_ms: i64, _step_ms: i64) -> Result<()> {
        self.reset(y)
    }

    fn reset(&mut self, y: &[f64]) -> Result<()> {
        let last = y
            .iter()
            .rev()
            .find(|v| v.is_finite())
            .ok_or_else(|| ForecastError::EmptySeries("naive: no finite value".into()))?;
        self.last = Some(*last);
        Ok(())
    }

    fn update(&mut self, y: f64) {
        if y.is_finite() {
            self.last = Some(y);
        }
    }

    fn point(&self, h: usize) -> Vec<f64> {
        vec![self.last.unwrap_or(f64::NAN); h]
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({ "last": self.last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::{ModelConfig, Series, model_by_name};

    #[test]
    fn repeats_last_value_and_updates() {
        let mut m = model_by_name("naive", &ModelConfig::default()).unwrap();
        let s = Series::new(0, 10, vec![1.0, 3.0, 2.0, 4.0]).unwrap();
        m.fit(&s).unwrap();
        let f = m.predict(3).unwrap();
        assert_eq!(f.mean, vec![4.0; 3]);
        assert_eq!(f.start_ms, 40);
        m.update(7.0);
        let f = m.predict(2).unwrap();
        assert_eq!(f.mean, vec![7.0; 2]);
        assert_eq!(f.start_ms, 50);
        // A gap keeps the level and moves the clock.
        m.update(f64::NAN);
        let f = m.predict(1).unwrap();
        assert_eq!(f.mean, vec![7.0]);
        assert_eq!(f.start_ms, 60);
    }

    #[test]
    fn constant_series_has_zero_width_band() {
        let mut m = model_by_name("naive", &ModelConfig::default()).unwrap();
        m.fit(&Series::new(0, 1, vec![5.0; 50]).unwrap()).unwrap();
        let f = m.predict(4).unwrap();
        assert_eq!(f.p10, vec![5.0; 4]);
        assert_eq!(f.p90, vec![5.0; 4]);
    }

    #[test]
    fn bad_input_errors() {
        let mut m = model_by_name("naive", &ModelConfig::default()).unwrap();
        assert!(matches!(m.predict(1), Err(ForecastError::NotFitted(_))));
        assert!(m.fit(&Series::new(0, 1, vec![]).unwrap()).is_err());
        assert!(
            m.fit(&Series::new(0, 1, vec![f64::NAN; 4]).unwrap())
                .is_err()
        );
        m.fit(&Series::new(0, 1, vec![1.0]).unwrap()).unwrap();
        assert!(m.predict(0).is_err());
    }
}
