//! The `/v1` routes and health checks: each handler authenticates the caller (`Caller`),
//! parses its input, and answers through an in-process client bound to the caller, so the
//! API does exactly what the CLI and the console do. Documented for the OpenAPI document
//! (`openapi.rs`).

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody, Segments};
use super::AppState;
use crate::client::{
    BatchItem, CatalogFile, Client, Local, NewTask, TaskDetail, TaskPage, TaskQuery, WorkflowInfo,
};
use crate::engine::{ErrorKind, PendingApproval, Status};
use crate::model::Task;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

type Answer<T> = Result<Json<T>, ApiError>;

fn client(state: &AppState, Caller(who): Caller) -> Local {
    Local::new(state.engine.clone(), who)
}

/// The body of `/health/live` and `/health/ready`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `live`, `ready`, `unavailable` (the store takes no write) or `stopping`.
    pub status: String,
    /// Why it is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health {
        status: "live".into(),
        reason: None,
    })
}

/// The engine loop is running and its store takes a write (503 otherwise, saying which).
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match state.engine.query().ready().await {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "ready".into(),
                reason: None,
            }),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: if state.engine.is_running() {
                    "unavailable"
                } else {
                    "stopping"
                }
                .into(),
                reason: Some(reason),
            }),
        ),
    }
}

/// Counts of active, pending and recently failed tasks the caller may read; handlers and
/// namespaces.
#[utoipa::path(get, path = "/health/status", tag = "health", security(("bearer" = [])),
    responses((status = 200, body = Status), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn status(State(state): State<AppState>, caller: Caller) -> Answer<Status> {
    Ok(Json(client(&state, caller).status().await?))
}

/// The last ten minutes of each namespace the caller may read, in 10-second slices: tasks
/// completed and failed, p95 attempt time, SLA compliance, revenue processed and lost, the
/// slowest steps (with the task of the slowest attempt) and the latest business signals.
/// Kept in the engine's memory: it starts empty after a restart.
#[utoipa::path(get, path = "/v1/metrics/summary", tag = "health", security(("bearer" = [])),
    responses((status = 200, body = crate::telemetry::recent::MetricsSummary), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn metrics_summary(
    State(state): State<AppState>,
    caller: Caller,
) -> Answer<crate::telemetry::recent::MetricsSummary> {
    Ok(Json(client(&state, caller).metrics_summary().await?))
}

/// The engine's Prometheus metrics (text format 0.0.4): counts over every namespace, revenue
/// included, so only an admin or a `monitor` token (made for scrapers: it reads nothing else)
/// may read them.
#[utoipa::path(get, path = "/metrics", tag = "health", security(("bearer" = [])),
    responses((status = 200, content_type = "text/plain", body = String), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<axum::response::Response, ApiError> {
    state
        .engine
        .coordinator()
        .check(&who, crate::auth::Request::Metrics)
        .map_err(crate::engine::EngineError::from)?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::telemetry::metrics::CONTENT_TYPE,
        )],
        state.engine.metrics().encode(),
    )
        .into_response())
}

/// Where a proof is asked for: a client's random nonce.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProofRequest {
    /// 32 to 128 hexadecimal characters chosen at random by the client.
    #[param(pattern = "^[0-9a-f]{32,128}$")]
    pub nonce: String,
}

/// The server's proof that it holds the data directory's signing key, bound to the client's
/// nonce and the URL this server publishes.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Proof {
    /// base64url of HMAC-SHA256(key derived for "server proof", nonce + "\n" + URL).
    pub proof: String,
    /// The URL the proof is bound to.
    pub url: String,
}

/// Proves to a local client that this server holds the data directory's key, before the
/// client sends it a token minted with that key (so a process squatting the port of a server
/// that died cannot collect one). Needs no token.
#[utoipa::path(get, path = "/v1/proof", tag = "auth", params(ProofRequest),
    responses((status = 200, body = Proof), (status = 400, body = ErrorBody)))]
pub async fn proof(
    State(state): State<AppState>,
    query: Result<Query<ProofRequest>, axum::extract::rejection::QueryRejection>,
) -> Answer<Proof> {
    use base64::Engine as _;
    let nonce = query
        .ok()
        .map(|Query(q)| q.nonce)
        .filter(|n| {
            (32..=128).contains(&n.len())
                && n.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or_else(|| {
            ApiError::field(
                ErrorKind::BadRequest,
                "nonce",
                "nonce must be 32 to 128 lowercase hexadecimal characters",
            )
        })?;
    let proof = crate::auth::token::server_proof(&state.key, &nonce, &state.url);
    Ok(Json(Proof {
        proof: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(proof),
        url: state.url.to_string(),
    }))
}

/// Who the token names: subject, team, role and expiry.
#[utoipa::path(get, path = "/v1/whoami", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Whoami), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn whoami(Caller(who): Caller) -> Json<Whoami> {
    Json(Whoami {
        sub: who.sub,
        team: who.team,
        role: who.role.to_string(),
        expires_at: who.expires_at,
    })
}

/// The caller's identity.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Whoami {
    pub sub: String,
    pub team: String,
    /// viewer, operator, manager or admin.
    pub role: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: Option<i64>,
}

/// The workflows in the catalog.
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows", security(("bearer" = [])),
    responses((status = 200, body = [WorkflowInfo]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn workflows(State(state): State<AppState>, Caller(who): Caller) -> Answer<Vec<WorkflowInfo>> {
    readers_only(&state, &who)?;
    Ok(Json(
        state
            .engine
            .catalog()
            .iter()
            .map(|w| {
                let t = &w.template;
                WorkflowInfo {
                    namespace: t.namespace.clone(),
                    name: t.name.clone(),
                    version: t.version.to_string(),
                    reference: t.reference(),
                    description: t.description.clone(),
                    steps: t.steps.len(),
                }
            })
            .collect(),
    ))
}

/// Refuses identities that read nothing here (a monitor token reads only `/metrics`).
fn readers_only(state: &AppState, who: &crate::auth::Identity) -> Result<(), ApiError> {
    state
        .engine
        .coordinator()
        .authenticate(who)
        .map_err(|d| crate::engine::EngineError::from(d).into())
}

/// The catalog's files (YAML), from which a remote console loads the same catalog.
#[utoipa::path(get, path = "/v1/workflows/files", tag = "workflows", security(("bearer" = [])),
    responses((status = 200, body = [CatalogFile]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn workflow_files(State(state): State<AppState>, Caller(who): Caller) -> Answer<Vec<CatalogFile>> {
    readers_only(&state, &who)?;
    Ok(Json(
        state
            .engine
            .catalog()
            .files()
            .iter()
            .map(|(file, text)| CatalogFile {
                file: file.clone(),
                text: text.clone(),
            })
            .collect(),
    ))
}

/// Audit journal entries, newest first (`audit:read`; personal values revealed only with
/// `pii:read`).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])), params(crate::client::AuditQuery),
    responses((status = 200, body = Vec<crate::audit::AuditEntry>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<crate::client::AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer<Vec<crate::audit::AuditEntry>> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            ErrorKind::BadRequest,
            format!("the query string: {}", e.body_text()),
        )
    })?;
    Ok(Json(client(&state, caller).audit(&query).await?))
}

/// Tasks the caller may read, oldest first, one page at a time.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", security(("bearer" = [])), params(TaskQuery),
    responses((status = 200, body = TaskPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<TaskQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer<TaskPage> {
    let Query(mut query) = query.map_err(|e| {
        ApiError::new(
            ErrorKind::BadRequest,
            format!("the query string: {}", e.body_text()),
        )
    })?;
    if let Some(limit) = query.limit {
        if !(1..=crate::engine::query::MAX_PAGE).contains(&limit) {
            return Err(ApiError::field(
                ErrorKind::Invalid,
                "limit",
                format!(
                    "limit must be 1 to {}, got {limit}",
                    crate::engine::query::MAX_PAGE
                ),
            ));
        }
    }
    if let Some(cursor) = &query.cursor {
        let id = state.cursors.decode(cursor).ok_or_else(|| {
            ApiError::field(
                ErrorKind::BadRequest,
                "cursor",
                "the cursor is not one this server issued (altered, or from another server); start again without it",
            )
        })?;
        query.cursor = Some(id);
    }
    let mut page = client(&state, caller).tasks(&query).await?;
    page.next_cursor = page.next_cursor.map(|id| state.cursors.encode(&id));
    Ok(Json(page))
}

/// Creates a task; answers once it is stored (per the server's durability).
#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", security(("bearer" = [])), request_body = NewTask,
    responses((status = 201, body = Task), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create_task(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(task): JsonBody<NewTask>,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(client(&state, caller).submit(task).await?),
    ))
}

/// Up to 1,000 tasks to create.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, expecting = "{\"tasks\": [a task, …]}")]
pub struct Batch {
    pub tasks: Vec<NewTask>,
}

/// What became of each task of a batch, in order.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchResults {
    pub results: Vec<BatchItem>,
}

/// Creates up to 1,000 tasks in one stored group; each succeeds or fails on its own.
#[utoipa::path(post, path = "/v1/tasks/batch", tag = "tasks", security(("bearer" = [])), request_body = Batch,
    responses((status = 200, body = BatchResults), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create_batch(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(batch): JsonBody<Batch>,
) -> Answer<BatchResults> {
    // A malformed reference makes the request malformed (one bad item, no tasks created);
    // a well-formed one that names no workflow fails on its own, like any other item.
    for (i, task) in batch.tasks.iter().enumerate() {
        if !crate::workflow::well_formed_reference(&task.workflow) {
            return Err(ApiError::field(
                ErrorKind::Invalid,
                &format!("tasks[{i}].workflow"),
                format!(
                    "`{}` is not NAMESPACE/NAME or NAMESPACE/NAME@MAJOR.MINOR.PATCH",
                    task.workflow
                ),
            ));
        }
    }
    Ok(Json(BatchResults {
        results: client(&state, caller).submit_batch(batch.tasks).await?,
    }))
}

/// One task (a full id, or an unambiguous prefix or short id) with its transitions.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", security(("bearer" = [])),
    params(("id" = String, Path, description = "A task id, prefix or short id")),
    responses((status = 200, body = TaskDetail), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn show_task(
    State(state): State<AppState>,
    caller: Caller,
    Segments(id): Segments<String>,
) -> Answer<TaskDetail> {
    Ok(Json(client(&state, caller).task(&id).await?))
}

/// Why an operator acted, kept in the transition log.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, expecting = "{\"reason\": \"…\"}")]
pub struct Reason {
    pub reason: Option<String>,
}

/// Gives a failed task's failed steps a fresh attempt budget.
#[utoipa::path(post, path = "/v1/tasks/{id}/retry", tag = "tasks", security(("bearer" = [])), request_body = Reason,
    params(("id" = String, Path, description = "A task id, prefix or short id")),
    responses((status = 200, body = Task), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn retry_task(
    State(state): State<AppState>,
    caller: Caller,
    Segments(id): Segments<String>,
    JsonBody(body): JsonBody<Reason>,
) -> Answer<Task> {
    let reason = body.reason.unwrap_or_else(|| "operator retry".into());
    Ok(Json(client(&state, caller).retry(&id, &reason).await?))
}

/// Cancels a task.
#[utoipa::path(post, path = "/v1/tasks/{id}/cancel", tag = "tasks", security(("bearer" = [])), request_body = Reason,
    params(("id" = String, Path, description = "A task id, prefix or short id")),
    responses((status = 200, body = Task), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn cancel_task(
    State(state): State<AppState>,
    caller: Caller,
    Segments(id): Segments<String>,
    JsonBody(body): JsonBody<Reason>,
) -> Answer<Task> {
    let reason = body.reason.unwrap_or_else(|| "cancelled by operator".into());
    Ok(Json(client(&state, caller).cancel(&id, &reason).await?))
}

/// Results given by hand for a step.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, expecting = "{\"results\": {…}, \"reason\": \"…\"}")]
pub struct Resolution {
    #[schema(value_type = Object)]
    pub results: Value,
    pub reason: Option<String>,
}

/// Starts a step waiting out its backoff at once (the attempt the timer would have started),
/// recorded with the caller and reason.
#[utoipa::path(post, path = "/v1/tasks/{id}/steps/{step}/retry-now", tag = "steps", security(("bearer" = [])), request_body = Reason,
    params(("id" = String, Path, description = "A task id, prefix or short id"), ("step" = String, Path, description = "The step's name")),
    responses((status = 200, body = Task), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn retry_step_now(
    State(state): State<AppState>,
    caller: Caller,
    Segments((id, step)): Segments<(String, String)>,
    JsonBody(body): JsonBody<Reason>,
) -> Answer<Task> {
    let reason = body.reason.unwrap_or_else(|| "retry now".into());
    Ok(Json(client(&state, caller).retry_now(&id, &step, &reason).await?))
}

/// Completes a step with results an operator supplies: a step in error, or a pending step
/// whose parents are done; never an approval gate or a step that feeds one.
#[utoipa::path(post, path = "/v1/tasks/{id}/steps/{step}/resolve", tag = "steps", security(("bearer" = [])), request_body = Resolution,
    params(("id" = String, Path, description = "A task id, prefix or short id"), ("step" = String, Path, description = "The step's name")),
    responses((status = 200, body = Task), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn resolve_step(
    State(state): State<AppState>,
    caller: Caller,
    Segments((id, step)): Segments<(String, String)>,
    JsonBody(body): JsonBody<Resolution>,
) -> Answer<Task> {
    let reason = body.reason.unwrap_or_else(|| "resolved by operator".into());
    Ok(Json(
        client(&state, caller)
            .resolve(&id, &step, body.results, &reason)
            .await?,
    ))
}

/// An approval's optional note.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, expecting = "{\"note\": \"…\"}")]
pub struct Note {
    pub note: Option<String>,
}

/// Approves a step waiting for approval.
#[utoipa::path(post, path = "/v1/tasks/{id}/steps/{step}/approve", tag = "steps", security(("bearer" = [])), request_body = Note,
    params(("id" = String, Path, description = "A task id, prefix or short id"), ("step" = String, Path, description = "The step's name")),
    responses((status = 200, body = Task), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn approve_step(
    State(state): State<AppState>,
    caller: Caller,
    Segments((id, step)): Segments<(String, String)>,
    JsonBody(body): JsonBody<Note>,
) -> Answer<Task> {
    Ok(Json(
        client(&state, caller).decide(&id, &step, true, body.note).await?,
    ))
}

/// A denial's reason (required).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, expecting = "{\"reason\": \"…\"}")]
pub struct Denial {
    pub reason: String,
}

/// Denies a step waiting for approval.
#[utoipa::path(post, path = "/v1/tasks/{id}/steps/{step}/deny", tag = "steps", security(("bearer" = [])), request_body = Denial,
    params(("id" = String, Path, description = "A task id, prefix or short id"), ("step" = String, Path, description = "The step's name")),
    responses((status = 200, body = Task), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn deny_step(
    State(state): State<AppState>,
    caller: Caller,
    Segments((id, step)): Segments<(String, String)>,
    JsonBody(body): JsonBody<Denial>,
) -> Answer<Task> {
    Ok(Json(
        client(&state, caller)
            .decide(&id, &step, false, Some(body.reason))
            .await?,
    ))
}

/// Steps waiting for a decision in tasks the caller may read (expired requests are not
/// listed).
#[utoipa::path(get, path = "/v1/approvals", tag = "steps", security(("bearer" = [])),
    responses((status = 200, body = [PendingApproval]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn approvals(State(state): State<AppState>, caller: Caller) -> Answer<Vec<PendingApproval>> {
    Ok(Json(client(&state, caller).approvals().await?))
}

/// Where an event stream starts.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct After {
    /// The last sequence number seen; the stream starts after it. Without it (and without a
    /// `Last-Event-ID` header), the stream starts with the next event.
    pub after: Option<u64>,
}

/// Server-Sent Events: each event's `id` is its durable sequence number and its `data` the
/// event as JSON. Resume with `?after=SEQ` or the `Last-Event-ID` header.
#[utoipa::path(get, path = "/v1/events", tag = "events", security(("bearer" = [])), params(After),
    responses((status = 200, description = "A text/event-stream: first `event: ready` with `id` the starting sequence number, then one message per event with `id` its sequence number and `data` the event as JSON (the `Event` schema)", body = String, content_type = "text/event-stream"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    after: Result<Query<After>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(After { after }) = after.map_err(|e| {
        ApiError::new(
            ErrorKind::BadRequest,
            format!("the query string: {}", e.body_text()),
        )
    })?;
    // A reconnecting EventSource repeats its first URL and says where it got to in
    // Last-Event-ID: that wins over `after`.
    let after = match headers.get("last-event-id") {
        Some(id) => Some(
            id.to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| {
                    ApiError::field(
                        ErrorKind::BadRequest,
                        "Last-Event-ID",
                        "Last-Event-ID must be a sequence number",
                    )
                })?,
        ),
        None => after,
    };
    // Where the stream starts, said first (`event: ready`, `id: SEQ`), so a client that loses
    // the connection before any event resumes from here.
    let start = match after {
        Some(seq) => seq,
        None => state.engine.query().newest_event().await?,
    };
    let guard = state.streams.open(&who)?;
    let feed = client(&state, Caller(who)).events(Some(start)).await?;
    let ready = SseEvent::default()
        .event("ready")
        .id(start.to_string())
        .data("{}");
    let stream = futures::stream::once(async move { Ok(ready) }).chain(feed.map(|item| {
        Ok::<_, std::convert::Infallible>(match item {
            Ok(event) => SseEvent::default()
                .id(event.seq.to_string())
                .json_data(&event)
                .unwrap_or_else(|_| SseEvent::default().comment("unencodable event")),
            Err(problem) => SseEvent::default()
                .event("error")
                .json_data(ErrorBody { error: problem })
                .unwrap_or_else(|_| SseEvent::default().event("error")),
        })
    }));
    let mut closing = state.closing.clone();
    let closed = async move {
        let _ = closing.wait_for(|c| *c).await;
    };
    // The guard lives as long as the stream: dropping the connection frees the slot.
    let stream = stream.take_until(closed).map(move |item| {
        let _open = &guard;
        item
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn workflow_references_are_checked_for_shape() {
        for good in ["ecommerce/process_order", "a/b@1.0.0", "x.y/z-w@10.20.300"] {
            assert!(crate::workflow::well_formed_reference(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "a/",
            "/b",
            "a/b/c",
            "0/0*",
            "a/b@1.0",
            "a/b@01.0.0",
            "a/b@1.0.0.0",
            "a/b@",
        ] {
            assert!(!crate::workflow::well_formed_reference(bad), "{bad}");
        }
    }
}
