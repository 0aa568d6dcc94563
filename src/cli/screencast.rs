//! `taskdeck screencast FILE.tape [-o FILE.cast]`: plays a tape (`console::tape`) into an
//! asciicast v2 recording (`console::script`).

use super::say;
use anyhow::{anyhow, Context, Result};
use std::path::Path;

/// The largest tape read: 1 MiB.
const MAX_TAPE: u64 = 1 << 20;

pub(super) async fn record(tape: &Path, output: Option<&Path>, last_frame: bool) -> Result<i32> {
    let text = crate::fsutil::read_small(tape, MAX_TAPE)
        .with_context(|| format!("cannot read the tape {}", tape.display()))?;
    let name = tape.display().to_string();
    let out = output.map_or_else(|| tape.with_extension("cast"), Path::to_path_buf);
    // The player runs its own runtime on a virtual clock, on a thread of its own.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("screencast".into())
        .spawn(move || {
            let _ = tx.send(crate::console::script::play(&text, &name));
        })
        .context("cannot start the player")?;
    let recording = rx
        .await
        .map_err(|_| anyhow!("the player stopped before it finished"))?
        .map_err(|e| anyhow!(e))?;
    crate::fsutil::write_private(&out, recording.cast.as_bytes())
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
