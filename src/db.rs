//! Which PostgreSQL the service uses, and its schema.
//!
//! With `DATABASE_URL` the service uses that database. Without it, the
//! service starts its own private cluster under the data directory (so one
//! command runs it on a fresh machine) and stops it on shutdown.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::embedded_pg::{EmbeddedOptions, EmbeddedPostgres};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Name of the database inside the embedded cluster.
pub const EMBEDDED_DATABASE: &str = "ledger";

/// How the pool behaves. The defaults suit the CLI (a couple of
/// connections, no statement bound); `serve` bounds both the wait for a
/// connection and every statement, so a stuck database or a runaway query
/// turns into an error instead of requests piling up.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// Longest wait for a free connection.
    pub acquire_timeout: Duration,
    /// `statement_timeout` on every connection; `None`: unbounded.
    pub statement_timeout: Option<Duration>,
    /// `idle_in_transaction_session_timeout` on every connection: a
    /// transaction of ours left open (a bug, a hung task) is ended by the
    /// server instead of holding the log's horizon back.
    pub idle_in_transaction_timeout: Duration,
}

impl PoolSettings {
    /// A small pool without a statement bound (CLI commands).
    pub fn small() -> Self {
        Self {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(30),
            statement_timeout: None,
            idle_in_transaction_timeout: Duration::from_secs(60),
        }
    }
}

/// A connected database, and the embedded cluster behind it if any (stop
/// it last, after everything that uses the pool).
pub struct Database {
    pub pool: PgPool,
    pub url: String,
    pub embedded: Option<EmbeddedPostgres>,
}

/// Connect to `database_url`, or start the embedded cluster under
/// `data_dir`; then migrate.
pub async fn open(
    database_url: Option<&str>,
    data_dir: &Path,
    settings: &PoolSettings,
) -> anyhow::Result<Database> {
    let (url, embedded) = match database_url {
        Some(url) => (url.to_string(), None),
        None => {
            let cluster = EmbeddedPostgres::start(EmbeddedOptions {
                data_dir: data_dir.join("postgres"),
                ephemeral: false,
            })
            .await
            .context("could not start the embedded PostgreSQL (set DATABASE_URL to use a running server instead)")?;
            cluster.create_database(EMBEDDED_DATABASE).await?;
            (cluster.url(EMBEDDED_DATABASE), Some(cluster))
        }
    };
    migrate_url(&url).await?;
    let pool = connect_with(&url, settings).await?;
    Ok(Database {
        pool,
        url,
        embedded,
    })
}

/// A pool on `url` with `max_connections` and no statement bound.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    connect_with(
        url,
        &PoolSettings {
            max_connections,
            ..PoolSettings::small()
        },
    )
    .await
}

/// A pool on `url` as `settings` say.
pub async fn connect_with(url: &str, settings: &PoolSettings) -> anyhow::Result<PgPool> {
    pool_options(settings)
        .connect_with(connect_options(url, settings)?)
        .await
        .with_context(|| format!("could not connect to PostgreSQL at {}", redact(url)))
}

/// A pool on `url` that connects on first use: a server that is down now
/// (a read replica being rebuilt) does not stop the service from starting.
pub fn connect_lazy_with(url: &str, settings: &PoolSettings) -> anyhow::Result<PgPool> {
    Ok(pool_options(settings).connect_lazy_with(connect_options(url, settings)?))
}

fn pool_options(settings: &PoolSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
}

fn connect_options(url: &str, settings: &PoolSettings) -> anyhow::Result<PgConnectOptions> {
    let mut options = PgConnectOptions::from_str(url)
        .context("the database URL is not a valid PostgreSQL URL")?;
    if let Some(timeout) = settings.statement_timeout {
        options = options.options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
    }
    Ok(options.options([(
        "idle_in_transaction_session_timeout",
        format!("{}ms", settings.idle_in_transaction_timeout.as_millis()),
    )]))
}

/// Migrate on a connection of its own: a migration may run longer than a
/// serving pool lets a statement run.
async fn migrate_url(url: &str) -> anyhow::Result<()> {
    let pool = connect(url, 1).await?;
    let migrated = migrate(&pool).await;
    pool.close().await;
    migrated
}

/// Apply every migration not yet applied.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("database migration failed")
}

/// `url` with any password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}
