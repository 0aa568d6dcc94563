//! Persistence of model records behind the `Store` trait: an append-only transition log plus
//! one snapshot per task. sled is the implementation today; the trait keeps it replaceable.

// Input never panics the engine: no `unwrap` here outside tests (issue 8).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

mod sled_store;

use crate::model::{Event, Task, Transition};
pub use sled_store::SledStore;

/// When a commit is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Durability {
    /// Flushed before `commit` returns; the engine groups the transitions that happen together
    /// into one commit, so they share one flush.
    #[default]
    Immediate,
    /// Left to sled's background flush (every 500 ms): faster, but a crash may lose the last
    /// half second. For demos.
    Relaxed,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Immediate => "immediate",
            Durability::Relaxed => "relaxed",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the data directory {0} is in use by another taskdeck process that serves no API (a short command, or `--no-api`); wait for it, or stop it")]
    Locked(String),
    /// The store exists but cannot be opened; `advice` says what to do.
    #[error("cannot open the store {path}: {cause}; {advice}")]
    Open {
        path: String,
        cause: String,
        advice: &'static str,
    },
    /// The data directory had a store (its marker file says so) and the store is gone.
    #[error("the store {path} is missing, but this data directory had one ({marker}); restore it from a backup, or delete {marker} to start with an empty store")]
    Missing { path: String, marker: String },
    #[error("storage error: {0}")]
    Sled(sled::Error),
    #[error("stored record {key} is unreadable: {cause}")]
    Corrupt { key: String, cause: String },
    #[error("cannot encode a record for the store: {0}")]
    Encode(String),
    #[error("no task matches `{0}`")]
    NoSuchTask(String),
    #[error("`{prefix}` matches several tasks: {matches}; give more characters")]
    Ambiguous { prefix: String, matches: String },
}

// Not `#[from]`: a sled error is shown once, in this error's own message, not again as its
// source (anyhow's `{:#}` prints the chain).
impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(e)
    }
}

pub trait Store: Send + Sync {
    /// Writes task snapshots, transitions and the events that announce them as one group;
    /// with `Immediate` durability they are on disk when this returns. Events carry their
    /// sequence numbers (`Event::seq`, increasing, assigned by the engine).
    fn commit(&self, tasks: &[&Task], transitions: &[Transition], events: &[Event])
        -> Result<(), StoreError>;
    fn task(&self, id: &str) -> Result<Option<Task>, StoreError>;
    /// Tasks `accept`s whose id is `text`, or else starts with it, or else (4 characters or
    /// more) ends with it (the short id): at most `limit`. `accept` is the caller's read
    /// permission (see `engine::lookup`), so others' tasks neither show nor count; an empty
    /// `text` matches nothing.
    fn find_tasks(
        &self,
        text: &str,
        accept: &dyn Fn(&Task) -> bool,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError>;
    /// The task created by the step whose idempotency key is `key`, if any.
    fn task_by_origin(&self, key: &str) -> Result<Option<Task>, StoreError>;
    /// Every task, oldest first.
    fn tasks(&self) -> Result<Vec<Task>, StoreError>;
    /// Up to `limit` tasks `accept`s with an id after `after` (all when `None`), oldest first:
    /// one page of a listing, resumed from the last id of the page before.
    fn tasks_after(
        &self,
        after: Option<&str>,
        accept: &dyn Fn(&Task) -> bool,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError>;
    /// Tasks in `pending` or `in_progress`: what the engine resumes on start.
    fn active_tasks(&self) -> Result<Vec<Task>, StoreError>;
    /// One task's transitions in the order they were made.
    fn transitions(&self, task_id: &str) -> Result<Vec<Transition>, StoreError>;
    /// Up to `limit` stored events with a sequence number above `after`, in order.
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// The highest event sequence number stored (0 when none).
    fn last_event_seq(&self) -> Result<u64, StoreError>;
    /// The highest transition sequence number stored (0 when none).
    fn last_seq(&self) -> Result<u64, StoreError>;
    fn durability(&self) -> Durability;
    /// Writes everything to disk now.
    fn flush(&self) -> Result<(), StoreError>;
}
