//! Workflow templates: the YAML format, its validation, DAG analysis and the catalog.

mod catalog;
pub mod classification;
pub mod dag;
mod document;
mod error;
pub mod handler_config;
mod keys;
mod manifest;
mod template;

pub use catalog::{well_formed_reference, Catalog, Source, Workflow};
pub use error::{CatalogError, WorkflowError};
pub use manifest::{Grant, GrantAction, Grantee, Manifest};
pub use template::{limits, StepTemplate, Template};
