//! `taskdeck gdpr export` and `taskdeck gdpr erase` (post 06; issue 12 item 4): a data
//! subject's access request and erasure, on this data directory's store, for identities with
//! `gdpr:manage`. Both are journaled (`gdpr.exported`, `gdpr.erased`) without the person's data.
//!
//! Export: every task linked to the subject, decrypted, with its data categories, legal basis
//! and retention period (post 06's shapes: `contract_performance`, `7_years`), its steps'
//! results, and every journal entry about those tasks. Erase: the subject's data key is
//! shredded (`privacy::Vault::erase`), so every value sealed for them reads `[ERASED]` in the
//! store, old events, archives and journal entries, none of which is rewritten (the chain
//! still verifies); their lookup hashes are removed; a tombstone says when and by whom.

use super::{say, Cli, GdprCommand};
use crate::audit::AuditRecord;
use crate::client::Client;
use crate::privacy::{Access, SubjectRecord, Vault};
use crate::store::Store;
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use std::path::Path;

/// Post 06's legal basis for processing a customer's order and refund data.
pub const LEGAL_BASIS: &str = "contract_performance";
/// Post 06's retention period.
pub const RETENTION_PERIOD: &str = "7_years";

pub(super) async fn run(cli: &Cli, data: &Path, command: &GdprCommand) -> Result<i32> {
    let (session, engine, client) =
        super::session::existing_store(cli, data, "no personal data is kept there").await?;
    let who = client.identity().clone();
    let result = async {
        let query = engine.query();
        client
            .authorize("gdpr:manage", "gdpr", "gdpr")
            .await
            .map_err(|_| {
                anyhow!(
                    "{} may not export or erase a person's data: it takes gdpr:manage",
                    who.describe()
                )
            })?;
        let vault = query
            .vault()
            .ok_or_else(|| anyhow!("this engine seals no personal data"))?
            .clone();
        let store = engine.store().clone();
        let (subject_text, erase) = match command {
            GdprCommand::Export { subject } => (subject, false),
            GdprCommand::Erase { subject } => (subject, true),
        };
        let Some(subject) = vault.find_subject(subject_text).await? else {
            bail!("no data subject matches that email or id: nothing is stored about them (or they were erased: use the subject id their erasure printed)");
        };
        let now = engine.clock().now();
        if erase {
            let done = crate::privacy::erasure::erase(&*store, &vault, &subject, &who.sub, now)
                .await
                .map_err(|e| anyhow!(e))?;
            say!("{done}");
            Ok(0)
        } else {
            let archive = cli.archive_dir.clone().unwrap_or_else(|| data.join("archive"));
            let report = export(&*store, &vault, engine.catalog(), &subject, now, &archive).await?;
            let mut record = AuditRecord::new(
                now,
                &who.sub,
                "gdpr.exported",
                format!("subject/{}", subject.id),
                format!(
                    "{} task(s) exported, {} not found (not in the store or the archive searched)",
                    report["data_found"]["tasks"].as_array().map_or(0, Vec::len),
                    report["tasks_not_found"].as_array().map_or(0, Vec::len)
                ),
            );
            record.classification = "restricted".into();
            record.compliance_tags = vec!["gdpr".into()];
            store.append_audit(vec![record]).await?;
            say!("{}", serde_json::to_string_pretty(&report)?);
            Ok(0)
        }
    }
    .await;
    session.close(data, std::time::Duration::ZERO).await;
    result
}

/// The tasks `wanted` (ids no longer in the store) found in an archive file under `dir`
/// (`tasks-*.jsonl`, `demo-tasks-*.jsonl`), as archived (sealed). A line that cannot be read is
/// skipped: archives are append-only files an operator may have edited.
fn archived_tasks(
    dir: &Path,
    wanted: &std::collections::HashSet<&str>,
) -> Result<std::collections::HashMap<String, crate::model::Task>> {
    use std::io::BufRead;
    let mut found = std::collections::HashMap::new();
    if wanted.is_empty() {
        return Ok(found);
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(found);
    };
    let mut files: Vec<std::path::PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    for path in files {
        let Ok((file, _)) = crate::fsutil::open_regular(&path) else {
            continue;
        };
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            // Cheap test first: most lines are other people's tasks.
            if !wanted.iter().any(|id| line.contains(id)) {
                continue;
            }
            #[derive(serde::Deserialize)]
            struct Archived {
                task: crate::model::Task,
            }
            if let Ok(a) = serde_json::from_str::<Archived>(&line) {
                if wanted.contains(a.task.id.as_str()) {
                    found.insert(a.task.id.clone(), a.task);
                }
            }
        }
    }
    Ok(found)
}

/// The categories of personal data a task holds: the `x-pii` kinds of its workflow's fields
/// present in its context.
fn categories(
    catalog: &crate::workflow::Catalog,
    task: &crate::model::Task,
    stored: &Value,
) -> Vec<&'static str> {
    let reference = task.workflow_ref();
    let Ok(workflow) = catalog.resolve(&reference) else {
        return vec!["unknown (workflow version no longer loaded)"];
    };
    let mut out: Vec<&'static str> = workflow
        .template
        .classified
        .iter()
        .filter(|f| crate::workflow::classification::holds(stored, &f.path))
        .filter_map(|f| f.pii)
        .map(|p| match p {
            crate::workflow::classification::Pii::Identifier => "identifier",
            crate::workflow::classification::Pii::Contact => "contact",
            crate::workflow::classification::Pii::Financial => "financial",
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

async fn export(
    store: &dyn Store,
    vault: &Vault,
    catalog: &crate::workflow::Catalog,
    subject: &SubjectRecord,
    now: crate::model::Timestamp,
    archive: &Path,
) -> Result<Value> {
    let ids = store.subject_tasks(&subject.id).await?;
    let mut tasks = Vec::new();
    let mut resources = std::collections::HashSet::new();
    let mut stored = std::collections::HashMap::new();
    for id in &ids {
        if let Some(task) = store.task(id).await? {
            stored.insert(id.clone(), task);
        }
    }
    // Tasks retention moved out of the store are read from the archive.
    let gone: std::collections::HashSet<&str> = ids
        .iter()
        .filter(|id| !stored.contains_key(*id))
        .map(String::as_str)
        .collect();
    let mut archived = archived_tasks(archive, &gone)?;
    for id in &ids {
        let (mut task, from_archive) = match stored.remove(id) {
            Some(task) => (task, false),
            None => match archived.remove(id) {
                Some(task) => (task, true),
                None => continue,
            },
        };
        let sealed_context = task.context.clone();
        vault.reveal_task(&mut task, Access::Reveal).await?;
        resources.insert(format!("task/{id}"));
        tasks.push(json!({
            "task_id": task.id,
            "workflow": task.workflow_ref(),
            "created_date": crate::model::format_timestamp(task.created_at),
            "state": task.state,
            "classification": task.classification,
            "data_categories": categories(catalog, &task, &sealed_context),
            "legal_basis": LEGAL_BASIS,
            "retention_period": RETENTION_PERIOD,
            "archived": from_archive,
            "context": task.context,
            "steps": task.steps.iter().map(|s| json!({
                "name": s.name,
                "state": s.state,
                "results": s.results,
                "error": s.last_error.as_ref().map(|e| &e.message),
            })).collect::<Vec<_>>(),
        }));
    }
    // Journal entries about those tasks (their transitions, refusals naming them), revealed.
    let mut audit_logs = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_after(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = match last {
            Ok(e) => e.seq,
            Err((seq, _)) => *seq,
        };
        for entry in page.into_iter().flatten() {
            let about = entry.record.resource.starts_with("subject/")
                && entry.record.resource.ends_with(&subject.id)
                || resources.iter().any(|r| {
                    entry.record.resource == *r || entry.record.resource.starts_with(&format!("{r}/"))
                });
            if about {
                let mut value = serde_json::to_value(&entry)?;
                vault.reveal_value(&mut value, Access::Reveal).await?;
                audit_logs.push(value);
            }
        }
    }
    // Tasks linked to the person that neither the store nor the archive searched holds: removed
    // by retention into another archive folder. Said, so an export is never silently partial.
    let exported: std::collections::HashSet<String> = tasks
        .iter()
        .filter_map(|t| t["task_id"].as_str().map(str::to_string))
        .collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !exported.contains(*id)).collect();
    Ok(json!({
        "archive_searched": archive.display().to_string(),
        "tasks_not_found": missing,
        "note": if missing.is_empty() { "" } else { "these tasks were removed from the store and are not in the archive searched: pass the --archive-dir they were archived to" },
        "subject": {
            "id": subject.id,
            "created_at": crate::model::format_timestamp(subject.created_at),
            "erased_at": subject.erased_at.map(crate::model::format_timestamp),
        },
        "generated_at": crate::model::format_timestamp(now),
        "data_found": { "tasks": tasks, "audit_logs": audit_logs },
        "retention_schedule": { "period": RETENTION_PERIOD, "legal_basis": LEGAL_BASIS },
        "data_processors": ["payment gateway (simulated)", "email service (simulated)", "CRM (simulated)"],
    }))
}
