//! Command-line interface: clap definitions, the process edge (umask, logging, exit codes,
//! output errors) and one function per command in `commands`. Library calls only; printing
//! happens here, at the edge, through `say!`, which turns a closed pipe or a full disk into
//! an error instead of a panic.

mod audit;
mod commands;
mod gdpr;
mod output;
mod report;
mod screencast;
mod session;
mod store_copy;

use crate::auth::Identity;
use crate::engine::{Engine, EngineConfig};
use crate::handlers::Registry;
use crate::model::TaskState;
use crate::store::{Durability, SledStore, Store};
use crate::workflow::{Catalog, Source, WorkflowError};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Writes one line to standard output and returns from the calling function with an error if
/// it cannot be written (see `main` for how a broken pipe ends).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))?
    };
}
pub(crate) use say;

use crate::engine::retention::Retention;
use crate::engine::DEFAULT_MAX_CONTEXT_BYTES;

#[derive(Debug, Parser)]
#[command(
    name = "taskdeck",
    version,
    about = "A terminal operations console with an embedded, durable DAG workflow engine"
)]
pub struct Cli {
    /// Data directory (store, logs, keys; created 0700). Default: the platform data directory, e.g. ~/.local/share/taskdeck.
    #[arg(long, global = true, env = "TASKDECK_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Extra folder (or file) of workflow YAML, loaded beside the bundled workflows. Repeatable.
    #[arg(long = "workflows", global = true, value_name = "DIR")]
    pub workflows: Vec<PathBuf>,
    /// Console: hide and refuse every key and command that changes tasks (submit, retry, cancel, approve, deny); the header says so. Automatic for a viewer's token.
    #[arg(long, global = true, env = "TASKDECK_READ_ONLY")]
    pub read_only: bool,
    /// The permission policy (roles → permissions, sensitive workflows, step-up window), replacing the bundled workflows/policy.yaml.
    #[arg(long, global = true, env = "TASKDECK_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// An identity provider's public keys (a JWKS JSON file): its RS256/ES256 tokens are accepted beside local ones.
    #[arg(long, global = true, env = "TASKDECK_JWKS", value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    /// The `iss` the identity provider's tokens must carry (with --jwks).
    #[arg(long, global = true, env = "TASKDECK_JWT_ISSUER", value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// The `aud` the identity provider's tokens must include (with --jwks).
    #[arg(long, global = true, env = "TASKDECK_JWT_AUDIENCE", value_name = "AUD")]
    pub jwt_audience: Option<String>,
    /// The claim of the identity provider's tokens that holds the team.
    #[arg(long, global = true, default_value = "team", value_name = "CLAIM")]
    pub jwt_team_claim: String,
    /// The claim of the identity provider's tokens that holds the role (viewer, operator, manager, admin, monitor).
    #[arg(long, global = true, default_value = "role", value_name = "CLAIM")]
    pub jwt_role_claim: String,
    /// Where tasks are stored: empty for the embedded sled store in the data directory (the default), or a PostgreSQL URL `postgres://USER:PASSWORD@HOST:PORT/DATABASE[?schema=NAME]` (schema `taskdeck` by default; created and migrated at start). Keys and logs stay in the data directory either way; with PostgreSQL the simulated services keep their records in the store, shared by every engine on it. Pass the URL in the variable rather than on the command line, which every local user can read.
    #[arg(
        long,
        global = true,
        env = "TASKDECK_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,
    /// When a transition is on disk: `immediate` (on stable storage, fdatasync'd, before it is acknowledged) or `relaxed` (written every 500 ms; for demos).
    #[arg(long, global = true, value_enum, default_value_t = Durability::Immediate, env = "TASKDECK_DURABILITY")]
    pub durability: Durability,
    /// Most steps running at once.
    #[arg(long, global = true, default_value_t = 64, value_name = "N")]
    pub concurrency: usize,
    /// Export traces (OTLP over HTTP/protobuf) to this collector, e.g. http://127.0.0.1:4318; `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the service.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// How the log file (DATA/logs/taskdeck.log) is written: `text`, or `json` (one object per line, with the task, step and correlation id as fields).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TASKDECK_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Largest task context accepted, in bytes of JSON.
    #[arg(long, global = true, default_value_t = DEFAULT_MAX_CONTEXT_BYTES, env = "TASKDECK_MAX_CONTEXT_BYTES", value_name = "BYTES")]
    pub max_context_bytes: usize,
    /// Act as the operator this token names (`taskdeck token issue`); without one, the local user as admin. Prefer the TASKDECK_TOKEN variable: a flag is visible to other users in `ps`.
    #[arg(
        long,
        global = true,
        env = "TASKDECK_TOKEN",
        value_name = "JWT",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Talk to the taskdeck server at this URL (e.g. http://127.0.0.1:7420) instead of opening the data directory. Without it, commands connect by themselves when another taskdeck process holds the data directory.
    #[arg(long, global = true, env = "TASKDECK_URL", value_name = "URL")]
    pub connect: Option<String>,
    /// A PEM CA certificate to trust when connecting over HTTPS (a self-signed server).
    #[arg(long, global = true, env = "TASKDECK_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Where the API listens (serve, run, and the console when it runs the engine). Default 127.0.0.1:7420; the console and `run` take a free port when that one is busy.
    #[arg(long, global = true, env = "TASKDECK_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on an address other than loopback (only behind something that terminates TLS).
    #[arg(long, global = true)]
    pub insecure_http: bool,
    /// Largest API request body, in bytes.
    #[arg(long, global = true, default_value_t = crate::api::DEFAULT_MAX_BODY_BYTES, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// API requests per second allowed per identity (bursts of twice that); 0 for no limit.
    #[arg(long, global = true, default_value_t = crate::api::DEFAULT_RATE_LIMIT, value_name = "N")]
    pub rate_limit: u32,
    /// Archive then remove finished tasks whose last change is older than this (e.g. 30d, 12h);
    /// default: keep everything (`--demo` and `demo` keep 10 minutes or 2,000 finished tasks).
    #[arg(long, global = true, value_name = "AGE", value_parser = parse_age, env = "TASKDECK_RETAIN")]
    pub retain: Option<std::time::Duration>,
    /// Where retention and `prune` archive removed tasks (JSON Lines). Default: DATA/archive.
    #[arg(long, global = true, value_name = "DIR", env = "TASKDECK_ARCHIVE_DIR")]
    pub archive_dir: Option<PathBuf>,
    /// Run the console, `run` or `demo` without serving the API.
    #[arg(long, global = true)]
    pub no_api: bool,
    /// Console theme: dark, light, high-contrast, screencast, or a path to a theme file.
    #[arg(long, value_name = "NAME", env = "TASKDECK_THEME", default_value = crate::console::theme::DEFAULT)]
    pub theme: String,
    /// Run demo traffic inside the console (live work, retries and failures within seconds).
    #[arg(long)]
    pub demo: bool,
    /// Record the console session as an asciinema v2 file.
    #[arg(long, value_name = "FILE.cast")]
    pub record: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow files; with no PATH, the whole loaded catalog.
    Validate {
        /// Workflow files or folders (searched for *.yaml and *.yml).
        paths: Vec<PathBuf>,
    },
    /// List the workflows in the catalog.
    Workflows,
    /// Play a screencast script (`screencasts/*.tape`) against a fresh temporary data
    /// directory on a virtual clock and write an asciicast v2 recording (`asciinema play`);
    /// the same tape gives the same recording, byte for byte.
    Screencast {
        /// The tape to play.
        tape: PathBuf,
        /// Where the recording goes (default: the tape's path with `.cast`).
        #[arg(short, long, value_name = "FILE.cast")]
        output: Option<PathBuf>,
        /// Also print the last frame as text (to check a tape while writing it).
        #[arg(long)]
        last_frame: bool,
    },
    /// Create a task from NS/NAME[@VERSION].
    Submit {
        /// The workflow: NAMESPACE/NAME (latest version) or NAMESPACE/NAME@VERSION (with --batch: for lines that name none).
        #[arg(required_unless_present = "batch")]
        workflow: Option<String>,
        /// Create many tasks from a JSON Lines file: each line a context, or {"workflow": …, "context": …}; each line is checked on its own and reported (`-` reads stdin).
        #[arg(long, value_name = "FILE.jsonl", conflicts_with_all = ["context", "context_file", "wait"])]
        batch: Option<PathBuf>,
        /// The task context as JSON.
        #[arg(long, conflicts_with = "context_file")]
        context: Option<String>,
        /// Read the task context from a JSON file.
        #[arg(long, value_name = "FILE")]
        context_file: Option<PathBuf>,
        /// Run the engine here until the task finishes or waits on a person; exit 0 if it completed, 2 otherwise.
        #[arg(long)]
        wait: bool,
        /// Print the task as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the engine and the HTTP API with no terminal UI (SIGTERM or Ctrl-C stops it).
    Serve,
    /// Run the engine headless (serving the API), resuming unfinished tasks (Ctrl-C stops it).
    Run {
        /// Exit once no task can make progress.
        #[arg(long)]
        until_idle: bool,
        /// Also serve /metrics (only) at this address, e.g. 127.0.0.1:9464: for a scraper when the API is off (--no-api) or elsewhere. Same tokens as /metrics (admin or monitor).
        #[arg(long, value_name = "ADDR", env = "TASKDECK_METRICS_LISTEN")]
        metrics_listen: Option<String>,
    },
    /// Submit a steady, seeded mix of the blog workflows with injected faults, and run them.
    Demo {
        /// Tasks per second, from 0.01 to 10000.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// How often tasks meet faults: `low` (recoverable, ~1 in 10) or `high` (~4 in 10, some permanent).
        #[arg(long, value_enum, default_value_t = crate::demo::FaultLevel::Low)]
        faults: crate::demo::FaultLevel,
        /// The same seed submits the same tasks.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// How long to submit, e.g. 30s or 2m; without it, until Ctrl-C.
        #[arg(long, value_parser = crate::demo::parse_duration)]
        duration: Option<Duration>,
    },
    /// Signed operator identities.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit trail: check its hash chain, export its entries (admins; the engine must not
    /// be running elsewhere on this data directory).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// A data subject's rights (GDPR): export what is stored about them, or erase it (needs
    /// `gdpr:manage`; the engine must not be running elsewhere on this data directory).
    #[command(subcommand)]
    Gdpr(GdprCommand),
    /// Compliance evidence computed from the audit trail and the configuration.
    #[command(subcommand)]
    Report(ReportCommand),
    /// The store itself: copy it between sled (a data directory) and PostgreSQL (admins).
    #[command(subcommand)]
    Store(StoreCommand),
    /// List the steps waiting for a person's decision (requests past their deadline are not listed).
    Approvals {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a step waiting for approval.
    Approve {
        /// The task: its id, a prefix, or the short id shown in tables.
        task: String,
        /// The step waiting for approval.
        step: String,
        /// A note kept with the approval.
        #[arg(long)]
        note: Option<String>,
    },
    /// Deny a step waiting for approval (a reason is required).
    Deny {
        /// The task: its id, a prefix, or the short id shown in tables.
        task: String,
        /// The step waiting for approval.
        step: String,
        /// Why, kept with the denial and shown to the requester.
        #[arg(long)]
        reason: String,
    },
    /// List tasks.
    Tasks {
        /// Only tasks of this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only tasks in this state: pending, in_progress, complete, error, cancelled, resolved_manually.
        #[arg(long)]
        state: Option<TaskState>,
        /// Only tasks of this workflow: NS/NAME or NS/NAME@VERSION.
        #[arg(long, value_name = "NS/NAME")]
        workflow: Option<String>,
        /// Only tasks created within this long, e.g. 30m, 2h, 7d.
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        since: Option<std::time::Duration>,
        /// Words that must all match: a task id or its last 8 characters, a workflow, a state,
        /// or a ticket, customer, order or correlation id (e.g. `--search "TICKET-98765 error"`).
        #[arg(long, value_name = "WORDS")]
        search: Option<String>,
        /// Most tasks to list, newest first.
        #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
        /// Every matching task, page by page (printed as read, never held in memory at once).
        #[arg(long, conflicts_with = "limit")]
        all: bool,
        /// Continue a listing where the last one stopped (the cursor it printed).
        #[arg(long, value_name = "CURSOR")]
        cursor: Option<String>,
        /// Print the list as JSON (an array, streamed as it is read).
        #[arg(long)]
        json: bool,
    },
    /// Archive then remove finished tasks (complete, error, cancelled, resolved) last changed
    /// before a date; the engine must not be running elsewhere on this data directory.
    Prune {
        /// A date (2026-11-01, UTC), a time (RFC 3339), or an age (30d, 12h).
        #[arg(long, value_name = "DATE", value_parser = parse_before)]
        before: Before,
        /// List what would go, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show one task with its steps, results and transitions.
    Show {
        /// The task: its id, a prefix, or the short id shown in tables.
        task: String,
        /// Print the task and its transitions as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a failed task's failed steps a fresh attempt budget (a denied approval: managers only).
    Retry {
        /// The task: its id, a prefix, or the short id shown in tables.
        task: String,
        /// Why, kept in the transition log.
        #[arg(long, default_value = "operator retry")]
        reason: String,
    },
    /// Start a step waiting out its retry backoff now (the attempt the timer would start), recorded with who and why.
    RetryNow {
        /// The task: its id, a prefix, or the short id shown in tables.
        task: String,
        /// The step waiting for its retry.
        step: String,
        /// Why, kept in the transition log.
        #[arg(long, default_value = "retry now")]
        reason: String,
    },
    /// Cancel a task, and the unfinished tasks it delegated to.
    Cancel {
        /// The task: its id, a prefix, or the short id shown in tables.
        task: String,
        /// Why, kept in the transition log.
        #[arg(long, default_value = "cancelled by operator")]
        reason: String,
    },
    /// Complete a step with results given by hand: a step in error, or a pending step whose parents are complete; never an approval gate or a step that feeds one.
    Resolve {
        /// The task: its id, a prefix, or the short id shown in tables.
        task: String,
        /// The step to resolve.
        step: String,
        /// The step's results as JSON.
        #[arg(long)]
        results: String,
        /// Why, kept in the transition log.
        #[arg(long, default_value = "resolved by operator")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every entry's hash and link and the latest signed checkpoint: prints `intact` (exit
    /// 0) or the first bad entry and why — edited, deleted, reordered, truncated, bad signature
    /// (exit 1).
    Verify {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the entries recorded in a period, oldest first.
    Export {
        /// From this date (2026-11-01, UTC), time (RFC 3339) or age (7d); default: the first entry.
        #[arg(long, value_name = "DATE", value_parser = parse_before)]
        from: Option<Before>,
        /// Before this date, time or age; default: now.
        #[arg(long, value_name = "DATE", value_parser = parse_before)]
        to: Option<Before>,
        /// `jsonl` (one entry per line, as stored, hashes included) or `csv`.
        #[arg(long, default_value = "jsonl")]
        format: ExportFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy every task, transition, event, data subject and journal entry into an empty store
    /// and verify the copy (tasks read back equal, counts, the audit chain intact with the same
    /// head). Both stores are opened here, so no engine may run on either. Admins.
    Copy {
        /// The store to copy: a data directory (its sled store) or a postgres:// URL (better in `TASKDECK_COPY_FROM`: a command line is visible to every local user).
        #[arg(
            long,
            value_name = "DIR_OR_URL",
            env = "TASKDECK_COPY_FROM",
            hide_env_values = true
        )]
        from: String,
        /// An empty store to copy into: a data directory (a new sled store is made) or a postgres:// URL (schema made and migrated).
        #[arg(
            long,
            value_name = "DIR_OR_URL",
            env = "TASKDECK_COPY_TO",
            hide_env_values = true
        )]
        to: String,
        /// Print what was copied as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// SOC 2 controls (CC6.1, CC6.2, CC6.3, CC7.2, CC8.1, audit integrity, encryption coverage,
    /// approvals) computed for a period; `audit:read` (admins); opens the store here.
    Soc2 {
        /// From this date (2026-11-01, UTC), time (RFC 3339) or age (7d); default: the first entry.
        #[arg(long, value_name = "DATE", value_parser = parse_before)]
        from: Option<Before>,
        /// Before this date, time or age; default: now.
        #[arg(long, value_name = "DATE", value_parser = parse_before)]
        to: Option<Before>,
        /// `md` (a document) or `json`.
        #[arg(long, default_value = "md")]
        format: ReportFormat,
    },
}

/// `report soc2 --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Md,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum GdprCommand {
    /// Print, as JSON, every task, step result and audit entry about a person, decrypted, with
    /// data categories, legal basis and retention period.
    Export {
        /// Their email or customer id, as their tasks hold it, or their subject id.
        #[arg(long)]
        subject: String,
    },
    /// Crypto-shred a person's data key: their values read `[ERASED]` everywhere from now on
    /// (the audit chain still verifies). Refused while one of their tasks is unfinished.
    Erase {
        /// Their email or customer id, as their tasks hold it, or their subject id.
        #[arg(long)]
        subject: String,
    },
}

/// `audit export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Sign a token (HS256, with this data directory's key) and print it.
    Issue {
        /// Who the token names: 1-64 letters, digits, `_`, `-`, `.` or `@`.
        #[arg(long)]
        sub: String,
        /// Their team, which is also the namespace they work in.
        #[arg(long)]
        team: String,
        /// viewer, operator (or agent), manager, admin, or monitor (reads /metrics and nothing else: for a Prometheus scraper).
        #[arg(long)]
        role: crate::auth::Role,
        /// Lifetime, e.g. 8h, 30m; at most 720h (30 days).
        #[arg(long, default_value = "8h", value_parser = crate::demo::parse_duration)]
        ttl: Duration,
        /// The holder passed multi-factor authentication now (the issuer checked it): the token
        /// carries `amr: ["pwd", "mfa"]` and `auth_time`, which sensitive workflows need within 30 minutes (the policy's step-up window).
        #[arg(long)]
        mfa: bool,
    },
    /// Replace the signing key with a new one; tokens signed by the previous key stay valid until
    /// they expire (the key before that is dropped). Journaled; stop a running `serve` first.
    RotateKey,
    /// Show whom a token names, until when, and check it.
    Show {
        /// The token; without it, the one in TASKDECK_TOKEN (which keeps it out of `ps`).
        token: Option<String>,
    },
}

/// Exit codes: 0 success (and a closed output pipe), 1 error, 2 a waited-for task did not
/// complete.
pub fn main() -> i32 {
    // Everything Taskdeck writes (store, keys, logs) is for its user only. Set before any
    // thread starts; umask is process-wide.
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    let cli = Cli::parse();
    // Checking workflow files touches no data: no data directory is created for them.
    let needs_data = !matches!(
        cli.command,
        Some(Command::Validate { .. } | Command::Workflows | Command::Screencast { .. })
    );
    let data = if needs_data {
        match data_dir(&cli) {
            Ok(d) => d,
            Err(e) => return report(&e),
        }
    } else {
        PathBuf::new()
    };
    let _log = match needs_data.then(|| crate::logging::init(&data, cli.log_format == LogFormat::Json)) {
        Some(Ok(guard)) => Some(guard),
        Some(Err(why)) => {
            let _ = writeln!(std::io::stderr(), "warning: {why}; running without a log file");
            None
        }
        None => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return report(&anyhow!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(commands::dispatch(cli, data)) {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

/// Prints an error once, on stderr, and gives the exit code. A closed output pipe (`| head`)
/// ends quietly with 0: the reader has what it wanted.
fn report(e: &anyhow::Error) -> i32 {
    if is_broken_pipe(e) {
        return 0;
    }
    // Printed for the user, not logged: a refusal quotes what it refused (a context's
    // address, say), and the log never holds a context's values unfiltered.
    let _ = writeln!(std::io::stderr(), "error: {}", visible(&format!("{e:#}")));
    1
}

/// Whether `e` comes from writing to a pipe whose reader has gone.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// The line `say!` writes, with control characters made visible (see `visible`). Errors name
/// what failed, so `> /dev/full` reports a full disk.
/// Writes `text` to stdout as it is (no newline added), for output streamed in pieces.
pub(crate) fn write_raw(text: &str) -> Result<()> {
    let text = visible(text);
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write the output")
}

pub(crate) fn write_line(args: std::fmt::Arguments<'_>) -> Result<()> {
    let text = visible(&args.to_string());
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .context("cannot write the output")
}

/// Characters that must not reach a terminal raw from input: controls, and the invisible
/// format characters that reorder, hide or fake text (bidi marks, overrides and isolates,
/// zero-width and filler characters, line separators, tags).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{115f}'..='\u{1160}' | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{feff}' | '\u{ffa0}'
            | '\u{fff9}'..='\u{fffb}' | '\u{e0000}'..='\u{e007f}')
}

fn escape(text: &str, keep: &[char]) -> String {
    if !text.chars().any(|c| hidden(c) && !keep.contains(&c)) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if hidden(c) && !keep.contains(&c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Text for a terminal: hidden characters (see `hidden`) other than our own newlines and tabs
/// become `\u{1b}`-style escapes. Every line `say!` writes passes here. JSON output is
/// unchanged: serde_json escapes controls itself.
pub(crate) fn visible(text: &str) -> String {
    escape(text, &['\n', '\t'])
}

/// A value from input inside one line of output (a refund reason, a step's error): newlines
/// and tabs are escaped too, so a reason can never forge a row of `approvals` or `show`.
pub(crate) fn one_line(text: &str) -> String {
    escape(text, &[])
}

fn data_dir(cli: &Cli) -> Result<PathBuf> {
    let dir = match &cli.data {
        Some(d) => d.clone(),
        None => dirs::data_dir()
            .ok_or_else(|| anyhow!("no platform data directory; pass --data DIR or set TASKDECK_DATA"))?
            .join("taskdeck"),
    };
    let existed = dir.exists();
    crate::fsutil::create_private_dir(&dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    // Earlier versions created these 0755/0644: close them to other users. The folder itself
    // only when it is clearly ours (it holds a store), never e.g. a home directory.
    // `auth/`, `audit/` and `keys/` are left alone: we never wrote a key other users could read, so such a key was
    // changed by someone else and must be refused, not quietly tightened and used.
    if existed && dir.join("store").is_dir() {
        crate::fsutil::make_private_except(&dir, &["auth", "audit", "keys"]);
    }
    Ok(dir)
}

/// Whom `token` names: checked against this data directory's keys (current and previous) or
/// the identity provider's JWKS (`--jwks`).
fn verify_token(cli: &Cli, data: &Path, token: &str) -> Result<Identity> {
    let key = crate::auth::token::signing_key(data)?;
    let previous = crate::auth::token::previous_key(data)?;
    let idp = idp(cli)?;
    Ok(crate::auth::token::verify_any(
        &key,
        previous.as_deref(),
        idp.as_deref(),
        token,
    )?)
}

/// The identity provider `--jwks` names, if any.
fn idp(cli: &Cli) -> Result<Option<Arc<crate::auth::idp::Idp>>> {
    let Some(path) = &cli.jwks else {
        return Ok(None);
    };
    let (Some(issuer), Some(audience)) = (&cli.jwt_issuer, &cli.jwt_audience) else {
        bail!("--jwks needs --jwt-issuer (the provider's `iss`) and --jwt-audience (the `aud` its tokens carry for this Taskdeck)");
    };
    let idp = crate::auth::idp::Idp::load(path, issuer, audience, &cli.jwt_team_claim, &cli.jwt_role_claim)
        .map_err(|e| anyhow!(e))?;
    Ok(Some(Arc::new(idp)))
}

/// Who is acting: the token's identity, or the local user as admin.
fn identity(cli: &Cli, data: &Path) -> Result<Identity> {
    match &cli.token {
        Some(token) => verify_token(cli, data, token),
        None => Ok(Identity::local(&crate::engine::default_operator()?)),
    }
}

fn catalog_sources(cli: &Cli) -> Vec<Source> {
    let mut sources = vec![Source::Bundled];
    sources.extend(cli.workflows.iter().cloned().map(Source::Path));
    sources.extend(cli.policy.iter().cloned().map(Source::Policy));
    sources
}

fn load_catalog(cli: &Cli, registry: &Registry) -> Result<Catalog> {
    Catalog::load(&catalog_sources(cli), &|h| registry.contains(h)).map_err(workflow_errors)
}

fn workflow_errors(errors: Vec<WorkflowError>) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    anyhow!("invalid workflows:\n{}", lines.join("\n"))
}

/// Workflow files define gates, grants and versions, so loading extra ones (`--workflows`)
/// is an admin's change, not something an operator's token may do for itself.
fn require_admin_for_workflow_files(cli: &Cli, who: &Identity) -> Result<()> {
    if cli.token.is_some()
        && (!cli.workflows.is_empty() || cli.policy.is_some())
        && who.role != crate::auth::Role::Admin
    {
        bail!(
            "{} may not load workflow files or a policy (--workflows, --policy): they define approval gates, grants and permissions; an admin deploys them",
            who.describe()
        );
    }
    Ok(())
}

/// `prune --before`: a moment, or an age back from now.
#[derive(Debug, Clone, Copy)]
pub enum Before {
    At(crate::model::Timestamp),
    Ago(std::time::Duration),
}

fn parse_before(text: &str) -> Result<Before, String> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Before::At(t.timestamp_millis()));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let at = d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis());
        return at
            .map(Before::At)
            .ok_or_else(|| format!("`{text}` is not a date"));
    }
    parse_age(text).map(Before::Ago).map_err(|_| {
        format!("`{text}` is not a date (2026-11-01), a time (2026-11-01T12:00:00Z) or an age with its unit (30d, 12h)")
    })
}

/// An age for what removes data (`--retain`, `prune --before`): a unit is required, so a bare
/// `30` or `2026` is never taken for seconds.
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    if text.trim().chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("`{text}` needs a unit: 30d, 12h, 45m or 90s"));
    }
    crate::demo::parse_duration(text)
}

/// What the running engine keeps: `--retain`, else the demo's 10 minutes or 2,000 finished
/// tasks for `--demo` and `demo`, else everything (`None`); archives go to `--archive-dir` or
/// `data/archive`.
pub(crate) fn retention(cli: &Cli, data: &Path) -> Option<Retention> {
    let archive_dir = cli.archive_dir.clone().unwrap_or_else(|| data.join("archive"));
    let demo = cli.demo || matches!(cli.command, Some(Command::Demo { .. }));
    match cli.retain {
        Some(age) => Some(Retention {
            max_age: Some(age),
            max_finished: None,
            archive_dir,
            archive_cap: None,
        }),
        None if demo => Some(Retention::demo(archive_dir)),
        None => None,
    }
}

struct Opened {
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    registry: Registry,
    identity: Identity,
    /// The data directory's lock when the store is elsewhere (held while this lives).
    lock: Option<std::fs::File>,
}

/// The handlers the CLI knows (for validating workflows): built-ins plus the blog workflows,
/// over simulated services that keep nothing. Commands that run steps use `open`'s.
fn registry() -> Registry {
    Registry::standard(Arc::new(crate::services::Services::new(true)))
}

/// The data directory's lock (`DATA/taskdeck.lock`), held by whichever process opens its
/// store. Errors: `StoreError::Locked` (naming the holder) when another process holds it.
fn lock_data_dir(data: &Path) -> Result<std::fs::File> {
    match crate::fsutil::lock_exclusive(&data.join("taskdeck.lock")) {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(crate::store::data_dir_locked(data).into()),
        Err(e) => bail!("cannot lock the data directory {}: {e}", data.display()),
    }
}

/// The PostgreSQL URL `--store` names, if any (empty is the default sled store). Errors: a
/// value that is neither empty nor a PostgreSQL URL.
fn postgres_store(cli: &Cli) -> Result<Option<&str>> {
    match cli.store.as_deref().map(str::trim) {
        None | Some("") | Some("sled") => Ok(None),
        Some(url) if crate::store::is_postgres_url(url) => Ok(Some(url)),
        Some(_) => bail!(
            "--store (TASKDECK_STORE): expected a PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE[?schema=NAME]), or nothing for the sled store in the data directory"
        ),
    }
}

async fn open(cli: &Cli, data: &Path) -> Result<Opened> {
    let identity = identity(cli, data)?;
    require_admin_for_workflow_files(cli, &identity)?;
    let catalog = Arc::new(load_catalog(cli, &registry())?);
    let holder = match &cli.command {
        None => "console".to_string(),
        Some(c) => format!("{c:?}")
            .split([' ', '(', '{'])
            .next()
            .unwrap_or("")
            .to_lowercase(),
    };
    let (store, services, lock): (Arc<dyn Store>, crate::services::Backing, Option<std::fs::File>) =
        match postgres_store(cli)? {
            Some(url) => {
                // The data directory's lock first: a second process on it is told who holds it
                // (and connects to its API) before it joins the engines on the database.
                let lock = lock_data_dir(data)?;
                let pg = crate::store::PgStore::open(url, cli.durability, &holder).await?;
                // Who holds this data directory, as the sled store says it (the next process
                // finds the API this one serves through it).
                let _ = crate::fsutil::replace_private(
                    &data.join("taskdeck.pid"),
                    format!("taskdeck process {} ({holder})\n", std::process::id()).as_bytes(),
                );
                // The simulated systems' records are in the store's schema: every engine on it
                // talks to the same "remote systems".
                let services = crate::services::Backing::postgres(pg.shared_services()?);
                (Arc::new(pg), services, Some(lock))
            }
            None => {
                // The same lock as a PostgreSQL-backed process takes, so a command without
                // `--store` on a directory such a process holds connects to it (rather than
                // make an empty sled store beside it); sled then takes its own.
                let lock = lock_data_dir(data)?;
                // Beside the sled store: they stand for remote services that outlive this process.
                let sled = SledStore::open(data, cli.durability, &holder)?;
                let services = crate::services::Backing::sled(sled.open_services(data)?);
                (Arc::new(sled), services, Some(lock))
            }
        };
    let services = crate::services::Services::durable(true, &services);
    let registry = Registry::standard(Arc::new(services));
    Ok(Opened {
        store,
        catalog,
        registry,
        identity,
        lock,
    })
}

async fn engine(cli: &Cli, data: &Path, ctx: &Opened, dispatch: bool) -> Result<Engine> {
    let config = EngineConfig {
        concurrency: cli.concurrency.max(1),
        dispatch,
        max_context_bytes: cli.max_context_bytes,
        retention: dispatch.then(|| retention(cli, data)).flatten(),
        operator: ctx.identity.sub.clone(),
        // Engines that run steps sign the journal's head (every 30 s and when they stop); a
        // short command adds a few entries and leaves them to the next, so it holds the data
        // directory no longer than it must.
        audit_keys: dispatch.then(|| data.to_path_buf()),
        privacy: Some(crate::privacy::KeySource::from_env(data)),
        // Every engine traces, a one-shot command's too: an approval, retry or cancel made
        // without a server ends spans that would otherwise never be sent.
        // An empty endpoint is unset (OpenTelemetry's rule for its variables).
        tracer: match cli
            .otlp_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            Some(endpoint) => Some(Arc::new(
                crate::telemetry::traces::Tracer::start(endpoint).map_err(|e| anyhow!(e))?,
            )),
            None => None,
        },
        ..EngineConfig::default()
    };
    Ok(Engine::start(
        config,
        ctx.store.clone(),
        ctx.catalog.clone(),
        ctx.registry.clone(),
    )
    .await?)
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--durability` takes the store's modes by name (the store itself knows nothing of clap).
impl clap::ValueEnum for Durability {
    fn value_variants<'a>() -> &'a [Self] {
        &[Durability::Immediate, Durability::Relaxed]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hidden_characters_become_visible_and_plain_text_is_untouched() {
        assert_eq!(super::visible("refund \u{1b}[2J ok"), "refund \\u{1b}[2J ok");
        assert_eq!(super::visible("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(super::visible("plain\ttext\nand ✔"), "plain\ttext\nand ✔");
        assert_eq!(super::one_line("dup\nfake row"), "dup\\u{a}fake row");
        for c in ['\u{61c}', '\u{2028}', '\u{ad}', '\u{e0041}', '\u{3164}'] {
            assert_eq!(super::visible(&c.to_string()), c.escape_unicode().to_string());
        }
    }
}
