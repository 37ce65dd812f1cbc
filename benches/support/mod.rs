//! What every benchmark shares: a PostgreSQL database to run on — the one
//! in `DATABASE_URL`, or a private durable cluster in a temp dir (the same
//! embedded module `ledger serve` uses) — and the formatting of figures.

#![allow(dead_code)]

use std::time::Duration;

use ledger::config::Config;
use ledger::embedded_pg::{EmbeddedOptions, EmbeddedPostgres};

/// The admin token of every benchmark's service.
pub const ADMIN_TOKEN: &str = "bench-admin-0123456789abcdef0123456789abcdef";

/// A service on `database_url` bound to a free port, as `ledger serve`
/// runs it except where a benchmark must differ: it drives everything from
/// one address (no rate limits), its agents and subscribers run on this
/// host (loopback allowed, room for 1,000 admin subscribers).
pub fn service_config(database_url: &str, max_connections: u32) -> Config {
    let defaults = Config::default();
    Config {
        database_url: Some(database_url.to_string()),
        addr: "127.0.0.1:0".parse().expect("an address"),
        admin_token: Some(ADMIN_TOKEN.into()),
        max_connections,
        outbound: "127.0.0.0/8".parse().expect("a range"),
        limits: ledger::http::limits::Limits {
            registrations_per_minute: 0,
            auth_failures_per_minute: 0,
            commands_per_second: 0,
            ..Default::default()
        },
        hub: ledger::ws::HubConfig {
            max_subscribers: 4096,
            max_subscribers_per_token: 4096,
            ..defaults.hub.clone()
        },
        ..defaults
    }
}

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

/// Register a poll-mode workspace over HTTP; its id and token.
pub async fn register_poll_workspace(
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<(uuid::Uuid, String)> {
    let id = uuid::Uuid::new_v4();
    let body: serde_json::Value = client
        .post(format!("{base}/registry/register"))
        .json(&serde_json::json!({ "id": id, "delivery_mode": "poll" }))
        .send()
        .await?
        .json()
        .await?;
    let token = body["auth_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no token: {body}"))?;
    Ok((id, token.to_string()))
}
