//! Lets handlers create tasks through the orchestrator's command path (cross-namespace
//! delegation), with the same authorization as any other caller.

use super::command::{Command, EngineError, SubmitRequest};
use super::orchestrator::Message;
use crate::auth::Identity;
use crate::handlers::{DelegationError, Delegator};
use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

pub(crate) struct EngineDelegator {
    tx: mpsc::UnboundedSender<Message>,
}

impl EngineDelegator {
    pub fn new(tx: mpsc::UnboundedSender<Message>) -> Self {
        EngineDelegator { tx }
    }
}

#[async_trait]
impl Delegator for EngineDelegator {
    async fn create_task(
        &self,
        identity: Identity,
        workflow: &str,
        context: Value,
        parent: &str,
        correlation_id: &str,
        origin_key: &str,
    ) -> Result<String, DelegationError> {
        let mut request = SubmitRequest::new(workflow, context, identity);
        request.parent = Some(parent.to_string());
        request.correlation_id = Some(correlation_id.to_string());
        request.origin_key = Some(origin_key.to_string());
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Message::Command(Command::Submit(request, reply)))
            .map_err(|_| DelegationError::Unavailable("the engine has stopped".into()))?;
        match rx.await {
            Ok(Ok(task)) => Ok(task.id),
            Ok(Err(EngineError::Denied(why))) => Err(DelegationError::Denied(why)),
            Ok(Err(EngineError::Catalog(e))) => Err(DelegationError::Invalid(e.to_string())),
            // A context too large or too deep for the child stays so: not worth retrying.
            Ok(Err(e @ EngineError::Invalid { .. })) => Err(DelegationError::Invalid(e.to_string())),
            Ok(Err(e)) => Err(DelegationError::Unavailable(e.to_string())),
            Err(_) => Err(DelegationError::Unavailable("the engine has stopped".into())),
        }
    }
}
