//! Retention: finished tasks are archived whole (task and every transition) and then removed
//! from the store; active work, and the children unfinished tasks wait on, stay. On tokio's
//! paused clock.

mod common;

use serde_json::{json, Value};
use std::time::Duration;
use taskdeck::engine::retention::Retention;
use taskdeck::engine::EngineConfig;
use taskdeck::handlers::Registry;
use taskdeck::model::TaskState;
use taskdeck::store::all_tasks;

const CHAIN: &str = r#"
namespace: keep
name: chain
version: 1.0.0
steps:
  - name: a
    handler: simulate
  - name: b
    handler: simulate
    depends_on: [a]
"#;

fn archived(dir: &std::path::Path) -> Vec<Value> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        lines.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
    }
    lines
}

#[tokio::test(start_paused = true)]
async fn old_finished_tasks_are_archived_whole_then_removed_and_recent_ones_stay() {
    let archive = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        retention: Some(Retention {
            max_age: Some(Duration::from_secs(600)),
            max_finished: None,
            archive_dir: archive.path().to_path_buf(),
            archive_cap: None,
        }),
        ..common::config()
    };
    let h = common::start(&[CHAIN], Registry::builtin(), config).await;
    let mut old = Vec::new();
    for _ in 0..4 {
        old.push(h.run("keep/chain", json!({})).await.id);
    }
    tokio::time::sleep(Duration::from_secs(11 * 60)).await;
    let recent = h.run("keep/chain", json!({})).await;
    // The next pass (every 10 s) takes what is older than 10 minutes.
    tokio::time::sleep(Duration::from_secs(15)).await;

    let left: Vec<String> = all_tasks(&*h.store)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(left, std::slice::from_ref(&recent.id));
    for id in &old {
        assert!(h.store.task(id).await.unwrap().is_none());
        assert!(
            h.store.transitions(id).await.unwrap().is_empty(),
            "the log of {id} went too"
        );
    }
    let lines = archived(archive.path());
    let mut ids: Vec<&str> = lines.iter().map(|l| l["task"]["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut want: Vec<&str> = old.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(ids, want, "each removed task archived once");
    for line in &lines {
        assert_eq!(line["task"]["state"], "complete");
        // Task pending → in_progress → complete, and two transitions per step.
        assert_eq!(line["transitions"].as_array().unwrap().len(), 7, "{line}");
        assert_eq!(line["task"]["steps"].as_array().unwrap().len(), 2);
    }
    // Events of the removed tasks went; the recent task's stayed.
    let events = h.store.events_after(0, 10_000).await.unwrap();
    assert!(events.iter().all(|e| e.task_id == recent.id), "{events:?}");
    assert!(!events.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_cap_keeps_the_most_recently_finished_and_a_dry_run_changes_nothing() {
    let archive = tempfile::tempdir().unwrap();
    let h = common::start(&[CHAIN], Registry::builtin(), common::config()).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(h.run("keep/chain", json!({})).await.id);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cap = Retention {
        max_age: None,
        max_finished: Some(2),
        archive_dir: archive.path().to_path_buf(),
        archive_cap: None,
    };
    let (report, would) = h.engine.prune(cap.clone(), true).await.unwrap();
    assert_eq!(report.removed, 0);
    let mut would_sorted = would.clone();
    would_sorted.sort();
    assert_eq!(would_sorted, ids[..3].to_vec());
    assert_eq!(
        all_tasks(&*h.store).await.unwrap().len(),
        5,
        "a dry run removes nothing"
    );
    assert!(std::fs::read_dir(archive.path()).unwrap().next().is_none());

    let (report, _) = h.engine.prune(cap, false).await.unwrap();
    assert_eq!(report.removed, 3);
    let left: Vec<String> = all_tasks(&*h.store)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(left, ids[3..].to_vec());
    assert_eq!(archived(archive.path()).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn unfinished_work_stays_whatever_its_age() {
    const GATE: &str = r#"
namespace: keep
name: gated
version: 1.0.0
steps:
  - name: wait
    handler: simulate
    handler_config:
      sleep_ms: 3600000
"#;
    let archive = tempfile::tempdir().unwrap();
    let h = common::start(&[CHAIN, GATE], Registry::builtin(), common::config()).await;
    let running = h.submit("keep/gated", json!({})).await;
    let done = h.run_one("keep/chain").await;
    tokio::time::sleep(Duration::from_secs(1200)).await;
    let policy = Retention {
        max_age: Some(Duration::from_secs(60)),
        max_finished: Some(0),
        archive_dir: archive.path().to_path_buf(),
        archive_cap: None,
    };
    let (report, _) = h.engine.prune(policy, false).await.unwrap();
    assert_eq!(report.removed, 1);
    assert!(h.store.task(&done).await.unwrap().is_none());
    let kept = h.store.task(&running.id).await.unwrap().unwrap();
    assert_eq!(kept.state, TaskState::InProgress);
}

trait RunOne {
    async fn run_one(&self, workflow: &str) -> String;
}

impl RunOne for common::Harness {
    /// Submits and waits for that task alone to finish (others may still run).
    async fn run_one(&self, workflow: &str) -> String {
        let task = self.submit(workflow, json!({})).await;
        self.engine.wait_for(&task.id).await.unwrap().id
    }
}

#[tokio::test(start_paused = true)]
async fn an_archive_that_is_no_regular_file_removes_nothing_and_never_blocks() {
    let archive = tempfile::tempdir().unwrap();
    let h = common::start(&[CHAIN], Registry::builtin(), common::config()).await;
    h.run("keep/chain", json!({})).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // A FIFO where today's archive goes: opening it must not wait for a reader.
    let day = chrono::DateTime::from_timestamp_millis(h.engine.clock().now())
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    let fifo = archive.path().join(format!("tasks-{day}.jsonl"));
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let policy = Retention {
        max_age: Some(Duration::from_secs(1)),
        max_finished: None,
        archive_dir: archive.path().to_path_buf(),
        archive_cap: None,
    };
    let err = h.engine.prune(policy, false).await.unwrap_err();
    assert!(err.to_string().contains("nothing was removed"), "{err}");
    assert_eq!(all_tasks(&*h.store).await.unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_simulated_systems_forget_what_removed_tasks_wrote() {
    // A demo runs for hours: the charges, orders and mail of tasks retention removed must go
    // too, or the simulated systems grow without bound in memory and on disk.
    let archive = tempfile::tempdir().unwrap();
    let services = std::sync::Arc::new(taskdeck::services::Services::new(false));
    let config = EngineConfig {
        retention: Some(Retention {
            max_age: None,
            max_finished: Some(2),
            archive_dir: archive.path().to_path_buf(),
            archive_cap: None,
        }),
        ..common::config()
    };
    let h = common::start_blog_with(services.clone(), common::temp_store(), config).await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let t = h
            .run(
                "ecommerce/process_order",
                common::sample("process_order", json!({})),
            )
            .await;
        assert_eq!(t.state, TaskState::Complete);
        tasks.push(t);
    }
    assert_eq!(services.payment.ledger().len(), 5);
    assert_eq!(services.email.outbox().len(), 5);
    tokio::time::sleep(Duration::from_secs(15)).await;

    let left: Vec<String> = all_tasks(&*h.store)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(left, [tasks[3].id.clone(), tasks[4].id.clone()]);
    // What the two tasks left wrote stays (their charges are still found); the rest went.
    let ledger = services.payment.ledger();
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    for (task, charge) in tasks[3..].iter().zip(&ledger) {
        let payment = task.step("process_payment").unwrap().results.clone().unwrap();
        assert_eq!(payment["payment_id"], json!(charge.payment_id));
    }
    assert_eq!(services.email.outbox().len(), 2);
    assert_eq!(services.orders.all().len(), 2);
}
