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
    let mut h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
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

    // Post 05's signals, stored with the transitions: a bottleneck per attempt (15 s against
    // update_inventory's 3 s, 5×) and the critical oversell risk when it failed for good.
    let stored = h.store.events_after(0, 10_000).await.unwrap();
    let signals: Vec<&taskdeck::model::event::Event> = stored
        .iter()
        .filter(|e| e.name.starts_with("business."))
        .collect();
    let names: Vec<(&str, Option<&str>)> = signals
        .iter()
        .map(|e| (e.name.as_str(), e.step.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("business.performance.bottleneck", Some("update_inventory")),
            ("business.performance.bottleneck", Some("update_inventory")),
            ("business.inventory.failure", Some("update_inventory")),
        ]
    );
    assert_eq!(signals[0].payload["degradation_factor"], json!(5.0));
    assert_eq!(signals[1].payload["attempt"], json!(2));
    assert_eq!(signals[2].payload["severity"], json!("critical"));
    assert!(
        signals[2].line().contains("CRITICAL oversell risk (timeout)"),
        "{}",
        signals[2].line()
    );
    // Published live too, exactly as stored.
    let live: Vec<_> = h
        .drain()
        .into_iter()
        .filter(|e| e.name.starts_with("business."))
        .collect();
    assert_eq!(live.len(), 3);
    assert_eq!(
        value(&metrics, &format!("tasker_step_bottlenecks_total{{{step}}}")),
        2.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"tasker_oversell_risk_total{namespace="blog_examples",workflow="monitored_checkout"}"#
        ),
        1.0
    );

    // The console's summary: update_inventory is the slowest step, its slowest task this one.
    let admin = taskdeck::auth::Identity::local("root");
    let summary = h.engine.query().metrics_summary(&admin).unwrap();
    let ns = summary
        .namespaces
        .iter()
        .find(|n| n.namespace == "blog_examples")
        .unwrap();
    let slowest = &ns.slowest_steps[0];
    assert_eq!(
        (slowest.step.as_str(), slowest.attempts, slowest.bottlenecks),
        ("update_inventory", 2, 2)
    );
    assert_eq!((slowest.max_seconds, slowest.threshold_seconds), (15.0, 3.0));
    assert_eq!(slowest.slowest_task, task.id);
    assert_eq!(ns.failed.iter().sum::<u32>(), 1);
    assert_eq!(ns.revenue_lost, 129.97);
    let latest: Vec<&str> = ns.signals.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        latest,
        ["business.inventory.failure", "business.performance.bottleneck"]
    );
    // Another team sees none of it.
    let other = taskdeck::auth::Identity::new("eve", "payments", taskdeck::auth::Role::Operator);
    let theirs = h.engine.query().metrics_summary(&other).unwrap();
    assert!(theirs.namespaces.iter().all(|n| n.namespace != "blog_examples"));
}

#[tokio::test(start_paused = true)]
async fn a_task_slower_than_its_sla_is_a_violation_and_thresholds_can_be_its_own() {
    let yaml = r#"
namespace: shop
name: slow_checkout
version: 1.0.0
handler_config:
  monitoring: { sla_seconds: 5, critical_workflow: true, bottleneck_seconds: { pack: 1 } }
steps:
  - { name: pack, handler: simulate, handler_config: { sleep_ms: 2000 } }
  - { name: ship, handler: simulate, depends_on: [pack], handler_config: { sleep_ms: 4000 } }
"#;
    let mut h = common::start(&[yaml], taskdeck::handlers::Registry::builtin(), common::config()).await;
    let task = h.run("shop/slow_checkout", json!({})).await;
    assert_eq!(task.state, TaskState::Complete);
    let events = h.drain();
    let signals: Vec<(&str, Option<&str>)> = events
        .iter()
        .filter(|e| e.name.contains("performance"))
        .map(|e| (e.name.as_str(), e.step.as_deref()))
        .collect();
    // pack: 2 s over its own 1 s; ship: 4 s under the post's default 5 s; the task: 6 s > 5 s.
    assert_eq!(
        signals,
        [
            ("business.performance.bottleneck", Some("pack")),
            ("performance.sla.violation", None),
        ]
    );
    let violation = events
        .iter()
        .find(|e| e.name == "performance.sla.violation")
        .unwrap();
    assert_eq!(violation.payload["severity"], json!("critical"));
    assert_eq!(violation.payload["sla_seconds"], json!(5));
    let metrics = h.engine.metrics().encode();
    assert_eq!(
        value(
            &metrics,
            r#"tasker_sla_violations_total{namespace="shop",workflow="slow_checkout"}"#
        ),
        1.0
    );
}

#[test]
fn a_threshold_for_a_step_the_workflow_lacks_is_refused_with_its_field() {
    let yaml = r#"
namespace: shop
name: typo
version: 1.0.0
handler_config:
  monitoring: { bottleneck_seconds: { pakc: 1 } }
steps:
  - { name: pack, handler: simulate }
"#;
    let registry = taskdeck::handlers::Registry::builtin();
    let source = taskdeck::workflow::Source::Inline {
        file: "typo.yaml".into(),
        text: yaml.into(),
    };
    let e = taskdeck::workflow::Catalog::load(&[source], &|h| registry.contains(h))
        .err()
        .unwrap()
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        e.contains("typo.yaml") && e.contains("handler_config.monitoring.bottleneck_seconds.pakc"),
        "{e}"
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

/// A failed order retried by another process (a one-shot `taskdeck retry`, or before a crash)
/// and completed by the next engine is a recovery there too: the next engine reads the reopen
/// from the task's log, so it counts no new loss.
#[tokio::test(start_paused = true)]
async fn a_retry_made_by_another_process_is_a_recovery_in_the_next() {
    let yaml = r#"
namespace: shop
name: flaky_order
version: 1.0.0
handler_config:
  business_metrics: { track_revenue: true, customer_tier_tracking: true }
steps:
  - { name: charge, handler: simulate, handler_config: { fail_times: 1, error: permanent } }
"#;
    let store = temp_store();
    let registry = || taskdeck::handlers::Registry::builtin();
    let first = common::start_on(store.clone(), &[yaml], registry(), common::config()).await;
    let task = first
        .run(
            "shop/flaky_order",
            json!({ "order_value": 300.0, "customer_tier": "zinc" }),
        )
        .await;
    assert_eq!(task.state, TaskState::Error);
    first.engine.shutdown(std::time::Duration::ZERO).await;
    // The retry, as `taskdeck retry` makes it: an engine that runs no step.
    let admin = common::start_on(
        store.clone(),
        &[yaml],
        registry(),
        taskdeck::engine::EngineConfig {
            dispatch: false,
            ..common::config()
        },
    )
    .await;
    admin
        .engine
        .retry(&task.id, &taskdeck::auth::Identity::local("ops"), "card fixed")
        .await
        .unwrap();
    admin.engine.shutdown(std::time::Duration::ZERO).await;
    // The next engine completes it.
    let next = common::start_on(store.clone(), &[yaml], registry(), common::config()).await;
    next.engine.when_idle().await.unwrap();
    assert_eq!(
        store.task(&task.id).await.unwrap().unwrap().state,
        TaskState::Complete
    );
    let metrics = next.engine.metrics().encode();
    let tier = r#"{namespace="shop",customer_tier="zinc"}"#;
    assert_eq!(
        value(&metrics, &format!("revenue_recovered_dollars_total{tier}")),
        300.0
    );
    let loss = format!("revenue_loss_dollars_total{tier}");
    assert!(
        metrics
            .lines()
            .filter(|l| l.starts_with(&loss))
            .all(|l| l.ends_with(" 0.0") || l.ends_with(" 0")),
        "no new loss:\n{metrics}"
    );
}
