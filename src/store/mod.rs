//! Persistence of model records behind the `Store` trait: an append-only transition log, one
//! small record per task (its header), per step (its status) and per context, and indexes for
//! every listing. sled is the implementation today; the trait names no sled type, so a second
//! backend (PostgreSQL) passes the same conformance suite (`tests/store_conformance.rs`).

// Input never panics the engine: no `unwrap` here outside tests (issue 8).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

pub mod copy;
mod postgres;
mod records;
mod sled_store;
mod sync;

use crate::model::{Event, Task, TaskState, Timestamp, Transition};
pub use postgres::{
    is_postgres_url, schema_version as postgres_schema_version, PgStore, PgTarget, LEASE_SECONDS_ENV,
};
use serde_json::Value;
pub use sled_store::{locked as data_dir_locked, open_services_db, SledStore, CRASH_AFTER_LOG};

/// When a commit is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// On stable storage before `commit` returns: sled's flush, then `fdatasync` of the files
    /// it wrote (the log, new blob files and their directory). The engine groups the
    /// transitions that happen together into one commit, so they share one sync.
    #[default]
    Immediate,
    /// Written to the operating system by sled's background flush every 500 ms, which also
    /// `fsync`s: a process crash (`kill -9`) may lose the last half second, a power cut
    /// the last half second plus whatever the disk had not written. For demos.
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
    /// Another process holds the store; the message names it and says what to do.
    #[error("{0}")]
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
    /// The backend failed (a disk error, a lost database connection); the message says how.
    #[error("storage error: {0}")]
    Backend(String),
    #[error("stored record {key} is unreadable: {cause}")]
    Corrupt { key: String, cause: String },
    #[error("cannot encode a record for the store: {0}")]
    Encode(String),
    /// The task is driven by another engine sharing the store, which was asked to hand it
    /// over (it does once no step of the task runs).
    #[error(
        "task {task} is driven by another engine ({holder}); it was asked to hand the task over, try again"
    )]
    HeldElsewhere { task: String, holder: String },
    /// This engine's lease on these tasks was taken away (it stopped answering for longer
    /// than the lease): another engine drives them now, and nothing of theirs was stored.
    #[error("this engine no longer holds task(s) {}: another engine took them over", .0.join(", "))]
    Fenced(Vec<String>),
    #[error("no task matches `{0}`")]
    NoSuchTask(String),
    #[error("`{prefix}` matches several tasks: {matches}; give more characters")]
    Ambiguous { prefix: String, matches: String },
}

/// A task written by a commit: its header (state, times, `seq`) always; for a task created in
/// this group (`context` is `Some`), its context and step definitions too. Step statuses come
/// from the group's transitions, so a commit writes what changed, never the whole task.
pub struct TaskWrite<'a> {
    /// The task as it stands after the group (its `context` field is not read).
    pub task: &'a Task,
    pub context: Option<&'a Value>,
    /// The task's state and last change as last stored, if the caller knows them (saves the
    /// store reading them back to find stale index entries).
    pub before: Option<(TaskState, Timestamp)>,
}

/// Which tasks a listing returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub namespace: Option<String>,
    pub state: Option<TaskState>,
    /// Namespace and name of a workflow (every version).
    pub workflow: Option<(String, String)>,
    /// Only tasks whose id sorts before this one (the previous page's last id): ids are
    /// UUIDv7, so this is "created before".
    pub before: Option<String>,
    /// Only tasks created at or after this time (ms since the Unix epoch).
    pub since: Option<Timestamp>,
    /// Headers only: steps empty and context `null` (counts and filters need no more).
    pub headers_only: bool,
    /// Search term hashes every task listed carries (`engine::search`).
    pub terms: Vec<String>,
    /// A personal field's term counts too (the caller holds `pii:read`); otherwise the
    /// personal index is not even read, so its contents cannot be timed.
    pub personal: bool,
}

/// A listing's read permission: whether the caller may see a task (shown its header only).
pub type Accept<'a> = dyn for<'t> Fn(&'t Task) -> bool + Sync + 'a;

/// A step waiting for a person's decision, as the approvals index finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub task_id: String,
    pub step: String,
}

/// The store. Async so a backend may wait on a server (PostgreSQL); sled's methods do short
/// synchronous work and never wait. The engine calls `commit` from its own task, once per turn.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Writes task headers (and, for new tasks, contexts and step definitions), the
    /// transitions and the events that announce them as one group. Atomic to every reader of
    /// this trait: a crash at any point leaves either the group or, after `open`'s recovery,
    /// a state every later read brings up to date from the log. With `Immediate` durability
    /// the group is on stable storage when this returns. Events carry their sequence numbers
    /// (`Event::seq`, increasing, assigned by the engine).
    async fn commit(
        &self,
        tasks: &[TaskWrite<'_>],
        transitions: &[Transition],
        events: &[Event],
    ) -> Result<(), StoreError>;
    /// The whole task (header, steps, context), or `None`.
    async fn task(&self, id: &str) -> Result<Option<Task>, StoreError>;
    /// Tasks `accept`s whose id is `text`, or else starts with it, or else (4 characters or
    /// more) ends with it (the short id): at most `limit`. `accept` is the caller's read
    /// permission (see `engine::lookup`), shown the task's header only, so others' tasks neither
    /// show nor count; an empty `text` matches nothing.
    async fn find_tasks(
        &self,
        text: &str,
        accept: &Accept<'_>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError>;
    /// The task created by the step whose idempotency key is `key`, if any.
    async fn task_by_origin(&self, key: &str) -> Result<Option<Task>, StoreError>;
    /// Up to `limit` tasks matching `listing` that `accept`s (shown the header only), newest
    /// first, read through the narrowest index the listing allows.
    async fn list(
        &self,
        listing: &Listing,
        accept: &Accept<'_>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError>;
    /// How many stored tasks are in `state`, counted from the state index without reading
    /// them; it knows nothing of permissions (the query side uses it for callers who may read
    /// every task).
    async fn count(&self, state: TaskState) -> Result<u64, StoreError>;
    /// Tasks in `pending` or `in_progress`: what the engine resumes on start.
    async fn active_tasks(&self) -> Result<Vec<Task>, StoreError>;
    /// Steps waiting for a person's decision, oldest task first.
    async fn waiting_for_decision(&self) -> Result<Vec<Waiting>, StoreError>;
    /// One task's transitions in the order they were made.
    async fn transitions(&self, task_id: &str) -> Result<Vec<Transition>, StoreError>;
    /// Up to `limit` stored events with a sequence number above `after`, in order.
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// The highest event sequence number stored (0 when none).
    async fn last_event_seq(&self) -> Result<u64, StoreError>;
    /// The id of the oldest stored task (ids are UUIDv7, so they sort by creation), or `None`
    /// when the store holds no task.
    async fn oldest_task_id(&self) -> Result<Option<String>, StoreError>;
    /// The highest transition sequence number stored (0 when none).
    async fn last_seq(&self) -> Result<u64, StoreError>;
    /// Up to `limit` ids of tasks the engine no longer drives (complete, error, cancelled,
    /// resolved) whose last change is before `before`, oldest change first: what retention
    /// may archive and remove.
    async fn finished_before(&self, before: Timestamp, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Up to `limit` ids of finished tasks beyond the `keep` changed most recently, most
    /// recently changed first: what a cap on finished tasks lets go.
    async fn finished_beyond(&self, keep: usize, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Removes finished tasks with every record of theirs (header, context, steps,
    /// transitions, index entries), and events older than `events_before`; returns how many
    /// tasks it removed. A task that is active again (retried since it was chosen) is kept.
    async fn remove(&self, ids: &[String], events_before: Timestamp) -> Result<usize, StoreError>;
    /// Whether the store takes a write now (a readiness probe: a failed disk or a lost
    /// database connection says so here). Writes a few bytes, never syncs.
    async fn check_writable(&self) -> Result<(), StoreError>;
    fn durability(&self) -> Durability;
    /// Writes everything to stable storage now.
    async fn flush(&self) -> Result<(), StoreError>;

    /// Appends `records` to the audit journal, chained after its head, and makes them durable
    /// as a commit would: for what is not a transition (a refused request, a token, an
    /// export); `commit` journals every transition itself, in the same group. Returns the
    /// entries as written. Never removes or rewrites an entry (`crate::audit`).
    async fn append_audit(
        &self,
        records: Vec<crate::audit::AuditRecord>,
    ) -> Result<Vec<crate::audit::AuditEntry>, StoreError>;
    /// Up to `limit` journal entries stored after place `after`, in storage order, each with
    /// the place it is stored at, or why it cannot be read (what `audit::verify` checks).
    async fn audit_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::audit::verify::Stored>, StoreError>;
    /// The journal's head: the last entry's sequence number and hash (0 and `GENESIS` when empty).
    async fn audit_head(&self) -> Result<(u64, String), StoreError>;
    /// The latest signed checkpoint of the journal, if any.
    async fn audit_checkpoint(&self) -> Result<Option<crate::audit::Checkpoint>, StoreError>;
    /// What the catalog held when an engine last started on this store: workflow references
    /// and `manifest/NS` → SHA-256 of their file (change management).
    async fn catalog_digests(&self) -> Result<std::collections::BTreeMap<String, String>, StoreError>;
    async fn put_catalog_digests(
        &self,
        digests: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), StoreError>;
    /// The data subject `id` (`crate::privacy`), if stored.
    async fn subject(&self, id: &str) -> Result<Option<crate::privacy::SubjectRecord>, StoreError>;
    /// The subject id an alias hash (`Vault::alias_hash` of an email or id) belongs to.
    async fn subject_by_alias(&self, alias: &str) -> Result<Option<String>, StoreError>;
    /// Writes `record` (replacing the stored one), points `aliases` at it and links `tasks`
    /// to it. Durable with the next commit or flush.
    async fn put_subject(
        &self,
        record: &crate::privacy::SubjectRecord,
        aliases: &[String],
        tasks: &[String],
    ) -> Result<(), StoreError>;
    /// Removes every alias hash pointing at subject `id` (an erased person can no longer be
    /// found by their email or id).
    async fn remove_subject_aliases(&self, id: &str) -> Result<(), StoreError>;
    /// The ids of the tasks linked to subject `id` (some may have been removed since).
    async fn subject_tasks(&self, id: &str) -> Result<Vec<String>, StoreError>;
    /// A subject whose key is not erased if there is one, else any subject, else `None`
    /// (whether the store holds sealed data, and a key to check the master key against).
    async fn first_subject(&self) -> Result<Option<crate::privacy::SubjectRecord>, StoreError>;
    /// Keeps `checkpoint` as the latest (durably).
    async fn put_audit_checkpoint(&self, checkpoint: &crate::audit::Checkpoint) -> Result<(), StoreError>;
    /// The check value of the master key that seals this store's personal data
    /// (`crate::privacy::Vault`): with `proposed`, stores it unless one is stored already
    /// (atomically: engines starting together on one store agree on one key), durably; returns
    /// the one stored, if any.
    async fn key_check(&self, proposed: Option<&str>) -> Result<Option<String>, StoreError>;

    /// Copying a store (`taskdeck store copy`): writes `tasks` whole as they stand — header,
    /// context, step definitions, search terms — with `transitions` (every one of theirs, which
    /// also give the steps their statuses) and `events`, durably, journaling nothing: the
    /// journal is copied entry by entry with `import_audit`. For a store being filled by a copy.
    async fn import(
        &self,
        tasks: &[Task],
        transitions: &[Transition],
        events: &[Event],
    ) -> Result<(), StoreError>;
    /// Appends journal entries as they are (sequence numbers and hashes kept), durably.
    /// Errors: the first does not follow the head (`Corrupt`).
    async fn import_audit(&self, entries: &[crate::audit::AuditEntry]) -> Result<(), StoreError>;
    /// Every data subject, oldest id first, with its alias hashes and linked task ids.
    async fn subjects(&self) -> Result<Vec<SubjectCopy>, StoreError>;

    // Engines sharing one store (PostgreSQL, `postgres::leases`). A store one engine opens
    // alone (sled) keeps these defaults: that engine drives every task.

    /// Whether other engines may share this store (then the engine claims what it drives, and
    /// events reach its subscribers from the store, numbered by it).
    fn shared(&self) -> bool {
        false
    }
    /// Whether this engine still counts as alive among those sharing the store (false once
    /// its heartbeat has failed for longer than its lease: it must stop, crash-only).
    fn alive(&self) -> bool {
        true
    }
    /// Woken when any engine commits events (a hint: read `events_after` to see what).
    fn changes(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
    /// Unfinished tasks no live engine drives, now held by this one (whole, as `task` reads them).
    async fn claim_orphans(&self) -> Result<Vec<Task>, StoreError> {
        Ok(Vec::new())
    }
    /// Takes task `id` for this engine before it acts on it. Errors: `HeldElsewhere` (another
    /// live engine drives it and was asked to hand it over), `Fenced` (this engine is dead).
    async fn claim(&self, _id: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Tasks this engine drives that another engine asked for.
    async fn wanted(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
    /// Gives task `id` to the engine that asked for it.
    async fn hand_over(&self, _id: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// A clean stop: every task this engine drives is free for the others at once.
    async fn leave(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// `tasks` as a copy writes them (`Store::import`): whole, context included.
pub(crate) fn whole(tasks: &[Task]) -> Vec<TaskWrite<'_>> {
    tasks
        .iter()
        .map(|task| TaskWrite {
            task,
            context: Some(&task.context),
            before: None,
        })
        .collect()
}

/// A data subject as `Store::subjects` reads it for a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectCopy {
    pub record: crate::privacy::SubjectRecord,
    pub aliases: Vec<String>,
    pub tasks: Vec<String>,
}

/// Journal entries chained after a head (`chain`): each entry's stored bytes with its
/// sequence number, the entries themselves (when asked for), and the new head.
pub(crate) struct Chained {
    pub bodies: Vec<(u64, Vec<u8>)>,
    pub written: Vec<crate::audit::AuditEntry>,
    pub seq: u64,
    pub hash: String,
    /// The highest transition sequence number the records name (0 when none).
    pub transition: u64,
}

/// Chains `records` after the head `seq`/`hash` (one place for both backends); `keep`: build
/// the entries too. Errors: the head claims the highest sequence number there is (a
/// tampered last entry), `Corrupt`.
pub(crate) fn chain(
    records: Vec<crate::audit::AuditRecord>,
    mut seq: u64,
    mut hash: String,
    keep: bool,
) -> Result<Chained, StoreError> {
    let full = || StoreError::Corrupt {
        key: "audit journal".into(),
        cause: "its last entry claims the highest sequence number there is; run `taskdeck audit verify`"
            .into(),
    };
    let mut bodies = Vec::with_capacity(records.len());
    let mut written = Vec::with_capacity(if keep { records.len() } else { 0 });
    let mut transition = 0;
    for record in records {
        seq = seq.checked_add(1).ok_or_else(full)?;
        transition = transition.max(record.transition.unwrap_or(0));
        let (bytes, sealed) = crate::audit::entry::sealed_bytes(seq, &record, &hash);
        bodies.push((seq, bytes));
        if keep {
            written.push(crate::audit::AuditEntry {
                seq,
                record,
                prev_hash: std::mem::replace(&mut hash, sealed),
                hash: hash.clone(),
            });
        } else {
            hash = sealed;
        }
    }
    Ok(Chained {
        bodies,
        written,
        seq,
        hash,
        transition,
    })
}

/// One unreadable record must not hide every other task: listings skip it (and log it, with
/// its key); reading that task by id still reports the error.
pub(crate) fn readable(loaded: Result<Task, StoreError>) -> Result<Option<Task>, StoreError> {
    match loaded {
        Ok(task) => Ok(Some(task)),
        Err(e @ StoreError::Corrupt { .. }) => {
            tracing::error!("skipping an unreadable task: {e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Where `entries` may follow a journal whose head is `head` (sequence number and hash).
pub(crate) fn check_follows(
    head: (u64, &str),
    entries: &[crate::audit::AuditEntry],
) -> Result<(), StoreError> {
    let Some(first) = entries.first() else {
        return Ok(());
    };
    if Some(first.seq) != head.0.checked_add(1) || first.prev_hash != head.1 {
        return Err(StoreError::Corrupt {
            key: "audit journal".into(),
            cause: format!(
                "entry {} does not follow the journal's head (entry {}); a copy goes into an empty store",
                first.seq, head.0
            ),
        });
    }
    Ok(())
}

/// Every task, oldest first (tests, tools and the retention report; listings page instead).
pub async fn all_tasks(store: &dyn Store) -> Result<Vec<Task>, StoreError> {
    let mut tasks = store.list(&Listing::default(), &|_| true, usize::MAX).await?;
    tasks.reverse();
    Ok(tasks)
}
