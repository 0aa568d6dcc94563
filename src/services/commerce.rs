//! Post 01's systems: a payment gateway, an inventory service and an email service.

use super::table::{Backing, Table};
use super::{hex_id, Call, ServiceError, Services};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    pub payment_id: String,
    pub transaction_id: String,
    pub amount: f64,
    pub currency: String,
    pub method: String,
    pub fees: f64,
    pub idempotency_key: String,
}

/// Charges cards; a repeated idempotency key returns the original charge.
#[derive(Default)]
pub struct PaymentGateway {
    /// Charges by idempotency key.
    pub(super) ledger: Table<Charge>,
}

impl PaymentGateway {
    pub(crate) fn open(backing: &Backing) -> Self {
        PaymentGateway {
            ledger: backing.table("payment.ledger"),
        }
    }

    /// Every charge ever made.
    pub fn ledger(&self) -> Vec<Charge> {
        self.ledger.all()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub price: f64,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub reservation_id: String,
    pub product_id: i64,
    pub quantity: i64,
    pub order_id: String,
    pub previous_stock: i64,
    pub new_stock: i64,
}

/// Stock per product, refilled to `STOCK` every `RESTOCK` (so "insufficient stock" really
/// is worth retrying; a restart of the engine counts as a refill), and reservations
/// deduplicated by idempotency key and product (kept across restarts).
#[derive(Default)]
pub struct Inventory {
    state: Mutex<InventoryState>,
    /// Reservations by `<idempotency key>#<product id>`.
    pub(super) reservations: Table<Reservation>,
}

#[derive(Default)]
struct InventoryState {
    stock: HashMap<i64, i64>,
    restocked: Option<Instant>,
}

const STOCK: i64 = 100;
const RESTOCK: Duration = Duration::from_secs(10);

impl Inventory {
    /// The product catalog: 1 "Widget A" $29.99, 2 "Widget B" $49.99, 999 an inactive product,
    /// any other id from 3 to 1000 "Mock Product N" at $29.99; others do not exist.
    pub fn product(&self, id: i64) -> Option<Product> {
        let (name, price, active) = match id {
            1 => ("Widget A".to_string(), 29.99, true),
            2 => ("Widget B".to_string(), 49.99, true),
            999 => ("Discontinued Gizmo".to_string(), 19.99, false),
            3..=1000 => (format!("Mock Product {id}"), 29.99, true),
            _ => return None,
        };
        Some(Product {
            id,
            name,
            price,
            active,
        })
    }

    pub(crate) fn open(backing: &Backing) -> Self {
        Inventory {
            state: Mutex::default(),
            reservations: backing.table("inventory.reservations"),
        }
    }

    fn with_stock<T>(&self, f: impl FnOnce(&mut InventoryState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if state.restocked.is_none_or(|t| now.duration_since(t) >= RESTOCK) {
            state.stock.clear();
            state.restocked = Some(now);
        }
        f(&mut state)
    }

    pub fn stock(&self, product_id: i64) -> i64 {
        self.with_stock(|s| *s.stock.get(&product_id).unwrap_or(&STOCK))
    }

    pub fn reservations(&self) -> Vec<Reservation> {
        self.reservations.all()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentEmail {
    pub message_id: String,
    pub to: String,
    pub subject: String,
    pub body: serde_json::Value,
}

/// Sends email; a repeated idempotency key does not send twice.
#[derive(Default)]
pub struct Email {
    /// Sent mail by idempotency key.
    pub(super) outbox: Table<SentEmail>,
}

impl Email {
    pub(crate) fn open(backing: &Backing) -> Self {
        Email {
            outbox: backing.table("email.outbox"),
        }
    }

    pub fn outbox(&self) -> Vec<SentEmail> {
        self.outbox.all()
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Services {
    /// Charges `amount`. The charge is recorded when the gateway accepts it, before its
    /// (slow) answer: a caller that dies waiting and retries with the same key gets the
    /// original charge back instead of a second one.
    pub async fn process_payment(
        &self,
        call: Call<'_>,
        amount: f64,
        currency: &str,
        method: &str,
        token: &str,
    ) -> Result<Charge, ServiceError> {
        let (wait, failure) = self.decide(call, "payment", "process_payment", 150);
        if let Some(err) = failure {
            tokio::time::sleep(wait).await;
            return Err(err);
        }
        let declined = [
            ("test_insufficient_", "insufficient_funds"),
            ("test_invalid_", "invalid_card"),
            ("tok_declined", "card_declined"),
        ]
        .into_iter()
        .find(|(prefix, _)| token.starts_with(prefix));
        if let Some((_, kind)) = declined {
            tokio::time::sleep(wait).await;
            return Err(Services::refuse(
                "payment",
                "process_payment",
                kind,
                402,
                format!("card was declined: {}", kind.replace('_', " ")),
            ));
        }
        let charge = self
            .payment
            .ledger
            .with(call.task_id, |ledger| match ledger.get(call.key) {
                Some(existing) => existing.clone(),
                None => {
                    let charge = Charge {
                        payment_id: hex_id("pay_", call.key),
                        transaction_id: hex_id("txn_", &format!("{}#txn", call.key)),
                        amount,
                        currency: currency.to_string(),
                        method: method.to_string(),
                        fees: round2(amount * 0.029 + 0.30),
                        idempotency_key: call.key.to_string(),
                    };
                    ledger.insert(call.key, charge.clone());
                    charge
                }
            });
        tokio::time::sleep(wait).await;
        Ok(charge)
    }

    pub async fn check_availability(
        &self,
        call: Call<'_>,
        product_id: i64,
        quantity: i64,
    ) -> Result<bool, ServiceError> {
        self.gate(call, "inventory", "check_availability", 40).await?;
        Ok(self.inventory.stock(product_id) >= quantity)
    }

    /// Reserves stock for an order; the same key and product return the same reservation.
    pub async fn reserve_inventory(
        &self,
        call: Call<'_>,
        product_id: i64,
        quantity: i64,
        order_id: &str,
    ) -> Result<Reservation, ServiceError> {
        self.gate(call, "inventory", "reserve_inventory", 60).await?;
        let key = format!("{}#{product_id}", call.key);
        self.inventory.reservations.with(call.task_id, |reservations| {
            if let Some(existing) = reservations.get(&key) {
                return Ok(existing.clone());
            }
            self.inventory
                .with_stock(|s| Self::take_stock(s, product_id, quantity, order_id, call.key))
                .inspect(|reservation| reservations.insert(&key, reservation.clone()))
        })
    }

    fn take_stock(
        s: &mut InventoryState,
        product_id: i64,
        quantity: i64,
        order_id: &str,
        idempotency_key: &str,
    ) -> Result<Reservation, ServiceError> {
        {
            let stock = s.stock.entry(product_id).or_insert(STOCK);
            if *stock < quantity {
                return Err(Services::refuse(
                    "inventory",
                    "reserve_inventory",
                    "insufficient_stock",
                    409,
                    format!("product {product_id}: {quantity} requested, {} in stock", *stock),
                ));
            }
            let previous = *stock;
            *stock = stock.saturating_sub(quantity);
            Ok(Reservation {
                reservation_id: hex_id("res_", &format!("{idempotency_key}#{product_id}")),
                product_id,
                quantity,
                order_id: order_id.to_string(),
                previous_stock: previous,
                new_stock: *stock,
            })
        }
    }

    /// Sends an email; the same key sends once and answers with the same message id.
    pub async fn send_email(
        &self,
        call: Call<'_>,
        to: &str,
        subject: &str,
        body: serde_json::Value,
    ) -> Result<SentEmail, ServiceError> {
        self.gate(call, "email", "send_email", 80).await?;
        let valid = to
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
        if !valid {
            return Err(Services::refuse(
                "email",
                "send_email",
                "invalid_email",
                422,
                format!("`{to}` is not a deliverable address"),
            ));
        }
        Ok(self.email.outbox.with(call.task_id, |outbox| {
            if let Some(sent) = outbox.get(call.key) {
                return sent.clone();
            }
            let sent = SentEmail {
                message_id: hex_id("msg_", call.key),
                to: to.to_string(),
                subject: subject.to_string(),
                body,
            };
            outbox.insert(call.key, sent.clone());
            sent
        }))
    }
}

/// The shop's order records; the same idempotency key creates one order.
#[derive(Default)]
pub struct Orders {
    /// Orders by idempotency key.
    pub(super) orders: Table<serde_json::Value>,
}

impl Orders {
    pub(crate) fn open(backing: &Backing) -> Self {
        Orders {
            orders: backing.table("orders"),
        }
    }

    pub fn all(&self) -> Vec<serde_json::Value> {
        self.orders.all()
    }
}

impl Services {
    /// Stores an order built by `make` (given its order number), once per idempotency key.
    pub async fn create_order(
        &self,
        call: Call<'_>,
        make: impl FnOnce(&str) -> serde_json::Value,
    ) -> Result<serde_json::Value, ServiceError> {
        self.gate(call, "orders", "create_order", 50).await?;
        Ok(self.orders.orders.with(call.task_id, |orders| {
            if let Some(existing) = orders.get(call.key) {
                return existing.clone();
            }
            let hex = hex_id("", call.key);
            let number = format!(
                "ORD-{}-{}",
                crate::handlers::support::now_utc().format("%Y%m%d"),
                hex[hex.len().saturating_sub(8)..].to_uppercase()
            );
            let mut order = make(&number);
            order["order_id"] = serde_json::json!(orders.next_serial());
            orders.insert(call.key, order.clone());
            order
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refund {
    pub refund_id: String,
    pub payment_id: String,
    pub amount_cents: i64,
    pub idempotency_key: String,
}

/// Refunds the gateway has made, deduplicated by idempotency key.
#[derive(Default)]
pub struct Refunds {
    /// Refunds by idempotency key.
    pub(super) refunds: Table<Refund>,
}

impl Refunds {
    pub(crate) fn open(backing: &Backing) -> Self {
        Refunds {
            refunds: backing.table("payment.refunds"),
        }
    }

    pub fn all(&self) -> Vec<Refund> {
        self.refunds.all()
    }
}

impl Services {
    /// A payment's amount in cents: a charge this gateway made, or 15,000 cents for payments
    /// from before this process started (the original's default).
    fn payment_amount_cents(&self, payment_id: &str) -> i64 {
        self.payment
            .ledger()
            .iter()
            .find(|c| c.payment_id == payment_id)
            // A float-to-integer `as` saturates: a corrupt amount cannot wrap.
            .map_or(15_000, |c| (c.amount * 100.0).round() as i64)
    }

    /// What the gateway knows of a payment: its amount in cents (a charge this gateway made,
    /// or 15,000 cents for payments from before this process started) and how much is refunded.
    pub async fn payment_eligibility(
        &self,
        call: Call<'_>,
        payment_id: &str,
    ) -> Result<serde_json::Value, ServiceError> {
        self.gate(call, "payment", "validate_payment_eligibility", 80)
            .await?;
        let original = self.payment_amount_cents(payment_id);
        let refunded: i64 = self
            .refunds
            .all()
            .iter()
            .filter(|r| r.payment_id == payment_id)
            .map(|r| r.amount_cents)
            .sum();
        Ok(serde_json::json!({
            "status": if refunded >= original { "ineligible" } else { "eligible" },
            "original_amount": original,
            "refunded_amount": refunded,
            "payment_method": "credit_card",
            "gateway_provider": "stripe",
        }))
    }

    /// Refunds `amount_cents` of a payment; the same key answers the same refund.
    pub async fn refund_payment(
        &self,
        call: Call<'_>,
        payment_id: &str,
        amount_cents: i64,
    ) -> Result<Refund, ServiceError> {
        let (wait, failure) = self.decide(call, "payment", "process_refund", 150);
        if let Some(err) = failure {
            tokio::time::sleep(wait).await;
            return Err(err);
        }
        let original = self.payment_amount_cents(payment_id);
        let refund = self.refunds.refunds.with(call.task_id, |refunds| {
            if let Some(existing) = refunds.get(call.key) {
                Ok(existing.clone())
            } else {
                let refunded: i64 = refunds
                    .iter()
                    .filter(|(_, r)| r.payment_id == payment_id)
                    .map(|(_, r)| r.amount_cents)
                    .fold(0i64, i64::saturating_add);
                if refunded.saturating_add(amount_cents) > original {
                    return Err(Services::refuse(
                        "payment",
                        "process_refund",
                        "already_refunded",
                        409,
                        format!("{payment_id}: {refunded} of {original} cents already refunded"),
                    ));
                }
                let refund = Refund {
                    refund_id: hex_id("ref_", call.key),
                    payment_id: payment_id.to_string(),
                    amount_cents,
                    idempotency_key: call.key.to_string(),
                };
                refunds.insert(call.key, refund.clone());
                Ok(refund)
            }
        })?;
        tokio::time::sleep(wait).await;
        Ok(refund)
    }
}
