//! Command-line interface: clap definitions and one function per command. Library calls
//! only; printing happens here, at the edge.

mod output;

use crate::auth::Identity;
use crate::engine::{Engine, EngineConfig, SubmitRequest};
use crate::handlers::Registry;
use crate::model::{short_id, TaskState};
use crate::store::{Durability, SledStore, Store};
use crate::workflow::{Catalog, Source, WorkflowError};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "taskdeck",
    version,
    about = "A terminal operations console with an embedded, durable DAG workflow engine"
)]
pub struct Cli {
    /// Data directory (store, logs). Default: the platform data directory, e.g. ~/.local/share/taskdeck.
    #[arg(long, global = true, env = "TASKDECK_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Extra folder (or file) of workflow YAML, loaded beside the bundled workflows. Repeatable.
    #[arg(long = "workflows", global = true, value_name = "DIR")]
    pub workflows: Vec<PathBuf>,
    /// When a transition is on disk: `immediate` (flushed before it is acknowledged) or `relaxed`.
    #[arg(long, global = true, value_enum, default_value_t = Durability::Immediate, env = "TASKDECK_DURABILITY")]
    pub durability: Durability,
    /// Most steps running at once.
    #[arg(long, global = true, default_value_t = 64, value_name = "N")]
    pub concurrency: usize,
    /// Act as the operator this token names (`taskdeck token issue`); without one, the local user as admin.
    #[arg(
        long,
        global = true,
        env = "TASKDECK_TOKEN",
        value_name = "JWT",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Console theme: dark, light, high-contrast, screencast, or a path to a theme file.
    #[arg(long, value_name = "NAME", env = "TASKDECK_THEME", default_value = crate::console::theme::DEFAULT)]
    pub theme: String,
    /// Run demo traffic inside the console (live work, retries and failures within seconds).
    #[arg(long)]
    pub demo: bool,
    /// Record the console session as an asciinema v2 file.
    #[arg(long, value_name = "FILE.cast")]
    pub record: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow files; with no PATH, the whole loaded catalog.
    Validate { paths: Vec<PathBuf> },
    /// List the workflows in the catalog.
    Workflows,
    /// Create a task from NS/NAME[@VERSION].
    Submit {
        workflow: String,
        /// The task context as JSON.
        #[arg(long, conflicts_with = "context_file")]
        context: Option<String>,
        /// Read the task context from a JSON file.
        #[arg(long, value_name = "FILE")]
        context_file: Option<PathBuf>,
        /// Run the engine here until the task finishes or waits on a person; exit 0 if it completed, 2 otherwise.
        #[arg(long)]
        wait: bool,
        /// Print the task as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the engine headless, resuming unfinished tasks (Ctrl-C stops it).
    Run {
        /// Exit once no task can make progress.
        #[arg(long)]
        until_idle: bool,
    },
    /// Submit a steady, seeded mix of the blog workflows with injected faults, and run them.
    Demo {
        /// Tasks per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// How often tasks meet faults: `low` (recoverable, ~1 in 10) or `high` (~4 in 10, some permanent).
        #[arg(long, value_enum, default_value_t = crate::demo::FaultLevel::Low)]
        faults: crate::demo::FaultLevel,
        /// The same seed submits the same tasks.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// How long to submit, e.g. 30s or 2m; without it, until Ctrl-C.
        #[arg(long, value_parser = crate::demo::parse_duration)]
        duration: Option<Duration>,
    },
    /// Signed operator identities.
    #[command(subcommand)]
    Token(TokenCommand),
    /// List the steps waiting for a person's decision.
    Approvals {
        #[arg(long)]
        json: bool,
    },
    /// Approve a step waiting for approval.
    Approve {
        task: String,
        step: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Deny a step waiting for approval (a reason is required).
    Deny {
        task: String,
        step: String,
        #[arg(long)]
        reason: String,
    },
    /// List tasks.
    Tasks {
        #[arg(long)]
        namespace: Option<String>,
        #[arg(long)]
        state: Option<TaskState>,
        #[arg(long)]
        json: bool,
    },
    /// Show one task with its steps, results and transitions.
    Show {
        task: String,
        #[arg(long)]
        json: bool,
    },
    /// Give a failed task's failed steps a fresh attempt budget.
    Retry {
        task: String,
        #[arg(long, default_value = "operator retry")]
        reason: String,
    },
    /// Cancel a task.
    Cancel {
        task: String,
        #[arg(long, default_value = "cancelled by operator")]
        reason: String,
    },
    /// Complete a pending or failed step with results given by hand.
    Resolve {
        task: String,
        step: String,
        /// The step's results as JSON.
        #[arg(long)]
        results: String,
        #[arg(long, default_value = "resolved by operator")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Sign a token (HS256, with this data directory's key) and print it.
    Issue {
        #[arg(long)]
        sub: String,
        #[arg(long)]
        team: String,
        /// viewer, operator (or agent), manager, admin or service.
        #[arg(long)]
        role: crate::auth::Role,
        /// Lifetime, e.g. 8h, 30m.
        #[arg(long, default_value = "8h", value_parser = crate::demo::parse_duration)]
        ttl: Duration,
    },
    /// Show whom a token names (and check it).
    Show { token: String },
}

/// Exit codes: 0 success, 1 error, 2 a waited-for task did not complete.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let data = match data_dir(&cli) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 1;
        }
    };
    let _log = crate::logging::init(&data);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(dispatch(cli, data)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn data_dir(cli: &Cli) -> Result<PathBuf> {
    let dir = match &cli.data {
        Some(d) => d.clone(),
        None => dirs::data_dir()
            .ok_or_else(|| anyhow!("no platform data directory; pass --data DIR or set TASKDECK_DATA"))?
            .join("taskdeck"),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    Ok(dir)
}

/// Who is acting: the token's identity, or the local user as admin.
fn identity(cli: &Cli, data: &std::path::Path) -> Result<Identity> {
    match &cli.token {
        Some(token) => {
            let key = crate::auth::token::signing_key(data)?;
            Ok(crate::auth::token::verify(&key, token)?)
        }
        None => Ok(Identity::local(&crate::engine::default_operator())),
    }
}

fn catalog_sources(cli: &Cli) -> Vec<Source> {
    let mut sources = vec![Source::Bundled];
    sources.extend(cli.workflows.iter().cloned().map(Source::Path));
    sources
}

fn load_catalog(cli: &Cli, registry: &Registry) -> Result<Catalog> {
    Catalog::load(&catalog_sources(cli), &|h| registry.contains(h)).map_err(workflow_errors)
}

fn workflow_errors(errors: Vec<WorkflowError>) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    anyhow!("invalid workflows:\n{}", lines.join("\n"))
}

struct Opened {
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    registry: Registry,
    identity: Identity,
}

/// The handlers the CLI knows (for validating workflows): built-ins plus the blog workflows,
/// over simulated services that keep nothing. Commands that run steps use `open`'s.
fn registry() -> Registry {
    Registry::standard(Arc::new(crate::services::Services::new(true)))
}

fn open(cli: &Cli, data: &std::path::Path) -> Result<Opened> {
    let identity = identity(cli, data)?;
    let catalog = Arc::new(load_catalog(cli, &registry())?);
    let holder = match &cli.command {
        None => "console".to_string(),
        Some(c) => format!("{c:?}")
            .split([' ', '(', '{'])
            .next()
            .unwrap_or("")
            .to_lowercase(),
    };
    let sled = SledStore::open(data, cli.durability, &holder)?;
    // The simulated systems keep their records beside the store: they stand for remote
    // services that outlive this process.
    let services = crate::services::Services::durable(true, &crate::services::Backing::sled(sled.db()));
    let registry = Registry::standard(Arc::new(services));
    let store: Arc<dyn Store> = Arc::new(sled);
    Ok(Opened {
        store,
        catalog,
        registry,
        identity,
    })
}

fn engine(cli: &Cli, ctx: &Opened, dispatch: bool) -> Result<Engine> {
    let config = EngineConfig {
        concurrency: cli.concurrency.max(1),
        dispatch,
        ..EngineConfig::default()
    };
    Ok(Engine::start(
        config,
        ctx.store.clone(),
        ctx.catalog.clone(),
        ctx.registry.clone(),
    )?)
}

async fn dispatch(cli: Cli, data: PathBuf) -> Result<i32> {
    let Some(command) = &cli.command else {
        return console(&cli, &data).await;
    };
    match command {
        Command::Validate { paths } => validate(&cli, paths),
        Command::Workflows => {
            let ctx = load_catalog(&cli, &registry())?;
            for w in ctx.iter() {
                let t = &w.template;
                println!(
                    "{:<48} {} steps  {}",
                    t.reference(),
                    t.steps.len(),
                    t.description.as_deref().unwrap_or("")
                );
            }
            Ok(0)
        }
        Command::Submit {
            workflow,
            context,
            context_file,
            wait,
            json,
        } => {
            let context = read_context(context.as_deref(), context_file.as_ref())?;
            let ctx = open(&cli, &data)?;
            let engine = engine(&cli, &ctx, *wait)?;
            let mut events = engine.subscribe();
            let task = engine
                .submit(SubmitRequest::new(
                    workflow.clone(),
                    context,
                    ctx.identity.clone(),
                ))
                .await?;
            if !*wait {
                if *json {
                    println!("{}", serde_json::to_string_pretty(&output::task_json(&task))?);
                } else {
                    println!("{}", task.id);
                }
                engine.shutdown(Duration::ZERO).await;
                return Ok(0);
            }
            if !*json {
                println!("{}", task.id);
            }
            let id = task.id.clone();
            let progress = tokio::spawn(async move {
                while let Ok(e) = events.recv().await {
                    if e.task_id == id {
                        eprintln!("{}", e.line());
                    }
                }
            });
            let done = engine.wait_for(&task.id).await?;
            engine.shutdown(Duration::from_secs(10)).await;
            progress.abort();
            let waiting = done.execution_status() == crate::model::ExecutionStatus::AwaitingDecision;
            if *json {
                println!("{}", serde_json::to_string_pretty(&output::task_json(&done))?);
            } else if waiting {
                println!("{} waits for approval (see `taskdeck approvals`)", done.id);
            } else {
                println!("{} {}", done.id, done.state);
            }
            Ok(if done.state == TaskState::Complete { 0 } else { 2 })
        }
        Command::Run { until_idle } => run(&cli, &data, *until_idle).await,
        Command::Token(TokenCommand::Issue { sub, team, role, ttl }) => {
            let key = crate::auth::token::signing_key(&data)?;
            println!(
                "{}",
                crate::auth::token::issue(&key, &Identity::new(sub, team, *role), *ttl)?
            );
            Ok(0)
        }
        Command::Token(TokenCommand::Show { token }) => {
            let key = crate::auth::token::signing_key(&data)?;
            let who = crate::auth::token::verify(&key, token)?;
            let expires = who
                .expires_at
                .map(crate::model::format_timestamp)
                .unwrap_or_else(|| "never".into());
            println!("{}  expires {expires}", who.describe());
            Ok(0)
        }
        Command::Approvals { json } => {
            let ctx = open(&cli, &data)?;
            let coordinator = crate::auth::Coordinator::new(ctx.catalog.clone());
            let now = crate::engine::Clock::new().now();
            let mut waiting = Vec::new();
            for task in ctx.store.active_tasks()? {
                let readable = coordinator
                    .check(
                        &ctx.identity,
                        crate::auth::Request::Read {
                            namespace: &task.namespace,
                        },
                    )
                    .is_ok();
                for step in task
                    .steps
                    .iter()
                    .filter(|s| s.state == crate::model::StepState::AwaitingApproval)
                {
                    // A request past its deadline can no longer be decided: not listed.
                    if let (true, Some(a)) = (readable, &step.approval) {
                        if a.expires_at <= now {
                            continue;
                        }
                        waiting.push((task.clone(), step.name.clone(), a.clone()));
                    }
                }
            }
            if *json {
                let list: Vec<Value> = waiting
                    .iter()
                    .map(|(t, step, a)| serde_json::json!({ "task": t.id, "workflow": t.workflow_ref(), "step": step, "request": a.request, "requested_at": crate::model::format_timestamp(a.requested_at), "expires_at": crate::model::format_timestamp(a.expires_at) }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if waiting.is_empty() {
                println!("nothing waits for approval");
            } else {
                for (t, step, a) in &waiting {
                    let amount = a
                        .request
                        .amount
                        .map(|c| format!("${:.2}", c as f64 / 100.0))
                        .unwrap_or_default();
                    println!(
                        "{}  {}  {step}  {amount}  requested by {}  needs {}  expires in {}s  {}",
                        short_id(&t.id),
                        t.workflow_ref(),
                        a.request.requester,
                        a.request.required_role,
                        crate::model::millis_until(now, a.expires_at).div_ceil(1000),
                        a.request.summary
                    );
                }
            }
            Ok(0)
        }
        Command::Approve { task, step, note } => {
            admin(
                &cli,
                &data,
                Admin::Decide {
                    task,
                    step,
                    approve: true,
                    note: note.clone(),
                },
            )
            .await
        }
        Command::Deny { task, step, reason } => {
            admin(
                &cli,
                &data,
                Admin::Decide {
                    task,
                    step,
                    approve: false,
                    note: Some(reason.clone()),
                },
            )
            .await
        }
        Command::Demo {
            rate,
            faults,
            seed,
            duration,
        } => demo_traffic(&cli, &data, *rate, *faults, *seed, *duration).await,
        Command::Tasks {
            namespace,
            state,
            json,
        } => {
            let ctx = open(&cli, &data)?;
            let coordinator = crate::auth::Coordinator::new(ctx.catalog.clone());
            let tasks: Vec<_> = ctx
                .store
                .tasks()?
                .into_iter()
                .filter(|t| coordinator.may_read(&ctx.identity, t))
                .filter(|t| namespace.as_ref().is_none_or(|ns| &t.namespace == ns))
                .filter(|t| state.is_none_or(|s| t.state == s))
                .collect();
            if *json {
                let list: Vec<Value> = tasks.iter().map(output::task_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!(
                    "{}",
                    output::tasks_table(&tasks, crate::engine::Clock::new().now())
                );
            }
            Ok(0)
        }
        Command::Show { task, json } => {
            let ctx = open(&cli, &data)?;
            let task = crate::engine::find_task(&*ctx.store, &ctx.catalog, &ctx.identity, task)?;
            let transitions = ctx.store.transitions(&task.id)?;
            if *json {
                let mut v = output::task_json(&task);
                v["transitions"] = transitions.iter().map(output::transition_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", output::task_detail(&task, &transitions));
            }
            Ok(0)
        }
        Command::Retry { task, reason } => admin(&cli, &data, Admin::Retry { task, reason }).await,
        Command::Cancel { task, reason } => admin(&cli, &data, Admin::Cancel { task, reason }).await,
        Command::Resolve {
            task,
            step,
            results,
            reason,
        } => {
            let results: Value = serde_json::from_str(results).context("--results is not valid JSON")?;
            admin(
                &cli,
                &data,
                Admin::Resolve {
                    task,
                    step,
                    results,
                    reason,
                },
            )
            .await
        }
    }
}

/// An operator command run against the store without executing steps.
enum Admin<'a> {
    Decide {
        task: &'a str,
        step: &'a str,
        approve: bool,
        note: Option<String>,
    },
    Retry {
        task: &'a str,
        reason: &'a str,
    },
    Cancel {
        task: &'a str,
        reason: &'a str,
    },
    Resolve {
        task: &'a str,
        step: &'a str,
        results: Value,
        reason: &'a str,
    },
}

async fn admin(cli: &Cli, data: &std::path::Path, action: Admin<'_>) -> Result<i32> {
    let ctx = open(cli, data)?;
    let engine = engine(cli, &ctx, false)?;
    let who = ctx.identity.clone();
    let result = match action {
        Admin::Retry { task, reason } => engine.retry(task, &who, reason).await,
        Admin::Cancel { task, reason } => engine.cancel(task, &who, reason).await,
        Admin::Resolve {
            task,
            step,
            results,
            reason,
        } => engine.resolve(task, step, results, &who, reason).await,
        Admin::Decide {
            task,
            step,
            approve,
            note,
        } => engine.decide(task, step, approve, &who, note).await,
    };
    engine.shutdown(Duration::ZERO).await;
    let task = result?;
    println!("{} {}", task.id, task.state);
    Ok(0)
}

fn read_context(inline: Option<&str>, file: Option<&PathBuf>) -> Result<Value> {
    match (inline, file) {
        (Some(text), _) => {
            serde_json::from_str(text).map_err(|e| anyhow!("--context is not valid JSON: {e}"))
        }
        (None, Some(path)) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| anyhow!("{}: not valid JSON: {e}", path.display()))
        }
        (None, None) => Ok(Value::Object(Default::default())),
    }
}

fn validate(cli: &Cli, paths: &[PathBuf]) -> Result<i32> {
    let registry = registry();
    let sources: Vec<Source> = if paths.is_empty() {
        catalog_sources(cli)
    } else {
        paths.iter().cloned().map(Source::Path).collect()
    };
    match Catalog::load(&sources, &|h| registry.contains(h)) {
        Ok(catalog) => {
            println!("{} workflow(s) valid", catalog.len());
            Ok(0)
        }
        Err(errors) => {
            for e in errors {
                println!("{e}");
            }
            Ok(1)
        }
    }
}

async fn run(cli: &Cli, data: &std::path::Path, until_idle: bool) -> Result<i32> {
    let ctx = open(cli, data)?;
    let engine = engine(cli, &ctx, true)?;
    let mut events = engine.subscribe();
    let printer = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => println!("{}", e.line()),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => println!("… {n} events skipped"),
                Err(_) => break,
            }
        }
    });
    if until_idle {
        tokio::select! {
            r = engine.when_idle() => r?,
            _ = shutdown_signal() => {}
        }
    } else {
        shutdown_signal().await;
    }
    engine.shutdown(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    printer.abort();
    let tasks = ctx.store.tasks()?;
    let count = |s: TaskState| tasks.iter().filter(|t| t.state == s).count();
    println!(
        "tasks: {} complete, {} error, {} cancelled, {} unfinished",
        count(TaskState::Complete),
        count(TaskState::Error),
        count(TaskState::Cancelled),
        count(TaskState::Pending) + count(TaskState::InProgress)
    );
    Ok(0)
}

/// `taskdeck demo`: submits traffic at `rate` and prints a summary line every second; after
/// the duration (or Ctrl-C) it stops submitting and waits up to a minute for tasks in flight
/// (a second Ctrl-C stops at once).
async fn demo_traffic(
    cli: &Cli,
    data: &std::path::Path,
    rate: f64,
    faults: crate::demo::FaultLevel,
    seed: u64,
    duration: Option<Duration>,
) -> Result<i32> {
    use crate::demo::{submit_next, Summary, Traffic};
    use tokio::sync::broadcast::error::RecvError;
    if !(crate::demo::MIN_RATE..=crate::demo::MAX_RATE).contains(&rate) {
        bail!(
            "--rate must be between {} and {} tasks per second, got {rate}",
            crate::demo::MIN_RATE,
            crate::demo::MAX_RATE
        );
    }
    let ctx = open(cli, data)?;
    let engine = engine(cli, &ctx, true)?;
    let mut events = engine.subscribe();
    let mut traffic = Traffic::new(seed, faults);
    let mut summary = Summary::default();
    let started = tokio::time::Instant::now();
    let mut submit = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut report = tokio::time::interval(Duration::from_secs(1));
    report.tick().await;
    let stop_at = duration.map(|d| started + d);
    let until = match duration {
        Some(d) => format!("for {:.0?}", d),
        None => "until Ctrl-C".into(),
    };
    let level = format!("{faults:?}").to_lowercase();
    println!(
        "taskdeck demo: {rate} tasks/s, {level} faults, seed {seed}, {until} (data in {})",
        data.display()
    );
    let line = |s: &Summary| {
        format!(
            "[{:>5.1}s] submitted {:>5}  complete {:>5}  error {:>4}  in flight {:>4}  retries {:>5}  permanent errors {:>4}",
            started.elapsed().as_secs_f64(),
            s.submitted,
            s.complete,
            s.failed,
            s.in_flight(),
            s.retries,
            s.permanent_errors
        )
    };
    let ctrl_c = shutdown_signal();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = submit.tick() => submit_next(&engine, &mut traffic, &mut summary).await?,
            _ = report.tick() => println!("{}", line(&summary)),
            event = events.recv() => match event {
                Ok(e) => summary.observe(&e),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
            _ = sleep_until(stop_at) => break,
            _ = &mut ctrl_c => break,
        }
    }
    println!(
        "stopped submitting; waiting up to 60 s for {} tasks in flight",
        summary.in_flight()
    );
    {
        let idle = engine.when_idle();
        tokio::pin!(idle);
        let grace = tokio::time::sleep(Duration::from_secs(60));
        tokio::pin!(grace);
        let second_ctrl_c = shutdown_signal();
        tokio::pin!(second_ctrl_c);
        loop {
            tokio::select! {
                _ = &mut idle => break,
                _ = &mut grace => break,
                _ = &mut second_ctrl_c => break,
                _ = report.tick() => println!("{}", line(&summary)),
                event = events.recv() => if let Ok(e) = event { summary.observe(&e) },
            }
        }
    }
    while let Ok(e) = events.try_recv() {
        summary.observe(&e);
    }
    engine.shutdown(Duration::from_secs(5)).await;
    println!("{}", line(&summary));
    println!("inspect with: taskdeck tasks --state error   |   taskdeck show ID");
    Ok(0)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `taskdeck` with no command: the console, with the engine embedded.
async fn console(cli: &Cli, data: &std::path::Path) -> Result<i32> {
    use std::io::IsTerminal;
    let mut theme = crate::console::theme::Theme::load(&cli.theme)?;
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        theme = theme.without_colour();
    }
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!("the console needs a terminal; for headless use try `taskdeck run`, `taskdeck submit --wait` or `taskdeck demo` (see --help)");
    }
    let ctx = open(cli, data)?;
    let ctx_identity = ctx.identity.clone();
    let engine = Arc::new(engine(cli, &ctx, true)?);
    let options = crate::console::Options {
        identity: ctx.identity.clone(),
        theme,
        demo: cli.demo,
        record: cli.record.clone(),
        info: crate::console::app::HeaderInfo {
            data_dir: tilde(data),
            durability: cli.durability.as_str().to_string(),
            operator: if cli.token.is_some() {
                ctx_identity.describe()
            } else {
                format!("{} (admin, no token)", ctx_identity.sub)
            },
        },
    };
    let result = crate::console::run(engine.clone(), options).await;
    if let Some(engine) = Arc::into_inner(engine) {
        engine.shutdown(Duration::from_secs(5)).await;
    }
    result.context("console")?;
    if let Some(path) = &cli.record {
        println!(
            "recorded the session to {} (play it with `asciinema play {}`)",
            path.display(),
            path.display()
        );
    }
    Ok(0)
}

/// The path with the home directory shortened to `~`.
fn tilde(path: &std::path::Path) -> String {
    match dirs::home_dir().and_then(|home| path.strip_prefix(home).ok().map(|p| p.to_path_buf())) {
        Some(rest) => format!("~/{}", rest.display()),
        None => path.display().to_string(),
    }
}
