//! The sled store. Trees: `tasks` (task id → JSON snapshot), `active` (ids of tasks the engine
//! still drives), `transitions` (task id + big-endian sequence number → JSON transition),
//! `meta` (the last sequence number used), `origins` (creating step's idempotency key →
//! task id, for idempotent delegation) and `events` (big-endian event sequence number → JSON
//! event: the stream clients resume from).
//!
//! One key per transition and plain `insert`s (no sled transactions or batches): on these
//! machines single inserts run at ~150k/s while batches and transactions manage ~15k/s
//! (design.md, "Storage"). The log is the truth; snapshots are a cache of it. A crash can
//! keep a prefix of a commit's writes (sled recovers its log up to the first torn write), so
//! a commit writes in an order that makes every prefix readable:
//!
//! 1. `meta` reserves the group's sequence numbers (a lost group leaves a gap, never a reuse);
//! 2. `active` gains the tasks that are unfinished after the group (so a task the log revives,
//!    e.g. by an operator's retry, is resumed);
//! 3. the transitions, each carrying the step as it stood after it, then the group's events;
//! 4. the snapshots, each naming the last transition it includes (`Task::seq`);
//! 5. `active` loses the tasks that finished.
//!
//! Every read replays the transitions after a snapshot's `seq` over it, so what the log says
//! happened, happened, whichever prefix survived: a completed step is never run again.

use super::{Durability, Store, StoreError};
use crate::model::{Event, Task, Transition};
use std::path::Path;

/// The environment variable that arms the crash point of tests: `TASKDECK_CRASH_AFTER_LOG=N`
/// makes the N-th commit that logs transitions flush its log and exit the process (code 99)
/// before writing any snapshot, the worst moment a `kill -9` can choose. For the crash-loop
/// tests; never set in production.
pub const CRASH_AFTER_LOG: &str = "TASKDECK_CRASH_AFTER_LOG";

pub struct SledStore {
    db: sled::Db,
    /// Commits left before the crash point (see `CRASH_AFTER_LOG`).
    crash_after_log: Option<std::sync::atomic::AtomicU64>,
    tasks: sled::Tree,
    active: sled::Tree,
    transitions: sled::Tree,
    meta: sled::Tree,
    origins: sled::Tree,
    events: sled::Tree,
    durability: Durability,
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
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    let held = crate::fsutil::read_small(&dir.join("taskdeck.pid"), 200).unwrap_or_default();
                    let held: String = held.trim().chars().filter(|c| !c.is_control()).collect();
                    let held = held.as_str();
                    StoreError::Locked(if held.is_empty() {
                        dir.display().to_string()
                    } else {
                        format!("{} (held by {held})", dir.display())
                    })
                }
                _ => open_error(&path, e),
            })?;
        check_identity(&db, &path, &marker)?;
        // Say who holds the directory, for the next process's lock error (never the command
        // line: it may hold a token). Replaced, not followed, if someone put a symlink there.
        let _ = crate::fsutil::replace_private(
            &dir.join("taskdeck.pid"),
            format!("taskdeck process {} ({holder})\n", std::process::id()).as_bytes(),
        );
        Self::from_db(db, durability)
    }

    /// A store that lives in a temporary folder and disappears when dropped (tests, benches).
    pub fn temporary(durability: Durability) -> Result<Self, StoreError> {
        let db = sled::Config::new().temporary(true).open()?;
        Self::from_db(db, durability)
    }

    fn from_db(db: sled::Db, durability: Durability) -> Result<Self, StoreError> {
        let crash_after_log = std::env::var(CRASH_AFTER_LOG)
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .map(std::sync::atomic::AtomicU64::new);
        Ok(SledStore {
            crash_after_log,
            tasks: db.open_tree("tasks")?,
            active: db.open_tree("active")?,
            transitions: db.open_tree("transitions")?,
            meta: db.open_tree("meta")?,
            origins: db.open_tree("origins")?,
            events: db.open_tree("events")?,
            db,
            durability,
        })
    }

    /// The sled database itself, for the simulated services' records (`services::Backing`),
    /// which share its log so that their writes are durable with the engine's commits.
    pub fn db(&self) -> sled::Db {
        self.db.clone()
    }

    fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            cause: e.to_string(),
        })
    }
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
        .get(STORE_ID)?
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

fn transition_key(task_id: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(task_id.len() + 9);
    key.extend_from_slice(task_id.as_bytes());
    key.push(b'/');
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

impl SledStore {
    /// A snapshot brought up to date with the transitions logged after it.
    fn load(&self, key: &[u8], bytes: &[u8]) -> Result<Task, StoreError> {
        let mut task: Task = Self::decode(key, bytes)?;
        let from = transition_key(&task.id, task.seq.saturating_add(1));
        let to = transition_key(&task.id, u64::MAX);
        for item in self.transitions.range(from..=to) {
            let (key, bytes) = item?;
            task.apply(&Self::decode::<Transition>(&key, &bytes)?);
        }
        Ok(task)
    }
}

/// One unreadable record must not hide every other task: listings skip it (and log it, with
/// its key); reading that task by id still reports the error.
fn readable(loaded: Result<Task, StoreError>) -> Result<Option<Task>, StoreError> {
    match loaded {
        Ok(task) => Ok(Some(task)),
        Err(e @ StoreError::Corrupt { .. }) => {
            tracing::error!("skipping an unreadable task: {e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode(format!("{what}: {e}")))
}

impl Store for SledStore {
    fn commit(
        &self,
        tasks: &[&Task],
        transitions: &[Transition],
        events: &[Event],
    ) -> Result<(), StoreError> {
        // The order matters; see the module documentation.
        if let Some(max) = transitions.iter().map(|t| t.seq).max() {
            self.meta.insert(LAST_SEQ, &max.to_be_bytes())?;
        }
        for task in tasks.iter().filter(|t| t.state.is_active()) {
            self.active.insert(task.id.as_bytes(), &[])?;
        }
        for t in transitions {
            self.transitions
                .insert(transition_key(&t.task_id, t.seq), encode("transition", t)?)?;
        }
        for e in events {
            self.events.insert(e.seq.to_be_bytes(), encode("event", e)?)?;
        }
        if let (Some(left), false) = (&self.crash_after_log, transitions.is_empty()) {
            if left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                self.db.flush()?;
                std::process::exit(99);
            }
        }
        for task in tasks {
            self.tasks.insert(task.id.as_bytes(), encode("task", task)?)?;
            if let Some(key) = &task.origin_key {
                self.origins.insert(key.as_bytes(), task.id.as_bytes())?;
            }
        }
        for task in tasks.iter().filter(|t| !t.state.is_active()) {
            self.active.remove(task.id.as_bytes())?;
        }
        if self.durability == Durability::Immediate {
            self.db.flush()?;
        }
        Ok(())
    }

    fn task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        match self.tasks.get(id.as_bytes())? {
            Some(bytes) => Ok(Some(self.load(id.as_bytes(), &bytes)?)),
            None => Ok(None),
        }
    }

    fn find_tasks(
        &self,
        text: &str,
        accept: &dyn Fn(&Task) -> bool,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        if text.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        if let Some(task) = self.task(text)? {
            return Ok(if accept(&task) { vec![task] } else { Vec::new() });
        }
        // Short ids in tables are the id's last characters (the first ones are a timestamp
        // shared by tasks created close together), so match either end. Candidates the caller
        // does not accept do not count towards the limit.
        let mut found = Vec::new();
        for item in self.tasks.scan_prefix(text.as_bytes()) {
            let (key, bytes) = item?;
            if let Some(task) = readable(self.load(&key, &bytes))?.filter(|t| accept(t)) {
                found.push(task);
                if found.len() >= limit {
                    return Ok(found);
                }
            }
        }
        if found.is_empty() && text.len() >= 4 {
            for item in self.tasks.iter() {
                let (key, bytes) = item?;
                if !key.ends_with(text.as_bytes()) {
                    continue;
                }
                if let Some(task) = readable(self.load(&key, &bytes))?.filter(|t| accept(t)) {
                    found.push(task);
                    if found.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(found)
    }

    fn task_by_origin(&self, key: &str) -> Result<Option<Task>, StoreError> {
        match self.origins.get(key.as_bytes())? {
            Some(id) => self.task(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    fn tasks(&self) -> Result<Vec<Task>, StoreError> {
        let mut tasks = Vec::new();
        for item in self.tasks.iter() {
            let (key, bytes) = item?;
            if let Some(task) = readable(self.load(&key, &bytes))? {
                tasks.push(task);
            }
        }
        Ok(tasks)
    }

    fn tasks_after(
        &self,
        after: Option<&str>,
        accept: &dyn Fn(&Task) -> bool,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let range = match after {
            Some(id) => self.tasks.range::<&[u8], _>((
                std::ops::Bound::Excluded(id.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => self.tasks.iter(),
        };
        let mut out = Vec::new();
        for item in range {
            if out.len() >= limit {
                break;
            }
            let (key, bytes) = item?;
            if let Some(task) = readable(self.load(&key, &bytes))?.filter(|t| accept(t)) {
                out.push(task);
            }
        }
        Ok(out)
    }

    fn active_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let mut tasks = Vec::new();
        for item in self.active.iter() {
            let (key, _) = item?;
            // An id whose snapshot a crash lost (a task never acknowledged), or whose log
            // says it finished, is not resumed.
            if let Some(bytes) = self.tasks.get(&key)? {
                if let Some(task) = readable(self.load(&key, &bytes))? {
                    if task.state.is_active() {
                        tasks.push(task);
                    }
                }
            }
        }
        Ok(tasks)
    }

    fn transitions(&self, task_id: &str) -> Result<Vec<Transition>, StoreError> {
        let mut prefix = task_id.as_bytes().to_vec();
        prefix.push(b'/');
        self.transitions
            .scan_prefix(prefix)
            .map(|item| {
                let (key, bytes) = item?;
                Self::decode(&key, &bytes)
            })
            .collect()
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.events
            .range(after.saturating_add(1).to_be_bytes()..)
            .take(limit)
            .map(|item| {
                let (key, bytes) = item?;
                Self::decode(&key, &bytes)
            })
            .collect()
    }

    fn last_event_seq(&self) -> Result<u64, StoreError> {
        Ok(match self.events.last()? {
            Some((key, _)) => <[u8; 8]>::try_from(key.as_ref()).map_or(0, u64::from_be_bytes),
            None => 0,
        })
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(match self.meta.get(LAST_SEQ)? {
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref()).map_or(0, u64::from_be_bytes),
            None => 0,
        })
    }

    fn durability(&self) -> Durability {
        self.durability
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}
