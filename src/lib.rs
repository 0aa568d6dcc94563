//! Taskdeck: a terminal operations console with an embedded, durable DAG workflow engine.
//!
//! Imports point one way (design.md): `cli → console → client → {api, engine}`, `api →
//! engine → {store, handlers, workflow, auth} → model`.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod client;
pub mod console;
pub mod demo;
pub mod engine;
pub mod fsutil;
pub mod handlers;
pub mod logging;
pub mod model;
pub mod privacy;
pub mod services;
pub mod store;
pub mod telemetry;
pub mod workflow;
pub mod yaml;
