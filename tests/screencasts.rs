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
