//! Business-aware signals (post 05's subscribers, `../shared/reference/tasker-blog-facts.md`
//! §7): an attempt slower than its step's threshold is a bottleneck, a task that completes
//! after its SLA is a violation, and a failed `update_inventory` is a critical oversell risk.
//!
//! The engine derives them from the transitions of a turn and stores them as events in the
//! same commit (so they are in the console's event pane, the API's event stream and the
//! metrics exactly once), instead of a subscriber watching a lossy broadcast.

use super::metrics::{error_type, TaskFacts};
use crate::model::{Subject, Transition};
use crate::workflow::handler_config::HandlerConfig;
use serde_json::{json, Value};

/// An attempt ran longer than its step's threshold.
pub const BOTTLENECK: &str = "business.performance.bottleneck";
/// A task completed later than its workflow's `monitoring.sla_seconds`.
pub const SLA_VIOLATION: &str = "performance.sla.violation";
/// `update_inventory` failed for good: payment was taken, stock was not reserved.
pub const INVENTORY_FAILURE: &str = "business.inventory.failure";

/// Every signal's event name.
pub const NAMES: [&str; 3] = [BOTTLENECK, SLA_VIOLATION, INVENTORY_FAILURE];

/// Post 05's bottleneck thresholds in seconds, by step name (`BusinessMetricsSubscriber`).
pub const POST_05_THRESHOLDS: [(&str, f64); 5] = [
    ("validate_cart", 2.0),
    ("process_payment", 5.0),
    ("update_inventory", 3.0),
    ("create_order", 2.0),
    ("send_confirmation", 4.0),
];

/// Post 05's threshold for any other step, in seconds.
pub const DEFAULT_THRESHOLD: f64 = 5.0;

/// The step whose failure risks overselling (post 05: "a failed `update_inventory` raises a
/// critical oversell-risk message").
pub const INVENTORY_STEP: &str = "update_inventory";

/// Seconds an attempt of `step` may take before it is a bottleneck: the workflow's
/// `monitoring.bottleneck_seconds` for the step, then its `default` there, then post 05's
/// figure for the step, then `DEFAULT_THRESHOLD`.
pub fn threshold_seconds(config: &HandlerConfig, step: &str) -> f64 {
    let own = config.monitoring.as_ref().map(|m| &m.bottleneck_seconds);
    own.and_then(|m| m.get(step))
        .or_else(|| own.and_then(|m| m.get("default")))
        .copied()
        .or_else(|| {
            POST_05_THRESHOLDS
                .iter()
                .find(|(s, _)| *s == step)
                .map(|(_, t)| *t)
        })
        .unwrap_or(DEFAULT_THRESHOLD)
}

/// One signal: an event name, the step it is about and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub name: &'static str,
    pub step: Option<String>,
    pub payload: Value,
}

/// The signals one committed transition raises (none for most).
///
/// A bottleneck is judged on the handler's own run (an attempt that left `in_progress`), not
/// on time spent waiting for a person or a child task.
pub fn of(t: &Transition, task: &TaskFacts<'_>) -> Vec<Signal> {
    let mut out = Vec::new();
    match &t.subject {
        Subject::Step(step) => {
            let ended =
                t.from.as_deref() == Some("in_progress") && super::metrics::RUN_ENDS.contains(&t.to.as_str());
            let started = t.step.as_ref().and_then(|s| s.started_at);
            if let (true, Some(started)) = (ended, started) {
                let seconds = t.at.saturating_sub(started).max(0) as f64 / 1000.0;
                let threshold = threshold_seconds(task.config, step);
                if seconds > threshold {
                    let outcome = match (t.to.as_str(), t.error.as_ref().map(|e| e.kind.as_str())) {
                        ("complete", _) => "success",
                        ("awaiting_approval" | "waiting_for_child", _) => t.to.as_str(),
                        (_, Some(kind)) => kind,
                        _ => "retryable",
                    };
                    out.push(Signal {
                        name: BOTTLENECK,
                        step: Some(step.clone()),
                        payload: json!({
                            "severity": "warning",
                            "duration_seconds": round2(seconds),
                            "threshold_seconds": threshold,
                            "degradation_factor": round2(seconds / threshold),
                            "attempt": t.attempt,
                            "outcome": outcome,
                        }),
                    });
                }
            }
            if step == INVENTORY_STEP && t.to == "error" {
                let text = t.error.as_ref().map_or(String::new(), |e| {
                    format!("{} {} {}", e.kind, e.code.as_deref().unwrap_or(""), e.message)
                });
                out.push(Signal {
                    name: INVENTORY_FAILURE,
                    step: Some(step.clone()),
                    payload: json!({
                        "severity": "critical",
                        "risk": "oversell",
                        "message": "update_inventory failed for good after payment: stock was not reserved, orders may oversell",
                        "error_type": error_type(&text),
                        "error_code": t.error.as_ref().and_then(|e| e.code.clone()),
                    }),
                });
            }
        }
        Subject::Task => {
            let sla = task.config.monitoring.as_ref().and_then(|m| m.sla_seconds);
            if let (Some(sla), "complete") = (sla, t.to.as_str()) {
                let seconds = t.at.saturating_sub(task.created_at).max(0) as f64 / 1000.0;
                if seconds > sla as f64 {
                    let critical = task
                        .config
                        .monitoring
                        .as_ref()
                        .is_some_and(|m| m.critical_workflow);
                    out.push(Signal {
                        name: SLA_VIOLATION,
                        step: None,
                        payload: json!({
                            "severity": if critical { "critical" } else { "warning" },
                            "duration_seconds": round2(seconds),
                            "sla_seconds": sla,
                            "over_by_seconds": round2(seconds - sla as f64),
                        }),
                    });
                }
            }
        }
    }
    out
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ErrorInfo, StepStatus};

    fn config(value: Value) -> HandlerConfig {
        HandlerConfig::parse(&value).unwrap()
    }

    fn facts<'a>(config: &'a HandlerConfig, context: &'a Value) -> TaskFacts<'a> {
        TaskFacts {
            namespace: "blog_examples",
            workflow: "monitored_checkout",
            version: "1.0.0",
            created_at: 0,
            context,
            config,
            steps: &[],
        }
    }

    fn attempt_ended(step: &str, to: &str, started: i64, at: i64, error: Option<ErrorInfo>) -> Transition {
        Transition {
            seq: 1,
            task_id: "t".into(),
            at,
            actor: "engine".into(),
            subject: Subject::Step(step.into()),
            from: Some("in_progress".into()),
            to: to.into(),
            attempt: 2,
            reason: None,
            error,
            step: Some(Box::new(
                serde_json::from_value::<StepStatus>(
                    json!({ "state": "in_progress", "started_at": started }),
                )
                .unwrap(),
            )),
        }
    }

    #[test]
    fn thresholds_are_the_posts_unless_the_workflow_sets_its_own() {
        let none = HandlerConfig::default();
        assert_eq!(threshold_seconds(&none, "update_inventory"), 3.0);
        assert_eq!(threshold_seconds(&none, "validate_cart"), 2.0);
        assert_eq!(threshold_seconds(&none, "anything_else"), 5.0);
        let own = config(
            json!({ "monitoring": { "bottleneck_seconds": { "update_inventory": 10, "default": 1.5 } } }),
        );
        assert_eq!(threshold_seconds(&own, "update_inventory"), 10.0);
        assert_eq!(threshold_seconds(&own, "validate_cart"), 1.5);
    }

    #[test]
    fn a_slow_attempt_is_a_bottleneck_with_its_degradation_factor() {
        let (c, ctx) = (HandlerConfig::default(), json!({}));
        let timeout = ErrorInfo {
            kind: "timeout".into(),
            code: Some("STEP_TIMEOUT".into()),
            message: "timed out after 15s".into(),
        };
        let s = of(
            &attempt_ended(
                "update_inventory",
                "waiting_for_retry",
                1_000,
                16_000,
                Some(timeout),
            ),
            &facts(&c, &ctx),
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, BOTTLENECK);
        assert_eq!(s[0].payload["degradation_factor"], 5.0);
        assert_eq!(s[0].payload["outcome"], "timeout");
        assert_eq!(s[0].payload["attempt"], 2);
        // At the threshold is not over it.
        assert!(of(
            &attempt_ended("update_inventory", "complete", 0, 3_000, None),
            &facts(&c, &ctx)
        )
        .is_empty());
        // A wait for a person is not the handler's time.
        let mut approval = attempt_ended("approve", "complete", 0, 600_000, None);
        approval.from = Some("awaiting_approval".into());
        assert!(of(&approval, &facts(&c, &ctx)).is_empty());
    }

    #[test]
    fn a_failed_inventory_update_is_a_critical_oversell_risk() {
        let (c, ctx) = (HandlerConfig::default(), json!({}));
        let error = ErrorInfo {
            kind: "timeout".into(),
            code: Some("STEP_TIMEOUT".into()),
            message: "timed out after 15s".into(),
        };
        let s = of(
            &attempt_ended("update_inventory", "error", 0, 15_000, Some(error)),
            &facts(&c, &ctx),
        );
        let names: Vec<&str> = s.iter().map(|s| s.name).collect();
        assert_eq!(names, [BOTTLENECK, INVENTORY_FAILURE]);
        assert_eq!(s[1].payload["severity"], "critical");
        assert_eq!(s[1].payload["error_type"], "timeout");
        assert!(of(
            &attempt_ended("create_order", "error", 0, 10, None),
            &facts(&c, &ctx)
        )
        .is_empty());
    }

    #[test]
    fn a_task_over_its_sla_is_a_violation() {
        let c = config(json!({ "monitoring": { "sla_seconds": 45, "critical_workflow": true } }));
        let ctx = json!({});
        let mut done = attempt_ended("x", "complete", 0, 46_000, None);
        done.subject = Subject::Task;
        done.from = Some("in_progress".into());
        let s = of(&done, &facts(&c, &ctx));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, SLA_VIOLATION);
        assert_eq!(s[0].payload["severity"], "critical");
        assert_eq!(s[0].payload["over_by_seconds"], 1.0);
        done.at = 45_000;
        assert!(of(&done, &facts(&c, &ctx)).is_empty());
        done.at = 46_000;
        assert!(
            of(&done, &facts(&HandlerConfig::default(), &ctx)).is_empty(),
            "no SLA, no violation"
        );
    }
}
