//! The engine's behaviour on tokio's paused clock: retry schedules, permanent errors,
//! exhausted limits, parallelism, joins, operator commands, timeouts and event delivery.

mod common;

use async_trait::async_trait;
use common::{config, start, times};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskdeck::engine::{EngineConfig, EngineError};
use taskdeck::handlers::{Registry, StepHandler, StepInput};
use taskdeck::model::{StepError, StepState, TaskState};
use taskdeck::workflow::CatalogError;

fn admin(name: &str) -> taskdeck::auth::Identity {
    taskdeck::auth::Identity::local(name)
}

fn one_step(config: &str) -> String {
    format!(
        "namespace: t\nname: one\nversion: 1.0.0\nsteps:\n  - name: work\n    handler: simulate\n{config}"
    )
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_back_off_one_then_two_seconds() {
    let yaml = one_step("    retry: { limit: 3 }\n    handler_config: { fail_times: 2 }\n");
    let mut h = start(&[&yaml], Registry::builtin(), config()).await;
    let task = h.run("t/one", json!({})).await;
    assert_eq!(task.state, TaskState::Complete);
    assert_eq!(task.steps[0].attempts, 3);
    let events = h.drain();
    let starts = times(&events, "step.execution_requested", "work", task.created_at);
    assert_eq!(starts, [0, 1000, 3000]);
    let scheduled: Vec<&Value> = events
        .iter()
        .filter(|e| e.name == "step.retry_scheduled")
        .map(|e| &e.payload)
        .collect();
    assert_eq!(scheduled[0]["next_attempt_at"], json!(task.created_at + 1000));
    assert_eq!(scheduled[1]["delay_ms"], json!(2000));
    assert_eq!(scheduled[1]["backoff_type"], json!("exponential"));
}

#[tokio::test(start_paused = true)]
async fn jitter_keeps_attempts_within_ten_percent_of_the_schedule() {
    let yaml = one_step("    retry: { limit: 3 }\n    handler_config: { fail_times: 2 }\n");
    for seed in 0..8 {
        let cfg = EngineConfig {
            jitter: true,
            jitter_seed: Some(seed),
            ..config()
        };
        let mut h = start(&[&yaml], Registry::builtin(), cfg).await;
        let task = h.run("t/one", json!({})).await;
        let starts = times(&h.drain(), "step.execution_requested", "work", task.created_at);
        assert_eq!(starts[0], 0);
        assert!((900..=1100).contains(&starts[1]), "seed {seed}: {starts:?}");
        let second = starts[2] - starts[1];
        assert!((1800..=2200).contains(&second), "seed {seed}: {starts:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_from_the_service_wins_over_the_schedule() {
    let yaml = one_step("    handler_config: { fail_times: 1, retry_after_seconds: 7 }\n");
    let mut h = start(&[&yaml], Registry::builtin(), config()).await;
    let task = h.run("t/one", json!({})).await;
    assert_eq!(task.state, TaskState::Complete);
    let events = h.drain();
    assert_eq!(
        times(&events, "step.execution_requested", "work", task.created_at),
        [0, 7000]
    );
    let scheduled = events.iter().find(|e| e.name == "step.retry_scheduled").unwrap();
    assert_eq!(scheduled.payload["backoff_type"], json!("server_requested"));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_capped_at_the_maximum_backoff() {
    let yaml = one_step(
        "    retry: { max_backoff_ms: 5000 }\n    handler_config: { fail_times: 1, retry_after_seconds: 3600 }\n",
    );
    let mut h = start(&[&yaml], Registry::builtin(), config()).await;
    let task = h.run("t/one", json!({})).await;
    assert_eq!(
        times(&h.drain(), "step.execution_requested", "work", task.created_at),
        [0, 5000]
    );
}

const CHAIN: &str = r#"
namespace: t
name: chain
version: 1.0.0
steps:
  - name: first
    handler: simulate
    retry: { limit: 4 }
    handler_config: { fail_times: 9, error: permanent, error_code: CARD_DECLINED }
  - name: second
    handler: simulate
    depends_on: [first]
"#;

#[tokio::test(start_paused = true)]
async fn a_permanent_error_stops_after_one_attempt_and_nothing_downstream_starts() {
    let mut h = start(&[CHAIN], Registry::builtin(), config()).await;
    let task = h.run("t/chain", json!({})).await;
    assert_eq!(task.state, TaskState::Error);
    let first = task.step("first").unwrap();
    assert_eq!((first.state, first.attempts), (StepState::Error, 1));
    let error = first.last_error.as_ref().unwrap();
    assert_eq!(
        (error.kind.as_str(), error.code.as_deref()),
        ("permanent", Some("CARD_DECLINED"))
    );
    let second = task.step("second").unwrap();
    assert_eq!((second.state, second.attempts), (StepState::Pending, 0));
    let events = h.drain();
    assert!(times(&events, "step.execution_requested", "second", 0).is_empty());
    assert!(events.iter().any(|e| e.name == "task.failed"));
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_retry_limit_leaves_step_and_task_in_error() {
    let yaml = CHAIN.replace("error: permanent, ", "");
    let mut h = start(&[&yaml], Registry::builtin(), config()).await;
    let task = h.run("t/chain", json!({})).await;
    assert_eq!(task.state, TaskState::Error);
    let first = task.step("first").unwrap();
    assert_eq!((first.state, first.attempts), (StepState::Error, 4));
    assert_eq!(first.last_error.as_ref().unwrap().kind, "retryable");
    assert_eq!(task.step("second").unwrap().state, StepState::Pending);
    let events = h.drain();
    assert_eq!(
        times(&events, "step.execution_requested", "first", task.created_at),
        [0, 1000, 3000, 7000]
    );
    assert!(times(&events, "step.execution_requested", "second", 0).is_empty());
    let transitions = h.store.transitions(&task.id).await.unwrap();
    let last = transitions.last().unwrap();
    assert_eq!(
        (last.from.as_deref(), last.to.as_str()),
        (Some("in_progress"), "error")
    );
    assert_eq!(last.reason.as_deref(), Some("steps in error: first"));
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_step_is_not_retried_after_a_retryable_error() {
    let yaml = one_step("    retry: { retryable: false }\n    handler_config: { fail_times: 1 }\n");
    let h = start(&[&yaml], Registry::builtin(), config()).await;
    let task = h.run("t/one", json!({})).await;
    assert_eq!((task.state, task.steps[0].attempts), (TaskState::Error, 1));
}

const DIAMOND: &str = r#"
namespace: t
name: diamond
version: 1.0.0
steps:
  - { name: root, handler: simulate, handler_config: { sleep_ms: 100 } }
  - { name: left, handler: simulate, depends_on: [root], handler_config: { sleep_ms: 1000 } }
  - { name: right, handler: simulate, depends_on: [root], handler_config: { sleep_ms: 3000 } }
  - { name: join, handler: simulate, depends_on: [left, right] }
"#;

#[tokio::test(start_paused = true)]
async fn parallel_branches_overlap_and_the_join_waits_for_both() {
    let mut h = start(&[DIAMOND], Registry::builtin(), config()).await;
    let task = h.run("t/diamond", json!({})).await;
    assert_eq!(task.state, TaskState::Complete);
    let events = h.drain();
    let at = |name: &str, step: &str| times(&events, name, step, task.created_at)[0];
    assert_eq!(at("step.execution_requested", "left"), 100);
    assert_eq!(at("step.execution_requested", "right"), 100);
    assert_eq!(at("step.completed", "left"), 1100);
    assert_eq!(at("step.completed", "right"), 3100);
    // The join starts when its slower parent completes, not when the first one does.
    assert_eq!(at("step.execution_requested", "join"), 3100);
    let done = events.iter().find(|e| e.name == "task.completed").unwrap();
    assert_eq!(
        done.at - task.created_at,
        3100,
        "branches ran in parallel, not 4.1 s in sequence"
    );
}

#[tokio::test(start_paused = true)]
async fn the_global_concurrency_limit_holds() {
    let yaml = r#"
namespace: t
name: wide
version: 1.0.0
steps:
  - { name: a, handler: simulate, handler_config: { sleep_ms: 1000 } }
  - { name: b, handler: simulate, handler_config: { sleep_ms: 1000 } }
  - { name: c, handler: simulate, handler_config: { sleep_ms: 1000 } }
  - { name: d, handler: simulate, handler_config: { sleep_ms: 1000 } }
  - { name: e, handler: simulate, handler_config: { sleep_ms: 1000 } }
"#;
    let cfg = EngineConfig {
        concurrency: 2,
        ..config()
    };
    let mut h = start(&[yaml], Registry::builtin(), cfg).await;
    let task = h.run("t/wide", json!({})).await;
    assert_eq!(task.state, TaskState::Complete);
    let mut running = 0i32;
    let mut peak = 0;
    for e in h.drain() {
        match e.name.as_str() {
            "step.execution_requested" => running += 1,
            "step.completed" => running -= 1,
            _ => {}
        }
        peak = peak.max(running);
    }
    assert_eq!(peak, 2);
    assert_eq!(task.updated_at - task.created_at, 3000);
}

#[tokio::test(start_paused = true)]
async fn a_step_timeout_is_a_retryable_timeout_error() {
    let yaml =
        one_step("    timeout_seconds: 1\n    retry: { limit: 2 }\n    handler_config: { sleep_ms: 5000 }\n");
    let mut h = start(&[&yaml], Registry::builtin(), config()).await;
    let task = h.run("t/one", json!({})).await;
    let step = &task.steps[0];
    assert_eq!(
        (task.state, step.state, step.attempts),
        (TaskState::Error, StepState::Error, 2)
    );
    let error = step.last_error.as_ref().unwrap();
    assert_eq!(
        (error.kind.as_str(), error.code.as_deref()),
        ("timeout", Some("TIMEOUT"))
    );
    // 1 s timeout, 1 s backoff, 1 s timeout.
    assert_eq!(
        times(&h.drain(), "step.execution_requested", "work", task.created_at),
        [0, 2000]
    );
}

/// Returns the results it can see and records the idempotency keys it was called with.
#[derive(Clone, Default)]
struct Echo {
    keys: Arc<Mutex<Vec<(u32, String)>>>,
    fail_first: u32,
}

#[async_trait]
impl StepHandler for Echo {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        self.keys
            .lock()
            .unwrap()
            .push((input.attempt, input.idempotency_key.clone()));
        input
            .events
            .publish("echo.called", json!({ "attempt": input.attempt }));
        if input.attempt <= self.fail_first {
            return Err(StepError::retryable("not yet"));
        }
        Ok(json!({ "seen": input.results.to_json(), "context": *input.context }))
    }
}

#[tokio::test(start_paused = true)]
async fn later_steps_read_earlier_results_and_keys_are_stable_across_attempts() {
    let yaml = r#"
namespace: t
name: pass
version: 1.0.0
steps:
  - { name: make, handler: simulate, handler_config: { output: { total: 124.76 } } }
  - { name: use, handler: echo, depends_on: [make] }
"#;
    let echo = Echo {
        fail_first: 2,
        ..Echo::default()
    };
    let mut registry = Registry::builtin();
    registry.register("echo", echo.clone());
    let mut h = start(&[yaml], registry, config()).await;
    let task = h.run("t/pass", json!({ "order": 7 })).await;
    assert_eq!(task.state, TaskState::Complete);
    let results = task.step("use").unwrap().results.as_ref().unwrap();
    assert_eq!(results["seen"]["make"]["total"], json!(124.76));
    assert_eq!(results["context"]["order"], json!(7));
    let keys = echo.keys.lock().unwrap().clone();
    let expected = format!("{}/use", task.id);
    assert_eq!(
        keys,
        vec![(1, expected.clone()), (2, expected.clone()), (3, expected)]
    );
    let custom: Vec<_> = h.drain().into_iter().filter(|e| e.custom).collect();
    assert_eq!(custom.len(), 3);
    assert_eq!(custom[0].name, "echo.called");
    assert_eq!(custom[0].step.as_deref(), Some("use"));
}

#[tokio::test(start_paused = true)]
async fn operator_retry_gives_failed_steps_a_fresh_budget() {
    let yaml = r#"
namespace: t
name: flaky
version: 1.0.0
steps:
  - name: work
    handler: simulate
    retry: { limit: 2 }
    handler_config: { fail_times: 3 }
  - { name: after, handler: simulate, depends_on: [work] }
"#;
    let h = start(&[yaml], Registry::builtin(), config()).await;
    let task = h.run("t/flaky", json!({})).await;
    assert_eq!(task.state, TaskState::Error);
    assert_eq!(task.steps[0].attempts, 2);

    let retried = h
        .engine
        .retry(&task.id, &admin("alice"), "database is back")
        .await
        .unwrap();
    assert_eq!(retried.state, TaskState::Pending);
    h.engine.when_idle().await.unwrap();
    let task = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Complete);
    // Attempt numbers keep counting (3 failed, 4 succeeded); the budget restarted at 2.
    assert_eq!((task.steps[0].attempts, task.steps[0].attempts_used()), (4, 2));
    let log = h.store.transitions(&task.id).await.unwrap();
    let by_alice: Vec<_> = log.iter().filter(|t| t.actor == "alice").collect();
    assert_eq!(by_alice.len(), 2, "task error->pending and step error->pending");
    assert!(by_alice
        .iter()
        .all(|t| t.reason.as_deref() == Some("database is back")));
}

#[tokio::test(start_paused = true)]
async fn retry_is_refused_for_a_task_that_is_not_in_error() {
    let h = start(&[DIAMOND], Registry::builtin(), config()).await;
    let task = h.run("t/diamond", json!({})).await;
    let err = h
        .engine
        .retry(&task.id, &admin("alice"), "why not")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("is complete; only a task in error can be retried"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_running_steps_and_everything_downstream() {
    let h = start(&[DIAMOND], Registry::builtin(), config()).await;
    let task = h.submit("t/diamond", json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cancelled = h
        .engine
        .cancel(&task.id, &admin("bob"), "wrong release")
        .await
        .unwrap();
    assert_eq!(cancelled.state, TaskState::Cancelled);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let task = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Cancelled);
    let states: Vec<StepState> = task.steps.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [
            StepState::Complete,
            StepState::Cancelled,
            StepState::Cancelled,
            StepState::Cancelled
        ]
    );
    let log = h.store.transitions(&task.id).await.unwrap();
    assert!(!log
        .iter()
        .any(|t| t.to == "complete" && t.subject != taskdeck::model::Subject::Step("root".into())));
    assert!(log
        .iter()
        .filter(|t| t.to == "cancelled")
        .all(|t| t.actor == "bob"));
}

#[tokio::test(start_paused = true)]
async fn resolving_a_failed_step_by_hand_lets_the_task_finish() {
    let yaml = r#"
namespace: t
name: manual
version: 1.0.0
steps:
  - { name: charge, handler: simulate, handler_config: { fail_times: 1, error: permanent } }
  - { name: report, handler: echo, depends_on: [charge] }
"#;
    let mut registry = Registry::builtin();
    registry.register("echo", Echo::default());
    let h = start(&[yaml], registry, config()).await;
    let task = h.run("t/manual", json!({})).await;
    assert_eq!(task.state, TaskState::Error);

    h.engine
        .resolve(
            &task.id,
            "charge",
            json!({ "charge_id": "ch_manual" }),
            &admin("carol"),
            "charged by phone",
        )
        .await
        .unwrap();
    h.engine.when_idle().await.unwrap();
    let task = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Complete);
    assert_eq!(task.steps[0].state, StepState::ResolvedManually);
    let seen = &task.steps[1].results.as_ref().unwrap()["seen"];
    assert_eq!(seen["charge"]["charge_id"], json!("ch_manual"));
    let log = h.store.transitions(&task.id).await.unwrap();
    let resolved = log.iter().find(|t| t.to == "resolved_manually").unwrap();
    assert_eq!(
        (resolved.actor.as_str(), resolved.reason.as_deref()),
        ("carol", Some("charged by phone"))
    );

    let err = h
        .engine
        .resolve(&task.id, "nope", json!({}), &admin("carol"), "x")
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::NoSuchStep { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_context_that_breaks_the_schema_is_rejected_and_nothing_is_stored() {
    let yaml = r#"
namespace: t
name: typed
version: 1.0.0
input_schema:
  type: object
  required: [customer_info, cart_items]
  properties:
    customer_info:
      type: object
      required: [email]
    cart_items: { type: array, minItems: 1 }
steps:
  - { name: a, handler: simulate }
"#;
    let h = start(&[yaml], Registry::builtin(), config()).await;
    let err = h
        .engine
        .submit(taskdeck::engine::SubmitRequest::new(
            "t/typed",
            json!({ "customer_info": {}, "cart_items": [] }),
            admin("x"),
        ))
        .await
        .unwrap_err();
    let EngineError::Catalog(CatalogError::InvalidContext { violations, .. }) = &err else {
        panic!("unexpected {err}")
    };
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations
        .iter()
        .any(|v| v == "$.customer_info.email: required field is missing"));
    assert!(violations.iter().any(|v| v.starts_with("$.cart_items: ")));
    assert!(taskdeck::store::all_tasks(&*h.store).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn lagging_and_failing_subscribers_never_affect_a_workflow() {
    let cfg = EngineConfig {
        event_capacity: 4,
        ..config()
    };
    let h = start(&[DIAMOND], Registry::builtin(), cfg).await;
    let mut never_reads = h.engine.subscribe();
    let mut panics = h.engine.subscribe();
    let crashed = tokio::spawn(async move {
        let _ = panics.recv().await;
        panic!("a subscriber bug");
    });
    for _ in 0..5 {
        h.submit("t/diamond", json!({})).await;
    }
    h.engine.when_idle().await.unwrap();
    assert!(crashed.await.unwrap_err().is_panic());
    let tasks = taskdeck::store::all_tasks(&*h.store).await.unwrap();
    assert_eq!(tasks.len(), 5);
    assert!(tasks.iter().all(|t| t.state == TaskState::Complete));
    assert!(matches!(
        never_reads.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn versions_coexist_and_running_tasks_keep_theirs() {
    let v1 = one_step("    handler_config: { output: { v: 1 } }\n");
    let v2 = v1.replace("1.0.0", "1.1.0").replace("v: 1", "v: 2");
    let h = start(&[&v1, &v2], Registry::builtin(), config()).await;
    let latest = h.run("t/one", json!({})).await;
    let pinned = h.run("t/one@1.0.0", json!({})).await;
    assert_eq!(latest.version, "1.1.0");
    assert_eq!(latest.steps[0].results.as_ref().unwrap()["v"], json!(2));
    assert_eq!(pinned.version, "1.0.0");
    assert_eq!(pinned.steps[0].results.as_ref().unwrap()["v"], json!(1));
}

/// `retry_now`: a step waiting out a 60 s backoff the service asked for starts at once when an
/// operator says so, recorded with the operator and the reason; a step not waiting, or a viewer,
/// is refused.
#[tokio::test(start_paused = true)]
async fn an_operator_starts_a_step_waiting_out_its_backoff_now() {
    let yaml = one_step("    handler_config: { fail_times: 1, retry_after_seconds: 60 }\n");
    let mut h = start(&[&yaml], Registry::builtin(), config()).await;
    let task = h.submit("t/one", json!({})).await;
    loop {
        let stored = h.store.task(&task.id).await.unwrap().unwrap();
        if stored.steps[0].state == StepState::WaitingForRetry {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let viewer = taskdeck::auth::Identity::new("vic", "t", taskdeck::auth::Role::Viewer);
    let refused = h
        .engine
        .retry_now(&task.id, "work", &viewer, "hurry")
        .await
        .unwrap_err();
    assert!(matches!(refused, EngineError::Denied(_)), "{refused}");
    let operator = admin("ops-lead");
    h.engine
        .retry_now(&task.id, "work", &operator, "the gateway is back")
        .await
        .unwrap();
    h.engine.when_idle().await.unwrap();
    let done = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(done.state, TaskState::Complete);
    let starts = times(&h.drain(), "step.execution_requested", "work", task.created_at);
    assert_eq!(starts.len(), 2);
    assert!(starts[1] < 1_000, "started at once, not after 60 s: {starts:?}");
    let log = h.store.transitions(&task.id).await.unwrap();
    let now = log
        .iter()
        .find(|t| t.from.as_deref() == Some("waiting_for_retry"))
        .unwrap();
    assert_eq!(now.actor, "ops-lead");
    assert_eq!(now.reason.as_deref(), Some("retry now: the gateway is back"));
    let again = h
        .engine
        .retry_now(&task.id, "work", &operator, "again")
        .await
        .unwrap_err();
    assert!(
        again.to_string().contains("only a step waiting out its backoff"),
        "{again}"
    );
}
