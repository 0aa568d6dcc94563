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
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Where the systems keep their records: in memory (tests, benches) or in sled trees.
#[derive(Clone, Default)]
pub struct Backing(Option<sled::Db>);

impl Backing {
    /// Records written through to trees named `service.<table>` of `db`.
    pub fn sled(db: sled::Db) -> Self {
        Backing(Some(db))
    }

    /// A table named `name`, loaded from its tree if there is one. A tree that cannot be
    /// opened or read is logged and the table starts empty: a simulation never stops the
    /// engine.
    pub(crate) fn table<T: Clone + Serialize + DeserializeOwned>(&self, name: &str) -> Table<T> {
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

#[derive(Serialize, Deserialize)]
struct Stored<T> {
    key: String,
    value: T,
}

/// Rows by key in insertion order; a key inserted again replaces its row in place.
pub struct Table<T> {
    rows: Mutex<Rows<T>>,
    tree: Option<sled::Tree>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            rows: Mutex::new(Rows {
                rows: Vec::new(),
                index: HashMap::new(),
                dirty: Vec::new(),
            }),
            tree: None,
        }
    }
}

/// The rows of a table, as a closure passed to `Table::with` sees them.
pub struct Rows<T> {
    rows: Vec<(String, T)>,
    index: HashMap<String, usize>,
    dirty: Vec<usize>,
}

impl<T> Rows<T> {
    pub fn get(&self, key: &str) -> Option<&T> {
        self.index.get(key).map(|&i| &self.rows[i].1)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// `(key, value)` in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.rows.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Inserts or replaces the row of `key`.
    pub fn insert(&mut self, key: &str, value: T) {
        let at = match self.index.get(key) {
            Some(&i) => {
                self.rows[i].1 = value;
                i
            }
            None => {
                self.rows.push((key.to_string(), value));
                self.index.insert(key.to_string(), self.rows.len() - 1);
                self.rows.len() - 1
            }
        };
        self.dirty.push(at);
    }
}

impl<T: Clone + Serialize + DeserializeOwned> Table<T> {
    fn load(tree: sled::Tree, name: &str) -> Self {
        let table = Table::default();
        {
            let mut rows = table.lock();
            for item in tree.iter() {
                let row = item.map_err(|e| e.to_string()).and_then(|(_, bytes)| {
                    serde_json::from_slice::<Stored<T>>(&bytes).map_err(|e| e.to_string())
                });
                match row {
                    Ok(Stored { key, value }) => {
                        let at = rows.rows.len();
                        rows.index.insert(key.clone(), at);
                        rows.rows.push((key, value));
                    }
                    Err(e) => tracing::warn!("simulated service table {name}: skipping a row: {e}"),
                }
            }
        }
        Table {
            rows: table.rows,
            tree: Some(tree),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Rows<T>> {
        // A panic elsewhere while holding the lock leaves rows that are still whole (every
        // change is one push or one assignment), so poisoning is ignored.
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the rows under the table's lock (so a check and an insert are atomic), then
    /// writes the rows it inserted through to the tree.
    pub fn with<R>(&self, f: impl FnOnce(&mut Rows<T>) -> R) -> R {
        let mut rows = self.lock();
        let result = f(&mut rows);
        let dirty = std::mem::take(&mut rows.dirty);
        if let Some(tree) = &self.tree {
            for i in dirty {
                let (key, value) = &rows.rows[i];
                let stored = Stored {
                    key: key.clone(),
                    value: value.clone(),
                };
                let position = u64::try_from(i).unwrap_or(u64::MAX).to_be_bytes();
                match serde_json::to_vec(&stored) {
                    Ok(bytes) => {
                        if let Err(e) = tree.insert(position, bytes) {
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
        self.lock().get(key).cloned()
    }

    /// Every value, in insertion order.
    pub fn all(&self) -> Vec<T> {
        self.lock().rows.iter().map(|(_, v)| v.clone()).collect()
    }

    pub fn insert(&self, key: &str, value: T) {
        self.with(|rows| rows.insert(key, value));
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
            t.insert("a", 1);
            t.insert("b", 2);
            t.insert("a", 3);
            db.flush().unwrap();
        }
        // sled's threads let go of the lock shortly after the last handle is dropped.
        let db = loop {
            match sled::open(dir.path()) {
                Ok(db) => break db,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        };
        let t: Table<u32> = Backing::sled(db).table("counts");
        assert_eq!(t.all(), [3, 2]);
        assert_eq!(t.get("b"), Some(2));
    }
}
