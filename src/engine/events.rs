//! The live side of the event stream: a broadcast channel. A slow subscriber lags and loses
//! old events; it never slows or blocks a workflow. Events are stored before they are
//! published, so `Engine::events` fills any gap from the store (the stream a client resumes).

pub use crate::model::event::{names, Event};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The publishing side of the stream, cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        EventBus { tx }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Publishes a stored event (its `seq` is the store's). Having no subscriber is fine.
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(Arc::new(event));
    }
}
