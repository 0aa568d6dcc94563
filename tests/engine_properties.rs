//! Property test of the whole engine: random DAGs with random failures always end in the
//! state the rules predict, and the transition log replays to the stored snapshot.

mod common;

use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use taskdeck::handlers::Registry;
use taskdeck::model::{StepState, Subject, TaskState};

#[derive(Debug, Clone)]
struct StepSpec {
    parents: Vec<usize>,
    fail_times: u32,
    permanent: bool,
    limit: u32,
}

fn workflow() -> impl Strategy<Value = Vec<StepSpec>> {
    (1usize..8).prop_flat_map(|n| {
        let steps: Vec<_> = (0..n)
            .map(|i| {
                (
                    proptest::collection::vec(any::<bool>(), i),
                    0u32..4,
                    any::<bool>(),
                    1u32..4,
                )
                    .prop_map(|(edges, fail_times, permanent, limit)| StepSpec {
                        parents: edges
                            .iter()
                            .enumerate()
                            .filter(|(_, e)| **e)
                            .map(|(p, _)| p)
                            .collect(),
                        fail_times,
                        permanent,
                        limit,
                    })
            })
            .collect();
        steps
    })
}

fn yaml(steps: &[StepSpec]) -> String {
    let mut y = String::from("namespace: p\nname: random\nversion: 1.0.0\nsteps:\n");
    for (i, s) in steps.iter().enumerate() {
        let deps: Vec<String> = s.parents.iter().map(|p| format!("s{p}")).collect();
        y.push_str(&format!(
            "  - name: s{i}\n    handler: simulate\n    depends_on: [{}]\n    retry: {{ limit: {}, backoff_base_ms: 100 }}\n    handler_config: {{ sleep_ms: {}, fail_times: {}, error: {} }}\n",
            deps.join(", "),
            s.limit,
            10 * (i + 1),
            s.fail_times,
            if s.permanent { "permanent" } else { "retryable" }
        ));
    }
    y
}

/// Whether a step succeeds once it runs, and after how many attempts.
fn outcome(s: &StepSpec) -> (bool, u32) {
    if s.fail_times == 0 {
        (true, 1)
    } else if s.permanent {
        (false, 1)
    } else if s.fail_times < s.limit {
        (true, s.fail_times + 1)
    } else {
        (false, s.limit)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn random_workflows_end_as_the_rules_predict(steps in workflow()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let (task, log) = rt.block_on(async {
            let h = common::start(&[&yaml(&steps)], Registry::builtin(), common::config()).await;
            let task = h.run("p/random", json!({})).await;
            let log = h.store.transitions(&task.id).await.unwrap();
            (task, log)
        });

        // Predict each step's end state from its parents'.
        let mut expected = Vec::new();
        for s in &steps {
            let parents_done = s.parents.iter().all(|&p| expected[p] == StepState::Complete);
            expected.push(if !parents_done {
                StepState::Pending
            } else if outcome(s).0 {
                StepState::Complete
            } else {
                StepState::Error
            });
        }
        for (i, s) in steps.iter().enumerate() {
            let step = &task.steps[i];
            prop_assert_eq!(step.state, expected[i], "step s{}", i);
            let attempts = match expected[i] {
                StepState::Pending => 0,
                _ => outcome(s).1,
            };
            prop_assert_eq!(step.attempts, attempts, "step s{} attempts", i);
        }
        let all_complete = expected.iter().all(|s| *s == StepState::Complete);
        prop_assert_eq!(task.state, if all_complete { TaskState::Complete } else { TaskState::Error });

        // The log replays, edge by edge, to the snapshot.
        let mut state: BTreeMap<Option<String>, String> = BTreeMap::new();
        for t in &log {
            let key = match &t.subject { Subject::Task => None, Subject::Step(s) => Some(s.clone()) };
            // Steps are created pending with their task; the task's creation has no `from`.
            let current = state.get(&key).cloned().or(key.as_ref().map(|_| "pending".to_string()));
            prop_assert_eq!(current, t.from.clone());
            state.insert(key, t.to.clone());
        }
        prop_assert_eq!(state.get(&None).map(String::as_str), Some(task.state.as_str()));
        for step in &task.steps {
            let logged = state.get(&Some(step.name.clone())).map(String::as_str).unwrap_or("pending");
            prop_assert_eq!(logged, step.state.as_str());
        }
    }
}
