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
    /// Seconds an attempt of a step may run before it is a bottleneck
    /// (`business.performance.bottleneck`), by step name, with `default` for the others:
    /// overrides post 05's thresholds (`telemetry::signals::POST_05_THRESHOLDS`). Each is
    /// 0.001 (a millisecond) to `MAX_SLA_SECONDS`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub bottleneck_seconds: std::collections::BTreeMap<String, f64>,
}

impl HandlerConfig {
    /// Reads and checks a workflow's `handler_config`; the error names the field at fault.
    pub fn parse(value: &Value) -> Result<HandlerConfig, String> {
        // The error names the field at fault (`monitoring.sla_seconds: …`), not just the file.
        let config: HandlerConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            }
        })?;
        if let Some(b) = &config.business_metrics {
            for (name, pointer) in [
                ("order_value", &b.fields.order_value),
                ("customer_tier", &b.fields.customer_tier),
                ("payment_method", &b.fields.payment_method),
            ] {
                // RFC 6901: `/`-separated, `~` only as `~0` or `~1`; the whole context (``) is
                // no figure.
                let escapes_ok = pointer
                    .split('~')
                    .skip(1)
                    .all(|rest| rest.starts_with('0') || rest.starts_with('1'));
                if !pointer.starts_with('/') || !escapes_ok {
                    return Err(format!(
                        "business_metrics.fields.{name}: `{pointer}` is not a JSON pointer (expected e.g. /{})",
                        pointer.trim_start_matches('/')
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
        for (step, seconds) in config.monitoring.iter().flat_map(|m| &m.bottleneck_seconds) {
            if !(seconds.is_finite() && *seconds >= 0.001 && *seconds <= MAX_SLA_SECONDS as f64) {
                return Err(format!(
                    "monitoring.bottleneck_seconds.{step}: expected 0.001 to {MAX_SLA_SECONDS} seconds, got {seconds}"
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

/// The largest order value counted (a context may hold anything; a counter must not become
/// infinite).
pub const MAX_ORDER_VALUE: f64 = 1e9;

impl BusinessMetrics {
    /// The figures `fields` point at in `context`: absent or mistyped ones are `None`; an
    /// order value outside 0 to `MAX_ORDER_VALUE` is none; a tier or payment method that is
    /// not a short identifier (letters, digits, `_`, `-`, `.`; at most 32) is `other`, so a
    /// label can never carry an email, a name or a card number.
    pub fn facts(&self, context: &Value) -> BusinessFacts {
        let text = |p: &str| context.pointer(p).and_then(Value::as_str).map(identifier);
        BusinessFacts {
            order_value: context
                .pointer(&self.fields.order_value)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite() && (0.0..=MAX_ORDER_VALUE).contains(v)),
            customer_tier: text(&self.fields.customer_tier),
            payment_method: text(&self.fields.payment_method),
        }
    }
}

/// `text` lowercased if it is a short identifier (`telemetry::filter::safe_id`, at most 32:
/// never an email, a name or a card, phone or account number), else `other`.
pub fn identifier(text: &str) -> String {
    crate::telemetry::filter::safe_id(text, 32).map_or_else(|| "other".into(), str::to_ascii_lowercase)
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
        assert!(
            e.contains("unknown field `sla_second`") && e.starts_with("monitoring"),
            "{e}"
        );
        let e = HandlerConfig::parse(&json!({ "monitoring": { "sla_seconds": -5 } })).unwrap_err();
        assert!(e.starts_with("monitoring.sla_seconds: "), "{e}");
        for bad in ["", "/a/~2"] {
            let e =
                HandlerConfig::parse(&json!({ "business_metrics": { "fields": { "order_value": bad } } }))
                    .unwrap_err();
            assert!(e.contains("not a JSON pointer"), "{bad}: {e}");
        }
        let e = HandlerConfig::parse(&json!({ "monitoring": { "sla_seconds": 0 } })).unwrap_err();
        assert!(e.contains("monitoring.sla_seconds"), "{e}");
        for bad in [json!(0), json!(-1), json!(1e12), json!("3"), json!(5e-324)] {
            let e = HandlerConfig::parse(&json!({ "monitoring": { "bottleneck_seconds": { "pay": bad } } }))
                .unwrap_err();
            assert!(e.starts_with("monitoring.bottleneck_seconds.pay"), "{bad}: {e}");
        }
        let e =
            HandlerConfig::parse(&json!({ "business_metrics": { "fields": { "order_value": "total" } } }))
                .unwrap_err();
        assert!(e.contains("not a JSON pointer"), "{e}");
        let facts = BusinessMetrics::default().facts(&json!({ "order_value": -5, "customer_tier": 3 }));
        assert_eq!(facts, BusinessFacts::default());
        let facts = BusinessMetrics::default().facts(&json!({
            "order_value": 1.7e308, "customer_tier": "person@example.com", "payment_method": "visa 4111 1111 1111 1111"
        }));
        assert_eq!(facts.order_value, None);
        assert_eq!(facts.customer_tier.as_deref(), Some("other"));
        assert_eq!(facts.payment_method.as_deref(), Some("other"));
    }
}
