//! Identity and authorization: who is acting (signed tokens or the local user) and whether
//! they may do what they ask.

// Input never panics the engine: no `unwrap` here outside tests (issue 8).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

mod coordinator;
mod identity;
pub mod idp;
pub mod policy;
pub mod token;

pub use coordinator::{Coordinator, Denied, Request};
pub use identity::{Authn, Identity, Role};
pub use policy::{Permission, Policy};
