//! Post 01, `ecommerce/process_order`: every claim of the story, end to end, on simulated
//! services with fault injection, on tokio's paused clock.

mod common;

use common::{reject, sample, start_blog, temp_store, times};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use taskdeck::model::{StepState, TaskState};
use taskdeck::services::Services;

const WF: &str = "ecommerce/process_order";

#[tokio::test(start_paused = true)]
async fn the_sample_cart_checks_out_for_124_76() {
    let services = Arc::new(Services::new(true));
    let h = start_blog(services.clone(), temp_store()).await;
    let task = h.run(WF, sample("process_order", json!({}))).await;
    assert_eq!(task.state, TaskState::Complete);
    assert!(task
        .steps
        .iter()
        .all(|s| s.state == StepState::Complete && s.attempts == 1));

    let cart = task.step("validate_cart").unwrap().results.clone().unwrap();
    assert_eq!(
        (&cart["subtotal"], &cart["tax"], &cart["shipping"], &cart["total"]),
        (&json!(109.97), &json!(8.8), &json!(5.99), &json!(124.76))
    );
    assert_eq!(cart["validated_items"][0]["line_total"], json!(59.98));
    assert_eq!(cart["item_count"], json!(3));

    let payment = task.step("process_payment").unwrap().results.clone().unwrap();
    assert_eq!(payment["amount_charged"], json!(124.76));
    assert_eq!(payment["status"], json!("completed"));
    let ledger = services.payment.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(
        (ledger[0].amount, ledger[0].method.as_str()),
        (124.76, "credit_card")
    );
    assert_eq!(payment["payment_id"], json!(ledger[0].payment_id));
    assert_eq!(ledger[0].fees, 3.92, "2.9% + $0.30");

    let inventory = task.step("update_inventory").unwrap().results.clone().unwrap();
    assert_eq!(inventory["total_items_reserved"], json!(3));
    assert_eq!(services.inventory.reservations().len(), 2);

    let order = task.step("create_order").unwrap().results.clone().unwrap();
    assert_eq!(order["status"], json!("confirmed"));
    assert_eq!(order["total_amount"], json!(124.76));
    assert!(order["order_number"].as_str().unwrap().starts_with("ORD-"));

    let email = task.step("send_confirmation").unwrap().results.clone().unwrap();
    assert_eq!(
        (&email["email_sent"], &email["recipient"]),
        (&json!(true), &json!("customer@example.com"))
    );
    let outbox = services.email.outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].body["order_number"], order["order_number"]);
    assert_eq!(
        task.context["customer_info"]["name"],
        json!("John Doe"),
        "customer info is kept"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_limits_and_timeouts_follow_the_story() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h.run(WF, sample("process_order", json!({}))).await;
    let limits: Vec<(u32, Option<u64>)> = task.steps.iter().map(|s| (s.retry.limit, s.timeout_ms)).collect();
    assert_eq!(
        limits,
        [
            (3, Some(15_000)),
            (3, Some(30_000)),
            (2, Some(20_000)),
            (3, Some(15_000)),
            (5, Some(10_000))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn express_orders_get_a_short_payment_timeout_and_fewer_retries() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h
        .run(WF, sample("process_order", json!({ "priority": "express" })))
        .await;
    assert_eq!(task.state, TaskState::Complete);
    assert_eq!(
        task.context["express_processing"],
        json!({ "payment_timeout_ms": 15000, "payment_retries": 1, "email_retries": 2 })
    );
    let payment = task.step("process_payment").unwrap();
    assert_eq!((payment.retry.limit, payment.timeout_ms), (2, Some(15_000)));
    assert_eq!(task.step("send_confirmation").unwrap().retry.limit, 3);
}

#[tokio::test(start_paused = true)]
async fn express_payment_gives_up_after_one_retry() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let scenario = json!({ "payment": { "always": true, "status": "service_unavailable" } });
    let task = h
        .run(
            WF,
            sample(
                "process_order",
                json!({ "priority": "express", "scenario": scenario }),
            ),
        )
        .await;
    let payment = task.step("process_payment").unwrap();
    assert_eq!((payment.state, payment.attempts), (StepState::Error, 2));
    assert_eq!(task.state, TaskState::Error);
}

#[tokio::test(start_paused = true)]
async fn premium_customers_get_priority_and_faster_retries() {
    let mut h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let mut context = sample(
        "process_order",
        json!({ "scenario": { "payment": { "fail_times": 1, "status": "timeout" } } }),
    );
    context["customer_info"]["tier"] = json!("premium");
    let task = h.run(WF, context).await;
    assert_eq!(task.state, TaskState::Complete);
    assert_eq!(
        task.context["premium_processing"],
        json!({ "priority": "high", "faster_processing": true })
    );
    assert_eq!(
        task.step("send_confirmation").unwrap().results.as_ref().unwrap()["priority"],
        json!("high")
    );
    let scheduled = h
        .drain()
        .into_iter()
        .find(|e| e.name == "step.retry_scheduled")
        .unwrap();
    assert_eq!(
        scheduled.payload["delay_ms"],
        json!(500),
        "half of the standard 1 s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_transient_gateway_fault_recovers_and_charges_once() {
    let services = Arc::new(Services::new(true));
    let h = start_blog(services.clone(), temp_store()).await;
    let scenario = json!({ "payment": { "fail_times": 2, "status": "service_unavailable" } });
    let task = h
        .run(WF, sample("process_order", json!({ "scenario": scenario })))
        .await;
    assert_eq!(task.state, TaskState::Complete);
    let payment = task.step("process_payment").unwrap();
    assert_eq!(payment.attempts, 3);
    assert_eq!(services.payment.ledger().len(), 1);
    let log = h.store.transitions(&task.id).await.unwrap();
    let waits: Vec<_> = log.iter().filter(|t| t.to == "waiting_for_retry").collect();
    assert_eq!(waits.len(), 2);
    let error = waits[0].error.as_ref().unwrap();
    assert_eq!(
        (error.kind.as_str(), error.code.as_deref()),
        ("retryable", Some("SERVICE_UNAVAILABLE"))
    );
    assert!(
        error.message.contains("(injected fault)"),
        "injected faults are visible: {}",
        error.message
    );
}

#[tokio::test(start_paused = true)]
async fn a_declined_card_stops_at_once_and_nothing_downstream_starts() {
    let services = Arc::new(Services::new(true));
    let h = start_blog(services.clone(), temp_store()).await;
    let task = h.run(WF, sample("process_order_card_declined", json!({}))).await;
    assert_eq!(task.state, TaskState::Error);
    let payment = task.step("process_payment").unwrap();
    assert_eq!((payment.state, payment.attempts), (StepState::Error, 1));
    let error = payment.last_error.as_ref().unwrap();
    assert_eq!(
        (error.kind.as_str(), error.code.as_deref()),
        ("permanent", Some("PAYMENT_DECLINED"))
    );
    for name in ["update_inventory", "create_order", "send_confirmation"] {
        let step = task.step(name).unwrap();
        assert_eq!((step.state, step.attempts), (StepState::Pending, 0), "{name}");
    }
    assert!(services.payment.ledger().is_empty());
    assert!(services.email.outbox().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_waits_the_retry_after_the_gateway_asks_for() {
    let mut h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let task = h.run(WF, sample("process_order_black_friday", json!({}))).await;
    assert_eq!(task.state, TaskState::Complete);
    assert_eq!(task.step("process_payment").unwrap().attempts, 3);
    assert_eq!(
        task.step("update_inventory").unwrap().attempts,
        2,
        "the reservation timed out once"
    );
    let events = h.drain();
    let failed = times(&events, "step.failed", "process_payment", 0);
    let started = times(&events, "step.execution_requested", "process_payment", 0);
    assert_eq!(started.len(), 3);
    assert_eq!(started[1] - failed[0], 3000, "retry-after 3 s from the gateway");
    assert_eq!(started[2] - failed[1], 3000);
    let kinds: Vec<_> = events
        .iter()
        .filter(|e| e.name == "step.retry_scheduled" && e.step.as_deref() == Some("process_payment"))
        .map(|e| e.payload["backoff_type"].clone())
        .collect();
    assert_eq!(kinds, [json!("server_requested"), json!("server_requested")]);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_without_retry_after_waits_the_documented_30_seconds() {
    let mut h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let scenario = json!({ "payment": { "fail_times": 1, "status": "rate_limited" } });
    let task = h
        .run(WF, sample("process_order", json!({ "scenario": scenario })))
        .await;
    assert_eq!(task.state, TaskState::Complete);
    let events = h.drain();
    let failed = times(&events, "step.failed", "process_payment", 0);
    let started = times(&events, "step.execution_requested", "process_payment", 0);
    assert_eq!(started[1] - failed[0], 30_000);
}

#[tokio::test(start_paused = true)]
async fn missing_context_fields_are_rejected_with_their_paths() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let mut context = sample("process_order", json!({}));
    context.as_object_mut().unwrap().remove("payment_info");
    context["customer_info"].as_object_mut().unwrap().remove("email");
    let err = reject(&h, WF, context).await;
    assert!(err.contains("$.payment_info: required field is missing"), "{err}");
    assert!(
        err.contains("$.customer_info.email: required field is missing"),
        "{err}"
    );
    assert!(taskdeck::store::all_tasks(&*h.store).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_a_permanent_error_with_the_documented_code() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let cases = [
        (
            json!({ "cart_items": [{ "product_id": 5000, "quantity": 1, "price": 1.0 }] }),
            "validate_cart",
            "PRODUCT_NOT_FOUND",
        ),
        (
            json!({ "cart_items": [{ "product_id": 999, "quantity": 1, "price": 1.0 }] }),
            "validate_cart",
            "PRODUCT_INACTIVE",
        ),
        (
            json!({ "payment_info": { "method": "credit_card", "amount": 100.0, "currency": "USD", "token": "tok" } }),
            "process_payment",
            "PAYMENT_AMOUNT_MISMATCH",
        ),
        (
            json!({ "payment_info": { "method": "credit_card", "amount": 124.76, "currency": "USD" } }),
            "process_payment",
            "MISSING_PAYMENT_TOKEN",
        ),
    ];
    for (extra, step, code) in cases {
        let task = h.run(WF, sample("process_order", extra)).await;
        let s = task.step(step).unwrap();
        assert_eq!((s.state, s.attempts), (StepState::Error, 1), "{code}");
        assert_eq!(s.last_error.as_ref().unwrap().code.as_deref(), Some(code));
    }
}

/// The engine dies while `process_payment` waits for the gateway's answer, after the gateway
/// has charged the card. The re-run uses the same idempotency key: one charge in the ledger.
#[test]
fn process_payment_killed_mid_call_and_rerun_charges_exactly_once() {
    // Two runtimes, one after the other; the store is read between them (sled's reads never
    // wait, so a plain executor serves).
    use futures::executor::block_on;
    let services = Arc::new(Services::new(true));
    let store = temp_store();
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let task_id = first.block_on(async {
        let h = start_blog(services.clone(), store.clone()).await;
        let task = h.submit(WF, sample("process_order", json!({}))).await;
        while services.payment.ledger().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        task.id
    });
    drop(first); // the crash: orchestrator and handler vanish mid-call
    let stored = block_on(store.task(&task_id)).unwrap().unwrap();
    assert_eq!(
        stored.step("process_payment").unwrap().state,
        StepState::InProgress
    );
    assert_eq!(
        services.payment.ledger().len(),
        1,
        "the gateway charged before answering"
    );

    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    second.block_on(async {
        let h = start_blog(services.clone(), store.clone()).await;
        h.engine.when_idle().await.unwrap();
    });
    let task = block_on(store.task(&task_id)).unwrap().unwrap();
    assert_eq!(task.state, TaskState::Complete);
    let payment = task.step("process_payment").unwrap();
    assert_eq!(payment.attempts, 2);
    let ledger = services.payment.ledger();
    assert_eq!(ledger.len(), 1, "charged exactly once");
    assert_eq!(
        payment.results.as_ref().unwrap()["payment_id"],
        json!(ledger[0].payment_id)
    );
    assert_eq!(ledger[0].idempotency_key, format!("{task_id}/process_payment"));
}

#[tokio::test(start_paused = true)]
async fn a_stock_shortage_is_retried_then_fails_the_cart() {
    let h = start_blog(Arc::new(Services::new(true)), temp_store()).await;
    let cart = json!({
        "cart_items": [{ "product_id": 1, "quantity": 150, "price": 29.99 }],
        "payment_info": { "method": "credit_card", "amount": 4863.37, "currency": "USD", "token": "tok_visa_valid" },
    });
    let task = h.run(WF, sample("process_order", cart)).await;
    let validate = task.step("validate_cart").unwrap();
    assert_eq!(
        (validate.state, validate.attempts),
        (StepState::Error, 3),
        "stock may be replenished: retried"
    );
    let error = validate.last_error.as_ref().unwrap();
    assert_eq!(
        (error.kind.as_str(), error.code.as_deref()),
        ("retryable", Some("INSUFFICIENT_STOCK"))
    );
}
