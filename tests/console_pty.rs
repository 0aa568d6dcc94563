//! The real binary in a pseudo-terminal (portable-pty + vt100): submit a workflow with the
//! `n` form, watch its DAG reach complete, retry a failed task with `r`, quit with `q`, and
//! find the terminal restored.

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

#[test]
fn a_session_in_a_real_terminal() {
    let data = tempfile::tempdir().unwrap();
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
    cmd.arg(data.path());
    cmd.arg("--workflows");
    cmd.arg(format!("{}/tests/fixtures/workflows", env!("CARGO_MANIFEST_DIR")));
    cmd.env("TERM", "xterm-256color");
    cmd.env("USER", "sarah");
    let mut child = pty.slave.spawn_command(cmd).unwrap();
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
    let mut keys = pty.master.take_writer().unwrap();
    let mut send = |bytes: &[u8]| {
        keys.write_all(bytes).unwrap();
        keys.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    };

    screen.wait_for("tasks 0/0");
    screen.wait_for("sarah (admin, no token)");

    // Submit the demo pipeline through the form; the console opens its DAG.
    send(b"n");
    screen.wait_for("new task");
    send(b"release");
    screen.wait_for("demo/release_pipeline@1.0.0");
    send(b"\r");
    screen.wait_for("Ctrl-S submits");
    send(b"\x13");
    // The task view opens at once and its DAG moves to complete (about 2 s of work).
    screen.wait_for("task ");
    screen.wait_for("demo/release_pipeline@1.0.0 · ✔ complete");
    let done = screen.text();
    assert!(done.contains("✔ publish"), "{done}");
    assert!(
        done.contains("2/3 done"),
        "the flaky step shows its second attempt:\n{done}"
    );

    // A task that fails, then succeeds when retried with `r`.
    send(b"\x1b");
    screen.wait_for("tasks 1/1");
    send(b"n");
    send(b"fails");
    screen.wait_for("crash/fails@1.0.0");
    send(b"\r");
    screen.wait_for("Ctrl-S submits");
    send(b"\x13");
    screen.wait_for("crash/fails@1.0.0 · ✖ error");
    screen.wait_for("UPSTREAM_DOWN");
    send(b"r");
    screen.wait_for("crash/fails@1.0.0 · ✔ complete");

    send(b"q");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "taskdeck did not exit after q");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(200));
    let parser = screen.parser.lock().unwrap();
    assert!(!parser.screen().alternate_screen(), "left the alternate screen");
    assert!(!parser.screen().hide_cursor(), "the cursor is visible again");
    let raw = screen.raw.lock().unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("\x1b[?1049h") && text.contains("\x1b[?1049l"));
}
