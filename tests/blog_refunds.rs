//! Post 04: two teams' refund workflows, a durable manager approval gate, cross-namespace
//! delegation through the command path, versions, and namespace authorization.

mod common;

use common::refunds::{agent, manager, refund, CS};

use common::{start_blog, temp_store};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use taskdeck::auth::{Identity, Role};
use taskdeck::engine::{EngineError, SubmitRequest};
use taskdeck::model::{StepState, Task, TaskState};
use taskdeck::services::Services;

async fn submit(
    h: &common::Harness,
    who: Identity,
    workflow: &str,
    context: Value,
) -> Result<Task, EngineError> {
    h.engine.submit(SubmitRequest::new(workflow, context, who)).await
}

async fn children(h: &common::Harness, parent: &str) -> Vec<Task> {
    taskdeck::store::all_tasks(&*h.store)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.parent.as_deref() == Some(parent))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_small_refund_is_auto_approved_and_both_workflows_complete() {
    let services = Arc::new(Services::new(true));
    let h = start_blog(services.clone(), temp_store()).await;
    let task = submit(&h, agent(), CS, refund(7500)).await.unwrap();
    h.engine.when_idle().await.unwrap();
    let task = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Complete);
    let approval = task
        .step("get_manager_approval")
        .unwrap()
        .results
        .clone()
        .unwrap();
    assert_eq!(
        (&approval["approved_by"], &approval["approval_method"]),
        (&json!("system"), &json!("auto_approval"))
    );

    let kids = children(&h, &task.id).await;
    assert_eq!(kids.len(), 1);
    let child = &kids[0];
    assert_eq!(
        (child.namespace.as_str(), child.version.as_str()),
        ("payments", "2.1.0"),
        "customer success pins 2.1.0"
    );
    assert_eq!(child.state, TaskState::Complete);
    assert_eq!(child.initiator, "svc:customer_success");
    let correlation = child.correlation_id.clone().unwrap();
    assert!(correlation.starts_with("cs-"), "{correlation}");
    assert_eq!(child.context["correlation_id"], json!(correlation));
    let delegated = task
        .step("execute_refund_workflow")
        .unwrap()
        .results
        .clone()
        .unwrap();
    assert_eq!(delegated["delegated_task_id"], json!(child.id));
    let ticket = task
        .step("update_ticket_status")
        .unwrap()
        .results
        .clone()
        .unwrap();
    assert_eq!(ticket["ticket_status"], json!("resolved"));
    assert!(services.tickets.resolution("TICKET-98765").is_some());
    let refunds = services.refunds.all();
    assert_eq!((refunds.len(), refunds[0].amount_cents), (1, 7500));
    assert_eq!(
        child.step("notify_customer").unwrap().results.as_ref().unwrap()["customer_email"],
        json!("customer@example.com")
    );
}

#[tokio::test(start_paused = true)]
async fn payments_versions_coexist_and_resolve_as_described() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let payments = Identity::new("jake", "payments", Role::Operator);
    let context =
        json!({ "payment_id": "pay_123456789", "refund_amount": 7500, "customer_email": "a@example.com" });
    let latest = submit(&h, payments.clone(), "payments/process_refund", context.clone())
        .await
        .unwrap();
    let pinned = submit(&h, payments, "payments/process_refund@2.1.0", context)
        .await
        .unwrap();
    h.engine.when_idle().await.unwrap();
    let latest = h.store.task(&latest.id).await.unwrap().unwrap();
    let pinned = h.store.task(&pinned.id).await.unwrap().unwrap();
    assert_eq!((latest.version.as_str(), latest.steps.len()), ("2.2.0", 5));
    assert_eq!(latest.steps[1].name, "check_fraud_indicators");
    assert_eq!((pinned.version.as_str(), pinned.steps.len()), ("2.1.0", 4));
    assert_eq!(
        (latest.state, pinned.state),
        (TaskState::Complete, TaskState::Complete)
    );
}

#[tokio::test(start_paused = true)]
async fn a_large_refund_waits_survives_a_restart_and_completes_after_a_manager_approves() {
    let services = Arc::new(Services::new(true));
    let store = temp_store();
    let first = start_blog(services.clone(), store.clone()).await;
    let task = submit(&first, agent(), CS, refund(12000)).await.unwrap();
    first.engine.when_idle().await.unwrap();
    let waiting = store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(waiting.state, TaskState::InProgress);
    let gate = waiting.step("get_manager_approval").unwrap();
    assert_eq!(gate.state, StepState::AwaitingApproval);
    let request = &gate.approval.as_ref().unwrap().request;
    assert_eq!(
        (request.amount, request.requester.as_str()),
        (Some(12000), "priya")
    );
    assert_eq!(
        (request.required_role.as_str(), request.timeout_seconds),
        ("manager", 300)
    );
    assert!(
        children(&first, &task.id).await.is_empty(),
        "nothing is refunded before the decision"
    );
    first.engine.shutdown(Duration::ZERO).await;

    // A new engine on the same store: the request is still there and still decidable.
    let second = start_blog(services.clone(), store.clone()).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let still = store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(
        still.step("get_manager_approval").unwrap().state,
        StepState::AwaitingApproval
    );
    second
        .engine
        .decide(
            &task.id,
            "get_manager_approval",
            true,
            &manager(),
            Some("defect confirmed".into()),
        )
        .await
        .unwrap();
    second.engine.when_idle().await.unwrap();

    let done = store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(done.state, TaskState::Complete);
    let results = done
        .step("get_manager_approval")
        .unwrap()
        .results
        .clone()
        .unwrap();
    assert_eq!(
        (&results["approved_by"], &results["approval_notes"]),
        (&json!("jane"), &json!("defect confirmed"))
    );
    assert!(results["approval_id"].as_str().unwrap().starts_with("APPR-"));
    let log = store.transitions(&task.id).await.unwrap();
    let approved = log
        .iter()
        .find(|t| t.from.as_deref() == Some("awaiting_approval"))
        .unwrap();
    assert_eq!(
        (approved.to.as_str(), approved.actor.as_str()),
        ("complete", "jane")
    );
    let child = &children(&second, &task.id).await[0];
    assert_eq!(child.state, TaskState::Complete);
    assert_eq!(child.context["approved_by"], json!("jane"));
    assert_eq!(child.context["approval_id"], results["approval_id"]);
}

#[tokio::test(start_paused = true)]
async fn a_denial_ends_the_task_in_error_with_the_reason() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = submit(&h, agent(), CS, refund(15000)).await.unwrap();
    h.engine.when_idle().await.unwrap();
    let err = h
        .engine
        .decide(&task.id, "get_manager_approval", false, &manager(), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a denial needs a reason"), "{err}");
    h.engine
        .decide(
            &task.id,
            "get_manager_approval",
            false,
            &manager(),
            Some("outside the return window".into()),
        )
        .await
        .unwrap();
    h.engine.when_idle().await.unwrap();
    let task = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Error);
    let error = task
        .step("get_manager_approval")
        .unwrap()
        .last_error
        .clone()
        .unwrap();
    assert_eq!(
        (error.kind.as_str(), error.code.as_deref()),
        ("permanent", Some("APPROVAL_DENIED"))
    );
    assert!(
        error.message.contains("outside the return window"),
        "{}",
        error.message
    );
    assert!(children(&h, &task.id).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn no_decision_within_300_seconds_expires_the_request() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = submit(&h, agent(), CS, refund(15000)).await.unwrap();
    h.engine.when_idle().await.unwrap();
    tokio::time::sleep(Duration::from_secs(299)).await;
    assert_eq!(
        h.store.task(&task.id).await.unwrap().unwrap().state,
        TaskState::InProgress
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let task = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Error);
    let error = task
        .step("get_manager_approval")
        .unwrap()
        .last_error
        .clone()
        .unwrap();
    assert_eq!(error.code.as_deref(), Some("APPROVAL_EXPIRED"));
    assert!(error.message.contains("300 s"), "{}", error.message);
}

#[tokio::test(start_paused = true)]
async fn only_a_manager_of_the_namespace_other_than_the_requester_may_decide() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = submit(&h, manager(), CS, refund(15000)).await.unwrap();
    h.engine.when_idle().await.unwrap();
    let refused = [
        (manager(), "cannot approve their own request"),
        (
            Identity::new("vic", "customer_success", Role::Viewer),
            "the manager role in customer_success",
        ),
        (
            Identity::new("sam", "customer_success", Role::Operator),
            "the manager role in customer_success",
        ),
    ];
    // A manager of another team cannot read the task at all: it is not found for them.
    let err = h
        .engine
        .decide(
            &task.id,
            "get_manager_approval",
            true,
            &Identity::new("jake", "payments", Role::Manager),
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("no task matches"), "{err}");
    for (who, why) in refused {
        let err = h
            .engine
            .decide(&task.id, "get_manager_approval", true, &who, None)
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::Denied(_)), "{err}");
        assert!(err.to_string().contains(why), "{}: {err}", who.sub);
    }
    let other_manager = Identity::new("maria", "customer_success", Role::Manager);
    h.engine
        .decide(&task.id, "get_manager_approval", true, &other_manager, None)
        .await
        .unwrap();
    h.engine.when_idle().await.unwrap();
    assert_eq!(
        h.store.task(&task.id).await.unwrap().unwrap().state,
        TaskState::Complete
    );
}

#[tokio::test(start_paused = true)]
async fn submitting_into_another_teams_namespace_needs_a_grant() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let context =
        json!({ "payment_id": "pay_123456789", "refund_amount": 100, "customer_email": "a@example.com" });
    let err = submit(&h, agent(), "payments/process_refund", context.clone())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Not authorized to create tasks in payments namespace"),
        "{err}"
    );
    // The grant is for the team's workflows (its service identity), not its people...
    submit(
        &h,
        Identity::service("customer_success"),
        "payments/process_refund",
        context.clone(),
    )
    .await
    .unwrap();
    // ...and only for process_refund, and nothing is granted into customer_success.
    let payments = Identity::new("jake", "payments", Role::Operator);
    let err = submit(&h, payments, CS, refund(100)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("nor a grant for customer_success/process_refund"),
        "{err}"
    );
    let viewer = Identity::new("vic", "payments", Role::Viewer);
    assert!(submit(&h, viewer, "payments/process_refund", context)
        .await
        .is_err());
    assert_eq!(
        taskdeck::store::all_tasks(&*h.store).await.unwrap().len(),
        1,
        "refused submissions store nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_delegation_refused_by_policy_is_a_permanent_error_with_the_original_message() {
    use taskdeck::handlers::Registry;
    use taskdeck::workflow::{Catalog, Source};
    let root = env!("CARGO_MANIFEST_DIR");
    let file = |p: &str| Source::Path(format!("{root}/workflows/{p}").into());
    // The two workflows without the payments manifest's grant.
    let sources = [file("customer_success"), file("payments/process_refund")];
    let services = Arc::new(Services::new(true));
    let registry = Registry::standard(services);
    let catalog = Arc::new(Catalog::load(&sources, &|h| registry.contains(h)).unwrap());
    let store = temp_store();
    let engine = taskdeck::engine::Engine::start(common::config(), store.clone(), catalog, registry)
        .await
        .unwrap();
    let task = engine
        .submit(SubmitRequest::new(CS, refund(5000), agent()))
        .await
        .unwrap();
    engine.when_idle().await.unwrap();
    let task = store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Error);
    let step = task.step("execute_refund_workflow").unwrap();
    assert_eq!(step.attempts, 1);
    let error = step.last_error.clone().unwrap();
    assert_eq!(
        (error.kind.as_str(), error.code.as_deref()),
        ("permanent", Some("DELEGATION_REFUSED"))
    );
    assert!(
        error
            .message
            .starts_with("Not authorized to create tasks in payments namespace"),
        "{}",
        error.message
    );
}

#[tokio::test(start_paused = true)]
async fn a_repeated_delegation_finds_the_task_it_created() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let mut request = SubmitRequest::new(
        "payments/process_refund@2.1.0",
        json!({ "payment_id": "pay_1a", "refund_amount": 100, "customer_email": "a@example.com" }),
        Identity::service("customer_success"),
    );
    request.origin_key = Some("parent-task/execute_refund_workflow".into());
    let first = h.engine.submit(request.clone()).await.unwrap();
    h.engine.when_idle().await.unwrap();
    let again = h.engine.submit(request).await.unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(taskdeck::store::all_tasks(&*h.store).await.unwrap().len(), 1);
}
