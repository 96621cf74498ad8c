//! Sinks: everything that sends records out of scalecast.
//!
//! [`kafka`] publishes JSON records (scaling recommendations, ...) keyed by
//! target with an idempotent producer.

pub mod kafka;
pub mod webhook;
