//! The authorization coordinator: one place that decides every command, whoever sends it
//! (design.md, principle 6). Identity × action × namespace, plus the grants of namespace
//! manifests.

use super::{Identity, Role};
use crate::workflow::{Catalog, GrantAction, Grantee};
use std::sync::Arc;

/// What someone wants to do.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    /// See a namespace's tasks.
    Read { namespace: &'a str },
    /// Create a task of `workflow` in `namespace`.
    Submit { namespace: &'a str, workflow: &'a str },
    /// Retry, cancel or resolve a task of `namespace`.
    Operate { namespace: &'a str, action: &'a str },
    /// Approve or deny a request of `namespace` that `requester` made.
    Decide { namespace: &'a str, requester: &'a str },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

#[derive(Clone)]
pub struct Coordinator {
    catalog: Arc<Catalog>,
}

fn grants(
    catalog: &Catalog,
    namespace: &str,
    workflow: Option<&str>,
    who: &Identity,
    action: GrantAction,
) -> bool {
    let Some(m) = catalog.manifest(namespace) else {
        return false;
    };
    m.grants.iter().any(|g| {
        workflow.is_none_or(|w| w == g.workflow)
            && g.actions.contains(&action)
            && match &g.to {
                Grantee::Service(team) => who.role == Role::Service && &who.team == team,
                Grantee::Team(team) => {
                    matches!(who.role, Role::Operator | Role::Manager) && &who.team == team
                }
                Grantee::User(sub) => &who.sub == sub,
            }
    })
}

impl Coordinator {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Coordinator { catalog }
    }

    pub fn check(&self, who: &Identity, request: Request<'_>) -> Result<(), Denied> {
        let own = |ns: &str| who.team == ns;
        match request {
            Request::Read { namespace } => {
                if who.role == Role::Admin
                    || own(namespace)
                    || namespace == "shared"
                    || grants(&self.catalog, namespace, None, who, GrantAction::Read)
                {
                    Ok(())
                } else {
                    Err(Denied(format!(
                        "{} cannot read namespace {namespace}",
                        who.describe()
                    )))
                }
            }
            Request::Submit { namespace, workflow } => {
                if who.role == Role::Admin {
                    return Ok(());
                }
                if who.role == Role::Viewer {
                    return Err(Denied(format!(
                        "{} is a viewer and cannot create tasks",
                        who.describe()
                    )));
                }
                if own(namespace)
                    || grants(&self.catalog, namespace, Some(workflow), who, GrantAction::Submit)
                {
                    return Ok(());
                }
                // The original's message, with why.
                Err(Denied(format!(
                    "Not authorized to create tasks in {namespace} namespace ({} has no grant for {namespace}/{workflow})",
                    who.describe()
                )))
            }
            Request::Operate { namespace, action } => {
                if who.role == Role::Admin
                    || (matches!(who.role, Role::Operator | Role::Manager) && own(namespace))
                {
                    Ok(())
                } else {
                    Err(Denied(format!(
                        "{} cannot {action} tasks in namespace {namespace}: it needs an operator or manager of {namespace}",
                        who.describe()
                    )))
                }
            }
            Request::Decide { namespace, requester } => {
                if who.sub == requester {
                    return Err(Denied(format!(
                        "{} requested this and cannot approve their own request",
                        who.sub
                    )));
                }
                if who.role == Role::Admin || (who.role == Role::Manager && own(namespace)) {
                    Ok(())
                } else {
                    Err(Denied(format!(
                        "{} cannot decide approvals in {namespace}: it needs the manager role in {namespace}",
                        who.describe()
                    )))
                }
            }
        }
    }
}
