//! No way around a person's decision (issue 8, item 2): `resolve` never decides an approval
//! gate nor lets children run before their parents, an expired request cannot be approved,
//! a denied gate is re-opened only by a manager, an expired token acts no more, and nobody
//! learns about another team's tasks from an error message.

mod common;

use common::refunds::{self, agent, manager, refund, CS};

use common::{start_blog, start_blog_with, temp_store};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use taskdeck::auth::{Identity, Role};
use taskdeck::engine::{EngineConfig, EngineError, SubmitRequest};
use taskdeck::model::{StepState, TaskState};
use taskdeck::services::Services;

fn forged() -> Value {
    json!({ "approval_obtained": true, "approved_by": "jane", "approval_id": "APPR-FORGED" })
}

async fn resolve_err(h: &common::Harness, task: &str, step: &str, results: Value, who: &Identity) -> String {
    let err = h
        .engine
        .resolve(task, step, results, who, "trust me")
        .await
        .expect_err("resolve must be refused");
    assert!(matches!(err, EngineError::Conflict(_)), "{err:?}");
    err.to_string()
}

#[tokio::test(start_paused = true)]
async fn resolve_cannot_decide_a_gate_whether_pending_awaiting_or_denied() {
    let services = Arc::new(Services::new(true));
    let h = start_blog(services.clone(), temp_store()).await;
    let task = h
        .engine
        .submit(SubmitRequest::new(CS, refund(12000), agent()))
        .await
        .unwrap();
    // Pending: nothing has run yet.
    let err = resolve_err(&h, &task.id, "get_manager_approval", forged(), &agent()).await;
    assert!(err.contains("is an approval gate"), "{err}");
    // Its still-pending policy check, whose results would tell the gate no approval is needed.
    let err = resolve_err(
        &h,
        &task.id,
        "check_refund_policy",
        json!({ "policy_compliant": true, "requires_approval": false }),
        &agent(),
    )
    .await;
    assert!(err.contains("waits on `validate_refund_request`"), "{err}");

    h.engine.when_idle().await.unwrap();
    let waiting = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(
        waiting.step("get_manager_approval").unwrap().state,
        StepState::AwaitingApproval
    );
    for who in [agent(), Identity::local("root")] {
        let err = resolve_err(&h, &task.id, "get_manager_approval", forged(), &who).await;
        assert!(err.contains("is an approval gate"), "{err}");
    }
    let err = resolve_err(&h, &task.id, "execute_refund_workflow", json!({}), &agent()).await;
    assert!(err.contains("waits on `get_manager_approval`"), "{err}");

    h.engine
        .decide(
            &task.id,
            "get_manager_approval",
            false,
            &manager(),
            Some("no receipt".into()),
        )
        .await
        .unwrap();
    h.engine.when_idle().await.unwrap();
    let err = resolve_err(&h, &task.id, "get_manager_approval", forged(), &agent()).await;
    assert!(err.contains("is an approval gate"), "{err}");
    let err = resolve_err(&h, &task.id, "execute_refund_workflow", json!({}), &agent()).await;
    assert!(err.contains("waits on `get_manager_approval`"), "{err}");
    assert!(services.refunds.all().is_empty(), "no refund went out");
    let task = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(task.state, TaskState::Error);
}

#[tokio::test(start_paused = true)]
async fn a_failed_policy_check_that_feeds_the_gate_cannot_be_resolved() {
    let services = Arc::new(Services::new(true));
    let h = start_blog(services.clone(), temp_store()).await;
    let mut context = refund(12000);
    context["scenario"] = json!({ "refund_policy": { "always": true, "status": "authentication_failed" } });
    let task = h
        .engine
        .submit(SubmitRequest::new(CS, context, agent()))
        .await
        .unwrap();
    h.engine.when_idle().await.unwrap();
    let failed = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(
        failed.step("check_refund_policy").unwrap().state,
        StepState::Error
    );
    let err = resolve_err(
        &h,
        &task.id,
        "check_refund_policy",
        json!({ "policy_compliant": true, "requires_approval": false }),
        &agent(),
    )
    .await;
    assert!(
        err.contains("feed the approval gate `get_manager_approval`"),
        "{err}"
    );
    assert!(services.refunds.all().is_empty());
}

#[tokio::test(start_paused = true)]
async fn resolve_never_lets_children_run_before_their_parents() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h
        .submit(
            "demo/release_pipeline",
            json!({ "service": "checkout-api", "git_ref": "v1" }),
        )
        .await;
    for step in ["unit_tests", "integration_tests"] {
        let err = resolve_err(
            &h,
            &task.id,
            step,
            json!({ "passed": 1 }),
            &Identity::local("root"),
        )
        .await;
        assert!(err.contains("waits on `build`"), "{err}");
    }
    h.engine.when_idle().await.unwrap();
    let done = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(done.state, TaskState::Complete);
    let log = h.store.transitions(&task.id).await.unwrap();
    let seq_of = |step: &str, to: &str| {
        log.iter()
            .find(|t| matches!(&t.subject, taskdeck::model::Subject::Step(s) if s == step) && t.to == to)
            .map(|t| t.seq)
            .unwrap()
    };
    assert!(seq_of("build", "complete") < seq_of("publish", "in_progress"));
}

#[tokio::test(start_paused = true)]
async fn an_expired_request_cannot_be_approved_even_if_no_timer_ran() {
    let services = Arc::new(Services::new(true));
    let store = temp_store();
    let first = start_blog(services.clone(), store.clone()).await;
    let task = first
        .engine
        .submit(SubmitRequest::new(CS, refund(12000), agent()))
        .await
        .unwrap();
    first.engine.when_idle().await.unwrap();
    let clock = first.engine.clock();
    first.engine.shutdown(Duration::ZERO).await;
    tokio::time::sleep(Duration::from_secs(301)).await;

    // As `taskdeck approve` runs it: an engine that does not dispatch nor arm timers.
    let admin = start_blog_with(
        services.clone(),
        store.clone(),
        EngineConfig {
            dispatch: false,
            clock: Some(clock),
            ..common::config()
        },
    )
    .await;
    let err = admin
        .engine
        .decide(&task.id, "get_manager_approval", true, &manager(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("expired at"), "{err}");
    let task = store.task(&task.id).await.unwrap().unwrap();
    let gate = task.step("get_manager_approval").unwrap();
    assert_eq!(gate.state, StepState::Error);
    assert_eq!(
        gate.last_error.as_ref().unwrap().code.as_deref(),
        Some("APPROVAL_EXPIRED")
    );
    assert_eq!(task.state, TaskState::Error);
    assert!(services.refunds.all().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_denied_gate_is_reopened_only_by_a_manager_and_asks_anew() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h
        .engine
        .submit(SubmitRequest::new(CS, refund(12000), agent()))
        .await
        .unwrap();
    h.engine.when_idle().await.unwrap();
    h.engine
        .decide(
            &task.id,
            "get_manager_approval",
            false,
            &manager(),
            Some("no receipt".into()),
        )
        .await
        .unwrap();
    h.engine.when_idle().await.unwrap();
    let err = h.engine.retry(&task.id, &agent(), "please").await.unwrap_err();
    assert!(matches!(err, EngineError::Denied(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("a manager of customer_success) may ask again"),
        "{err}"
    );

    h.engine
        .retry(&task.id, &manager(), "receipt found")
        .await
        .unwrap();
    h.engine.when_idle().await.unwrap();
    let again = h.store.task(&task.id).await.unwrap().unwrap();
    let gate = again.step("get_manager_approval").unwrap();
    assert_eq!(gate.state, StepState::AwaitingApproval);
    let approval = gate.approval.as_ref().unwrap();
    assert!(approval.decision.is_none(), "a new request, undecided");
    assert_eq!(approval.request.requester, "priya");
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_acts_no_more() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let now = h.engine.clock().now();
    let soon = agent().expiring_at(now + 60_000);
    let task = h
        .engine
        .submit(SubmitRequest::new(CS, refund(12000), soon.clone()))
        .await
        .unwrap();
    h.engine.when_idle().await.unwrap();
    tokio::time::sleep(Duration::from_secs(61)).await;
    let err = h
        .engine
        .submit(SubmitRequest::new(CS, refund(100), soon.clone()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the token expired at"), "{err}");
    let err = h.engine.cancel(&task.id, &soon, "bye").await.unwrap_err();
    assert!(err.to_string().contains("the token expired at"), "{err}");
    let manager = manager().expiring_at(now + 60_000);
    let err = h
        .engine
        .decide(&task.id, "get_manager_approval", true, &manager, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the token expired at"), "{err}");
    assert!(h.engine.find_task(&soon, &task.id).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn other_teams_tasks_are_not_found_rather_than_described() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h
        .engine
        .submit(SubmitRequest::new(CS, refund(12000), agent()))
        .await
        .unwrap();
    h.engine.when_idle().await.unwrap();
    let outsider = Identity::new("ola", "inventory", Role::Manager);
    let err = h
        .engine
        .decide(&task.id, "get_manager_approval", true, &outsider, None)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, format!("no task matches `{}`", task.id));
    assert!(!err.contains("awaiting"), "{err}");
    // A prefix that matches every task lists none of them to an outsider.
    for text in ["", "0", &task.id[..4]] {
        let err = h.engine.find_task(&outsider, text).await.unwrap_err().to_string();
        assert!(err.starts_with("no task matches"), "{text:?}: {err}");
    }
    // The team sees its own task by its short id.
    assert_eq!(
        h.engine
            .find_task(&agent(), taskdeck::model::short_id(&task.id))
            .await
            .unwrap()
            .id,
        task.id
    );
}

#[tokio::test(start_paused = true)]
async fn a_prefix_finds_your_task_however_many_of_others_share_it() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let payments = Identity::new("jake", "payments", Role::Operator);
    for i in 0..80 {
        let context = json!({ "payment_id": format!("pay_{i}"), "refund_amount": 100, "customer_email": "a@example.com" });
        h.engine
            .submit(SubmitRequest::new(
                "payments/process_refund",
                context,
                payments.clone(),
            ))
            .await
            .unwrap();
    }
    let mine = h
        .engine
        .submit(SubmitRequest::new(CS, refund(5000), agent()))
        .await
        .unwrap();
    // UUIDv7: the first characters are a timestamp every task here shares.
    let found = h.engine.find_task(&agent(), &mine.id[..8]).await.unwrap();
    assert_eq!(found.id, mine.id);
    let err = h
        .engine
        .find_task(&payments, &mine.id[..8])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("matches several tasks") && err.contains("and more"),
        "{err}"
    );
    assert!(
        !err.contains(&mine.id),
        "another team's id is never listed: {err}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_amount_written_as_a_float_still_goes_to_a_manager_and_absurd_ones_are_refused() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let mut context = refund(0);
    context["refund_amount"] = json!(12000.0);
    let task = h
        .engine
        .submit(SubmitRequest::new(CS, context, agent()))
        .await
        .unwrap();
    h.engine.when_idle().await.unwrap();
    let task = h.store.task(&task.id).await.unwrap().unwrap();
    let gate = task.step("get_manager_approval").unwrap();
    assert_eq!(
        gate.state,
        StepState::AwaitingApproval,
        "not auto-approved as 0 cents"
    );
    assert_eq!(gate.approval.as_ref().unwrap().request.amount, Some(12000));
    for absurd in [json!(1e23), json!(u64::MAX)] {
        let mut context = refund(0);
        context["refund_amount"] = absurd;
        let err = refunds::refused(&h, context).await;
        assert!(err.contains("$.refund_amount"), "{err}");
    }
}

mod cli {
    //! The same rules through the real binary, where tokens select the operator.
    use std::process::Command;

    fn taskdeck(data: &std::path::Path, token: Option<&str>, args: &[&str]) -> std::process::Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_taskdeck"));
        c.arg("--data").arg(data).args(args).env_remove("TASKDECK_TOKEN");
        if let Some(t) = token {
            c.env("TASKDECK_TOKEN", t);
        }
        c.output().unwrap()
    }

    fn token(data: &std::path::Path, sub: &str, team: &str, role: &str) -> String {
        let out = taskdeck(
            data,
            None,
            &["token", "issue", "--sub", sub, "--team", team, "--role", role],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn only_admins_issue_tokens_or_load_workflow_files() {
        let data = tempfile::tempdir().unwrap();
        let viewer = token(data.path(), "vic", "customer_success", "viewer");
        let agent = token(data.path(), "priya", "customer_success", "agent");
        let out = taskdeck(
            data.path(),
            Some(&viewer),
            &[
                "token", "issue", "--sub", "evil", "--team", "payments", "--role", "admin",
            ],
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("may not issue tokens: it takes an admin"));
        let wf = format!("{}/tests/fixtures/workflows", env!("CARGO_MANIFEST_DIR"));
        let out = taskdeck(data.path(), Some(&agent), &["--workflows", &wf, "tasks"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr)
            .contains("may not load workflow files or a policy (--workflows, --policy)"));
    }

    #[test]
    fn demo_traffic_is_an_admins_act_and_run_shows_only_what_you_may_read() {
        let data = tempfile::tempdir().unwrap();
        let viewer = token(data.path(), "vic", "customer_success", "viewer");
        let out = taskdeck(
            data.path(),
            Some(&viewer),
            &["demo", "--rate", "2", "--duration", "1s"],
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("may not run demo traffic"));
        let ecommerce = r#"{"customer_info":{"id":1,"email":"a@example.com","name":"A","tier":"standard"},"cart_items":[{"product_id":1,"quantity":1,"price":29.99}],"payment_info":{"method":"credit_card","amount":38.38,"currency":"USD","token":"tok_declined"}}"#;
        let out = taskdeck(
            data.path(),
            None,
            &["submit", "ecommerce/process_order", "--context", ecommerce],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = taskdeck(data.path(), Some(&viewer), &["run", "--until-idle"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("ecommerce"), "{text}");
        assert!(text.contains("tasks: 0 complete, 0 error"), "{text}");
    }
}
