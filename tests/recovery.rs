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
use taskdeck::model::{StepState, Subject, TaskState, Transition};
use taskdeck::store::{Durability, SledStore, Store, TaskWrite};

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

/// Creates a `t/fork` task as `taskdeck submit` does (an engine that runs nothing), so a
/// test can shape its stored state as a crash left it.
async fn created_not_run(store: &Arc<dyn Store>) -> taskdeck::model::Task {
    let admin = common::start_on(
        store.clone(),
        &[FORK],
        Registry::builtin(),
        EngineConfig {
            dispatch: false,
            ..common::config()
        },
    )
    .await;
    let task = admin.submit("t/fork", json!({})).await;
    admin.engine.shutdown(std::time::Duration::ZERO).await;
    task
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
    let task = created_not_run(&store).await;

    let mut crashed = store.task(&task.id).await.unwrap().unwrap();
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
    // What the log held when the engine stopped: each change carries the step's status.
    let log: Vec<Transition> = [None, Some(0), Some(1), Some(2)]
        .into_iter()
        .enumerate()
        .map(|(n, step)| Transition {
            seq: crashed.seq + 1 + n as u64,
            task_id: task.id.clone(),
            at: Clock::new().now(),
            actor: "engine".into(),
            subject: step.map_or(Subject::Task, |i| Subject::Step(crashed.steps[i].name.clone())),
            from: None,
            to: step.map_or("in_progress".into(), |i| crashed.steps[i].state.to_string()),
            attempt: 1,
            reason: None,
            error: None,
            step: step.map(|i| Box::new(crashed.steps[i].status())),
        })
        .collect();
    crashed.seq += log.len() as u64;
    store
        .commit(
            &[TaskWrite {
                task: &crashed,
                context: None,
                before: None,
            }],
            &log,
            &[],
        )
        .await
        .unwrap();

    let mut h = common::start_on(store.clone(), &[FORK], Registry::builtin(), common::config()).await;
    // Resumption needs no prompt: wait for the task to complete without sending a command.
    let mut events = h.engine.subscribe();
    while events.recv().await.unwrap().name != "task.completed" {}
    let done = store.task(&task.id).await.unwrap().unwrap();
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

/// The step as the engine would have logged it after completing (results included).
fn completed(step: &taskdeck::model::Step, results: Value) -> taskdeck::model::Step {
    let mut s = step.clone();
    s.state = StepState::Complete;
    s.attempts = 1;
    s.results = Some(results);
    s
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_a_crash_left_behind_its_log_is_replayed_and_the_completed_step_never_reruns() {
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary(Durability::Immediate).unwrap());
    let task = created_not_run(&store).await;
    let snapshot = store.task(&task.id).await.unwrap().unwrap();

    // What 588 kill -9 cycles once produced: `a → complete` is in the log, but the crash
    // came before the task's snapshot was written.
    let mut running = snapshot.steps[0].clone();
    running.state = StepState::InProgress;
    running.attempts = 1;
    let at = Clock::new().now();
    let log = |seq: u64, from: &str, to: &str, step: taskdeck::model::Step| Transition {
        seq,
        task_id: task.id.clone(),
        at,
        actor: "engine".into(),
        subject: Subject::Step("a".into()),
        from: Some(from.into()),
        to: to.into(),
        attempt: 1,
        reason: None,
        error: None,
        step: Some(Box::new(step.status())),
    };
    let start = Transition {
        seq: snapshot.seq + 1,
        task_id: task.id.clone(),
        at,
        actor: "engine".into(),
        subject: Subject::Task,
        from: Some("pending".into()),
        to: "in_progress".into(),
        attempt: 0,
        reason: None,
        error: None,
        step: None,
    };
    let done = completed(&snapshot.steps[0], json!({ "charged": "once" }));
    store
        .commit(
            &[],
            &[
                start,
                log(snapshot.seq + 2, "pending", "in_progress", running),
                log(snapshot.seq + 3, "in_progress", "complete", done),
            ],
            &[],
        )
        .await
        .unwrap();

    // Every reader sees what the log says, before any engine runs.
    let read = store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(read.state, TaskState::InProgress);
    assert_eq!(read.steps[0].state, StepState::Complete);
    assert_eq!(read.steps[0].results, Some(json!({ "charged": "once" })));
    assert_eq!(store.active_tasks().await.unwrap().len(), 1);

    let h = common::start_on(store.clone(), &[FORK], Registry::builtin(), common::config()).await;
    h.engine.when_idle().await.unwrap();
    let after = store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(after.state, TaskState::Complete);
    assert_eq!(after.steps[0].attempts, 1, "a never ran again");
    assert_eq!(after.steps[0].results, Some(json!({ "charged": "once" })));
    let starts_of_a = store
        .transitions(&task.id)
        .await
        .unwrap()
        .iter()
        .filter(|t| t.subject == Subject::Step("a".into()) && t.to == "in_progress")
        .count();
    assert_eq!(starts_of_a, 1);
}

const SLOW_FAILING: &str = r#"
namespace: t
name: slow
version: 1.0.0
steps:
  - name: work
    handler: simulate
    retry: { limit: 3, backoff_base_ms: 1000 }
    handler_config: { sleep_ms: 10000, fail_times: 100 }
"#;

#[tokio::test(start_paused = true)]
async fn attempts_cut_short_by_a_crash_do_not_spend_the_retry_budget() {
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary(Durability::Immediate).unwrap());
    let first = common::start_on(
        store.clone(),
        &[SLOW_FAILING],
        Registry::builtin(),
        common::config(),
    )
    .await;
    let task = first.submit("t/slow", json!({})).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    first.engine.shutdown(std::time::Duration::ZERO).await; // killed mid-attempt 1
    let second = common::start_on(
        store.clone(),
        &[SLOW_FAILING],
        Registry::builtin(),
        common::config(),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    second.engine.shutdown(std::time::Duration::ZERO).await; // killed mid-attempt 2
    let killed = store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(killed.steps[0].state, StepState::InProgress);
    assert_eq!(killed.steps[0].attempts, 2);

    let last = common::start_on(
        store.clone(),
        &[SLOW_FAILING],
        Registry::builtin(),
        common::config(),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(11)).await; // attempt 3 fails
    let failed_once = store.task(&task.id).await.unwrap().unwrap();
    let step = &failed_once.steps[0];
    assert_eq!(
        step.state,
        StepState::WaitingForRetry,
        "one failure of three allowed"
    );
    assert_eq!((step.attempts, step.attempts_used()), (3, 1));
    last.engine.when_idle().await.unwrap();
    let done = store.task(&task.id).await.unwrap().unwrap();
    let step = &done.steps[0];
    assert_eq!(done.state, TaskState::Error);
    assert_eq!((step.attempts, step.attempts_used(), step.retry.limit), (5, 3, 3));
}

#[tokio::test(start_paused = true)]
async fn a_step_that_takes_the_engine_down_every_time_fails_instead_of_looping() {
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary(Durability::Immediate).unwrap());
    let first = common::start_on(
        store.clone(),
        &[SLOW_FAILING],
        Registry::builtin(),
        common::config(),
    )
    .await;
    let task = first.submit("t/slow", json!({})).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    first.engine.shutdown(std::time::Duration::ZERO).await;
    for _ in 0..taskdeck::model::MAX_INTERRUPTIONS {
        let again = common::start_on(
            store.clone(),
            &[SLOW_FAILING],
            Registry::builtin(),
            common::config(),
        )
        .await;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        again.engine.shutdown(std::time::Duration::ZERO).await;
    }
    let last = common::start_on(
        store.clone(),
        &[SLOW_FAILING],
        Registry::builtin(),
        common::config(),
    )
    .await;
    last.engine.when_idle().await.unwrap();
    let done = store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(done.state, TaskState::Error);
    let error = done.steps[0].last_error.clone().unwrap();
    assert_eq!(error.code.as_deref(), Some("INTERRUPTED_REPEATEDLY"));
}

#[tokio::test(start_paused = true)]
async fn the_simulated_services_keep_their_records_and_fault_counters_across_a_restart() {
    use taskdeck::services::{Backing, Services};
    let data = tempfile::tempdir().unwrap();
    let context = common::sample(
        "user_registration",
        json!({ "scenario": { "preferences": { "fail_times": 1, "status": "service_unavailable" } } }),
    );
    let open = || {
        // Reopened after a drop: sled lets go of its lock a moment later.
        let sled = loop {
            match SledStore::open(data.path(), Durability::Immediate, "test") {
                Ok(s) => break s,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        };
        let services = Arc::new(Services::durable(true, &Backing::sled(sled.db())));
        (Arc::new(sled) as Arc<dyn Store>, services)
    };
    let id = {
        let (store, services) = open();
        let h = common::start_blog(services.clone(), store.clone()).await;
        let mut events = h.engine.subscribe();
        let task = h
            .engine
            .submit(taskdeck::engine::SubmitRequest::new(
                "microservices/user_registration",
                context,
                taskdeck::auth::Identity::local("tester"),
            ))
            .await
            .unwrap();
        // Stop the engine the moment the user exists and preferences failed once.
        let mut seen = (false, false);
        while seen != (true, true) {
            let e = events.recv().await.unwrap();
            match (e.name.as_str(), e.step.as_deref()) {
                ("step.completed", Some("create_user_account")) => seen.0 = true,
                ("step.failed", Some("initialize_preferences")) => seen.1 = true,
                _ => {}
            }
        }
        h.engine.shutdown(std::time::Duration::ZERO).await;
        assert_eq!(services.users.all().len(), 1);
        task.id
    };
    // Everything of the first process is gone; the services come back from the data directory.
    let (store, services) = open();
    assert_eq!(services.users.all().len(), 1, "the user outlived the process");
    let h = common::start_blog(services.clone(), store.clone()).await;
    h.engine.when_idle().await.unwrap();
    let done = store.task(&id).await.unwrap().unwrap();
    assert_eq!(
        done.state,
        TaskState::Complete,
        "{:?}",
        done.steps
            .iter()
            .map(|s| (&s.name, s.state, &s.last_error))
            .collect::<Vec<_>>()
    );
    let prefs = done.step("initialize_preferences").unwrap();
    assert_eq!(
        prefs.attempts, 2,
        "the scenario's one failure was not injected again"
    );
}

#[test]
fn one_unreadable_record_hides_no_other_task() {
    let data = tempfile::tempdir().unwrap();
    let store = SledStore::open(data.path(), Durability::Immediate, "test").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let id = rt.block_on(async { created_not_run(&store).await.id });
    drop(store);
    // sled lets go of its lock shortly after the last handle is dropped (its threads end).
    let sled = loop {
        match SledStore::open(data.path(), Durability::Immediate, "test") {
            Ok(s) => break s,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    };
    sled.db()
        .open_tree("headers")
        .unwrap()
        .insert("zz-broken", &b"{not json"[..])
        .unwrap();
    sled.db()
        .open_tree("active")
        .unwrap()
        .insert("zz-broken", &[][..])
        .unwrap();
    let tasks = rt.block_on(taskdeck::store::all_tasks(&sled)).unwrap();
    assert_eq!(
        tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [id.as_str()]
    );
    assert_eq!(rt.block_on(sled.active_tasks()).unwrap().len(), 1);
    assert!(
        rt.block_on(sled.task("zz-broken")).is_err(),
        "read by id, the damage is reported"
    );
}
