//! Walking the journal: the first entry that is not what was written, and why.

use super::{AuditEntry, Checkpoint, GENESIS};
use serde::Serialize;

/// One stored entry as read, in storage order: the entry, or the key of a block that cannot
/// be read and why.
pub type Stored = Result<AuditEntry, (u64, String)>;

/// What is wrong with the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// An entry's content no longer matches its hash, or its successor recorded another hash.
    Edited,
    /// Entries are missing from the middle.
    Deleted,
    /// An entry is stored at another entry's place.
    Reordered,
    /// The journal is shorter than its latest signed checkpoint, or its tail was replaced.
    Truncated,
    /// The checkpoint's signature is not the signing key's (or there is no key to check it).
    BadSignature,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Finding::Edited => "edited",
            Finding::Deleted => "deleted",
            Finding::Reordered => "reordered",
            Finding::Truncated => "truncated",
            Finding::BadSignature => "bad signature",
        })
    }
}

/// The first bad entry (its sequence number, or the place it should be at) and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Broken {
    pub seq: u64,
    pub finding: Finding,
    pub why: String,
}

/// An intact journal: how many entries, its head and the checkpoint that vouches for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verified {
    pub entries: u64,
    pub head_hash: String,
    /// The latest signed checkpoint's sequence number (entries after it are chained but not
    /// yet signed), or `None` when there is none yet.
    pub checkpoint: Option<u64>,
}

/// Checks `entries` — in storage order, each an entry or an unreadable block — against the
/// chain and against `checkpoint`, whose signature must be `key`'s.
pub fn verify(
    entries: impl IntoIterator<Item = Stored>,
    checkpoint: Option<&Checkpoint>,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<Verified, Broken> {
    let entries: Vec<Stored> = entries.into_iter().collect();
    let mut walk = Walk::new(checkpoint);
    for (i, entry) in entries.iter().enumerate() {
        walk.step(entry, entries.get(i + 1..).unwrap_or(&[]))?;
    }
    walk.finish(key)
}

/// Every entry of `store`'s journal, read a page at a time, checked as `verify` does.
///
/// Errors: the store cannot be read (the outer `Err`).
pub async fn verify_store(
    store: &dyn crate::store::Store,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<Result<Verified, Broken>, crate::store::StoreError> {
    let checkpoint = store.audit_checkpoint().await?;
    let mut walk = Walk::new(checkpoint.as_ref());
    loop {
        // Every page starts after the last entry checked: up to then the chain held, so the
        // entries are where their numbers say.
        let page = store.audit_after(walk.last, 10_000).await?;
        if page.is_empty() {
            break;
        }
        for (i, entry) in page.iter().enumerate() {
            if let Err(broken) = walk.step(entry, page.get(i + 1..).unwrap_or(&[])) {
                return Ok(Err(broken));
            }
        }
    }
    Ok(walk.finish(key))
}

/// The walk along the journal: the last entry seen and what the checkpoint vouches for.
struct Walk<'a> {
    checkpoint: Option<&'a Checkpoint>,
    last: u64,
    last_hash: String,
    at_checkpoint: Option<String>,
}

impl<'a> Walk<'a> {
    fn new(checkpoint: Option<&'a Checkpoint>) -> Self {
        Walk {
            checkpoint,
            last: 0,
            last_hash: GENESIS.to_string(),
            at_checkpoint: None,
        }
    }

    /// One entry, with those stored after it (to tell an entry moved from one deleted).
    fn step(&mut self, entry: &Stored, ahead: &[Stored]) -> Result<(), Broken> {
        let broken = |seq, finding, why: String| Err(Broken { seq, finding, why });
        let last = self.last;
        // A tampered entry may claim any number: never overflow on it.
        let next = last.saturating_add(1);
        let entry = match entry {
            Ok(e) => e,
            Err((key, why)) => {
                return broken(
                    next,
                    Finding::Edited,
                    format!("the entries stored at {key} are unreadable: {why}"),
                )
            }
        };
        let place = entry.seq;
        if place <= last {
            return broken(
                place,
                Finding::Reordered,
                format!("entry {place} is stored after entry {last}"),
            );
        }
        if place > next {
            if ahead.iter().any(|e| e.as_ref().is_ok_and(|e| e.seq == next)) {
                return broken(
                    next,
                    Finding::Reordered,
                    format!("entry {next} is stored after entry {place}"),
                );
            }
            let missing = if place == next.saturating_add(1) {
                format!("entry {next} is missing")
            } else {
                format!("entries {next} to {} are missing", place - 1)
            };
            return broken(next, Finding::Deleted, missing);
        }
        if !entry.is_sealed() {
            return broken(
                place,
                Finding::Edited,
                format!("entry {place}'s content does not match its hash"),
            );
        }
        if entry.prev_hash != self.last_hash {
            // Its own hash holds, so the one before was rewritten and resealed (or this one
            // relinked): the chain breaks between the two.
            let (seq, why) = if last == 0 {
                (place, "the first entry does not start the chain".to_string())
            } else {
                (
                    last,
                    format!("entry {last} was rewritten: entry {place} recorded another hash for it"),
                )
            };
            return broken(seq, Finding::Edited, why);
        }
        if self.checkpoint.is_some_and(|c| c.seq == place) {
            self.at_checkpoint = Some(entry.hash.clone());
        }
        self.last = place;
        self.last_hash = entry.hash.clone();
        Ok(())
    }

    fn finish(self, key: Option<&ed25519_dalek::VerifyingKey>) -> Result<Verified, Broken> {
        let broken = |seq, finding, why: String| Err(Broken { seq, finding, why });
        let last = self.last;
        // The key is made with the first checkpoint: a key without one means it was removed.
        if self.checkpoint.is_none() && key.is_some() && last > 0 {
            return broken(
                last,
                Finding::Truncated,
                "the journal has been signed (its audit key exists) but no checkpoint is stored: it was removed, and with it what would show a cut or rewritten tail".into(),
            );
        }
        if let Some(c) = self.checkpoint {
            match key {
                Some(key) if c.is_signed_by(key) => {}
                Some(_) => {
                    return broken(
                        c.seq,
                        Finding::BadSignature,
                        format!(
                            "the checkpoint at entry {} is not signed by this data directory's audit key",
                            c.seq
                        ),
                    )
                }
                None => {
                    return broken(
                        c.seq,
                        Finding::BadSignature,
                        "there is a checkpoint but no audit signing key to check it with".into(),
                    )
                }
            }
            if last < c.seq {
                return broken(
                    last.saturating_add(1),
                    Finding::Truncated,
                    format!(
                        "the journal ends at entry {last}, but a checkpoint signed at {} vouches for {} entries",
                        crate::model::format_timestamp(c.at),
                        c.seq
                    ),
                );
            }
            if self.at_checkpoint.as_deref() != Some(c.hash.as_str()) {
                return broken(
                    c.seq,
                    Finding::Truncated,
                    format!(
                        "entry {} is not the one the checkpoint signed: the tail was replaced",
                        c.seq
                    ),
                );
            }
        }
        Ok(Verified {
            entries: last,
            head_hash: self.last_hash,
            checkpoint: self.checkpoint.map(|c| c.seq),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditRecord, SigningKey};

    fn journal(n: u64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map_or(GENESIS.to_string(), |e| e.hash.clone());
            let record = AuditRecord {
                at: seq as i64 * 1_000,
                actor: if seq % 2 == 0 {
                    "ann".into()
                } else {
                    "engine".into()
                },
                action: "task.transition".into(),
                resource: format!("task/t{seq}"),
                namespace: Some("shop".into()),
                workflow: Some("checkout".into()),
                version: Some("1.0.0".into()),
                classification: "internal".into(),
                correlation_id: None,
                outcome: "success".into(),
                detail: "pending → in_progress".into(),
                compliance_tags: vec![],
                transition: Some(seq),
            };
            out.push(AuditEntry::chain(seq, record, &prev));
        }
        out
    }

    fn stored(entries: &[AuditEntry]) -> Vec<Stored> {
        entries.iter().map(|e| Ok(e.clone())).collect()
    }

    fn check(entries: Vec<Stored>, cp: Option<&Checkpoint>, key: &SigningKey) -> Result<Verified, Broken> {
        verify(entries, cp, Some(&key.verifying_key()))
    }

    #[test]
    fn an_untouched_journal_verifies_and_every_kind_of_tampering_is_named() {
        let key = SigningKey::from_seed([3; 32]);
        let j = journal(10);
        let cp = key.sign(10, &j[9].hash, 99);
        let ok = check(stored(&j), Some(&cp), &key).unwrap();
        assert_eq!((ok.entries, ok.checkpoint), (10, Some(10)));
        assert_eq!(check(stored(&[]), None, &key).unwrap().entries, 0);

        // Edited: content changed, hash left.
        let mut edited = j.clone();
        edited[4].record.actor = "mallory".into();
        let b = check(stored(&edited), Some(&cp), &key).unwrap_err();
        assert_eq!((b.seq, b.finding), (5, Finding::Edited));
        // Edited and resealed: the next entry's link breaks, and names the rewritten one.
        let mut resealed = j.clone();
        resealed[4].record.actor = "mallory".into();
        resealed[4] = AuditEntry::chain(5, resealed[4].record.clone(), &j[3].hash);
        let b = check(stored(&resealed), Some(&cp), &key).unwrap_err();
        assert_eq!((b.seq, b.finding), (5, Finding::Edited), "{b:?}");
        // Unreadable.
        let mut garbled = stored(&j);
        garbled[2] = Err((3, "expected value at line 1".into()));
        assert_eq!(
            check(garbled, Some(&cp), &key).unwrap_err().finding,
            Finding::Edited
        );

        // Deleted from the middle.
        let mut deleted = stored(&j);
        let _ = deleted.remove(6);
        let b = check(deleted, Some(&cp), &key).unwrap_err();
        assert_eq!((b.seq, b.finding), (7, Finding::Deleted));

        // Reordered: two entries swap places.
        let mut swapped = stored(&j);
        swapped.swap(3, 4);
        let b = check(swapped, Some(&cp), &key).unwrap_err();
        assert_eq!((b.seq, b.finding), (4, Finding::Reordered));

        // Truncated: the last three cut; and a tail cut and rewritten consistently.
        let b = check(stored(&j[..7]), Some(&cp), &key).unwrap_err();
        assert_eq!((b.seq, b.finding), (8, Finding::Truncated));
        let mut forged = j[..7].to_vec();
        for seq in 8..=10 {
            let prev = forged.last().unwrap().hash.clone();
            let mut record = j[seq as usize - 1].record.clone();
            record.detail = "rewritten".into();
            forged.push(AuditEntry::chain(seq, record, &prev));
        }
        let b = check(stored(&forged), Some(&cp), &key).unwrap_err();
        assert_eq!((b.seq, b.finding), (10, Finding::Truncated));
        // Without the checkpoint and its key, a cut tail is a shorter but intact journal: why
        // checkpoints exist; with the key, a missing checkpoint is itself the finding.
        assert!(verify(stored(&j[..7]), None, None).is_ok());
        assert_eq!(
            check(stored(&j[..7]), None, &key).unwrap_err().finding,
            Finding::Truncated
        );

        // An entry claiming the last number there is: found, no overflow.
        let huge = AuditEntry::chain(u64::MAX, j[0].record.clone(), &j[0].hash);
        let b = check(stored(&[j[0].clone(), huge.clone(), huge]), None, &key).unwrap_err();
        assert!(
            matches!(b.finding, Finding::Deleted | Finding::Reordered),
            "{b:?}"
        );

        // Bad signature: a checkpoint forged by another key, or altered.
        let forged_cp = SigningKey::from_seed([4; 32]).sign(7, &j[6].hash, 99);
        let b = check(stored(&j[..7]), Some(&forged_cp), &key).unwrap_err();
        assert_eq!(b.finding, Finding::BadSignature);
        let moved = Checkpoint {
            seq: 7,
            hash: j[6].hash.clone(),
            ..cp.clone()
        };
        assert_eq!(
            check(stored(&j[..7]), Some(&moved), &key).unwrap_err().finding,
            Finding::BadSignature
        );
        assert_eq!(
            verify(stored(&j), Some(&cp), None).unwrap_err().finding,
            Finding::BadSignature
        );
    }
}
