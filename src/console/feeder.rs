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
                        if readable(&task) {
                            batch.push(task);
                        } else {
                            hidden.insert(id.clone());
                        }
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
