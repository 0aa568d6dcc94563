//! The PostgreSQL store: the same `Store` contract as sled, in one database schema, for teams
//! that already run PostgreSQL (issue 14). Selected by `--store postgres://…` (or
//! `TASKDECK_STORE`); `?schema=NAME` in the URL picks the schema (default `taskdeck`), so one
//! database can hold several independent stores.
//!
//! Tables (migration 1, `schema`): `tasks` (one row per task: the header JSON and the columns
//! listings filter on, the context and plan written at creation, the search terms), `steps`
//! (each step's last status, once it has one), `transitions` (the log, one row per
//! transition), `events` (the stream clients resume from), `search_terms` (hash → task, the
//! personal ones apart), `audit` (the journal, one row per entry), `subjects`,
//! `subject_aliases`, `subject_tasks`, and `meta` (sequence numbers, the catalog's digests,
//! the latest audit checkpoint). A commit is one transaction, so there is nothing to settle
//! after a crash: PostgreSQL keeps the whole group or none of it.
//!
//! The audit journal is one chain per schema: a commit appends its entries under a
//! transaction-scoped advisory lock, after reading the head, so appends from any connection
//! are serialized and the chain never forks.
//!
//! Any number of engines share one schema (`leases`): each unfinished task is driven by the
//! engine holding its lease, taken over when that engine stops answering, and a commit from an
//! engine whose lease was taken away is refused (fencing).

// Input never panics the engine: no `unwrap` here outside tests (issue 8).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

mod leases;
mod schema;

pub use leases::LEASE_SECONDS_ENV;
pub use schema::latest as schema_version;

use super::records::{Header, StepDef};
use super::{readable, Accept, Durability, Listing, Store, StoreError, TaskWrite, Waiting};
use crate::audit::verify::Stored;
use crate::audit::{AuditEntry, AuditRecord, Checkpoint, GENESIS};
use crate::model::{Event, StepStatus, Subject, Task, TaskState, Timestamp, Transition};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use serde_json::Value;
use std::collections::BTreeMap;
use std::str::FromStr;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

/// Advisory lock key (first half; the second is the schema's hash) of the audit chain, which
/// also orders the event sequence (migrations use 7421).
const JOURNAL_LOCK: i32 = 7422;

/// The `meta` key marking a store that `taskdeck store copy` is filling.
const COPY_MARK: &str = "copy_in_progress";

/// How long a store keeps asking for a connection when the server does not take any.
const RECONNECT_FOR: std::time::Duration = std::time::Duration::from_secs(8);

/// The schema a URL without `?schema=` uses.
pub const DEFAULT_SCHEMA: &str = "taskdeck";

/// Whether `store` names a PostgreSQL store (`postgres://` or `postgresql://`).
pub fn is_postgres_url(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

/// Where a PostgreSQL store lives: the connection settings and the schema.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    /// A lowercase SQL identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes).
    pub schema: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PgTarget {
    /// Parses a `postgres://user:password@host:port/database?schema=NAME&…` URL (every other
    /// parameter is libpq's, as `tokio_postgres::Config` reads it). Errors name what is wrong,
    /// never the password.
    pub fn parse(url: &str) -> Result<PgTarget, String> {
        if !is_postgres_url(url) {
            return Err("a PostgreSQL store is a URL starting with postgres:// or postgresql://".into());
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut schema = DEFAULT_SCHEMA.to_string();
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.strip_prefix("schema=") {
                Some(name) => schema = name.to_string(),
                None => rest.push(pair),
            }
        }
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !schema.starts_with("pg_");
        if !valid {
            return Err(format!(
                "schema `{}` is not a lowercase SQL name (letters, digits and _, at most 63, not pg_…)",
                crate::cli::one_line(&schema.chars().take(80).collect::<String>())
            ));
        }
        let url = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| format!("the PostgreSQL URL is not valid: {e}"))?;
        if !matches!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable | tokio_postgres::config::SslMode::Prefer
        ) {
            return Err("sslmode: TLS to PostgreSQL is not supported yet; connect over loopback or a trusted network (sslmode=disable or prefer)".into());
        }
        Ok(PgTarget { config, schema })
    }

    /// The target without its password, for messages: `postgres://user@host:port/db (schema s)`.
    pub fn describe(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgres://{}@{host}:{port}/{} (schema {})",
            self.config.get_user().unwrap_or(""),
            self.config.get_dbname().unwrap_or(""),
            self.schema
        )
    }

    /// This target with another schema (tests give each store its own).
    pub fn with_schema(&self, schema: &str) -> PgTarget {
        PgTarget {
            config: self.config.clone(),
            schema: schema.to_string(),
        }
    }

    fn session_config(&self, durability: Durability, holder: &str) -> tokio_postgres::Config {
        let mut config = self.config.clone();
        let mut options = config.get_options().unwrap_or("").to_string();
        // The schema is validated above: no quoting needed. Relaxed durability lets
        // PostgreSQL acknowledge a commit before its WAL is flushed (a crash of the database
        // server may lose the last fraction of a second; never a half group).
        options.push_str(&format!(
            " -c search_path={} -c synchronous_commit={}",
            self.schema,
            match durability {
                Durability::Immediate => "on",
                Durability::Relaxed => "off",
            }
        ));
        config.options(options.trim());
        config.application_name(format!("taskdeck {holder} (pid {})", std::process::id()));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        config
    }
}

pub struct PgStore {
    pool: Pool,
    target: PgTarget,
    /// This process as one of the engines sharing the store (`open`); `None` for a store
    /// opened to read or copy.
    membership: Option<leases::Membership>,
    durability: Durability,
    /// The simulated services' own database (see `SledStore::open_services`), flushed before
    /// each commit so a service's write made before its answer is durable whenever the
    /// engine's record of the answer is.
    services: std::sync::OnceLock<sled::Db>,
}

fn backend(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(pg_message(&e))
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => backend(e),
        other => StoreError::Backend(format!("no PostgreSQL connection: {other}")),
    }
}

/// A PostgreSQL error as one line: the server's message and code when it sent one.
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            format!("PostgreSQL: {text}")
        }
    }
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Encode(format!("{what}: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        cause: e.to_string(),
    })
}

/// A column of our own schema (a type mismatch is a damaged schema, reported, never a panic).
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i).map_err(|e| StoreError::Corrupt {
        key: format!("column {i}"),
        cause: e.to_string(),
    })
}

/// PostgreSQL's `bigint` for a sequence number or count (values past it are refused).
fn big(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n)
        .map_err(|_| StoreError::Encode(format!("{n} is past the largest number PostgreSQL stores")))
}

fn small(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Text PostgreSQL cannot hold (a NUL) names nothing stored.
fn unstorable(text: &str) -> bool {
    text.contains('\0')
}

/// `text` as a `LIKE` pattern matching itself literally.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Columns of a whole task, and of a header-only one (`row_task` reads either).
const FULL: &str = "t.id, t.header, t.terms, t.context, t.plan, \
    ARRAY(SELECT s.name FROM steps s WHERE s.task_id = t.id ORDER BY s.name), \
    ARRAY(SELECT s.status FROM steps s WHERE s.task_id = t.id ORDER BY s.name)";
const LIGHT: &str = "t.id, t.header, t.terms";

/// States the engine no longer drives (`!TaskState::is_active`), as SQL.
const FINISHED: &str = "t.state NOT IN ('pending', 'in_progress')";

/// A task from a row of `FULL` or (`full` false) `LIGHT` columns.
fn row_task(row: &Row, full: bool) -> Result<Task, StoreError> {
    let id: String = col(row, 0)?;
    let header: Header = decode(&id, &col::<String>(row, 1)?)?;
    let terms: Vec<String> = decode(&id, &col::<String>(row, 2)?)?;
    let mut task = if full {
        let plan: Vec<StepDef> = match col::<Option<String>>(row, 4)? {
            Some(text) => decode(&id, &text)?,
            None => {
                return Err(StoreError::Corrupt {
                    key: id,
                    cause: "the task's step definitions are missing".into(),
                })
            }
        };
        let mut steps: Vec<crate::model::Step> = plan.into_iter().map(StepDef::into_step).collect();
        let names: Vec<String> = col(row, 5)?;
        let statuses: Vec<String> = col(row, 6)?;
        for (name, status) in names.iter().zip(&statuses) {
            if let Some(step) = steps.iter_mut().find(|s| &s.name == name) {
                step.set_status(decode::<StepStatus>(&format!("{id} step {name}"), status)?);
            }
        }
        let context = match col::<Option<String>>(row, 3)? {
            Some(text) => decode(&id, &text)?,
            None => Value::Object(Default::default()),
        };
        header.into_task(steps, context)
    } else {
        header.into_task(Vec::new(), Value::Null)
    };
    task.search_terms = terms;
    Ok(task)
}

impl PgStore {
    /// Opens (creating and migrating as needed) the store at `url` as one of the engines
    /// sharing it: registers, heartbeats, and holds the leases of the tasks it drives (see
    /// `leases`). Errors: `Open` (cannot connect, a schema newer than this build, a bad
    /// `TASKDECK_LEASE_SECONDS`).
    pub async fn open(url: &str, durability: Durability, holder: &str) -> Result<PgStore, StoreError> {
        let target = PgTarget::parse(url).map_err(|cause| StoreError::Open {
            path: "--store".into(),
            cause,
            advice: "write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE[?schema=NAME]",
        })?;
        Self::open_target(&target, durability, holder, true).await
    }

    /// Opens the store at `target`; with `engine`, as one of the engines sharing it (see
    /// `open`), else only to read and write records (tests, `store copy`).
    pub async fn open_target(
        target: &PgTarget,
        durability: Durability,
        holder: &str,
        engine: bool,
    ) -> Result<PgStore, StoreError> {
        let config = target.session_config(durability, holder);
        let place = target.describe();
        let unreachable = |e: tokio_postgres::Error| StoreError::Open {
            path: place.clone(),
            cause: pg_message(&e),
            advice: "check that PostgreSQL runs and the URL's host, port, user, password and database",
        };
        let (mut client, connection) = config.connect(NoTls).await.map_err(unreachable)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(
                    "the PostgreSQL session holding the store lost its connection: {}",
                    pg_message(&e)
                );
            }
        });
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", target.schema))
            .await
            .map_err(|e| StoreError::Open {
                path: place.clone(),
                cause: pg_message(&e),
                advice: "give the URL's user the right to create a schema in the database (or create it for them)",
            })?;
        let before = schema::migrate(&mut client, &place).await?;
        if before < schema::latest() {
            tracing::info!(
                "PostgreSQL store {place}: schema version {before} migrated to {}",
                schema::latest()
            );
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot make a PostgreSQL connection pool: {e}")))?;
        // The store's identity, made with it (on the session at hand: the pool connects lazily,
        // on the runtime that first uses it).
        client
            .execute(
                "INSERT INTO meta (key, value) VALUES ('store_id', $1) ON CONFLICT (key) DO NOTHING",
                &[&uuid::Uuid::now_v7().to_string()],
            )
            .await
            .map_err(backend)?;
        let membership = match engine {
            true => Some(Self::join(&pool, &config, &target.schema, holder, leases::ttl_from_env()?).await?),
            false => None,
        };
        // After registering (see `begin_copy`): a store a copy is filling is not opened.
        if engine {
            let marked = client
                .query_opt("SELECT value FROM meta WHERE key = $1", &[&COPY_MARK])
                .await
                .map_err(backend)?;
            if let Some(row) = marked {
                if let Some(m) = &membership {
                    let _ = client
                        .execute("DELETE FROM engines WHERE id = $1", &[&m.id])
                        .await;
                }
                let what: String = col(&row, 0)?;
                return Err(StoreError::Open {
                    path: place.clone(),
                    cause: format!(
                        "`taskdeck store copy` is filling it ({})",
                        crate::cli::one_line(&what.chars().take(200).collect::<String>())
                    ),
                    advice: "wait for the copy to finish; if it failed, drop the schema (DROP SCHEMA … CASCADE) and copy again",
                });
            }
        }
        drop(client);
        Ok(PgStore {
            pool,
            target: target.clone(),
            membership,
            durability,
            services: std::sync::OnceLock::new(),
        })
    }

    /// Whether `target` holds a Taskdeck store (its schema and version table exist); makes
    /// nothing. Errors: `Open` when the database cannot be reached.
    pub async fn exists(target: &PgTarget) -> Result<bool, StoreError> {
        let config = target.session_config(Durability::Immediate, "check");
        let (client, connection) = config.connect(NoTls).await.map_err(|e| StoreError::Open {
            path: target.describe(),
            cause: pg_message(&e),
            advice: "check that PostgreSQL runs and the URL's host, port, user, password and database",
        })?;
        tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'taskdeck_schema'",
                &[&target.schema],
            )
            .await
            .map_err(backend)?;
        Ok(col::<i64>(&row, 0)? > 0)
    }

    /// Marks this store as being filled by `taskdeck store copy` (`what`: from where, since
    /// when), so engines refuse to open it; only an empty store with no mark and no live
    /// engine is marked. The mark is written before engines are looked for, as an engine
    /// registers before it looks for the mark, so one of the two always sees the other.
    /// Errors: `Open`, naming the copy or the engines in the way, or saying the store is not
    /// empty (nothing is then marked).
    pub async fn begin_copy(&self, what: &str) -> Result<(), StoreError> {
        let refuse = |cause: String| StoreError::Open {
            path: self.describe(),
            cause,
            advice: "a copy goes into an empty store no engine runs on",
        };
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM tasks) OR EXISTS (SELECT 1 FROM audit) OR EXISTS (SELECT 1 FROM subjects)",
                &[],
            )
            .await
            .map_err(backend)?;
        if col::<bool>(&row, 0)? {
            return Err(refuse(
                "it already holds tasks, journal entries or data subjects".into(),
            ));
        }
        let marked = client
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&COPY_MARK, &what],
            )
            .await
            .map_err(backend)?;
        if marked == 0 {
            let other = self.meta(COPY_MARK).await?.unwrap_or_default();
            return Err(refuse(format!(
                "another `taskdeck store copy` is filling it ({})",
                crate::cli::one_line(&other.chars().take(200).collect::<String>())
            )));
        }
        let engines = self.live_engines().await?;
        if !engines.is_empty() {
            self.end_copy().await?;
            return Err(refuse(format!("engines run on it: {}", engines.join(", "))));
        }
        Ok(())
    }

    /// Clears the mark of `begin_copy` (the copy was verified).
    pub async fn end_copy(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM meta WHERE key = $1", &[&COPY_MARK])
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Whether `taskdeck store copy` is filling this store (`begin_copy`'s mark, if any).
    pub async fn copying(&self) -> Result<Option<String>, StoreError> {
        self.meta(COPY_MARK).await
    }

    /// The schema this store lives in.
    pub fn schema(&self) -> &str {
        &self.target.schema
    }

    /// Where this store lives, without the password.
    pub fn describe(&self) -> String {
        self.target.describe()
    }

    /// For tests of fencing: stops this engine's heartbeat, as if its process hung; its
    /// commits still try (and are refused once another engine has taken its tasks over).
    pub fn suspend_heartbeat(&self) {
        if let Some(m) = self.member() {
            m.heartbeat.abort();
        }
    }

    /// A connection for the simulated services' records in this store's schema
    /// (`services::shared`), which every engine of the store shares.
    pub fn shared_services(&self) -> Result<std::sync::Arc<crate::services::shared::SharedRows>, StoreError> {
        let config = self.target.session_config(Durability::Immediate, "services");
        crate::services::shared::SharedRows::new(config)
            .map(std::sync::Arc::new)
            .map_err(|e| StoreError::Backend(format!("cannot start the services' database runtime: {e}")))
    }

    /// Keeps `db` (the simulated services' records) flushed before every commit.
    pub fn attach_services(&self, db: sled::Db) {
        let _ = self.services.set(db);
    }

    /// Drops the store's schema with everything in it (tests' temporary stores).
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.target.schema))
            .await
            .map_err(backend)
    }

    /// A pooled session. A database restart or failover closes every session: closed ones
    /// are let go, and a server that does not take connections yet (starting up, shutting
    /// down, refusing) is asked again for up to `RECONNECT_FOR`, so a short interruption
    /// delays a commit rather than stopping the engine.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        let deadline = tokio::time::Instant::now() + RECONNECT_FOR;
        loop {
            match self.pool.get().await {
                Ok(client) if !client.is_closed() => return Ok(client),
                Ok(closed) => drop(deadpool_postgres::Object::take(closed)),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!("no PostgreSQL connection yet: {}", pool_error(e));
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(e) => return Err(pool_error(e)),
            }
        }
    }

    fn flush_services(&self) -> Result<(), StoreError> {
        if let Some(db) = self.services.get() {
            db.flush().map_err(|e| StoreError::Backend(e.to_string()))?;
        }
        Ok(())
    }

    async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
            .await
            .map_err(backend)?;
        row.map(|r| col(&r, 0)).transpose()
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn meta_number(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self
            .meta(key)
            .await?
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0))
    }

    /// Rows of `sql` (which selects `FULL` or `LIGHT` columns) as tasks, unreadable ones skipped.
    async fn tasks_of(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        full: bool,
    ) -> Result<Vec<Task>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(backend)?;
        let rows = client.query(&statement, params).await.map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.extend(readable(row_task(row, full))?);
        }
        Ok(out)
    }

    /// Chains `records` after the journal's head inside `tx` (serialized by the journal lock,
    /// held until `tx` ends). `keep`: return the entries written.
    async fn journal(
        tx: &Transaction<'_>,
        records: Vec<AuditRecord>,
        keep: bool,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
            &[&JOURNAL_LOCK],
        )
        .await
        .map_err(backend)?;
        let (seq, hash) = Self::head_in(tx).await?;
        let chained = super::chain(records, seq, hash, keep)?;
        let mut seqs = Vec::with_capacity(chained.bodies.len());
        let mut bodies = Vec::with_capacity(chained.bodies.len());
        for (seq, bytes) in &chained.bodies {
            seqs.push(big(*seq)?);
            bodies.push(String::from_utf8_lossy(bytes).into_owned());
        }
        let statement = tx
            .prepare_cached("INSERT INTO audit (seq, body) SELECT * FROM unnest($1::bigint[], $2::text[])")
            .await
            .map_err(backend)?;
        tx.execute(&statement, &[&seqs, &bodies]).await.map_err(backend)?;
        Ok(chained.written)
    }

    /// The journal's head as `tx` sees it: the last entry's sequence number and hash.
    async fn head_in(tx: &Transaction<'_>) -> Result<(u64, String), StoreError> {
        let row = tx
            .query_opt("SELECT seq, body FROM audit ORDER BY seq DESC LIMIT 1", &[])
            .await
            .map_err(backend)?;
        match row {
            None => Ok((0, GENESIS.to_string())),
            Some(row) => {
                let seq: i64 = col(&row, 0)?;
                let entry: AuditEntry = decode(&format!("audit entry {seq}"), &col::<String>(&row, 1)?)
                    .map_err(|e| StoreError::Corrupt {
                        key: "audit journal".into(),
                        cause: format!("its last entry is unreadable ({e}); nothing more is journaled until it is looked at: run `taskdeck audit verify`"),
                    })?;
                Ok((entry.seq, entry.hash))
            }
        }
    }

    async fn find_by_pattern(
        &self,
        column: &str,
        pattern: &str,
        accept: &Accept<'_>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        // Pages of candidates in the index's order; ones the caller may not read do not count.
        let sql = format!(
            "SELECT {LIGHT}, {column} AS k FROM tasks t WHERE {column} LIKE $1 ESCAPE '\\' AND {column} > $2 \
             ORDER BY {column} LIMIT 200"
        );
        let mut after = String::new();
        let mut found = Vec::new();
        loop {
            let client = self.client().await?;
            let statement = client.prepare_cached(&sql).await.map_err(backend)?;
            let rows = client
                .query(&statement, &[&pattern, &after])
                .await
                .map_err(backend)?;
            drop(client);
            for row in &rows {
                after = col(row, 3)?;
                let Some(light) = readable(row_task(row, false))? else {
                    continue;
                };
                if accept(&light) {
                    found.extend(self.task(&light.id).await?);
                    if found.len() >= limit {
                        return Ok(found);
                    }
                }
            }
            if rows.len() < 200 {
                return Ok(found);
            }
        }
    }
}

impl PgStore {
    /// A commit's writes in one transaction; `journal`: its transitions go into the audit
    /// journal too (a copy's do not: the journal is copied as it is).
    async fn write(
        &self,
        tasks: &[TaskWrite<'_>],
        transitions: &[Transition],
        events: &[Event],
        journal: bool,
    ) -> Result<(), StoreError> {
        self.flush_services()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        // An engine's commit: only of tasks it holds (the fence), events numbered by the
        // database in commit order.
        let member = self.membership.as_ref().filter(|_| journal);
        if let Some(m) = member {
            let ids: Vec<String> = tasks.iter().map(|w| w.task.id.clone()).collect();
            let created: Vec<bool> = tasks.iter().map(|w| w.context.is_some()).collect();
            let active: Vec<bool> = tasks.iter().map(|w| w.task.state.is_active()).collect();
            Self::fence(&tx, m, &ids, &created, &active).await?;
        }
        for w in tasks {
            let t = w.task;
            let header = encode("task", &Header::of(t))?;
            let state = t.state.as_str();
            match w.context {
                Some(context) => {
                    let plan: Vec<StepDef> = t.steps.iter().map(StepDef::of).collect();
                    let statement = tx
                        .prepare_cached(
                            "INSERT INTO tasks (id, namespace, name, state, created_at, updated_at, header, context, plan, origin_key, terms) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                             ON CONFLICT (id) DO UPDATE SET namespace = excluded.namespace, name = excluded.name, \
                             state = excluded.state, created_at = excluded.created_at, updated_at = excluded.updated_at, \
                             header = excluded.header, context = excluded.context, plan = excluded.plan, \
                             origin_key = excluded.origin_key, terms = excluded.terms",
                        )
                        .await
                        .map_err(backend)?;
                    tx.execute(
                        &statement,
                        &[
                            &t.id,
                            &t.namespace,
                            &t.name,
                            &state,
                            &t.created_at,
                            &t.updated_at,
                            &header,
                            &encode("context", context)?,
                            &encode("steps", &plan)?,
                            &t.origin_key,
                            &encode("search terms", &t.search_terms)?,
                        ],
                    )
                    .await
                    .map_err(backend)?;
                    if !t.search_terms.is_empty() {
                        let (mut terms, mut personal) = (Vec::new(), Vec::new());
                        for term in &t.search_terms {
                            match term.strip_prefix("p:") {
                                Some(hash) => {
                                    terms.push(hash.to_string());
                                    personal.push(true);
                                }
                                None => {
                                    terms.push(term.clone());
                                    personal.push(false);
                                }
                            }
                        }
                        let statement = tx
                            .prepare_cached(
                                "INSERT INTO search_terms (term, personal, task_id) \
                                 SELECT u.term, u.personal, $3 FROM unnest($1::text[], $2::bool[]) AS u(term, personal) \
                                 ON CONFLICT DO NOTHING",
                            )
                            .await
                            .map_err(backend)?;
                        tx.execute(&statement, &[&terms, &personal, &t.id])
                            .await
                            .map_err(backend)?;
                    }
                }
                None => {
                    let statement = tx
                        .prepare_cached(
                            "INSERT INTO tasks (id, namespace, name, state, created_at, updated_at, header) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7) \
                             ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, \
                             header = excluded.header",
                        )
                        .await
                        .map_err(backend)?;
                    tx.execute(
                        &statement,
                        &[
                            &t.id,
                            &t.namespace,
                            &t.name,
                            &state,
                            &t.created_at,
                            &t.updated_at,
                            &header,
                        ],
                    )
                    .await
                    .map_err(backend)?;
                }
            }
        }
        if !transitions.is_empty() {
            let mut ids = Vec::with_capacity(transitions.len());
            let mut seqs = Vec::with_capacity(transitions.len());
            let mut bodies = Vec::with_capacity(transitions.len());
            // Each changed step's last status in the group.
            let mut last: BTreeMap<(&str, &str), &StepStatus> = BTreeMap::new();
            for t in transitions {
                ids.push(t.task_id.clone());
                seqs.push(big(t.seq)?);
                bodies.push(encode("transition", t)?);
                if let (Subject::Step(name), Some(status)) = (&t.subject, &t.step) {
                    last.insert((t.task_id.as_str(), name.as_str()), status);
                }
            }
            let statement = tx
                .prepare_cached(
                    "INSERT INTO transitions (task_id, seq, body) SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])",
                )
                .await
                .map_err(backend)?;
            tx.execute(&statement, &[&ids, &seqs, &bodies])
                .await
                .map_err(backend)?;
            if !last.is_empty() {
                let (mut task_ids, mut names, mut states, mut statuses) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for ((id, name), status) in last {
                    task_ids.push(id.to_string());
                    names.push(name.to_string());
                    states.push(status.state.as_str().to_string());
                    statuses.push(encode("step", status)?);
                }
                let statement = tx
                    .prepare_cached(
                        "INSERT INTO steps (task_id, name, state, status) \
                         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) \
                         ON CONFLICT (task_id, name) DO UPDATE SET state = excluded.state, status = excluded.status",
                    )
                    .await
                    .map_err(backend)?;
                tx.execute(&statement, &[&task_ids, &names, &states, &statuses])
                    .await
                    .map_err(backend)?;
            }
            let max = transitions.iter().map(|t| t.seq).max().unwrap_or(0);
            raise_meta(&tx, "last_seq", big(max)?).await?;
        }
        if !events.is_empty() {
            // Engines sharing the store number events here, under the journal's lock, so the
            // sequence follows commit order across engines.
            let mut next = match member {
                Some(_) => {
                    tx.execute(
                        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
                        &[&JOURNAL_LOCK],
                    )
                    .await
                    .map_err(backend)?;
                    let row = tx
                        .query_opt("SELECT value FROM meta WHERE key = 'last_event_seq'", &[])
                        .await
                        .map_err(backend)?;
                    let last = match row {
                        Some(r) => col::<String>(&r, 0)?.parse::<u64>().unwrap_or(0),
                        None => 0,
                    };
                    Some(last)
                }
                None => None,
            };
            let (mut seqs, mut ats, mut ids, mut bodies) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for e in events {
                let numbered;
                let e = match next.as_mut() {
                    Some(n) => {
                        *n = n.saturating_add(1);
                        numbered = Event { seq: *n, ..e.clone() };
                        &numbered
                    }
                    None => e,
                };
                seqs.push(big(e.seq)?);
                ats.push(e.at);
                ids.push(e.task_id.clone());
                bodies.push(encode("event", e)?);
            }
            let statement = tx
                .prepare_cached(
                    "INSERT INTO events (seq, at, task_id, body) \
                     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])",
                )
                .await
                .map_err(backend)?;
            tx.execute(&statement, &[&seqs, &ats, &ids, &bodies])
                .await
                .map_err(backend)?;
            let max = seqs.iter().copied().max().unwrap_or(0);
            raise_meta(&tx, "last_event_seq", max).await?;
            if member.is_some() {
                tx.execute(
                    "SELECT pg_notify($1, '')",
                    &[&leases::channel(&self.target.schema)],
                )
                .await
                .map_err(backend)?;
            }
        }
        // The journal, in the same transaction as the transitions it describes.
        if journal && !transitions.is_empty() {
            let mut ordered: Vec<&Transition> = transitions.iter().collect();
            ordered.sort_by_key(|t| t.seq);
            let records = ordered
                .into_iter()
                .filter_map(|t| {
                    let task = tasks.iter().find(|w| w.task.id == t.task_id)?.task;
                    Some(AuditRecord::of_transition(t, task))
                })
                .collect();
            Self::journal(&tx, records, false).await?;
        }
        tx.commit().await.map_err(backend)
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn commit(
        &self,
        tasks: &[TaskWrite<'_>],
        transitions: &[Transition],
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.write(tasks, transitions, events, true).await
    }

    fn shared(&self) -> bool {
        self.membership.is_some()
    }

    fn alive(&self) -> bool {
        self.member()
            .is_none_or(|m| !m.lost.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn changes(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        self.member().map(|m| m.changes.clone())
    }

    async fn claim_orphans(&self) -> Result<Vec<Task>, StoreError> {
        match self.member() {
            Some(m) => self.claim_orphans_now(m).await,
            None => Ok(Vec::new()),
        }
    }

    async fn claim(&self, id: &str) -> Result<(), StoreError> {
        match self.member() {
            Some(m) if !unstorable(id) => self.claim_now(m, id).await,
            _ => Ok(()),
        }
    }

    async fn wanted(&self) -> Result<Vec<String>, StoreError> {
        match self.member() {
            Some(m) => self.wanted_now(m).await,
            None => Ok(Vec::new()),
        }
    }

    async fn hand_over(&self, id: &str) -> Result<(), StoreError> {
        match self.member() {
            Some(m) => self.hand_over_now(m, id).await,
            None => Ok(()),
        }
    }

    async fn leave(&self) -> Result<(), StoreError> {
        match self.member() {
            Some(m) => self.leave_now(m).await,
            None => Ok(()),
        }
    }

    async fn import(
        &self,
        tasks: &[Task],
        transitions: &[Transition],
        events: &[Event],
    ) -> Result<(), StoreError> {
        let writes = super::whole(tasks);
        self.write(&writes, transitions, events, false).await
    }

    async fn key_check(&self, proposed: Option<&str>) -> Result<Option<String>, StoreError> {
        if let Some(value) = proposed {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO meta (key, value) VALUES ('master_key_check', $1) ON CONFLICT (key) DO NOTHING",
                    &[&value],
                )
                .await
                .map_err(backend)?;
        }
        self.meta("master_key_check").await
    }

    async fn import_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
            &[&JOURNAL_LOCK],
        )
        .await
        .map_err(backend)?;
        let (seq, hash) = Self::head_in(&tx).await?;
        super::check_follows((seq, &hash), entries)?;
        let mut seqs = Vec::with_capacity(entries.len());
        let mut bodies = Vec::with_capacity(entries.len());
        for e in entries {
            seqs.push(big(e.seq)?);
            bodies.push(encode("audit entry", e)?);
        }
        tx.execute(
            "INSERT INTO audit (seq, body) SELECT * FROM unnest($1::bigint[], $2::text[])",
            &[&seqs, &bodies],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    async fn subjects(&self) -> Result<Vec<super::SubjectCopy>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT s.id, s.body, \
                 ARRAY(SELECT a.alias FROM subject_aliases a WHERE a.subject_id = s.id ORDER BY a.alias), \
                 ARRAY(SELECT t.task_id FROM subject_tasks t WHERE t.subject_id = s.id ORDER BY t.task_id) \
                 FROM subjects s ORDER BY s.id",
                &[],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(super::SubjectCopy {
                    record: decode(&col::<String>(r, 0)?, &col::<String>(r, 1)?)?,
                    aliases: col(r, 2)?,
                    tasks: col(r, 3)?,
                })
            })
            .collect()
    }

    async fn task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        if unstorable(id) {
            return Ok(None);
        }
        let sql = format!("SELECT {FULL} FROM tasks t WHERE t.id = $1");
        let client = self.client().await?;
        let statement = client.prepare_cached(&sql).await.map_err(backend)?;
        match client.query_opt(&statement, &[&id]).await.map_err(backend)? {
            Some(row) => Ok(Some(row_task(&row, true)?)),
            None => Ok(None),
        }
    }

    async fn find_tasks(
        &self,
        text: &str,
        accept: &Accept<'_>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        if text.is_empty() || limit == 0 || unstorable(text) {
            return Ok(Vec::new());
        }
        if let Some(task) = self.task(text).await? {
            return Ok(if accept(&task) { vec![task] } else { Vec::new() });
        }
        let found = self
            .find_by_pattern("t.id", &format!("{}%", like_escape(text)), accept, limit)
            .await?;
        if !found.is_empty() || text.len() < 4 {
            return Ok(found);
        }
        let reversed: String = text.chars().rev().collect();
        self.find_by_pattern(
            "reverse(t.id)",
            &format!("{}%", like_escape(&reversed)),
            accept,
            limit,
        )
        .await
    }

    async fn task_by_origin(&self, key: &str) -> Result<Option<Task>, StoreError> {
        if unstorable(key) {
            return Ok(None);
        }
        let sql = format!("SELECT {FULL} FROM tasks t WHERE t.origin_key = $1");
        Ok(self.tasks_of(&sql, &[&key], true).await?.into_iter().next())
    }

    async fn list(
        &self,
        listing: &Listing,
        accept: &Accept<'_>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let strings = [
            listing.namespace.as_deref(),
            listing.before.as_deref(),
            listing.workflow.as_ref().map(|(ns, _)| ns.as_str()),
            listing.workflow.as_ref().map(|(_, name)| name.as_str()),
        ];
        if strings.iter().flatten().any(|s| unstorable(s)) || listing.terms.iter().any(|t| unstorable(t)) {
            return Ok(Vec::new());
        }
        // The filters in SQL (each re-checked by nothing else: PostgreSQL's answer is exact),
        // the read permission in Rust, page by page, newest first.
        let mut clauses: Vec<String> = Vec::new();
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut bind = |clauses: &mut Vec<String>, template: &str, value: Box<dyn ToSql + Sync + Send>| {
            params.push(value);
            clauses.push(template.replace("$?", &format!("${}", params.len())));
        };
        if let Some(ns) = &listing.namespace {
            bind(&mut clauses, "t.namespace = $?", Box::new(ns.clone()));
        }
        if let Some(state) = listing.state {
            bind(&mut clauses, "t.state = $?", Box::new(state.as_str().to_string()));
        }
        if let Some((ns, name)) = &listing.workflow {
            bind(&mut clauses, "t.namespace = $?", Box::new(ns.clone()));
            bind(&mut clauses, "t.name = $?", Box::new(name.clone()));
        }
        if let Some(since) = listing.since {
            bind(&mut clauses, "t.created_at >= $?", Box::new(since));
        }
        for term in &listing.terms {
            // Without `personal` the personal index is not read at all (its contents cannot
            // be timed).
            let template = if listing.personal {
                "t.id IN (SELECT st.task_id FROM search_terms st WHERE st.term = $?)"
            } else {
                "t.id IN (SELECT st.task_id FROM search_terms st WHERE st.term = $? AND NOT st.personal)"
            };
            bind(&mut clauses, template, Box::new(term.clone()));
        }
        let full = !listing.headers_only;
        let page = limit.clamp(1, 500);
        let cursor_at = params.len() + 1;
        let mut sql = format!(
            "SELECT {} FROM tasks t WHERE t.id < ${cursor_at}",
            if full { FULL } else { LIGHT }
        );
        for c in &clauses {
            sql.push_str(" AND ");
            sql.push_str(c);
        }
        sql.push_str(&format!(" ORDER BY t.id DESC LIMIT {page}"));
        // Past every UUID: the first page starts at the newest task.
        let mut before = listing.before.clone().unwrap_or_else(|| "\u{10FFFF}".to_string());
        let mut out = Vec::new();
        loop {
            let mut args: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            args.push(&before);
            let client = self.client().await?;
            let statement = client.prepare_cached(&sql).await.map_err(backend)?;
            let rows = client.query(&statement, &args).await.map_err(backend)?;
            drop(client);
            let Some(last) = rows.last() else { break };
            let next: String = col(last, 0)?;
            for row in &rows {
                let Some(task) = readable(row_task(row, full))? else {
                    continue;
                };
                // The permission is judged on the header, as it is for sled.
                let admitted = if full {
                    let mut light = task.clone();
                    light.steps.clear();
                    light.context = Value::Null;
                    accept(&light)
                } else {
                    accept(&task)
                };
                if admitted {
                    out.push(task);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if rows.len() < page {
                break;
            }
            before = next;
        }
        Ok(out)
    }

    async fn count(&self, state: TaskState) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT count(*) FROM tasks WHERE state = $1", &[&state.as_str()])
            .await
            .map_err(backend)?;
        Ok(u64::try_from(col::<i64>(&row, 0)?).unwrap_or(0))
    }

    async fn active_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let sql =
            format!("SELECT {FULL} FROM tasks t WHERE t.state IN ('pending', 'in_progress') ORDER BY t.id");
        self.tasks_of(&sql, &[], true).await
    }

    async fn waiting_for_decision(&self) -> Result<Vec<Waiting>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT task_id, name FROM steps WHERE state = 'awaiting_approval' ORDER BY task_id, name",
                &[],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(Waiting {
                    task_id: col(r, 0)?,
                    step: col(r, 1)?,
                })
            })
            .collect()
    }

    async fn transitions(&self, task_id: &str) -> Result<Vec<Transition>, StoreError> {
        if unstorable(task_id) {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT seq, body FROM transitions WHERE task_id = $1 ORDER BY seq",
                &[&task_id],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                decode(
                    &format!("{task_id} transition {}", col::<i64>(r, 0)?),
                    &col::<String>(r, 1)?,
                )
            })
            .collect()
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT seq, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .await
            .map_err(backend)?;
        let rows = client
            .query(&statement, &[&after, &small(limit)])
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| decode(&format!("event {}", col::<i64>(r, 0)?), &col::<String>(r, 1)?))
            .collect()
    }

    async fn last_event_seq(&self) -> Result<u64, StoreError> {
        self.meta_number("last_event_seq").await
    }

    async fn oldest_task_id(&self) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT min(id) FROM tasks", &[])
            .await
            .map_err(backend)?;
        col(&row, 0)
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        self.meta_number("last_seq").await
    }

    async fn finished_before(&self, before: Timestamp, limit: usize) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT t.id FROM tasks t WHERE {FINISHED} AND t.updated_at < $1 ORDER BY t.updated_at, t.id LIMIT $2"),
                &[&before, &small(limit)],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    async fn finished_beyond(&self, keep: usize, limit: usize) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT t.id FROM tasks t WHERE {FINISHED} ORDER BY t.updated_at DESC, t.id DESC OFFSET $1 LIMIT $2"
                ),
                &[&small(keep), &small(limit)],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    async fn remove(&self, ids: &[String], events_before: Timestamp) -> Result<usize, StoreError> {
        let ids: Vec<&String> = ids.iter().filter(|id| !unstorable(id)).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        // Only tasks still finished (one retried since it was chosen is kept), locked.
        let rows = tx
            .query(
                &format!("SELECT t.id FROM tasks t WHERE t.id = ANY($1) AND {FINISHED} FOR UPDATE"),
                &[&ids],
            )
            .await
            .map_err(backend)?;
        let gone: Vec<String> = rows.iter().map(|r| col(r, 0)).collect::<Result<_, _>>()?;
        if !gone.is_empty() {
            for table in ["steps", "transitions", "search_terms", "events", "task_owners"] {
                tx.execute(&format!("DELETE FROM {table} WHERE task_id = ANY($1)"), &[&gone])
                    .await
                    .map_err(backend)?;
            }
            tx.execute("DELETE FROM tasks WHERE id = ANY($1)", &[&gone])
                .await
                .map_err(backend)?;
        }
        // Events are notifications (the log keeps the history): those older than the cutoff go.
        tx.execute("DELETE FROM events WHERE at < $1", &[&events_before])
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(gone.len())
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.put_meta("health_probe", &chrono::Utc::now().timestamp_millis().to_string())
            .await
    }

    fn durability(&self) -> Durability {
        self.durability
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every commit is durable when it returns (or, relaxed, within PostgreSQL's WAL writer
        // delay); only the services' records need writing out.
        self.flush_services()
    }

    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<Vec<AuditEntry>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let written = Self::journal(&tx, records, true).await?;
        tx.commit().await.map_err(backend)?;
        Ok(written)
    }

    async fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<Stored>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT seq, body FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &small(limit)],
            )
            .await
            .map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = col(row, 0)?;
            let body: String = col(row, 1)?;
            out.push(
                serde_json::from_str::<AuditEntry>(&body)
                    .map_err(|e| (u64::try_from(seq).unwrap_or(0), e.to_string())),
            );
        }
        Ok(out)
    }

    async fn audit_head(&self) -> Result<(u64, String), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let head = Self::head_in(&tx).await?;
        tx.commit().await.map_err(backend)?;
        Ok(head)
    }

    async fn audit_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        match self.meta("audit_checkpoint").await? {
            Some(text) => Ok(Some(decode("audit_checkpoint", &text)?)),
            None => Ok(None),
        }
    }

    async fn put_audit_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.put_meta("audit_checkpoint", &encode("audit checkpoint", checkpoint)?)
            .await
    }

    async fn catalog_digests(&self) -> Result<BTreeMap<String, String>, StoreError> {
        match self.meta("catalog_digests").await? {
            Some(text) => decode("catalog_digests", &text),
            None => Ok(Default::default()),
        }
    }

    async fn put_catalog_digests(&self, digests: &BTreeMap<String, String>) -> Result<(), StoreError> {
        self.put_meta("catalog_digests", &encode("catalog digests", digests)?)
            .await
    }

    async fn subject(&self, id: &str) -> Result<Option<crate::privacy::SubjectRecord>, StoreError> {
        if unstorable(id) {
            return Ok(None);
        }
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT body FROM subjects WHERE id = $1", &[&id])
            .await
            .map_err(backend)?;
        row.map(|r| decode(id, &col::<String>(&r, 0)?)).transpose()
    }

    async fn subject_by_alias(&self, alias: &str) -> Result<Option<String>, StoreError> {
        if unstorable(alias) {
            return Ok(None);
        }
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT subject_id FROM subject_aliases WHERE alias = $1",
                &[&alias],
            )
            .await
            .map_err(backend)?;
        row.map(|r| col(&r, 0)).transpose()
    }

    async fn put_subject(
        &self,
        record: &crate::privacy::SubjectRecord,
        aliases: &[String],
        tasks: &[String],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute(
            "INSERT INTO subjects (id, has_key, body) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET has_key = excluded.has_key, body = excluded.body",
            &[
                &record.id,
                &record.wrapped_key.is_some(),
                &encode("subject", record)?,
            ],
        )
        .await
        .map_err(backend)?;
        if !aliases.is_empty() {
            tx.execute(
                "INSERT INTO subject_aliases (alias, subject_id) SELECT a, $2 FROM unnest($1::text[]) AS a \
                 ON CONFLICT (alias) DO UPDATE SET subject_id = excluded.subject_id",
                &[&aliases, &record.id],
            )
            .await
            .map_err(backend)?;
        }
        if !tasks.is_empty() {
            tx.execute(
                "INSERT INTO subject_tasks (subject_id, task_id) SELECT $2, t FROM unnest($1::text[]) AS t \
                 ON CONFLICT DO NOTHING",
                &[&tasks, &record.id],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn remove_subject_aliases(&self, id: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM subject_aliases WHERE subject_id = $1", &[&id])
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn subject_tasks(&self, id: &str) -> Result<Vec<String>, StoreError> {
        if unstorable(id) {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT task_id FROM subject_tasks WHERE subject_id = $1 ORDER BY task_id",
                &[&id],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    async fn first_subject(&self) -> Result<Option<crate::privacy::SubjectRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, body FROM subjects ORDER BY has_key DESC, id LIMIT 1",
                &[],
            )
            .await
            .map_err(backend)?;
        row.map(|r| decode(&col::<String>(&r, 0)?, &col::<String>(&r, 1)?))
            .transpose()
    }
}

/// Raises the number `meta[key]` to at least `value`, inside `tx`.
async fn raise_meta(tx: &Transaction<'_>, key: &str, value: i64) -> Result<(), StoreError> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO meta (key, value) VALUES ($1, $2::bigint::text) ON CONFLICT (key) \
             DO UPDATE SET value = GREATEST(meta.value::bigint, excluded.value::bigint)::text",
        )
        .await
        .map_err(backend)?;
    tx.execute(&statement, &[&key, &value]).await.map_err(backend)?;
    Ok(())
}
