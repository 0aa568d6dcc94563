//! What the engine tells the outside about itself (post 05): Prometheus metrics, and the
//! filter that keeps personal data out of logs.

pub mod filter;
pub mod metrics;
pub mod recent;
pub mod signals;
pub mod traces;

pub use metrics::Metrics;
