//! The store conformance suite: every operation of the `Store` trait, against any backend.
//! `conformance(make).await` runs it all on stores `make` opens; sled runs it here, on a temporary
//! store and on one in a data directory (reopened between writes and reads), and a second
//! backend adds one line. The crash test commits random groups in a child process, kills it
//! with SIGKILL at a random moment, reopens, and checks the store holds exactly a prefix of
//! the groups: every acknowledged one, and the one in flight wholly or not at all.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use taskdeck::model::{Event, Step, StepState, Subject, Task, TaskState, Transition};
use taskdeck::store::{all_tasks, Durability, Listing, PgStore, SledStore, Store, StoreError, TaskWrite};

#[path = "common/postgres.rs"]
mod pg;

/// Builds tasks and the transitions and events that change them, as the engine would.
struct Sim {
    seq: u64,
    event_seq: u64,
    clock: i64,
}

impl Sim {
    fn new() -> Self {
        Sim {
            seq: 0,
            event_seq: 0,
            clock: 1_700_000_000_000,
        }
    }

    fn tick(&mut self) -> i64 {
        self.clock += 1_000;
        self.clock
    }

    fn task(&mut self, ns: &str, name: &str, steps: usize) -> Task {
        let id = uuid::Uuid::now_v7().to_string();
        let at = self.tick();
        let steps = (0..steps)
            .map(|i| {
                let mut s = Step::new(
                    &format!("s{i}"),
                    "simulate",
                    if i == 0 {
                        vec![]
                    } else {
                        vec![format!("s{}", i - 1)]
                    },
                );
                s.idempotency_key = format!("{id}/s{i}");
                s
            })
            .collect();
        // Search terms are opaque to a store: one its namespace's tasks share, one of its own
        // (marked personal: the mark is not part of the indexed hash).
        let search_terms = vec![format!("n{ns}"), format!("p:{id}")];
        Task {
            id,
            namespace: ns.into(),
            name: name.into(),
            version: "1.0.0".into(),
            state: TaskState::Pending,
            context: json!({ "order": ns.len(), "note": "ctx" }),
            initiator: "tester".into(),
            created_at: at,
            updated_at: at,
            steps,
            parent: None,
            correlation_id: None,
            origin_key: None,
            traceparent: None,
            classification: Default::default(),
            seq: 0,
            search_terms,
        }
    }

    fn transition(&mut self, task: &mut Task, subject: Subject, to: &str) -> Transition {
        self.seq += 1;
        task.seq = self.seq;
        let at = self.tick();
        task.updated_at = at;
        let (from, step) = match &subject {
            Subject::Task => {
                let from = task.state.to_string();
                task.state = to.parse().unwrap();
                (Some(from), None)
            }
            Subject::Step(name) => {
                let s = task.steps.iter_mut().find(|s| &s.name == name).unwrap();
                let from = s.state.to_string();
                s.state = to.parse().unwrap();
                if s.state == StepState::InProgress {
                    s.attempts += 1;
                    s.started_at = Some(at);
                }
                if s.state == StepState::Complete {
                    s.results = Some(json!({ "done": name, "at": at }));
                    s.finished_at = Some(at);
                }
                (Some(from), Some(Box::new(s.status())))
            }
        };
        Transition {
            seq: self.seq,
            task_id: task.id.clone(),
            at,
            actor: "engine".into(),
            subject,
            from,
            to: to.into(),
            attempt: 0,
            reason: None,
            error: None,
            step,
        }
    }

    fn event(&mut self, task: &Task, name: &str) -> Event {
        self.event_seq += 1;
        Event {
            seq: self.event_seq,
            at: self.clock,
            name: name.into(),
            task_id: task.id.clone(),
            workflow: task.workflow_ref(),
            step: None,
            custom: false,
            payload: json!({ "n": self.event_seq }),
        }
    }

    /// Creates `task` in its own commit.
    async fn create(&mut self, store: &dyn Store, task: &mut Task) {
        self.seq += 1;
        task.seq = self.seq;
        let t = Transition {
            seq: self.seq,
            task_id: task.id.clone(),
            at: task.created_at,
            actor: "tester".into(),
            subject: Subject::Task,
            from: None,
            to: "pending".into(),
            attempt: 0,
            reason: None,
            error: None,
            step: None,
        };
        let e = self.event(task, "task.created");
        let context = task.context.clone();
        store
            .commit(
                &[TaskWrite {
                    task,
                    context: Some(&context),
                    before: None,
                }],
                &[t],
                &[e],
            )
            .await
            .unwrap();
    }

    /// Runs a created task to `complete` (or `error` at step `fail_at`), one commit per step.
    async fn run(&mut self, store: &dyn Store, task: &mut Task, fail_at: Option<usize>) {
        let start = self.transition(task, Subject::Task, "in_progress");
        commit(store, task, vec![start], vec![]).await;
        for i in 0..task.steps.len() {
            let name = task.steps[i].name.clone();
            let a = self.transition(task, Subject::Step(name.clone()), "in_progress");
            let end = if fail_at == Some(i) { "error" } else { "complete" };
            let b = self.transition(task, Subject::Step(name), end);
            let e = self.event(task, "step.done");
            commit(store, task, vec![a, b], vec![e]).await;
            if end == "error" {
                let f = self.transition(task, Subject::Task, "error");
                commit(store, task, vec![f], vec![]).await;
                return;
            }
        }
        let done = self.transition(task, Subject::Task, "complete");
        let e = self.event(task, "task.completed");
        commit(store, task, vec![done], vec![e]).await;
    }
}

async fn commit(store: &dyn Store, task: &Task, transitions: Vec<Transition>, events: Vec<Event>) {
    store
        .commit(
            &[TaskWrite {
                task,
                context: None,
                before: None,
            }],
            &transitions,
            &events,
        )
        .await
        .unwrap();
}

fn ids(tasks: &[Task]) -> Vec<&str> {
    tasks.iter().map(|t| t.id.as_str()).collect()
}

/// Every operation of the trait, on stores from `make` (each call: a fresh, empty store;
/// `reopen` gives the same store back, reopened if the backend can be).
/// A fresh store, and how to get the same store back (reopened where the backend allows).
type Opened = (Arc<dyn Store>, Box<dyn Fn() -> Arc<dyn Store>>);

async fn conformance(make: &dyn Fn() -> Opened) {
    let (mut store, reopen) = make();
    let mut sim = Sim::new();
    assert_eq!(store.last_seq().await.unwrap(), 0);
    assert_eq!(store.last_event_seq().await.unwrap(), 0);
    assert!(store.task("nope").await.unwrap().is_none());
    assert_eq!(store.oldest_task_id().await.unwrap(), None);
    store.check_writable().await.unwrap();
    // The master key's check value: kept once, never replaced (engines starting together agree).
    assert_eq!(store.key_check(None).await.unwrap(), None);
    assert_eq!(
        store.key_check(Some("first")).await.unwrap().as_deref(),
        Some("first")
    );
    assert_eq!(
        store.key_check(Some("second")).await.unwrap().as_deref(),
        Some("first")
    );

    // Tasks in two namespaces and workflows; some complete, one in error, one running.
    let mut done = Vec::new();
    for i in 0..6 {
        let (ns, name) = if i % 2 == 0 {
            ("shop", "order")
        } else {
            ("data", "etl")
        };
        let mut t = sim.task(ns, name, 3);
        sim.create(&*store, &mut t).await;
        sim.run(&*store, &mut t, (i == 3).then_some(1)).await;
        done.push(t);
    }
    let mut running = sim.task("shop", "order", 3);
    sim.create(&*store, &mut running).await;
    let start = sim.transition(&mut running, Subject::Task, "in_progress");
    let s0 = sim.transition(&mut running, Subject::Step("s0".into()), "in_progress");
    commit(&*store, &running, vec![start, s0], vec![]).await;
    let mut waiting = sim.task("data", "etl", 2);
    sim.create(&*store, &mut waiting).await;
    let start = sim.transition(&mut waiting, Subject::Task, "in_progress");
    let s0 = sim.transition(&mut waiting, Subject::Step("s0".into()), "in_progress");
    let gate = sim.transition(&mut waiting, Subject::Step("s0".into()), "awaiting_approval");
    commit(&*store, &waiting, vec![start, s0, gate], vec![]).await;

    store = {
        drop(store);
        reopen()
    };
    // Whole tasks read back as written, context included.
    for t in done.iter().chain([&running, &waiting]) {
        let read = store.task(&t.id).await.unwrap().unwrap();
        assert_eq!(&read, t, "task {} reads back as committed", t.id);
    }
    assert_eq!(store.last_seq().await.unwrap(), sim.seq);
    assert_eq!(store.last_event_seq().await.unwrap(), sim.event_seq);
    assert_eq!(
        store.oldest_task_id().await.unwrap().as_deref(),
        Some(done[0].id.as_str())
    );
    // Counts by state, from the index (the "waiting" task is in progress, at a gate).
    assert_eq!(store.count(TaskState::Complete).await.unwrap(), 5);
    assert_eq!(store.count(TaskState::Error).await.unwrap(), 1);
    assert_eq!(store.count(TaskState::InProgress).await.unwrap(), 2);
    assert_eq!(store.count(TaskState::Pending).await.unwrap(), 0);

    // Transitions of a task in order, all of them.
    let log = store.transitions(&done[0].id).await.unwrap();
    assert_eq!(log.len(), 1 + 1 + 3 * 2 + 1);
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(log.last().unwrap().to, "complete");

    // Listings: newest first, filters, cursors, time, headers only, permissions.
    let all = store.list(&Listing::default(), &|_| true, 100).await.unwrap();
    let mut want: Vec<&str> = done
        .iter()
        .chain([&running, &waiting])
        .map(|t| t.id.as_str())
        .collect();
    want.reverse();
    assert_eq!(ids(&all), want);
    assert_eq!(ids(&all_tasks(&*store).await.unwrap()).len(), 8);
    let page = store.list(&Listing::default(), &|_| true, 3).await.unwrap();
    let next = store
        .list(
            &Listing {
                before: Some(page[2].id.clone()),
                ..Listing::default()
            },
            &|_| true,
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        [ids(&page), ids(&next)].concat(),
        want,
        "pages join without gaps or repeats"
    );
    let shop = store
        .list(
            &Listing {
                namespace: Some("shop".into()),
                ..Listing::default()
            },
            &|_| true,
            100,
        )
        .await
        .unwrap();
    assert!(shop.len() == 4 && shop.iter().all(|t| t.namespace == "shop"));
    let errors = store
        .list(
            &Listing {
                state: Some(TaskState::Error),
                ..Listing::default()
            },
            &|_| true,
            100,
        )
        .await
        .unwrap();
    assert_eq!(ids(&errors), [done[3].id.as_str()]);
    let data_complete = store
        .list(
            &Listing {
                namespace: Some("data".into()),
                state: Some(TaskState::Complete),
                ..Listing::default()
            },
            &|_| true,
            100,
        )
        .await
        .unwrap();
    assert_eq!(ids(&data_complete), [done[5].id.as_str(), done[1].id.as_str()]);
    let etl = store
        .list(
            &Listing {
                workflow: Some(("data".into(), "etl".into())),
                ..Listing::default()
            },
            &|_| true,
            100,
        )
        .await
        .unwrap();
    assert_eq!(etl.len(), 4);
    // Search terms: every listed task carries all of them, read through the first's index.
    let by_term = |terms: Vec<String>| Listing {
        terms,
        personal: true,
        ..Listing::default()
    };
    let data = store
        .list(&by_term(vec!["ndata".into()]), &|_| true, 100)
        .await
        .unwrap();
    assert_eq!(data.len(), 4);
    assert!(
        data.iter().all(|t| t.search_terms.contains(&"ndata".to_string())),
        "terms are read back"
    );
    let one = store
        .list(&by_term(vec!["ndata".into(), done[5].id.clone()]), &|_| true, 100)
        .await
        .unwrap();
    assert_eq!(ids(&one), [done[5].id.as_str()]);
    // A personal term (`p:`) counts only for a caller who may search personal fields.
    let impersonal = Listing {
        terms: vec!["ndata".into(), done[5].id.clone()],
        ..Listing::default()
    };
    assert!(store.list(&impersonal, &|_| true, 100).await.unwrap().is_empty());
    let first_personal = Listing {
        terms: vec![done[5].id.clone()],
        ..Listing::default()
    };
    assert!(store
        .list(&first_personal, &|_| true, 100)
        .await
        .unwrap()
        .is_empty());
    let none = store
        .list(&by_term(vec!["ndata".into(), "nowhere".into()]), &|_| true, 100)
        .await
        .unwrap();
    assert!(none.is_empty());
    let recent = store
        .list(
            &Listing {
                since: Some(running.created_at),
                headers_only: true,
                ..Listing::default()
            },
            &|_| true,
            100,
        )
        .await
        .unwrap();
    assert_eq!(ids(&recent), [waiting.id.as_str(), running.id.as_str()]);
    assert!(
        recent.iter().all(|t| t.steps.is_empty() && t.context.is_null()),
        "headers only"
    );
    let readable = store
        .list(&Listing::default(), &|t| t.namespace == "data", 100)
        .await
        .unwrap();
    assert!(readable.len() == 4 && readable.iter().all(|t| t.namespace == "data"));

    // Finding by what a person types.
    let exact = store.find_tasks(&running.id, &|_| true, 6).await.unwrap();
    assert_eq!(ids(&exact), [running.id.as_str()]);
    let tail = &waiting.id[waiting.id.len() - 8..];
    assert_eq!(
        ids(&store.find_tasks(tail, &|_| true, 6).await.unwrap()),
        [waiting.id.as_str()]
    );
    assert!(
        store.find_tasks(tail, &|_| false, 6).await.unwrap().is_empty(),
        "others' tasks are not found"
    );
    assert!(store.find_tasks("", &|_| true, 6).await.unwrap().is_empty());
    let prefix = &done[0].id[..8];
    assert!(!store.find_tasks(prefix, &|_| true, 6).await.unwrap().is_empty());

    // Unfinished work and the approvals index.
    let mut active = ids(&store.active_tasks().await.unwrap())
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    active.sort();
    let mut want_active = vec![running.id.clone(), waiting.id.clone()];
    want_active.sort();
    assert_eq!(active, want_active);
    let decisions = store.waiting_for_decision().await.unwrap();
    assert_eq!(decisions.len(), 1);
    assert_eq!(
        (decisions[0].task_id.as_str(), decisions[0].step.as_str()),
        (waiting.id.as_str(), "s0")
    );

    // Events: in order, from any point, across chunks.
    let events = store.events_after(0, 10_000).await.unwrap();
    assert_eq!(events.len() as u64, sim.event_seq);
    assert!(events.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
    let tail = store.events_after(5, 3).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 7, 8]);
    assert!(store.events_after(sim.event_seq, 10).await.unwrap().is_empty());

    // Origins (idempotent delegation).
    let mut child = sim.task("payments", "refund", 1);
    child.origin_key = Some(format!("{}/s0", running.id));
    child.parent = Some(running.id.clone());
    sim.create(&*store, &mut child).await;
    let found = store
        .task_by_origin(&format!("{}/s0", running.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, child.id);
    assert!(store.task_by_origin("nobody/s0").await.unwrap().is_none());

    // Retention: finished tasks by age and beyond a count; removal takes every record.
    let cutoff = done[2].updated_at + 1;
    let old = store.finished_before(cutoff, 100).await.unwrap();
    assert_eq!(
        old,
        ids(&done[..3])
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
    );
    assert_eq!(store.finished_before(cutoff, 2).await.unwrap().len(), 2);
    let beyond = store.finished_beyond(4, 100).await.unwrap();
    assert_eq!(beyond, [done[1].id.clone(), done[0].id.clone()]);
    let removed = store.remove(&old, done[2].updated_at + 1).await.unwrap();
    assert_eq!(removed, 3);
    let removed_again = store.remove(&[running.id.clone()], 0).await.unwrap();
    assert_eq!(removed_again, 0, "an unfinished task is never removed");
    store = {
        drop(store);
        reopen()
    };
    for t in &done[..3] {
        assert!(store.task(&t.id).await.unwrap().is_none());
        assert!(store.transitions(&t.id).await.unwrap().is_empty());
        assert!(store
            .find_tasks(&t.id[t.id.len() - 8..], &|_| true, 6)
            .await
            .unwrap()
            .is_empty());
        let by_own_term = Listing {
            terms: vec![t.id.clone()],
            personal: true,
            ..Listing::default()
        };
        assert!(
            store.list(&by_own_term, &|_| true, 6).await.unwrap().is_empty(),
            "a removed task's search keys went with it"
        );
    }
    assert_eq!(all_tasks(&*store).await.unwrap().len(), 6);
    assert_eq!(
        store.oldest_task_id().await.unwrap().as_deref(),
        Some(done[3].id.as_str()),
        "the oldest task left"
    );
    assert_eq!(
        store.count(TaskState::Complete).await.unwrap(),
        2,
        "removal counts"
    );
    let events = store.events_after(0, 10_000).await.unwrap();
    let gone: Vec<&str> = ids(&done[..3]);
    assert!(
        !events
            .iter()
            .any(|e| gone.contains(&e.task_id.as_str()) && e.at <= done[2].updated_at),
        "the removed tasks' events went with them"
    );
    assert_eq!(
        store.last_seq().await.unwrap(),
        sim.seq,
        "sequence numbers are never reused"
    );
    assert!(store.last_event_seq().await.unwrap() <= sim.event_seq);
}

#[tokio::test]
async fn sled_temporary_passes_the_suite() {
    conformance(&|| {
        let store: Arc<dyn Store> = Arc::new(SledStore::temporary(Durability::Immediate).unwrap());
        let same = store.clone();
        (store, Box::new(move || same.clone()))
    })
    .await;
}

#[tokio::test]
async fn sled_on_disk_passes_the_suite_across_reopens() {
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance(&|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        dirs.lock().unwrap().push(dir);
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&path, Durability::Immediate, "test").unwrap());
        let held = std::sync::Mutex::new(Some(store.clone()));
        (
            store,
            Box::new(move || {
                // Drop every handle, then open the directory again.
                held.lock().unwrap().take();
                loop {
                    match SledStore::open(&path, Durability::Immediate, "test") {
                        Ok(s) => {
                            let s: Arc<dyn Store> = Arc::new(s);
                            *held.lock().unwrap() = Some(s.clone());
                            return s;
                        }
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                    }
                }
            }),
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_suite_across_reopens() {
    let Some(url) = pg::url("postgres_passes_the_suite_across_reopens") else {
        return;
    };
    conformance(&|| {
        let target = pg::fresh_target(&url);
        let open = move || -> Arc<dyn Store> {
            let target = target.clone();
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async move {
                    Arc::new(
                        PgStore::open_target(&target, Durability::Immediate, "test", false)
                            .await
                            .unwrap(),
                    )
                })
            })
        };
        (open(), Box::new(open))
    })
    .await;
}

#[tokio::test]
async fn postgres_refuses_a_schema_newer_than_it_knows() {
    let Some(url) = pg::url("postgres_refuses_a_schema_newer_than_it_knows") else {
        return;
    };
    let target = pg::fresh_target(&url);
    let reader = PgStore::open_target(&target, Durability::Immediate, "reader", false)
        .await
        .unwrap();
    // A schema from a newer build is refused, named, and left as it is.
    let newer = taskdeck::store::postgres_schema_version() + 1;
    let client = pg::sql(&url).await;
    client
        .batch_execute(&format!(
            "UPDATE {}.taskdeck_schema SET version = {newer}",
            target.schema
        ))
        .await
        .unwrap();
    drop(reader);
    match PgStore::open_target(&target, Durability::Immediate, "old build", false).await {
        Err(e @ StoreError::Open { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!(
                    "schema is version {newer}, newer than this taskdeck knows"
                )),
                "{text}"
            );
            let config: tokio_postgres::Config = url.parse().unwrap();
            if let Some(password) = config.get_password() {
                let password = String::from_utf8_lossy(password).into_owned();
                assert!(!text.contains(&format!(":{password}@")), "no password in {text}");
            }
        }
        other => panic!("a newer schema is refused, got {:?}", other.err()),
    }
    let row = client
        .query_one(
            &format!("SELECT version FROM {}.taskdeck_schema", target.schema),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), newer, "the newer schema is left alone");
}

// ----- crash atomicity -----------------------------------------------------------------------

const CHILD: &str = "TASKDECK_CONFORMANCE_CHILD";

/// The crash test's world: tasks and how far each has run. Each `step` makes exactly one
/// commit, chosen by the seeded `rng`, so a run is the same sequence of commits every time.
struct World {
    sim: Sim,
    tasks: Vec<(Task, usize)>,
    rng: SmallRng,
}

impl World {
    fn new(seed: u64) -> Self {
        World {
            sim: Sim::new(),
            tasks: Vec::new(),
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// One commit: a new task, or one more step of an unfinished one.
    async fn step(&mut self, store: &dyn Store) {
        let unfinished: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| self.tasks[i].0.state.is_active())
            .collect();
        if unfinished.is_empty() || self.rng.random_bool(0.3) {
            let ns = if self.rng.random_bool(0.5) { "shop" } else { "data" };
            let steps = self.rng.random_range(1..5);
            let mut t = self.sim.task(ns, "flow", steps);
            self.sim.create(store, &mut t).await;
            self.tasks.push((t, 0));
            return;
        }
        let i = unfinished[self.rng.random_range(0..unfinished.len())];
        let fail = self.rng.random_bool(0.1);
        let (mut t, at) = self.tasks[i].clone();
        let sim = &mut self.sim;
        if t.state == TaskState::Pending {
            let start = sim.transition(&mut t, Subject::Task, "in_progress");
            commit(store, &t, vec![start], vec![]).await;
        } else if at < t.steps.len() {
            let name = t.steps[at].name.clone();
            let a = sim.transition(&mut t, Subject::Step(name.clone()), "in_progress");
            let b = sim.transition(
                &mut t,
                Subject::Step(name),
                if fail { "error" } else { "complete" },
            );
            let mut log = vec![a, b];
            if fail {
                log.push(sim.transition(&mut t, Subject::Task, "error"));
            }
            let e = sim.event(&t, "step.done");
            commit(store, &t, log, vec![e]).await;
            self.tasks[i] = (t, at + 1);
            return;
        } else {
            let done = sim.transition(&mut t, Subject::Task, "complete");
            let e = sim.event(&t, "task.completed");
            commit(store, &t, vec![done], vec![e]).await;
        }
        self.tasks[i] = (t, at);
    }
}

/// What a store holds, comparable: every task with its transitions, and the events.
async fn dump(store: &dyn Store) -> Value {
    let mut tasks: Vec<Value> = Vec::new();
    for t in all_tasks(store).await.unwrap() {
        let log = store.transitions(&t.id).await.unwrap();
        tasks.push(json!({ "task": t, "log": log }));
    }
    json!({
        "tasks": tasks,
        "events": store.events_after(0, usize::MAX).await.unwrap(),
        "active": ids(&store.active_tasks().await.unwrap()),
    })
}

/// The dumps of the store after each prefix of the groups (index k: k groups applied). Task
/// ids are made fresh each run, so dumps compare by shape: ids are replaced by their order.
fn normalize(mut v: Value) -> Value {
    let mut names: Vec<String> = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task"]["id"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let mut text = v.to_string();
    for (i, id) in names.iter().enumerate() {
        text = text.replace(id, &format!("task-{i}"));
    }
    v = serde_json::from_str(&text).unwrap();
    v
}

#[tokio::test]
async fn crash_child() {
    // The child half of the crash test: commits, announcing each, until killed.
    let Ok(spec) = std::env::var(CHILD) else { return };
    let (dir, seed) = spec.split_once(';').unwrap();
    let store = SledStore::open(std::path::Path::new(dir), Durability::Immediate, "child").unwrap();
    let mut world = World::new(seed.parse().unwrap());
    let mut out = std::io::stdout();
    for n in 1..=COMMITS {
        world.step(&store).await;
        writeln!(out, "committed {n}").unwrap();
        out.flush().unwrap();
    }
}

/// Commits one child makes at most.
const COMMITS: usize = 600;

#[tokio::test]
async fn a_store_killed_at_random_points_holds_exactly_a_committed_prefix() {
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    for round in 0..8 {
        let seed: u64 = rng.random();
        let dir = tempfile::tempdir().unwrap();
        let wanted = rng.random_range(5..300usize);
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "crash_child", "--nocapture", "--test-threads", "1"])
            .env(CHILD, format!("{};{seed}", dir.path().display()));
        // Odd rounds crash at the worst moment of a commit: its log written and flushed,
        // nothing else (the store's test hook); even rounds SIGKILL wherever it lands.
        if round % 2 == 1 {
            command.env(taskdeck::store::CRASH_AFTER_LOG, wanted.to_string());
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut acknowledged = 0usize;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while let Some(Ok(line)) = lines.next() {
            if let Some(n) = line.strip_prefix("committed ") {
                acknowledged = n.trim().parse().unwrap();
                if acknowledged >= wanted {
                    break;
                }
            }
        }
        // Kill mid-commit of a later one, at a random delay.
        std::thread::sleep(std::time::Duration::from_micros(rng.random_range(0..2000)));
        unsafe {
            libc::kill(child.id() as i32, libc::SIGKILL);
        }
        let _ = child.wait();
        let crashed = loop {
            match SledStore::open(dir.path(), Durability::Immediate, "test") {
                Ok(s) => break s,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        };
        let got = normalize(dump(&crashed).await);
        // The reference: the same commits, on a store nothing kills, compared after each one
        // from the last acknowledged on.
        let reference = SledStore::temporary(Durability::Immediate).unwrap();
        let mut world = World::new(seed);
        for _ in 0..acknowledged {
            world.step(&reference).await;
        }
        let mut matched = None;
        for n in acknowledged..=COMMITS {
            if normalize(dump(&reference).await) == got {
                matched = Some(n);
                break;
            }
            if n < COMMITS {
                world.step(&reference).await;
            }
        }
        eprintln!("round {round}: {acknowledged} commits acknowledged, the store holds {matched:?}");
        assert!(
            matched.is_some(),
            "round {round} (seed {seed}): after {acknowledged} acknowledged commits the store is no committed prefix:\n{}",
            serde_json::to_string(&got).unwrap()
        );
    }
}
