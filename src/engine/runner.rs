//! Runs one attempt of one step on its own tokio task and reports exactly one outcome back
//! to the orchestrator, whether the handler returns, times out, panics or is aborted.

use super::orchestrator::Message;
use crate::handlers::{StepHandler, StepInput};
use crate::model::StepError;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;

pub(crate) struct Attempt {
    pub task_id: String,
    pub step: usize,
    pub attempt: u32,
}

/// Sends the outcome when dropped if nothing was sent: a panic or an abort still reports.
struct OutcomeGuard {
    tx: UnboundedSender<Message>,
    attempt: Option<Attempt>,
}

impl OutcomeGuard {
    fn send(&mut self, result: Result<Value, StepError>) {
        if let Some(attempt) = self.attempt.take() {
            let _ = self.tx.send(Message::Outcome(attempt, result));
        }
    }
}

impl Drop for OutcomeGuard {
    fn drop(&mut self) {
        self.send(Err(StepError::permanent(
            "HANDLER_ABORTED",
            "the handler panicked or was stopped before it returned",
        )));
    }
}

pub(crate) fn spawn(
    handler: Arc<dyn StepHandler>,
    input: StepInput,
    timeout: Option<Duration>,
    attempt: Attempt,
    tx: UnboundedSender<Message>,
    clock: super::Clock,
) -> AbortHandle {
    // Handlers (and the services they call) read the time from the engine's clock.
    let task = tokio::spawn(crate::handlers::support::with_clock(clock, async move {
        let mut guard = OutcomeGuard {
            tx,
            attempt: Some(attempt),
        };
        let result = match timeout {
            None => handler.call(input).await,
            Some(limit) => match tokio::time::timeout(limit, handler.call(input)).await {
                Ok(result) => result,
                Err(_) => Err(StepError::Retryable {
                    message: format!("step timed out after {:.1}s", limit.as_secs_f64()),
                    code: Some("TIMEOUT".into()),
                    retry_after: None,
                }),
            },
        };
        guard.send(result);
    }));
    task.abort_handle()
}
