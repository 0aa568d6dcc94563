//! Every shipped tape (`screencasts/*.tape`) plays to its end, its last frame matches its
//! snapshot, and playing it again gives the same recording byte for byte (issue 13, item 6).

use taskdeck::console::script;

#[test]
fn every_shipped_tape_plays_the_same_recording_twice_and_ends_on_its_snapshot() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("screencasts");
    let mut tapes: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tape"))
        .collect();
    tapes.sort();
    assert_eq!(tapes.len(), 6, "one tape per blog post, 01 to 06: {tapes:?}");
    for tape in tapes {
        let name = tape.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&tape).unwrap();
        let first = script::play(&text, &name).unwrap_or_else(|e| panic!("{e}"));
        let again = script::play(&text, &name).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            first.cast == again.cast,
            "{name}: a second play recorded something else"
        );
        // A valid asciicast v2: a header, then [time, "o"|"m", text] events in time order.
        let mut lines = first.cast.lines();
        let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(header["version"], 2);
        let mut last = 0.0;
        for line in lines {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            let at = event[0].as_f64().unwrap();
            assert!(at >= last, "{name}: time goes back at {line}");
            last = at;
            assert!(matches!(event[1].as_str(), Some("o" | "m")), "{line}");
        }
        insta::assert_snapshot!(format!("screencast_{name}"), first.last_frame);
    }
}

/// The recording never replaces its own tape (by any path) or something that is not a
/// regular file (a FIFO, a device): both are refused and left as they were.
#[cfg(unix)]
#[test]
fn the_recording_goes_only_where_a_regular_file_may_be_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let tape = dir.path().join("t.tape");
    std::fs::write(&tape, "Sleep 1s\n").unwrap();
    let run = |out: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_taskdeck"))
            .current_dir(dir.path())
            .args(["screencast", "t.tape", "-o", out])
            .output()
            .unwrap()
    };
    let itself = run("./t.tape");
    assert!(!itself.status.success());
    assert!(String::from_utf8_lossy(&itself.stderr).contains("would overwrite the tape"));
    assert_eq!(std::fs::read_to_string(&tape).unwrap(), "Sleep 1s\n");
    let fifo = dir.path().join("out.cast");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo only creates a FIFO at a path in our temporary directory.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let refused = run("out.cast");
    assert!(
        !refused.status.success(),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(),
        "left alone"
    );
    assert!(run("fine.cast").status.success());
}
