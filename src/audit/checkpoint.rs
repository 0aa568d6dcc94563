//! Signed checkpoints of the journal's head: an Ed25519 signature over the head's sequence
//! number and hash, with a key kept in its own file (`DATA/audit/signing.key`, 0600), apart
//! from the token key, so a holder of API tokens cannot forge one. A verifier that finds the
//! journal shorter than its latest checkpoint, or a different entry at the checkpoint's
//! sequence number, knows the tail was cut.

use ed25519_dalek::{Signature, Signer, Verifier};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A signed head of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checkpoint {
    /// The last entry's sequence number and hash when it was signed.
    pub seq: u64,
    pub hash: String,
    /// Milliseconds since the Unix epoch.
    pub at: crate::model::Timestamp,
    /// Hex of the signer's Ed25519 public key.
    pub public_key: String,
    /// Hex of the Ed25519 signature over `message()`.
    pub signature: String,
}

impl Checkpoint {
    fn message(seq: u64, hash: &str, at: crate::model::Timestamp) -> Vec<u8> {
        format!("taskdeck audit checkpoint\n{seq}\n{hash}\n{at}").into_bytes()
    }

    /// Whether the signature is `key`'s over this checkpoint (and the key is the one named).
    pub fn is_signed_by(&self, key: &ed25519_dalek::VerifyingKey) -> bool {
        let Ok(bytes) = unhex(&self.signature) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&bytes) else {
            return false;
        };
        super::entry::hex(key.as_bytes()) == self.public_key
            && key
                .verify(&Self::message(self.seq, &self.hash, self.at), &signature)
                .is_ok()
    }
}

fn unhex(text: &str) -> Result<Vec<u8>, ()> {
    if text.len() % 2 != 0 {
        return Err(());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or(())
        })
        .collect()
}

/// The journal's signing key.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(
            f,
            "SigningKey(public {})",
            super::entry::hex(self.0.verifying_key().as_bytes())
        )
    }
}

/// The key file's path under the data directory.
pub const KEY_FILE: &str = "audit/signing.key";

impl SigningKey {
    /// The data directory's key, created (32 random bytes, 0600, written whole before it is
    /// used) when there is none. A file of the wrong size is an error naming it, never
    /// replaced: checkpoints signed with it could no longer be verified.
    pub fn load_or_create(data: &Path) -> Result<SigningKey, String> {
        if let Some(key) = Self::load(data)? {
            return Ok(key);
        }
        let path = data.join(KEY_FILE);
        let failed =
            |e: std::io::Error| format!("cannot create the audit signing key {}: {e}", path.display());
        if let Some(dir) = path.parent() {
            crate::fsutil::create_private_dir(dir).map_err(failed)?;
        }
        let seed: [u8; 32] = rand::random();
        match crate::fsutil::write_private_new(&path, &seed) {
            Ok(()) => {}
            // Another process won the race: its key is the key.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed(e)),
        }
        Self::load(data)?.ok_or_else(|| {
            format!(
                "the audit signing key {} vanished as it was created",
                path.display()
            )
        })
    }

    /// The key in an existing file (for `audit verify`, which never creates one).
    pub fn load(data: &Path) -> Result<Option<SigningKey>, String> {
        let path = data.join(KEY_FILE);
        // A regular file of ours, readable by its owner only (a key others may read signs
        // nothing: anyone could forge a checkpoint with it), and small.
        let read = crate::fsutil::read_private_key(&path, 64);
        match read {
            Ok(bytes) => Self::from_bytes(&bytes, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!(
                "cannot read the audit signing key {}: {e}",
                path.display()
            )),
        }
    }

    fn from_bytes(bytes: &[u8], path: &Path) -> Result<SigningKey, String> {
        let seed: [u8; 32] = bytes.try_into().map_err(|_| {
            format!(
                "the audit signing key {} is {} bytes, not 32: it is damaged; restore it from a backup (checkpoints signed with it cannot be verified without it)",
                path.display(),
                bytes.len()
            )
        })?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// A key from a seed (tests).
    pub fn from_seed(seed: [u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.0.verifying_key()
    }

    /// A checkpoint of the head `(seq, hash)` at `at`.
    pub fn sign(&self, seq: u64, hash: &str, at: crate::model::Timestamp) -> Checkpoint {
        let signature = self.0.sign(&Checkpoint::message(seq, hash, at));
        Checkpoint {
            seq,
            hash: hash.to_string(),
            at,
            public_key: super::entry::hex(self.0.verifying_key().as_bytes()),
            signature: super::entry::hex(&signature.to_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_only_as_signed_and_only_with_its_key() {
        let key = SigningKey::from_seed([7; 32]);
        let cp = key.sign(42, "ab", 1_000);
        assert!(cp.is_signed_by(&key.verifying_key()));
        let other = SigningKey::from_seed([8; 32]);
        assert!(!cp.is_signed_by(&other.verifying_key()));
        for tampered in [
            Checkpoint {
                seq: 41,
                ..cp.clone()
            },
            Checkpoint {
                hash: "ac".into(),
                ..cp.clone()
            },
            Checkpoint {
                at: 1_001,
                ..cp.clone()
            },
            Checkpoint {
                signature: "zz".into(),
                ..cp.clone()
            },
            Checkpoint {
                signature: String::new(),
                ..cp.clone()
            },
        ] {
            assert!(!tampered.is_signed_by(&key.verifying_key()), "{tampered:?}");
        }
    }

    #[test]
    fn the_key_is_created_once_private_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SigningKey::load(dir.path()).unwrap().is_none());
        let a = SigningKey::load_or_create(dir.path()).unwrap();
        let b = SigningKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.verifying_key(), b.verifying_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(KEY_FILE);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = SigningKey::load(dir.path()).err().unwrap();
            assert!(e.contains("other users may read it"), "{e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        let e = SigningKey::load_or_create(dir.path()).err().unwrap();
        assert!(e.contains("is 5 bytes, not 32"), "{e}");
    }
}
