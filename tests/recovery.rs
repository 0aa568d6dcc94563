//! Durability: crash recovery of a real `taskdeck run` killed with SIGKILL, resumption rules
//! checked in-process on the paused clock, and the single-process lock.

mod common;

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use taskdeck::engine::{Clock, EngineConfig};
use taskdeck::handlers::Registry;
use taskdeck::model::{StepState, TaskState};
use taskdeck::store::{Durability, SledStore, Store};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_taskdeck"))
}

fn fixtures() -> String {
    format!("{}/tests/fixtures/workflows", env!("CARGO_MANIFEST_DIR"))
}

fn taskdeck(data: &Path, args: &[&str]) -> std::process::Output {
    bin()
        .arg("--data")
        .arg(data)
        .arg("--workflows")
        .arg(fixtures())
        .args(args)
        .output()
        .unwrap()
}

fn show(data: &Path, id: &str) -> Value {
    let out = taskdeck(data, &["show", id, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn sigkill_mid_workflow_then_restart_loses_nothing_and_reruns_nothing_completed() {
    let data = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..3)
        .map(|_| {
            let out = taskdeck(data.path(), &["submit", "crash/chain"]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .collect();

    // Run the engine and kill it, without warning, once some steps have completed.
    let mut child = bin()
        .arg("--data")
        .arg(data.path())
        .arg("--workflows")
        .arg(fixtures())
        .arg("run")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut completed = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if line.unwrap().contains("step.completed") {
            completed += 1;
            if completed == 7 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let before: BTreeMap<String, Value> = ids.iter().map(|id| (id.clone(), show(data.path(), id))).collect();
    let done_before: BTreeSet<(String, String)> = before
        .iter()
        .flat_map(|(id, t)| {
            t["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["state"] == "complete")
                .map(move |s| (id.clone(), s["name"].as_str().unwrap().to_string()))
        })
        .collect();
    assert!(
        done_before.len() >= 7,
        "what was seen completed is stored: {done_before:?}"
    );
    assert!(
        before.values().any(|t| t["state"] != "complete"),
        "the kill landed mid-workflow"
    );

    let out = taskdeck(data.path(), &["run", "--until-idle"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    for id in &ids {
        let after = show(data.path(), id);
        assert_eq!(after["state"], "complete", "{id}");
        let old = before[id]["transitions"].as_array().unwrap();
        let new = after["transitions"].as_array().unwrap();
        // No transition is lost: the log before the crash is a prefix of the log after.
        assert_eq!(&new[..old.len()], &old[..], "{id}");
        for t in &new[old.len()..] {
            let step = t["subject"]["step"].as_str();
            if let Some(step) = step {
                assert!(
                    !done_before.contains(&(id.clone(), step.to_string())),
                    "step {step} had completed before the crash but moved again: {t}"
                );
            }
        }
        // Every step completed exactly once.
        for step in after["steps"].as_array().unwrap() {
            let name = step["name"].as_str().unwrap();
            let completions = new
                .iter()
                .filter(|t| t["subject"]["step"] == name && t["to"] == "complete")
                .count();
            assert_eq!(completions, 1, "{id} {name}");
        }
        // The log replays to the snapshot: each transition starts where the previous ended.
        let mut state: BTreeMap<String, String> = BTreeMap::new();
        for t in new {
            let key = t["subject"]["step"].as_str().unwrap_or("(task)").to_string();
            if let Some(prev) = state.get(&key) {
                assert_eq!(t["from"].as_str(), Some(prev.as_str()), "{id} {key}: {t}");
            }
            state.insert(key, t["to"].as_str().unwrap().to_string());
        }
        for step in after["steps"].as_array().unwrap() {
            assert_eq!(state[step["name"].as_str().unwrap()], "complete");
        }
    }
}

#[test]
fn a_second_process_on_the_same_data_directory_gets_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let _held = SledStore::open(data.path(), Durability::Immediate, "test").unwrap();
    let out = taskdeck(data.path(), &["tasks"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is in use by another taskdeck process"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

const FORK: &str = r#"
namespace: t
name: fork
version: 1.0.0
steps:
  - { name: a, handler: simulate }
  - { name: b, handler: simulate, depends_on: [a] }
  - { name: c, handler: simulate, depends_on: [a] }
  - { name: d, handler: simulate, depends_on: [b, c] }
"#;

#[tokio::test(start_paused = true)]
async fn restart_reruns_interrupted_steps_with_the_same_key_and_keeps_retry_deadlines() {
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary(Durability::Immediate).unwrap());
    // Create the task without running it, then shape its stored state as a crash left it.
    let admin = common::start_on(
        store.clone(),
        &[FORK],
        Registry::builtin(),
        EngineConfig {
            dispatch: false,
            ..common::config()
        },
    );
    let task = admin.submit("t/fork", json!({})).await;
    admin.engine.shutdown(std::time::Duration::ZERO).await;

    let mut crashed = store.task(&task.id).unwrap().unwrap();
    let deadline = Clock::new().now() + 5_000;
    crashed.state = TaskState::InProgress;
    crashed.steps[0].state = StepState::Complete;
    crashed.steps[0].attempts = 1;
    crashed.steps[0].results = Some(json!({ "from": "before the crash" }));
    crashed.steps[1].state = StepState::InProgress;
    crashed.steps[1].attempts = 1;
    crashed.steps[2].state = StepState::WaitingForRetry;
    crashed.steps[2].attempts = 1;
    crashed.steps[2].next_attempt_at = Some(deadline);
    store.commit(&[&crashed], &[]).unwrap();

    let mut h = common::start_on(store.clone(), &[FORK], Registry::builtin(), common::config());
    // Resumption needs no prompt: wait for the task to complete without sending a command.
    let mut events = h.engine.subscribe();
    while events.recv().await.unwrap().name != "task.completed" {}
    let done = store.task(&task.id).unwrap().unwrap();
    assert_eq!(done.state, TaskState::Complete);

    let a = &done.steps[0];
    assert_eq!(
        (a.attempts, a.results.clone()),
        (1, Some(json!({ "from": "before the crash" })))
    );
    let b = &done.steps[1];
    assert_eq!(b.attempts, 2, "the interrupted attempt was followed by a new one");
    let b_results = b.results.as_ref().unwrap();
    assert_eq!(b_results["idempotency_key"], json!(format!("{}/b", task.id)));
    assert_eq!(b_results["attempt"], json!(2));

    let events = h.drain();
    let recovered = events.iter().find(|e| e.name == "step.recovered").unwrap();
    assert_eq!(recovered.step.as_deref(), Some("b"));
    let b_start = events
        .iter()
        .find(|e| e.name == "step.execution_requested" && e.step.as_deref() == Some("b"))
        .unwrap();
    assert!(
        b_start.at < deadline - 4_000,
        "b re-ran at once, not when c's timer fired"
    );
    let c_start = events
        .iter()
        .find(|e| e.name == "step.execution_requested" && e.step.as_deref() == Some("c"))
        .unwrap();
    assert!(
        c_start.at >= deadline && c_start.at <= deadline + 50,
        "c waited for its stored deadline: started {} ms after it",
        c_start.at - deadline
    );
    assert_eq!(done.steps[2].attempts, 2);
}
