//! The HTTP API: JSON over HTTP/1.1 (axum on tokio), versioned under `/v1`, authenticated by
//! the same bearer tokens as the CLI, with Server-Sent Events for the event stream. `serve`
//! runs it beside an engine; `taskdeck serve`, `taskdeck run` and the console all do.
//!
//! Every route but `/health/live` and `/health/ready` needs `Authorization: Bearer <JWT>`,
//! checked for signature and expiry on every request. Bodies are limited in size (413) and
//! each identity in rate (429). Errors are typed (`api::error`).

mod cursor;
mod error;
mod extract;
mod limits;
mod openapi;
mod routes;

pub use error::{status_of, ErrorBody};
pub use limits::MAX_STREAMS_PER_IDENTITY;
pub use openapi::{document, document_json};
pub use routes::{Batch, BatchResults, Whoami};

use crate::engine::{Engine, ErrorKind};
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7420";
/// The default largest request body: 8 MiB (a batch of contexts).
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;
/// The default request rate per identity, per second (bursts of twice that).
pub const DEFAULT_RATE_LIMIT: u32 = 5_000;

/// The largest certificate, key or CA file read: 1 MiB of PEM.
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// How the server listens.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Allow plain HTTP on an address other than loopback.
    pub insecure_http: bool,
    pub max_body_bytes: usize,
    /// Requests per identity per second; 0 turns the limit off.
    pub rate_limit: u32,
    /// An identity provider whose RS256/ES256 tokens are accepted too (`--jwks`).
    pub idp: Option<Arc<crate::auth::idp::Idp>>,
    /// The signing key before the last rotation: tokens it signed stay valid until they expire.
    pub previous_key: Option<Vec<u8>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7420))),
            tls: None,
            insecure_http: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            rate_limit: DEFAULT_RATE_LIMIT,
            idp: None,
            previous_key: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to serve plain HTTP on {0}, which is not a loopback address: tokens would cross the network in clear; give --tls-cert and --tls-key, or --insecure-http if something in front terminates TLS")]
    PlainHttpOffLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {cause}")]
    Bind { addr: SocketAddr, cause: std::io::Error },
    #[error("cannot load the TLS certificate or key ({cert}, {key}): {cause}")]
    Tls {
        cert: String,
        key: String,
        cause: String,
    },
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub(crate) engine: Arc<Engine>,
    /// The token signing key of the data directory.
    pub(crate) key: Arc<Vec<u8>>,
    pub(crate) previous_key: Option<Arc<Vec<u8>>>,
    pub(crate) idp: Option<Arc<crate::auth::idp::Idp>>,
    /// Fingerprints of the tokens used since the server started (`extract::first_use`).
    pub(crate) seen_tokens: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Refused credentials journaled in the current minute: (minute, count).
    pub(crate) failures: Arc<std::sync::Mutex<(i64, u32)>>,
    pub(crate) cursors: cursor::Cursors,
    pub(crate) limits: Arc<limits::Limits>,
    pub(crate) streams: Arc<limits::Streams>,
    pub(crate) max_body_bytes: usize,
    /// Becomes true when the server stops: event streams end.
    pub(crate) closing: tokio::sync::watch::Receiver<bool>,
    /// The base URL this server publishes (what its proof is bound to).
    pub(crate) url: Arc<String>,
}

/// The routes, over `engine`, verifying tokens with `key`, served at `url` (the base URL
/// clients use, see `Listener::url`). Event streams end when `closing` becomes true.
pub fn router(
    engine: Arc<Engine>,
    key: Vec<u8>,
    url: &str,
    options: &ServerOptions,
    closing: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let state = app_state(engine, key, url, options, closing);
    use routes::*;
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health/status", get(status))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/v1/whoami", get(whoami))
        .route("/v1/proof", get(proof))
        .route("/v1/workflows", get(workflows))
        .route("/v1/workflows/files", get(workflow_files))
        .route("/v1/tasks", get(list_tasks).post(create_task))
        .route("/v1/tasks/batch", post(create_batch))
        .route("/v1/tasks/{id}", get(show_task))
        .route("/v1/tasks/{id}/retry", post(retry_task))
        .route("/v1/tasks/{id}/steps/{step}/retry-now", post(retry_step_now))
        .route("/v1/tasks/{id}/cancel", post(cancel_task))
        .route("/v1/tasks/{id}/steps/{step}/resolve", post(resolve_step))
        .route("/v1/tasks/{id}/steps/{step}/approve", post(approve_step))
        .route("/v1/tasks/{id}/steps/{step}/deny", post(deny_step))
        .route("/v1/approvals", get(approvals))
        .route("/v1/events", get(events))
        .route("/v1/metrics/summary", get(metrics_summary))
        .route("/v1/audit", get(audit))
        .fallback(|| async {
            error::ApiError::new(ErrorKind::NotFound, "no such endpoint; see /v1/openapi.json")
        })
        .layer(axum::middleware::map_response(method_not_allowed_as_json))
        .layer(axum::extract::DefaultBodyLimit::max(options.max_body_bytes))
        .with_state(state)
}

/// Only `/metrics` (and `/health/live`, `/health/ready`), for `run --metrics-listen` when the API is off or
/// the scraper should reach a different address: same tokens (admin or monitor), same limits.
pub fn metrics_router(
    engine: Arc<Engine>,
    key: Vec<u8>,
    url: &str,
    options: &ServerOptions,
    closing: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let state = app_state(engine, key, url, options, closing);
    Router::new()
        .route("/health/live", get(routes::live))
        .route("/health/ready", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .fallback(|| async {
            error::ApiError::new(
                ErrorKind::NotFound,
                "this address serves /metrics, /health/live and /health/ready only",
            )
        })
        .layer(axum::middleware::map_response(method_not_allowed_as_json))
        .layer(axum::extract::DefaultBodyLimit::max(options.max_body_bytes))
        .with_state(state)
}

fn app_state(
    engine: Arc<Engine>,
    key: Vec<u8>,
    url: &str,
    options: &ServerOptions,
    closing: tokio::sync::watch::Receiver<bool>,
) -> AppState {
    AppState {
        engine,
        cursors: cursor::Cursors::new(&key),
        key: Arc::new(key),
        previous_key: options.previous_key.clone().map(Arc::new),
        idp: options.idp.clone(),
        seen_tokens: Arc::default(),
        failures: Arc::default(),
        limits: Arc::new(limits::Limits::new(options.rate_limit)),
        streams: Arc::new(limits::Streams::default()),
        max_body_bytes: options.max_body_bytes,
        closing,
        url: Arc::new(url.trim_end_matches('/').to_string()),
    }
}

/// How long a client may take to send a request's headers: a connection that trickles them
/// (slowloris) is closed instead of held.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/1.1 headers are due within `HEADER_READ_TIMEOUT`. (axum-server also speaks HTTP/2,
/// and cannot be limited to HTTP/1.1: `http1_only` does nothing with the upgrades it serves.)
/// An HTTP/2 connection is pinged every `HEADER_READ_TIMEOUT` and closed when a ping goes
/// unanswered for as long.
fn slow_clients_time_out(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(HEADER_READ_TIMEOUT)
        .keep_alive_timeout(HEADER_READ_TIMEOUT)
        .max_concurrent_streams(64);
}

/// Closes a connection on which nothing arrives within `HEADER_READ_TIMEOUT` of accepting it
/// (hyper's header timeout starts with the first byte, so a client that connects and says
/// nothing would otherwise hold a descriptor for ever), then hands it to `inner`.
#[derive(Clone)]
struct FirstByte<A> {
    inner: A,
}

impl<A, S> axum_server::accept::Accept<tokio::net::TcpStream, S> for FirstByte<A>
where
    A: axum_server::accept::Accept<tokio::net::TcpStream, S> + Clone + Send + Sync + 'static,
    A::Future: Send,
    S: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = futures::future::BoxFuture<'static, std::io::Result<(A::Stream, A::Service)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            // `peek` waits for a byte (or the end) without taking it; readiness alone can be
            // reported before anything arrives.
            let mut first = [0u8; 1];
            match tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut first)).await {
                Ok(Ok(_)) => inner.accept(stream, service).await,
                Ok(Err(e)) => Err(e),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "nothing arrived within the header timeout",
                )),
            }
        })
    }
}

/// axum answers a method an endpoint does not take with 405 and an empty body (its router
/// adds the `Allow` header afterwards): the body becomes the usual typed error.
async fn method_not_allowed_as_json(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    if response.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut json = error::ApiError::new(
        ErrorKind::MethodNotAllowed,
        "this endpoint does not take that method; the Allow header lists those it takes",
    )
    .into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            json.headers_mut().insert(name, value.clone());
        }
    }
    json
}

/// A bound listener, before it serves: its address can be published first.
pub struct Listener {
    listener: std::net::TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
}

impl Listener {
    /// Binds `options.listen` (refusing plain HTTP off loopback without `insecure_http`) and
    /// loads the TLS files if given.
    pub async fn bind(options: &ServerOptions) -> Result<Listener, ServeError> {
        let addr = options.listen;
        if options.tls.is_none() && !addr.ip().is_loopback() && !options.insecure_http {
            return Err(ServeError::PlainHttpOffLoopback(addr));
        }
        let tls = match &options.tls {
            Some((cert, key)) => {
                let failed = |cause: String| ServeError::Tls {
                    cert: cert.display().to_string(),
                    key: key.display().to_string(),
                    cause,
                };
                let read = |path: &PathBuf| {
                    crate::fsutil::read_named(path, MAX_PEM_BYTES)
                        .map_err(|e| failed(format!("{}: {e}", path.display())))
                };
                let (cert_pem, key_pem) = (read(cert)?, read(key)?);
                Some(
                    axum_server::tls_rustls::RustlsConfig::from_pem(cert_pem, key_pem)
                        .await
                        .map_err(|e| failed(e.to_string()))?,
                )
            }
            None => None,
        };
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|cause| ServeError::Bind { addr, cause })?;
        Ok(Listener { listener, tls })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The base URL local clients use: a wildcard address (`0.0.0.0`, `::`) is reached
    /// through loopback.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        match self.local_addr() {
            Some(mut a) => {
                if a.ip().is_unspecified() {
                    a.set_ip(match a.ip() {
                        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                    });
                }
                format!("{scheme}://{a}")
            }
            None => format!("{scheme}://{DEFAULT_LISTEN}"),
        }
    }

    /// Serves `router` until `stop` resolves, then lets requests in flight finish for up to
    /// `grace` (event streams are cut at once).
    pub async fn serve(
        self,
        router: Router,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> std::io::Result<()> {
        let handle = axum_server::Handle::new();
        let stopper = handle.clone();
        tokio::spawn(async move {
            stop.await;
            stopper.graceful_shutdown(Some(grace));
        });
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        match self.tls {
            Some(tls) => {
                let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(FirstByte {
                    inner: axum_server::accept::DefaultAcceptor,
                });
                let mut server = axum_server::from_tcp(self.listener).acceptor(acceptor);
                slow_clients_time_out(server.http_builder());
                server.handle(handle).serve(service).await
            }
            None => {
                let mut server = axum_server::from_tcp(self.listener).acceptor(FirstByte {
                    inner: axum_server::accept::DefaultAcceptor,
                });
                slow_clients_time_out(server.http_builder());
                server.handle(handle).serve(service).await
            }
        }
    }
}
