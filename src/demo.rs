//! Demo traffic: a deterministic (per seed) mix of the blog workflows with varied contexts
//! and injected faults, submitted at a steady rate. The CLI's `taskdeck demo` runs it
//! headless; the console will host the same generator.

use crate::client::{Client, NewTask, Problem};
use crate::engine::{ErrorKind, Event};
use crate::handlers::ecommerce::quote;
use crate::services::Services;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultLevel {
    /// About one task in ten meets a fault it recovers from.
    Low,
    /// About four in ten meet faults, some of them permanent.
    High,
}

/// The request generator.
pub struct Traffic {
    rng: SmallRng,
    faults: FaultLevel,
    seed: u64,
    count: u64,
    services: Services,
}

impl Traffic {
    pub fn new(seed: u64, faults: FaultLevel) -> Self {
        Traffic {
            rng: SmallRng::seed_from_u64(seed),
            faults,
            seed,
            count: 0,
            // Only for the product catalog's prices; never called.
            services: Services::new(false),
        }
    }

    /// The next task to submit.
    pub fn next_request(&mut self) -> NewTask {
        self.count += 1;
        let roll: f64 = self.rng.random();
        let (workflow, context) = if roll < 0.5 {
            ("ecommerce/process_order", self.checkout())
        } else if roll < 0.7 {
            ("data_pipeline/customer_analytics", self.pipeline())
        } else {
            ("microservices/user_registration", self.registration())
        };
        NewTask {
            workflow: workflow.into(),
            context,
        }
    }

    fn chance(&mut self, low: f64, high: f64) -> bool {
        let p = match self.faults {
            FaultLevel::Low => low,
            FaultLevel::High => high,
        };
        self.rng.random::<f64>() < p
    }

    fn checkout(&mut self) -> Value {
        let n = self.count;
        let mut items = Vec::new();
        let mut lines = Vec::new();
        for _ in 0..self.rng.random_range(1..=3) {
            let id: i64 = self.rng.random_range(1..=12);
            let quantity: i64 = self.rng.random_range(1..=3);
            // Ids 1-12 are in the simulated catalog (it holds 1-1000): not input.
            let product = self.services.inventory.product(id).expect("ids 1-12 exist");
            lines.push((product.price, quantity));
            items.push(json!({ "product_id": id, "quantity": quantity, "price": product.price, "name": product.name }));
        }
        let (subtotal, tax, shipping) = quote(&lines);
        let tier = ["standard", "standard", "standard", "premium", "enterprise"][self.rng.random_range(0..5)];
        let express = self.rng.random::<f64>() < 0.2;
        let mut context = json!({
            "customer_info": { "id": n, "email": format!("customer{n}@example.com"), "name": format!("Customer {n}"), "tier": tier },
            "cart_items": items,
            "payment_info": {
                "method": "credit_card",
                "amount": (subtotal + tax + shipping) as f64 / 100.0,
                "currency": "USD",
                "token": "tok_visa_valid",
            },
            "priority": if express { "express" } else { "standard" },
        });
        // Express orders allow one payment retry, so Black Friday's two rate limits fail
        // them: a permanent outcome, kept for high faults.
        let recoverable = !express || self.faults == FaultLevel::High;
        if self.chance(0.08, 0.25) && recoverable {
            context["scenario"] = json!("black_friday");
        } else if self.chance(0.0, 0.08) {
            context["scenario"] = json!("card_declined");
        } else if self.chance(0.03, 0.1) {
            context["scenario"] = json!({ "email": { "fail_times": 2, "status": "service_unavailable" } });
        }
        context
    }

    fn pipeline(&mut self) -> Value {
        let mut context = json!({
            "date_range": { "start_date": "2024-01-01", "end_date": "2024-01-31" },
            "notification_channels": ["#data-team", "#analytics"],
        });
        if self.chance(0.1, 0.3) {
            context["scenario"] = json!("crm_flaky");
        } else if self.chance(0.0, 0.1) {
            context["scenario"] = json!("dashboard_auth_outage");
        } else if self.chance(0.03, 0.1) {
            context["scenario"] = json!({ "warehouse": { "transform_customer_metrics": { "fail_times": 1, "status": "timeout" } } });
        }
        context
    }

    fn registration(&mut self) -> Value {
        let n = self.count;
        let plan = ["free", "free", "pro", "enterprise"][self.rng.random_range(0..4)];
        let mut context = json!({
            "user_info": { "email": format!("user{n}.s{}@growthcorp.example", self.seed), "name": format!("User {n}"), "plan": plan },
            "preferences": { "marketing_emails": self.rng.random::<bool>(), "product_updates": true, "newsletter": self.rng.random::<bool>() },
        });
        // A paid plan without a payment method is a permanent 402: only under high faults.
        if plan != "free" && !self.chance(0.0, 0.1) {
            context["billing_info"] = json!({ "payment_method": "pm_card_visa" });
        }
        if self.chance(0.08, 0.25) {
            context["scenario"] = json!("billing_outage");
        } else if self.chance(0.03, 0.12) {
            context["scenario"] = json!("welcome_rate_limited");
        }
        context
    }
}

/// Running totals, updated from the event stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub submitted: u64,
    pub rejected: u64,
    pub complete: u64,
    pub failed: u64,
    pub retries: u64,
    pub permanent_errors: u64,
}

impl Summary {
    pub fn observe(&mut self, event: &Event) {
        match event.name.as_str() {
            "task.completed" => self.complete += 1,
            "task.failed" => self.failed += 1,
            "step.retry_scheduled" => self.retries += 1,
            "step.failed" if event.payload["will_retry"] == false => self.permanent_errors += 1,
            _ => {}
        }
    }

    pub fn in_flight(&self) -> u64 {
        self.submitted.saturating_sub(self.complete + self.failed)
    }
}

/// Who submits demo traffic in-process (remotely: whoever the token names).
pub fn identity() -> crate::auth::Identity {
    crate::auth::Identity::new("demo", "demo", crate::auth::Role::Admin)
}

/// Submits the next request; a rejected one (it should not happen) is counted, not fatal.
pub async fn submit_next(
    client: &dyn Client,
    traffic: &mut Traffic,
    summary: &mut Summary,
) -> Result<(), Problem> {
    match client.submit(traffic.next_request()).await {
        Ok(_) => summary.submitted += 1,
        Err(p) if matches!(p.kind, ErrorKind::Invalid | ErrorKind::NotFound) => {
            tracing::warn!("demo request rejected: {p}");
            summary.rejected += 1;
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// The slowest `demo --rate`: one task every 100 s.
pub const MIN_RATE: f64 = 0.01;
/// The fastest `demo --rate`: 10,000 tasks per second.
pub const MAX_RATE: f64 = 10_000.0;

/// `30s`, `2m`, `1h`, `7d`, `500ms`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (expected e.g. 30s, 2m, 1h, 7d, 500ms)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (expected ms, s, m, h or d)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("`{text}` is not a duration this program can wait (too long or negative)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let (mut a, mut b) = (
            Traffic::new(7, FaultLevel::High),
            Traffic::new(7, FaultLevel::High),
        );
        for _ in 0..50 {
            let (x, y) = (a.next_request(), b.next_request());
            assert_eq!((x.workflow, x.context), (y.workflow, y.context));
        }
        let mut c = Traffic::new(8, FaultLevel::High);
        let differs = (0..20).any(|_| a.next_request().context != c.next_request().context);
        assert!(differs);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").unwrap_err().contains("expected e.g. 30s"));
        assert_eq!(parse_duration("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert!(parse_duration("3w").unwrap_err().contains("unknown unit `w`"));
    }
}
