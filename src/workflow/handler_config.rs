//! A workflow's own `handler_config` (beside its steps'): what its tasks report beyond the
//! engine's metrics. Post 05's monitored checkout sets
//! `business_metrics{track_revenue, track_conversion, customer_tier_tracking}` and
//! `monitoring{critical_workflow, sla_seconds: 45, alert_on_failure}`
//! (`../shared/reference/tasker-blog-facts.md` §7); the engine turns them into the business
//! counters of the post's subscribers (see `telemetry::metrics`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most `monitoring.sla_seconds` may be: 30 days.
pub const MAX_SLA_SECONDS: u64 = 30 * 86_400;

/// A workflow's `handler_config`. Unknown keys are refused (a misspelt `sla_seconds` would
/// otherwise silently turn SLA tracking off).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_metrics: Option<BusinessMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<Monitoring>,
}

/// Which business counters a task of the workflow feeds when it ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessMetrics {
    /// Revenue processed (completed) and lost (failed), in the order's currency units.
    #[serde(default)]
    pub track_revenue: bool,
    /// `checkout_conversions_total` and `checkout_failures_total`.
    #[serde(default)]
    pub track_conversion: bool,
    /// Label revenue and task counts with the customer's tier.
    #[serde(default)]
    pub customer_tier_tracking: bool,
    /// Where the context holds the figures (JSON pointers); the defaults are the monitored
    /// checkout's names.
    #[serde(default)]
    pub fields: Fields,
}

/// JSON pointers (RFC 6901) into a task's context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fields {
    /// A number: the order's value.
    pub order_value: String,
    /// A string: `standard`, `premium`, … .
    pub customer_tier: String,
    /// A string: `credit_card`, `paypal`, … .
    pub payment_method: String,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            order_value: "/order_value".into(),
            customer_tier: "/customer_tier".into(),
            payment_method: "/payment_method".into(),
        }
    }
}

/// How a workflow is watched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    /// A failure pages someone (the `critical` label of its alerts).
    #[serde(default)]
    pub critical_workflow: bool,
    /// A task completing within this many seconds of its creation meets its SLA
    /// (`sla_compliance_total{sla_met}`); 1 to `MAX_SLA_SECONDS`.
    #[serde(default)]
    pub sla_seconds: Option<u64>,
    #[serde(default)]
    pub alert_on_failure: bool,
}

impl HandlerConfig {
    /// Reads and checks a workflow's `handler_config`; the error names the field at fault.
    pub fn parse(value: &Value) -> Result<HandlerConfig, String> {
        let config: HandlerConfig = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        if let Some(b) = &config.business_metrics {
            for (name, pointer) in [
                ("order_value", &b.fields.order_value),
                ("customer_tier", &b.fields.customer_tier),
                ("payment_method", &b.fields.payment_method),
            ] {
                if !pointer.is_empty() && !pointer.starts_with('/') {
                    return Err(format!(
                        "business_metrics.fields.{name}: `{pointer}` is not a JSON pointer (expected e.g. /{pointer})"
                    ));
                }
            }
        }
        if let Some(sla) = config.monitoring.as_ref().and_then(|m| m.sla_seconds) {
            if !(1..=MAX_SLA_SECONDS).contains(&sla) {
                return Err(format!(
                    "monitoring.sla_seconds: expected 1 to {MAX_SLA_SECONDS} seconds, got {sla}"
                ));
            }
        }
        Ok(config)
    }
}

/// What a task's context says for business metrics: read once when the task ends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BusinessFacts {
    pub order_value: Option<f64>,
    pub customer_tier: Option<String>,
    pub payment_method: Option<String>,
}

impl BusinessMetrics {
    /// The figures `fields` point at in `context` (absent or mistyped ones are `None`;
    /// a negative or non-finite value is no order value).
    pub fn facts(&self, context: &Value) -> BusinessFacts {
        let text = |p: &str| {
            context
                .pointer(p)
                .and_then(Value::as_str)
                .map(|s| crate::model::clip(s, 64))
        };
        BusinessFacts {
            order_value: context
                .pointer(&self.fields.order_value)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite() && *v >= 0.0),
            customer_tier: text(&self.fields.customer_tier),
            payment_method: text(&self.fields.payment_method),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_monitored_checkout_config_reads_and_mistakes_are_named() {
        let c = HandlerConfig::parse(&json!({
            "business_metrics": { "track_revenue": true, "track_conversion": true, "customer_tier_tracking": true },
            "monitoring": { "critical_workflow": true, "sla_seconds": 45, "alert_on_failure": true }
        }))
        .unwrap();
        assert_eq!(c.monitoring.unwrap().sla_seconds, Some(45));
        let b = c.business_metrics.unwrap();
        let facts = b.facts(
            &json!({ "order_value": 129.99, "customer_tier": "premium", "payment_method": "credit_card" }),
        );
        assert_eq!(facts.order_value, Some(129.99));
        assert_eq!(facts.customer_tier.as_deref(), Some("premium"));

        let e = HandlerConfig::parse(&json!({ "monitoring": { "sla_second": 45 } })).unwrap_err();
        assert!(e.contains("unknown field `sla_second`"), "{e}");
        let e = HandlerConfig::parse(&json!({ "monitoring": { "sla_seconds": 0 } })).unwrap_err();
        assert!(e.contains("monitoring.sla_seconds"), "{e}");
        let e =
            HandlerConfig::parse(&json!({ "business_metrics": { "fields": { "order_value": "total" } } }))
                .unwrap_err();
        assert!(e.contains("not a JSON pointer"), "{e}");
        let facts = BusinessMetrics::default().facts(&json!({ "order_value": -5, "customer_tier": 3 }));
        assert_eq!(facts, BusinessFacts::default());
    }
}
