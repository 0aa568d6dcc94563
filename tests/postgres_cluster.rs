//! Three `taskdeck serve` processes (the real binary) on one PostgreSQL store, sharing 300
//! tasks of the bundled workflows submitted through their APIs, while one of them is killed
//! with SIGKILL twice mid-run and restarted. Every task must end as it does in a run without
//! kills, no step's completion may be recorded twice, the shared simulated payment gateway must
//! hold one charge per order and one refund per refund, and the audit chain must verify.

mod common;

use common::postgres as pg;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use taskdeck::model::{Subject, Transition};

fn taskdeck(data: &Path, store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env("TASKDECK_STORE", store)
        .output()
        .unwrap()
}

fn sample(name: &str) -> Value {
    let path = format!("{}/samples/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Five kinds of work, `copy` making ids, emails and products its own (so no two tasks race
/// for one record or one product's stock, and outcomes do not depend on which ran first):
/// `(kind, workflow, context)`.
fn work(copy: u32) -> Vec<(&'static str, &'static str, Value)> {
    let order = |name: &str, first: u32| {
        let mut c = sample(name);
        c["cart_items"] = json!([first, first + 1]
            .iter()
            .enumerate()
            .map(|(i, id)| json!({ "product_id": id, "quantity": 2 - i, "price": 29.99, "name": format!("Mock Product {id}") }))
            .collect::<Vec<_>>());
        // Two of one $29.99 product and one of another, with tax and shipping.
        c["payment_info"]["amount"] = json!(103.16);
        c
    };
    let registration = |name: &str, email: String| {
        let mut c = sample(name);
        c["user_info"]["email"] = json!(email);
        c
    };
    let mut welcome = registration("user_registration", format!("welcome{copy}@growthcorp.example"));
    welcome["scenario"] = json!("welcome_rate_limited");
    vec![
        (
            "black_friday",
            "ecommerce/process_order",
            order("process_order_black_friday", 10 + 4 * copy),
        ),
        (
            "order",
            "ecommerce/process_order",
            order("process_order", 12 + 4 * copy),
        ),
        (
            "outage",
            "microservices/user_registration",
            registration(
                "user_registration_billing_outage",
                format!("outage{copy}@growthcorp.example"),
            ),
        ),
        ("welcome", "microservices/user_registration", welcome),
        (
            "refund",
            "customer_success/process_refund",
            json!({
                "ticket_id": format!("TICKET-{copy}"), "customer_id": "CUST-54321", "refund_amount": 7500,
                "refund_reason": "customer_request", "customer_email": format!("c{copy}@example.com"),
                "payment_id": format!("pay_{copy:09}")
            }),
        ),
    ]
}

/// Submits `lines` through the server of `data` as one batch; returns the task ids in order.
fn submit(data: &Path, store: &str, lines: &[(&str, &str, Value)]) -> Vec<String> {
    let file = data.join("batch.jsonl");
    let text: String = lines
        .iter()
        .map(|(_, workflow, context)| format!("{}\n", json!({ "workflow": workflow, "context": context })))
        .collect();
    std::fs::write(&file, text).unwrap();
    let out = taskdeck(
        data,
        store,
        &["submit", "--batch", file.to_str().unwrap(), "--json"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            line["task"]
                .as_str()
                .expect("every line makes a task")
                .to_string()
        })
        .collect()
}

/// Where a task ended: its state and, per step, its state and error code.
type Outcome = (String, BTreeMap<String, (String, Value)>);

fn outcome(task: &Value) -> Outcome {
    let steps = task["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                (
                    s["state"].as_str().unwrap().to_string(),
                    s["last_error"]["code"].clone(),
                ),
            )
        })
        .collect();
    (task["state"].as_str().unwrap().to_string(), steps)
}

fn show(data: &Path, store: &str, id: &str) -> Value {
    let out = taskdeck(data, store, &["show", id, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    shown.get("task").cloned().unwrap_or(shown)
}

struct Server {
    data: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Server {
    fn start(&mut self, store: &str) {
        let child = Command::new(env!("CARGO_BIN_EXE_taskdeck"))
            .arg("--data")
            .arg(&self.data)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .env("TASKDECK_STORE", store)
            .env(taskdeck::store::LEASE_SECONDS_ENV, "2")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Up when its address file names it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(self.data.join("server.json"))
            .is_ok_and(|t| t.contains(&self.port.to_string()))
        {
            assert!(Instant::now() < deadline, "serve on {} did not start", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_engines_share_300_tasks_through_two_kills_and_each_ends_as_without_kills() {
    let Some(url) = pg::url("three_engines_share_300_tasks_through_two_kills_and_each_ends_as_without_kills")
    else {
        return;
    };
    let target = pg::fresh_target(&url);
    let store = format!("{url}?schema={}", target.schema);
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();

    // Without kills: one of each kind, on sled, one process (the outcome of a kind does not
    // depend on its copy).
    let reference_dir = dirs[3].path();
    let mut reference: HashMap<&str, Outcome> = HashMap::new();
    for (kind, workflow, context) in work(200) {
        let out = taskdeck(
            reference_dir,
            "",
            &["submit", workflow, "--context", &context.to_string(), "--wait"],
        );
        let id = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let out = taskdeck(reference_dir, "", &["run", "--until-idle"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        reference.insert(kind, outcome(&show(reference_dir, "", &id)));
    }

    assert_eq!(
        reference["order"].0, "complete",
        "the plain order completes (and charges)"
    );
    assert_eq!(reference["refund"].0, "complete");

    // The engines share the data directory's keys (tokens, audit, master key): the first one
    // makes them, the others get copies.
    let mut servers: Vec<Server> = dirs[..3]
        .iter()
        .map(|d| Server {
            data: d.path().to_path_buf(),
            port: free_port(),
            child: None,
        })
        .collect();
    servers[0].start(&store);
    for s in &servers[1..] {
        for folder in ["auth", "audit", "keys"] {
            let (from, to) = (servers[0].data.join(folder), s.data.join(folder));
            if from.exists() {
                std::fs::create_dir_all(&to).unwrap();
                for entry in std::fs::read_dir(&from).unwrap() {
                    let entry = entry.unwrap();
                    std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
                }
            }
        }
    }
    for s in &mut servers[1..] {
        s.start(&store);
    }

    // 300 tasks, a third through each server; the server that has just taken a third (so has
    // steps running) is killed, twice, and restarted.
    let all: Vec<(&str, &str, Value)> = (0..60).flat_map(work).collect();
    let mut kinds: HashMap<String, &str> = HashMap::new();
    let mut rng = SmallRng::seed_from_u64(14);
    let started = Instant::now();
    for (i, chunk) in all.chunks(100).enumerate() {
        let ids = submit(&servers[i].data.clone(), &store, chunk);
        for (id, (kind, _, _)) in ids.into_iter().zip(chunk) {
            kinds.insert(id, kind);
        }
        if i < 2 {
            std::thread::sleep(Duration::from_millis(rng.random_range(100..600)));
            servers[i].kill();
            std::thread::sleep(Duration::from_millis(rng.random_range(200..800)));
            servers[i].start(&store);
        }
    }
    assert_eq!(kinds.len(), 300);
    // A command without `--store` on a directory a PostgreSQL-backed engine holds talks to that
    // engine, never to an empty sled store of its own beside it.
    let out = taskdeck(&servers[1].data, "", &["tasks", "--all", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed.as_array().unwrap().len() >= 300);
    assert!(!servers[1].data.join("store").exists(), "no sled store was made");

    // Every task (and every child a refund delegated) ends.
    let client = pg::sql(&url).await;
    let schema = &target.schema;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let row = client
            .query_one(
                &format!("SELECT count(*) FILTER (WHERE state IN ('pending', 'in_progress')), count(*) FROM {schema}.tasks"),
                &[],
            )
            .await
            .unwrap();
        let (unfinished, total): (i64, i64) = (row.get(0), row.get(1));
        if unfinished == 0 && total >= 360 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unfinished} of {total} tasks still unfinished"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "300 tasks (and 60 delegated refunds) ended in {:.1}s across 3 engines, 2 kills",
        started.elapsed().as_secs_f64()
    );

    // Each ended as it does without kills.
    for (id, kind) in &kinds {
        let task = show(&servers[0].data, &store, id);
        assert_eq!(
            &outcome(&task),
            &reference[kind],
            "task {id} ({kind}) ended differently"
        );
    }

    // No step's completion is recorded twice.
    let rows = client
        .query(&format!("SELECT body FROM {schema}.transitions"), &[])
        .await
        .unwrap();
    let mut completed: HashMap<(String, String), u32> = HashMap::new();
    let mut rerun = 0;
    for row in &rows {
        let t: Transition = serde_json::from_str(row.get::<_, &str>(0)).unwrap();
        if t.reason.as_deref().is_some_and(|r| r.starts_with("interrupted")) {
            rerun += 1;
        }
        if let (Subject::Step(step), "complete") = (&t.subject, t.to.as_str()) {
            *completed.entry((t.task_id.clone(), step.clone())).or_default() += 1;
        }
    }
    eprintln!(
        "{rerun} step attempt(s) interrupted by a kill ran again in another engine or after the restart"
    );
    assert!(rerun > 0, "the kills interrupted running steps");
    let twice: Vec<_> = completed.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "completions recorded twice: {twice:?}");

    for s in &mut servers {
        s.stop();
    }
    // The engines share one payment gateway (its records are in the store's schema): one
    // charge per order that paid, one refund per refund, whichever engine ran the step and
    // however often a kill made it run again.
    let count = async |sql: String| -> i64 { client.query_one(&sql, &[]).await.unwrap().get(0) };
    let charges = count(format!(
        "SELECT count(*) FROM {schema}.service_rows WHERE tbl = 'payment.ledger' AND value IS NOT NULL"
    ))
    .await;
    let paid = completed
        .keys()
        .filter(|(_, step)| step == "process_payment")
        .count() as i64;
    assert_eq!(charges, paid, "one charge per payment step completed");
    assert_eq!(paid, 120, "every order paid once");
    let refunds = count(format!(
        "SELECT count(*) FROM {schema}.service_rows WHERE tbl = 'payment.refunds' AND value IS NOT NULL"
    ))
    .await;
    assert_eq!(refunds, 60, "one refund per refund task");
    eprintln!("{charges} charges and {refunds} refunds, each once");

    if std::env::var("KEEP_CLUSTER_DIRS").is_ok() {
        for d in dirs {
            eprintln!("kept {}", d.keep().display());
        }
        return;
    }
    // One audit chain, intact.
    let out = taskdeck(&servers[0].data, &store, &["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
