//! Post 02, `data_pipeline/customer_analytics`: parallel extracts, computed insights, custom
//! events, and the failures that kept the data team awake, on tokio's paused clock.

mod common;

use common::{reject, sample, start_blog, temp_store, times};
use serde_json::json;
use std::sync::Arc;
use taskdeck::model::{StepState, TaskState};
use taskdeck::services::Services;

const WF: &str = "data_pipeline/customer_analytics";
const EXTRACTS: [&str; 3] = ["extract_orders", "extract_users", "extract_products"];

#[tokio::test(start_paused = true)]
async fn the_pipeline_computes_the_insights_from_the_data() {
    let services = Arc::new(Services::new(true));
    let h = start_blog(services.clone(), temp_store()).await;
    let task = h.run(WF, sample("customer_analytics", json!({}))).await;
    assert_eq!(task.state, TaskState::Complete);
    assert_eq!(task.steps.len(), 8);
    assert!(task
        .steps
        .iter()
        .all(|s| s.state == StepState::Complete && s.attempts == 1));

    let result = |step: &str| task.step(step).unwrap().results.clone().unwrap();
    assert_eq!(
        result("extract_orders")["extraction_metadata"]["record_count"],
        json!(6)
    );
    assert_eq!(
        result("extract_users")["extraction_metadata"]["record_count"],
        json!(5)
    );
    assert_eq!(
        result("extract_products")["extraction_metadata"]["record_count"],
        json!(5)
    );

    let insights = result("generate_insights")["insights"].clone();
    let top_customers: Vec<_> = insights["top_customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["customer_id"].as_i64().unwrap(),
                c["total_revenue"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(top_customers, [(102, 389.97), (101, 149.48), (104, 74.97)]);
    let top_products: Vec<_> = insights["top_products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["product_id"].as_i64().unwrap(),
                p["total_revenue"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(top_products, [(205, 239.98), (202, 149.99), (203, 89.5)]);
    assert_eq!(
        insights["segment_analysis"],
        json!({ "premium_customers": { "count": 2, "revenue": 539.45 }, "standard_customers": { "count": 3, "revenue": 74.97 } })
    );
    assert_eq!(
        insights["category_performance"],
        json!({ "gadgets": 389.97, "tools": 89.5, "widgets": 134.95 })
    );
    // The refunded order 4 counts as an order but not as revenue.
    let carol = result("transform_customer_metrics")["customer_metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["customer_id"] == 103)
        .cloned()
        .unwrap();
    assert_eq!(
        (
            &carol["total_orders"],
            &carol["completed_orders"],
            &carol["total_revenue"]
        ),
        (&json!(1), &json!(0), &json!(0.0))
    );
    let widget = result("transform_product_metrics")["product_metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["product_id"] == 201)
        .cloned()
        .unwrap();
    assert_eq!(widget["conversion_rate"], json!(50.0));

    assert_eq!(
        result("update_dashboard")["dashboard_id"],
        json!("executive_dashboard_2024_01")
    );
    assert_eq!(services.dashboard.publications().len(), 1);
    let mut channels: Vec<String> = services.chat.messages().into_iter().map(|(c, _)| c).collect();
    channels.sort();
    assert_eq!(channels, ["#analytics", "#data-team"]);
    assert_eq!(result("send_notifications")["notification_count"], json!(2));
}

#[tokio::test(start_paused = true)]
async fn the_three_extracts_overlap_in_time() {
    let mut h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h.run(WF, sample("customer_analytics", json!({}))).await;
    let events = h.drain();
    let start = |s: &str| times(&events, "step.execution_requested", s, task.created_at)[0];
    let end = |s: &str| times(&events, "step.completed", s, task.created_at)[0];
    for a in EXTRACTS {
        for b in EXTRACTS {
            assert!(start(a) < end(b), "{a} started before {b} finished");
        }
    }
    // Each transform waits only for its own extracts.
    let customer = start("transform_customer_metrics");
    assert_eq!(customer, end("extract_orders").max(end("extract_users")));
    let product = start("transform_product_metrics");
    assert_eq!(product, end("extract_orders").max(end("extract_products")));
}

#[tokio::test(start_paused = true)]
async fn custom_events_reach_subscribers() {
    let mut h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    h.run(WF, sample("customer_analytics", json!({}))).await;
    let custom: Vec<_> = h.drain().into_iter().filter(|e| e.custom).collect();
    let count = |name: &str| custom.iter().filter(|e| e.name == name).count();
    assert_eq!(count("data_extraction_started"), 3);
    assert_eq!(count("data_extraction_completed"), 3);
    assert!(count("pipeline_milestone_reached") >= 4);
    let users = custom
        .iter()
        .find(|e| e.name == "data_extraction_completed" && e.step.as_deref() == Some("extract_users"))
        .unwrap();
    assert_eq!(users.payload["records_extracted"], json!(5));
    let milestones: Vec<_> = custom
        .iter()
        .filter(|e| e.name == "pipeline_milestone_reached")
        .map(|e| e.payload["milestone"].as_str().unwrap().to_string())
        .collect();
    assert!(
        milestones.contains(&"insights_generated".to_string()),
        "{milestones:?}"
    );
    assert!(
        milestones.contains(&"dashboard_updated".to_string()),
        "{milestones:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_flaky_crm_retries_only_the_user_extract() {
    let mut h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h.run(WF, sample("customer_analytics_crm_flaky", json!({}))).await;
    assert_eq!(task.state, TaskState::Complete);
    let attempts: Vec<u32> = task.steps.iter().map(|s| s.attempts).collect();
    assert_eq!(attempts, [1, 4, 1, 1, 1, 1, 1, 1], "only extract_users ran again");
    let failed = h
        .drain()
        .into_iter()
        .filter(|e| e.name == "data_extraction_failed")
        .count();
    assert_eq!(failed, 3);
}

#[tokio::test(start_paused = true)]
async fn a_transform_timeout_recovers_within_its_limit() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let scenario =
        json!({ "warehouse": { "transform_customer_metrics": { "fail_times": 1, "status": "timeout" } } });
    let task = h
        .run(WF, sample("customer_analytics", json!({ "scenario": scenario })))
        .await;
    assert_eq!(task.state, TaskState::Complete);
    assert_eq!(task.step("transform_customer_metrics").unwrap().attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn a_dashboard_auth_failure_stops_after_six_steps() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h
        .run(
            WF,
            sample(
                "customer_analytics",
                json!({ "scenario": "dashboard_auth_outage" }),
            ),
        )
        .await;
    assert_eq!(task.state, TaskState::Error);
    assert_eq!(task.done_steps(), 6);
    let dashboard = task.step("update_dashboard").unwrap();
    assert_eq!((dashboard.state, dashboard.attempts), (StepState::Error, 1));
    assert_eq!(
        dashboard.last_error.as_ref().unwrap().code.as_deref(),
        Some("DASHBOARD_AUTH_FAILED")
    );
    let notify = task.step("send_notifications").unwrap();
    assert_eq!((notify.state, notify.attempts), (StepState::Pending, 0));
}

#[tokio::test(start_paused = true)]
async fn a_chat_rate_limit_waits_60_seconds_then_delivers() {
    let mut h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h
        .run(
            WF,
            sample("customer_analytics", json!({ "scenario": "slack_rate_limit" })),
        )
        .await;
    assert_eq!(task.state, TaskState::Complete);
    let events = h.drain();
    let failed = times(&events, "step.failed", "send_notifications", 0);
    let started = times(&events, "step.execution_requested", "send_notifications", 0);
    assert_eq!(started[1] - failed[0], 60_000);
}

#[tokio::test(start_paused = true)]
async fn notifications_that_never_get_through_leave_seven_steps_complete() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let scenario = json!({ "chat": { "always": true, "status": "service_unavailable" } });
    let task = h
        .run(WF, sample("customer_analytics", json!({ "scenario": scenario })))
        .await;
    assert_eq!(task.state, TaskState::Error);
    assert_eq!(task.done_steps(), 7);
    assert_eq!(task.step("send_notifications").unwrap().attempts, 5);
}

#[tokio::test(start_paused = true)]
async fn a_missing_date_range_is_rejected_and_a_bad_one_is_permanent() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let err = reject(&h, WF, json!({ "notification_channels": ["#data-team"] })).await;
    assert!(err.contains("$.date_range: required field is missing"), "{err}");
    let err = reject(
        &h,
        WF,
        json!({ "date_range": { "start_date": "yesterday", "end_date": "2024-01-31" } }),
    )
    .await;
    assert!(err.contains("$.date_range.start_date"), "{err}");
    assert!(taskdeck::store::all_tasks(&*h.store).await.unwrap().is_empty());

    let backwards = json!({ "date_range": { "start_date": "2024-02-01", "end_date": "2024-01-01" } });
    let task = h.run(WF, backwards).await;
    let orders = task.step("extract_orders").unwrap();
    assert_eq!(
        orders.last_error.as_ref().unwrap().code.as_deref(),
        Some("INVALID_DATE_RANGE")
    );
    assert_eq!(orders.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn high_memory_mode_and_strict_thresholds_are_accepted() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let context = sample(
        "customer_analytics",
        json!({ "processing_mode": "high_memory", "quality_thresholds": { "min_customer_records": 1, "max_null_percentage": 0.01 } }),
    );
    assert_eq!(h.run(WF, context).await.state, TaskState::Complete);
}

#[tokio::test(start_paused = true)]
async fn a_database_timeout_on_the_order_extract_recovers() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let scenario = json!({ "warehouse": { "extract_orders": { "fail_times": 2, "status": "timeout", "message": "Database connection timeout" } } });
    let task = h
        .run(WF, sample("customer_analytics", json!({ "scenario": scenario })))
        .await;
    assert_eq!(task.state, TaskState::Complete);
    assert_eq!(task.step("extract_orders").unwrap().attempts, 3);
    let log = h.store.transitions(&task.id).await.unwrap();
    let first = log.iter().find(|t| t.to == "waiting_for_retry").unwrap();
    assert!(first
        .error
        .as_ref()
        .unwrap()
        .message
        .contains("Database connection timeout"));
}
