//! Feeds the view model: forwards engine events and re-reads the snapshots of tasks they
//! touched (coalesced, at most every 50 ms), off the render path. The first update is every
//! stored task.

use super::app::Update;
use crate::engine::Event;
use crate::store::Store;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};

pub async fn feed(
    store: Arc<dyn Store>,
    mut events: broadcast::Receiver<Arc<Event>>,
    tx: mpsc::UnboundedSender<Update>,
    mut focus: watch::Receiver<Option<String>>,
) {
    let reload = |tx: &mpsc::UnboundedSender<Update>| match store.tasks() {
        Ok(tasks) => {
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
