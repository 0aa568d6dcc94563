//! Delegation says what really happened (issue 8, item 8): the customer-success refund waits
//! for the payments task it creates, durably, completes with its results, fails with its
//! error, and a request the child could not serve is refused at submit.

mod common;

use common::refunds::{self, agent, refund, submitted_and_approved, CS};

use common::{start_blog, start_blog_with, temp_store};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use taskdeck::auth::{Identity, Role};
use taskdeck::engine::{EngineConfig, SubmitRequest};
use taskdeck::model::{StepState, Task, TaskState};
use taskdeck::services::Services;

/// A $75 refund whose step waits for its payments child, left by an engine that stopped; then,
/// as `taskdeck cancel` runs it, an engine that runs nothing and never loaded the parent.
async fn waiting_refund_then_admin_engine() -> (Arc<dyn taskdeck::store::Store>, Task, common::Harness) {
    let services = Arc::new(Services::new(true));
    let store = temp_store();
    let first = start_blog(services.clone(), store.clone()).await;
    let clock = first.engine.clock();
    let mut events = first.engine.subscribe();
    let task = first
        .engine
        .submit(SubmitRequest::new(CS, refund(7500), agent()))
        .await
        .unwrap();
    while events.recv().await.unwrap().name != "step.waiting_for_child" {}
    first.engine.shutdown(Duration::ZERO).await;
    let admin = start_blog_with(
        services,
        store.clone(),
        EngineConfig {
            dispatch: false,
            clock: Some(clock),
            ..common::config()
        },
    )
    .await;
    (store, task, admin)
}

async fn child_of(store: &Arc<dyn taskdeck::store::Store>, parent: &str) -> Task {
    let kids: Vec<Task> = taskdeck::store::all_tasks(&**store)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.parent.as_deref() == Some(parent))
        .collect();
    assert_eq!(kids.len(), 1);
    kids.into_iter().next().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_refund_without_the_email_the_payments_team_needs_is_refused_at_submit() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let mut context = refund(5000);
    context.as_object_mut().unwrap().remove("customer_email");
    let err = refunds::refused(&h, context).await;
    assert!(
        err.contains("$.customer_email: required field is missing"),
        "{err}"
    );
    assert!(taskdeck::store::all_tasks(&*h.store).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_delegating_step_waits_for_the_payments_task_and_completes_with_its_results() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let mut events = h.engine.subscribe();
    let task = h
        .engine
        .submit(SubmitRequest::new(CS, refund(7500), agent()))
        .await
        .unwrap();
    // While payments works, the step waits on its child.
    loop {
        let e = events.recv().await.unwrap();
        if e.name == "step.waiting_for_child" {
            assert_eq!(e.step.as_deref(), Some("execute_refund_workflow"));
            break;
        }
    }
    let waiting = h.store.task(&task.id).await.unwrap().unwrap();
    let step = waiting.step("execute_refund_workflow").unwrap();
    assert_eq!(step.state, StepState::WaitingForChild);
    let child = child_of(&h.store, &task.id).await;
    assert_eq!(step.child.as_ref().unwrap().task_id, child.id);
    assert!(child.state.is_active(), "the child was still running");
    assert_eq!(
        waiting.step("update_ticket_status").unwrap().state,
        StepState::Pending,
        "the ticket is not closed before the refund went out"
    );

    h.engine.when_idle().await.unwrap();
    let done = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(done.state, TaskState::Complete);
    let results = done
        .step("execute_refund_workflow")
        .unwrap()
        .results
        .clone()
        .unwrap();
    assert_eq!(results["delegated_task_id"], json!(child.id));
    assert_eq!(results["delegated_task_status"], json!("complete"));
    assert_eq!(
        results["delegated_results"]["notify_customer"]["customer_email"],
        json!("customer@example.com")
    );
    let log = h.store.transitions(&task.id).await.unwrap();
    let completed = log
        .iter()
        .position(|t| {
            t.to == "complete"
                && t.subject == taskdeck::model::Subject::Step("execute_refund_workflow".into())
        })
        .unwrap();
    let child_done = h.store.task(&child.id).await.unwrap().unwrap().updated_at;
    assert!(log[completed].at >= child_done);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refund_fails_the_delegating_step_with_the_payments_error() {
    let services = Arc::new(Services::new(true));
    let h = start_blog(services.clone(), temp_store()).await;
    // 16,000 cents of a 15,000-cent payment: a manager approves, payments refuses.
    let task = submitted_and_approved(&h, 16000).await;
    let child = child_of(&h.store, &task.id).await;
    assert_eq!(child.state, TaskState::Error);
    let parent = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(
        parent.state,
        TaskState::Error,
        "not ✔ complete over a refund that never went out"
    );
    let step = parent.step("execute_refund_workflow").unwrap();
    assert_eq!(step.state, StepState::Error);
    let error = step.last_error.clone().unwrap();
    assert_eq!(error.code.as_deref(), Some("DELEGATED_TASK_FAILED"));
    assert!(
        error.message.contains("at `validate_payment_eligibility`"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("REFUND_EXCEEDS_PAYMENT"),
        "{}",
        error.message
    );
    assert_eq!(
        parent.step("update_ticket_status").unwrap().state,
        StepState::Pending
    );
    assert!(services.tickets.resolution("TICKET-98765").is_none());
}

#[tokio::test(start_paused = true)]
async fn the_wait_survives_a_restart_and_a_child_cancelled_elsewhere_fails_it() {
    let (store, task, admin) = waiting_refund_then_admin_engine().await;
    let child = child_of(&store, &task.id).await;
    let payments = Identity::new("jake", "payments", Role::Operator);
    admin
        .engine
        .cancel(&child.id, &payments, "duplicate request")
        .await
        .unwrap();
    admin.engine.shutdown(Duration::ZERO).await;

    let parent = store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(parent.state, TaskState::Error);
    let step = parent.step("execute_refund_workflow").unwrap();
    assert_eq!(
        step.last_error.as_ref().unwrap().code.as_deref(),
        Some("DELEGATED_TASK_CANCELLED")
    );
}

#[tokio::test(start_paused = true)]
async fn the_wait_is_resumed_after_a_restart_and_the_refund_goes_out_once() {
    let services = Arc::new(Services::new(true));
    let store = temp_store();
    let first = start_blog(services.clone(), store.clone()).await;
    let mut events = first.engine.subscribe();
    let task = first
        .engine
        .submit(SubmitRequest::new(CS, refund(7500), agent()))
        .await
        .unwrap();
    while events.recv().await.unwrap().name != "step.waiting_for_child" {}
    first.engine.shutdown(Duration::ZERO).await;

    // The next engine resumes both; the child completes and the parent follows.
    let second = start_blog(services.clone(), store.clone()).await;
    second.engine.when_idle().await.unwrap();
    let done = store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(done.state, TaskState::Complete);
    assert_eq!(child_of(&store, &task.id).await.state, TaskState::Complete);
    assert_eq!(
        services.refunds.all().len(),
        1,
        "one refund, however often it was resumed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_delegation_cannot_be_resolved_into_a_completed_refund() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = submitted_and_approved(&h, 16000).await;
    let err = h
        .engine
        .resolve(
            &task.id,
            "execute_refund_workflow",
            json!({ "task_delegated": true, "delegated_task_id": "x" }),
            &agent(),
            "it's fine",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("delegated its work to task"), "{err}");
    assert_eq!(
        h.store.task(&task.id).await.unwrap().unwrap().state,
        TaskState::Error
    );
}

#[tokio::test(start_paused = true)]
async fn an_address_the_email_service_cannot_deliver_to_is_refused_before_money_moves() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let mut context = refund(5000);
    context["customer_email"] = json!("a@b");
    let err = refunds::refused(&h, context).await;
    assert!(err.contains("$.customer_email"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_delegation_refused_for_its_context_is_permanent_and_cannot_be_resolved_away() {
    use taskdeck::handlers::Registry;
    use taskdeck::workflow::{Catalog, Source};
    // A limit the parent's context fits and the child's (which adds fields) does not.
    let limit = serde_json::to_vec(&refund(5000)).unwrap().len() + 20;
    let registry = Registry::standard(Arc::new(Services::new(true)));
    let catalog = Arc::new(Catalog::load(&[Source::Bundled], &|h| registry.contains(h)).unwrap());
    let store = temp_store();
    let config = EngineConfig {
        max_context_bytes: limit,
        ..common::config()
    };
    let engine = taskdeck::engine::Engine::start(config, store.clone(), catalog, registry)
        .await
        .unwrap();
    let task = engine
        .submit(SubmitRequest::new(CS, refund(5000), agent()))
        .await
        .unwrap();
    engine.when_idle().await.unwrap();
    let failed = store.task(&task.id).await.unwrap().unwrap();
    let step = failed.step("execute_refund_workflow").unwrap();
    assert_eq!(step.state, StepState::Error);
    assert_eq!(
        step.attempts, 1,
        "not retried: a context does not shrink by itself"
    );
    assert_eq!(
        step.last_error.as_ref().unwrap().code.as_deref(),
        Some("DELEGATION_INVALID")
    );
    let err = engine
        .resolve(
            &task.id,
            "execute_refund_workflow",
            json!({ "task_delegated": true }),
            &agent(),
            "fine",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("delegates its work to another team's task"), "{err}");
}

/// Cancelling a refund request cancels the payments task it delegated: no money moves for a
/// cancelled ticket (found by racing `cancel` against the delegation over the API).
#[tokio::test(start_paused = true)]
async fn cancelling_the_request_cancels_the_payments_task_it_delegated() {
    let store = temp_store();
    let h = start_blog(Arc::new(Services::new(true)), store.clone()).await;
    let mut events = h.engine.subscribe();
    let task = h
        .engine
        .submit(SubmitRequest::new(CS, refund(7500), agent()))
        .await
        .unwrap();
    while events.recv().await.unwrap().name != "step.waiting_for_child" {}
    h.engine
        .cancel(&task.id, &agent(), "customer withdrew the ticket")
        .await
        .unwrap();
    h.engine.when_idle().await.unwrap();
    let child = child_of(&store, &task.id).await;
    assert_eq!(child.state, TaskState::Cancelled, "{:?}", child.steps);
    assert!(child
        .steps
        .iter()
        .all(|s| s.name != "process_gateway_refund" || s.state != StepState::Complete));
    let log = store.transitions(&child.id).await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(last.actor, "engine");
    assert!(
        last.reason
            .as_deref()
            .unwrap()
            .contains("customer withdrew the ticket"),
        "{last:?}"
    );
    assert_eq!(
        store.task(&task.id).await.unwrap().unwrap().state,
        TaskState::Cancelled
    );
}

/// The same from `taskdeck cancel` (an engine that runs nothing and holds nothing in memory),
/// and a child asked for by a task that has already ended is not created.
#[tokio::test(start_paused = true)]
async fn an_administrative_cancel_reaches_the_child_in_the_store() {
    let (store, task, admin) = waiting_refund_then_admin_engine().await;
    admin
        .engine
        .cancel(&task.id, &agent(), "duplicate")
        .await
        .unwrap();
    let late = admin
        .engine
        .submit(SubmitRequest {
            parent: Some(task.id.clone()),
            ..SubmitRequest::new(
                "payments/process_refund",
                json!({}),
                Identity::service("customer_success"),
            )
        })
        .await
        .unwrap_err();
    admin.engine.shutdown(Duration::ZERO).await;
    assert_eq!(child_of(&store, &task.id).await.state, TaskState::Cancelled);
    assert!(
        matches!(late, taskdeck::engine::EngineError::Conflict(_)),
        "{late}"
    );
}

/// Work the payments task has already done cannot be undone by cancelling the request, so
/// such a cancel is refused whole (found by racing `cancel` against the payout over the API).
#[tokio::test(start_paused = true)]
async fn a_request_whose_payments_task_has_done_work_cannot_be_cancelled() {
    let store = temp_store();
    let h = start_blog(Arc::new(Services::new(true)), store.clone()).await;
    let mut events = h.engine.subscribe();
    let task = h
        .engine
        .submit(SubmitRequest::new(CS, refund(7500), agent()))
        .await
        .unwrap();
    loop {
        let e = events.recv().await.unwrap();
        if e.name == "step.completed" && e.workflow.starts_with("payments/") {
            break;
        }
    }
    let err = h
        .engine
        .cancel(&task.id, &agent(), "customer withdrew the ticket")
        .await
        .unwrap_err();
    assert!(matches!(err, taskdeck::engine::EngineError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("already completed"), "{err}");
    h.engine.when_idle().await.unwrap();
    assert_eq!(
        store.task(&task.id).await.unwrap().unwrap().state,
        TaskState::Complete
    );
    assert_eq!(child_of(&store, &task.id).await.state, TaskState::Complete);
}
