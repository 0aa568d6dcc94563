//! The SOC 2 report against a seeded run of the real binary: its counts are the run's actual
//! refusals, approvals (with the approver), tokens, step-up refusals, deployed versions and
//! sealed fields; a server started with TLS (a certificate generated here) is CC7.2's evidence,
//! and a control with nothing in the period says so instead of passing.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn taskdeck(data: &Path, args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_taskdeck"));
    cmd.arg("--data").arg(data).args(args);
    match token {
        Some(t) => cmd.env("TASKDECK_TOKEN", t),
        None => cmd.env_remove("TASKDECK_TOKEN"),
    };
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn issue(data: &Path, sub: &str, role: &str, mfa: bool) -> String {
    let mut args = vec![
        "token",
        "issue",
        "--sub",
        sub,
        "--team",
        "customer_success",
        "--role",
        role,
    ];
    if mfa {
        args.push("--mfa");
    }
    let out = taskdeck(data, &args, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    stdout(&out)
}

fn report(data: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["report", "soc2", "--format", "json"];
    args.extend_from_slice(extra);
    let out = taskdeck(data, &args, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn control<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no control {id}"))
}

const REFUND: &str = r#"{"ticket_id":"T-1","customer_id":"C-1","refund_amount":12000,"customer_email":"c1@example.com","payment_id":"pay_1"}"#;

#[test]
fn the_report_counts_what_the_seeded_run_did() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let agent = issue(data, "priya", "operator", true);
    let agent_no_mfa = issue(data, "priya", "operator", false);
    let manager = issue(data, "jane", "manager", true);
    let viewer = issue(data, "vic", "viewer", false);
    let submit = |token: &str| {
        taskdeck(
            data,
            &[
                "submit",
                "customer_success/process_refund",
                "--context",
                REFUND,
                "--json",
            ],
            Some(token),
        )
    };
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let out = submit(&agent);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_str::<Value>(&stdout(&out)).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(taskdeck(data, &["run", "--until-idle"], None).status.success());
    // Three refusals: a viewer's submit, a submit without a step-up, the agent approving her own request.
    assert!(!submit(&viewer).status.success());
    let no_mfa = submit(&agent_no_mfa);
    assert!(String::from_utf8_lossy(&no_mfa.stderr).contains("step-up"));
    assert!(
        !taskdeck(data, &["approve", &ids[0], "get_manager_approval"], Some(&agent))
            .status
            .success()
    );
    // Two decisions by the manager.
    assert!(taskdeck(
        data,
        &["approve", &ids[0], "get_manager_approval"],
        Some(&manager)
    )
    .status
    .success());
    assert!(taskdeck(
        data,
        &["deny", &ids[1], "get_manager_approval", "--reason", "duplicate"],
        Some(&manager)
    )
    .status
    .success());

    let r = report(data, &[]);
    let cc63 = &control(&r, "CC6.3")["evidence"];
    assert_eq!(cc63["denials"], 3, "{cc63}");
    let approvals = &control(&r, "APPROVALS")["evidence"];
    assert_eq!(approvals["decisions"], 2, "{approvals}");
    let list = approvals["list"].as_array().unwrap();
    assert!(list.iter().all(|a| a["approver"] == "jane"));
    let decisions: Vec<&str> = list.iter().map(|a| a["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["approved", "denied"]);
    let cc62 = &control(&r, "CC6.2")["evidence"];
    assert_eq!(cc62["tokens_issued"], 4, "{cc62}");
    assert_eq!(cc62["step_ups_refused"], 1, "{cc62}");
    let versions = std::fs::read_dir(format!("{}/workflows", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .flat_map(|ns| common::files_under(&ns.unwrap().path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_name()
                    .is_some_and(|n| n != "namespace.yaml" && n != "policy.yaml")
        })
        .count();
    let cc81 = control(&r, "CC8.1");
    assert_eq!(cc81["evidence"]["versions_deployed"], versions, "{cc81}");
    assert_eq!(cc81["status"], "evidenced");
    let enc = &control(&r, "ENC");
    assert_eq!(
        enc["evidence"]["personal_fields_seen"],
        enc["evidence"]["personal_fields_encrypted"]
    );
    assert!(
        enc["evidence"]["personal_fields_seen"].as_u64().unwrap() >= 2 * 4,
        "{enc}"
    );
    assert_eq!(enc["status"], "evidenced");
    assert_eq!(control(&r, "AUDIT")["status"], "evidenced");
    // `run` served the API on loopback without TLS: evidence, no exception (it never left
    // the machine), none of it encrypted.
    let cc72 = &control(&r, "CC7.2")["evidence"];
    assert_eq!(
        (cc72["with_tls"].as_u64(), cc72["plain_http_exposed"].as_u64()),
        (Some(0), Some(0)),
        "{cc72}"
    );
    assert!(cc72["plain_http_on_loopback"].as_u64().unwrap() >= 1, "{cc72}");

    // A server with TLS: CC7.2's evidence.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_file, key_file) = (data.join("cert.pem"), data.join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ])
        .env_remove("TASKDECK_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !data.join("server.json").exists() {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    server.wait().unwrap();
    let r = report(data, &[]);
    let cc72 = control(&r, "CC7.2");
    assert_eq!(cc72["evidence"]["with_tls"], 1, "{cc72}");
    assert_eq!(cc72["status"], "evidenced");

    // A period before any of it: every control without evidence says so.
    let before = report(data, &["--to", "2020-01-01"]);
    for id in ["CC6.2", "CC6.3", "CC7.2", "CC8.1", "ENC", "APPROVALS"] {
        assert_eq!(control(&before, id)["status"], "no_evidence", "{id}");
    }
    // The markdown document names each control and its status.
    let md = stdout(&taskdeck(data, &["report", "soc2"], None));
    assert!(
        md.contains("## CC6.3 Authorization — evidenced") && md.contains("## CC7.2 Data transmission"),
        "{md}"
    );
}
