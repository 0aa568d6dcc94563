//! Several engines on one PostgreSQL store: membership, leases and fencing.
//!
//! - **Membership.** An engine registers a row in `engines` (a fresh id per process) and
//!   renews its `heartbeat_at` every `LeaseConfig::ttl / 5` (and with every commit). One whose
//!   heartbeat is older than the ttl, by the database's clock, is dead.
//! - **Leases.** Each unfinished task has one row in `task_owners`: the engine that drives it
//!   and a lease number, raised each time another engine takes it over (the fencing token).
//!   A task is claimed when created (by the engine that stores it), when a dead engine's tasks
//!   are taken over (`claim_orphans`: `FOR UPDATE SKIP LOCKED`, so engines polling at once take
//!   different tasks), and on demand (`claim`) when an operator acts on it through another
//!   engine: a task held by a live engine is asked for (`wanted_by`) and handed over by its
//!   holder once no step of it runs (`hand_over`).
//! - **Fencing.** Every commit locks the rows of the tasks it writes and is refused
//!   (`StoreError::Fenced`) if any is held by another engine now: an engine whose lease was
//!   taken away cannot record an outcome, so a step's completion is recorded once. A step the
//!   dead engine was running runs again as a new attempt with the same idempotency key.
//!
//! Event sequence numbers are given by the database in commit order (under the journal's lock),
//! so one stream serves every engine; commits notify `LISTEN`ers, so each engine republishes
//! what the others stored.

use super::{backend, col, PgStore};
use crate::model::Task;
use crate::store::StoreError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The lease of a task lasts this long past its engine's last heartbeat, unless
/// `TASKDECK_LEASE_SECONDS` says otherwise (1–3600).
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The variable that sets the lease's length (whole seconds).
pub const LEASE_SECONDS_ENV: &str = "TASKDECK_LEASE_SECONDS";

/// Tasks taken over per poll.
const CLAIM_BATCH: i64 = 200;

/// How long leases last: `TASKDECK_LEASE_SECONDS` (1–3600) or `DEFAULT_TTL`.
pub fn ttl_from_env() -> Result<Duration, StoreError> {
    match std::env::var(LEASE_SECONDS_ENV) {
        Err(_) => Ok(DEFAULT_TTL),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(n @ 1..=3600) => Ok(Duration::from_secs(n)),
            _ => Err(StoreError::Open {
                path: LEASE_SECONDS_ENV.into(),
                cause: format!(
                    "`{}` is not a number of seconds from 1 to 3600",
                    crate::cli::one_line(&text.chars().take(40).collect::<String>())
                ),
                advice: "unset it for the default (10 s)",
            }),
        },
    }
}

/// This process's membership among the engines of a store.
pub(super) struct Membership {
    pub id: String,
    /// Set when the engine's row is gone (declared dead) or its heartbeat failed for a ttl.
    pub lost: Arc<AtomicBool>,
    /// Woken when any engine commits events (`LISTEN`), for the event tail.
    pub changes: Arc<tokio::sync::Notify>,
    pub heartbeat: tokio::task::JoinHandle<()>,
    /// The `LISTEN` session (kept open) and its reader.
    pub _listener: Option<(tokio_postgres::Client, tokio::task::JoinHandle<()>)>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.heartbeat.abort();
        if let Some((_, reader)) = &self._listener {
            reader.abort();
        }
    }
}

/// The `NOTIFY` channel of a schema's commits.
pub(super) fn channel(schema: &str) -> String {
    format!("taskdeck_events_{schema}")
}

/// This machine's name, for telling engines apart in messages (`engines.name`).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer it is given.
    let n = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if n == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() {
        "unknown host".into()
    } else {
        name
    }
}

/// `ttl` as a PostgreSQL interval in seconds.
pub(super) fn seconds(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

impl PgStore {
    pub(super) fn member(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }

    /// Registers this process as an engine of the store and starts its heartbeat and its
    /// `LISTEN` session.
    pub(super) async fn join(
        pool: &deadpool_postgres::Pool,
        config: &tokio_postgres::Config,
        schema: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Membership, StoreError> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let client = pool.get().await.map_err(super::pool_error)?;
        client
            .execute(
                "INSERT INTO engines (id, name, lease_seconds) VALUES ($1, $2, $3)",
                &[
                    &id,
                    &format!("{holder} (pid {} on {})", std::process::id(), host_name()),
                    &seconds(ttl),
                ],
            )
            .await
            .map_err(backend)?;
        drop(client);
        let lost = Arc::new(AtomicBool::new(false));
        let changes = Arc::new(tokio::sync::Notify::new());
        let heartbeat = {
            let (pool, id, lost) = (pool.clone(), id.clone(), lost.clone());
            tokio::spawn(async move {
                let mut last_ok = tokio::time::Instant::now();
                let mut tick = tokio::time::interval(ttl / 5);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let beat = async {
                        let client = pool.get().await.map_err(|e| e.to_string())?;
                        client
                            .execute("UPDATE engines SET heartbeat_at = now() WHERE id = $1", &[&id])
                            .await
                            .map_err(|e| super::pg_message(&e))
                    };
                    match beat.await {
                        Ok(1) => last_ok = tokio::time::Instant::now(),
                        Ok(_) => {
                            tracing::error!("this engine was declared dead by the others (its heartbeat row is gone); it stores nothing more");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) if last_ok.elapsed() > ttl => {
                            tracing::error!("no heartbeat for longer than the lease ({e}); this engine stores nothing more");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => tracing::warn!("heartbeat failed: {e}"),
                    }
                }
            })
        };
        // The LISTEN session: a lost one only slows the tail (it also polls).
        let listener = match config.connect(tokio_postgres::NoTls).await {
            Ok((client, mut connection)) => {
                let changes = changes.clone();
                let reader = tokio::spawn(async move {
                    use futures::StreamExt;
                    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(_)) => changes.notify_one(),
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("the LISTEN session ended: {}", super::pg_message(&e));
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {}", channel(schema))).await {
                    Ok(()) => Some((client, reader)),
                    Err(e) => {
                        tracing::warn!(
                            "cannot LISTEN for other engines' commits (polling instead): {}",
                            super::pg_message(&e)
                        );
                        reader.abort();
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!(
                    "cannot LISTEN for other engines' commits (polling instead): {}",
                    super::pg_message(&e)
                );
                None
            }
        };
        Ok(Membership {
            id,
            lost,
            changes,
            heartbeat,
            _listener: listener,
        })
    }

    /// Unfinished tasks no live engine holds, now held by this engine (a dead engine's, with
    /// their lease raised; and any with no holder at all, e.g. after a copy or a clean stop).
    pub(super) async fn claim_orphans_now(&self, m: &Membership) -> Result<Vec<Task>, StoreError> {
        if m.lost.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        // A finished task a dead engine held needs no holder. (A live engine lets go of its
        // own when it commits them finished; one it holds finished is for a command at hand,
        // such as a retry, and must stay its.)
        tx.execute(
            "DELETE FROM task_owners o USING tasks t WHERE t.id = o.task_id \
             AND t.state NOT IN ('pending', 'in_progress') \
             AND NOT EXISTS (SELECT 1 FROM engines e WHERE e.id = o.engine \
               AND e.heartbeat_at >= now() - make_interval(secs => e.lease_seconds))",
            &[],
        )
        .await
        .map_err(backend)?;
        let taken = tx
            .query(
                "UPDATE task_owners o SET engine = $1, lease = o.lease + 1, wanted_by = NULL \
                 WHERE o.task_id IN ( \
                   SELECT d.task_id FROM task_owners d LEFT JOIN engines e ON e.id = d.engine \
                   WHERE d.engine <> $1 AND (e.id IS NULL OR e.heartbeat_at < now() - make_interval(secs => e.lease_seconds)) \
                   ORDER BY d.task_id LIMIT $2 FOR UPDATE OF d SKIP LOCKED) \
                 RETURNING o.task_id",
                &[&m.id, &CLAIM_BATCH],
            )
            .await
            .map_err(backend)?;
        // Tasks handed to this engine (whether or not whoever asked still waits for them).
        let handed = tx
            .query(
                "UPDATE task_owners SET handed = false WHERE engine = $1 AND handed RETURNING task_id",
                &[&m.id],
            )
            .await
            .map_err(backend)?;
        let adopted = tx
            .query(
                "INSERT INTO task_owners (task_id, engine, lease) \
                 SELECT t.id, $1, 1 FROM tasks t WHERE t.state IN ('pending', 'in_progress') \
                 AND NOT EXISTS (SELECT 1 FROM task_owners o WHERE o.task_id = t.id) \
                 ORDER BY t.id LIMIT $2 ON CONFLICT (task_id) DO NOTHING RETURNING task_id",
                &[&m.id, &CLAIM_BATCH],
            )
            .await
            .map_err(backend)?;
        // Engines long dead and holding nothing are forgotten.
        tx.execute(
            "DELETE FROM engines e WHERE e.heartbeat_at < now() - make_interval(secs => e.lease_seconds * 6) \
             AND NOT EXISTS (SELECT 1 FROM task_owners o WHERE o.engine = e.id)",
            &[],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        let ids: Vec<String> = taken
            .iter()
            .chain(&adopted)
            .chain(&handed)
            .map(|r| col(r, 0))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if !taken.is_empty() {
            tracing::info!(
                tasks = taken.len(),
                "took over tasks from an engine that stopped answering"
            );
        }
        let sql = format!(
            "SELECT {} FROM tasks t WHERE t.id = ANY($1) AND t.state IN ('pending', 'in_progress') ORDER BY t.id",
            super::FULL
        );
        self.tasks_of(&sql, &[&ids], true).await
    }

    /// Takes task `id` for this engine: free, already ours, or its holder is dead — else asks
    /// the live holder to hand it over and says so (`HeldElsewhere`).
    pub(super) async fn claim_now(&self, m: &Membership, id: &str) -> Result<(), StoreError> {
        if m.lost.load(Ordering::SeqCst) {
            return Err(StoreError::Fenced(vec![id.to_string()]));
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let row = tx
            .query_opt(
                "SELECT o.engine, coalesce(e.name, ''), \
                 (e.id IS NULL OR e.heartbeat_at < now() - make_interval(secs => e.lease_seconds)) \
                 FROM task_owners o LEFT JOIN engines e ON e.id = o.engine WHERE o.task_id = $1 FOR UPDATE OF o",
                &[&id],
            )
            .await
            .map_err(backend)?;
        let result = match row {
            None => {
                tx.execute(
                    "INSERT INTO task_owners (task_id, engine, lease) VALUES ($1, $2, 1) ON CONFLICT (task_id) DO NOTHING",
                    &[&id, &m.id],
                )
                .await
                .map_err(backend)?;
                Ok(())
            }
            Some(row) => {
                let (engine, name, dead): (String, String, bool) =
                    (col(&row, 0)?, col(&row, 1)?, col(&row, 2)?);
                if engine == m.id {
                    tx.execute("UPDATE task_owners SET handed = false WHERE task_id = $1", &[&id])
                        .await
                        .map_err(backend)?;
                    Ok(())
                } else if dead {
                    tx.execute(
                        "UPDATE task_owners SET engine = $2, lease = lease + 1, wanted_by = NULL WHERE task_id = $1",
                        &[&id, &m.id],
                    )
                    .await
                    .map_err(backend)?;
                    Ok(())
                } else {
                    tx.execute(
                        "UPDATE task_owners SET wanted_by = $2 WHERE task_id = $1",
                        &[&id, &m.id],
                    )
                    .await
                    .map_err(backend)?;
                    Err(StoreError::HeldElsewhere {
                        task: id.to_string(),
                        holder: name,
                    })
                }
            }
        };
        tx.commit().await.map_err(backend)?;
        result
    }

    /// The engines that answered within their lease (their names: `holder (pid N on HOST)`).
    pub async fn live_engines(&self) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name FROM engines WHERE heartbeat_at >= now() - make_interval(secs => lease_seconds) ORDER BY started_at",
                &[],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    /// Tasks this engine holds that another engine asked for.
    pub(super) async fn wanted_now(&self, m: &Membership) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT task_id FROM task_owners WHERE engine = $1 AND wanted_by IS NOT NULL ORDER BY task_id",
                &[&m.id],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    /// Gives task `id` to the engine that asked for it (a new lease).
    pub(super) async fn hand_over_now(&self, m: &Membership, id: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE task_owners SET engine = wanted_by, lease = lease + 1, wanted_by = NULL, handed = true \
                 WHERE task_id = $1 AND engine = $2 AND wanted_by IS NOT NULL",
                &[&id, &m.id],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// A clean stop: this engine's tasks are free for the others at once.
    pub(super) async fn leave_now(&self, m: &Membership) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM task_owners WHERE engine = $1", &[&m.id])
            .await
            .map_err(backend)?;
        client
            .execute("DELETE FROM engines WHERE id = $1", &[&m.id])
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Inside a commit: refuses (`Fenced`) unless this engine is alive and holds every task
    /// written (`ids`; `created[i]`: made by this commit, so no engine holds it yet;
    /// `active[i]`: still unfinished after the commit), then takes the new ones and lets the
    /// finished ones go.
    pub(super) async fn fence(
        tx: &deadpool_postgres::Transaction<'_>,
        m: &Membership,
        ids: &[String],
        created: &[bool],
        active: &[bool],
    ) -> Result<(), StoreError> {
        if m.lost.load(Ordering::SeqCst) {
            return Err(StoreError::Fenced(ids.to_vec()));
        }
        let alive = tx
            .execute("UPDATE engines SET heartbeat_at = now() WHERE id = $1", &[&m.id])
            .await
            .map_err(backend)?;
        if alive == 0 {
            m.lost.store(true, Ordering::SeqCst);
            return Err(StoreError::Fenced(ids.to_vec()));
        }
        if ids.is_empty() {
            return Ok(());
        }
        let statement = tx
            .prepare_cached(
                "SELECT task_id, engine FROM task_owners WHERE task_id = ANY($1) ORDER BY task_id FOR UPDATE",
            )
            .await
            .map_err(backend)?;
        let rows = tx.query(&statement, &[&ids]).await.map_err(backend)?;
        let mut held = std::collections::HashSet::new();
        let mut taken = Vec::new();
        for row in &rows {
            let (task, engine): (String, String) = (col(row, 0)?, col(row, 1)?);
            if engine == m.id {
                held.insert(task);
            } else {
                taken.push(task);
            }
        }
        if !taken.is_empty() {
            return Err(StoreError::Fenced(taken));
        }
        let (mut new, mut done, mut lost) = (Vec::new(), Vec::new(), Vec::new());
        for ((id, &active), &created) in ids.iter().zip(active).zip(created) {
            match (held.contains(id), created, active) {
                // A task this engine did not create and holds no lease on: another engine
                // finished it since (its lease went with it), or it was never ours.
                (false, false, _) => lost.push(id.clone()),
                (false, true, true) => new.push(id.clone()),
                (true, _, false) => done.push(id.clone()),
                _ => {}
            }
        }
        if !lost.is_empty() {
            return Err(StoreError::Fenced(lost));
        }
        if !new.is_empty() {
            let statement = tx
                .prepare_cached(
                    "INSERT INTO task_owners (task_id, engine, lease) SELECT t, $2, 1 FROM unnest($1::text[]) AS t \
                     ON CONFLICT (task_id) DO NOTHING",
                )
                .await
                .map_err(backend)?;
            tx.execute(&statement, &[&new, &m.id]).await.map_err(backend)?;
        }
        if !done.is_empty() {
            let statement = tx
                .prepare_cached("DELETE FROM task_owners WHERE task_id = ANY($1) AND engine = $2")
                .await
                .map_err(backend)?;
            tx.execute(&statement, &[&done, &m.id]).await.map_err(backend)?;
        }
        Ok(())
    }
}
