//! A private PostgreSQL cluster that the service (or a test process) manages itself.
//!
//! Why this exists: the ledger must come up on a fresh machine where the PostgreSQL
//! *server binaries* are installed but no server is running and no `DATABASE_URL` is
//! configured. Instead of asking the operator to set up a database, the service then
//! runs `initdb` once under its data directory, starts its own `postgres` on a free
//! loopback port for the lifetime of the process, and stops it on shutdown. The test
//! suite reuses the same code to get a throwaway cluster per test process
//! (`shared_test_cluster`, with the `test-support` feature), so tests never depend on a
//! pre-existing server.
//!
//! Layout under [`EmbeddedOptions::data_dir`]:
//!
//! * `pgdata/`       – the cluster itself (created by `initdb`, kept across restarts);
//! * `sockets/`      – the server's unix socket directory, 0700 (clients here use TCP);
//! * `postgres.log`  – server log (`pg_ctl -l`), rotated to `postgres.log.1` when large;
//! * `postgres-password` – the superuser's generated password, 0600.
//!
//! PostgreSQL refuses to run as root. When this process is root (containers, CI), the
//! server tools (`initdb`, `pg_ctl`) are run as the `postgres` OS user through
//! `runuser` (or `su`), and the directories the server writes to are chowned to it.
//!
//! The server only listens on 127.0.0.1 and requires a password (`scram-sha-256`, for
//! TCP and the unix socket alike): a generated one, kept owner-readable in the data
//! directory, so other local accounts can neither connect as the superuser nor reach
//! the socket (its directory is 0700). A cluster made by an older version with `trust`
//! authentication is given a password and switched over on its next start.
//!
//! This file is the public handle ([`EmbeddedPostgres`], [`EmbeddedOptions`]); each
//! step behind it has its own file:
//!
//! * `binaries`  – finding `initdb`/`pg_ctl` and the client tools of the same version;
//! * `data_dir`  – making the data directory usable and telling whether it holds a cluster;
//! * `initdb`    – creating a new cluster;
//! * `auth`      – the superuser's password and the password-only `pg_hba.conf`;
//! * `leftover`  – a server (or a stale pid file) that a crashed run left behind;
//! * `launch`    – `pg_ctl start` with the server's settings, until it accepts connections;
//! * `port`      – picking a free loopback port, and noticing when someone took it first;
//! * `server_log`– rotating the server log and quoting its tail in errors;
//! * `stop`      – `pg_ctl stop` and what its answers mean;
//! * `run_as`    – running the tools as the `postgres` OS user when we are root;
//! * `test_support` – the shared test cluster and standbys (`test-support` feature).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Result};

mod auth;
mod binaries;
mod data_dir;
mod initdb;
mod launch;
mod leftover;
mod port;
// Running the server's tools as the `postgres` OS user when we are root.
mod run_as;
mod server_log;
mod stop;
// The shared cluster of a test process, and standbys for replica tests.
#[cfg(feature = "test-support")]
mod test_support;

#[cfg(feature = "test-support")]
pub use test_support::{shared_test_cluster, shared_test_database};

use run_as::{check_reachable, describe_output, run_as_user, Invocation, RunAs};

/// Name of both the database superuser and (when we are root) the OS user the server runs as.
const PG_USER: &str = "postgres";
/// `pg_ctl -t`: how long `pg_ctl start`/`stop` may wait for the server.
const PG_CTL_TIMEOUT_SECS: &str = "60";

/// A running (or stopped) PostgreSQL cluster owned by this process.
///
/// Why a handle: the cluster is an external process tree; the handle remembers where it
/// lives and how to reach it (port, binaries, OS user) so it can be connected to and
/// shut down cleanly. Dropping the handle stops the server (blocking), so a service
/// that exits normally never leaves a `postgres` behind.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
    /// The superuser's password (also in `postgres-password`, 0600).
    password: String,
    /// Atomic (not a plain bool) so the `&'static` test cluster can be stopped from an atexit hook.
    stopped: AtomicBool,
}

/// How to start an [`EmbeddedPostgres`].
///
/// Why: the service and the tests want the same cluster management but different
/// durability trade-offs and locations.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Directory that holds the cluster (created if missing; `pgdata/` inside it).
    pub data_dir: PathBuf,
    /// Trade durability for speed (fsync=off, synchronous_commit=off, full_page_writes=off): for tests and benchmarks only.
    pub ephemeral: bool,
}

impl EmbeddedPostgres {
    /// Makes the cluster under `options.data_dir` exist and run, and returns its handle.
    ///
    /// * Runs `initdb` if `pgdata/` has no cluster yet (password auth, superuser `postgres`,
    ///   UTF8, `--no-locale`; `--no-sync` when ephemeral); an existing cluster is reused.
    /// * If a previous run left a server running on this data dir (postmaster.pid naming a
    ///   live postgres process), stops it first (`pg_ctl stop -m fast`); a stale pid file is
    ///   left to pg_ctl, one naming an unrelated live process (pid reuse) is removed.
    /// * Starts the server with `pg_ctl start -w -t 60` on 127.0.0.1 and a free TCP port
    ///   (a new one at every start), unix sockets in `sockets/` (TCP only if that path is
    ///   too long for a socket), logging to `postgres.log`, and waits until the port accepts
    ///   connections. A failed start reports pg_ctl's output and the tail of the log.
    ///
    /// Why: this is the whole "no DATABASE_URL" story — one call turns a directory into a
    /// reachable server, whatever state a previous (possibly crashed) run left it in.
    #[tracing::instrument(name = "embedded_pg_start", skip_all, fields(data_dir = %options.data_dir.display(), ephemeral = options.ephemeral))]
    pub async fn start(options: EmbeddedOptions) -> Result<Self> {
        let began = Instant::now();
        let data_dir = data_dir::resolve(&options.data_dir)?;
        let pgdata = data_dir.join("pgdata");
        let socket_dir = data_dir.join("sockets");
        let log_file = data_dir.join("postgres.log");

        let existing_version = data_dir::cluster_version(&pgdata)?;
        let bin_dir = binaries::find_bin_dir(existing_version.as_deref())?;
        let run_as = run_as_user()?;

        data_dir::create_socket_dir(&socket_dir)?;
        let (password, legacy_trust) =
            auth::load_or_create_password(&data_dir, existing_version.is_some())?;
        server_log::prepare_log_file(&log_file)?;
        if let Some(ra) = &run_as {
            for path in [&data_dir, &socket_dir, &log_file] {
                ra.give(path)?;
            }
            check_reachable(ra, &data_dir).await?;
        }

        let mut pg = EmbeddedPostgres {
            data_dir,
            pgdata,
            socket_dir,
            log_file,
            port: 0,
            bin_dir,
            run_as,
            password,
            // Nothing to stop until pg_ctl start succeeded.
            stopped: AtomicBool::new(true),
        };
        if existing_version.is_none() {
            pg.initdb(options.ephemeral).await?;
        } else {
            pg.stop_leftover_server().await?;
        }
        pg.launch(options.ephemeral).await?;
        if legacy_trust {
            pg.require_password().await?;
        }
        tracing::info!(
            port = pg.port,
            bin_dir = %pg.bin_dir.display(),
            initdb = existing_version.is_none(),
            elapsed_ms = began.elapsed().as_millis() as u64,
            "embedded PostgreSQL started"
        );
        Ok(pg)
    }

    /// postgres://postgres:PASSWORD@127.0.0.1:PORT/DBNAME
    ///
    /// Why: the rest of the service only speaks connection URLs (sqlx, `DATABASE_URL`).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{PG_USER}:{}@127.0.0.1:{}/{}",
            percent_encode(&self.password),
            self.port,
            percent_encode(database)
        )
    }

    /// The superuser's password (for client tools: `PGPASSWORD`).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The TCP port the server listens on (127.0.0.1 only).
    ///
    /// Why: chosen fresh at every start, so callers that build their own connection
    /// settings (or check the server is down) need to ask for it.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory with this cluster's PostgreSQL binaries (`psql`, `createdb`, … live there too).
    ///
    /// Why: tools that talk to the cluster should be the same version as the server.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The directory holding `pgdata/`, `sockets/` and `postgres.log`.
    ///
    /// Why: for diagnostics (where is the log?) and for tests that restart on the same dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Creates database `name` if it does not exist yet ("already exists" is success).
    ///
    /// Runs `createdb -h 127.0.0.1 -p PORT -U postgres` from the cluster's bin dir (falling
    /// back to PATH), so it needs no Rust database driver.
    ///
    /// Why: a fresh cluster only has `postgres`/`template*`; the service and each test want
    /// their own database before they connect and migrate.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        if self.stopped.load(Ordering::SeqCst) {
            bail!("cannot create database {name:?}: the embedded PostgreSQL server is stopped");
        }
        let createdb = self.client_tool("createdb")?;
        let port = self.port.to_string();
        let args: Vec<OsString> = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            PG_USER,
            "-w",
            "--",
            name,
        ]
        .iter()
        .map(OsString::from)
        .collect();
        // A client: it may run as root, no user switch needed.
        let out = Invocation::new(None, &createdb, &args)
            .output_with_password(&self.password)
            .await?;
        if out.status.success() {
            tracing::info!(database = name, port = self.port, "created database");
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("already exists") {
            return Ok(());
        }
        bail!(
            "createdb {name:?} on 127.0.0.1:{} failed ({}): {}",
            self.port,
            out.status,
            describe_output(&out)
        )
    }

    /// Stops the server (`pg_ctl stop -m fast`); calling it again is a no-op.
    ///
    /// Why: a clean shutdown checkpoints, so the next start needs no crash recovery and
    /// no `postgres` process outlives the service.
    #[tracing::instrument(name = "embedded_pg_stop", skip_all, fields(data_dir = %self.data_dir.display(), port = self.port))]
    pub async fn stop(&mut self) -> Result<()> {
        if self.stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
        let began = Instant::now();
        let out = self.pg_ctl_stop_invocation("fast").output().await?;
        self.finish_stop(&out)?;
        tracing::info!(
            elapsed_ms = began.elapsed().as_millis() as u64,
            "embedded PostgreSQL stopped"
        );
        Ok(())
    }

    /// Blocking variant of stop for atexit/Drop contexts (std::process::Command).
    ///
    /// Why: destructors and exit hooks cannot `.await`. Errors are logged, not returned,
    /// because there is nobody left to handle them.
    pub fn stop_blocking(&mut self) {
        self.stop_blocking_shared(true);
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop_blocking()
    }
}

/// Percent-encodes a URL part (the password, the database name): every byte but
/// the unreserved ones (RFC 3986: letters, digits, `-_.~`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts_keep_unreserved_bytes_and_encode_the_rest() {
        assert_eq!(percent_encode("my db/x"), "my%20db%2Fx");
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("é@:"), "%C3%A9%40%3A");
    }
}
