//! Console frame benchmarks (`cargo bench --bench console`): rendering into ratatui's
//! `TestBackend`, which does the same cell diffing as a real terminal minus the IO.
//!
//! - `tasks_10k/unchanged`: the tasks screen at 120×40 over 10,000 tasks (rows cached).
//! - `tasks_10k/after_update`: the same after one task changed (filter and sort recomputed).
//! - `dag_50_steps`: the task view of a 50-step DAG (10 layers of 5) at 240×60.

use criterion::{criterion_group, criterion_main, Criterion};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::json;
use std::sync::Arc;
use taskdeck::console::app::{App, HeaderInfo, Update};
use taskdeck::console::model::ViewModel;
use taskdeck::console::theme::Theme;
use taskdeck::console::{views, workflow_entries};
use taskdeck::handlers::Registry;
use taskdeck::model::{Step, StepState, Task, TaskState};
use taskdeck::workflow::{Catalog, Source};

fn wide_dag_yaml() -> String {
    let mut y = String::from("namespace: bench\nname: wide\nversion: 1.0.0\nsteps:\n");
    for layer in 0..10 {
        for i in 0..5 {
            y.push_str(&format!("  - name: l{layer}_step_{i}\n    handler: simulate\n"));
            if layer > 0 {
                y.push_str(&format!(
                    "    depends_on: [l{}_step_{i}, l{}_step_{}]\n",
                    layer - 1,
                    layer - 1,
                    (i + 1) % 5
                ));
            }
        }
    }
    y
}

fn task(catalog: &Catalog, workflow: &str, n: usize) -> Task {
    let w = catalog.resolve(workflow).unwrap();
    let t = &w.template;
    let states = [
        StepState::Complete,
        StepState::InProgress,
        StepState::WaitingForRetry,
        StepState::Pending,
    ];
    Task {
        id: format!("01a21600-0000-7000-8000-{n:012x}"),
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        version: t.version.to_string(),
        state: [TaskState::Complete, TaskState::InProgress, TaskState::Error][n % 3],
        context: json!({}),
        initiator: "bench".into(),
        parent: None,
        correlation_id: None,
        origin_key: None,
        traceparent: None,
        classification: Default::default(),
        seq: 0,
        search_terms: Vec::new(),
        created_at: 1_795_000_000_000 - n as i64 * 1000,
        updated_at: 1_795_000_000_000,
        steps: t
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| Step {
                state: states[(i + n) % 4],
                attempts: 1,
                results: Some(json!({ "ok": i })),
                next_attempt_at: Some(1_795_000_003_000),
                ..Step::new(&s.name, &s.handler, s.depends_on.clone())
            })
            .collect(),
    }
}

fn app(tasks: Vec<Task>, catalog: Arc<Catalog>) -> App {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let info = HeaderInfo {
        endpoint: "api 127.0.0.1:7420".into(),
        data_dir: "~/.local/share/taskdeck".into(),
        durability: "immediate".into(),
        operator: "bench".into(),
        read_only_flag: false,
    };
    let mut app = App::new(
        ViewModel::new(workflow_entries(&catalog)),
        Theme::load("dark").unwrap(),
        info,
        catalog,
        tx,
    );
    app.now = 1_795_000_000_000;
    app.apply(Update::Tasks(tasks));
    app
}

fn benches(c: &mut Criterion) {
    let registry = Registry::standard(Arc::new(taskdeck::services::Services::new(false)));
    let sources = [
        Source::Bundled,
        Source::Inline {
            file: "wide.yaml".into(),
            text: wide_dag_yaml(),
        },
    ];
    let catalog = Arc::new(Catalog::load(&sources, &|h| registry.contains(h)).unwrap());
    let workflows = [
        "ecommerce/process_order",
        "data_pipeline/customer_analytics",
        "microservices/user_registration",
    ];
    let tasks: Vec<Task> = (0..10_000).map(|n| task(&catalog, workflows[n % 3], n)).collect();
    let mut big = app(tasks.clone(), catalog.clone());
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();

    let mut group = c.benchmark_group("tasks_10k");
    group.bench_function("unchanged", |b| {
        b.iter(|| {
            terminal.draw(|f| views::draw(f, &big)).unwrap();
        })
    });
    let mut n = 0;
    group.bench_function("after_update", |b| {
        b.iter(|| {
            n += 1;
            let mut changed = tasks[n % tasks.len()].clone();
            changed.updated_at += n as i64;
            big.apply(Update::Tasks(vec![changed]));
            terminal.draw(|f| views::draw(f, &big)).unwrap();
        })
    });
    group.finish();

    let mut dag = app(vec![task(&catalog, "bench/wide", 1)], catalog.clone());
    dag.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    let mut wide = Terminal::new(TestBackend::new(240, 60)).unwrap();
    wide.draw(|f| views::draw(f, &dag)).unwrap();
    let text: String = wide
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    assert!(
        text.contains("╭─"),
        "the 50-step DAG is drawn as a graph, not the tree"
    );
    c.bench_function("dag_50_steps", |b| {
        b.iter(|| {
            wide.draw(|f| views::draw(f, &dag)).unwrap();
        })
    });
}

criterion_group!(console, benches);
criterion_main!(console);
