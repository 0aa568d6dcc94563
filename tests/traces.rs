//! Traces over OTLP/HTTP protobuf to a receiver on loopback, decoded with the
//! `opentelemetry-proto` types: a task span with its step attempt spans (a retried step shows
//! two attempts, the first with its backoff event), and a customer-success refund whose
//! payments child task is a child span of the step that created it, in the same trace. No span
//! attribute holds an email or a name.

mod common;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taskdeck::engine::{EngineConfig, SubmitRequest};
use taskdeck::model::TaskState;
use taskdeck::services::Services;
use taskdeck::telemetry::traces::{self, Tracer};

/// An OTLP/HTTP receiver: every span it was sent, with its resource's service name.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, Span)>>>) {
    let spans: Arc<Mutex<Vec<(String, Span)>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| a.value.as_ref())
                        .and_then(|v| match &v.value {
                            Some(Any::StringValue(s)) => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            kept.lock().unwrap().push((service.clone(), span));
                        }
                    }
                }
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        a.value.as_ref().and_then(|v| match &v.value {
            Some(Any::StringValue(s)) => Some(s.clone()),
            Some(Any::IntValue(i)) => Some(i.to_string()),
            Some(Any::DoubleValue(d)) => Some(d.to_string()),
            _ => None,
        })
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_and_attempt_spans_form_one_trace_across_a_delegation() {
    let (url, received) = receiver().await;
    let tracer = Arc::new(Tracer::start(&url).unwrap());
    let config = EngineConfig {
        tracer: Some(tracer.clone()),
        ..common::config()
    };
    let h = common::start_blog_with(Arc::new(Services::new(false)), common::temp_store(), config).await;

    // A checkout whose payment fails once and is retried.
    let context = json!({
        "customer_id": "CUST-1001", "customer_email": "shopper@example.com", "customer_tier": "premium",
        "cart_items": [{ "sku": "WIDGET-A", "name": "Widget A", "price": 49.99, "quantity": 2 }],
        "payment_method": "paypal", "order_value": 99.98, "correlation_id": "checkout_0badcafe",
        "scenario": { "payment": { "process_payment": { "fail_times": 1, "status": "service_unavailable", "retry_after_seconds": 0.05 } } }
    });
    let checkout = h.run("blog_examples/monitored_checkout", context).await;
    assert_eq!(checkout.state, TaskState::Complete);
    // A refund small enough for no manager: customer success delegates to payments.
    let refund = h
        .engine
        .submit(SubmitRequest::new(
            "customer_success/process_refund",
            common::refunds::refund(5_000),
            common::refunds::agent(),
        ))
        .await
        .unwrap();
    let refund = h.engine.wait_for(&refund.id).await.unwrap();
    assert_eq!(refund.state, TaskState::Complete, "{refund:?}");

    // Spans arrive in batches within a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans = received.lock().unwrap().clone();
        let tasks = spans.iter().filter(|(_, s)| s.name.starts_with("task ")).count();
        if tasks >= 3 {
            break spans;
        }
        assert!(std::time::Instant::now() < deadline, "got {} spans", spans.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(spans.iter().all(|(service, _)| service == "taskdeck"));
    let spans: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();

    // The checkout: its trace id is its id; attempts are children of the task span.
    let trace = hex(&spans
        .iter()
        .find(|s| attribute(s, "taskdeck.task_id").as_deref() == Some(checkout.id.as_str()))
        .unwrap()
        .trace_id);
    assert_eq!(trace, checkout.id.replace('-', ""));
    let task_span = spans
        .iter()
        .find(|s| s.name == "task blog_examples/monitored_checkout")
        .unwrap();
    assert!(
        task_span.parent_span_id.is_empty(),
        "a root task's span has no parent"
    );
    assert_eq!(
        attribute(task_span, "business.customer_tier").as_deref(),
        Some("premium")
    );
    assert_eq!(
        attribute(task_span, "business.payment_method").as_deref(),
        Some("paypal")
    );
    assert_eq!(
        attribute(task_span, "taskdeck.correlation_id").as_deref(),
        Some("checkout_0badcafe")
    );
    let attempts: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == trace && s.name.starts_with("step "))
        .collect();
    assert_eq!(attempts.len(), 6, "five steps, one of them twice");
    assert!(attempts.iter().all(|s| s.parent_span_id == task_span.span_id));
    let mut payment: Vec<&&Span> = attempts
        .iter()
        .filter(|s| s.name == "step process_payment")
        .collect();
    payment.sort_by_key(|s| attribute(s, "taskdeck.attempt"));
    assert_eq!(
        attribute(payment[0], "taskdeck.outcome").as_deref(),
        Some("retryable")
    );
    assert_eq!(
        payment[0]
            .events
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["backoff"]
    );
    assert_eq!(
        attribute(payment[1], "taskdeck.outcome").as_deref(),
        Some("success")
    );
    assert!(payment[0].end_time_unix_nano <= payment[1].start_time_unix_nano);

    // The refund: the payments child is a child span of the step that created it.
    let parent = spans
        .iter()
        .find(|s| s.name == "task customer_success/process_refund")
        .unwrap();
    let child = spans
        .iter()
        .find(|s| s.name == "task payments/process_refund")
        .unwrap();
    assert_eq!(
        hex(&child.trace_id),
        hex(&parent.trace_id),
        "one trace across the teams"
    );
    assert_eq!(hex(&parent.trace_id), refund.id.replace('-', ""));
    let delegating = spans
        .iter()
        .find(|s| hex(&s.trace_id) == hex(&parent.trace_id) && s.name == "step execute_refund_workflow")
        .unwrap();
    assert_eq!(child.parent_span_id, delegating.span_id);
    let expected = traces::attempt_span_id(&refund.id, "execute_refund_workflow", 1);
    assert_eq!(hex(&delegating.span_id), expected.to_string());

    // Never personal data.
    for span in &spans {
        for a in &span.attributes {
            let text = format!("{:?}", a.value);
            assert!(!text.contains('@'), "{} = {text} in {}", a.key, span.name);
            assert!(!text.contains("Widget A"), "{} = {text}", a.key);
        }
    }
    assert_eq!(tracer.dropped(), 0);
}

#[tokio::test]
async fn a_collector_that_is_down_costs_no_step() {
    // Nothing listens at this address: export fails, the workflow does not notice.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tracer = Arc::new(Tracer::start(&format!("http://127.0.0.1:{port}")).unwrap());
    let config = EngineConfig {
        tracer: Some(tracer),
        ..common::config()
    };
    let h = common::start_blog_with(Arc::new(Services::new(false)), common::temp_store(), config).await;
    let task = h
        .run(
            "ecommerce/process_order",
            common::sample("process_order", json!({})),
        )
        .await;
    assert_eq!(task.state, TaskState::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_its_last_spans_before_it_exits_under_the_posts_service_name() {
    let (url, received) = receiver().await;
    let data = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_taskdeck");
    let sample = format!("{}/samples/process_order.json", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(bin)
        .arg("--data")
        .arg(data.path())
        .args(["submit", "ecommerce/process_order", "--context-file", &sample])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The environment names the collector and the service, as in post 05.
    let url_again = url.clone();
    let dir = data.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .arg("--data")
            .arg(dir)
            .args(["run", "--until-idle", "--no-api"])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &url)
            .env("OTEL_SERVICE_NAME", "growthcorp-workflows")
            .env(
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test,business.domain=ecommerce",
            )
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Received before the process exited: nothing to wait for.
    let spans = received.lock().unwrap().clone();
    let task = spans
        .iter()
        .find(|(_, s)| s.name == "task ecommerce/process_order")
        .unwrap_or_else(|| panic!("no task span among {} spans", spans.len()));
    assert_eq!(task.0, "growthcorp-workflows");
    assert_eq!(
        spans.iter().filter(|(_, s)| s.name.starts_with("step ")).count(),
        5
    );

    // A short administrative command ends spans too: a task submitted and cancelled without
    // any engine running steps still sends its task span.
    let dir = data.path().to_path_buf();
    let id = std::process::Command::new(bin)
        .arg("--data")
        .arg(&dir)
        .args(["submit", "ecommerce/process_order", "--context-file", &sample])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
    let url = url_again;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .arg("--data")
            .arg(dir)
            .args(["cancel", &id, "--reason", "duplicate"])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spans = received.lock().unwrap().clone();
    let tasks = spans
        .iter()
        .filter(|(_, s)| s.name == "task ecommerce/process_order")
        .count();
    assert_eq!(tasks, 2, "the cancelled task's span was sent by `cancel`");
}
