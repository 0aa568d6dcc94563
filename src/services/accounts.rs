//! Post 03's systems, spoken to over "HTTP": a user service, billing, preferences and a
//! notification service. They answer with status codes; the handlers classify them.

use super::table::{Backing, Table};
use super::{hex_id, Call, Services};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Value,
    /// The `retry-after` header, when the service sent one.
    pub retry_after: Option<Duration>,
}

impl HttpResponse {
    fn new(status: u16, body: Value) -> Self {
        HttpResponse {
            status,
            body,
            retry_after: None,
        }
    }
}

#[derive(Default)]
pub struct UserService {
    /// Users by email.
    pub(super) users: Table<Value>,
}

impl UserService {
    pub(crate) fn open(backing: &Backing) -> Self {
        UserService {
            users: backing.table("users"),
        }
    }

    pub fn all(&self) -> Vec<Value> {
        self.users.all()
    }
}

#[derive(Default)]
pub struct BillingService {
    /// Profiles by user id.
    pub(super) profiles: Table<Value>,
}

impl BillingService {
    pub(crate) fn open(backing: &Backing) -> Self {
        BillingService {
            profiles: backing.table("billing.profiles"),
        }
    }

    pub fn profile(&self, user_id: i64) -> Option<Value> {
        self.profiles.get(&user_id.to_string())
    }
}

#[derive(Default)]
pub struct PreferencesService {
    /// Preferences by user id.
    pub(super) prefs: Table<Value>,
}

impl PreferencesService {
    pub(crate) fn open(backing: &Backing) -> Self {
        PreferencesService {
            prefs: backing.table("preferences"),
        }
    }

    pub fn of(&self, user_id: i64) -> Option<Value> {
        self.prefs.get(&user_id.to_string())
    }
}

#[derive(Default)]
pub struct NotificationService {
    /// Welcome sequences by idempotency key.
    pub(super) sequences: Table<Value>,
}

impl NotificationService {
    pub(crate) fn open(backing: &Backing) -> Self {
        NotificationService {
            sequences: backing.table("notifications.sequences"),
        }
    }
}

impl Services {
    /// Runs the gate and turns an injected fault into the HTTP answer it stands for.
    async fn http_gate(
        &self,
        call: Call<'_>,
        service: &str,
        method: &str,
        base_ms: u64,
    ) -> Result<(), HttpResponse> {
        self.gate(call, service, method, base_ms)
            .await
            .map_err(|e| HttpResponse {
                status: e.http_status,
                body: json!({ "error": e.kind, "message": e.to_string() }),
                retry_after: e.retry_after,
            })
    }

    /// `POST /users`: 201 with the new user, or 409 when the email is taken.
    pub async fn create_user(&self, call: Call<'_>, email: &str, name: &str, plan: &str) -> HttpResponse {
        if let Err(r) = self.http_gate(call, "users", "create_user", 90).await {
            return r;
        }
        self.users.users.with(call.task_id, |users| {
            if let Some(existing) = users.get(email) {
                return HttpResponse::new(
                    409,
                    json!({ "error": "user already exists", "id": existing["id"] }),
                );
            }
            let user = json!({
                "id": users.next_serial(),
                "email": email,
                "name": name,
                "plan": plan,
                "status": "pending",
                "created_at": crate::handlers::support::now_utc().to_rfc3339(),
            });
            users.insert(email, user.clone());
            HttpResponse::new(201, user)
        })
    }

    /// `GET /users?email=`: 200 or 404.
    pub async fn find_user(&self, call: Call<'_>, email: &str) -> HttpResponse {
        if let Err(r) = self.http_gate(call, "users", "find_user", 30).await {
            return r;
        }
        match self.users.users.get(email) {
            Some(u) => HttpResponse::new(200, u),
            None => HttpResponse::new(404, json!({ "error": "not found" })),
        }
    }

    /// `PATCH /users/{id}`: 200 with the user, or 404.
    pub async fn update_user_status(&self, call: Call<'_>, user_id: i64, status: &str) -> HttpResponse {
        if let Err(r) = self.http_gate(call, "users", "update_status", 50).await {
            return r;
        }
        self.users.users.with(call.task_id, |users| {
            let found = users
                .iter()
                .find(|(_, u)| u["id"] == user_id)
                .map(|(email, u)| (email.to_string(), u.clone()));
            match found {
                Some((email, mut u)) => {
                    u["status"] = json!(status);
                    users.insert(&email, u.clone());
                    HttpResponse::new(200, u)
                }
                None => HttpResponse::new(404, json!({ "error": format!("no user {user_id}") })),
            }
        })
    }

    /// `POST /billing/profiles`: 201, 409 when the user has one, 402 when a paid plan has no
    /// payment method.
    pub async fn create_billing_profile(
        &self,
        call: Call<'_>,
        user_id: i64,
        plan: &str,
        payment_method: Option<&str>,
    ) -> HttpResponse {
        if let Err(r) = self.http_gate(call, "billing", "create_profile", 110).await {
            return r;
        }
        if plan != "free" && payment_method.is_none() {
            return HttpResponse::new(
                402,
                json!({ "error": format!("plan `{plan}` needs a payment method") }),
            );
        }
        let key = user_id.to_string();
        self.billing.profiles.with(call.task_id, |profiles| {
            if let Some(existing) = profiles.get(&key) {
                return HttpResponse::new(409, existing.clone());
            }
            let profile = json!({
                "profile_id": hex_id("bill_", &key),
                "user_id": user_id,
                "plan": plan,
                "payment_method": payment_method,
            });
            profiles.insert(&key, profile.clone());
            HttpResponse::new(201, profile)
        })
    }

    /// `POST /preferences`: 201, or 409 when the user has preferences already.
    pub async fn create_preferences(&self, call: Call<'_>, user_id: i64, preferences: Value) -> HttpResponse {
        if let Err(r) = self.http_gate(call, "preferences", "create", 70).await {
            return r;
        }
        let key = user_id.to_string();
        self.preferences.prefs.with(call.task_id, |prefs| {
            if let Some(existing) = prefs.get(&key) {
                return HttpResponse::new(409, existing.clone());
            }
            let mut record = preferences;
            record["preferences_id"] = json!(hex_id("prefs_", &key));
            record["user_id"] = json!(user_id);
            prefs.insert(&key, record.clone());
            HttpResponse::new(201, record)
        })
    }

    /// `POST /sequences/welcome`: 201 with the emails scheduled; the same key answers 200
    /// with the same sequence.
    pub async fn send_welcome(
        &self,
        call: Call<'_>,
        user_id: i64,
        email: &str,
        content: Value,
    ) -> HttpResponse {
        if let Err(r) = self.http_gate(call, "notifications", "send_welcome", 100).await {
            return r;
        }
        self.notifications.sequences.with(call.task_id, |sequences| {
        if let Some(existing) = sequences.get(call.key) {
            return HttpResponse::new(200, existing.clone());
        }
        let count = content["emails"].as_array().map_or(1, |e| e.len());
        let sequence = json!({
            "sequence_id": hex_id("seq_", call.key),
            "user_id": user_id,
            "recipient": email,
            "emails_sent": count,
            "email_ids": (0..count).map(|i| hex_id("welcome_", &format!("{}#{i}", call.key))).collect::<Vec<_>>(),
            "content": content,
        });
        sequences.insert(call.key, sequence.clone());
        HttpResponse::new(201, sequence)
        })
    }
}
