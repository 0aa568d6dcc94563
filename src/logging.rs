//! Logs go to a daily-rolling file in the data directory: the terminal belongs to the console
//! and to command output, so the library never prints.

use std::path::Path;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;

/// Starts file logging under `<data>/logs/` (folder 0700, files 0600 under the process's
/// umask). Keep the guard alive until exit so buffered lines are written. `TASKDECK_LOG` sets
/// the filter (default `info`).
///
/// Errors: the folder or file cannot be created (a read-only or full disk); the caller says
/// so and runs without logs. Never panics.
pub fn init(data_dir: &Path) -> Result<WorkerGuard, String> {
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
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix("taskdeck.log")
        .build(&dir)
        .map_err(|e| format!("cannot write logs in {}: {e}", dir.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = EnvFilter::try_from_env("TASKDECK_LOG").unwrap_or_else(|_| EnvFilter::new("info,sled=warn"));
    // A second initialisation (tests that call `main` twice) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
    Ok(guard)
}
