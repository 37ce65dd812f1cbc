//! Dispatch throughput and latency, end to end, against the fake A2A agent
//! of the tests — next to two baselines measured in the same run at the
//! same concurrency:
//!
//! * **recorded**: the same two state changes without dispatch — a client
//!   records a delegation and reports it completed over REST (what the
//!   write path alone costs per delegation; the ratio is the dispatcher's
//!   overhead);
//! * **direct**: the agent driven directly by the ledger's A2A client (what
//!   the agent alone can take; a ceiling, not a target).
//!
//! For 16 and 64 concurrent clients, each client in a closed loop POSTs a
//! managed delegation and waits until its `DELEGATION_COMPLETE` arrives on
//! an admin websocket subscription, for `BENCH_SECS` seconds. Reported:
//!
//! * delegations completed per second, and the ratio to the baseline;
//! * Sent → Dispatched: from the `DelegationSent` event's time (the HTTP
//!   edge) to the `DelegationDispatched` event's time (the agent's
//!   acknowledgement recorded), p50/p99 — the dispatcher's reaction time;
//! * Sent → Completed as the caller sees it: from the POST to the
//!   completion message on the websocket, p50/p99.
//!
//! Run: `cargo bench --bench dispatch` (uses DATABASE_URL if set, otherwise
//! a private durable PostgreSQL in a temp dir). `BENCH_SECS` sets the
//! duration of each measurement (default 5).

#[allow(dead_code)]
#[path = "../tests/common/fake_agent.rs"]
mod fake_agent;
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ledger::a2a::{A2aClient, A2aClientConfig, ProtocolVersion};
use ledger::app::Application;
use serde_json::{json, Value};
use sqlx::PgPool;
use support::{ms, percentile};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const CONCURRENCY: [usize; 2] = [16, 64];
const ADMIN: &str = support::ADMIN_TOKEN;

/// Completion waiters by delegation id; a completion that arrives before
/// its waiter is kept as `None`.
type Waiters = Arc<Mutex<HashMap<Uuid, Option<oneshot::Sender<()>>>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    let database = support::BenchDatabase::open("ledger_bench_dispatch").await?;
    let database_url = database.url.clone();
    let agent = fake_agent::FakeAgent::start().await;
    agent.set_reply(fake_agent::Reply::Message("done".into()));

    let config = support::service_config(&database_url, 80);
    let app = Application::build(config).await?;
    let pool = app.pool().clone();
    let port = app.port();
    let base = format!("http://127.0.0.1:{port}");
    tokio::spawn(app.run_until(std::future::pending()));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;

    let waiters: Waiters = Arc::default();
    let (socket, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws?token={ADMIN}")).await?;
    tokio::spawn(listen(socket, waiters.clone()));

    println!("Delegation Ledger dispatch benchmark ({seconds}s per measurement, fake agent answering at once)");
    println!(
        "{:>7} | {:>14} {:>10} {:>10} | {:>10} {:>10} | {:>11} {:>6} | {:>9} {:>6}",
        "clients",
        "delegations/s",
        "S→D p50",
        "S→D p99",
        "S→C p50",
        "S→C p99",
        "recorded/s",
        "ratio",
        "direct/s",
        "ratio"
    );
    for clients in CONCURRENCY {
        let direct = direct_sends(&agent.url(), clients, duration).await?;
        let recorded = recorded(&client, &base, clients, duration).await?;
        let (completed, elapsed, mut end_to_end, ids) =
            delegations(&client, &base, &agent.url(), &waiters, clients, duration).await?;
        let mut dispatched = sent_to_dispatched(&pool, &ids).await?;
        let rate = completed as f64 / elapsed.as_secs_f64();
        println!(
            "{:>7} | {:>14.0} {:>10} {:>10} | {:>10} {:>10} | {:>11.0} {:>6.2} | {:>9.0} {:>6.3}",
            clients,
            rate,
            ms(percentile(&mut dispatched, 0.50)),
            ms(percentile(&mut dispatched, 0.99)),
            ms(percentile(&mut end_to_end, 0.50)),
            ms(percentile(&mut end_to_end, 0.99)),
            recorded,
            rate / recorded,
            direct,
            rate / direct,
        );
    }
    println!("(S→D: DelegationSent → DelegationDispatched event times; S→C: POST → completion on the websocket; all in ms)");
    database.stop().await?;
    Ok(())
}

/// Route `DELEGATION_COMPLETE` messages to their waiters.
async fn listen(
    mut socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    waiters: Waiters,
) {
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if value["type"] != "DELEGATION_COMPLETE" {
            continue;
        }
        let Some(id) = value["delegation_id"].as_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let mut waiters = waiters.lock().unwrap_or_else(|p| p.into_inner());
        match waiters.remove(&id) {
            Some(Some(waiter)) => {
                let _ = waiter.send(());
            }
            _ => {
                waiters.insert(id, None);
            }
        }
    }
}

/// Wait for `id`'s completion message (which may already have arrived).
async fn completion(waiters: &Waiters, id: Uuid) -> anyhow::Result<()> {
    let receiver = {
        let mut map = waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(None) = map.get(&id) {
            map.remove(&id);
            return Ok(());
        }
        let (sender, receiver) = oneshot::channel();
        map.insert(id, Some(sender));
        receiver
    };
    tokio::time::timeout(Duration::from_secs(30), receiver).await??;
    Ok(())
}

async fn register(
    client: &reqwest::Client,
    base: &str,
    body: Value,
) -> anyhow::Result<(Uuid, String)> {
    let id = Uuid::new_v4();
    let mut body = body;
    body["id"] = json!(id);
    let answer: Value = client
        .post(format!("{base}/registry/register"))
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    let token = answer["auth_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no token: {answer}"))?
        .to_string();
    Ok((id, token))
}

/// `n` poll-mode workspaces to delegate from, one per client.
async fn callers(
    client: &reqwest::Client,
    base: &str,
    n: usize,
) -> anyhow::Result<Vec<(Uuid, String)>> {
    let mut sources = Vec::with_capacity(n);
    for _ in 0..n {
        sources.push(register(client, base, json!({ "delivery_mode": "poll" })).await?);
    }
    Ok(sources)
}

/// Closed-loop managed delegations from `clients` clients; returns how many
/// completed, the time taken, the POST → completion latencies and the ids.
async fn delegations(
    client: &reqwest::Client,
    base: &str,
    agent_url: &str,
    waiters: &Waiters,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(usize, Duration, Vec<Duration>, Vec<Uuid>)> {
    let (target, _) = register(client, base, json!({ "url": agent_url })).await?;
    let sources = callers(client, base, clients).await?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for (source, token) in sources {
        let client = client.clone();
        let base = base.to_string();
        let waiters = waiters.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut ids = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let answer: Value = client
                    .post(format!("{base}/workspaces/{source}/delegate"))
                    .bearer_auth(&token)
                    .json(&json!({ "target_id": target, "task": "benchmark task: summarise the quarterly report" }))
                    .send()
                    .await?
                    .json()
                    .await?;
                let id: Uuid = answer["delegation_id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("delegate: {answer}"))?;
                completion(&waiters, id).await?;
                latencies.push(t.elapsed());
                ids.push(id);
            }
            Ok::<_, anyhow::Error>((latencies, ids))
        }));
    }
    let mut latencies = Vec::new();
    let mut ids = Vec::new();
    for task in tasks {
        let (l, i) = task.await??;
        latencies.extend(l);
        ids.extend(i);
    }
    let elapsed = started.elapsed();
    Ok((ids.len(), elapsed, latencies, ids))
}

/// DelegationSent → DelegationDispatched, from the events' own times.
async fn sent_to_dispatched(pool: &PgPool, ids: &[Uuid]) -> anyhow::Result<Vec<Duration>> {
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let rows: Vec<(f64,)> = sqlx::query_as(
        "select extract(epoch from ((d.payload->'DelegationDispatched'->>'at')::timestamptz \
                - (s.payload->'DelegationSent'->>'at')::timestamptz))::float8 \
         from events s join events d on d.aggregate_id = s.aggregate_id \
         and d.aggregate_type = 'delegation' and d.event_type = 'DelegationDispatched' \
         where s.aggregate_type = 'delegation' and s.event_type = 'DelegationSent' \
         and s.aggregate_id = any($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(s,)| Duration::from_secs_f64(s.max(0.0)))
        .collect())
}

/// The write-path baseline: per delegation, record it and report it
/// completed over REST (the same two state changes a dispatched delegation
/// goes through), closed loop; returns delegations per second.
async fn recorded(
    client: &reqwest::Client,
    base: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let (target, _) = register(client, base, json!({ "delivery_mode": "poll" })).await?;
    let sources = callers(client, base, clients).await?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for (source, token) in sources {
        let client = client.clone();
        let base = base.to_string();
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            while Instant::now() < deadline {
                let id = Uuid::new_v4();
                let response = client
                    .post(format!("{base}/workspaces/{source}/delegations/record"))
                    .bearer_auth(&token)
                    .json(&json!({ "target_id": target, "task": "benchmark task: summarise the quarterly report", "delegation_id": id }))
                    .send()
                    .await?;
                anyhow::ensure!(response.status().as_u16() == 202, "record: {}", response.status());
                let response = client
                    .post(format!("{base}/workspaces/{source}/delegations/{id}/update"))
                    .bearer_auth(&token)
                    .json(&json!({ "status": "completed", "response_preview": "done" }))
                    .send()
                    .await?;
                anyhow::ensure!(response.status().as_u16() == 200, "update: {}", response.status());
                done += 1;
            }
            Ok::<_, anyhow::Error>(done)
        }));
    }
    let mut done = 0;
    for task in tasks {
        done += task.await??;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// The ceiling: the agent driven directly with the ledger's A2A client,
/// closed loop, at the same concurrency; returns sends per second.
async fn direct_sends(agent_url: &str, clients: usize, duration: Duration) -> anyhow::Result<f64> {
    let local: ledger::a2a::OutboundPolicy = "127.0.0.0/8".parse().map_err(anyhow::Error::msg)?;
    let client = A2aClient::new(A2aClientConfig::default(), local)?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = client.clone();
        let url = agent_url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0usize;
            while Instant::now() < deadline {
                client
                    .send(
                        &url,
                        ProtocolVersion::V0_3,
                        Uuid::new_v4(),
                        "benchmark task",
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                sent += 1;
            }
            Ok::<_, anyhow::Error>(sent)
        }));
    }
    let mut sent = 0;
    for task in tasks {
        sent += task.await??;
    }
    Ok(sent as f64 / started.elapsed().as_secs_f64())
}
