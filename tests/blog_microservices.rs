//! Post 03, `microservices/user_registration`: the diamond across four services, HTTP error
//! classification instead of circuit breakers, idempotent re-runs, on tokio's paused clock.

mod common;

use common::{reject, sample, start_blog, temp_store, times};
use serde_json::json;
use std::sync::Arc;
use taskdeck::model::{StepState, TaskState};
use taskdeck::services::{Call, Services};

const WF: &str = "microservices/user_registration";

fn with_plan(plan: &str) -> serde_json::Value {
    let mut context = sample("user_registration", json!({}));
    context["user_info"]["plan"] = json!(plan);
    context["user_info"]["email"] = json!(format!("{plan}@growthcorp.example"));
    context
}

#[tokio::test(start_paused = true)]
async fn a_registration_completes_every_step() {
    let services = Arc::new(Services::new(true));
    let h = start_blog(services.clone(), temp_store()).await;
    let task = h.run(WF, sample("user_registration", json!({}))).await;
    assert_eq!(
        task.state,
        TaskState::Complete,
        "unlike the original, the last step completes too"
    );
    assert!(task
        .steps
        .iter()
        .all(|s| s.state == StepState::Complete && s.attempts == 1));
    let users = services.users.all();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["status"], json!("active"));
    let user_id = users[0]["id"].as_i64().unwrap();
    for step in &task.steps {
        assert_eq!(
            step.results.as_ref().unwrap()["user_id"],
            json!(user_id),
            "{}",
            step.name
        );
    }
    assert_eq!(services.billing.profile(user_id).unwrap()["plan"], json!("pro"));
    let prefs = services.preferences.of(user_id).unwrap();
    assert_eq!(
        (&prefs["newsletter_frequency"], &prefs["marketing_consent"]),
        (&json!("weekly"), &json!(false))
    );
    let status = task.step("update_user_status").unwrap().results.clone().unwrap();
    assert_eq!(status["registration_complete"], json!(true));
    let correlation = &task.steps[0].results.as_ref().unwrap()["correlation_id"];
    assert!(task
        .steps
        .iter()
        .all(|s| &s.results.as_ref().unwrap()["correlation_id"] == correlation));
}

#[tokio::test(start_paused = true)]
async fn the_diamond_runs_billing_and_preferences_in_parallel() {
    let mut h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h.run(WF, sample("user_registration", json!({}))).await;
    let events = h.drain();
    let start = |s: &str| times(&events, "step.execution_requested", s, task.created_at)[0];
    let end = |s: &str| times(&events, "step.completed", s, task.created_at)[0];
    assert_eq!(start("setup_billing_profile"), end("create_user_account"));
    assert_eq!(start("initialize_preferences"), end("create_user_account"));
    assert!(start("setup_billing_profile") < end("initialize_preferences"));
    assert!(start("initialize_preferences") < end("setup_billing_profile"));
    assert_eq!(
        start("send_welcome_sequence"),
        end("setup_billing_profile").max(end("initialize_preferences"))
    );
    assert!(start("update_user_status") >= end("send_welcome_sequence"));
}

#[tokio::test(start_paused = true)]
async fn the_welcome_sequence_is_personalised_by_plan() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let expected = [
        ("free", json!(["basic_features", "community_support"]), 3),
        ("pro", json!(["analytics", "priority_support", "integrations"]), 3),
        (
            "enterprise",
            json!([
                "advanced_analytics",
                "priority_support",
                "custom_integrations",
                "dedicated_account_manager"
            ]),
            4,
        ),
    ];
    for (plan, features, emails) in expected {
        let mut context = with_plan(plan);
        if plan == "free" {
            context.as_object_mut().unwrap().remove("billing_info");
        }
        let task = h.run(WF, context).await;
        assert_eq!(task.state, TaskState::Complete, "{plan}");
        let welcome = task
            .step("send_welcome_sequence")
            .unwrap()
            .results
            .clone()
            .unwrap();
        assert_eq!(welcome["personalization"]["features"], features, "{plan}");
        assert_eq!(welcome["emails_sent"], json!(emails), "{plan}");
        let onboarding = welcome["personalization"]["onboarding_steps"].as_array().unwrap();
        assert_eq!(
            &onboarding[..3],
            &[
                json!("complete_profile"),
                json!("verify_email"),
                json!("tour_dashboard")
            ]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_billing_outage_is_waited_out_without_intervention() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h
        .run(WF, sample("user_registration_billing_outage", json!({})))
        .await;
    assert_eq!(task.state, TaskState::Complete);
    let billing = task.step("setup_billing_profile").unwrap();
    assert_eq!(billing.attempts, 3);
    let log = h.store.transitions(&task.id).await.unwrap();
    let codes: Vec<_> = log
        .iter()
        .filter(|t| t.to == "waiting_for_retry")
        .map(|t| t.error.as_ref().unwrap().code.clone().unwrap())
        .collect();
    assert_eq!(codes, ["HTTP_503", "HTTP_503"]);
}

#[tokio::test(start_paused = true)]
async fn a_429_waits_the_services_retry_after_or_30_seconds() {
    let mut h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h
        .run(
            WF,
            sample("user_registration", json!({ "scenario": "welcome_rate_limited" })),
        )
        .await;
    assert_eq!(task.state, TaskState::Complete);
    let events = h.drain();
    let failed = times(&events, "step.failed", "send_welcome_sequence", 0);
    let started = times(&events, "step.execution_requested", "send_welcome_sequence", 0);
    assert_eq!(started[1] - failed[0], 5_000);

    let scenario = json!({ "notifications": { "fail_times": 1, "http_status": 429 } });
    let mut context = with_plan("pro");
    context["scenario"] = scenario;
    h.run(WF, context).await;
    let events = h.drain();
    let failed = times(&events, "step.failed", "send_welcome_sequence", 0);
    let started = times(&events, "step.execution_requested", "send_welcome_sequence", 0);
    assert_eq!(started[1] - failed[0], 30_000, "the documented default");
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_permanent_with_their_codes() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    for (status, code) in [
        (422, "CLIENT_VALIDATION_ERROR"),
        (401, "AUTH_ERROR"),
        (404, "RESOURCE_NOT_FOUND"),
    ] {
        let mut context = with_plan("pro");
        context["scenario"] =
            json!({ "users": { "create_user": { "always": true, "http_status": status } } });
        let task = h.run(WF, context).await;
        let create = task.step("create_user_account").unwrap();
        assert_eq!((create.state, create.attempts), (StepState::Error, 1), "{status}");
        assert_eq!(create.last_error.as_ref().unwrap().code.as_deref(), Some(code));
        assert!(
            task.steps[1..].iter().all(|s| s.attempts == 0),
            "nothing downstream ran"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_paid_plan_without_a_payment_method_is_not_retried() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let mut context = with_plan("enterprise");
    context.as_object_mut().unwrap().remove("billing_info");
    let task = h.run(WF, context).await;
    let billing = task.step("setup_billing_profile").unwrap();
    assert_eq!((billing.state, billing.attempts), (StepState::Error, 1));
    assert_eq!(
        billing.last_error.as_ref().unwrap().code.as_deref(),
        Some("PAYMENT_REQUIRED")
    );
    assert_eq!(
        task.step("initialize_preferences").unwrap().state,
        StepState::Complete
    );
    assert_eq!(task.state, TaskState::Error);
}

#[tokio::test(start_paused = true)]
async fn a_409_for_the_same_user_is_success_and_for_another_is_a_conflict() {
    let services = Arc::new(Services::new(true));
    let h = start_blog(services.clone(), temp_store()).await;
    let first = h.run(WF, sample("user_registration", json!({}))).await;
    // The same registration again: every create answers 409 and is checked, not failed.
    let again = h.run(WF, sample("user_registration", json!({}))).await;
    assert_eq!(
        (first.state, again.state),
        (TaskState::Complete, TaskState::Complete)
    );
    let statuses: Vec<_> = again.steps[..3]
        .iter()
        .map(|s| s.results.as_ref().unwrap()["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [
            json!("already_exists"),
            json!("already_exists"),
            json!("already_exists")
        ]
    );
    assert_eq!(services.users.all().len(), 1);

    let call = Call {
        task_id: "seed",
        key: "seed",
        scenario: None,
    };
    services
        .create_user(call, "taken@growthcorp.example", "Someone Else", "free")
        .await;
    let mut conflict = sample("user_registration", json!({}));
    conflict["user_info"]["email"] = json!("taken@growthcorp.example");
    let task = h.run(WF, conflict).await;
    let create = task.step("create_user_account").unwrap();
    assert_eq!((create.state, create.attempts), (StepState::Error, 1));
    assert_eq!(
        create.last_error.as_ref().unwrap().code.as_deref(),
        Some("USER_CONFLICT")
    );
}

#[tokio::test(start_paused = true)]
async fn a_missing_email_is_rejected_with_its_path() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let err = reject(&h, WF, json!({ "user_info": { "name": "No Email" } })).await;
    assert!(
        err.contains("$.user_info.email: required field is missing"),
        "{err}"
    );
    assert!(taskdeck::store::all_tasks(&*h.store).await.unwrap().is_empty());
}
