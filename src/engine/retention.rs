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

/// An archive file is continued up to this size (bytes); then the day's next part begins
/// (`tasks-YYYY-MM-DD.2.jsonl`, …).
pub const ARCHIVE_PART: u64 = 64 * 1024 * 1024;

/// The archive bytes a demo keeps (four parts): at 20 tasks/s it archives about 250 KB/s,
/// 21 GB a day, which a booth laptop should not collect.
pub const DEMO_ARCHIVE_CAP: u64 = 4 * ARCHIVE_PART;

/// What the engine keeps (`--retain`, `--archive-dir`; `--demo` keeps 10 minutes or 2,000).
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// Finished tasks whose last change is older than this go.
    pub max_age: Option<Duration>,
    /// Beyond this many finished tasks, the ones changed longest ago go.
    pub max_finished: Option<usize>,
    /// Where archives are written.
    pub archive_dir: PathBuf,
    /// Demo traffic's archive: its files are named `demo-tasks-…` and at most this many bytes
    /// of them are kept, the oldest deleted first. `None` (everything but the demo): archives
    /// are `tasks-…` and never deleted. No other file is ever counted or deleted.
    pub archive_cap: Option<u64>,
}

impl Retention {
    /// The demo's: the last 10 minutes, at most 2,000 finished tasks.
    pub fn demo(archive_dir: PathBuf) -> Self {
        Retention {
            max_age: Some(Duration::from_secs(600)),
            max_finished: Some(2_000),
            archive_dir,
            archive_cap: Some(DEMO_ARCHIVE_CAP),
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
/// any child of an unfinished task (its parent reads its outcome), into `policy`'s archive.
/// `now` dates the archive.
pub async fn prune(
    store: &dyn Store,
    ids: &[String],
    policy: &Retention,
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
    let path =
        append(&policy.archive_dir, now, &lines, policy.archive_cap).map_err(|e| EngineError::Archive {
            dir: policy.archive_dir.display().to_string(),
            cause: e.to_string(),
        })?;
    // Their events go with them (and any older ones).
    report.removed = store.remove(&chosen, newest_change.saturating_add(1)).await?;
    report.kept += chosen.len() - report.removed;
    report.archive = Some(path);
    Ok(report)
}

/// Appends `lines` to the day's archive file (its newest part, or a new part once that passed
/// `ARCHIVE_PART`) and syncs it (and the folder, for a new file); then, with a `cap`, deletes
/// the oldest archive files while they hold more than `cap` bytes (never the one written).
fn append(dir: &Path, now: Timestamp, lines: &[Vec<u8>], cap: Option<u64>) -> std::io::Result<PathBuf> {
    append_parts(dir, now, lines, cap, ARCHIVE_PART)
}

/// `append` with parts of `part_size` bytes.
fn append_parts(
    dir: &Path,
    now: Timestamp,
    lines: &[Vec<u8>],
    cap: Option<u64>,
    part_size: u64,
) -> std::io::Result<PathBuf> {
    // Like every file of ours, the folder is not followed if someone swapped in a link (name
    // the real folder with --archive-dir instead).
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(std::io::Error::other(format!(
            "{} is a symbolic link; give the folder it points to with --archive-dir",
            dir.display()
        )));
    }
    crate::fsutil::create_private_dir(dir)?;
    let day = chrono::DateTime::from_timestamp_millis(now)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string();
    // Demo traffic's files are apart: its cap must never touch real archives.
    let prefix = if cap.is_some() { DEMO_PREFIX } else { PREFIX };
    let parts = archive_files(dir, prefix)?;
    let (part, size) = parts
        .iter()
        .filter(|f| f.day == day)
        .max_by_key(|f| f.part)
        .map_or((1, 0), |f| (f.part, f.size));
    let part = if size >= part_size {
        part.saturating_add(1)
    } else {
        part
    };
    if part > MAX_PART {
        return Err(std::io::Error::other(format!(
            "{} already has {MAX_PART} parts",
            dir.join(part_name(prefix, &day, 1)).display()
        )));
    }
    let path = dir.join(part_name(prefix, &day, part));
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
    if let Some(cap) = cap {
        let mut files = archive_files(dir, prefix)?;
        files.sort_by(|a, b| (&a.day, a.part).cmp(&(&b.day, b.part)));
        let mut total: u64 = files.iter().map(|f| f.size).sum();
        for f in files {
            if total <= cap {
                break;
            }
            let old = dir.join(part_name(prefix, &f.day, f.part));
            if old != path && std::fs::remove_file(&old).is_ok() {
                tracing::info!(file = %old.display(), "demo archive over its cap: deleted the oldest file");
                total = total.saturating_sub(f.size);
            }
        }
    }
    Ok(path)
}

/// Archive files: `tasks-DAY.jsonl`, then `tasks-DAY.N.jsonl` (N from 2 to `MAX_PART`).
const PREFIX: &str = "tasks-";
/// Demo traffic's archive files, the only ones a cap deletes.
const DEMO_PREFIX: &str = "demo-tasks-";
/// The most parts a day's archive has (6.4 TB at `ARCHIVE_PART`).
const MAX_PART: u32 = 99_999;

/// One archive file of a kind (`PREFIX` or `DEMO_PREFIX`).
struct ArchiveFile {
    day: String,
    part: u32,
    size: u64,
}

fn part_name(prefix: &str, day: &str, part: u32) -> String {
    if part <= 1 {
        format!("{prefix}{day}.jsonl")
    } else {
        format!("{prefix}{day}.{part}.jsonl")
    }
}

/// The archive files named with `prefix` in `dir`: regular files named exactly as
/// `part_name` names a real date's part. Anything else is neither counted nor touched.
fn archive_files(dir: &Path, prefix: &str) -> std::io::Result<Vec<ArchiveFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_prefix(prefix).and_then(|n| n.strip_suffix(".jsonl")) else {
            continue;
        };
        let (day, part) = match stem.split_once('.') {
            Some((day, part)) => match part.parse::<u32>() {
                Ok(part) if (2..=MAX_PART).contains(&part) => (day, part),
                _ => continue,
            },
            None => (stem, 1),
        };
        // A real date, written as we write it ("2026-1-5" or "+2026-01-05" are not ours).
        let real_day = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
            .is_ok_and(|d| d.format("%Y-%m-%d").to_string() == day);
        if !real_day || part_name(prefix, day, part) != name {
            continue;
        }
        // Not followed: a link or FIFO planted here is no archive of ours.
        let meta = entry.metadata()?;
        if meta.is_file() {
            out.push(ArchiveFile {
                day: day.to_string(),
                part,
                size: meta.len(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn archives_continue_in_parts_and_a_demo_cap_deletes_only_the_oldest_demo_files() {
        let dir = tempfile::tempdir().unwrap();
        let day1 = 1_764_000_000_000; // 2025-11-24
        let line = vec![b'x'; 60];
        let one = std::slice::from_ref(&line);
        // Parts of 100 bytes: two 61-byte lines fill a part.
        for _ in 0..5 {
            append_parts(dir.path(), day1, one, None, 100).unwrap();
        }
        assert_eq!(
            names(dir.path()),
            [
                "tasks-2025-11-24.2.jsonl",
                "tasks-2025-11-24.3.jsonl",
                "tasks-2025-11-24.jsonl"
            ]
        );
        // Demo traffic (a cap) writes its own files, and its cap counts and deletes only
        // those: real archives and anything else named like one stay, whatever their size.
        for stray in [
            "notes.txt",
            "tasks-!important.jsonl",
            "tasks-0000000000.jsonl",
            "demo-tasks-2025-13-01.jsonl",
        ] {
            std::fs::write(dir.path().join(stray), vec![b'x'; 500]).unwrap();
        }
        for _ in 0..4 {
            append_parts(dir.path(), day1, one, Some(200), 100).unwrap();
        }
        let next_day = day1 + 86_400_000;
        let written = append_parts(dir.path(), next_day, one, Some(200), 100).unwrap();
        assert_eq!(written, dir.path().join("demo-tasks-2025-11-25.jsonl"));
        assert_eq!(
            names(dir.path()),
            [
                "demo-tasks-2025-11-24.2.jsonl",
                "demo-tasks-2025-11-25.jsonl",
                "demo-tasks-2025-13-01.jsonl",
                "notes.txt",
                "tasks-!important.jsonl",
                "tasks-0000000000.jsonl",
                "tasks-2025-11-24.2.jsonl",
                "tasks-2025-11-24.3.jsonl",
                "tasks-2025-11-24.jsonl",
            ]
        );
    }
}
