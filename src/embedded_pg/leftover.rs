//! A server, or a pid file, that a previous run left on the data directory.
//!
//! Why its own file: a service killed with `kill -9`, or a machine that
//! rebooted, leaves `pgdata/postmaster.pid` behind — naming a server still
//! running (it must be stopped before ours can start), a process that is gone
//! (pg_ctl copes), or, after pid reuse, an unrelated process (postgres would
//! refuse to start, and signalling it would hit the wrong process). Telling
//! these apart is what makes a restart after a crash just work.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::run_as::describe_output;
use super::stop::stop_says_not_running;
use super::EmbeddedPostgres;

impl EmbeddedPostgres {
    /// Stops a server that a previous (crashed or killed) run left on this data directory.
    pub(super) async fn stop_leftover_server(&self) -> Result<()> {
        let pid_file = self.pgdata.join("postmaster.pid");
        let contents = match std::fs::read_to_string(&pid_file) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("failed to read {}", pid_file.display()))
            }
        };
        let pid = match postmaster_pid(&contents) {
            Some(pid) => pid,
            None => {
                // Garbage (e.g. a crash mid-write) cannot belong to a live server; postgres
                // would refuse to start on it, so clear it.
                tracing::warn!(pid_file = %pid_file.display(), "removing unreadable postmaster.pid");
                return remove_file_if_exists(&pid_file);
            }
        };
        if !process_alive(pid) {
            return Ok(()); // stale: pg_ctl/postgres handle it
        }
        if !process_is_postgres(pid) {
            // After a reboot or in a container the pid is often reused by an unrelated
            // process; postgres would then refuse to start ("lock file already exists"),
            // and pg_ctl stop would signal the wrong process.
            tracing::warn!(pid, pid_file = %pid_file.display(), "postmaster.pid names a live non-postgres process; removing stale pid file");
            return remove_file_if_exists(&pid_file);
        }
        tracing::info!(pid, pgdata = %self.pgdata.display(), "stopping PostgreSQL left running by a previous run");
        let out = self.pg_ctl_stop_invocation("fast").output().await?;
        if out.status.success() || stop_says_not_running(&out) {
            return Ok(());
        }
        bail!(
            "a PostgreSQL server (pid {pid}) is already running on {} and could not be stopped ({}): {}",
            self.pgdata.display(),
            out.status,
            describe_output(&out)
        )
    }
}

/// The postmaster's pid: the first line of `postmaster.pid`, if it is a positive number.
fn postmaster_pid(contents: &str) -> Option<i32> {
    contents
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 0)
}

/// Whether a process with this pid exists (ours or anyone's).
pub(super) fn process_alive(pid: i32) -> bool {
    // No signal: only whether the process exists (EPERM: it does, and is
    // someone else's).
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(errno) => errno == nix::errno::Errno::EPERM,
    }
}

/// Whether a live pid is a postgres server process (if /proc cannot tell, assume it is).
fn process_is_postgres(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => {
            let comm = comm.trim();
            comm.starts_with("postgres") || comm.starts_with("postmaster")
        }
        Err(_) => true,
    }
}

fn remove_file_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("failed to remove {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_is_the_first_line_when_it_is_a_positive_number() {
        assert_eq!(
            postmaster_pid("4242\n/var/lib/pgdata\n1700000000\n"),
            Some(4242)
        );
        assert_eq!(postmaster_pid(" 17 \n"), Some(17));
        assert_eq!(postmaster_pid(""), None);
        assert_eq!(postmaster_pid("0\n"), None);
        assert_eq!(postmaster_pid("-1\n"), None);
        assert_eq!(postmaster_pid("\u{0}\u{0}garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_not_postgres() {
        let me = std::process::id() as i32;
        assert!(process_alive(me));
        assert!(!process_is_postgres(me));
    }
}
