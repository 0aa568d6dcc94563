//! The shipped alert rules (`alerts/`): Prometheus's own tool checks them and runs their unit
//! tests (series that must fire each alert and series that must not), every metric they query
//! is one the registry exports, and every runbook they point at exists. promtool comes from
//! Debian's `prometheus` package (`.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

fn promtool(args: &[&str], cwd: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("promtool (Debian's `prometheus` package; .ci/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn promtool_accepts_every_rule_file_and_passes_their_unit_tests() {
    let rules = files(&root().join("alerts"), "yml");
    assert!(rules.len() >= 2, "{rules:?}");
    let mut args = vec!["check", "rules"];
    let names: Vec<String> = rules.iter().map(|p| p.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    promtool(&args, &root());

    let tests = files(&root().join("alerts/tests"), "yml");
    assert_eq!(
        tests.len(),
        rules.len(),
        "a unit test file per rule file: {tests:?}"
    );
    let mut args = vec!["test", "rules"];
    let names: Vec<String> = tests.iter().map(|p| p.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let out = promtool(&args, &root().join("alerts/tests"));
    assert!(!out.contains("FAILED"), "{out}");

    // Every alert has a unit test.
    for rule in &rules {
        let text = std::fs::read_to_string(rule).unwrap();
        let stem = rule.file_stem().unwrap().to_string_lossy();
        let test = std::fs::read_to_string(root().join(format!("alerts/tests/{stem}.test.yml"))).unwrap();
        for line in text.lines() {
            if let Some(alert) = line.trim().strip_prefix("- alert: ") {
                assert!(
                    test.contains(&format!("alertname: {alert}")),
                    "{alert} has no unit test in alerts/tests/{stem}.test.yml"
                );
            }
        }
    }
}

#[test]
fn rules_query_only_exported_metrics_and_point_at_runbooks_that_exist() {
    let exported = taskdeck::telemetry::metrics::series_names();
    for rule in files(&root().join("alerts"), "yml") {
        let text = std::fs::read_to_string(&rule).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let mut recorded = Vec::new();
        let mut exprs = Vec::new();
        for group in doc["groups"].as_sequence().unwrap() {
            for r in group["rules"].as_sequence().unwrap() {
                if let Some(name) = r["record"].as_str() {
                    recorded.push(name.to_string());
                }
                exprs.push(r["expr"].as_str().unwrap().to_string());
                if let Some(url) = r["annotations"]["runbook_url"].as_str() {
                    assert!(
                        root().join(url).is_file(),
                        "{}: runbook {url} is missing",
                        rule.display()
                    );
                }
            }
        }
        for expr in exprs {
            // Metric names: identifiers followed by `{`, `[` or used bare, minus PromQL's own words
            // and label names.
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
                let is_metric = word.starts_with("tasker_")
                    || word.starts_with("checkout_")
                    || word.starts_with("revenue_")
                    || word.starts_with("payments_")
                    || word.starts_with("payment_volume")
                    || word.starts_with("sla_")
                    || word.starts_with("tasker:");
                if !is_metric {
                    continue;
                }
                assert!(
                    exported.iter().any(|e| e == word) || recorded.iter().any(|r| r == word),
                    "{}: `{word}` is neither exported by the registry nor recorded by a rule",
                    rule.display()
                );
            }
        }
    }
}
