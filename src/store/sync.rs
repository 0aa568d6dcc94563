//! Making sled's writes reach stable storage. sled 0.34's `flush` ends with
//! `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` on its log, which writes the pages but
//! neither flushes the disk's volatile cache nor the file's metadata (its size, for an
//! appended log), and it writes values too big for a log segment (over ~128 KiB) to files under
//! `blobs/` with no sync at all. So after each flush: `fdatasync` the log, and `fdatasync` every
//! blob file created since the last sync plus the `blobs` directory that names it.
//! `benches/fsync.sh` counts the calls with strace.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub(super) struct DiskSync {
    log: File,
    blobs: PathBuf,
    /// The highest blob file name (a log sequence number) already synced.
    last_blob: Mutex<u64>,
}

impl DiskSync {
    /// Opens sled's log in the store directory `path` for syncing, and syncs the directories
    /// that name the store's files (created by this open, perhaps).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        // fdatasync works on a descriptor opened for reading (Linux, the BSDs, macOS).
        let log = File::open(path.join("db"))?;
        sync_dir(path)?;
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        let sync = DiskSync {
            log,
            blobs: path.join("blobs"),
            last_blob: Mutex::new(0),
        };
        sync.sync()?;
        Ok(sync)
    }

    /// `fdatasync`s the log, then any new blob files and their directory.
    pub fn sync(&self) -> std::io::Result<()> {
        self.log.sync_data()?;
        let mut last = self.last_blob.lock().unwrap_or_else(|p| p.into_inner());
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut newest = *last;
        for entry in entries {
            let entry = entry?;
            let Some(lsn) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            if lsn > *last {
                // sled removes a blob whose value was replaced or whose page was rewritten,
                // at any time: one gone between the listing and the open needs no sync (and
                // must not fail the commit, which would stop the engine).
                match File::open(entry.path()) {
                    Ok(file) => match file.sync_data() {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                newest = newest.max(lsn);
            }
        }
        if newest > *last {
            sync_dir(&self.blobs)?;
            *last = newest;
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blob sled removed between the listing and the open (here: a name whose file is gone,
    /// a dangling link) is skipped: it needs no sync, and failing would stop the engine.
    #[test]
    fn a_blob_removed_while_syncing_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), b"log").unwrap();
        let blobs = dir.path().join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        std::fs::write(blobs.join("7"), b"kept").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(blobs.join("gone"), blobs.join("9")).unwrap();
        let sync = DiskSync::open(dir.path()).unwrap();
        sync.sync().unwrap();
        assert_eq!(*sync.last_blob.lock().unwrap(), 9);
    }
}
