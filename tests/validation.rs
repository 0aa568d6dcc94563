//! Workflow validation: every error names its file (and line, column or field) and says what
//! was expected. Also Tasker's key names, version resolution and `taskdeck validate`.

use std::process::Command;
use taskdeck::handlers::Registry;
use taskdeck::workflow::{Catalog, Source};

fn load(files: &[(&str, &str)]) -> Result<Catalog, Vec<String>> {
    let registry = Registry::builtin();
    let sources: Vec<Source> = files
        .iter()
        .map(|(file, text)| Source::Inline {
            file: file.to_string(),
            text: text.to_string(),
        })
        .collect();
    Catalog::load(&sources, &|h| registry.contains(h)).map_err(|e| e.iter().map(|e| e.to_string()).collect())
}

fn errors(text: &str) -> Vec<String> {
    load(&[("wf.yaml", text)]).expect_err("should be invalid")
}

const HEADER: &str = "namespace: ns\nname: wf\nversion: 1.0.0\n";

#[test]
fn unknown_keys_are_named_with_line_and_column() {
    let e = errors(&format!(
        "{HEADER}colour: blue\nsteps:\n  - {{ name: a, handler: simulate }}\n"
    ));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("wf.yaml:4:1: unknown field `colour`; expected one of namespace"),
        "{}",
        e[0]
    );
}

#[test]
fn every_unknown_key_is_reported_with_a_suggestion() {
    let e = errors(&format!(
        "{HEADER}descripton: x\nsteps:\n  - name: a\n    handler: simulate\n    retries: 3\n  - name: b\n    handler: simulate\n    depnds_on: [a]\n    retry: {{ limt: 2 }}\n"
    ));
    assert_eq!(
        e,
        [
            "wf.yaml:4:1: unknown field `descripton`; did you mean `description`?",
            "wf.yaml:8:5: steps[0]: unknown field `retries`; did you mean `retry`?",
            "wf.yaml:11:5: steps[1]: unknown field `depnds_on`; did you mean `depends_on`?",
            "wf.yaml:12:14: steps[1].retry: unknown field `limt`; did you mean `limit`?",
        ]
    );
}

#[test]
fn a_byte_order_mark_at_the_start_is_accepted() {
    let text = format!("\u{feff}{HEADER}steps:\n  - {{ name: a, handler: simulate }}\n");
    assert!(load(&[("bom.yaml", &text)]).is_ok());
}

#[test]
fn schema_errors_point_into_the_authors_schema() {
    let e = errors(&format!(
        "{HEADER}input_schema:\n  type: object\n  properties:\n    age: {{ type: integr }}\nsteps:\n  - {{ name: a, handler: simulate }}\n"
    ));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("wf.yaml: input_schema.properties.age.type: invalid JSON Schema"),
        "{}",
        e[0]
    );
}

#[test]
fn ten_thousand_steps_on_a_missing_parent_print_a_bounded_report() {
    let mut text = HEADER.to_string();
    text.push_str("steps:\n");
    for i in 0..10_000 {
        text.push_str(&format!(
            "  - {{ name: s{i}, handler: simulate, depends_on: [nope] }}\n"
        ));
    }
    let e = errors(&text);
    assert_eq!(e.len(), 10_000);
    let total: usize = e.iter().map(String::len).sum();
    assert!(total < 2_000_000, "{total} bytes");
    assert!(
        e[0].ends_with("steps are: s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 … and 9990 more"),
        "{}",
        e[0]
    );
}

#[test]
fn missing_fields_are_named() {
    let e = errors("namespace: ns\nversion: 1.0.0\nsteps: []\n");
    assert!(e[0].starts_with("wf.yaml:1:1: missing field `name`"), "{}", e[0]);
    let e = errors(&format!("{HEADER}steps:\n  - name: a\n"));
    assert!(e[0].contains("steps[0]: missing field `handler`"), "{}", e[0]);
}

#[test]
fn a_bad_semantic_version_is_explained() {
    let e = errors("namespace: ns\nname: wf\nversion: 1.0\nsteps:\n  - { name: a, handler: simulate }\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("wf.yaml: version: `1.0` is not a semantic version"),
        "{}",
        e[0]
    );
    assert!(e[0].contains("expected MAJOR.MINOR.PATCH"), "{}", e[0]);
}

#[test]
fn duplicate_step_names_are_reported() {
    let e = errors(&format!(
        "{HEADER}steps:\n  - {{ name: a, handler: simulate }}\n  - {{ name: a, handler: simulate }}\n"
    ));
    assert_eq!(
        e,
        ["wf.yaml: steps[1].name: duplicate step name `a` (also steps[0])"]
    );
}

#[test]
fn a_dependency_on_an_unknown_step_lists_the_steps() {
    let e = errors(&format!(
        "{HEADER}steps:\n  - {{ name: a, handler: simulate }}\n  - {{ name: b, handler: simulate, depends_on: [c] }}\n"
    ));
    assert_eq!(
        e,
        ["wf.yaml: steps[1] (b).depends_on: depends on unknown step `c`; steps are: a, b"]
    );
}

#[test]
fn cycles_are_printed_as_a_path() {
    let e = errors(&format!(
        "{HEADER}steps:\n  - {{ name: a, handler: simulate, depends_on: [b] }}\n  - {{ name: b, handler: simulate, depends_on: [a] }}\n  - {{ name: c, handler: simulate, depends_on: [a] }}\n"
    ));
    assert_eq!(e, ["wf.yaml: steps: dependency cycle: a -> b -> a"]);
}

#[test]
fn unregistered_handlers_are_named() {
    let e = errors(&format!(
        "{HEADER}steps:\n  - {{ name: a, handler: charge_card }}\n"
    ));
    assert_eq!(
        e,
        ["wf.yaml: steps[0] (a).handler: unregistered handler `charge_card`"]
    );
}

#[test]
fn an_invalid_input_schema_is_reported() {
    let e = errors(&format!(
        "{HEADER}input_schema:\n  type: objekt\nsteps:\n  - {{ name: a, handler: simulate }}\n"
    ));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("wf.yaml: input_schema"), "{}", e[0]);
    assert!(e[0].contains("invalid JSON Schema"), "{}", e[0]);
    assert!(e[0].contains("objekt"), "{}", e[0]);
}

#[test]
fn the_same_version_in_two_files_names_both() {
    let text = format!("{HEADER}steps:\n  - {{ name: a, handler: simulate }}\n");
    let e = load(&[("one.yaml", &text), ("two.yaml", &text)]).unwrap_err();
    assert_eq!(
        e,
        ["two.yaml: ns/wf@1.0.0 is defined twice: in one.yaml and in two.yaml"]
    );
}

#[test]
fn all_problems_of_a_file_are_reported_together() {
    let e = errors(&format!(
        "{HEADER}steps:\n  - {{ name: a, handler: nope }}\n  - {{ name: b, handler: simulate, depends_on: [zz] }}\n"
    ));
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn tasker_key_names_are_accepted() {
    let text = r#"
namespace_name: ecommerce
name: process_order
version: 1.0.0
schema:
  type: object
step_templates:
  - name: validate_cart
    handler_class: simulate
    default_retryable: true
    default_retry_limit: 3
  - name: process_payment
    handler_class: simulate
    depends_on_step: validate_cart
    default_retry_limit: 3
  - name: finish
    handler_class: simulate
    depends_on_steps: [validate_cart, process_payment]
    default_retryable: false
"#;
    let catalog = load(&[("order.yaml", text)]).unwrap();
    let wf = catalog.resolve("ecommerce/process_order").unwrap();
    let steps = &wf.template.steps;
    assert_eq!(steps[1].depends_on, ["validate_cart"]);
    assert_eq!(steps[2].depends_on, ["validate_cart", "process_payment"]);
    assert_eq!(steps[1].retry.limit, 3);
    assert!(!steps[2].retry.retryable);
    assert!(wf.template.input_schema.is_some());
}

#[test]
fn references_resolve_to_the_highest_or_the_exact_version() {
    let v = |ver: &str| {
        format!("namespace: ns\nname: wf\nversion: {ver}\nsteps:\n  - {{ name: a, handler: simulate }}\n")
    };
    let (a, b, c) = (v("1.2.0"), v("1.10.0"), v("1.9.3"));
    let catalog = load(&[("a.yaml", &a), ("b.yaml", &b), ("c.yaml", &c)]).unwrap();
    assert_eq!(
        catalog.resolve("ns/wf").unwrap().template.version.to_string(),
        "1.10.0"
    );
    assert_eq!(
        catalog
            .resolve("ns/wf@1.9.3")
            .unwrap()
            .template
            .version
            .to_string(),
        "1.9.3"
    );
    let err = catalog.resolve("ns/wf@2.0.0").unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown workflow `ns/wf@2.0.0`; available: ns/wf@1.2.0, ns/wf@1.9.3, ns/wf@1.10.0"
    );
    let err = catalog.resolve("wf").unwrap_err().to_string();
    assert!(err.contains("expected NAMESPACE/NAME"), "{err}");
}

#[test]
fn the_bundled_workflows_are_valid() {
    let registry = Registry::standard(std::sync::Arc::new(taskdeck::services::Services::new(false)));
    let catalog = Catalog::load(&[Source::Bundled], &|h| registry.contains(h)).unwrap();
    for reference in [
        "demo/release_pipeline@1.0.0",
        "ecommerce/process_order@1.0.0",
        "data_pipeline/customer_analytics@1.0.0",
        "microservices/user_registration@1.0.0",
    ] {
        assert!(catalog.resolve(reference).is_ok(), "{reference}");
    }
}

fn taskdeck(args: &[&str]) -> std::process::Output {
    let data = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data.path())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn validate_command_exits_1_with_one_error_per_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "namespace: ns\nname: wf\nversion: one\nsteps:\n  - { name: a, handler: nope, depends_on: [a] }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("good.yaml"),
        "namespace: ns\nname: ok\nversion: 1.0.0\nsteps:\n  - { name: a, handler: simulate }\n",
    )
    .unwrap();
    let out = taskdeck(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines.iter().all(|l| l.contains("bad.yaml: ")), "{stdout}");
    assert!(stdout.contains("`one` is not a semantic version"), "{stdout}");
    assert!(stdout.contains("unregistered handler `nope`"), "{stdout}");
    assert!(stdout.contains("dependency cycle: a -> a"), "{stdout}");

    let good = dir.path().join("good.yaml");
    let out = taskdeck(&["validate", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let out = taskdeck(&["validate"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "bundled catalog: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn namespace_manifests_are_validated_like_templates() {
    let wf = "namespace: pay\nname: refund\nversion: 1.0.0\nsteps:\n  - { name: a, handler: simulate }\n";
    let manifest = |body: &str| format!("namespace: pay\n{body}");
    let ok = manifest("grants:\n  - { workflow: refund, to: 'service:cs' }\n");
    assert!(load(&[("pay/refund.yaml", wf), ("pay/namespace.yaml", &ok)]).is_ok());

    let bad_grantee = manifest("grants:\n  - { workflow: refund, to: everyone }\n");
    let e = load(&[("pay/refund.yaml", wf), ("pay/namespace.yaml", &bad_grantee)]).unwrap_err();
    assert_eq!(e, ["pay/namespace.yaml: grants[0].to: `everyone` is not a grantee: expected service:TEAM, team:TEAM or user:NAME"]);

    let unknown = manifest("grants:\n  - { workflow: chargeback, to: 'team:cs' }\n");
    let e = load(&[("pay/refund.yaml", wf), ("pay/namespace.yaml", &unknown)]).unwrap_err();
    assert_eq!(
        e,
        ["pay/namespace.yaml: grants[0].workflow: namespace `pay` has no workflow `chargeback`"]
    );

    let typo = manifest("grant:\n  - { workflow: refund, to: 'team:cs' }\n");
    let e = load(&[("pay/refund.yaml", wf), ("pay/namespace.yaml", &typo)]).unwrap_err();
    assert!(
        e[0].starts_with("pay/namespace.yaml:2:1: unknown field `grant`"),
        "{}",
        e[0]
    );

    let e = load(&[
        ("pay/refund.yaml", wf),
        ("a/namespace.yaml", &ok),
        ("b/namespace.yaml", &ok),
    ])
    .unwrap_err();
    assert_eq!(
        e,
        ["b/namespace.yaml: namespace `pay` has a manifest already, in a/namespace.yaml"]
    );
}

#[test]
fn handler_config_deeper_than_the_store_can_keep_is_refused() {
    // Block style: flow collections stop at 32 levels already.
    let mut deep = String::new();
    for level in 0..70 {
        deep.push_str(&format!("\n{}k:", " ".repeat(6 + 2 * level)));
    }
    let e = errors(&format!(
        "{HEADER}steps:\n  - name: a\n    handler: simulate\n    handler_config:{deep} 1\n"
    ));
    assert!(
        e.iter()
            .any(|e| e.contains("steps[0] (a).handler_config: nested deeper than 64 levels")),
        "{e:?}"
    );
}
