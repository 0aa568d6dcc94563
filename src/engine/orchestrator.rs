//! The orchestrator: the one owner of workflow state (design.md, principle 2).
//!
//! It runs as a single tokio task. Each turn of its loop takes every message waiting (step
//! outcomes, commands, due timers), applies them through the pure transition functions,
//! starts the steps that became ready, then commits the turn's transitions as one group
//! (one flush), and only then publishes events, answers callers and spawns handlers:
//! durable before visible, and group commit for free.

use super::backoff;
use super::command::{Command, EngineError, SubmitRequest};
use super::entry::Entry;
use super::events::{names, Event, EventBus};
use super::retention;
use super::runner::{self, Attempt};
use super::{Clock, EngineConfig};
use crate::auth::{Coordinator, Identity, Request};
use crate::handlers::{Delegator, EventSink, Registry, StepInput};
use crate::model::{
    step_transition, task_transition, Approval, Decision, ErrorInfo, ExecutionStatus, Step, StepError,
    StepEvent, StepState, Subject, Task, TaskEvent, TaskState, Timestamp, Transition,
};
use crate::store::{Store, TaskWrite};
use crate::workflow::Catalog;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

/// The actor recorded for what the engine does by itself.
const ENGINE: &str = "engine";

pub(crate) enum Message {
    Command(Command),
    Outcome(Attempt, Result<Value, StepError>),
    /// An event a handler published: stored and sequenced with the next commit.
    Custom(Event),
}

/// Work that waits for the current group to be durable.
type AfterCommit = Box<dyn FnOnce(bool) + Send>;

pub(crate) struct Orchestrator {
    config: EngineConfig,
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    registry: Registry,
    clock: Clock,
    bus: EventBus,
    tx: UnboundedSender<Message>,
    inbox: UnboundedReceiver<Message>,
    rng: SmallRng,
    /// Task and approval ids from a seed (`EngineConfig::id_seed`), or `None`: UUIDv7.
    ids: Option<SmallRng>,
    tasks: HashMap<String, Entry>,
    ready: VecDeque<(String, usize)>,
    timers: BTreeSet<(Timestamp, String, usize)>,
    /// Expiry of approval requests: kept apart because a task waiting on a person is idle.
    approval_timers: BTreeSet<(Timestamp, String, usize)>,
    coordinator: Coordinator,
    delegator: Arc<dyn Delegator>,
    inflight: HashMap<(String, usize), AbortHandle>,
    seq: u64,
    /// The last event sequence number used (the store's, so it survives restarts).
    event_seq: u64,
    // The group being built this turn.
    dirty: HashSet<String>,
    /// Tasks submitted this turn (their context and step definitions are written once).
    created: HashSet<String>,
    transitions: Vec<Transition>,
    events: Vec<Event>,
    to_spawn: Vec<(String, usize)>,
    after_commit: Vec<AfterCommit>,
    idle_waiters: Vec<oneshot::Sender<()>>,
    finished: Vec<String>,
    /// Child tasks that ended this turn, whose parents `tell_parents` has not told yet.
    children_ended: Vec<String>,
    stopping: Option<(tokio::time::Instant, oneshot::Sender<()>)>,
    /// Seals personal data in what is committed and opens it in what is read back (`None`:
    /// stored as is, for tests and benches that configure none).
    pub(super) vault: Option<Arc<crate::privacy::Vault>>,
    /// When the next retention pass runs (with `config.retention`).
    next_prune: Option<tokio::time::Instant>,
    /// Moved by every committed transition (see `commit`).
    metrics: Arc<crate::telemetry::Metrics>,
    /// When this engine next does its part among the engines sharing the store (`share`);
    /// `None` when it drives the store alone.
    next_shared: Option<tokio::time::Instant>,
}

/// How often an engine sharing its store hands over what others asked for, takes over the
/// tasks of engines that stopped answering, and looks at children other engines ran.
const SHARED_EVERY: Duration = Duration::from_millis(500);

impl Orchestrator {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: EngineConfig,
        store: Arc<dyn Store>,
        catalog: Arc<Catalog>,
        registry: Registry,
        clock: Clock,
        bus: EventBus,
        tx: UnboundedSender<Message>,
        inbox: UnboundedReceiver<Message>,
        seq: u64,
        event_seq: u64,
        metrics: Arc<crate::telemetry::Metrics>,
    ) -> Self {
        let tx_for_delegation = tx.clone();
        let next_prune = config_prune_start(&config);
        let rng = match config.jitter_seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        let ids = config.id_seed.map(|seed| SmallRng::seed_from_u64(seed ^ 0x1d5));
        let next_shared = store.shared().then(|| tokio::time::Instant::now() + SHARED_EVERY);
        Orchestrator {
            next_shared,
            ids,
            config,
            store,
            catalog: catalog.clone(),
            registry,
            clock,
            bus,
            tx,
            inbox,
            rng,
            tasks: HashMap::new(),
            ready: VecDeque::new(),
            timers: BTreeSet::new(),
            approval_timers: BTreeSet::new(),
            coordinator: Coordinator::new(catalog.clone()).with_clock(Arc::new(move || clock.now())),
            delegator: Arc::new(super::delegate::EngineDelegator::new(tx_for_delegation)),
            inflight: HashMap::new(),
            seq,
            event_seq,
            dirty: HashSet::new(),
            created: HashSet::new(),
            transitions: Vec::new(),
            events: Vec::new(),
            to_spawn: Vec::new(),
            after_commit: Vec::new(),
            idle_waiters: Vec::new(),
            finished: Vec::new(),
            children_ended: Vec::new(),
            next_prune,
            stopping: None,
            vault: None,
            metrics,
        }
    }

    /// Loads unfinished tasks and makes them runnable again (design.md, "Storage"): a step
    /// found `in_progress` was interrupted and runs again as a new attempt with the same
    /// idempotency key, without spending its retry budget (the attempt never reported); a
    /// step interrupted `MAX_INTERRUPTIONS` times in a row fails instead. A step waiting for
    /// retry keeps its stored deadline.
    pub async fn recover(&mut self, tasks: Vec<Task>) {
        for task in tasks {
            let id = task.id.clone();
            let (task, sealer) = match self.open(task.clone()).await {
                Ok(opened) => opened,
                Err(e) => {
                    tracing::error!(task = %id, "cannot open the task's sealed personal data: {e}");
                    (task, None)
                }
            };
            for step in &task.steps {
                if step.state == StepState::AwaitingApproval {
                    self.metrics.recovered_approval(&task.namespace);
                }
            }
            self.tasks.insert(id.clone(), Entry::loaded(task, sealer));
            let interrupted: Vec<usize> = self.tasks[&id]
                .task
                .steps
                .iter()
                .enumerate()
                .filter(|(_, s)| s.state == StepState::InProgress)
                .map(|(i, _)| i)
                .collect();
            for i in interrupted {
                let now = self.clock.now();
                let step = self.step_mut(&id, i);
                step.interruptions = step.interruptions.saturating_add(1);
                if step.interruptions > crate::model::MAX_INTERRUPTIONS {
                    let info = ErrorInfo {
                        kind: "permanent".into(),
                        code: Some("INTERRUPTED_REPEATEDLY".into()),
                        message: format!(
                            "the engine stopped during {} attempts in a row of this step; retry the task once the cause is found",
                            step.interruptions
                        ),
                    };
                    step.last_error = Some(info.clone());
                    step.finished_at = Some(now);
                    let reason = Some(info.message.clone());
                    self.step_change(
                        &id,
                        i,
                        StepEvent::Fail { retry: false },
                        ENGINE,
                        reason,
                        Some(info),
                    );
                    continue;
                }
                // The interrupted attempt keeps its number but not its place in the budget.
                step.budget_start = step.budget_start.saturating_add(1);
                self.step_change(
                    &id,
                    i,
                    StepEvent::Reset,
                    ENGINE,
                    Some("interrupted by a restart; runs again with the same idempotency key".into()),
                    None,
                );
            }
            self.schedule_task(&id);
            self.evaluate(&id);
        }
        // With every unfinished task loaded: a delegating step whose child ended while no
        // engine ran (or in an engine that did not hold the parent) ends now.
        self.check_children().await;
    }

    pub async fn run(mut self) {
        // Start what recovery found ready before waiting for the first message.
        self.fire_due_timers();
        self.tell_parents().await;
        self.commit().await;
        loop {
            let next_timer = [self.timers.first(), self.approval_timers.first()]
                .into_iter()
                .flatten()
                .map(|(at, _, _)| *at)
                .min()
                .map(|at| self.clock.instant_at(at));
            let stop_at = self.stopping.as_ref().map(|(at, _)| *at);
            let prune_at = self.next_prune;
            let shared_at = self.next_shared;
            tokio::select! {
                msg = self.inbox.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => break,
                },
                _ = sleep_until(next_timer), if next_timer.is_some() => {}
                _ = sleep_until(stop_at), if stop_at.is_some() => {}
                _ = sleep_until(prune_at), if prune_at.is_some() => {}
                _ = sleep_until(shared_at), if shared_at.is_some() => {}
            }
            // Take everything else already waiting into the same group (bounded, to keep
            // the latency of one turn small under heavy load).
            for _ in 0..4096 {
                match self.inbox.try_recv() {
                    Ok(msg) => self.handle(msg).await,
                    Err(_) => break,
                }
            }
            self.fire_due_timers();
            if self
                .next_shared
                .is_some_and(|at| tokio::time::Instant::now() >= at)
            {
                if !self.store.alive() {
                    // Others take its tasks over now: carrying on could run a step twice.
                    tracing::error!("this engine lost its place among the engines sharing the store (no heartbeat for longer than its lease); it stops (restart it to join again)");
                    break;
                }
                self.share().await;
                self.next_shared = Some(tokio::time::Instant::now() + SHARED_EVERY);
            }
            self.tell_parents().await;
            if !self.commit().await {
                break;
            }
            self.forget_finished();
            if self
                .next_prune
                .is_some_and(|at| tokio::time::Instant::now() >= at)
            {
                self.retention_pass().await;
            }
            if self.is_idle() {
                for waiter in self.idle_waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
            if let Some((deadline, _)) = &self.stopping {
                if self.inflight.is_empty() || tokio::time::Instant::now() >= *deadline {
                    break;
                }
            }
        }
        for (_, handle) in self.inflight.drain() {
            handle.abort();
        }
        let _ = self.store.flush().await;
        if let Some((_, reply)) = self.stopping.take() {
            let _ = reply.send(());
        }
    }

    /// A new UUIDv7 for `now` (ms since the epoch): random bits from the OS, or from the id
    /// seed, so a seeded run on a fixed clock names everything the same way every time.
    fn new_uuid(&mut self, now: Timestamp) -> uuid::Uuid {
        match &mut self.ids {
            Some(rng) => {
                let bits: [u8; 10] = rng.random();
                uuid::Builder::from_unix_timestamp_millis(u64::try_from(now).unwrap_or(0), &bits).into_uuid()
            }
            None => uuid::Uuid::now_v7(),
        }
    }

    /// Tells the parents of the children that ended this turn, then starts what is ready;
    /// again while that ends more children (a parent told may end and tell its own parent).
    async fn tell_parents(&mut self) {
        loop {
            while let Some(child) = self.children_ended.pop() {
                self.notify_parent(&child).await;
            }
            self.dispatch();
            if self.children_ended.is_empty() {
                return;
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.inflight.is_empty() && self.timers.is_empty() && (self.ready.is_empty() || !self.config.dispatch)
    }

    async fn handle(&mut self, msg: Message) {
        match msg {
            Message::Outcome(attempt, result) => self.on_outcome(attempt, result).await,
            Message::Command(cmd) => self.on_command(cmd).await,
            Message::Custom(event) => self.events.push(event),
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit(req, reply) => {
                let result = self.submit(req).await;
                self.reply_after_commit(reply, result);
            }
            Command::Retry {
                task,
                actor,
                reason,
                reply,
            } => {
                let result = self.retry(&task, &actor, &reason).await;
                self.reply_after_commit(reply, result);
            }
            Command::RetryNow {
                task,
                step,
                actor,
                reason,
                reply,
            } => {
                let result = self.retry_now(&task, &step, &actor, &reason).await;
                self.reply_after_commit(reply, result);
            }
            Command::Cancel {
                task,
                actor,
                reason,
                reply,
            } => {
                let result = self.cancel(&task, &actor, &reason).await;
                self.reply_after_commit(reply, result);
            }
            Command::Resolve {
                task,
                step,
                results,
                actor,
                reason,
                reply,
            } => {
                let result = self.resolve(&task, &step, results, &actor, &reason).await;
                self.reply_after_commit(reply, result);
            }
            Command::Decide {
                task,
                step,
                approve,
                actor,
                note,
                reply,
            } => {
                let result = self.decide(&task, &step, approve, &actor, note).await;
                self.reply_after_commit(reply, result);
            }
            Command::Prune {
                policy,
                dry_run,
                reply,
            } => {
                let _ = reply.send(self.prune_all(&policy, dry_run).await);
            }
            Command::WhenIdle(reply) => self.idle_waiters.push(reply),
            Command::Shutdown { grace, reply } => {
                self.stopping = Some((tokio::time::Instant::now() + grace, reply));
            }
        }
    }

    /// Answers with the task's state once this turn is durable.
    fn reply_after_commit(
        &mut self,
        reply: super::command::Reply<Task>,
        result: Result<String, EngineError>,
    ) {
        match result {
            // Errors wait for the commit too: a refused command may still have recorded
            // something (an approval found expired), and nobody hears of it before it is stored.
            Err(e) => self.after_commit.push(Box::new(move |_| {
                let _ = reply.send(Err(e));
            })),
            Ok(id) => {
                let snapshot = self.tasks.get(&id).map(Entry::snapshot);
                self.after_commit.push(Box::new(move |ok| {
                    let _ = reply.send(match (ok, snapshot) {
                        (true, Some(task)) => Ok(task),
                        _ => Err(EngineError::Stopped),
                    });
                }));
            }
        }
    }

    // ----- commands --------------------------------------------------------------------------

    async fn submit(&mut self, req: SubmitRequest) -> Result<String, EngineError> {
        if let Some(key) = &req.origin_key {
            let in_memory = self
                .tasks
                .values()
                .find(|e| e.task.origin_key.as_deref() == Some(key));
            if let Some(existing) = in_memory {
                return Ok(existing.task.id.clone());
            }
            if let Some(existing) = self.store.task_by_origin(key).await? {
                let id = existing.id.clone();
                if !existing.state.is_active() {
                    self.finished.push(id.clone());
                }
                let (existing, sealer) = self.open(existing).await?;
                self.tasks
                    .entry(id.clone())
                    .or_insert_with(|| Entry::loaded(existing, sealer));
                return Ok(id);
            }
        }
        check_text("workflow", &req.workflow, MAX_REFERENCE_BYTES)?;
        // A child asked for by a task that has meanwhile ended (an operator cancelled it while
        // its step was delegating) is not created: its work would go on for nobody.
        if let Some(parent) = &req.parent {
            let state = match self.tasks.get(parent) {
                Some(e) => Some(e.task.state),
                None => self.store.task(parent).await?.map(|t| t.state),
            };
            if let Some(state) = state.filter(|s| s.is_terminal()) {
                return Err(EngineError::Conflict(format!(
                    "task {parent}, which asked for this task, is already {state}"
                )));
            }
        }
        let workflow = self.catalog.resolve(&req.workflow)?;
        let t = &workflow.template;
        self.coordinator.check(
            &req.actor,
            Request::Submit {
                namespace: &t.namespace,
                workflow: &t.name,
            },
        )?;
        let size = serde_json::to_vec(&req.context).map_or(usize::MAX, |b| b.len());
        if size > self.config.max_context_bytes {
            return Err(EngineError::Invalid {
                field: "context".into(),
                message: format!(
                    "{size} bytes of JSON is more than the {} bytes a task context may have (--max-context-bytes)",
                    self.config.max_context_bytes
                ),
            });
        }
        if !req.context.is_object() {
            return Err(EngineError::Invalid {
                field: "context".into(),
                message: format!(
                    "a task context is a JSON object ({{…}}), got {}",
                    kind_of(&req.context)
                ),
            });
        }
        check_depth("context", &req.context)?;
        workflow.validate_context(&req.context)?;
        let now = self.clock.now();
        let id = self.new_uuid(now).to_string();
        let steps: Vec<Step> = t
            .steps
            .iter()
            .map(|s| Step {
                retry: s.retry.clone(),
                timeout_ms: s.timeout_ms,
                handler_config: s.handler_config.clone(),
                idempotency_key: format!("{id}/{}", s.name),
                ..Step::new(&s.name, &s.handler, s.depends_on.clone())
            })
            .collect();
        let actor = req.actor.sub.clone();
        let traceparent = self.traceparent_for(&req);
        let mut steps = steps;
        let mut context = req.context;
        if let Some(hook) = self.registry.hook(&t.namespace, &t.name) {
            hook.prepare(&mut context, &mut steps);
        }
        let classification = crate::workflow::classification::classify(&t.classified, &context);
        let sealer = match &self.vault {
            Some(vault) => vault.sealer(&t.classified, &context, &id, now).await?,
            None => None,
        };
        // Hashed while the context is in clear; the store keeps only the hashes.
        let search_terms = super::search::terms_of(
            self.vault.as_deref(),
            &t.classified,
            &context,
            req.correlation_id.as_deref(),
        );
        let task = Task {
            id: id.clone(),
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            version: t.version.to_string(),
            state: TaskState::Pending,
            context,
            initiator: actor.clone(),
            created_at: now,
            updated_at: now,
            steps,
            parent: req.parent.clone(),
            correlation_id: req.correlation_id.clone(),
            origin_key: req.origin_key.clone(),
            traceparent,
            classification,
            seq: 0,
            search_terms,
        };
        let mut entry = Entry::new(task);
        entry.sealer = sealer;
        self.tasks.insert(id.clone(), entry);
        self.created.insert(id.clone());
        let reason = req.parent.as_ref().map(|p| format!("delegated by task {p}"));
        self.record(
            &id,
            Subject::Task,
            None,
            TaskState::Pending.as_str(),
            0,
            &actor,
            reason,
            None,
            None,
        );
        self.emit(
            &id,
            names::TASK_CREATED,
            None,
            json!({ "initiator": actor, "parent": req.parent, "correlation_id": req.correlation_id }),
        );
        self.schedule_task(&id);
        Ok(id)
    }

    /// Finds the task `text` names among those `who` may read, and brings it into memory
    /// (commands may name one the engine is not driving). Nothing about a task `who` may
    /// not read is revealed: it is "not found".
    async fn load(&mut self, text: &str, who: &Identity) -> Result<String, EngineError> {
        if let Some(entry) = self.tasks.get(text) {
            self.coordinator.authenticate(who)?;
            if !self.coordinator.may_read(who, &entry.task) {
                return Err(crate::store::StoreError::NoSuchTask(text.to_string()).into());
            }
            return Ok(text.to_string());
        }
        let task = super::lookup::find_readable(&*self.store, &self.coordinator, who, text).await?;
        let id = task.id.clone();
        if self.store.shared() {
            // Another engine may drive it: take it (or ask for it) first, then read it as it
            // stands now.
            self.store.claim(&id).await?;
            let task = self
                .store
                .task(&id)
                .await?
                .ok_or_else(|| crate::store::StoreError::NoSuchTask(text.to_string()))?;
            self.adopt(task).await?;
            return Ok(id);
        }
        let (task, sealer) = self.open(task).await?;
        self.tasks
            .entry(id.clone())
            .or_insert_with(|| Entry::loaded(task, sealer));
        Ok(id)
    }

    /// A task this engine has just claimed from the store it shares: an unfinished one is
    /// taken up as after a restart (a step its last engine was running runs again, with the
    /// same idempotency key); a finished one is held for the command at hand.
    async fn adopt(&mut self, task: Task) -> Result<(), EngineError> {
        if self.tasks.contains_key(&task.id) {
            return Ok(());
        }
        // Transition numbers stay increasing within the task whichever engine wrote last.
        if let Ok(last) = self.store.last_seq().await {
            self.seq = self.seq.max(last);
        }
        if task.state.is_active() {
            self.recover(vec![task]).await;
        } else {
            let id = task.id.clone();
            let (task, sealer) = self.open(task).await?;
            self.finished.push(id.clone());
            self.tasks.insert(id, Entry::loaded(task, sealer));
        }
        Ok(())
    }

    /// This engine's part among the engines sharing the store: hands over the tasks others
    /// asked for once none of their steps runs, takes over the tasks of engines that stopped
    /// answering, and ends delegating steps whose child another engine ran to its end.
    async fn share(&mut self) {
        match self.store.wanted().await {
            Ok(ids) => {
                for id in ids {
                    let busy = self.dirty.contains(&id) || self.inflight.keys().any(|(t, _)| *t == id);
                    if busy {
                        continue;
                    }
                    match self.store.hand_over(&id).await {
                        Ok(()) => self.drop_task(&id),
                        Err(e) => tracing::warn!(task = %id, "cannot hand the task over: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("cannot read which tasks other engines asked for: {e}"),
        }
        if self.config.dispatch {
            match self.store.claim_orphans().await {
                Ok(tasks) => {
                    for task in tasks {
                        if let Err(e) = self.adopt(task).await {
                            tracing::error!("cannot take over a task: {e}");
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot look for tasks to take over: {e}"),
            }
        }
        self.check_children().await;
    }

    /// Ends every delegating step whose child has ended (in another engine, or while none ran).
    async fn check_children(&mut self) {
        let waiting: Vec<(String, usize)> = self
            .tasks
            .iter()
            .flat_map(|(id, e)| {
                e.task
                    .steps
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.state == StepState::WaitingForChild)
                    .map(move |(i, _)| (id.clone(), i))
            })
            .collect();
        for (id, i) in waiting {
            self.check_child(&id, i).await;
        }
    }

    /// Forgets a task another engine drives now (nothing of it runs here).
    fn drop_task(&mut self, id: &str) {
        self.tasks.remove(id);
        self.timers.retain(|(_, t, _)| t != id);
        self.approval_timers.retain(|(_, t, _)| t != id);
        self.ready.retain(|(t, _)| t != id);
    }

    /// A task read from the store as the engine needs it: its sealed personal data opened,
    /// with the sealer its later records need.
    fn open(
        &self,
        task: Task,
    ) -> impl std::future::Future<Output = Result<(Task, Option<Arc<crate::privacy::Sealer>>), EngineError>>
           + Send
           + 'static {
        // Only the vault is held across the wait (the orchestrator itself is not `Sync`).
        open_stored(self.vault.clone(), task)
    }

    /// A step of a task the orchestrator holds. Callers pass ids taken from `tasks` itself,
    /// returned by `load`/`submit`, or carried by an attempt the orchestrator spawned for a
    /// task it still drives (cancel and forget never drop a task with a step running), and
    /// indices from the task's own step list: a miss is a bug in this file, not bad input.
    fn step_mut(&mut self, id: &str, i: usize) -> &mut Step {
        &mut self
            .tasks
            .get_mut(id)
            .expect("the orchestrator holds the task it changes")
            .task
            .steps[i]
    }

    /// The index of a loaded task's step, or an error listing its steps.
    fn step_of(&self, id: &str, step: &str) -> Result<usize, EngineError> {
        let task = &self.tasks[id].task;
        task.step_index(step)
            .ok_or_else(|| EngineError::no_such_step(task, step))
    }

    fn authorize_operation(&self, id: &str, actor: &Identity, action: &str) -> Result<(), EngineError> {
        let namespace = &self.tasks[id].task.namespace;
        self.coordinator
            .check(actor, Request::Operate { namespace, action })?;
        Ok(())
    }

    async fn retry(&mut self, task: &str, who: &Identity, reason: &str) -> Result<String, EngineError> {
        check_text("reason", reason, MAX_REASON_BYTES)?;
        let id = self.load(task, who).await?;
        self.authorize_operation(&id, who, "retry")?;
        let actor = who.sub.as_str();
        let state = self.tasks[&id].task.state;
        if state != TaskState::Error {
            return Err(EngineError::Conflict(format!(
                "task {id} is {state}; only a task in error can be retried"
            )));
        }
        let failed: Vec<usize> = self.steps_in(&id, StepState::Error);
        let task = &self.tasks[&id].task;
        if failed.iter().any(|&i| task.steps[i].was_denied()) {
            self.coordinator.check(
                who,
                Request::Reopen {
                    namespace: &task.namespace,
                },
            )?;
        }
        self.task_change(&id, TaskEvent::Retry, actor, Some(reason.to_string()));
        for i in failed {
            let step = &mut self.step_mut(&id, i);
            step.budget_start = step.attempts;
            // A gate asks anew: the old request and its decision stay in the transition log.
            step.approval = None;
            self.step_change(&id, i, StepEvent::Reset, actor, Some(reason.to_string()), None);
        }
        self.schedule_task(&id);
        self.evaluate(&id);
        Ok(id)
    }

    async fn retry_now(
        &mut self,
        task: &str,
        step: &str,
        who: &Identity,
        reason: &str,
    ) -> Result<String, EngineError> {
        check_text("reason", reason, MAX_REASON_BYTES)?;
        let id = self.load(task, who).await?;
        self.authorize_operation(&id, who, "retry")?;
        let i = self.step_of(&id, step)?;
        let state = self.tasks[&id].task.steps[i].state;
        if state != StepState::WaitingForRetry {
            return Err(EngineError::Conflict(format!(
                "step {step} of task {id} is {state}; only a step waiting out its backoff can start now"
            )));
        }
        // Its timer stays queued and finds the step no longer waiting.
        self.step_change(
            &id,
            i,
            StepEvent::RetryDue,
            &who.sub,
            Some(format!("retry now: {reason}")),
            None,
        );
        if self.tasks[&id].is_ready(i) {
            self.ready.push_back((id.clone(), i));
        }
        Ok(id)
    }

    async fn cancel(&mut self, task: &str, who: &Identity, reason: &str) -> Result<String, EngineError> {
        check_text("reason", reason, MAX_REASON_BYTES)?;
        let id = self.load(task, who).await?;
        self.authorize_operation(&id, who, "cancel")?;
        let actor = who.sub.as_str();
        let state = self.tasks[&id].task.state;
        if state.is_terminal() {
            return Err(EngineError::Conflict(format!("task {id} is already {state}")));
        }
        // Cancelling cancels the delegated work too; work a child has already done (a refund
        // the gateway has paid) cannot be undone by it, so such a cancel is refused whole.
        let children = self.active_children(&id).await?;
        for child in &children {
            let done = match self.tasks.get(child) {
                Some(e) => e.task.done_steps(),
                None => self.store.task(child).await?.map_or(0, |t| t.done_steps()),
            };
            if done > 0 {
                return Err(EngineError::Conflict(format!(
                    "task {id} delegated its work to task {child}, which has already completed {done} step(s); cancelling would not undo them (cancel or let {child} finish first)"
                )));
            }
        }
        let open: Vec<usize> = (0..self.tasks[&id].task.steps.len())
            .filter(|&i| !self.tasks[&id].task.steps[i].state.is_terminal())
            .collect();
        for i in open {
            if let Some(handle) = self.inflight.remove(&(id.clone(), i)) {
                handle.abort();
            }
            self.timers.retain(|(_, t, s)| !(t == &id && *s == i));
            self.approval_timers.retain(|(_, t, s)| !(t == &id && *s == i));
            self.step_change(&id, i, StepEvent::Cancel, actor, Some(reason.to_string()), None);
        }
        self.task_change(&id, TaskEvent::Cancel, actor, Some(reason.to_string()));
        // The work it delegated goes with it: a cancelled refund request must not pay out.
        for child in children {
            let why = format!("task {id}, which asked for it, was cancelled: {reason}");
            // Boxed: an async call to itself.
            match Box::pin(self.cancel(
                &child,
                &Identity::engine(),
                &crate::model::clip(&why, MAX_REASON_BYTES - 8),
            ))
            .await
            {
                Ok(_) | Err(EngineError::Conflict(_)) => {}
                Err(e) => tracing::warn!(%child, "cannot cancel the child of a cancelled task: {e}"),
            }
        }
        Ok(id)
    }

    /// The trace context a new task joins: for a delegated child, its parent's step attempt
    /// that asked for it (`origin_key` is `parent/step`); else the caller's, if well formed.
    fn traceparent_for(&self, req: &SubmitRequest) -> Option<String> {
        use crate::telemetry::traces;
        if let (Some(parent), Some(origin)) = (&req.parent, &req.origin_key) {
            let entry = self.tasks.get(parent)?;
            let step = origin.strip_prefix(parent.as_str())?.strip_prefix('/')?;
            let attempt = entry.task.step(step)?.attempts;
            let trace = traces::trace_of(parent, entry.task.traceparent.as_deref());
            return Some(traces::traceparent(trace, parent, step, attempt));
        }
        req.traceparent
            .as_deref()
            .filter(|t| traces::parse_traceparent(t).is_some())
            .map(str::to_string)
    }

    /// Unfinished tasks that `id` delegated to: those in memory, and (for an engine that does
    /// not hold every unfinished task, e.g. an administrative command's) those in the store.
    async fn active_children(&mut self, id: &str) -> Result<Vec<String>, EngineError> {
        let mut children: Vec<String> = self
            .tasks
            .values()
            .filter(|e| e.task.parent.as_deref() == Some(id) && e.task.state.is_active())
            .map(|e| e.task.id.clone())
            .collect();
        if !self.config.dispatch {
            for t in self.store.active_tasks().await? {
                if t.parent.as_deref() == Some(id) && !children.contains(&t.id) {
                    children.push(t.id);
                }
            }
        }
        Ok(children)
    }

    async fn resolve(
        &mut self,
        task: &str,
        step: &str,
        results: Value,
        who: &Identity,
        reason: &str,
    ) -> Result<String, EngineError> {
        check_text("reason", reason, MAX_REASON_BYTES)?;
        let id = self.load(task, who).await?;
        self.authorize_operation(&id, who, "resolve")?;
        let actor = who.sub.as_str();
        let index = self.step_of(&id, step)?;
        check_depth("results", &results)?;
        let size = serde_json::to_vec(&results).map_or(usize::MAX, |b| b.len());
        if size > self.config.max_context_bytes {
            return Err(EngineError::Invalid {
                field: "results".into(),
                message: format!(
                    "{size} bytes of JSON is more than the {} bytes a step's results given by hand may have (--max-context-bytes)",
                    self.config.max_context_bytes
                ),
            });
        }
        self.check_resolvable(&id, index)?;
        self.step_mut(&id, index).results = Some(results);
        self.step_change(
            &id,
            index,
            StepEvent::Resolve,
            actor,
            Some(reason.to_string()),
            None,
        );
        if self.tasks[&id].task.state == TaskState::Error {
            self.task_change(
                &id,
                TaskEvent::Retry,
                actor,
                Some(format!("step `{step}` resolved manually")),
            );
        }
        self.schedule_children(&id, index);
        self.evaluate(&id);
        Ok(id)
    }

    /// Whether an operator may supply a step's results by hand. Only a step in error, or a
    /// pending step whose parents are all done, of an unfinished task; never an approval gate
    /// nor a step whose results feed a gate that has not approved (that would decide for the
    /// person the gate waits on); `error` says which rule refused it.
    fn check_resolvable(&self, id: &str, index: usize) -> Result<(), EngineError> {
        let entry = &self.tasks[id];
        let task = &entry.task;
        let step = &task.steps[index];
        let refuse = |why: String| {
            Err(EngineError::Conflict(format!(
                "cannot resolve step `{}` of task {id}: {why}",
                step.name
            )))
        };
        if task.state.is_terminal() {
            return refuse(format!("the task is already {}", task.state));
        }
        if self.is_gate(step) {
            return refuse(
                "it is an approval gate; only `approve` or `deny` by someone allowed to decide ends it"
                    .into(),
            );
        }
        match step.state {
            StepState::Error => {}
            StepState::Pending => {
                let waiting: Vec<&str> = step
                    .depends_on
                    .iter()
                    .filter(|p| !task.step(p).is_some_and(|p| p.state.satisfies_dependency()))
                    .map(String::as_str)
                    .collect();
                if !waiting.is_empty() {
                    return refuse(format!(
                        "it waits on {} (not complete); resolving it would let its children run before them",
                        waiting.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            other => {
                return refuse(format!(
                    "it is {other}; only a step in error, or a pending step whose parents are complete, can be resolved"
                ))
            }
        }
        if let Some(child) = &step.child {
            return refuse(format!(
                "it delegated its work to task {}, whose outcome is its outcome; have that task's team retry or resolve it, then retry this task",
                child.task_id
            ));
        }
        if self.registry.get(&step.handler).is_some_and(|h| h.delegates()) {
            return refuse(
                "it delegates its work to another team's task; only that task's outcome completes it, so retry the task instead"
                    .into(),
            );
        }
        // Every step downstream of this one: if one is a gate that has not approved, results
        // given here by hand would decide it (a policy check that says "no approval needed").
        for i in entry.descendants(index) {
            let s = &task.steps[i];
            if self.is_gate(s) && !s.state.satisfies_dependency() {
                return refuse(format!(
                    "its results feed the approval gate `{}`, which has not approved; retry the task instead",
                    s.name
                ));
            }
        }
        Ok(())
    }

    /// Whether a step is an approval gate: its handler says so, or it has asked a person.
    fn is_gate(&self, step: &Step) -> bool {
        step.approval.is_some()
            || self
                .registry
                .get(&step.handler)
                .is_some_and(|h| h.is_approval_gate())
    }

    // ----- scheduling ------------------------------------------------------------------------

    fn steps_in(&self, id: &str, state: StepState) -> Vec<usize> {
        let steps = &self.tasks[id].task.steps;
        (0..steps.len()).filter(|&i| steps[i].state == state).collect()
    }

    /// Queues every ready step of a task and arms the timers of steps waiting for retry.
    fn schedule_task(&mut self, id: &str) {
        let entry = &self.tasks[id];
        for i in entry.ready_steps() {
            self.ready.push_back((id.to_string(), i));
        }
        for (i, step) in entry.task.steps.iter().enumerate() {
            if step.state == StepState::WaitingForRetry {
                let at = step.next_attempt_at.unwrap_or(0);
                self.timers.insert((at, id.to_string(), i));
            }
            if let (StepState::AwaitingApproval, Some(approval)) = (step.state, &step.approval) {
                self.approval_timers
                    .insert((approval.expires_at, id.to_string(), i));
            }
        }
    }

    fn schedule_children(&mut self, id: &str, index: usize) {
        let entry = &self.tasks[id];
        for child in entry.ready_children(index) {
            self.ready.push_back((id.to_string(), child));
        }
    }

    fn fire_due_timers(&mut self) {
        let now = self.clock.now();
        while self.timers.first().is_some_and(|(at, _, _)| *at <= now) {
            let Some((_, id, i)) = self.timers.pop_first() else {
                break;
            };
            let due = self
                .tasks
                .get(&id)
                .is_some_and(|e| e.task.steps[i].state == StepState::WaitingForRetry);
            if due {
                self.step_change(
                    &id,
                    i,
                    StepEvent::RetryDue,
                    ENGINE,
                    Some("backoff elapsed".into()),
                    None,
                );
                if self.tasks[&id].is_ready(i) {
                    self.ready.push_back((id, i));
                }
            }
        }
        while self.approval_timers.first().is_some_and(|(at, _, _)| *at <= now) {
            let Some((_, id, i)) = self.approval_timers.pop_first() else {
                break;
            };
            let waiting = self
                .tasks
                .get(&id)
                .is_some_and(|e| e.task.steps[i].state == StepState::AwaitingApproval);
            if waiting {
                self.expire_approval(&id, i);
            }
        }
    }

    /// Ends a request nobody decided in time (a permanent error). Returns when it expired.
    fn expire_approval(&mut self, id: &str, i: usize) -> Timestamp {
        let approval = self.tasks[id].task.steps[i].approval.as_ref();
        let timeout = approval.map_or(0, |a| a.request.timeout_seconds);
        let expired = approval.map_or(0, |a| a.expires_at);
        self.approval_timers.retain(|(_, t, s)| !(t == id && *s == i));
        let info = ErrorInfo {
            kind: "permanent".into(),
            code: Some("APPROVAL_EXPIRED".into()),
            message: format!("no decision within {timeout} s: the approval request expired"),
        };
        self.conclude_approval(id, i, None, info);
        expired
    }

    /// A step asked for a person's decision: it waits, durably, until a decision or expiry.
    fn await_approval(&mut self, id: &str, i: usize, request: crate::model::ApprovalRequest) {
        let now = self.clock.now();
        let expires_at = crate::model::deadline_after(now, Duration::from_secs(request.timeout_seconds));
        let payload = json!({ "request": request, "expires_at": expires_at });
        let summary = request.summary.clone();
        self.step_mut(id, i).approval = Some(Approval {
            request,
            requested_at: now,
            expires_at,
            decision: None,
        });
        self.approval_timers.insert((expires_at, id.to_string(), i));
        self.step_change(id, i, StepEvent::AwaitApproval, ENGINE, Some(summary), None);
        if let Some(e) = self.events.last_mut() {
            e.payload = payload;
        }
    }

    /// A step created a task to do its work (delegation): it waits, durably, for that task
    /// to end, and ends with it (see `conclude_child`).
    async fn await_child(&mut self, id: &str, i: usize, child: String, results: Value) {
        let reason = Some(format!("waiting on child task {child}"));
        self.step_mut(id, i).child = Some(crate::model::ChildWait {
            task_id: child,
            results,
        });
        self.step_change(id, i, StepEvent::AwaitChild, ENGINE, reason, None);
        self.check_child(id, i).await;
    }

    /// Ends a step waiting on a child task if the child has ended.
    async fn check_child(&mut self, id: &str, i: usize) {
        let Some(child_id) = self.tasks[id].task.steps[i]
            .child
            .as_ref()
            .map(|c| c.task_id.clone())
        else {
            return;
        };
        let child = match self.tasks.get(&child_id) {
            Some(entry) => Some(entry.task.clone()),
            None => match self.store.task(&child_id).await {
                Ok(Some(child)) => match self.open(child).await {
                    Ok((child, _)) => Some(child),
                    Err(e) => {
                        tracing::warn!(task = id, child = %child_id, "cannot open the child task: {e}");
                        return;
                    }
                },
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(task = id, child = %child_id, "cannot read the child task: {e}");
                    None
                }
            },
        };
        match child {
            Some(child) if !child.state.is_active() => self.conclude_child(id, i, &child),
            Some(_) => {}
            None => {
                let info = ErrorInfo {
                    kind: "permanent".into(),
                    code: Some("DELEGATED_TASK_MISSING".into()),
                    message: format!("the child task {child_id} this step created is not in the store"),
                };
                self.fail_child_wait(id, i, info);
            }
        }
    }

    /// Tells the step that created `child_id` (if it waits on it) that the child has ended.
    /// The parent is found through the child's `parent` and `origin_key`, so this works in
    /// any engine, including one that had not loaded the parent.
    async fn notify_parent(&mut self, child_id: &str) {
        let Some(child) = self.tasks.get(child_id).map(|e| e.task.clone()) else {
            return;
        };
        let (Some(parent), Some(origin)) = (child.parent.as_deref(), child.origin_key.as_deref()) else {
            return;
        };
        let Some(step) = origin.strip_prefix(parent).and_then(|s| s.strip_prefix('/')) else {
            return;
        };
        if !self.tasks.contains_key(parent) && self.store.shared() {
            // The engine driving the parent ends the step when it next looks (`share`), and
            // one that takes the parent over looks at once (`recover`).
            return;
        }
        if !self.tasks.contains_key(parent) {
            let stored = match self.store.task(parent).await {
                Ok(Some(task)) => self.open(task).await,
                _ => return,
            };
            match stored {
                Ok((task, sealer)) => {
                    // Held only for this turn unless it is still being driven.
                    if !task.state.is_active() {
                        self.finished.push(parent.to_string());
                    }
                    self.tasks.insert(parent.to_string(), Entry::loaded(task, sealer));
                }
                Err(e) => {
                    tracing::warn!(task = %parent, "cannot open the parent task: {e}");
                    return;
                }
            }
        }
        let Some(i) = self.tasks[parent].task.step_index(step) else {
            return;
        };
        let s = &self.tasks[parent].task.steps[i];
        if s.state == StepState::WaitingForChild && s.child.as_ref().is_some_and(|c| c.task_id == child_id) {
            let parent = parent.to_string();
            self.conclude_child(&parent, i, &child);
        }
    }

    /// Ends a delegating step with its child: complete with the handler's results plus the
    /// child's state and its steps' results, or in error with what failed in the child.
    fn conclude_child(&mut self, id: &str, i: usize, child: &Task) {
        let failed_at = || {
            child
                .steps
                .iter()
                .find(|s| s.state == StepState::Error)
                .map(|s| {
                    let e = s.last_error.as_ref();
                    format!(
                        " at `{}`: {}{}",
                        s.name,
                        e.map_or("", |e| e.message.as_str()),
                        e.and_then(|e| e.code.as_deref())
                            .map(|c| format!(" ({c})"))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default()
        };
        match child.state {
            TaskState::Complete | TaskState::ResolvedManually => {
                let now = self.clock.now();
                let step = self.step_mut(id, i);
                let mut results = step
                    .child
                    .as_ref()
                    .map_or(Value::Object(Default::default()), |c| c.results.clone());
                if let Value::Object(map) = &mut results {
                    map.insert("delegated_task_status".into(), json!(child.state));
                    map.insert(
                        "delegated_results".into(),
                        child
                            .steps
                            .iter()
                            .map(|s| (s.name.clone(), s.results.clone().unwrap_or(Value::Null)))
                            .collect::<serde_json::Map<String, Value>>()
                            .into(),
                    );
                }
                step.results = Some(results);
                step.last_error = None;
                step.finished_at = Some(now);
                let reason = Some(format!("child task {} {}", child.id, child.state));
                self.step_change(id, i, StepEvent::ChildSucceeded, ENGINE, reason, None);
                self.emit(
                    id,
                    names::STEP_COMPLETED,
                    Some(i),
                    json!({ "child": child.id, "child_state": child.state }),
                );
                self.schedule_children(id, i);
                self.evaluate(id);
            }
            TaskState::Error => {
                let info = ErrorInfo {
                    kind: "permanent".into(),
                    code: Some("DELEGATED_TASK_FAILED".into()),
                    message: format!("{} task {} failed{}", child.workflow_ref(), child.id, failed_at()),
                };
                self.fail_child_wait(id, i, info);
            }
            TaskState::Cancelled => {
                let info = ErrorInfo {
                    kind: "permanent".into(),
                    code: Some("DELEGATED_TASK_CANCELLED".into()),
                    message: format!("{} task {} was cancelled", child.workflow_ref(), child.id),
                };
                self.fail_child_wait(id, i, info);
            }
            TaskState::Pending | TaskState::InProgress => {}
        }
    }

    fn fail_child_wait(&mut self, id: &str, i: usize, info: ErrorInfo) {
        let now = self.clock.now();
        let step = self.step_mut(id, i);
        step.last_error = Some(info.clone());
        step.finished_at = Some(now);
        let reason = Some(info.message.clone());
        self.step_change(id, i, StepEvent::ChildFailed, ENGINE, reason, Some(info.clone()));
        self.emit(
            id,
            names::STEP_FAILED,
            Some(i),
            json!({ "error": info, "will_retry": false }),
        );
        self.evaluate(id);
    }

    async fn decide(
        &mut self,
        task: &str,
        step: &str,
        approve: bool,
        who: &Identity,
        note: Option<String>,
    ) -> Result<String, EngineError> {
        check_text("note", note.as_deref().unwrap_or(""), MAX_REASON_BYTES)?;
        let id = self.load(task, who).await?;
        let i = self.step_of(&id, step)?;
        let entry = &self.tasks[&id];
        let s = &entry.task.steps[i];
        // Whether `who` may decide here at all comes before anything about the step's state.
        let requester = s.approval.as_ref().map_or("", |a| a.request.requester.as_str());
        self.coordinator.check(
            who,
            Request::Decide {
                namespace: &entry.task.namespace,
                requester,
            },
        )?;
        let (StepState::AwaitingApproval, Some(approval)) = (s.state, &s.approval) else {
            return Err(EngineError::Conflict(format!(
                "step `{step}` of task {id} is {}, not awaiting approval",
                s.state
            )));
        };
        let now = self.clock.now();
        if now >= approval.expires_at {
            // The timer has not fired yet (no turn ran since the deadline): expire it now.
            let expired = self.expire_approval(&id, i);
            return Err(EngineError::Conflict(format!(
                "the approval request of step `{step}` expired at {}; nothing was decided ({})",
                crate::model::format_timestamp(expired),
                "retry the task to ask again"
            )));
        }
        if !approve && note.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(EngineError::Invalid {
                field: "reason".into(),
                message: "a denial needs a reason".into(),
            });
        }
        let decision = Decision {
            approved: approve,
            by: who.sub.clone(),
            at: now,
            note: note.clone(),
            approval_id: format!(
                "APPR-{}",
                &self.new_uuid(now).simple().to_string()[20..].to_uppercase()
            ),
        };
        let info = ErrorInfo {
            kind: "permanent".into(),
            code: Some("APPROVAL_DENIED".into()),
            message: format!("denied by {}: {}", who.sub, note.unwrap_or_default()),
        };
        self.approval_timers.retain(|(_, t, s)| !(t == &id && *s == i));
        self.conclude_approval(&id, i, Some(decision), info);
        Ok(id)
    }

    /// Ends an approval gate: approved → complete with who and when; denied or expired
    /// (`decision` None) → a permanent error carrying `denial`.
    fn conclude_approval(&mut self, id: &str, i: usize, decision: Option<Decision>, denial: ErrorInfo) {
        let now = self.clock.now();
        let step = self.step_mut(id, i);
        let Some(approval) = step.approval.as_mut() else {
            // Callers check the step awaits approval with its request; never end a gate
            // without one.
            tracing::error!(task = id, step = i, "an approval gate without its request");
            return;
        };
        approval.decision = decision.clone();
        step.finished_at = Some(now);
        match decision {
            Some(d) if d.approved => {
                step.results = Some(json!({
                    "approval_obtained": true,
                    "approval_method": "manager_approval",
                    "approved_by": d.by,
                    "approval_id": d.approval_id,
                    "approval_notes": d.note,
                    "approval_timestamp": crate::model::format_timestamp(d.at),
                    "request": approval.request,
                }));
                let reason = Some(format!("approved by {}", d.by));
                self.step_change(id, i, StepEvent::Approve, &d.by, reason, None);
                self.emit(
                    id,
                    names::STEP_COMPLETED,
                    Some(i),
                    json!({ "approved_by": d.by, "approval_id": d.approval_id }),
                );
                self.schedule_children(id, i);
            }
            other => {
                let actor = other.as_ref().map_or(ENGINE.to_string(), |d| d.by.clone());
                step.last_error = Some(denial.clone());
                self.step_change(
                    id,
                    i,
                    StepEvent::Deny,
                    &actor,
                    Some(denial.message.clone()),
                    Some(denial.clone()),
                );
                self.emit(
                    id,
                    names::STEP_FAILED,
                    Some(i),
                    json!({ "error": denial, "will_retry": false }),
                );
            }
        }
        self.evaluate(id);
    }

    /// Starts ready steps while the global concurrency limit allows.
    fn dispatch(&mut self) {
        if !self.config.dispatch || self.stopping.is_some() {
            return;
        }
        while self.inflight.len() + self.to_spawn.len() < self.config.concurrency {
            let Some((id, i)) = self.ready.pop_front() else {
                break;
            };
            let Some(entry) = self.tasks.get_mut(&id) else {
                continue;
            };
            if !entry.task.state.is_active() || !entry.is_ready(i) {
                continue; // queued twice, or changed since it was queued
            }
            if entry.task.state == TaskState::Pending {
                self.task_change(&id, TaskEvent::Start, ENGINE, None);
            }
            let now = self.clock.now();
            let step = self.step_mut(&id, i);
            step.attempts = step.attempts.saturating_add(1);
            step.next_attempt_at = None;
            step.started_at = Some(now);
            self.step_change(&id, i, StepEvent::Start, ENGINE, None, None);
            self.to_spawn.push((id, i));
        }
    }

    async fn on_outcome(&mut self, attempt: Attempt, result: Result<Value, StepError>) {
        let key = (attempt.task_id, attempt.step);
        self.inflight.remove(&key);
        let (id, i) = key;
        let Some(entry) = self.tasks.get(&id) else { return };
        let step = &entry.task.steps[i];
        if step.state != StepState::InProgress || step.attempts != attempt.attempt {
            return; // cancelled or superseded while it ran
        }
        let now = self.clock.now();
        let duration_ms = step.started_at.map_or(0, |t| now.saturating_sub(t));
        // The attempt ended: crashes before it no longer count as a streak.
        self.step_mut(&id, i).interruptions = 0;
        match result {
            Ok(results) => {
                let step = self.step_mut(&id, i);
                step.results = Some(results);
                step.last_error = None;
                step.finished_at = Some(now);
                self.step_change(&id, i, StepEvent::Succeed, ENGINE, None, None);
                self.emit(
                    &id,
                    names::STEP_COMPLETED,
                    Some(i),
                    json!({ "attempt": attempt.attempt, "duration_ms": duration_ms }),
                );
                self.schedule_children(&id, i);
            }
            Err(StepError::AwaitApproval(request)) => self.await_approval(&id, i, *request),
            Err(StepError::AwaitChild { task_id, results }) => {
                self.await_child(&id, i, task_id, results).await
            }
            Err(error) => self.on_failure(&id, i, attempt.attempt, error, duration_ms),
        }
        self.evaluate(&id);
    }

    fn on_failure(&mut self, id: &str, i: usize, attempt: u32, error: StepError, duration_ms: i64) {
        let step = &self.tasks[id].task.steps[i];
        let retry = error.is_retryable() && step.retry.retryable && step.attempts_used() < step.retry.limit;
        let info = error.info();
        let now = self.clock.now();
        // Everything the failure changes is set before the state, so the transition record
        // carries it (a replay after a crash restores the retry deadline too).
        let backoff = retry.then(|| {
            let retry_after = match &error {
                StepError::Retryable { retry_after, .. } => *retry_after,
                _ => None,
            };
            let jitter = if self.config.jitter {
                self.rng.random_range(-1.0..=1.0)
            } else {
                0.0
            };
            let (delay, kind) = backoff::delay(&step.retry, attempt, retry_after, jitter);
            (delay, kind, crate::model::deadline_after(now, delay))
        });
        let step = self.step_mut(id, i);
        step.last_error = Some(info.clone());
        match backoff {
            Some((_, _, at)) => step.next_attempt_at = Some(at),
            None => step.finished_at = Some(now),
        }
        let reason = Some(info.message.clone());
        self.step_change(
            id,
            i,
            StepEvent::Fail { retry },
            ENGINE,
            reason,
            Some(info.clone()),
        );
        self.emit(
            id,
            names::STEP_FAILED,
            Some(i),
            json!({ "attempt": attempt, "error": info, "will_retry": retry, "duration_ms": duration_ms }),
        );
        let Some((delay, kind, at)) = backoff else {
            return;
        };
        self.timers.insert((at, id.to_string(), i));
        self.emit(
            id,
            names::STEP_RETRY_SCHEDULED,
            Some(i),
            json!({
                "attempt": attempt,
                "next_attempt": attempt.saturating_add(1),
                "next_attempt_at": at,
                "delay_ms": u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "backoff_type": kind.as_str(),
            }),
        );
    }

    /// Finalizes a task when its steps allow: complete when all are done, error when a step
    /// failed and nothing else can run.
    fn evaluate(&mut self, id: &str) {
        let entry = &self.tasks[id];
        let task = &entry.task;
        if !task.state.is_active() {
            return;
        }
        match entry.execution_status() {
            ExecutionStatus::AllComplete => {
                if task.state == TaskState::Pending {
                    self.task_change(id, TaskEvent::Start, ENGINE, None);
                }
                self.task_change(id, TaskEvent::Complete, ENGINE, None);
            }
            ExecutionStatus::BlockedByFailures => {
                let failed: Vec<&str> = task
                    .steps
                    .iter()
                    .filter(|s| s.state == StepState::Error)
                    .map(|s| s.name.as_str())
                    .collect();
                let reason = format!("steps in error: {}", failed.join(", "));
                self.task_change(id, TaskEvent::Fail, ENGINE, Some(reason));
            }
            _ => {}
        }
    }

    // ----- recording -------------------------------------------------------------------------

    fn step_change(
        &mut self,
        id: &str,
        i: usize,
        event: StepEvent,
        actor: &str,
        reason: Option<String>,
        error: Option<crate::model::ErrorInfo>,
    ) {
        let now = self.clock.now();
        // Callers hold a loaded task (see `step_mut`): a miss is a bug here, not bad input.
        let entry = self.tasks.get_mut(id).expect("step_change on a loaded task");
        let from = entry.task.steps[i].state;
        let to = match step_transition(from, event) {
            Ok(to) => to,
            Err(e) => {
                // The orchestrator only asks for legal changes; reaching this is a bug, and
                // refusing it keeps the stored state consistent.
                tracing::error!(task = id, step = %entry.task.steps[i].name, "{e}");
                return;
            }
        };
        entry.set_state(i, to);
        let step = &entry.task.steps[i];
        let attempt = step.attempts;
        let name = step.name.clone();
        // Callers change the step's other fields before its state, so this copy is the step
        // as it stands after the transition.
        let after = Box::new(step.status());
        entry.task.updated_at = now;
        self.record(
            id,
            Subject::Step(name),
            Some(from.as_str()),
            to.as_str(),
            attempt,
            actor,
            reason.clone(),
            error,
            Some(after),
        );
        let event_name = match (from, to) {
            (_, StepState::InProgress) => Some(names::STEP_EXECUTION_REQUESTED),
            (StepState::InProgress, StepState::Pending) => Some(names::STEP_RECOVERED),
            (_, StepState::Pending) => Some(names::STEP_RETRY_REQUESTED),
            (_, StepState::AwaitingApproval) => Some(names::STEP_AWAITING_APPROVAL),
            (_, StepState::WaitingForChild) => Some(names::STEP_WAITING_FOR_CHILD),
            (_, StepState::Cancelled) => Some(names::STEP_CANCELLED),
            (_, StepState::ResolvedManually) => Some(names::STEP_RESOLVED_MANUALLY),
            // completed / failed / retry_scheduled carry outcome details; the caller emits them.
            _ => None,
        };
        if let Some(name) = event_name {
            self.emit(
                id,
                name,
                Some(i),
                json!({ "attempt": attempt, "actor": actor, "reason": reason }),
            );
        }
    }

    fn task_change(&mut self, id: &str, event: TaskEvent, actor: &str, reason: Option<String>) {
        let now = self.clock.now();
        // Callers hold a loaded task (see `step_mut`): a miss is a bug here, not bad input.
        let entry = self.tasks.get_mut(id).expect("task_change on a loaded task");
        let from = entry.task.state;
        let to = match task_transition(from, event) {
            Ok(to) => to,
            Err(e) => {
                tracing::error!(task = id, "{e}");
                return;
            }
        };
        entry.task.state = to;
        entry.task.updated_at = now;
        let notify = !to.is_active() && entry.task.parent.is_some();
        if !to.is_active() {
            self.finished.push(id.to_string());
        }
        self.record(
            id,
            Subject::Task,
            Some(from.as_str()),
            to.as_str(),
            0,
            actor,
            reason.clone(),
            None,
            None,
        );
        let name = match to {
            TaskState::InProgress => names::TASK_STARTED,
            TaskState::Complete => names::TASK_COMPLETED,
            TaskState::Error => names::TASK_FAILED,
            TaskState::Cancelled => names::TASK_CANCELLED,
            TaskState::ResolvedManually => names::TASK_RESOLVED_MANUALLY,
            TaskState::Pending => names::TASK_RETRY_REQUESTED,
        };
        self.emit(id, name, None, json!({ "actor": actor, "reason": reason }));
        if notify {
            // Told at the end of the turn (`tell_parents`): finding the parent may read the store.
            self.children_ended.push(id.to_string());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        id: &str,
        subject: Subject,
        from: Option<&str>,
        to: &str,
        attempt: u32,
        actor: &str,
        reason: Option<String>,
        error: Option<crate::model::ErrorInfo>,
        step: Option<Box<crate::model::StepStatus>>,
    ) {
        self.seq += 1;
        if let Some(entry) = self.tasks.get_mut(id) {
            entry.task.seq = self.seq;
        }
        self.transitions.push(Transition {
            seq: self.seq,
            task_id: id.to_string(),
            at: self.clock.now(),
            actor: actor.to_string(),
            subject,
            from: from.map(str::to_string),
            to: to.to_string(),
            attempt,
            reason,
            error,
            step,
        });
        self.dirty.insert(id.to_string());
    }

    fn emit(&mut self, id: &str, name: &str, step: Option<usize>, payload: Value) {
        let task = &self.tasks[id].task;
        self.events.push(Event {
            seq: 0,
            at: self.clock.now(),
            name: name.to_string(),
            task_id: id.to_string(),
            workflow: task.workflow_ref(),
            step: step.map(|i| task.steps[i].name.clone()),
            custom: false,
            payload,
        });
    }

    /// Makes this turn durable, then publishes, answers and spawns. Returns false when the
    /// store failed: the engine stops rather than run on state it could not save.
    async fn commit(&mut self) -> bool {
        let workflows = self.workflows_of_turn();
        self.raise_signals(&workflows);
        for event in &mut self.events {
            self.event_seq += 1;
            event.seq = self.event_seq;
        }
        let mut sealed: Option<(Vec<Transition>, Vec<Event>)> = None;
        let ok = if self.dirty.is_empty() && self.transitions.is_empty() && self.events.is_empty() {
            true
        } else {
            // Personal data is sealed in what is stored and published; memory keeps it plain.
            let sealer = |id: &str| self.tasks.get(id).and_then(|e| e.sealer.as_deref());
            let sealed_contexts: HashMap<&str, Value> = self
                .created
                .iter()
                .filter_map(|id| {
                    let e = self.tasks.get(id)?;
                    Some((id.as_str(), e.sealer.as_ref()?.seal_context(&e.context)))
                })
                .collect();
            let any_sealed = self.transitions.iter().any(|t| sealer(&t.task_id).is_some())
                || self.events.iter().any(|e| sealer(&e.task_id).is_some());
            if any_sealed {
                let transitions: Vec<Transition> = self
                    .transitions
                    .iter()
                    .map(|t| match sealer(&t.task_id) {
                        Some(s) => s.seal_transition(t),
                        None => t.clone(),
                    })
                    .collect();
                let events: Vec<Event> = self
                    .events
                    .iter()
                    .map(|e| match sealer(&e.task_id) {
                        Some(s) => s.seal_event(e),
                        None => e.clone(),
                    })
                    .collect();
                sealed = Some((transitions, events));
            }
            let (transitions, events) = match &sealed {
                Some((t, e)) => (t.as_slice(), e.as_slice()),
                None => (self.transitions.as_slice(), self.events.as_slice()),
            };
            let writes: Vec<TaskWrite> = self
                .dirty
                .iter()
                .filter_map(|id| self.tasks.get(id).map(|e| (id, e)))
                .map(|(id, e)| TaskWrite {
                    task: &e.task,
                    context: self
                        .created
                        .contains(id)
                        .then(|| sealed_contexts.get(id.as_str()).unwrap_or(&*e.context)),
                    before: e.stored,
                })
                .collect();
            let started = std::time::Instant::now();
            match self.store.commit(&writes, transitions, events).await {
                Ok(()) => {
                    self.metrics.commit_took(started.elapsed().as_secs_f64());
                    true
                }
                Err(e @ crate::store::StoreError::Fenced(_)) => {
                    // Crash-only: its leases went to other engines, which run those tasks now;
                    // carrying on could run a step twice.
                    tracing::error!("{e}; this engine stops (restart it to join again)");
                    false
                }
                Err(e) => {
                    tracing::error!("store commit failed, stopping the engine: {e}");
                    false
                }
            }
        };
        if ok {
            for id in &self.dirty {
                if let Some(e) = self.tasks.get_mut(id) {
                    e.stored = Some((e.task.state, e.task.updated_at));
                }
            }
            self.count_committed(&workflows);
        }
        self.dirty.clear();
        self.created.clear();
        self.transitions.clear();
        if ok {
            // Subscribers read through the query side, which reveals per reader: they get
            // the events as stored.
            let published = match sealed {
                Some((_, events)) => {
                    self.events.clear();
                    events
                }
                None => std::mem::take(&mut self.events),
            };
            // With other engines on the store, every engine's subscribers get the events from
            // the store, in the order it numbered them (`Engine::start`'s tail).
            if !self.store.shared() {
                for event in published {
                    self.bus.publish(event);
                }
            }
            for (id, i) in std::mem::take(&mut self.to_spawn) {
                self.spawn(id, i);
            }
            // After the spawns: the gauges say what runs now, not what ran before this turn.
            self.metrics.queue(self.ready.len(), self.inflight.len());
        } else {
            self.events.clear();
            self.to_spawn.clear();
        }
        for f in self.after_commit.drain(..) {
            f(ok);
        }
        ok
    }

    /// The workflow of each transition of this turn (resolved once per run of transitions of
    /// one task). A version no longer in the catalog is `None`: its tasks still count, log
    /// and trace, without business figures or signals of their own configuration.
    fn workflows_of_turn(&self) -> Vec<Option<Arc<crate::workflow::Workflow>>> {
        let mut out: Vec<Option<Arc<crate::workflow::Workflow>>> = Vec::with_capacity(self.transitions.len());
        let mut last: Option<&str> = None;
        for t in &self.transitions {
            let same = last == Some(t.task_id.as_str());
            let workflow = match out.last() {
                Some(previous) if same => previous.clone(),
                _ => self
                    .tasks
                    .get(&t.task_id)
                    .and_then(|e| self.catalog.resolve(&e.task.workflow_ref()).ok()),
            };
            last = Some(t.task_id.as_str());
            out.push(workflow);
        }
        out
    }

    /// Post 05's business signals (bottleneck, SLA violation, oversell risk) raised by this
    /// turn's transitions, as events stored in the same commit (`telemetry::signals`).
    fn raise_signals(&mut self, workflows: &[Option<Arc<crate::workflow::Workflow>>]) {
        let none = crate::workflow::handler_config::HandlerConfig::default();
        let mut raised = Vec::new();
        for (t, workflow) in self.transitions.iter().zip(workflows) {
            let Some(entry) = self.tasks.get(&t.task_id) else {
                continue;
            };
            let task = &entry.task;
            let facts = crate::telemetry::metrics::TaskFacts {
                namespace: &task.namespace,
                workflow: &task.name,
                version: &task.version,
                created_at: task.created_at,
                context: &entry.context,
                config: workflow.as_ref().map_or(&none, |w| &w.template.handler_config),
                steps: &task.steps,
            };
            for signal in crate::telemetry::signals::of(t, &facts) {
                raised.push(Event {
                    seq: 0,
                    at: t.at,
                    name: signal.name.to_string(),
                    task_id: task.id.clone(),
                    workflow: task.workflow_ref(),
                    step: signal.step,
                    custom: false,
                    payload: signal.payload,
                });
            }
        }
        self.events.extend(raised);
    }

    /// Moves the metrics by the transitions just committed: once each, only once durable.
    fn count_committed(&mut self, workflows: &[Option<Arc<crate::workflow::Workflow>>]) {
        let none = crate::workflow::handler_config::HandlerConfig::default();
        for (t, workflow) in self.transitions.iter().zip(workflows) {
            let Some(entry) = self.tasks.get(&t.task_id) else {
                continue;
            };
            let task = &entry.task;
            let handler_config = workflow.as_ref().map_or(&none, |w| &w.template.handler_config);
            log_committed(t, task, &entry.context, entry.sealer.as_deref());
            if let Some(tracer) = &self.config.tracer {
                tracer.committed(
                    t,
                    &crate::telemetry::traces::TaskTrace {
                        id: &task.id,
                        namespace: &task.namespace,
                        workflow: &task.name,
                        version: &task.version,
                        created_at: task.created_at,
                        context: &entry.context,
                        traceparent: task.traceparent.as_deref(),
                        config: handler_config,
                    },
                );
            }
            self.metrics.committed(
                t,
                &crate::telemetry::metrics::TaskFacts {
                    namespace: &task.namespace,
                    workflow: &task.name,
                    version: &task.version,
                    created_at: task.created_at,
                    context: &entry.context,
                    config: handler_config,
                    steps: &task.steps,
                },
            );
        }
        for event in self.events.iter().filter(|e| !e.custom) {
            if !crate::telemetry::signals::NAMES.contains(&event.name.as_str()) {
                continue;
            }
            if let Some(entry) = self.tasks.get(&event.task_id) {
                self.metrics
                    .signal(event, &entry.task.namespace, &entry.task.name);
            }
        }
        self.metrics
            .next_approval_expiry(self.approval_timers.first().map(|(at, _, _)| *at));
    }

    fn spawn(&mut self, id: String, i: usize) {
        let entry = &self.tasks[&id];
        let task = &entry.task;
        let step = &task.steps[i];
        let results = entry.results.clone();
        let tx = self.tx.clone();
        let clock = self.clock;
        let (task_id, workflow, step_name) = (id.clone(), task.workflow_ref(), step.name.clone());
        let events = EventSink::new(move |name, payload| {
            let _ = tx.send(Message::Custom(Event {
                seq: 0,
                at: clock.now(),
                name: name.to_string(),
                task_id: task_id.clone(),
                workflow: workflow.clone(),
                step: Some(step_name.clone()),
                custom: true,
                payload,
            }));
        });
        let input = StepInput {
            task_id: id.clone(),
            namespace: task.namespace.clone(),
            workflow: task.name.clone(),
            version: task.version.clone(),
            step: step.name.clone(),
            context: entry.context.clone(),
            results,
            handler_config: step.handler_config.clone(),
            idempotency_key: step.idempotency_key.clone(),
            attempt: step.attempts,
            events,
            initiator: task.initiator.clone(),
            correlation_id: task.correlation_id.clone(),
            delegator: self.delegator.clone(),
        };
        let attempt = Attempt {
            task_id: id.clone(),
            step: i,
            attempt: step.attempts,
        };
        let handle = match self.registry.get(&step.handler) {
            Some(handler) => runner::spawn(
                handler,
                input,
                step.timeout_ms.map(Duration::from_millis),
                attempt,
                self.tx.clone(),
                self.clock,
            ),
            None => {
                let missing = StepError::permanent(
                    "HANDLER_NOT_FOUND",
                    format!("no handler named `{}` is registered", step.handler),
                );
                runner::spawn(
                    Arc::new(Missing(missing)),
                    input,
                    None,
                    attempt,
                    self.tx.clone(),
                    self.clock,
                )
            }
        };
        self.inflight.insert((id, i), handle);
    }

    /// One periodic pass of the configured retention; the next comes in 10 s, or in 1 s while
    /// a backlog remains.
    async fn retention_pass(&mut self) {
        let Some(policy) = self.config.retention.clone() else {
            self.next_prune = None;
            return;
        };
        let now = self.clock.now();
        let held = |id: &str| self.tasks.contains_key(id);
        let outcome = match retention::candidates(&*self.store, &policy, now, retention::PASS).await {
            Ok(ids) => {
                let full = ids.len() >= retention::PASS;
                retention::prune(&*self.store, &ids, &policy, now, &held)
                    .await
                    .map(|r| (r, full))
            }
            Err(e) => Err(e),
        };
        let backlog = match outcome {
            Ok((report, full)) => {
                if report.removed > 0 {
                    tracing::info!(removed = report.removed, archive = ?report.archive, "retention archived and removed finished tasks");
                    self.forget_removed().await;
                }
                full && report.removed > 0
            }
            Err(e) => {
                tracing::error!("retention pass failed (nothing is lost; it runs again later): {e}");
                false
            }
        };
        let wait = if backlog { 1 } else { 10 };
        self.next_prune = Some(tokio::time::Instant::now() + Duration::from_secs(wait));
    }

    /// Every pass a policy needs (`taskdeck prune`), or with `dry_run` the ids it would take.
    async fn prune_all(
        &mut self,
        policy: &retention::Retention,
        dry_run: bool,
    ) -> Result<(retention::PruneReport, Vec<String>), EngineError> {
        let now = self.clock.now();
        if dry_run {
            return Ok((
                retention::PruneReport::default(),
                retention::candidates(&*self.store, policy, now, usize::MAX).await?,
            ));
        }
        let mut total = retention::PruneReport::default();
        loop {
            let ids = retention::candidates(&*self.store, policy, now, retention::PASS).await?;
            if ids.is_empty() {
                return Ok((total, Vec::new()));
            }
            let held = |id: &str| self.tasks.contains_key(id);
            let report = retention::prune(&*self.store, &ids, policy, now, &held).await?;
            total.removed += report.removed;
            total.kept += report.kept;
            total.archive = report.archive.or(total.archive);
            if report.removed > 0 {
                self.forget_removed().await;
            } else {
                return Ok((total, Vec::new())); // only tasks that must stay are left
            }
        }
    }

    /// After retention removed tasks: the simulated systems forget what tasks older than the
    /// oldest one left wrote, so they keep what the store keeps.
    async fn forget_removed(&mut self) {
        match self.store.oldest_task_id().await {
            Ok(oldest) => {
                let forgotten = self.registry.forget_before(oldest.as_deref());
                if forgotten > 0 {
                    tracing::debug!(forgotten, "simulated systems forgot the records of removed tasks");
                }
            }
            Err(e) => tracing::warn!("simulated systems keep their records this pass: {e}"),
        }
    }

    /// Drops tasks the engine no longer drives from memory; the store keeps them. None of
    /// them has a step running: complete and failed tasks have none, cancel aborts them.
    fn forget_finished(&mut self) {
        for id in self.finished.drain(..) {
            if self.tasks.get(&id).is_some_and(|e| !e.task.state.is_active()) {
                self.tasks.remove(&id);
            }
        }
    }
}

/// One committed transition in the log, with the task, step and correlation id as fields:
/// task creations and ends at info, failed attempts as warnings, the rest at debug. Contexts
/// (at creation) and results (at completion) are logged at debug only, and always through
/// the filter: the values of `filter_parameters` keys never reach a log.
async fn open_stored(
    vault: Option<Arc<crate::privacy::Vault>>,
    mut task: Task,
) -> Result<(Task, Option<Arc<crate::privacy::Sealer>>), EngineError> {
    match vault {
        Some(vault) => {
            let sealer = vault.open_task(&mut task).await?;
            Ok((task, sealer))
        }
        None => Ok((task, None)),
    }
}

/// Logs a committed transition. Personal values of the task (`sealer`) read `[REDACTED]` in
/// error messages, results and contexts; the log filter masks what looks personal besides.
fn log_committed(
    t: &Transition,
    task: &crate::model::Task,
    context: &Value,
    sealer: Option<&crate::privacy::Sealer>,
) {
    use crate::telemetry::filter;
    let redacted = |v: &Value| sealer.map_or_else(|| v.clone(), |s| s.redact_value(v));
    // A correlation id is logged as written only when it is an identifier: one that is an
    // email, a name or a number is personal data.
    let correlation_id = match context.get("correlation_id").and_then(Value::as_str) {
        None => "",
        Some(id) => filter::safe_id(id, 128).unwrap_or(filter::FILTER_MASK),
    };
    let from = t.from.as_deref().unwrap_or("");
    match &t.subject {
        Subject::Task => {
            let created = t.from.is_none();
            let ended = matches!(
                t.to.as_str(),
                "complete" | "error" | "cancelled" | "resolved_manually"
            );
            if created || ended {
                tracing::info!(
                    task = %t.task_id,
                    namespace = %task.namespace,
                    workflow = %task.name,
                    version = %task.version,
                    correlation_id,
                    from,
                    to = %t.to,
                    // An operator named by an email is logged masked (the audit trail names them).
                    actor = %filter::safe_id(&t.actor, 128).unwrap_or(filter::FILTER_MASK),
                    "task {}",
                    if created { "created" } else { t.to.as_str() }
                );
            }
            if created && tracing::enabled!(tracing::Level::DEBUG) {
                tracing::debug!(task = %t.task_id, correlation_id, context = %filter::mask(&redacted(context)), "task context");
            }
        }
        Subject::Step(step) => {
            if matches!(t.to.as_str(), "error" | "waiting_for_retry") {
                let logged = sealer.map(|s| s.redact_transition(t));
                let error = logged
                    .as_ref()
                    .unwrap_or(t)
                    .error
                    .as_ref()
                    .map(|e| {
                        let code = e
                            .code
                            .as_deref()
                            .map_or("", |c| filter::safe_id(c, 64).unwrap_or(filter::FILTER_MASK));
                        format!("{} {code}: {}", e.kind, filter::scrub_text(&e.message))
                    })
                    .unwrap_or_default();
                tracing::warn!(
                    task = %t.task_id,
                    namespace = %task.namespace,
                    workflow = %task.name,
                    step = %step,
                    attempt = t.attempt,
                    correlation_id,
                    from,
                    to = %t.to,
                    error = %error,
                    "step attempt failed"
                );
            } else {
                tracing::debug!(task = %t.task_id, step = %step, attempt = t.attempt, correlation_id, from, to = %t.to, "step {}", t.to);
            }
            if t.to == "complete" && tracing::enabled!(tracing::Level::DEBUG) {
                if let Some(results) = t.step.as_ref().and_then(|s| s.results.as_ref()) {
                    tracing::debug!(task = %t.task_id, step = %step, correlation_id, results = %filter::mask(&redacted(results)), "step results");
                }
            }
        }
    }
}

/// Refuses JSON nested deeper than `MAX_JSON_DEPTH`, which the store could not read back.
fn check_depth(field: &str, value: &Value) -> Result<(), EngineError> {
    let depth = crate::model::json_depth(value);
    if depth > crate::model::MAX_JSON_DEPTH {
        return Err(EngineError::Invalid {
            field: field.into(),
            message: format!(
                "nested {depth} levels deep; at most {} are accepted",
                crate::model::MAX_JSON_DEPTH
            ),
        });
    }
    Ok(())
}

/// Stands in for a handler that is no longer registered (a task from an older build).
struct Missing(StepError);

#[async_trait::async_trait]
impl crate::handlers::StepHandler for Missing {
    async fn call(&self, _: StepInput) -> Result<Value, StepError> {
        Err(self.0.clone())
    }
}

/// The first retention pass: a few seconds after start (recovery first), if there is a policy.
fn config_prune_start(config: &EngineConfig) -> Option<tokio::time::Instant> {
    config
        .retention
        .as_ref()
        .map(|_| tokio::time::Instant::now() + Duration::from_secs(2))
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What kind of JSON value `v` is, for messages.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The longest reason, note or denial kept with a transition: 4 KiB of UTF-8. (Each is stored
/// in the log and sent to every event subscriber; a paragraph is plenty.)
pub const MAX_REASON_BYTES: usize = 4096;

/// The longest workflow reference accepted (`namespace/name@version`).
pub const MAX_REFERENCE_BYTES: usize = 256;

/// `text` from a request, at most `max` bytes, or `Invalid` naming `field`.
fn check_text(field: &str, text: &str, max: usize) -> Result<(), EngineError> {
    if text.len() > max {
        return Err(EngineError::Invalid {
            field: field.into(),
            message: format!("{} bytes is more than the {max} a {field} may have", text.len()),
        });
    }
    Ok(())
}
