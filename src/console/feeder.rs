//! Feeds the view model through the client: the first update is the newest page of tasks the
//! operator may read (and every task waiting on a person, for the inbox), older pages when the
//! operator scrolls past the last; then it forwards events and re-reads the tasks they touched
//! (coalesced, at most every 50 ms), off the render path. The client applies the read authorization (the engine's query
//! side), so the feeder shows what it is given. A remote client's connection state becomes a
//! banner.

use super::app::Update;
use crate::client::{Client, TaskQuery};
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How many task reads one tick runs at once.
const READS_AT_ONCE: usize = 16;

/// How often the engine's ten-minute summary is read (`:metrics`, the header's marker).
const SUMMARY_EVERY: Duration = Duration::from_secs(2);

/// Tasks per page: the first load, and each older page.
pub const PAGE: usize = 1000;

pub async fn feed(
    client: Arc<dyn Client>,
    tx: mpsc::UnboundedSender<Update>,
    mut focus: watch::Receiver<Option<String>>,
    mut older: mpsc::UnboundedReceiver<()>,
) {
    // Subscribe before the first load, so nothing between the two is missed.
    let mut events = match client.events(None).await {
        Ok(events) => events,
        Err(e) => {
            let _ = tx.send(Update::Notice(format!("cannot follow events: {e}")));
            return;
        }
    };
    let mut cursor = page(&*client, &tx, None).await;
    // The inbox lists every request, however old its task.
    if let Ok(waiting) = client.approvals().await {
        let mut ids: Vec<String> = waiting.into_iter().map(|w| w.task).collect();
        ids.dedup();
        let mut tasks = Vec::new();
        for id in ids {
            if let Ok(detail) = client.task(&id).await {
                tasks.push(detail.task);
            }
        }
        let _ = tx.send(Update::Tasks(tasks));
    }
    let mut link = client.link();
    let transitions = |id: String| {
        let (client, tx) = (client.clone(), tx.clone());
        async move {
            if let Ok(detail) = client.task(&id).await {
                let _ = tx.send(Update::Transitions(id, detail.transitions));
            }
        }
    };
    let mut dirty: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut summary_wait = SUMMARY_EVERY;
    let summary_due = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(summary_due);
    loop {
        tokio::select! {
            () = &mut summary_due => {
                match client.metrics_summary().await {
                    Ok(summary) => {
                        summary_wait = SUMMARY_EVERY;
                        let _ = tx.send(Update::Summary(Box::new(summary)));
                    }
                    Err(e) => {
                        // An older server without summaries, a refusal or a lost link: the
                        // metrics view says why; ask less often until it answers.
                        summary_wait = (summary_wait * 2).min(Duration::from_secs(60));
                        let _ = tx.send(Update::SummaryFailed(e.to_string()));
                    }
                }
                summary_due.as_mut().reset(tokio::time::Instant::now() + summary_wait);
            },
            event = events.next() => match event {
                Some(Ok(e)) => {
                    if !e.custom {
                        dirty.insert(e.task_id.clone());
                    }
                    if tx.send(Update::Event(Arc::new(e))).is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(Update::Notice(format!("events stopped: {e}")));
                    return;
                }
                None => return,
            },
            _ = tick.tick(), if !dirty.is_empty() => {
                let focused = focus.borrow().clone();
                let ids: Vec<String> = dirty.drain().collect();
                let reads = futures::stream::iter(ids)
                    .map(|id| {
                        let client = client.clone();
                        async move { client.task(&id).await.ok() }
                    })
                    .buffer_unordered(READS_AT_ONCE)
                    .collect::<Vec<_>>()
                    .await;
                let mut batch = Vec::with_capacity(reads.len());
                for detail in reads.into_iter().flatten() {
                    if focused.as_deref() == Some(detail.task.id.as_str()) {
                        let _ = tx.send(Update::Transitions(detail.task.id.clone(), detail.transitions));
                    }
                    batch.push(detail.task);
                }
                if tx.send(Update::Tasks(batch)).is_err() {
                    return;
                }
            }
            asked = older.recv() => match asked {
                Some(()) => {
                    if let Some(c) = cursor.take() {
                        cursor = page(&*client, &tx, Some(c)).await;
                    } else {
                        let _ = tx.send(Update::Paged { more: false });
                    }
                }
                None => return,
            },
            changed = focus.changed() => {
                if changed.is_err() {
                    return;
                }
                let focused = focus.borrow().clone();
                if let Some(id) = focused {
                    transitions(id).await;
                }
            }
            changed = async {
                match link.as_mut() {
                    Some(l) => l.changed().await.map(|()| l.borrow().clone()),
                    None => std::future::pending().await,
                }
            } => match changed {
                Ok(state) => {
                    let _ = tx.send(Update::Link(state));
                }
                Err(_) => link = None,
            },
        }
    }
}

/// Loads one page of tasks (newest first, after `cursor`); returns the cursor of the next.
async fn page(
    client: &dyn Client,
    tx: &mpsc::UnboundedSender<Update>,
    cursor: Option<String>,
) -> Option<String> {
    let query = TaskQuery {
        limit: Some(PAGE),
        cursor,
        ..TaskQuery::default()
    };
    match client.tasks(&query).await {
        Ok(page) => {
            let more = page.next_cursor.is_some();
            let _ = tx.send(Update::Tasks(page.tasks));
            let _ = tx.send(Update::Paged { more });
            page.next_cursor
        }
        Err(e) => {
            let _ = tx.send(Update::Notice(format!("cannot read tasks: {e}")));
            let _ = tx.send(Update::Paged { more: false });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Identity, Role};
    use crate::engine::{Engine, EngineConfig, SubmitRequest};
    use crate::handlers::Registry;
    use crate::store::Store;
    use crate::store::{Durability, SledStore};
    use crate::workflow::{Catalog, Source};
    use serde_json::json;

    #[tokio::test(start_paused = true)]
    async fn operators_only_receive_what_they_may_read() {
        let yaml = |ns: &str| Source::Inline {
            file: format!("{ns}.yaml"),
            text: format!(
                "namespace: {ns}\nname: wf\nversion: 1.0.0\nsteps:\n  - {{ name: a, handler: simulate }}\n"
            ),
        };
        let registry = Registry::builtin();
        let catalog =
            Arc::new(Catalog::load(&[yaml("ours"), yaml("theirs")], &|h| registry.contains(h)).unwrap());
        let store: Arc<dyn Store> = Arc::new(SledStore::temporary(Durability::Immediate).unwrap());
        let engine = Engine::start(EngineConfig::default(), store.clone(), catalog.clone(), registry)
            .await
            .unwrap();
        let admin = Identity::local("root");
        let early = engine
            .submit(SubmitRequest::new("theirs/wf", json!({}), admin.clone()))
            .await
            .unwrap();
        engine.when_idle().await.unwrap();

        let (tx, mut rx) = mpsc::unbounded_channel();
        let (_focus_tx, focus_rx) = watch::channel(None);
        let (_older_tx, older_rx) = mpsc::unbounded_channel();
        let engine = Arc::new(engine);
        let client = Arc::new(crate::client::Local::new(
            engine.clone(),
            Identity::new("vic", "ours", Role::Viewer),
        ));
        let feeder = tokio::spawn(feed(client, tx, focus_rx, older_rx));
        tokio::task::yield_now().await;
        let ours = engine
            .submit(SubmitRequest::new("ours/wf", json!({}), admin.clone()))
            .await
            .unwrap();
        let theirs = engine
            .submit(SubmitRequest::new("theirs/wf", json!({}), admin))
            .await
            .unwrap();
        engine.when_idle().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        feeder.abort();

        let mut seen = HashSet::new();
        while let Ok(update) = rx.try_recv() {
            match update {
                Update::Tasks(tasks) => seen.extend(tasks.into_iter().map(|t| t.id)),
                Update::Event(e) => {
                    seen.insert(e.task_id.clone());
                }
                _ => {}
            }
        }
        assert!(seen.contains(&ours.id));
        assert!(
            !seen.contains(&theirs.id),
            "no snapshot or event of another team's task"
        );
        assert!(!seen.contains(&early.id), "not in the first load either");
    }
}
