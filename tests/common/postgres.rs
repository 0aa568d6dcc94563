//! A real PostgreSQL for the tests: `TASKDECK_TEST_POSTGRES` holds a URL (`.ci/postgres.sh`
//! makes a database and prints one; `.ci/run` exports it). Each store gets a schema of its
//! own, so tests run in parallel on one database. Without the variable the PostgreSQL tests
//! say so and pass, unless `TASKDECK_REQUIRE_POSTGRES=1` (set by CI), which makes its absence
//! a failure: CI never silently skips them.
#![allow(dead_code)]

use std::sync::Arc;
use taskdeck::store::{Durability, PgStore, PgTarget, Store};

/// The test database's URL, or `None` (with a note on stderr) when there is none.
pub fn url(test: &str) -> Option<String> {
    match std::env::var("TASKDECK_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_string()),
        _ => {
            assert!(
                std::env::var("TASKDECK_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "{test}: TASKDECK_REQUIRE_POSTGRES=1 but TASKDECK_TEST_POSTGRES names no database"
            );
            eprintln!("{test}: skipped, no PostgreSQL (set TASKDECK_TEST_POSTGRES; see .ci/postgres.sh)");
            None
        }
    }
}

/// A target in a fresh schema of the test database.
pub fn fresh_target(url: &str) -> PgTarget {
    let schema = format!("test_{}", uuid::Uuid::now_v7().simple());
    PgTarget::parse(url)
        .expect("TASKDECK_TEST_POSTGRES is a PostgreSQL URL")
        .with_schema(&schema)
}

/// A plain session on the test database, for looking at (or tampering with) a store's tables.
pub async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the test database answers");
    tokio::spawn(connection);
    client
}

/// A new, empty store in a schema of its own (not an engine: no heartbeat, no leases).
pub async fn fresh_store(url: &str) -> (Arc<dyn Store>, PgTarget) {
    let target = fresh_target(url);
    let store = PgStore::open_target(&target, Durability::Immediate, "test", false)
        .await
        .expect("the test database opens");
    (Arc::new(store), target)
}

/// A PostgreSQL store that waits synchronously, for engine tests on tokio's paused clock.
///
/// A paused clock jumps to the next timer whenever its runtime has nothing ready to run, and a
/// task waiting for the database's answer is not ready: over a socket, a 300 s approval
/// timeout would fire while a commit is on the wire. sled never waits on anything but the
/// disk, so with it virtual time only moves when the engine waits. This wrapper gives the
/// real PostgreSQL store the same property: each call runs to completion on a runtime of its
/// own (where the connections live) while the caller's thread blocks, so virtual time stands
/// still during it. Nothing is faked: every call is the real store's, over a real socket.
pub struct Synchronous {
    inner: Arc<dyn Store>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Synchronous {
    fn drop(&mut self) {
        // Dropped on the test's runtime, where a blocking shutdown is not allowed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Synchronous {
    /// A fresh store in a schema of its own on the database at `url`.
    pub fn fresh(url: &str) -> Arc<dyn Store> {
        let target = fresh_target(url);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let inner = std::thread::scope(|s| {
            s.spawn(|| {
                runtime.block_on(PgStore::open_target(
                    &target,
                    Durability::Immediate,
                    "test",
                    false,
                ))
            })
            .join()
            .unwrap()
        })
        .expect("the test database opens");
        Arc::new(Synchronous {
            inner: Arc::new(inner),
            runtime: Some(runtime),
        })
    }

    fn run<T: Send>(&self, work: impl std::future::Future<Output = T> + Send) -> T {
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the store");
        std::thread::scope(|s| s.spawn(|| runtime.block_on(work)).join().unwrap())
    }
}

use taskdeck::audit::{verify::Stored, AuditEntry, AuditRecord, Checkpoint};
use taskdeck::model::{Event, Task, TaskState, Timestamp, Transition};
use taskdeck::privacy::SubjectRecord;
use taskdeck::store::{Accept, Listing, StoreError, TaskWrite, Waiting};

#[async_trait::async_trait]
impl Store for Synchronous {
    async fn commit(
        &self,
        tasks: &[TaskWrite<'_>],
        transitions: &[Transition],
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.run(self.inner.commit(tasks, transitions, events))
    }
    async fn task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        self.run(self.inner.task(id))
    }
    async fn find_tasks(
        &self,
        text: &str,
        accept: &Accept<'_>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        self.run(self.inner.find_tasks(text, accept, limit))
    }
    async fn task_by_origin(&self, key: &str) -> Result<Option<Task>, StoreError> {
        self.run(self.inner.task_by_origin(key))
    }
    async fn list(
        &self,
        listing: &Listing,
        accept: &Accept<'_>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        self.run(self.inner.list(listing, accept, limit))
    }
    async fn count(&self, state: TaskState) -> Result<u64, StoreError> {
        self.run(self.inner.count(state))
    }
    async fn active_tasks(&self) -> Result<Vec<Task>, StoreError> {
        self.run(self.inner.active_tasks())
    }
    async fn waiting_for_decision(&self) -> Result<Vec<Waiting>, StoreError> {
        self.run(self.inner.waiting_for_decision())
    }
    async fn transitions(&self, task_id: &str) -> Result<Vec<Transition>, StoreError> {
        self.run(self.inner.transitions(task_id))
    }
    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.run(self.inner.events_after(after, limit))
    }
    async fn last_event_seq(&self) -> Result<u64, StoreError> {
        self.run(self.inner.last_event_seq())
    }
    async fn oldest_task_id(&self) -> Result<Option<String>, StoreError> {
        self.run(self.inner.oldest_task_id())
    }
    async fn last_seq(&self) -> Result<u64, StoreError> {
        self.run(self.inner.last_seq())
    }
    async fn finished_before(&self, before: Timestamp, limit: usize) -> Result<Vec<String>, StoreError> {
        self.run(self.inner.finished_before(before, limit))
    }
    async fn finished_beyond(&self, keep: usize, limit: usize) -> Result<Vec<String>, StoreError> {
        self.run(self.inner.finished_beyond(keep, limit))
    }
    async fn remove(&self, ids: &[String], events_before: Timestamp) -> Result<usize, StoreError> {
        self.run(self.inner.remove(ids, events_before))
    }
    async fn check_writable(&self) -> Result<(), StoreError> {
        self.run(self.inner.check_writable())
    }
    fn durability(&self) -> Durability {
        self.inner.durability()
    }
    async fn flush(&self) -> Result<(), StoreError> {
        self.run(self.inner.flush())
    }
    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<Vec<AuditEntry>, StoreError> {
        self.run(self.inner.append_audit(records))
    }
    async fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<Stored>, StoreError> {
        self.run(self.inner.audit_after(after, limit))
    }
    async fn audit_head(&self) -> Result<(u64, String), StoreError> {
        self.run(self.inner.audit_head())
    }
    async fn audit_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.run(self.inner.audit_checkpoint())
    }
    async fn catalog_digests(&self) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        self.run(self.inner.catalog_digests())
    }
    async fn put_catalog_digests(
        &self,
        digests: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.run(self.inner.put_catalog_digests(digests))
    }
    async fn subject(&self, id: &str) -> Result<Option<SubjectRecord>, StoreError> {
        self.run(self.inner.subject(id))
    }
    async fn subject_by_alias(&self, alias: &str) -> Result<Option<String>, StoreError> {
        self.run(self.inner.subject_by_alias(alias))
    }
    async fn put_subject(
        &self,
        record: &SubjectRecord,
        aliases: &[String],
        tasks: &[String],
    ) -> Result<(), StoreError> {
        self.run(self.inner.put_subject(record, aliases, tasks))
    }
    async fn remove_subject_aliases(&self, id: &str) -> Result<(), StoreError> {
        self.run(self.inner.remove_subject_aliases(id))
    }
    async fn subject_tasks(&self, id: &str) -> Result<Vec<String>, StoreError> {
        self.run(self.inner.subject_tasks(id))
    }
    async fn first_subject(&self) -> Result<Option<SubjectRecord>, StoreError> {
        self.run(self.inner.first_subject())
    }
    async fn put_audit_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.run(self.inner.put_audit_checkpoint(checkpoint))
    }
    async fn import(
        &self,
        tasks: &[Task],
        transitions: &[Transition],
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.run(self.inner.import(tasks, transitions, events))
    }
    async fn key_check(&self, proposed: Option<&str>) -> Result<Option<String>, StoreError> {
        self.run(self.inner.key_check(proposed))
    }
    async fn import_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.run(self.inner.import_audit(entries))
    }
    async fn subjects(&self) -> Result<Vec<taskdeck::store::SubjectCopy>, StoreError> {
        self.run(self.inner.subjects())
    }
}
