//! Step handlers: the code a step runs. A handler is an async function of the task context,
//! earlier steps' results, its `handler_config` and a stable idempotency key (design.md,
//! principle 5). It returns results or a `StepError` saying whether a retry could help.

mod simulate;

use crate::model::StepError;
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

    /// A sink that drops everything (for calling handlers outside an engine).
    pub fn discard() -> Self {
        EventSink::new(|_, _| {})
    }

    pub fn publish(&self, name: &str, payload: Value) {
        (self.0)(name, payload)
    }
}

/// Everything a handler may read.
#[derive(Clone)]
pub struct StepInput {
    pub task_id: String,
    pub namespace: String,
    pub workflow: String,
    pub step: String,
    pub context: Arc<Value>,
    /// Results of the task's completed (or manually resolved) steps, by step name.
    pub results: Arc<BTreeMap<String, Value>>,
    pub handler_config: Value,
    /// The same for every attempt of this step, across restarts: pass it to services so that
    /// a repeated call is not applied twice.
    pub idempotency_key: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub events: EventSink,
}

impl StepInput {
    pub fn result_of(&self, step: &str) -> Option<&Value> {
        self.results.get(step)
    }
}

#[async_trait]
pub trait StepHandler: Send + Sync {
    async fn call(&self, input: StepInput) -> Result<Value, StepError>;
}

/// Handlers by the name workflow files use in `handler:`.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn StepHandler>>,
}

impl Registry {
    /// The built-in handlers.
    pub fn builtin() -> Self {
        let mut r = Registry::default();
        r.register("simulate", Simulate);
        r
    }

    pub fn register(&mut self, name: &str, handler: impl StepHandler + 'static) {
        self.handlers.insert(name.to_string(), Arc::new(handler));
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn StepHandler>> {
        self.handlers.get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}
