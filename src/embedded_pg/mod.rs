//! A private PostgreSQL cluster that the service (or a test process) manages itself.
//!
//! Why this exists: the ledger must come up on a fresh machine where the PostgreSQL
//! *server binaries* are installed but no server is running and no `DATABASE_URL` is
//! configured. Instead of asking the operator to set up a database, the service then
//! runs `initdb` once under its data directory, starts its own `postgres` on a free
//! loopback port for the lifetime of the process, and stops it on shutdown. The test
//! suite reuses the same code to get a throwaway cluster per test process
//! ([`shared_test_cluster`]), so tests never depend on a pre-existing server.
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

use std::ffi::{OsStr, OsString};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// Name of both the database superuser and (when we are root) the OS user the server runs as.
const PG_USER: &str = "postgres";
/// `pg_ctl -t`: how long `pg_ctl start`/`stop` may wait for the server.
const PG_CTL_TIMEOUT_SECS: &str = "60";
/// How many free ports to try if another process grabs the one we picked before postgres binds it.
const PORT_ATTEMPTS: usize = 3;
/// The server log is rotated (once, to `postgres.log.1`) at start when it grew past this size.
const LOG_ROTATE_BYTES: u64 = 16 * 1024 * 1024;
/// How much of the server log to quote in a start error.
const LOG_TAIL_BYTES: u64 = 4096;
/// `sun_path` is 108 bytes including the NUL; postgres appends `/.s.PGSQL.NNNNN` (15 bytes).
const MAX_SOCKET_DIR_LEN: usize = 107 - 15;

const NOT_FOUND_MSG: &str = "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under \
     /usr/lib/postgresql/*/bin; install them, e.g. `apt-get install postgresql`, or set DATABASE_URL \
     to use an existing server";

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

/// The file holding the superuser's password, in the data directory.
const PASSWORD_FILE: &str = "postgres-password";

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
    /// * Runs `initdb` if `pgdata/` has no cluster yet (trust auth, superuser `postgres`,
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
        let data_dir = std::path::absolute(&options.data_dir)
            .with_context(|| format!("invalid data directory {}", options.data_dir.display()))?;
        check_shell_safe(&data_dir)?;
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("failed to create data directory {}", data_dir.display()))?;
        let data_dir = std::fs::canonicalize(&data_dir)
            .with_context(|| format!("failed to resolve data directory {}", data_dir.display()))?;
        check_shell_safe(&data_dir)?;
        let pgdata = data_dir.join("pgdata");
        let socket_dir = data_dir.join("sockets");
        let log_file = data_dir.join("postgres.log");

        let existing_version = match std::fs::read_to_string(pgdata.join("PG_VERSION")) {
            Ok(v) => Some(v.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("failed to read {}", pgdata.join("PG_VERSION").display())
                })
            }
        };
        if existing_version.is_none() && dir_is_non_empty(&pgdata)? {
            bail!(
                "{} exists but is not a PostgreSQL cluster (no PG_VERSION; maybe an interrupted initdb); \
                 remove it to let the service create a fresh cluster",
                pgdata.display()
            );
        }
        let bin_dir = find_bin_dir(existing_version.as_deref())?;
        let run_as = run_as_user()?;

        std::fs::create_dir_all(&socket_dir)
            .with_context(|| format!("failed to create {}", socket_dir.display()))?;
        // Only the server's own user may reach its socket.
        std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("failed to chmod {}", socket_dir.display()))?;
        let (password, legacy_trust) =
            load_or_create_password(&data_dir, existing_version.is_some())?;
        prepare_log_file(&log_file)?;
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

    /// [`Self::stop_blocking`] through a shared reference (the test cluster is `&'static`).
    /// `log = false` avoids tracing in atexit context, where thread-locals may be gone.
    fn stop_blocking_shared(&self, log: bool) {
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

    fn pg_ctl_stop_invocation(&self, mode: &str) -> Invocation {
        pg_ctl_stop(self.run_as.as_ref(), &self.bin_dir, &self.pgdata, mode)
    }

    /// Interprets `pg_ctl stop` output; "not running" counts as stopped.
    fn finish_stop(&self, out: &Output) -> Result<()> {
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

    async fn initdb(&self, ephemeral: bool) -> Result<()> {
        let began = Instant::now();
        // initdb reads the password from a file it can read (it may run as
        // the `postgres` user): a private copy, removed right after.
        let pwfile = self.data_dir.join(format!("{PASSWORD_FILE}.initdb"));
        write_private_file(&pwfile, &self.password)?;
        if let Some(ra) = &self.run_as {
            ra.give(&pwfile)?;
        }
        let mut args: Vec<OsString> = vec![
            "-D".into(),
            self.pgdata.clone().into(),
            "-U".into(),
            PG_USER.into(),
            "--auth=scram-sha-256".into(),
            "--pwfile".into(),
            pwfile.clone().into(),
            "-E".into(),
            "UTF8".into(),
            "--no-locale".into(),
        ];
        if ephemeral {
            args.push("--no-sync".into());
        }
        let out = Invocation::new(self.run_as.as_ref(), &self.bin_dir.join("initdb"), &args)
            .output()
            .await;
        let _ = std::fs::remove_file(&pwfile);
        let out = out?;
        if !out.status.success() {
            bail!(
                "initdb of {} failed ({}): {}",
                self.pgdata.display(),
                out.status,
                describe_output(&out)
            );
        }
        tracing::info!(
            pgdata = %self.pgdata.display(),
            elapsed_ms = began.elapsed().as_millis() as u64,
            "initialized new PostgreSQL cluster"
        );
        Ok(())
    }

    /// A cluster made with `trust` authentication (by an older version) gets the
    /// generated password and is switched to `scram-sha-256` for every connection.
    async fn require_password(&self) -> Result<()> {
        let psql = self.client_tool("psql")?;
        // The statement goes through a private file, not the command line.
        let script = self.data_dir.join(format!("{PASSWORD_FILE}.sql"));
        write_private_file(
            &script,
            &format!(
                "alter role {PG_USER} password '{}';\n",
                self.password.replace('\'', "''")
            ),
        )?;
        let port = self.port.to_string();
        let args: Vec<OsString> = [
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            PG_USER,
            "-d",
            "postgres",
            "-f",
        ]
        .iter()
        .map(OsString::from)
        .chain([script.clone().into_os_string()])
        .collect();
        let out = Invocation::new(None, &psql, &args)
            .output_with_password(&self.password)
            .await;
        let _ = std::fs::remove_file(&script);
        let out = out?;
        if !out.status.success() {
            bail!(
                "setting the superuser's password failed ({}): {}",
                out.status,
                describe_output(&out)
            );
        }
        let hba = self.pgdata.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba)
            .with_context(|| format!("failed to read {}", hba.display()))?;
        std::fs::write(&hba, require_scram(&rules))
            .with_context(|| format!("failed to write {}", hba.display()))?;
        let args: Vec<OsString> = vec!["reload".into(), "-D".into(), self.pgdata.clone().into()];
        let out = Invocation::new(self.run_as.as_ref(), &self.bin_dir.join("pg_ctl"), &args)
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "pg_ctl reload of {} failed ({}): {}",
                self.pgdata.display(),
                out.status,
                describe_output(&out)
            );
        }
        tracing::info!(pgdata = %self.pgdata.display(), "embedded PostgreSQL now requires a password");
        Ok(())
    }

    /// Stops a server that a previous (crashed or killed) run left on this data directory.
    async fn stop_leftover_server(&self) -> Result<()> {
        let pid_file = self.pgdata.join("postmaster.pid");
        let contents = match std::fs::read_to_string(&pid_file) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("failed to read {}", pid_file.display()))
            }
        };
        let pid = contents
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok());
        let pid = match pid {
            Some(pid) if pid > 0 => pid,
            _ => {
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

    /// `pg_ctl start` on a fresh free port, retrying if the port was taken in between.
    async fn launch(&mut self, ephemeral: bool) -> Result<()> {
        let socket_dirs = self.socket_dir_setting();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = pick_free_port()?;
            let log_offset = std::fs::metadata(&self.log_file)
                .map(|m| m.len())
                .unwrap_or(0);
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
            // pg_ctl hands -o to /bin/sh, so every value is shell-quoted.
            let mut server_opts = Vec::new();
            for s in &settings {
                if !server_opts.is_empty() {
                    server_opts.push(b' ');
                }
                server_opts.extend_from_slice(b"-c ");
                server_opts.extend(shell_quote(OsStr::new(s)));
            }
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
                OsString::from_vec(server_opts),
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
        let deadline = Instant::now() + Duration::from_secs(10);
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

    /// A client tool (`createdb`, `psql`) from the cluster's bin dir, else from PATH.
    fn client_tool(&self, name: &str) -> Result<PathBuf> {
        let local = self.bin_dir.join(name);
        if is_executable(&local) {
            return Ok(local);
        }
        find_on_path(name).ok_or_else(|| {
            anyhow!(
                "`{name}` not found in {} or on PATH; install the PostgreSQL client tools \
                 (e.g. `apt-get install postgresql-client`)",
                self.bin_dir.display()
            )
        })
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop_blocking()
    }
}

// Running the server's tools as the `postgres` OS user when we are root.
mod run_as;
use run_as::{check_reachable, run_as_user, shell_quote, Invocation, RunAs};

// The shared cluster of a test process, and standbys for replica tests.
#[cfg(feature = "test-support")]
mod test_support;
#[cfg(feature = "test-support")]
pub use test_support::{shared_test_cluster, shared_test_database};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn pg_ctl_stop(run_as: Option<&RunAs>, bin_dir: &Path, pgdata: &Path, mode: &str) -> Invocation {
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
fn stop_says_not_running(out: &Output) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr.contains("Is server running?")
        || stderr.contains("does not exist")
        // The pid file names a postmaster that is already gone (killed externally).
        || stderr.contains("No such process")
}

/// Finds the directory with `initdb` and `pg_ctl`: the cluster's own version under
/// /usr/lib/postgresql if it exists, else PATH, else the highest /usr/lib/postgresql/*/bin.
fn find_bin_dir(cluster_version: Option<&str>) -> Result<PathBuf> {
    let versioned_root = Path::new("/usr/lib/postgresql");
    if let Some(version) = cluster_version {
        let dir = versioned_root.join(version).join("bin");
        if has_server_bins(&dir) {
            return Ok(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.as_os_str().is_empty() || !has_server_bins(&dir) {
                continue;
            }
            // /usr/local/bin/pg_ctl may be a symlink into the real install; use the real
            // dir so that createdb/psql of the same version are found next to it.
            if let Ok(real) = std::fs::canonicalize(dir.join("pg_ctl")) {
                if let Some(real_dir) = real.parent() {
                    if has_server_bins(real_dir) {
                        return Ok(real_dir.to_path_buf());
                    }
                }
            }
            return Ok(dir);
        }
    }
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir(versioned_root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = name.to_str().and_then(parse_version) else {
                continue;
            };
            let bin = entry.path().join("bin");
            if has_server_bins(&bin) && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    best.map(|(_, dir)| dir)
        .ok_or_else(|| anyhow!(NOT_FOUND_MSG))
}

/// pg_ctl pastes -D and -l into a /bin/sh command line inside double quotes, so these
/// characters would be expanded by the shell and break the paths.
fn check_shell_safe(data_dir: &Path) -> Result<()> {
    if data_dir
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b'"' | b'$' | b'`' | b'\\'))
    {
        bail!(
            "data directory {} contains a character pg_ctl cannot handle (\", $, ` or \\); \
             choose another path with LEDGER_DATA_DIR",
            data_dir.display()
        );
    }
    Ok(())
}

fn parse_version(s: &str) -> Option<Vec<u64>> {
    s.split('.').map(|p| p.parse::<u64>().ok()).collect()
}

fn has_server_bins(dir: &Path) -> bool {
    is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl"))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn process_alive(pid: i32) -> bool {
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

fn dir_is_non_empty(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", dir.display())),
    }
}

fn remove_file_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("failed to remove {}", path.display())),
    }
}

/// Rotates an oversized log once and makes sure the file exists (so it can be chowned).
fn prepare_log_file(log_file: &Path) -> Result<()> {
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
fn log_tail_since(log_file: &Path, offset: u64) -> String {
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

fn is_port_conflict(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("could not bind")
}

fn pick_free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("failed to find a free TCP port on 127.0.0.1")?;
    Ok(listener
        .local_addr()
        .context("failed to read the bound port")?
        .port())
}

fn describe_output(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = format!("{}\n{}", stderr.trim(), stdout.trim());
    let text = text.trim();
    if text.is_empty() {
        "(no output)".to_owned()
    } else {
        text.to_owned()
    }
}

/// The superuser's password: read from the data directory, or generated
/// and saved there (0600). `true` with it when the cluster exists but has no
/// password yet — made with `trust` by an older version.
fn load_or_create_password(data_dir: &Path, cluster_exists: bool) -> Result<(String, bool)> {
    let path = data_dir.join(PASSWORD_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok((text.trim().to_owned(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness for a password: {e}"))?;
    let password = hex::encode(bytes);
    write_private_file(&path, &password)?;
    Ok((password, cluster_exists))
}

/// Write a file readable by its owner only, from its creation on.
fn write_private_file(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("failed to write {}", path.display()))
}

/// pg_hba.conf with every `trust` rule turned into `scram-sha-256`.
fn require_scram(rules: &str) -> String {
    rules
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let is_rule = fields
                .first()
                .is_some_and(|kind| matches!(*kind, "local" | "host" | "hostssl" | "hostnossl"));
            if is_rule && fields.last() == Some(&"trust") {
                let cut = line.rfind("trust").unwrap_or(line.len());
                format!("{}scram-sha-256", &line[..cut])
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Percent-encodes a database name for the path part of a URL.
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
    use super::run_as::{first_executable, SwitchUser};
    use super::*;

    #[test]
    fn trust_rules_become_password_rules_and_nothing_else_changes() {
        let rules = "# TYPE DATABASE USER ADDRESS METHOD\n\
                     # a comment ending in trust\n\
                     local   all all                trust\n\
                     host    all all 127.0.0.1/32   trust\n\
                     host    all all ::1/128        scram-sha-256\n";
        let changed = require_scram(rules);
        assert_eq!(
            changed,
            "# TYPE DATABASE USER ADDRESS METHOD\n\
             # a comment ending in trust\n\
             local   all all                scram-sha-256\n\
             host    all all 127.0.0.1/32   scram-sha-256\n\
             host    all all ::1/128        scram-sha-256\n"
        );
    }

    #[test]
    fn quoting_and_encoding() {
        assert_eq!(shell_quote(OsStr::new("a'b c")), b"'a'\\''b c'".to_vec());
        assert_eq!(percent_encode("my db/x"), "my%20db%2Fx");
        assert_eq!(parse_version("9.6"), Some(vec![9, 6]));
        assert_eq!(parse_version("15"), Some(vec![15]));
        assert_eq!(parse_version("x"), None);
    }

    /// The `su` fallback must deliver arguments intact (quotes, spaces) and switch user.
    #[test]
    fn su_fallback_quotes_arguments() -> Result<()> {
        let (Ok(Some(mut run_as)), Some(su)) =
            (run_as_user(), first_executable(&["/bin/su", "/usr/bin/su"]))
        else {
            return Ok(()); // not root, or no su here
        };
        run_as.switch = SwitchUser::Su(su);
        let args: Vec<OsString> = vec![
            "-c".into(),
            r#"printf '%s|%s' "$(id -un)" "$1""#.into(),
            "sh".into(),
            "it's a $HOME `x`".into(),
        ];
        let out = Invocation::new(Some(&run_as), Path::new("/bin/sh"), &args).output_blocking()?;
        assert!(out.status.success(), "{}", describe_output(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "postgres|it's a $HOME `x`"
        );
        Ok(())
    }
}
