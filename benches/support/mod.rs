//! What every benchmark shares: a PostgreSQL database to run on — the one
//! in `DATABASE_URL`, or a private durable cluster in a temp dir (the same
//! embedded module `ledger serve` uses) — and the formatting of figures.

#![allow(dead_code)]

use std::time::Duration;

use ledger::embedded_pg::{EmbeddedOptions, EmbeddedPostgres};

/// The database a benchmark runs on; [`stop`](Self::stop) it at the end.
pub struct BenchDatabase {
    pub url: String,
    cluster: Option<EmbeddedPostgres>,
    _dir: tempfile::TempDir,
}

impl BenchDatabase {
    /// `DATABASE_URL` when set, else database `name` on a private cluster.
    pub async fn open(name: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        }
        if let Ok(url) = std::env::var("DATABASE_URL") {
            if !url.is_empty() {
                return Ok(Self {
                    url,
                    cluster: None,
                    _dir: dir,
                });
            }
        }
        let pg = EmbeddedPostgres::start(EmbeddedOptions {
            data_dir: dir.path().join("pg"),
            ephemeral: false,
        })
        .await?;
        pg.create_database(name).await?;
        Ok(Self {
            url: pg.url(name),
            cluster: Some(pg),
            _dir: dir,
        })
    }

    /// Stop the private cluster, if one was started.
    pub async fn stop(self) -> anyhow::Result<()> {
        if let Some(mut pg) = self.cluster {
            pg.stop().await?;
        }
        Ok(())
    }
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// The `p` quantile (0…1) of `values`, sorting them.
pub fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort_unstable();
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values.get(index).copied().unwrap_or_default()
}
