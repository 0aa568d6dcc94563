//! The audit trail on a real store: every transition journaled with its actor in the same
//! commit, the chain intact after a run, and each kind of tampering with the stored journal —
//! editing, deleting, reordering, truncating entries, forging the checkpoint — detected with
//! its reason; then the real binary's `audit verify` and `audit export`.

mod common;

use serde_json::json;
use std::process::Command;
use std::sync::Arc;
use taskdeck::audit::verify::verify_store;
use taskdeck::audit::{AuditEntry, Finding, SigningKey};
use taskdeck::services::Services;
use taskdeck::store::{Durability, SledStore, Store};

/// A refund approved by a manager, on a store kept open for tampering.
async fn journaled_run() -> (Arc<SledStore>, SigningKey) {
    let sled = Arc::new(SledStore::temporary(Durability::Immediate).unwrap());
    let store: Arc<dyn Store> = sled.clone();
    let h = common::start_blog(Arc::new(Services::new(false)), store.clone()).await;
    let task = common::refunds::submitted_and_approved(&h, 15_000).await;
    let task = store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(task.state, taskdeck::model::TaskState::Complete);
    h.engine.shutdown(std::time::Duration::ZERO).await;
    let key = SigningKey::from_seed([9; 32]);
    taskdeck::engine::checkpoint(&*store, &key, 1_000).await;
    (sled, key)
}

async fn check(
    store: &SledStore,
    key: &SigningKey,
) -> Result<taskdeck::audit::Verified, taskdeck::audit::Broken> {
    verify_store(store, Some(&key.verifying_key())).await.unwrap()
}

fn tree(store: &SledStore) -> sled::Tree {
    store.db().open_tree("audit").unwrap()
}

/// The journal's entries as stored (blocks flattened).
fn entries(tree: &sled::Tree) -> Vec<AuditEntry> {
    tree.iter()
        .values()
        .flat_map(|v| serde_json::from_slice::<Vec<AuditEntry>>(&v.unwrap()).unwrap())
        .collect()
}

/// Rewrites the journal's tree with `f` applied to its entries, one entry per block (what
/// someone editing the store file could do).
fn tamper(store: &SledStore, f: impl FnOnce(&mut Vec<AuditEntry>)) {
    let t = tree(store);
    let mut all = entries(&t);
    f(&mut all);
    t.clear().unwrap();
    for (i, e) in all.iter().enumerate() {
        t.insert(
            (i as u64 + 1).to_be_bytes(),
            serde_json::to_vec(&vec![e]).unwrap(),
        )
        .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn every_transition_is_journaled_with_its_actor_and_the_chain_verifies() {
    let (store, key) = journaled_run().await;
    let verified = check(&store, &key).await.unwrap();
    let mut transitions = 0;
    for t in taskdeck::store::all_tasks(&*store).await.unwrap() {
        transitions += store.transitions(&t.id).await.unwrap().len();
    }
    assert_eq!(verified.checkpoint, Some(verified.entries));
    let entries: Vec<AuditEntry> = store
        .audit_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.unwrap())
        .collect();
    let journaled = entries.iter().filter(|e| e.record.transition.is_some()).count();
    assert_eq!(journaled, transitions, "one entry per transition");
    // The engine's first start journaled every bundled version as deployed (change management).
    let deployed = entries
        .iter()
        .filter(|e| e.record.action == "workflow.deployed")
        .count();
    assert_eq!(deployed, 8, "every bundled workflow version");
    let grants = entries
        .iter()
        .filter(|e| e.record.action == "grants.changed")
        .count();
    assert_eq!(grants, 2, "the customer_success and payments manifests");
    // The manager's approval is there, with the manager as actor and tagged as evidence.
    let approval = entries
        .iter()
        .find(|e| e.record.detail.starts_with("awaiting_approval → complete"))
        .expect("the approval is journaled");
    assert_eq!(approval.record.actor, common::refunds::manager().sub);
    assert!(approval
        .record
        .compliance_tags
        .contains(&"SOC2:CC6.3".to_string()));
    assert_eq!(approval.record.namespace.as_deref(), Some("customer_success"));
    // The journal holds no personal data of the refund's context.
    let text = serde_json::to_string(&entries).unwrap();
    assert!(!text.contains("customer@example.com"), "no email in the journal");
}

#[tokio::test(start_paused = true)]
async fn each_kind_of_tampering_is_found_with_its_reason() {
    // Edited: content changed in place.
    let (store, key) = journaled_run().await;
    tamper(&store, |all| all[2].record.actor = "mallory".into());
    let b = check(&store, &key).await.unwrap_err();
    assert_eq!((b.seq, b.finding), (3, Finding::Edited), "{b:?}");

    // Deleted from the middle.
    let (store, key) = journaled_run().await;
    tamper(&store, |all| {
        let _ = all.remove(4);
    });
    let b = check(&store, &key).await.unwrap_err();
    assert_eq!((b.seq, b.finding), (5, Finding::Deleted), "{b:?}");

    // Reordered: two entries swap places.
    let (store, key) = journaled_run().await;
    tamper(&store, |all| all.swap(3, 4));
    let b = check(&store, &key).await.unwrap_err();
    assert_eq!((b.seq, b.finding), (4, Finding::Reordered), "{b:?}");

    // Truncated: the tail cut (what the signed checkpoint is for).
    let (store, key) = journaled_run().await;
    let last = store.audit_head().await.unwrap().0;
    tamper(&store, |all| all.truncate(all.len() - 3));
    let b = check(&store, &key).await.unwrap_err();
    assert_eq!((b.seq, b.finding), (last - 2, Finding::Truncated), "{b:?}");

    // Bad signature: a checkpoint re-signed by someone else's key to cover a cut tail.
    let (store, key) = journaled_run().await;
    let mut kept = Vec::new();
    tamper(&store, |all| {
        all.pop();
        kept = all.clone();
    });
    let before = kept.last().unwrap();
    let forged = SigningKey::from_seed([1; 32]).sign(before.seq, &before.hash, 2_000);
    store.put_audit_checkpoint(&forged).await.unwrap();
    let b = check(&store, &key).await.unwrap_err();
    assert_eq!(b.finding, Finding::BadSignature, "{b:?}");

    // Unreadable: a block that is not JSON.
    let (store, key) = journaled_run().await;
    tree(&store)
        .insert(2u64.to_be_bytes(), b"garbage".to_vec())
        .unwrap();
    assert_eq!(check(&store, &key).await.unwrap_err().finding, Finding::Edited);
}

#[tokio::test(start_paused = true)]
async fn entries_appended_apart_from_commits_continue_the_chain() {
    let (store, key) = journaled_run().await;
    let record = taskdeck::audit::AuditRecord {
        namespace: Some("payments".into()),
        outcome: "denied".into(),
        compliance_tags: vec!["SOC2:CC6.3".into()],
        ..taskdeck::audit::AuditRecord::new(
            5_000,
            "eve",
            "authz.denied",
            "task/x".into(),
            "eve (operator, ecommerce) cannot read namespace payments".into(),
        )
    };
    let written = store.append_audit(vec![record]).await.unwrap();
    assert_eq!(written[0].seq, store.audit_head().await.unwrap().0);
    let verified = check(&store, &key).await.unwrap();
    assert_eq!(
        verified.entries, written[0].seq,
        "intact, one entry past the checkpoint"
    );
}

fn taskdeck(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_binary_verifies_exports_and_names_a_tampered_entry() {
    let data = tempfile::tempdir().unwrap();
    let sample = format!("{}/samples/process_order.json", env!("CARGO_MANIFEST_DIR"));
    let out = taskdeck(
        data.path(),
        &["submit", "ecommerce/process_order", "--context-file", &sample],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = taskdeck(data.path(), &["run", "--until-idle", "--no-api"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = taskdeck(data.path(), &["audit", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("intact: "),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("signed checkpoint at entry"), "{text}");

    let out = taskdeck(data.path(), &["audit", "export", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.starts_with("seq,at,actor,action,resource"), "{csv}");
    assert!(csv.contains("step.transition"), "{csv}");
    let out = taskdeck(data.path(), &["audit", "export", "--from", "1d"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 10 && lines[0]["seq"] == json!(1), "{lines:?}");
    let out = taskdeck(data.path(), &["audit", "export", "--to", "2000-01-01"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "nothing before 2000");

    // Someone edits an entry in the store file's journal.
    {
        let db = sled::open(data.path().join("store")).unwrap();
        let t = db.open_tree("audit").unwrap();
        for item in t.iter() {
            let (k, v) = item.unwrap();
            let mut block: Vec<AuditEntry> = serde_json::from_slice(&v).unwrap();
            if let Some(e) = block.iter_mut().find(|e| e.seq == 7) {
                e.record.actor = "mallory".into();
                t.insert(k, serde_json::to_vec(&block).unwrap()).unwrap();
            }
        }
        db.flush().unwrap();
    }
    let out = taskdeck(data.path(), &["audit", "verify", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(report["intact"], json!(false));
    assert_eq!(
        (report["seq"].clone(), report["finding"].clone()),
        (json!(7), json!("edited"))
    );
    // Only an admin reads the trail.
    let token = String::from_utf8_lossy(
        &taskdeck(
            data.path(),
            &[
                "token",
                "issue",
                "--sub",
                "ann",
                "--team",
                "ecommerce",
                "--role",
                "operator",
            ],
        )
        .stdout,
    )
    .trim()
    .to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data.path())
        .args(["audit", "verify"])
        .env("TASKDECK_TOKEN", token)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not read the audit trail"));
}

#[tokio::test(start_paused = true)]
async fn a_refused_request_is_journaled_with_who_asked_what_and_why() {
    let store = common::temp_store();
    let h = common::start_blog(Arc::new(Services::new(false)), store.clone()).await;
    let engine = Arc::new(h.engine);
    let agent = taskdeck::client::Local::new(engine.clone(), common::refunds::agent());
    let task = taskdeck::client::Client::submit(
        &agent,
        taskdeck::client::NewTask {
            workflow: common::refunds::CS.into(),
            context: common::refunds::refund(15_000),
        },
    )
    .await
    .unwrap();
    engine.when_idle().await.unwrap();
    // The agent may not approve (a manager decides), nor submit in payments.
    let refused =
        taskdeck::client::Client::decide(&agent, &task.id, "get_manager_approval", true, None).await;
    assert!(refused.is_err());
    let refused = taskdeck::client::Client::submit(
        &agent,
        taskdeck::client::NewTask {
            workflow: "payments/process_refund".into(),
            context: json!({}),
        },
    )
    .await;
    assert!(refused.is_err());
    let denials: Vec<AuditEntry> = store
        .audit_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.record.action == "authz.denied")
        .collect();
    assert_eq!(denials.len(), 2, "{denials:?}");
    assert_eq!(denials[0].record.actor, "priya");
    assert_eq!(
        denials[0].record.resource,
        format!("task/{}/step/get_manager_approval", task.id)
    );
    assert!(
        denials[0].record.detail.starts_with("step.approve: "),
        "{}",
        denials[0].record.detail
    );
    assert_eq!(denials[1].record.namespace.as_deref(), Some("payments"));
    assert_eq!(denials[1].record.outcome, "denied");
    assert!(verify_store(&*store, None).await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_version_deployed_or_edited_is_journaled_once_at_start() {
    let store = common::temp_store();
    let yaml = |sleep: u32| {
        format!("namespace: shop\nname: wf\nversion: 1.0.0\nsteps:\n  - {{ name: a, handler: simulate, handler_config: {{ sleep_ms: {sleep} }} }}\n")
    };
    let actions = |entries: Vec<taskdeck::audit::verify::Stored>| -> Vec<String> {
        entries
            .into_iter()
            .filter_map(|e| e.ok())
            .map(|e| e.record.action)
            .collect()
    };
    let config = || taskdeck::engine::EngineConfig {
        operator: "release-bot".into(),
        ..common::config()
    };
    let registry = || taskdeck::handlers::Registry::builtin();
    let h = common::start_on(store.clone(), &[&yaml(1)], registry(), config()).await;
    h.engine.shutdown(std::time::Duration::ZERO).await;
    let first = store.audit_after(0, 100).await.unwrap();
    assert_eq!(actions(first.clone()), ["workflow.deployed", "policy.deployed"]);
    assert_eq!(first[0].as_ref().unwrap().record.actor, "release-bot");
    // The same catalog again: nothing new.
    let h = common::start_on(store.clone(), &[&yaml(1)], registry(), config()).await;
    h.engine.shutdown(std::time::Duration::ZERO).await;
    assert_eq!(store.audit_head().await.unwrap().0, 2);
    // Version 1.0.0's file edited in place: a released version changed.
    let h = common::start_on(store.clone(), &[&yaml(2)], registry(), config()).await;
    h.engine.shutdown(std::time::Duration::ZERO).await;
    assert_eq!(
        actions(store.audit_after(2, 100).await.unwrap()),
        ["workflow.changed"]
    );
}

/// Post 06's classification: a refund's context holds an amount and a payment id (financial),
/// so the task is restricted; a release holds nothing marked, so it is internal; a schema with
/// an unknown value is refused with its file and field.
#[tokio::test(start_paused = true)]
async fn tasks_are_classified_by_the_fields_their_context_holds() {
    let h = common::start_blog(Arc::new(Services::new(false)), common::temp_store()).await;
    let refund = h.submit(common::refunds::CS, common::refunds::refund(500)).await;
    assert_eq!(
        refund.classification,
        taskdeck::workflow::classification::Classification::Restricted
    );
    let release = h
        .submit(
            "demo/release_pipeline",
            json!({ "service": "api", "git_ref": "main" }),
        )
        .await;
    assert_eq!(
        release.classification,
        taskdeck::workflow::classification::Classification::Internal
    );
    // Stored with the task, and journaled with its transitions.
    h.engine.when_idle().await.unwrap();
    let stored = h.store.task(&refund.id).await.unwrap().unwrap();
    assert_eq!(stored.classification, refund.classification);
    let journal = h.store.audit_after(0, 10_000).await.unwrap();
    assert!(journal
        .iter()
        .filter_map(|e| e.as_ref().ok())
        .any(
            |e| e.record.resource == format!("task/{}", refund.id) && e.record.classification == "restricted"
        ));

    let yaml = "namespace: shop\nname: wf\nversion: 1.0.0\ninput_schema:\n  type: object\n  properties:\n    email: { type: string, x-pii: medical }\nsteps:\n  - { name: a, handler: simulate }\n";
    let registry = taskdeck::handlers::Registry::builtin();
    let e = taskdeck::workflow::Catalog::load(
        &[taskdeck::workflow::Source::Inline {
            file: "shop.yaml".into(),
            text: yaml.into(),
        }],
        &|h| registry.contains(h),
    )
    .err()
    .unwrap();
    let text = e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
    assert!(
        text.contains("shop.yaml")
            && text.contains("input_schema.properties.email.x-pii")
            && text.contains("\"medical\""),
        "{text}"
    );
}

/// Evidence is never laundered: an engine does not sign over a journal whose signed entry
/// was rewritten, nor with another key; and a removed checkpoint is itself the finding.
#[tokio::test(start_paused = true)]
async fn a_tampered_journal_is_never_signed_over() {
    let (store, key) = journaled_run().await;
    let signed = store.audit_checkpoint().await.unwrap().unwrap();
    // Rewrite an early entry and reseal the whole chain after it (no key needed for that).
    tamper(&store, |all| {
        all[2].record.actor = "mallory".into();
        let mut prev = all[1].hash.clone();
        for e in all.iter_mut().skip(2) {
            *e = AuditEntry::chain(e.seq, e.record.clone(), &prev);
            prev = e.hash.clone();
        }
    });
    // New work arrives (the head moves past the checkpoint); the engine is asked to sign.
    let record = taskdeck::audit::AuditRecord::new(
        8_000,
        "engine",
        "task.transition",
        "task/new".into(),
        "pending → in_progress".into(),
    );
    store.append_audit(vec![record]).await.unwrap();
    assert!(store.audit_head().await.unwrap().0 > signed.seq);
    taskdeck::engine::checkpoint(&*store, &key, 9_000).await;
    assert_eq!(
        store.audit_checkpoint().await.unwrap().unwrap(),
        signed,
        "not signed over"
    );
    // Still found: the appended entry links to the hash the rewrite replaced.
    let b = check(&store, &key).await.unwrap_err();
    assert!(matches!(b.finding, Finding::Edited | Finding::Truncated), "{b:?}");
    // Another key does not sign either.
    taskdeck::engine::checkpoint(&*store, &SigningKey::from_seed([2; 32]), 9_500).await;
    assert_eq!(store.audit_checkpoint().await.unwrap().unwrap(), signed);
}
