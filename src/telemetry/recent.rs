//! The last ten minutes per namespace, in 10-second slices: what the console's `:metrics`
//! view draws (throughput, error rate and p95 attempt time as sparklines, SLA compliance,
//! revenue, the slowest steps and the latest signals).
//!
//! Fed from the same commit path as the Prometheus metrics (once per committed transition),
//! kept in memory only: after a restart the window starts empty, as Prometheus counters do.
//! Its size is bounded by the catalog (namespaces, workflows and steps) times `SLICES`.

use crate::model::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Milliseconds per slice.
pub const SLICE_MS: i64 = 10_000;
/// Slices in the window: 60 × 10 s = 10 minutes.
pub const SLICES: usize = 60;
/// Slowest steps listed per namespace.
pub const SLOWEST: usize = 10;

/// Attempt durations are counted in bins growing by 25%: bin `i` holds durations up to
/// `1.25^i` ms (bin 0: up to 1 ms); the last bin holds everything above about 12 hours.
const GROWTH: f64 = 1.25;
const BINS: usize = 96;

fn bin(ms: u64) -> usize {
    if ms <= 1 {
        return 0;
    }
    ((ms as f64).ln() / GROWTH.ln())
        .ceil()
        .clamp(0.0, (BINS - 1) as f64) as usize
}

fn bin_top_ms(i: usize) -> f64 {
    GROWTH.powi(i as i32)
}

/// One step's attempts in one slice.
#[derive(Debug, Clone, Default)]
struct StepSlice {
    attempts: u32,
    total_ms: u64,
    max_ms: u64,
    slowest_task: String,
    bottlenecks: u32,
    threshold_seconds: f64,
}

/// One namespace in one slice.
#[derive(Debug, Clone)]
struct Slice {
    completed: u32,
    failed: u32,
    durations: [u32; BINS],
    max_ms: u64,
    sla_met: u32,
    sla_missed: u32,
    revenue_processed: f64,
    revenue_lost: f64,
    revenue_recovered: f64,
    /// By (workflow, step).
    steps: HashMap<(String, String), StepSlice>,
}

impl Default for Slice {
    fn default() -> Self {
        Slice {
            completed: 0,
            failed: 0,
            durations: [0; BINS],
            max_ms: 0,
            sla_met: 0,
            sla_missed: 0,
            revenue_processed: 0.0,
            revenue_lost: 0.0,
            revenue_recovered: 0.0,
            steps: HashMap::new(),
        }
    }
}

impl Slice {
    fn p95_seconds(&self) -> Option<f64> {
        let n: u64 = self.durations.iter().map(|c| u64::from(*c)).sum();
        if n == 0 {
            return None;
        }
        let rank = (n as f64 * 0.95).ceil() as u64;
        let mut seen = 0u64;
        for (i, c) in self.durations.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                // A bin's top overstates by up to 25%; never past the slowest seen.
                return Some(bin_top_ms(i).min(self.max_ms as f64) / 1000.0);
            }
        }
        Some(self.max_ms as f64 / 1000.0)
    }
}

/// The latest signal of one kind in a namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignalNote {
    /// The event name (`business.performance.bottleneck`, `performance.sla.violation`,
    /// `business.inventory.failure`).
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub at: Timestamp,
    pub workflow: String,
    pub step: Option<String>,
    /// The task that raised it.
    pub task: String,
    /// How many times slower than the threshold (bottlenecks), or `null`.
    pub degradation_factor: Option<f64>,
}

/// A step among the slowest of a namespace over the window (handler run time, not waits
/// for people or child tasks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SlowStep {
    pub workflow: String,
    pub step: String,
    /// Attempts that ended in the window.
    pub attempts: u32,
    pub avg_seconds: f64,
    pub max_seconds: f64,
    /// The step's bottleneck threshold (`telemetry::signals::threshold_seconds`).
    pub threshold_seconds: f64,
    /// Attempts over the threshold in the window.
    pub bottlenecks: u32,
    /// The task of the slowest attempt.
    pub slowest_task: String,
}

/// One namespace over the window. The per-slice lists hold `slices` values, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NamespaceSummary {
    pub namespace: String,
    /// Tasks completed per slice.
    pub completed: Vec<u32>,
    /// Tasks failed per slice.
    pub failed: Vec<u32>,
    /// The 95th percentile of attempt run time per slice, in seconds (`null`: no attempt
    /// ended); accurate to 25%.
    pub p95_attempt_seconds: Vec<Option<f64>>,
    /// Tasks of workflows with `monitoring.sla_seconds` that completed within it, and those
    /// that did not (completed late, or failed).
    pub sla_met: u32,
    pub sla_missed: u32,
    /// Order value of completed and failed tasks of workflows that track revenue; a failed
    /// task that later completed (retried, resolved) is processed, and `recovered`, not lost.
    pub revenue_processed: f64,
    pub revenue_lost: f64,
    pub revenue_recovered: f64,
    /// Slowest first, by their slowest attempt; at most `SLOWEST`.
    pub slowest_steps: Vec<SlowStep>,
    /// The latest bottleneck, SLA violation and oversell risk in the window, if any.
    pub signals: Vec<SignalNote>,
}

/// `GET /v1/metrics/summary`: the last ten minutes of the namespaces the caller may read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricsSummary {
    /// When the window ends (ms since the Unix epoch).
    pub at: Timestamp,
    /// Seconds per slice (10).
    pub slice_seconds: u32,
    pub namespaces: Vec<NamespaceSummary>,
}

/// The window itself (see the module's documentation).
#[derive(Default)]
pub struct Recent {
    /// Slice index (ms / `SLICE_MS`) → namespace → slice.
    slices: BTreeMap<i64, HashMap<String, Slice>>,
    /// Namespace → the latest signal of each name.
    signals: HashMap<String, BTreeMap<String, SignalNote>>,
}

impl Recent {
    fn slice(&mut self, at: Timestamp, namespace: &str) -> &mut Slice {
        let index = at.div_euclid(SLICE_MS);
        // Records come in clock order (a commit's time), so one far behind the newest means
        // the clock was set back: forget what is "ahead" of it, and what fell out of the window.
        let (lo, hi) = (
            index.saturating_sub(SLICES as i64 - 1),
            index.saturating_add(SLICES as i64 - 1),
        );
        while self.slices.first_key_value().is_some_and(|(k, _)| *k < lo) {
            self.slices.pop_first();
        }
        while self.slices.last_key_value().is_some_and(|(k, _)| *k > hi) {
            self.slices.pop_last();
        }
        self.slices
            .entry(index)
            .or_default()
            .entry(namespace.to_string())
            .or_default()
    }

    /// A task of `namespace` ended at `at`.
    pub fn task_ended(&mut self, at: Timestamp, namespace: &str, completed: bool) {
        let s = self.slice(at, namespace);
        if completed {
            s.completed += 1;
        } else {
            s.failed += 1;
        }
    }

    /// A completed task was judged against its SLA.
    pub fn sla(&mut self, at: Timestamp, namespace: &str, met: bool) {
        let s = self.slice(at, namespace);
        if met {
            s.sla_met += 1;
        } else {
            s.sla_missed += 1;
        }
    }

    /// Revenue of a task that ended: processed when it completed, lost when it failed. A task
    /// `reopened` after a failure was counted lost then: completing recovers that, failing
    /// again loses nothing new.
    pub fn revenue(&mut self, at: Timestamp, namespace: &str, completed: bool, reopened: bool, value: f64) {
        let s = self.slice(at, namespace);
        match (completed, reopened) {
            (true, false) => s.revenue_processed += value,
            (true, true) => {
                s.revenue_processed += value;
                s.revenue_recovered += value;
            }
            (false, false) => s.revenue_lost += value,
            (false, true) => {}
        }
    }

    /// A handler's attempt ended after `ms`.
    #[allow(clippy::too_many_arguments)]
    pub fn attempt(
        &mut self,
        at: Timestamp,
        namespace: &str,
        workflow: &str,
        step: &str,
        task: &str,
        ms: u64,
        threshold_seconds: f64,
    ) {
        let s = self.slice(at, namespace);
        s.durations[bin(ms)] += 1;
        s.max_ms = s.max_ms.max(ms);
        let key = (workflow.to_string(), step.to_string());
        let st = s.steps.entry(key).or_default();
        st.attempts += 1;
        st.total_ms = st.total_ms.saturating_add(ms);
        if ms > st.max_ms || st.slowest_task.is_empty() {
            st.max_ms = ms;
            st.slowest_task = task.to_string();
        }
        st.threshold_seconds = threshold_seconds;
        if ms as f64 > threshold_seconds * 1000.0 {
            st.bottlenecks += 1;
        }
    }

    /// A signal was raised (the latest of each name per namespace is kept).
    pub fn signal(&mut self, namespace: &str, note: SignalNote) {
        self.signals
            .entry(namespace.to_string())
            .or_default()
            .insert(note.name.clone(), note);
    }

    /// The window ending at `now` for the namespaces `readable` accepts, in name order; a
    /// namespace with nothing in the window is listed too when `known` names it.
    pub fn summary(
        &self,
        now: Timestamp,
        known: &[String],
        readable: &dyn Fn(&str) -> bool,
    ) -> MetricsSummary {
        let newest = now.div_euclid(SLICE_MS);
        let oldest = newest.saturating_sub(SLICES as i64 - 1);
        let mut names: Vec<String> = known.to_vec();
        for slice in self.slices.range(oldest..=newest).map(|(_, s)| s) {
            names.extend(slice.keys().cloned());
        }
        names.sort();
        names.dedup();
        names.retain(|n| readable(n));
        let namespaces = names
            .into_iter()
            .map(|ns| {
                let at = |i: i64| self.slices.get(&i).and_then(|m| m.get(&ns));
                let range = oldest..=newest;
                let mut steps: HashMap<(String, String), StepSlice> = HashMap::new();
                let (mut sla_met, mut sla_missed, mut processed, mut lost, mut recovered) =
                    (0, 0, 0.0, 0.0, 0.0);
                for s in range.clone().filter_map(at) {
                    sla_met += s.sla_met;
                    sla_missed += s.sla_missed;
                    processed += s.revenue_processed;
                    lost += s.revenue_lost;
                    recovered += s.revenue_recovered;
                    for (key, st) in &s.steps {
                        let all = steps.entry(key.clone()).or_default();
                        all.attempts += st.attempts;
                        all.total_ms = all.total_ms.saturating_add(st.total_ms);
                        all.bottlenecks += st.bottlenecks;
                        all.threshold_seconds = st.threshold_seconds;
                        if st.max_ms > all.max_ms || all.slowest_task.is_empty() {
                            all.max_ms = st.max_ms;
                            all.slowest_task = st.slowest_task.clone();
                        }
                    }
                }
                let mut slowest: Vec<SlowStep> = steps
                    .into_iter()
                    .map(|((workflow, step), st)| SlowStep {
                        workflow,
                        step,
                        attempts: st.attempts,
                        avg_seconds: st.total_ms as f64 / f64::from(st.attempts.max(1)) / 1000.0,
                        max_seconds: st.max_ms as f64 / 1000.0,
                        threshold_seconds: st.threshold_seconds,
                        bottlenecks: st.bottlenecks,
                        slowest_task: st.slowest_task,
                    })
                    .collect();
                slowest.sort_by(|a, b| {
                    b.max_seconds
                        .total_cmp(&a.max_seconds)
                        .then_with(|| (&a.workflow, &a.step).cmp(&(&b.workflow, &b.step)))
                });
                slowest.truncate(SLOWEST);
                let window_start = oldest.saturating_mul(SLICE_MS);
                let signals = self
                    .signals
                    .get(&ns)
                    .map(|m| m.values().filter(|n| n.at >= window_start).cloned().collect())
                    .unwrap_or_default();
                NamespaceSummary {
                    completed: range.clone().map(|i| at(i).map_or(0, |s| s.completed)).collect(),
                    failed: range.clone().map(|i| at(i).map_or(0, |s| s.failed)).collect(),
                    p95_attempt_seconds: range.map(|i| at(i).and_then(Slice::p95_seconds)).collect(),
                    sla_met,
                    sla_missed,
                    revenue_processed: processed,
                    // A recovery of a loss older than the window takes nothing below zero.
                    revenue_lost: (lost - recovered).max(0.0),
                    revenue_recovered: recovered,
                    slowest_steps: slowest,
                    signals,
                    namespace: ns,
                }
            })
            .collect();
        MetricsSummary {
            at: now,
            slice_seconds: (SLICE_MS / 1000) as u32,
            namespaces,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_grow_by_a_quarter_and_p95_never_passes_the_slowest() {
        assert_eq!(bin(0), 0);
        assert_eq!(bin(1), 0);
        assert!(bin_top_ms(bin(1000)) >= 1000.0 && bin_top_ms(bin(1000)) < 1250.0);
        assert_eq!(bin(u64::MAX), BINS - 1);
        let mut s = Slice::default();
        for ms in 1..=100u64 {
            s.durations[bin(ms)] += 1;
            s.max_ms = s.max_ms.max(ms);
        }
        let p95 = s.p95_seconds().unwrap();
        assert!((0.095..=0.1).contains(&p95), "{p95}");
        assert_eq!(Slice::default().p95_seconds(), None);
    }

    #[test]
    fn the_window_keeps_ten_minutes_and_only_readable_namespaces() {
        let mut r = Recent::default();
        r.task_ended(0, "a", true);
        r.attempt(0, "a", "wf", "slow", "t1", 30_000, 3.0);
        r.attempt(5_000, "a", "wf", "slow", "t2", 2_000, 3.0);
        r.attempt(5_000, "a", "wf", "fast", "t3", 10, 5.0);
        r.task_ended(20_000, "a", false);
        r.revenue(20_000, "a", false, false, 99.5);
        r.revenue(20_000, "a", false, true, 99.5); // the same order failing again
        r.revenue(20_000, "b", true, true, 10.0); // recovered a loss from before the window
        r.sla(20_000, "a", false);
        r.task_ended(20_000, "b", true);
        let all = r.summary(20_000, &["c".into()], &|_| true);
        let names: Vec<&str> = all.namespaces.iter().map(|n| n.namespace.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let a = &all.namespaces[0];
        assert_eq!(a.completed.len(), SLICES);
        assert_eq!(a.completed[SLICES - 3], 1);
        assert_eq!(a.failed[SLICES - 1], 1);
        assert_eq!((a.sla_met, a.sla_missed, a.revenue_lost), (0, 1, 99.5));
        let slow = &a.slowest_steps[0];
        assert_eq!(
            (slow.step.as_str(), slow.attempts, slow.bottlenecks),
            ("slow", 2, 1)
        );
        assert_eq!((slow.max_seconds, slow.slowest_task.as_str()), (30.0, "t1"));
        assert_eq!(slow.avg_seconds, 16.0);
        let only_b = r.summary(20_000, &[], &|n| n == "b");
        assert_eq!(only_b.namespaces.len(), 1);
        let b = &only_b.namespaces[0];
        assert_eq!(
            (b.revenue_processed, b.revenue_lost, b.revenue_recovered),
            (10.0, 0.0, 10.0)
        );
        // Ten minutes later the first slice is gone.
        r.task_ended(600_000, "a", true);
        let later = r.summary(600_000, &[], &|_| true);
        assert_eq!(later.namespaces[0].completed.iter().sum::<u32>(), 1);
        assert_eq!(later.namespaces[0].failed.iter().sum::<u32>(), 1);
        assert!(later.namespaces[0].slowest_steps.is_empty());
        // A clock set far back starts the window again (and nothing panics).
        r.task_ended(-5_000_000, "a", true);
        r.task_ended(i64::MIN, "a", true);
        r.task_ended(i64::MAX, "a", true);
    }
}
