//! What the engine tells the outside about itself: Prometheus metrics (post 05).

pub mod metrics;

pub use metrics::Metrics;
