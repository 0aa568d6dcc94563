//! Compiles the bundled `workflows/`, `scenarios/` and `themes/` folders into the binary, so `taskdeck`
//! finds them from any working directory.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, out);
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(path);
        }
    }
}

fn main() {
    bundle("workflows", "bundled_workflows.rs");
    bundle("scenarios", "bundled_scenarios.rs");
    bundle("themes", "bundled_themes.rs");
}

/// Writes `$OUT_DIR/<out>` with `FILES: &[(path, contents)]` for every YAML file in `folder`.
fn bundle(folder: &str, out: &str) {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let dir = root.join(folder);
    println!("cargo:rerun-if-changed={folder}");
    let mut files = Vec::new();
    collect(&dir, &mut files);
    let mut code = String::from("pub static FILES: &[(&str, &str)] = &[\n");
    for file in files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        code.push_str(&format!(
            "    ({rel:?}, include_str!({:?})),\n",
            file.to_string_lossy()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join(out);
    std::fs::write(out, code).unwrap();
}
