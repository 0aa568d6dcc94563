//! Simulated external systems for the blog workflows. Each keeps real state (charges,
//! reservations, users…), deduplicates by the caller's idempotency key, answers after a
//! realistic latency, and takes fault injection (see `faults`).
//!
//! They stand in for remote systems, so they outlive an engine: tests restart the engine
//! against the same `Services` to show that a re-run step does not repeat its side effect,
//! and the CLI keeps their records in the data directory (`Services::durable`), so a process
//! killed mid-workflow finds its users, charges and scenario counters again.

mod accounts;
mod analytics;
mod commerce;
pub mod faults;
pub mod shared;
mod support_desk;
mod table;

pub use accounts::{BillingService, HttpResponse, NotificationService, PreferencesService, UserService};
pub use analytics::{Chat, Dashboard, DataWarehouse};
pub use commerce::{
    Charge, Email, Inventory, Orders, PaymentGateway, Product, Refund, Refunds, Reservation, SentEmail,
};
pub use faults::{Fault, Faults, Scenario};
pub use support_desk::{customer_tier, Tickets};
pub use table::Backing;

use std::time::Duration;

/// Who is calling: the task (for per-task scenario faults) and the step's idempotency key.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub task_id: &'a str,
    pub key: &'a str,
    pub scenario: Option<&'a Scenario>,
}

/// A failed call, as the service reports it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{service}.{method}: {kind}{} — {message}", if *.injected { " (injected fault)" } else { "" })]
pub struct ServiceError {
    pub service: String,
    pub method: String,
    /// e.g. `service_unavailable`, `timeout`, `rate_limited`, `card_declined`.
    pub kind: String,
    pub http_status: u16,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub injected: bool,
}

/// All the simulated systems, shared by the handlers.
pub struct Services {
    pub faults: Faults,
    latency: bool,
    pub payment: PaymentGateway,
    pub inventory: Inventory,
    pub email: Email,
    pub orders: Orders,
    pub refunds: Refunds,
    pub tickets: Tickets,
    pub warehouse: DataWarehouse,
    pub dashboard: Dashboard,
    pub chat: Chat,
    pub users: UserService,
    pub billing: BillingService,
    pub preferences: PreferencesService,
    pub notifications: NotificationService,
}

impl Services {
    /// Forgets every record written by a task whose id sorts before `oldest` (ids are
    /// UUIDv7: created before it) or, with `None`, every record a task wrote. Retention calls
    /// this with the oldest task the store still holds, so a simulated system keeps the
    /// records of the tasks the engine keeps (a `--demo` stays bounded). Returns how many went.
    pub fn forget_before(&self, oldest: Option<&str>) -> usize {
        // "~" sorts after every UUID: with no task left, everything goes.
        let oldest = oldest.unwrap_or("~");
        self.faults.task_calls.forget_before(oldest)
            + self.payment.ledger.forget_before(oldest)
            + self.inventory.reservations.forget_before(oldest)
            + self.email.outbox.forget_before(oldest)
            + self.orders.orders.forget_before(oldest)
            + self.refunds.refunds.forget_before(oldest)
            + self.tickets.updates.forget_before(oldest)
            + self.dashboard.published.forget_before(oldest)
            + self.chat.messages.forget_before(oldest)
            + self.users.users.forget_before(oldest)
            + self.billing.profiles.forget_before(oldest)
            + self.preferences.prefs.forget_before(oldest)
            + self.notifications.sequences.forget_before(oldest)
    }

    /// Systems that keep their records in memory. `latency`: answer after a realistic delay
    /// (tens to hundreds of ms).
    pub fn new(latency: bool) -> Self {
        Self::durable(latency, &Backing::default())
    }

    /// Systems whose records live in `backing` (see `table`), so they outlive the process.
    pub fn durable(latency: bool, backing: &Backing) -> Self {
        Services {
            faults: Faults::open(backing),
            latency,
            payment: PaymentGateway::open(backing),
            inventory: Inventory::open(backing),
            email: Email::open(backing),
            orders: Orders::open(backing),
            refunds: Refunds::open(backing),
            tickets: Tickets::open(backing),
            warehouse: DataWarehouse,
            dashboard: Dashboard::open(backing),
            chat: Chat::open(backing),
            users: UserService::open(backing),
            billing: BillingService::open(backing),
            preferences: PreferencesService::open(backing),
            notifications: NotificationService::open(backing),
        }
    }

    /// Waits out latency and injected delays; fails the call when a fault says so.
    pub(crate) async fn gate(
        &self,
        call: Call<'_>,
        service: &str,
        method: &str,
        base_ms: u64,
    ) -> Result<(), ServiceError> {
        let (wait, failure) = self.decide(call, service, method, base_ms);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        failure.map_or(Ok(()), Err)
    }

    /// How long this call takes and whether it fails, without waiting. Services that act
    /// before they answer (a charge recorded, then a slow response) use this directly.
    pub(crate) fn decide(
        &self,
        call: Call<'_>,
        service: &str,
        method: &str,
        base_ms: u64,
    ) -> (Duration, Option<ServiceError>) {
        let effect = self.faults.effect(call.task_id, call.scenario, service, method);
        let mut wait = Duration::ZERO;
        if self.latency {
            wait += Duration::from_millis(base_ms + jitter(call.key, method, base_ms / 2));
        }
        if let Some(extra) = effect.delay {
            wait += extra;
        }
        let failure = effect.failure.map(|fault| {
            let err = ServiceError {
                service: service.into(),
                method: method.into(),
                kind: fault.kind(),
                http_status: fault.http(),
                message: fault
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("{} ({})", fault.kind().replace('_', " "), effect.source)),
                retry_after: fault.retry_after(),
                injected: true,
            };
            tracing::warn!(
                task = call.task_id,
                "{}",
                crate::telemetry::filter::scrub_text(&err.to_string())
            );
            err
        });
        (wait, failure)
    }

    /// An error the simulated system itself answers with (not an injected fault).
    pub(crate) fn refuse(
        service: &str,
        method: &str,
        kind: &str,
        http_status: u16,
        message: String,
    ) -> ServiceError {
        ServiceError {
            service: service.into(),
            method: method.into(),
            kind: kind.into(),
            http_status,
            message,
            retry_after: None,
            injected: false,
        }
    }
}

/// A stable pseudo-random spread in `0..=spread` from the call's identity.
fn jitter(key: &str, method: &str, spread: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (key, method).hash(&mut h);
    if spread == 0 {
        0
    } else {
        h.finish() % (spread + 1)
    }
}

/// A short hex id derived from a key, so repeated runs of the same call produce the same id.
pub fn hex_id(prefix: &str, key: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    format!("{prefix}{:012x}", h.finish() & 0xffff_ffff_ffff)
}
