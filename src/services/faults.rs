//! Fault injection: per service and method, fail the next N calls or always, with an error
//! kind, HTTP status, delay or retry-after. Faults come from tests and demos (`Faults::inject`)
//! or from a task's context (`"scenario": "black_friday"` or an inline object).

use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// One fault. With neither `fail_times` nor `always`, it fails every call (a delay-only fault
/// only slows calls down).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Fail this many calls, then behave.
    #[serde(default)]
    pub fail_times: Option<u32>,
    /// Fail every call.
    #[serde(default)]
    pub always: bool,
    /// The error kind the service answers with, e.g. `service_unavailable`, `timeout`,
    /// `rate_limited`, `card_declined`, `authentication_failed`.
    #[serde(default)]
    pub status: Option<String>,
    /// For HTTP services: the status code (derived from `status` when absent).
    #[serde(default)]
    pub http_status: Option<u16>,
    /// Extra latency before the answer, failing or not.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// What the service asks the caller to wait before retrying.
    #[serde(default)]
    pub retry_after_seconds: Option<f64>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The largest `retry_after_seconds` a fault may ask for: one day.
pub const MAX_RETRY_AFTER_SECONDS: f64 = 86_400.0;
/// The largest `delay_ms` a fault may add: one hour.
pub const MAX_DELAY_MS: u64 = 3_600_000;

impl Fault {
    /// Rejects numbers no real service would send and that would overflow a deadline.
    fn check(&self) -> Result<(), String> {
        if let Some(s) = self.retry_after_seconds {
            if !(0.0..=MAX_RETRY_AFTER_SECONDS).contains(&s) {
                return Err(format!(
                    "retry_after_seconds: expected 0 to {MAX_RETRY_AFTER_SECONDS} seconds, got {s}"
                ));
            }
        }
        if let Some(ms) = self.delay_ms {
            if ms > MAX_DELAY_MS {
                return Err(format!(
                    "delay_ms: expected at most {MAX_DELAY_MS} ms (one hour), got {ms}"
                ));
            }
        }
        Ok(())
    }

    fn fails(&self) -> bool {
        self.status.is_some() || self.http_status.is_some() || self.fail_times.is_some() || self.always
    }

    /// The error kind, derived from the HTTP status when only that was given.
    pub fn kind(&self) -> String {
        if let Some(s) = &self.status {
            return s.clone();
        }
        match self.http_status {
            Some(429) => "rate_limited".into(),
            Some(401 | 403) => "authentication_failed".into(),
            Some(400 | 422) => "invalid_request".into(),
            Some(404) => "not_found".into(),
            Some(504) => "timeout".into(),
            _ => "service_unavailable".into(),
        }
    }

    pub fn http(&self) -> u16 {
        self.http_status.unwrap_or(match self.kind().as_str() {
            "rate_limited" => 429,
            "authentication_failed" => 401,
            "invalid_request" | "invalid_email" | "invalid_channel" | "invalid_query" => 422,
            "not_found" => 404,
            "timeout" => 504,
            "card_declined" | "insufficient_funds" | "invalid_card" => 402,
            _ => 503,
        })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_seconds.and_then(crate::model::seconds)
    }
}

/// Faults by service, for all its methods (`"*"`) or for one method.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    pub name: Option<String>,
    pub faults: BTreeMap<String, BTreeMap<String, Fault>>,
}

const FAULT_KEYS: [&str; 7] = [
    "fail_times",
    "always",
    "status",
    "http_status",
    "delay_ms",
    "retry_after_seconds",
    "message",
];

impl Scenario {
    /// Reads `{service: fault}` or `{service: {method: fault}}`.
    pub fn from_value(value: &Value) -> Result<Scenario, String> {
        let Value::Object(services) = value else {
            return Err(format!(
                "expected an object of services or a scenario name, got {value}"
            ));
        };
        let mut faults = BTreeMap::new();
        for (service, spec) in services {
            let Value::Object(fields) = spec else {
                return Err(format!("scenario.{service}: expected an object"));
            };
            let mut methods = BTreeMap::new();
            if fields.keys().any(|k| FAULT_KEYS.contains(&k.as_str())) {
                let fault: Fault =
                    serde_json::from_value(spec.clone()).map_err(|e| format!("scenario.{service}: {e}"))?;
                fault.check().map_err(|e| format!("scenario.{service}.{e}"))?;
                methods.insert("*".to_string(), fault);
            } else {
                for (method, fault) in fields {
                    let fault: Fault = serde_json::from_value(fault.clone())
                        .map_err(|e| format!("scenario.{service}.{method}: {e}"))?;
                    fault
                        .check()
                        .map_err(|e| format!("scenario.{service}.{method}.{e}"))?;
                    methods.insert(method.clone(), fault);
                }
            }
            faults.insert(service.clone(), methods);
        }
        Ok(Scenario { name: None, faults })
    }

    /// The task context's `scenario`: a shipped scenario's name or an inline object.
    pub fn from_context(context: &Value) -> Result<Option<Scenario>, String> {
        match context.get("scenario") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(name)) => named(name).map(Some).ok_or_else(|| {
                format!(
                    "unknown scenario `{name}`; shipped scenarios: {}",
                    shipped().keys().cloned().collect::<Vec<_>>().join(", ")
                )
            }),
            Some(v) => Scenario::from_value(v).map(Some),
        }
    }

    fn fault(&self, service: &str, method: &str) -> Option<&Fault> {
        let methods = self.faults.get(service)?;
        methods.get(method).or_else(|| methods.get("*"))
    }
}

/// A scenario shipped in `scenarios/`, as written there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioDoc {
    name: String,
    description: String,
    faults: Value,
}

mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled_scenarios.rs"));
}

/// The shipped scenarios, parsed once. A broken file is a build-time mistake that tests catch
/// (`shipped_scenarios_parse`); at run time it is skipped and logged.
fn shipped() -> &'static BTreeMap<String, (String, Scenario)> {
    static SHIPPED: OnceLock<BTreeMap<String, (String, Scenario)>> = OnceLock::new();
    SHIPPED.get_or_init(|| {
        let mut out = BTreeMap::new();
        for (file, text) in bundled::FILES {
            match parse_shipped(file, text) {
                Ok((doc, scenario)) => {
                    out.insert(doc.name.clone(), (doc.description, scenario));
                }
                Err(e) => tracing::error!("{e}"),
            }
        }
        out
    })
}

fn parse_shipped(file: &str, text: &str) -> Result<(ScenarioDoc, Scenario), String> {
    let doc: ScenarioDoc = crate::yaml::parse(file, text).map_err(|e| e.to_string())?;
    let mut scenario = Scenario::from_value(&doc.faults).map_err(|e| format!("{file}: {e}"))?;
    scenario.name = Some(doc.name.clone());
    Ok((doc, scenario))
}

pub fn named(name: &str) -> Option<Scenario> {
    shipped().get(name).map(|(_, s)| s.clone())
}

/// `(name, description)` of every shipped scenario.
pub fn catalog() -> Vec<(String, String)> {
    shipped()
        .iter()
        .map(|(n, (d, _))| (n.clone(), d.clone()))
        .collect()
}

/// Faults injected directly (tests, demos), and the per-task call counters scenarios need.
/// The counters are kept with the services' records, so a scenario's "fail twice" is not
/// re-injected after a restart.
#[derive(Default)]
pub struct Faults {
    injected: Mutex<HashMap<(String, String), (Fault, u32)>>,
    /// Calls so far by `<task>/<service>/<method>`.
    pub(super) task_calls: super::table::Table<u32>,
}

/// What a call should suffer: a delay, and possibly a failure.
#[derive(Debug, Clone, Default)]
pub struct Effect {
    pub delay: Option<Duration>,
    pub failure: Option<Fault>,
    /// The scenario it came from, for messages.
    pub source: String,
}

impl Faults {
    pub(crate) fn open(backing: &super::table::Backing) -> Self {
        Faults {
            injected: Mutex::default(),
            task_calls: backing.table("faults.task_calls"),
        }
    }

    fn injected(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (Fault, u32)>> {
        self.injected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Injects a fault for every caller of `service.method` (`"*"` for all methods).
    pub fn inject(&self, service: &str, method: &str, fault: Fault) {
        self.injected()
            .insert((service.to_string(), method.to_string()), (fault, 0));
    }

    pub fn clear(&self) {
        self.injected().clear();
    }

    /// Decides the effect of one call, counting it against "fail the next N" budgets.
    pub fn effect(&self, task_id: &str, scenario: Option<&Scenario>, service: &str, method: &str) -> Effect {
        {
            let mut injected = self.injected();
            let key = [(service, method), (service, "*")]
                .into_iter()
                .map(|(s, m)| (s.to_string(), m.to_string()))
                .find(|k| injected.contains_key(k));
            if let Some((fault, calls)) = key.and_then(|k| injected.get_mut(&k)) {
                *calls = calls.saturating_add(1);
                if let Some(effect) = apply(fault, *calls, "injected fault") {
                    return effect;
                }
            }
        }
        if let Some(fault) = scenario.and_then(|s| s.fault(service, method)) {
            let key = format!("{task_id}/{service}/{method}");
            let calls = self.task_calls.with(task_id, |counts| {
                let calls = counts.get(&key).copied().unwrap_or(0).saturating_add(1);
                counts.insert(&key, calls);
                calls
            });
            let source = match scenario.and_then(|s| s.name.as_deref()) {
                Some(name) => format!("scenario {name}"),
                None => "task scenario".to_string(),
            };
            if let Some(effect) = apply(fault, calls, &source) {
                return effect;
            }
        }
        Effect::default()
    }
}

fn apply(fault: &Fault, call: u32, source: &str) -> Option<Effect> {
    let failing = fault.fails() && (fault.always || fault.fail_times.is_none_or(|n| call <= n));
    let delay = fault.delay_ms.map(Duration::from_millis);
    if !failing && delay.is_none() {
        return None;
    }
    Some(Effect {
        delay,
        failure: failing.then(|| fault.clone()),
        source: source.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shipped_scenarios_parse() {
        for (file, text) in bundled::FILES {
            parse_shipped(file, text).unwrap();
        }
        assert!(named("black_friday").is_some());
    }

    #[test]
    fn service_level_and_method_level_faults() {
        let s = Scenario::from_value(&json!({
            "payment": { "fail_times": 2, "status": "service_unavailable" },
            "email": { "send_confirmation": { "always": true, "status": "invalid_email" } }
        }))
        .unwrap();
        assert_eq!(s.fault("payment", "process_payment").unwrap().fail_times, Some(2));
        assert!(s.fault("email", "send_confirmation").unwrap().always);
        assert!(s.fault("email", "other").is_none());
    }

    #[test]
    fn fail_times_counts_per_task() {
        let faults = Faults::default();
        let s =
            Scenario::from_value(&json!({ "payment": { "fail_times": 1, "status": "timeout" } })).unwrap();
        assert!(faults
            .effect("t1", Some(&s), "payment", "charge")
            .failure
            .is_some());
        assert!(faults
            .effect("t1", Some(&s), "payment", "charge")
            .failure
            .is_none());
        assert!(faults
            .effect("t2", Some(&s), "payment", "charge")
            .failure
            .is_some());
    }

    #[test]
    fn bad_scenarios_say_what_is_wrong() {
        let err = Scenario::from_context(&json!({ "scenario": "nope" })).unwrap_err();
        assert!(
            err.starts_with("unknown scenario `nope`; shipped scenarios: "),
            "{err}"
        );
        let err = Scenario::from_value(&json!({ "payment": { "fail_times": "x" } })).unwrap_err();
        assert!(err.starts_with("scenario.payment: "), "{err}");
        let err =
            Scenario::from_value(&json!({ "payment": { "always": true, "retry_after_seconds": 1e30 } }))
                .unwrap_err();
        assert!(
            err.starts_with("scenario.payment.retry_after_seconds: expected 0 to 86400"),
            "{err}"
        );
        let err =
            Scenario::from_value(&json!({ "email": { "send": { "delay_ms": u64::MAX } } })).unwrap_err();
        assert!(
            err.starts_with("scenario.email.send.delay_ms: expected at most"),
            "{err}"
        );
    }
}
