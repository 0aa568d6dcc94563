//! Namespace manifests (`namespace.yaml` under `workflows/`): who outside a namespace may use
//! which of its workflows. Validated like templates.

use super::WorkflowError;
use serde::Deserialize;

/// Whom a grant is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    /// A team's service identity: its workflows acting on its behalf (`service:TEAM`).
    Service(String),
    /// Every person of a team (`team:TEAM`).
    Team(String),
    /// One subject (`user:NAME`).
    User(String),
}

impl Grantee {
    fn parse(text: &str) -> Result<Grantee, String> {
        match text.split_once(':') {
            Some(("service", t)) if !t.is_empty() => Ok(Grantee::Service(t.into())),
            Some(("team", t)) if !t.is_empty() => Ok(Grantee::Team(t.into())),
            Some(("user", t)) if !t.is_empty() => Ok(Grantee::User(t.into())),
            _ => Err(format!(
                "`{text}` is not a grantee: expected service:TEAM, team:TEAM or user:NAME"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantAction {
    Submit,
    Read,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub workflow: String,
    pub to: Grantee,
    pub actions: Vec<GrantAction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub namespace: String,
    pub description: Option<String>,
    pub grants: Vec<Grant>,
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestDoc {
    namespace: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    grants: Vec<GrantDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantDoc {
    workflow: String,
    to: String,
    #[serde(default = "default_actions")]
    actions: Vec<GrantAction>,
}

fn default_actions() -> Vec<GrantAction> {
    vec![GrantAction::Submit]
}

/// Whether a file is a namespace manifest rather than a workflow template.
pub fn is_manifest(file: &str) -> bool {
    std::path::Path::new(file).file_name().and_then(|n| n.to_str()) == Some("namespace.yaml")
}

impl Manifest {
    pub fn parse(file: &str, text: &str) -> Result<Manifest, Vec<WorkflowError>> {
        let unknown = super::keys::unknown_keys(file, text, true);
        if !unknown.is_empty() {
            return Err(unknown);
        }
        let doc: ManifestDoc = crate::yaml::parse(file, text).map_err(|e| vec![e.into()])?;
        let mut errors = Vec::new();
        let mut grants = Vec::new();
        for (i, g) in doc.grants.into_iter().enumerate() {
            match Grantee::parse(&g.to) {
                Ok(to) => grants.push(Grant {
                    workflow: g.workflow,
                    to,
                    actions: g.actions,
                }),
                Err(e) => errors.push(WorkflowError::new(file, Some(format!("grants[{i}].to")), e)),
            }
        }
        if errors.is_empty() {
            Ok(Manifest {
                namespace: doc.namespace,
                description: doc.description,
                grants,
                source: file.to_string(),
            })
        } else {
            Err(errors)
        }
    }
}
