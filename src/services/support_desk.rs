//! Post 04's customer-success systems: a ticket system (which does return the payment id the
//! original's mock forgot) and a refund policy service.

use super::table::{Backing, Table};
use super::{hex_id, Call, ServiceError, Services};
use serde_json::{json, Value};

#[derive(Default)]
pub struct Tickets {
    /// The last update of each ticket, by ticket id.
    pub(super) updates: Table<Value>,
}

impl Tickets {
    pub(crate) fn open(backing: &Backing) -> Self {
        Tickets {
            updates: backing.table("tickets.updates"),
        }
    }

    /// The last update written to a ticket.
    pub fn resolution(&self, ticket: &str) -> Option<Value> {
        self.updates.get(ticket)
    }
}

/// Tier from the customer id: `…PREM…` or `…VIP…` premium, `…ENT…` enterprise, else standard.
pub fn customer_tier(customer_id: &str) -> &'static str {
    let id = customer_id.to_uppercase();
    if id.contains("PREM") || id.contains("VIP") {
        "premium"
    } else if id.contains("ENT") {
        "enterprise"
    } else {
        "standard"
    }
}

impl Services {
    /// Looks a ticket up. `INVALID-TICKET` does not exist; ids containing CLOSED, CANCELLED or
    /// DUPLICATE are in that state. The ticket records the payment it is about: the one the
    /// agent gave, or the one on file.
    pub async fn ticket(
        &self,
        call: Call<'_>,
        ticket_id: &str,
        customer_id: &str,
        payment_hint: Option<&str>,
    ) -> Result<Value, ServiceError> {
        self.gate(call, "tickets", "get_ticket", 60).await?;
        if ticket_id == "INVALID-TICKET" {
            return Err(Services::refuse(
                "tickets",
                "get_ticket",
                "not_found",
                404,
                format!("Ticket not found: {ticket_id}"),
            ));
        }
        let upper = ticket_id.to_uppercase();
        let status = ["CLOSED", "CANCELLED", "DUPLICATE"]
            .into_iter()
            .find(|s| upper.contains(s))
            .map_or("open".to_string(), |s| s.to_lowercase());
        let payment_id = payment_hint.map_or_else(|| hex_id("pay_", ticket_id), String::from);
        Ok(json!({
            "ticket_id": ticket_id,
            "status": status,
            "customer_tier": customer_tier(customer_id),
            "purchase_date": "2024-01-15",
            "refund_eligible": true,
            "payment_id": payment_id,
        }))
    }

    pub async fn update_ticket(
        &self,
        call: Call<'_>,
        ticket_id: &str,
        update: Value,
    ) -> Result<Value, ServiceError> {
        self.gate(call, "tickets", "update_ticket", 60).await?;
        let mut record = update;
        record["status"] = json!("resolved");
        self.tickets
            .updates
            .insert(call.task_id, ticket_id, record.clone());
        Ok(record)
    }

    /// Policy 2.1.0: refunds above 10,000 cents need a manager; the ceiling depends on the
    /// tier (premium 50,000, standard 20,000, other 10,000 cents).
    pub async fn evaluate_refund_policy(
        &self,
        call: Call<'_>,
        tier: &str,
        amount_cents: i64,
    ) -> Result<Value, ServiceError> {
        self.gate(call, "refund_policy", "evaluate", 40).await?;
        let max = match tier {
            "premium" => 50_000,
            "standard" => 20_000,
            _ => 10_000,
        };
        let result = if amount_cents > max { "denied" } else { "approved" };
        Ok(json!({
            "policy_version": "2.1.0",
            "result": result,
            "requires_approval": amount_cents > 10_000,
            "max_refund_amount": max,
            "policy_notes": format!("{tier} tier: refunds up to {max} cents; above 10000 cents a manager approves"),
        }))
    }
}
