//! Post 03: `microservices/user_registration`, a diamond across four services:
//! `create_user_account → (setup_billing_profile ∥ initialize_preferences) →
//! send_welcome_sequence → update_user_status`. Error classification by HTTP status stands in
//! for circuit breakers: permanent answers stop at once, transient ones back off durably.

use super::support::{call, now, require_str, retry_later, scenario, upstream};
use super::{Registry, StepHandler, StepInput};
use crate::model::StepError;
use crate::services::{HttpResponse, Services};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn register(registry: &mut Registry, services: &Arc<Services>) {
    registry.register("microservices.create_user_account", CreateUser(services.clone()));
    registry.register(
        "microservices.setup_billing_profile",
        SetupBilling(services.clone()),
    );
    registry.register(
        "microservices.initialize_preferences",
        InitPreferences(services.clone()),
    );
    registry.register(
        "microservices.send_welcome_sequence",
        SendWelcome(services.clone()),
    );
    registry.register("microservices.update_user_status", UpdateStatus(services.clone()));
}

/// What an HTTP answer means for the step. 409 is left to the caller, which checks the
/// existing record before calling it success.
pub fn classify(resp: &HttpResponse, service: &str, default_retry_after: u64) -> Result<(), StepError> {
    let message = format!("{service} answered {}: {}", resp.status, resp.body);
    match resp.status {
        200..=299 | 409 => Ok(()),
        400 | 422 => Err(StepError::permanent("CLIENT_VALIDATION_ERROR", message)),
        401 | 403 => Err(StepError::permanent("AUTH_ERROR", message)),
        // Not in the original's table (it retried it): a missing payment method will not
        // appear by itself.
        402 => Err(StepError::permanent("PAYMENT_REQUIRED", message)),
        404 => Err(StepError::permanent("RESOURCE_NOT_FOUND", message)),
        429 => Err(retry_later(
            "RATE_LIMITED",
            message,
            resp.retry_after,
            Some(default_retry_after),
        )),
        500..=599 => Err(retry_later(
            &format!("HTTP_{}", resp.status),
            message,
            resp.retry_after,
            None,
        )),
        _ => Err(retry_later(
            &format!("HTTP_{}", resp.status),
            message,
            resp.retry_after,
            None,
        )),
    }
}

/// The context's correlation id, or one derived from the task id (stable across steps).
fn correlation_id(input: &StepInput) -> String {
    match input.context["correlation_id"].as_str() {
        Some(id) => id.to_string(),
        None => format!(
            "reg_{}_{}",
            &input.task_id[..8.min(input.task_id.len())],
            &input.task_id[input.task_id.len().saturating_sub(8)..]
        ),
    }
}

fn plan(context: &Value) -> &str {
    context["user_info"]["plan"].as_str().unwrap_or("free")
}

/// Publishes `service_call_started`, makes the call, publishes `service_call_completed` or
/// `service_call_failed`, and logs both ends with the correlation id.
async fn traced<F: std::future::Future<Output = HttpResponse>>(
    input: &StepInput,
    service: &str,
    call: F,
) -> HttpResponse {
    let correlation = correlation_id(input);
    // Logged only as an identifier (an id that is an email or a number is personal data).
    let logged =
        crate::telemetry::filter::safe_id(&correlation, 128).unwrap_or(crate::telemetry::filter::FILTER_MASK);
    tracing::info!(correlation_id = %logged, service, step = %input.step, "API call initiated");
    input.events.publish(
        "service_call_started",
        json!({ "service": service, "correlation_id": correlation }),
    );
    let started = tokio::time::Instant::now();
    let resp = call.await;
    let ms = started.elapsed().as_millis() as u64;
    let name = if resp.status < 400 || resp.status == 409 {
        "service_call_completed"
    } else {
        "service_call_failed"
    };
    input.events.publish(
        name,
        json!({ "service": service, "status": resp.status, "duration_ms": ms, "correlation_id": correlation }),
    );
    tracing::info!(correlation_id = %logged, service, status = resp.status, duration_ms = ms, "API call completed");
    resp
}

fn user_id(input: &StepInput) -> Result<i64, StepError> {
    upstream(input, "create_user_account", "MISSING_USER_ID")?["user_id"]
        .as_i64()
        .ok_or_else(|| StepError::permanent("MISSING_USER_ID", "create_user_account gave no user_id"))
}

pub struct CreateUser(Arc<Services>);

#[async_trait]
impl StepHandler for CreateUser {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let email = require_str(&input.context, "user_info.email", "MISSING_EMAIL")?;
        let name = require_str(&input.context, "user_info.name", "MISSING_NAME")?;
        let plan = plan(&input.context);
        let started = tokio::time::Instant::now();
        let resp = traced(
            &input,
            "user_service",
            self.0.create_user(call(&input, &scenario), email, name, plan),
        )
        .await;
        classify(&resp, "user_service", 60)?;
        let (user, status) = if resp.status == 409 {
            // Already there: success only if it is the same registration (a retried create).
            let found = traced(
                &input,
                "user_service",
                self.0.find_user(call(&input, &scenario), email),
            )
            .await;
            classify(&found, "user_service", 60)?;
            let same = found.body["name"] == name && found.body["plan"] == plan;
            if !same {
                return Err(StepError::permanent(
                    "USER_CONFLICT",
                    format!("a different user is registered as {email}"),
                ));
            }
            (found.body, "already_exists")
        } else {
            (resp.body, "created")
        };
        let id = user["id"].as_i64().ok_or_else(|| {
            StepError::permanent(
                "MISSING_USER_ID_IN_RESPONSE",
                "user service answered without an id",
            )
        })?;
        let email = user["email"].as_str().ok_or_else(|| {
            StepError::permanent(
                "MISSING_EMAIL_IN_RESPONSE",
                "user service answered without an email",
            )
        })?;
        Ok(json!({
            "user_id": id,
            "email": email,
            "plan": plan,
            "created_at": user["created_at"],
            "correlation_id": correlation_id(&input),
            "service_response_time": started.elapsed().as_millis() as u64,
            "status": status,
        }))
    }
}

pub struct SetupBilling(Arc<Services>);

#[async_trait]
impl StepHandler for SetupBilling {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let id = user_id(&input)?;
        require_str(&input.context, "user_info.email", "MISSING_EMAIL")?;
        require_str(&input.context, "user_info.name", "MISSING_NAME")?;
        let plan = plan(&input.context);
        let method = input.context["billing_info"]["payment_method"].as_str();
        let resp = traced(
            &input,
            "billing_service",
            self.0
                .create_billing_profile(call(&input, &scenario), id, plan, method),
        )
        .await;
        classify(&resp, "billing_service", 60)?;
        Ok(json!({
            "profile_id": resp.body["profile_id"],
            "user_id": id,
            "plan": plan,
            "correlation_id": correlation_id(&input),
            "status": if resp.status == 409 { "already_exists" } else { "created" },
        }))
    }
}

pub struct InitPreferences(Arc<Services>);

#[async_trait]
impl StepHandler for InitPreferences {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let id = user_id(&input)?;
        let p = &input.context["preferences"];
        let flag = |k: &str| p[k].as_bool().unwrap_or(false);
        let prefs = json!({
            "marketing_consent": flag("marketing_emails"),
            "newsletter_frequency": if flag("newsletter") { "weekly" } else { "never" },
            "notification_settings": { "email": flag("product_updates"), "sms": false, "push": true },
            "theme": "light",
            "language": "en",
            "timezone": input.context["user_info"]["timezone"].as_str().unwrap_or("UTC"),
        });
        let resp = traced(
            &input,
            "preferences_service",
            self.0.create_preferences(call(&input, &scenario), id, prefs),
        )
        .await;
        classify(&resp, "preferences_service", 60)?;
        Ok(json!({
            "preferences_id": resp.body["preferences_id"],
            "user_id": id,
            "preferences": resp.body,
            "correlation_id": correlation_id(&input),
            "status": if resp.status == 409 { "already_exists" } else { "created" },
        }))
    }
}

/// The features and onboarding each plan's welcome sequence presents.
pub fn personalisation(plan: &str) -> (Vec<&'static str>, Vec<&'static str>, Vec<&'static str>) {
    let mut onboarding = vec!["complete_profile", "verify_email", "tour_dashboard"];
    let mut emails = vec!["welcome", "getting_started"];
    let features = match plan {
        "enterprise" => {
            onboarding.extend(["schedule_onboarding_call", "invite_team", "configure_sso"]);
            emails.extend(["enterprise_features", "account_manager_intro"]);
            vec![
                "advanced_analytics",
                "priority_support",
                "custom_integrations",
                "dedicated_account_manager",
            ]
        }
        "pro" => {
            onboarding.extend(["connect_integrations", "explore_analytics"]);
            emails.push("pro_features");
            vec!["analytics", "priority_support", "integrations"]
        }
        _ => {
            onboarding.push("explore_templates");
            emails.push("upgrade_options");
            vec!["basic_features", "community_support"]
        }
    };
    (features, onboarding, emails)
}

pub struct SendWelcome(Arc<Services>);

#[async_trait]
impl StepHandler for SendWelcome {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let id = user_id(&input)?;
        upstream(&input, "setup_billing_profile", "MISSING_BILLING_PROFILE")?;
        upstream(&input, "initialize_preferences", "MISSING_PREFERENCES")?;
        let email = require_str(&input.context, "user_info.email", "MISSING_EMAIL")?;
        let name = require_str(&input.context, "user_info.name", "MISSING_NAME")?;
        let plan = plan(&input.context);
        let (features, onboarding, emails) = personalisation(plan);
        let content = json!({
            "greeting": format!("Welcome to GrowthCorp, {name}!"),
            "plan": plan,
            "features": features,
            "onboarding_steps": onboarding,
            "emails": emails,
        });
        let resp = traced(
            &input,
            "notification_service",
            self.0
                .send_welcome(call(&input, &scenario), id, email, content.clone()),
        )
        .await;
        classify(&resp, "notification_service", 30)?;
        Ok(json!({
            "sequence_id": resp.body["sequence_id"],
            "user_id": id,
            "emails_sent": resp.body["emails_sent"],
            "email_ids": resp.body["email_ids"],
            "personalization": content,
            "correlation_id": correlation_id(&input),
            "sent_at": now(),
        }))
    }
}

pub struct UpdateStatus(Arc<Services>);

#[async_trait]
impl StepHandler for UpdateStatus {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let id = user_id(&input)?;
        upstream(&input, "send_welcome_sequence", "MISSING_WELCOME_SEQUENCE")?;
        let resp = traced(
            &input,
            "user_service",
            self.0.update_user_status(call(&input, &scenario), id, "active"),
        )
        .await;
        if resp.status == 404 {
            return Err(StepError::permanent(
                "USER_NOT_FOUND",
                format!("user {id} does not exist"),
            ));
        }
        classify(&resp, "user_service", 60)?;
        Ok(json!({
            "user_id": id,
            "status": resp.body["status"],
            "completed_steps": ["create_user_account", "setup_billing_profile", "initialize_preferences", "send_welcome_sequence"],
            "registration_complete": true,
            "correlation_id": correlation_id(&input),
            "completed_at": now(),
        }))
    }
}
