//! Stopping the server with `pg_ctl stop`, and what its answers mean.
//!
//! Why its own file: the server is stopped from many places — the async
//! [`EmbeddedPostgres::stop`], `Drop` and the test cluster's exit hook (which
//! cannot await), a failed start (not to orphan a half-started server), a
//! leftover server from a crashed run, and the sweep of abandoned test
//! clusters (with only a bin dir and a pgdata path, no handle) — and all of
//! them must agree that "no server is running" counts as stopped.

use std::ffi::OsString;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::Ordering;

use anyhow::{bail, Result};

use super::run_as::{describe_output, Invocation, RunAs};
use super::{EmbeddedPostgres, PG_CTL_TIMEOUT_SECS};

impl EmbeddedPostgres {
    /// [`Self::stop_blocking`] through a shared reference (the test cluster is `&'static`).
    /// `log = false` avoids tracing in atexit context, where thread-locals may be gone.
    pub(super) fn stop_blocking_shared(&self, log: bool) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        let result = self
            .pg_ctl_stop_invocation("fast")
            .output_blocking()
            .and_then(|out| self.finish_stop(&out));
        if log {
            match result {
                Ok(()) => {
                    tracing::info!(data_dir = %self.data_dir.display(), port = self.port, "embedded PostgreSQL stopped")
                }
                Err(e) => {
                    tracing::warn!(data_dir = %self.data_dir.display(), error = %format!("{e:#}"), "failed to stop embedded PostgreSQL")
                }
            }
        }
    }

    pub(super) fn pg_ctl_stop_invocation(&self, mode: &str) -> Invocation {
        pg_ctl_stop(self.run_as.as_ref(), &self.bin_dir, &self.pgdata, mode)
    }

    /// Interprets `pg_ctl stop` output; "not running" counts as stopped.
    pub(super) fn finish_stop(&self, out: &Output) -> Result<()> {
        if out.status.success() || stop_says_not_running(out) {
            self.stopped.store(true, Ordering::SeqCst);
            return Ok(());
        }
        bail!(
            "pg_ctl stop for {} failed ({}): {}",
            self.pgdata.display(),
            out.status,
            describe_output(out)
        )
    }
}

/// `pg_ctl stop -m MODE -w` of the cluster in `pgdata`, run as `run_as`.
pub(super) fn pg_ctl_stop(
    run_as: Option<&RunAs>,
    bin_dir: &Path,
    pgdata: &Path,
    mode: &str,
) -> Invocation {
    let args: Vec<OsString> = vec![
        "stop".into(),
        "-D".into(),
        pgdata.as_os_str().to_owned(),
        "-m".into(),
        mode.into(),
        "-w".into(),
        "-t".into(),
        PG_CTL_TIMEOUT_SECS.into(),
    ];
    Invocation::new(run_as, &bin_dir.join("pg_ctl"), &args)
}

/// Whether a failed `pg_ctl stop` just means there is no server: it exits 1 with "PID file …
/// does not exist / Is server running?" when idle.
pub(super) fn stop_says_not_running(out: &Output) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr.contains("Is server running?")
        || stderr.contains("does not exist")
        // The pid file names a postmaster that is already gone (killed externally).
        || stderr.contains("No such process")
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;

    fn failed_with(stderr: &str) -> Output {
        Output {
            status: ExitStatus::from_raw(1 << 8),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn no_server_to_stop_counts_as_stopped_and_other_failures_do_not() {
        for idle in [
            "pg_ctl: PID file \"/d/pgdata/postmaster.pid\" does not exist\nIs server running?\n",
            "pg_ctl: could not send stop signal (PID: 4242): No such process\n",
        ] {
            assert!(stop_says_not_running(&failed_with(idle)), "{idle}");
        }
        for busy in [
            "pg_ctl: server does not shut down\n",
            "pg_ctl: could not send stop signal (PID: 4242): Operation not permitted\n",
        ] {
            assert!(!stop_says_not_running(&failed_with(busy)), "{busy}");
        }
    }
}
