//! The permission policy, cell by cell: for generated policies (each role a random subset of
//! post 06's permissions), every role × team × namespace × action — read, create, a sensitive
//! workflow with a fresh, stale or missing MFA step-up, operate, decide, and the global
//! permissions (`pii:read`, `audit:read`, `gdpr:manage`, metrics, health) — is decided by the
//! coordinator exactly as a plain reading of the policy's strings says.

use proptest::prelude::*;
use std::sync::Arc;
use taskdeck::auth::{Authn, Coordinator, Identity, Request, Role};
use taskdeck::workflow::{Catalog, Source};

const NOW: i64 = 1_800_000_000_000;
const MINUTE: i64 = 60_000;

const CANDIDATES: [&str; 19] = [
    "*",
    "{team}.workflows:read",
    "{team}.workflows:create",
    "{team}.workflows:manage",
    "{team}.approvals:decide",
    "{team}.*:execute",
    "payments.workflows:read",
    "payments.workflows:create",
    "payments.process_refund:execute",
    "customer_success.process_refund:execute",
    "customer_success.approvals:decide",
    "*.workflows:read",
    "shared.workflows:read",
    "pii:read",
    "audit:read",
    "gdpr:manage",
    "tasker.metrics:read",
    "tasker.health:read",
    "ecommerce.workflows:manage",
];

const ROLES: [Role; 5] = [
    Role::Viewer,
    Role::Operator,
    Role::Manager,
    Role::Admin,
    Role::Monitor,
];

/// (namespace, a workflow of it, whether the policy below calls it sensitive).
const WORKFLOWS: [(&str, &str, bool); 3] = [
    ("payments", "process_refund", true),
    ("customer_success", "process_refund", true),
    ("ecommerce", "process_order", false),
];

fn policy_yaml(grants: &[Vec<usize>]) -> String {
    let mut yaml = String::from("roles:\n");
    for (role, picked) in ROLES.iter().zip(grants) {
        let list: Vec<String> = picked.iter().map(|i| format!("\"{}\"", CANDIDATES[*i])).collect();
        yaml.push_str(&format!("  {role}: [{}]\n", list.join(", ")));
    }
    yaml.push_str("sensitive_workflows:\n  payments: [process_refund]\n  customer_success: [process_refund]\nstep_up: { max_auth_age_minutes: 30 }\n");
    yaml
}

/// The oracle: whether `perms` (as written) grant `wanted` (`ns.resource:action` or a global
/// permission) to someone of `team`.
fn oracle(perms: &[&str], team: &str, wanted: &str) -> bool {
    perms.iter().any(|p| {
        if *p == "*" || *p == wanted {
            return true;
        }
        let p = p.replace("{team}", team);
        if p == wanted {
            return true;
        }
        let (Some((pscope, pact)), Some((wscope, wact))) = (p.split_once(':'), wanted.split_once(':')) else {
            return false;
        };
        let (Some((pns, pres)), Some((wns, wres))) = (pscope.split_once('.'), wscope.split_once('.')) else {
            return false;
        };
        pact == wact && (pns == "*" || pns == wns) && (pres == wres || (pres == "*" && pact == "execute"))
    })
}

fn identity(role: Role, team: &str, auth: &Option<Authn>) -> Identity {
    let who = Identity::new("someone", team, role);
    match auth {
        Some(a) => who.authenticated(a.clone()),
        None => who,
    }
}

fn check_every_cell(grants: &[Vec<usize>]) {
    let yaml = policy_yaml(grants);
    let catalog = Catalog::load(
        &[
            Source::Bundled,
            Source::Inline {
                file: "generated/policy.yaml".into(),
                text: yaml.clone(),
            },
        ],
        &|_| true,
    )
    .unwrap_or_else(|e| panic!("{yaml}\n{e:?}"));
    let coordinator = Coordinator::new(Arc::new(catalog)).with_clock(Arc::new(|| NOW));
    let mfa = |minutes_ago: i64| {
        Some(Authn {
            amr: vec!["pwd".into(), "mfa".into()],
            auth_time: Some(NOW - minutes_ago * MINUTE),
        })
    };
    let auths = [
        ("no token", None),
        ("fresh mfa", mfa(5)),
        ("stale mfa", mfa(31)),
        (
            "password only",
            Some(Authn {
                amr: vec!["pwd".into()],
                auth_time: Some(NOW),
            }),
        ),
    ];
    for (role, picked) in ROLES.iter().zip(grants) {
        let perms: Vec<&str> = picked.iter().map(|i| CANDIDATES[*i]).collect();
        let monitor = *role == Role::Monitor;
        for team in ["payments", "customer_success", "ops"] {
            for (auth_name, auth) in &auths {
                let who = identity(*role, team, auth);
                let cell = |what: String, got: bool, want: bool| {
                    assert_eq!(
                        got, want,
                        "{role} of {team} ({auth_name}) {what}; policy:\n{yaml}"
                    );
                };
                for (ns, wf, sensitive) in WORKFLOWS {
                    let read = coordinator
                        .check(
                            &who,
                            Request::Read {
                                namespace: ns,
                                workflow: Some(wf),
                            },
                        )
                        .is_ok();
                    cell(
                        format!("reads {ns}"),
                        read,
                        !monitor && oracle(&perms, team, &format!("{ns}.workflows:read")),
                    );
                    let create = !monitor && oracle(&perms, team, &format!("{ns}.workflows:create"));
                    let execute = oracle(&perms, team, &format!("{ns}.{wf}:execute"));
                    let stepped = auth.as_ref().is_none_or(|a| a.mfa_since(NOW - 30 * MINUTE));
                    let want = create && (!sensitive || (execute && stepped));
                    let got = coordinator.check(
                        &who,
                        Request::Submit {
                            namespace: ns,
                            workflow: wf,
                        },
                    );
                    cell(format!("creates {ns}/{wf}: {got:?}"), got.is_ok(), want);
                    if sensitive && create && execute && !stepped {
                        assert!(got.unwrap_err().0.contains("step-up authentication required"));
                    }
                    let operate = coordinator
                        .check(
                            &who,
                            Request::Operate {
                                namespace: ns,
                                action: "retry",
                            },
                        )
                        .is_ok();
                    cell(
                        format!("operates in {ns}"),
                        operate,
                        !monitor && oracle(&perms, team, &format!("{ns}.workflows:manage")),
                    );
                    let decide = coordinator
                        .check(
                            &who,
                            Request::Decide {
                                namespace: ns,
                                requester: "another",
                            },
                        )
                        .is_ok();
                    cell(
                        format!("decides in {ns}"),
                        decide,
                        !monitor && oracle(&perms, team, &format!("{ns}.approvals:decide")),
                    );
                    let own = coordinator
                        .check(
                            &who,
                            Request::Decide {
                                namespace: ns,
                                requester: "someone",
                            },
                        )
                        .is_ok();
                    cell(format!("decides own request in {ns}"), own, false);
                }
                let metrics = coordinator.check(&who, Request::Metrics).is_ok();
                cell(
                    "reads metrics".into(),
                    metrics,
                    oracle(&perms, team, "tasker.metrics:read"),
                );
                cell(
                    "reads PII".into(),
                    coordinator.may_read_pii(&who),
                    !monitor && oracle(&perms, team, "pii:read"),
                );
                for global in ["audit:read", "gdpr:manage", "tasker.health:read"] {
                    let got = coordinator.check_global(&who, global).is_ok();
                    cell(
                        format!("holds {global}"),
                        got,
                        !monitor && oracle(&perms, team, global),
                    );
                }
            }
        }
    }
}

#[test]
fn the_bundled_policy_behaves_as_written() {
    let yaml = include_str!("../workflows/policy.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    let grants: Vec<Vec<usize>> = ROLES
        .iter()
        .map(|role| {
            doc["roles"][role.as_str()]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|p| CANDIDATES.iter().position(|c| c == &p.as_str().unwrap()).unwrap())
                .collect()
        })
        .collect();
    check_every_cell(&grants);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn every_cell_of_a_generated_policy_behaves_as_the_policy_says(
        grants in proptest::collection::vec(proptest::sample::subsequence((0..CANDIDATES.len()).collect::<Vec<_>>(), 0..6), ROLES.len())
    ) {
        check_every_cell(&grants);
    }
}

fn taskdeck(data: &std::path::Path, args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_taskdeck"));
    cmd.arg("--data")
        .arg(data)
        .args(args)
        .env_remove("TASKDECK_POLICY");
    match token {
        Some(t) => cmd.env("TASKDECK_TOKEN", t),
        None => cmd.env_remove("TASKDECK_TOKEN"),
    };
    cmd.output().unwrap()
}

#[test]
fn a_policy_file_is_validated_at_load_and_then_decides() {
    let data = tempfile::tempdir().unwrap();
    let bad = data.path().join("rules.yaml");
    std::fs::write(&bad, "roles:\n  manager: [\"pii:write\"]\n  wizard: [\"*\"]\n").unwrap();
    let out = taskdeck(
        data.path(),
        &["--policy", bad.to_str().unwrap(), "workflows"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rules.yaml") && err.contains("roles.manager[0]") && err.contains("roles.wizard"),
        "{err}"
    );

    // Managers without pii:read, and refunds not sensitive: a manager reads [REDACTED], and an
    // agent without MFA may ask for a refund.
    let policy = data.path().join("strict.yaml");
    std::fs::write(
        &policy,
        "roles:\n  operator: [\"{team}.workflows:read\", \"{team}.workflows:create\"]\n  manager: [\"{team}.workflows:read\"]\n  admin: [\"*\"]\n",
    )
    .unwrap();
    let p = policy.to_str().unwrap();
    // An operator's token may not bring its own policy (it would grant itself anything): the
    // policy is an admin's, given to the server the operators' commands connect to.
    let own = taskdeck(
        data.path(),
        &["--policy", p, "tasks"],
        Some(&admin_token(data.path())),
    );
    assert!(
        own.status.success(),
        "an admin may: {}",
        String::from_utf8_lossy(&own.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Reaped(
        std::process::Command::new(env!("CARGO_BIN_EXE_taskdeck"))
            .arg("--data")
            .arg(data.path())
            .args(["--policy", p, "serve", "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("TASKDECK_TOKEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !data.path().join("server.json").exists() {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let token = |sub: &str, role: &str| {
        let out = taskdeck(
            data.path(),
            &[
                "token",
                "issue",
                "--sub",
                sub,
                "--team",
                "customer_success",
                "--role",
                role,
            ],
            None,
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let context = r#"{"ticket_id":"T-9","customer_id":"C-9","refund_amount":12000,"customer_email":"nine@example.com","payment_id":"pay_9"}"#;
    let sneaky = taskdeck(
        data.path(),
        &["--policy", p, "tasks"],
        Some(&token("priya", "operator")),
    );
    assert!(
        String::from_utf8_lossy(&sneaky.stderr).contains("--policy"),
        "{sneaky:?}"
    );
    let submitted = taskdeck(
        data.path(),
        &[
            "submit",
            "customer_success/process_refund",
            "--context",
            context,
            "--json",
        ],
        Some(&token("priya", "operator")),
    );
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let id = serde_json::from_slice::<serde_json::Value>(&submitted.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = taskdeck(
        data.path(),
        &["show", &id, "--json"],
        Some(&token("jane", "manager")),
    );
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("[REDACTED]") && !shown.contains("nine@example.com"),
        "{shown}"
    );
    drop(server);
    // The bundled policy again: refunds are sensitive, so the agent's token without MFA is refused.
    let refused = taskdeck(
        data.path(),
        &["submit", "customer_success/process_refund", "--context", context],
        Some(&token("priya", "operator")),
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("step-up authentication required"));
}

fn admin_token(data: &std::path::Path) -> String {
    let out = taskdeck(
        data,
        &[
            "token", "issue", "--sub", "root", "--team", "ops", "--role", "admin",
        ],
        None,
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A child process killed when the test ends, even when an assertion fails first.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
