//! `store::copy` between the two backends, both real: a sled store filled by the engine (sealed
//! personal data, an approved refund and its delegated child, orders), copied into PostgreSQL,
//! run on there, and copied back; a broken journal is never copied; a store is never copied
//! over another.

mod common;

use common::postgres as pg;
use common::refunds::submitted_and_approved;
use serde_json::json;
use std::sync::Arc;
use taskdeck::audit::verify::verify_store;
use taskdeck::engine::EngineConfig;
use taskdeck::model::TaskState;
use taskdeck::services::Services;
use taskdeck::store::{all_tasks, copy::copy, Durability, PgStore, SledStore, Store};

fn config(data: &std::path::Path) -> EngineConfig {
    EngineConfig {
        privacy: Some(taskdeck::privacy::KeySource::DataDir(data.to_path_buf())),
        ..common::config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_copies_into_postgresql_runs_there_and_copies_back() {
    let Some(url) = pg::url("a_store_copies_into_postgresql_runs_there_and_copies_back") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let services = Arc::new(Services::new(true));
    let sled: Arc<dyn Store> = Arc::new(SledStore::open(data.path(), Durability::Immediate, "test").unwrap());
    let h = common::start_blog_with(services.clone(), sled.clone(), config(data.path())).await;
    let refund = submitted_and_approved(&h, 12000).await;
    for _ in 0..3 {
        h.run(
            "ecommerce/process_order",
            common::sample("process_order", json!({})),
        )
        .await;
    }
    h.engine.shutdown(std::time::Duration::ZERO).await;
    drop(h);
    let tasks = all_tasks(&*sled).await.unwrap();
    assert_eq!(tasks.len(), 5, "the refund, its payments child and three orders");
    assert!(tasks.iter().all(|t| t.state == TaskState::Complete));
    let (entries, head) = sled.audit_head().await.unwrap();

    let (postgres, target) = pg::fresh_store(&url).await;
    let mut lines = Vec::new();
    let report = copy(&*sled, &*postgres, None, &mut |l| lines.push(l))
        .await
        .unwrap();
    assert_eq!(report.tasks, 5);
    assert_eq!(report.by_state.get("complete"), Some(&5));
    assert_eq!(
        report.subjects, 1,
        "the refund's customer, with their wrapped key"
    );
    assert_eq!(
        (report.audit.entries, report.audit.head_hash.as_str()),
        (entries, head.as_str())
    );
    assert!(report.transitions > 40 && report.events > 40, "{report:?}");
    assert!(!lines.is_empty());
    for t in &tasks {
        assert_eq!(postgres.task(&t.id).await.unwrap().as_ref(), Some(t));
    }

    // Copying onto a store that holds anything is refused, and changes nothing.
    let again = copy(&*sled, &*postgres, None, &mut |_| {}).await.unwrap_err();
    assert!(again.to_string().contains("already holds a store"), "{again}");
    assert_eq!(postgres.audit_head().await.unwrap().0, entries);

    // The engine carries on over the copy: sealed values still open with the same master key.
    let h = common::start_blog_with(services.clone(), postgres.clone(), config(data.path())).await;
    let more = h
        .run(
            "ecommerce/process_order",
            common::sample("process_order", json!({})),
        )
        .await;
    assert_eq!(more.state, TaskState::Complete);
    let (read, _) = h
        .engine
        .query()
        .task(&common::refunds::manager(), &refund.id)
        .await
        .unwrap();
    assert_eq!(read.context["customer_email"], json!("customer@example.com"));
    h.engine.shutdown(std::time::Duration::ZERO).await;
    drop(h);
    let on_postgres = verify_store(&*postgres, None).await.unwrap().unwrap();
    assert!(
        on_postgres.entries > entries,
        "the engine on PostgreSQL journals after the copied entries"
    );

    // And back into a new sled store.
    let back_dir = tempfile::tempdir().unwrap();
    let back: Arc<dyn Store> =
        Arc::new(SledStore::open(back_dir.path(), Durability::Immediate, "test").unwrap());
    let report = copy(&*postgres, &*back, None, &mut |_| {}).await.unwrap();
    assert_eq!(report.tasks, 6);
    assert_eq!(report.audit, on_postgres);
    assert_eq!(all_tasks(&*back).await.unwrap().len(), 6);

    // A journal someone edited is not copied anywhere.
    let client = pg::sql(&url).await;
    client
        .batch_execute(&format!(
            "UPDATE {}.audit SET body = replace(body, '\"actor\":\"jane\"', '\"actor\":\"mallory\"') WHERE seq IN (SELECT seq FROM {0}.audit WHERE body LIKE '%\"actor\":\"jane\"%' ORDER BY seq LIMIT 1)",
            target.schema
        ))
        .await
        .unwrap();
    let (empty, _) = pg::fresh_store(&url).await;
    let refused = copy(&*postgres, &*empty, None, &mut |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("journal is broken at entry") && refused.contains("Edited"),
        "{refused}"
    );
    assert!(
        empty.oldest_task_id().await.unwrap().is_none(),
        "nothing was copied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_marks_the_destination_until_the_copy_is_verified() {
    let Some(url) = pg::url("the_command_marks_the_destination_until_the_copy_is_verified") else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_taskdeck");
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str], store: &str| {
        std::process::Command::new(bin)
            .arg("--data")
            .arg(data.path())
            .args(args)
            .env("TASKDECK_STORE", store)
            .output()
            .unwrap()
    };
    let out = run(
        &[
            "submit",
            "ecommerce/process_order",
            "--context-file",
            &format!("{}/samples/process_order.json", env!("CARGO_MANIFEST_DIR")),
            "--wait",
        ],
        "",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Through the binary, into a fresh schema: verified, and engines may open it afterwards.
    let target = pg::fresh_target(&url);
    let to = format!("{url}?schema={}", target.schema);
    let out = run(
        &[
            "store",
            "copy",
            "--from",
            data.path().to_str().unwrap(),
            "--to",
            &to,
        ],
        "",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("copied and verified: 1 tasks (1 complete)"));
    let out = run(&["tasks", "--json"], &to);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // While a copy is filling a store, no engine starts on it.
    let store = PgStore::open_target(&target, Durability::Immediate, "test", false)
        .await
        .unwrap();
    let not_empty = store.begin_copy("from a test").await.unwrap_err().to_string();
    assert!(not_empty.contains("already holds tasks"), "{not_empty}");
    assert_eq!(
        store.copying().await.unwrap(),
        None,
        "a refused copy marks nothing"
    );
    let target = pg::fresh_target(&url);
    let store = PgStore::open_target(&target, Durability::Immediate, "test", false)
        .await
        .unwrap();
    store.begin_copy("from a test").await.unwrap();
    let second = store.begin_copy("from another").await.unwrap_err().to_string();
    assert!(
        second.contains("another `taskdeck store copy` is filling it (from a test)"),
        "{second}"
    );
    let refused = PgStore::open_target(&target, Durability::Immediate, "engine", true)
        .await
        .err()
        .expect("an engine is refused")
        .to_string();
    assert!(
        refused.contains("`taskdeck store copy` is filling it (from a test)"),
        "{refused}"
    );
    store.end_copy().await.unwrap();
    PgStore::open_target(&target, Durability::Immediate, "engine", true)
        .await
        .unwrap();
}
