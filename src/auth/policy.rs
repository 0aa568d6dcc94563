//! The permission policy (post 06): which permissions each role holds, which workflows are
//! sensitive, and how fresh a step-up must be. Read from `policy.yaml` (the bundled one in
//! `workflows/`, replaced by one under `--workflows` or given by `--policy`), validated at load
//! with the file and field of every mistake. Deny by default: a role holds only what it lists.
//!
//! The vocabulary is post 06's (`../shared/reference/tasker-blog-facts.md` §8):
//! `<ns>.workflows:read|create|manage`, `<ns>.<workflow>:execute` (sensitive workflows),
//! `tasker.health:read`, `pii:read`, `audit:read`, `gdpr:manage`; plus what Taskdeck's commands
//! need beyond the post: `<ns>.approvals:decide` (approve or deny a request) and
//! `tasker.metrics:read` (`/metrics`). `<ns>` may be `{team}` (the identity's own team, which
//! is its namespace) or `*`; `<workflow>` may be `*`; `*` alone is every permission.

use super::Role;
use crate::workflow::WorkflowError;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Post 06's step-up window: MFA counts for 30 minutes after it was done.
pub const DEFAULT_STEP_UP_MINUTES: u64 = 30;

/// Actions of `<ns>.workflows:…`.
const WORKFLOW_ACTIONS: [&str; 3] = ["read", "create", "manage"];

/// Permissions that name no namespace.
pub const GLOBAL: [&str; 5] = [
    "pii:read",
    "audit:read",
    "gdpr:manage",
    "tasker.health:read",
    "tasker.metrics:read",
];

/// One permission a role holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// `*`.
    All,
    /// One of `GLOBAL`.
    Global(String),
    /// `<ns>.<resource>:<action>`, `ns` possibly `{team}` or `*`.
    Scoped {
        ns: String,
        resource: String,
        action: String,
    },
}

impl Permission {
    /// Parses one permission, or says what was expected.
    pub fn parse(text: &str) -> Result<Permission, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(Permission::All);
        }
        if GLOBAL.contains(&text) {
            return Ok(Permission::Global(text.to_string()));
        }
        let expected = "expected `*`, one of pii:read, audit:read, gdpr:manage, tasker.health:read, tasker.metrics:read, or <ns>.workflows:read|create|manage, <ns>.approvals:decide, <ns>.<workflow>:execute (<ns> a namespace, {team} or *)";
        let Some((scope, action)) = text.split_once(':') else {
            return Err(format!("`{text}` is not a permission: {expected}"));
        };
        let Some((ns, resource)) = scope.split_once('.') else {
            return Err(format!("`{text}` is not a permission: {expected}"));
        };
        let ok = match resource {
            "workflows" => WORKFLOW_ACTIONS.contains(&action),
            "approvals" => action == "decide",
            _ => action == "execute",
        };
        if !ok || ns.is_empty() || resource.is_empty() {
            return Err(format!("`{text}` is not a permission: {expected}"));
        }
        Ok(Permission::Scoped {
            ns: ns.to_string(),
            resource: resource.to_string(),
            action: action.to_string(),
        })
    }

    /// Whether this permission, held by someone of `team`, grants `wanted` (`ns.resource:action`
    /// or a global permission).
    fn grants(&self, team: &str, wanted: &Wanted<'_>) -> bool {
        match (self, wanted) {
            (Permission::All, _) => true,
            (Permission::Global(p), Wanted::Global(w)) => p == w,
            (
                Permission::Scoped { ns, resource, action },
                Wanted::Scoped {
                    ns: wns,
                    resource: wres,
                    action: wact,
                },
            ) => {
                let ns_ok = ns == "*" || (ns == "{team}" && team == *wns) || ns == wns;
                let resource_ok = resource == wres || (resource == "*" && *wact == "execute");
                ns_ok && resource_ok && action == wact
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Permission::All => f.write_str("*"),
            Permission::Global(p) => f.write_str(p),
            Permission::Scoped { ns, resource, action } => write!(f, "{ns}.{resource}:{action}"),
        }
    }
}

/// A permission asked for.
#[derive(Debug, Clone, Copy)]
pub enum Wanted<'a> {
    Global(&'a str),
    Scoped {
        ns: &'a str,
        resource: &'a str,
        action: &'a str,
    },
}

impl std::fmt::Display for Wanted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wanted::Global(p) => f.write_str(p),
            Wanted::Scoped { ns, resource, action } => write!(f, "{ns}.{resource}:{action}"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    #[serde(deserialize_with = "unique_keys")]
    roles: BTreeMap<String, Vec<String>>,
    #[serde(default, deserialize_with = "unique_keys")]
    sensitive_workflows: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    step_up: Option<StepUpDoc>,
}

/// A mapping whose keys are each given once: a role listed twice would leave which list holds
/// to the parser (the last, silently).
fn unique_keys<'de, D>(deserializer: D) -> Result<BTreeMap<String, Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Unique;
    impl<'de> serde::de::Visitor<'de> for Unique {
        type Value = BTreeMap<String, Vec<String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a mapping of names to lists")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, Vec<String>>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!("`{key}` is given twice")));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Unique)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepUpDoc {
    max_auth_age_minutes: u64,
}

/// The loaded policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The file it came from.
    pub source: String,
    pub roles: BTreeMap<Role, Vec<Permission>>,
    /// Namespace → workflows that need `<ns>.<workflow>:execute` and a step-up.
    pub sensitive: BTreeMap<String, BTreeSet<String>>,
    /// How long after the identity's MFA a sensitive request is still allowed, in minutes.
    pub step_up_minutes: u64,
}

/// What follows the name of a file given by `--policy` in a catalog's file list.
pub const FORCED: &str = "[policy]";

/// Whether a file of a catalog is the policy: a `policy.yaml`, or one given by `--policy`.
pub fn is_policy(file: &str) -> bool {
    std::path::Path::new(file).file_name().and_then(|n| n.to_str()) == Some("policy.yaml")
        || file.ends_with(FORCED)
}

impl Policy {
    /// Parses `text` (from `file`); `workflows` are the catalog's (namespace, name) pairs, which
    /// scoped permissions and sensitive workflows must name.
    ///
    /// Errors: every mistake, with the field (`roles.manager[2]`) and what was expected.
    /// With `workflows` `None` (a catalog built in memory, which has no policy file), names
    /// are not checked.
    pub fn parse(
        file: &str,
        text: &str,
        workflows: Option<&BTreeSet<(String, String)>>,
    ) -> Result<Policy, Vec<WorkflowError>> {
        let checked = workflows.is_some();
        let empty = BTreeSet::new();
        let workflows = workflows.unwrap_or(&empty);
        let doc: PolicyDoc = crate::yaml::parse(file, text).map_err(|e| vec![e.into()])?;
        let mut errors = Vec::new();
        let err = |field: String, message: String| WorkflowError::new(file, Some(field), message);
        let namespaces: BTreeSet<&str> = workflows.iter().map(|(ns, _)| ns.as_str()).collect();
        let mut roles = BTreeMap::new();
        for (name, list) in &doc.roles {
            let role: Role = match name.parse() {
                Ok(Role::Service) | Err(_) => {
                    errors.push(err(
                        format!("roles.{name}"),
                        format!("`{name}` is not a role a person holds: expected viewer, operator, manager, admin or monitor"),
                    ));
                    continue;
                }
                Ok(r) => r,
            };
            let mut perms = Vec::new();
            for (i, text) in list.iter().enumerate() {
                match Permission::parse(text) {
                    Ok(p) => {
                        if let Permission::Scoped { ns, resource, action } = &p {
                            // `shared` is post 06's namespace every team reads, with or without workflows.
                            let known_ns = !checked
                                || ns == "*"
                                || ns == "{team}"
                                || ns == "shared"
                                || namespaces.contains(ns.as_str());
                            if !known_ns {
                                errors.push(err(
                                    format!("roles.{name}[{i}]"),
                                    format!(
                                        "namespace `{ns}` has no workflows here (namespaces: {})",
                                        namespaces.iter().copied().collect::<Vec<_>>().join(", ")
                                    ),
                                ));
                            } else if checked
                                && action == "execute"
                                && resource != "*"
                                && ns != "*"
                                && ns != "{team}"
                                && !workflows.contains(&(ns.clone(), resource.clone()))
                            {
                                errors.push(err(
                                    format!("roles.{name}[{i}]"),
                                    format!("namespace `{ns}` has no workflow `{resource}`"),
                                ));
                            }
                        }
                        perms.push(p);
                    }
                    Err(why) => errors.push(err(format!("roles.{name}[{i}]"), why)),
                }
            }
            // `agent` is another name of `operator`: both listed would leave one list unused.
            if roles.insert(role, perms).is_some() {
                errors.push(err(
                    format!("roles.{name}"),
                    format!("`{name}` names the role {role}, which is listed already (agent is operator)"),
                ));
            }
        }
        let mut sensitive: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (ns, list) in &doc.sensitive_workflows {
            for (i, w) in list.iter().enumerate() {
                if !checked || workflows.contains(&(ns.clone(), w.clone())) {
                    sensitive.entry(ns.clone()).or_default().insert(w.clone());
                } else {
                    errors.push(err(
                        format!("sensitive_workflows.{ns}[{i}]"),
                        format!("there is no workflow `{ns}/{w}` here"),
                    ));
                }
            }
        }
        let step_up_minutes = doc
            .step_up
            .map_or(DEFAULT_STEP_UP_MINUTES, |s| s.max_auth_age_minutes);
        if !(1..=24 * 60).contains(&step_up_minutes) {
            errors.push(err(
                "step_up.max_auth_age_minutes".into(),
                format!("{step_up_minutes} is not between 1 and 1440 (a day)"),
            ));
        }
        if errors.is_empty() {
            Ok(Policy {
                source: file.to_string(),
                roles,
                sensitive,
                step_up_minutes,
            })
        } else {
            Err(errors)
        }
    }

    /// The bundled `workflows/policy.yaml`, for a catalog that loaded no policy file.
    pub fn builtin() -> &'static Policy {
        static BUILTIN: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
        BUILTIN.get_or_init(|| {
            let text = include_str!("../../workflows/policy.yaml");
            // The bundled file is tested to parse (`the_bundled_policy_parses`); were it ever
            // broken, nothing would be allowed (deny by default), never everything.
            Policy::parse("workflows/policy.yaml", text, None).unwrap_or_else(|_| Policy {
                source: "workflows/policy.yaml".into(),
                roles: BTreeMap::new(),
                sensitive: BTreeMap::new(),
                step_up_minutes: DEFAULT_STEP_UP_MINUTES,
            })
        })
    }

    /// Whether `role` in `team` holds `wanted`.
    pub fn holds(&self, role: Role, team: &str, wanted: &Wanted<'_>) -> bool {
        self.roles
            .get(&role)
            .is_some_and(|perms| perms.iter().any(|p| p.grants(team, wanted)))
    }

    /// Whether `namespace/workflow` needs `execute` and a step-up.
    pub fn is_sensitive(&self, namespace: &str, workflow: &str) -> bool {
        self.sensitive
            .get(namespace)
            .is_some_and(|w| w.contains(workflow))
    }

    /// The step-up window in milliseconds.
    pub fn step_up_ms(&self) -> i64 {
        i64::try_from(self.step_up_minutes.saturating_mul(60_000)).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflows() -> BTreeSet<(String, String)> {
        [
            ("payments", "process_refund"),
            ("customer_success", "process_refund"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    }

    #[test]
    fn the_bundled_policy_parses() {
        let text = include_str!("../../workflows/policy.yaml");
        Policy::parse("workflows/policy.yaml", text, Some(&workflows())).unwrap();
        assert!(Policy::builtin().is_sensitive("payments", "process_refund"));
    }

    #[test]
    fn mistakes_are_named_with_their_field() {
        let text = "roles:\n  manager: [\"{team}.workflows:read\", \"pii:write\", \"paymnts.workflows:read\", \"payments.void_payment:execute\"]\n  superuser: [\"*\"]\nsensitive_workflows:\n  payments: [void_payment]\nstep_up: { max_auth_age_minutes: 0 }\n";
        let errors = Policy::parse("policy.yaml", text, Some(&workflows())).unwrap_err();
        let fields: Vec<String> = errors.iter().filter_map(|e| e.field.clone()).collect();
        assert_eq!(
            fields,
            [
                "roles.manager[1]",
                "roles.manager[2]",
                "roles.manager[3]",
                "roles.superuser",
                "sensitive_workflows.payments[0]",
                "step_up.max_auth_age_minutes"
            ]
        );
    }

    #[test]
    fn a_role_under_two_names_is_refused() {
        let text = "roles:\n  operator: []\n  agent: [\"*\"]\n";
        let errors = Policy::parse("policy.yaml", text, Some(&workflows())).unwrap_err();
        assert!(errors[0].message.contains("listed already"), "{errors:?}");
    }

    #[test]
    fn a_role_given_twice_is_refused() {
        let text = "roles:\n  viewer: []\n  operator: []\n  viewer: [\"*\"]\n";
        let errors = Policy::parse("policy.yaml", text, Some(&workflows())).unwrap_err();
        assert!(
            errors[0].message.contains("`viewer` is given twice"),
            "{errors:?}"
        );
    }

    #[test]
    fn team_and_wildcards_expand_only_where_they_say() {
        let text =
            "roles:\n  operator: [\"{team}.workflows:create\", \"{team}.*:execute\"]\n  admin: [\"*\"]\n";
        let p = Policy::parse("policy.yaml", text, Some(&workflows())).unwrap();
        let create = |ns| Wanted::Scoped {
            ns,
            resource: "workflows",
            action: "create",
        };
        assert!(p.holds(Role::Operator, "payments", &create("payments")));
        assert!(!p.holds(Role::Operator, "payments", &create("customer_success")));
        let exec = Wanted::Scoped {
            ns: "payments",
            resource: "process_refund",
            action: "execute",
        };
        assert!(p.holds(Role::Operator, "payments", &exec));
        assert!(!p.holds(Role::Viewer, "payments", &exec), "deny by default");
        assert!(!p.holds(Role::Operator, "payments", &Wanted::Global("pii:read")));
        assert!(p.holds(Role::Admin, "x", &Wanted::Global("gdpr:manage")));
    }
}
