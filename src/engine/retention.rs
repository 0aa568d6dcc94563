//! Retention: finished tasks (complete, error, cancelled, resolved) leave the store once they
//! are old enough, after being archived. Each removed task is first appended, whole (header,
//! context, steps, every transition with its actor, reason and approval), as one JSON line to
//! `<archive>/tasks-YYYY-MM-DD.jsonl` (0600) and the file is synced: history that matters for
//! audit is moved, never silently dropped. Events (notifications, not history) older than the
//! removed tasks go too.
//!
//! Passes run inside the orchestrator, between turns, so a task is never removed while a
//! command is changing it; each pass handles at most `PASS` tasks to keep turns short.

use super::command::EngineError;
use crate::model::{Task, Timestamp, Transition};
use crate::store::Store;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most tasks one pass archives and removes.
pub const PASS: usize = 256;

/// What the engine keeps (`--retain`, `--archive-dir`; `--demo` keeps 10 minutes or 2,000).
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// Finished tasks whose last change is older than this go.
    pub max_age: Option<Duration>,
    /// Beyond this many finished tasks, the ones changed longest ago go.
    pub max_finished: Option<usize>,
    /// Where archives are written.
    pub archive_dir: PathBuf,
}

impl Retention {
    /// The demo's: the last 10 minutes, at most 2,000 finished tasks.
    pub fn demo(archive_dir: PathBuf) -> Self {
        Retention {
            max_age: Some(Duration::from_secs(600)),
            max_finished: Some(2_000),
            archive_dir,
        }
    }

    /// The cutoff for `max_age` at `now` (ms since the Unix epoch).
    pub fn cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        self.max_age
            .map(|age| now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)))
    }
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PruneReport {
    /// Tasks archived and removed.
    pub removed: usize,
    /// Tasks chosen but kept: unreadable, active again, held by a command, or the child of an
    /// unfinished task.
    pub kept: usize,
    /// The archive file written, if any.
    pub archive: Option<PathBuf>,
}

/// One archived task: the line written per task.
#[derive(Serialize)]
struct Archived<'a> {
    archived_at: String,
    task: &'a Task,
    transitions: &'a [Transition],
}

/// Finished tasks `policy` lets go at `now`, at most `limit`, changed longest ago first.
pub async fn candidates(
    store: &dyn Store,
    policy: &Retention,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<String>, EngineError> {
    let mut ids = Vec::new();
    if let Some(before) = policy.cutoff(now) {
        ids = store.finished_before(before, limit).await?;
    }
    if let Some(keep) = policy.max_finished {
        for id in store.finished_beyond(keep, limit).await? {
            if ids.len() >= limit {
                break;
            }
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

/// Archives then removes the tasks `ids` names, skipping any `held` says a command holds and
/// any child of an unfinished task (its parent reads its outcome). `now` dates the archive.
pub async fn prune(
    store: &dyn Store,
    ids: &[String],
    archive_dir: &Path,
    now: Timestamp,
    held: &(dyn Fn(&str) -> bool + Sync),
) -> Result<PruneReport, EngineError> {
    let mut report = PruneReport::default();
    let mut lines = Vec::new();
    let mut chosen = Vec::new();
    let mut newest_change = Timestamp::MIN;
    let stamp = crate::model::format_timestamp(now);
    for id in ids {
        let task = match store.task(id).await {
            Ok(Some(task)) if !task.state.is_active() && !held(id) => task,
            Ok(_) => {
                report.kept += 1;
                continue;
            }
            Err(e) => {
                tracing::warn!(task = %id, "retention keeps a task it cannot read: {e}");
                report.kept += 1;
                continue;
            }
        };
        if let Some(parent) = &task.parent {
            if store.task(parent).await?.is_some_and(|p| p.state.is_active()) || held(parent) {
                report.kept += 1;
                continue;
            }
        }
        let transitions = store.transitions(id).await?;
        let line = serde_json::to_vec(&Archived {
            archived_at: stamp.clone(),
            task: &task,
            transitions: &transitions,
        })
        .map_err(|e| EngineError::Store(crate::store::StoreError::Encode(e.to_string())))?;
        lines.push(line);
        newest_change = newest_change.max(task.updated_at);
        chosen.push(task.id);
    }
    if chosen.is_empty() {
        return Ok(report);
    }
    let path = append(archive_dir, now, &lines).map_err(|e| {
        EngineError::Store(crate::store::StoreError::Backend(format!(
            "cannot write the archive in {}: {e}; nothing was removed",
            archive_dir.display()
        )))
    })?;
    // Their events go with them (and any older ones).
    report.removed = store.remove(&chosen, newest_change.saturating_add(1)).await?;
    report.kept += chosen.len() - report.removed;
    report.archive = Some(path);
    Ok(report)
}

/// Appends `lines` to the day's archive file and syncs it (and the folder, for a new file).
fn append(dir: &Path, now: Timestamp, lines: &[Vec<u8>]) -> std::io::Result<PathBuf> {
    crate::fsutil::create_private_dir(dir)?;
    let day = chrono::DateTime::from_timestamp_millis(now)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string();
    let path = dir.join(format!("tasks-{day}.jsonl"));
    let new = !path.exists();
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Never follow a link, never wait on a FIFO planted there.
        options
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let mut file = options.open(&path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        buf.extend_from_slice(line);
        buf.push(b'\n');
    }
    file.write_all(&buf)?;
    file.sync_data()?;
    if new {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(path)
}
