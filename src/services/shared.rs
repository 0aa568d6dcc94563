//! The simulated services' records in PostgreSQL (`Backing::postgres`): when engines share a
//! PostgreSQL store they share the "remote systems" too, as real ones would be shared — one
//! payment gateway that returns the original charge for a repeated idempotency key whichever
//! engine calls, one scenario counter of a task's calls wherever its steps run.
//!
//! Each table keeps its rows in memory (`services::table`) as a cache of `service_rows`. A call
//! (`Table::with`) takes the table's advisory lock in a transaction, reads the rows changed
//! since the cache last looked (`rev`), runs on the rows, and writes what it changed before
//! committing: a check and an insert are atomic across every engine. The calls are
//! synchronous, like the sled backing's writes: they run on a small runtime of their own while
//! the caller waits, so any caller (a handler on the engine's runtime, a test) may make them.

use std::sync::Mutex;

/// One row as the database holds it: key, position, value (JSON; `None` once forgotten), writer.
pub(crate) struct RowChange {
    pub key: String,
    pub pos: u64,
    pub value: Option<String>,
    pub writer: Option<String>,
}

/// What changed in a table since a revision, and its counters now.
pub(crate) struct Changes {
    pub rows: Vec<RowChange>,
    pub next: u64,
    pub rev: u64,
}

/// The connection to the store's schema the simulated services use.
pub struct SharedRows {
    runtime: Option<tokio::runtime::Runtime>,
    config: tokio_postgres::Config,
    client: Mutex<Option<tokio_postgres::Client>>,
}

impl Drop for SharedRows {
    fn drop(&mut self) {
        // Possibly dropped on an async runtime, where a blocking shutdown is not allowed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn message(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {}", db.message()),
        None => format!("PostgreSQL: {e}"),
    }
}

impl SharedRows {
    /// Records in the schema `config` names (its `search_path`); connects on first use.
    pub fn new(config: tokio_postgres::Config) -> std::io::Result<SharedRows> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("taskdeck-services-db")
            .enable_all()
            .build()?;
        Ok(SharedRows {
            runtime: Some(runtime),
            config,
            client: Mutex::new(None),
        })
    }

    /// Runs `work` to completion on this backing's runtime while the caller waits.
    fn block<T: Send>(&self, work: impl std::future::Future<Output = T> + Send) -> Option<T> {
        let runtime = self.runtime.as_ref()?;
        std::thread::scope(|s| s.spawn(|| runtime.block_on(work)).join()).ok()
    }

    /// Under table `tbl`'s lock: reads the changes since `since` and gives them to `call`,
    /// which answers and says what to write (`writes`, and the table's `next` serial); writes
    /// them and commits. `call` runs whatever happens: with no changes when the database
    /// cannot be reached (what it writes is then not kept; logged).
    pub(crate) fn transact<R>(
        &self,
        tbl: &str,
        since: u64,
        call: impl FnOnce(Option<Changes>) -> (R, Vec<RowChange>, u64),
    ) -> R {
        let mut guard = self.client.lock().unwrap_or_else(|e| e.into_inner());
        let slot: &mut Option<tokio_postgres::Client> = &mut guard;
        let begun = self
            .block(async {
                if slot.as_ref().is_none_or(|c| c.is_closed()) {
                    let (c, connection) = self.config.connect(tokio_postgres::NoTls).await.map_err(message)?;
                    tokio::spawn(connection);
                    *slot = Some(c);
                }
                let c = slot.as_ref().ok_or("no connection")?;
                c.batch_execute("BEGIN").await.map_err(message)?;
                let read = async {
                    c.execute("SELECT pg_advisory_xact_lock(7423, hashtext($1))", &[&tbl]).await?;
                    c.execute(
                        "INSERT INTO service_tables (tbl, next, rev) VALUES ($1, 0, 0) ON CONFLICT (tbl) DO NOTHING",
                        &[&tbl],
                    )
                    .await?;
                    let meta = c
                        .query_one("SELECT next, rev FROM service_tables WHERE tbl = $1", &[&tbl])
                        .await?;
                    let rows = c
                        .query(
                            "SELECT key, pos, value, writer FROM service_rows WHERE tbl = $1 AND rev > $2 ORDER BY rev",
                            &[&tbl, &(since.min(i64::MAX as u64) as i64)],
                        )
                        .await?;
                    // Columns of our own schema, read without panicking on a damaged one.
                    let count = |n: i64| u64::try_from(n).unwrap_or(0);
                    let changes = Changes {
                        rows: rows
                            .iter()
                            .map(|r| {
                                Ok(RowChange {
                                    key: r.try_get(0)?,
                                    pos: count(r.try_get(1)?),
                                    value: r.try_get(2)?,
                                    writer: r.try_get(3)?,
                                })
                            })
                            .collect::<Result<_, tokio_postgres::Error>>()?,
                        next: count(meta.try_get(0)?),
                        rev: count(meta.try_get(1)?),
                    };
                    Ok::<_, tokio_postgres::Error>(changes)
                };
                match read.await {
                    Ok(changes) => Ok(changes),
                    Err(e) => {
                        let _ = c.batch_execute("ROLLBACK").await;
                        Err(message(e))
                    }
                }
            })
            .unwrap_or_else(|| Err("the services' database runtime is gone".into()));
        let changes = match begun {
            Ok(changes) => changes,
            Err(e) => {
                tracing::warn!("simulated service table {tbl}: {e}; this call's records are not kept");
                return call(None).0;
            }
        };
        let rev = changes.rev;
        let (answer, writes, next) = call(Some(changes));
        let slot: &Option<tokio_postgres::Client> = &guard;
        let written = self
            .block(async {
                let c = slot.as_ref().ok_or("no connection")?;
                let write = async {
                    let mut rev = rev;
                    for w in &writes {
                        rev += 1;
                        c.execute(
                            "INSERT INTO service_rows (tbl, key, pos, value, writer, rev) VALUES ($1, $2, $3, $4, $5, $6) \
                             ON CONFLICT (tbl, key) DO UPDATE SET pos = excluded.pos, value = excluded.value, \
                             writer = excluded.writer, rev = excluded.rev",
                            &[&tbl, &w.key, &(w.pos.min(i64::MAX as u64) as i64), &w.value, &w.writer, &(rev as i64)],
                        )
                        .await?;
                    }
                    c.execute(
                        "UPDATE service_tables SET next = GREATEST(next, $2), rev = $3 WHERE tbl = $1",
                        &[&tbl, &(next.min(i64::MAX as u64) as i64), &(rev as i64)],
                    )
                    .await?;
                    c.batch_execute("COMMIT").await
                };
                match write.await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        let _ = c.batch_execute("ROLLBACK").await;
                        Err(message(e))
                    }
                }
            })
            .unwrap_or_else(|| Err("the services' database runtime is gone".into()));
        if let Err(e) = written {
            tracing::warn!("simulated service table {tbl}: {e}; this call's records are not kept");
        }
        answer
    }
}
