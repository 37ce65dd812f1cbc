//! The live feed: event-to-subscriber latency under a steady command load
//! with 1, 100 and 1,000 subscribers, and replay throughput from position 0
//! over 100,000 events (one message a frame, and `batch=true`: a JSON array
//! per replay page) next to the raw speed of reading the same rows with one
//! SQL query, in the same run.
//!
//! Latency is measured from the command's timestamp (taken by the service
//! when the request arrives, carried on the message as `at`) to the moment
//! the subscriber has the message: it covers the command, sequencing, the
//! hub and delivery.
//!
//! Run: `cargo bench --bench ws` (DATABASE_URL if set, else a private
//! durable PostgreSQL). `BENCH_SECS` (default 5) sets the load duration;
//! `BENCH_REPLAY_EVENTS` (default 100000) the replay size;
//! `BENCH_REPLAY_CACHE` (default 131072) the hub's replay cache, so by
//! default the replay is served from memory — 0 reads it from the log.

mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use ledger::app::Application;
use ledger::config::Config;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const SUBSCRIBERS: [usize; 3] = [1, 100, 1000];
/// Commands per second of the steady load.
const LOAD_RATE: u64 = 50;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    raise_fd_limit();
    let seconds: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let replay_events: i64 = std::env::var("BENCH_REPLAY_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let database = support::BenchDatabase::open("ledger_bench_ws").await?;
    let database_url = database.url.clone();
    let admin = support::ADMIN_TOKEN.to_string();
    let mut config = support::service_config(&database_url, Config::default().max_connections);
    // BENCH_REPLAY_CACHE: the hub's replay cache, by default large enough
    // to hold the replayed history (0 measures a replay read from the log).
    config.hub.replay_cache = std::env::var("BENCH_REPLAY_CACHE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(131_072);
    let replay_cache = config.hub.replay_cache;
    let app = Application::build(config).await?;
    let pool = app.pool().clone();
    let port = app.port();
    tokio::spawn(app.run_until(std::future::pending()));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let (source, token) = support::register_poll_workspace(&client, &base).await?;
    let (target, _) = support::register_poll_workspace(&client, &base).await?;

    println!("Delegation Ledger websocket benchmark");
    println!(
        "latency, command → subscriber, steady load of {LOAD_RATE} commands/s for {seconds}s:"
    );
    println!(
        "{:>11} | {:>9} {:>9} {:>9} | {:>12}",
        "subscribers", "messages", "p50 ms", "p99 ms", "deliveries/s"
    );
    for subscribers in SUBSCRIBERS {
        let (mut latencies, elapsed) = latency_run(
            &client,
            &base,
            port,
            &admin,
            subscribers,
            (source, &token),
            target,
            seconds,
        )
        .await?;
        latencies.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{:>11} | {:>9} {:>9.2} {:>9.2} | {:>12.0}",
            subscribers,
            latencies.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.len() as f64 / elapsed.as_secs_f64()
        );
    }

    let (ws_rate, ws_batch_rate, sql_rate, count) =
        replay_run(&pool, port, &admin, source, target, replay_events).await?;
    println!(
        "replay from position 0 over {count} log entries ({replay_events} broadcast events added, \
         replay cache {replay_cache} messages):"
    );
    println!("  raw SQL, one query:             {sql_rate:>10.0} rows/s");
    println!(
        "  websocket, one message a frame: {ws_rate:>10.0} messages/s   ratio {:.2}",
        ws_rate / sql_rate
    );
    println!(
        "  websocket, batch=true:          {ws_batch_rate:>10.0} messages/s   ratio {:.2}",
        ws_batch_rate / sql_rate
    );
    database.stop().await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn latency_run(
    client: &reqwest::Client,
    base: &str,
    port: u16,
    admin: &str,
    subscribers: usize,
    (source, token): (Uuid, &str),
    target: Uuid,
    seconds: u64,
) -> anyhow::Result<(Vec<f64>, Duration)> {
    let url = format!("ws://127.0.0.1:{port}/ws?token={admin}");
    let mut sockets = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        sockets.push(tokio_tungstenite::connect_async(url.as_str()).await?.0);
    }
    let stop = Instant::now() + Duration::from_secs(seconds) + Duration::from_secs(2);
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while let Ok(Some(Ok(message))) =
                    tokio::time::timeout_at(stop.into(), socket.next()).await
                {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let received = Utc::now();
                    let Ok(value) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    let Some(at) = value["at"]
                        .as_str()
                        .and_then(|s| s.parse::<DateTime<Utc>>().ok())
                    else {
                        continue;
                    };
                    latencies.push((received - at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                }
                latencies
            })
        })
        .collect();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / LOAD_RATE));
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        let response = client
            .post(format!("{base}/workspaces/{source}/delegations/record"))
            .bearer_auth(token)
            .json(&json!({ "target_id": target, "task": "latency probe", "delegation_id": Uuid::new_v4() }))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().as_u16() == 202,
            "record: {}",
            response.status()
        );
    }
    let elapsed = started.elapsed();
    let mut all = Vec::new();
    for reader in readers {
        all.extend(reader.await?);
    }
    Ok((all, elapsed))
}

async fn replay_run(
    pool: &PgPool,
    port: u16,
    admin: &str,
    source: Uuid,
    target: Uuid,
    events: i64,
) -> anyhow::Result<(f64, f64, f64, i64)> {
    sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         select 'delegation', d.id::text, 1, 'DelegationSent', '1.0', json_build_object('DelegationSent', \
           json_build_object('delegation_id', d.id, 'source_id', $1::uuid, 'target_id', $2::uuid, \
             'task', 'replay ' || d.n, 'task_preview', 'replay ' || d.n, 'origin', 'recorded', \
             'idempotency_key', null, 'actor', json_build_object('kind', 'admin'), 'at', now())), '{}' \
         from (select n, gen_random_uuid() as id from generate_series(1, $3) n) d",
    )
    .bind(source)
    .bind(target)
    .bind(events)
    .execute(pool)
    .await?;
    let total: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(pool)
        .await?;
    loop {
        let head: i64 = sqlx::query_scalar("select coalesce(max(position), 0) from ledger_log")
            .fetch_one(pool)
            .await?;
        if head >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let broadcastable: i64 =
        sqlx::query_scalar("select count(*) from ledger_log where aggregate_type = 'delegation'")
            .fetch_one(pool)
            .await?;

    let started = Instant::now();
    let mut rows = sqlx::query(
        "select l.position, e.payload from ledger_log l join events e on e.event_id = l.event_id \
         where l.position > 0 order by l.position",
    )
    .fetch(pool);
    let mut read = 0i64;
    while let Some(row) = rows.next().await {
        row?;
        read += 1;
    }
    let sql_rate = read as f64 / started.elapsed().as_secs_f64();
    drop(rows);

    let ws_rate = replay_over_websocket(port, admin, "", broadcastable).await?;
    let ws_batch_rate = replay_over_websocket(port, admin, "&batch=true", broadcastable).await?;
    Ok((ws_rate, ws_batch_rate, sql_rate, total))
}

/// Messages per second of one client replaying the whole log with `from=0`
/// (and `options`): one message a frame, or with `batch=true` a JSON array
/// of the messages of a replay page per frame.
async fn replay_over_websocket(
    port: u16,
    admin: &str,
    options: &str,
    expected: i64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{port}/ws?token={admin}&from=0{options}"
    ))
    .await?;
    let mut received = 0i64;
    while received < expected {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.starts_with('[') => {
                let messages: Vec<&serde_json::value::RawValue> = serde_json::from_str(&text)?;
                received += messages.len() as i64;
            }
            Some(Ok(Message::Text(_))) => received += 1,
            Some(Ok(_)) => {}
            other => anyhow::bail!("replay ended early: {other:?}"),
        }
    }
    Ok(received as f64 / started.elapsed().as_secs_f64())
}
