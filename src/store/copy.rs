//! `taskdeck store copy`: moves everything a store holds into an empty one of either backend
//! (sled → PostgreSQL and back) and proves the copy: every task read back equal, transitions,
//! events and subjects counted on both sides, and the audit journal verified on both with the
//! same head.

use super::{Listing, Store, SubjectCopy};
use crate::audit::verify::{verify_store, Verified};
use crate::model::{Task, TaskState};
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;

/// Tasks read and written per round (with their transitions).
const PAGE: usize = 200;

/// What a copy moved, as found on both sides afterwards.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CopyReport {
    pub tasks: u64,
    /// Tasks by state (`TaskState::as_str`).
    pub by_state: BTreeMap<String, u64>,
    pub transitions: u64,
    pub events: u64,
    pub subjects: u64,
    /// The journal as `audit verify` finds it on both sides: entries, head hash, checkpoint.
    pub audit: Verified,
}

/// Copies `from` into `to`, which must be empty, then verifies. `key` is the data directory's
/// audit key (checkpoints are checked against it, as `audit verify` does); `progress` hears
/// a line now and then. Errors: `to` is not empty, `from`'s journal is broken (nothing is
/// copied), a backend fails, or the verification finds a difference (named).
pub async fn copy(
    from: &dyn Store,
    to: &dyn Store,
    key: Option<&ed25519_dalek::VerifyingKey>,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<CopyReport> {
    if to.oldest_task_id().await?.is_some()
        || to.audit_head().await?.0 > 0
        || to.first_subject().await?.is_some()
    {
        bail!("the destination already holds a store (tasks, journal entries or data subjects); a copy goes into an empty one");
    }
    let (theirs, ours) = (from.key_check(None).await?, to.key_check(None).await?);
    if ours.is_some() && ours != theirs {
        bail!("the destination was opened with another master key than the source's (its personal data would not open); copy into a new store");
    }
    // A broken journal is not carried over as if it were whole.
    let audit = verify_store(from, key).await?.map_err(|b| {
        anyhow!(
            "the source's audit journal is broken at entry {} ({:?}: {}); nothing was copied — run `taskdeck audit verify` on it",
            b.seq,
            b.finding,
            b.why
        )
    })?;

    // Tasks, a page at a time, newest first (as listings page).
    let mut before: Option<String> = None;
    let (mut tasks, mut transitions) = (0u64, 0u64);
    loop {
        let listing = Listing {
            before: before.clone(),
            ..Listing::default()
        };
        let page: Vec<Task> = from.list(&listing, &|_| true, PAGE).await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id.clone());
        let mut log = Vec::new();
        for task in &page {
            log.extend(from.transitions(&task.id).await?);
        }
        to.import(&page, &log, &[]).await?;
        tasks += page.len() as u64;
        transitions += log.len() as u64;
        progress(format!("{tasks} tasks, {transitions} transitions"));
        if page.len() < PAGE {
            break;
        }
    }
    // Events, in order.
    let mut after = 0u64;
    let mut events = 0u64;
    loop {
        let page = from.events_after(after, 5_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        to.import(&[], &[], &page).await?;
        events += page.len() as u64;
    }
    progress(format!("{events} events"));
    // Data subjects: their wrapped keys (the master key stays in the data directory).
    let subjects = from.subjects().await?;
    for s in &subjects {
        to.put_subject(&s.record, &s.aliases, &s.tasks).await?;
    }
    // The journal as it is, then its checkpoint and the catalog's digests.
    let mut after = 0u64;
    loop {
        let page = from.audit_after(after, 5_000).await?;
        if page.is_empty() {
            break;
        }
        let entries = page
            .into_iter()
            .map(|e| {
                e.map_err(|(at, why)| anyhow!("journal entry {at} became unreadable during the copy: {why}"))
            })
            .collect::<Result<Vec<_>>>()?;
        after = entries.last().map_or(after, |e| e.seq);
        to.import_audit(&entries).await?;
    }
    progress(format!("{} journal entries", audit.entries));
    if let Some(checkpoint) = from.audit_checkpoint().await? {
        to.put_audit_checkpoint(&checkpoint).await?;
    }
    to.put_catalog_digests(&from.catalog_digests().await?).await?;
    if let Some(check) = from.key_check(None).await? {
        to.key_check(Some(&check)).await?;
    }
    to.flush().await?;

    // Verification, from what each side holds now.
    let mut by_state = BTreeMap::new();
    for state in TaskState::ALL {
        let (a, b) = (from.count(state).await?, to.count(state).await?);
        if a != b {
            bail!("verification failed: {a} {state} task(s) in the source, {b} in the copy");
        }
        if a > 0 {
            by_state.insert(state.as_str().to_string(), a);
        }
    }
    let mut before: Option<String> = None;
    let mut checked = 0u64;
    let mut checked_transitions = 0u64;
    loop {
        let listing = Listing {
            before: before.clone(),
            ..Listing::default()
        };
        let page = from.list(&listing, &|_| true, PAGE).await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id.clone());
        for task in &page {
            let copied = to.task(&task.id).await?;
            if copied.as_ref() != Some(task) {
                bail!(
                    "verification failed: task {} reads back differently from the copy",
                    task.id
                );
            }
            let (a, b) = (from.transitions(&task.id).await?, to.transitions(&task.id).await?);
            if a != b {
                bail!(
                    "verification failed: task {}'s transitions differ in the copy",
                    task.id
                );
            }
            checked_transitions += a.len() as u64;
        }
        checked += page.len() as u64;
        if page.len() < PAGE {
            break;
        }
    }
    if checked != tasks || checked_transitions != transitions {
        bail!("verification failed: {checked} tasks and {checked_transitions} transitions in the source now, {tasks} and {transitions} copied (was it changed during the copy?)");
    }
    let copied_events = count_events(to).await?;
    if copied_events != events {
        bail!("verification failed: {events} events in the source, {copied_events} in the copy");
    }
    let copied_subjects: Vec<SubjectCopy> = to.subjects().await?;
    if copied_subjects.len() != subjects.len() {
        bail!(
            "verification failed: {} data subjects in the source, {} in the copy",
            subjects.len(),
            copied_subjects.len()
        );
    }
    let copied_audit = verify_store(to, key).await?.map_err(|b| {
        anyhow!(
            "verification failed: the copy's audit journal is broken at entry {} ({:?}: {})",
            b.seq,
            b.finding,
            b.why
        )
    })?;
    if copied_audit != audit {
        bail!(
            "verification failed: the copy's journal has {} entries and head {}, the source's {} and {}",
            copied_audit.entries,
            copied_audit.head_hash,
            audit.entries,
            audit.head_hash
        );
    }
    Ok(CopyReport {
        tasks,
        by_state,
        transitions,
        events,
        subjects: subjects.len() as u64,
        audit,
    })
}

async fn count_events(store: &dyn Store) -> Result<u64> {
    let (mut after, mut n) = (0u64, 0u64);
    loop {
        let page = store.events_after(after, 5_000).await?;
        let Some(last) = page.last() else { return Ok(n) };
        after = last.seq;
        n += page.len() as u64;
    }
}
