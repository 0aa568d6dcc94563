//! The CLI as a user runs it: the real binary on a fresh data directory.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn taskdeck(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data)
        .arg("--workflows")
        .arg(format!("{}/tests/fixtures/workflows", env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[test]
fn submit_wait_runs_a_bundled_workflow_to_completion() {
    let data = tempfile::tempdir().unwrap();
    let context = r#"{"service":"billing","git_ref":"v1"}"#;
    let out = taskdeck(
        data.path(),
        &[
            "submit",
            "demo/release_pipeline",
            "--context",
            context,
            "--wait",
            "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let task = json(&out);
    assert_eq!(task["state"], "complete");
    assert_eq!(task["version"], "1.0.0");

    let shown = json(&taskdeck(
        data.path(),
        &["show", task["id"].as_str().unwrap(), "--json"],
    ));
    for field in [
        "id",
        "namespace",
        "name",
        "version",
        "state",
        "context",
        "created_at",
        "steps",
        "transitions",
    ] {
        assert!(shown.get(field).is_some(), "show --json lacks {field}");
    }
    let steps = shown["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    for field in [
        "name",
        "state",
        "attempts",
        "retry_limit",
        "depends_on",
        "results",
        "last_error",
        "next_attempt_at",
    ] {
        assert!(steps[0].get(field).is_some(), "steps[] lacks {field}");
    }
    let flaky = steps.iter().find(|s| s["name"] == "integration_tests").unwrap();
    assert_eq!(flaky["attempts"], 2);
    assert_eq!(flaky["results"]["passed"], 57);
    let retried = shown["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["subject"]["step"] == "integration_tests" && t["to"] == "waiting_for_retry");
    assert!(retried, "the retry is in the transition log");
    assert_eq!(shown["context"]["service"], "billing");

    let table = stdout(&taskdeck(data.path(), &["tasks"]));
    assert!(
        table.contains("demo/release_pipeline@1.0.0  complete  4/4"),
        "{table}"
    );
    let human = stdout(&taskdeck(
        data.path(),
        &["show", &task["id"].as_str().unwrap()[28..]],
    ));
    assert!(human.contains("integration_tests  complete  2/3"), "{human}");
}

#[test]
fn a_failed_task_exits_2_then_retry_and_run_complete_it() {
    let data = tempfile::tempdir().unwrap();
    let out = taskdeck(data.path(), &["submit", "crash/fails", "--wait"]);
    assert_eq!(out.status.code(), Some(2));
    let id = stdout(&out).lines().next().unwrap().to_string();
    let task = json(&taskdeck(data.path(), &["show", &id, "--json"]));
    assert_eq!(task["state"], "error");
    assert_eq!(task["steps"][0]["last_error"]["code"], "UPSTREAM_DOWN");
    assert_eq!(task["steps"][1]["state"], "pending");

    let failed = stdout(&taskdeck(data.path(), &["tasks", "--state", "error", "--json"]));
    assert_eq!(
        serde_json::from_str::<Value>(&failed)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let out = taskdeck(data.path(), &["retry", &id, "--reason", "upstream fixed"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).ends_with("pending\n"));
    assert!(taskdeck(data.path(), &["run", "--until-idle"]).status.success());
    let task = json(&taskdeck(data.path(), &["show", &id, "--json"]));
    assert_eq!(task["state"], "complete");
    let by_retry = task["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["reason"] == "upstream fixed")
        .count();
    assert_eq!(by_retry, 2);
}

#[test]
fn resolve_and_cancel_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let id = stdout(&taskdeck(data.path(), &["submit", "crash/fails", "--wait"]))
        .lines()
        .next()
        .unwrap()
        .to_string();
    let out = taskdeck(
        data.path(),
        &["resolve", &id, "flaky", "--results", r#"{"manual":true}"#],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(taskdeck(data.path(), &["run", "--until-idle"]).status.success());
    let task = json(&taskdeck(data.path(), &["show", &id, "--json"]));
    assert_eq!(task["state"], "complete");
    assert_eq!(task["steps"][0]["state"], "resolved_manually");
    assert_eq!(task["steps"][0]["results"]["manual"], true);

    let pending = stdout(&taskdeck(data.path(), &["submit", "crash/chain"]))
        .trim()
        .to_string();
    let out = taskdeck(data.path(), &["cancel", &pending, "--reason", "not today"]);
    assert!(stdout(&out).ends_with("cancelled\n"), "{}", stdout(&out));
    let task = json(&taskdeck(data.path(), &["show", &pending, "--json"]));
    assert!(task["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["state"] == "cancelled"));

    let out = taskdeck(data.path(), &["cancel", &pending]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is already cancelled"));
    let out = taskdeck(data.path(), &["resolve", &id, "flaky", "--results", "{nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--results is not valid JSON"));
}

#[test]
fn a_bad_context_is_rejected_with_paths_and_nothing_is_stored() {
    let data = tempfile::tempdir().unwrap();
    let out = taskdeck(
        data.path(),
        &[
            "submit",
            "demo/release_pipeline",
            "--context",
            r#"{"service":""}"#,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("$.git_ref: required field is missing"),
        "{stderr}"
    );
    assert!(stderr.contains("$.service: "), "{stderr}");
    assert_eq!(stdout(&taskdeck(data.path(), &["tasks", "--json"])).trim(), "[]");

    let out = taskdeck(data.path(), &["submit", "demo/nope"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown workflow `demo/nope`; available: "),
        "{stderr}"
    );
    assert!(stderr.contains("demo/release_pipeline@1.0.0"), "{stderr}");
}

#[test]
fn no_arguments_without_a_terminal_explains_the_headless_commands() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .env("TASKDECK_DATA", data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the console needs a terminal"), "{stderr}");
    assert!(
        data.path().join("logs").read_dir().unwrap().next().is_some(),
        "logs go to the data directory"
    );
}

/// Submits a checkout with a sample context, waits for it (exit 0), and answers `show`'s text.
fn checkout(data: &Path, sample: &str) -> String {
    let sample = format!("{}/samples/{sample}", env!("CARGO_MANIFEST_DIR"));
    let out = taskdeck(
        data,
        &[
            "submit",
            "ecommerce/process_order",
            "--context-file",
            &sample,
            "--wait",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout(&out).lines().next().unwrap().to_string();
    stdout(&taskdeck(data, &["show", &id]))
}

#[test]
fn the_checkout_sample_completes_and_show_displays_all_five_results() {
    let data = tempfile::tempdir().unwrap();
    let shown = checkout(data.path(), "process_order.json");
    let results = shown
        .split("\nresults\n")
        .nth(1)
        .unwrap()
        .split("\ntransitions\n")
        .next()
        .unwrap();
    for step in [
        "validate_cart",
        "process_payment",
        "update_inventory",
        "create_order",
        "send_confirmation",
    ] {
        assert!(results.contains(&format!("  {step}: {{")), "{step} in\n{shown}");
    }
    assert!(results.contains("\"total\":124.76"), "{results}");
}

#[test]
fn a_shipped_fault_scenario_shows_its_retries_in_the_transition_log() {
    let data = tempfile::tempdir().unwrap();
    let shown = checkout(data.path(), "process_order_black_friday.json");
    let retries: Vec<&str> = shown
        .lines()
        .filter(|l| l.contains("step process_payment") && l.contains("in_progress -> waiting_for_retry"))
        .collect();
    assert_eq!(retries.len(), 2, "{shown}");
    assert!(
        retries[0].contains("rate limited (scenario black_friday)"),
        "{}",
        retries[0]
    );
    let inventory_retry = shown
        .lines()
        .any(|l| l.contains("step update_inventory") && l.contains("in_progress -> waiting_for_retry"));
    assert!(inventory_retry, "{shown}");
}

#[test]
fn demo_traffic_runs_for_its_duration_and_drains() {
    let data = tempfile::tempdir().unwrap();
    let out = taskdeck(
        data.path(),
        &["demo", "--rate", "10", "--duration", "2s", "--seed", "3"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(
        text.starts_with("taskdeck demo: 10 tasks/s, low faults, seed 3, for 2s"),
        "{text}"
    );
    let last = text.lines().rev().find(|l| l.contains("submitted")).unwrap();
    assert!(last.contains("in flight    0"), "{last}");
    let tasks: Value = serde_json::from_str(&stdout(&taskdeck(data.path(), &["tasks", "--json"]))).unwrap();
    let tasks = tasks.as_array().unwrap();
    assert!(tasks.len() >= 10, "{} tasks", tasks.len());
    assert!(
        tasks.iter().all(|t| t["state"] == "complete"),
        "low faults all recover"
    );
    let out = taskdeck(data.path(), &["demo", "--duration", "soon"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected e.g. 30s"));
}

/// As an operator: tokens travel in TASKDECK_TOKEN (a flag shows in `ps`), on the bundled
/// workflows (loading workflow files is an admin's change).
fn as_operator(data: &Path, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env("TASKDECK_TOKEN", token)
        .output()
        .unwrap()
}

#[test]
fn tokens_select_the_operator_and_bad_ones_exit_1() {
    let data = tempfile::tempdir().unwrap();
    let issue = |sub: &str, team: &str, role: &str, ttl: &str| {
        let out = taskdeck(
            data.path(),
            &[
                "token", "issue", "--sub", sub, "--team", team, "--role", role, "--ttl", ttl, "--mfa",
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out).trim().to_string()
    };
    let agent = issue("priya", "customer_success", "agent", "8h");
    let manager = issue("jane", "customer_success", "manager", "8h");
    let context = r#"{"ticket_id":"T-1","customer_id":"C-1","refund_amount":12000,"customer_email":"c@example.com","payment_id":"pay_42"}"#;
    let out = as_operator(
        data.path(),
        &agent,
        &[
            "submit",
            "customer_success/process_refund",
            "--context",
            context,
            "--wait",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "waits on a person: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("waits for approval"), "{}", stdout(&out));
    let id = stdout(&out).lines().next().unwrap().to_string();

    let listed = stdout(&as_operator(data.path(), &manager, &["approvals"]));
    assert!(
        listed.contains("get_manager_approval  $120.00  requested by priya  needs manager"),
        "{listed}"
    );
    let out = as_operator(data.path(), &agent, &["approve", &id, "get_manager_approval"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot approve their own request"));
    let out = as_operator(
        data.path(),
        &manager,
        &["approve", &id, "get_manager_approval", "--note", "ok"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(taskdeck(data.path(), &["run", "--until-idle"]).status.success());
    let tasks: Value = serde_json::from_str(&stdout(&taskdeck(data.path(), &["tasks", "--json"]))).unwrap();
    let states: Vec<_> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["namespace"].clone(), t["state"].clone()))
        .collect();
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(states.iter().all(|(_, s)| s == "complete"), "{states:?}");

    let out = as_operator(data.path(), "not-a-token", &["tasks"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid token"));
    let elsewhere = tempfile::tempdir().unwrap();
    let foreign = {
        let out = taskdeck(
            elsewhere.path(),
            &["token", "issue", "--sub", "x", "--team", "t", "--role", "admin"],
        );
        stdout(&out).trim().to_string()
    };
    let out = as_operator(data.path(), &foreign, &["tasks"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature does not match"));
    // `token show` names the expiry; expiry itself is checked where tokens are verified
    // (src/auth/token.rs) and on every command (tests/gate_integrity.rs), without waiting here.
    let shown = stdout(&as_operator(data.path(), &agent, &["token", "show"]));
    assert!(
        shown.starts_with("priya (operator, customer_success)  expires 20"),
        "{shown}"
    );
    let out = taskdeck(
        data.path(),
        &["token", "issue", "--sub", "x", "--team", "t", "--role", "emperor"],
    );
    assert_eq!(out.status.code(), Some(2), "clap rejects the role");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role `emperor`"));
}

#[test]
fn a_batch_file_makes_a_task_per_good_line_then_prune_archives_the_finished_ones() {
    let data = tempfile::tempdir().unwrap();
    let order = std::fs::read_to_string(format!(
        "{}/samples/process_order.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let order: Value = serde_json::from_str(&order).unwrap();
    let lines = [
        order.to_string(),
        "{not json".to_string(),
        String::new(),
        r#"{"workflow": "crash/fails", "context": {}}"#.to_string(),
        r#"{"customer_info": "not an object"}"#.to_string(),
        "[1, 2]".to_string(),
        order.to_string(),
        r#"{"workflow": "crash/fails@9", "context": {}}"#.to_string(),
        r#"{"workflow": "crash/fails", "contxt": {}}"#.to_string(),
    ];
    let file = data.path().join("batch.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = taskdeck(
        data.path(),
        &[
            "submit",
            "ecommerce/process_order",
            "--batch",
            file.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    let report = report.as_array().unwrap();
    let created: Vec<u64> = report
        .iter()
        .filter(|r| r["task"].is_string())
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    let refused: Vec<u64> = report
        .iter()
        .filter(|r| r["error"].is_string())
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(created, [1, 4, 7], "{report:?}");
    assert_eq!(refused, [2, 5, 6, 8, 9], "{report:?}");
    let line = |n: u64| {
        report.iter().find(|r| r["line"] == n).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(line(8).contains("is not NAMESPACE/NAME"), "{}", line(8));
    assert!(line(9).contains("unknown field `contxt`"), "{}", line(9));
    let bad_schema = report.iter().find(|r| r["line"] == 5).unwrap();
    assert!(
        bad_schema["error"].as_str().unwrap().contains("customer_info"),
        "{bad_schema}"
    );
    let listed = json(&taskdeck(data.path(), &["tasks", "--all", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 3);

    // Run them to their ends, then archive and remove what finished.
    assert!(taskdeck(data.path(), &["run", "--until-idle", "--no-api"])
        .status
        .success());
    let bare = taskdeck(data.path(), &["prune", "--before", "2026"]);
    assert_eq!(
        bare.status.code(),
        Some(2),
        "a bare number is refused, not read as seconds"
    );
    let garbage = taskdeck(data.path(), &["tasks", "--cursor", "garbage"]);
    assert!(
        String::from_utf8_lossy(&garbage.stderr).contains("is not a cursor a listing printed"),
        "{}",
        String::from_utf8_lossy(&garbage.stderr)
    );
    let dry = taskdeck(data.path(), &["prune", "--before", "0s", "--dry-run"]);
    assert!(stdout(&dry).contains("3 finished task(s)"), "{}", stdout(&dry));
    assert_eq!(
        json(&taskdeck(data.path(), &["tasks", "--all", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let pruned = taskdeck(data.path(), &["prune", "--before", "0s"]);
    assert!(
        stdout(&pruned).contains("archived 3 finished task(s)"),
        "{}",
        stdout(&pruned)
    );
    assert_eq!(stdout(&taskdeck(data.path(), &["tasks", "--json"])).trim(), "[]");
    let archive = std::fs::read_dir(data.path().join("archive"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(archive.path()).unwrap();
    assert_eq!(text.lines().count(), 3);
    for line in text.lines() {
        let line: Value = serde_json::from_str(line).unwrap();
        assert!(line["transitions"].as_array().unwrap().len() > 3);
    }
}

#[test]
fn a_batch_whose_reader_goes_away_still_submits_every_line() {
    // `submit --batch big.jsonl | head -1`: the report stops, the tasks do not.
    use std::io::{BufRead, BufReader};
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("many.jsonl");
    let lines: Vec<String> = (0..2_500)
        .map(|i| format!(r#"{{"service": "s{i}", "git_ref": "r"}}"#))
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data.path())
        .args(["submit", "demo/release_pipeline", "--batch"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("line 1: created "), "{first}");
    // The reader is gone (stdout dropped with the BufReader).
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data.path())
        .args(["tasks", "--all", "--json"])
        .output()
        .unwrap();
    assert_eq!(json(&listed).as_array().unwrap().len(), 2_500);
}

#[test]
fn json_logs_carry_task_step_and_correlation_fields_and_never_personal_data() {
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_taskdeck"))
            .arg("--data")
            .arg(data.path())
            .args(["--log-format", "json"])
            .args(args)
            .env("TASKDECK_LOG", "debug")
            .output()
            .unwrap()
    };
    let sample = format!("{}/samples/process_order.json", env!("CARGO_MANIFEST_DIR"));
    let out = run(&["submit", "ecommerce/process_order", "--context-file", &sample]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let checkout = format!(
        r#"{{"customer_id":"CUST-1","customer_email":"shopper@example.com","customer_tier":"premium","cart_items":[{{"sku":"A","price":10.0,"quantity":1}}],"payment_method":"paypal","order_value":10.0,"correlation_id":"checkout_0badcafe","scenario":{}}}"#,
        r#"{"email":{"send_email":{"fail_times":1,"status":"service_unavailable"}}}"#
    );
    let out = run(&[
        "submit",
        "blog_examples/monitored_checkout",
        "--context",
        &checkout,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["run", "--until-idle", "--no-api"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let text = std::fs::read_to_string(data.path().join("logs/taskdeck.log")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for secret in [
        "customer@example.com",
        "shopper@example.com",
        "tok_visa_valid",
        "123 Main St",
    ] {
        assert!(!text.contains(secret), "{secret} reached the log");
    }
    let find = |message: &str, step: Option<&str>| {
        lines
            .iter()
            .find(|l| {
                l["message"].as_str().is_some_and(|m| m.starts_with(message))
                    && step.is_none_or(|s| l["step"] == s)
            })
            .unwrap_or_else(|| panic!("no `{message}` line in\n{text}"))
            .clone()
    };
    // The correlation id travels with every line of the checkout.
    let failed = find("step attempt failed", Some("send_confirmation"));
    assert_eq!(failed["correlation_id"], "checkout_0badcafe", "{failed}");
    assert_eq!(failed["level"], "WARN");
    assert!(failed["task"].as_str().is_some_and(|t| t.len() == 36));
    let created = find("task created", None);
    assert!(
        created["workflow"].is_string() && created["namespace"].is_string(),
        "{created}"
    );
    // Contexts and results are logged, filtered.
    let context = find("task context", None);
    assert!(
        context["context"].as_str().unwrap().contains("[FILTERED]"),
        "{context}"
    );
    let results = find("step results", Some("send_confirmation"));
    assert!(
        results["results"].as_str().unwrap().contains("[FILTERED]"),
        "{results}"
    );
}

#[tokio::test]
async fn run_serves_metrics_alone_at_metrics_listen() {
    let data = tempfile::tempdir().unwrap();
    let monitor = Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data.path())
        .args([
            "token", "issue", "--sub", "prom", "--team", "ops", "--role", "monitor",
        ])
        .output()
        .unwrap();
    let monitor = String::from_utf8(monitor.stdout).unwrap().trim().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data.path())
        .args([
            "run",
            "--no-api",
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        match http
            .get(format!("{url}/metrics"))
            .bearer_auth(&monitor)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => break r.text().await.unwrap(),
            _ => {
                assert!(std::time::Instant::now() < deadline, "no /metrics at {url}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    assert!(text.contains("# TYPE tasker_queue_depth gauge"), "{text}");
    let no_token = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(no_token.status(), reqwest::StatusCode::UNAUTHORIZED);
    let api = http
        .get(format!("{url}/v1/tasks"))
        .bearer_auth(&monitor)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), reqwest::StatusCode::NOT_FOUND, "only /metrics here");
    assert!(
        !data.path().join("server.json").exists(),
        "a metrics listener is no API for commands to connect to"
    );
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
