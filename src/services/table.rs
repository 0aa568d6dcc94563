//! The records a simulated system keeps (charges, users, sent mail…), in insertion order and
//! by key. The systems stand for remote services that outlive our process, so with a backing
//! sled tree every change is written through: after a restart a charge is still there, a
//! registered user is still found and a scenario's "fail twice" has still failed twice.
//!
//! The tree lives in the same sled database as the engine's store, so a service's write,
//! made before its answer, is durable whenever the engine's commit of that answer is (sled
//! recovers a prefix of its log).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

/// Where the systems keep their records: in memory (tests, benches), in sled trees, or in
/// the PostgreSQL store's schema (`services::shared`), shared by every engine on it.
#[derive(Clone, Default)]
pub struct Backing(
    Option<sled::Db>,
    Option<std::sync::Arc<super::shared::SharedRows>>,
);

impl Backing {
    /// Records written through to trees named `service.<table>` of `db`.
    pub fn sled(db: sled::Db) -> Self {
        Backing(Some(db), None)
    }

    /// Records in the PostgreSQL store every engine shares (`services::shared`).
    pub fn postgres(rows: std::sync::Arc<super::shared::SharedRows>) -> Self {
        Backing(None, Some(rows))
    }

    /// A table named `name`, loaded from its tree if there is one. A tree that cannot be
    /// opened or read is logged and the table starts empty: a simulation never stops the
    /// engine.
    pub(crate) fn table<T: Clone + Serialize + DeserializeOwned>(&self, name: &str) -> Table<T> {
        if let Some(shared) = &self.1 {
            return Table {
                shared: Some((shared.clone(), name.to_string())),
                ..Table::default()
            };
        }
        let Some(db) = &self.0 else {
            return Table::default();
        };
        match db.open_tree(format!("service.{name}")) {
            Ok(tree) => Table::load(tree, name),
            Err(e) => {
                tracing::warn!("simulated service table {name}: {e}; it starts empty and is not kept");
                Table::default()
            }
        }
    }
}

/// The tree key that keeps the next position once rows were forgotten (row keys are 8 bytes).
const NEXT: &[u8] = b"next";

#[derive(Serialize, Deserialize)]
struct Stored<T> {
    key: String,
    value: T,
    /// The task whose call last wrote the row (absent in rows of older builds).
    #[serde(default)]
    writer: Option<String>,
}

struct Row<T> {
    key: String,
    value: T,
    writer: Option<String>,
}

/// Rows by key in insertion order; a key inserted again replaces its row in place. Each row
/// remembers the task whose call wrote it, so the records of tasks retention removed can be
/// forgotten (`forget_before`): a simulated system keeps what the engine keeps.
pub struct Table<T> {
    rows: Mutex<Rows<T>>,
    tree: Option<sled::Tree>,
    /// The shared records this table caches, and its name there.
    shared: Option<(std::sync::Arc<super::shared::SharedRows>, String)>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            rows: Mutex::new(Rows {
                rows: BTreeMap::new(),
                index: HashMap::new(),
                next: 0,
                dirty: Vec::new(),
                writer: None,
                rev: 0,
                forgotten: Vec::new(),
            }),
            tree: None,
            shared: None,
        }
    }
}

/// The rows of a table, as a closure passed to `Table::with` sees them.
pub struct Rows<T> {
    /// By position (insertion order; the row's key in the tree).
    rows: BTreeMap<u64, Row<T>>,
    index: HashMap<String, u64>,
    next: u64,
    dirty: Vec<u64>,
    /// The task on whose behalf `insert` writes.
    writer: Option<String>,
    /// With shared records: the last change this cache has seen.
    rev: u64,
    /// With shared records: rows forgotten since the last write (key, position).
    forgotten: Vec<(String, u64)>,
}

impl<T> Rows<T> {
    pub fn get(&self, key: &str) -> Option<&T> {
        self.index
            .get(key)
            .and_then(|at| self.rows.get(at))
            .map(|row| &row.value)
    }

    /// A serial for the next new row (1, 2, …): never handed out twice, even after rows were
    /// forgotten or the process restarted (a simulated system's ids: users, orders).
    pub fn next_serial(&self) -> u64 {
        self.next.saturating_add(1)
    }

    /// `(key, value)` in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.rows.values().map(|row| (row.key.as_str(), &row.value))
    }

    /// Inserts or replaces the row of `key`, written by the task the table was entered for.
    pub fn insert(&mut self, key: &str, value: T) {
        let writer = self.writer.clone();
        let at = match self.index.get(key).copied() {
            Some(at) if self.rows.contains_key(&at) => at,
            _ => {
                let at = self.next;
                self.next = self.next.saturating_add(1);
                self.index.insert(key.to_string(), at);
                at
            }
        };
        self.rows.insert(
            at,
            Row {
                key: key.to_string(),
                value,
                writer,
            },
        );
        self.dirty.push(at);
    }
}

impl<T: Clone + Serialize + DeserializeOwned> Rows<T> {
    /// Brings the cache up to the shared records' `changes` (a row that cannot be read is
    /// skipped, logged).
    fn apply(&mut self, changes: super::shared::Changes, table: &str) {
        for change in changes.rows {
            let at = change.pos;
            match change.value {
                None => {
                    self.rows.remove(&at);
                    if self.index.get(&change.key) == Some(&at) {
                        self.index.remove(&change.key);
                    }
                }
                Some(text) => match serde_json::from_str::<T>(&text) {
                    Ok(value) => {
                        if let Some(old) = self.index.insert(change.key.clone(), at) {
                            if old != at {
                                self.rows.remove(&old);
                            }
                        }
                        self.rows.insert(
                            at,
                            Row {
                                key: change.key,
                                value,
                                writer: change.writer,
                            },
                        );
                    }
                    Err(e) => tracing::warn!("simulated service table {table}: skipping a row: {e}"),
                },
            }
        }
        self.next = self.next.max(changes.next);
        self.rev = changes.rev;
    }

    /// The rows changed since the last write, as the shared records take them.
    fn take_writes(&mut self) -> Vec<super::shared::RowChange> {
        let mut writes: Vec<super::shared::RowChange> = std::mem::take(&mut self.forgotten)
            .into_iter()
            .map(|(key, pos)| super::shared::RowChange {
                key,
                pos,
                value: None,
                writer: None,
            })
            .collect();
        for at in std::mem::take(&mut self.dirty) {
            let Some(row) = self.rows.get(&at) else { continue };
            match serde_json::to_string(&row.value) {
                Ok(value) => writes.push(super::shared::RowChange {
                    key: row.key.clone(),
                    pos: at,
                    value: Some(value),
                    writer: row.writer.clone(),
                }),
                Err(e) => tracing::warn!("simulated service row not encodable: {e}"),
            }
        }
        writes
    }
}

impl<T: Clone + Serialize + DeserializeOwned> Table<T> {
    fn load(tree: sled::Tree, name: &str) -> Self {
        let table = Table::default();
        {
            let mut rows = table.lock();
            for item in tree.iter() {
                if let Ok((k, v)) = &item {
                    if k.as_ref() == NEXT {
                        let next = <[u8; 8]>::try_from(v.as_ref()).map_or(0, u64::from_be_bytes);
                        rows.next = rows.next.max(next);
                        continue;
                    }
                }
                let row = item.map_err(|e| e.to_string()).and_then(|(k, bytes)| {
                    let at = <[u8; 8]>::try_from(k.as_ref())
                        .map(u64::from_be_bytes)
                        .map_err(|_| format!("a row key of {} bytes, not 8", k.len()))?;
                    serde_json::from_slice::<Stored<T>>(&bytes)
                        .map(|stored| (at, stored))
                        .map_err(|e| e.to_string())
                });
                match row {
                    Ok((at, Stored { key, value, writer })) => {
                        rows.index.insert(key.clone(), at);
                        rows.rows.insert(at, Row { key, value, writer });
                        rows.next = rows.next.max(at.saturating_add(1));
                    }
                    Err(e) => tracing::warn!("simulated service table {name}: skipping a row: {e}"),
                }
            }
        }
        Table {
            rows: table.rows,
            tree: Some(tree),
            shared: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Rows<T>> {
        // A panic elsewhere while holding the lock leaves rows that are still whole (every
        // change is one insert), so poisoning is ignored.
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the rows under the table's lock (so a check and an insert are atomic), on
    /// behalf of the task `writer` (the id of the task whose call this is), then writes the
    /// rows it inserted through to the tree.
    pub fn with<R>(&self, writer: &str, f: impl FnOnce(&mut Rows<T>) -> R) -> R {
        if let Some((shared, name)) = &self.shared {
            let mut rows = self.lock();
            let since = rows.rev;
            return shared.transact(name, since, |changes| {
                if let Some(changes) = changes {
                    rows.apply(changes, name);
                }
                rows.writer = Some(writer.to_string());
                let result = f(&mut rows);
                rows.writer = None;
                let writes = rows.take_writes();
                rows.rev = rows.rev.saturating_add(writes.len() as u64);
                (result, writes, rows.next)
            });
        }
        let mut rows = self.lock();
        rows.writer = Some(writer.to_string());
        let result = f(&mut rows);
        rows.writer = None;
        let dirty = std::mem::take(&mut rows.dirty);
        if let Some(tree) = &self.tree {
            for at in dirty {
                let Some(row) = rows.rows.get(&at) else { continue };
                let stored = Stored {
                    key: row.key.clone(),
                    value: row.value.clone(),
                    writer: row.writer.clone(),
                };
                match serde_json::to_vec(&stored) {
                    Ok(bytes) => {
                        if let Err(e) = tree.insert(at.to_be_bytes(), bytes) {
                            tracing::warn!("simulated service write failed: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("simulated service row not encodable: {e}"),
                }
            }
        }
        result
    }

    pub fn get(&self, key: &str) -> Option<T> {
        self.with("", |rows| rows.get(key).cloned())
    }

    /// Every value, in insertion order.
    pub fn all(&self) -> Vec<T> {
        self.with("", |rows| {
            rows.rows.values().map(|row| row.value.clone()).collect()
        })
    }

    /// Inserts or replaces the row of `key`, written by the task `writer`.
    pub fn insert(&self, writer: &str, key: &str, value: T) {
        self.with(writer, |rows| rows.insert(key, value));
    }

    /// Forgets every row last written by a task whose id sorts before `oldest` (task ids are
    /// UUIDv7, so: created before it), and rows of older builds that name no writer. Returns
    /// how many went.
    pub fn forget_before(&self, oldest: &str) -> usize {
        if self.shared.is_some() {
            // Forgotten rows are written as such, so every engine's cache lets them go.
            return self.with("", |rows| {
                let gone: Vec<u64> = rows
                    .rows
                    .iter()
                    .filter(|(_, row)| row.writer.as_deref().is_none_or(|w| w < oldest))
                    .map(|(&at, _)| at)
                    .collect();
                for at in &gone {
                    if let Some(row) = rows.rows.remove(at) {
                        if rows.index.get(&row.key) == Some(at) {
                            rows.index.remove(&row.key);
                        }
                        rows.forgotten.push((row.key, *at));
                    }
                }
                gone.len()
            });
        }
        let mut rows = self.lock();
        let gone: Vec<u64> = rows
            .rows
            .iter()
            .filter(|(_, row)| row.writer.as_deref().is_none_or(|w| w < oldest))
            .map(|(&at, _)| at)
            .collect();
        if gone.is_empty() {
            return 0;
        }
        if let Some(tree) = &self.tree {
            // Positions are serials (`next_serial`): the next one must survive the rows that
            // held the highest ones.
            if let Err(e) = tree.insert(NEXT, &rows.next.to_be_bytes()) {
                tracing::warn!("simulated service counter not written: {e}");
            }
        }
        for at in &gone {
            if let Some(row) = rows.rows.remove(at) {
                if rows.index.get(&row.key) == Some(at) {
                    rows.index.remove(&row.key);
                }
            }
            if let Some(tree) = &self.tree {
                if let Err(e) = tree.remove(at.to_be_bytes()) {
                    tracing::warn!("simulated service row not removed: {e}");
                }
            }
        }
        gone.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_outlive_the_table_when_backed_by_sled() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let t: Table<u32> = Backing::sled(db.clone()).table("counts");
            t.insert("task-1", "a", 1);
            t.insert("task-2", "b", 2);
            t.insert("task-3", "a", 3);
            db.flush().unwrap();
        }
        // sled's threads let go of the lock shortly after the last handle is dropped.
        let db = loop {
            match sled::open(dir.path()) {
                Ok(db) => break db,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        };
        let t: Table<u32> = Backing::sled(db.clone()).table("counts");
        assert_eq!(t.all(), [3, 2]);
        assert_eq!(t.get("b"), Some(2));
        // `a` was last written by task-3: only `b` is older than task-3.
        assert_eq!(t.forget_before("task-3"), 1);
        assert_eq!(t.all(), [3]);
        assert_eq!(t.get("b"), None);
        t.insert("task-4", "c", 4);
        assert_eq!(t.all(), [3, 4]);
        assert_eq!(t.forget_before("~"), 2, "every row");
        let serial = t.with("task-5", |rows| rows.next_serial());
        assert_eq!(serial, 4, "serials go on after the rows that held them are gone");
        drop(t);
        let t: Table<u32> = Backing::sled(db).table("counts");
        assert!(t.all().is_empty(), "forgotten rows are gone from the tree too");
        assert_eq!(
            t.with("task-6", |rows| rows.next_serial()),
            4,
            "and across a restart"
        );
    }
}
