//! Post 04, the payments team: `payments/process_refund@2.1.0` (`validate_payment_eligibility
//! → process_gateway_refund → update_payment_records → notify_customer`) and 2.2.0, which adds
//! `check_fraud_indicators` before the gateway refund. Amounts are in cents.

use super::support::{amount_cents, call, now, require_str, retry_later, scenario, upstream};
use super::{Registry, StepHandler, StepInput};
use crate::model::StepError;
use crate::services::{hex_id, ServiceError, Services};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn register(registry: &mut Registry, services: &Arc<Services>) {
    registry.register(
        "payments.validate_payment_eligibility",
        Eligibility(services.clone()),
    );
    registry.register("payments.check_fraud_indicators", FraudCheck);
    registry.register("payments.process_gateway_refund", GatewayRefund(services.clone()));
    registry.register("payments.update_payment_records", UpdateRecords);
    registry.register("payments.notify_customer", NotifyCustomer(services.clone()));
}

/// Gateway trouble that may pass is retried; refusals are not. Unlike the original, a failed
/// connection is transient, not permanent.
fn gateway_failure(err: ServiceError) -> StepError {
    let message = err.to_string();
    match err.kind.as_str() {
        "authentication_failed"
        | "invalid_request"
        | "already_refunded"
        | "insufficient_funds"
        | "invalid_payment" => StepError::permanent(err.kind.to_uppercase(), message),
        _ => retry_later(&err.kind.to_uppercase(), message, err.retry_after, None),
    }
}

pub struct Eligibility(Arc<Services>);

#[async_trait]
impl StepHandler for Eligibility {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let payment_id = require_str(&input.context, "payment_id", "MISSING_REQUIRED_FIELDS")?;
        let valid_id = payment_id
            .strip_prefix("pay_")
            .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()));
        if !valid_id {
            return Err(StepError::permanent(
                "INVALID_PAYMENT_ID",
                format!("`{payment_id}` is not a payment id (pay_…)"),
            ));
        }
        let refund = amount_cents(&input.context)?;
        let answer = self
            .0
            .payment_eligibility(call(&input, &scenario), payment_id)
            .await
            .map_err(gateway_failure)?;
        let original = answer["original_amount"].as_i64().unwrap_or(0);
        let refunded = answer["refunded_amount"].as_i64().unwrap_or(0);
        match answer["status"].as_str() {
            Some("eligible") => {}
            Some("processing" | "pending") => {
                return Err(retry_later(
                    "PAYMENT_PROCESSING",
                    "the payment is still processing".into(),
                    None,
                    None,
                ))
            }
            other => {
                return Err(StepError::permanent(
                    "PAYMENT_INELIGIBLE",
                    format!(
                        "payment {payment_id} is not eligible for a refund ({})",
                        other.unwrap_or("unknown")
                    ),
                ))
            }
        }
        if refund.saturating_add(refunded) > original {
            return Err(StepError::permanent(
                "REFUND_EXCEEDS_PAYMENT",
                format!("refund of {refund} cents exceeds what remains of payment {payment_id} ({} of {original} cents)", original.saturating_sub(refunded)),
            ));
        }
        Ok(json!({
            "payment_validated": true,
            "payment_id": payment_id,
            "original_amount": original,
            "refund_amount": refund,
            "payment_method": answer["payment_method"],
            "gateway_provider": answer["gateway_provider"],
            "eligibility_status": "eligible",
            "validation_timestamp": now(),
            "namespace": "payments",
        }))
    }
}

/// 2.2.0: scores a refund before money moves. Fraud-flagged, large, near-total refunds
/// score high; 70 or more stops the refund (permanent `FRAUD_SUSPECTED`).
pub struct FraudCheck;

#[async_trait]
impl StepHandler for FraudCheck {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let eligibility = upstream(
            &input,
            "validate_payment_eligibility",
            "MISSING_PAYMENT_VALIDATION",
        )?;
        let refund = eligibility["refund_amount"].as_i64().unwrap_or(0);
        let original = eligibility["original_amount"].as_i64().unwrap_or(1).max(1);
        let mut checks = Vec::new();
        let mut score = 0;
        if input.context["refund_reason"] == "fraud" {
            score += 50;
            checks.push("reported as fraud");
        }
        if refund > 10_000 {
            score += 20;
            checks.push("refund above 10000 cents");
        }
        if refund * 10 >= original * 9 {
            score += 10;
            checks.push("refund of 90% or more of the payment");
        }
        if score >= 70 {
            return Err(StepError::permanent(
                "FRAUD_SUSPECTED",
                format!("risk score {score}: {}", checks.join(", ")),
            ));
        }
        Ok(json!({ "risk_score": score, "flagged": score >= 40, "checks": checks, "checked_at": now() }))
    }
}

pub struct GatewayRefund(Arc<Services>);

#[async_trait]
impl StepHandler for GatewayRefund {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let validated = upstream(
            &input,
            "validate_payment_eligibility",
            "MISSING_PAYMENT_VALIDATION",
        )?;
        if validated["payment_validated"] != true {
            return Err(StepError::permanent(
                "MISSING_PAYMENT_VALIDATION",
                "the payment was not validated",
            ));
        }
        let refund = amount_cents(&input.context)?;
        if Some(refund) != validated["refund_amount"].as_i64() {
            return Err(StepError::permanent(
                "REFUND_AMOUNT_MISMATCH",
                "Refund amount mismatch",
            ));
        }
        let payment_id = validated["payment_id"].as_str().unwrap_or_default();
        let started = tokio::time::Instant::now();
        let r = self
            .0
            .refund_payment(call(&input, &scenario), payment_id, refund)
            .await
            .map_err(gateway_failure)?;
        Ok(json!({
            "refund_processed": true,
            "refund_id": r.refund_id,
            "payment_id": r.payment_id,
            "refund_amount": r.amount_cents,
            "gateway_provider": validated["gateway_provider"],
            "refund_status": "completed",
            "processing_time_seconds": started.elapsed().as_secs_f64(),
            "estimated_arrival": (crate::handlers::support::now_utc() + chrono::Duration::days(3)).format("%Y-%m-%d").to_string(),
            "processed_at": now(),
            "namespace": "payments",
        }))
    }
}

pub struct UpdateRecords;

#[async_trait]
impl StepHandler for UpdateRecords {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let refund = upstream(&input, "process_gateway_refund", "MISSING_REFUND_RESULT")?;
        let validated = upstream(
            &input,
            "validate_payment_eligibility",
            "MISSING_PAYMENT_VALIDATION",
        )?;
        let full = refund["refund_amount"].as_i64() == validated["original_amount"].as_i64();
        Ok(json!({
            "records_updated": true,
            "payment_id": refund["payment_id"],
            "refund_id": refund["refund_id"],
            "payment_status": if full { "refunded" } else { "partially_refunded" },
            "audit_trail_id": hex_id("audit_", &input.idempotency_key),
            "updated_timestamp": now(),
            "namespace": "payments",
        }))
    }
}

pub struct NotifyCustomer(Arc<Services>);

#[async_trait]
impl StepHandler for NotifyCustomer {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let records = upstream(&input, "update_payment_records", "MISSING_PAYMENT_RECORDS")?;
        let email = require_str(&input.context, "customer_email", "MISSING_CUSTOMER_EMAIL")?;
        let amount = amount_cents(&input.context)?;
        let body = json!({
            "refund_id": records["refund_id"],
            "amount": crate::model::money(amount),
            "arrives": "3-5 business days",
        });
        let sent = self
            .0
            .send_email(call(&input, &scenario), email, "Your refund is on its way", body)
            .await
            .map_err(|e| match e.kind.as_str() {
                "invalid_email" => StepError::permanent("INVALID_EMAIL", e.to_string()),
                _ => retry_later(&e.kind.to_uppercase(), e.to_string(), e.retry_after, None),
            })?;
        Ok(json!({
            "customer_notified": true,
            "notification_id": sent.message_id,
            "notification_channel": "email",
            "customer_email": email,
            "sent_timestamp": now(),
            "namespace": "payments",
        }))
    }
}
