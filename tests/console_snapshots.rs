//! The console's screens, rendered into ratatui's `TestBackend` at 120×40 and 80×24 and
//! compared with `insta` snapshots (text only; colours come from the theme).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::json;
use std::sync::Arc;
use taskdeck::console::app::{App, HeaderInfo, Mode, Update};
use taskdeck::console::input::TextArea;
use taskdeck::console::model::ViewModel;
use taskdeck::console::theme::Theme;
use taskdeck::console::{views, workflow_entries};
use taskdeck::engine::Event;
use taskdeck::handlers::Registry;
use taskdeck::model::{Approval, ApprovalRequest, ErrorInfo, Step, StepState, Task, TaskState};
use taskdeck::services::Services;
use taskdeck::workflow::{Catalog, Source};

const NOW: i64 = 1_795_000_000_000; // 2026-11-18T…, fixed so clocks and ages are stable

fn catalog() -> Arc<Catalog> {
    let registry = Registry::standard(Arc::new(Services::new(false)));
    Arc::new(Catalog::load(&[Source::Bundled], &|h| registry.contains(h)).unwrap())
}

/// A task of a bundled workflow with the given step states (attempts = 1 unless pending).
fn task(
    catalog: &Catalog,
    workflow: &str,
    n: u32,
    state: TaskState,
    steps: &[StepState],
    age_s: i64,
) -> Task {
    let w = catalog.resolve(workflow).unwrap();
    let t = &w.template;
    // Ids sort by creation time, as UUIDv7 ids do.
    let id = format!("01a2{:08x}-0000-7000-8000-0000{n:08x}", 1_000_000 - age_s);
    Task {
        id: id.clone(),
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        version: t.version.to_string(),
        state,
        context: t.sample_context.clone().unwrap_or(json!({})),
        initiator: "sarah".into(),
        parent: None,
        correlation_id: None,
        origin_key: None,
        traceparent: None,
        classification: taskdeck::workflow::classification::classify(
            &t.classified,
            t.sample_context.as_ref().unwrap_or(&json!({})),
        ),
        seq: 0,
        search_terms: Vec::new(),
        created_at: NOW - age_s * 1000,
        updated_at: NOW - age_s * 1000 + 500,
        steps: t
            .steps
            .iter()
            .zip(steps.iter().chain(std::iter::repeat(&StepState::Pending)))
            .map(|(s, st)| Step {
                retry: s.retry.clone(),
                timeout_ms: s.timeout_ms,
                state: *st,
                attempts: u32::from(*st != StepState::Pending),
                results: (*st == StepState::Complete).then(|| json!({ "ok": true, "step": s.name })),
                idempotency_key: format!("{id}/{}", s.name),
                ..Step::new(&s.name, &s.handler, s.depends_on.clone())
            })
            .collect(),
    }
}

fn event(n: u64, name: &str, task: &Task, step: Option<&str>, payload: serde_json::Value) -> Arc<Event> {
    Arc::new(Event {
        seq: n,
        at: NOW - 2000 + n as i64 * 100,
        name: name.into(),
        task_id: task.id.clone(),
        workflow: task.workflow_ref(),
        step: step.map(String::from),
        custom: false,
        payload,
    })
}

fn app() -> App {
    use StepState::*;
    let catalog = catalog();
    let mut checkout = task(
        &catalog,
        "ecommerce/process_order",
        1,
        TaskState::InProgress,
        &[Complete, WaitingForRetry],
        12,
    );
    let pay = &mut checkout.steps[1];
    pay.attempts = 2;
    pay.next_attempt_at = Some(NOW + 3_400);
    pay.last_error = Some(ErrorInfo {
        kind: "retryable".into(),
        code: Some("RATE_LIMITED".into()),
        message:
            "payment.process_payment: rate_limited (injected fault) — rate limited (scenario black_friday)"
                .into(),
    });
    let mut refund = task(
        &catalog,
        "customer_success/process_refund",
        7,
        TaskState::InProgress,
        &[Complete, Complete, AwaitingApproval],
        40,
    );
    refund.initiator = "priya".into();
    refund.steps[2].approval = Some(Approval {
        request: ApprovalRequest {
            summary: "Refund $120.00 on TICKET-98765: Product defect reported by customer".into(),
            amount: Some(12000),
            ticket: Some("TICKET-98765".into()),
            customer: Some("CUST-54321".into()),
            policy_notes: Some(
                "standard tier: refunds up to 20000 cents; above 10000 cents a manager approves".into(),
            ),
            sealed_amount: None,
            requester: "priya".into(),
            required_role: "manager".into(),
            timeout_seconds: 300,
        },
        requested_at: NOW - 35_000,
        expires_at: NOW + 265_000,
        decision: None,
    });
    let tasks = vec![
        refund,
        task(
            &catalog,
            "ecommerce/process_order",
            2,
            TaskState::Complete,
            &[Complete; 5],
            340,
        ),
        task(
            &catalog,
            "data_pipeline/customer_analytics",
            3,
            TaskState::Error,
            &[Complete, Complete, Complete, Complete, Complete, Complete, Error],
            95,
        ),
        task(
            &catalog,
            "microservices/user_registration",
            4,
            TaskState::InProgress,
            &[Complete, InProgress, Complete],
            3,
        ),
        task(
            &catalog,
            "data_pipeline/customer_analytics",
            5,
            TaskState::InProgress,
            &[Complete, WaitingForRetry, InProgress, Pending],
            7,
        ),
        task(&catalog, "demo/release_pipeline", 6, TaskState::Pending, &[], 1),
        checkout,
    ];
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let info = HeaderInfo {
        endpoint: "api 127.0.0.1:7420".into(),
        data_dir: "~/.local/share/taskdeck".into(),
        durability: "immediate".into(),
        operator: "sarah (admin, no token)".into(),
        read_only_flag: false,
    };
    let mut app = App::new(
        ViewModel::new(workflow_entries(&catalog)),
        Theme::load("dark").unwrap(),
        info,
        catalog,
        tx,
    );
    app.now = NOW;
    app.identity = taskdeck::auth::Identity::local("sarah");
    let events: Vec<_> = vec![
        event(1, "task.started", &tasks[3], None, json!({})),
        event(
            2,
            "step.completed",
            &tasks[3],
            Some("create_user_account"),
            json!({}),
        ),
        event(
            3,
            "step.execution_requested",
            &tasks[3],
            Some("setup_billing_profile"),
            json!({}),
        ),
        event(
            4,
            "step.failed",
            &tasks[6],
            Some("process_payment"),
            json!({ "error": { "kind": "retryable", "message": "rate limited" } }),
        ),
        event(
            5,
            "step.retry_scheduled",
            &tasks[6],
            Some("process_payment"),
            json!({ "next_attempt": 3, "delay_ms": 3400, "backoff_type": "server_requested" }),
        ),
    ];
    app.apply(Update::Tasks(tasks));
    for e in events {
        app.apply(Update::Event(e));
    }
    app
}

fn key(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| views::draw(f, app)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            let line: String = (0..width).map(|x| buffer[(x, y)].symbol().to_string()).collect();
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Snapshots `setup`'s screen at both sizes.
fn both(name: &str, setup: impl Fn(&mut App)) {
    for (w, h) in [(120, 40), (80, 24)] {
        let mut app = app();
        setup(&mut app);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen(&app, w, h));
    }
}

/// The incident as the engine's summary would have it: checkouts fail for the last two
/// minutes, update_inventory runs into its 15 s timeout, the SLA is missed and revenue lost.
fn incident_summary() -> taskdeck::telemetry::recent::MetricsSummary {
    use taskdeck::telemetry::recent::{Recent, SignalNote};
    let mut r = Recent::default();
    let checkout = "monitored_checkout";
    for slice in 0..60i64 {
        let at = NOW - (59 - slice) * 10_000;
        let incident = slice >= 48;
        for n in 0..6 {
            let failed = incident && n % 2 == 0;
            r.task_ended(at, "blog_examples", !failed);
            r.revenue(at, "blog_examples", !failed, false, 129.97);
            if !failed {
                r.sla(at, "blog_examples", !incident);
            }
            let inventory_ms = if incident { 15_000 } else { 400 + n as u64 * 10 };
            let task = format!("01a2{slice:08x}-0000-7000-8000-0000{n:08x}");
            r.attempt(
                at,
                "blog_examples",
                checkout,
                "update_inventory",
                &task,
                inventory_ms,
                3.0,
            );
            r.attempt(at, "blog_examples", checkout, "process_payment", &task, 900, 5.0);
            r.attempt(at, "blog_examples", checkout, "validate_cart", &task, 12, 2.0);
        }
        r.task_ended(at, "ecommerce", true);
        r.attempt(
            at,
            "ecommerce",
            "process_order",
            "process_payment",
            "01a20000-0000-7000-8000-0000000000e1",
            250,
            5.0,
        );
    }
    r.signal(
        "blog_examples",
        SignalNote {
            name: "business.performance.bottleneck".into(),
            at: NOW - 4_000,
            workflow: checkout.into(),
            step: Some("update_inventory".into()),
            task: "01a2000003b-0000-7000-8000-000000000000".into(),
            degradation_factor: Some(5.0),
        },
    );
    r.summary(NOW, &["customer_success".into(), "payments".into()], &|_| true)
}

#[test]
fn metrics_view_during_the_inventory_incident() {
    both("metrics", |app| {
        app.apply(Update::Summary(Box::new(incident_summary())));
        typed(app, ":metrics");
        key(app, KeyCode::Enter);
    });
}

/// A few journal entries as the engine gives them to a reader without `pii:read`.
fn journal() -> Vec<taskdeck::audit::AuditEntry> {
    use taskdeck::audit::{AuditEntry, AuditRecord};
    let entry =
        |seq: u64, actor: &str, action: &str, resource: &str, outcome: &str, detail: &str| AuditEntry {
            seq,
            record: AuditRecord {
                outcome: outcome.into(),
                ..AuditRecord::new(
                    NOW - (40 - seq as i64) * 1_000,
                    actor,
                    action,
                    resource.into(),
                    detail.into(),
                )
            },
            prev_hash: String::new(),
            hash: String::new(),
        };
    vec![
        entry(39, "jane", "step.transition", "task/01a2000001b-0000-7000-8000-000000000000/step/get_manager_approval", "success", "awaiting_approval → complete: defect confirmed"),
        entry(38, "priya", "authz.denied", "task/01a2000001b-0000-7000-8000-000000000000/step/get_manager_approval", "denied", "approve: priya requested this and cannot approve their own request"),
        entry(37, "vic", "authz.denied", "namespace/customer_success", "denied", "submit: step-up authentication required: customer_success/process_refund is sensitive"),
        entry(36, "ip:127.0.0.1", "authn.failed", "api", "denied", "the token has expired; issue a new one with `taskdeck token issue`"),
        entry(35, "priya", "step.transition", "task/01a2000001b-0000-7000-8000-000000000000/step/validate_refund_request", "success", "pending → in_progress: email [REDACTED] checked"),
        entry(34, "root", "policy.deployed", "policy", "success", "first loaded permission policy workflows/policy.yaml (5 role(s), 2 sensitive workflow(s), step-up 30 min)"),
    ]
}

#[test]
fn audit_view_of_a_refund_day() {
    both("audit", |app| {
        typed(app, ":audit");
        key(app, KeyCode::Enter);
        app.apply(Update::Audit(journal()));
    });
}

/// Two tasks marked with Space: the header counts them, their ids carry `✓`.
#[test]
fn tasks_screen_with_marked_tasks() {
    both("tasks_marked", |app| {
        key(app, KeyCode::Char(' '));
        key(app, KeyCode::Char(' '));
    });
}

/// The events pane focused, scrolled one up, its event's payload open.
#[test]
fn an_events_payload() {
    both("event_payload", |app| {
        key(app, KeyCode::Tab);
        key(app, KeyCode::Up);
        key(app, KeyCode::Enter);
    });
}

/// `--read-only` (or a viewer): the header says so and the key bar offers no key that changes
/// a task.
#[test]
fn tasks_screen_read_only() {
    both("tasks_read_only", |app| app.read_only = true);
}

#[test]
fn tasks_screen() {
    both("tasks", |_| {});
}

#[test]
fn task_view_mid_run_with_a_retry_countdown() {
    both("task_view_retry", |app| {
        typed(app, "/process");
        key(app, KeyCode::Enter);
        key(app, KeyCode::Enter); // open the in-progress checkout: process_payment, retrying, is selected
    });
}

#[test]
fn task_view_of_a_parallel_pipeline() {
    both("task_view_pipeline", |app| {
        typed(app, ":state error");
        key(app, KeyCode::Enter);
        key(app, KeyCode::Enter);
    });
}

#[test]
fn approvals_inbox() {
    both("approvals", |app| {
        typed(app, ":approvals");
        key(app, KeyCode::Enter);
    });
}

#[test]
fn help_overlay() {
    both("help", |app| key(app, KeyCode::Char('?')));
}

#[test]
fn namespaces_pane() {
    both("namespaces", |app| key(app, KeyCode::BackTab));
}

#[test]
fn events_pane_filtered() {
    both("events", |app| {
        key(app, KeyCode::Tab);
        typed(app, "/payment");
        key(app, KeyCode::Enter);
    });
}

#[test]
fn new_task_form() {
    both("form_pick", |app| {
        key(app, KeyCode::Char('n'));
        typed(app, "eco");
    });
    both("form_edit_json_error", |app| {
        key(app, KeyCode::Char('n'));
        typed(app, "registration");
        key(app, KeyCode::Enter);
        key(app, KeyCode::Down);
        key(app, KeyCode::Down);
        typed(app, "x"); // a stray character: the JSON error shows inline
    });
    both("form_edit_schema_errors", |app| {
        key(app, KeyCode::Char('n'));
        typed(app, "registration");
        key(app, KeyCode::Enter);
        if let Mode::Form(form) = &mut app.mode {
            form.editor = TextArea::new("{\n  \"user_info\": { \"name\": \"\", \"plan\": \"gold\" }\n}");
        }
        key(app, KeyCode::Right); // any edit re-validates
    });
}

#[test]
fn command_line_and_confirmation() {
    both("command", |app| typed(app, ":th"));
    both("confirm_cancel", |app| key(app, KeyCode::Char('c')));
}

#[test]
fn the_task_view_state_of_the_countdown_is_text() {
    let mut app = app();
    typed(&mut app, "/process");
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    assert!(app.has_countdown());
    let text = screen(&app, 120, 40);
    assert!(text.contains("retry in 3.4s, attempt 3/3"), "{text}");
    app.now += 1_000;
    assert!(screen(&app, 120, 40).contains("retry in 2.4s, attempt 3/3"));
}

/// Every screen and overlay draws at every size a terminal can have, down to one cell: no
/// layout bound is taken from the terminal's size without a floor (an approvals inbox on a
/// 100×14 terminal once panicked in `clamp`).
#[test]
fn every_screen_draws_at_every_terminal_size() {
    type Setup<'a> = (&'a str, &'a dyn Fn(&mut App));
    let setups: [Setup; 9] = [
        ("payload", &|app| {
            key(app, KeyCode::Tab);
            key(app, KeyCode::Up);
            key(app, KeyCode::Enter);
        }),
        ("audit", &|app| {
            typed(app, ":audit");
            key(app, KeyCode::Enter);
            app.apply(Update::Audit(journal()));
        }),
        ("metrics", &|app| {
            app.apply(Update::Summary(Box::new(incident_summary())));
            typed(app, ":metrics");
            key(app, KeyCode::Enter);
        }),
        ("tasks", &|_| {}),
        ("approvals", &|app| {
            typed(app, ":approvals");
            key(app, KeyCode::Enter);
        }),
        ("task", &|app| key(app, KeyCode::Enter)),
        ("help", &|app| key(app, KeyCode::Char('?'))),
        ("form", &|app| key(app, KeyCode::Char('n'))),
        ("cancel", &|app| key(app, KeyCode::Char('c'))),
    ];
    for (name, setup) in setups {
        let mut app = app();
        setup(&mut app);
        for width in [1u16, 2, 10, 30, 60, 100, 200] {
            for height in [1u16, 2, 3, 5, 8, 14, 24, 60] {
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| screen(&app, width, height)));
                assert!(result.is_ok(), "{name} at {width}x{height} panicked");
            }
        }
    }
}

/// What an operator without `pii:read` is given (the engine reveals per reader) shows as
/// `[REDACTED]` in the inbox and in the open gate, never as an empty cell; the task's title
/// carries its classification.
#[test]
fn masked_fields_read_redacted_in_the_inbox_and_the_gate() {
    let mut app = app();
    let waiting: Vec<std::sync::Arc<taskdeck::model::Task>> =
        app.approvals().into_iter().map(|(t, _)| t).collect();
    assert!(!waiting.is_empty());
    for held in waiting {
        let mut task = (*held).clone();
        if let Some(a) = task.steps[2].approval.as_mut() {
            a.request.amount = None;
            a.request.sealed_amount = Some("[REDACTED]".into());
            a.request.customer = Some("[REDACTED]".into());
        }
        task.classification = taskdeck::workflow::classification::Classification::Restricted;
        app.apply(Update::Tasks(vec![task]));
    }
    typed(&mut app, ":approvals");
    key(&mut app, KeyCode::Enter);
    let text = screen(&app, 120, 40);
    assert!(text.contains("[REDACTED]"), "{text}");
    assert!(!text.contains("$120.00  "), "no amount in the inbox: {text}");
    assert!(text.contains("amount   [REDACTED]"), "{text}");
    assert!(text.contains("restricted"), "{text}");
}
