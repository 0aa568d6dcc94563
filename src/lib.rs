//! Taskdeck: a terminal operations console with an embedded, durable DAG workflow engine.
//!
//! Imports point one way (design.md): `cli → engine → {store, handlers, workflow} → model`.

pub mod auth;
pub mod cli;
pub mod console;
pub mod demo;
pub mod engine;
pub mod fsutil;
pub mod handlers;
pub mod logging;
pub mod model;
pub mod services;
pub mod store;
pub mod workflow;
pub mod yaml;
