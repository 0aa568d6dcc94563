//! Traces, exported with `opentelemetry-otlp` (OTLP over HTTP/protobuf) when
//! `--otlp-endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! A span per task (creation to end) and per step attempt (start to outcome; a retry is a new
//! attempt span, the backoff an event on the failed one), built from the engine's committed
//! transitions, never from live objects: a task outlives processes, so its spans are made when
//! its transitions are durable, with their recorded times. Ids are derived, not random: a
//! task's trace id is its id (a UUIDv7 is 128 bits), or its trace's for a delegated child; its
//! span id and its attempts' come from a hash of the task id, step and attempt. So a trace
//! continues after a restart, and a child task (customer_success → payments) stores the W3C
//! `traceparent` of the attempt that created it and becomes that span's child.
//!
//! Export never blocks or slows a workflow: spans go through a bounded queue to a background
//! task that sends them in batches; when the queue is full they are dropped and counted, and
//! a collector that is down costs a warning (at most one a minute), never a step.
//!
//! Attributes carry the namespace, workflow, version, step, attempt, outcome, error code and
//! the task's business context (customer tier, order value, payment method, correlation id)
//! — never personal data: no email, name, phone, address or card value is ever an attribute.

use crate::model::{Subject, Timestamp, Transition};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Spans waiting for export at most; beyond, new ones are dropped (and counted).
pub const QUEUE: usize = 8_192;
/// Spans sent in one request at most.
const BATCH: usize = 2_048;
/// How long the sender gathers spans after the first of a batch arrives.
const LINGER: Duration = Duration::from_millis(200);

/// The exporter's handle, shared with the engine.
pub struct Tracer {
    tx: mpsc::Sender<SpanData>,
    dropped: AtomicU64,
    /// Spans queued or being sent.
    pending: std::sync::Arc<AtomicU64>,
    scope: InstrumentationScope,
    /// Tasks taken up again after they failed (retried or resolved), with when: their next
    /// end is a span of its own, under the task's first, so no span id is sent twice.
    /// Held in memory: after a restart, a reopened task's end reuses the task span's id.
    reopened: std::sync::Mutex<std::collections::HashMap<String, Timestamp>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Tracer {
    /// Starts exporting to `endpoint` (an OTLP/HTTP base URL such as
    /// `http://127.0.0.1:4318`; spans go to `/v1/traces`). The resource is OpenTelemetry's
    /// default (it reads `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`), with
    /// `service.name` `taskdeck` unless the environment names one. Needs a tokio runtime.
    ///
    /// Errors: the exporter cannot be built (a malformed endpoint).
    pub fn start(endpoint: &str) -> Result<Tracer, String> {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!(
                "--otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT) `{}` is not an http:// or https:// URL (OTLP over HTTP, e.g. http://127.0.0.1:4318)",
                redact(endpoint)
            ));
        }
        let endpoint = format!(
            "{}/v1/traces",
            endpoint.trim_end_matches('/').trim_end_matches("/v1/traces")
        );
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot export traces to {}: {e}", redact(&endpoint)))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("taskdeck");
        }
        let resource = resource
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        exporter.set_resource(&resource);
        let (tx, rx) = mpsc::channel(QUEUE);
        let pending = std::sync::Arc::new(AtomicU64::new(0));
        tokio::spawn(send(exporter, rx, redact(&endpoint), pending.clone()));
        Ok(Tracer {
            tx,
            dropped: AtomicU64::new(0),
            pending,
            scope: InstrumentationScope::builder("taskdeck")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            reopened: Default::default(),
        })
    }

    /// A failed task taken up again at `at` before this process started (see `Engine::start`).
    pub fn mark_reopened(&self, task_id: &str, at: Timestamp) {
        self.reopened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task_id.to_string(), at);
    }

    /// Spans dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn emit(&self, span: SpanData) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(span).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every queued span was sent (or failed to be), at most `limit`: what a
    /// process does before it exits, so its last spans are not lost.
    pub async fn flush(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.pending.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The spans one committed transition ends, if any: a task's at its end, an attempt's at
    /// its outcome.
    pub fn committed(&self, t: &Transition, task: &TaskTrace<'_>) {
        match &t.subject {
            Subject::Task => {
                let ended = matches!(
                    t.to.as_str(),
                    "complete" | "error" | "cancelled" | "resolved_manually"
                );
                let mut reopened = self.reopened.lock().unwrap_or_else(|e| e.into_inner());
                if !ended {
                    if t.from.as_deref() == Some("error") {
                        reopened.insert(task.id.to_string(), t.at);
                    }
                    return;
                }
                let mut attributes = task.attributes();
                attributes.push(KeyValue::new("taskdeck.outcome", t.to.clone()));
                let (parent, remote) = match task.parent() {
                    Some((_, span)) => (span, true),
                    None => (SpanId::INVALID, false),
                };
                // A second end (after a retry or a resolve) is the reopened run's span, under
                // the first: its id comes from when the run began.
                // (A failed task cancelled or resolved as a whole ends a second time at once.)
                let again = reopened
                    .remove(task.id)
                    .or_else(|| (t.from.as_deref() == Some("error")).then_some(t.at));
                let (id, parent, remote, name, start) = match again {
                    Some(at) => (
                        SpanId::from_bytes(
                            nonzero(hash(&[task.id, "reopened", &at.to_string()])).to_be_bytes(),
                        ),
                        task_span_id(task.id),
                        false,
                        format!("task {}/{} (reopened)", task.namespace, task.workflow),
                        at,
                    ),
                    None => (
                        task_span_id(task.id),
                        parent,
                        remote,
                        format!("task {}/{}", task.namespace, task.workflow),
                        task.created_at,
                    ),
                };
                drop(reopened);
                self.emit(self.span(
                    task.trace_id(),
                    id,
                    parent,
                    remote,
                    name,
                    start,
                    t.at,
                    attributes,
                    Vec::new(),
                    if t.to == "error" {
                        Status::error("the task failed")
                    } else {
                        Status::Ok
                    },
                ));
            }
            Subject::Step(step) => {
                // An attempt runs from its start through any wait for a person or a child task
                // to its outcome.
                if !matches!(
                    t.from.as_deref(),
                    Some("in_progress" | "awaiting_approval" | "waiting_for_child")
                ) {
                    return;
                }
                let outcome = match t.to.as_str() {
                    "complete" => "success",
                    "waiting_for_retry" | "error" => match t.error.as_ref().map(|e| e.kind.as_str()) {
                        Some("timeout") => "timeout",
                        Some("permanent") => "permanent",
                        _ => "retryable",
                    },
                    _ => return, // a gate or a child: the attempt goes on
                };
                let status = t.step.as_deref();
                let started = status.and_then(|s| s.started_at).unwrap_or(t.at);
                let mut attributes = task.identity();
                attributes.push(KeyValue::new("taskdeck.step", step.clone()));
                attributes.push(KeyValue::new("taskdeck.attempt", i64::from(t.attempt)));
                attributes.push(KeyValue::new("taskdeck.outcome", outcome));
                if let Some(code) = t.error.as_ref().and_then(|e| e.code.as_deref()) {
                    // A handler's code is an identifier, unless a hostile or careless one made
                    // it personal data.
                    let code = super::filter::safe_id(code, 64).unwrap_or("other");
                    attributes.push(KeyValue::new("error.type", code.to_string()));
                }
                let mut events = Vec::new();
                if t.to == "waiting_for_retry" {
                    let next = status.and_then(|s| s.next_attempt_at).unwrap_or(t.at);
                    events.push(opentelemetry::trace::Event::new(
                        "backoff",
                        time(t.at),
                        vec![KeyValue::new(
                            "taskdeck.backoff_ms",
                            next.saturating_sub(t.at).max(0),
                        )],
                        0,
                    ));
                }
                self.emit(self.span(
                    task.trace_id(),
                    attempt_span_id(task.id, step, t.attempt),
                    task_span_id(task.id),
                    false,
                    format!("step {step}"),
                    started,
                    t.at,
                    attributes,
                    events,
                    if outcome == "success" {
                        Status::Ok
                    } else {
                        Status::error(outcome)
                    },
                ));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &self,
        trace: TraceId,
        span: SpanId,
        parent: SpanId,
        parent_is_remote: bool,
        name: String,
        start: Timestamp,
        end: Timestamp,
        attributes: Vec<KeyValue>,
        events: Vec<opentelemetry::trace::Event>,
        status: Status,
    ) -> SpanData {
        let mut span_events = SpanEvents::default();
        span_events.events = events;
        SpanData {
            span_context: SpanContext::new(trace, span, TraceFlags::SAMPLED, false, TraceState::default()),
            parent_span_id: parent,
            parent_span_is_remote: parent_is_remote,
            span_kind: SpanKind::Internal,
            name: Cow::Owned(name),
            start_time: time(start),
            end_time: time(end.max(start)),
            attributes,
            dropped_attributes_count: 0,
            events: span_events,
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }
}

/// What a span needs to know of its task.
pub struct TaskTrace<'a> {
    pub id: &'a str,
    pub namespace: &'a str,
    pub workflow: &'a str,
    pub version: &'a str,
    pub created_at: Timestamp,
    pub context: &'a Value,
    /// The W3C `traceparent` the task was created under (a delegated child's).
    pub traceparent: Option<&'a str>,
    /// The workflow's `handler_config`: where its business figures are, if it tracks them.
    pub config: &'a crate::workflow::handler_config::HandlerConfig,
}

impl TaskTrace<'_> {
    fn parent(&self) -> Option<(TraceId, SpanId)> {
        self.traceparent.and_then(parse_traceparent)
    }

    fn trace_id(&self) -> TraceId {
        match self.parent() {
            Some((trace, _)) => trace,
            None => own_trace_id(self.id),
        }
    }

    /// What every span of the task carries: which task of which workflow.
    fn identity(&self) -> Vec<KeyValue> {
        vec![
            KeyValue::new("taskdeck.task_id", self.id.to_string()),
            KeyValue::new("taskdeck.namespace", self.namespace.to_string()),
            KeyValue::new("taskdeck.workflow", self.workflow.to_string()),
        ]
    }

    /// The task span's: identity, version and business context (the attempt spans under it
    /// carry identity only, which keeps the per-step cost small), never personal data.
    fn attributes(&self) -> Vec<KeyValue> {
        let mut out = self.identity();
        out.push(KeyValue::new("taskdeck.version", self.version.to_string()));
        // Only short identifiers: a correlation id that is a sentence, a name or a phone
        // number is left out.
        let id = self.context.get("correlation_id").and_then(Value::as_str);
        if let Some(id) = id.and_then(|id| super::filter::safe_id(id, 64)) {
            out.push(KeyValue::new("taskdeck.correlation_id", id.to_string()));
        }
        // The workflow's own business figures, sanitized as its metric labels are.
        if let Some(b) = &self.config.business_metrics {
            let facts = b.facts(self.context);
            if let Some(v) = facts.customer_tier {
                out.push(KeyValue::new("business.customer_tier", v));
            }
            if let Some(v) = facts.order_value {
                out.push(KeyValue::new("business.order_value", v));
            }
            if let Some(v) = facts.payment_method {
                out.push(KeyValue::new("business.payment_method", v));
            }
        }
        out
    }
}

/// A root task's trace id: its UUID's 128 bits (a task id that is no UUID is hashed).
pub fn own_trace_id(task_id: &str) -> TraceId {
    match uuid::Uuid::parse_str(task_id) {
        Ok(u) => TraceId::from_bytes(*u.as_bytes()),
        Err(_) => {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&hash(&[task_id, "trace-a"]).to_be_bytes());
            bytes[8..].copy_from_slice(&hash(&[task_id, "trace-b"]).to_be_bytes());
            TraceId::from_bytes(bytes)
        }
    }
}

/// A task's span id.
pub fn task_span_id(task_id: &str) -> SpanId {
    SpanId::from_bytes(nonzero(hash(&[task_id])).to_be_bytes())
}

/// A step attempt's span id.
pub fn attempt_span_id(task_id: &str, step: &str, attempt: u32) -> SpanId {
    SpanId::from_bytes(nonzero(hash(&[task_id, step, &attempt.to_string()])).to_be_bytes())
}

/// The W3C `traceparent` of a task's step attempt: what a task it creates is stored with.
pub fn traceparent(trace: TraceId, task_id: &str, step: &str, attempt: u32) -> String {
    format!("00-{trace}-{}-01", attempt_span_id(task_id, step, attempt))
}

/// The trace id of a task created under `traceparent`, or of a root task `task_id`.
pub fn trace_of(task_id: &str, traceparent: Option<&str>) -> TraceId {
    traceparent
        .and_then(parse_traceparent)
        .map_or_else(|| own_trace_id(task_id), |(trace, _)| trace)
}

/// `00-<32 hex>-<16 hex>-<2 hex>`, with non-zero ids; anything else is `None`.
pub fn parse_traceparent(text: &str) -> Option<(TraceId, SpanId)> {
    let mut parts = text.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2
    {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok().filter(|t| *t != TraceId::INVALID)?;
    let span = SpanId::from_hex(span).ok().filter(|s| *s != SpanId::INVALID)?;
    Some((trace, span))
}

/// `url` without the user and password it may carry (for messages and logs).
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://[credentials]@{host}{path}"),
        None => url.to_string(),
    }
}

/// FNV-1a over the parts, each ended by a zero byte: stable across builds and platforms.
fn hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn nonzero(h: u64) -> u64 {
    if h == 0 {
        1
    } else {
        h
    }
}

fn time(ms: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The background sender: batches of up to `BATCH`, sent when full or after `LINGER`.
async fn send(
    exporter: opentelemetry_otlp::SpanExporter,
    mut rx: mpsc::Receiver<SpanData>,
    endpoint: String,
    pending: std::sync::Arc<AtomicU64>,
) {
    let mut last_warning: Option<std::time::Instant> = None;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // Wait for the first span, gather for a while, then take what came (no timer per span).
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return; // the engine is gone
        }
        if batch.len() < BATCH {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(_) => break,
                }
            }
        }
        let batch = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        let n = batch.len();
        let result = exporter.export(batch).await;
        pending.fetch_sub(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        if let Err(e) = result {
            let due = last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(60));
            if due {
                tracing::warn!(
                    spans = n,
                    "cannot export traces to {endpoint} (they are dropped; workflows go on): {e}"
                );
                last_warning = Some(std::time::Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_traceparents_round_trip() {
        let id = "019b0c3e-6b4f-7e1a-9c3d-0123456789ab";
        assert_eq!(own_trace_id(id).to_string(), "019b0c3e6b4f7e1a9c3d0123456789ab");
        assert_eq!(task_span_id(id), task_span_id(id));
        assert_ne!(attempt_span_id(id, "s", 1), attempt_span_id(id, "s", 2));
        let tp = traceparent(own_trace_id(id), id, "execute_refund_workflow", 1);
        let (trace, span) = parse_traceparent(&tp).unwrap();
        assert_eq!(trace, own_trace_id(id));
        assert_eq!(span, attempt_span_id(id, "execute_refund_workflow", 1));
        assert_eq!(trace_of("child", Some(&tp)), own_trace_id(id));
        assert_eq!(
            redact("http://user:secretpw@127.0.0.1:4318/v1/traces"),
            "http://[credentials]@127.0.0.1:4318/v1/traces"
        );
        assert!(Tracer::start("ftp://user:pw@127.0.0.1:1")
            .unwrap_err()
            .contains("ftp://[credentials]@127.0.0.1:1"));
        for bad in [
            "",
            "00-0-0-01",
            "01-019b0c3e6b4f7e1a9c3d0123456789ab-0123456789abcdef-01",
            &format!("00-{}-0000000000000000-01", "1".repeat(32)),
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
