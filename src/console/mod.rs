//! The operations console: a ratatui front end over an engine, in this process or remote.
//!
//! Three parts run side by side on the tokio runtime: the client (`client::Client`, over the
//! embedded engine or the HTTP API); the feeder, which turns events into view-model updates
//! (re-reading the tasks they touched); and this loop, which applies updates and keys to the
//! `App` and redraws when something changed. Rendering reads only the view model, so it never
//! waits on the engine or the network.

pub mod app;
pub mod dag;
mod feeder;
pub mod input;
pub mod inspect;
pub mod keymap;
pub mod model;
pub mod record;
pub mod script;
pub mod tape;
pub mod theme;
pub mod views;

use crate::client::Client;
use crate::demo::{FaultLevel, Traffic};
use app::{Action, App, HeaderInfo, Update};
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use crossterm::{cursor, execute, terminal};
use futures::StreamExt;
use model::{ViewModel, WorkflowEntry};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::io::{self, Stdout, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use theme::Theme;
use tokio::sync::{mpsc, watch};

pub struct Options {
    pub theme: Theme,
    /// Run the demo traffic generator inside the console, submitting through this client.
    pub demo: Option<Arc<dyn Client>>,
    /// Write the session as an asciinema v2 recording.
    pub record: Option<PathBuf>,
    pub info: HeaderInfo,
}

/// What the terminal is written through: the terminal itself, or a recorder in front of it.
enum Output {
    Plain(Stdout),
    Recorded(record::Recorder<Stdout>),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Plain(o) => o.write(buf),
            Output::Recorded(r) => r.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Plain(o) => o.flush(),
            Output::Recorded(r) => r.flush(),
        }
    }
}

/// Puts the terminal back as it was: on quit, on error (drop) and on panic (hook).
struct Restore;

fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
}

impl Drop for Restore {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The catalog as the namespaces pane lists it.
pub fn workflow_entries(catalog: &crate::workflow::Catalog) -> Vec<WorkflowEntry> {
    let mut out: Vec<WorkflowEntry> = Vec::new();
    for w in catalog.iter() {
        let t = &w.template;
        match out.last_mut() {
            Some(e) if e.namespace == t.namespace && e.name == t.name => {
                e.versions.push(t.version.to_string())
            }
            _ => out.push(WorkflowEntry {
                namespace: t.namespace.clone(),
                name: t.name.clone(),
                versions: vec![t.version.to_string()],
            }),
        }
    }
    out
}

/// Runs the console over `client` (who operates it is the client's identity) until `q` or
/// a termination signal.
pub async fn run(client: Arc<dyn Client>, options: Options) -> io::Result<()> {
    let catalog = client
        .catalog()
        .await
        .map_err(|e| io::Error::other(format!("cannot load the workflows: {e}")))?;
    let (width, height) = terminal::size()?;
    let output = match &options.record {
        Some(path) => Output::Recorded(record::Recorder::create(io::stdout(), path, width, height)?),
        None => Output::Plain(io::stdout()),
    };
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
    terminal::enable_raw_mode()?;
    let _restore = Restore;
    // Buffered, so each frame reaches the terminal (and the recording) in one write at flush
    // instead of thousands of small ones.
    let mut term = Terminal::new(CrosstermBackend::new(io::BufWriter::with_capacity(
        1 << 16,
        output,
    )))?;
    // A fresh alternate screen needs no clear (which would query the cursor position, and
    // not every terminal answers).
    execute!(term.backend_mut(), terminal::EnterAlternateScreen, cursor::Hide)?;

    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let (actions_tx, mut actions) = mpsc::unbounded_channel();
    let (focus_tx, focus_rx) = watch::channel(None);
    let (older_tx, older_rx) = mpsc::unbounded_channel();
    let vm = ViewModel::new(workflow_entries(&catalog));
    let mut app = App::new(vm, options.theme, options.info, catalog, actions_tx);
    app.identity = client.identity().clone();
    app.decide_read_only();
    app.now = client.now();

    let feeder = tokio::spawn(feeder::feed(
        client.clone(),
        updates_tx.clone(),
        focus_rx,
        older_rx,
    ));
    let demo = options.demo.map(|demo| {
        let notices = updates_tx.clone();
        tokio::spawn(async move {
            let mut traffic = Traffic::new(7, FaultLevel::High);
            let mut summary = crate::demo::Summary::default();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                if let Err(e) = crate::demo::submit_next(&*demo, &mut traffic, &mut summary).await {
                    let _ = notices.send(Update::Notice(format!("demo stopped: {e}")));
                    return;
                }
            }
        })
    });

    let mut keys = EventStream::new();
    // A signal (kill, a closed terminal, an external Ctrl-C) ends the loop like `q`, so the
    // terminal is always restored.
    let mut signals = TerminationSignals::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_second = app.now / 1000;
    // At most one frame per FRAME: a burst of updates is drawn once.
    const FRAME: Duration = Duration::from_millis(33);
    let mut last_frame = tokio::time::Instant::now() - FRAME;
    while !app.quit {
        let due = last_frame + FRAME;
        if app.dirty && tokio::time::Instant::now() >= due {
            app.dirty = false;
            last_frame = tokio::time::Instant::now();
            term.draw(|frame| views::draw(frame, &app))?;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(due), if app.dirty => {}
            key = keys.next() => match key {
                Some(Ok(TermEvent::Key(k))) if k.kind != KeyEventKind::Release => app.on_key(k),
                Some(Ok(TermEvent::Resize(w, h))) => {
                    // Playback needs the new size before the frames drawn at it.
                    if let Output::Recorded(r) = term.backend_mut().writer_mut().get_mut() {
                        r.resize(w, h)?;
                    }
                    app.dirty = true;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => break,
            },
            update = updates.recv() => {
                if let Some(u) = update {
                    app.apply(u);
                }
                // Take everything waiting before the next frame.
                while let Ok(u) = updates.try_recv() {
                    app.apply(u);
                }
            }
            action = actions.recv() => {
                if let Some(a) = action {
                    perform(&client, a, &updates_tx, &focus_tx, &older_tx);
                }
            }
            _ = signals.next() => app.quit = true,
            _ = tick.tick() => {
                app.now = client.now();
                let second = app.now / 1000;
                if second != last_second || app.has_countdown() {
                    last_second = second;
                    app.dirty = true;
                }
            }
        }
    }
    feeder.abort();
    if let Some(d) = demo {
        d.abort();
    }
    // Leave the alternate screen through the backend too, so a recording ends as the terminal
    // did (`Restore` then repeats it on the terminal itself, harmlessly).
    execute!(term.backend_mut(), terminal::LeaveAlternateScreen, cursor::Show)?;
    Ok(())
}

/// SIGTERM, SIGHUP, SIGINT and SIGQUIT as one stream (none on other platforms).
struct TerminationSignals {
    #[cfg(unix)]
    signals: Vec<tokio::signal::unix::Signal>,
}

impl TerminationSignals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let kinds = [
                SignalKind::terminate(),
                SignalKind::hangup(),
                SignalKind::interrupt(),
                SignalKind::quit(),
            ];
            TerminationSignals {
                signals: kinds.into_iter().filter_map(|k| signal(k).ok()).collect(),
            }
        }
        #[cfg(not(unix))]
        TerminationSignals {}
    }

    /// Resolves when any of the signals arrives.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            if self.signals.is_empty() {
                return std::future::pending().await;
            }
            let waits = self.signals.iter_mut().map(|s| Box::pin(s.recv()));
            futures::future::select_all(waits).await;
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    }
}

/// Retries or cancels each of `ids` in turn and says how each one went:
/// `retried 2 of 3: 1a2b ok · 3c4d ok · 5e6f: task 5e6f… is complete`.
async fn bulk(client: &dyn Client, ids: Vec<String>, retry: bool) -> String {
    let mut outcomes = Vec::with_capacity(ids.len());
    let mut done = 0;
    for id in &ids {
        let result = if retry {
            client.retry(id, "retried from the console (marked)").await
        } else {
            client.cancel(id, "cancelled from the console (marked)").await
        };
        let short = crate::model::short_id(id);
        outcomes.push(match result {
            Ok(_) => {
                done += 1;
                format!("{short} ok")
            }
            Err(e) => format!("{short}: {}", crate::model::clip(&e.to_string(), 80)),
        });
    }
    format!(
        "{} {done} of {}: {}",
        if retry { "retried" } else { "cancelled" },
        ids.len(),
        outcomes.join(" · ")
    )
}

/// Carries out an action without blocking the loop: client calls run on their own task and
/// report back as updates.
fn perform(
    client: &Arc<dyn Client>,
    action: Action,
    updates: &mpsc::UnboundedSender<Update>,
    focus: &watch::Sender<Option<String>>,
    older: &mpsc::UnboundedSender<()>,
) {
    let (client, updates) = (client.clone(), updates.clone());
    match action {
        Action::Focus(id) => {
            let _ = focus.send(id);
        }
        Action::Older => {
            let _ = older.send(());
        }
        Action::Audit(query) => {
            tokio::spawn(async move {
                let _ = updates.send(match client.audit(&query).await {
                    Ok(entries) => Update::Audit(entries),
                    Err(e) => Update::AuditFailed(e.to_string()),
                });
            });
        }
        Action::Search { serial, query } => {
            tokio::spawn(async move {
                let _ = updates.send(match client.tasks(&query).await {
                    Ok(page) => Update::Found {
                        serial,
                        tasks: page.tasks,
                        next: page.next_cursor,
                    },
                    Err(e) => Update::SearchFailed {
                        serial,
                        why: e.to_string(),
                    },
                });
            });
        }
        Action::Load(id) => {
            tokio::spawn(async move {
                match client.task(&id).await {
                    Ok(detail) => {
                        let _ = updates.send(Update::Tasks(vec![detail.task]));
                        let _ = updates.send(Update::Transitions(id, detail.transitions));
                    }
                    Err(e) => {
                        let _ = updates.send(Update::Notice(format!("cannot open the task: {e}")));
                    }
                }
            });
        }
        Action::Submit { workflow, context } => {
            tokio::spawn(async move {
                let task = crate::client::NewTask { workflow, context };
                let _ = updates.send(match client.submit(task).await {
                    Ok(task) => Update::Submitted(Box::new(task)),
                    Err(e) => Update::Notice(format!("submit failed: {e}")),
                });
            });
        }
        Action::Retry(id) => {
            tokio::spawn(async move {
                if let Err(e) = client.retry(&id, "retried from the console").await {
                    let _ = updates.send(Update::Notice(format!("retry failed: {e}")));
                }
            });
        }
        Action::RetryMany(ids) => {
            tokio::spawn(async move {
                let _ = updates.send(Update::Notice(bulk(&*client, ids, true).await));
            });
        }
        Action::CancelMany(ids) => {
            tokio::spawn(async move {
                let _ = updates.send(Update::Notice(bulk(&*client, ids, false).await));
            });
        }
        Action::DecideMany {
            targets,
            approve,
            note,
        } => {
            tokio::spawn(async move {
                let verb = if approve { "approved" } else { "denied" };
                let mut outcomes = Vec::with_capacity(targets.len());
                let mut done = 0;
                for (task, step) in &targets {
                    let short = crate::model::short_id(task);
                    outcomes.push(match client.decide(task, step, approve, note.clone()).await {
                        Ok(_) => {
                            done += 1;
                            format!("{short} ok")
                        }
                        Err(e) => format!("{short}: {}", crate::model::clip(&e.to_string(), 80)),
                    });
                }
                let _ = updates.send(Update::Notice(format!(
                    "{verb} {done} of {}: {}",
                    targets.len(),
                    outcomes.join(" · ")
                )));
            });
        }
        Action::RetryNow { task, step } => {
            tokio::spawn(async move {
                if let Err(e) = client.retry_now(&task, &step, "retry now from the console").await {
                    let _ = updates.send(Update::Notice(format!("retry now failed: {e}")));
                }
            });
        }
        Action::Decide {
            task,
            step,
            approve,
            note,
        } => {
            tokio::spawn(async move {
                let verb = if approve { "approved" } else { "denied" };
                let _ = updates.send(match client.decide(&task, &step, approve, note).await {
                    Ok(t) => Update::Notice(format!("{verb} {step} of {}", crate::model::short_id(&t.id))),
                    Err(e) => Update::Notice(format!("not {verb}: {e}")),
                });
            });
        }
        Action::Cancel(id) => {
            tokio::spawn(async move {
                let _ = updates.send(match client.cancel(&id, "cancelled from the console").await {
                    Ok(t) => Update::Notice(format!("cancelled {}", crate::model::short_id(&t.id))),
                    Err(e) => Update::Notice(format!("cancel failed: {e}")),
                });
            });
        }
    }
}
