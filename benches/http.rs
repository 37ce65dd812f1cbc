//! Command throughput through the HTTP API, next to a raw-INSERT baseline
//! measured in the same run on the same database.
//!
//! For 1, 16 and 64 concurrent clients: each client records a delegation
//! and completes it (two commands, each answered only once its events are
//! sequenced and projected — read-your-writes), for `BENCH_SECS` seconds.
//! The baseline is a single-row INSERT of an event-sized row into a plain
//! table, autocommit, at the same concurrency.
//!
//! Run: `cargo bench --bench http` (uses DATABASE_URL if set, otherwise a
//! private durable PostgreSQL in a temp dir). `BENCH_SECS` sets the
//! duration of each measurement (default 5).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger::app::Application;
use serde_json::json;
use sqlx::PgPool;
use support::ms;
use uuid::Uuid;

const CONCURRENCY: [usize; 3] = [1, 16, 64];

struct Measurement {
    operations: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Measurement {
    fn per_second(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    let database = support::BenchDatabase::open("ledger_bench").await?;
    let database_url = database.url.clone();
    let config = support::service_config(&database_url, 80);
    let app = Application::build(config).await?;
    let pool = app.pool().clone();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));

    sqlx::query(
        "create table if not exists bench_raw (id bigint generated always as identity primary key, \
         aggregate_type text not null, aggregate_id text not null, sequence bigint not null, \
         event_type text not null, payload json not null, metadata json not null)",
    )
    .execute(&pool)
    .await?;

    println!("Delegation Ledger HTTP benchmark ({seconds}s per measurement)");
    println!(
        "{:>7} | {:>12} {:>9} {:>9} | {:>12} {:>9} {:>9} | {:>6}",
        "clients", "commands/s", "p50 ms", "p99 ms", "raw ins/s", "p50 ms", "p99 ms", "ratio"
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()?;
    for clients in CONCURRENCY {
        let mut raw = raw_inserts(&pool, clients, duration).await?;
        let mut commands = http_commands(&client, &base, clients, duration).await?;
        println!(
            "{:>7} | {:>12.0} {:>9} {:>9} | {:>12.0} {:>9} {:>9} | {:>6.2}",
            clients,
            commands.per_second(),
            ms(commands.percentile(0.50)),
            ms(commands.percentile(0.99)),
            raw.per_second(),
            ms(raw.percentile(0.50)),
            ms(raw.percentile(0.99)),
            commands.per_second() / raw.per_second(),
        );
    }
    database.stop().await?;
    Ok(())
}

/// Record + complete delegations over HTTP from `clients` concurrent clients.
async fn http_commands(
    client: &reqwest::Client,
    base: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let mut workspaces = Vec::new();
    for _ in 0..clients + 1 {
        let id = Uuid::new_v4();
        let body: serde_json::Value = client
            .post(format!("{base}/registry/register"))
            .json(&json!({ "id": id, "delivery_mode": "poll" }))
            .send()
            .await?
            .json()
            .await?;
        let token = body["auth_token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no token: {body}"))?
            .to_string();
        workspaces.push((id, token));
    }
    let target = workspaces[clients].0;
    let base = Arc::new(base.to_string());
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for (source, token) in workspaces.into_iter().take(clients) {
        let client = client.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let delegation_id = Uuid::new_v4();
                let t = Instant::now();
                let response = client
                    .post(format!("{base}/workspaces/{source}/delegations/record"))
                    .bearer_auth(&token)
                    .json(&json!({ "target_id": target, "task": "benchmark task: summarise the quarterly report", "delegation_id": delegation_id }))
                    .send()
                    .await?;
                anyhow::ensure!(response.status().as_u16() == 202, "record: {}", response.status());
                latencies.push(t.elapsed());
                let t = Instant::now();
                let response = client
                    .post(format!("{base}/workspaces/{source}/delegations/{delegation_id}/update"))
                    .bearer_auth(&token)
                    .json(&json!({ "status": "completed", "response_preview": "the report says revenue grew" }))
                    .send()
                    .await?;
                anyhow::ensure!(response.status().as_u16() == 200, "update: {}", response.status());
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    Ok(Measurement {
        operations: latencies.len(),
        elapsed,
        latencies,
    })
}

/// Single-row INSERTs of an event-sized row, autocommit, from `clients`
/// concurrent connections.
async fn raw_inserts(
    pool: &PgPool,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let payload = json!({ "DelegationSent": {
        "delegation_id": Uuid::new_v4(), "source_id": Uuid::new_v4(), "target_id": Uuid::new_v4(),
        "task": "benchmark task: summarise the quarterly report", "task_preview": "benchmark task",
        "origin": "recorded", "idempotency_key": null, "actor": { "kind": "workspace", "id": Uuid::new_v4() },
        "at": "2026-11-22T00:00:00Z" } });
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let pool = pool.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let aggregate_id = Uuid::new_v4().to_string();
            let mut sequence = 0i64;
            while Instant::now() < deadline {
                sequence += 1;
                let t = Instant::now();
                sqlx::query(
                    "insert into bench_raw (aggregate_type, aggregate_id, sequence, event_type, payload, metadata) \
                     values ('delegation', $1, $2, 'DelegationSent', $3, '{}')",
                )
                .bind(&aggregate_id)
                .bind(sequence)
                .bind(&payload)
                .execute(&pool)
                .await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    Ok(Measurement {
        operations: latencies.len(),
        elapsed,
        latencies,
    })
}
