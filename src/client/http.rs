//! The HTTP client: the same `Client` over the API of a server elsewhere. Errors come back as
//! the server's typed `Problem`s, so a remote failure prints exactly as a local one; a server
//! that cannot be reached is `Unavailable`. The event feed reconnects by itself with backoff
//! and resumes after the last sequence number it delivered, so nothing is missed.

use super::connect::LOCAL_TOKEN_TTL;
use super::{
    BatchItem, CatalogFile, Client, Endpoint, EventFeed, Link, NewTask, Problem, TaskDetail, TaskPage,
    TaskQuery,
};
use crate::auth::{Identity, Role};
use crate::engine::{ErrorKind, PendingApproval, Status};
use crate::model::{Event, Task, Timestamp};
use crate::workflow::{Catalog, Source};
use async_trait::async_trait;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The longest a request may take, answer included (event streams excepted).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest silence on a connection (the server sends event-stream keep-alives every 15 s).
const READ_TIMEOUT: Duration = Duration::from_secs(45);

/// How often a request refused for the rate limit is sent again.
const RATE_LIMIT_RETRIES: u32 = 3;
/// The longest `Retry-After` waited out; a longer one is reported.
const MAX_RETRY_AFTER_SECONDS: u64 = 5;

/// How the client proves who it is.
#[derive(Clone)]
pub enum Credentials {
    /// A token from `taskdeck token issue` (TASKDECK_TOKEN).
    Token(String),
    /// The data directory's signing key: the client mints itself short-lived local-user
    /// tokens (the same OS user as the server).
    Key(Vec<u8>),
}

pub struct HttpOptions {
    /// Base URL, e.g. `http://127.0.0.1:7420`.
    pub url: String,
    pub credentials: Credentials,
    /// The data directory's signing key, when the server is that directory's own: before any
    /// token (minted or given) goes to it, and again after a lost connection, the server must
    /// prove it holds this key. Implied by `Credentials::Key`.
    pub prove_with: Option<Vec<u8>>,
    /// A PEM CA certificate to trust besides the usual roots (a self-signed server).
    pub ca: Option<PathBuf>,
}

pub struct Http {
    conn: Arc<Connection>,
    identity: Identity,
    catalog: tokio::sync::OnceCell<Arc<Catalog>>,
}

/// The connection to one server, shared by the client and its event feed's task: how to
/// reach it, how to authenticate, and whether it is up.
struct Connection {
    url: String,
    http: reqwest::Client,
    credentials: Credentials,
    prove_with: Option<Vec<u8>>,
    minted: Mutex<Option<(String, Instant)>>,
    /// Whether the server has proven it holds our key since the last connection failure (a
    /// server that went away may be another one now).
    proven: std::sync::atomic::AtomicBool,
    link: watch::Sender<Link>,
}

fn unreachable(url: &str, e: &reqwest::Error) -> Problem {
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = format!("{cause}: {s}");
        source = s.source();
    }
    Problem::new(
        ErrorKind::Unavailable,
        format!("cannot reach the taskdeck server at {url}: {cause}"),
    )
}

impl Http {
    /// Builds the client and asks the server whom the credentials name (`/v1/whoami`).
    pub async fn connect(options: HttpOptions) -> Result<Http, Problem> {
        let url = options.url.trim_end_matches('/').to_string();
        let bad = |why: &str| {
            Problem::new(
                ErrorKind::BadRequest,
                format!("`{url}` {why}: expected http://HOST[:PORT] or https://HOST[:PORT]"),
            )
            .with_field("connect")
        };
        let parsed = reqwest::Url::parse(&url).map_err(|e| bad(&format!("is not a URL ({e})")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("is not an http or https URL"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "carries a user name or password (the token is sent as a bearer token)",
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() || !matches!(parsed.path(), "" | "/") {
            return Err(bad("has a path, query or fragment"));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // The event stream gets a keep-alive every 15 s: longer silence is a hung server.
            .read_timeout(READ_TIMEOUT)
            .tcp_nodelay(true);
        if let Some(ca) = &options.ca {
            let pem = crate::fsutil::read_named(ca, crate::api::MAX_PEM_BYTES).map_err(|e| {
                Problem::new(
                    ErrorKind::BadRequest,
                    format!("cannot read the CA certificate {}: {e}", ca.display()),
                )
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Problem::new(
                    ErrorKind::BadRequest,
                    format!("{} is not a PEM certificate: {e}", ca.display()),
                )
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| Problem::new(ErrorKind::Unavailable, format!("cannot set up HTTP: {e}")))?;
        let (link, _) = watch::channel(Link::Up);
        let conn = Connection {
            url,
            http,
            prove_with: match (&options.credentials, options.prove_with) {
                (Credentials::Key(key), _) => Some(key.clone()),
                (_, given) => given,
            },
            credentials: options.credentials,
            minted: Mutex::new(None),
            proven: std::sync::atomic::AtomicBool::new(false),
            link,
        };
        let who: crate::api::Whoami = conn.get("/v1/whoami").await?;
        let role: Role = who.role.parse().map_err(|_| {
            Problem::new(
                ErrorKind::Unavailable,
                format!("the server names an unknown role `{}`", who.role),
            )
        })?;
        let mut identity = Identity::new(&who.sub, &who.team, role);
        identity.expires_at = who.expires_at;
        Ok(Http {
            conn: Arc::new(conn),
            identity,
            catalog: tokio::sync::OnceCell::new(),
        })
    }
}

impl Connection {
    /// Before a token minted with our key goes to this server, the server proves it holds the
    /// key (for a fresh nonce, bound to this URL). A process that took the port of a server
    /// that died, or relays another server's answers, cannot.
    async fn check_proof(&self, key: &[u8]) -> Result<(), Problem> {
        use base64::Engine as _;
        let nonce: String = rand::random::<[u8; 32]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let refused = |why: &str| {
            Problem::new(
                ErrorKind::Unauthenticated,
                format!(
                    "the server at {} did not prove it holds this data directory's key ({why}); no token was sent to it",
                    self.url
                ),
            )
        };
        let response = self
            .http
            .get(format!("{}/v1/proof", self.url))
            .timeout(REQUEST_TIMEOUT)
            .query(&[("nonce", &nonce)])
            .send()
            .await
            .map_err(|e| unreachable(&self.url, &e))?;
        if !response.status().is_success() {
            return Err(refused(&format!("it answered {}", response.status())));
        }
        let answer: Value = response
            .json()
            .await
            .map_err(|_| refused("its answer is not a proof"))?;
        let proof = answer["proof"]
            .as_str()
            .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
            .ok_or_else(|| refused("its answer is not a proof"))?;
        let expected = crate::auth::token::server_proof(key, &nonce, &self.url);
        // Constant-time comparison.
        let same = proof.len() == expected.len()
            && proof.iter().zip(&expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same {
            Ok(())
        } else {
            Err(refused("wrong proof: another key, or another address"))
        }
    }

    /// The bearer token for the next request. A minted one only after the server has proven
    /// it holds the key (again after any connection failure).
    async fn bearer(&self) -> Result<String, Problem> {
        use std::sync::atomic::Ordering;
        if let Some(key) = &self.prove_with {
            if !self.proven.load(Ordering::Acquire) {
                self.check_proof(key).await?;
                self.proven.store(true, Ordering::Release);
            }
        }
        self.token()
    }

    /// Notes a connection failure: the next minted token waits for a new proof.
    fn lost(&self, e: &reqwest::Error) -> Problem {
        self.proven.store(false, std::sync::atomic::Ordering::Release);
        unreachable(&self.url, e)
    }

    fn token(&self) -> Result<String, Problem> {
        match &self.credentials {
            Credentials::Token(t) => Ok(t.clone()),
            Credentials::Key(key) => {
                let mut minted = self.minted.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((token, at)) = minted.as_ref() {
                    if at.elapsed() + Duration::from_secs(120) < LOCAL_TOKEN_TTL {
                        return Ok(token.clone());
                    }
                }
                let token = super::local_token(key)
                    .map_err(|e| Problem::new(ErrorKind::Unauthenticated, e.to_string()))?;
                *minted = Some((token.clone(), Instant::now()));
                Ok(token)
            }
        }
    }

    /// Sends `request`; a 429 whose `Retry-After` is short is waited out and sent again (at
    /// most `RATE_LIMIT_RETRIES` times): the server refused it before acting on it.
    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, Problem> {
        let (mut request, mut retries) = (request, 0);
        let response = loop {
            let again = request.try_clone();
            let response = request
                .timeout(REQUEST_TIMEOUT)
                .bearer_auth(self.bearer().await?)
                .send()
                .await
                .map_err(|e| self.lost(&e))?;
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            match (response.status(), wait, again) {
                (reqwest::StatusCode::TOO_MANY_REQUESTS, Some(seconds), Some(next))
                    if retries < RATE_LIMIT_RETRIES && seconds <= MAX_RETRY_AFTER_SECONDS =>
                {
                    retries += 1;
                    tokio::time::sleep(Duration::from_secs(seconds)).await;
                    request = next;
                }
                _ => break response,
            }
        };
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.lost(&e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                Problem::new(
                    ErrorKind::Unavailable,
                    format!("the server's answer is not what this client expects: {e}"),
                )
            });
        }
        Err(match serde_json::from_slice::<crate::api::ErrorBody>(&bytes) {
            Ok(body) => body.error,
            Err(_) => Problem::new(
                ErrorKind::Unavailable,
                format!(
                    "the server answered {status}: {}",
                    String::from_utf8_lossy(&bytes).trim()
                ),
            ),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Problem> {
        self.send(self.http.get(format!("{}{path}", self.url))).await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, Problem> {
        self.send(self.http.post(format!("{}{path}", self.url)).json(body))
            .await
    }
}

impl Http {
    /// A step name as a path segment; one that cannot be sent (see `unsendable`) names no
    /// step, so it gets the engine's answer, "task … has no step …", from the task as the
    /// caller may read it.
    async fn step_segment(&self, id: &str, step: &str) -> Result<String, Problem> {
        if !unsendable(step) {
            return Ok(seg(step));
        }
        let task = self.task(id).await?.task;
        Err(crate::engine::EngineError::no_such_step(&task, step).into())
    }
}

/// Whether `text` cannot travel as a path segment: empty, or a dot segment that URL
/// normalization removes.
fn unsendable(text: &str) -> bool {
    matches!(text, "" | "." | "..")
}

/// A task id as a path segment. One that cannot be sent names no task (ids are hexadecimal),
/// so the client gives the engine's answer, "no task matches …", itself.
fn task_segment(id: &str) -> Result<String, Problem> {
    if unsendable(id) {
        return Err(
            crate::engine::EngineError::from(crate::store::StoreError::NoSuchTask(id.to_string())).into(),
        );
    }
    Ok(seg(id))
}

/// A path segment, percent-encoded (ids and step names come from people).
fn seg(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl Client for Http {
    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::Remote(self.conn.url.clone())
    }

    fn now(&self) -> Timestamp {
        crate::engine::Clock::new().now()
    }

    fn link(&self) -> Option<watch::Receiver<Link>> {
        Some(self.conn.link.subscribe())
    }

    async fn catalog(&self) -> Result<Arc<Catalog>, Problem> {
        self.catalog
            .get_or_try_init(|| async {
                let files: Vec<CatalogFile> = self.conn.get("/v1/workflows/files").await?;
                let sources: Vec<Source> = files
                    .into_iter()
                    .map(|f| Source::Inline {
                        file: f.file,
                        text: f.text,
                    })
                    .collect();
                // The server checked the handlers; the client only reads templates.
                Catalog::load(&sources, &|_| true)
                    .map(Arc::new)
                    .map_err(|errors| {
                        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                        Problem::new(
                            ErrorKind::Unavailable,
                            format!("the server's workflows do not load here:\n{}", lines.join("\n")),
                        )
                    })
            })
            .await
            .cloned()
    }

    async fn tasks(&self, query: &TaskQuery) -> Result<TaskPage, Problem> {
        let request = self
            .conn
            .http
            .get(format!("{}/v1/tasks", self.conn.url))
            .query(query);
        self.conn.send(request).await
    }

    async fn task(&self, id: &str) -> Result<TaskDetail, Problem> {
        self.conn.get(&format!("/v1/tasks/{}", task_segment(id)?)).await
    }

    async fn submit(&self, task: NewTask) -> Result<Task, Problem> {
        self.conn.post("/v1/tasks", &task).await
    }

    async fn submit_batch(&self, tasks: Vec<NewTask>) -> Result<Vec<BatchItem>, Problem> {
        let answer: crate::api::BatchResults = self
            .conn
            .post("/v1/tasks/batch", &json!({ "tasks": tasks }))
            .await?;
        Ok(answer.results)
    }

    async fn retry(&self, id: &str, reason: &str) -> Result<Task, Problem> {
        self.conn
            .post(
                &format!("/v1/tasks/{}/retry", task_segment(id)?),
                &json!({ "reason": reason }),
            )
            .await
    }

    async fn cancel(&self, id: &str, reason: &str) -> Result<Task, Problem> {
        self.conn
            .post(
                &format!("/v1/tasks/{}/cancel", task_segment(id)?),
                &json!({ "reason": reason }),
            )
            .await
    }

    async fn retry_now(&self, id: &str, step: &str, reason: &str) -> Result<Task, Problem> {
        self.conn
            .post(
                &format!(
                    "/v1/tasks/{}/steps/{}/retry-now",
                    task_segment(id)?,
                    self.step_segment(id, step).await?
                ),
                &json!({ "reason": reason }),
            )
            .await
    }

    async fn resolve(&self, id: &str, step: &str, results: Value, reason: &str) -> Result<Task, Problem> {
        self.conn
            .post(
                &format!(
                    "/v1/tasks/{}/steps/{}/resolve",
                    task_segment(id)?,
                    self.step_segment(id, step).await?
                ),
                &json!({ "results": results, "reason": reason }),
            )
            .await
    }

    async fn decide(
        &self,
        id: &str,
        step: &str,
        approve: bool,
        note: Option<String>,
    ) -> Result<Task, Problem> {
        let (verb, body) = if approve {
            ("approve", json!({ "note": note }))
        } else {
            ("deny", json!({ "reason": note.unwrap_or_default() }))
        };
        let path = format!(
            "/v1/tasks/{}/steps/{}/{verb}",
            task_segment(id)?,
            self.step_segment(id, step).await?
        );
        self.conn.post(&path, &body).await
    }

    async fn approvals(&self) -> Result<Vec<PendingApproval>, Problem> {
        self.conn.get("/v1/approvals").await
    }

    async fn status(&self) -> Result<Status, Problem> {
        self.conn.get("/health/status").await
    }

    async fn metrics_summary(&self) -> Result<crate::telemetry::recent::MetricsSummary, Problem> {
        self.conn.get("/v1/metrics/summary").await
    }

    async fn audit(&self, query: &super::AuditQuery) -> Result<Vec<crate::audit::AuditEntry>, Problem> {
        let mut params: Vec<(&str, String)> = Vec::new();
        for (name, value) in [
            ("actor", &query.actor),
            ("task", &query.task),
            ("action", &query.action),
        ] {
            if let Some(v) = value {
                params.push((name, v.clone()));
            }
        }
        if let Some(limit) = query.limit {
            params.push(("limit", limit.to_string()));
        }
        let encoded: String = params
            .iter()
            .map(|(k, v)| format!("{k}={}", seg(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.conn.get(&format!("/v1/audit?{encoded}")).await
    }

    async fn events(&self, after: Option<u64>) -> Result<EventFeed, Problem> {
        let first = self.conn.open_events(after).await?;
        let (tx, rx) = mpsc::channel::<Result<Event, Problem>>(1024);
        tokio::spawn(follow(self.conn.clone(), first, after, tx));
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }
}

type Sse = futures::stream::BoxStream<
    'static,
    Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>,
>;

impl Connection {
    /// Opens `/v1/events`; a refusal (401, 403, 400) is returned as the server's problem.
    async fn open_events(&self, after: Option<u64>) -> Result<Sse, Problem> {
        use eventsource_stream::Eventsource;
        let mut request = self.http.get(format!("{}/v1/events", self.url));
        if let Some(seq) = after {
            request = request.query(&[("after", seq)]);
        }
        let response = request
            .bearer_auth(self.bearer().await?)
            .send()
            .await
            .map_err(|e| self.lost(&e))?;
        if !response.status().is_success() {
            let status = response.status();
            let bytes = response.bytes().await.unwrap_or_default();
            return Err(match serde_json::from_slice::<crate::api::ErrorBody>(&bytes) {
                Ok(body) => body.error,
                Err(_) => Problem::new(ErrorKind::Unavailable, format!("the server answered {status}")),
            });
        }
        Ok(response.bytes_stream().eventsource().boxed())
    }
}

/// The event feed's task: reads the stream and, when it breaks, reconnects with backoff after
/// the last sequence number it delivered.
async fn follow(
    client: Arc<Connection>,
    first: Sse,
    mut last: Option<u64>,
    tx: mpsc::Sender<Result<Event, Problem>>,
) {
    let mut stream = Some(first);
    let mut backoff = Duration::from_millis(100);
    let mut renew = false;
    loop {
        if let Some(mut sse) = stream.take() {
            client.link.send_replace(Link::Up);
            // The backoff starts over only for a stream that worked for a while: one that
            // a server opens and drops at once must not be retried ten times a second.
            let opened = Instant::now();
            while let Some(item) = sse.next().await {
                let Ok(message) = item else { break };
                // The server says where the stream starts, so a reconnection before the
                // first event resumes from there, not from a later "now".
                if message.event == "ready" {
                    last = message.id.parse().ok().or(last);
                    continue;
                }
                if message.event == "error" {
                    let problem = serde_json::from_str::<crate::api::ErrorBody>(&message.data)
                        .map(|b| b.error)
                        .unwrap_or_else(|_| Problem::new(ErrorKind::Unavailable, message.data));
                    // A token minted here expired under a long stream: the next one is fresh.
                    if problem.kind == ErrorKind::Unauthenticated
                        && matches!(client.credentials, Credentials::Key(_))
                    {
                        renew = true;
                        break;
                    }
                    let _ = tx.send(Err(problem)).await;
                    return;
                }
                let Ok(event) = serde_json::from_str::<Event>(&message.data) else {
                    continue;
                };
                last = Some(event.seq);
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
            if std::mem::take(&mut renew) {
                match client.open_events(last).await {
                    Ok(sse) => {
                        stream = Some(sse);
                        continue;
                    }
                    Err(p) => client.link.send_replace(Link::Down(p.message)),
                };
            } else if opened.elapsed() >= Duration::from_secs(5) {
                backoff = Duration::from_millis(100);
            }
            client.proven.store(false, std::sync::atomic::Ordering::Release);
            client
                .link
                .send_replace(Link::Down("the connection to the server was lost".into()));
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = tx.closed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
        match client.open_events(last).await {
            Ok(sse) => stream = Some(sse),
            // Down, or (for a minted token) not yet proven to be our server again: retry.
            Err(p)
                if p.kind == ErrorKind::Unavailable
                    || (client.prove_with.is_some()
                        && !client.proven.load(std::sync::atomic::Ordering::Acquire)) =>
            {
                client.link.send_replace(Link::Down(p.message));
            }
            Err(p) => {
                let _ = tx.send(Err(p)).await;
                return;
            }
        }
    }
}
