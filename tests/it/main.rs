//! Black-box tests of scalecast (one test binary, so the heavy dependency
//! graph is linked once). Servers listen on 127.0.0.1:0; data lives in
//! temporary directories. Tests that need real components (Prometheus,
//! node_exporter) install and start them themselves, and skip with a printed
//! reason only when the install is impossible.

mod actuators;
mod cloudwatch;
mod common;
mod control;
mod crash;
mod dashboard;
mod engine;
mod http_api;
mod kafka;
mod prometheus_e2e;
mod scaling;
mod scrape;
mod webhooks;
