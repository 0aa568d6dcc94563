//! What every handler receives, checked: the caller (a verified bearer token, within its
//! rate limit) and JSON bodies parsed into typed requests with errors that say what is wrong.

use super::error::ApiError;
use super::AppState;
use crate::auth::Identity;
use crate::engine::ErrorKind;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// The authenticated caller of a request.
pub struct Caller(pub Identity);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let from = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let unauthenticated = |why: &str| {
            journal_failure(state, from, why);
            state
                .limits
                .failed(from, ApiError::new(ErrorKind::Unauthenticated, why))
        };
        let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(unauthenticated(
                "this endpoint needs `Authorization: Bearer <token>` (issue one with `taskdeck token issue`)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))?;
        let who = crate::auth::token::verify_any(
            &state.key,
            state.previous_key.as_deref().map(Vec::as_slice),
            state.idp.as_deref(),
            token,
        )
        .map_err(|e| unauthenticated(&e.to_string()))?;
        first_use(state, &who, token);
        state.limits.admit(&who)?;
        Ok(Caller(who))
    }
}

/// The first use of each token since this server started is journaled (`token.first_use`,
/// SOC 2 CC6.2) under the token's fingerprint (a SHA-256 prefix; the token itself is never
/// kept), with whom it names.
fn first_use(state: &AppState, who: &Identity, token: &str) {
    use sha2::{Digest, Sha256};
    let fingerprint = crate::audit::entry::hex(&Sha256::digest(token.trim().as_bytes())[..8]);
    let new = match state.seen_tokens.lock() {
        Ok(mut seen) => {
            if seen.len() >= 100_000 {
                seen.clear();
            }
            seen.insert(fingerprint.clone())
        }
        Err(_) => false,
    };
    if !new {
        return;
    }
    let mut record = crate::audit::AuditRecord::new(
        state.engine.clock().now(),
        &who.sub,
        "token.first_use",
        format!("token/{fingerprint}"),
        format!(
            "{} first used since the server started; expires {}{}",
            who.describe(),
            who.expires_at
                .map_or_else(|| "never".into(), crate::model::format_timestamp),
            if who
                .auth
                .as_ref()
                .is_some_and(|a| a.amr.iter().any(|m| m == "mfa"))
            {
                "; mfa"
            } else {
                ""
            }
        ),
    );
    record.compliance_tags = vec!["SOC2:CC6.2".into()];
    journal(state, record);
}

/// A refused credential (bad, expired, or none) is journaled (`authn.failed`, SOC 2 CC6.2),
/// at most `FAILURES_PER_MINUTE` a minute so a flood of guesses cannot grow the journal
/// without bound (the rate limiter throttles the guesser meanwhile).
fn journal_failure(state: &AppState, from: Option<std::net::IpAddr>, why: &str) {
    let now = state.engine.clock().now();
    let minute = now / 60_000;
    let admitted = match state.failures.lock() {
        Ok(mut window) => {
            if window.0 != minute {
                *window = (minute, 0);
            }
            window.1 = window.1.saturating_add(1);
            window.1 <= FAILURES_PER_MINUTE
        }
        Err(_) => false,
    };
    if !admitted {
        return;
    }
    let mut record = crate::audit::AuditRecord::new(
        now,
        from.map_or_else(|| "unknown".into(), |ip| format!("ip:{ip}")),
        "authn.failed",
        "api".into(),
        crate::telemetry::filter::scrub_text(&crate::model::clip(why, 200)),
    );
    record.outcome = "denied".into();
    record.compliance_tags = vec!["SOC2:CC6.2".into()];
    journal(state, record);
}

/// Most refused credentials journaled a minute.
pub const FAILURES_PER_MINUTE: u32 = 100;

fn journal(state: &AppState, record: crate::audit::AuditRecord) {
    let store = state.engine.store().clone();
    tokio::spawn(async move {
        if let Err(e) = store.append_audit(vec![record]).await {
            tracing::error!("cannot journal an authentication: {e}");
        }
    });
}

/// Path parameters, with a malformed one (bad percent-encoding, not UTF-8) answered as a
/// typed 400 like every other error.
pub struct Segments<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Segments<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Segments(v))
            .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("the path: {}", e.body_text())))
    }
}

/// How long a request body may take to arrive once its headers have (a client that trickles
/// its body holds a connection and a buffer).
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A JSON request body of type `T`, whatever content type the client sent (curl's `-d`
/// sends a form type). Malformed JSON is 400; JSON of the wrong shape (an unknown field, a
/// missing one, a wrong type) is 422 naming it; a body over the limit is 413.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if let Some(encoding) = req.headers().get(axum::http::header::CONTENT_ENCODING) {
            if !encoding.as_bytes().eq_ignore_ascii_case(b"identity") {
                return Err(ApiError::new(
                    ErrorKind::BadRequest,
                    "compressed request bodies (Content-Encoding) are not supported: send the JSON as is",
                ));
            }
        }
        let read = tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::Bytes::from_request(req, state));
        let bytes = read
            .await
            .map_err(|_| {
                ApiError::new(
                    ErrorKind::BadRequest,
                    format!(
                        "the request body did not arrive within {} s",
                        BODY_READ_TIMEOUT.as_secs()
                    ),
                )
            })?
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        ErrorKind::TooLarge,
                        format!(
                            "the request body is larger than the {}-byte limit",
                            state.max_body_bytes
                        ),
                    )
                } else {
                    ApiError::new(
                        ErrorKind::BadRequest,
                        format!("cannot read the request body: {e}"),
                    )
                }
            })?;
        // A byte-order mark is not JSON, but editors write one.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            bytes
        };
        // Every body is an object; serde would also take a struct written as an array.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => ApiError::new(ErrorKind::Invalid, "the request body must be a JSON object ({…})"),
                Err(e) => ApiError::new(
                    ErrorKind::BadRequest,
                    format!("the request body is not valid JSON: {e}"),
                ),
            });
        }
        serde_json::from_slice(body).map(JsonBody).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => ApiError::new(ErrorKind::Invalid, format!("the request body: {e}")),
                Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                    ErrorKind::BadRequest,
                    format!("the request body is not valid JSON: {e}"),
                ),
            }
        })
    }
}
