//! Scale benchmarks through the release binary (`cargo bench --bench scale`; about 3 minutes):
//! what a store with a long history costs the processes that open it.
//!
//! 1. Fills a store, through the library, with `--tasks` (default 100,000) completed 5-step
//!    tasks and 1,000 unfinished ones (their first step sleeps an hour; the filling process
//!    stops mid-step, as a crash would leave them), and reports transitions stored and store
//!    bytes per completed task.
//! 2. `taskdeck tasks` on it (the newest 50): wall time and peak RSS (`/usr/bin/time -v`),
//!    median of 5 runs. Target: ≤ 100 ms at 100,000 tasks. Then `taskdeck tasks --search` for
//!    the oldest task's ticket (each task has its own): the same target.
//! 3. Restart: `taskdeck serve` on it until `/health/ready` answers, and its RSS then (the
//!    1,000 unfinished tasks resumed). Target: ≤ 1 s and ≤ 150 MB with 1,000,000 transitions.
//! 4. Memory per active task: `serve` on a store of 100,000 unfinished tasks, minus `serve` on
//!    an empty store, divided by 100,000. Target: ≤ 5 KB per active task.
//!
//! Arguments: `--tasks N`, `--active N` (defaults 100,000 and 100,000).

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskdeck::engine::{Engine, EngineConfig, SubmitRequest};
use taskdeck::handlers::Registry;
use taskdeck::store::{Durability, SledStore, Store};
use taskdeck::workflow::{Catalog, Source};

const FIVE: &str = "namespace: bench\nname: five\nversion: 1.0.0\nsteps:\n  - name: s0\n    handler: simulate\n  - name: s1\n    handler: simulate\n    depends_on: [s0]\n  - name: s2\n    handler: simulate\n    depends_on: [s1]\n  - name: s3\n    handler: simulate\n    depends_on: [s2]\n  - name: s4\n    handler: simulate\n    depends_on: [s3]\n";
const HOLD: &str = "namespace: bench\nname: hold\nversion: 1.0.0\nsteps:\n  - name: wait\n    handler: simulate\n    handler_config:\n      sleep_ms: 3600000\n  - name: after\n    handler: simulate\n    depends_on: [wait]\n";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let tasks = arg("--tasks", 100_000);
    let active = arg("--active", 100_000);
    let root = tempfile::tempdir().unwrap();
    let workflows = root.path().join("workflows");
    std::fs::create_dir_all(&workflows).unwrap();
    std::fs::write(workflows.join("five.yaml"), FIVE).unwrap();
    std::fs::write(workflows.join("hold.yaml"), HOLD).unwrap();

    println!("## Store with history: {tasks} completed 5-step tasks + 1,000 unfinished");
    let history = root.path().join("history");
    let started = Instant::now();
    fill(&history, &workflows, tasks, 1_000);
    let store = open(&history);
    // sled's futures never wait: no runtime needed to read one number.
    let transitions = futures::executor::block_on(store.last_seq()).unwrap();
    drop(store);
    std::thread::sleep(Duration::from_millis(500));
    let bytes = dir_bytes(&history.join("store"));
    println!(
        "filled in {:.1} s: {transitions} transitions, store {:.1} MB = {:.2} KB per task",
        started.elapsed().as_secs_f64(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e3 / (tasks + 1_000) as f64
    );

    let mut runs: Vec<(f64, u64)> = (0..5).map(|_| timed(&history, &workflows, &["tasks"])).collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    println!(
        "`taskdeck tasks` (newest 50): median {:.0} ms, peak RSS {:.1} MB",
        runs[2].0 * 1e3,
        runs[2].1 as f64 / 1e3
    );

    // The oldest task, found by its ticket among all of them (the search index), and with
    // more words (state and workflow narrow what the index found).
    for words in ["TICKET-0", "TICKET-0 complete bench/five"] {
        let mut runs: Vec<(f64, u64)> = (0..5)
            .map(|_| timed(&history, &workflows, &["tasks", "--search", words]))
            .collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        println!(
            "`taskdeck tasks --search \"{words}\"` (the oldest of {tasks}): median {:.0} ms, peak RSS {:.1} MB",
            runs[2].0 * 1e3,
            runs[2].1 as f64 / 1e3
        );
    }

    let (ready, rss) = restart(&history, &workflows);
    println!(
        "restart (`serve`, resumes 1,000 unfinished tasks) to /health/ready: {:.0} ms, RSS {:.1} MB",
        ready * 1e3,
        rss as f64 / 1e3
    );

    println!("## Memory per active task: {active} unfinished tasks");
    let busy = root.path().join("busy");
    fill(&busy, &workflows, 0, active);
    let empty = root.path().join("empty");
    fill(&empty, &workflows, 0, 0);
    let (_, base) = restart(&empty, &workflows);
    let (ready, loaded) = restart(&busy, &workflows);
    println!(
        "`serve` RSS: {:.1} MB empty, {:.1} MB with {active} active tasks (ready in {:.0} ms) = {:.2} KB per active task",
        base as f64 / 1e3,
        loaded as f64 / 1e3,
        ready * 1e3,
        (loaded.saturating_sub(base)) as f64 / active.max(1) as f64
    );
}

/// Completes `done` five-step tasks, then starts `open` tasks whose first step sleeps an hour
/// and stops as a crash would (their steps stay `in_progress`, the rest `pending`).
fn fill(dir: &Path, workflows: &Path, done: usize, unfinished: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir, Durability::Relaxed, "bench").unwrap());
        let registry = Registry::builtin();
        let sources = [Source::Path(workflows.to_path_buf())];
        let catalog = Arc::new(Catalog::load(&sources, &|h| registry.contains(h)).unwrap());
        let engine = Arc::new(
            Engine::start(
                EngineConfig {
                    concurrency: 256,
                    // As the CLI does: search terms are hashed under the data directory's key.
                    privacy: Some(taskdeck::privacy::KeySource::DataDir(dir.to_path_buf())),
                    ..EngineConfig::default()
                },
                store.clone(),
                catalog,
                registry,
            )
            .await
            .unwrap(),
        );
        for (workflow, count) in [("bench/five", done), ("bench/hold", unfinished)] {
            let mut left = count;
            while left > 0 {
                let n = left.min(2_000);
                let first = count - left;
                left -= n;
                // Each task its own ticket and order (indexed for search); TICKET-0 is oldest.
                let submits: Vec<_> = (first..first + n)
                    .map(|i| {
                        let engine = engine.clone();
                        tokio::spawn(async move {
                            engine
                                .submit(SubmitRequest::new(
                                    workflow,
                                    json!({ "order_id": format!("ORD-{i}"), "ticket_id": format!("TICKET-{i}"), "customer_id": 42 }),
                                    taskdeck::auth::Identity::local("bench"),
                                ))
                                .await
                                .unwrap()
                        })
                    })
                    .collect();
                for s in submits {
                    s.await.unwrap();
                }
                if workflow == "bench/five" {
                    engine.when_idle().await.unwrap();
                }
            }
        }
        store.flush().await.unwrap();
        // Stopped without grace: the held steps stay in progress, as after a crash.
        engine.shutdown(Duration::ZERO).await;
        drop(engine);
        drop(store);
    });
    drop(rt);
    drop(open(dir));
    std::thread::sleep(Duration::from_millis(500));
}

/// Opens the store once its last user has let go of it (sled's threads release the lock
/// shortly after the last handle is dropped).
fn open(dir: &Path) -> SledStore {
    loop {
        match SledStore::open(dir, Durability::Relaxed, "bench") {
            Ok(store) => return store,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_taskdeck")
}

/// Wall seconds and peak RSS (KB) of one CLI command.
fn timed(data: &Path, workflows: &Path, args: &[&str]) -> (f64, u64) {
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(binary())
        .arg("--data")
        .arg(data)
        .arg("--workflows")
        .arg(workflows)
        .args(args)
        .env("USER", "bench")
        .output()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rss = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes): "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (wall, rss)
}

/// Starts `serve` on `data`, waits for `/health/ready`; seconds until then and RSS (KB).
fn restart(data: &Path, workflows: &Path) -> (f64, u64) {
    let started = Instant::now();
    let mut child = Command::new(binary())
        .arg("--data")
        .arg(data)
        .arg("--workflows")
        .arg(workflows)
        .args(["--listen", "127.0.0.1:0", "serve"])
        .env("USER", "bench")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server_json = data.join("server.json");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let ready = rt.block_on(async {
        loop {
            if let Some(url) = std::fs::read_to_string(&server_json)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["url"].as_str().map(str::to_string))
            {
                if let Ok(r) = client.get(format!("{url}/health/ready")).send().await {
                    if r.status().is_success() {
                        return started.elapsed().as_secs_f64();
                    }
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "serve never became ready"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    // Let recovery's work settle (the first dispatch of resumed steps), then read the RSS.
    std::thread::sleep(Duration::from_millis(500));
    let rss = rss_kb(child.id());
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    let _ = std::fs::remove_file(&server_json);
    (ready, rss)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}
