//! Post 03's systems, spoken to over "HTTP": a user service, billing, preferences and a
//! notification service. They answer with status codes; the handlers classify them.

use super::{hex_id, Call, Services};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
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
    users: Mutex<Vec<Value>>,
}

impl UserService {
    pub fn all(&self) -> Vec<Value> {
        self.users.lock().unwrap().clone()
    }
}

#[derive(Default)]
pub struct BillingService {
    profiles: Mutex<HashMap<i64, Value>>,
}

impl BillingService {
    pub fn profile(&self, user_id: i64) -> Option<Value> {
        self.profiles.lock().unwrap().get(&user_id).cloned()
    }
}

#[derive(Default)]
pub struct PreferencesService {
    prefs: Mutex<HashMap<i64, Value>>,
}

impl PreferencesService {
    pub fn of(&self, user_id: i64) -> Option<Value> {
        self.prefs.lock().unwrap().get(&user_id).cloned()
    }
}

#[derive(Default)]
pub struct NotificationService {
    sequences: Mutex<HashMap<String, Value>>,
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
        let mut users = self.users.users.lock().unwrap();
        if let Some(existing) = users.iter().find(|u| u["email"] == email) {
            return HttpResponse::new(
                409,
                json!({ "error": "user already exists", "id": existing["id"] }),
            );
        }
        let user = json!({
            "id": users.len() as i64 + 1,
            "email": email,
            "name": name,
            "plan": plan,
            "status": "pending",
            "created_at": chrono::Utc::now().to_rfc3339(),
        });
        users.push(user.clone());
        HttpResponse::new(201, user)
    }

    /// `GET /users?email=`: 200 or 404.
    pub async fn find_user(&self, call: Call<'_>, email: &str) -> HttpResponse {
        if let Err(r) = self.http_gate(call, "users", "find_user", 30).await {
            return r;
        }
        match self
            .users
            .users
            .lock()
            .unwrap()
            .iter()
            .find(|u| u["email"] == email)
        {
            Some(u) => HttpResponse::new(200, u.clone()),
            None => HttpResponse::new(404, json!({ "error": "not found" })),
        }
    }

    /// `PATCH /users/{id}`: 200 with the user, or 404.
    pub async fn update_user_status(&self, call: Call<'_>, user_id: i64, status: &str) -> HttpResponse {
        if let Err(r) = self.http_gate(call, "users", "update_status", 50).await {
            return r;
        }
        let mut users = self.users.users.lock().unwrap();
        match users.iter_mut().find(|u| u["id"] == user_id) {
            Some(u) => {
                u["status"] = json!(status);
                HttpResponse::new(200, u.clone())
            }
            None => HttpResponse::new(404, json!({ "error": format!("no user {user_id}") })),
        }
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
        let mut profiles = self.billing.profiles.lock().unwrap();
        if let Some(existing) = profiles.get(&user_id) {
            return HttpResponse::new(409, existing.clone());
        }
        let profile = json!({
            "profile_id": hex_id("bill_", &user_id.to_string()),
            "user_id": user_id,
            "plan": plan,
            "payment_method": payment_method,
        });
        profiles.insert(user_id, profile.clone());
        HttpResponse::new(201, profile)
    }

    /// `POST /preferences`: 201, or 409 when the user has preferences already.
    pub async fn create_preferences(&self, call: Call<'_>, user_id: i64, preferences: Value) -> HttpResponse {
        if let Err(r) = self.http_gate(call, "preferences", "create", 70).await {
            return r;
        }
        let mut prefs = self.preferences.prefs.lock().unwrap();
        if let Some(existing) = prefs.get(&user_id) {
            return HttpResponse::new(409, existing.clone());
        }
        let mut record = preferences;
        record["preferences_id"] = json!(hex_id("prefs_", &user_id.to_string()));
        record["user_id"] = json!(user_id);
        prefs.insert(user_id, record.clone());
        HttpResponse::new(201, record)
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
        let mut sequences = self.notifications.sequences.lock().unwrap();
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
        sequences.insert(call.key.to_string(), sequence.clone());
        HttpResponse::new(201, sequence)
    }
}
