//! Prometheus metrics (`prometheus-client`), served at `/metrics`.
//!
//! Every counter moves from the engine's commit path: once per transition, after the group
//! holding it is durable (`Metrics::committed`), never from the lossy event broadcast, so a
//! count equals what the store holds and never drifts under load. Names follow post 05 with
//! the `tasker_` prefix for the engine's own (`tasker_tasks_total`, `tasker_step_duration_seconds`,
//! …); the business counters keep the names of the post's subscribers
//! (`checkout_conversions_total`, `checkout_failures_total`, `sla_compliance_total`, …;
//! `../shared/reference/tasker-blog-facts.md` §7). Labels are bounded: namespaces, workflows,
//! versions and steps come from the catalog, tiers and payment methods are clipped, and no
//! label ever holds an id, a name or an email.

use crate::model::{Step, StepState, Subject, Timestamp, Transition};
use crate::workflow::handler_config::{BusinessFacts, HandlerConfig};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

/// How many recent commit latencies `/health/status` summarizes.
const RECENT_COMMITS: usize = 1024;

/// The `Content-Type` of `/metrics` (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Seconds, from 5 ms to about 10 minutes: step attempts, approval waits and tasks.
const DURATION_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Seconds a store commit takes, from 50 µs to 1 s.
const COMMIT_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    namespace: String,
    workflow: String,
    version: String,
    /// `created`, `completed`, `failed`, `cancelled`, `resolved_manually`, `retried`.
    status: String,
    /// The customer's tier when the workflow tracks it, else `none`.
    business_tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkflowLabels {
    namespace: String,
    workflow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    namespace: String,
    workflow: String,
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    namespace: String,
    workflow: String,
    step: String,
    /// `success`, `retryable`, `permanent`, `timeout`.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConversionLabels {
    namespace: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    namespace: String,
    failed_step: String,
    /// `timeout`, `connection`, `validation`, `payment`, `inventory`, `other`.
    error_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabels {
    namespace: String,
    customer_tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    namespace: String,
    payment_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlaLabels {
    namespace: String,
    workflow: String,
    /// `true` or `false`.
    sla_met: String,
}

/// Every metric family this registry exports, as Prometheus names it (counters end in
/// `_total`), with its type: what dashboards and alert rules may query (tests hold the rules,
/// the dashboards and the registry to this list).
pub const FAMILIES: &[(&str, &str)] = &[
    ("tasker_tasks_total", "counter"),
    ("tasker_task_duration_seconds", "histogram"),
    ("tasker_step_duration_seconds", "histogram"),
    ("tasker_step_attempts_total", "counter"),
    ("tasker_step_retries_total", "counter"),
    ("tasker_approvals_pending", "gauge"),
    ("tasker_approval_wait_seconds", "histogram"),
    ("tasker_approval_next_expiry_timestamp_seconds", "gauge"),
    ("tasker_store_commit_seconds", "histogram"),
    ("tasker_queue_depth", "gauge"),
    ("tasker_steps_in_flight", "gauge"),
    ("checkout_conversions_total", "counter"),
    ("checkout_failures_total", "counter"),
    ("revenue_processed_dollars_total", "counter"),
    ("revenue_loss_dollars_total", "counter"),
    ("revenue_recovered_dollars_total", "counter"),
    ("payments_processed_total", "counter"),
    ("payment_volume_dollars_total", "counter"),
    ("sla_compliance_total", "counter"),
    ("tasker_step_bottlenecks_total", "counter"),
    ("tasker_sla_violations_total", "counter"),
    ("tasker_oversell_risk_total", "counter"),
    ("tasker_step_bottleneck_threshold_seconds", "gauge"),
];

/// The series names a query may use: counters and gauges as named, and a histogram's
/// `_bucket`, `_sum` and `_count`.
pub fn series_names() -> Vec<String> {
    FAMILIES
        .iter()
        .flat_map(|(name, kind)| match *kind {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{name}{suffix}"))
                .collect::<Vec<_>>(),
            _ => vec![name.to_string()],
        })
        .collect()
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;
type Amount = Counter<f64, AtomicU64>;

fn durations() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The engine's figures in `/health/status` (post 05's `performance` section).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Performance {
    /// Median and 99th percentile of the latest durable commits (up to 1,024), in seconds;
    /// `null` before the first.
    pub store_commit_p50_seconds: Option<f64>,
    pub store_commit_p99_seconds: Option<f64>,
    pub commits_sampled: usize,
    /// Steps ready for a slot, and attempts running, after the last turn.
    pub queue_depth: i64,
    pub steps_in_flight: i64,
}

/// Distinct values a business label (tier, payment method) may take; later ones are `other`,
/// so a context cannot make series without bound.
const MAX_LABEL_VALUES: usize = 32;

/// The values one business label has taken.
#[derive(Default)]
struct Bounded(Mutex<std::collections::HashSet<String>>);

impl Bounded {
    fn admit(&self, value: String) -> String {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(&value) {
            return value;
        }
        if seen.len() >= MAX_LABEL_VALUES {
            return "other".into();
        }
        seen.insert(value.clone());
        value
    }
}

/// What the metrics need to know of the task a transition belongs to.
pub struct TaskFacts<'a> {
    pub namespace: &'a str,
    pub workflow: &'a str,
    pub version: &'a str,
    pub created_at: Timestamp,
    pub context: &'a Value,
    /// The workflow's `handler_config`.
    pub config: &'a HandlerConfig,
    /// The task's steps as they stand (a failed task's first step in error is the one blamed).
    pub steps: &'a [Step],
}

/// The engine's metrics and their registry (one per engine).
pub struct Metrics {
    registry: Registry,
    tasks: Family<TaskLabels, Counter>,
    task_duration: Histograms<WorkflowLabels>,
    step_duration: Histograms<StepLabels>,
    step_attempts: Family<AttemptLabels, Counter>,
    step_retries: Family<StepLabels, Counter>,
    approvals_pending: Family<NamespaceLabels, Gauge>,
    approval_wait: Histograms<StepLabels>,
    next_expiry: Gauge,
    commit_seconds: Histogram,
    /// The latest commits' latencies in seconds, newest last.
    recent_commits: Mutex<VecDeque<f64>>,
    tiers: Bounded,
    methods: Bounded,
    queue_depth: Gauge,
    in_flight: Gauge,
    conversions: Family<ConversionLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    revenue_processed: Family<TierLabels, Amount>,
    revenue_loss: Family<TierLabels, Amount>,
    revenue_recovered: Family<TierLabels, Amount>,
    /// Failed tasks taken up again and not yet ended (in memory: see `task_changed`).
    reopened: Mutex<std::collections::HashSet<String>>,
    payments: Family<MethodLabels, Counter>,
    payment_volume: Family<MethodLabels, Amount>,
    sla: Family<SlaLabels, Counter>,
    bottlenecks: Family<StepLabels, Counter>,
    sla_violations: Family<WorkflowLabels, Counter>,
    oversell_risk: Family<WorkflowLabels, Counter>,
    thresholds: Family<StepLabels, Gauge<f64, AtomicU64>>,
    /// The last ten minutes, for the console (`telemetry::recent`).
    recent: Mutex<super::recent::Recent>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let tasks = Family::<TaskLabels, Counter>::default();
        registry.register(
            "tasker_tasks",
            "Tasks by what happened to them: created, completed, failed, cancelled, resolved_manually, retried",
            tasks.clone(),
        );
        let task_duration: Histograms<WorkflowLabels> = Family::new_with_constructor(durations);
        registry.register(
            "tasker_task_duration_seconds",
            "Seconds from a task's creation to its end (completed or failed)",
            task_duration.clone(),
        );
        let step_duration: Histograms<StepLabels> = Family::new_with_constructor(durations);
        registry.register(
            "tasker_step_duration_seconds",
            "Seconds each step attempt's handler ran (to its outcome, or to asking a person or a child task; waits are not counted)",
            step_duration.clone(),
        );
        let step_attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "tasker_step_attempts",
            "Step attempts by outcome: success, retryable, permanent, timeout",
            step_attempts.clone(),
        );
        let step_retries = Family::<StepLabels, Counter>::default();
        registry.register(
            "tasker_step_retries",
            "Step attempts that failed and were scheduled to run again after a backoff",
            step_retries.clone(),
        );
        let approvals_pending = Family::<NamespaceLabels, Gauge>::default();
        registry.register(
            "tasker_approvals_pending",
            "Steps waiting for a person's decision",
            approvals_pending.clone(),
        );
        let approval_wait: Histograms<StepLabels> = Family::new_with_constructor(durations);
        registry.register(
            "tasker_approval_wait_seconds",
            "Seconds from an approval request to its decision or expiry",
            approval_wait.clone(),
        );
        let next_expiry = Gauge::default();
        registry.register(
            "tasker_approval_next_expiry_timestamp_seconds",
            "When the soonest waiting approval request expires (Unix seconds; 0 when none waits)",
            next_expiry.clone(),
        );
        let commit_seconds = Histogram::new(COMMIT_BUCKETS);
        registry.register(
            "tasker_store_commit_seconds",
            "Seconds each durable store commit (one per engine turn) took",
            commit_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "tasker_queue_depth",
            "Steps ready to run, waiting for a free slot (--concurrency)",
            queue_depth.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "tasker_steps_in_flight",
            "Step attempts running now",
            in_flight.clone(),
        );
        let conversions = Family::<ConversionLabels, Counter>::default();
        registry.register(
            "checkout_conversions",
            "Checkouts completed (workflows with business_metrics.track_conversion)",
            conversions.clone(),
        );
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "checkout_failures",
            "Checkouts failed, by the step that failed and the kind of error",
            failures.clone(),
        );
        let revenue_processed = Family::<TierLabels, Amount>::default();
        registry.register(
            "revenue_processed_dollars",
            "Order value of completed checkouts (business_metrics.track_revenue)",
            revenue_processed.clone(),
        );
        let revenue_loss = Family::<TierLabels, Amount>::default();
        registry.register(
            "revenue_loss_dollars",
            "Order value of failed checkouts",
            revenue_loss.clone(),
        );
        let revenue_recovered = Family::<TierLabels, Amount>::default();
        registry.register(
            "revenue_recovered_dollars",
            "Order value of checkouts that completed after they had failed (retried or resolved): counted lost before",
            revenue_recovered.clone(),
        );
        let payments = Family::<MethodLabels, Counter>::default();
        registry.register(
            "payments_processed",
            "Completed checkouts by payment method",
            payments.clone(),
        );
        let payment_volume = Family::<MethodLabels, Amount>::default();
        registry.register(
            "payment_volume_dollars",
            "Order value of completed checkouts by payment method",
            payment_volume.clone(),
        );
        let sla = Family::<SlaLabels, Counter>::default();
        registry.register(
            "sla_compliance",
            "Completed tasks of workflows with monitoring.sla_seconds, by whether they met it",
            sla.clone(),
        );
        let bottlenecks = Family::<StepLabels, Counter>::default();
        registry.register(
            "tasker_step_bottlenecks",
            "Step attempts that ran longer than their step's bottleneck threshold (business.performance.bottleneck)",
            bottlenecks.clone(),
        );
        let sla_violations = Family::<WorkflowLabels, Counter>::default();
        registry.register(
            "tasker_sla_violations",
            "Tasks that completed after their workflow's monitoring.sla_seconds (performance.sla.violation)",
            sla_violations.clone(),
        );
        let oversell_risk = Family::<WorkflowLabels, Counter>::default();
        registry.register(
            "tasker_oversell_risk",
            "update_inventory steps that failed for good after payment (business.inventory.failure)",
            oversell_risk.clone(),
        );
        let thresholds = Family::<StepLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "tasker_step_bottleneck_threshold_seconds",
            "Each step's bottleneck threshold: the workflow's monitoring.bottleneck_seconds, else post 05's, else 5 (what WorkflowStepBottleneck compares with)",
            thresholds.clone(),
        );
        Metrics {
            registry,
            thresholds,
            bottlenecks,
            sla_violations,
            oversell_risk,
            recent: Mutex::new(super::recent::Recent::default()),
            tasks,
            task_duration,
            step_duration,
            step_attempts,
            step_retries,
            approvals_pending,
            approval_wait,
            next_expiry,
            commit_seconds,
            recent_commits: Mutex::new(VecDeque::with_capacity(RECENT_COMMITS)),
            tiers: Bounded::default(),
            methods: Bounded::default(),
            queue_depth,
            in_flight,
            conversions,
            failures,
            revenue_processed,
            revenue_loss,
            revenue_recovered,
            reopened: Mutex::new(Default::default()),
            payments,
            payment_volume,
            sla,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// One committed transition of the task `task` describes. Called once per transition,
    /// after the commit that holds it succeeded.
    pub fn committed(&self, t: &Transition, task: &TaskFacts<'_>) {
        match &t.subject {
            Subject::Task => self.task_changed(t, task),
            Subject::Step(step) => self.step_changed(t, step, task),
        }
    }

    fn task_changed(&self, t: &Transition, task: &TaskFacts<'_>) {
        // A failed task taken up again (retried, or a step resolved): its end is a recovery
        // or a second failure, not new revenue lost.
        if t.from.as_deref() == Some("error") && matches!(t.to.as_str(), "pending" | "in_progress") {
            self.reopened().insert(t.task_id.clone());
        }
        let status = match (t.from.as_deref(), t.to.as_str()) {
            (None, _) => "created",
            (_, "complete") => "completed",
            (_, "error") => "failed",
            (_, "cancelled") => "cancelled",
            (_, "resolved_manually") => "resolved_manually",
            (Some("error"), "pending") => "retried",
            _ => return, // pending → in_progress: nothing to count
        };
        let business = task.config.business_metrics.as_ref();
        let facts = business.map(|b| b.facts(task.context)).unwrap_or_default();
        let tier = business
            .filter(|b| b.customer_tier_tracking)
            .and(facts.customer_tier.clone())
            .map_or_else(|| "none".into(), |t| self.tiers.admit(t));
        let labels = |status: &str| TaskLabels {
            namespace: task.namespace.into(),
            workflow: task.workflow.into(),
            version: task.version.into(),
            status: status.into(),
            business_tier: tier.clone(),
        };
        if status == "created" {
            // The outcomes exist at 0 from the first task on, so `increase` and `rate` see the
            // very first failure (a series that appears at 1 has increased by nothing), and a
            // conversion ratio has a numerator even when every checkout fails.
            for outcome in ["completed", "failed"] {
                let _ = self.tasks.get_or_create(&labels(outcome));
            }
            if business.is_some_and(|b| b.track_conversion) {
                let _ = self.conversions.get_or_create(&ConversionLabels {
                    namespace: task.namespace.into(),
                    version: task.version.into(),
                });
            }
            if business.is_some_and(|b| b.track_revenue) {
                let (tier, method) = self.business_labels(&facts, task.namespace);
                for family in [
                    &self.revenue_processed,
                    &self.revenue_loss,
                    &self.revenue_recovered,
                ] {
                    let _ = family.get_or_create(&tier);
                }
                let _ = self.payments.get_or_create(&method);
                let _ = self.payment_volume.get_or_create(&method);
            }
        }
        let reopened = matches!(status, "completed" | "failed" | "cancelled" | "resolved_manually")
            && self.reopened().remove(&t.task_id);
        self.tasks.get_or_create(&labels(status)).inc();
        if !matches!(status, "completed" | "failed") {
            return;
        }
        let seconds = seconds_between(task.created_at, t.at);
        self.recent()
            .task_ended(t.at, task.namespace, status == "completed");
        self.task_duration
            .get_or_create(&WorkflowLabels {
                namespace: task.namespace.into(),
                workflow: task.workflow.into(),
            })
            .observe(seconds);
        let sla_seconds = task.config.monitoring.as_ref().and_then(|m| m.sla_seconds);
        // The console counts a failed task as a missed SLA, once: a reopened task's later end
        // changes nothing there (Prometheus's `sla_compliance_total` counts completions, as
        // post 05's subscriber did).
        if status == "failed" && sla_seconds.is_some() && !reopened {
            self.recent().sla(t.at, task.namespace, false);
        }
        if status == "completed" {
            if let Some(sla) = sla_seconds {
                if !reopened {
                    self.recent().sla(t.at, task.namespace, seconds <= sla as f64);
                }
                self.sla
                    .get_or_create(&SlaLabels {
                        namespace: task.namespace.into(),
                        workflow: task.workflow.into(),
                        sla_met: (seconds <= sla as f64).to_string(),
                    })
                    .inc();
            }
        }
        if let Some(b) = business {
            self.business(
                t.at,
                reopened,
                status == "completed",
                b.track_conversion,
                b.track_revenue,
                &facts,
                task,
            );
        }
    }

    /// The tier and payment-method labels of a task's business figures.
    fn business_labels(&self, facts: &BusinessFacts, namespace: &str) -> (TierLabels, MethodLabels) {
        let tier = TierLabels {
            namespace: namespace.into(),
            customer_tier: facts
                .customer_tier
                .clone()
                .map_or_else(|| "unknown".into(), |t| self.tiers.admit(t)),
        };
        let method = MethodLabels {
            namespace: namespace.into(),
            payment_method: facts
                .payment_method
                .clone()
                .map_or_else(|| "unknown".into(), |m| self.methods.admit(m)),
        };
        (tier, method)
    }

    /// `reopened`: the task had failed before and was taken up again, so its revenue was
    /// counted lost already: completing recovers it, failing again loses nothing new.
    #[allow(clippy::too_many_arguments)]
    fn business(
        &self,
        at: Timestamp,
        reopened: bool,
        completed: bool,
        conversion: bool,
        revenue: bool,
        facts: &BusinessFacts,
        task: &TaskFacts<'_>,
    ) {
        let (tier, method) = self.business_labels(facts, task.namespace);
        let value = facts.order_value.unwrap_or(0.0);
        if revenue {
            self.recent()
                .revenue(at, task.namespace, completed, reopened, value);
            if reopened && completed {
                self.revenue_recovered.get_or_create(&tier).inc_by(value);
            }
        }
        if completed {
            if conversion {
                self.conversions
                    .get_or_create(&ConversionLabels {
                        namespace: task.namespace.into(),
                        version: task.version.into(),
                    })
                    .inc();
            }
            if revenue {
                self.revenue_processed.get_or_create(&tier).inc_by(value);
                self.payments.get_or_create(&method).inc();
                self.payment_volume.get_or_create(&method).inc_by(value);
            }
        } else {
            if conversion {
                let (step, error_type) = failed_step(task.steps);
                self.failures
                    .get_or_create(&FailureLabels {
                        namespace: task.namespace.into(),
                        failed_step: step,
                        error_type,
                    })
                    .inc();
            }
            if revenue && !reopened {
                self.revenue_loss.get_or_create(&tier).inc_by(value);
            }
        }
    }

    fn step_changed(&self, t: &Transition, step: &str, task: &TaskFacts<'_>) {
        let labels = || StepLabels {
            namespace: task.namespace.into(),
            workflow: task.workflow.into(),
            step: step.into(),
        };
        let from = t.from.as_deref();
        let status = t.step.as_deref();
        // The handler's own run ended (with an outcome, or asking a person or a child task):
        // what step durations, bottlenecks and the console judge. Waits are measured apart
        // (`tasker_approval_wait_seconds`), so a gate waiting an hour is no bottleneck.
        if from == Some("in_progress") && RUN_ENDS.contains(&t.to.as_str()) {
            if let Some(started) = status.and_then(|s| s.started_at) {
                self.step_duration
                    .get_or_create(&labels())
                    .observe(seconds_between(started, t.at));
                let ms = u64::try_from(t.at.saturating_sub(started)).unwrap_or(0);
                self.recent().attempt(
                    t.at,
                    task.namespace,
                    task.workflow,
                    step,
                    &t.task_id,
                    ms,
                    super::signals::threshold_seconds(task.config, step),
                );
            }
        }
        // An attempt ended with an outcome (after any wait for a person or a child task).
        if matches!(
            from,
            Some("in_progress" | "awaiting_approval" | "waiting_for_child")
        ) {
            let outcome = match t.to.as_str() {
                "complete" => Some("success"),
                "waiting_for_retry" | "error" => Some(match t.error.as_ref().map(|e| e.kind.as_str()) {
                    Some("timeout") => "timeout",
                    Some("permanent") => "permanent",
                    _ => "retryable",
                }),
                _ => None, // awaiting approval or a child: the attempt goes on
            };
            if let Some(outcome) = outcome {
                self.step_attempts
                    .get_or_create(&AttemptLabels {
                        namespace: task.namespace.into(),
                        workflow: task.workflow.into(),
                        step: step.into(),
                        outcome: outcome.into(),
                    })
                    .inc();
            }
        }
        if t.to == "waiting_for_retry" {
            self.step_retries.get_or_create(&labels()).inc();
        }
        let namespace = || NamespaceLabels {
            namespace: task.namespace.into(),
        };
        if t.to == "awaiting_approval" && from != Some("awaiting_approval") {
            self.approvals_pending.get_or_create(&namespace()).inc();
        }
        if from == Some("awaiting_approval") && t.to != "awaiting_approval" {
            self.approvals_pending.get_or_create(&namespace()).dec();
            if let Some(asked) = status.and_then(|s| s.approval.as_ref()).map(|a| a.requested_at) {
                self.approval_wait
                    .get_or_create(&labels())
                    .observe(seconds_between(asked, t.at));
            }
        }
    }

    /// The series the catalog makes possible, at 0 from the start, so the first event is an
    /// increase `rate` and `increase` see (a series that appears at 1 has increased by
    /// nothing) and a gauge reads 0 rather than nothing: approvals pending per namespace,
    /// bottlenecks per step, SLA violations per workflow with `monitoring.sla_seconds`, oversell
    /// risk per workflow with an `update_inventory` step.
    pub fn catalog(&self, catalog: &crate::workflow::Catalog) {
        for w in catalog.iter() {
            let t = &w.template;
            let _ = self.approvals_pending.get_or_create(&NamespaceLabels {
                namespace: t.namespace.clone(),
            });
            let workflow = WorkflowLabels {
                namespace: t.namespace.clone(),
                workflow: t.name.clone(),
            };
            if t.handler_config
                .monitoring
                .as_ref()
                .is_some_and(|m| m.sla_seconds.is_some())
            {
                let _ = self.sla_violations.get_or_create(&workflow);
                for met in ["true", "false"] {
                    let _ = self.sla.get_or_create(&SlaLabels {
                        namespace: t.namespace.clone(),
                        workflow: t.name.clone(),
                        sla_met: met.into(),
                    });
                }
            }
            let tracks_conversion = t
                .handler_config
                .business_metrics
                .as_ref()
                .is_some_and(|b| b.track_conversion);
            for step in &t.steps {
                let labels = StepLabels {
                    namespace: t.namespace.clone(),
                    workflow: t.name.clone(),
                    step: step.name.clone(),
                };
                let _ = self.bottlenecks.get_or_create(&labels);
                // Durations carry no version label: with several versions of a workflow
                // loaded, the alert holds the step to the strictest of their thresholds.
                let threshold = super::signals::threshold_seconds(&t.handler_config, &step.name);
                let gauge = self.thresholds.get_or_create(&labels);
                let current = gauge.get();
                gauge.set(if current > 0.0 {
                    current.min(threshold)
                } else {
                    threshold
                });
                if step.name == super::signals::INVENTORY_STEP {
                    let _ = self.oversell_risk.get_or_create(&workflow);
                }
                if tracks_conversion {
                    for error_type in ERROR_TYPES {
                        let _ = self.failures.get_or_create(&FailureLabels {
                            namespace: t.namespace.clone(),
                            failed_step: crate::model::clip(&step.name, 64),
                            error_type: error_type.into(),
                        });
                    }
                }
            }
        }
    }

    /// Steps found waiting for a decision when the engine started (the gauge counts from them).
    pub fn recovered_approval(&self, namespace: &str) {
        self.approvals_pending
            .get_or_create(&NamespaceLabels {
                namespace: namespace.into(),
            })
            .inc();
    }

    /// A signal (`telemetry::signals`) of a task of `namespace`/`workflow` was committed.
    pub fn signal(&self, event: &crate::model::event::Event, namespace: &str, workflow: &str) {
        let step = event.step.clone().unwrap_or_default();
        let labels = WorkflowLabels {
            namespace: namespace.into(),
            workflow: workflow.into(),
        };
        match event.name.as_str() {
            super::signals::BOTTLENECK => self
                .bottlenecks
                .get_or_create(&StepLabels {
                    namespace: namespace.into(),
                    workflow: workflow.into(),
                    step,
                })
                .inc(),
            super::signals::SLA_VIOLATION => self.sla_violations.get_or_create(&labels).inc(),
            super::signals::INVENTORY_FAILURE => self.oversell_risk.get_or_create(&labels).inc(),
            _ => return,
        };
        self.recent().signal(
            namespace,
            super::recent::SignalNote {
                name: event.name.clone(),
                at: event.at,
                workflow: workflow.into(),
                step: event.step.clone(),
                task: event.task_id.clone(),
                degradation_factor: event.payload["degradation_factor"].as_f64(),
            },
        );
    }

    /// The last ten minutes of the namespaces `readable` accepts (every one of `known` listed,
    /// active or not).
    pub fn summary(
        &self,
        now: Timestamp,
        known: &[String],
        readable: &dyn Fn(&str) -> bool,
    ) -> super::recent::MetricsSummary {
        self.recent().summary(now, known, readable)
    }

    /// A failed task taken up again before this process started (see `Engine::start`).
    pub fn mark_reopened(&self, task_id: &str) {
        self.reopened().insert(task_id.to_string());
    }

    fn reopened(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.reopened.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, super::recent::Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long one store commit took.
    pub fn commit_took(&self, seconds: f64) {
        self.commit_seconds.observe(seconds);
        let mut recent = self.recent_commits.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= RECENT_COMMITS {
            recent.pop_front();
        }
        recent.push_back(seconds);
    }

    /// The engine's figures for `/health/status`.
    pub fn performance(&self) -> Performance {
        let mut recent: Vec<f64> = self
            .recent_commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        recent.sort_by(f64::total_cmp);
        let at = |q: f64| -> Option<f64> {
            let last = recent.len().checked_sub(1)?;
            // Nearest rank: a small sample's p99 is its slowest commit.
            let i = ((q * recent.len() as f64).ceil() as usize)
                .saturating_sub(1)
                .min(last);
            recent.get(i).copied()
        };
        Performance {
            store_commit_p50_seconds: at(0.5),
            store_commit_p99_seconds: at(0.99),
            commits_sampled: recent.len(),
            queue_depth: self.queue_depth.get(),
            steps_in_flight: self.in_flight.get(),
        }
    }

    /// When the soonest waiting approval expires (ms since the epoch), or `None`.
    pub fn next_approval_expiry(&self, at: Option<Timestamp>) {
        self.next_expiry.set(at.map_or(0, |ms| ms.div_euclid(1000)));
    }

    /// Steps ready but waiting for a slot, and attempts running, after a turn.
    pub fn queue(&self, ready: usize, in_flight: usize) {
        self.queue_depth.set(i64::try_from(ready).unwrap_or(i64::MAX));
        self.in_flight.set(i64::try_from(in_flight).unwrap_or(i64::MAX));
    }
}

/// Seconds from `from` to `to` (ms), never negative.
fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    to.saturating_sub(from).max(0) as f64 / 1000.0
}

/// The step a failed task blames (its first step in error) and the kind of that step's error.
fn failed_step(steps: &[Step]) -> (String, String) {
    match steps.iter().find(|s| s.state == StepState::Error) {
        Some(step) => {
            let text = step.last_error.as_ref().map_or(String::new(), |e| {
                format!("{} {} {}", e.kind, e.code.as_deref().unwrap_or(""), e.message)
            });
            (crate::model::clip(&step.name, 64), error_type(&text).into())
        }
        None => ("unknown".into(), "other".into()),
    }
}

/// The states a step enters when its handler's run ends: an outcome, or a wait for a person
/// or a child task.
pub const RUN_ENDS: [&str; 5] = [
    "complete",
    "waiting_for_retry",
    "error",
    "awaiting_approval",
    "waiting_for_child",
];

/// Post 05's error types, as `error_type` returns them.
pub const ERROR_TYPES: [&str; 6] = [
    "timeout",
    "connection",
    "validation",
    "payment",
    "inventory",
    "other",
];

/// Post 05's classification of an error by its text: timeout, connection, validation,
/// payment, inventory or other.
pub fn error_type(text: &str) -> &'static str {
    let t = text.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if has(&["timeout", "timed out"]) {
        "timeout"
    } else if has(&["connection", "unavailable", "unreachable", "refused"]) {
        "connection"
    } else if has(&["valid", "missing", "required", "empty"]) {
        "validation"
    } else if has(&["payment", "card", "declined", "funds"]) {
        "payment"
    } else if has(&["inventory", "stock"]) {
        "inventory"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ErrorInfo, StepStatus};
    use crate::workflow::handler_config::HandlerConfig;
    use serde_json::json;

    fn transition(subject: Subject, from: Option<&str>, to: &str, at: Timestamp) -> Transition {
        Transition {
            seq: 0,
            task_id: "t1".into(),
            at,
            actor: "engine".into(),
            subject,
            from: from.map(str::to_string),
            to: to.into(),
            attempt: 1,
            reason: None,
            error: None,
            step: None,
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn a_failed_checkout_retried_to_completion_is_recovered_not_lost_twice() {
        let metrics = Metrics::new();
        let config = HandlerConfig::parse(&json!({
            "business_metrics": { "track_revenue": true, "customer_tier_tracking": true }
        }))
        .unwrap();
        let context = json!({ "order_value": 100.0, "customer_tier": "gold" });
        let facts = TaskFacts {
            namespace: "shop",
            workflow: "checkout",
            version: "1.0.0",
            created_at: 0,
            context: &context,
            config: &config,
            steps: &[],
        };
        for (from, to) in [
            (None, "pending"),
            (Some("in_progress"), "error"),
            (Some("error"), "pending"),     // retried
            (Some("in_progress"), "error"), // fails again: nothing new lost
            (Some("error"), "in_progress"), // a step resolved
            (Some("in_progress"), "complete"),
        ] {
            metrics.committed(&transition(Subject::Task, from, to, 5_000), &facts);
        }
        let text = metrics.encode();
        let value = |series: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(series))
                .unwrap_or_else(|| panic!("{series}\n{text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        let tier = r#"{namespace="shop",customer_tier="gold"}"#;
        assert_eq!(value(&format!("revenue_loss_dollars_total{tier}")), 100.0);
        assert_eq!(value(&format!("revenue_recovered_dollars_total{tier}")), 100.0);
        assert_eq!(value(&format!("revenue_processed_dollars_total{tier}")), 100.0);
        let summary = metrics.summary(5_000, &[], &|_| true);
        let shop = &summary.namespaces[0];
        assert_eq!((shop.revenue_lost, shop.revenue_recovered), (0.0, 100.0));
    }

    #[test]
    fn committed_transitions_move_the_engine_and_business_metrics_once_each() {
        let metrics = Metrics::new();
        let config = HandlerConfig::parse(&json!({
            "business_metrics": { "track_revenue": true, "track_conversion": true, "customer_tier_tracking": true },
            "monitoring": { "sla_seconds": 45 }
        }))
        .unwrap();
        let context = json!({ "order_value": 200.5, "customer_tier": "premium", "payment_method": "paypal" });
        let mut failed_step = Step::new("update_inventory", "h", Vec::new());
        failed_step.state = StepState::Error;
        failed_step.last_error = Some(ErrorInfo {
            kind: "timeout".into(),
            code: Some("TIMEOUT".into()),
            message: "no answer within 15 s".into(),
        });
        let steps = vec![failed_step];
        let facts = TaskFacts {
            namespace: "blog_examples",
            workflow: "monitored_checkout",
            version: "1.0.0",
            created_at: 1_000,
            context: &context,
            config: &config,
            steps: &steps,
        };
        let step = |from: Option<&str>, to: &str, at: Timestamp, started: Timestamp| {
            let mut t = transition(Subject::Step("update_inventory".into()), from, to, at);
            let mut status: StepStatus = Step::new("update_inventory", "h", Vec::new()).status();
            status.started_at = Some(started);
            t.step = Some(Box::new(status));
            t
        };
        let mut retry = step(Some("in_progress"), "waiting_for_retry", 16_000, 1_000);
        retry.error = steps[0].last_error.clone();
        for t in [
            transition(Subject::Task, None, "pending", 1_000),
            transition(Subject::Task, Some("pending"), "in_progress", 1_000),
            retry,
            step(Some("in_progress"), "complete", 18_000, 17_000),
            transition(Subject::Task, Some("in_progress"), "complete", 30_000),
            transition(Subject::Task, Some("in_progress"), "error", 60_000),
        ] {
            metrics.committed(&t, &facts);
        }
        let text = metrics.encode();
        let task = |status: &str| {
            format!("tasker_tasks_total{{namespace=\"blog_examples\",workflow=\"monitored_checkout\",version=\"1.0.0\",status=\"{status}\",business_tier=\"premium\"}} 1")
        };
        for status in ["created", "completed", "failed"] {
            assert!(text.contains(&task(status)), "{status}: {text}");
        }
        assert!(line(&text, "tasker_tasks_total{namespace=\"blog_examples\",workflow=\"monitored_checkout\",version=\"1.0.0\",status=\"in_progress\"").is_none());
        assert!(text.contains("tasker_step_retries_total{namespace=\"blog_examples\",workflow=\"monitored_checkout\",step=\"update_inventory\"} 1"), "{text}");
        assert!(text.contains("outcome=\"timeout\"} 1"), "{text}");
        assert!(text.contains("outcome=\"success\"} 1"), "{text}");
        // Two attempts of 15 s and 1 s.
        assert!(text.contains("tasker_step_duration_seconds_sum{namespace=\"blog_examples\",workflow=\"monitored_checkout\",step=\"update_inventory\"} 16.0"), "{text}");
        assert!(
            text.contains("checkout_conversions_total{namespace=\"blog_examples\",version=\"1.0.0\"} 1"),
            "{text}"
        );
        assert!(text.contains("checkout_failures_total{namespace=\"blog_examples\",failed_step=\"update_inventory\",error_type=\"timeout\"} 1"), "{text}");
        assert!(text.contains("revenue_processed_dollars_total{namespace=\"blog_examples\",customer_tier=\"premium\"} 200.5"), "{text}");
        assert!(
            text.contains(
                "revenue_loss_dollars_total{namespace=\"blog_examples\",customer_tier=\"premium\"} 200.5"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "payments_processed_total{namespace=\"blog_examples\",payment_method=\"paypal\"} 1"
            ),
            "{text}"
        );
        // 29 s from creation to completion: within the 45 s SLA.
        assert!(text.contains("sla_compliance_total{namespace=\"blog_examples\",workflow=\"monitored_checkout\",sla_met=\"true\"} 1"), "{text}");
    }

    #[test]
    fn approvals_pending_counts_up_and_down_and_errors_are_classified() {
        let metrics = Metrics::new();
        let config = HandlerConfig::default();
        let context = json!({});
        let facts = TaskFacts {
            namespace: "payments",
            workflow: "process_refund",
            version: "1.0.0",
            created_at: 0,
            context: &context,
            config: &config,
            steps: &[],
        };
        metrics.recovered_approval("payments");
        metrics.next_approval_expiry(Some(7_200_500));
        assert!(metrics
            .encode()
            .contains("tasker_approval_next_expiry_timestamp_seconds 7200"));
        let gate = |from, to| transition(Subject::Step("approve".into()), Some(from), to, 5_000);
        metrics.committed(&gate("in_progress", "awaiting_approval"), &facts);
        assert!(metrics
            .encode()
            .contains("tasker_approvals_pending{namespace=\"payments\"} 2"));
        metrics.committed(&gate("awaiting_approval", "in_progress"), &facts);
        assert!(metrics
            .encode()
            .contains("tasker_approvals_pending{namespace=\"payments\"} 1"));
        assert_eq!(
            error_type("retryable SERVICE_UNAVAILABLE inventory.reserve: service_unavailable"),
            "connection"
        );
        assert_eq!(error_type("permanent CARD_DECLINED card was declined"), "payment");
        assert_eq!(
            error_type("permanent MISSING_CART_ITEMS the cart has no items"),
            "validation"
        );
        assert_eq!(error_type("retryable OUT_OF_STOCK not enough stock"), "inventory");
        assert_eq!(error_type("retryable X something else"), "other");
    }

    #[test]
    fn the_registry_exports_exactly_the_listed_families() {
        // The first test's transitions touch every family but the gauges and the approval
        // histogram, which this one adds.
        let metrics = Metrics::new();
        let config = HandlerConfig::parse(&json!({
            "business_metrics": { "track_revenue": true, "track_conversion": true },
            "monitoring": { "sla_seconds": 45 }
        }))
        .unwrap();
        let context = json!({ "order_value": 1.0 });
        let facts = TaskFacts {
            namespace: "n",
            workflow: "w",
            version: "1.0.0",
            created_at: 0,
            context: &context,
            config: &config,
            steps: &[],
        };
        let mut attempt = transition(Subject::Step("s".into()), Some("in_progress"), "complete", 2_000);
        let mut status = Step::new("s", "h", Vec::new()).status();
        status.started_at = Some(1_000);
        attempt.step = Some(Box::new(status));
        let mut decided = transition(
            Subject::Step("s".into()),
            Some("awaiting_approval"),
            "in_progress",
            900,
        );
        let mut gate = Step::new("s", "h", Vec::new()).status();
        gate.approval = Some(crate::model::Approval {
            request: crate::model::ApprovalRequest {
                summary: "refund".into(),
                amount: None,
                ticket: None,
                customer: None,
                policy_notes: None,
                sealed_amount: None,
                requester: "priya".into(),
                required_role: "manager".into(),
                timeout_seconds: 60,
            },
            requested_at: 500,
            expires_at: 60_500,
            decision: None,
        });
        decided.step = Some(Box::new(gate));
        for t in [
            transition(Subject::Task, None, "pending", 0),
            transition(
                Subject::Step("s".into()),
                Some("in_progress"),
                "awaiting_approval",
                500,
            ),
            decided,
            transition(
                Subject::Step("s".into()),
                Some("in_progress"),
                "waiting_for_retry",
                950,
            ),
            attempt,
            transition(Subject::Task, Some("in_progress"), "complete", 3_000),
            transition(Subject::Task, Some("in_progress"), "error", 3_000),
        ] {
            metrics.committed(&t, &facts);
        }
        metrics.commit_took(0.001);
        metrics.queue(1, 2);
        metrics.next_approval_expiry(None);
        let catalog = crate::workflow::Catalog::load(&[crate::workflow::Source::Bundled], &|_| true).unwrap();
        metrics.catalog(&catalog);
        for name in super::super::signals::NAMES {
            let event = crate::model::event::Event {
                seq: 1,
                at: 3_000,
                name: name.into(),
                task_id: "t1".into(),
                workflow: "n/w@1.0.0".into(),
                step: Some("s".into()),
                custom: false,
                payload: json!({ "degradation_factor": 2.0 }),
            };
            metrics.signal(&event, "n", "w");
        }
        let text = metrics.encode();
        let exported: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let (name, kind) = l.split_once(' ').unwrap();
                (name.to_string(), kind.to_string())
            })
            .collect();
        let listed: Vec<(String, String)> = FAMILIES
            .iter()
            .map(|(n, k)| (n.to_string(), k.to_string()))
            .collect();
        for family in &listed {
            assert!(
                exported.contains(family),
                "{family:?} is listed but not exported:\n{text}"
            );
        }
        for family in &exported {
            assert!(
                listed.contains(family),
                "{family:?} is exported but not in FAMILIES"
            );
        }
    }
}
