//! Step handlers: the code a step runs. A handler is an async function of the task context,
//! earlier steps' results, its `handler_config` and a stable idempotency key (design.md,
//! principle 5). It returns results or a `StepError` saying whether a retry could help.

pub mod blog_examples;
pub mod customer_success;
pub mod data_pipeline;
pub mod ecommerce;
pub mod microservices;
pub mod payments;
mod simulate;
pub(crate) mod support;

use crate::auth::Identity;
use crate::model::{Step, StepError};
use crate::services::Services;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use simulate::Simulate;

/// Publishes a custom event (a name and a JSON payload) on the engine's event stream.
#[derive(Clone)]
pub struct EventSink(Arc<PublishFn>);

type PublishFn = dyn Fn(&str, Value) + Send + Sync;

impl EventSink {
    pub fn new(f: impl Fn(&str, Value) + Send + Sync + 'static) -> Self {
        EventSink(Arc::new(f))
    }

    pub fn publish(&self, name: &str, payload: Value) {
        (self.0)(name, payload)
    }
}

/// Why a delegated task was not created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelegationError {
    /// Refused by authorization: permanent.
    #[error("{0}")]
    Denied(String),
    /// The workflow or context is wrong: permanent.
    #[error("{0}")]
    Invalid(String),
    /// The engine could not take it now: worth retrying.
    #[error("{0}")]
    Unavailable(String),
}

/// Creates tasks through the engine's command path, with the same authorization as any
/// caller. Handlers use it to delegate work to another namespace.
#[async_trait]
pub trait Delegator: Send + Sync {
    /// Creates a task of `workflow` as `identity`, recorded as a child of `parent`. Answers
    /// the task's id; a second call with the same `origin_key` (the calling step's idempotency
    /// key) answers the task the first one created.
    async fn create_task(
        &self,
        identity: Identity,
        workflow: &str,
        context: Value,
        parent: &str,
        correlation_id: &str,
        origin_key: &str,
    ) -> Result<String, DelegationError>;
}

/// Everything a handler may read.
#[derive(Clone)]
pub struct StepInput {
    pub task_id: String,
    pub namespace: String,
    pub workflow: String,
    pub version: String,
    pub step: String,
    pub context: Arc<Value>,
    /// Results of the task's steps that completed or were resolved by hand when this step
    /// started, by step name.
    pub results: Results,
    pub handler_config: Value,
    /// The same for every attempt of this step, across restarts: pass it to services so that
    /// a repeated call is not applied twice.
    pub idempotency_key: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub events: EventSink,
    /// Who created the task (an approval's requester).
    pub initiator: String,
    /// The task's correlation id, if it has one.
    pub correlation_id: Option<String>,
    pub delegator: Arc<dyn Delegator>,
}

/// Step results by step name, as a handler reads them (`StepInput::result_of`). A persistent
/// map: the engine hands each step a copy in O(1) and records a completion in O(log n), so a
/// task of thousands of steps never copies every result for every step.
#[derive(Clone, Default)]
pub struct Results(imbl::HashMap<String, Arc<Value>>);

impl Results {
    pub fn get(&self, step: &str) -> Option<&Value> {
        self.0.get(step).map(|v| &**v)
    }

    pub fn insert(&mut self, step: &str, results: Value) {
        self.0.insert(step.to_string(), Arc::new(results));
    }

    pub fn remove(&mut self, step: &str) {
        self.0.remove(step);
    }

    /// All of them as one JSON object, by step name.
    pub fn to_json(&self) -> Value {
        let sorted: BTreeMap<&str, &Value> = self.0.iter().map(|(k, v)| (k.as_str(), &**v)).collect();
        serde_json::to_value(sorted).unwrap_or(Value::Null)
    }
}

impl StepInput {
    pub fn result_of(&self, step: &str) -> Option<&Value> {
        self.results.get(step)
    }
}

#[async_trait]
pub trait StepHandler: Send + Sync {
    async fn call(&self, input: StepInput) -> Result<Value, StepError>;

    /// True for a handler that asks a person to decide (returns `AwaitApproval`). The engine
    /// never lets an operator `resolve` such a step, nor a step whose results feed it.
    fn is_approval_gate(&self) -> bool {
        false
    }

    /// True for a handler that delegates its work to a task it creates (and waits for it).
    /// The engine never lets an operator `resolve` such a step: its outcome is the child's.
    fn delegates(&self) -> bool {
        false
    }
}

/// Runs when a task is created, before it is stored: Tasker's
/// `establish_step_dependencies_and_defaults`. It may enrich the context and adjust the task's
/// copy of its steps (retry limits, timeouts) from what the context asks for.
pub trait TaskHook: Send + Sync {
    fn prepare(&self, context: &mut Value, steps: &mut [Step]);
}

/// Handlers by the name workflow files use in `handler:`, and task hooks by `namespace/name`.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn StepHandler>>,
    hooks: HashMap<String, Arc<dyn TaskHook>>,
    /// The simulated systems the handlers call, told to forget what removed tasks wrote.
    services: Option<Arc<Services>>,
}

impl Registry {
    /// The built-in handlers.
    pub fn builtin() -> Self {
        let mut r = Registry::default();
        r.register("simulate", Simulate);
        r
    }

    /// The built-in handlers plus the blog workflows' handlers over `services`.
    pub fn standard(services: Arc<Services>) -> Self {
        let mut r = Registry::builtin();
        ecommerce::register(&mut r, &services);
        data_pipeline::register(&mut r, &services);
        microservices::register(&mut r, &services);
        payments::register(&mut r, &services);
        customer_success::register(&mut r, &services);
        blog_examples::register(&mut r, &services);
        r.services = Some(services);
        r
    }

    /// Tells the simulated systems to forget the records of tasks older than `oldest` (the
    /// oldest task id the store still holds; `None`: it holds none, forget them all), so
    /// they keep what the engine keeps. Returns how many records went.
    pub fn forget_before(&self, oldest: Option<&str>) -> usize {
        self.services.as_ref().map_or(0, |s| s.forget_before(oldest))
    }

    pub fn register(&mut self, name: &str, handler: impl StepHandler + 'static) {
        self.handlers.insert(name.to_string(), Arc::new(handler));
    }

    /// `workflow` is `namespace/name`; the hook applies to every version.
    pub fn register_hook(&mut self, workflow: &str, hook: impl TaskHook + 'static) {
        self.hooks.insert(workflow.to_string(), Arc::new(hook));
    }

    pub fn hook(&self, namespace: &str, name: &str) -> Option<Arc<dyn TaskHook>> {
        self.hooks.get(&format!("{namespace}/{name}")).cloned()
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn StepHandler>> {
        self.handlers.get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    /// Every handler name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.handlers.keys().cloned().collect();
        names.sort();
        names
    }
}
