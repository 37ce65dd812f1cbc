//! Read throughput from the primary and from a streaming standby, as a
//! ratio to the same lookup run raw (one prepared SELECT by primary key on
//! the `delegations` view) in the same run on the same primary.
//!
//! The benchmark starts its own durable primary, takes a base backup of
//! it (`pg_basebackup -R`) and starts the standby; one service reads from
//! the primary, another (same database) from the standby. Each serves
//! `GET /workspaces/{id}/delegations/{delegation_id}` to `BENCH_CLIENTS`
//! concurrent clients (default 16) for `BENCH_SECS` seconds (default 5):
//! without a token, and on the standby also with `X-Ledger-Min-Position`
//! set to the last write's position (already replayed: the cost of the
//! check, not of a wait).
//!
//! On one machine the standby shares the CPU with the primary and the
//! services, so the figures show what the replica path costs per read, not
//! the capacity a standby on its own machine adds.
//!
//! Run: `cargo bench --bench reads`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger::app::Application;
use ledger::embedded_pg::{EmbeddedOptions, EmbeddedPostgres};
use sqlx::PgPool;
use support::{ms, percentile};
use uuid::Uuid;

/// Delegations seeded and read back at random.
const SEEDED: usize = 500;

struct Measured {
    reads: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.reads as f64 / self.elapsed.as_secs_f64()
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = Duration::from_secs(env_number("BENCH_SECS", 5));
    let clients = env_number("BENCH_CLIENTS", 16) as usize;
    let dir = tempfile::tempdir()?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    let mut primary = EmbeddedPostgres::start(EmbeddedOptions {
        data_dir: dir.path().join("primary"),
        ephemeral: false,
    })
    .await?;
    primary.create_database("bench").await?;
    let primary_url = primary.url("bench");
    let migrate = ledger::db::connect(&primary_url, 1).await?;
    ledger::db::migrate(&migrate).await?;
    migrate.close().await;
    let mut standby = primary.start_standby(&dir.path().join("standby")).await?;

    let on_primary = Application::build(support::service_config(&primary_url, 40)).await?;
    let mut config = support::service_config(&primary_url, 40);
    config.dispatch.enabled = false;
    config.reads.replica_urls = vec![standby.url("bench")];
    let on_replica = Application::build(config).await?;
    let primary_base = format!("http://127.0.0.1:{}", on_primary.port());
    let replica_base = format!("http://127.0.0.1:{}", on_replica.port());
    let pool = on_primary.pool().clone();
    tokio::spawn(on_primary.run_until(std::future::pending()));
    tokio::spawn(on_replica.run_until(std::future::pending()));

    let http = reqwest::Client::new();
    let (source, token) = support::register_poll_workspace(&http, &primary_base).await?;
    let (target, _) = support::register_poll_workspace(&http, &primary_base).await?;
    let mut ids = Vec::with_capacity(SEEDED);
    let mut last_position = 0;
    for _ in 0..SEEDED {
        let id = Uuid::new_v4();
        let answer: serde_json::Value = http
            .post(format!(
                "{primary_base}/workspaces/{source}/delegations/record"
            ))
            .bearer_auth(&token)
            .json(
                &serde_json::json!({ "delegation_id": id, "target_id": target, "task": "read me" }),
            )
            .send()
            .await?
            .json()
            .await?;
        last_position = answer["position"].as_i64().unwrap_or(last_position);
        ids.push(id);
    }
    let ids = Arc::new(ids);
    // The standby has replayed the seed once a read with its token passes.
    let caught_up = http
        .get(format!(
            "{replica_base}/workspaces/{source}/delegations/{}",
            ids[0]
        ))
        .bearer_auth(&token)
        .header("X-Ledger-Min-Position", last_position.to_string())
        .send()
        .await?;
    anyhow::ensure!(
        caught_up.status().is_success(),
        "the standby did not catch up"
    );

    println!(
        "reads: GET one delegation, {clients} clients, {} s each, {SEEDED} delegations",
        seconds.as_secs()
    );
    println!(
        "{:<34} {:>10} {:>8} {:>9} {:>9}",
        "path", "reads/s", "ratio", "p50 ms", "p99 ms"
    );
    let before = raw(&pool, &ids, clients, seconds).await?;
    let cases: [(&str, &str, Option<i64>); 3] = [
        ("service, primary", primary_base.as_str(), None),
        ("service, standby", replica_base.as_str(), None),
        (
            "service, standby + min_position",
            replica_base.as_str(),
            Some(last_position),
        ),
    ];
    let mut results = Vec::new();
    for (name, base, position) in cases {
        let measured = service(
            &http, base, source, &token, &ids, position, clients, seconds,
        )
        .await?;
        results.push((name, measured));
    }
    let after = raw(&pool, &ids, clients, seconds).await?;
    let baseline = (before.per_second() + after.per_second()) / 2.0;
    let print = |name: &str, measured: &mut Measured| {
        println!(
            "{:<34} {:>10.0} {:>8.2} {:>9} {:>9}",
            name,
            measured.per_second(),
            measured.per_second() / baseline,
            ms(percentile(&mut measured.latencies, 0.5)),
            ms(percentile(&mut measured.latencies, 0.99)),
        );
    };
    let (mut before, mut after) = (before, after);
    print("raw SELECT on the primary (before)", &mut before);
    for (name, measured) in &mut results {
        print(name, measured);
    }
    print("raw SELECT on the primary (after)", &mut after);

    standby.stop().await?;
    primary.stop().await?;
    Ok(())
}

/// The lookup alone: a prepared SELECT by key on the primary.
async fn raw(
    pool: &PgPool,
    ids: &Arc<Vec<Uuid>>,
    clients: usize,
    seconds: Duration,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let pool = pool.clone();
        let ids = ids.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut i = client;
            while started.elapsed() < seconds {
                let at = Instant::now();
                let _: Option<String> =
                    sqlx::query_scalar("select status from delegations where delegation_id = $1")
                        .bind(ids[i % ids.len()])
                        .fetch_optional(&pool)
                        .await?;
                latencies.push(at.elapsed());
                i += 7;
            }
            anyhow::Ok(latencies)
        });
    }
    collect(tasks, started).await
}

#[allow(clippy::too_many_arguments)]
async fn service(
    http: &reqwest::Client,
    base: &str,
    source: Uuid,
    token: &str,
    ids: &Arc<Vec<Uuid>>,
    position: Option<i64>,
    clients: usize,
    seconds: Duration,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (http, ids) = (http.clone(), ids.clone());
        let (base, token) = (base.to_string(), token.to_string());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut i = client;
            while started.elapsed() < seconds {
                let at = Instant::now();
                let mut request = http
                    .get(format!(
                        "{base}/workspaces/{source}/delegations/{}",
                        ids[i % ids.len()]
                    ))
                    .bearer_auth(&token);
                if let Some(position) = position {
                    request = request.header("X-Ledger-Min-Position", position.to_string());
                }
                let response = request.send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "read failed: {}",
                    response.status()
                );
                response.bytes().await?;
                latencies.push(at.elapsed());
                i += 7;
            }
            anyhow::Ok(latencies)
        });
    }
    collect(tasks, started).await
}

async fn collect(
    mut tasks: tokio::task::JoinSet<anyhow::Result<Vec<Duration>>>,
    started: Instant,
) -> anyhow::Result<Measured> {
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    Ok(Measured {
        reads: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    })
}
