//! The shipped alert rules (`alerts/`) and Grafana dashboards (`dashboards/`): Prometheus's own
//! tool checks the rules and runs their unit tests (series that must fire each alert and series
//! that must not), and parses every dashboard query; every metric a rule or panel queries is one
//! the registry exports; every runbook a rule points at exists. promtool comes from Debian's
//! `prometheus` package (`.ci/run` installs it).

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
            for word in metric_words(&expr) {
                assert!(
                    exported.contains(&word) || recorded.contains(&word),
                    "{}: `{word}` is neither exported by the registry nor recorded by a rule",
                    rule.display()
                );
            }
        }
    }
}

/// The metric names in a PromQL expression: words with one of our metrics' prefixes, once
/// label matchers (`{…}`) and label lists (`by (…)`, `on (…)`, …) are taken out.
fn metric_words(expr: &str) -> Vec<String> {
    let mut text = String::new();
    let mut braces = 0usize;
    for c in expr.chars() {
        match c {
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            _ if braces == 0 => text.push(c),
            _ => {}
        }
    }
    for keyword in ["by", "without", "on", "ignoring", "group_left", "group_right"] {
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(keyword) {
            let before_ok = rest[..at]
                .chars()
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            let after = rest[at + keyword.len()..].trim_start();
            if before_ok && after.starts_with('(') {
                out.push_str(&rest[..at]);
                let close = after.find(')').map_or(after.len(), |i| i + 1);
                rest = &after[close..];
            } else {
                out.push_str(&rest[..at + keyword.len()]);
                rest = &rest[at + keyword.len()..];
            }
        }
        out.push_str(rest);
        text = out;
    }
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| {
            [
                "tasker_",
                "tasker:",
                "checkout_",
                "revenue_",
                "payments_",
                "payment_volume",
                "sla_",
            ]
            .iter()
            .any(|p| w.starts_with(p))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn dashboards_are_grafana_documents_whose_queries_parse_and_use_exported_metrics() {
    let exported = taskdeck::telemetry::metrics::series_names();
    let dashboards = files(&root().join("dashboards"), "json");
    assert!(dashboards.len() >= 2, "{dashboards:?}");
    let mut rules = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    let mut titles = Vec::new();
    for file in &dashboards {
        let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for key in ["uid", "title"] {
            assert!(
                d[key].as_str().is_some_and(|s| !s.is_empty()),
                "{}: {key}",
                file.display()
            );
        }
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 36,
            "{}: a schema current Grafana imports",
            file.display()
        );
        assert_eq!(d["templating"]["list"][0]["type"], "datasource");
        let panels = d["panels"].as_array().unwrap();
        assert!(!panels.is_empty());
        let mut ids = std::collections::HashSet::new();
        for p in panels {
            let title = p["title"].as_str().unwrap();
            titles.push(title.to_string());
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{title}: duplicate panel id"
            );
            for key in ["x", "y", "w", "h"] {
                assert!(p["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
            }
            assert!(
                ["stat", "timeseries", "heatmap", "table"].contains(&p["type"].as_str().unwrap()),
                "{title}"
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{title}: no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
                let expr = t["expr"].as_str().unwrap();
                for word in metric_words(expr) {
                    assert!(exported.contains(&word), "{title}: `{word}` is not exported");
                }
                // promtool parses PromQL offline through a recording rule.
                rules.push_str(&format!(
                    "      - record: dashboard:query_{}\n        expr: {}\n",
                    rules.matches("record:").count(),
                    serde_json::to_string(expr).unwrap()
                ));
            }
        }
    }
    // Post 05's four panels.
    for title in [
        "Workflow Success Rate by Namespace",
        "Revenue Impact of Failed Workflows",
        "Workflow Execution Time Distribution",
        "Step Performance Bottlenecks",
    ] {
        assert!(titles.iter().any(|t| t == title), "{title} is missing");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("queries.yml");
    std::fs::write(&file, rules).unwrap();
    promtool(&["check", "rules", file.to_str().unwrap()], dir.path());
}
