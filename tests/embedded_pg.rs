//! Integration tests for the self-managed PostgreSQL cluster (`ledger::embedded_pg`).
//!
//! They need the PostgreSQL server binaries installed (as on the dev/CI machines) but no
//! running server. They talk to the server with `psql` from the cluster's own bin dir, so
//! they do not depend on the rest of the service.

use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ledger::embedded_pg::{
    shared_test_cluster, shared_test_database, EmbeddedOptions, EmbeddedPostgres,
};

/// A temp dir the `postgres` OS user can traverse (tempfile may make 0700 dirs; when the
/// tests run as root the server runs as `postgres`).
fn traversable_tempdir() -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir().context("failed to create temp dir")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .context("failed to chmod temp dir")?;
    Ok(dir)
}

/// Runs one SQL command with psql from the cluster's bin dir and returns trimmed stdout.
async fn psql(pg: &EmbeddedPostgres, db: &str, sql: &str) -> Result<String> {
    psql_as(pg, db, sql, Some(pg.password())).await
}

/// [`psql`] with `password` (none: no password at all).
async fn psql_as(
    pg: &EmbeddedPostgres,
    db: &str,
    sql: &str,
    password: Option<&str>,
) -> Result<String> {
    let mut command = tokio::process::Command::new(pg.bin_dir().join("psql"));
    command.env_remove("PGPASSWORD");
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let out = command
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-w",
        ])
        .args(["-p", &pg.port().to_string(), "-d", db, "-tAc", sql])
        .env_remove("PGOPTIONS")
        .env_remove("PGSSLMODE")
        .output()
        .await
        .context("failed to run psql")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(2)).is_ok()
}

fn options(dir: &Path) -> EmbeddedOptions {
    EmbeddedOptions {
        data_dir: dir.join("cluster"),
        ephemeral: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_query_restart_and_stop() -> Result<()> {
    let tmp = traversable_tempdir()?;

    // (1) fresh cluster: initdb + start, create a database, query it with a real client.
    let began = Instant::now();
    let mut pg = EmbeddedPostgres::start(options(tmp.path())).await?;
    eprintln!("first start (initdb + start): {:?}", began.elapsed());
    assert!(tmp.path().join("cluster/pgdata/PG_VERSION").exists());
    assert!(pg
        .url("ledger_it")
        .starts_with(&format!("postgres://postgres:{}@127.0.0.1:", pg.password())));
    assert!(pg
        .url("ledger_it")
        .ends_with(&format!(":{}/ledger_it", pg.port())));

    pg.create_database("ledger_it").await?;
    pg.create_database("ledger_it").await?; // "already exists" is fine
    assert_eq!(psql(&pg, "ledger_it", "select 1").await?, "1");
    psql(
        &pg,
        "ledger_it",
        "create table survivor (v int); insert into survivor values (42)",
    )
    .await?;

    // (2) stop, then start again on the same data dir: no second initdb, data survives.
    let first_port = pg.port();
    pg.stop().await?;
    pg.stop().await?; // idempotent
    assert!(
        !accepts_connections(first_port),
        "port {first_port} still open after stop"
    );

    let began = Instant::now();
    let mut pg = EmbeddedPostgres::start(options(tmp.path())).await?;
    eprintln!("restart on existing cluster: {:?}", began.elapsed());
    assert_eq!(
        psql(&pg, "ledger_it", "select v from survivor").await?,
        "42"
    );

    // (3) stop: the port no longer accepts connections.
    let port = pg.port();
    assert!(accepts_connections(port));
    pg.stop().await?;
    assert!(
        !accepts_connections(port),
        "port {port} still open after stop"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_replaces_a_server_left_running_by_a_crashed_run() -> Result<()> {
    let tmp = traversable_tempdir()?;
    let crashed = EmbeddedPostgres::start(options(tmp.path())).await?;
    let old_port = crashed.port();
    // Simulate a crash: the handle vanishes without stopping the server.
    std::mem::forget(crashed);
    assert!(accepts_connections(old_port));

    let mut pg = EmbeddedPostgres::start(options(tmp.path())).await?;
    assert!(
        !accepts_connections(old_port),
        "old server on {old_port} still running"
    );
    assert_eq!(psql(&pg, "postgres", "select 1").await?, "1");
    let port = pg.port();
    pg.stop().await?;
    assert!(!accepts_connections(port));
    Ok(())
}

fn mode_of(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .permissions()
        .mode()
        & 0o777)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_takes_only_its_generated_password_and_keeps_it_private() -> Result<()> {
    let tmp = traversable_tempdir()?;
    let pg = EmbeddedPostgres::start(options(tmp.path())).await?;
    let dir = tmp.path().join("cluster");
    assert_eq!(mode_of(&dir.join("postgres-password"))?, 0o600);
    assert_eq!(mode_of(&dir.join("sockets"))?, 0o700);
    assert_eq!(
        std::fs::read_to_string(dir.join("postgres-password"))?.trim(),
        pg.password()
    );
    assert!(pg.password().len() >= 32);
    assert_eq!(psql(&pg, "postgres", "select 1").await?, "1");
    let refused = psql_as(&pg, "postgres", "select 1", None)
        .await
        .expect_err("no password, no connection");
    assert!(refused.to_string().contains("password"), "{refused:#}");
    let wrong = psql_as(&pg, "postgres", "select 1", Some("guess"))
        .await
        .expect_err("a wrong password is refused");
    assert!(
        wrong.to_string().contains("password authentication failed"),
        "{wrong:#}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_cluster_of_an_older_version_is_switched_to_a_password() -> Result<()> {
    let tmp = traversable_tempdir()?;
    let dir = tmp.path().join("cluster");
    let mut pg = EmbeddedPostgres::start(options(tmp.path())).await?;
    pg.create_database("kept").await?;
    psql(
        &pg,
        "kept",
        "create table t (v int); insert into t values (7)",
    )
    .await?;
    pg.stop().await?;
    // What an older version left: trust everywhere, no password file.
    let hba = dir.join("pgdata/pg_hba.conf");
    let rules = std::fs::read_to_string(&hba)?.replace("scram-sha-256", "trust");
    std::fs::write(&hba, rules)?;
    std::fs::remove_file(dir.join("postgres-password"))?;

    let pg = EmbeddedPostgres::start(options(tmp.path())).await?;
    assert_eq!(psql(&pg, "kept", "select v from t").await?, "7");
    assert!(psql_as(&pg, "kept", "select 1", None).await.is_err());
    assert!(!std::fs::read_to_string(&hba)?
        .lines()
        .any(|line| !line.trim_start().starts_with('#') && line.trim_end().ends_with("trust")));
    assert_eq!(mode_of(&dir.join("postgres-password"))?, 0o600);
    Ok(())
}

#[tokio::test]
async fn drop_stops_the_server() -> Result<()> {
    let tmp = traversable_tempdir()?;
    let pg = EmbeddedPostgres::start(options(tmp.path())).await?;
    let port = pg.port();
    drop(pg);
    assert!(!accepts_connections(port));
    Ok(())
}

#[tokio::test]
async fn unreachable_data_dir_is_reported_clearly_when_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(()); // only root switches to the postgres user
    }
    let tmp = tempfile::tempdir()?;
    // 0700 and owned by root: the postgres user cannot enter it.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700))?;
    let err = match EmbeddedPostgres::start(options(tmp.path())).await {
        Ok(_) => bail!("start under a 0700 root-owned dir should fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains(&tmp.path().display().to_string()), "{err}");
    assert!(err.contains("LEDGER_DATA_DIR"), "{err}");
    Ok(())
}

#[tokio::test]
async fn shared_test_cluster_is_started_once() -> Result<()> {
    let a = shared_test_cluster().await?;
    let b = shared_test_cluster().await?;
    assert!(std::ptr::eq(a, b));
    let url = shared_test_database("shared test/1").await?;
    assert!(
        url.starts_with(&format!(
            "postgres://postgres:{}@127.0.0.1:{}/shared_test_1_",
            a.password(),
            a.port()
        )),
        "{url}"
    );
    let db = url.rsplit('/').next().unwrap_or_default().to_owned();
    assert_eq!(psql(a, &db, "select 1").await?, "1");
    Ok(())
}
