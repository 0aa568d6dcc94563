//! A resumable event subscription: every stored event after a sequence number, then live
//! ones, in order, none twice and none missed. Events are stored before they are published
//! (see `Orchestrator::commit`), so whenever the live channel skips ahead (a lagging
//! subscriber, or events committed between subscribing and catching up) the gap is read
//! from the store.

use super::command::EngineError;
use super::events::Event;
use crate::store::Store;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError};

/// How many stored events one read of the backlog takes.
const PAGE: usize = 512;

pub struct EventStream {
    store: Arc<dyn Store>,
    live: broadcast::Receiver<Arc<Event>>,
    /// The last sequence number handed out.
    last: u64,
    backlog: VecDeque<Event>,
    /// Whether the store may still hold events after `last` that the live channel will not
    /// deliver.
    catching_up: bool,
}

impl EventStream {
    /// Subscribes first, then reads from the store, so nothing committed in between is lost.
    /// `after`: the last sequence number the caller saw; `None` starts with what comes next.
    pub(super) async fn new(
        store: Arc<dyn Store>,
        live: broadcast::Receiver<Arc<Event>>,
        after: Option<u64>,
    ) -> Result<Self, EngineError> {
        let last = match after {
            Some(seq) => seq,
            None => store.last_event_seq().await?,
        };
        Ok(EventStream {
            store,
            live,
            last,
            backlog: VecDeque::new(),
            catching_up: true,
        })
    }

    /// The last sequence number handed out (what a reconnecting client passes as `after`).
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    /// The next event; `None` once the engine has stopped.
    pub async fn next(&mut self) -> Result<Option<Event>, EngineError> {
        loop {
            if let Some(event) = self.backlog.pop_front() {
                self.last = event.seq;
                return Ok(Some(event));
            }
            if self.catching_up {
                let page = self.store.events_after(self.last, PAGE).await?;
                if page.is_empty() {
                    self.catching_up = false;
                } else {
                    self.backlog.extend(page);
                }
                continue;
            }
            match self.live.recv().await {
                Ok(event) if event.seq <= self.last => continue,
                Ok(event) if Some(event.seq) == self.last.checked_add(1) => {
                    self.last = event.seq;
                    return Ok(Some((*event).clone()));
                }
                // Skipped ahead: read the gap (this event included) from the store.
                Ok(_) | Err(RecvError::Lagged(_)) => self.catching_up = true,
                Err(RecvError::Closed) => return Ok(None),
            }
        }
    }
}
