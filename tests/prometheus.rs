//! Post 05's incident end to end with the real tools: a `taskdeck serve` process runs monitored
//! checkouts, some under the `inventory_slowdown` scenario, beside ordinary checkouts and
//! refunds waiting for a manager; a real Prometheus server on loopback scrapes it with a
//! monitor token and loads the shipped rules. Then Prometheus's HTTP API evaluates every
//! dashboard panel's query (each returns data) and every alert expression (each evaluates; the
//! incident's alerts hold — the bottleneck for `update_inventory`). Prometheus comes from
//! Debian's `prometheus` package (`.ci/run` installs it). Takes about 45 s of real time: the
//! slow checkouts wait out real 15 s timeouts.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when the test ends, even when an assertion fails first.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn taskdeck(data: &Path, token: Option<&str>, args: &[&str]) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_taskdeck"));
    c.arg("--data")
        .arg(data)
        .args(args)
        .env_remove("TASKDECK_TOKEN")
        .env_remove("TASKDECK_URL");
    if let Some(t) = token {
        c.env("TASKDECK_TOKEN", t);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "taskdeck {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn token(data: &Path, sub: &str, team: &str, role: &str) -> String {
    let args = [
        "token", "issue", "--sub", sub, "--team", team, "--role", role, "--mfa",
    ];
    taskdeck(data, None, &args).trim().to_string()
}

fn submit(data: &Path, token: Option<&str>, workflow: &str, context: &str) -> String {
    let out = taskdeck(data, token, &["submit", workflow, "--context", context, "--json"]);
    let task: Value = serde_json::from_str(&out).unwrap();
    task["id"].as_str().unwrap().to_string()
}

fn checkout(scenario: Option<&str>) -> String {
    let mut context = serde_json::json!({
        "customer_id": "CUST-1001", "customer_email": "shopper@example.com",
        "customer_tier": "premium", "payment_method": "credit_card", "order_value": 129.97,
        "cart_items": [{ "sku": "WIDGET-A", "price": 49.99, "quantity": 2 }, { "sku": "GADGET-B", "price": 29.99, "quantity": 1 }],
    });
    if let Some(s) = scenario {
        context["scenario"] = s.into();
    }
    context.to_string()
}

fn refund(cents: i64) -> String {
    serde_json::json!({
        "ticket_id": "TICKET-98765", "customer_id": "CUST-54321", "refund_amount": cents,
        "refund_reason": "Product defect reported by customer",
        "customer_email": "customer@example.com", "payment_id": "pay_987654321",
    })
    .to_string()
}

/// Evaluates `expr` now; the result vector (empty when nothing matches).
async fn query(http: &reqwest::Client, prometheus: &str, expr: &str) -> Vec<Value> {
    let response: Value = http
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["status"], "success", "{expr}: {response}");
    response["data"]["result"].as_array().cloned().unwrap_or_default()
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_incident_and_every_panel_and_alert_evaluates() {
    let data = tempfile::tempdir().unwrap();
    let data = data.path();
    let port = free_port();
    let _serve = Reaped(
        Command::new(env!("CARGO_BIN_EXE_taskdeck"))
            .arg("--data")
            .arg(data)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("TASKDECK_TOKEN")
            .env_remove("TASKDECK_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while !data.join("server.json").exists() {
        assert!(started.elapsed() < Duration::from_secs(20), "serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Prometheus scrapes with a monitor token and loads the shipped rules.
    let work = tempfile::tempdir().unwrap();
    let token_file = work.path().join("taskdeck.token");
    std::fs::write(&token_file, token(data, "prometheus", "ops", "monitor")).unwrap();
    let rules: Vec<String> = std::fs::read_dir(root().join("alerts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .map(|p| format!("  - {}", p.display()))
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{}\nscrape_configs:\n  - job_name: taskdeck\n    static_configs: [{{ targets: [\"127.0.0.1:{port}\"] }}]\n    authorization: {{ type: Bearer, credentials_file: {} }}\n",
        rules.join("\n"),
        token_file.display()
    );
    let config_file = work.path().join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let prom_port = free_port();
    let _prometheus = Reaped(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's `prometheus` package; .ci/run installs it)"),
    );
    let prometheus = format!("http://127.0.0.1:{prom_port}");
    let http = reqwest::Client::new();
    wait_for("Prometheus to be ready", Duration::from_secs(30), async || {
        http.get(format!("{prometheus}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;

    // The work: checkouts that complete, the incident's slow ones (staggered, so failures
    // land in different scrapes), post 01's checkout, and refunds for a manager.
    let wf = "blog_examples/monitored_checkout";
    for _ in 0..3 {
        submit(data, None, wf, &checkout(None));
    }
    let sample = std::fs::read_to_string(root().join("samples/process_order.json")).unwrap();
    submit(data, None, "ecommerce/process_order", &sample);
    let agent = token(data, "priya", "customer_success", "operator");
    let manager = token(data, "jane", "customer_success", "manager");
    let decided = submit(
        data,
        Some(&agent),
        "customer_success/process_refund",
        &refund(15_000),
    );
    submit(
        data,
        Some(&agent),
        "customer_success/process_refund",
        &refund(20_000),
    );
    for _ in 0..3 {
        submit(data, None, wf, &checkout(Some("inventory_slowdown")));
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    wait_for(
        "the refund to wait for its manager",
        Duration::from_secs(30),
        async || taskdeck(data, Some(&manager), &["approvals"]).contains(&decided[decided.len() - 8..]),
    )
    .await;
    taskdeck(
        data,
        Some(&manager),
        &["approve", &decided, "get_manager_approval", "--note", "checked"],
    );

    // The slow checkouts fail (two 15 s attempts each) and Prometheus sees all three.
    wait_for(
        "the incident's checkouts to fail",
        Duration::from_secs(120),
        async || {
            let failed = query(
                &http,
                &prometheus,
                r#"sum(tasker_tasks_total{workflow="monitored_checkout",status="failed"})"#,
            )
            .await;
            failed
                .first()
                .and_then(|r| r["value"][1].as_str())
                .is_some_and(|v| v == "3")
        },
    )
    .await;
    // A few more scrapes and rule evaluations after the last failure.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Every dashboard panel's query returns data.
    for file in [
        "dashboards/workflow-overview.json",
        "dashboards/engine-health.json",
    ] {
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(root().join(file)).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                let result = query(&http, &prometheus, expr).await;
                assert!(
                    !result.is_empty(),
                    "{file}: panel `{}` has no data: {expr}",
                    panel["title"]
                );
            }
        }
    }

    // Every alert expression evaluates; the incident's hold.
    let mut holding = std::collections::BTreeMap::new();
    for file in ["alerts/workflow-alerts.yml", "alerts/engine-alerts.yml"] {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(root().join(file)).unwrap()).unwrap();
        for group in doc["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                let Some(alert) = rule["alert"].as_str() else {
                    continue;
                };
                let result = query(&http, &prometheus, rule["expr"].as_str().unwrap()).await;
                holding.insert(alert.to_string(), result);
            }
        }
    }
    for alert in [
        "CheckoutConversionDown",
        "WorkflowStepBottleneck",
        "HighValueCustomerWorkflowFailure",
        "InventoryOversellRisk",
        "ApprovalRequestExpiringSoon",
    ] {
        assert!(!holding[alert].is_empty(), "{alert} does not hold: {holding:?}");
    }
    let bottlenecks: Vec<&str> = holding["WorkflowStepBottleneck"]
        .iter()
        .filter_map(|r| r["metric"]["step"].as_str())
        .collect();
    assert_eq!(bottlenecks, ["update_inventory"], "{holding:?}");
    assert_eq!(
        holding["CheckoutConversionDown"][0]["metric"]["namespace"],
        "blog_examples"
    );
    assert!(
        holding["StoreCommitLatencyHigh"].is_empty(),
        "a loopback test's commits are not slow: {holding:?}"
    );
}
