//! Private files and folders: what Taskdeck writes holds customers' data and keys, so other
//! local users may not read it (folders 0700, files 0600), and files that must never be seen
//! half-written are written to a temporary name, synced and moved into place.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Creates `dir` (and missing parents) readable by its owner only. An existing folder is
/// left as it is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes `bytes` to `path` (created or truncated, mode 0600) and syncs it to disk. Does not
/// follow a symlink at `path`: it fails instead.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Not through a planted link, and a FIFO planted at the name is an error (no reader:
        // ENXIO) instead of a hang.
        options
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let mut file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    file.write_all(bytes)?;
    file.sync_all()
}

/// A key file's bytes (at most `max`): a regular file of ours, not a link (a key pointed at
/// some world-readable file would let anyone sign), readable by its owner only. A key others
/// may read is an error, never quietly tightened: someone changed it.
pub fn read_private_key(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let (file, meta) = open_regular(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "other users may read it; the key must be readable by its owner only (chmod 600)",
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let mut key = Vec::new();
    file.take(max).read_to_end(&mut key)?;
    Ok(key)
}

/// Creates `path` with `bytes` (0600) only if no file has that name: written to a private
/// temporary file, synced, then hard-linked into place, so no reader ever sees part of it.
/// Errors with `AlreadyExists` when another writer got there first (read theirs).
pub fn write_private_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = write_private(&tmp, bytes).and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    if result.is_ok() {
        sync_dir(dir);
    }
    result
}

/// Replaces `path` with `bytes` atomically: a reader sees the old content or the new, never
/// a mix, and a symlink at `path` is replaced, not followed. Anything else at `path` (a
/// device such as `/dev/null`, a FIFO, a socket, a directory) is an error and left as it is.
pub fn replace_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !(meta.is_file() || meta.file_type().is_symlink()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "something other than a regular file is there (a device, FIFO or directory); it is left alone",
            ));
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = write_private(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    result
}

/// A file of ours opened for reading without following a symlink and only if it is a regular
/// file: a planted link to `/dev/zero`, `/proc/self/environ` or a FIFO yields an error, never a
/// hang or a leak. Returns the file and its metadata (for permission checks).
pub fn open_regular(path: &Path) -> io::Result<(fs::File, fs::Metadata)> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok((file, meta))
}

/// The start of a small text file of ours, at most `max` bytes (see `open_regular`).
pub fn read_small(path: &Path, max: u64) -> io::Result<String> {
    use std::io::Read;
    let (file, _) = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A file the user names (a TLS certificate or key), following symlinks (certificate tools
/// keep them as links) but only if it ends at a regular file, and at most `max` bytes: a FIFO
/// or `/dev/zero` is an error, never a hang or gigabytes read. Larger is an error too.
pub fn read_named(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}

/// Makes a folder's entries (a new or renamed file) durable. Best effort: not every file
/// system supports syncing a folder.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// `make_private` on `dir` itself and its entries, except the entries named in `skip`.
pub fn make_private_except(dir: &Path, skip: &[&str]) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::symlink_metadata(dir) {
            let mode = meta.permissions().mode();
            if meta.is_dir() && mode & 0o077 != 0 {
                let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode & !0o077));
            }
        }
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let skipped = entry.file_name().to_str().is_some_and(|n| skip.contains(&n));
            if !skipped {
                make_private(&entry.path());
            }
        }
    }
}

/// Removes group and other permissions from `path` and, for a folder, from everything in it
/// (data written by earlier versions, which created them 0755/0644). Symlinks are skipped.
pub fn make_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        if meta.file_type().is_symlink() {
            return;
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode & !0o077));
        }
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(path) {
                for entry in entries.flatten() {
                    make_private(&entry.path());
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Takes an exclusive advisory lock (`flock`) on `path` (created 0600 if missing) for as long
/// as the returned file is open; `Ok(None)` when another process holds it. The data
/// directory's lock when its store is elsewhere (PostgreSQL): one process per directory, as
/// sled's own lock gives.
pub fn lock_exclusive(path: &Path) -> io::Result<Option<fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    let held = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if held == 0 {
        return Ok(Some(file));
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
        e => Err(e),
    }
}
