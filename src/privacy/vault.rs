//! The vault: the master key, the data subjects' keys (cached), and the operations on stored
//! records — sealing a new task, opening stored tasks for the engine, revealing records for a
//! reader, erasing a subject.

use super::envelope::{self, Token};
use super::master::{KeySource, MasterKey};
use super::seal::{self, Sealer};
use super::walk::{self, Pass};
use super::{PrivacyError, SubjectRecord, ERASED, REDACTED};
use crate::model::{Event, Task, Timestamp, Transition};
use crate::store::Store;
use crate::workflow::classification::Field;
use aes_gcm::Aes256Gcm;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// How a reader sees sealed values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Decrypted (an identity with `pii:read`, the engine itself).
    Reveal,
    /// `[REDACTED]`.
    Redact,
}

#[derive(Clone)]
enum Key {
    Live(Arc<Aes256Gcm>),
    Erased,
    /// No record, or one the master key does not open.
    Unknown,
}

/// The subject name under which a store's master-key check value is wrapped.
const KEY_CHECK_SUBJECT: &str = "taskdeck master key check";

pub struct Vault {
    master: MasterKey,
    source: KeySource,
    store: Arc<dyn Store>,
    keys: Mutex<HashMap<String, Key>>,
    /// Subject ids from a seed (`seed_subject_ids`), or `None`: from the OS.
    ids: Mutex<Option<rand::rngs::SmallRng>>,
}

impl Vault {
    /// Loads the master key for `store` (creating it in the data directory when the store
    /// holds no subject yet).
    ///
    /// Errors: `Missing` when the store has subjects and the key file is gone; `Mismatch`
    /// when the key does not open them; `Key` for an unreadable or malformed key file.
    pub async fn open(source: KeySource, store: Arc<dyn Store>) -> Result<Vault, PrivacyError> {
        let first = store.first_subject().await?;
        let check = store.key_check(None).await?;
        let master = match MasterKey::load(&source, first.is_none() && check.is_none())? {
            Some(m) => m,
            None => {
                return Err(PrivacyError::Missing {
                    path: source.path().display().to_string(),
                })
            }
        };
        if let Some(record) = first {
            if let Some(wrapped) = &record.wrapped_key {
                if envelope::unwrap_data_key(&master.wrap, &record.id, wrapped).is_none() {
                    return Err(PrivacyError::Mismatch {
                        path: source.path().display().to_string(),
                    });
                }
            }
        }
        // The store remembers which master key seals it (a key wrapped under it), so engines
        // that share a store cannot seal under two keys even before any subject exists.
        let check = match check {
            Some(check) => check,
            None => {
                let proposed = envelope::new_data_key(&master.wrap, KEY_CHECK_SUBJECT)
                    .map(|(_, wrapped)| wrapped)
                    .unwrap_or_default();
                store.key_check(Some(&proposed)).await?.unwrap_or(proposed)
            }
        };
        if envelope::unwrap_data_key(&master.wrap, KEY_CHECK_SUBJECT, &check).is_none() {
            return Err(PrivacyError::Mismatch {
                path: source.path().display().to_string(),
            });
        }
        Ok(Vault {
            master,
            source,
            store,
            keys: Mutex::new(HashMap::new()),
            ids: Mutex::new(None),
        })
    }

    /// Draws new subject ids from `seed` instead of the OS (with the engine's id seed: a run
    /// that names everything the same way every time, `taskdeck screencast`).
    pub fn seed_subject_ids(&self, seed: u64) {
        use rand::SeedableRng;
        if let Ok(mut ids) = self.ids.lock() {
            *ids = Some(rand::rngs::SmallRng::seed_from_u64(seed));
        }
    }

    fn new_subject_id(&self) -> String {
        use rand::Rng;
        match self
            .ids
            .lock()
            .ok()
            .as_mut()
            .and_then(|ids| ids.as_mut().map(|rng| rng.random::<[u8; 16]>()))
        {
            Some(bytes) => crate::audit::entry::hex(&bytes),
            None => envelope::new_subject_id(),
        }
    }

    /// Where the master key is.
    pub fn key_path(&self) -> std::path::PathBuf {
        self.source.path()
    }

    /// Whether this process made the master key (a new data directory).
    pub fn created_key(&self) -> bool {
        self.master.created
    }

    /// The keyed hash a subject is found by from `alias` (an email or an id).
    pub fn alias_hash(&self, alias: &str) -> String {
        envelope::alias_hash(&self.master.lookup, alias)
    }

    fn cached(&self, subject: &str) -> Option<Key> {
        self.keys.lock().ok()?.get(subject).cloned()
    }

    fn remember(&self, subject: &str, key: Key) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.insert(subject.to_string(), key);
        }
    }

    async fn key(&self, subject: &str) -> Result<Key, PrivacyError> {
        if let Some(k) = self.cached(subject) {
            return Ok(k);
        }
        let key = match self.store.subject(subject).await? {
            None => Key::Unknown,
            Some(r) => match r.wrapped_key {
                None => Key::Erased,
                Some(w) => match envelope::unwrap_data_key(&self.master.wrap, subject, &w) {
                    Some(c) => Key::Live(Arc::new(c)),
                    None => Key::Unknown,
                },
            },
        };
        self.remember(subject, key.clone());
        Ok(key)
    }

    /// The sealer for a new task whose workflow marks `fields`, or `None` when its context
    /// holds no sealed field. Finds the task's subject by the values of its `x-data-subject`
    /// fields (creating the subject and its key if none matches; the task itself when it has
    /// none), and links the task to it.
    pub async fn sealer(
        &self,
        fields: &[Field],
        context: &Value,
        task_id: &str,
        now: Timestamp,
    ) -> Result<Option<Arc<Sealer>>, PrivacyError> {
        let values = seal::personal_values(fields, context);
        if values.is_empty() {
            return Ok(None);
        }
        let mut aliases: Vec<String> = Vec::new();
        for field in fields.iter().filter(|f| f.subject) {
            let mut copy = context.clone();
            let mut found = Vec::new();
            seal::at_path(&mut copy, &field.path, &mut found);
            for v in found {
                match v {
                    Value::String(s) if !s.trim().is_empty() => aliases.push(self.alias_hash(s)),
                    Value::Number(n) => aliases.push(self.alias_hash(&n.to_string())),
                    _ => {}
                }
            }
        }
        if aliases.is_empty() {
            aliases.push(self.alias_hash(&format!("task:{task_id}")));
        }
        aliases.sort();
        aliases.dedup();
        let mut subject = None;
        for a in &aliases {
            if let Some(id) = self.store.subject_by_alias(a).await? {
                subject = Some(id);
                break;
            }
        }
        let (id, cipher) = match subject {
            Some(id) => match self.key(&id).await? {
                Key::Live(c) => (id, c),
                // The person was erased: what arrives now is new data about them, under a new
                // subject (the old aliases move to it).
                Key::Erased | Key::Unknown => self.new_subject(now).await?,
            },
            None => self.new_subject(now).await?,
        };
        let record = self
            .store
            .subject(&id)
            .await?
            .ok_or_else(|| PrivacyError::Seal(format!("subject {id} vanished")))?;
        self.store
            .put_subject(&record, &aliases, &[task_id.to_string()])
            .await?;
        let paths = fields
            .iter()
            .filter(|f| seal::sealed(f))
            .map(|f| f.path.clone())
            .collect();
        Ok(Some(Arc::new(Sealer::new(id, cipher, paths, &values))))
    }

    async fn new_subject(&self, now: Timestamp) -> Result<(String, Arc<Aes256Gcm>), PrivacyError> {
        let id = self.new_subject_id();
        let (cipher, wrapped) = envelope::new_data_key(&self.master.wrap, &id)
            .ok_or_else(|| PrivacyError::Seal("cannot make a data key".into()))?;
        let record = SubjectRecord {
            id: id.clone(),
            created_at: now,
            wrapped_key: Some(wrapped),
            erased_at: None,
            erased_by: None,
        };
        self.store.put_subject(&record, &[], &[]).await?;
        let cipher = Arc::new(cipher);
        self.remember(&id, Key::Live(cipher.clone()));
        Ok((id, cipher))
    }

    async fn keys_for(&self, subjects: BTreeSet<String>) -> Result<HashMap<String, Key>, PrivacyError> {
        let mut keys = HashMap::new();
        for s in subjects {
            let k = self.key(&s).await?;
            keys.insert(s, k);
        }
        Ok(keys)
    }

    /// A stored task opened for the engine (everything decrypted; erased values read
    /// `[ERASED]`), with the sealer its later records need (`None`: nothing sealed in it).
    pub async fn open_task(&self, task: &mut Task) -> Result<Option<Arc<Sealer>>, PrivacyError> {
        let mut subjects = Collect::default();
        subjects.value(&mut task.context);
        let context_subjects = subjects.0.clone();
        walk::task(task, &mut subjects);
        let keys = self.keys_for(subjects.0).await?;
        let mut opener = Opener {
            keys: &keys,
            access: Access::Reveal,
            found: Vec::new(),
        };
        // The context first: the values it held sealed are what later records must seal.
        opener.value(&mut task.context);
        let found = std::mem::take(&mut opener.found);
        walk::task(task, &mut opener);
        let Some(subject) = context_subjects.into_iter().next() else {
            return Ok(None);
        };
        let Some(Key::Live(cipher)) = keys.get(&subject).cloned() else {
            return Ok(None);
        };
        // No whole-field paths: a context is written once, at creation, never again.
        Ok(Some(Arc::new(Sealer::new(subject, cipher, Vec::new(), &found))))
    }

    async fn reveal_with(
        &self,
        access: Access,
        f: &mut (dyn FnMut(&mut dyn Pass) + Send),
    ) -> Result<(), PrivacyError> {
        let keys = if access == Access::Reveal {
            let mut subjects = Collect::default();
            f(&mut subjects);
            self.keys_for(subjects.0).await?
        } else {
            HashMap::new()
        };
        let mut opener = Opener {
            keys: &keys,
            access,
            found: Vec::new(),
        };
        f(&mut opener);
        Ok(())
    }

    /// `task` as a reader with `access` sees it.
    pub async fn reveal_task(&self, task: &mut Task, access: Access) -> Result<(), PrivacyError> {
        self.reveal_with(access, &mut |p| walk::task(task, p)).await
    }

    pub async fn reveal_transitions(
        &self,
        log: &mut [Transition],
        access: Access,
    ) -> Result<(), PrivacyError> {
        self.reveal_with(access, &mut |p| {
            for t in log.iter_mut() {
                walk::transition(t, p)
            }
        })
        .await
    }

    pub async fn reveal_event(&self, event: &mut Event, access: Access) -> Result<(), PrivacyError> {
        self.reveal_with(access, &mut |p| walk::event(event, p)).await
    }

    /// Any JSON (an approval request, an audit record) as a reader with `access` sees it.
    pub async fn reveal_value(&self, value: &mut Value, access: Access) -> Result<(), PrivacyError> {
        self.reveal_with(access, &mut |p| p.value(value)).await
    }

    pub async fn reveal_text(&self, text: &mut String, access: Access) -> Result<(), PrivacyError> {
        self.reveal_with(access, &mut |p| p.text(text)).await
    }

    /// The subject `alias` (an email or id, as the person's records hold it, or the subject
    /// id itself) names, if any.
    pub async fn find_subject(&self, alias: &str) -> Result<Option<SubjectRecord>, PrivacyError> {
        let alias = alias.trim();
        if let Some(r) = self.store.subject(alias).await? {
            return Ok(Some(r));
        }
        match self.store.subject_by_alias(&self.alias_hash(alias)).await? {
            Some(id) => Ok(self.store.subject(&id).await?),
            None => Ok(None),
        }
    }

    /// Crypto-shreds `subject`'s data key: every value sealed for them reads `[ERASED]` from
    /// now on, wherever it is stored. The record stays as a tombstone (when, by whom).
    pub async fn erase(&self, subject: &str, by: &str, at: Timestamp) -> Result<SubjectRecord, PrivacyError> {
        let mut record = self
            .store
            .subject(subject)
            .await?
            .ok_or_else(|| PrivacyError::Seal(format!("no data subject {subject}")))?;
        record.wrapped_key = None;
        record.erased_at.get_or_insert(at);
        record.erased_by.get_or_insert_with(|| by.to_string());
        self.store.put_subject(&record, &[], &[]).await?;
        self.store.flush().await?;
        self.remember(subject, Key::Erased);
        Ok(record)
    }
}

/// Collects the subjects of the tokens a record holds.
#[derive(Default)]
struct Collect(BTreeSet<String>);

impl Collect {
    fn scan(&mut self, text: &str) {
        if envelope::has_token(text) {
            for t in envelope::tokens(text) {
                self.0.insert(t.subject.to_string());
            }
        }
    }
}

impl Pass for Collect {
    fn value(&mut self, value: &mut Value) {
        walk::scalars(value, None, &mut |_, v| {
            if let Value::String(s) = v {
                self.scan(s);
            }
        });
    }
    fn text(&mut self, text: &mut String) {
        self.scan(text);
    }
    fn amount(&mut self, _: &mut Option<i64>, sealed: &mut Option<String>) {
        if let Some(s) = sealed {
            self.scan(s);
        }
    }
}

/// Replaces tokens by what the reader may see; with `Reveal`, records the values opened
/// (by the field name they were under) for a sealer.
struct Opener<'k> {
    keys: &'k HashMap<String, Key>,
    access: Access,
    found: Vec<(String, Value)>,
}

impl Opener<'_> {
    fn open(&self, token: &Token<'_>) -> Result<Value, &'static str> {
        if self.access == Access::Redact {
            return Err(REDACTED);
        }
        match self.keys.get(token.subject) {
            Some(Key::Live(c)) => token.open(c).ok_or(REDACTED),
            Some(Key::Erased) => Err(ERASED),
            _ => Err(REDACTED),
        }
    }

    /// `text` with its tokens replaced (as text), or `None` when it holds none.
    fn substitute(&mut self, text: &str, key: Option<&str>) -> Option<String> {
        if !envelope::has_token(text) {
            return None;
        }
        let tokens = envelope::tokens(text);
        if tokens.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for t in &tokens {
            out.push_str(&text[last..t.start]);
            match self.open(t) {
                Ok(Value::String(s)) => {
                    self.found
                        .push((key.unwrap_or_default().to_string(), Value::String(s.clone())));
                    out.push_str(&s);
                }
                Ok(v) => out.push_str(&v.to_string()),
                Err(shown) => out.push_str(shown),
            }
            last = t.end;
        }
        out.push_str(&text[last..]);
        Some(out)
    }
}

impl Pass for Opener<'_> {
    fn value(&mut self, value: &mut Value) {
        walk::scalars(value, None, &mut |key, v| {
            let Value::String(s) = v else { return };
            if !envelope::has_token(s) {
                return;
            }
            let tokens = envelope::tokens(s);
            if let [only] = tokens.as_slice() {
                if only.start == 0 && only.end == s.len() {
                    let opened = self.open(only);
                    *v = match opened {
                        Ok(value) => {
                            self.found
                                .push((key.unwrap_or_default().to_string(), value.clone()));
                            value
                        }
                        Err(shown) => Value::String(shown.to_string()),
                    };
                    return;
                }
            }
            if let Some(text) = self.substitute(s, key) {
                *s = text;
            }
        });
    }

    fn text(&mut self, text: &mut String) {
        if let Some(t) = self.substitute(text, None) {
            *text = t;
        }
    }

    fn amount(&mut self, amount: &mut Option<i64>, sealed: &mut Option<String>) {
        let Some(s) = sealed.as_deref() else { return };
        let tokens = envelope::tokens(s);
        let [only] = tokens.as_slice() else { return };
        match self.open(only) {
            Ok(v) => {
                *amount = v.as_i64();
                *sealed = None;
            }
            Err(shown) => *sealed = Some(shown.to_string()),
        }
    }
}
