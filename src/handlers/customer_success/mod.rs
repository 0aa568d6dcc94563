//! Post 04, the customer-success team: `customer_success/process_refund@1.3.0`,
//! `validate_refund_request → check_refund_policy → get_manager_approval →
//! execute_refund_workflow → update_ticket_status`. Above 10,000 cents a manager decides, in
//! the console or the CLI; the refund itself is delegated to the payments team's workflow.

use super::support::{amount_cents, call, now, require, require_str, retry_later, scenario, upstream};
use super::{DelegationError, Registry, StepHandler, StepInput};
use crate::auth::Identity;
use crate::model::{ApprovalRequest, StepError};
use crate::services::{hex_id, ServiceError, Services};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn register(registry: &mut Registry, services: &Arc<Services>) {
    registry.register(
        "customer_success.validate_refund_request",
        ValidateRequest(services.clone()),
    );
    registry.register(
        "customer_success.check_refund_policy",
        CheckPolicy(services.clone()),
    );
    registry.register("customer_success.get_manager_approval", ManagerApproval);
    registry.register("customer_success.execute_refund_workflow", ExecuteRefund);
    registry.register(
        "customer_success.update_ticket_status",
        UpdateTicket(services.clone()),
    );
}

fn service_failure(err: ServiceError) -> StepError {
    let message = err.to_string();
    match err.kind.as_str() {
        "not_found" => StepError::permanent("TICKET_NOT_FOUND", message),
        "authentication_failed" => StepError::permanent("AUTH_ERROR", message),
        _ => retry_later(&err.kind.to_uppercase(), message, err.retry_after, None),
    }
}

use crate::model::money as dollars;

pub struct ValidateRequest(Arc<Services>);

#[async_trait]
impl StepHandler for ValidateRequest {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let ctx = &input.context;
        let ticket_id = require_str(ctx, "ticket_id", "MISSING_REQUIRED_FIELDS")?;
        let customer_id = require_str(ctx, "customer_id", "MISSING_REQUIRED_FIELDS")?;
        require(ctx, "refund_amount", "MISSING_REQUIRED_FIELDS")?;
        let ticket = self
            .0
            .ticket(
                call(&input, &scenario),
                ticket_id,
                customer_id,
                ctx["payment_id"].as_str(),
            )
            .await
            .map_err(service_failure)?;
        match ticket["status"].as_str() {
            Some("open" | "in_progress") => {}
            Some(s @ ("closed" | "cancelled" | "duplicate")) => {
                return Err(StepError::permanent(
                    "TICKET_NOT_REFUNDABLE",
                    format!("ticket {ticket_id} is {s}"),
                ))
            }
            other => {
                return Err(retry_later(
                    "TICKET_STATUS_UNKNOWN",
                    format!("ticket status {other:?}"),
                    None,
                    None,
                ))
            }
        }
        Ok(json!({
            "request_validated": true,
            "ticket_id": ticket_id,
            "customer_id": customer_id,
            "ticket_status": ticket["status"],
            "customer_tier": ticket["customer_tier"],
            "original_purchase_date": ticket["purchase_date"],
            "payment_id": ticket["payment_id"],
            "validation_timestamp": now(),
        }))
    }
}

pub struct CheckPolicy(Arc<Services>);

#[async_trait]
impl StepHandler for CheckPolicy {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let request = upstream(&input, "validate_refund_request", "MISSING_VALIDATION")?;
        let amount = amount_cents(&input.context)?;
        let tier = request["customer_tier"].as_str().unwrap_or("standard");
        let policy = self
            .0
            .evaluate_refund_policy(call(&input, &scenario), tier, amount)
            .await
            .map_err(service_failure)?;
        if policy["result"] == "denied" {
            return Err(StepError::permanent(
                "POLICY_VIOLATION",
                format!(
                    "refund of {} violates policy: {}",
                    dollars(amount),
                    policy["policy_notes"].as_str().unwrap_or("")
                ),
            ));
        }
        Ok(json!({
            "policy_compliant": true,
            "policy_version": policy["policy_version"],
            "evaluation_result": policy["result"],
            "requires_approval": policy["requires_approval"],
            "max_refund_amount": policy["max_refund_amount"],
            "policy_notes": policy["policy_notes"],
            "evaluation_timestamp": now(),
        }))
    }
}

/// The longest an approval request may wait: 30 days.
pub const MAX_APPROVAL_TIMEOUT_SECONDS: u64 = 30 * 24 * 3600;

/// The approval gate: at or below the threshold the policy approves (`approved_by: system`);
/// above it a person with the manager role in customer_success decides.
pub struct ManagerApproval;

#[async_trait]
impl StepHandler for ManagerApproval {
    fn is_approval_gate(&self) -> bool {
        true
    }

    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let policy = upstream(&input, "check_refund_policy", "MISSING_POLICY_CHECK")?;
        if policy["policy_compliant"] != true {
            return Err(StepError::permanent(
                "MISSING_POLICY_CHECK",
                "the refund policy was not checked",
            ));
        }
        let ctx = &input.context;
        if policy["requires_approval"] != true {
            return Ok(json!({
                "approval_obtained": true,
                "approval_method": "auto_approval",
                "approval_reason": "policy_exemption",
                "approved_by": "system",
                "approval_id": hex_id("auto_", &input.idempotency_key),
                "approval_timestamp": now(),
            }));
        }
        let amount = amount_cents(ctx)?;
        let ticket = ctx["ticket_id"].as_str().unwrap_or("?");
        let reason = ctx["refund_reason"].as_str().unwrap_or("no reason given");
        let timeout_seconds = match &input.handler_config["approval_timeout_seconds"] {
            Value::Null => 300,
            v => v
                .as_u64()
                .filter(|s| (1..=MAX_APPROVAL_TIMEOUT_SECONDS).contains(s))
                .ok_or_else(|| {
                    StepError::permanent(
                        "INVALID_HANDLER_CONFIG",
                        format!(
                            "handler_config.approval_timeout_seconds: expected 1 to {MAX_APPROVAL_TIMEOUT_SECONDS} seconds (30 days), got {v}"
                        ),
                    )
                })?,
        };
        Err(StepError::AwaitApproval(Box::new(ApprovalRequest {
            summary: format!("Refund {} on {ticket}: {reason}", dollars(amount)),
            amount: Some(amount),
            ticket: Some(ticket.to_string()),
            customer: ctx["customer_id"].as_str().map(String::from),
            policy_notes: policy["policy_notes"].as_str().map(String::from),
            sealed_amount: None,
            requester: input.initiator.clone(),
            required_role: "manager".into(),
            timeout_seconds,
        })))
    }
}

/// Delegates the refund to the payments team: creates `payments/process_refund` through the
/// engine's command path as the customer_success service identity, then waits for it (a
/// durable wait: `waiting_for_child`). Unlike the original, where success was the child's
/// creation, the step completes only when the refund did, and fails with the payments
/// team's error when it failed, so a ticket is never closed over a refund that never went out.
pub struct ExecuteRefund;

#[async_trait]
impl StepHandler for ExecuteRefund {
    fn delegates(&self) -> bool {
        true
    }

    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let approval = upstream(&input, "get_manager_approval", "MISSING_APPROVAL")?;
        if approval["approval_obtained"] != true {
            return Err(StepError::permanent(
                "MISSING_APPROVAL",
                "Manager approval must be obtained before the refund",
            ));
        }
        let payment_id = upstream(&input, "validate_refund_request", "MISSING_PAYMENT_ID")?["payment_id"]
            .as_str()
            .ok_or_else(|| {
                StepError::permanent("MISSING_PAYMENT_ID", "Payment ID not found in validation results")
            })?
            .to_string();
        let ctx = &input.context;
        let namespace = input.handler_config["target_namespace"]
            .as_str()
            .unwrap_or("payments");
        let workflow = format!(
            "{namespace}/{}@{}",
            input.handler_config["target_workflow"]
                .as_str()
                .unwrap_or("process_refund"),
            input.handler_config["target_version"].as_str().unwrap_or("2.1.0")
        );
        let correlation = input
            .correlation_id
            .clone()
            .or_else(|| ctx["correlation_id"].as_str().map(String::from))
            .unwrap_or_else(|| format!("cs-{}", &input.task_id[input.task_id.len().saturating_sub(8)..]));
        let reason = ctx["refund_reason"]
            .as_str()
            .filter(|r| ["customer_request", "fraud", "system_error", "chargeback"].contains(r))
            .unwrap_or("customer_request");
        let mut child = json!({
            "payment_id": payment_id,
            "refund_amount": ctx["refund_amount"],
            "refund_reason": reason,
            "initiated_by": "customer_success",
            "approval_id": approval["approval_id"],
            "approved_by": approval["approved_by"],
            "ticket_id": ctx["ticket_id"],
            "correlation_id": correlation,
        });
        if let Some(email) = ctx["customer_email"].as_str() {
            child["customer_email"] = json!(email);
        }
        let created = input
            .delegator
            .create_task(
                Identity::service("customer_success"),
                &workflow,
                child,
                &input.task_id,
                &correlation,
                &input.idempotency_key,
            )
            .await
            .map_err(|e| match e {
                DelegationError::Denied(why) => StepError::permanent("DELEGATION_REFUSED", why),
                DelegationError::Invalid(why) => StepError::permanent("DELEGATION_INVALID", why),
                DelegationError::Unavailable(why) => retry_later("DELEGATION_UNAVAILABLE", why, None, None),
            })?;
        let results = json!({
            "task_delegated": true,
            "target_namespace": namespace,
            "target_workflow": workflow,
            "delegated_task_id": created,
            "delegation_timestamp": now(),
            "correlation_id": correlation,
        });
        Err(StepError::AwaitChild {
            task_id: created,
            results,
        })
    }
}

pub struct UpdateTicket(Arc<Services>);

#[async_trait]
impl StepHandler for UpdateTicket {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let delegated = upstream(&input, "execute_refund_workflow", "MISSING_DELEGATION")?;
        let ticket_id = require_str(&input.context, "ticket_id", "MISSING_TICKET_ID")?;
        let policy = upstream(&input, "check_refund_policy", "MISSING_POLICY_CHECK")?;
        let approval = upstream(&input, "get_manager_approval", "MISSING_APPROVAL")?;
        let child = delegated["delegated_task_id"].as_str().unwrap_or("");
        let notes = format!(
            "Refund processed via automated workflow; Policy compliance: {}; Approval method: {}; Cross-team coordination: customer_success → payments",
            policy["policy_version"].as_str().unwrap_or("?"),
            approval["approval_method"].as_str().unwrap_or("?")
        );
        let message = format!(
            "Your refund request was sent to our payments team (task {child}). Please allow 3-5 business days."
        );
        let update = json!({
            "resolution_data": {
                "resolution_type": "automated_refund",
                "delegated_task_id": child,
                "correlation_id": delegated["correlation_id"],
                "processed_via": "payments_team_workflow",
            },
            "internal_notes": notes,
            "customer_message": message,
        });
        let record = self
            .0
            .update_ticket(call(&input, &scenario), ticket_id, update)
            .await
            .map_err(service_failure)?;
        Ok(json!({
            "ticket_updated": true,
            "ticket_id": ticket_id,
            "ticket_status": record["status"],
            "delegated_task_id": child,
            "internal_notes": notes,
            "customer_message": message,
            "updated_at": now(),
        }))
    }
}
