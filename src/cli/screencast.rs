//! `taskdeck screencast FILE.tape [-o FILE.cast]`: plays a tape (`console::tape`) into an
//! asciicast v2 recording (`console::script`).

use super::say;
use anyhow::{anyhow, Context, Result};
use std::path::Path;

/// The largest tape read: 1 MiB.
const MAX_TAPE: u64 = 1 << 20;

pub(super) async fn record(tape: &Path, output: Option<&Path>, last_frame: bool) -> Result<i32> {
    // A regular file (symlinks followed), at most 1 MiB: larger is an error, not a cut.
    let bytes = crate::fsutil::read_named(tape, MAX_TAPE).with_context(|| {
        format!(
            "cannot read the tape {} (a regular file of at most 1 MiB)",
            tape.display()
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow!("{}: not UTF-8 text", tape.display()))?;
    let name = tape.display().to_string();
    let out = output.map_or_else(|| tape.with_extension("cast"), Path::to_path_buf);
    if same_file(&out, tape) || tape.extension().is_some_and(|e| e == "cast") && output.is_none() {
        return Err(anyhow!(
            "the recording would overwrite the tape {}: give the tape a .tape name, or -o FILE.cast",
            tape.display()
        ));
    }
    // The player runs its own runtime on a virtual clock, on a thread of its own. A signal
    // stops it between two steps, so its temporary data directory is removed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let stopping = stop.clone();
    std::thread::Builder::new()
        .name("screencast".into())
        .spawn(move || {
            let _ = tx.send(crate::console::script::play_until(&text, &name, &stopping));
        })
        .context("cannot start the player")?;
    let played = tokio::select! {
        played = &mut rx => played,
        () = super::commands::shutdown_signal() => {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = (&mut rx).await;
            return Err(anyhow!("stopped by a signal; nothing was written"));
        }
    };
    let recording = played
        .map_err(|_| anyhow!("the player stopped before it finished"))?
        .map_err(|e| anyhow!(e))?;
    // Written beside and renamed into place: a link or FIFO at the name is replaced, never
    // followed or opened.
    crate::fsutil::replace_private(&out, recording.cast.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    if last_frame {
        say!("{}", recording.last_frame);
    }
    say!(
        "recorded {} ({:.1} s) to {} — play it with `asciinema play {}`",
        tape.display(),
        recording.duration,
        out.display(),
        out.display()
    );
    Ok(0)
}

/// Whether `a` and `b` name the same file (through links, `./`, or another path), or the
/// same text when `a` does not exist yet.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        #[cfg(unix)]
        (Ok(x), Ok(y)) => {
            use std::os::unix::fs::MetadataExt;
            x.dev() == y.dev() && x.ino() == y.ino()
        }
        _ => a == b,
    }
}
