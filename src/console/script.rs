//! Playing a tape (`console::tape`) into an asciicast v2 recording: `taskdeck screencast`.
//!
//! Everything runs on one thread on tokio's paused clock, so time is virtual: the engine (with
//! a fixed start, seeded ids and jitter, a fresh temporary data directory and a master key
//! derived from the seed) and one console per operator, each with its own feeder over an
//! in-process client. The player advances virtual time in small steps; tokio moves the clock
//! only when every task is idle, so all that was due has run before a frame is drawn. Frames
//! are the bytes ratatui writes for the shown console, stamped with virtual time: the same
//! tape gives the same recording, byte for byte.

use super::app::{Action, App, HeaderInfo, Update};
use super::tape::{Command, Line};
use super::theme::Theme;
use crate::client::Client;
use crate::model::Timestamp;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::Span;
use ratatui::widgets::Paragraph;
use ratatui::{Terminal, TerminalOptions, Viewport};
use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A recording: the asciicast v2 text and the last frame as plain text (one line per row).
pub struct Recording {
    pub cast: String,
    pub last_frame: String,
    /// Virtual seconds from the first frame to the last.
    pub duration: f64,
}

/// Black Friday 2026, 09:00 UTC: where the virtual clock starts unless the tape says.
pub const DEFAULT_START: Timestamp = 1_795_770_000_000;

/// The seed of ids, jitter and the master key.
const SEED: u64 = 7;

/// Plays `tape` (its text; `name` for errors). Runs its own runtime: call it from a thread
/// that is not in one.
///
/// Errors: the tape does not parse, names a console it did not declare, submits a task the
/// engine refuses, or waits for text that never appears (with the screen at that moment).
pub fn play(tape: &str, name: &str) -> Result<Recording, String> {
    play_until(tape, name, &std::sync::atomic::AtomicBool::new(false))
}

/// The most virtual time one tape may take: a day.
pub const MAX_RECORDING: Duration = Duration::from_secs(86_400);

/// The largest recording: 256 MiB.
pub const MAX_CAST_BYTES: usize = 256 << 20;

/// `play`, stopping with an error (and its temporary data directory removed) soon after
/// `stop` is set (a signal reached `taskdeck screencast`).
pub fn play_until(tape: &str, name: &str, stop: &std::sync::atomic::AtomicBool) -> Result<Recording, String> {
    // Recordings are played elsewhere: colours whatever this terminal's NO_COLOR says.
    crossterm::style::Colored::set_ansi_color_disabled(false);
    let lines = super::tape::parse(tape).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{name}: {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(run(lines, name, stop))
}

/// The settings of a tape (its `Set` lines, which come first).
struct Settings {
    width: u16,
    height: u16,
    theme: Theme,
    read_only: bool,
    title: String,
    start: Timestamp,
}

fn settings(lines: &[Line], name: &str) -> Result<(Settings, usize), String> {
    let mut s = Settings {
        width: 100,
        height: 30,
        theme: Theme::load("screencast").map_err(|e| e.to_string())?,
        read_only: false,
        title: name.to_string(),
        start: DEFAULT_START,
    };
    let mut at = 0;
    for line in lines {
        match &line.command {
            Command::Width(w) => s.width = *w,
            Command::Height(h) => s.height = *h,
            Command::Theme(t) => {
                s.theme = Theme::load(t).map_err(|e| format!("{name}: line {}: {e}", line.number))?
            }
            Command::ReadOnly(on) => s.read_only = *on,
            Command::Title(t) => s.title = t.clone(),
            Command::Start(t) => s.start = *t,
            _ => break,
        }
        at += 1;
    }
    if let Some(late) = lines[at..].iter().find(|l| {
        matches!(
            l.command,
            Command::Width(_)
                | Command::Height(_)
                | Command::Theme(_)
                | Command::ReadOnly(_)
                | Command::Title(_)
                | Command::Start(_)
        )
    }) {
        return Err(format!(
            "{name}: line {}: `Set` lines come first, before the tape does anything",
            late.number
        ));
    }
    Ok((s, at))
}

/// One operator's console: its app and the channels the runner would hold.
struct Console {
    name: String,
    app: App,
    client: Arc<dyn Client>,
    local: Arc<crate::client::Local>,
    updates_tx: mpsc::UnboundedSender<Update>,
    updates: mpsc::UnboundedReceiver<Update>,
    actions: mpsc::UnboundedReceiver<Action>,
    focus: watch::Sender<Option<String>>,
    older: mpsc::UnboundedSender<()>,
    feeder: tokio::task::JoinHandle<()>,
}

/// Where ratatui writes: a buffer the player empties after each frame.
#[derive(Clone, Default)]
struct Bytes(Rc<RefCell<Vec<u8>>>);

impl Write for Bytes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Player<'a> {
    stop: &'a std::sync::atomic::AtomicBool,
    name: String,
    settings: Settings,
    engine: Arc<crate::engine::Engine>,
    catalog: Arc<crate::workflow::Catalog>,
    consoles: Vec<Console>,
    shown: usize,
    term: Terminal<CrosstermBackend<Bytes>>,
    bytes: Bytes,
    cast: String,
    started: tokio::time::Instant,
    note: String,
    last_frame: String,
}

async fn run(
    lines: Vec<Line>,
    name: &str,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Recording, String> {
    let (settings, first) = settings(&lines, name)?;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary data directory: {e}"))?;
    let engine = start_engine(dir.path(), settings.start).await?;
    let catalog = engine.catalog().clone();
    let bytes = Bytes::default();
    let area = Rect::new(0, 0, settings.width, settings.height);
    let term = Terminal::with_options(
        CrosstermBackend::new(bytes.clone()),
        TerminalOptions {
            viewport: Viewport::Fixed(area),
        },
    )
    .map_err(|e| e.to_string())?;
    let header = serde_json::json!({
        "version": 2,
        "width": settings.width,
        "height": settings.height,
        "timestamp": settings.start / 1000,
        "title": settings.title,
        "env": { "TERM": "xterm-256color" },
    });
    let mut player = Player {
        stop,
        name: name.to_string(),
        settings,
        engine: engine.clone(),
        catalog,
        consoles: Vec::new(),
        shown: 0,
        term,
        bytes,
        cast: format!("{header}\n"),
        started: tokio::time::Instant::now(),
        note: String::new(),
        last_frame: String::new(),
    };
    // A clear screen with the cursor hidden, as the console starts.
    player.output("\u{1b}[?25l\u{1b}[2J\u{1b}[H".into());
    let result = player.play(&lines[first..]).await;
    for c in &player.consoles {
        c.feeder.abort();
    }
    engine.shutdown(Duration::from_secs(1)).await;
    result?;
    player.output("\u{1b}[?25h".into());
    let duration = player.elapsed();
    Ok(Recording {
        cast: player.cast,
        last_frame: player.last_frame,
        duration,
    })
}

async fn start_engine(dir: &std::path::Path, start: Timestamp) -> Result<Arc<crate::engine::Engine>, String> {
    use crate::store::{Durability, SledStore, Store};
    let sled = SledStore::open(dir, Durability::Relaxed, "screencast").map_err(|e| e.to_string())?;
    let services = crate::services::Services::durable(
        true,
        &crate::services::Backing::sled(sled.open_services(dir).map_err(|e| e.to_string())?),
    );
    let registry = crate::handlers::Registry::standard(Arc::new(services));
    let catalog =
        crate::workflow::Catalog::load(&[crate::workflow::Source::Bundled], &|h| registry.contains(h))
            .map_err(|errors| {
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
    // A master key from the seed: the same keyed hashes every run.
    let key_file = dir.join("master.key");
    let key: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(format!("taskdeck screencast {SEED}").as_bytes()).into()
    };
    crate::fsutil::write_private(&key_file, &key).map_err(|e| format!("cannot write the master key: {e}"))?;
    let store: Arc<dyn Store> = Arc::new(sled);
    let config = crate::engine::EngineConfig {
        clock: Some(crate::engine::Clock::starting_at(start)),
        jitter_seed: Some(SEED),
        id_seed: Some(SEED),
        privacy: Some(crate::privacy::KeySource::File(key_file)),
        operator: "screencast".into(),
        ..crate::engine::EngineConfig::default()
    };
    crate::engine::Engine::start(config, store, Arc::new(catalog), registry)
        .await
        .map(Arc::new)
        .map_err(|e| format!("cannot start the engine: {e}"))
}

/// How long a key press shows before the next; a typed character's.
const KEY_PAUSE: Duration = Duration::from_millis(400);
const TYPE_PAUSE: Duration = Duration::from_millis(70);
/// The finest step of virtual time between frames.
const STEP: Duration = Duration::from_millis(100);

impl Player<'_> {
    async fn play(&mut self, lines: &[Line]) -> Result<(), String> {
        for line in lines {
            let tape = self.name.clone();
            let at = |e: String| format!("{tape}: line {}: {e}", line.number);
            self.within_budget().map_err(at)?;
            match &line.command {
                Command::Console { name, role, team } => {
                    let identity = if team == "local" {
                        crate::auth::Identity::local(name)
                    } else {
                        crate::auth::Identity::new(name, team, *role)
                    };
                    let i = match self.consoles.iter().position(|c| &c.name == name) {
                        Some(i) => i,
                        None => {
                            let console = self.console(name, identity);
                            self.consoles.push(console);
                            self.consoles.len() - 1
                        }
                    };
                    self.show(i);
                    self.advance(Duration::from_millis(600)).await;
                }
                Command::Switch(name) => {
                    let i = self
                        .consoles
                        .iter()
                        .position(|c| &c.name == name)
                        .ok_or_else(|| {
                            at(format!(
                                "no console `{name}`: declare it with `Console {name} ROLE TEAM`"
                            ))
                        })?;
                    self.show(i);
                    self.advance(Duration::from_millis(600)).await;
                }
                Command::Submit { workflow, context } => {
                    self.ensure_console();
                    let client = self.consoles[self.shown].client.clone();
                    client
                        .submit(crate::client::NewTask {
                            workflow: workflow.clone(),
                            context: context.clone(),
                        })
                        .await
                        .map_err(|e| at(format!("the engine refused the task: {e}")))?;
                    self.advance(STEP).await;
                }
                Command::Type(text) => {
                    self.ensure_console();
                    for c in text.chars() {
                        let key = crossterm::event::KeyEvent::new(
                            crossterm::event::KeyCode::Char(c),
                            crossterm::event::KeyModifiers::NONE,
                        );
                        self.press(key);
                        self.advance(TYPE_PAUSE).await;
                    }
                    self.advance(KEY_PAUSE).await;
                }
                Command::Key { key, times } => {
                    self.ensure_console();
                    for _ in 0..*times {
                        self.press(*key);
                        self.advance(KEY_PAUSE).await;
                    }
                }
                Command::Sleep(d) => {
                    self.ensure_console();
                    self.advance(*d).await;
                }
                Command::WaitFor { text, within } => {
                    self.ensure_console();
                    let mut waited = Duration::ZERO;
                    self.advance(Duration::ZERO).await;
                    while !self.last_frame.contains(text.as_str()) {
                        if waited >= *within {
                            return Err(at(format!(
                                "waited {}s for \"{text}\" to appear; the screen shows:\n{}",
                                within.as_secs_f64(),
                                self.last_frame
                            )));
                        }
                        self.within_budget().map_err(at)?;
                        // Every 100 ms for the first minute, then every second.
                        let step = if waited < Duration::from_secs(60) {
                            STEP
                        } else {
                            Duration::from_secs(1)
                        };
                        self.advance(step).await;
                        waited += step;
                    }
                }
                Command::Note(text) => {
                    self.note = text.clone();
                    // An asciicast marker: players list them as chapters.
                    let stamp = format!("{:.6}", self.elapsed());
                    let label = serde_json::Value::String(text.clone());
                    self.cast.push_str(&format!("[{stamp}, \"m\", {label}]\n"));
                    self.advance(STEP).await;
                }
                Command::Erase(subject) => {
                    self.ensure_console();
                    let done = self.erase(subject).await.map_err(at)?;
                    if let Some(c) = self.consoles.get_mut(self.shown) {
                        c.app.notify(done);
                    }
                    self.advance(STEP).await;
                }
                Command::Width(_)
                | Command::Height(_)
                | Command::Theme(_)
                | Command::ReadOnly(_)
                | Command::Title(_)
                | Command::Start(_) => {}
            }
            if self.consoles.get(self.shown).is_some_and(|c| c.app.quit) {
                break;
            }
        }
        Ok(())
    }

    /// `taskdeck gdpr erase --subject SUBJECT` as the shown console's operator.
    async fn erase(&self, subject: &str) -> Result<String, String> {
        let console = &self.consoles[self.shown];
        console
            .local
            .authorize("gdpr:manage", "gdpr", "gdpr")
            .await
            .map_err(|_| {
                format!(
                    "{} may not erase a person's data: it takes gdpr:manage",
                    console.app.identity.describe()
                )
            })?;
        let vault = self
            .engine
            .query()
            .vault()
            .cloned()
            .ok_or("this engine seals no personal data")?;
        let record = vault
            .find_subject(subject)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no data subject matches `{subject}`"))?;
        crate::privacy::erasure::erase(
            &**self.engine.store(),
            &vault,
            &record,
            &console.app.identity.sub,
            self.engine.clock().now(),
        )
        .await
    }

    /// Whether the tape may go on: not stopped, within `MAX_RECORDING` and `MAX_CAST_BYTES`.
    fn within_budget(&self) -> Result<(), String> {
        if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("stopped".into());
        }
        if self.started.elapsed() > MAX_RECORDING {
            return Err("the tape runs longer than a day of virtual time".into());
        }
        if self.cast.len() > MAX_CAST_BYTES {
            return Err(format!(
                "the recording is larger than {} MiB",
                MAX_CAST_BYTES >> 20
            ));
        }
        Ok(())
    }

    /// The default console when a tape declares none: the local admin, as `cargo run` opens.
    fn ensure_console(&mut self) {
        if self.consoles.is_empty() {
            let console = self.console("sarah", crate::auth::Identity::local("sarah"));
            self.consoles.push(console);
            self.show(0);
        }
    }

    fn console(&self, name: &str, identity: crate::auth::Identity) -> Console {
        let local = Arc::new(crate::client::Local::new(self.engine.clone(), identity.clone()));
        let client: Arc<dyn Client> = local.clone();
        let (updates_tx, updates) = mpsc::unbounded_channel();
        let (actions_tx, actions) = mpsc::unbounded_channel();
        let (focus, focus_rx) = watch::channel(None);
        let (older, older_rx) = mpsc::unbounded_channel();
        let vm = super::model::ViewModel::new(super::workflow_entries(&self.catalog));
        let info = HeaderInfo {
            data_dir: "~/.local/share/taskdeck".into(),
            durability: "relaxed".into(),
            operator: if identity.team == "local" {
                format!("{} (admin, no token)", identity.sub)
            } else {
                identity.describe()
            },
            endpoint: "screencast".into(),
            read_only_flag: self.settings.read_only,
        };
        let mut app = App::new(
            vm,
            self.settings.theme.clone(),
            info,
            self.catalog.clone(),
            actions_tx,
        );
        app.identity = identity;
        app.decide_read_only();
        app.now = client.now();
        let feeder = tokio::spawn(super::feeder::feed(
            client.clone(),
            updates_tx.clone(),
            focus_rx,
            older_rx,
        ));
        Console {
            name: name.to_string(),
            app,
            client,
            local,
            updates_tx,
            updates,
            actions,
            focus,
            older,
            feeder,
        }
    }

    fn show(&mut self, i: usize) {
        self.shown = i;
        // Another console fills the screen: everything is drawn again.
        let _ = self.term.clear();
        if let Some(c) = self.consoles.get_mut(i) {
            c.app.dirty = true;
        }
    }

    fn press(&mut self, key: crossterm::event::KeyEvent) {
        if let Some(c) = self.consoles.get_mut(self.shown) {
            c.app.on_key(key);
        }
    }

    /// Lets `d` of virtual time pass, drawing a frame every `STEP` (coarser for long waits:
    /// at most 300 frames).
    async fn advance(&mut self, d: Duration) {
        let step = STEP.max(d / 300);
        let mut left = d;
        loop {
            self.pump();
            self.frame();
            if left.is_zero() {
                break;
            }
            let now = step.min(left);
            tokio::time::sleep(now).await;
            left -= now;
        }
        // What the last step made due.
        tokio::task::yield_now().await;
        self.pump();
        self.frame();
    }

    /// Applies every console's updates and carries out its actions.
    fn pump(&mut self) {
        for c in &mut self.consoles {
            while let Ok(u) = c.updates.try_recv() {
                c.app.apply(u);
            }
            while let Ok(a) = c.actions.try_recv() {
                super::perform(&c.client, a, &c.updates_tx, &c.focus, &c.older);
            }
            c.app.now = c.client.now();
        }
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn output(&mut self, data: String) {
        if data.is_empty() {
            return;
        }
        let stamp = format!("{:.6}", self.elapsed());
        self.cast.push_str(&format!(
            "[{stamp}, \"o\", {}]\n",
            serde_json::Value::String(data)
        ));
    }

    /// Draws the shown console (and the note, on the row above the key bar) and records what
    /// changed on screen.
    fn frame(&mut self) {
        let Some(console) = self.consoles.get(self.shown) else {
            return;
        };
        let app = &console.app;
        let note = self.note.clone();
        let drawn = self.term.draw(|frame| {
            super::views::draw(frame, app);
            if !note.is_empty() {
                let area = frame.area();
                // Above the key bar, which keeps showing notices.
                let row = Rect::new(0, area.height.saturating_sub(2), area.width, 1);
                let t = &app.theme;
                let text = super::views::fit(&format!(" ▶ {note} "), usize::from(area.width));
                frame.render_widget(
                    Paragraph::new(Span::styled(
                        format!("{text:<width$}", width = usize::from(area.width)),
                        t.base()
                            .fg(t.background)
                            .bg(t.accent)
                            .add_modifier(Modifier::BOLD),
                    )),
                    row,
                );
            }
        });
        if let Ok(done) = drawn {
            let buffer = done.buffer;
            let mut text = String::new();
            for y in 0..buffer.area.height {
                let row: String = (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect();
                text.push_str(row.trim_end());
                text.push('\n');
            }
            self.last_frame = text;
        }
        let data = std::mem::take(&mut *self.bytes.0.borrow_mut());
        self.output(String::from_utf8_lossy(&data).into_owned());
    }
}
