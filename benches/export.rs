//! The NATS JetStream export against the sequencer, in one run on one
//! database: how fast the log is *made* and how fast it is *shipped*.
//!
//! 1. `BENCH_EVENTS` (default 200,000) events go into the event table in
//!    bulk (delegations, `DelegationSent` + `DelegationCompleted`, between
//!    1,000 workspaces); the views' checkpoints are set past them so the
//!    projection runners stay idle.
//! 2. **sequencer**: a service starts and its sequencer positions and
//!    chains them, with every log index — events/s positioned.
//! 3. **export**: a second service, configured with `--nats-url` to a
//!    `nats-server -js` the benchmark starts (its own port and store, file
//!    storage), is elected exporter and publishes the whole log to the
//!    stream — events/s acknowledged by the stream.
//!
//! It prints both rates and their ratio; the goal is export ≥ 0.5 × the
//! sequencer. Each phase ends when the head (resp. the stream's last
//! sequence) reaches the count, checked every 10 ms.
//!
//! Run: `cargo bench --bench export` (uses DATABASE_URL if set, otherwise a
//! private durable PostgreSQL in a temp dir; needs nats-server installed).

#[path = "../tests/common/bulk_events.rs"]
mod bulk_events;
#[path = "../tests/common/nats_server.rs"]
mod nats_server;
mod support;

use std::time::{Duration, Instant};

use ledger::app::Application;
use sqlx::PgPool;

const WORKSPACES: i64 = 1000;
const CHECK_EVERY: Duration = Duration::from_millis(10);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: i64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let events = events - events % 2;
    let database = support::BenchDatabase::open("ledger_export_bench").await?;
    let pool = ledger::db::connect(&database.url, 4).await?;
    ledger::db::migrate(&pool).await?;
    let existing: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(existing == 0, "needs an empty database; {existing} events");
    println!("Delegation Ledger export benchmark: {events} events");

    let history = bulk_events::Delegations {
        workspaces: WORKSPACES,
        recorded_from: None,
    };
    bulk_events::insert(&pool, 1..=events, history).await?;
    for projection in projections::all() {
        sqlx::query(
            "insert into projection_checkpoints (name, position) values ($1, $2) \
             on conflict (name) do update set position = excluded.position",
        )
        .bind(projection.name())
        .bind(events)
        .execute(&pool)
        .await?;
    }

    // The sequencer alone.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let app = Application::build(support::service_config(&database.url, 16)).await?;
    let sequencer = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    while head(&pool).await? < events {
        tokio::time::sleep(CHECK_EVERY).await;
    }
    let sequenced = started.elapsed();
    let _ = stop.send(());
    sequencer.await??;
    let sequencer_rate = events as f64 / sequenced.as_secs_f64();
    println!(
        "sequencer (position + chain + all log indexes) {:>8.2} s  {:>10.0} events/s",
        sequenced.as_secs_f64(),
        sequencer_rate
    );
    sqlx::query("vacuum analyze ledger_log")
        .execute(&pool)
        .await?;

    // The export alone, through a service configured as `ledger serve
    // --nats-url` would be.
    let nats = nats_server::NatsServer::start().await;
    let js = nats.jetstream().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = support::service_config(&database.url, 16);
    config.nats = Some(ledger::export::NatsExportConfig::new(
        nats.url.clone(),
        "LEDGER",
    ));
    let started = Instant::now();
    let app = Application::build(config).await?;
    let exporter = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    loop {
        let last = match js.get_stream("LEDGER").await {
            Ok(mut stream) => stream.info().await?.state.last_sequence,
            Err(_) => 0,
        };
        if last as i64 >= events {
            break;
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
    let exported = started.elapsed();
    let _ = stop.send(());
    exporter.await??;
    let export_rate = events as f64 / exported.as_secs_f64();
    let mut stream = js.get_stream("LEDGER").await?;
    let info = stream.info().await?;
    println!(
        "export to JetStream (file storage, acked)      {:>8.2} s  {:>10.0} events/s  ({:.1} MB in the stream)",
        exported.as_secs_f64(),
        export_rate,
        info.state.bytes as f64 / 1e6
    );
    anyhow::ensure!(
        info.state.messages as i64 == events,
        "the stream holds {} messages, not {events}",
        info.state.messages
    );
    let ratio = export_rate / sequencer_rate;
    println!(
        "export / sequencer                              {ratio:>8.2}  (goal ≥ 0.50: {})",
        if ratio >= 0.5 { "met" } else { "NOT met" }
    );
    drop(nats);
    pool.close().await;
    database.stop().await
}

async fn head(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("select coalesce(max(position), 0) from ledger_log")
            .fetch_one(pool)
            .await?,
    )
}
