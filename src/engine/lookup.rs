//! Finding a task by what a person typed (a full id, a prefix, or the short id), showing them
//! only what they may read: a task of another team is "not found", never "ambiguous with …",
//! so ids and states of others' work do not leak through error messages.

use super::command::EngineError;
use crate::auth::{Coordinator, Identity};
use crate::model::Task;
use crate::store::{Store, StoreError};

/// The longest text looked up as a task id.
const MAX_LOOKUP_BYTES: usize = 64;

/// How many readable matches a lookup collects before it stops (enough to say "ambiguous").
const CANDIDATES: usize = 6;

/// The one task `text` names among those `who` may read.
///
/// Errors: `Denied` when `who`'s token has expired; `NoSuchTask` when nothing readable
/// matches (including an empty `text`); `Ambiguous` listing the readable matches.
pub async fn find_readable(
    store: &dyn Store,
    coordinator: &Coordinator,
    who: &Identity,
    text: &str,
) -> Result<Task, EngineError> {
    coordinator.authenticate(who)?;
    let text = text.trim();
    // No id is this long (a full id is 36 characters); don't scan for it or echo it whole.
    if text.len() > MAX_LOOKUP_BYTES {
        return Err(StoreError::NoSuchTask(crate::model::clip(text, MAX_LOOKUP_BYTES)).into());
    }
    let mut found: Vec<Task> = store
        .find_tasks(text, &|t| coordinator.may_read(who, t), CANDIDATES)
        .await?;
    match found.len() {
        0 => Err(StoreError::NoSuchTask(text.to_string()).into()),
        1 => Ok(found.remove(0)),
        n => {
            let mut ids: Vec<&str> = found.iter().take(CANDIDATES - 1).map(|t| t.id.as_str()).collect();
            if n > ids.len() {
                ids.push("and more");
            }
            Err(StoreError::Ambiguous {
                prefix: text.to_string(),
                matches: ids.join(", "),
            }
            .into())
        }
    }
}
