//! Logs go to a daily-rolling file in the data directory: the terminal belongs to the console
//! and to command output, so the library never prints.

use std::path::Path;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Starts file logging under `<data>/logs/`. Keep the guard alive until exit so buffered
/// lines are written. `TASKDECK_LOG` sets the filter (default `info`).
pub fn init(data_dir: &Path) -> Option<WorkerGuard> {
    let dir = data_dir.join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    let appender = tracing_appender::rolling::daily(dir, "taskdeck.log");
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = EnvFilter::try_from_env("TASKDECK_LOG").unwrap_or_else(|_| EnvFilter::new("info,sled=warn"));
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .ok()?;
    Some(guard)
}
