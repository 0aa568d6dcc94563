//! Helpers shared by the integration tests.
#![allow(dead_code)]

use serde_json::Value;
use std::sync::Arc;
use taskdeck::engine::{Engine, EngineConfig, Event, SubmitRequest};
use taskdeck::handlers::Registry;
use taskdeck::model::Task;
use taskdeck::store::{Durability, SledStore, Store};
use taskdeck::workflow::{Catalog, Source};
use tokio::sync::broadcast;

pub mod postgres;

pub fn catalog(yaml: &[&str], registry: &Registry) -> Arc<Catalog> {
    let sources: Vec<Source> = yaml
        .iter()
        .enumerate()
        .map(|(i, text)| Source::Inline {
            file: format!("test{i}.yaml"),
            text: text.to_string(),
        })
        .collect();
    Arc::new(Catalog::load(&sources, &|h| registry.contains(h)).expect("test workflows are valid"))
}

pub struct Harness {
    pub engine: Engine,
    pub store: Arc<dyn Store>,
    pub events: broadcast::Receiver<Arc<Event>>,
}

pub fn config() -> EngineConfig {
    EngineConfig {
        jitter: false,
        ..EngineConfig::default()
    }
}

/// An engine on a temporary store running `yaml` workflows.
pub async fn start(yaml: &[&str], registry: Registry, config: EngineConfig) -> Harness {
    start_on(temp_store(), yaml, registry, config).await
}

pub async fn start_on(
    store: Arc<dyn Store>,
    yaml: &[&str],
    registry: Registry,
    config: EngineConfig,
) -> Harness {
    let catalog = catalog(yaml, &registry);
    let engine = Engine::start(config, store.clone(), catalog, registry)
        .await
        .unwrap();
    let events = engine.subscribe();
    Harness {
        engine,
        store,
        events,
    }
}

impl Harness {
    pub async fn submit(&self, workflow: &str, context: Value) -> Task {
        self.engine
            .submit(SubmitRequest::new(
                workflow,
                context,
                taskdeck::auth::Identity::local("tester"),
            ))
            .await
            .unwrap()
    }

    /// Submits and waits until the engine is idle; returns the stored task.
    pub async fn run(&self, workflow: &str, context: Value) -> Task {
        let task = self.submit(workflow, context).await;
        self.engine.when_idle().await.unwrap();
        self.store.task(&task.id).await.unwrap().unwrap()
    }

    /// Every event received so far.
    pub fn drain(&mut self) -> Vec<Arc<Event>> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }
}

/// Times (ms after `origin`) of the events named `name` for `step`.
pub fn times(events: &[Arc<Event>], name: &str, step: &str, origin: i64) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e.name == name && e.step.as_deref() == Some(step))
        .map(|e| e.at - origin)
        .collect()
}

/// An engine over the bundled workflows with the standard handlers on `services`.
pub async fn start_blog(services: Arc<taskdeck::services::Services>, store: Arc<dyn Store>) -> Harness {
    start_blog_with(services, store, config()).await
}

/// `start_blog` with an engine configuration (e.g. `dispatch: false`, as the CLI's
/// administrative commands run it).
pub async fn start_blog_with(
    services: Arc<taskdeck::services::Services>,
    store: Arc<dyn Store>,
    config: EngineConfig,
) -> Harness {
    let registry = Registry::standard(services);
    let catalog = Arc::new(Catalog::load(&[Source::Bundled], &|h| registry.contains(h)).unwrap());
    let engine = Engine::start(config, store.clone(), catalog, registry)
        .await
        .unwrap();
    let events = engine.subscribe();
    Harness {
        engine,
        store,
        events,
    }
}

/// A fresh, empty store of the backend the run tests (the engine tests are a matrix):
/// `TASKDECK_TEST_STORE=postgres` gives a PostgreSQL store in a schema of its own on the
/// database `TASKDECK_TEST_POSTGRES` names; otherwise (or `sled`) a temporary sled store.
pub fn temp_store() -> Arc<dyn Store> {
    match std::env::var("TASKDECK_TEST_STORE").as_deref() {
        Ok("postgres") => {
            let url = std::env::var("TASKDECK_TEST_POSTGRES")
                .expect("TASKDECK_TEST_STORE=postgres needs TASKDECK_TEST_POSTGRES (a database URL)");
            postgres::Synchronous::fresh(&url)
        }
        Ok("sled") | Err(_) => Arc::new(SledStore::temporary(Durability::Immediate).unwrap()),
        Ok(other) => panic!("TASKDECK_TEST_STORE={other}: expected sled or postgres"),
    }
}

/// A shipped sample context from `samples/`, with `extra` merged in at the top level.
pub fn sample(name: &str, extra: Value) -> Value {
    let path = format!("{}/samples/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let mut context: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    if let (Value::Object(base), Value::Object(extra)) = (&mut context, extra) {
        base.extend(extra);
    }
    context
}

/// Submitting that is expected to fail validation.
pub async fn reject(h: &Harness, workflow: &str, context: Value) -> String {
    h.engine
        .submit(SubmitRequest::new(
            workflow,
            context,
            taskdeck::auth::Identity::local("tester"),
        ))
        .await
        .unwrap_err()
        .to_string()
}

/// Post 04's people and request, shared by the refund tests.
pub mod refunds {
    use serde_json::{json, Value};
    use taskdeck::auth::{Identity, Role};

    pub const CS: &str = "customer_success/process_refund";

    /// Priya, the customer-success agent who asks for refunds.
    pub fn agent() -> Identity {
        Identity::new("priya", "customer_success", Role::Operator)
    }

    /// Jane, the customer-success manager who decides them.
    pub fn manager() -> Identity {
        Identity::new("jane", "customer_success", Role::Manager)
    }

    /// Submits the sample request for `cents` as the agent and has the manager approve it;
    /// returns once the engine is idle again.
    pub async fn submitted_and_approved(h: &super::Harness, cents: i64) -> taskdeck::model::Task {
        let task = h
            .engine
            .submit(taskdeck::engine::SubmitRequest::new(CS, refund(cents), agent()))
            .await
            .unwrap();
        h.engine.when_idle().await.unwrap();
        h.engine
            .decide(&task.id, "get_manager_approval", true, &manager(), None)
            .await
            .unwrap();
        h.engine.when_idle().await.unwrap();
        task
    }

    /// Why the agent's request with `context` is refused at submit.
    pub async fn refused(h: &super::Harness, context: Value) -> String {
        h.engine
            .submit(taskdeck::engine::SubmitRequest::new(CS, context, agent()))
            .await
            .unwrap_err()
            .to_string()
    }

    /// The post's sample request for `cents`.
    pub fn refund(cents: i64) -> Value {
        json!({
            "ticket_id": "TICKET-98765",
            "customer_id": "CUST-54321",
            "refund_amount": cents,
            "refund_reason": "Product defect reported by customer",
            "customer_email": "customer@example.com",
            "payment_id": "pay_987654321",
        })
    }
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    if dir.is_dir() {
        std::fs::read_dir(dir)
            .unwrap()
            .flat_map(|e| files_under(&e.unwrap().path()))
            .collect()
    } else {
        vec![dir.to_path_buf()]
    }
}
