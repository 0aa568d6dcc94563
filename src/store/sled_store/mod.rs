//! The sled store (layout 2). Trees:
//!
//! - `headers`: task id → the task without steps or context (`records::Header`);
//! - `contexts`, `plans`: task id → its context and step definitions, written once at submit;
//! - `steps`: task id NUL step name → the step's status, rewritten when the step changes;
//! - `transitions`: task id `/` big-endian sequence number → the task's transitions of one
//!   commit (one, or a JSON array), keyed by the first: the log;
//! - `events`: big-endian sequence number → a JSON array of events (chunks of ≤ 4 KiB keyed
//!   by their first): the stream clients resume from;
//! - `index`: by state, namespace, namespace and state, workflow, reversed id (short ids),
//!   finish time (retention) and steps awaiting a decision (see `records::key`);
//! - `active`: ids of tasks the engine drives, and of any task a commit is writing;
//!   `origins`: a creating step's idempotency key → task id; `meta`: sequence numbers, store
//!   id, layout.
//!
//! So a transition writes bytes in proportion to what changed (its log entry, the step's
//! status, the header), never to the task, and every listing reads an index, never the
//! history. One key per record and plain `insert`s, no sled batches or transactions (12–16k
//! items/s and 6–7× the space; design.md, "Storage"). A crash keeps a prefix of a commit's
//! writes (sled recovers its log up to the first torn write), so a commit writes in an order
//! that makes every prefix recoverable:
//!
//! 1. `meta` reserves the group's sequence numbers (a lost group leaves a gap, never a reuse);
//! 2. `active` gains the group's tasks it lacks (so a crash leaves every task it touched there);
//! 3. new tasks' contexts, plans and origins; then the transitions, each carrying the step's
//!    status after it, and the group's events;
//! 4. step records, index keys of the new states, `active`, then headers (each naming the last
//!    transition it includes, `seq`);
//! 5. stale index keys go, and `active` loses the tasks that are not unfinished.
//!
//! Every read replays the transitions after a header's `seq` over it, so what the log says
//! happened, happened, whichever prefix survived (a completed step is never run again);
//! opening the store settles every task in `active` whose log goes past its header (rewrites its
//! records and index keys from the log, or removes a task whose creation never finished), so
//! indexes agree with the log.
//! Stores of layout 1 (one whole-task snapshot per task) are converted when first opened.

mod journal;
mod migrate;
mod records;

use super::sync::DiskSync;
use super::{readable, Accept, Durability, Listing, Store, StoreError, TaskWrite, Waiting};
use crate::model::{Event, Step, StepStatus, Subject, Task, TaskState, Timestamp, Transition};
use records::{awaits_decision, key, Header, StepDef};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The environment variable that arms the crash point of tests: `TASKDECK_CRASH_AFTER_LOG=N`
/// makes the N-th commit that logs transitions flush its log and exit the process (code 99)
/// before writing any step record or header, the worst moment a `kill -9` can choose. For the
/// crash-loop tests; never set in production.
pub const CRASH_AFTER_LOG: &str = "TASKDECK_CRASH_AFTER_LOG";

/// The most bytes of events one record holds (4 KiB measured faster than 32 KiB: sled rewrites
/// a node with its values; and far under its blob threshold, ~128 KiB, past which a value is a file).
const EVENT_CHUNK_BYTES: usize = 4 * 1024;

/// `meta` key of the catalog's digests (see `Store::catalog_digests`).
const CATALOG_DIGESTS: &[u8] = b"catalog_digests";

/// The layout this build writes (see the module documentation).
const LAYOUT: &[u8] = b"2";

pub struct SledStore {
    db: sled::Db,
    /// `fdatasync`s what sled wrote (none for a temporary store).
    disk: Option<DiskSync>,
    /// Commits left before the crash point (see `CRASH_AFTER_LOG`).
    crash_after_log: Option<std::sync::atomic::AtomicU64>,
    headers: sled::Tree,
    contexts: sled::Tree,
    plans: sled::Tree,
    steps: sled::Tree,
    transitions: sled::Tree,
    events: sled::Tree,
    index: sled::Tree,
    active: sled::Tree,
    origins: sled::Tree,
    meta: sled::Tree,
    /// The audit journal (see `journal`) and its head.
    audit: sled::Tree,
    audit_head: std::sync::Mutex<journal::Head>,
    /// Data subjects (`crate::privacy`): records by id, alias hashes → id, `id/task` links.
    subjects: sled::Tree,
    subject_aliases: sled::Tree,
    subject_tasks: sled::Tree,
    /// The simulated services' own database (`open_services`), flushed before each of our
    /// syncs so that a service's write made before its answer is durable whenever the
    /// engine's commit of that answer is.
    services: std::sync::OnceLock<sled::Db>,
    durability: Durability,
}

// Not `#[from]`: a sled error is shown once, in this error's own message, not again as its
// source (anyhow's `{:#}` prints the chain).
impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        backend(e)
    }
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("cannot sync the store to disk: {e}"))
}

impl SledStore {
    /// Opens (or creates) the store in `dir/store`. A second process gets
    /// `StoreError::Locked`, naming this process and `holder` (what it is doing, e.g.
    /// `console`; never secrets). A data directory that had a store and lost it is an error
    /// (`Missing`), never a silent fresh start; a store that cannot be read says what to do.
    pub fn open(dir: &Path, durability: Durability, holder: &str) -> Result<Self, StoreError> {
        let path = dir.join("store");
        let marker = dir.join(STORE_MARKER);
        let present = path.join("db").exists();
        if marker.exists() && !present {
            return Err(StoreError::Missing {
                path: path.display().to_string(),
                marker: marker.display().to_string(),
            });
        }
        crate::fsutil::make_private(&path);
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(64 * 1024 * 1024)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|e| match &e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => locked(dir),
                _ => open_error(&path, e),
            })?;
        check_identity(&db, &path, &marker)?;
        let disk = DiskSync::open(&path).map_err(|e| open_error(&path, e.into()))?;
        // Say who holds the directory, for the next process's lock error (never the command
        // line: it may hold a token). Replaced, not followed, if someone put a symlink there.
        let _ = crate::fsutil::replace_private(
            &dir.join("taskdeck.pid"),
            format!("taskdeck process {} ({holder})\n", std::process::id()).as_bytes(),
        );
        Self::from_db(db, Some(disk), durability)
    }

    /// A store that lives in a temporary folder and disappears when dropped (tests, benches).
    pub fn temporary(durability: Durability) -> Result<Self, StoreError> {
        let db = sled::Config::new().temporary(true).open().map_err(backend)?;
        Self::from_db(db, None, durability)
    }

    fn from_db(db: sled::Db, disk: Option<DiskSync>, durability: Durability) -> Result<Self, StoreError> {
        let crash_after_log = std::env::var(CRASH_AFTER_LOG)
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .map(std::sync::atomic::AtomicU64::new);
        let audit = db.open_tree("audit")?;
        let audit_head = std::sync::Mutex::new(Self::read_audit_head(&audit)?);
        let store = SledStore {
            audit,
            audit_head,
            crash_after_log,
            headers: db.open_tree("headers")?,
            contexts: db.open_tree("contexts")?,
            plans: db.open_tree("plans")?,
            steps: db.open_tree("steps")?,
            transitions: db.open_tree("transitions")?,
            events: db.open_tree("events")?,
            index: db.open_tree("index")?,
            active: db.open_tree("active")?,
            origins: db.open_tree("origins")?,
            meta: db.open_tree("meta")?,
            subjects: db.open_tree("subjects")?,
            subject_aliases: db.open_tree("subject_aliases")?,
            subject_tasks: db.open_tree("subject_tasks")?,
            services: std::sync::OnceLock::new(),
            db,
            disk,
            durability,
        };
        migrate::to_layout_2(&store)?;
        store.settle()?;
        Ok(store)
    }

    /// The sled database itself (tests that inspect trees).
    pub fn db(&self) -> sled::Db {
        self.db.clone()
    }

    /// The simulated services' records (`services::Backing`), in `dir/simulated`: they stand
    /// for remote systems (a payment gateway, a mail provider) that keep their own data, so
    /// they are not in Taskdeck's store. Flushed before every sync of ours (see `services`).
    pub fn open_services(&self, dir: &Path) -> Result<sled::Db, StoreError> {
        if let Some(db) = self.services.get() {
            return Ok(db.clone());
        }
        let db = open_services_db(dir)?;
        Ok(self.services.get_or_init(|| db).clone())
    }

    fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            cause: e.to_string(),
        })
    }

    fn header(&self, id: &str) -> Result<Option<Header>, StoreError> {
        match self.headers.get(id.as_bytes())? {
            Some(bytes) => Ok(Some(Self::decode(id.as_bytes(), &bytes)?)),
            None => Ok(None),
        }
    }

    /// The header of `id`, or `None` when there is none or it is unreadable (logged): one
    /// damaged record must not hide every other task from a listing.
    fn readable_header(&self, id: &str) -> Result<Option<Header>, StoreError> {
        match self.header(id) {
            Ok(h) => Ok(h),
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::error!("skipping an unreadable task: {e}");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The whole task of `header` if `accept` admits it (judged on the header, so a task the
    /// caller may not read is never loaded); an unreadable one is skipped (logged).
    fn admitted(&self, header: Header, accept: &Accept<'_>) -> Result<Option<Task>, StoreError> {
        if !readable(self.light(header.clone()))?.is_some_and(|t| accept(&t)) {
            return Ok(None);
        }
        readable(self.load(header))
    }

    /// A whole task from its records, brought up to date with the transitions logged after
    /// its header.
    fn load(&self, header: Header) -> Result<Task, StoreError> {
        let id = header.id.clone();
        let plan: Vec<StepDef> = match self.plans.get(id.as_bytes())? {
            Some(bytes) => Self::decode(id.as_bytes(), &bytes)?,
            None => {
                return Err(StoreError::Corrupt {
                    key: id,
                    cause: "the task's step definitions are missing".into(),
                })
            }
        };
        let mut steps: Vec<Step> = plan.into_iter().map(StepDef::into_step).collect();
        let prefix = key::steps_of(&id);
        let mut by_name: HashMap<Vec<u8>, usize> = HashMap::new();
        for item in self.steps.scan_prefix(&prefix) {
            let (k, bytes) = item?;
            let name = &k[prefix.len()..];
            if by_name.is_empty() {
                by_name = steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.name.as_bytes().to_vec(), i))
                    .collect();
            }
            if let Some(&i) = by_name.get(name) {
                steps[i].set_status(Self::decode::<StepStatus>(&k, &bytes)?);
            }
        }
        let context = match self.contexts.get(id.as_bytes())? {
            Some(bytes) => Self::decode(id.as_bytes(), &bytes)?,
            None => Value::Object(Default::default()),
        };
        let mut task = header.into_task(steps, context);
        task.search_terms = self.terms(&id)?;
        self.replay(&mut task)?;
        Ok(task)
    }

    /// Applies the transitions logged after the task's `seq`.
    fn replay(&self, task: &mut Task) -> Result<(), StoreError> {
        let from = key::transition(&task.id, task.seq.saturating_add(1));
        let to = key::transition(&task.id, u64::MAX);
        for item in self.transitions.range(from..=to) {
            let (k, bytes) = item?;
            for t in Self::decode_many::<Transition>(&k, &bytes)? {
                task.apply(&t);
            }
        }
        Ok(())
    }

    /// A record holding one value or (a group written by one commit) a JSON array of them.
    fn decode_many<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<Vec<T>, StoreError> {
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            Self::decode(key, bytes)
        } else {
            Ok(vec![Self::decode(key, bytes)?])
        }
    }

    /// The event chunk holding `seq` or, if none does, the first one after it: where a read
    /// of the events after `seq - 1` starts.
    fn chunk_start(&self, seq: u64) -> Result<Vec<u8>, StoreError> {
        Ok(match self.events.range(..=seq.to_be_bytes()).next_back() {
            Some(item) => item?.0.to_vec(),
            None => seq.to_be_bytes().to_vec(),
        })
    }

    /// A header-only task (no steps, `null` context), with its state brought up to date
    /// from the log: what filters and permissions look at.
    fn light(&self, header: Header) -> Result<Task, StoreError> {
        let mut task = header.into_task(Vec::new(), Value::Null);
        self.replay(&mut task)?;
        Ok(task)
    }

    fn sync(&self) -> Result<(), StoreError> {
        // Written to the OS before our commit is: a process crash never keeps the engine's
        // record of a service's answer while losing the service's own.
        if let Some(services) = self.services.get() {
            services.flush()?;
        }
        self.db.flush()?;
        if let Some(disk) = &self.disk {
            disk.sync().map_err(io_error)?;
        }
        Ok(())
    }

    /// Rewrites what a commit interrupted by a crash left half-written (see the module
    /// documentation): every task in `active` whose log goes past its header gets its records
    /// and index keys rewritten from the log; one with no header (a creation or removal cut
    /// short) loses what is left of it; one marked by a commit but finished leaves `active`.
    fn settle(&self) -> Result<(), StoreError> {
        let ids: Vec<String> = self
            .active
            .iter()
            .keys()
            .map(|k| k.map(|k| String::from_utf8_lossy(&k).into_owned()))
            .collect::<Result<_, _>>()?;
        let mut settled = 0usize;
        let mut erased = Vec::new();
        let mut replayed = Vec::new();
        for id in &ids {
            match self.header(id) {
                Ok(Some(header)) => {
                    let from = key::transition(id, header.seq.saturating_add(1));
                    let to = key::transition(id, u64::MAX);
                    if self.transitions.range(from..=to).next().is_some() {
                        let task = self.load(header)?;
                        self.rewrite(&task)?;
                        replayed.push(task);
                        settled += 1;
                    } else if !header.state.is_active() {
                        self.active.remove(id.as_bytes())?;
                    }
                }
                Ok(None) => {
                    self.erase(id, None)?;
                    erased.push(id.clone());
                    settled += 1;
                }
                Err(e) => tracing::error!("cannot settle task {id} after a crash: {e}"),
            }
        }
        if !erased.is_empty() {
            self.drop_events_of(&erased)?;
        }
        // Transitions the crash kept but whose journal entries it lost.
        let journaled = self.journal_missed(&replayed)?;
        // A task whose creation never finished was never acknowledged; the journal may have
        // recorded its first transitions, so it says what became of them.
        let discarded = erased
            .iter()
            .map(|id| {
                crate::audit::AuditRecord::new(
                    chrono::Utc::now().timestamp_millis(),
                    "engine",
                    "task.discarded",
                    format!("task/{id}"),
                    "a crash cut the task's creation short; it was never acknowledged".into(),
                )
            })
            .collect::<Vec<_>>();
        let discarded_n = discarded.len();
        self.journal(discarded, false)?;
        if journaled + discarded_n > 0 {
            tracing::info!("journaled {journaled} transition(s) and {discarded_n} discarded task(s) a crash left out of the audit trail");
            self.sync()?;
        }
        if settled > 0 {
            tracing::info!("settled {settled} task(s) a crash interrupted");
            self.sync()?;
        }
        Ok(())
    }

    /// Removes the events announcing tasks whose creation a crash cut short (they never
    /// existed for anyone). They were written by the last commit, so only the newest chunks
    /// are looked at.
    fn drop_events_of(&self, ids: &[String]) -> Result<(), StoreError> {
        for item in self.events.iter().rev().take(256) {
            let (k, bytes) = item?;
            let chunk: Vec<Event> = Self::decode_many(&k, &bytes)?;
            let kept: Vec<&Event> = chunk.iter().filter(|e| !ids.contains(&e.task_id)).collect();
            if kept.len() == chunk.len() {
                continue;
            }
            if kept.is_empty() {
                self.events.remove(k)?;
            } else {
                self.events.insert(k, encode("events", &kept)?)?;
            }
        }
        Ok(())
    }

    /// Every record and index key of `task` as the task now stands (after a crash).
    fn rewrite(&self, task: &Task) -> Result<(), StoreError> {
        let header = Header::of(task);
        for step in &task.steps {
            self.steps
                .insert(key::step(&task.id, &step.name), encode("step", &step.status())?)?;
            let k = key::waiting(&task.id, &step.name);
            if awaits_decision(step.state) {
                self.index.insert(k, &[])?;
            } else {
                self.index.remove(k)?;
            }
        }
        // The keys of any other state, and finish times other than this one, are stale.
        for state in TaskState::ALL {
            if state != task.state {
                let stale = Header {
                    state,
                    ..header.clone()
                };
                for k in key::index_keys(&stale) {
                    if !k.starts_with(b"r\0") && !k.starts_with(b"n\0") && !k.starts_with(b"w\0") {
                        self.index.remove(k)?;
                    }
                }
            }
        }
        for item in self.index.scan_prefix(key::FINISHED) {
            let (k, _) = item?;
            if k.ends_with(task.id.as_bytes()) && Some(&k[..]) != finished_key(&header).as_deref() {
                self.index.remove(k)?;
            }
        }
        for k in key::index_keys(&header) {
            self.index.insert(k, &[])?;
        }
        if task.state.is_active() {
            self.active.insert(task.id.as_bytes(), &[])?;
        } else {
            self.active.remove(task.id.as_bytes())?;
        }
        self.headers
            .insert(task.id.as_bytes(), encode("task", &header)?)?;
        Ok(())
    }

    /// Removes every record of task `id` (its header first, so readers stop seeing it).
    fn erase(&self, id: &str, header: Option<&Header>) -> Result<(), StoreError> {
        self.headers.remove(id.as_bytes())?;
        if let Some(h) = header {
            for k in key::index_keys(h) {
                self.index.remove(k)?;
            }
            if let Some(origin) = &h.origin_key {
                self.origins.remove(origin.as_bytes())?;
            }
        }
        self.index.remove(key::short(id))?;
        for term in self.terms(id)? {
            self.index.remove(key::search_key(&term, id))?;
        }
        self.index.remove(key::terms_of(id))?;
        for k in self.index.scan_prefix(key::waiting_of(id)).keys() {
            self.index.remove(k?)?;
        }
        for k in self.steps.scan_prefix(key::steps_of(id)).keys() {
            self.steps.remove(k?)?;
        }
        for k in self.transitions.scan_prefix(key::transitions_of(id)).keys() {
            self.transitions.remove(k?)?;
        }
        self.contexts.remove(id.as_bytes())?;
        self.plans.remove(id.as_bytes())?;
        self.active.remove(id.as_bytes())?;
        Ok(())
    }

    /// The search terms a task was created with (none for a task from before them).
    fn terms(&self, id: &str) -> Result<Vec<String>, StoreError> {
        match self.index.get(key::terms_of(id))? {
            Some(bytes) => Self::decode(&key::terms_of(id), &bytes),
            None => Ok(Vec::new()),
        }
    }

    /// Ids under an index prefix, newest first, before `before` (exclusive).
    fn ids_under(
        &self,
        prefix: &[u8],
        before: Option<&str>,
    ) -> impl Iterator<Item = Result<String, StoreError>> {
        let end = match before {
            Some(id) => key::join(&[prefix, id.as_bytes()]),
            None => key::after_prefix(prefix),
        };
        let start = prefix.len();
        self.index
            .range(prefix.to_vec()..end)
            .keys()
            .rev()
            .map(move |k| Ok(String::from_utf8_lossy(&k?[start..]).into_owned()))
    }
}

/// Two id streams, each newest first, as one newest-first stream without repeats.
fn merge_newest_first(
    a: impl Iterator<Item = Result<String, StoreError>>,
    b: impl Iterator<Item = Result<String, StoreError>>,
) -> impl Iterator<Item = Result<String, StoreError>> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(Ok(x)), Some(Ok(y))) if x == y => {
            b.next();
            a.next()
        }
        (Some(Ok(x)), Some(Ok(y))) if x > y => a.next(),
        (Some(Ok(_)), Some(Ok(_))) => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

const LAST_SEQ: &[u8] = b"last_seq";

/// A file beside `store/` that says this data directory has a store, so that a store deleted
/// or lost later is an error rather than an empty start.
pub const STORE_MARKER: &str = "store.marker";

const STORE_ID: &[u8] = b"store_id";

/// Ties the store to its data directory: a new store gets an id, written in its `meta` tree
/// and in the marker file. A marker whose id the store does not hold means the store's
/// contents are gone (sled drops a damaged log tail silently, and a wholly damaged log
/// leaves an empty store): an error, never an empty start.
fn check_identity(db: &sled::Db, path: &Path, marker: &Path) -> Result<(), StoreError> {
    let meta = db.open_tree("meta")?;
    let stored = meta
        .get(STORE_ID)
        .map_err(backend)?
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    let expected = crate::fsutil::read_small(marker, 4096).ok().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("store_id=").map(|id| id.trim().to_string()))
    });
    match (expected, &stored) {
        (Some(want), Some(have)) if want == *have => return Ok(()),
        (Some(_), _) => {
            return Err(StoreError::Open {
                path: path.display().to_string(),
                cause: "its contents are not the store this data directory had (damaged or replaced files)".into(),
                advice: "restore the data directory from a backup, or delete store.marker to accept the store as it is",
            })
        }
        (None, _) => {}
    }
    // A new store, or one from before markers held ids: give it an id and write the marker.
    let id = match stored {
        Some(id) => id,
        None => {
            let id = uuid::Uuid::now_v7().to_string();
            meta.insert(STORE_ID, id.as_bytes())?;
            db.flush()?;
            id
        }
    };
    let text = format!(
        "# a taskdeck store lives in {}; do not delete this file while it does\nstore_id={id}\n",
        path.display()
    );
    crate::fsutil::replace_private(marker, text.as_bytes()).map_err(|e| StoreError::Open {
        path: marker.display().to_string(),
        cause: e.to_string(),
        advice: "check the data directory's permissions",
    })
}

/// The simulated services' own sled database in `dir/simulated` (whatever store holds the
/// tasks; see `SledStore::open_services`).
pub fn open_services_db(dir: &Path) -> Result<sled::Db, StoreError> {
    let path = dir.join("simulated");
    crate::fsutil::make_private(&path);
    sled::Config::new()
        .path(&path)
        .cache_capacity(16 * 1024 * 1024)
        .flush_every_ms(Some(500))
        .open()
        .map_err(|e| match &e {
            // Another process holds the data directory (a store elsewhere, e.g. PostgreSQL).
            sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => locked(dir),
            _ => open_error(&path, e),
        })
}

/// The data directory `dir` is held by another process (named by its `taskdeck.pid`).
pub fn locked(dir: &Path) -> StoreError {
    let held = crate::fsutil::read_small(&dir.join("taskdeck.pid"), 200).unwrap_or_default();
    let held: String = held.trim().chars().filter(|c| !c.is_control()).collect();
    let held = if held.is_empty() {
        String::new()
    } else {
        format!(" (held by {held})")
    };
    StoreError::Locked(format!(
        "the data directory {}{held} is in use by another taskdeck process that serves no API (a short command, or `--no-api`); wait for it, or stop it",
        dir.display()
    ))
}

fn open_error(path: &Path, e: sled::Error) -> StoreError {
    let (cause, advice) = match &e {
        sled::Error::Corruption { .. } => (
            "its files are damaged".to_string(),
            "restore the data directory from a backup, or move the store folder away to start with an empty one",
        ),
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => (
            "permission denied".to_string(),
            "run taskdeck as the user who owns the data directory",
        ),
        sled::Error::Io(io) => (io.to_string(), "check the disk and the data directory"),
        other => (other.to_string(), "restore the data directory from a backup"),
    };
    StoreError::Open {
        path: path.display().to_string(),
        cause,
        advice,
    }
}

fn finished_key(h: &Header) -> Option<Vec<u8>> {
    (!h.state.is_active()).then(|| key::finished(h.updated_at, &h.id))
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode(format!("{what}: {e}")))
}

/// The `Store` operations, done synchronously (sled never waits on anything but the disk).
impl SledStore {
    fn commit_now(
        &self,
        tasks: &[TaskWrite<'_>],
        transitions: &[Transition],
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.write_now(tasks, transitions, events, true)
    }

    /// A commit's writes; `journal`: its transitions go into the audit journal too (a copy's
    /// do not: the journal is copied as it is).
    fn write_now(
        &self,
        tasks: &[TaskWrite<'_>],
        transitions: &[Transition],
        events: &[Event],
        journal: bool,
    ) -> Result<(), StoreError> {
        // The order matters; see the module documentation.
        if let Some(max) = transitions.iter().map(|t| t.seq).max() {
            self.meta.insert(LAST_SEQ, &max.to_be_bytes())?;
        }
        for w in tasks {
            // An unfinished task is in `active` already.
            let listed = w.before.is_some_and(|(s, _)| s.is_active())
                || self.active.contains_key(w.task.id.as_bytes())?;
            if !listed {
                self.active.insert(w.task.id.as_bytes(), &[])?;
            }
        }
        for w in tasks {
            if let Some(context) = w.context {
                let task = w.task;
                self.contexts
                    .insert(task.id.as_bytes(), encode("context", context)?)?;
                let plan: Vec<StepDef> = task.steps.iter().map(StepDef::of).collect();
                self.plans.insert(task.id.as_bytes(), encode("steps", &plan)?)?;
                if let Some(origin) = &task.origin_key {
                    self.origins.insert(origin.as_bytes(), task.id.as_bytes())?;
                }
                if !task.search_terms.is_empty() {
                    self.index.insert(
                        key::terms_of(&task.id),
                        encode("search terms", &task.search_terms)?,
                    )?;
                    for term in &task.search_terms {
                        self.index.insert(key::search_key(term, &task.id), &[])?;
                    }
                }
            }
        }
        // One record per task per commit: its transitions of the group, keyed by the first.
        let mut by_task: HashMap<&str, Vec<&Transition>> = HashMap::new();
        for t in transitions {
            by_task.entry(t.task_id.as_str()).or_default().push(t);
        }
        for (id, group) in &by_task {
            let first = group.iter().map(|t| t.seq).min().unwrap_or(0);
            let value = if group.len() == 1 {
                encode("transition", group[0])?
            } else {
                encode("transitions", group)?
            };
            self.transitions.insert(key::transition(id, first), value)?;
        }
        // The journal, right after the log it describes (see `journal`).
        if journal {
            let written: Vec<&Task> = tasks.iter().map(|w| w.task).collect();
            self.journal_transitions(transitions, &written)?;
        }
        // Events in chunks of at most EVENT_CHUNK_BYTES, keyed by their first sequence number.
        let mut chunk: Vec<u8> = Vec::new();
        let mut first = None;
        for e in events {
            let bytes = encode("event", e)?;
            if !chunk.is_empty() && chunk.len() + bytes.len() > EVENT_CHUNK_BYTES {
                chunk.push(b']');
                self.events
                    .insert(first.unwrap_or(e.seq).to_be_bytes(), chunk.as_slice())?;
                chunk.clear();
            }
            if chunk.is_empty() {
                chunk.push(b'[');
                first = Some(e.seq);
            } else {
                chunk.push(b',');
            }
            chunk.extend_from_slice(&bytes);
        }
        if let Some(seq) = first.filter(|_| !chunk.is_empty()) {
            chunk.push(b']');
            self.events.insert(seq.to_be_bytes(), chunk)?;
        }
        if let (Some(left), false) = (&self.crash_after_log, transitions.is_empty()) {
            if left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                self.db.flush()?;
                std::process::exit(99);
            }
        }
        // Each changed step's last status in the group, and the approvals index.
        let mut last: HashMap<(&str, &str), &StepStatus> = HashMap::new();
        for t in transitions {
            let (Subject::Step(name), Some(status)) = (&t.subject, &t.step) else {
                continue;
            };
            last.insert((t.task_id.as_str(), name.as_str()), status);
            let waiting = key::waiting(&t.task_id, name);
            if awaits_decision(status.state) {
                self.index.insert(waiting, &[])?;
            } else if t.from.as_deref() == Some(crate::model::StepState::AwaitingApproval.as_str()) {
                self.index.remove(waiting)?;
            }
        }
        for ((id, name), status) in last {
            self.steps.insert(key::step(id, name), encode("step", status)?)?;
        }
        for w in tasks {
            let task = w.task;
            let header = Header::of(task);
            let old = match (w.context, w.before) {
                (Some(_), _) => Vec::new(),
                (None, Some((state, updated_at))) => key::index_keys(&Header {
                    state,
                    updated_at,
                    ..header.clone()
                }),
                (None, None) => self
                    .header(&task.id)?
                    .map(|h| key::index_keys(&h))
                    .unwrap_or_default(),
            };
            let new = key::index_keys(&header);
            for k in new.iter().filter(|k| !old.contains(k)) {
                self.index.insert(k.as_slice(), &[])?;
            }
            self.headers
                .insert(task.id.as_bytes(), encode("task", &header)?)?;
            for k in old.iter().filter(|k| !new.contains(k)) {
                self.index.remove(k.as_slice())?;
            }
            if !task.state.is_active() {
                self.active.remove(task.id.as_bytes())?;
            }
        }
        if self.durability == Durability::Immediate {
            self.sync()?;
        }
        Ok(())
    }

    fn task_now(&self, id: &str) -> Result<Option<Task>, StoreError> {
        match self.header(id)? {
            Some(header) => Ok(Some(self.load(header)?)),
            None => Ok(None),
        }
    }

    fn find_tasks_now(&self, text: &str, accept: &Accept<'_>, limit: usize) -> Result<Vec<Task>, StoreError> {
        if text.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        if let Some(header) = self.header(text)? {
            let task = self.light(header.clone())?;
            return Ok(if accept(&task) {
                vec![self.load(header)?]
            } else {
                Vec::new()
            });
        }
        // Short ids in tables are the id's last characters (the first ones are a timestamp
        // shared by tasks created close together), so match either end. Candidates the caller
        // does not accept do not count towards the limit.
        let mut found = Vec::new();
        for item in self.headers.scan_prefix(text.as_bytes()) {
            let (k, bytes) = item?;
            let header: Header = match Self::decode(&k, &bytes) {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!("skipping an unreadable task: {e}");
                    continue;
                }
            };
            found.extend(self.admitted(header, accept)?);
            if found.len() >= limit {
                return Ok(found);
            }
        }
        if found.is_empty() && text.len() >= 4 {
            let prefix = key::short(text);
            for k in self.index.scan_prefix(&prefix).keys() {
                let k = k?;
                let id: String = k[2..].iter().rev().map(|&b| b as char).collect();
                let Some(header) = self.readable_header(&id)? else {
                    continue;
                };
                found.extend(self.admitted(header, accept)?);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    fn task_by_origin_now(&self, key: &str) -> Result<Option<Task>, StoreError> {
        match self.origins.get(key.as_bytes())? {
            Some(id) => self.task_now(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    fn list_now(
        &self,
        listing: &Listing,
        accept: &Accept<'_>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let before = listing.before.as_deref();
        let prefix = match (&listing.workflow, &listing.namespace, listing.state) {
            // A search term is the narrowest index there is: a ticket names a task or two.
            _ if !listing.terms.is_empty() => Some(key::search(&listing.terms[0])),
            (Some((ns, name)), _, _) => Some(key::workflow(ns, name)),
            (None, Some(ns), Some(state)) => Some(key::namespace_state(ns, state)),
            (None, Some(ns), None) => Some(key::namespace(ns)),
            (None, None, Some(state)) => Some(key::state(state)),
            (None, None, None) => None,
        };
        let ids: Box<dyn Iterator<Item = Result<String, StoreError>>> = match &prefix {
            // A caller who may search personal fields reads their index too, merged.
            Some(prefix) if !listing.terms.is_empty() && listing.personal => Box::new(merge_newest_first(
                self.ids_under(prefix, before),
                self.ids_under(&key::search_personal(&listing.terms[0]), before),
            )),
            Some(prefix) => Box::new(self.ids_under(prefix, before)),
            None => {
                let range = match before {
                    Some(id) => self.headers.range(..id.as_bytes().to_vec()),
                    None => self.headers.iter(),
                };
                Box::new(
                    range
                        .keys()
                        .rev()
                        .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned())),
                )
            }
        };
        let mut out = Vec::new();
        for id in ids {
            if out.len() >= limit {
                break;
            }
            let id = id?;
            let Some(header) = self.readable_header(&id)? else {
                continue;
            };
            if listing.since.is_some_and(|since| header.created_at < since) {
                break; // newest first: everything after is older
            }
            let Some(mut light) = readable(self.light(header.clone()))? else {
                continue;
            };
            if !listing.terms.is_empty() {
                light.search_terms = self.terms(&id)?;
            }
            let fits = listing.namespace.as_ref().is_none_or(|ns| &light.namespace == ns)
                && listing.state.is_none_or(|s| light.state == s)
                && listing
                    .workflow
                    .as_ref()
                    .is_none_or(|(ns, name)| &light.namespace == ns && &light.name == name)
                && listing.terms.iter().all(|hash| {
                    light.search_terms.iter().any(|t| {
                        t == hash || (listing.personal && t.strip_prefix("p:") == Some(hash.as_str()))
                    })
                })
                && accept(&light);
            if !fits {
                continue;
            }
            let task = if listing.headers_only {
                Some(light)
            } else {
                readable(self.load(header))?
            };
            out.extend(task);
        }
        Ok(out)
    }

    fn active_tasks_now(&self) -> Result<Vec<Task>, StoreError> {
        let mut tasks = Vec::new();
        for k in self.active.iter().keys() {
            let k = k?;
            let id = String::from_utf8_lossy(&k);
            if let Some(header) = self.readable_header(&id)? {
                if let Some(task) = readable(self.load(header))? {
                    if task.state.is_active() {
                        tasks.push(task);
                    }
                }
            }
        }
        Ok(tasks)
    }

    fn waiting_for_decision_now(&self) -> Result<Vec<Waiting>, StoreError> {
        let mut out = Vec::new();
        for k in self.index.scan_prefix(key::WAITING).keys() {
            let k = k?;
            let rest = &k[key::WAITING.len()..];
            let Some(at) = rest.iter().position(|&b| b == 0) else {
                continue;
            };
            out.push(Waiting {
                task_id: String::from_utf8_lossy(&rest[..at]).into_owned(),
                step: String::from_utf8_lossy(&rest[at + 1..]).into_owned(),
            });
        }
        Ok(out)
    }

    fn transitions_now(&self, task_id: &str) -> Result<Vec<Transition>, StoreError> {
        let mut out = Vec::new();
        for item in self.transitions.scan_prefix(key::transitions_of(task_id)) {
            let (k, bytes) = item?;
            out.extend(Self::decode_many::<Transition>(&k, &bytes)?);
        }
        Ok(out)
    }

    fn events_after_now(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        let first = after.saturating_add(1);
        for item in self.events.range(self.chunk_start(first)?..) {
            if out.len() >= limit {
                break;
            }
            let (k, bytes) = item?;
            let chunk = Self::decode_many::<Event>(&k, &bytes)?;
            out.extend(
                chunk
                    .into_iter()
                    .filter(|e| e.seq >= first)
                    .take(limit - out.len()),
            );
        }
        Ok(out)
    }

    fn last_event_seq_now(&self) -> Result<u64, StoreError> {
        Ok(match self.events.last()? {
            Some((k, bytes)) => Self::decode_many::<Event>(&k, &bytes)?
                .last()
                .map(|e| e.seq)
                .unwrap_or_else(|| <[u8; 8]>::try_from(k.as_ref()).map_or(0, u64::from_be_bytes)),
            None => 0,
        })
    }

    fn oldest_task_id_now(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .headers
            .first()?
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned()))
    }

    fn last_seq_now(&self) -> Result<u64, StoreError> {
        Ok(match self.meta.get(LAST_SEQ)? {
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref()).map_or(0, u64::from_be_bytes),
            None => 0,
        })
    }

    fn finished_before_now(&self, before: Timestamp, limit: usize) -> Result<Vec<String>, StoreError> {
        let end = key::finished(before, "");
        let mut out = Vec::new();
        for k in self.index.range(key::FINISHED.to_vec()..end).keys() {
            if out.len() >= limit {
                break;
            }
            let k = k?;
            let id = String::from_utf8_lossy(&k[key::FINISHED.len() + 8..]).into_owned();
            match self.header(&id)? {
                Some(h) if !h.state.is_active() && h.updated_at < before => out.push(id),
                Some(_) => {}
                None => {
                    self.index.remove(k)?; // a stale key of a removed task
                }
            }
        }
        Ok(out)
    }

    fn finished_beyond_now(&self, keep: usize, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut seen = 0usize;
        for k in self.index.scan_prefix(key::FINISHED).keys().rev() {
            if out.len() >= limit {
                break;
            }
            let k = k?;
            let id = String::from_utf8_lossy(&k[key::FINISHED.len() + 8..]).into_owned();
            let Some(h) = self.readable_header(&id)? else {
                continue;
            };
            if h.state.is_active() || finished_key(&h).as_deref() != Some(&k[..]) {
                continue; // a stale key: the task changed since
            }
            seen += 1;
            if seen > keep {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn remove_now(&self, ids: &[String], events_before: Timestamp) -> Result<usize, StoreError> {
        let mut removed = 0;
        for id in ids {
            let Some(header) = self.header(id)? else { continue };
            let task = self.light(header.clone())?;
            if task.state.is_active() {
                continue;
            }
            // Marked first: a crash part-way leaves it for `settle` to finish.
            self.active.insert(id.as_bytes(), &[])?;
            self.erase(id, Some(&header))?;
            removed += 1;
        }
        // Events are notifications (the log keeps the history): those older than the cutoff go.
        for item in self.events.iter() {
            let (k, bytes) = item?;
            // A chunk goes when its newest event is older than the cutoff.
            let newest = Self::decode_many::<Event>(&k, &bytes)
                .map_or(0, |c| c.iter().map(|e| e.at).max().unwrap_or(0));
            if newest >= events_before {
                break;
            }
            self.events.remove(k)?;
        }
        if self.durability == Durability::Immediate {
            self.sync()?;
        }
        Ok(removed)
    }

    fn flush_now(&self) -> Result<(), StoreError> {
        self.sync()
    }
}

#[async_trait::async_trait]
impl Store for SledStore {
    async fn commit(
        &self,
        tasks: &[TaskWrite<'_>],
        transitions: &[Transition],
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.commit_now(tasks, transitions, events)
    }

    async fn task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        self.task_now(id)
    }

    async fn find_tasks(
        &self,
        text: &str,
        accept: &Accept<'_>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        self.find_tasks_now(text, accept, limit)
    }

    async fn task_by_origin(&self, key: &str) -> Result<Option<Task>, StoreError> {
        self.task_by_origin_now(key)
    }

    async fn list(
        &self,
        listing: &Listing,
        accept: &Accept<'_>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        self.list_now(listing, accept, limit)
    }

    async fn count(&self, state: TaskState) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for k in self.index.scan_prefix(key::state(state)).keys() {
            k?;
            n = n.saturating_add(1);
        }
        Ok(n)
    }

    async fn active_tasks(&self) -> Result<Vec<Task>, StoreError> {
        self.active_tasks_now()
    }

    async fn waiting_for_decision(&self) -> Result<Vec<Waiting>, StoreError> {
        self.waiting_for_decision_now()
    }

    async fn transitions(&self, task_id: &str) -> Result<Vec<Transition>, StoreError> {
        self.transitions_now(task_id)
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.events_after_now(after, limit)
    }

    async fn last_event_seq(&self) -> Result<u64, StoreError> {
        self.last_event_seq_now()
    }

    async fn oldest_task_id(&self) -> Result<Option<String>, StoreError> {
        self.oldest_task_id_now()
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        self.last_seq_now()
    }

    async fn finished_before(&self, before: Timestamp, limit: usize) -> Result<Vec<String>, StoreError> {
        self.finished_before_now(before, limit)
    }

    async fn finished_beyond(&self, keep: usize, limit: usize) -> Result<Vec<String>, StoreError> {
        self.finished_beyond_now(keep, limit)
    }

    async fn remove(&self, ids: &[String], events_before: Timestamp) -> Result<usize, StoreError> {
        self.remove_now(ids, events_before)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.flush_now()
    }

    async fn append_audit(
        &self,
        records: Vec<crate::audit::AuditRecord>,
    ) -> Result<Vec<crate::audit::AuditEntry>, StoreError> {
        let written = self.journal(records, true)?;
        if self.durability == Durability::Immediate && !written.is_empty() {
            self.sync()?;
        }
        Ok(written)
    }

    async fn audit_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::audit::verify::Stored>, StoreError> {
        self.audit_after_now(after, limit)
    }

    async fn catalog_digests(&self) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        match self.meta.get(CATALOG_DIGESTS)? {
            Some(bytes) => Self::decode(CATALOG_DIGESTS, &bytes),
            None => Ok(Default::default()),
        }
    }

    async fn put_catalog_digests(
        &self,
        digests: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.meta
            .insert(CATALOG_DIGESTS, encode("catalog digests", digests)?)?;
        Ok(())
    }

    async fn audit_head(&self) -> Result<(u64, String), StoreError> {
        Ok(self.audit_head_now())
    }

    async fn audit_checkpoint(&self) -> Result<Option<crate::audit::Checkpoint>, StoreError> {
        self.audit_checkpoint_now()
    }

    async fn put_audit_checkpoint(&self, checkpoint: &crate::audit::Checkpoint) -> Result<(), StoreError> {
        self.put_audit_checkpoint_now(checkpoint)
    }

    async fn subject(&self, id: &str) -> Result<Option<crate::privacy::SubjectRecord>, StoreError> {
        match self.subjects.get(id.as_bytes())? {
            Some(bytes) => Ok(Some(Self::decode(id.as_bytes(), &bytes)?)),
            None => Ok(None),
        }
    }

    async fn subject_by_alias(&self, alias: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .subject_aliases
            .get(alias.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    async fn put_subject(
        &self,
        record: &crate::privacy::SubjectRecord,
        aliases: &[String],
        tasks: &[String],
    ) -> Result<(), StoreError> {
        self.subjects
            .insert(record.id.as_bytes(), encode("subject", record)?)?;
        for a in aliases {
            self.subject_aliases.insert(a.as_bytes(), record.id.as_bytes())?;
        }
        for t in tasks {
            self.subject_tasks
                .insert(format!("{}/{t}", record.id).as_bytes(), &[])?;
        }
        Ok(())
    }

    async fn remove_subject_aliases(&self, id: &str) -> Result<(), StoreError> {
        for kv in self.subject_aliases.iter() {
            let (k, v) = kv?;
            if v.as_ref() == id.as_bytes() {
                self.subject_aliases.remove(k)?;
            }
        }
        self.flush_now()
    }

    async fn subject_tasks(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{id}/");
        let mut out = Vec::new();
        for kv in self.subject_tasks.scan_prefix(prefix.as_bytes()) {
            let (k, _) = kv?;
            out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        Ok(out)
    }

    async fn first_subject(&self) -> Result<Option<crate::privacy::SubjectRecord>, StoreError> {
        let mut first = None;
        for kv in self.subjects.iter() {
            let (k, v) = kv?;
            let record: crate::privacy::SubjectRecord = Self::decode(&k, &v)?;
            if record.wrapped_key.is_some() {
                return Ok(Some(record));
            }
            first.get_or_insert(record);
        }
        Ok(first)
    }

    async fn import(
        &self,
        tasks: &[Task],
        transitions: &[Transition],
        events: &[Event],
    ) -> Result<(), StoreError> {
        let writes = super::whole(tasks);
        self.write_now(&writes, transitions, events, false)?;
        self.sync()
    }

    async fn key_check(&self, proposed: Option<&str>) -> Result<Option<String>, StoreError> {
        if let Some(value) = proposed {
            // Insert only where absent; a store already holding one keeps it.
            let _ = self
                .meta
                .compare_and_swap(KEY_CHECK, None as Option<&[u8]>, Some(value.as_bytes()))?;
            self.sync()?;
        }
        Ok(self
            .meta
            .get(KEY_CHECK)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    async fn import_audit(&self, entries: &[crate::audit::AuditEntry]) -> Result<(), StoreError> {
        self.import_audit_now(entries)?;
        self.sync()
    }

    async fn subjects(&self) -> Result<Vec<super::SubjectCopy>, StoreError> {
        let mut aliases: HashMap<String, Vec<String>> = HashMap::new();
        for kv in self.subject_aliases.iter() {
            let (k, v) = kv?;
            aliases
                .entry(String::from_utf8_lossy(&v).into_owned())
                .or_default()
                .push(String::from_utf8_lossy(&k).into_owned());
        }
        let mut out = Vec::new();
        for kv in self.subjects.iter() {
            let (k, v) = kv?;
            let record: crate::privacy::SubjectRecord = Self::decode(&k, &v)?;
            let tasks = self.subject_tasks(&record.id).await?;
            out.push(super::SubjectCopy {
                aliases: aliases.remove(&record.id).unwrap_or_default(),
                record,
                tasks,
            });
        }
        Ok(out)
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        let now = chrono::Utc::now().timestamp_millis().to_be_bytes();
        self.meta.insert(HEALTH_PROBE, &now)?;
        Ok(())
    }

    fn durability(&self) -> Durability {
        self.durability
    }
}

/// The meta key of the master key's check value (`Store::key_check`).
const KEY_CHECK: &[u8] = b"master_key_check";

/// The meta key a readiness probe writes.
const HEALTH_PROBE: &[u8] = b"health_probe";

#[cfg(test)]
mod tests {
    #[test]
    fn two_newest_first_streams_merge_newest_first_without_repeats() {
        let ids = |v: &[&str]| {
            v.iter()
                .map(|s| Ok(s.to_string()))
                .collect::<Vec<_>>()
                .into_iter()
        };
        let merged: Vec<String> = super::merge_newest_first(ids(&["9", "7", "3"]), ids(&["8", "7", "1"]))
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(merged, ["9", "8", "7", "3", "1"]);
        let one_empty: Vec<String> = super::merge_newest_first(ids(&[]), ids(&["2", "1"]))
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(one_empty, ["2", "1"]);
    }
}
