//! The HTTP API over real loopback sockets: every role against every endpoint, bad input of
//! every kind, cursors, rate limits, and an event stream that resumes after any sequence
//! number. The server is the crate's own router on a bound port; the client is reqwest (and
//! the crate's `Http` client, which the CLI and console use).

mod common;

use common::refunds::{refund, CS};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use taskdeck::api::{router, Listener, ServerOptions};
use taskdeck::auth::{Identity, Role};
use taskdeck::client::{Client, Credentials, Http, HttpOptions};
use taskdeck::engine::{Engine, SubmitRequest};

const KEY: [u8; 32] = [42; 32];

struct Server {
    url: String,
    engine: Arc<Engine>,
    stop: tokio::sync::watch::Sender<bool>,
    http: reqwest::Client,
}

async fn serve(options: ServerOptions) -> Server {
    let h = common::start_blog(
        Arc::new(taskdeck::services::Services::new(false)),
        common::temp_store(),
    )
    .await;
    let engine = Arc::new(h.engine);
    let listener = Listener::bind(&options).await.unwrap();
    let url = listener.url();
    let (stop, closed) = tokio::sync::watch::channel(false);
    let app = router(engine.clone(), KEY.to_vec(), &url, &options, closed.clone());
    let mut stopped = closed;
    tokio::spawn(listener.serve(
        app,
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
        Duration::from_secs(1),
    ));
    Server {
        url,
        engine,
        stop,
        http: reqwest::Client::new(),
    }
}

fn loopback() -> ServerOptions {
    ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerOptions::default()
    }
}

/// A token for `who`, issued right after MFA (refunds are sensitive: they need a step-up).
fn token(who: &Identity) -> String {
    let who = who.clone().authenticated(taskdeck::auth::Authn {
        amr: vec!["pwd".into(), "mfa".into()],
        auth_time: Some(chrono::Utc::now().timestamp_millis()),
    });
    taskdeck::auth::token::issue(&KEY, &who, Duration::from_secs(600)).unwrap()
}

fn admin() -> Identity {
    Identity::new("root", "local", Role::Admin)
}
fn manager() -> Identity {
    common::refunds::manager()
}
fn agent() -> Identity {
    common::refunds::agent()
}
fn colleague() -> Identity {
    Identity::new("omar", "customer_success", Role::Operator)
}
fn viewer() -> Identity {
    Identity::new("vic", "customer_success", Role::Viewer)
}
fn outsider() -> Identity {
    Identity::new("ola", "ecommerce", Role::Manager)
}

impl Server {
    async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.url);
        let mut request = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        if let Some(t) = bearer {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let is_sse = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
        if is_sse {
            return (status, Value::Null);
        }
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A refund of $150 from the agent, waiting for a manager.
    async fn waiting_refund(&self) -> String {
        let task = self
            .engine
            .submit(SubmitRequest::new(CS, refund(15_000), agent()))
            .await
            .unwrap();
        self.engine.when_idle().await.unwrap();
        task.id
    }
}

/// What each identity gets from each endpoint. A task another team may not read is 404, not
/// 403: its existence does not leak.
#[tokio::test]
async fn every_role_against_every_endpoint() {
    let s = serve(loopback()).await;
    let people = [
        ("admin", Some(token(&admin()))),
        ("manager", Some(token(&manager()))),
        ("agent", Some(token(&agent()))),
        ("colleague", Some(token(&colleague()))),
        ("viewer", Some(token(&viewer()))),
        ("outsider", Some(token(&outsider()))),
        ("no token", None),
        (
            "forged",
            Some(taskdeck::auth::token::issue(&[1; 32], &admin(), Duration::from_secs(60)).unwrap()),
        ),
    ];
    // (endpoint, expected status for each person above, in order)
    type Row = (&'static str, [u16; 8]);
    let table: [Row; 18] = [
        (
            "POST /v1/tasks/{id}/steps/get_manager_approval/retry-now",
            [409, 409, 409, 409, 403, 404, 401, 401],
        ),
        ("GET /v1/audit", [200, 403, 403, 403, 403, 403, 401, 401]),
        ("GET /health/status", [200, 200, 200, 200, 200, 200, 401, 401]),
        (
            "GET /v1/metrics/summary",
            [200, 200, 200, 200, 200, 200, 401, 401],
        ),
        ("GET /v1/whoami", [200, 200, 200, 200, 200, 200, 401, 401]),
        ("GET /v1/workflows", [200, 200, 200, 200, 200, 200, 401, 401]),
        (
            "GET /v1/workflows/files",
            [200, 200, 200, 200, 200, 200, 401, 401],
        ),
        ("GET /v1/tasks", [200, 200, 200, 200, 200, 200, 401, 401]),
        ("POST /v1/tasks", [201, 201, 201, 201, 403, 403, 401, 401]),
        ("POST /v1/tasks/batch", [200, 200, 200, 200, 200, 200, 401, 401]),
        ("GET /v1/tasks/{id}", [200, 200, 200, 200, 200, 404, 401, 401]),
        (
            "POST /v1/tasks/{id}/retry",
            [409, 409, 409, 409, 403, 404, 401, 401],
        ),
        (
            "POST /v1/tasks/{id}/cancel",
            [200, 200, 200, 200, 403, 404, 401, 401],
        ),
        (
            "POST /v1/tasks/{id}/steps/get_manager_approval/resolve",
            [409, 409, 409, 409, 403, 404, 401, 401],
        ),
        (
            "POST /v1/tasks/{id}/steps/get_manager_approval/approve",
            [200, 200, 403, 403, 403, 404, 401, 401],
        ),
        (
            "POST /v1/tasks/{id}/steps/get_manager_approval/deny",
            [200, 200, 403, 403, 403, 404, 401, 401],
        ),
        ("GET /v1/approvals", [200, 200, 200, 200, 200, 200, 401, 401]),
        ("GET /v1/events", [200, 200, 200, 200, 200, 200, 401, 401]),
    ];
    let mut wrong = Vec::new();
    for (endpoint, expected) in table {
        for ((who, bearer), want) in people.iter().zip(expected) {
            let id = s.waiting_refund().await;
            let (method, path) = endpoint.split_once(' ').unwrap();
            let path = path.replace("{id}", &id);
            let body = match path.rsplit('/').next().unwrap() {
                "tasks" if method == "POST" => Some(json!({ "workflow": CS, "context": refund(500) })),
                "batch" => Some(json!({ "tasks": [{ "workflow": CS, "context": refund(500) }] })),
                "resolve" => Some(json!({ "results": { "approved": true } })),
                "deny" => Some(json!({ "reason": "duplicate of an earlier refund" })),
                _ if method == "POST" => Some(json!({})),
                _ => None,
            };
            let (status, answer) = s.call(method, &path, bearer.as_deref(), body).await;
            if status.as_u16() != want {
                wrong.push(format!(
                    "{endpoint} as {who}: got {status} {answer}, expected {want}"
                ));
            }
            if status.is_client_error() {
                let kind = answer["error"]["kind"].as_str().unwrap_or("");
                assert!(
                    !kind.is_empty(),
                    "{endpoint} as {who}: a typed error body, got {answer}"
                );
                assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let _ = s.stop.send(true);
}

#[tokio::test]
async fn reads_show_each_operator_only_what_they_may_read() {
    let s = serve(loopback()).await;
    let ours = s.waiting_refund().await;
    let theirs = s
        .engine
        .submit(SubmitRequest::new(
            "ecommerce/process_order",
            common::sample("process_order", json!({})),
            admin(),
        ))
        .await
        .unwrap();
    s.engine.when_idle().await.unwrap();
    let ids = |v: &Value| -> Vec<String> {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, mine) = s.call("GET", "/v1/tasks", Some(&token(&viewer())), None).await;
    assert!(
        ids(&mine).contains(&ours) && !ids(&mine).contains(&theirs.id),
        "{mine}"
    );
    let (_, all) = s.call("GET", "/v1/tasks", Some(&token(&admin())), None).await;
    assert!(ids(&all).contains(&ours) && ids(&all).contains(&theirs.id));
    let (_, inbox) = s
        .call("GET", "/v1/approvals", Some(&token(&outsider())), None)
        .await;
    assert_eq!(inbox, json!([]), "another team's requests are not listed");
    let (_, inbox) = s
        .call("GET", "/v1/approvals", Some(&token(&manager())), None)
        .await;
    assert_eq!(inbox[0]["task"], json!(ours));
    let (_, status) = s
        .call("GET", "/health/status", Some(&token(&viewer())), None)
        .await;
    assert_eq!(
        status["checks"]["task_processing"]["active_tasks"],
        json!(1),
        "only the refund counts for a viewer: {status}"
    );
    // The console's ten-minute summary: a namespace's figures only for those who read it.
    let (_, summary) = s
        .call("GET", "/v1/metrics/summary", Some(&token(&viewer())), None)
        .await;
    let names: Vec<&str> = summary["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["namespace"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"customer_success"), "{summary}");
    let (_, theirs) = s
        .call("GET", "/v1/metrics/summary", Some(&token(&outsider())), None)
        .await;
    assert!(
        !theirs["namespaces"].to_string().contains("\"customer_success\""),
        "{theirs}"
    );
    // Post 05's shape: checks and the engine's performance.
    assert_eq!(status["status"], "healthy", "{status}");
    assert_eq!(status["checks"]["database"], "ok");
    assert_eq!(status["checks"]["engine"], "ok");
    assert_eq!(status["checks"]["task_processing"]["pending_tasks"], json!(0));
    assert!(status["checks"]["step_handlers"]["registered_handlers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h == "blog_examples.update_inventory"));
    assert!(status["checks"]["step_handlers"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("customer_success")));
    assert!(
        status["performance"]["store_commit_p99_seconds"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(status["performance"]["commits_sampled"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn bad_input_gets_the_right_status_and_says_what_is_wrong() {
    let s = serve(ServerOptions {
        max_body_bytes: 64 * 1024,
        ..loopback()
    })
    .await;
    let t = token(&agent());
    let raw = |body: &'static str| {
        let request = s
            .http
            .post(format!("{}/v1/tasks", s.url))
            .bearer_auth(&t)
            .body(body);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = raw("{\"workflow\": ").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));

    let (status, body) = s
        .call(
            "POST",
            "/v1/tasks",
            Some(&t),
            Some(json!({ "workflow": CS, "context": refund(500), "priority": 1 })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `priority`"),
        "{body}"
    );

    let big = json!({ "workflow": CS, "context": { "pad": "x".repeat(100_000) } });
    let (status, body) = s.call("POST", "/v1/tasks", Some(&t), Some(big)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["kind"], "too_large");

    let (status, body) = s
        .call(
            "POST",
            "/v1/tasks",
            Some(&t),
            Some(json!({ "workflow": CS, "context": { "refund_amount": "lots" } })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "context");

    let (status, body) = s
        .call(
            "POST",
            "/v1/tasks",
            Some(&t),
            Some(json!({ "workflow": "customer_success/nope" })),
        )
        .await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = s.call("GET", "/v1/tasks/0000-no-such-task", Some(&t), None).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no task matches"));

    let (status, body) = s.call("GET", "/v1/tasks?state=lost", Some(&t), None).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = s.call("GET", "/v1/tasks?limit=0", Some(&t), None).await;
    assert_eq!(
        (status.as_u16(), body["error"]["field"].as_str()),
        (422, Some("limit")),
        "{body}"
    );
    let (status, body) = s.call("GET", "/v1/tasks?since=-1", Some(&t), None).await;
    assert_eq!(
        (status.as_u16(), body["error"]["field"].as_str()),
        (422, Some("since")),
        "{body}"
    );
    let (status, body) = s.call("GET", "/v1/tasks?cursor=x", Some(&t), None).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = s.call("GET", "/v1/tasks?namespace=nowhere", Some(&t), None).await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = s.call("GET", "/v1/events?after=-1", Some(&t), None).await;
    assert_eq!(status, 400);
    let (status, body) = s.call("GET", "/v1/nothing-here", Some(&t), None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = s
        .call("POST", "/v1/tasks/x/steps/y/deny", Some(&t), Some(json!({})))
        .await;
    assert_eq!(status, 422, "a denial without a reason: {body}");
    let many: Vec<Value> = (0..1001).map(|_| json!({ "workflow": CS })).collect();
    let (status, body) = s
        .call(
            "POST",
            "/v1/tasks/batch",
            Some(&t),
            Some(json!({ "tasks": many })),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    let (status, body) = s.call("GET", "/v1/tasks", Some("not-a-jwt"), None).await;
    assert_eq!(status, 401, "{body}");
    // A byte-order mark is skipped; a compressed body is refused with the reason.
    let (status, body) = raw("\u{feff}{\"workflow\": \"nope/none\"}").await;
    assert_eq!(status, 404, "{body}");
    let r = s
        .http
        .post(format!("{}/v1/tasks", s.url))
        .bearer_auth(&t)
        .header("content-encoding", "gzip")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Content-Encoding"));
    // A struct written as an array is not an object.
    let (status, body) = raw("[\"customer_success/process_refund\", {}]").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("JSON object"),
        "{body}"
    );
    // A path segment that is not UTF-8: a typed 400.
    let r = s
        .http
        .get(format!("{}/v1/tasks/%ff", s.url))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["kind"], "bad_request");
    let (status, body) = s.call("GET", "/v1/tasks?workflow=nope/abc", Some(&t), None).await;
    assert_eq!(
        (status.as_u16(), body["error"]["field"].as_str()),
        (422, Some("workflow")),
        "{body}"
    );
    let (status, body) = s
        .call("POST", "/v1/tasks/batch", Some(&t), Some(json!({ "tasks": [5] })))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        !body["error"]["message"].as_str().unwrap().contains("struct"),
        "no Rust type names: {body}"
    );
    assert!(s.engine.is_running(), "nothing above stopped the engine");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let s = serve(loopback()).await;
    // Signed with the right key, expired a minute ago.
    let now = chrono::Utc::now().timestamp() as u64;
    let claims = json!({ "sub": "jane", "team": "customer_success", "role": "manager", "iat": now - 120, "exp": now - 60 });
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&KEY),
    )
    .unwrap();
    let (status, body) = s.call("GET", "/v1/approvals", Some(&expired), None).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}

#[tokio::test]
async fn listings_page_with_cursors_and_a_tampered_cursor_is_refused() {
    let s = serve(loopback()).await;
    let t = token(&admin());
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(s.waiting_refund().await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tasks?limit=2&cursor={c}"),
            None => "/v1/tasks?limit=2".to_string(),
        };
        let (status, page) = s.call("GET", &path, Some(&t), None).await;
        assert_eq!(status, 200, "{page}");
        for task in page["tasks"].as_array().unwrap() {
            seen.push(task["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    made.reverse();
    assert_eq!(seen, made, "every task once, newest first");
    let (_, page) = s.call("GET", "/v1/tasks?limit=2", Some(&t), None).await;
    let good = page["next_cursor"].as_str().unwrap().to_string();
    let mut forged = good.clone().into_bytes();
    forged[1] = if forged[1] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let (status, body) = s
        .call("GET", &format!("/v1/tasks?cursor={forged}"), Some(&t), None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "cursor");
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after() {
    let s = serve(ServerOptions {
        rate_limit: 2,
        ..loopback()
    })
    .await;
    let t = token(&viewer());
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let r = s
            .http
            .get(format!("{}/v1/whoami", s.url))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
        }
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&200) && statuses.contains(&429), "{statuses:?}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
    // Another identity has its own budget.
    let (status, _) = s.call("GET", "/v1/whoami", Some(&token(&manager())), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn plain_http_off_loopback_is_refused_without_insecure_http() {
    let options = ServerOptions {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..ServerOptions::default()
    };
    let err = Listener::bind(&options).await.err().unwrap().to_string();
    assert!(
        err.contains("not a loopback address") && err.contains("--insecure-http"),
        "{err}"
    );
    let ok = Listener::bind(&ServerOptions {
        insecure_http: true,
        ..options
    })
    .await;
    assert!(ok.is_ok());
}

/// The crate's own HTTP client: a batch, an approval, and an event stream that resumes after
/// a sequence number with nothing missed and nothing twice.
#[tokio::test]
async fn the_http_client_resumes_the_event_stream_after_any_sequence_number() {
    use futures::StreamExt;
    let s = serve(loopback()).await;
    let connect = |who: Identity| {
        let url = s.url.clone();
        async move {
            Http::connect(HttpOptions {
                url,
                credentials: Credentials::Token(token(&who)),
                prove_with: None,
                ca: None,
            })
            .await
            .unwrap()
        }
    };
    let agent_client = connect(agent()).await;
    let manager_client = connect(manager()).await;
    assert_eq!(agent_client.identity().sub, "priya");
    let mut feed = manager_client.events(Some(0)).await.unwrap();
    let created = agent_client
        .submit_batch(
            (0..3)
                .map(|i| taskdeck::client::NewTask {
                    workflow: CS.into(),
                    // One refund per payment: a second one of the same payment is refused.
                    context: {
                        let mut c = refund(15_000);
                        c["payment_id"] = json!(format!("pay_98765432{i}"));
                        c
                    },
                })
                .collect(),
        )
        .await
        .unwrap();
    assert!(
        created
            .iter()
            .all(|c| matches!(c, taskdeck::client::BatchItem::Created(_))),
        "{created:?}"
    );
    s.engine.when_idle().await.unwrap();
    let inbox = manager_client.approvals().await.unwrap();
    assert_eq!(inbox.len(), 3);
    for a in &inbox {
        manager_client.decide(&a.task, &a.step, true, None).await.unwrap();
    }
    s.engine.when_idle().await.unwrap();
    // Everything so far, in order, consecutive.
    let mut seqs = Vec::new();
    let mut completed = 0;
    while completed < 6 {
        let e = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if e.name == "task.completed" {
            completed += 1; // three refunds and their three payments children
        }
        seqs.push(e.seq);
    }
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "in order: {seqs:?}");
    // From the middle: the same events after that point, none missed.
    let middle = seqs[seqs.len() / 2];
    let mut again = manager_client.events(Some(middle)).await.unwrap();
    for &want in seqs.iter().filter(|&&q| q > middle) {
        let e = tokio::time::timeout(Duration::from_secs(10), again.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(e.seq, want);
    }
    let outsider_client = connect(outsider()).await;
    let mut theirs = outsider_client.events(Some(0)).await.unwrap();
    let nothing = tokio::time::timeout(Duration::from_millis(300), theirs.next()).await;
    assert!(nothing.is_err(), "another team sees none of these events");
}

#[tokio::test]
async fn open_event_streams_are_capped_per_identity_and_freed_on_close() {
    let s = serve(loopback()).await;
    let t = token(&viewer());
    let open = || s.http.get(format!("{}/v1/events", s.url)).bearer_auth(&t).send();
    let mut streams = Vec::new();
    for _ in 0..taskdeck::api::MAX_STREAMS_PER_IDENTITY {
        let r = open().await.unwrap();
        assert_eq!(r.status(), 200);
        streams.push(r);
    }
    let over = open().await.unwrap();
    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("retry-after"));
    // Another identity is not affected.
    let other = s
        .http
        .get(format!("{}/v1/events", s.url))
        .bearer_auth(token(&manager()))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    drop(streams.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let again = open().await.unwrap();
        if again.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a closed stream frees its slot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that would mint its own token first asks the server to prove it holds the key,
/// bound to the server's address: a server with another key gets no token.
#[tokio::test]
async fn a_minted_token_goes_only_to_a_server_that_proves_it_holds_the_key() {
    let s = serve(loopback()).await;
    let with = |key: Vec<u8>| {
        Http::connect(HttpOptions {
            url: s.url.clone(),
            credentials: Credentials::Key(key),
            prove_with: None,
            ca: None,
        })
    };
    let ours = with(KEY.to_vec()).await.unwrap();
    assert_eq!(ours.identity().role, Role::Admin);
    let err = with(vec![9; 32]).await.err().unwrap();
    assert!(err.message.contains("did not prove it holds"), "{err}");
    assert_eq!(err.kind, taskdeck::engine::ErrorKind::Unauthenticated);
    // The proof is bound to the address: the same server's proof under another URL fails.
    let nonce = "0123456789abcdef0123456789abcdef";
    let (status, answer) = s
        .call("GET", &format!("/v1/proof?nonce={nonce}"), None, None)
        .await;
    assert_eq!(status, 200);
    use base64::Engine as _;
    let proof = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(answer["proof"].as_str().unwrap())
        .unwrap();
    assert_eq!(proof, taskdeck::auth::token::server_proof(&KEY, nonce, &s.url));
    assert_ne!(
        proof,
        taskdeck::auth::token::server_proof(&KEY, nonce, "http://127.0.0.1:1")
    );
    let (status, _) = s.call("GET", "/v1/proof?nonce=short", None, None).await;
    assert_eq!(status, 400);
}

/// Everything a request stores is bounded: reasons and notes (4 KiB), results given by hand
/// (the context limit), references and ids (echoed clipped in errors).
#[tokio::test]
async fn reasons_notes_and_results_are_bounded() {
    let s = serve(loopback()).await;
    let id = s.waiting_refund().await;
    let t = token(&manager());
    let long = "r".repeat(5000);
    for (path, body) in [
        (format!("/v1/tasks/{id}/cancel"), json!({ "reason": long })),
        (format!("/v1/tasks/{id}/retry"), json!({ "reason": long })),
        (
            format!("/v1/tasks/{id}/steps/get_manager_approval/approve"),
            json!({ "note": long }),
        ),
        (
            format!("/v1/tasks/{id}/steps/get_manager_approval/deny"),
            json!({ "reason": long }),
        ),
    ] {
        let (status, answer) = s.call("POST", &path, Some(&t), Some(body)).await;
        assert_eq!(status, 422, "{path}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains("4096"),
            "{answer}"
        );
    }
    let big = json!({ "results": { "pad": "x".repeat(1_100_000) } });
    let (status, answer) = s
        .call(
            "POST",
            &format!("/v1/tasks/{id}/steps/update_ticket_status/resolve"),
            Some(&token(&admin())),
            Some(big),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["field"], "results");
    let (status, answer) = s
        .call("GET", &format!("/v1/tasks/{}", "a".repeat(5000)), Some(&t), None)
        .await;
    assert_eq!(status, 404);
    assert!(
        answer["error"]["message"].as_str().unwrap().len() < 200,
        "{answer}"
    );
    let (status, _) = s
        .call(
            "POST",
            "/v1/tasks",
            Some(&t),
            Some(json!({ "workflow": format!("a/{}", "b".repeat(300)) })),
        )
        .await;
    assert_eq!(status, 422);
    // Nothing above changed the task.
    let (_, shown) = s.call("GET", &format!("/v1/tasks/{id}"), Some(&t), None).await;
    assert_eq!(shown["task"]["state"], "in_progress");
}

#[tokio::test]
async fn a_stream_cannot_start_after_events_that_have_not_happened_and_last_event_id_wins() {
    let s = serve(loopback()).await;
    s.waiting_refund().await;
    let t = token(&admin());
    let head = s.engine.store().last_event_seq().await.unwrap();
    let (status, answer) = s
        .call("GET", &format!("/v1/events?after={}", head + 5), Some(&t), None)
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["field"], "after");
    let (status, _) = s
        .call("GET", "/v1/events?after=9223372036854775808", Some(&t), None)
        .await;
    assert_eq!(status, 422);
    // `after=0` with `Last-Event-ID: head`: the stream starts at the header's position.
    let mut r = s
        .http
        .get(format!("{}/v1/events?after=0", s.url))
        .bearer_auth(&t)
        .header("Last-Event-ID", head.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(
        first.contains("event: ready") && first.contains(&format!("id: {head}")),
        "{first}"
    );
}

#[tokio::test]
async fn tokens_naming_critical_parameters_are_refused_and_guessing_is_throttled() {
    let s = serve(loopback()).await;
    let now = chrono::Utc::now().timestamp() as u64;
    let claims =
        json!({ "sub": "jane", "team": "customer_success", "role": "manager", "iat": now, "exp": now + 60 });
    let good = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&KEY),
    )
    .unwrap();
    let (status, _) = s.call("GET", "/v1/whoami", Some(&good), None).await;
    assert_eq!(status, 200);
    // The same claims and key, with `crit` in the header.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(json!({ "alg": "HS256", "typ": "JWT", "crit": ["exp"] }).to_string());
    let body = good.split('.').nth(1).unwrap();
    let signing_input = format!("{head}.{body}");
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&KEY).unwrap();
    mac.update(signing_input.as_bytes());
    let critical = format!("{signing_input}.{}", b64.encode(mac.finalize().into_bytes()));
    let (status, answer) = s.call("GET", "/v1/whoami", Some(&critical), None).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("crit"),
        "{answer}"
    );
    // Failed authentications from one address are limited too.
    let mut statuses = Vec::new();
    for _ in 0..60 {
        statuses.push(s.call("GET", "/v1/whoami", Some("forged"), None).await.0.as_u16());
    }
    assert!(statuses.contains(&401) && statuses.contains(&429), "{statuses:?}");
}

/// A page of tasks ends at 8 MiB of JSON, whatever the limit: contexts can be a MiB each.
#[tokio::test]
async fn a_page_of_large_tasks_is_cut_by_size_and_continues_with_the_cursor() {
    let s = serve(loopback()).await;
    let pad = "x".repeat(1_000_000);
    for _ in 0..10 {
        s.engine
            .submit(SubmitRequest::new(
                "demo/release_pipeline",
                json!({ "service": "billing", "git_ref": "v1", "pad": pad }),
                admin(),
            ))
            .await
            .unwrap();
    }
    let t = token(&admin());
    let (status, page) = s.call("GET", "/v1/tasks?limit=1000", Some(&t), None).await;
    assert_eq!(status, 200);
    let first = page["tasks"].as_array().unwrap().len();
    assert!((1..10).contains(&first), "{first} tasks in the first page");
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = s
        .call(
            "GET",
            &format!("/v1/tasks?limit=1000&cursor={cursor}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(first + rest["tasks"].as_array().unwrap().len(), 10);
}

/// `/metrics` over loopback: what the engine committed, counted once; only admins and monitor
/// tokens (which read nothing else) may scrape; Prometheus's own checker accepts the scrape.
#[tokio::test]
async fn metrics_count_committed_work_for_admins_and_monitors_only() {
    let server = serve(loopback()).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let context = common::sample("process_order", json!({}));
        let task = server
            .engine
            .submit(SubmitRequest::new("ecommerce/process_order", context, admin()))
            .await
            .unwrap();
        ids.push(task.id);
    }
    for id in &ids {
        let done = server.engine.wait_for(id).await.unwrap();
        assert_eq!(done.state, taskdeck::model::TaskState::Complete);
    }
    let scrape = |bearer: Option<String>| {
        let mut request = server.http.get(format!("{}/metrics", server.url));
        if let Some(t) = bearer {
            request = request.bearer_auth(t);
        }
        request.send()
    };
    let response = scrape(Some(token(&admin()))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let value = |prefix: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let labels = r#"namespace="ecommerce",workflow="process_order",version="1.0.0""#;
    assert_eq!(
        value(&format!(
            "tasker_tasks_total{{{labels},status=\"created\",business_tier=\"standard\"}}"
        )),
        3.0
    );
    assert_eq!(
        value(&format!(
            "tasker_tasks_total{{{labels},status=\"completed\",business_tier=\"standard\"}}"
        )),
        3.0
    );
    assert_eq!(
        value(r#"checkout_conversions_total{namespace="ecommerce",version="1.0.0"}"#),
        3.0
    );
    let revenue = value(r#"revenue_processed_dollars_total{namespace="ecommerce",customer_tier="standard"}"#);
    assert!((revenue - 3.0 * 124.76).abs() < 1e-6, "{revenue}");
    assert_eq!(
        value(r#"payments_processed_total{namespace="ecommerce",payment_method="credit_card"}"#),
        3.0
    );
    assert_eq!(
        value(r#"sla_compliance_total{namespace="ecommerce",workflow="process_order",sla_met="true"}"#),
        3.0
    );
    assert_eq!(
        value(
            r#"tasker_step_attempts_total{namespace="ecommerce",workflow="process_order",step="process_payment",outcome="success"}"#
        ),
        3.0
    );
    assert!(value("tasker_store_commit_seconds_count") >= 3.0);

    // Prometheus's checker reads the scrape as Prometheus would.
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's `prometheus` package; .ci/run installs it)");
    use std::io::Write;
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Who may scrape: not without a token, not a team's viewer; a monitor token may, and reads
    // nothing else.
    assert_eq!(scrape(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        scrape(Some(token(&viewer()))).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let monitor = token(&Identity::new("prometheus", "customer_success", Role::Monitor));
    assert_eq!(
        scrape(Some(monitor.clone())).await.unwrap().status(),
        StatusCode::OK
    );
    for path in [
        "/v1/tasks".to_string(),
        format!("/v1/tasks/{}", ids[0]),
        "/v1/approvals".into(),
        "/v1/workflows".into(),
        "/v1/workflows/files".into(),
        "/health/status".into(),
        "/v1/events".into(),
        "/v1/metrics/summary".into(),
    ] {
        let (status, body) = server.call("GET", &path, Some(&monitor), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert!(body.to_string().contains("is a monitor"), "{path}: {body}");
    }
    let (status, _) = server
        .call(
            "POST",
            "/v1/tasks",
            Some(&monitor),
            Some(json!({ "workflow": "customer_success/process_refund", "context": refund(100) })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "nor creates one in its own team's namespace"
    );
    let (status, _) = server
        .call("GET", &format!("/v1/tasks/{}", ids[0]), Some(&monitor), None)
        .await;
    assert!(
        matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{status}"
    );
    let _ = server.stop.send(true);
}
