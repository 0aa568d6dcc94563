//! The PostgreSQL schema, as embedded, numbered migrations. `migrate` runs the ones a database
//! lacks, each in its own transaction under an advisory lock (two processes starting at once
//! migrate once), and refuses a database whose schema is newer than this build knows: an older
//! binary must never write to tables it does not understand.

use crate::store::StoreError;

/// Migrations in order: `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
/// Released migrations are never edited; a change is a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the store (see the module documentation of `store::postgres`).
    r#"
    CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
    -- Ids (UUIDv7) compare byte by byte whatever the database's collation: listings page and
    -- sort by them (newest first), and a short id is a suffix.
    CREATE TABLE tasks (
        id text COLLATE "C" PRIMARY KEY,
        namespace text NOT NULL,
        name text NOT NULL,
        state text NOT NULL,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        header text NOT NULL,
        context text,
        plan text,
        origin_key text UNIQUE,
        terms text NOT NULL DEFAULT '[]'
    );
    CREATE INDEX tasks_by_state ON tasks (state, id);
    CREATE INDEX tasks_by_namespace ON tasks (namespace, id);
    CREATE INDEX tasks_by_namespace_state ON tasks (namespace, state, id);
    CREATE INDEX tasks_by_workflow ON tasks (namespace, name, id);
    CREATE INDEX tasks_by_prefix ON tasks (id text_pattern_ops);
    CREATE INDEX tasks_by_short_id ON tasks (reverse(id) text_pattern_ops);
    CREATE INDEX tasks_finished ON tasks (updated_at, id) WHERE state NOT IN ('pending', 'in_progress');
    CREATE INDEX tasks_active ON tasks (id) WHERE state IN ('pending', 'in_progress');
    CREATE TABLE steps (
        task_id text COLLATE "C" NOT NULL,
        name text NOT NULL,
        state text NOT NULL,
        status text NOT NULL,
        PRIMARY KEY (task_id, name)
    );
    CREATE INDEX steps_awaiting_decision ON steps (task_id, name) WHERE state = 'awaiting_approval';
    CREATE TABLE transitions (
        task_id text NOT NULL,
        seq bigint NOT NULL,
        body text NOT NULL,
        PRIMARY KEY (task_id, seq)
    );
    CREATE TABLE events (
        seq bigint PRIMARY KEY,
        at bigint NOT NULL,
        task_id text NOT NULL,
        body text NOT NULL
    );
    CREATE INDEX events_by_time ON events (at);
    CREATE TABLE search_terms (
        term text NOT NULL,
        personal boolean NOT NULL,
        task_id text NOT NULL,
        PRIMARY KEY (term, personal, task_id)
    );
    CREATE INDEX search_terms_by_task ON search_terms (task_id);
    CREATE TABLE audit (seq bigint PRIMARY KEY, body text NOT NULL);
    CREATE TABLE subjects (id text PRIMARY KEY, has_key boolean NOT NULL, body text NOT NULL);
    CREATE TABLE subject_aliases (alias text PRIMARY KEY, subject_id text NOT NULL);
    CREATE INDEX subject_aliases_by_subject ON subject_aliases (subject_id);
    CREATE TABLE subject_tasks (
        subject_id text NOT NULL,
        task_id text NOT NULL,
        PRIMARY KEY (subject_id, task_id)
    );
    "#,
    // 2: engines sharing the store (`store::postgres::leases`): who is alive, and which
    // engine drives each unfinished task, under which lease (the fencing token).
    r#"
    CREATE TABLE engines (
        id text PRIMARY KEY,
        name text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        heartbeat_at timestamptz NOT NULL DEFAULT now(),
        -- Each engine is judged dead by the lease it declared (engines may differ).
        lease_seconds double precision NOT NULL
    );
    CREATE TABLE task_owners (
        task_id text PRIMARY KEY,
        engine text NOT NULL,
        lease bigint NOT NULL,
        wanted_by text,
        handed boolean NOT NULL DEFAULT false
    );
    CREATE INDEX task_owners_by_engine ON task_owners (engine);
    "#,
    // 3: the simulated services' records (`services::table`), shared by every engine of the
    // store as the remote systems they stand for would be. `rev` orders changes, so each
    // engine's cache reads only what changed; a forgotten row is kept as `value` NULL.
    r#"
    CREATE TABLE service_rows (
        tbl text NOT NULL,
        key text NOT NULL,
        pos bigint NOT NULL,
        value text,
        writer text,
        rev bigint NOT NULL,
        PRIMARY KEY (tbl, key)
    );
    CREATE INDEX service_rows_by_rev ON service_rows (tbl, rev);
    CREATE TABLE service_tables (
        tbl text PRIMARY KEY,
        next bigint NOT NULL,
        rev bigint NOT NULL
    );
    "#,
];

/// The schema version this build writes.
pub fn latest() -> i32 {
    MIGRATIONS.len() as i32
}

/// Brings the schema of the connection's `search_path` up to `latest()`; returns the version
/// found before. Errors: a schema newer than this build (`StoreError::Open`), or the database's.
pub(super) async fn migrate(client: &mut tokio_postgres::Client, place: &str) -> Result<i32, StoreError> {
    let tx = client.transaction().await.map_err(super::backend)?;
    // One migrator per schema at a time; the others wait here and find it done.
    tx.execute(
        "SELECT pg_advisory_xact_lock(7421, hashtext(current_schema()))",
        &[],
    )
    .await
    .map_err(super::backend)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS taskdeck_schema (version integer NOT NULL)")
        .await
        .map_err(super::backend)?;
    let found: i32 = match tx
        .query_opt("SELECT version FROM taskdeck_schema", &[])
        .await
        .map_err(super::backend)?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO taskdeck_schema (version) VALUES (0)", &[])
                .await
                .map_err(super::backend)?;
            0
        }
    };
    if found > latest() {
        return Err(StoreError::Open {
            path: place.to_string(),
            cause: format!(
                "its schema is version {found}, newer than this taskdeck knows (version {})",
                latest()
            ),
            advice: "run the taskdeck release that migrated it (or a newer one); an older one must not write to it",
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError::Backend(format!(
                "migration {} of the PostgreSQL schema failed: {}",
                i + 1,
                super::pg_message(&e)
            ))
        })?;
    }
    if found < latest() {
        tx.execute("UPDATE taskdeck_schema SET version = $1", &[&latest()])
            .await
            .map_err(super::backend)?;
    }
    tx.commit().await.map_err(super::backend)?;
    Ok(found)
}
