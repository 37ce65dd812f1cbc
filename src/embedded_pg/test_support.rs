//! What tests and benchmarks need beyond the service's own cluster
//! management, compiled only with the `test-support` feature (which the
//! crate's own tests and benches turn on; `ledger serve` never carries it):
//!
//! * one shared, ephemeral cluster per test process, started on first use,
//!   stopped by an `atexit` hook, with a sweep of clusters that killed test
//!   processes left behind;
//! * a database per test on it;
//! * a streaming standby of any embedded cluster, for the read-replica
//!   tests.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::auth::{write_private_file, PASSWORD_FILE};
use super::binaries::find_bin_dir;
use super::data_dir::check_shell_safe;
use super::leftover::process_alive;
use super::run_as::{describe_output, run_as_user, Invocation, RunAs};
use super::stop::pg_ctl_stop;
use super::{EmbeddedOptions, EmbeddedPostgres, PG_USER};

/// Prefix of the temp dirs made by [`shared_test_cluster`] (used to sweep ones left by killed runs).
const TEST_DIR_PREFIX: &str = "ledger-embedded-pg-";

impl EmbeddedPostgres {
    /// A streaming standby of this cluster under `data_dir`: a base backup
    /// taken with `pg_basebackup -R` (which also writes the standby's
    /// connection back to this server), started on a free port with the
    /// same superuser password. It serves read-only queries and replays
    /// this server's WAL until stopped.
    ///
    /// Why: the read-replica tests need a real standby of the primary they
    /// write to; it is managed (started, stopped, dropped) like any
    /// embedded cluster.
    pub async fn start_standby(&self, data_dir: &Path) -> Result<EmbeddedPostgres> {
        if self.stopped.load(Ordering::SeqCst) {
            bail!("cannot back up a stopped embedded PostgreSQL server");
        }
        check_shell_safe(data_dir)?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("failed to create {}", data_dir.display()))?;
        if let Some(ra) = &self.run_as {
            ra.give(data_dir)?;
        }
        let basebackup = self.client_tool("pg_basebackup")?;
        let port = self.port.to_string();
        let pgdata = data_dir.join("pgdata");
        let args: Vec<OsString> = vec![
            "-D".into(),
            pgdata.clone().into(),
            "-R".into(),
            "-X".into(),
            "stream".into(),
            "-c".into(),
            "fast".into(),
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.into(),
            "-U".into(),
            PG_USER.into(),
            "-w".into(),
        ];
        let out = Invocation::new(self.run_as.as_ref(), &basebackup, &args)
            .output_with_password(&self.password)
            .await?;
        if !out.status.success() {
            bail!(
                "pg_basebackup from 127.0.0.1:{} failed ({}): {}",
                self.port,
                out.status,
                describe_output(&out)
            );
        }
        write_private_file(&data_dir.join(PASSWORD_FILE), &self.password)?;
        EmbeddedPostgres::start(EmbeddedOptions {
            data_dir: data_dir.to_path_buf(),
            ephemeral: true,
        })
        .await
    }
}

struct SharedCluster {
    pg: EmbeddedPostgres,
    /// The temp dir that holds the cluster; removed at exit after the server stopped.
    dir: PathBuf,
}

static SHARED: tokio::sync::OnceCell<SharedCluster> = tokio::sync::OnceCell::const_new();

/// The PostgreSQL cluster of the current test process, started on first use.
///
/// It lives in a fresh temp dir, is started once per process (lazily, behind a tokio
/// `OnceCell`, safe to call from many tests and runtimes at once), and is stopped by a
/// `libc::atexit` hook when the process exits (the Rust test harness, libtest and nextest,
/// leaves through `exit`, which runs atexit handlers); the temp dir is then removed.
///
/// Why: tests need a real PostgreSQL without any machine setup, and one `initdb` per
/// test *process* (not per test) keeps the suite fast. Use it as
/// `shared_test_cluster().await?.url("mydb")` after `create_database("mydb")`, or simply
/// [`shared_test_database`], which gives every test its own fresh database.
///
/// The cluster is `ephemeral` (no fsync) and lives in `$TMPDIR/ledger-embedded-pg-PID-…`.
/// It is stopped and its directory removed when the process exits normally (atexit); a
/// test process that is killed leaves it behind, and the next call of this function in
/// any later test process stops and removes such leftovers whose owner is dead.
/// Note that runners that use one process per test (cargo nextest) pay one initdb per test.
pub async fn shared_test_cluster() -> Result<&'static EmbeddedPostgres> {
    let shared = SHARED
        .get_or_try_init(|| async {
            sweep_abandoned_test_clusters().await;
            register_exit_hook()?;
            let dir = make_test_dir()?;
            let started = EmbeddedPostgres::start(EmbeddedOptions {
                data_dir: dir.clone(),
                ephemeral: true,
            })
            .await;
            match started {
                Ok(pg) => Ok(SharedCluster { pg, dir }),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    Err(e.context("failed to start the shared test PostgreSQL cluster"))
                }
            }
        })
        .await?;
    Ok(&shared.pg)
}

/// Creates a fresh, uniquely named database on [`shared_test_cluster`] and returns its URL.
///
/// Why: tests that share one cluster must not see each other's rows; a database per test
/// is the cheapest isolation. `hint` (e.g. the test name) makes the name readable in logs;
/// it is sanitized to `[a-z0-9_]` and shortened.
pub async fn shared_test_database(hint: &str) -> Result<String> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let pg = shared_test_cluster().await?;
    let mut base: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) {
        base.insert_str(0, "db_");
    }
    let name = format!("{base}_{}", NEXT.fetch_add(1, Ordering::SeqCst));
    pg.create_database(&name).await?;
    Ok(pg.url(&name))
}

fn register_exit_hook() -> Result<()> {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    static OK: AtomicBool = AtomicBool::new(false);
    REGISTERED.call_once(|| {
        // SAFETY: registering a plain `extern "C" fn()` has no preconditions.
        let rc = unsafe { libc::atexit(stop_shared_cluster_at_exit) };
        OK.store(rc == 0, Ordering::SeqCst);
    });
    if OK.load(Ordering::SeqCst) {
        Ok(())
    } else {
        bail!("could not register an atexit hook to stop the shared test PostgreSQL cluster")
    }
}

extern "C" fn stop_shared_cluster_at_exit() {
    // Never unwind across the FFI boundary.
    let _ = std::panic::catch_unwind(|| {
        if let Some(shared) = SHARED.get() {
            shared.pg.stop_blocking_shared(false);
            if shared.pg.stopped.load(Ordering::SeqCst) {
                let _ = std::fs::remove_dir_all(&shared.dir);
            }
        }
    });
}

fn make_test_dir() -> Result<PathBuf> {
    let tmp = std::env::temp_dir();
    let pid = std::process::id();
    for attempt in 0..100u32 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = tmp.join(format!("{TEST_DIR_PREFIX}{pid}-{nanos:09}{attempt}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                // The postgres OS user (when we are root) must traverse it.
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                    .with_context(|| format!("failed to chmod {}", dir.display()))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("failed to create {}", dir.display())),
        }
    }
    bail!("could not create a unique temp dir under {}", tmp.display())
}

/// Best effort: stop and delete test clusters whose owning test process is gone.
async fn sweep_abandoned_test_clusters() {
    let tmp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return;
    };
    let me = std::process::id();
    let mut tools: Option<(PathBuf, Option<RunAs>)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEST_DIR_PREFIX)) else {
            continue;
        };
        let Some(owner) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if owner <= 0 || owner as u32 == me || process_alive(owner) {
            continue;
        }
        let dir = entry.path();
        let pgdata = dir.join("pgdata");
        if pgdata.join("postmaster.pid").exists() {
            if tools.is_none() {
                match (find_bin_dir(None), run_as_user()) {
                    (Ok(bin), Ok(run_as)) => tools = Some((bin, run_as)),
                    _ => return,
                }
            }
            if let Some((bin, run_as)) = &tools {
                let _ = pg_ctl_stop(run_as.as_ref(), bin, &pgdata, "immediate")
                    .output()
                    .await;
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::info!(dir = %dir.display(), "removed test cluster abandoned by a dead process")
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove abandoned test cluster")
            }
        }
    }
}
