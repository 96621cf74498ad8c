//! Scaling recommendations under policy, and the `scalecast simulate` replay.
//!
//! The decision stage turns the current load and (optionally) a forecast into a replica count
//! (and, for the vertical/hybrid recommenders, per-replica CPU/memory requests). Every decision
//! is a [`Recommendation`] record: what was decided, by which recommender and which limit, with
//! the forecast used, the expected cost per hour before and after, an estimated probability of
//! under-provisioning and the reason in words.
//!
//! Flow for one target ([`TargetRecommender::decide`]):
//! 1. the configured recommender proposes a replica count — [`reactive`] thresholds,
//!    [`hpa`]-like target tracking, [`predictive`] (`max(forecast sizing, reactive)`),
//!    [`vertical`] (requests only) or hybrid (replicas and requests together);
//! 2. the policy's limits are applied in a fixed order ([`limits`]): scheduled overrides,
//!    min/max, scale-down stabilization, cooldowns, max step, and min/max again (bounds always
//!    win);
//! 3. the result is recorded; only in `forecast_and_scale` mode is an [`Actuator`] called
//!    ([`actuator::dispatch`]). `forecast_only` (the default) never calls one.
//!
//! [`Fleet`] runs that loop for every target of a policy file in the live pipeline: load
//! history per target, forecast models fitted after `min_history_secs`, refitted every
//! `refit_every_secs` and updated with every new value.
//!
//! All time logic takes explicit timestamps; nothing here reads the wall clock, so every
//! decision can be replayed ([`simulate`]).
//!
//! Units: loads are in the metric's unit (cores, rps, ...) and are the *total* load of the
//! target; `capacity_per_replica` is the load one replica carries at 100 %.

pub mod actuator;
pub mod decide;
pub mod fleet;
pub mod hpa;
pub mod limits;
pub mod policy;
pub mod predictive;
pub mod reactive;
pub mod record;
pub mod simulate;
pub mod vertical;

pub use actuator::{Actuator, ActuatorFuture, Dispatch, dispatch};
pub use decide::{Inputs, Observation, Proposal, TargetRecommender};
pub use fleet::Fleet;
pub use policy::{
    FieldError, MetricKind, MetricSpec, Mode, PolicyFile, RecommenderConfig, TargetKind,
    TargetPolicy,
};
pub use predictive::{ForecastWindow, QuantilePoint};
pub use record::{ForecastUsed, Recommendation, recommendations_schema, records_to_batch};
pub use simulate::{SimulateArgs, SimulateReport, run};
pub use vertical::{ResourceBounds, UsageSample, VerticalRecommendation};

use thiserror::Error;

/// Errors of the recommendation stage.
#[derive(Debug, Error)]
pub enum RecommendError {
    /// A policy could not be parsed.
    #[error("policy: {0}")]
    Policy(String),
    /// A policy parsed but failed validation; one entry per problem (`field: reason`).
    #[error("invalid policy: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// Input data are unusable (empty trace, bad column, non-finite values, ...).
    #[error("invalid input: {0}")]
    Input(String),
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A CSV file could not be read or written.
    #[error("CSV error in {path}: {reason}")]
    Csv {
        /// The path involved.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Building an Arrow batch failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The forecasting stage failed.
    #[error("forecast: {0}")]
    Forecast(String),
    /// Rendering the plot failed.
    #[error("plot: {0}")]
    Plot(String),
    /// An actuator reported a failure.
    #[error("actuator {actuator}: {reason}")]
    Actuator {
        /// Actuator name.
        actuator: String,
        /// What went wrong.
        reason: String,
    },
}

/// Result alias of the recommendation stage.
pub type Result<T> = std::result::Result<T, RecommendError>;
