//! Who is acting: a subject, their team (which is also their namespace) and their role.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads their own namespace and `shared`.
    Viewer,
    /// Also submits, retries, cancels and resolves in their own namespace (an "agent").
    Operator,
    /// Also approves their namespace's requests.
    Manager,
    /// Everything, everywhere.
    Admin,
    /// Reads `/metrics` and nothing else: what a Prometheus scraper is given.
    Monitor,
    /// A team's workflows acting on its behalf (e.g. delegating to another namespace).
    Service,
}

impl Role {
    /// The roles a person can hold first, then `service` (the engine's own, never in a token).
    pub const NAMES: [&'static str; 6] = ["viewer", "operator", "manager", "admin", "monitor", "service"];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Manager => "manager",
            Role::Admin => "admin",
            Role::Monitor => "monitor",
            Role::Service => "service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Ok(match s {
            "viewer" => Role::Viewer,
            "operator" | "agent" => Role::Operator,
            "manager" => Role::Manager,
            "admin" => Role::Admin,
            "monitor" => Role::Monitor,
            "service" => Role::Service,
            _ => {
                return Err(format!(
                    "unknown role `{s}`; expected one of: {} (or agent)",
                    Role::NAMES[..5].join(", ")
                ))
            }
        })
    }
}

/// Who is acting. `expires_at` (ms since the epoch) comes from a token: the coordinator
/// refuses every command made after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub sub: String,
    pub team: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<crate::model::Timestamp>,
    /// How the person authenticated, when the identity comes from a token (`None`: the
    /// local user or the engine's own service identities, which hold the data directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Authn>,
}

/// How a token's holder authenticated (OpenID Connect's `amr` and `auth_time`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authn {
    /// Authentication methods, e.g. `["pwd", "mfa"]`.
    #[serde(default)]
    pub amr: Vec<String>,
    /// When the person authenticated, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<crate::model::Timestamp>,
}

impl Authn {
    /// Whether the holder did MFA at or after `since` (ms since the Unix epoch).
    pub fn mfa_since(&self, since: crate::model::Timestamp) -> bool {
        self.amr.iter().any(|m| m == "mfa") && self.auth_time.is_some_and(|t| t >= since)
    }
}

impl Identity {
    pub fn new(sub: &str, team: &str, role: Role) -> Self {
        Identity {
            sub: sub.to_string(),
            team: team.to_string(),
            role,
            expires_at: None,
            auth: None,
        }
    }

    /// The same identity, authenticated by `auth` (a token's `amr` and `auth_time`).
    pub fn authenticated(mut self, auth: Authn) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The same identity, valid until `at` (ms since the epoch).
    pub fn expiring_at(mut self, at: crate::model::Timestamp) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Whether the identity's token has expired at `now` (ms since the epoch).
    pub fn is_expired(&self, now: crate::model::Timestamp) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// The local user when no token is given: an admin (the console says so).
    pub fn local(user: &str) -> Self {
        Identity::new(user, "local", Role::Admin)
    }

    /// The identity a team's workflows act as.
    pub fn service(team: &str) -> Self {
        Identity::new(&format!("svc:{team}"), team, Role::Service)
    }

    /// The engine itself (recovery, backoff, finalization).
    pub fn engine() -> Self {
        Identity::new("engine", "system", Role::Admin)
    }

    /// `sarah (manager, payments)`.
    pub fn describe(&self) -> String {
        format!("{} ({}, {})", self.sub, self.role, self.team)
    }
}
