//! `--record FILE.cast`: an asciinema v2 recording of every byte sent to the terminal, with
//! its time, so a session can be played back (`asciinema play`) or embedded in a blog post.

use serde_json::json;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::time::Instant;

pub struct Recorder<W: Write> {
    inner: W,
    cast: BufWriter<File>,
    start: Instant,
    /// Bytes of a UTF-8 character split across two writes.
    pending: Vec<u8>,
}

impl<W: Write> Recorder<W> {
    /// Creates the file and writes the asciinema v2 header.
    pub fn create(inner: W, path: &std::path::Path, width: u16, height: u16) -> io::Result<Self> {
        // Private like everything Taskdeck writes, and never through a planted symlink.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        }
        let named =
            |e: io::Error| io::Error::new(e.kind(), format!("cannot record to {}: {e}", path.display()));
        let file = options.open(path).map_err(named)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        let mut cast = BufWriter::new(file);
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = json!({
            "version": 2,
            "width": width,
            "height": height,
            "timestamp": timestamp,
            "title": "taskdeck",
            "env": { "TERM": std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into()), "SHELL": std::env::var("SHELL").unwrap_or_default() },
        });
        writeln!(cast, "{header}")?;
        Ok(Recorder {
            inner,
            cast,
            start: Instant::now(),
            pending: Vec::new(),
        })
    }
}

impl<W: Write> Recorder<W> {
    /// Records that the terminal is now `width`×`height` (an asciinema v2 `r` event).
    pub fn resize(&mut self, width: u16, height: u16) -> io::Result<()> {
        let line = json!([
            self.start.elapsed().as_secs_f64(),
            "r",
            format!("{width}x{height}")
        ]);
        writeln!(self.cast, "{line}")
    }
}

impl<W: Write> Write for Recorder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(buf)?;
        self.pending.extend_from_slice(buf);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        if valid > 0 {
            let text = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
            let line = json!([self.start.elapsed().as_secs_f64(), "o", text]);
            writeln!(self.cast, "{line}")?;
            self.pending.drain(..valid);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()?;
        self.cast.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_header_and_timed_output_events_keeping_characters_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cast");
        let mut out = Vec::new();
        {
            let mut rec = Recorder::create(&mut out, &path, 80, 24).unwrap();
            rec.write_all(b"hello ").unwrap();
            let check = "✔".as_bytes();
            rec.write_all(&check[..1]).unwrap();
            rec.write_all(&check[1..]).unwrap();
            rec.flush().unwrap();
        }
        assert_eq!(out, "hello ✔".as_bytes());
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(
            (lines[0]["width"].as_u64(), lines[0]["height"].as_u64()),
            (Some(80), Some(24))
        );
        assert_eq!(lines[1][1], "o");
        assert_eq!(lines[1][2], "hello ");
        assert_eq!(lines[2][2], "✔");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn a_resize_is_recorded_between_the_frames_it_separates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cast");
        {
            let mut rec = Recorder::create(Vec::new(), &path, 80, 24).unwrap();
            rec.write_all(b"small").unwrap();
            rec.resize(120, 40).unwrap();
            rec.write_all(b"large").unwrap();
            rec.flush().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let events: Vec<serde_json::Value> = text
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kinds: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e[1].as_str().unwrap(), e[2].as_str().unwrap()))
            .collect();
        assert_eq!(kinds, [("o", "small"), ("r", "120x40"), ("o", "large")]);
    }
}
