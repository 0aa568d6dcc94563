//! Numbers from input never wrap a deadline or panic (issue 8, item 4): workflow limits are
//! validated at load with documented maxima, a service's enormous retry-after waits the
//! step's maximum backoff, and the CLI refuses durations and rates it cannot represent.

mod common;

use common::{config, start};
use serde_json::json;
use std::process::Command;
use taskdeck::handlers::Registry;
use taskdeck::model::{StepState, TaskState};
use taskdeck::workflow::{Catalog, Source};

fn load_errors(step: &str) -> Vec<String> {
    let text = format!(
        "namespace: ns\nname: wf\nversion: 1.0.0\nsteps:\n  - name: a\n    handler: simulate\n{step}"
    );
    let registry = Registry::builtin();
    Catalog::load(
        &[Source::Inline {
            file: "wf.yaml".into(),
            text,
        }],
        &|h| registry.contains(h),
    )
    .expect_err("should be refused")
    .iter()
    .map(|e| e.to_string())
    .collect()
}

#[test]
fn backoffs_attempts_and_timeouts_beyond_their_maxima_are_refused_at_load() {
    let e = load_errors(
        "    retry: { backoff_base_ms: 16000000000000000000, max_backoff_ms: 18446744073709551615 }\n",
    );
    assert_eq!(
        e,
        ["wf.yaml: steps[0] (a).retry.backoff_base_ms: expected at most 86400000 ms (one day), got 16000000000000000000"]
    );
    let e = load_errors("    retry: { max_backoff_ms: 18446744073709551615 }\n");
    assert!(
        e[0].contains("retry.max_backoff_ms: expected at most 604800000 ms"),
        "{e:?}"
    );
    let e = load_errors("    retry: { limit: 4000000000 }\n");
    assert!(
        e[0].contains("retry.limit: the maximum number of attempts must be between 1 and 100"),
        "{e:?}"
    );
    let e = load_errors("    default_retry_limit: 0\n");
    assert!(
        e[0].contains("default_retry_limit: the maximum number of attempts"),
        "{e:?}"
    );
    for t in ["1e30", "-1", ".nan", ".inf", "86401", "1e-300", "0"] {
        let e = load_errors(&format!("    timeout_seconds: {t}\n"));
        assert!(
            e[0].contains("timeout_seconds: expected a number of seconds from 0.001 to 86400"),
            "{t}: {e:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_enormous_retry_after_waits_the_maximum_backoff_instead_of_panicking() {
    let yaml = "namespace: t\nname: one\nversion: 1.0.0\nsteps:\n  - name: work\n    handler: simulate\n    retry: { limit: 2, max_backoff_ms: 60000 }\n    handler_config: { fail_times: 1, retry_after_seconds: 1e30 }\n";
    let mut h = start(&[yaml], Registry::builtin(), config()).await;
    let task = h.submit("t/one", json!({})).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let waiting = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(waiting.steps[0].state, StepState::WaitingForRetry);
    assert_eq!(waiting.steps[0].next_attempt_at, Some(task.created_at + 60_000));
    h.engine.when_idle().await.unwrap();
    let done = h.store.task(&task.id).await.unwrap().unwrap();
    assert_eq!(done.state, TaskState::Complete);
    let retried = h
        .drain()
        .into_iter()
        .find(|e| e.name == "step.retry_scheduled")
        .unwrap();
    assert_eq!(retried.payload["delay_ms"], json!(60_000));
}

#[test]
fn deadlines_saturate_instead_of_wrapping() {
    use std::time::Duration;
    use taskdeck::model::{deadline_after, millis_until, seconds};
    assert_eq!(deadline_after(1_000, Duration::MAX), i64::MAX);
    assert_eq!(deadline_after(i64::MAX - 1, Duration::from_secs(10)), i64::MAX);
    assert_eq!(millis_until(i64::MAX, i64::MIN), 0);
    assert_eq!(millis_until(i64::MIN, i64::MAX), i64::MAX as u64);
    assert_eq!(seconds(1e30), Some(Duration::MAX));
    assert_eq!(seconds(-1.0), None);
    assert_eq!(seconds(f64::NAN), None);
    assert_eq!(taskdeck::model::age(0, i64::MIN), "106751991167d");
}

fn taskdeck(args: &[&str]) -> std::process::Output {
    let data = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_taskdeck"))
        .arg("--data")
        .arg(data.path())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_cli_refuses_durations_and_rates_it_cannot_represent() {
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "token",
                "issue",
                "--sub",
                "a",
                "--team",
                "t",
                "--role",
                "operator",
                "--ttl",
                "9999999999999999h",
            ],
            "is not a duration this program can wait",
        ),
        (
            &[
                "token", "issue", "--sub", "a", "--team", "t", "--role", "operator", "--ttl", "31d",
            ],
            "--ttl must be between 1s and 720h",
        ),
        (
            &[
                "token", "issue", "--sub", "a", "--team", "t", "--role", "operator", "--ttl", "721h",
            ],
            "--ttl must be between 1s and 720h",
        ),
        (
            &["demo", "--rate", "1e-300", "--duration", "1s"],
            "--rate must be between 0.01 and 10000",
        ),
        (
            &["demo", "--rate", "1e300", "--duration", "1s"],
            "--rate must be between 0.01 and 10000",
        ),
    ];
    for (args, expected) in cases {
        let out = taskdeck(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
