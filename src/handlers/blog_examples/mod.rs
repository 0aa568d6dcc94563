//! Post 05: `blog_examples/monitored_checkout`, the checkout of the 2:17 AM incident:
//! `validate_cart → process_payment → update_inventory → create_order → send_confirmation`.
//! The handlers are as simple as the post's (`../shared/reference/tasker-blog-facts.md` §7);
//! what makes the incident findable is the engine's telemetry. Each step calls a simulated
//! service, so a scenario (`inventory_slowdown`) can slow or fail it.

use super::support::{call, cents, dollars, now, require_str, retry_later, scenario, upstream};
use super::{Registry, StepHandler, StepInput, TaskHook};
use crate::model::{Step, StepError};
use crate::services::{hex_id, ServiceError, Services};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn register(registry: &mut Registry, services: &Arc<Services>) {
    registry.register("blog_examples.validate_cart", ValidateCart);
    registry.register("blog_examples.process_payment", ProcessPayment(services.clone()));
    registry.register(
        "blog_examples.update_inventory",
        UpdateInventory(services.clone()),
    );
    registry.register("blog_examples.create_order", CreateOrder(services.clone()));
    registry.register(
        "blog_examples.send_confirmation",
        SendConfirmation(services.clone()),
    );
    registry.register_hook("blog_examples/monitored_checkout", MonitoredCheckoutHook);
}

/// The post's `establish_step_dependencies_and_defaults`: the business context of the
/// checkout (`impact_level` and `sla_tier` from the customer's tier), the monitoring target,
/// and a correlation id `checkout_<hex8>` unless the caller gave one.
pub struct MonitoredCheckoutHook;

impl TaskHook for MonitoredCheckoutHook {
    fn prepare(&self, context: &mut Value, _steps: &mut [Step]) {
        let premium = context["customer_tier"] == "premium";
        context["business_context"] = json!({
            "domain": "ecommerce",
            "impact_level": if premium { "high" } else { "standard" },
            "sla_tier": if premium { "premium" } else { "standard" },
        });
        context["monitoring_target"] = json!("checkout_workflow");
        if !context["correlation_id"].is_string() {
            context["correlation_id"] = json!(format!("checkout_{:08x}", rand::random::<u32>()));
        }
    }
}

fn service_failure(err: ServiceError) -> StepError {
    let message = err.to_string();
    match err.kind.as_str() {
        "card_declined" | "insufficient_funds" | "invalid_card" => {
            StepError::permanent(err.kind.to_uppercase(), message)
        }
        "invalid_request" | "invalid_email" | "authentication_failed" => {
            StepError::permanent(err.kind.to_uppercase(), message)
        }
        _ => retry_later(&err.kind.to_uppercase(), message, err.retry_after, None),
    }
}

/// A cart line: price and quantity, checked.
fn lines(context: &Value) -> Result<Vec<(String, f64, i64)>, StepError> {
    let items = match context["cart_items"].as_array() {
        Some(items) if !items.is_empty() => items,
        _ => return Err(StepError::permanent("EMPTY_CART", "Cart is empty")),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let sku = item["sku"].as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
                StepError::permanent("INVALID_CART_ITEM", format!("cart_items[{i}] has no sku"))
            })?;
            let price = item["price"]
                .as_f64()
                .filter(|p| p.is_finite() && *p >= 0.0)
                .ok_or_else(|| {
                    StepError::permanent(
                        "INVALID_CART_ITEM",
                        format!("cart_items[{i}]: price must be a number of 0 or more"),
                    )
                })?;
            let quantity = item["quantity"].as_i64().filter(|q| *q > 0).ok_or_else(|| {
                StepError::permanent(
                    "INVALID_CART_ITEM",
                    format!("cart_items[{i}]: quantity must be a positive integer"),
                )
            })?;
            Ok((crate::model::clip(sku, 64), price, quantity))
        })
        .collect()
}

pub struct ValidateCart;

#[async_trait]
impl StepHandler for ValidateCart {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let lines = lines(&input.context)?;
        let total = lines.iter().fold(0i64, |sum, (_, price, qty)| {
            sum.saturating_add(cents(*price).saturating_mul(*qty))
        });
        let count = lines
            .iter()
            .fold(0i64, |sum, (_, _, qty)| sum.saturating_add(*qty));
        Ok(json!({
            "validated": true,
            "item_count": count,
            "cart_total": dollars(total),
            "validated_at": now(),
        }))
    }
}

pub struct ProcessPayment(Arc<Services>);

#[async_trait]
impl StepHandler for ProcessPayment {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let cart = upstream(&input, "validate_cart", "CART_NOT_VALIDATED")?;
        if cart["validated"] != true {
            return Err(StepError::permanent(
                "CART_NOT_VALIDATED",
                "the cart was not validated",
            ));
        }
        let method = require_str(&input.context, "payment_method", "MISSING_PAYMENT_METHOD")?;
        let amount = cart["cart_total"].as_f64().unwrap_or(0.0);
        let scenario = scenario(&input)?;
        let charge = self
            .0
            .process_payment(call(&input, &scenario), amount, "USD", method, "tok_visa")
            .await
            .map_err(service_failure)?;
        Ok(json!({
            "payment_successful": true,
            "payment_id": charge.payment_id,
            "amount": charge.amount,
            "payment_method": method,
            "processed_at": now(),
        }))
    }
}

pub struct UpdateInventory(Arc<Services>);

#[async_trait]
impl StepHandler for UpdateInventory {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let payment = upstream(&input, "process_payment", "PAYMENT_NOT_COMPLETED")?;
        if payment["payment_successful"] != true {
            return Err(StepError::permanent(
                "PAYMENT_NOT_COMPLETED",
                "the payment did not succeed",
            ));
        }
        let lines = lines(&input.context)?;
        let scenario = scenario(&input)?;
        // The stock service: where the incident's 30 s hang happens.
        self.0
            .gate(call(&input, &scenario), "inventory", "update_inventory", 40)
            .await
            .map_err(service_failure)?;
        let updated: Vec<Value> = lines
            .iter()
            .map(|(sku, _, qty)| {
                json!({ "sku": sku, "quantity_deducted": qty, "new_stock_level": 100i64.saturating_sub(*qty) })
            })
            .collect();
        Ok(json!({
            "inventory_updated": true,
            "items_updated": updated.len(),
            "updated_items": updated,
        }))
    }
}

pub struct CreateOrder(Arc<Services>);

#[async_trait]
impl StepHandler for CreateOrder {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let inventory = upstream(&input, "update_inventory", "INVENTORY_NOT_UPDATED")?;
        if inventory["inventory_updated"] != true {
            return Err(StepError::permanent(
                "INVENTORY_NOT_UPDATED",
                "the inventory was not updated",
            ));
        }
        let payment = upstream(&input, "process_payment", "PAYMENT_NOT_COMPLETED")?;
        let context = &input.context;
        let scenario = scenario(&input)?;
        let order_id = hex_id("order_", &input.idempotency_key);
        let record = json!({
            "order_id": order_id,
            "payment_id": payment["payment_id"],
            "customer_id": context["customer_id"],
            "customer_tier": context["customer_tier"],
            "order_value": context["order_value"],
        });
        self.0
            .create_order(call(&input, &scenario), |_| record.clone())
            .await
            .map_err(service_failure)?;
        Ok(json!({
            "order_created": true,
            "order_id": order_id,
            "payment_id": payment["payment_id"],
            "customer_id": context["customer_id"],
            "customer_tier": context["customer_tier"],
            "order_value": context["order_value"],
            "items_count": inventory["items_updated"],
        }))
    }
}

pub struct SendConfirmation(Arc<Services>);

#[async_trait]
impl StepHandler for SendConfirmation {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let order = upstream(&input, "create_order", "ORDER_NOT_CREATED")?;
        if order["order_created"] != true {
            return Err(StepError::permanent(
                "ORDER_NOT_CREATED",
                "the order was not created",
            ));
        }
        let to = require_str(&input.context, "customer_email", "MISSING_CUSTOMER_EMAIL")?;
        let scenario = scenario(&input)?;
        let sent = self
            .0
            .send_email(
                call(&input, &scenario),
                to,
                "Your order is confirmed",
                json!({ "order_id": order["order_id"], "template": "order_confirmation" }),
            )
            .await
            .map_err(service_failure)?;
        Ok(json!({
            "confirmation_sent": true,
            "email_id": sent.message_id,
            "sent_to": to,
            "order_id": order["order_id"],
            "template": "order_confirmation",
        }))
    }
}
