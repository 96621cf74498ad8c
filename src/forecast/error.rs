//! Error type of the forecasting stage.
//!
//! Every fallible function in [`crate::forecast`] returns [`Result`], whose error is
//! [`ForecastError`]. Bad input (empty series, all-NaN, non-finite timestamps, a horizon of
//! zero, an unknown model name, ...) is reported through this type; the forecasting code never
//! panics on input.

use thiserror::Error;

/// Errors raised by the forecasting stage.
#[derive(Debug, Error)]
pub enum ForecastError {
    /// The input series has no usable (finite) observation at all.
    #[error("empty series: {0}")]
    EmptySeries(String),

    /// The series is shorter than what the model or protocol needs.
    #[error("series too short: {what} needs at least {needed} points, got {got}")]
    TooShort {
        /// What needed the points (model name, protocol step, ...).
        what: String,
        /// Minimum number of points required.
        needed: usize,
        /// Number of points available.
        got: usize,
    },

    /// Input data is malformed (lengths differ, timestamps not increasing, bad step, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// `model_by_name` got a name it does not know.
    #[error("unknown model {0:?} (known: naive, seasonal_naive, ets, linreg, auto)")]
    UnknownModel(String),

    /// `predict` or `update` was called before a successful `fit`.
    #[error("model {0} is not fitted")]
    NotFitted(String),

    /// Numerical failure while fitting (singular system, non-finite likelihood, ...).
    #[error("fit failed for {model}: {reason}")]
    Fit {
        /// Model name.
        model: String,
        /// Human readable reason.
        reason: String,
    },

    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A CSV file could not be parsed.
    #[error("CSV error in {path}: {reason}")]
    Csv {
        /// The path involved.
        path: String,
        /// Human readable reason (line and field when known).
        reason: String,
    },

    /// Rendering a plot failed.
    #[error("plot error: {0}")]
    Plot(String),

    /// JSON (de)serialisation of fitted parameters failed.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result alias of the forecasting stage.
pub type Result<T> = std::result::Result<T, ForecastError>;

impl ForecastError {
    /// Shorthand for [`ForecastError::Fit`].
    pub(crate) fn fit(model: impl Into<String>, reason: impl Into<String>) -> Self {
        ForecastError::Fit {
            model: model.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`ForecastError::Io`].
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        ForecastError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
