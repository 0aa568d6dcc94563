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

/// A new, empty store in a schema of its own (not holding the engine lock).
pub async fn fresh_store(url: &str) -> (Arc<dyn Store>, PgTarget) {
    let target = fresh_target(url);
    let store = PgStore::open_target(&target, Durability::Immediate, "test", false)
        .await
        .expect("the test database opens");
    (Arc::new(store), target)
}
