//! Identity and authorization: who is acting (signed tokens or the local user) and whether
//! they may do what they ask.

mod coordinator;
mod identity;
pub mod token;

pub use coordinator::{Coordinator, Denied, Request};
pub use identity::{Identity, Role};
