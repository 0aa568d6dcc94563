//! The real binary in a pseudo-terminal (portable-pty + vt100): submit a workflow with the
//! `n` form, watch its DAG reach complete, retry a failed task with `r`, approve a refund from
//! the approvals inbox, quit with `q`, and find the terminal restored.

use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Screen {
    parser: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Screen {
    fn text(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows `needle` (the run is live: give it real time).
    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.text().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {needle:?}; the screen shows:\n{}",
            self.text()
        );
    }
}

struct Session {
    screen: Screen,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    keys: Box<dyn Write + Send>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Session {
    fn send(&mut self, bytes: &[u8]) {
        self.keys.write_all(bytes).unwrap();
        self.keys.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Quits with `q` and checks the terminal was given back.
    fn quit(mut self) {
        self.send(b"q");
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "taskdeck did not exit after q");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status:?}");
        std::thread::sleep(Duration::from_millis(200));
        let parser = self.screen.parser.lock().unwrap();
        assert!(!parser.screen().alternate_screen(), "left the alternate screen");
        assert!(!parser.screen().hide_cursor(), "the cursor is visible again");
        let raw = self.screen.raw.lock().unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("\x1b[?1049h") && text.contains("\x1b[?1049l"));
    }
}

fn taskdeck(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

/// A token for `sub` with `role` in customer_success, signed with `data`'s key.
fn customer_success_token(data: &std::path::Path, sub: &str, role: &str) -> String {
    let out = taskdeck(
        data,
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
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The agent (`token`) asks for a refund with `context`, from the command line.
fn submit_refund(data: &std::path::Path, token: &str, context: &str) {
    let out = taskdeck(
        data,
        &[
            "--token",
            token,
            "submit",
            "customer_success/process_refund",
            "--context",
            context,
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Starts the console in a 120×40 pseudo-terminal.
fn console(data: &std::path::Path, args: &[&str]) -> Session {
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 40,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_taskdeck"));
    cmd.arg("--data");
    cmd.arg(data);
    // An operator's token travels in TASKDECK_TOKEN (a flag shows in `ps`), and only an admin
    // loads extra workflow files: the test fixtures are for the local admin.
    match args.iter().position(|a| *a == "--token") {
        Some(at) => {
            cmd.env("TASKDECK_TOKEN", args[at + 1]);
            cmd.args(args[..at].iter().chain(&args[at + 2..]));
        }
        None => {
            cmd.arg("--workflows");
            cmd.arg(format!("{}/tests/fixtures/workflows", env!("CARGO_MANIFEST_DIR")));
            cmd.args(args);
        }
    }
    cmd.env("TERM", "xterm-256color");
    cmd.env("USER", "sarah");
    let child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let screen = Screen {
        parser: Arc::new(Mutex::new(vt100::Parser::new(
            NonZeroU16::new(40).unwrap(),
            NonZeroU16::new(120).unwrap(),
            0,
        ))),
        raw: Arc::new(Mutex::new(Vec::new())),
    };
    let mut reader = pty.master.try_clone_reader().unwrap();
    let (parser, raw) = (screen.parser.clone(), screen.raw.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            parser.lock().unwrap().process(&buf[..n]);
            raw.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let keys = pty.master.take_writer().unwrap();
    Session {
        screen,
        child,
        keys,
        _master: pty.master,
    }
}

#[test]
fn a_session_in_a_real_terminal() {
    let data = tempfile::tempdir().unwrap();
    let mut s = console(data.path(), &[]);
    s.screen.wait_for("tasks 0/0");
    s.screen.wait_for("sarah (admin, no token)");

    // Submit the demo pipeline through the form; the console opens its DAG.
    s.send(b"n");
    s.screen.wait_for("new task");
    s.send(b"release");
    s.screen.wait_for("demo/release_pipeline@1.0.0");
    s.send(b"\r");
    s.screen.wait_for("Ctrl-S submits");
    s.send(b"\x13");
    // The task view opens at once and its DAG moves to complete (about 2 s of work).
    s.screen.wait_for("task ");
    s.screen.wait_for("demo/release_pipeline@1.0.0 · ✔ complete");
    let done = s.screen.text();
    assert!(done.contains("✔ publish"), "{done}");
    assert!(
        done.contains("2/3 done"),
        "the flaky step shows its second attempt:\n{done}"
    );

    // A task that fails, then succeeds when retried with `r`.
    s.send(b"\x1b");
    s.screen.wait_for("tasks 1/1");
    s.send(b"n");
    s.send(b"fails");
    s.screen.wait_for("crash/fails@1.0.0");
    s.send(b"\r");
    s.screen.wait_for("Ctrl-S submits");
    s.send(b"\x13");
    s.screen.wait_for("crash/fails@1.0.0 · ✖ error");
    s.screen.wait_for("UPSTREAM_DOWN");
    s.send(b"r");
    s.screen.wait_for("crash/fails@1.0.0 · ✔ complete");

    // `:metrics`: the last ten minutes per namespace and the slowest steps; Enter opens the
    // task of the slowest attempt.
    s.send(b"\x1b");
    s.send(b":metrics\r");
    s.screen.wait_for("metrics · last 10 min");
    s.screen.wait_for("tasks/min");
    s.screen.wait_for("Enter opens the slowest task");
    s.send(b"\r");
    s.screen.wait_for(" · ✔ complete");
    // Esc goes back to `:metrics`, where the task was opened from, then to the tasks.
    s.send(b"\x1b");
    s.screen.wait_for("Enter opens the slowest task");
    s.send(b"\x1b");
    s.screen.wait_for("tasks 2/2");

    // `:audit`: the journal, filtered; Enter opens the task an entry is about, Esc returns.
    s.send(b":audit action:step\r");
    s.screen.wait_for("audit ‖");
    s.screen.wait_for("action:step");
    s.screen.wait_for("step.transition");
    s.send(b"\r");
    s.screen.wait_for(" · ✔ complete");
    s.send(b"\x1b");
    s.screen.wait_for("audit ‖");
    s.send(b"\x1b");
    s.screen.wait_for("tasks 2/2");

    // While the console holds the data directory, the CLI goes through its API, and prints
    // what it prints in-process once the console has quit.
    let through_console = taskdeck(data.path(), &["tasks", "--json"]);
    assert!(
        through_console.status.success(),
        "{}",
        String::from_utf8_lossy(&through_console.stderr)
    );
    s.quit();
    let in_process = taskdeck(data.path(), &["tasks", "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&through_console.stdout),
        String::from_utf8_lossy(&in_process.stdout)
    );
    assert!(String::from_utf8_lossy(&in_process.stdout).contains("crash"));
}

/// Two failed tasks marked with Space are retried together after one confirmation, and each
/// one's result is reported.
#[test]
fn marked_failed_tasks_are_retried_together() {
    let data = tempfile::tempdir().unwrap();
    let fixtures = format!("{}/tests/fixtures/workflows", env!("CARGO_MANIFEST_DIR"));
    for _ in 0..2 {
        let out = taskdeck(
            data.path(),
            &["--workflows", &fixtures, "submit", "crash/fails", "--wait"],
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut s = console(data.path(), &[]);
    s.screen.wait_for("tasks 2/2");
    s.screen.wait_for("✖ 2 failed/1h");
    s.send(b"  ");
    s.screen.wait_for("✓ 2 marked");
    s.send(b"r");
    s.screen.wait_for("Retry 2 marked task(s)");
    s.send(b"y");
    s.screen.wait_for("retried 2 of 2:");
    s.quit();
}

/// `--read-only` and a viewer's token: the header says so, the key bar offers nothing that
/// changes a task, and such a key only says why it is off.
#[test]
fn read_only_consoles_offer_and_take_no_change() {
    let data = tempfile::tempdir().unwrap();
    let viewer = customer_success_token(data.path(), "vic", "viewer");
    let mut s = console(data.path(), &["--token", &viewer]);
    s.screen.wait_for("vic (viewer, customer_success)  read-only");
    s.send(b"n");
    s.screen
        .wait_for("read-only: `n` (new task) changes tasks and is off for a viewer");
    s.quit();
    let mut s = console(data.path(), &["--read-only"]);
    s.screen.wait_for("read-only");
    s.send(b"c");
    s.screen.wait_for("is off (--read-only)");
    assert!(
        !s.screen.text().contains("press n to start"),
        "{}",
        s.screen.text()
    );
    s.quit();
}

#[test]
fn a_manager_approves_a_refund_from_the_inbox() {
    let data = tempfile::tempdir().unwrap();
    let token = |sub: &str, role: &str| customer_success_token(data.path(), sub, role);
    let (agent, manager) = (token("priya", "agent"), token("jane", "manager"));
    let context = r#"{"ticket_id":"TICKET-98765","customer_id":"CUST-54321","refund_amount":12000,"refund_reason":"Product defect","customer_email":"customer@example.com","payment_id":"pay_987654321"}"#;
    submit_refund(data.path(), &agent, context);

    let mut s = console(data.path(), &["--token", &manager]);
    s.screen.wait_for("jane (manager, customer_success)");
    s.screen.wait_for("‖ 1 approval");
    s.send(b":approvals\r");
    s.screen.wait_for("approvals ‖ 1 waiting");
    s.screen.wait_for("press a to approve, d to deny");
    s.send(b"a");
    s.screen.wait_for("approval note (optional)");
    s.send(b"defect confirmed\r");
    s.screen.wait_for("Approve: Refund $120.00 on TICKET-98765");
    s.send(b"y");
    s.screen.wait_for("approved get_manager_approval");
    s.send(b"\x1b");
    s.screen.wait_for("tasks 2/2");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = s.screen.text();
        let complete = |wf: &str| text.lines().any(|l| l.contains(wf) && l.contains("✔ complete"));
        if complete("customer_success/process_refund@1.3.0") && complete("payments/process_refund@2.1.0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refund and its payments child did not complete:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s.quit();
}

impl Session {
    /// Sends `signal` to the console and checks that it exits and gives the terminal back.
    fn stop_with(mut self, signal: i32) {
        let pid = self.child.process_id().expect("a running child") as i32;
        // SAFETY: kill only sends a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "taskdeck did not exit on signal {signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        let parser = self.screen.parser.lock().unwrap();
        assert!(
            !parser.screen().alternate_screen(),
            "signal {signal}: left the alternate screen"
        );
        assert!(
            !parser.screen().hide_cursor(),
            "signal {signal}: the cursor is visible again"
        );
    }
}

#[test]
fn sigterm_and_sighup_restore_the_terminal_and_a_recording_keeps_resizes_and_its_ending() {
    for signal in [libc::SIGTERM, libc::SIGHUP] {
        let data = tempfile::tempdir().unwrap();
        let cast = data.path().join("session.cast");
        let s = console(data.path(), &["--record", cast.to_str().unwrap()]);
        s.screen.wait_for("tasks 0/0");
        s._master
            .resize(PtySize {
                rows: 30,
                cols: 100,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        s.stop_with(signal);
        let text = std::fs::read_to_string(&cast).unwrap();
        let events: Vec<serde_json::Value> = text
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(
            events.iter().any(|e| e[1] == "r" && e[2] == "100x30"),
            "the resize is in the recording"
        );
        let output: String = events
            .iter()
            .filter(|e| e[1] == "o")
            .map(|e| e[2].as_str().unwrap())
            .collect();
        let entered = output.rfind("\x1b[?1049h").unwrap();
        let left = output
            .rfind("\x1b[?1049l")
            .expect("the recording leaves the alternate screen");
        assert!(left > entered, "the recording ends outside the alternate screen");
    }
}

/// A server process killed when the test ends, even when an assertion fails first.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 9's story: an agent and a manager, each in their own console, against one
/// `taskdeck serve`. The agent submits a refund above the approval threshold from the form;
/// the manager's inbox shows it within a second; the manager approves; both consoles see the
/// customer-success task and its payments child complete. Then the server is killed and
/// restarted: the console shows it lost the connection, and resumes.
#[test]
fn two_consoles_share_one_server() {
    let data = tempfile::tempdir().unwrap();
    let token = |sub: &str, role: &str| customer_success_token(data.path(), sub, role);
    let (agent, manager) = (token("priya", "agent"), token("jane", "manager"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let serve = |data: &std::path::Path| {
        let _ = std::fs::remove_file(data.join("server.json"));
        let child = Reaped(
            std::process::Command::new(env!("CARGO_BIN_EXE_taskdeck"))
                .arg("--data")
                .arg(data)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !data.join("server.json").exists() {
            assert!(Instant::now() < deadline, "serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    };
    let mut server = serve(data.path());

    let mut priya = console(data.path(), &["--token", &agent]);
    let mut jane = console(data.path(), &["--token", &manager]);
    priya.screen.wait_for("priya (operator, customer_success)");
    priya.screen.wait_for(&format!("→ http://127.0.0.1:{port}"));
    jane.screen.wait_for("jane (manager, customer_success)");
    jane.send(b":approvals\r");
    jane.screen.wait_for("approvals ‖ 0 waiting");

    priya.send(b"n");
    priya.screen.wait_for("new task");
    priya.send(b"customer_success/process");
    priya.screen.wait_for("customer_success/process_refund@1.3.0");
    priya.send(b"\r");
    priya.screen.wait_for("Ctrl-S submits");
    priya.send(b"\x13");
    priya.screen.wait_for("‖ get_manager_");

    // The manager's inbox, live (events by subscription), within a second.
    let asked = Instant::now();
    jane.screen.wait_for("approvals ‖ 1 waiting");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "took {:?}",
        asked.elapsed()
    );
    jane.send(b"a");
    jane.screen.wait_for("approval note (optional)");
    jane.send(b"photos checked\r");
    jane.screen.wait_for("Approve: Refund $120.00 on TICKET-98765");
    jane.send(b"y");
    jane.screen.wait_for("approved get_manager_approval");
    jane.send(b"\x1b");

    priya.send(b"\x1b");
    for s in [&priya, &jane] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = s.screen.text();
            let complete = |wf: &str| text.lines().any(|l| l.contains(wf) && l.contains("✔ complete"));
            if complete("customer_success/process_refund@1.3.0") && complete("payments/process_refund@2.1.0")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "both tasks complete on every console:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // The server goes away: a banner; it comes back: the banner goes, and new work shows.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    jane.screen.wait_for("disconnected, reconnecting");
    let mut server = serve(data.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    while jane.screen.text().contains("disconnected") {
        assert!(Instant::now() < deadline, "reconnected:\n{}", jane.screen.text());
        std::thread::sleep(Duration::from_millis(100));
    }
    submit_refund(
        data.path(),
        &agent,
        r#"{"ticket_id":"TICKET-2","customer_id":"CUST-2","refund_amount":25000,"refund_reason":"Late delivery","customer_email":"c2@example.com","payment_id":"pay_2"}"#,
    );
    jane.screen.wait_for("tasks 3/3");
    priya.quit();
    jane.quit();
    unsafe {
        libc::kill(server.0.id() as i32, libc::SIGTERM);
    }
    assert!(server.0.wait().unwrap().success());
}

/// A refund under the approval threshold runs to the end and delegates to payments: the
/// operator opens it, reads its context (`i`) and history (`h`), focuses the step pane (Tab),
/// follows the child link into the payments task (Enter), and comes back (Esc).
#[test]
fn a_refund_is_inspected_and_its_payments_child_followed_and_back() {
    let data = tempfile::tempdir().unwrap();
    let context = r#"{"ticket_id":"TICKET-4242","customer_id":"CUST-1","refund_amount":5000,"refund_reason":"Product defect","customer_email":"c@example.com","payment_id":"pay_1"}"#;
    let out = taskdeck(
        data.path(),
        &[
            "submit",
            "customer_success/process_refund",
            "--context",
            context,
            "--wait",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut s = console(data.path(), &[]);
    s.screen.wait_for("tasks 2/2");
    s.send(b"/customer_success");
    s.send(b"\r");
    s.screen.wait_for("tasks 1/2");
    s.send(b"\r");
    s.screen.wait_for("customer_success/process_refund@1.3.0");
    s.send(b"i");
    s.screen.wait_for("context of");
    s.screen.wait_for("TICKET-4242");
    s.send(b"\x1b");
    s.send(b"h");
    s.screen.wait_for("history of");
    s.screen.wait_for("task  pending → in_progress");
    s.send(b"\x1b");
    s.send(b"\t");
    s.screen.wait_for("j/k scroll · Enter opens a link");
    s.send(b"\r");
    s.screen.wait_for("payments/process_refund@");
    s.screen.wait_for("parent   task");
    s.send(b"\x1b");
    s.screen.wait_for("task ");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s
        .screen
        .text()
        .contains("· customer_success/process_refund@1.3.0 ·")
    {
        assert!(
            Instant::now() < deadline,
            "Esc went back to the refund:\n{}",
            s.screen.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s.quit();
}

/// Two refunds wait for a manager: she marks both in the inbox and denies them with one
/// reason and one confirmation, and hears how each went. Then she finds one of them by its
/// ticket id with `/` and Enter (a search of the store).
#[test]
fn a_manager_denies_two_marked_requests_at_once_and_finds_one_by_its_ticket() {
    let data = tempfile::tempdir().unwrap();
    let token = |sub: &str, role: &str| customer_success_token(data.path(), sub, role);
    let (agent, manager) = (token("priya", "agent"), token("jane", "manager"));
    for ticket in ["TICKET-5001", "TICKET-5002"] {
        let context = format!(
            r#"{{"ticket_id":"{ticket}","customer_id":"CUST-1","refund_amount":12000,"refund_reason":"Product defect","customer_email":"customer@example.com","payment_id":"pay_1"}}"#
        );
        submit_refund(data.path(), &agent, &context);
    }
    let mut s = console(data.path(), &["--token", &manager]);
    s.screen.wait_for("‖ 2 approval");
    s.send(b":approvals\r");
    s.screen.wait_for("approvals ‖ 2 waiting");
    s.send(b"  ");
    s.screen.wait_for("2 marked (a, d decide them)");
    s.send(b"d");
    s.screen
        .wait_for("reason for the denials (required) for all 2 marked");
    s.send(b"duplicate tickets\r");
    s.screen.wait_for("Deny 2 marked request(s)");
    s.send(b"y");
    s.screen.wait_for("denied 2 of 2:");
    s.send(b"\x1b");
    s.send(b"/TICKET-5002\r");
    s.screen.wait_for("search “TICKET-5002” · 1 found in the store");
    s.screen.wait_for("✖ error");
    s.quit();
}
