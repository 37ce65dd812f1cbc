//! Starting the server: `pg_ctl start` with the settings the ledger runs it
//! with, until it accepts connections.
//!
//! Why its own file: the settings are the cluster's whole configuration (it
//! has no `postgresql.conf` edits: loopback only, a fresh port, a private
//! socket directory, more connections than the default, no durability when
//! ephemeral), and a start can fail in ways that need telling apart — a port
//! someone took first is retried, anything else is reported with the server's
//! own words from its log.

use std::ffi::{OsStr, OsString};
use std::net::Ipv4Addr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::port::{is_port_conflict, pick_free_port, PORT_ATTEMPTS};
use super::run_as::{describe_output, shell_quote, Invocation};
use super::server_log::log_tail_since;
use super::{EmbeddedPostgres, PG_CTL_TIMEOUT_SECS};

/// `sun_path` is 108 bytes including the NUL; postgres appends `/.s.PGSQL.NNNNN` (15 bytes).
const MAX_SOCKET_DIR_LEN: usize = 107 - 15;
/// How long the TCP port may take to accept connections once pg_ctl reported the server ready.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

impl EmbeddedPostgres {
    /// `pg_ctl start` on a fresh free port, retrying if the port was taken in between.
    pub(super) async fn launch(&mut self, ephemeral: bool) -> Result<()> {
        let socket_dirs = self.socket_dir_setting();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = pick_free_port()?;
            let log_offset = std::fs::metadata(&self.log_file)
                .map(|m| m.len())
                .unwrap_or(0);
            let args: Vec<OsString> = vec![
                "start".into(),
                "-D".into(),
                self.pgdata.clone().into(),
                "-l".into(),
                self.log_file.clone().into(),
                "-w".into(),
                "-t".into(),
                PG_CTL_TIMEOUT_SECS.into(),
                "-o".into(),
                server_options(&server_settings(port, &socket_dirs, ephemeral)),
            ];
            let out = Invocation::new(self.run_as.as_ref(), &self.bin_dir.join("pg_ctl"), &args)
                .output()
                .await?;
            if out.status.success() {
                self.port = port;
                self.stopped.store(false, Ordering::SeqCst);
                // pg_ctl -w already waited for "ready"; confirm over TCP. On failure the
                // caller drops `self`, which stops the server.
                return self.wait_accepting().await;
            }
            let tail = log_tail_since(&self.log_file, log_offset);
            // A timed-out start may leave a server still coming up: do not orphan it.
            let cleanup = self.pg_ctl_stop_invocation("fast").output().await;
            if let Err(e) = cleanup {
                tracing::warn!(error = %format!("{e:#}"), "cleanup after failed start failed");
            }
            if attempt < PORT_ATTEMPTS && is_port_conflict(&tail) {
                tracing::warn!(
                    port,
                    attempt,
                    "port was taken before postgres could bind it; retrying"
                );
                continue;
            }
            bail!(
                "starting PostgreSQL on {} (port {port}) failed ({}): {}\n--- tail of {} ---\n{}",
                self.pgdata.display(),
                out.status,
                describe_output(&out),
                self.log_file.display(),
                tail
            );
        }
    }

    /// Value for `unix_socket_directories`: our socket dir, or none if its path cannot be used.
    fn socket_dir_setting(&self) -> String {
        let raw = self.socket_dir.as_os_str();
        let usable = raw.len() <= MAX_SOCKET_DIR_LEN
            && !raw.as_bytes().iter().any(|b| matches!(b, b',' | b'"'))
            && raw.to_str().is_some();
        match (usable, raw.to_str()) {
            (true, Some(s)) => s.to_owned(),
            _ => {
                tracing::info!(socket_dir = %self.socket_dir.display(), "socket dir path too long or unusual for a unix socket; listening on TCP only");
                String::new()
            }
        }
    }

    async fn wait_accepting(&self) -> Result<()> {
        let deadline = Instant::now() + ACCEPT_TIMEOUT;
        loop {
            match tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).with_context(|| {
                        format!(
                            "PostgreSQL reported ready but 127.0.0.1:{} does not accept connections (see {})",
                            self.port,
                            self.log_file.display()
                        )
                    })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// The server's settings (`-c name=value`) for a start on `port`.
fn server_settings(port: u16, socket_dirs: &str, ephemeral: bool) -> Vec<String> {
    let mut settings = vec![
        "listen_addresses=127.0.0.1".to_owned(),
        format!("port={port}"),
        format!("unix_socket_directories={socket_dirs}"),
        "max_connections=200".to_owned(),
        "shared_buffers=128MB".to_owned(),
    ];
    if ephemeral {
        settings.extend(
            [
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
            ]
            .map(String::from),
        );
    }
    settings
}

/// `pg_ctl -o`'s value: pg_ctl hands it to /bin/sh, so every setting is shell-quoted.
fn server_options(settings: &[String]) -> OsString {
    let mut options = Vec::new();
    for s in settings {
        if !options.is_empty() {
            options.push(b' ');
        }
        options.extend_from_slice(b"-c ");
        options.extend(shell_quote(OsStr::new(s)));
    }
    OsString::from_vec(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_loopback_on_the_port_and_without_durability_only_when_ephemeral() {
        let durable = server_settings(5433, "/d/sockets", false);
        assert!(durable.contains(&"listen_addresses=127.0.0.1".to_owned()));
        assert!(durable.contains(&"port=5433".to_owned()));
        assert!(durable.contains(&"unix_socket_directories=/d/sockets".to_owned()));
        assert!(!durable.iter().any(|s| s.starts_with("fsync")));
        let ephemeral = server_settings(5433, "", true);
        assert!(ephemeral.contains(&"unix_socket_directories=".to_owned()));
        assert!(ephemeral.contains(&"fsync=off".to_owned()));
    }

    #[test]
    fn each_setting_reaches_the_shell_as_one_quoted_word() {
        let options = server_options(&["port=5433".to_owned(), "a='b c'".to_owned()]);
        assert_eq!(
            options.as_bytes(),
            b"-c 'port=5433' -c 'a='\\''b c'\\'''".as_slice()
        );
    }
}
