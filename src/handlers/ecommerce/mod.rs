//! Post 01: `ecommerce/process_order`, a checkout that is atomic and retryable:
//! `validate_cart → process_payment → update_inventory → create_order → send_confirmation`.

use super::support::{call, cents, dollars, now, require, require_str, retry_later, scenario, upstream};
use super::{Registry, StepHandler, StepInput, TaskHook};
use crate::model::{Step, StepError};
use crate::services::{ServiceError, Services};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub fn register(registry: &mut Registry, services: &Arc<Services>) {
    let s = || Handler(services.clone());
    registry.register("ecommerce.validate_cart", ValidateCart(s()));
    registry.register("ecommerce.process_payment", ProcessPayment(s()));
    registry.register("ecommerce.update_inventory", UpdateInventory(s()));
    registry.register("ecommerce.create_order", CreateOrder(s()));
    registry.register("ecommerce.send_confirmation", SendConfirmation(s()));
    registry.register_hook("ecommerce/process_order", ProcessOrderHook);
}

#[derive(Clone)]
pub struct Handler(Arc<Services>);

/// Express orders: a 15 s payment timeout, one payment retry, two email retries. Premium
/// customers: high priority and halved backoff ("faster processing").
pub struct ProcessOrderHook;

impl TaskHook for ProcessOrderHook {
    fn prepare(&self, context: &mut Value, steps: &mut [Step]) {
        if context["priority"] == "express" {
            context["express_processing"] =
                json!({ "payment_timeout_ms": 15000, "payment_retries": 1, "email_retries": 2 });
            for step in steps.iter_mut() {
                match step.name.as_str() {
                    "process_payment" => {
                        step.retry.limit = 2;
                        step.timeout_ms = Some(15_000);
                    }
                    "send_confirmation" => step.retry.limit = 3,
                    _ => {}
                }
            }
        }
        if context["customer_info"]["tier"] == "premium" {
            context["premium_processing"] = json!({ "priority": "high", "faster_processing": true });
            for step in steps.iter_mut() {
                step.retry.backoff_base_ms = (step.retry.backoff_base_ms / 2).max(1);
            }
        }
    }
}

/// Subtotal, tax (8%) and shipping of `(price, quantity)` lines, in cents.
pub fn quote(lines: &[(f64, i64)]) -> (i64, i64, i64) {
    // Saturating: a context can hold many lines and large quantities.
    let subtotal = lines.iter().fold(0i64, |sum, (price, qty)| {
        sum.saturating_add(cents(*price).saturating_mul(*qty))
    });
    let units = lines.iter().fold(0i64, |sum, (_, qty)| sum.saturating_add(*qty));
    let tax = (subtotal as f64 * 0.08).round() as i64;
    (subtotal, tax, shipping_cents(units))
}

/// Shipping by weight, 0.5 lb a unit: up to 2 lb $5.99, up to 10 lb $9.99, above $14.99.
fn shipping_cents(units: i64) -> i64 {
    let pounds = units as f64 * 0.5;
    if pounds <= 2.0 {
        599
    } else if pounds <= 10.0 {
        999
    } else {
        1499
    }
}

fn service_failure(err: ServiceError) -> StepError {
    let message = err.to_string();
    match err.kind.as_str() {
        "rate_limited" => retry_later("RATE_LIMITED", message, err.retry_after, Some(30)),
        "invalid_request" | "authentication_failed" => StepError::permanent(err.kind.to_uppercase(), message),
        _ => retry_later(&err.kind.to_uppercase(), message, err.retry_after, None),
    }
}

pub struct ValidateCart(Handler);

#[async_trait]
impl StepHandler for ValidateCart {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let items = match input.context.get("cart_items").and_then(Value::as_array) {
            Some(items) if !items.is_empty() => items,
            _ => {
                return Err(StepError::permanent(
                    "MISSING_CART_ITEMS",
                    "the cart has no items",
                ))
            }
        };
        let services = &self.0 .0;
        let mut validated = Vec::new();
        let mut lines = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let id = item["product_id"].as_i64().ok_or_else(|| {
                StepError::permanent("MISSING_PRODUCT_ID", format!("cart_items[{i}] has no product_id"))
            })?;
            let quantity = item["quantity"].as_i64().filter(|q| *q > 0).ok_or_else(|| {
                StepError::permanent(
                    "INVALID_QUANTITY",
                    format!("cart_items[{i}]: quantity must be a positive integer"),
                )
            })?;
            let product = services.inventory.product(id).ok_or_else(|| {
                StepError::permanent("PRODUCT_NOT_FOUND", format!("product {id} does not exist"))
            })?;
            if !product.active {
                return Err(StepError::permanent(
                    "PRODUCT_INACTIVE",
                    format!("product {id} ({}) is no longer sold", product.name),
                ));
            }
            let available = services
                .check_availability(call(&input, &scenario), id, quantity)
                .await
                .map_err(service_failure)?;
            if !available {
                // Stock may be replenished: worth retrying.
                return Err(retry_later(
                    "INSUFFICIENT_STOCK",
                    format!("not enough stock of product {id} for {quantity}"),
                    None,
                    None,
                ));
            }
            let line = cents(product.price) * quantity;
            lines.push((product.price, quantity));
            validated.push(json!({
                "product_id": id,
                "name": product.name,
                "price": product.price,
                "quantity": quantity,
                "line_total": dollars(line),
            }));
        }
        let (subtotal, tax, shipping) = quote(&lines);
        let units: i64 = lines.iter().map(|(_, q)| q).sum();
        Ok(json!({
            "validated_items": validated,
            "subtotal": dollars(subtotal),
            "tax": dollars(tax),
            "shipping": dollars(shipping),
            "total": dollars(subtotal + tax + shipping),
            "item_count": units,
            "validated_at": now(),
        }))
    }
}

pub struct ProcessPayment(Handler);

#[async_trait]
impl StepHandler for ProcessPayment {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let ctx = &input.context;
        let method = require_str(ctx, "payment_info.method", "MISSING_PAYMENT_METHOD")?;
        let token = require_str(ctx, "payment_info.token", "MISSING_PAYMENT_TOKEN")?;
        let cart = upstream(&input, "validate_cart", "MISSING_CART_TOTAL")?;
        let total = cart["total"]
            .as_f64()
            .ok_or_else(|| StepError::permanent("MISSING_CART_TOTAL", "validate_cart gave no total"))?;
        let amount = ctx["payment_info"]["amount"].as_f64().unwrap_or(f64::NAN);
        if cents(amount) != cents(total) || amount.is_nan() {
            return Err(StepError::permanent(
                "PAYMENT_AMOUNT_MISMATCH",
                format!("payment_info.amount {amount} does not match the cart total {total}"),
            ));
        }
        let currency = ctx["payment_info"]["currency"].as_str().unwrap_or("USD");
        let charge = self
            .0
             .0
            .process_payment(call(&input, &scenario), total, currency, method, token);
        let timeout = ctx["express_processing"]["payment_timeout_ms"]
            .as_u64()
            .map(Duration::from_millis);
        let result = match timeout {
            Some(limit) => tokio::time::timeout(limit, charge).await.map_err(|_| {
                retry_later(
                    "PAYMENT_TIMEOUT",
                    format!("payment gateway did not answer within {} ms", limit.as_millis()),
                    None,
                    None,
                )
            })?,
            None => charge.await,
        };
        let charge = result.map_err(|err| match err.kind.as_str() {
            "insufficient_funds" | "card_declined" | "invalid_card" => {
                StepError::permanent("PAYMENT_DECLINED", err.to_string())
            }
            _ => service_failure(err),
        })?;
        Ok(json!({
            "payment_id": charge.payment_id,
            "transaction_id": charge.transaction_id,
            "amount_charged": charge.amount,
            "currency": charge.currency,
            "payment_method_type": charge.method,
            "fees": charge.fees,
            "processed_at": now(),
            "status": "completed",
        }))
    }
}

pub struct UpdateInventory(Handler);

#[async_trait]
impl StepHandler for UpdateInventory {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let cart = upstream(&input, "validate_cart", "MISSING_VALIDATED_ITEMS")?;
        let items = cart["validated_items"]
            .as_array()
            .ok_or_else(|| StepError::permanent("MISSING_VALIDATED_ITEMS", "validate_cart gave no items"))?;
        require(&input.context, "customer_info", "MISSING_CUSTOMER_INFO")?;
        let services = &self.0 .0;
        let order_id = format!("order_{}", input.task_id);
        let (mut updated, mut changes, mut reserved) = (Vec::new(), Vec::new(), 0);
        for item in items {
            let (id, quantity) = (
                item["product_id"].as_i64().unwrap_or(0),
                item["quantity"].as_i64().unwrap_or(0),
            );
            let available = services
                .check_availability(call(&input, &scenario), id, quantity)
                .await
                .map_err(service_failure)?;
            if !available {
                return Err(retry_later(
                    "INSUFFICIENT_STOCK",
                    format!("product {id} is out of stock"),
                    None,
                    None,
                ));
            }
            // Every failure to reserve (stock, locks, timeouts) may pass: retryable.
            let r = services
                .reserve_inventory(call(&input, &scenario), id, quantity, &order_id)
                .await
                .map_err(|e| retry_later(&e.kind.to_uppercase(), e.to_string(), e.retry_after, None))?;
            reserved += quantity;
            updated.push(json!({
                "product_id": id,
                "name": item["name"],
                "previous_stock": r.previous_stock,
                "new_stock": r.new_stock,
                "quantity_reserved": quantity,
                "reservation_id": r.reservation_id,
            }));
            changes.push(json!({
                "product_id": id,
                "change_type": "reservation",
                "quantity": -quantity,
                "reason": "order_checkout",
                "timestamp": now(),
                "reservation_id": r.reservation_id,
            }));
        }
        Ok(json!({
            "updated_products": updated,
            "total_items_reserved": reserved,
            "inventory_changes": changes,
            "updated_at": now(),
        }))
    }
}

pub struct CreateOrder(Handler);

#[async_trait]
impl StepHandler for CreateOrder {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let customer = require(&input.context, "customer_info", "MISSING_CUSTOMER_INFO")?;
        let email = require_str(customer, "email", "ORDER_VALIDATION_FAILED")?.to_string();
        let cart = upstream(&input, "validate_cart", "MISSING_CART_VALIDATION")?.clone();
        let payment = upstream(&input, "process_payment", "MISSING_PAYMENT_RESULT")?.clone();
        let inventory = upstream(&input, "update_inventory", "MISSING_INVENTORY_RESULT")?.clone();
        let delivery = (crate::handlers::support::now_utc() + chrono::Duration::days(7))
            .format("%B %d, %Y")
            .to_string();
        let version = input.version.clone();
        let order = self
            .0
             .0
            .create_order(call(&input, &scenario), |number| {
                json!({
                    "order_number": number,
                    "status": "confirmed",
                    "total_amount": cart["total"],
                    "customer_email": email,
                    "payment_id": payment["payment_id"],
                    "items": cart["validated_items"],
                    "reservations": inventory["updated_products"],
                    "workflow_version": version,
                    "created_at": now(),
                    "estimated_delivery": delivery,
                })
            })
            .await
            .map_err(service_failure)?;
        Ok(json!({
            "order_id": order["order_id"],
            "order_number": order["order_number"],
            "status": order["status"],
            "total_amount": order["total_amount"],
            "customer_email": order["customer_email"],
            "created_at": order["created_at"],
            "estimated_delivery": order["estimated_delivery"],
        }))
    }
}

pub struct SendConfirmation(Handler);

#[async_trait]
impl StepHandler for SendConfirmation {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let to = require_str(&input.context, "customer_info.email", "MISSING_CUSTOMER_EMAIL")?;
        let order = upstream(&input, "create_order", "MISSING_ORDER_RESULT")?;
        let cart = upstream(&input, "validate_cart", "MISSING_CART_VALIDATION")?;
        let priority = input.context["premium_processing"]["priority"]
            .as_str()
            .unwrap_or("normal");
        let body = json!({
            "customer_name": input.context["customer_info"]["name"],
            "order_number": order["order_number"],
            "order_id": order["order_id"],
            "total_amount": order["total_amount"],
            "estimated_delivery": order["estimated_delivery"],
            "items": cart["validated_items"],
            "order_url": format!("https://example.com/orders/{}", order["order_id"]),
            "priority": priority,
        });
        let subject = format!(
            "Your order {} is confirmed",
            order["order_number"].as_str().unwrap_or("")
        );
        let sent = self
            .0
             .0
            .send_email(call(&input, &scenario), to, &subject, body)
            .await
            .map_err(|err| match err.kind.as_str() {
                "invalid_email" => StepError::permanent("INVALID_EMAIL", err.to_string()),
                "rate_limited" => retry_later("RATE_LIMITED", err.to_string(), err.retry_after, Some(60)),
                _ => service_failure(err),
            })?;
        Ok(json!({
            "email_sent": true,
            "recipient": sent.to,
            "email_type": "order_confirmation",
            "message_id": sent.message_id,
            "priority": priority,
            "sent_at": now(),
        }))
    }
}
