//! The authorization coordinator: one place that decides every command, whoever sends it
//! (design.md, principle 6). Identity × action × namespace, plus the grants of namespace
//! manifests.

use super::policy::{Policy, Wanted};
use super::{Identity, Role};
use crate::workflow::{Catalog, GrantAction, Grantee};
use std::sync::Arc;

/// What someone wants to do.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    /// See a namespace's tasks: of one workflow (`Some`), or of the whole namespace (`None`:
    /// its summaries). A grant names one workflow, so it reads that workflow's tasks only.
    Read {
        namespace: &'a str,
        workflow: Option<&'a str>,
    },
    /// Create a task of `workflow` in `namespace`.
    Submit { namespace: &'a str, workflow: &'a str },
    /// Retry, cancel or resolve a task of `namespace`.
    Operate { namespace: &'a str, action: &'a str },
    /// Read the engine's metrics (`/metrics`): counts over every namespace, revenue included.
    Metrics,
    /// Approve or deny a request of `namespace` that `requester` made.
    Decide { namespace: &'a str, requester: &'a str },
    /// Retry a task whose approval a person denied: asks for a new decision, so only someone
    /// who could decide may ask again (an agent cannot re-ask until a different manager says
    /// yes).
    Reopen { namespace: &'a str },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// Reads the current time in ms since the epoch (the engine's clock, so paused-clock tests
/// see tokens expire exactly).
pub type Now = Arc<dyn Fn() -> crate::model::Timestamp + Send + Sync>;

#[derive(Clone)]
pub struct Coordinator {
    catalog: Arc<Catalog>,
    now: Now,
}

fn grants(catalog: &Catalog, namespace: &str, workflow: &str, who: &Identity, action: GrantAction) -> bool {
    let Some(m) = catalog.manifest(namespace) else {
        return false;
    };
    m.grants.iter().any(|g| {
        workflow == g.workflow
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
    /// A coordinator over `catalog`'s manifests that reads the system clock.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        let now: Now = Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| {
                    crate::model::Timestamp::try_from(d.as_millis()).unwrap_or(i64::MAX)
                })
        });
        Coordinator { catalog, now }
    }

    /// The same coordinator, reading time from `now`.
    pub fn with_clock(mut self, now: Now) -> Self {
        self.now = now;
        self
    }

    /// Whether `who` may see `task`: its namespace is readable to them, or their team's
    /// workflows created it (a delegated child stays visible to the team that asked for it).
    pub fn may_read(&self, who: &Identity, task: &crate::model::Task) -> bool {
        if who.role == Role::Monitor {
            return false;
        }
        self.check(
            who,
            Request::Read {
                namespace: &task.namespace,
                workflow: Some(&task.name),
            },
        )
        .is_ok()
            || (self.authenticate(who).is_ok() && task.initiator == Identity::service(&who.team).sub)
    }

    /// Whether `who` may read personal data in clear (`pii:read`, post 06): admins and
    /// managers (who decide refunds for a named customer); everyone else reads `[REDACTED]`.
    pub fn may_read_pii(&self, who: &Identity) -> bool {
        self.check_global(who, "pii:read").is_ok()
    }

    /// Whether `who` holds the global permission `permission` (`pii:read`, `audit:read`,
    /// `gdpr:manage`, `tasker.health:read`) under the policy.
    pub fn check_global(&self, who: &Identity, permission: &str) -> Result<(), Denied> {
        self.authenticate(who)?;
        if self
            .catalog
            .policy()
            .holds(who.role, &who.team, &Wanted::Global(permission))
        {
            Ok(())
        } else {
            Err(Denied(format!("{} does not hold {permission}", who.describe())))
        }
    }

    /// A token's holder did MFA within the policy's window (post 06's step-up); identities
    /// that come from no token (the local user, the engine's services) hold the data
    /// directory itself and need none.
    fn stepped_up(&self, who: &Identity, policy: &Policy, what: &str) -> Result<(), Denied> {
        let Some(auth) = &who.auth else {
            return Ok(());
        };
        let since = (self.now)().saturating_sub(policy.step_up_ms());
        if auth.mfa_since(since) {
            return Ok(());
        }
        Err(Denied(format!(
            "step-up authentication required: {what} is sensitive, so {} must have done MFA within the last {} minutes (a token with amr \"mfa\" and a recent auth_time: `taskdeck token issue --mfa`, or your identity provider's MFA)",
            who.describe(),
            policy.step_up_minutes
        )))
    }

    /// Whether `who` may read every task of every namespace (an admin whose token holds), so
    /// a count needs no task-by-task decision.
    pub fn may_read_all(&self, who: &Identity) -> bool {
        self.authenticate(who).is_ok() && who.role == Role::Admin
    }

    /// Refuses an identity whose token has expired, whatever it asks, and a monitor token,
    /// which may read `/metrics` (`check(who, Request::Metrics)`) and nothing else.
    pub fn authenticate(&self, who: &Identity) -> Result<(), Denied> {
        self.not_expired(who)?;
        if who.role == Role::Monitor {
            return Err(Denied(format!(
                "{} is a monitor: it may read /metrics and nothing else",
                who.describe()
            )));
        }
        Ok(())
    }

    fn not_expired(&self, who: &Identity) -> Result<(), Denied> {
        if who.is_expired((self.now)()) {
            return Err(Denied(format!(
                "{}: the token expired at {}; issue a new one with `taskdeck token issue`",
                who.describe(),
                crate::model::format_timestamp(who.expires_at.unwrap_or_default())
            )));
        }
        Ok(())
    }

    /// Decides one request. Every request is refused once `who`'s token has expired.
    pub fn check(&self, who: &Identity, request: Request<'_>) -> Result<(), Denied> {
        // A scraper's token reads metrics and nothing else, whatever its team or grants say.
        if matches!(request, Request::Metrics) {
            self.not_expired(who)?;
        } else {
            self.authenticate(who)?;
        }
        let policy = self.catalog.policy();
        let holds = |ns: &str, resource: &str, action: &str| {
            let wanted = Wanted::Scoped { ns, resource, action };
            if who.role == Role::Service {
                // A team's workflows act in their own namespace (reading, delegating within
                // it); elsewhere only through a manifest's grant.
                return ns == who.team
                    && (resource == "workflows" && action != "manage" || action == "execute");
            }
            policy.holds(who.role, &who.team, &wanted)
        };
        match request {
            Request::Metrics => {
                if policy.holds(who.role, &who.team, &Wanted::Global("tasker.metrics:read")) {
                    Ok(())
                } else {
                    Err(Denied(format!(
                        "{} cannot read metrics (they count every namespace's tasks and revenue): it takes tasker.metrics:read, which admins and monitor tokens hold (`taskdeck token issue --role monitor`)",
                        who.describe()
                    )))
                }
            }
            Request::Read { namespace, workflow } => {
                if holds(namespace, "workflows", "read")
                    || workflow.is_some_and(|w| grants(&self.catalog, namespace, w, who, GrantAction::Read))
                {
                    Ok(())
                } else {
                    Err(Denied(format!(
                        "{} cannot read namespace {namespace} (it takes {namespace}.workflows:read)",
                        who.describe()
                    )))
                }
            }
            Request::Submit { namespace, workflow } => {
                let granted = grants(&self.catalog, namespace, workflow, who, GrantAction::Submit);
                if !holds(namespace, "workflows", "create") && !granted {
                    if who.role == Role::Viewer {
                        return Err(Denied(format!(
                            "{} is a viewer and cannot create tasks",
                            who.describe()
                        )));
                    }
                    // The original's message, with why.
                    return Err(Denied(format!(
                        "Not authorized to create tasks in {namespace} namespace ({} has neither {namespace}.workflows:create nor a grant for {namespace}/{workflow})",
                        who.describe()
                    )));
                }
                if policy.is_sensitive(namespace, workflow) {
                    if !holds(namespace, workflow, "execute") && !granted {
                        return Err(Denied(format!(
                            "{namespace}/{workflow} is a sensitive workflow: {} needs {namespace}.{workflow}:execute",
                            who.describe()
                        )));
                    }
                    self.stepped_up(who, policy, &format!("{namespace}/{workflow}"))?;
                }
                Ok(())
            }
            Request::Operate { namespace, action } => {
                if holds(namespace, "workflows", "manage") {
                    Ok(())
                } else {
                    Err(Denied(format!(
                        "{} cannot {action} tasks in namespace {namespace}: it takes {namespace}.workflows:manage (an operator or manager of {namespace})",
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
                if holds(namespace, "approvals", "decide") {
                    Ok(())
                } else {
                    Err(Denied(format!(
                        "{} cannot decide approvals in {namespace}: it takes {namespace}.approvals:decide (the manager role in {namespace})",
                        who.describe()
                    )))
                }
            }
            Request::Reopen { namespace } => {
                if holds(namespace, "approvals", "decide") {
                    Ok(())
                } else {
                    Err(Denied(format!(
                        "{} cannot retry a denied approval in {namespace}: a person said no, so only someone who may decide ({namespace}.approvals:decide, a manager of {namespace}) may ask again",
                        who.describe()
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::Source;

    fn coordinator() -> Coordinator {
        Coordinator::new(Arc::new(Catalog::load(&[Source::Bundled], &|_| true).unwrap()))
    }

    #[test]
    fn a_read_grant_for_one_workflow_reads_its_tasks_not_the_namespace() {
        let wf = |name: &str| {
            Source::Inline {
            file: format!("shop/{name}.yaml"),
            text: format!("namespace: shop\nname: {name}\nversion: 1.0.0\nsteps:\n  - {{ name: a, handler: simulate }}\n"),
        }
        };
        let manifest = Source::Inline {
            file: "shop/namespace.yaml".into(),
            text: "namespace: shop\ngrants:\n  - { workflow: open, to: 'team:cs', actions: [read] }\n".into(),
        };
        let c = Coordinator::new(Arc::new(
            Catalog::load(&[wf("open"), wf("secret"), manifest], &|_| true).unwrap(),
        ));
        let cs = Identity::new("ann", "cs", Role::Operator);
        let ask = |workflow| {
            c.check(
                &cs,
                Request::Read {
                    namespace: "shop",
                    workflow,
                },
            )
            .is_ok()
        };
        assert!(ask(Some("open")));
        assert!(!ask(Some("secret")), "another workflow of the namespace");
        assert!(!ask(None), "the namespace's summaries span every workflow");
    }

    fn read(c: &Coordinator, who: &Identity, namespace: &str) -> bool {
        c.check(
            who,
            Request::Read {
                namespace,
                workflow: None,
            },
        )
        .is_ok()
    }

    #[test]
    fn people_read_their_own_namespace_and_shared() {
        let c = coordinator();
        let viewer = Identity::new("vic", "customer_success", Role::Viewer);
        assert!(read(&c, &viewer, "customer_success"));
        assert!(read(&c, &viewer, "shared"));
        assert!(!read(&c, &viewer, "payments"));
        assert!(read(&c, &Identity::local("root"), "payments"));
        let err = c.check(
            &viewer,
            Request::Operate {
                namespace: "customer_success",
                action: "retry",
            },
        );
        assert!(err
            .unwrap_err()
            .0
            .contains("an operator or manager of customer_success"));
    }

    #[test]
    fn a_delegated_child_stays_visible_to_the_team_that_asked() {
        let c = coordinator();
        let child = crate::model::Task {
            id: "c1".into(),
            namespace: "payments".into(),
            name: "process_refund".into(),
            version: "2.1.0".into(),
            state: crate::model::TaskState::Complete,
            context: serde_json::json!({}),
            initiator: Identity::service("customer_success").sub,
            created_at: 0,
            updated_at: 0,
            steps: vec![],
            parent: Some("p1".into()),
            correlation_id: None,
            origin_key: None,
            traceparent: None,
            classification: Default::default(),
            seq: 0,
            search_terms: Vec::new(),
        };
        let cs = Identity::new("jane", "customer_success", Role::Manager);
        assert!(c.may_read(&cs, &child));
        let other = Identity::new("ola", "inventory", Role::Manager);
        assert!(!c.may_read(&other, &child));
    }
}
