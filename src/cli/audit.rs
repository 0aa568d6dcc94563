//! `taskdeck audit verify` and `taskdeck audit export`: the audit trail (`crate::audit`), read
//! from this data directory's store by an admin.

use super::{say, AuditCommand, Before, Cli, ExportFormat};
use crate::audit::{AuditEntry, Finding};
use crate::client::Client;
use anyhow::{anyhow, bail, Result};
use std::path::Path;

/// Entries read per page.
const PAGE: usize = 10_000;

pub(super) async fn run(cli: &Cli, data: &Path, command: &AuditCommand) -> Result<i32> {
    // Reading the trail never makes a store: a directory without one has no trail to verify.
    let (session, engine, client) =
        super::session::existing_store(cli, data, "there is no audit trail to read").await?;
    let result = async {
        client
            .authorize("audit:read", "audit.read", "audit")
            .await
            .map_err(|_| {
                anyhow!(
                    "{} may not read the audit trail: it takes audit:read (admins)",
                    client.identity().describe()
                )
            })?;
        match command {
            AuditCommand::Verify { json } => verify(data, &**engine.store(), *json).await,
            AuditCommand::Export { from, to, format } => {
                let (from, to) = period(engine.clock().now(), from, to)?;
                export(&**engine.store(), from, to, *format).await
            }
        }
    }
    .await;
    session.close(data, std::time::Duration::ZERO).await;
    result
}

/// `--from` and `--to` as ms since the Unix epoch (`--to` exclusive; open ends unbounded).
///
/// Errors: `--from` not before `--to`.
pub(super) fn period(now: i64, from: &Option<Before>, to: &Option<Before>) -> Result<(i64, i64)> {
    let at = |b: &Option<Before>, default| match b {
        Some(Before::At(at)) => *at,
        Some(Before::Ago(age)) => now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)),
        None => default,
    };
    let (from, to) = (at(from, i64::MIN), at(to, i64::MAX));
    if from >= to {
        bail!(
            "--from {} is not before --to {} (--to is exclusive)",
            crate::model::format_timestamp(from),
            crate::model::format_timestamp(to)
        );
    }
    Ok((from, to))
}

async fn verify(data: &Path, store: &dyn crate::store::Store, json: bool) -> Result<i32> {
    let key = crate::audit::SigningKey::load(data).map_err(|e| anyhow!(e))?;
    let verifying = key.as_ref().map(crate::audit::SigningKey::verifying_key);
    let result = crate::audit::verify::verify_store(store, verifying.as_ref()).await?;
    if json {
        let value = match &result {
            Ok(v) => {
                serde_json::json!({ "intact": true, "entries": v.entries, "head_hash": v.head_hash, "checkpoint": v.checkpoint })
            }
            Err(b) => {
                serde_json::json!({ "intact": false, "seq": b.seq, "finding": b.finding, "why": b.why })
            }
        };
        say!("{value}");
    } else {
        match &result {
            Ok(v) => {
                let s = if v.entries == 1 { "y" } else { "ies" };
                say!("intact: {} entr{s}, head {}", v.entries, v.head_hash);
                match v.checkpoint {
                    Some(seq) => say!("signed checkpoint at entry {seq} verified ({} entries after it not yet signed)", v.entries - seq.min(v.entries)),
                    None => say!("no signed checkpoint yet (one is signed every 30 s while the engine runs, and when it stops)"),
                }
            }
            Err(b) => {
                say!("BROKEN at entry {}: {} — {}", b.seq, b.finding, b.why);
                if b.finding == Finding::BadSignature {
                    say!(
                        "(the checkpoint is checked with {})",
                        data.join(crate::audit::checkpoint::KEY_FILE).display()
                    );
                }
            }
        }
    }
    Ok(if result.is_ok() { 0 } else { 1 })
}

async fn export(store: &dyn crate::store::Store, from: i64, to: i64, format: ExportFormat) -> Result<i32> {
    let csv = format == ExportFormat::Csv;
    if csv {
        say!("{}", csv_line(&COLUMNS)?);
    }
    let mut after = 0u64;
    loop {
        let page = store.audit_after(after, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for entry in page {
            let entry = entry.map_err(|(key, why)| {
                anyhow!("audit entries stored at {key} are unreadable ({why}); run `taskdeck audit verify`")
            })?;
            // Out of order means tampered: stop rather than loop or skip.
            if entry.seq <= after {
                bail!(
                    "audit entry {} is out of order; run `taskdeck audit verify`",
                    entry.seq
                );
            }
            after = entry.seq;
            if entry.record.at < from || entry.record.at >= to {
                continue;
            }
            if csv {
                say!("{}", csv_line(&row(&entry))?);
            } else {
                say!("{}", serde_json::to_string(&entry)?);
            }
        }
    }
    Ok(0)
}

/// One CSV record (quoted as RFC 4180 says), without its line end.
fn csv_line<S: AsRef<[u8]>>(fields: &[S]) -> Result<String> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(fields)?;
    let bytes = w.into_inner().map_err(|e| anyhow!("csv: {e}"))?;
    Ok(String::from_utf8_lossy(&bytes)
        .trim_end_matches(['\r', '\n'])
        .to_string())
}

const COLUMNS: [&str; 16] = [
    "seq",
    "at",
    "actor",
    "action",
    "resource",
    "namespace",
    "workflow",
    "version",
    "classification",
    "correlation_id",
    "outcome",
    "detail",
    "compliance_tags",
    "transition",
    "prev_hash",
    "hash",
];

/// One CSV row. A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR) is
/// prefixed with `'` (OWASP's advice): an actor or reason is text an operator typed.
fn row(e: &AuditEntry) -> Vec<String> {
    let r = &e.record;
    let safe = |s: &str| {
        if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{s}")
        } else {
            s.to_string()
        }
    };
    vec![
        e.seq.to_string(),
        crate::model::format_timestamp(r.at),
        safe(&r.actor),
        safe(&r.action),
        safe(&r.resource),
        safe(r.namespace.as_deref().unwrap_or("")),
        safe(r.workflow.as_deref().unwrap_or("")),
        safe(r.version.as_deref().unwrap_or("")),
        safe(&r.classification),
        safe(r.correlation_id.as_deref().unwrap_or("")),
        safe(&r.outcome),
        safe(&r.detail),
        safe(&r.compliance_tags.join(" ")),
        r.transition.map_or(String::new(), |t| t.to_string()),
        e.prev_hash.clone(),
        e.hash.clone(),
    ]
}
