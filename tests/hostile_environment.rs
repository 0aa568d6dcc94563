//! Never panic, never hang, on any input or environment (issue 8, items 5 and 6): output to a
//! closed pipe or a full disk, an unwritable log folder, symlink loops and FIFOs among
//! workflow files, oversized contexts, a symlinked pid file, a deleted or damaged store; and
//! the data directory is private to its user.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_taskdeck"));
    c.arg("--data").arg(data);
    c
}

/// Runs to completion within 20 s (a hang fails the test instead of the suite).
fn finish(mut command: Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("the command hung: {command:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn run(data: &Path, args: &[&str]) -> Output {
    let mut c = bin(data);
    c.args(args);
    finish(c)
}

/// Submits the demo release pipeline with a valid context.
fn submit_pipeline(data: &Path) -> Output {
    run(
        data,
        &[
            "submit",
            "demo/release_pipeline",
            "--context",
            r#"{"service":"a","git_ref":"b"}"#,
        ],
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn no_panic(out: &Output) {
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
}

#[test]
fn an_unwritable_log_folder_costs_a_warning_not_the_command() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("logs"), "not a folder").unwrap();
    let out = run(data.path(), &["tasks"]);
    no_panic(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("running without a log file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_full_disk_is_reported() {
    let data = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let out = submit_pipeline(data.path());
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for args in [&["workflows"][..], &["tasks"], &["tasks", "--json"]] {
        let mut child = bin(data.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader went away, as `| head -0` does
        let out = child.wait_with_output().unwrap();
        no_panic(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let mut c = bin(data.path());
    c.arg("tasks").stdout(full).stderr(Stdio::piped());
    let out = c.output().unwrap();
    no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot write the output: No space left on device"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_survives_symlink_loops_fifos_and_oversized_files() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("sub"), dir.path().join("sub-link")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("sub").join("up")).unwrap();
    let fifo = dir.path().join("x.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    std::fs::write(dir.path().join("big.yaml"), vec![b'#'; 2 << 20]).unwrap();
    let out = run(data.path(), &["validate", dir.path().to_str().unwrap()]);
    no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("x.yaml: not a regular file"), "{text}");
    assert!(
        text.contains("big.yaml: the file is 2097152 bytes; a workflow file may have at most 1048576"),
        "{text}"
    );
}

#[test]
fn a_deeply_nested_workflow_is_refused_quickly() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("deep.yaml");
    std::fs::write(
        &file,
        format!("namespace: {}{}\n", "[".repeat(40_000), "]".repeat(40_000)),
    )
    .unwrap();
    let out = run(data.path(), &["validate", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("deep.yaml:1:44: collections nested deeper than 32 levels"),
        "{text}"
    );
}

#[test]
fn an_oversized_context_is_refused_with_the_limit() {
    let data = tempfile::tempdir().unwrap();
    let context = format!(
        r#"{{"service":"a","git_ref":"b","pad":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    let file = data.path().join("big.json");
    std::fs::write(&file, &context).unwrap();
    let out = run(
        data.path(),
        &[
            "submit",
            "demo/release_pipeline",
            "--context-file",
            file.to_str().unwrap(),
        ],
    );
    no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("larger than the 1048576-byte limit on task contexts (--max-context-bytes)"),
        "{}",
        stderr(&out)
    );
    let small = run(
        data.path(),
        &[
            "--max-context-bytes",
            "20",
            "submit",
            "demo/release_pipeline",
            "--context",
            r#"{"service":"a","git_ref":"b"}"#,
        ],
    );
    assert_eq!(small.status.code(), Some(1));
    assert!(
        stderr(&small).contains("--max-context-bytes"),
        "{}",
        stderr(&small)
    );
}

#[test]
fn the_pid_file_is_replaced_not_followed() {
    let data = tempfile::tempdir().unwrap();
    let victim = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(victim.path(), "precious").unwrap();
    std::os::unix::fs::symlink(victim.path(), data.path().join("taskdeck.pid")).unwrap();
    let out = run(data.path(), &["tasks"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(victim.path()).unwrap(), "precious");
    let pid = std::fs::symlink_metadata(data.path().join("taskdeck.pid")).unwrap();
    assert!(pid.is_file());
}

#[test]
fn a_deleted_store_is_an_error_not_a_fresh_start_and_a_damaged_one_says_what_to_do() {
    let data = tempfile::tempdir().unwrap();
    let out = submit_pipeline(data.path());
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_dir_all(data.path().join("store")).unwrap();
    let out = run(data.path(), &["tasks"]);
    no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is missing, but this data directory had one"),
        "{}",
        stderr(&out)
    );
    assert!(
        !data.path().join("store").exists(),
        "nothing was created in its place"
    );

    let other = tempfile::tempdir().unwrap();
    let out = run(other.path(), &["tasks"]);
    assert!(out.status.success());
    let db = other.path().join("store").join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().skip(16) {
        *b ^= 0x5a;
    }
    std::fs::write(&db, bytes).unwrap();
    let out = run(other.path(), &["tasks"]);
    no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: cannot open the store "), "{err}");
}

#[test]
fn the_data_directory_and_its_files_are_private() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("fresh");
    let out = submit_pipeline(&data);
    assert!(out.status.success(), "{}", stderr(&out));
    let _ = run(
        &data,
        &[
            "token", "issue", "--sub", "a", "--team", "demo", "--role", "operator",
        ],
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut checked = 0;
    let mut stack = vec![data.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let m = mode(&path);
            assert_eq!(m & 0o077, 0, "{} is {m:o}", path.display());
            checked += 1;
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    assert!(checked > 5);
}

#[test]
fn json_too_deep_for_the_store_is_refused_at_the_door_and_one_bad_record_hides_nothing() {
    let data = tempfile::tempdir().unwrap();
    let deep = format!(
        r#"{{"service":"a","git_ref":"b","x":{}{}}}"#,
        "[".repeat(126),
        "]".repeat(126)
    );
    let out = run(
        data.path(),
        &["submit", "demo/release_pipeline", "--context", &deep],
    );
    no_panic(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("context: nested 126 levels deep; at most 64 are accepted"),
        "{}",
        stderr(&out)
    );
    let ok = submit_pipeline(data.path());
    assert!(ok.status.success());
    let id = String::from_utf8_lossy(&ok.stdout).trim().to_string();
    let results = format!("{}{}", "[".repeat(127), "]".repeat(127));
    let out = run(data.path(), &["resolve", &id, "build", "--results", &results]);
    assert!(
        stderr(&out).contains("results: nested 126 levels deep"),
        "{}",
        stderr(&out)
    );
    let listed = run(data.path(), &["tasks"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
}

#[test]
fn a_planted_pid_file_is_neither_followed_nor_waited_on_when_the_store_is_busy() {
    use taskdeck::store::{Durability, SledStore};
    let data = tempfile::tempdir().unwrap();
    let _held = SledStore::open(data.path(), Durability::Immediate, "test").unwrap();
    let pid = data.path().join("taskdeck.pid");
    for plant in ["fifo", "environ"] {
        std::fs::remove_file(&pid).unwrap();
        if plant == "fifo" {
            assert!(Command::new("mkfifo").arg(&pid).status().unwrap().success());
        } else {
            std::os::unix::fs::symlink("/proc/self/environ", &pid).unwrap();
        }
        let mut c = bin(data.path());
        c.arg("tasks").env("TASKDECK_SECRET_CANARY", "canary-7f3a");
        let out = finish(c);
        no_panic(&out);
        assert_eq!(out.status.code(), Some(1), "{plant}");
        assert!(
            stderr(&out).contains("in use by another taskdeck process"),
            "{plant}: {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("canary-7f3a"),
            "{plant}: the environment leaked"
        );
    }
}

#[test]
fn control_characters_from_contexts_never_reach_the_terminal_raw() {
    let data = tempfile::tempdir().unwrap();
    // An agent's refund reason that would retitle and clear the manager's terminal.
    let context = r#"{"ticket_id":"T-1","customer_id":"C-1","refund_amount":12000,"customer_email":"a@example.com","payment_id":"pay_1","refund_reason":"\u001b]0;PWNED\u0007\u001b[2JAPPROVED BY CFO\n0bad0bad  fake/row@1.0.0  get_manager_approval  $5.00  requested by bob"}"#;
    let out = run(
        data.path(),
        &["submit", "customer_success/process_refund", "--context", context],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(data.path(), &["run", "--until-idle"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = run(data.path(), &["approvals"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("APPROVED BY CFO"), "{text}");
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text:?}");
    assert!(text.contains("\\u{1b}]0;PWNED"), "{text}");
    assert_eq!(
        text.lines().count(),
        1,
        "a newline in the reason forges no row: {text}"
    );
    let json = run(data.path(), &["approvals", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        v[0]["request"]["summary"]
            .as_str()
            .unwrap()
            .contains("\u{1b}]0;PWNED"),
        "JSON keeps the data exact"
    );
}

#[test]
fn checking_workflows_creates_no_data_directory() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("never");
    for args in [&["validate"][..], &["workflows"]] {
        let out = run(&data, args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert!(!data.exists());
}

#[test]
fn planted_files_in_the_data_directory_are_refused_not_followed_or_waited_on() {
    let data = tempfile::tempdir().unwrap();
    let issue = || {
        run(
            data.path(),
            &[
                "token", "issue", "--sub", "a", "--team", "t", "--role", "operator",
            ],
        )
    };
    let out = issue();
    assert!(out.status.success());
    let key = data.path().join("auth").join("jwt.key");
    // A key pointed at a world-readable file would let anyone sign.
    let public = data.path().join("public");
    std::fs::write(&public, [7u8; 64]).unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::remove_file(&key).unwrap();
    std::os::unix::fs::symlink(&public, &key).unwrap();
    let out = issue();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    std::fs::remove_file(&key).unwrap();
    std::fs::copy(&public, &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = issue();
    assert!(
        stderr(&out).contains("readable by its owner only"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&key).unwrap();
    assert!(Command::new("mkfifo").arg(&key).status().unwrap().success());
    let out = issue();
    assert!(stderr(&out).contains("not a regular file"), "{}", stderr(&out));

    // A key someone made readable to others, in a data directory with a store: refused, not
    // quietly made private again and used.
    std::fs::remove_file(&key).unwrap();
    assert!(issue().status.success());
    assert!(submit_pipeline(data.path()).status.success());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = issue();
    assert!(
        stderr(&out).contains("readable by its owner only"),
        "{}",
        stderr(&out)
    );

    // The store's marker and the log file as FIFOs: no command waits on them.
    let other = tempfile::tempdir().unwrap();
    assert!(run(other.path(), &["tasks"]).status.success());
    let marker = other.path().join("store.marker");
    std::fs::remove_file(&marker).unwrap();
    assert!(Command::new("mkfifo").arg(&marker).status().unwrap().success());
    let out = run(other.path(), &["tasks"]);
    no_panic(&out);
    let logs = other.path().join("logs");
    for entry in std::fs::read_dir(&logs).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    assert!(Command::new("mkfifo")
        .arg(logs.join("taskdeck.log"))
        .status()
        .unwrap()
        .success());
    let out = run(other.path(), &["workflows"]);
    assert!(out.status.success());
    let out = run(other.path(), &["tasks"]);
    no_panic(&out);
    assert!(
        stderr(&out).contains("is not a regular file; remove it to have logs again"),
        "{}",
        stderr(&out)
    );
}
