//! The crash loop (issue 8, item 3): the bundled workflows (a checkout with Black Friday's
//! faults, registrations with outages, a refund delegated across teams) run under a real
//! `taskdeck run` that is killed over and over, half the time with SIGKILL at a random moment
//! and half the time at the worst moment there is (the store's crash point: the log of a
//! commit is on disk, its snapshots are not). Every task must end as it does without kills,
//! no step that the log shows completed may run again, and attempts cut short by a kill must
//! not spend the retry budget.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn taskdeck(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

fn sample(name: &str) -> Value {
    let path = format!("{}/samples/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The work: (workflow, context), in submission order. Three copies, each with its own
/// users and payment, so no two tasks race for the same record and outcomes do not depend on
/// which ran first.
fn work(batch: u32) -> Vec<(&'static str, Value)> {
    let registration = |name: &str, email: String| {
        let mut c = sample(name);
        c["user_info"]["email"] = json!(email);
        c
    };
    let mut all = Vec::new();
    for copy in (batch * 10)..(batch * 10 + 3) {
        let mut welcome = registration("user_registration", format!("welcome{copy}@growthcorp.example"));
        welcome["scenario"] = json!("welcome_rate_limited");
        all.extend([
            ("ecommerce/process_order", sample("process_order_black_friday")),
            ("ecommerce/process_order", sample("process_order")),
            (
                "microservices/user_registration",
                registration("user_registration_billing_outage", format!("outage{copy}@growthcorp.example")),
            ),
            ("microservices/user_registration", welcome),
            (
                "customer_success/process_refund",
                json!({
                    "ticket_id": format!("TICKET-9876{copy}"), "customer_id": "CUST-54321", "refund_amount": 7500,
                    "refund_reason": "customer_request", "customer_email": "customer@example.com",
                    "payment_id": format!("pay_98765432{copy}")
                }),
            ),
        ]);
    }
    all
}

fn submit_all(data: &Path, batch: u32) -> Vec<String> {
    work(batch)
        .into_iter()
        .map(|(workflow, context)| {
            let out = taskdeck(data, &["submit", workflow, "--context", &context.to_string()]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .collect()
}

fn tasks(data: &Path) -> Vec<Value> {
    let out = taskdeck(data, &["tasks", "--all", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn show(data: &Path, id: &str) -> Value {
    let out = taskdeck(data, &["show", id, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Where a task ended: its state and, per step, its state and error code.
type Outcome = (String, BTreeMap<String, (String, Value)>);

fn outcome(task: &Value) -> Outcome {
    let steps = task["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let name = s["name"].as_str().unwrap().to_string();
            (
                name,
                (
                    s["state"].as_str().unwrap().to_string(),
                    s["last_error"]["code"].clone(),
                ),
            )
        })
        .collect();
    (task["state"].as_str().unwrap().to_string(), steps)
}

/// Attempts each step counted against its retry limit.
fn attempts_used(task: &Value) -> BTreeMap<String, u64> {
    task["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["attempts_used"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn unfinished(data: &Path) -> usize {
    tasks(data)
        .iter()
        .filter(|t| matches!(t["state"].as_str(), Some("pending" | "in_progress")))
        .count()
}

#[test]
fn killed_again_and_again_every_task_ends_as_without_kills_and_nothing_completed_runs_twice() {
    // With kills: a new batch of work whenever the last one is done, for a fixed number of
    // cycles.
    let data = tempfile::tempdir().unwrap();
    let mut batches = 1;
    let mut ids = submit_all(data.path(), 0);
    let mut rng = SmallRng::seed_from_u64(588);
    let (mut sigkills, mut crash_points) = (0, 0);
    let started = Instant::now();
    for cycle in 0..48 {
        if cycle % 4 == 0 && unfinished(data.path()) == 0 {
            ids.extend(submit_all(data.path(), batches));
            batches += 1;
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_taskdeck"));
        command
            .arg("--data")
            .arg(data.path())
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if cycle % 4 < 2 {
            // After recovery's own commit, so the engine makes some progress each time.
            command.env("TASKDECK_CRASH_AFTER_LOG", rng.random_range(2..=5u32).to_string());
            let mut child = command.spawn().unwrap();
            // The crash point fires within a few commits; a run with nothing left to commit
            // (every task backing off) is killed after a while like the others.
            let deadline = Instant::now() + Duration::from_millis(400);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    if status.code() == Some(99) {
                        crash_points += 1;
                    }
                    break;
                }
                if Instant::now() > deadline {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    sigkills += 1;
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            // Every other SIGKILL leaves time for the slowest step (Black Friday's inventory
            // reservations, over a second): the adversary kills at any moment, but an engine
            // that is never given the time a step takes cannot finish it.
            let window = if cycle % 4 == 2 { 50..500 } else { 1_000..2_500 };
            let mut child = command.spawn().unwrap();
            std::thread::sleep(Duration::from_millis(rng.random_range(window)));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            sigkills += 1;
        }
    }
    let out = taskdeck(data.path(), &["run", "--until-idle"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!(
        "{batches} batches, {sigkills} SIGKILLs and {crash_points} crashes between log and snapshot in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(crash_points >= 8, "the crash point fired {crash_points} times");

    // Without kills: the same work.
    let reference = tempfile::tempdir().unwrap();
    let reference_ids: Vec<String> = (0..batches)
        .flat_map(|b| submit_all(reference.path(), b))
        .collect();
    let out = taskdeck(reference.path(), &["run", "--until-idle"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    for (id, reference_id) in ids.iter().zip(&reference_ids) {
        let task = show(data.path(), id);
        let expected = show(reference.path(), reference_id);
        assert_eq!(outcome(&task), outcome(&expected), "task {id} ({})", task["name"]);
        // An attempt cut short never counts; one whose call reached a service before the
        // kill may leave a scenario with fewer failures to inject, so never more than
        // without kills.
        for (step, used) in attempts_used(&task) {
            let without = attempts_used(&expected)[&step];
            assert!(
                used <= without,
                "task {id} step {step}: {used} attempts counted, {without} without kills"
            );
        }

        // Whatever the log says completed never moved again.
        let mut done: BTreeMap<String, u64> = BTreeMap::new();
        for t in task["transitions"].as_array().unwrap() {
            let Some(step) = t["subject"]["step"].as_str() else {
                continue;
            };
            if let Some(seq) = done.get(step) {
                panic!("task {id}: step {step} completed at seq {seq} and then moved: {t}");
            }
            if matches!(t["to"].as_str(), Some("complete" | "resolved_manually")) {
                done.insert(step.to_string(), t["seq"].as_u64().unwrap());
            }
        }
    }
    // One payments child per delegating refund, however often the delegation re-ran.
    let children = |data: &Path| {
        tasks(data)
            .iter()
            .filter(|t| t["namespace"] == "payments")
            .map(|t| t["state"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(children(data.path()), children(reference.path()));
}
