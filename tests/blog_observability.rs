//! Post 05, `blog_examples/monitored_checkout`: the checkout completes with its business
//! context, and the shipped `inventory_slowdown` scenario replays the 2:17 AM incident —
//! `update_inventory` times out on every attempt — with the metrics that find it. On tokio's
//! paused clock.

mod common;

use common::{start_blog, temp_store};
use serde_json::{json, Value};
use std::sync::Arc;
use taskdeck::model::{StepState, TaskState};
use taskdeck::services::Services;

const WF: &str = "blog_examples/monitored_checkout";

fn checkout(extra: Value) -> Value {
    let mut context = json!({
        "customer_id": "CUST-1001",
        "customer_email": "shopper@example.com",
        "customer_tier": "premium",
        "cart_items": [
            { "sku": "WIDGET-A", "name": "Widget A", "price": 49.99, "quantity": 2 },
            { "sku": "GADGET-B", "name": "Gadget B", "price": 29.99, "quantity": 1 }
        ],
        "payment_method": "credit_card",
        "order_value": 129.97
    });
    if let (Value::Object(base), Value::Object(extra)) = (&mut context, extra) {
        base.extend(extra);
    }
    context
}

fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_monitored_checkout_completes_with_its_business_context() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h.run(WF, checkout(json!({}))).await;
    assert_eq!(task.state, TaskState::Complete, "{task:?}");
    assert!(task.steps.iter().all(|s| s.state == StepState::Complete));
    let context = &task.context;
    assert_eq!(
        context["business_context"],
        json!({ "domain": "ecommerce", "impact_level": "high", "sla_tier": "premium" })
    );
    let correlation = context["correlation_id"].as_str().unwrap();
    assert!(
        correlation.len() == 17
            && correlation.starts_with("checkout_")
            && correlation[9..].chars().all(|c| c.is_ascii_hexdigit()),
        "{correlation}"
    );
    let cart = task.step("validate_cart").unwrap().results.clone().unwrap();
    assert_eq!(
        (&cart["item_count"], &cart["cart_total"]),
        (&json!(3), &json!(129.97))
    );
    let order = task.step("create_order").unwrap().results.clone().unwrap();
    assert_eq!(order["order_value"], json!(129.97));
    let metrics = h.engine.metrics().encode();
    assert_eq!(
        value(
            &metrics,
            r#"checkout_conversions_total{namespace="blog_examples",version="1.0.0"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"sla_compliance_total{namespace="blog_examples",workflow="monitored_checkout",sla_met="true"}"#
        ),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn the_inventory_slowdown_times_out_update_inventory_and_the_metrics_say_so() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h
        .run(WF, checkout(json!({ "scenario": "inventory_slowdown" })))
        .await;
    assert_eq!(task.state, TaskState::Error);
    let inventory = task.step("update_inventory").unwrap();
    assert_eq!(inventory.state, StepState::Error);
    assert_eq!(
        inventory.attempts, 2,
        "retry_limit 2: at most two attempts (design.md)"
    );
    assert_eq!(inventory.last_error.as_ref().unwrap().kind, "timeout");
    assert_eq!(task.step("process_payment").unwrap().state, StepState::Complete);
    assert_eq!(task.step("create_order").unwrap().state, StepState::Pending);

    let metrics = h.engine.metrics().encode();
    let step = r#"namespace="blog_examples",workflow="monitored_checkout",step="update_inventory""#;
    assert_eq!(
        value(
            &metrics,
            &format!("tasker_step_attempts_total{{{step},outcome=\"timeout\"}}")
        ),
        2.0
    );
    // Each attempt ran until the 15 s timeout.
    assert_eq!(
        value(&metrics, &format!("tasker_step_duration_seconds_sum{{{step}}}")),
        30.0
    );
    assert_eq!(
        value(&metrics, &format!("tasker_step_retries_total{{{step}}}")),
        1.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"checkout_failures_total{namespace="blog_examples",failed_step="update_inventory",error_type="timeout"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"revenue_loss_dollars_total{namespace="blog_examples",customer_tier="premium"}"#
        ),
        129.97
    );
    assert_eq!(
        value(
            &metrics,
            r#"tasker_tasks_total{namespace="blog_examples",workflow="monitored_checkout",version="1.0.0",status="failed",business_tier="premium"}"#
        ),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_cart_fails_at_once() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h.run(WF, checkout(json!({ "cart_items": [] }))).await;
    assert_eq!(task.state, TaskState::Error);
    let cart = task.step("validate_cart").unwrap();
    assert_eq!(cart.attempts, 1, "a permanent error is never retried");
    assert_eq!(cart.last_error.as_ref().unwrap().message, "Cart is empty");
}
