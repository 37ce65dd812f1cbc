//! Which PostgreSQL the service uses, and its schema.
//!
//! With `DATABASE_URL` the service uses that database. Without it, the
//! service starts its own private cluster under the data directory (so one
//! command runs it on a fresh machine) and stops it on shutdown.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::embedded_pg::{EmbeddedOptions, EmbeddedPostgres};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Name of the database inside the embedded cluster.
pub const EMBEDDED_DATABASE: &str = "ledger";

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
    max_connections: u32,
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
    let pool = connect(&url, max_connections).await?;
    migrate(&pool).await?;
    Ok(Database {
        pool,
        url,
        embedded,
    })
}

/// A pool on `url`.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options =
        PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid PostgreSQL URL")?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .with_context(|| format!("could not connect to PostgreSQL at {}", redact(url)))
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
