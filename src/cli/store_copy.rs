//! `taskdeck store copy --from DIR_OR_URL --to DIR_OR_URL`: an admin's; copies a store into an
//! empty one (sled → PostgreSQL, or back) and verifies it (`store::copy`). A sled directory is
//! locked for the copy; a PostgreSQL store must have no live engine, and a PostgreSQL
//! destination is marked as being filled (engines refuse to start on it) until the copy has
//! been verified.

use super::{say, Cli};
use crate::store::{Durability, PgStore, SledStore, Store};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::sync::Arc;

/// A store opened for the copy: as a store, as the PostgreSQL store it is (if it is one), and
/// the data directory's lock when it is a sled directory.
type Opened = (Arc<dyn Store>, Option<Arc<PgStore>>, Option<std::fs::File>);

/// Opens `place`: a PostgreSQL URL, or a data directory's sled store (made if `create`).
async fn open(place: &str, create: bool) -> Result<Opened> {
    if crate::store::is_postgres_url(place) {
        let target = crate::store::PgTarget::parse(place).map_err(|e| anyhow!(e))?;
        if !create && !PgStore::exists(&target).await? {
            bail!("{} holds no store (is the schema right?)", target.describe());
        }
        let store = PgStore::open_target(&target, Durability::Immediate, "store copy", false).await?;
        let engines = store.live_engines().await?;
        if !engines.is_empty() {
            bail!(
                "{} is in use by {} engine(s) ({}); stop them before copying",
                target.describe(),
                engines.len(),
                engines.join(", ")
            );
        }
        let store = Arc::new(store);
        return Ok((store.clone(), Some(store), None));
    }
    let dir = Path::new(place);
    if !create && !dir.join("store").join("db").exists() {
        bail!(
            "{} holds no store (a data directory, or a postgres:// URL, was expected)",
            dir.display()
        );
    }
    crate::fsutil::create_private_dir(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    // Held like any process that opens the directory's store (a PostgreSQL-backed engine on
    // it too): the copy never runs beside one.
    let lock = match crate::fsutil::lock_exclusive(&dir.join("taskdeck.lock")) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Err(crate::store::data_dir_locked(dir).into()),
        Err(e) => bail!("cannot lock the data directory {}: {e}", dir.display()),
    };
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir, Durability::Immediate, "store copy")?);
    Ok((store, None, Some(lock)))
}

pub(super) async fn run(cli: &Cli, data: &Path, from: &str, to: &str, json: bool) -> Result<i32> {
    let who = super::identity(cli, data)?;
    if who.role != crate::auth::Role::Admin {
        bail!("{} may not copy the store: it takes an admin", who.describe());
    }
    if from.trim() == to.trim() {
        bail!("--from and --to name the same store");
    }
    let (source, _, _source_lock) = open(from, false).await?;
    let (destination, destination_pg, _destination_lock) = open(to, true).await?;
    if let Some(pg) = &destination_pg {
        pg.begin_copy(&format!(
            "from {}, started {}",
            describe(from),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        ))
        .await?;
    }
    // Checkpoints are signed with the audit key of the data directory the source belongs to.
    let key_dir = if crate::store::is_postgres_url(from) {
        data
    } else {
        Path::new(from)
    };
    let key = crate::audit::SigningKey::load(key_dir).map_err(|e| anyhow!(e))?;
    let verifying = key.as_ref().map(crate::audit::SigningKey::verifying_key);
    let mut progress = |line: String| {
        if !json {
            // Progress is a courtesy: a closed stderr does not stop the copy.
            let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("copied {line}\n"));
        }
    };
    let report = crate::store::copy::copy(&*source, &*destination, verifying.as_ref(), &mut progress)
        .await
        .map_err(|e| match &destination_pg {
            Some(pg) => e.context(format!(
                "{} stays marked as being filled by a copy, so no engine starts on it: drop its schema (DROP SCHEMA {} CASCADE) before copying again",
                pg.describe(),
                pg.schema()
            )),
            None => e,
        })?;
    if let Some(pg) = &destination_pg {
        pg.end_copy().await?;
    }
    if json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let states: Vec<String> = report.by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
        say!(
            "copied and verified: {} tasks ({}), {} transitions, {} events, {} data subjects, {} journal entries (chain intact, head {}{})",
            report.tasks,
            if states.is_empty() { "none".to_string() } else { states.join(", ") },
            report.transitions,
            report.events,
            report.subjects,
            report.audit.entries,
            report.audit.head_hash,
            match report.audit.checkpoint {
                Some(at) => format!(", signed checkpoint at entry {at}"),
                None => String::new(),
            }
        );
        say!(
            "the keys stay in the data directory ({}: auth/, audit/, keys/): run the copy with that directory as --data, or copy those folders along",
            key_dir.display()
        );
    }
    Ok(0)
}

/// `place` for messages: a URL without its password, or the directory (absolute).
fn describe(place: &str) -> String {
    match crate::store::PgTarget::parse(place) {
        Ok(target) => target.describe(),
        Err(_) => std::fs::canonicalize(place)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| place.to_string()),
    }
}
