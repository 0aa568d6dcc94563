//! The engine: an orchestrator task that owns all workflow state, and the handle callers use
//! to talk to it. Nothing here knows that a terminal exists.

// Input never panics the engine: no `unwrap` here outside tests (issue 8).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

mod backoff;
mod clock;
mod command;
mod delegate;
mod entry;
mod events;
mod lookup;
mod orchestrator;
pub mod query;
pub mod retention;
mod runner;
pub mod search;
mod stream;

pub use clock::Clock;
pub use command::{EngineError, ErrorKind, SubmitRequest};
pub use events::{names as event_names, Event, EventBus};
pub use query::{
    PendingApproval, Query, ReadableEvents, Status, StatusChecks, StepHandlers, TaskFilter, TaskProcessing,
};
pub use stream::EventStream;

use crate::auth::Identity;
use crate::handlers::Registry;
use crate::model::Task;
use crate::store::Store;
use crate::workflow::Catalog;
use command::Command;
use orchestrator::{Message, Orchestrator};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

/// Who acts when no token is given: the local user, `$USER` (`operator` when unset or empty).
/// It names the actor of transitions, so it follows a token subject's rules: 1-64 letters,
/// digits, `_`, `-`, `.` or `@`, and never `engine` or `system` (the engine's own names).
///
/// Errors: `$USER` is not such a name.
pub fn default_operator() -> Result<String, crate::auth::token::TokenError> {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "operator".into());
    crate::auth::token::check_subject(&user).map_err(|_| {
        crate::auth::token::TokenError::LocalUser(format!(
            "the local user `{}` (from $USER) cannot name an operator: expected 1-64 letters, digits, `_`, `-`, `.` or `@`, and not `engine` or `system`; set USER, or use a token (TASKDECK_TOKEN)",
            crate::model::clip(&user, 64)
        ))
    })?;
    Ok(user)
}

/// The default largest task context: 1 MiB of JSON.
pub const DEFAULT_MAX_CONTEXT_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most steps running at once, across all tasks.
    pub concurrency: usize,
    /// Run steps. False for administrative commands (`taskdeck retry` and friends) that only
    /// change stored state and leave execution to `taskdeck run`.
    pub dispatch: bool,
    /// ±10% jitter on backoff delays.
    pub jitter: bool,
    /// Seed for the jitter, for reproducible runs.
    pub jitter_seed: Option<u64>,
    /// Seed for the random part of task and approval ids (with a fixed clock, the same ids
    /// every run: `taskdeck screencast`); `None`: from the OS.
    pub id_seed: Option<u64>,
    /// Capacity of the event broadcast; a subscriber further behind than this lags.
    pub event_capacity: usize,
    /// Largest task context accepted at submit, in bytes of JSON (`--max-context-bytes`).
    pub max_context_bytes: usize,
    /// The clock to read; `None` anchors a new one at the system time. Tests of a restart on
    /// tokio's paused clock pass the first engine's clock to the second.
    pub clock: Option<Clock>,
    /// What finished work the engine keeps (`None`: everything, for ever).
    pub retention: Option<retention::Retention>,
    /// Where spans go (`--otlp-endpoint`); `None`: no traces.
    pub tracer: Option<Arc<crate::telemetry::traces::Tracer>>,
    /// The data directory whose audit signing key signs checkpoints of the journal's head
    /// (every `CHECKPOINT_EVERY` while it grows, and at shutdown; the key is created with the
    /// first checkpoint); `None`: no checkpoints (tests; the journal is still chained).
    pub audit_keys: Option<std::path::PathBuf>,
    /// Who starts the engine (the CLI's identity): the actor of the change-management entries
    /// for workflows deployed or changed since the last start.
    pub operator: String,
    /// Where the master key that seals personal data is (`crate::privacy`); `None`: personal
    /// data is stored as is (tests and benches that configure none).
    pub privacy: Option<crate::privacy::KeySource>,
}

/// How often a growing audit journal's head is signed.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a command on a task another engine drives waits for it to be handed over.
pub const HAND_OVER_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            concurrency: 64,
            dispatch: true,
            jitter: true,
            jitter_seed: None,
            id_seed: None,
            event_capacity: 16_384,
            max_context_bytes: DEFAULT_MAX_CONTEXT_BYTES,
            clock: None,
            retention: None,
            tracer: None,
            audit_keys: None,
            operator: "engine".into(),
            privacy: None,
        }
    }
}

/// A running engine. Cheap to share by reference; commands go to the orchestrator task.
pub struct Engine {
    tx: mpsc::UnboundedSender<Message>,
    bus: EventBus,
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    clock: Clock,
    query: Query,
    metrics: Arc<crate::telemetry::Metrics>,
    /// Flushed at shutdown, so a process's last spans are sent before it exits.
    tracer: Option<Arc<crate::telemetry::traces::Tracer>>,
    audit_keys: Option<std::path::PathBuf>,
    /// Who started the engine (`EngineConfig::operator`).
    operator: String,
    join: std::sync::Mutex<Option<JoinHandle<()>>>,
    checkpoints: Option<JoinHandle<()>>,
    /// Publishes what every engine sharing the store committed (see `start`).
    tail: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts the orchestrator on the current tokio runtime. With `dispatch`, it resumes every
    /// unfinished task found in the store.
    pub async fn start(
        config: EngineConfig,
        store: Arc<dyn Store>,
        catalog: Arc<Catalog>,
        registry: Registry,
    ) -> Result<Engine, EngineError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let bus = EventBus::new(config.event_capacity);
        let clock = config.clock.unwrap_or_default();
        let metrics = Arc::new(crate::telemetry::Metrics::new());
        metrics.catalog(&catalog);
        let loop_tx = tx.clone();
        let vault = match config.privacy.clone() {
            Some(source) => {
                let vault = crate::privacy::Vault::open(source, store.clone()).await?;
                if let Some(seed) = config.id_seed {
                    vault.seed_subject_ids(seed);
                }
                Some(Arc::new(vault))
            }
            None => None,
        };
        let query = Query::new(
            store.clone(),
            catalog.clone(),
            clock,
            registry.names(),
            metrics.clone(),
            Arc::new(move || !loop_tx.is_closed()),
            vault.clone(),
        );
        let seq = store.last_seq().await?;
        let event_seq = store.last_event_seq().await?;
        // Alone on its store, an engine resumes every unfinished task; sharing it, those no
        // live engine drives.
        let resume = match (config.dispatch, store.shared()) {
            (true, false) => store.active_tasks().await?,
            (true, true) => store.claim_orphans().await?,
            (false, _) => Vec::new(),
        };
        let tracer = config.tracer.clone();
        let audit_keys = config.audit_keys.clone();
        // Every engine, a short command's too: a version it submits tasks of is deployed, even
        // if no engine that runs steps loads it again (removals are not journaled, so one-shot
        // extra `--workflows` cause no flapping).
        let deployer = Some(config.operator.clone());
        let operator = config.operator.clone();
        let mut orchestrator = Orchestrator::new(
            config,
            store.clone(),
            catalog.clone(),
            registry,
            clock,
            bus.clone(),
            tx.clone(),
            rx,
            seq,
            event_seq,
            metrics.clone(),
        );
        if !resume.is_empty() {
            tracing::info!(tasks = resume.len(), "resuming unfinished tasks");
        }
        mark_reopened(&*store, &resume, &metrics, tracer.as_deref()).await?;
        if let Some(operator) = &deployer {
            journal_deployments(&*store, &catalog, operator, clock.now()).await?;
        }
        orchestrator.vault = vault;
        orchestrator.recover(resume).await;
        let join = tokio::spawn(orchestrator.run());
        // Sharing the store: every engine's events reach this engine's subscribers from the
        // store, in its order, woken by the store's notice of a commit (or every half second).
        let tail = store.changes().map(|changes| {
            let (store, bus) = (store.clone(), bus.clone());
            tokio::spawn(async move {
                let mut last = event_seq;
                loop {
                    tokio::select! {
                        _ = changes.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    loop {
                        match store.events_after(last, 1000).await {
                            Ok(page) if page.is_empty() => break,
                            Ok(page) => {
                                for event in page {
                                    last = event.seq;
                                    bus.publish(event);
                                }
                            }
                            Err(e) => {
                                tracing::warn!("cannot read the events other engines stored: {e}");
                                break;
                            }
                        }
                    }
                }
            })
        });
        let checkpoints = audit_keys.clone().map(|dir| {
            let (store, clock) = (store.clone(), clock);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
                loop {
                    tick.tick().await;
                    checkpoint_in(&*store, &dir, clock.now()).await;
                }
            })
        });
        Ok(Engine {
            tx,
            bus,
            store,
            catalog,
            clock,
            query,
            metrics,
            tracer,
            audit_keys,
            operator,
            join: std::sync::Mutex::new(Some(join)),
            checkpoints,
            tail,
        })
    }

    /// Who started the engine (the actor of what it journals on its own behalf).
    pub fn operator(&self) -> String {
        self.operator.clone()
    }

    /// The engine's Prometheus metrics (served at `/metrics`).
    pub fn metrics(&self) -> &Arc<crate::telemetry::Metrics> {
        &self.metrics
    }

    /// The live events, from now on (they may lag; see `events` for a lossless stream).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.bus.subscribe()
    }

    /// Whether the orchestrator still takes commands.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// The reads clients make, authorized once (see `query`).
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// The events `who` may read after the sequence number `after` (`None`: from now), then
    /// live ones: in order, none missed, none twice, across lag and restarts.
    pub async fn events(&self, who: &Identity, after: Option<u64>) -> Result<ReadableEvents, EngineError> {
        self.query.events(who, self.bus.subscribe(), after).await
    }

    /// Reads go to the store directly; they never wait on the orchestrator.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    async fn ask<T>(&self, make: impl FnOnce(command::Reply<T>) -> Command) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Message::Command(make(reply)))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// `ask` for a command on an existing task. When another engine sharing the store drives
    /// the task, the orchestrator asks it to hand the task over and this retries until it has
    /// (within `HAND_OVER_WAIT`; the holder hands over once no step of the task runs).
    async fn ask_task<T>(&self, make: impl Fn(command::Reply<T>) -> Command) -> Result<T, EngineError> {
        let deadline = tokio::time::Instant::now() + HAND_OVER_WAIT;
        loop {
            match self.ask(&make).await {
                Err(EngineError::Store(crate::store::StoreError::HeldElsewhere { .. }))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                other => return other,
            }
        }
    }

    /// Creates a task; the answer comes once it is stored.
    pub async fn submit(&self, request: SubmitRequest) -> Result<Task, EngineError> {
        self.ask(|reply| Command::Submit(request, reply)).await
    }

    pub async fn retry(&self, task: &str, actor: &Identity, reason: &str) -> Result<Task, EngineError> {
        let (task, actor, reason) = (task.to_string(), actor.clone(), reason.to_string());
        self.ask_task(|reply| Command::Retry {
            task: task.clone(),
            actor: actor.clone(),
            reason: reason.clone(),
            reply,
        })
        .await
    }

    /// Starts step `step` of `task`, waiting out its backoff, at once: the same attempt the
    /// timer would have started, recorded with `actor` and `reason` (an operator who knows
    /// the service is back need not wait out a 60 s backoff).
    ///
    /// Errors: `Denied` without `<ns>.workflows:manage`; `Conflict` when the step is not
    /// waiting for a retry; `NoSuchStep`; `Invalid` for a reason over the size limit.
    pub async fn retry_now(
        &self,
        task: &str,
        step: &str,
        actor: &Identity,
        reason: &str,
    ) -> Result<Task, EngineError> {
        let (task, step, actor, reason) = (
            task.to_string(),
            step.to_string(),
            actor.clone(),
            reason.to_string(),
        );
        self.ask_task(|reply| Command::RetryNow {
            task: task.clone(),
            step: step.clone(),
            actor: actor.clone(),
            reason: reason.clone(),
            reply,
        })
        .await
    }

    pub async fn cancel(&self, task: &str, actor: &Identity, reason: &str) -> Result<Task, EngineError> {
        let (task, actor, reason) = (task.to_string(), actor.clone(), reason.to_string());
        self.ask_task(|reply| Command::Cancel {
            task: task.clone(),
            actor: actor.clone(),
            reason: reason.clone(),
            reply,
        })
        .await
    }

    pub async fn resolve(
        &self,
        task: &str,
        step: &str,
        results: Value,
        actor: &Identity,
        reason: &str,
    ) -> Result<Task, EngineError> {
        let (task, step, actor, reason) = (
            task.to_string(),
            step.to_string(),
            actor.clone(),
            reason.to_string(),
        );
        self.ask_task(|reply| Command::Resolve {
            task: task.clone(),
            step: step.clone(),
            results: results.clone(),
            actor: actor.clone(),
            reason: reason.clone(),
            reply,
        })
        .await
    }

    /// Approves (`approve`) or denies a step waiting for approval. A denial needs a reason
    /// (`note`); an approval's note is optional.
    pub async fn decide(
        &self,
        task: &str,
        step: &str,
        approve: bool,
        actor: &Identity,
        note: Option<String>,
    ) -> Result<Task, EngineError> {
        let (task, step, actor) = (task.to_string(), step.to_string(), actor.clone());
        self.ask_task(|reply| Command::Decide {
            task: task.clone(),
            step: step.clone(),
            approve,
            actor: actor.clone(),
            note: note.clone(),
            reply,
        })
        .await
    }

    /// What the authorization coordinator says, for callers that filter what they show. It
    /// reads the engine's clock.
    pub fn coordinator(&self) -> crate::auth::Coordinator {
        let clock = self.clock;
        crate::auth::Coordinator::new(self.catalog.clone()).with_clock(Arc::new(move || clock.now()))
    }

    /// The one task `text` (a full id, prefix or short id) names among those `who` may read.
    /// A task `who` may not read is "not found".
    pub async fn find_task(&self, who: &Identity, text: &str) -> Result<Task, EngineError> {
        lookup::find_readable(&**self.store(), &self.coordinator(), who, text).await
    }

    /// Archives and removes the finished tasks `policy` lets go (all of them, pass after
    /// pass), or with `dry_run` only lists them (ids, changed longest ago first).
    pub async fn prune(
        &self,
        policy: retention::Retention,
        dry_run: bool,
    ) -> Result<(retention::PruneReport, Vec<String>), EngineError> {
        self.ask(|reply| Command::Prune {
            policy,
            dry_run,
            reply,
        })
        .await
    }

    /// Resolves once nothing is running, queued or backing off: every task is finished or
    /// waits on a person.
    pub async fn when_idle(&self) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Message::Command(Command::WhenIdle(reply)))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Waits until the task is no longer driven by the engine (complete, error, cancelled) or
    /// waits on a person, and returns its stored state.
    pub async fn wait_for(&self, task_id: &str) -> Result<Task, EngineError> {
        let mut events = self.subscribe();
        loop {
            let task = self
                .store
                .task(task_id)
                .await?
                .ok_or_else(|| crate::store::StoreError::NoSuchTask(task_id.to_string()))?;
            let waits_on_person = task.execution_status() == crate::model::ExecutionStatus::AwaitingDecision;
            if !task.state.is_active() || waits_on_person {
                return Ok(task);
            }
            // Wake on the next event about this task (or any lag), then look again.
            loop {
                match events.recv().await {
                    Ok(e) if e.task_id == task.id && !e.custom => break,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return Err(EngineError::Stopped),
                }
            }
        }
    }

    /// Stops dispatching, lets running steps finish for up to `grace`, and stops. Steps still
    /// running after that are left `in_progress` in the store and run again on the next start.
    /// A second call (or a call from another holder) just waits for the first.
    pub async fn shutdown(&self, grace: Duration) {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Message::Command(Command::Shutdown { grace, reply }))
            .is_ok()
        {
            let _ = rx.await;
        }
        let join = self.join.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(join) = join {
            let _ = join.await;
        }
        if let Some(tracer) = &self.tracer {
            tracer.flush(Duration::from_secs(3)).await;
        }
        if let Some(task) = &self.checkpoints {
            task.abort();
        }
        if let Some(tail) = &self.tail {
            tail.abort();
        }
        // An engine that lost its place among those sharing the store writes nothing more
        // (the database is likely out of reach, and others hold its tasks now).
        if !self.store.alive() {
            return;
        }
        if let Some(dir) = &self.audit_keys {
            checkpoint_in(&*self.store, dir, self.clock.now()).await;
        }
        // Sharing the store: what this engine drove is free for the others at once.
        if let Err(e) = self.store.leave().await {
            tracing::warn!("cannot give up this engine's tasks (others take them when its lease ends): {e}");
        }
    }
}

/// Tells the metrics and the tracer which unfinished tasks were taken up again after they
/// failed (retried or resolved, perhaps by another process), from their logs: their end is a
/// recovery, not new revenue lost, and a span of its own. Only tasks whose steps show a retry
/// or a resolve are read.
async fn mark_reopened(
    store: &dyn Store,
    resume: &[crate::model::Task],
    metrics: &crate::telemetry::Metrics,
    tracer: Option<&crate::telemetry::traces::Tracer>,
) -> Result<(), EngineError> {
    use crate::model::{StepState, Subject};
    for task in resume {
        let touched = task
            .steps
            .iter()
            .any(|s| s.budget_start > 0 || s.state == StepState::ResolvedManually);
        if !touched {
            continue;
        }
        let log = store.transitions(&task.id).await?;
        let reopen = log
            .iter()
            .rev()
            .find(|t| t.subject == Subject::Task && t.from.as_deref() == Some("error"));
        if let Some(t) = reopen {
            metrics.mark_reopened(&task.id);
            if let Some(tracer) = tracer {
                tracer.mark_reopened(&task.id, t.at);
            }
        }
    }
    Ok(())
}

/// Change management (post 06, SOC 2 CC8.1): journals every workflow version first deployed,
/// or whose file changed, since an engine last ran on this store, and every namespace
/// manifest (its grants) that changed, with who started the engine. Only engines that run
/// steps do (a one-shot command with extra `--workflows` deploys nothing); what is no longer
/// loaded is kept in the record, not journaled as removed.
async fn journal_deployments(
    store: &dyn Store,
    catalog: &Catalog,
    operator: &str,
    now: crate::model::Timestamp,
) -> Result<(), EngineError> {
    use sha2::{Digest, Sha256};
    let files: std::collections::HashMap<&str, &str> = catalog
        .files()
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();
    let digest =
        |source: &str| crate::audit::entry::hex(&Sha256::digest(files.get(source).copied().unwrap_or("")));
    let mut known = store.catalog_digests().await?;
    let mut records = Vec::new();
    let mut entry = |key: String, digest: String, record: &dyn Fn(bool) -> crate::audit::AuditRecord| {
        let changed = match known.get(&key) {
            None => Some(false),
            Some(old) if *old != digest => Some(true),
            Some(_) => None,
        };
        if let Some(changed) = changed {
            records.push(record(changed));
            known.insert(key, digest);
        }
    };
    for w in catalog.iter() {
        let t = &w.template;
        entry(t.reference(), digest(&t.source), &|changed| {
            let (action, detail) = if changed {
                (
                    "workflow.changed",
                    format!("the file of this version ({}) changed since it was last loaded: a released version was edited", t.source),
                )
            } else {
                ("workflow.deployed", format!("first loaded, from {}", t.source))
            };
            crate::audit::AuditRecord {
                namespace: Some(t.namespace.clone()),
                workflow: Some(t.name.clone()),
                version: Some(t.version.to_string()),
                compliance_tags: vec!["SOC2:CC8.1".into()],
                ..crate::audit::AuditRecord::new(
                    now,
                    operator,
                    action,
                    format!("workflow/{}", t.reference()),
                    detail,
                )
            }
        });
    }
    for m in catalog.manifests() {
        entry(
            format!("manifest/{}", m.namespace),
            digest(&m.source),
            &|changed| crate::audit::AuditRecord {
                namespace: Some(m.namespace.clone()),
                compliance_tags: vec!["SOC2:CC6.1".into(), "SOC2:CC8.1".into()],
                ..crate::audit::AuditRecord::new(
                    now,
                    operator,
                    "grants.changed",
                    format!("namespace/{}", m.namespace),
                    format!(
                        "{} namespace manifest {} ({} grant(s))",
                        if changed { "changed" } else { "first loaded" },
                        m.source,
                        m.grants.len()
                    ),
                )
            },
        );
    }
    // The permission policy: a change of who may do what is access evidence (CC6.1).
    let policy = catalog.policy();
    let policy_digest = match files.get(policy.source.as_str()) {
        Some(text) => crate::audit::entry::hex(&Sha256::digest(text)),
        None => "builtin".to_string(),
    };
    entry("policy".into(), policy_digest, &|changed| {
        crate::audit::AuditRecord {
            compliance_tags: vec!["SOC2:CC6.1".into(), "SOC2:CC8.1".into()],
            ..crate::audit::AuditRecord::new(
                now,
                operator,
                if changed {
                    "policy.changed"
                } else {
                    "policy.deployed"
                },
                "policy".into(),
                format!(
                    "{} permission policy {} ({} role(s), {} sensitive workflow(s), step-up {} min)",
                    if changed { "changed" } else { "first loaded" },
                    policy.source,
                    policy.roles.len(),
                    policy.sensitive.values().map(|w| w.len()).sum::<usize>(),
                    policy.step_up_minutes
                ),
            )
        }
    });
    if !records.is_empty() {
        store.append_audit(records).await?;
        store.put_catalog_digests(&known).await?;
    }
    Ok(())
}

/// Signs the audit journal's head with the key of data directory `dir` (see `checkpoint`).
/// The key is created with the first checkpoint, and never again once one exists: a key that
/// went missing is reported, not replaced.
pub async fn checkpoint_in(store: &dyn Store, dir: &std::path::Path, now: crate::model::Timestamp) {
    let signed = match store.audit_checkpoint().await {
        Ok(latest) => latest.is_some(),
        Err(e) => {
            tracing::warn!("cannot read the audit journal's checkpoint: {e}");
            return;
        }
    };
    let key = match crate::audit::SigningKey::load(dir) {
        Ok(Some(key)) => key,
        Ok(None) if !signed => match crate::audit::SigningKey::load_or_create(dir) {
            Ok(key) => key,
            Err(e) => return tracing::error!("{e}"),
        },
        Ok(None) => {
            return tracing::error!(
                "the audit journal has signed checkpoints but its signing key {} is gone; no new key is made and nothing more is signed: run `taskdeck audit verify`",
                dir.join(crate::audit::checkpoint::KEY_FILE).display()
            )
        }
        Err(e) => return tracing::error!("{e}; nothing more is signed"),
    };
    checkpoint(store, &key, now).await;
}

/// Signs the audit journal's head if it moved since the latest checkpoint — only if that
/// checkpoint is this key's and the journal still holds the entry it signed: a tampered
/// journal is never signed over (its evidence would be laundered). A refusal or a failure is
/// logged: the journal stays chained, and `audit verify` says what is wrong.
pub async fn checkpoint(store: &dyn Store, key: &crate::audit::SigningKey, now: crate::model::Timestamp) {
    let result: Result<Option<String>, crate::store::StoreError> = async {
        let (seq, hash) = store.audit_head().await?;
        let latest = store.audit_checkpoint().await?;
        if seq == 0 || latest.as_ref().is_some_and(|c| c.seq == seq) {
            return Ok(None);
        }
        if let Some(c) = &latest {
            if !c.is_signed_by(&key.verifying_key()) {
                return Ok(Some(
                    "its last checkpoint was not signed with this data directory's audit key".into(),
                ));
            }
            let signed = store.audit_after(c.seq.saturating_sub(1), 1).await?;
            let holds = matches!(signed.first(), Some(Ok(e)) if e.seq == c.seq && e.hash == c.hash);
            if !holds {
                return Ok(Some(format!("it no longer holds entry {} as signed", c.seq)));
            }
        }
        store.put_audit_checkpoint(&key.sign(seq, &hash, now)).await?;
        Ok(None)
    }
    .await;
    match result {
        Ok(None) => {}
        Ok(Some(why)) => {
            tracing::error!("the audit journal is not signed: {why}; run `taskdeck audit verify`")
        }
        Err(e) => tracing::warn!("cannot sign the audit journal's head: {e}"),
    }
}
