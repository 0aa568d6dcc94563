//! The master key: 32 random bytes that wrap every data subject's key. It lives in
//! `DATA/keys/master.key` (0600, created with the first personal value stored) or wherever
//! `TASKDECK_MASTER_KEY_FILE` points (a file the operator keeps, e.g. on a mounted secret;
//! never created by us). It is apart from the token key (`auth/jwt.key`) and the audit key
//! (`audit/signing.key`): whoever holds one of them holds none of the others.

use super::PrivacyError;
use aes_gcm::{Aes256Gcm, KeyInit};
use std::path::{Path, PathBuf};

/// Length of the master key in bytes.
pub const MASTER_KEY_LEN: usize = 32;

/// The variable naming a master key file kept outside the data directory.
pub const MASTER_KEY_ENV: &str = "TASKDECK_MASTER_KEY_FILE";

/// Where the master key is kept in a data directory.
pub const MASTER_KEY_FILE: &str = "keys/master.key";

/// Where the master key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `DATA/keys/master.key`, created when first needed.
    DataDir(PathBuf),
    /// A file the operator provides; it must exist.
    File(PathBuf),
}

impl KeySource {
    /// `TASKDECK_MASTER_KEY_FILE` if set (and not empty), else the data directory's key.
    pub fn from_env(data_dir: &Path) -> Self {
        match std::env::var_os(MASTER_KEY_ENV).filter(|v| !v.is_empty()) {
            Some(file) => KeySource::File(PathBuf::from(file)),
            None => KeySource::DataDir(data_dir.to_path_buf()),
        }
    }

    pub fn path(&self) -> PathBuf {
        match self {
            KeySource::DataDir(dir) => dir.join(MASTER_KEY_FILE),
            KeySource::File(file) => file.clone(),
        }
    }
}

/// The loaded master key: an AES-256-GCM cipher for wrapping data keys, and a key derived
/// from it for the keyed hashes that find a subject by an email or id without storing either.
pub struct MasterKey {
    pub(super) wrap: Aes256Gcm,
    pub(super) lookup: [u8; 32],
    /// Whether this process created the key (an existing store with none is an error).
    pub(super) created: bool,
}

impl MasterKey {
    /// Reads the key, or creates it when `source` is the data directory's and `create`.
    ///
    /// Errors: the file is missing (and may not be created), readable by others, a link, or
    /// not exactly `MASTER_KEY_LEN` bytes (a key cut short would lock data away for good).
    pub fn load(source: &KeySource, create: bool) -> Result<Option<MasterKey>, PrivacyError> {
        let path = source.path();
        let err = |cause: String| PrivacyError::Key {
            path: path.display().to_string(),
            cause,
        };
        let (bytes, created) = match crate::fsutil::read_private_key(&path, 4096) {
            Ok(bytes) => (bytes, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match source {
                KeySource::File(_) => {
                    return Err(err(format!(
                        "{MASTER_KEY_ENV} names a file that does not exist; create it with 32 random bytes (e.g. `head -c 32 /dev/urandom > FILE && chmod 600 FILE`), or unset the variable"
                    )))
                }
                KeySource::DataDir(_) if !create => return Ok(None),
                KeySource::DataDir(_) => {
                    let dir = path.parent().ok_or_else(|| err("no parent folder".into()))?;
                    crate::fsutil::create_private_dir(dir).map_err(|e| err(e.to_string()))?;
                    let key: [u8; MASTER_KEY_LEN] = rand::random();
                    match crate::fsutil::write_private_new(&path, &key) {
                        Ok(()) => (key.to_vec(), true),
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => (
                            crate::fsutil::read_private_key(&path, 4096).map_err(|e| err(e.to_string()))?,
                            false,
                        ),
                        Err(e) => return Err(err(e.to_string())),
                    }
                }
            },
            Err(e) => return Err(err(e.to_string())),
        };
        if bytes.len() != MASTER_KEY_LEN {
            return Err(err(format!(
                "the key is {} bytes long, expected {MASTER_KEY_LEN}; restore the right key file (data sealed with another key cannot be read)",
                bytes.len()
            )));
        }
        let wrap = Aes256Gcm::new_from_slice(&bytes).map_err(|e| err(e.to_string()))?;
        let lookup = super::envelope::derive(&bytes, b"taskdeck subject lookup v1");
        Ok(Some(MasterKey {
            wrap,
            lookup,
            created,
        }))
    }
}
