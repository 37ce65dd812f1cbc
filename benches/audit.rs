//! Audit at scale: a log of `BENCH_EVENTS` (default 1,000,000) real,
//! hash-chained entries, then
//!
//! * **verify** throughput (events/s) — the full chain walk of
//!   `ledger audit verify` / `GET /audit/verify`;
//! * **filtered audit queries** through HTTP, p50/p99 over `BENCH_RUNS`
//!   (default 200) runs with a random workspace each time: a page of 100 of
//!   one workspace in a one-day window, and a page of 100 of one workspace
//!   from a random cursor — each with the workspace indexes of
//!   `migrations/0004_audit.sql` and again without them (dropped, measured,
//!   re-created) — and a one-day window of the whole log, next to baselines
//!   (an unfiltered page over HTTP; raw SQL `select count(*)` of the log and
//!   a primary-key page of 100);
//! * the **ndjson export** of one workspace's whole history and of the whole
//!   log (events/s, MB/s).
//!
//! The log is filled fast but for real: one bulk `INSERT … SELECT
//! generate_series` per 100,000 events into the event table (500,000
//! delegations, each `DelegationSent` + `DelegationCompleted`, between 1,000
//! workspaces, one event per second of `recorded_at`), then the service's
//! own sequencer positions and chains them. The views are not under test:
//! their checkpoints are set to the head beforehand so the projection
//! runners stay idle instead of competing for the CPU.
//!
//! Run: `cargo bench --bench audit` (uses DATABASE_URL if set, otherwise a
//! private durable PostgreSQL in a temp dir). `BENCH_EVENTS`, `BENCH_RUNS`
//! and `BENCH_RUNS_UNINDEXED` size it; `BENCH_SEQUENCE_WITHOUT_AUDIT_INDEXES=1`
//! positions the log without the 0004 indexes (built afterwards) to show
//! their cost on the write side.

#[path = "../tests/common/bulk_events.rs"]
mod bulk_events;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ledger::app::Application;
use sqlx::PgPool;

const WORKSPACES: i64 = 1000;
const PAGE: i64 = 100;
/// The time window of the "workspace + time range" query: one day, i.e.
/// 86,400 events, ~170 of them concerning a given workspace.
const WINDOW_SECS: i64 = 86_400;
const BASE_TIME: &str = "2024-01-01T00:00:00Z";
/// The indexes the "without the index" runs drop.
const WORKSPACE_INDEXES: [&str; 2] = ["ledger_log_source_workspace", "ledger_log_target_workspace"];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator: the same workloads every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: i64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as i64
    }
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn percentile(&mut self, p: f64) -> Duration {
        self.0.sort_unstable();
        let index = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0.get(index).copied().unwrap_or_default()
    }

    fn line(&mut self, label: &str) {
        let (p50, p99) = (self.percentile(0.50), self.percentile(0.99));
        println!(
            "  {label:<58} p50 {:>9} ms   p99 {:>9} ms   ({} runs)",
            ms(p50),
            ms(p99),
            self.0.len()
        );
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events = env_number("BENCH_EVENTS", 1_000_000) as i64;
    let events = events - events % 2; // whole delegations
    let runs = env_number("BENCH_RUNS", 200) as usize;
    let unindexed_runs = env_number("BENCH_RUNS_UNINDEXED", 20) as usize;

    let database = support::BenchDatabase::open("ledger_audit_bench").await?;
    let database_url = database.url.clone();
    let pool = ledger::db::connect(&database_url, 4).await?;
    ledger::db::migrate(&pool).await?;
    let existing: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        existing == 0,
        "the benchmark needs an empty database; {existing} events found"
    );
    println!("Delegation Ledger audit benchmark: {events} events, {WORKSPACES} workspaces");

    // 1. fill the event table
    let started = Instant::now();
    let history = bulk_events::Delegations {
        workspaces: WORKSPACES,
        recorded_from: Some(chrono::DateTime::parse_from_rfc3339(BASE_TIME)?.to_utc()),
    };
    bulk_events::insert(&pool, 1..=events, history).await?;
    let filled = started.elapsed();
    println!(
        "fill (bulk INSERT … SELECT generate_series)   {:>9.1} s   {:>9.0} events/s",
        filled.as_secs_f64(),
        events as f64 / filled.as_secs_f64()
    );

    // 2. position and chain them with the service's own sequencer
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
    // BENCH_SEQUENCE_WITHOUT_AUDIT_INDEXES=1: position the log without the
    // indexes of 0004 (and build them afterwards), to see what they cost
    // the sequencer.
    let without_audit_indexes = env_number("BENCH_SEQUENCE_WITHOUT_AUDIT_INDEXES", 0) == 1;
    if without_audit_indexes {
        for statement in audit_index_statements() {
            if let Some(name) = statement.split_whitespace().nth(2) {
                sqlx::query(&format!("drop index {name}"))
                    .execute(&pool)
                    .await?;
            }
        }
    }
    let started = Instant::now();
    let app = Application::build(support::service_config(&database_url, 16)).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    loop {
        let head: i64 = sqlx::query_scalar("select coalesce(max(position), 0) from ledger_log")
            .fetch_one(&pool)
            .await?;
        if head >= events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sequenced = started.elapsed();
    let indexes = if without_audit_indexes { 3 } else { 7 };
    println!(
        "sequencer (position + chain + {indexes} indexes)       {:>9.1} s   {:>9.0} events/s",
        sequenced.as_secs_f64(),
        events as f64 / sequenced.as_secs_f64()
    );
    if without_audit_indexes {
        let started = Instant::now();
        for statement in audit_index_statements() {
            sqlx::query(&statement).execute(&pool).await?;
        }
        println!(
            "  (building the four audit indexes afterwards took {:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
    // What autovacuum would have done by now on a live system.
    sqlx::query("vacuum analyze events").execute(&pool).await?;
    sqlx::query("vacuum analyze ledger_log")
        .execute(&pool)
        .await?;

    // 3. verify the whole chain
    for attempt in 1..=2 {
        let started = Instant::now();
        let verification = ledger::log::verify::verify(&pool, None, None).await?;
        let elapsed = started.elapsed();
        let ledger::log::verify::Verification::Ok { checked, .. } = verification else {
            anyhow::bail!("the chain does not verify: {verification:?}");
        };
        anyhow::ensure!(checked == events, "verified {checked} of {events}");
        println!(
            "verify, whole chain (run {attempt})                  {:>9.2} s   {:>9.0} events/s",
            elapsed.as_secs_f64(),
            checked as f64 / elapsed.as_secs_f64()
        );
    }

    // 4. filtered audit queries
    let client = reqwest::Client::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // The workspace ids exactly as `bulk_events` computes them.
    let workspaces: Vec<String> =
        sqlx::query_scalar("select md5('ws' || n)::uuid::text from generate_series(0, $1 - 1) n")
            .bind(WORKSPACES)
            .fetch_all(&pool)
            .await?;
    let base_time = chrono::DateTime::parse_from_rfc3339(BASE_TIME)?;
    let window = |rng: &mut Rng, workspaces: &[String]| {
        let workspace = &workspaces[rng.below(WORKSPACES) as usize];
        let start = base_time + chrono::Duration::seconds(rng.below(events - WINDOW_SECS));
        let end = start + chrono::Duration::seconds(WINDOW_SECS);
        format!(
            "/audit/events?limit={PAGE}&workspace_id={workspace}&from_time={}&to_time={}",
            start.to_utc().format("%Y-%m-%dT%H:%M:%SZ"),
            end.to_utc().format("%Y-%m-%dT%H:%M:%SZ")
        )
    };
    let cursor = |rng: &mut Rng, workspaces: &[String]| {
        let workspace = &workspaces[rng.below(WORKSPACES) as usize];
        format!(
            "/audit/events?limit={PAGE}&workspace_id={workspace}&after={}",
            rng.below(events / 2)
        )
    };

    println!("filtered audit queries over HTTP (page of {PAGE}), with the 0004 indexes:");
    let before = index_scans(&pool).await?;
    let mut indexed_window =
        http_runs(&client, &base, runs, || window(&mut rng, &workspaces)).await?;
    indexed_window.line("workspace + 1-day window");
    let used = used_indexes(&pool, &before).await?;
    println!("    indexes used: {used}");
    let before = index_scans(&pool).await?;
    let mut indexed_cursor =
        http_runs(&client, &base, runs, || cursor(&mut rng, &workspaces)).await?;
    indexed_cursor.line("workspace from a random cursor");
    let used = used_indexes(&pool, &before).await?;
    println!("    indexes used: {used}");
    let mut whole_log_window = http_runs(&client, &base, runs, || {
        let start = base_time + chrono::Duration::seconds(rng.below(events - WINDOW_SECS));
        let end = start + chrono::Duration::seconds(WINDOW_SECS);
        format!(
            "/audit/events?limit={PAGE}&from_time={}&to_time={}",
            start.to_utc().format("%Y-%m-%dT%H:%M:%SZ"),
            end.to_utc().format("%Y-%m-%dT%H:%M:%SZ")
        )
    })
    .await?;
    whole_log_window.line("1-day window of the whole log (no workspace)");
    let mut unfiltered = http_runs(&client, &base, runs, || {
        format!(
            "/audit/events?limit={PAGE}&after={}",
            rng.below(events - PAGE)
        )
    })
    .await?;
    unfiltered.line("baseline: no filter, from a random cursor");
    let mut pk_page = sql_runs(&pool, runs, |rng| {
        format!(
            "select position from ledger_log where position > {} order by position limit {PAGE}",
            rng.below(events)
        )
    })
    .await?;
    pk_page.line("baseline: raw SQL primary-key page of 100 (no filter)");
    let mut count = sql_runs(&pool, runs.min(20), |_| {
        "select count(*) from ledger_log".to_string()
    })
    .await?;
    count.line("baseline: raw SQL select count(*) from ledger_log");

    println!("the same queries without the two workspace indexes:");
    for index in WORKSPACE_INDEXES {
        sqlx::query(&format!("drop index {index}"))
            .execute(&pool)
            .await?;
    }
    let mut unindexed_window = http_runs(&client, &base, unindexed_runs, || {
        window(&mut rng, &workspaces)
    })
    .await?;
    unindexed_window.line("workspace + 1-day window");
    let mut unindexed_cursor = http_runs(&client, &base, unindexed_runs, || {
        cursor(&mut rng, &workspaces)
    })
    .await?;
    unindexed_cursor.line("workspace from a random cursor");
    let started = Instant::now();
    for statement in audit_index_statements() {
        if WORKSPACE_INDEXES
            .iter()
            .any(|index| statement.contains(&format!("index {index} ")))
        {
            sqlx::query(&statement).execute(&pool).await?;
        }
    }
    println!(
        "  (re-creating the two indexes took {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let restored = index_scans(&pool).await?;
    anyhow::ensure!(
        WORKSPACE_INDEXES.iter().all(|i| restored.contains_key(*i)),
        "indexes not restored"
    );

    // 5. ndjson export
    println!("ndjson export (Accept: application/x-ndjson):");
    let workspace = &workspaces[0];
    export(
        &client,
        &base,
        &format!("/audit/events?workspace_id={workspace}"),
        "one workspace's whole history",
    )
    .await?;
    export(&client, &base, "/audit/events", "the whole log").await?;

    pool.close().await;
    database.stop().await?;
    Ok(())
}

/// The `create index` statements of migrations/0004_audit.sql and
/// 0008_log_time.sql that still stand (0008 drops three of 0004's), from
/// the migrations' own text so the definitions cannot drift.
fn audit_index_statements() -> Vec<String> {
    let statements = |sql: &str| -> Vec<String> {
        sql.split(';')
            .map(|statement| {
                statement
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("--"))
                    .collect::<Vec<_>>()
                    .join("\n")
                    .trim()
                    .to_string()
            })
            .collect()
    };
    let log_time = statements(include_str!("../migrations/0008_log_time.sql"));
    let dropped: Vec<String> = log_time
        .iter()
        .filter_map(|s| s.strip_prefix("drop index "))
        .map(|name| format!("index {name} "))
        .collect();
    statements(include_str!("../migrations/0004_audit.sql"))
        .into_iter()
        .chain(log_time)
        .filter(|statement| statement.starts_with("create index "))
        .filter(|statement| !dropped.iter().any(|name| statement.contains(name)))
        .collect()
}

async fn http_runs(
    client: &reqwest::Client,
    base: &str,
    runs: usize,
    mut path: impl FnMut() -> String,
) -> anyhow::Result<Latencies> {
    let mut latencies = Vec::with_capacity(runs);
    let mut returned = 0usize;
    for _ in 0..runs {
        let path = path();
        let started = Instant::now();
        let response = client
            .get(format!("{base}{path}"))
            .bearer_auth(support::ADMIN_TOKEN)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let body: serde_json::Value = response.json().await?;
        latencies.push(started.elapsed());
        returned += body["events"].as_array().map_or(0, Vec::len);
    }
    anyhow::ensure!(
        returned >= runs * PAGE as usize * 9 / 10,
        "pages were mostly not full ({returned} events in {runs} pages): the workload is wrong"
    );
    Ok(Latencies(latencies))
}

async fn sql_runs(
    pool: &PgPool,
    runs: usize,
    mut sql: impl FnMut(&mut Rng) -> String,
) -> anyhow::Result<Latencies> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut latencies = Vec::with_capacity(runs);
    for _ in 0..runs {
        let sql = sql(&mut rng);
        let started = Instant::now();
        sqlx::query(&sql).fetch_all(pool).await?;
        latencies.push(started.elapsed());
    }
    Ok(Latencies(latencies))
}

async fn export(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    label: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut response = client
        .get(format!("{base}{path}"))
        .bearer_auth(support::ADMIN_TOKEN)
        .header("accept", "application/x-ndjson")
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    let (mut lines, mut bytes) = (0usize, 0usize);
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "  {label:<36} {lines:>9} events {:>8.1} MB in {elapsed:>6.2} s   {:>9.0} events/s {:>6.1} MB/s",
        bytes as f64 / 1e6,
        lines as f64 / elapsed,
        bytes as f64 / 1e6 / elapsed
    );
    Ok(())
}

/// idx_scan of every index on ledger_log.
async fn index_scans(pool: &PgPool) -> anyhow::Result<BTreeMap<String, i64>> {
    // An idle backend publishes its counters within 10 s
    // (PGSTAT_IDLE_INTERVAL), so wait that out before reading them.
    tokio::time::sleep(Duration::from_secs(11)).await;
    sqlx::query("select pg_stat_clear_snapshot()")
        .execute(pool)
        .await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select indexrelname::text, idx_scan from pg_stat_user_indexes where relname = 'ledger_log'",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The ledger_log indexes scanned since `before`, with their scan counts.
async fn used_indexes(pool: &PgPool, before: &BTreeMap<String, i64>) -> anyhow::Result<String> {
    let after = index_scans(pool).await?;
    let used: Vec<String> = after
        .iter()
        .filter_map(|(name, scans)| {
            let delta = scans - before.get(name).copied().unwrap_or(0);
            (delta > 0).then(|| format!("{name} ×{delta}"))
        })
        .collect();
    Ok(if used.is_empty() {
        "none".to_string()
    } else {
        used.join(", ")
    })
}
