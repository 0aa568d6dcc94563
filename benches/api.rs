//! API benchmark (`cargo bench --bench api`): a real `taskdeck serve` (the release binary,
//! immediate durability: every creation is flushed before it is answered) driven over loopback
//! by concurrent clients in this process:
//!
//! - `single`: 32 clients, each creating one task per request (`POST /v1/tasks`);
//! - `batch`: 4 clients, 100 tasks per request (`POST /v1/tasks/batch`);
//! - `process per submit`: the old way, one `taskdeck submit` process per task, in sequence.
//!
//! Tasks are one no-op `simulate` step, so the engine also runs what is created (the numbers
//! include that work). Prints tasks/s and request latency p50/p99. Goals (issue 9): ≥ 5,000
//! creations/s in batches, ≥ 1,000/s singly, p99 < 20 ms.

use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECONDS: u64 = 5;

struct Server {
    child: Child,
    url: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_taskdeck"))
}

fn workflows(dir: &std::path::Path) -> std::path::PathBuf {
    let folder = dir.join("bench-workflows");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("noop.yaml"),
        "namespace: bench\nname: noop\nversion: 1.0.0\nsteps:\n  - name: only\n    handler: simulate\n",
    )
    .unwrap();
    folder
}

fn start(dir: &std::path::Path) -> Server {
    let data = dir.join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = bin()
        .arg("--data")
        .arg(&data)
        .arg("--workflows")
        .arg(workflows(dir))
        .args([
            "serve",
            "--rate-limit",
            "0",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    while !data.join("server.json").exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = bin()
        .arg("--data")
        .arg(&data)
        .args([
            "token", "issue", "--sub", "bench", "--team", "bench", "--role", "admin",
        ])
        .output()
        .unwrap();
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        token: String::from_utf8(out.stdout).unwrap().trim().to_string(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs `clients` loops for `SECONDS`, each sending requests that create `per_request` tasks;
/// returns (tasks created, request latencies).
async fn drive(server: &Server, clients: usize, per_request: usize) -> (usize, Vec<Duration>) {
    let http = reqwest::Client::builder().tcp_nodelay(true).build().unwrap();
    let end = Instant::now() + Duration::from_secs(SECONDS);
    let body = Arc::new(if per_request == 1 {
        json!({ "workflow": "bench/noop", "context": { "n": 1 } })
    } else {
        json!({ "tasks": vec![json!({ "workflow": "bench/noop", "context": { "n": 1 } }); per_request] })
    });
    let path = if per_request == 1 {
        "/v1/tasks"
    } else {
        "/v1/tasks/batch"
    };
    let mut loops = Vec::new();
    for _ in 0..clients {
        let (http, body, url, token) = (
            http.clone(),
            body.clone(),
            format!("{}{path}", server.url),
            server.token.clone(),
        );
        loops.push(tokio::spawn(async move {
            let (mut created, mut latencies) = (0, Vec::new());
            while Instant::now() < end {
                let started = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&*body)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                let _ = r.bytes().await.unwrap();
                latencies.push(started.elapsed());
                created += per_request;
            }
            (created, latencies)
        }));
    }
    let (mut created, mut latencies) = (0, Vec::new());
    for l in loops {
        let (c, mut lat) = l.await.unwrap();
        created += c;
        latencies.append(&mut lat);
    }
    latencies.sort();
    (created, latencies)
}

fn report(name: &str, created: usize, latencies: &[Duration]) {
    println!(
        "{name:<22} {:>8.0} tasks/s   {:>6} requests   p50 {:>6.2} ms   p99 {:>6.2} ms",
        created as f64 / SECONDS as f64,
        latencies.len(),
        percentile(latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(latencies, 0.99).as_secs_f64() * 1000.0,
    );
}

fn main() {
    // `cargo bench` passes flags such as --bench; this harness takes none.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("API creation throughput, {SECONDS} s each, immediate durability, loopback:");
    let runs = [
        ("single (32 clients)", 32, 1),
        ("batch (8 × 10)", 8, 10),
        ("batch (4 × 25)", 4, 25),
        ("batch (2 × 50)", 2, 50),
        ("batch (4 × 100)", 4, 100),
    ];
    for (name, clients, per_request) in runs {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path());
        let (created, latencies) = runtime.block_on(drive(&server, clients, per_request));
        report(name, created, &latencies);
        drop(server);
    }
    // The old way: a process per submit, which opens the store each time.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let folder = workflows(dir.path());
    let n = 50;
    let started = Instant::now();
    let mut latencies = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let out = bin()
            .arg("--data")
            .arg(&data)
            .arg("--workflows")
            .arg(&folder)
            .args(["submit", "bench/noop", "--context", "{\"n\":1}"])
            .output()
            .unwrap();
        assert!(out.status.success());
        latencies.push(t.elapsed());
    }
    latencies.sort();
    println!(
        "{:<22} {:>8.0} tasks/s   {:>6} processes  p50 {:>6.2} ms   p99 {:>6.2} ms",
        "process per submit",
        n as f64 / started.elapsed().as_secs_f64(),
        n,
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
    );
}
