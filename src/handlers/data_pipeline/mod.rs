//! Post 02: `data_pipeline/customer_analytics`, a nightly pipeline: three extracts in
//! parallel → two transforms → `generate_insights → update_dashboard → send_notifications`.
//! The insights are computed from the warehouse's data, not canned.

use super::support::{call, now, require, require_str, retry_later, scenario, upstream};
use super::{Registry, StepHandler, StepInput};
use crate::model::StepError;
use crate::services::{ServiceError, Services};
use async_trait::async_trait;
use chrono::NaiveDate;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn register(registry: &mut Registry, services: &Arc<Services>) {
    for (table, auth_code) in [
        ("orders", "WAREHOUSE_AUTH_FAILED"),
        ("users", "CRM_AUTH_FAILED"),
        ("products", "INVENTORY_AUTH_FAILED"),
    ] {
        registry.register(
            &format!("data_pipeline.extract_{table}"),
            Extract {
                services: services.clone(),
                table,
                auth_code,
            },
        );
    }
    registry.register(
        "data_pipeline.transform_customer_metrics",
        CustomerMetrics(services.clone()),
    );
    registry.register(
        "data_pipeline.transform_product_metrics",
        ProductMetrics(services.clone()),
    );
    registry.register("data_pipeline.generate_insights", Insights(services.clone()));
    registry.register(
        "data_pipeline.update_dashboard",
        UpdateDashboard(services.clone()),
    );
    registry.register(
        "data_pipeline.send_notifications",
        SendNotifications(services.clone()),
    );
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Timeouts and dropped connections pass; a bad query or credentials do not.
fn classify(err: ServiceError, auth_code: &str) -> StepError {
    let message = err.to_string();
    match err.kind.as_str() {
        "invalid_query" => StepError::permanent("INVALID_EXTRACTION_QUERY", message),
        "authentication_failed" => StepError::permanent(auth_code, message),
        "insufficient_data" => StepError::permanent("INSUFFICIENT_DATA", message),
        other => retry_later(&other.to_uppercase(), message, err.retry_after, None),
    }
}

fn milestone(input: &StepInput, name: &str, detail: Value) {
    input.events.publish(
        "pipeline_milestone_reached",
        json!({ "milestone": name, "detail": detail }),
    );
}

/// `(start, end)` of the context's date range, validated.
fn date_range(context: &Value) -> Result<(String, String), StepError> {
    require(context, "date_range", "MISSING_DATE_RANGE")?;
    let start = require_str(context, "date_range.start_date", "MISSING_START_DATE")?;
    let end = require_str(context, "date_range.end_date", "MISSING_END_DATE")?;
    let parse = |s: &str| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
            StepError::permanent(
                "INVALID_DATE_FORMAT",
                format!("`{s}` is not a date (expected YYYY-MM-DD)"),
            )
        })
    };
    if parse(start)? > parse(end)? {
        return Err(StepError::permanent(
            "INVALID_DATE_RANGE",
            format!("start_date {start} is after end_date {end}"),
        ));
    }
    Ok((start.to_string(), end.to_string()))
}

pub struct Extract {
    services: Arc<Services>,
    table: &'static str,
    auth_code: &'static str,
}

#[async_trait]
impl StepHandler for Extract {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let (start, end) = date_range(&input.context)?;
        let entity = self.table.trim_end_matches('s');
        tracing::info!(task = %input.task_id, "Starting {entity} extraction");
        let range = json!({ "start_date": start, "end_date": end });
        input.events.publish(
            "data_extraction_started",
            json!({ "source": self.table, "date_range": range }),
        );
        match self
            .services
            .extract(call(&input, &scenario), self.table, &start, &end)
            .await
        {
            Ok(rows) => {
                input.events.publish(
                    "data_extraction_completed",
                    json!({ "source": self.table, "records_extracted": rows.len() }),
                );
                Ok(json!({
                    format!("{}_data", self.table): rows,
                    "extraction_metadata": { "source": self.table, "record_count": rows.len(), "date_range": range },
                    "extracted_at": now(),
                }))
            }
            Err(err) => {
                input.events.publish(
                    "data_extraction_failed",
                    json!({ "source": self.table, "error": err.kind, "message": err.message }),
                );
                Err(classify(err, self.auth_code))
            }
        }
    }
}

fn rows<'a>(input: &'a StepInput, step: &str, field: &str, code: &str) -> Result<&'a Vec<Value>, StepError> {
    upstream(input, step, code)?[field]
        .as_array()
        .ok_or_else(|| StepError::permanent(code, format!("`{step}` gave no {field}")))
}

pub struct CustomerMetrics(Arc<Services>);

#[async_trait]
impl StepHandler for CustomerMetrics {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let orders = rows(&input, "extract_orders", "orders_data", "MISSING_ORDERS_DATA")?;
        let users = rows(&input, "extract_users", "users_data", "MISSING_USERS_DATA")?;
        if users.is_empty() {
            return Err(StepError::permanent(
                "INSUFFICIENT_DATA",
                "no users to compute metrics for",
            ));
        }
        tracing::info!(task = %input.task_id, "Starting customer metrics transformation");
        self.0
            .run_job(call(&input, &scenario), "transform_customer_metrics")
            .await
            .map_err(|e| classify(e, "WAREHOUSE_AUTH_FAILED"))?;
        let metrics: Vec<Value> = users
            .iter()
            .map(|user| {
                let mine: Vec<&Value> = orders
                    .iter()
                    .filter(|o| o["customer_id"] == user["user_id"])
                    .collect();
                let completed: Vec<&&Value> = mine.iter().filter(|o| o["status"] == "completed").collect();
                let revenue: f64 = completed.iter().filter_map(|o| o["total_amount"].as_f64()).sum();
                let avg = if completed.is_empty() {
                    0.0
                } else {
                    revenue / completed.len() as f64
                };
                json!({
                    "customer_id": user["user_id"],
                    "name": user["name"],
                    "segment": user["segment"],
                    "total_orders": mine.len(),
                    "completed_orders": completed.len(),
                    "total_revenue": round2(revenue),
                    "avg_order_value": round2(avg),
                })
            })
            .collect();
        milestone(
            &input,
            "customer_metrics_ready",
            json!({ "customers": metrics.len() }),
        );
        Ok(json!({ "customer_metrics": metrics, "total_customers": metrics.len(), "transformed_at": now() }))
    }
}

pub struct ProductMetrics(Arc<Services>);

#[async_trait]
impl StepHandler for ProductMetrics {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let orders = rows(&input, "extract_orders", "orders_data", "MISSING_ORDERS_DATA")?;
        let products = rows(
            &input,
            "extract_products",
            "products_data",
            "MISSING_PRODUCTS_DATA",
        )?;
        if products.is_empty() {
            return Err(StepError::permanent(
                "INSUFFICIENT_DATA",
                "no products to compute metrics for",
            ));
        }
        tracing::info!(task = %input.task_id, "Starting product metrics transformation");
        self.0
            .run_job(call(&input, &scenario), "transform_product_metrics")
            .await
            .map_err(|e| classify(e, "WAREHOUSE_AUTH_FAILED"))?;
        let metrics: Vec<Value> = products
            .iter()
            .map(|product| {
                let mine: Vec<&Value> = orders
                    .iter()
                    .filter(|o| o["product_id"] == product["product_id"])
                    .collect();
                let completed: Vec<&&Value> = mine.iter().filter(|o| o["status"] == "completed").collect();
                let revenue: f64 = completed.iter().filter_map(|o| o["total_amount"].as_f64()).sum();
                let conversion = if mine.is_empty() {
                    0.0
                } else {
                    completed.len() as f64 * 100.0 / mine.len() as f64
                };
                json!({
                    "product_id": product["product_id"],
                    "name": product["name"],
                    "category": product["category"],
                    "total_orders": mine.len(),
                    "completed_orders": completed.len(),
                    "total_revenue": round2(revenue),
                    "conversion_rate": round2(conversion),
                })
            })
            .collect();
        milestone(
            &input,
            "product_metrics_ready",
            json!({ "products": metrics.len() }),
        );
        Ok(json!({ "product_metrics": metrics, "total_products": metrics.len(), "transformed_at": now() }))
    }
}

/// The first three by revenue, highest first (ties by id, for a stable order).
fn top3(metrics: &[Value], id: &str) -> Vec<Value> {
    let mut sorted: Vec<&Value> = metrics.iter().collect();
    sorted.sort_by(|a, b| {
        let (ra, rb) = (
            a["total_revenue"].as_f64().unwrap_or(0.0),
            b["total_revenue"].as_f64().unwrap_or(0.0),
        );
        rb.total_cmp(&ra).then(a[id].as_i64().cmp(&b[id].as_i64()))
    });
    sorted.into_iter().take(3).cloned().collect()
}

pub struct Insights(Arc<Services>);

#[async_trait]
impl StepHandler for Insights {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let customers = rows(
            &input,
            "transform_customer_metrics",
            "customer_metrics",
            "MISSING_CUSTOMER_METRICS",
        )?;
        let products = rows(
            &input,
            "transform_product_metrics",
            "product_metrics",
            "MISSING_PRODUCT_METRICS",
        )?;
        tracing::info!(task = %input.task_id, "Starting business insights generation");
        self.0
            .run_job(call(&input, &scenario), "generate_insights")
            .await
            .map_err(|e| classify(e, "WAREHOUSE_AUTH_FAILED"))?;
        let mut segments: BTreeMap<String, (u64, f64)> = BTreeMap::new();
        for c in customers {
            let seg = segments
                .entry(format!(
                    "{}_customers",
                    c["segment"].as_str().unwrap_or("unknown")
                ))
                .or_default();
            seg.0 += 1;
            seg.1 += c["total_revenue"].as_f64().unwrap_or(0.0);
        }
        let mut categories: BTreeMap<String, f64> = BTreeMap::new();
        for p in products {
            *categories
                .entry(p["category"].as_str().unwrap_or("unknown").to_string())
                .or_default() += p["total_revenue"].as_f64().unwrap_or(0.0);
        }
        let total: f64 = categories.values().sum();
        let insights = json!({
            "top_customers": top3(customers, "customer_id"),
            "top_products": top3(products, "product_id"),
            "segment_analysis": segments
                .into_iter()
                .map(|(k, (count, revenue))| (k, json!({ "count": count, "revenue": round2(revenue) })))
                .collect::<serde_json::Map<_, _>>(),
            "category_performance": categories
                .into_iter()
                .map(|(k, v)| (k, json!(round2(v))))
                .collect::<serde_json::Map<_, _>>(),
            "total_revenue": round2(total),
        });
        milestone(
            &input,
            "insights_generated",
            json!({ "total_revenue": round2(total) }),
        );
        Ok(json!({ "insights": insights, "generated_at": now() }))
    }
}

pub struct UpdateDashboard(Arc<Services>);

#[async_trait]
impl StepHandler for UpdateDashboard {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let insights = upstream(&input, "generate_insights", "MISSING_INSIGHTS_DATA")?["insights"].clone();
        if insights.is_null() {
            return Err(StepError::permanent(
                "MISSING_INSIGHTS_DATA",
                "generate_insights gave no insights",
            ));
        }
        tracing::info!(task = %input.task_id, "Starting dashboard update");
        let end = input.context["date_range"]["end_date"]
            .as_str()
            .unwrap_or("1970-01-01");
        let dashboard_id = format!(
            "executive_dashboard_{}_{}",
            end.get(..4).unwrap_or("1970"),
            end.get(5..7).unwrap_or("01")
        );
        self.0
            .publish_dashboard(call(&input, &scenario), &dashboard_id, insights)
            .await
            .map_err(|e| classify(e, "DASHBOARD_AUTH_FAILED"))?;
        milestone(
            &input,
            "dashboard_updated",
            json!({ "dashboard_id": dashboard_id }),
        );
        Ok(json!({
            "dashboard_id": dashboard_id,
            "updated_sections": ["customer_metrics", "product_performance", "revenue_insights", "segment_analysis"],
            "updated_at": now(),
        }))
    }
}

pub struct SendNotifications(Arc<Services>);

#[async_trait]
impl StepHandler for SendNotifications {
    async fn call(&self, input: StepInput) -> Result<Value, StepError> {
        let scenario = scenario(&input)?;
        let insights = &upstream(&input, "generate_insights", "MISSING_INSIGHTS_DATA")?["insights"];
        let channels: Vec<String> = match input.context.get("notification_channels") {
            None | Some(Value::Null) => vec!["#data-team".to_string()],
            Some(Value::Array(list)) if !list.is_empty() => {
                list.iter().filter_map(|c| c.as_str().map(String::from)).collect()
            }
            Some(_) => {
                return Err(StepError::permanent(
                    "MISSING_NOTIFICATION_CHANNELS",
                    "notification_channels is empty",
                ))
            }
        };
        tracing::info!(task = %input.task_id, "Starting notification delivery");
        let top = &insights["top_customers"][0];
        let text = format!(
            "Customer analytics ready: revenue ${:.2}; top customer {} (${:.2})",
            insights["total_revenue"].as_f64().unwrap_or(0.0),
            top["name"].as_str().unwrap_or("-"),
            top["total_revenue"].as_f64().unwrap_or(0.0)
        );
        let mut sent = Vec::new();
        for channel in &channels {
            let id = self
                .0
                .post_message(call(&input, &scenario), channel, &text)
                .await
                .map_err(|err| match err.kind.as_str() {
                    "rate_limited" => retry_later("RATE_LIMITED", err.to_string(), err.retry_after, Some(60)),
                    "invalid_channel" => {
                        StepError::permanent("INVALID_NOTIFICATION_CHANNELS", err.to_string())
                    }
                    _ => classify(err, "CHAT_AUTH_FAILED"),
                })?;
            sent.push(json!({ "channel": channel, "message_id": id, "status": "delivered" }));
        }
        milestone(&input, "notifications_sent", json!({ "channels": channels }));
        Ok(
            json!({ "notifications_sent": sent, "notification_count": sent.len(), "message": text, "sent_at": now() }),
        )
    }
}
