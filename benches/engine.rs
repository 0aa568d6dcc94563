//! Engine benchmarks (`cargo bench --bench engine`), all in one run:
//!
//! - `durable_throughput/immediate`: 200 tasks of a 5-step chain of no-op `simulate` steps,
//!   every transition flushed before it is acknowledged (grouped). Throughput is in steps.
//! - `durable_throughput/relaxed`: the same with sled's background flush.
//! - `sequential_latency/chain_50`: one task of 50 sequential no-op steps; time per element is
//!   the engine's overhead per sequential step (durable, immediate).
//! - `sled_baseline/insert_flush_per_group_32`: raw sled inserts of transition-sized values,
//!   flushed once per group of 32, so the report shows how close the engine gets to its store.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskdeck::engine::{Engine, EngineConfig, SubmitRequest};
use taskdeck::handlers::Registry;
use taskdeck::store::{Durability, SledStore, Store};
use taskdeck::workflow::{Catalog, Source};

fn chain_yaml(name: &str, steps: usize) -> String {
    let mut yaml = format!("namespace: bench\nname: {name}\nversion: 1.0.0\nsteps:\n");
    for i in 0..steps {
        yaml.push_str(&format!("  - name: s{i}\n    handler: simulate\n"));
        if i > 0 {
            yaml.push_str(&format!("    depends_on: [s{}]\n", i - 1));
        }
    }
    yaml
}

fn catalog(registry: &Registry) -> Arc<Catalog> {
    let sources = [("chain5", 5), ("chain50", 50)].map(|(name, n)| Source::Inline {
        file: format!("{name}.yaml"),
        text: chain_yaml(name, n),
    });
    Arc::new(Catalog::load(&sources, &|h| registry.contains(h)).unwrap())
}

/// Runs `tasks` tasks of `workflow` on a fresh on-disk store; returns the time from the first
/// submit until the engine is idle.
async fn run(durability: Durability, workflow: &str, tasks: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), durability, "bench").unwrap());
    let registry = Registry::builtin();
    let engine = Arc::new(
        Engine::start(
            EngineConfig {
                concurrency: 128,
                ..EngineConfig::default()
            },
            store,
            catalog(&registry),
            registry,
        )
        .unwrap(),
    );
    let start = Instant::now();
    let submits: Vec<_> = (0..tasks)
        .map(|_| {
            let engine = engine.clone();
            let workflow = workflow.to_string();
            tokio::spawn(async move {
                engine
                    .submit(SubmitRequest::new(
                        workflow,
                        json!({}),
                        taskdeck::auth::Identity::local("bench"),
                    ))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for s in submits {
        s.await.unwrap();
    }
    engine.when_idle().await.unwrap();
    let elapsed = start.elapsed();
    let tasks_done = taskdeck::store::all_tasks(&**engine.store()).unwrap();
    assert!(tasks_done
        .iter()
        .all(|t| t.state == taskdeck::model::TaskState::Complete));
    Arc::into_inner(engine).unwrap().shutdown(Duration::ZERO).await;
    elapsed
}

fn durable_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("durable_throughput");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    let tasks = 200;
    group.throughput(Throughput::Elements((tasks * 5) as u64));
    for durability in [Durability::Immediate, Durability::Relaxed] {
        group.bench_function(BenchmarkId::from_parameter(durability.as_str()), |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += run(durability, "bench/chain5", tasks).await;
                }
                total
            })
        });
    }
    group.finish();
}

fn sequential_latency(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("sequential_latency");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(50));
    group.bench_function("chain_50", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += run(Durability::Immediate, "bench/chain50", 1).await;
            }
            total
        })
    });
    group.finish();
}

fn sled_baseline(c: &mut Criterion) {
    let mut group = c.benchmark_group("sled_baseline");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("baseline")).unwrap();
    let tree = db.open_tree("transitions").unwrap();
    let value = vec![b'x'; 300];
    let per_group = 32u64;
    let groups = 100u64;
    group.throughput(Throughput::Elements(per_group * groups));
    let mut key = 0u64;
    group.bench_function("insert_flush_per_group_32", |b| {
        b.iter(|| {
            for _ in 0..groups {
                for _ in 0..per_group {
                    key += 1;
                    tree.insert(key.to_be_bytes(), value.as_slice()).unwrap();
                }
                db.flush().unwrap();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, durable_throughput, sequential_latency, sled_baseline);
criterion_main!(benches);
