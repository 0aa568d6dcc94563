//! `taskdeck report soc2 --from --to [--format md|json]` (post 06; issue 12 item 8): each
//! control computed from the audit journal of the period and the configuration in force — no
//! status is written down: a control without evidence in the period says so, and one whose
//! evidence shows a problem (a broken chain, an unsealed personal value, an API exposed without
//! TLS, a released version edited) is an exception.

use super::{say, Before, Cli, ReportFormat};
use crate::audit::AuditEntry;
use crate::privacy::envelope;
use anyhow::{anyhow, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// A control's computed status.
fn status(evidenced: bool, exception: bool) -> &'static str {
    if exception {
        "exception"
    } else if evidenced {
        "evidenced"
    } else {
        "no_evidence"
    }
}

pub(super) async fn run(
    cli: &Cli,
    data: &Path,
    from: &Option<Before>,
    to: &Option<Before>,
    format: ReportFormat,
) -> Result<i32> {
    let (session, engine, client) =
        super::session::existing_store(cli, data, "there is no evidence to report on").await?;
    let result = async {
        client
            .authorize("audit:read", "report.soc2", "report/soc2")
            .await
            .map_err(|p| anyhow!("{}: the SOC 2 report reads the audit trail", p.message))?;
        let now = engine.clock().now();
        let (from, to) = super::audit::period(now, from, to)?;
        let report = compute(data, &engine, from, to, now).await?;
        match format {
            ReportFormat::Json => say!("{}", serde_json::to_string_pretty(&report)?),
            ReportFormat::Md => say!("{}", markdown(&report)),
        }
        Ok(0)
    }
    .await;
    session.close(data, std::time::Duration::ZERO).await;
    result
}

async fn entries(store: &dyn crate::store::Store, from: i64, to: i64) -> Result<Vec<AuditEntry>> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let page = store.audit_after(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        let next = match last {
            Ok(e) => e.seq,
            Err((seq, _)) => *seq,
        };
        if next <= after {
            break;
        }
        after = next;
        out.extend(
            page.into_iter()
                .flatten()
                .filter(|e| e.record.at >= from && e.record.at < to),
        );
    }
    Ok(out)
}

async fn compute(data: &Path, engine: &crate::engine::Engine, from: i64, to: i64, now: i64) -> Result<Value> {
    let store = engine.store().clone();
    let journal = entries(&*store, from, to).await?;
    let of = |action: &'static str| journal.iter().filter(move |e| e.record.action == action);
    let catalog = engine.catalog();
    let policy = catalog.policy();

    // CC6.1 logical access: the policy in force, grants, and what changed in the period.
    let roles: BTreeMap<String, Vec<String>> = policy
        .roles
        .iter()
        .map(|(r, p)| (r.to_string(), p.iter().map(ToString::to_string).collect()))
        .collect();
    let grants: usize = catalog.manifests().map(|m| m.grants.len()).sum();
    let access_changes: Vec<Value> = journal
        .iter()
        .filter(|e| {
            matches!(
                e.record.action.as_str(),
                "policy.deployed" | "policy.changed" | "grants.changed" | "key.rotated" | "token.issued"
            )
        })
        .map(|e| json!({ "at": crate::model::format_timestamp(e.record.at), "by": e.record.actor, "action": e.record.action, "detail": e.record.detail }))
        .collect();
    let cc61 = json!({
        "id": "CC6.1", "name": "Logical access",
        "status": status(!roles.is_empty(), false),
        "evidence": { "policy": policy.source, "roles": roles, "manifest_grants": grants, "changes_in_period": access_changes },
    });

    // CC6.2 authentication.
    let failed: Vec<&AuditEntry> = of("authn.failed").collect();
    let expired = failed
        .iter()
        .filter(|e| e.record.detail.contains("expired"))
        .count()
        + of("authz.denied")
            .filter(|e| e.record.detail.contains("token expired"))
            .count();
    let first_uses: Vec<&AuditEntry> = of("token.first_use").collect();
    let with_mfa = first_uses
        .iter()
        .filter(|e| e.record.detail.ends_with("; mfa"))
        .count();
    let step_up_refused = of("authz.denied")
        .filter(|e| e.record.detail.contains("step-up authentication required"))
        .count();
    let cc62_events = failed.len() + first_uses.len() + step_up_refused + of("token.issued").count();
    let cc62 = json!({
        "id": "CC6.2", "name": "Authentication",
        "status": status(cc62_events > 0, false),
        "evidence": {
            "failed_authentications": failed.len(),
            "expired_tokens_refused": expired,
            "tokens_issued": of("token.issued").count(),
            "tokens_first_used": first_uses.len(),
            "tokens_first_used_with_mfa": with_mfa,
            "step_ups_refused": step_up_refused,
            "note": if cc62_events == 0 { "no token was issued, used or refused in the period" } else { "" },
        },
    });

    // CC6.3 authorization: refusals by resource, and decisions people made.
    let mut denials: BTreeMap<String, usize> = BTreeMap::new();
    for e in of("authz.denied") {
        *denials.entry(e.record.resource.clone()).or_default() += 1;
    }
    let by_people = journal
        .iter()
        .filter(|e| e.record.transition.is_some() && e.record.actor != "engine")
        .count();
    let denied_total: usize = denials.values().sum();
    let cc63 = json!({
        "id": "CC6.3", "name": "Authorization",
        "status": status(denied_total + by_people > 0, false),
        "evidence": { "denials": denied_total, "denials_by_resource": denials, "changes_made_by_people": by_people },
    });

    // CC7.2 transmission.
    let starts: Vec<&AuditEntry> = of("server.started").collect();
    let tls_on = starts
        .iter()
        .filter(|e| e.record.detail.contains("tls=on"))
        .count();
    let exposed = starts
        .iter()
        .filter(|e| e.record.detail.contains("tls=off") && e.record.detail.contains("loopback=false"))
        .count();
    let cc72 = json!({
        "id": "CC7.2", "name": "Data transmission",
        "status": status(!starts.is_empty(), exposed > 0),
        "evidence": {
            "api_server_starts": starts.len(), "with_tls": tls_on,
            "plain_http_on_loopback": starts.len() - tls_on - exposed, "plain_http_exposed": exposed,
            "note": if starts.is_empty() { "no API server started in the period" } else { "" },
        },
    });

    // CC8.1 change management.
    let deployed: Vec<Value> = journal
        .iter()
        .filter(|e| matches!(e.record.action.as_str(), "workflow.deployed" | "workflow.changed"))
        // The actor is whoever started the engine that first loaded the version.
        .map(|e| json!({ "at": crate::model::format_timestamp(e.record.at), "engine_started_by": e.record.actor, "action": e.record.action, "workflow": e.record.resource.trim_start_matches("workflow/") }))
        .collect();
    let edited = of("workflow.changed").count();
    let cc81 = json!({
        "id": "CC8.1", "name": "Change management",
        "status": status(!deployed.is_empty(), edited > 0),
        "evidence": { "versions_deployed": of("workflow.deployed").count(), "released_versions_edited": edited, "changes": deployed },
    });

    // The journal's integrity, over its whole length.
    let key = crate::audit::SigningKey::load(data).map_err(|e| anyhow!(e))?;
    let verifying = key.as_ref().map(crate::audit::SigningKey::verifying_key);
    let verified = crate::audit::verify::verify_store(&*store, verifying.as_ref()).await?;
    let integrity = match &verified {
        Ok(v) => json!({ "id": "AUDIT", "name": "Audit-chain integrity", "status": status(true, false),
            "evidence": { "intact": true, "entries": v.entries, "signed_checkpoint_at": v.checkpoint } }),
        Err(b) => json!({ "id": "AUDIT", "name": "Audit-chain integrity", "status": status(true, true),
            "evidence": { "intact": false, "first_bad_entry": b.seq, "finding": b.finding, "why": b.why } }),
    };

    // Encryption at rest: personal fields of tasks created in the period, sealed or not.
    let (seen, sealed) = coverage(&*store, catalog, from, to).await?;
    let encryption = json!({
        "id": "ENC", "name": "Encryption coverage (personal data at rest)",
        "status": status(seen > 0, sealed < seen),
        "evidence": { "personal_fields_seen": seen, "personal_fields_encrypted": sealed,
            "scope": "fields marked x-pii or restricted in the stored contexts of the period's tasks (copies in results and events are sealed by the same rule but not counted)",
            "note": if seen == 0 { "no task created in the period held a personal field" } else { "" } },
    });

    // Approvals with the approver's identity.
    let approvals: Vec<Value> = journal
        .iter()
        .filter(|e| e.record.compliance_tags.iter().any(|t| t == "approval"))
        .map(|e| {
            let approved = e.record.detail.starts_with("awaiting_approval → complete");
            json!({ "at": crate::model::format_timestamp(e.record.at), "approver": e.record.actor,
                "decision": if approved { "approved" } else { "denied" }, "resource": e.record.resource })
        })
        .collect();
    let approvals_control = json!({
        "id": "APPROVALS", "name": "Approvals with approver identity",
        "status": status(!approvals.is_empty(), false),
        "evidence": { "decisions": approvals.len(), "list": approvals },
    });

    Ok(json!({
        "report": "SOC 2 evidence",
        "period": { "from": crate::model::format_timestamp(from.max(0)), "to": crate::model::format_timestamp(to.min(now)) },
        "generated_at": crate::model::format_timestamp(now),
        "journal_entries_in_period": journal.len(),
        "controls": [cc61, cc62, cc63, cc72, cc81, integrity, encryption, approvals_control],
    }))
}

/// Personal fields (marked `x-pii` or restricted) present in the stored contexts of tasks
/// created in the period, and how many of them are stored sealed.
async fn coverage(
    store: &dyn crate::store::Store,
    catalog: &crate::workflow::Catalog,
    from: i64,
    to: i64,
) -> Result<(usize, usize)> {
    let listing = crate::store::Listing {
        since: Some(from.max(0)),
        ..Default::default()
    };
    let tasks = store.list(&listing, &|t| t.created_at < to, usize::MAX).await?;
    let (mut seen, mut sealed) = (0, 0);
    for mut task in tasks {
        let Ok(workflow) = catalog.resolve(&task.workflow_ref()) else {
            continue;
        };
        for field in workflow
            .template
            .classified
            .iter()
            .filter(|f| crate::privacy::seal::sealed(f))
        {
            let mut found = Vec::new();
            crate::privacy::seal::at_path(&mut task.context, &field.path, &mut found);
            for v in found {
                seen += 1;
                if v.as_str().is_some_and(|s| {
                    let t = envelope::tokens(s);
                    t.len() == 1 && t[0].start == 0 && t[0].end == s.len()
                }) {
                    sealed += 1;
                }
            }
        }
    }
    Ok((seen, sealed))
}

fn markdown(report: &Value) -> String {
    let mut out = format!(
        "# SOC 2 evidence, {} to {}\n\nGenerated {} from {} journal entries of the period.\n",
        report["period"]["from"].as_str().unwrap_or(""),
        report["period"]["to"].as_str().unwrap_or(""),
        report["generated_at"].as_str().unwrap_or(""),
        report["journal_entries_in_period"]
    );
    for c in report["controls"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n## {} {} — {}\n\n",
            c["id"].as_str().unwrap_or(""),
            c["name"].as_str().unwrap_or(""),
            c["status"].as_str().unwrap_or("").replace('_', " ")
        ));
        if let Some(evidence) = c["evidence"].as_object() {
            for (k, v) in evidence {
                let shown = match v {
                    Value::String(s) if s.is_empty() => continue,
                    Value::String(s) => s.clone(),
                    Value::Array(items) if items.is_empty() => "none".into(),
                    Value::Array(items) => items
                        .iter()
                        .map(|i| match i.as_object() {
                            // An event: its fields in order, separated for reading.
                            Some(fields) => format!(
                                "\n  - {}",
                                fields
                                    .values()
                                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                                    .collect::<Vec<_>>()
                                    .join(" · ")
                            ),
                            None => format!("\n  - {i}"),
                        })
                        .collect::<String>(),
                    other => other.to_string(),
                };
                out.push_str(&format!("- {}: {shown}\n", k.replace('_', " ")));
            }
        }
    }
    out
}
