//! Feeds the view model: forwards engine events and re-reads the snapshots of tasks they
//! touched (coalesced, at most every 50 ms), off the render path. The first update is every
//! stored task.

use super::app::Update;
use crate::auth::{Coordinator, Identity};
use crate::engine::Event;
use crate::store::Store;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};

/// Only what `who` may read reaches the view model (tasks and their events).
pub struct Reader {
    pub who: Identity,
    pub coordinator: Coordinator,
}

pub async fn feed(
    store: Arc<dyn Store>,
    mut events: broadcast::Receiver<Arc<Event>>,
    tx: mpsc::UnboundedSender<Update>,
    mut focus: watch::Receiver<Option<String>>,
    reader: Reader,
) {
    let readable = |task: &crate::model::Task| reader.coordinator.may_read(&reader.who, task);
    // Tasks already classified, so each is read from the store at most once for this.
    let mut visible: HashSet<String> = HashSet::new();
    let mut hidden: HashSet<String> = HashSet::new();
    let reload = |tx: &mpsc::UnboundedSender<Update>| match store.tasks() {
        Ok(tasks) => {
            let tasks: Vec<_> = tasks.into_iter().filter(|t| readable(t)).collect();
            for chunk in tasks.chunks(1000) {
                let _ = tx.send(Update::Tasks(chunk.to_vec()));
            }
        }
        Err(e) => {
            let _ = tx.send(Update::Notice(format!("cannot read tasks: {e}")));
        }
    };
    reload(&tx);
    let transitions = |id: &str| {
        if let Ok(log) = store.transitions(id) {
            let _ = tx.send(Update::Transitions(id.to_string(), log));
        }
    };
    let mut dirty: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) => {
                    if !visible.contains(&e.task_id) && !hidden.contains(&e.task_id) {
                        match store.task(&e.task_id) {
                            Ok(Some(task)) if readable(&task) => visible.insert(e.task_id.clone()),
                            _ => hidden.insert(e.task_id.clone()),
                        };
                    }
                    if hidden.contains(&e.task_id) {
                        continue;
                    }
                    if !e.custom {
                        dirty.insert(e.task_id.clone());
                    }
                    if tx.send(Update::Event(e)).is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => reload(&tx),
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick(), if !dirty.is_empty() => {
                let focused = focus.borrow().clone();
                let mut batch = Vec::with_capacity(dirty.len());
                for id in dirty.drain() {
                    if let Ok(Some(task)) = store.task(&id) {
                        batch.push(task);
                    }
                    if focused.as_deref() == Some(id.as_str()) {
                        transitions(&id);
                    }
                }
                if tx.send(Update::Tasks(batch)).is_err() {
                    return;
                }
            }
            changed = focus.changed() => {
                if changed.is_err() {
                    return;
                }
                let focused = focus.borrow().clone();
                if let Some(id) = focused {
                    transitions(&id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::engine::{Engine, EngineConfig, SubmitRequest};
    use crate::handlers::Registry;
    use crate::store::{Durability, SledStore};
    use crate::workflow::{Catalog, Source};
    use serde_json::json;

    #[tokio::test(start_paused = true)]
    async fn operators_only_receive_what_they_may_read() {
        let yaml = |ns: &str| Source::Inline {
            file: format!("{ns}.yaml"),
            text: format!(
                "namespace: {ns}\nname: wf\nversion: 1.0.0\nsteps:\n  - {{ name: a, handler: simulate }}\n"
            ),
        };
        let registry = Registry::builtin();
        let catalog =
            Arc::new(Catalog::load(&[yaml("ours"), yaml("theirs")], &|h| registry.contains(h)).unwrap());
        let store: Arc<dyn Store> = Arc::new(SledStore::temporary(Durability::Immediate).unwrap());
        let engine =
            Engine::start(EngineConfig::default(), store.clone(), catalog.clone(), registry).unwrap();
        let admin = Identity::local("root");
        let early = engine
            .submit(SubmitRequest::new("theirs/wf", json!({}), admin.clone()))
            .await
            .unwrap();
        engine.when_idle().await.unwrap();

        let (tx, mut rx) = mpsc::unbounded_channel();
        let (_focus_tx, focus_rx) = watch::channel(None);
        let reader = Reader {
            who: Identity::new("vic", "ours", Role::Viewer),
            coordinator: Coordinator::new(catalog),
        };
        let feeder = tokio::spawn(feed(store, engine.subscribe(), tx, focus_rx, reader));
        tokio::task::yield_now().await;
        let ours = engine
            .submit(SubmitRequest::new("ours/wf", json!({}), admin.clone()))
            .await
            .unwrap();
        let theirs = engine
            .submit(SubmitRequest::new("theirs/wf", json!({}), admin))
            .await
            .unwrap();
        engine.when_idle().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        feeder.abort();

        let mut seen = HashSet::new();
        while let Ok(update) = rx.try_recv() {
            match update {
                Update::Tasks(tasks) => seen.extend(tasks.into_iter().map(|t| t.id)),
                Update::Event(e) => {
                    seen.insert(e.task_id.clone());
                }
                _ => {}
            }
        }
        assert!(seen.contains(&ours.id));
        assert!(
            !seen.contains(&theirs.id),
            "no snapshot or event of another team's task"
        );
        assert!(!seen.contains(&early.id), "not in the first load either");
    }
}
