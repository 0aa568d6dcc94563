//! Post 02's systems: a data warehouse with the blog's mock data set, a dashboard and a chat
//! service for notifications.

use super::table::{Backing, Table};
use super::{hex_id, Call, ServiceError, Services};
use serde_json::{json, Value};

/// Read-only: the blog's data set (6 orders, 5 users, 5 products).
pub struct DataWarehouse;

impl DataWarehouse {
    /// Orders 1–6, 2024-01-15 to 2024-01-20; order 4 was refunded.
    pub fn orders() -> Value {
        json!([
            { "order_id": 1, "customer_id": 101, "product_id": 201, "quantity": 2, "total_amount": 59.98, "status": "completed", "order_date": "2024-01-15" },
            { "order_id": 2, "customer_id": 102, "product_id": 202, "quantity": 1, "total_amount": 149.99, "status": "completed", "order_date": "2024-01-16" },
            { "order_id": 3, "customer_id": 101, "product_id": 203, "quantity": 1, "total_amount": 89.50, "status": "completed", "order_date": "2024-01-17" },
            { "order_id": 4, "customer_id": 103, "product_id": 201, "quantity": 1, "total_amount": 29.99, "status": "refunded", "order_date": "2024-01-18" },
            { "order_id": 5, "customer_id": 104, "product_id": 204, "quantity": 3, "total_amount": 74.97, "status": "completed", "order_date": "2024-01-19" },
            { "order_id": 6, "customer_id": 102, "product_id": 205, "quantity": 2, "total_amount": 239.98, "status": "completed", "order_date": "2024-01-20" }
        ])
    }

    /// Users 101–105 with their segments.
    pub fn users() -> Value {
        json!([
            { "user_id": 101, "name": "Alice Chen", "email": "alice@example.com", "segment": "premium", "signup_date": "2023-03-02" },
            { "user_id": 102, "name": "Bob Martinez", "email": "bob@example.com", "segment": "premium", "signup_date": "2023-05-14" },
            { "user_id": 103, "name": "Carol Singh", "email": "carol@example.com", "segment": "standard", "signup_date": "2023-08-21" },
            { "user_id": 104, "name": "Dan Okafor", "email": "dan@example.com", "segment": "standard", "signup_date": "2023-11-09" },
            { "user_id": 105, "name": "Eve Novak", "email": "eve@example.com", "segment": "standard", "signup_date": "2024-01-03" }
        ])
    }

    /// Products 201–205 in categories widgets, gadgets and tools.
    pub fn products() -> Value {
        json!([
            { "product_id": 201, "name": "Widget A", "category": "widgets", "price": 29.99 },
            { "product_id": 202, "name": "Gadget Pro", "category": "gadgets", "price": 149.99 },
            { "product_id": 203, "name": "Tool Kit", "category": "tools", "price": 89.50 },
            { "product_id": 204, "name": "Widget B", "category": "widgets", "price": 24.99 },
            { "product_id": 205, "name": "Gadget Mini", "category": "gadgets", "price": 119.99 }
        ])
    }
}

/// Dashboards by id, with how many times each was published.
#[derive(Default)]
pub struct Dashboard {
    /// `(dashboard_id, content)` by idempotency key.
    pub(super) published: Table<(String, Value)>,
}

impl Dashboard {
    pub(crate) fn open(backing: &Backing) -> Self {
        Dashboard {
            published: backing.table("dashboard.published"),
        }
    }

    /// `(dashboard_id, content)` of every publication, by idempotency key.
    pub fn publications(&self) -> Vec<(String, Value)> {
        self.published.all()
    }
}

/// Chat messages by channel; a repeated key and channel post once.
#[derive(Default)]
pub struct Chat {
    /// `(channel, text)` by `<idempotency key>#<channel>`.
    pub(super) messages: Table<(String, String)>,
}

impl Chat {
    pub(crate) fn open(backing: &Backing) -> Self {
        Chat {
            messages: backing.table("chat.messages"),
        }
    }

    /// `(channel, text)` of every message posted.
    pub fn messages(&self) -> Vec<(String, String)> {
        self.messages.all()
    }
}

impl Services {
    /// Rows of `table` (`orders`, `users`, `products`); orders are filtered by date range.
    pub async fn extract(
        &self,
        call: Call<'_>,
        table: &str,
        start: &str,
        end: &str,
    ) -> Result<Vec<Value>, ServiceError> {
        let method = format!("extract_{table}");
        self.gate(call, "warehouse", &method, 200).await?;
        let rows = match table {
            "orders" => DataWarehouse::orders(),
            "users" => DataWarehouse::users(),
            "products" => DataWarehouse::products(),
            _ => {
                return Err(Services::refuse(
                    "warehouse",
                    &method,
                    "invalid_query",
                    400,
                    format!("no table `{table}`"),
                ))
            }
        };
        let rows = rows.as_array().cloned().unwrap_or_default();
        Ok(rows
            .into_iter()
            .filter(|row| match row["order_date"].as_str() {
                // ISO dates compare correctly as strings.
                Some(date) => date >= start && date <= end,
                None => true,
            })
            .collect())
    }

    /// A compute job on the warehouse (a transformation): only latency and faults.
    pub async fn run_job(&self, call: Call<'_>, job: &str) -> Result<(), ServiceError> {
        self.gate(call, "warehouse", job, 150).await
    }

    pub async fn publish_dashboard(
        &self,
        call: Call<'_>,
        dashboard_id: &str,
        content: Value,
    ) -> Result<(), ServiceError> {
        self.gate(call, "dashboard", "update", 120).await?;
        self.dashboard
            .published
            .insert(call.task_id, call.key, (dashboard_id.to_string(), content));
        Ok(())
    }

    /// Posts to a channel; answers the message id.
    pub async fn post_message(
        &self,
        call: Call<'_>,
        channel: &str,
        text: &str,
    ) -> Result<String, ServiceError> {
        self.gate(call, "chat", "post_message", 60).await?;
        if !channel.starts_with('#') || channel.len() < 2 {
            return Err(Services::refuse(
                "chat",
                "post_message",
                "invalid_channel",
                422,
                format!("`{channel}` is not a channel (expected #name)"),
            ));
        }
        let key = format!("{}#{channel}", call.key);
        self.chat.messages.with(call.task_id, |messages| {
            if messages.get(&key).is_none() {
                messages.insert(&key, (channel.to_string(), text.to_string()));
            }
        });
        Ok(hex_id("chat_", &format!("{}#{channel}", call.key)))
    }
}
