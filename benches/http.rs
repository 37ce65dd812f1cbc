//! Command throughput through the HTTP API, as a ratio to a raw single-row
//! INSERT measured in the same run on the same database.
//!
//! Scenarios, each at 1, 16 and 64 concurrent clients for `BENCH_SECS`
//! seconds (every command answered only once its events are sequenced and
//! projected — read-your-writes):
//!
//! * **record** — `POST …/delegations/record` with a fresh delegation id:
//!   one command, one event;
//! * **record + complete** — that, then `POST …/update` to `completed`: two
//!   commands on one aggregate, the second reading what the first wrote;
//! * **delegate (poll)** — `POST …/delegate` to a poll-mode target: a
//!   managed delegation the dispatcher hands to the target's inbox.
//!
//! The baseline is what PostgreSQL does for one event-shaped row with
//! nothing else around it: an autocommit INSERT into a table with an
//! identity key and an `xid8` column (the two the event store has),
//! prepared, from the same number of connections. It runs right before
//! and right after each ledger measurement; the ratio is against their
//! mean, so drift in the machine (autovacuum, checkpoints, a neighbour)
//! shows as a gap between the two rather than as a wrong ratio.
//!
//! Run: `cargo bench --bench http` (uses DATABASE_URL if set, otherwise a
//! private durable PostgreSQL in a temp dir). `BENCH_SECS` sets each
//! measurement's duration (default 5); `BENCH_SCENARIOS` picks scenarios
//! (comma-separated: record, record+complete, delegate; default all).
//!
//! Where the time goes: with `BENCH_PROFILE=1`, after each ledger
//! measurement the benchmark prints the process's own CPU time per command
//! (server and its in-process HTTP clients) and, when the database has
//! `pg_stat_statements` loaded (`shared_preload_libraries`), the statements
//! that took the most database time, per command.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger::app::Application;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use support::{ms, percentile};
use uuid::Uuid;

/// Concurrent clients per measurement (`BENCH_CLIENTS`, comma-separated,
/// overrides).
const CONCURRENCY: [usize; 3] = [1, 16, 64];

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Record,
    RecordComplete,
    Delegate,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Self::Record, Self::RecordComplete, Self::Delegate];

    fn name(self) -> &'static str {
        match self {
            Self::Record => "record",
            Self::RecordComplete => "record+complete",
            Self::Delegate => "delegate",
        }
    }
}

struct Measurement {
    operations: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Measurement {
    fn per_second(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }

    fn p(&mut self, quantile: f64) -> String {
        ms(percentile(&mut self.latencies, quantile))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    let scenarios: Vec<Scenario> = match std::env::var("BENCH_SCENARIOS") {
        Ok(list) if !list.is_empty() => Scenario::ALL
            .into_iter()
            .filter(|s| list.split(',').any(|name| name.trim() == s.name()))
            .collect(),
        _ => Scenario::ALL.to_vec(),
    };
    let concurrency: Vec<usize> = match std::env::var("BENCH_CLIENTS") {
        Ok(list) if !list.is_empty() => list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect(),
        _ => CONCURRENCY.to_vec(),
    };
    let database = support::BenchDatabase::open("ledger_bench").await?;
    let app = Application::build(support::service_config(&database.url, 80)).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    let raw_pool = PgPoolOptions::new()
        .max_connections(64)
        .connect(&database.url)
        .await?;
    sqlx::query(
        "create table if not exists bench_raw (id bigint generated always as identity primary key, \
         tx_id xid8 not null default pg_current_xact_id(), aggregate_type text not null, \
         aggregate_id text not null, sequence bigint not null, event_type text not null, \
         payload json not null, metadata json not null)",
    )
    .execute(&raw_pool)
    .await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()?;

    println!("Delegation Ledger HTTP benchmark ({seconds}s per measurement)");
    println!(
        "{:<16} {:>7} | {:>10} {:>8} {:>8} | {:>15} {:>8} | {:>6}",
        "scenario", "clients", "commands/s", "p50 ms", "p99 ms", "raw INSERT/s", "p99 ms", "ratio"
    );
    let profile = std::env::var("BENCH_PROFILE").is_ok_and(|v| v == "1")
        && sqlx::query("create extension if not exists pg_stat_statements")
            .execute(&raw_pool)
            .await
            .is_ok();
    for scenario in scenarios {
        for &clients in &concurrency {
            let mut before = raw_inserts(&raw_pool, clients, duration).await?;
            if profile {
                sqlx::query("select pg_stat_statements_reset()")
                    .execute(&raw_pool)
                    .await?;
            }
            let cpu_before = process_cpu();
            let mut ledger = commands(&client, &base, scenario, clients, duration).await?;
            let cpu = process_cpu().saturating_sub(cpu_before);
            let report = match profile {
                true => Some(profile_report(&raw_pool, ledger.operations, cpu).await?),
                false => None,
            };
            let after = raw_inserts(&raw_pool, clients, duration).await?;
            let raw_rate = (before.per_second() + after.per_second()) / 2.0;
            println!(
                "{:<16} {:>7} | {:>10.0} {:>8} {:>8} | {:>6.0} … {:>6.0} {:>8} | {:>6.2}",
                scenario.name(),
                clients,
                ledger.per_second(),
                ledger.p(0.50),
                ledger.p(0.99),
                before.per_second(),
                after.per_second(),
                before.p(0.99),
                ledger.per_second() / raw_rate,
            );
            if let Some(report) = report {
                print!("{report}");
            }
        }
    }
    raw_pool.close().await;
    database.stop().await?;
    Ok(())
}

/// A registered workspace and its token.
struct Workspace {
    id: Uuid,
    token: String,
}

async fn register(client: &reqwest::Client, base: &str) -> anyhow::Result<Workspace> {
    let (id, token) = support::register_poll_workspace(client, base).await?;
    Ok(Workspace { id, token })
}

/// `scenario` from `clients` concurrent clients, each its own workspace,
/// all delegating to one poll-mode target.
async fn commands(
    client: &reqwest::Client,
    base: &str,
    scenario: Scenario,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let target = register(client, base).await?.id;
    let mut sources = Vec::with_capacity(clients);
    for _ in 0..clients {
        sources.push(register(client, base).await?);
    }
    let base = Arc::new(base.to_string());
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for source in sources {
        let client = client.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let post = |path: String, body: serde_json::Value| {
                client
                    .post(format!("{base}/workspaces/{}/{path}", source.id))
                    .bearer_auth(&source.token)
                    .json(&body)
                    .send()
            };
            while Instant::now() < deadline {
                let delegation_id = Uuid::new_v4();
                let t = Instant::now();
                let response = match scenario {
                    Scenario::Delegate => {
                        post(
                            "delegate".into(),
                            json!({ "target_id": target, "task": "benchmark task: summarise the quarterly report" }),
                        )
                        .await?
                    }
                    Scenario::Record | Scenario::RecordComplete => {
                        post(
                            "delegations/record".into(),
                            json!({ "target_id": target, "task": "benchmark task: summarise the quarterly report", "delegation_id": delegation_id }),
                        )
                        .await?
                    }
                };
                anyhow::ensure!(
                    response.status().is_success(),
                    "{}: {}",
                    scenario.name(),
                    response.status()
                );
                latencies.push(t.elapsed());
                if scenario == Scenario::RecordComplete {
                    let t = Instant::now();
                    let response = post(
                        format!("delegations/{delegation_id}/update"),
                        json!({ "status": "completed", "response_preview": "the report says revenue grew" }),
                    )
                    .await?;
                    anyhow::ensure!(
                        response.status().is_success(),
                        "update: {}",
                        response.status()
                    );
                    latencies.push(t.elapsed());
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Measurement {
        operations: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    })
}

/// Single-row autocommit INSERTs of an event-shaped row from `clients`
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
    Ok(Measurement {
        operations: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    })
}

/// CPU time (user + system) this process has used so far.
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The process's CPU per command and the database's top statements (by
/// total execution time) per command since the last reset.
async fn profile_report(pool: &PgPool, commands: usize, cpu: Duration) -> anyhow::Result<String> {
    use std::fmt::Write;
    let mut report = String::new();
    let per = |total: f64| total / commands.max(1) as f64;
    writeln!(
        report,
        "    ledger process CPU: {:.0} µs per command (server + in-process clients)",
        per(cpu.as_secs_f64() * 1e6)
    )?;
    let rows: Vec<(String, i64, f64)> = sqlx::query_as(
        "select left(regexp_replace(query, '\\s+', ' ', 'g'), 90), calls, total_exec_time \
         from pg_stat_statements where query not like '%pg_stat_statements%' \
         order by total_exec_time desc limit 12",
    )
    .fetch_all(pool)
    .await?;
    let total: f64 = sqlx::query_scalar(
        "select coalesce(sum(total_exec_time), 0)::float8 from pg_stat_statements \
         where query not like '%pg_stat_statements%'",
    )
    .fetch_one(pool)
    .await?;
    writeln!(
        report,
        "    database execution: {:.0} µs per command in all; the top statements:",
        per(total * 1000.0)
    )?;
    for (query, calls, time) in rows {
        writeln!(
            report,
            "    {:>7.1} µs {:>6.2} calls/command  {query}",
            per(time * 1000.0),
            per(calls as f64),
        )?;
    }
    Ok(report)
}
