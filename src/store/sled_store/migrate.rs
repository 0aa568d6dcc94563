//! Converts a store of layout 1 (tree `tasks`: one whole-task snapshot per task, rewritten on
//! every commit) to layout 2 (headers, contexts, plans, step records and indexes), in place,
//! the first time a newer build opens it. Idempotent: a crash part-way converts again from the
//! untouched `tasks` tree, which goes only once everything else is written and synced.

use super::records::{key, Header, StepDef};
use super::{encode, SledStore, LAYOUT};
use crate::model::Task;
use crate::store::StoreError;

const LAYOUT_KEY: &[u8] = b"layout";

pub(super) fn to_layout_2(store: &SledStore) -> Result<(), StoreError> {
    if store.meta.get(LAYOUT_KEY)?.as_deref() == Some(LAYOUT) {
        return Ok(());
    }
    let had_tasks = store.db.tree_names().iter().any(|n| n.as_ref() == b"tasks");
    if had_tasks {
        let old = store.db.open_tree("tasks")?;
        let mut converted = 0usize;
        for item in old.iter() {
            let (k, bytes) = item?;
            let mut task: Task = match SledStore::decode(&k, &bytes) {
                Ok(task) => task,
                Err(e) => {
                    // Kept in the old tree's place in the log: say so, convert the rest.
                    tracing::error!("cannot convert an unreadable task snapshot: {e}");
                    continue;
                }
            };
            store.replay(&mut task)?;
            write_whole(store, &task)?;
            converted += 1;
        }
        store.meta.insert(LAYOUT_KEY, LAYOUT)?;
        store.sync()?;
        store.db.drop_tree("tasks")?;
        store.sync()?;
        tracing::info!("converted {converted} task(s) to store layout 2");
    } else {
        store.meta.insert(LAYOUT_KEY, LAYOUT)?;
    }
    Ok(())
}

/// Every record of a whole task: context, plan, step records, indexes, header.
fn write_whole(store: &SledStore, task: &Task) -> Result<(), StoreError> {
    store
        .contexts
        .insert(task.id.as_bytes(), encode("context", &task.context)?)?;
    let plan: Vec<StepDef> = task.steps.iter().map(StepDef::of).collect();
    store.plans.insert(task.id.as_bytes(), encode("steps", &plan)?)?;
    if let Some(origin) = &task.origin_key {
        store.origins.insert(origin.as_bytes(), task.id.as_bytes())?;
    }
    let header = Header::of(task);
    for k in key::index_keys(&header) {
        store.index.insert(k, &[])?;
    }
    store.rewrite(task)
}
