//! Erasing a data subject (GDPR article 17; post 06): refused while a task of theirs is
//! unfinished (its data is still needed to perform the contract); otherwise their data key is
//! shredded (`Vault::erase`), their lookup hashes removed and the erasure journaled
//! (`gdpr.erased`, without the person's data). Shared by `taskdeck gdpr erase` and screencasts.

use super::{SubjectRecord, Vault};
use crate::audit::AuditRecord;
use crate::store::Store;

/// Erases `subject` for `by` at `now` (ms since the epoch); says what was done.
///
/// Errors: a task of the subject is unfinished (named), or the store fails.
pub async fn erase(
    store: &dyn Store,
    vault: &Vault,
    subject: &SubjectRecord,
    by: &str,
    now: crate::model::Timestamp,
) -> Result<String, String> {
    if subject.wrapped_key.is_none() {
        return Ok(format!(
            "subject {} was already erased at {}",
            subject.id,
            crate::model::format_timestamp(subject.erased_at.unwrap_or_default())
        ));
    }
    let ids = store
        .subject_tasks(&subject.id)
        .await
        .map_err(|e| e.to_string())?;
    let mut active = Vec::new();
    for id in &ids {
        if let Some(t) = store.task(id).await.map_err(|e| e.to_string())? {
            if t.state.is_active() {
                active.push(t.id);
            }
        }
    }
    if !active.is_empty() {
        return Err(format!(
            "subject {} has {} unfinished task(s) ({}): their data is still needed to perform the contract; let them finish or cancel them, then erase",
            subject.id,
            active.len(),
            active.join(", ")
        ));
    }
    let tombstone = vault
        .erase(&subject.id, by, now)
        .await
        .map_err(|e| e.to_string())?;
    store
        .remove_subject_aliases(&subject.id)
        .await
        .map_err(|e| e.to_string())?;
    let mut record = AuditRecord::new(
        now,
        by,
        "gdpr.erased",
        format!("subject/{}", subject.id),
        format!("data key shredded; {} task(s) now read [ERASED]", ids.len()),
    );
    record.classification = "restricted".into();
    record.compliance_tags = vec!["gdpr".into()];
    store
        .append_audit(vec![record])
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "erased subject {}: {} task(s) now read [ERASED] everywhere (store, events, archives, audit entries); tombstone at {}",
        tombstone.id,
        ids.len(),
        crate::model::format_timestamp(tombstone.erased_at.unwrap_or(now))
    ))
}
