//! Logs go to a file in the data directory that rotates by size: the terminal belongs to the
//! console and to command output, so the library never prints. `taskdeck.log` is cut once it
//! passes `MAX_LOG_BYTES`; the `KEEP_LOGS` newest cut files (`taskdeck.log.1` newest) are kept,
//! so logs never hold more than about (KEEP_LOGS + 1) × 8 MiB however long a demo runs.

use file_rotate::{compression::Compression, suffix::AppendCount, ContentLimit, FileRotate};
use std::path::Path;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// A log file is cut once it passes this many bytes (8 MiB).
pub const MAX_LOG_BYTES: usize = 8 << 20;

/// How many cut log files are kept besides the current one.
pub const KEEP_LOGS: usize = 4;

/// Starts file logging under `<data>/logs/` (folder 0700, files 0600 under the process's
/// umask), as text or, with `json`, one JSON object per line with the event's fields (task,
/// step, correlation id…) at the top level. Keep the guard alive until exit so buffered lines
/// are written. `TASKDECK_LOG` sets the filter (default `info`).
///
/// Errors: the folder or file cannot be created (a read-only or full disk); the caller says
/// so and runs without logs. Never panics.
pub fn init(data_dir: &Path, json: bool) -> Result<WorkerGuard, String> {
    let dir = data_dir.join("logs");
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(format!(
            "{} is a symlink; logs are written only inside the data directory",
            dir.display()
        ));
    }
    crate::fsutil::create_private_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // The appender opens its file by name: a FIFO or link planted there would block or
    // redirect every command. Only regular files may be in the folder.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let odd = entry.file_type().map_or(true, |t| !t.is_file());
            if odd {
                return Err(format!(
                    "{} is not a regular file; remove it to have logs again",
                    entry.path().display()
                ));
            }
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let path = dir.join("taskdeck.log");
    // Fail here, with a message, rather than lose every line silently.
    options
        .open(&path)
        .map_err(|e| format!("cannot write logs in {}: {e}", dir.display()))?;
    let appender = FileRotate::new(
        &path,
        AppendCount::new(KEEP_LOGS),
        ContentLimit::BytesSurpassed(MAX_LOG_BYTES),
        Compression::None,
        Some(options),
    );
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = EnvFilter::try_from_env("TASKDECK_LOG").unwrap_or_else(|_| EnvFilter::new("info,sled=warn"));
    // A second initialisation (tests that call `main` twice) keeps the first subscriber.
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
    Ok(guard)
}
