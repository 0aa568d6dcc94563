//! Several engines on one PostgreSQL store (real database, real time: leases are measured by
//! the database's clock). Two engines split the work; an engine that stops answering loses its
//! tasks to another, which runs the interrupted step again with the same idempotency key, and
//! the late outcome of the first is refused (fenced), so the step completes once; an approval
//! decided through the engine that does not drive the task is handed over and carried on; and
//! each engine's subscribers see the events the other stored.

mod common;

use async_trait::async_trait;
use common::postgres as pg;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskdeck::auth::Identity;
use taskdeck::engine::{Engine, EngineConfig, SubmitRequest};
use taskdeck::handlers::{Registry, StepHandler, StepInput};
use taskdeck::model::{StepError, Subject, TaskState};
use taskdeck::store::{Durability, PgStore, PgTarget, Store};

const FLOW: &str = r#"
namespace: t
name: flow
version: 1.0.0
steps:
  - { name: work, handler: gate }
  - { name: after, handler: simulate, depends_on: [work] }
"#;

/// A handler that records each call by idempotency key and, while `held`, waits to be let go.
#[derive(Clone)]
struct Gate {
    calls: Arc<Mutex<HashMap<String, u32>>>,
    /// Calls wait while this is closed (a semaphore with no permits).
    hold: Arc<tokio::sync::Semaphore>,
    held: Arc<std::sync::atomic::AtomicBool>,
    by: String,
    ran_by: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl StepHandler for Gate {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(input.idempotency_key.clone())
            .or_default() += 1;
        self.ran_by.lock().unwrap().push(self.by.clone());
        if self.held.load(std::sync::atomic::Ordering::SeqCst) {
            let _permit = self.hold.acquire().await;
        }
        Ok(json!({ "by": self.by }))
    }
}

async fn engine(target: &PgTarget, gate: Gate, name: &str) -> (Engine, Arc<PgStore>) {
    let store = Arc::new(
        PgStore::open_target(target, Durability::Immediate, name, true)
            .await
            .unwrap(),
    );
    let mut registry = Registry::builtin();
    registry.register("gate", gate);
    let catalog = common::catalog(&[FLOW], &registry);
    let config = EngineConfig {
        operator: name.into(),
        ..common::config()
    };
    let engine = Engine::start(config, store.clone() as Arc<dyn Store>, catalog, registry)
        .await
        .unwrap();
    (engine, store)
}

fn shared_gate(by: &str, calls: &Arc<Mutex<HashMap<String, u32>>>, ran_by: &Arc<Mutex<Vec<String>>>) -> Gate {
    Gate {
        calls: calls.clone(),
        hold: Arc::new(tokio::sync::Semaphore::new(0)),
        held: Arc::default(),
        by: by.into(),
        ran_by: ran_by.clone(),
    }
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_share_work_take_over_a_silent_engine_and_fence_its_late_outcome() {
    let Some(url) = pg::url("engines_share_work_take_over_a_silent_engine_and_fence_its_late_outcome") else {
        return;
    };
    // SAFETY of the test: every test of this file sets the same value.
    std::env::set_var(taskdeck::store::LEASE_SECONDS_ENV, "2");
    let target = pg::fresh_target(&url);
    let calls = Arc::new(Mutex::new(HashMap::new()));
    let ran_by = Arc::new(Mutex::new(Vec::new()));

    // Engine A starts a task whose first step it then hangs in.
    let gate_a = shared_gate("a", &calls, &ran_by);
    gate_a.held.store(true, std::sync::atomic::Ordering::SeqCst);
    let (a, store_a) = engine(&target, gate_a.clone(), "a").await;
    let task = a
        .submit(SubmitRequest::new("t/flow", json!({}), Identity::local("tester")))
        .await
        .unwrap();
    let key = format!("{}/work", task.id);
    wait_until("A runs the step", async || {
        calls.lock().unwrap().get(&key) == Some(&1)
    })
    .await;

    // A stops answering; B joins and, once A's lease has run out, takes the task over and runs
    // the interrupted step again with the same key.
    store_a.suspend_heartbeat();
    let (b, store_b) = engine(&target, shared_gate("b", &calls, &ran_by), "b").await;
    wait_until("B completes the task", async || {
        store_b.task(&task.id).await.unwrap().unwrap().state == TaskState::Complete
    })
    .await;
    assert_eq!(
        calls.lock().unwrap().get(&key),
        Some(&2),
        "the step ran again, same key"
    );

    // A's hung attempt now finishes: its outcome is refused and A stops.
    gate_a.hold.add_permits(10);
    wait_until("A stops", async || !a.is_running()).await;
    let log = store_b.transitions(&task.id).await.unwrap();
    let completions = log
        .iter()
        .filter(|t| t.subject == Subject::Step("work".into()) && t.to == "complete")
        .count();
    assert_eq!(completions, 1, "the step's completion is recorded once: {log:#?}");
    let stored = store_b.task(&task.id).await.unwrap().unwrap();
    assert_eq!(
        stored.step("work").unwrap().results.as_ref().unwrap()["by"],
        json!("b")
    );
    assert!(
        log.windows(2).all(|w| w[0].seq < w[1].seq),
        "transitions stay in order across engines"
    );

    // Work submitted now is shared by B and a new engine C.
    let (c, _store_c) = engine(&target, shared_gate("c", &calls, &ran_by), "c").await;
    ran_by.lock().unwrap().clear();
    let mut ids = Vec::new();
    for i in 0..40 {
        let via = if i % 2 == 0 { &b } else { &c };
        ids.push(
            via.submit(SubmitRequest::new(
                "t/flow",
                json!({ "i": i }),
                Identity::local("tester"),
            ))
            .await
            .unwrap()
            .id,
        );
    }
    wait_until("every task completes", async || {
        let mut all = true;
        for id in &ids {
            all &= store_b.task(id).await.unwrap().unwrap().state == TaskState::Complete;
        }
        all
    })
    .await;
    let ran = ran_by.lock().unwrap().clone();
    assert!(
        ran.iter().any(|e| e == "b") && ran.iter().any(|e| e == "c"),
        "{ran:?}"
    );
    assert!(
        calls.lock().unwrap().values().all(|&n| n <= 2),
        "no step ran more than its two lives"
    );
    let journal = taskdeck::audit::verify::verify_store(&*store_b, None)
        .await
        .unwrap();
    assert!(journal.is_ok(), "one chain across engines: {journal:?}");
    b.shutdown(Duration::ZERO).await;
    c.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_decided_through_another_engine_is_handed_over_and_both_see_the_events() {
    let Some(url) =
        pg::url("an_approval_decided_through_another_engine_is_handed_over_and_both_see_the_events")
    else {
        return;
    };
    std::env::set_var(taskdeck::store::LEASE_SECONDS_ENV, "2");
    let target = pg::fresh_target(&url);
    let services = Arc::new(taskdeck::services::Services::new(true));
    let open = async |name: &str| {
        let store: Arc<dyn Store> = Arc::new(
            PgStore::open_target(&target, Durability::Immediate, name, true)
                .await
                .unwrap(),
        );
        common::start_blog_with(
            services.clone(),
            store,
            EngineConfig {
                operator: name.into(),
                ..common::config()
            },
        )
        .await
    };
    let mut a = open("a").await;
    let mut b = open("b").await;
    let refund = a
        .engine
        .submit(SubmitRequest::new(
            common::refunds::CS,
            common::refunds::refund(12000),
            common::refunds::agent(),
        ))
        .await
        .unwrap();
    wait_until("the refund waits for a manager", async || {
        a.store
            .task(&refund.id)
            .await
            .unwrap()
            .unwrap()
            .step("get_manager_approval")
            .is_some_and(|s| s.state == taskdeck::model::StepState::AwaitingApproval)
    })
    .await;
    // Through B, which does not drive it: B asks A for it, A hands it over, B decides.
    b.engine
        .decide(
            &refund.id,
            "get_manager_approval",
            true,
            &common::refunds::manager(),
            None,
        )
        .await
        .unwrap();
    wait_until("the refund completes", async || {
        a.store.task(&refund.id).await.unwrap().unwrap().state == TaskState::Complete
    })
    .await;
    // Each engine's subscribers saw the whole story, whoever stored it, in one numbering.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for h in [&mut a, &mut b] {
        let seen: Vec<_> = h.drain().into_iter().filter(|e| e.task_id == refund.id).collect();
        assert!(seen.iter().any(|e| e.name == "task.created"), "{seen:?}");
        assert!(seen.iter().any(|e| e.name == "task.completed"), "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
    }
    a.engine.shutdown(Duration::ZERO).await;
    b.engine.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_the_others_declared_dead_stops_by_itself() {
    let Some(url) = pg::url("an_engine_the_others_declared_dead_stops_by_itself") else {
        return;
    };
    std::env::set_var(taskdeck::store::LEASE_SECONDS_ENV, "2");
    let target = pg::fresh_target(&url);
    let calls = Arc::new(Mutex::new(HashMap::new()));
    let ran_by = Arc::new(Mutex::new(Vec::new()));
    let (a, store_a) = engine(&target, shared_gate("a", &calls, &ran_by), "a").await;
    assert!(store_a
        .live_engines()
        .await
        .unwrap()
        .iter()
        .any(|n| n.starts_with("a (pid")));
    // As another engine does to one whose heartbeat is long gone: its row is removed.
    let client = pg::sql(&url).await;
    client
        .batch_execute(&format!("DELETE FROM {}.engines", target.schema))
        .await
        .unwrap();
    wait_until("the engine stops", async || !a.is_running()).await;
    let refused = a
        .submit(SubmitRequest::new("t/flow", json!({}), Identity::local("tester")))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("stopped"), "{refused}");
}
