//! The server log, `postgres.log` in the data directory.
//!
//! Why its own file: `pg_ctl -l` appends to the log for the cluster's whole
//! life, so it is rotated (once, to `postgres.log.1`) when it has grown large;
//! and when a start fails, what the server said about *this* attempt is the
//! only useful diagnosis, so the tail since the attempt began is quoted in the
//! error.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result};

/// The server log is rotated (once, to `postgres.log.1`) at start when it grew past this size.
const LOG_ROTATE_BYTES: u64 = 16 * 1024 * 1024;
/// How much of the server log to quote in a start error.
const LOG_TAIL_BYTES: u64 = 4096;

/// Rotates an oversized log once and makes sure the file exists (so it can be chowned).
pub(super) fn prepare_log_file(log_file: &Path) -> Result<()> {
    if std::fs::metadata(log_file).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let old = log_file.with_extension("log.1");
        std::fs::rename(log_file, &old)
            .with_context(|| format!("failed to rotate {}", log_file.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .with_context(|| format!("failed to create {}", log_file.display()))?;
    Ok(())
}

/// The last few KiB the server logged since `offset` (this start attempt only).
pub(super) fn log_tail_since(log_file: &Path, offset: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = std::fs::File::open(log_file)?;
        let len = f.metadata()?.len();
        let from = offset.max(len.saturating_sub(LOG_TAIL_BYTES)).min(len);
        f.seek(SeekFrom::Start(from))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if from > offset {
            if let Some(nl) = text.find('\n') {
                text.drain(..=nl);
            }
        }
        Ok(text)
    };
    match read() {
        Ok(t) if t.trim().is_empty() => "(log is empty)".to_owned(),
        Ok(t) => t,
        Err(e) => format!("(could not read log: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_what_this_attempt_logged() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("postgres.log");
        prepare_log_file(&log)?;
        assert_eq!(log_tail_since(&log, 0), "(log is empty)");
        std::fs::write(&log, "earlier start\n")?;
        let offset = std::fs::metadata(&log)?.len();
        std::fs::write(&log, "earlier start\nFATAL: this one\n")?;
        assert_eq!(log_tail_since(&log, offset), "FATAL: this one\n");
        Ok(())
    }

    #[test]
    fn a_long_tail_is_cut_at_a_line_start() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("postgres.log");
        let line = "x".repeat(99) + "\n";
        std::fs::write(&log, line.repeat(100))?;
        let tail = log_tail_since(&log, 0);
        assert!(tail.len() <= LOG_TAIL_BYTES as usize);
        assert!(tail.lines().all(|l| l.len() == 99), "only whole lines");
        Ok(())
    }

    #[test]
    fn a_large_log_is_rotated_once() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("postgres.log");
        std::fs::File::create(&log)?.set_len(LOG_ROTATE_BYTES + 1)?;
        prepare_log_file(&log)?;
        assert_eq!(std::fs::metadata(&log)?.len(), 0);
        assert_eq!(
            std::fs::metadata(dir.path().join("postgres.log.1"))?.len(),
            LOG_ROTATE_BYTES + 1
        );
        Ok(())
    }
}
