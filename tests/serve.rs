//! `taskdeck serve` as a real second process: CLI commands give the same output, errors and
//! exit codes whether they run the engine themselves or talk to the server holding the data
//! directory; the event stream survives `kill -9` and a restart of the server; SIGTERM stops it
//! cleanly; HTTPS works with a CA the client is told to trust.

use futures::StreamExt;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use taskdeck::client::{Client, Credentials, Http, HttpOptions};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_taskdeck"));
    c.env("USER", "sarah")
        .env_remove("TASKDECK_TOKEN")
        .env_remove("TASKDECK_URL");
    c
}

fn run(data: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut c = bin();
    c.arg("--data").arg(data).args(args);
    if let Some(t) = token {
        c.env("TASKDECK_TOKEN", t);
    }
    c.output().unwrap()
}

fn text(out: &Output) -> (String, String, Option<i32>) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, even when an assertion fails first.
struct Reaped(Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `taskdeck serve` and waits until its address file says it listens.
fn serve(data: &Path, port: u16, extra: &[&str]) -> Reaped {
    let _ = std::fs::remove_file(data.join("server.json"));
    let child = Reaped(
        bin()
            .arg("--data")
            .arg(data)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !data.join("server.json").exists() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn token(data: &Path, sub: &str, role: &str) -> String {
    let out = run(
        data,
        None,
        &[
            "token",
            "issue",
            "--sub",
            sub,
            "--team",
            "customer_success",
            "--role",
            role,
            "--mfa",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn refund(cents: i64) -> String {
    serde_json::json!({
        "ticket_id": "TICKET-98765", "customer_id": "CUST-54321", "refund_amount": cents,
        "refund_reason": "Product defect reported by customer",
        "customer_email": "customer@example.com", "payment_id": "pay_987654321",
    })
    .to_string()
}

#[test]
fn cli_commands_give_the_same_output_in_process_and_through_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let agent = token(data, "priya", "operator");
    let manager = token(data, "jane", "manager");
    let submitted = run(
        data,
        Some(&agent),
        &[
            "submit",
            "customer_success/process_refund",
            "--context",
            &refund(15_000),
            "--wait",
        ],
    );
    let (out, _, code) = text(&submitted);
    assert_eq!(code, Some(2), "waits for approval: {out}");
    let id = out.lines().next().unwrap().to_string();
    let short = &id[id.len() - 8..];
    let checkout = run(
        data,
        None,
        &[
            "submit",
            "ecommerce/process_order",
            "--context-file",
            &format!("{}/samples/process_order.json", env!("CARGO_MANIFEST_DIR")),
            "--wait",
        ],
    );
    assert_eq!(checkout.status.code(), Some(0), "{:?}", text(&checkout));

    // (token, arguments): reads, and refusals that change nothing.
    let commands: Vec<(Option<&str>, Vec<&str>)> = vec![
        (None, vec!["tasks", "--json"]),
        (Some(&agent), vec!["tasks", "--json"]),
        (None, vec!["tasks", "--state", "complete", "--json"]),
        (None, vec!["tasks", "--namespace", "nowhere"]),
        (None, vec!["show", &id, "--json"]),
        (Some(&agent), vec!["show", short]),
        (None, vec!["show", "no-such-task"]),
        (None, vec!["show", ""]),
        (None, vec!["show", ".."]),
        (Some(&manager), vec!["approve", short, ""]),
        (
            None,
            vec!["tasks", "--namespace", "customer_success", "--state", "error"],
        ),
        (Some(&manager), vec!["approvals", "--json"]),
        (Some(&agent), vec!["approve", short, "get_manager_approval"]),
        (
            Some(&manager),
            vec!["deny", short, "get_manager_approval", "--reason", " "],
        ),
        (Some(&agent), vec!["retry", short]),
        (
            Some(&agent),
            vec!["resolve", short, "get_manager_approval", "--results", "{}"],
        ),
        (
            Some(&agent),
            vec!["submit", "customer_success/process_refund", "--context", "{}"],
        ),
        (None, vec!["submit", "nowhere/nothing"]),
    ];
    let local: Vec<_> = commands
        .iter()
        .map(|(t, args)| text(&run(data, *t, args)))
        .collect();

    let port = free_port();
    let mut server = serve(data, port, &[]);
    for ((t, args), expected) in commands.iter().zip(&local) {
        let remote = text(&run(data, *t, args));
        assert_eq!(
            &remote,
            expected,
            "`taskdeck {}` differs through the server",
            args.join(" ")
        );
    }
    // The local user submits a sensitive workflow through the server with no token, as it
    // can in-process: its self-minted token proves it holds the data directory. (It waits for
    // a manager, so the count of finished tasks below stays the same.)
    let local_refund = run(
        data,
        None,
        &[
            "submit",
            "customer_success/process_refund",
            "--context",
            &refund(15_000),
        ],
    );
    assert_eq!(local_refund.status.code(), Some(0), "{:?}", text(&local_refund));
    // And an approval through the server, which runs the rest of the refund.
    let approved = run(data, Some(&manager), &["approve", short, "get_manager_approval"]);
    assert_eq!(approved.status.code(), Some(0), "{:?}", text(&approved));
    assert!(text(&approved).0.starts_with(&id));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let shown: Value = serde_json::from_slice(&run(data, None, &["show", &id, "--json"]).stdout).unwrap();
        if shown["state"] == "complete" {
            break;
        }
        assert!(Instant::now() < deadline, "the refund did not complete: {shown}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = sigterm(&mut server);
    assert!(status.success(), "{status:?}");
    assert!(
        !data.join("server.json").exists(),
        "the address file goes with the server"
    );
    // The directory is free again: commands run in-process.
    let after = run(data, None, &["tasks", "--state", "complete", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&after.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

async fn local_client(data: &Path, port: u16) -> Http {
    let key = std::fs::read(data.join("auth/jwt.key")).unwrap();
    Http::connect(HttpOptions {
        url: format!("http://127.0.0.1:{port}"),
        credentials: Credentials::Key(key),
        prove_with: None,
        ca: None,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_survives_kill_9_and_a_restart_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let port = free_port();
    let mut server = serve(&data, port, &[]);
    let client = local_client(&data, port).await;
    let mut feed = client.events(Some(0)).await.unwrap();
    let mut link = client.link().unwrap();
    let sample = format!(
        "{}/samples/process_order_black_friday.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let submit = |data: std::path::PathBuf, sample: String| {
        tokio::task::spawn_blocking(move || {
            let out = run(
                &data,
                None,
                &["submit", "ecommerce/process_order", "--context-file", &sample],
            );
            assert!(out.status.success(), "{:?}", text(&out));
        })
    };
    for _ in 0..3 {
        submit(data.clone(), sample.clone()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill().unwrap();
    server.wait().unwrap();
    // The client sees the server go.
    tokio::time::timeout(
        Duration::from_secs(10),
        link.wait_for(|l| *l != taskdeck::client::Link::Up),
    )
    .await
    .unwrap()
    .unwrap();
    let mut server = serve(&data, port, &[]);
    for _ in 0..3 {
        submit(data.clone(), sample.clone()).await.unwrap();
    }
    let mut seqs = Vec::new();
    let mut completed = std::collections::HashSet::new();
    while completed.len() < 6 {
        let e = tokio::time::timeout(Duration::from_secs(30), feed.next())
            .await
            .expect("events keep coming after the restart")
            .unwrap()
            .unwrap();
        if e.name == "task.completed" || e.name == "task.failed" {
            completed.insert(e.task_id.clone());
        }
        seqs.push(e.seq);
    }
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "every event once, in order, across the kill and the restart"
    );
    assert_eq!(*link.borrow(), taskdeck::client::Link::Up);
    assert!(sigterm(&mut server).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_trusted_ca_and_a_refusal_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_file, key_file) = (data.join("cert.pem"), data.join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let port = free_port();
    let mut server = serve(
        data,
        port,
        &[
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ],
    );
    let url = format!("https://localhost:{port}");
    let admin = {
        let out = run(
            data,
            None,
            &[
                "token", "issue", "--sub", "root", "--team", "local", "--role", "admin",
            ],
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let ok = run(
        data,
        Some(&admin),
        &[
            "--connect",
            &url,
            "--tls-ca",
            cert_file.to_str().unwrap(),
            "tasks",
        ],
    );
    assert_eq!(ok.status.code(), Some(0), "{:?}", text(&ok));
    let refused = run(data, Some(&admin), &["--connect", &url, "tasks"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).1.contains("cannot reach the taskdeck server"),
        "{:?}",
        text(&refused)
    );
    // This data directory's own commands trust its server's certificate (named in server.json).
    let local = run(data, None, &["tasks"]);
    assert_eq!(local.status.code(), Some(0), "{:?}", text(&local));
    // Plain HTTP to the TLS port is not served either.
    let plain = run(
        data,
        Some(&admin),
        &["--connect", &format!("http://127.0.0.1:{port}"), "tasks"],
    );
    assert_eq!(plain.status.code(), Some(1));
    assert!(sigterm(&mut server).success());
}

/// A token minted from this data directory's key is a key to its server: it is never sent to
/// another address, even one the user names with --connect.
#[test]
fn a_self_minted_token_is_never_sent_to_another_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    assert!(
        run(data, None, &["tasks"]).status.success(),
        "creates the data directory and key"
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let out = run(data, None, &["--connect", &url, "tasks"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("needs a token"), "{:?}", text(&out));
    assert!(
        listener.accept().is_err(),
        "nothing connected to the other server"
    );
}

/// The address file of a server that died is not trusted: the process holding the directory
/// now (`run --no-api`) serves no API, and whoever took the old port gets nothing.
#[test]
fn a_stale_address_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let port = free_port();
    let mut first = serve(data, port, &[]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(data.join("server.json").exists(), "left behind by kill -9");
    let mut holder = Reaped(
        bin()
            .arg("--data")
            .arg(data)
            .args(["run", "--no-api"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(data.join("taskdeck.pid"))
        .unwrap_or_default()
        .contains(&holder.id().to_string())
    {
        assert!(Instant::now() < deadline, "run did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    squatter.set_nonblocking(true).unwrap();
    let out = run(data, None, &["tasks"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("in use by another taskdeck process"),
        "{:?}",
        text(&out)
    );
    assert!(squatter.accept().is_err(), "nothing connected to the old port");
    assert!(sigterm(&mut holder).success());
}

/// `$USER` names the actor of what the local user does, so it follows a token subject's
/// rules: the engine's own names are refused, in-process and through a server alike.
#[test]
fn the_local_user_cannot_take_the_engines_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let as_user = |user: &str| {
        bin()
            .env("USER", user)
            .arg("--data")
            .arg(data)
            .args(["tasks"])
            .output()
            .unwrap()
    };
    let local = text(&as_user("engine"));
    assert_eq!(local.2, Some(1));
    assert!(local.1.contains("cannot name an operator"), "{local:?}");
    let mut server = serve(data, free_port(), &[]);
    assert_eq!(text(&as_user("system")).2, Some(1));
    assert_eq!(
        text(&as_user("engine")),
        local,
        "the same answer through the server"
    );
    assert!(sigterm(&mut server).success());
}
