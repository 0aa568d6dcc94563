//! What a command talks to. A command that can run against a remote engine gets a `Session`:
//! the engine in this process when it can open the data directory, or else the server that
//! holds it (found through its address file) or the one `--connect` names. Commands that run
//! the engine (`serve`, `run`, and the console when it opens the directory) also serve the
//! API, so others can join.

use super::{engine, open, Cli, Opened};
use crate::api::{Listener, ServerOptions};
use crate::client::{Client, Credentials, Http, HttpOptions, Local, ServerFile};
use crate::engine::Engine;
use crate::store::StoreError;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a command waits for a data directory held by a process that serves no API (a
/// short command such as `taskdeck submit`) before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(3);

pub(super) struct Session {
    pub client: Arc<dyn Client>,
    /// The engine this process runs, stopped when the session closes.
    pub engine: Option<Arc<Engine>>,
    pub server: Option<Server>,
    /// The data directory's lock when its store is elsewhere (PostgreSQL): held until the
    /// session closes.
    pub lock: Option<std::fs::File>,
}

impl Session {
    /// Stops what this process runs: the API server first, then the engine (running steps get
    /// `grace` to finish).
    pub async fn close(self, data: &Path, grace: Duration) {
        if let Some(server) = self.server {
            server.stop(data).await;
        }
        if let Some(engine) = self.engine {
            engine.shutdown(grace).await;
        }
        drop(self.lock);
    }
}

/// The session for a command: remote when `--connect` says so or another process holds the
/// data directory, in-process otherwise (running steps when `dispatch`, serving the API when
/// `serve`).
pub(super) async fn session(cli: &Cli, data: &Path, dispatch: bool, serve: bool) -> Result<Session> {
    if let Some(url) = &cli.connect {
        // This directory's own server, named explicitly: its certificate is trusted as well.
        let own = crate::client::discover_holder(data)
            .filter(|f| f.url.trim_end_matches('/') == url.trim_end_matches('/'))
            .and_then(|f| f.cert);
        return remote(cli, data, url, own).await;
    }
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match open(cli, data).await {
            Ok(opened) => return local(cli, data, opened, dispatch, serve, false).await,
            Err(e) if is_locked(&e) => {
                if let Some(file) = crate::client::discover_holder(data) {
                    match remote(cli, data, &file.url, file.cert.clone()).await {
                        Ok(session) => return Ok(session),
                        // Still starting, or going: wait a little. Anything else (a refused
                        // token, an untrusted certificate) is the answer.
                        Err(why) if is_unreachable(&why) => {
                            if tokio::time::Instant::now() >= deadline {
                                return Err(why.context(format!(
                                    "the data directory {} is held by process {}, whose API at {} does not answer",
                                    data.display(),
                                    file.pid,
                                    file.url
                                )));
                            }
                        }
                        Err(why) => return Err(why),
                    }
                } else if tokio::time::Instant::now() >= deadline {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<crate::client::Problem>()
            .is_some_and(|p| p.kind == crate::engine::ErrorKind::Unavailable)
    })
}

fn is_locked(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<StoreError>(), Some(StoreError::Locked(_))))
}

/// The in-process session over what `open` opened; serving the API when `serve` (`strict`:
/// on exactly the address asked for, see `Server::start`).
async fn local(
    cli: &Cli,
    data: &Path,
    opened: Opened,
    dispatch: bool,
    serve: bool,
    strict: bool,
) -> Result<Session> {
    let engine = Arc::new(engine(cli, data, &opened, dispatch).await?);
    let client: Arc<dyn Client> = Arc::new(Local::new(engine.clone(), opened.identity.clone()));
    let server = if serve {
        Some(Server::start(cli, data, engine.clone(), strict).await?)
    } else {
        None
    };
    Ok(Session {
        client,
        engine: Some(engine),
        server,
        lock: opened.lock,
    })
}

/// A session with the server at `url`: named by `--connect` (`cert: None`), or this data
/// directory's own, found in its address file (`cert`: its certificate, trusted for it).
async fn remote(cli: &Cli, data: &Path, url: &str, own_cert: Option<std::path::PathBuf>) -> Result<Session> {
    let explicit = cli.connect.is_some();
    if !cli.workflows.is_empty() {
        bail!("--workflows loads workflow files into an engine this process runs; the engine at {url} loads its own (restart it with them)");
    }
    // This data directory's own server (the lock holder's, at this address)?
    let own = crate::client::discover_holder(data)
        .is_some_and(|f| f.url.trim_end_matches('/') == url.trim_end_matches('/'));
    let credentials = match &cli.token {
        Some(token) => Credentials::Token(token.clone()),
        None => {
            // A token minted with our key is only ever sent to this data directory's own
            // server: sent anywhere else, it would be a key to our server for its lifetime.
            if explicit && !own {
                bail!("connecting to {url} needs a token: set TASKDECK_TOKEN (issued by an admin of that server with `taskdeck token issue`); a token is minted from this data directory's key only for its own server");
            }
            Credentials::Key(crate::auth::token::signing_key(data)?)
        }
    };
    let client = Http::connect(HttpOptions {
        url: url.to_string(),
        credentials,
        // Our own server proves it holds our key before any token, ours or one given, goes
        // to it: a process that took its port after it died gets nothing.
        prove_with: if own {
            crate::auth::token::signing_key(data).ok()
        } else {
            None
        },
        ca: cli.tls_ca.clone().or(own_cert),
    })
    .await?;
    Ok(Session {
        client: Arc::new(client),
        engine: None,
        server: None,
        lock: None,
    })
}

/// The in-process session of a command that must run the engine itself (`run`, `serve`):
/// refuses with the lock error, naming the server, when another process holds it.
pub(super) async fn own(cli: &Cli, data: &Path, serve: bool, strict: bool) -> Result<Session> {
    own_with(cli, data, true, serve, strict).await
}

/// The engine here over the store the data directory already holds (never making one), running
/// no steps and serving nothing, with a client acting as the command's identity: for the
/// commands that read or change what the store holds (`audit`, `gdpr`, `report`). `missing`
/// says what a directory without a store has none of. Close the session when done.
pub(super) async fn existing_store(
    cli: &Cli,
    data: &Path,
    missing: &str,
) -> Result<(Session, Arc<Engine>, Local)> {
    if super::postgres_store(cli)?.is_none() && !data.join("store").join("db").exists() {
        bail!("{} holds no store: {missing} (is --data right?)", data.display());
    }
    let who = super::identity(cli, data)?;
    let session = own_store(cli, data).await?;
    let Some(engine) = session.engine.clone() else {
        session.close(data, Duration::ZERO).await;
        bail!("this command opens the store here");
    };
    let client = Local::new(engine.clone(), who);
    Ok((session, engine, client))
}

/// The engine here over the data directory, running no steps and serving nothing: for
/// maintenance (`prune`) that must not go through another process.
pub(super) async fn own_store(cli: &Cli, data: &Path) -> Result<Session> {
    own_with(cli, data, false, false, false).await
}

async fn own_with(cli: &Cli, data: &Path, dispatch: bool, serve: bool, strict: bool) -> Result<Session> {
    if cli.connect.is_some() {
        bail!("this command runs the engine here; it cannot run against --connect");
    }
    let opened = match open(cli, data).await {
        Ok(o) => o,
        Err(e) if is_locked(&e) => {
            return Err(match crate::client::discover_holder(data) {
                Some(f) => anyhow!(
                    "process {} already runs the engine of {} and serves it at {}; other commands (and the console) connect to it; stop it to run the engine here",
                    f.pid,
                    data.display(),
                    f.url
                ),
                None => e,
            })
        }
        Err(e) => return Err(e),
    };
    local(cli, data, opened, dispatch, serve, strict).await
}

/// The API served by this process.
pub(super) struct Server {
    pub url: String,
    /// The address bound (differs from the URL's for a wildcard such as `0.0.0.0`).
    pub listening: Option<std::net::SocketAddr>,
    stop: oneshot::Sender<()>,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Whether its address is the data directory's `server.json` (the API's, not a metrics
    /// listener's).
    published: bool,
}

impl Server {
    /// Serves the API over `engine` and publishes its address in the data directory. With
    /// `strict` (`taskdeck serve`) the listen address must be free; otherwise (the console,
    /// `run`) a busy default port falls back to a free one, so two data directories can each
    /// have a console.
    pub async fn start(cli: &Cli, data: &Path, engine: Arc<Engine>, strict: bool) -> Result<Server> {
        let options = server_options(cli)?;
        let listener = match Listener::bind(&options).await {
            Ok(l) => l,
            Err(crate::api::ServeError::Bind { .. }) if !strict && cli.listen.is_none() => {
                let fallback = ServerOptions {
                    listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                    ..options.clone()
                };
                Listener::bind(&fallback).await?
            }
            Err(e) => return Err(e.into()),
        };
        let url = listener.url();
        let listening = listener.local_addr();
        let key = crate::auth::token::signing_key(data)?;
        let options = ServerOptions {
            previous_key: crate::auth::token::previous_key(data)?,
            ..options
        };
        let (closing, closed) = tokio::sync::watch::channel(false);
        // Transmission evidence (SOC 2 CC7.2): whether this server encrypts in transit.
        let loopback = listening.is_some_and(|a| a.ip().is_loopback());
        let mut record = crate::audit::AuditRecord::new(
            engine.clock().now(),
            engine.operator(),
            "server.started",
            "api".into(),
            format!(
                "tls={} loopback={loopback} url={url}",
                if options.tls.is_some() { "on" } else { "off" }
            ),
        );
        record.compliance_tags = vec!["SOC2:CC7.2".into()];
        engine.store().append_audit(vec![record]).await?;
        let router = crate::api::router(engine, key, &url, &options, closed);
        ServerFile::write(data, &url, options.tls.as_ref().map(|(cert, _)| cert.as_path()))
            .with_context(|| format!("cannot write {}", data.join(crate::client::SERVER_FILE).display()))?;
        tracing::info!(%url, "serving the API");
        Ok(Server::spawn(listener, router, closing, url, listening, true))
    }

    /// Serves `router` on `listener` until `stop`; then tells `closing` (event streams never
    /// finish by themselves: they end when it says so).
    fn spawn(
        listener: Listener,
        router: axum::Router,
        closing: tokio::sync::watch::Sender<bool>,
        url: String,
        listening: Option<std::net::SocketAddr>,
        published: bool,
    ) -> Server {
        let (stop, stopped) = oneshot::channel::<()>();
        let join = tokio::spawn(listener.serve(
            router,
            async move {
                let _ = stopped.await;
                let _ = closing.send(true);
            },
            Duration::from_secs(5),
        ));
        Server {
            url,
            listening,
            stop,
            join,
            published,
        }
    }

    /// Serves only `/metrics` at `addr` (`run --metrics-listen`), with the API's TLS and
    /// limits; its address is not published (commands never connect to it).
    pub async fn metrics(cli: &Cli, data: &Path, engine: Arc<Engine>, addr: &str) -> Result<Server> {
        let listen = addr.parse().map_err(|_| {
            anyhow!("--metrics-listen `{addr}` is not an address such as 127.0.0.1:9464 or [::1]:9464")
        })?;
        let options = ServerOptions {
            listen,
            ..server_options(cli)?
        };
        let listener = Listener::bind(&options).await?;
        let url = listener.url();
        let listening = listener.local_addr();
        let key = crate::auth::token::signing_key(data)?;
        let options = ServerOptions {
            previous_key: crate::auth::token::previous_key(data)?,
            ..options
        };
        let (closing, closed) = tokio::sync::watch::channel(false);
        let router = crate::api::metrics_router(engine, key, &url, &options, closed);
        tracing::info!(%url, "serving /metrics");
        Ok(Server::spawn(listener, router, closing, url, listening, false))
    }

    pub async fn stop(self, data: &Path) {
        if self.published {
            ServerFile::remove_own(data);
        }
        let _ = self.stop.send(());
        let _ = self.join.await;
    }
}

fn server_options(cli: &Cli) -> Result<ServerOptions> {
    let listen = match &cli.listen {
        Some(text) => text.parse().map_err(|_| {
            anyhow!("--listen `{text}` is not an address such as 127.0.0.1:7420 or [::1]:7420")
        })?,
        None => ServerOptions::default().listen,
    };
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    Ok(ServerOptions {
        listen,
        tls,
        insecure_http: cli.insecure_http,
        max_body_bytes: cli.max_body_bytes,
        rate_limit: cli.rate_limit,
        idp: super::idp(cli)?,
        previous_key: None,
    })
}
