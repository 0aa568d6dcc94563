//! Personal data at rest, with the real binary on a fresh data directory: after each bundled
//! workflow that takes personal data runs (and its finished tasks are archived), no email,
//! phone, name, address or card token of its context is anywhere in the store files, logs or
//! archives; an admin reads them back in clear, a viewer reads `[REDACTED]`.

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

fn taskdeck(data: &Path, args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_taskdeck"));
    cmd.arg("--data")
        .arg(data)
        .args(args)
        .env_remove("TASKDECK_MASTER_KEY_FILE");
    match token {
        Some(t) => cmd.env("TASKDECK_TOKEN", t),
        None => cmd.env_remove("TASKDECK_TOKEN"),
    };
    cmd.output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success() || out.status.code() == Some(2),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir`, except the simulated remote systems' own database (they stand
/// for a payment gateway and a mail provider, which keep what they are sent) and the keys.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "simulated" && name != "keys" {
                files(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The distinctive personal values each run uses (4-digit card endings are left out of the
/// grep: four digits turn up by chance in megabytes of binary store files).
const EMAIL: &str = "grep.me.7731@example.org";
const PHONE: &str = "+1-555-014-7731";
const NAME: &str = "Grepworthy Quill";
const ADDRESS: &str = "77 Sealed Lane";
const CARD_TOKEN: &str = "tok_visa_grep7731";
const REFUND_EMAIL: &str = "refund.7731@example.net";
const CUSTOMER: &str = "CUST-GREP-7731";
const FAILING_PAYMENT: &str = "pay_grepfails7731";
const CHECKOUT_CUSTOMER: &str = "CUST-CHECKOUT-7731";
const CHECKOUT_EMAIL: &str = "checkout.7731@example.com";

fn contexts() -> Vec<(&'static str, Value)> {
    vec![
        (
            "blog_examples/monitored_checkout",
            json!({
                "customer_id": CHECKOUT_CUSTOMER, "customer_email": CHECKOUT_EMAIL, "customer_tier": "premium",
                "cart_items": [{ "sku": "WIDGET-A", "price": 49.99, "quantity": 2 }],
                "payment_method": "credit_card", "order_value": 99.98
            }),
        ),
        (
            "ecommerce/process_order",
            json!({
                "customer_info": { "id": 7731, "email": EMAIL, "tier": "standard", "name": NAME, "phone": PHONE },
                "cart_items": [ { "product_id": 1, "quantity": 2, "price": 29.99, "name": "Widget A" } ],
                "payment_info": { "method": "credit_card", "amount": 59.98, "currency": "USD", "card_last_four": "7731", "token": CARD_TOKEN },
                "shipping_info": { "address": ADDRESS, "city": "Anytown", "state": "CA", "zip": "90210" }
            }),
        ),
        (
            "microservices/user_registration",
            json!({
                "user_info": { "email": EMAIL, "name": NAME, "phone": PHONE },
                "billing_info": { "plan": "pro", "payment_method": CARD_TOKEN },
                "preferences": { "marketing_emails": true }
            }),
        ),
        (
            "payments/process_refund",
            json!({
                "payment_id": "pay_grep7731", "refund_amount": 2500, "refund_reason": "customer_request",
                "customer_email": REFUND_EMAIL
            }),
        ),
        (
            "customer_success/process_refund",
            json!({
                "ticket_id": "TICKET-7731", "customer_id": CUSTOMER, "refund_amount": 12345,
                "refund_reason": "defective", "customer_email": REFUND_EMAIL, "payment_id": "pay_grep7731",
                "agent_notes": "customer called twice"
            }),
        ),
    ]
}

#[test]
fn no_personal_value_is_stored_logged_or_archived_in_clear() {
    let data = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    // A refund larger than its payment fails for good: its error (which names the payment
    // and the amount) is logged as a warning.
    let failing = (
        "payments/process_refund",
        json!({ "payment_id": FAILING_PAYMENT, "refund_amount": 99_999, "refund_reason": "customer_request", "customer_email": REFUND_EMAIL }),
    );
    for (workflow, context) in contexts().into_iter().chain([failing]) {
        let out = ok(taskdeck(
            data.path(),
            &[
                "submit",
                workflow,
                "--context",
                &context.to_string(),
                "--wait",
                "--json",
            ],
            None,
        ));
        let task: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{workflow}: {e}: {out}"));
        ids.push(task["id"].as_str().unwrap().to_string());
    }
    // An admin (the local user) reads the values back.
    let shown = ok(taskdeck(data.path(), &["show", &ids[1], "--json"], None)); // the order
    assert!(shown.contains(EMAIL) && shown.contains(CARD_TOKEN), "{shown}");
    // Finished tasks go to the archive.
    ok(taskdeck(data.path(), &["prune", "--before", "0s"], None));
    let archive = data.path().join("archive");
    assert!(archive.exists(), "prune archived nothing");

    let mut all = Vec::new();
    files(data.path(), &mut all);
    let logged: String = all
        .iter()
        .filter(|p| p.starts_with(data.path().join("logs")))
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect();
    assert!(
        logged.contains(
            "REFUND_EXCEEDS_PAYMENT: refund of [REDACTED] cents exceeds what remains of payment [REDACTED]"
        ),
        "the failed refund is logged, its values redacted: {logged}"
    );
    assert!(
        all.iter().any(|p| p.starts_with(data.path().join("logs"))),
        "no log was written"
    );
    for path in &all {
        let bytes = std::fs::read(path).unwrap();
        for needle in [
            EMAIL,
            PHONE,
            NAME,
            ADDRESS,
            CARD_TOKEN,
            REFUND_EMAIL,
            CUSTOMER,
            "pay_grep7731",
            FAILING_PAYMENT,
            "999.99",
        ] {
            assert!(!contains(&bytes, needle), "{needle} found in {}", path.display());
        }
    }
}

#[test]
fn a_viewer_reads_redacted_values_and_a_manager_reads_them() {
    let data = tempfile::tempdir().unwrap();
    let (workflow, context) = contexts().remove(4);
    let out = ok(taskdeck(
        data.path(),
        &[
            "submit",
            workflow,
            "--context",
            &context.to_string(),
            "--wait",
            "--json",
        ],
        None,
    ));
    let id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = |role: &str| {
        ok(taskdeck(
            data.path(),
            &[
                "token",
                "issue",
                "--sub",
                role,
                "--team",
                "customer_success",
                "--role",
                role,
            ],
            None,
        ))
        .trim()
        .to_string()
    };
    let agent = ok(taskdeck(
        data.path(),
        &["show", &id, "--json"],
        Some(&token("operator")),
    ));
    assert!(
        !agent.contains(REFUND_EMAIL) && !agent.contains(CUSTOMER),
        "{agent}"
    );
    assert!(agent.contains("[REDACTED]"), "{agent}");
    let shown: Value = serde_json::from_str(&agent).unwrap();
    assert_eq!(shown["context"]["customer_email"], "[REDACTED]", "{agent}");
    assert_eq!(
        shown["context"]["ticket_id"], "TICKET-7731",
        "what is not personal stays readable"
    );
    let manager = ok(taskdeck(
        data.path(),
        &["show", &id, "--json"],
        Some(&token("manager")),
    ));
    assert!(
        manager.contains(REFUND_EMAIL) && manager.contains(CUSTOMER),
        "{manager}"
    );
    // The approval request's amount is sealed too: the agent sees none, the manager sees it.
    let approvals = ok(taskdeck(
        data.path(),
        &["approvals", "--json"],
        Some(&token("operator")),
    ));
    assert!(
        approvals.contains("[REDACTED]") && !approvals.contains("12345") && !approvals.contains("123.45"),
        "{approvals}"
    );
    let approvals = ok(taskdeck(
        data.path(),
        &["approvals", "--json"],
        Some(&token("manager")),
    ));
    assert!(approvals.contains("12345"), "{approvals}");
}

#[test]
fn an_erased_subject_reads_erased_everywhere_and_the_journal_still_verifies() {
    let data = tempfile::tempdir().unwrap();
    let contexts = contexts();
    let submit = |i: usize| {
        let (workflow, context) = &contexts[i];
        let out = ok(taskdeck(
            data.path(),
            &[
                "submit",
                workflow,
                "--context",
                &context.to_string(),
                "--wait",
                "--json",
            ],
            None,
        ));
        serde_json::from_str::<Value>(&out).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let refund = submit(3); // payments: completes
    let waiting = submit(4); // customer success: waits for a manager, same customer email

    let export = ok(taskdeck(
        data.path(),
        &["gdpr", "export", "--subject", REFUND_EMAIL],
        None,
    ));
    let report: Value = serde_json::from_str(&export).unwrap();
    let tasks = report["data_found"]["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "both refunds are about the same person: {export}");
    assert!(export.contains(REFUND_EMAIL) && export.contains(CUSTOMER));
    assert_eq!(tasks[0]["legal_basis"], "contract_performance");
    assert_eq!(tasks[0]["retention_period"], "7_years");
    assert!(tasks.iter().all(|t| t["data_categories"]
        .as_array()
        .unwrap()
        .contains(&json!("contact"))));
    assert!(!report["data_found"]["audit_logs"].as_array().unwrap().is_empty());
    let subject = report["subject"]["id"].as_str().unwrap().to_string();

    // Not while a task of theirs is unfinished; nor by an operator.
    let refused = taskdeck(data.path(), &["gdpr", "erase", "--subject", REFUND_EMAIL], None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unfinished"));
    let operator = ok(taskdeck(
        data.path(),
        &[
            "token",
            "issue",
            "--sub",
            "priya",
            "--team",
            "customer_success",
            "--role",
            "operator",
        ],
        None,
    ));
    let denied = taskdeck(
        data.path(),
        &["gdpr", "export", "--subject", REFUND_EMAIL],
        Some(operator.trim()),
    );
    assert!(String::from_utf8_lossy(&denied.stderr).contains("gdpr:manage"));

    ok(taskdeck(data.path(), &["cancel", &waiting], None));
    ok(taskdeck(
        data.path(),
        &["gdpr", "erase", "--subject", REFUND_EMAIL],
        None,
    ));

    // Found by the subject id only now; every value of theirs reads [ERASED].
    let gone = taskdeck(data.path(), &["gdpr", "export", "--subject", REFUND_EMAIL], None);
    assert!(!gone.status.success());
    let shown = ok(taskdeck(data.path(), &["show", &refund, "--json"], None));
    assert!(
        !shown.contains(REFUND_EMAIL) && shown.contains("[ERASED]"),
        "{shown}"
    );
    // Retention moves both finished tasks to the archive, where the export still finds them.
    ok(taskdeck(data.path(), &["prune", "--before", "0s"], None));
    let export = ok(taskdeck(
        data.path(),
        &["gdpr", "export", "--subject", &subject],
        None,
    ));
    // Every value of the export, not its text: a hash's or an id's hex digits may spell "2500".
    let leaves = values_except_hashes(&serde_json::from_str(&export).unwrap());
    let numeric = |value: &str| value.chars().all(|c| c.is_ascii_digit() || c == '.');
    let tokens = |leaf: &str| -> Vec<String> {
        leaf.split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .map(|t| t.trim_matches('.').to_string())
            .collect()
    };
    for value in [
        REFUND_EMAIL,
        CUSTOMER,
        "pay_grep7731",
        "12345",
        "123.45",
        "2500",
        "25.00",
    ] {
        let found = leaves.iter().any(|leaf| {
            if numeric(value) {
                tokens(leaf).iter().any(|t| t == value)
            } else {
                leaf.contains(value)
            }
        });
        assert!(!found, "{value} in the export after erasure: {export}");
    }
    assert!(export.contains("[ERASED]"));
    let report: Value = serde_json::from_str(&export).unwrap();
    let tasks = report["data_found"]["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "archived tasks are exported too: {export}");
    assert!(tasks.iter().all(|t| t["archived"] == true), "{export}");

    let verify = ok(taskdeck(data.path(), &["audit", "verify"], None));
    assert!(verify.starts_with("intact"), "{verify}");
    let journal = ok(taskdeck(data.path(), &["audit", "export"], None));
    for action in ["gdpr.exported", "gdpr.erased", "authz.denied"] {
        assert!(journal.contains(action), "{action} not journaled");
    }
}

#[test]
fn a_master_key_others_may_read_is_refused_not_tightened() {
    let data = tempfile::tempdir().unwrap();
    let (workflow, context) = contexts().remove(3);
    ok(taskdeck(
        data.path(),
        &["submit", workflow, "--context", &context.to_string(), "--wait"],
        None,
    ));
    let key = data.path().join("keys/master.key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = taskdeck(data.path(), &["tasks"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("master.key"), "{err}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "left as found, for the owner to look into");
    // Gone: refused, and no new key is made over the sealed data.
    std::fs::remove_file(&key).unwrap();
    let out = taskdeck(data.path(), &["tasks"], None);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!key.exists());
}

/// Every string and number in `v` as text, but the journal's hashes and signatures, ids and
/// times (hex or counters whose digits may spell anything).
fn values_except_hashes(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Array(items) => items.iter().flat_map(values_except_hashes).collect(),
        Value::Object(fields) => fields
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "hash"
                        | "prev_hash"
                        | "signature"
                        | "head"
                        | "at"
                        | "seq"
                        | "transition"
                        | "resource"
                        | "id"
                        | "task_id"
                        | "parent"
                        | "idempotency_key"
                        | "origin_key"
                        | "traceparent"
                        | "subject"
                        | "subject_id"
                )
            })
            .flat_map(|(_, v)| values_except_hashes(v))
            .collect(),
        _ => Vec::new(),
    }
}
