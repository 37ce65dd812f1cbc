//! The export of the log to NATS JetStream, against a real `nats-server
//! -js` started per test (tests/common/nats_server.rs): the stream holds
//! every position exactly once and in order (stream sequence == position)
//! across a `kill -9` of the exporting process, two exporters at once, a
//! server that is not there yet; a consumer of the stream rebuilds the
//! activity view; a stream of another database is refused.

#[path = "common/bulk_events.rs"]
mod bulk_events;
mod common;
#[path = "common/nats_server.rs"]
mod nats_server;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream::Stream};
use futures::StreamExt;
use ledger::export::message::{ExportedEntry, POSITION_HEADER};
use ledger::export::NatsExportConfig;
use nats_server::NatsServer;
use projections::activity::{changes, ActivityChange, ActivityRow};
use serde_json::{json, Value};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

const ADMIN: &str = "nats-export-admin-0123456789abcdef0123456789ab";
const STREAM: &str = "LEDGER";
const WORKSPACES: i64 = 20;

/// Delegations straight into the event table (each a `DelegationSent` and
/// a `DelegationCompleted`), numbered `from..=to` events: the service's
/// own sequencer positions them and its runners project them.
async fn fill(pool: &PgPool, from: i64, to: i64) {
    let history = bulk_events::Delegations {
        workspaces: WORKSPACES,
        recorded_from: None,
    };
    bulk_events::insert(pool, from..=to, history)
        .await
        .expect("fill the event table");
}

async fn head(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select coalesce(max(position), 0) from ledger_log")
        .fetch_one(pool)
        .await
        .expect("log head")
}

async fn stream(js: &jetstream::Context) -> Stream {
    js.get_stream(STREAM).await.expect("the export's stream")
}

async fn last_sequence(js: &jetstream::Context) -> u64 {
    match js.get_stream(STREAM).await {
        Ok(mut stream) => {
            stream
                .info()
                .await
                .expect("stream info")
                .state
                .last_sequence
        }
        Err(_) => 0,
    }
}

/// Wait until the stream's last sequence reaches `target`: woken by the
/// exported messages themselves (a plain subscription to `ledger.>` sees
/// each one the stream stores).
async fn wait_exported(nats: &NatsServer, target: i64, limit: Duration) {
    let client = nats.client().await;
    let mut messages = client.subscribe("ledger.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    let js = jetstream::new(client.clone());
    let wait = async {
        // Checked after subscribing, so no message can slip between.
        if last_sequence(&js).await as i64 >= target {
            return;
        }
        while let Some(message) = messages.next().await {
            let position = message
                .headers
                .as_ref()
                .and_then(|h| h.get(POSITION_HEADER))
                .and_then(|v| v.as_str().parse::<i64>().ok())
                .unwrap_or(0);
            if position >= target && last_sequence(&js).await as i64 >= target {
                return;
            }
        }
    };
    tokio::time::timeout(limit, wait)
        .await
        .unwrap_or_else(|_| panic!("the stream did not reach position {target} in {limit:?}"));
}

/// Every message of the stream, by sequence: the consumer's view.
async fn read_stream(js: &jetstream::Context) -> Vec<(u64, String, ExportedEntry)> {
    let mut stream = stream(js).await;
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut messages = Vec::new();
    for sequence in 1..=last {
        let message = stream
            .get_raw_message(sequence)
            .await
            .unwrap_or_else(|e| panic!("sequence {sequence}: {e}"));
        let headers = &message.headers;
        assert_eq!(message.sequence, sequence);
        assert_eq!(
            headers.get(POSITION_HEADER).map(|v| v.as_str().to_string()),
            Some(sequence.to_string()),
            "Ledger-Position of sequence {sequence}"
        );
        assert_eq!(
            headers.get("Nats-Msg-Id").map(|v| v.as_str().to_string()),
            Some(sequence.to_string()),
            "Nats-Msg-Id of sequence {sequence}"
        );
        let entry: ExportedEntry =
            serde_json::from_slice(&message.payload).expect("an exported entry");
        for (header, workspace) in [
            ("Ledger-Source-Workspace", entry.source_workspace),
            ("Ledger-Target-Workspace", entry.target_workspace),
        ] {
            assert_eq!(
                headers.get(header).map(|v| v.as_str().to_string()),
                workspace.map(|w| w.to_string()),
                "{header} of sequence {sequence}"
            );
        }
        messages.push((sequence, message.subject.to_string(), entry));
    }
    messages
}

/// The stream is the log: positions 1..=head, each once, in order, with
/// the log's event, subject and hash.
async fn assert_stream_is_the_log(js: &jetstream::Context, pool: &PgPool) -> Vec<ExportedEntry> {
    let head = head(pool).await;
    let info = stream(js).await.info().await.expect("info").state.clone();
    assert_eq!(info.messages as i64, head, "messages in the stream");
    assert_eq!(info.first_sequence, 1);
    assert_eq!(info.last_sequence as i64, head);
    let log: Vec<(i64, i64, String, String, Vec<u8>)> = sqlx::query_as(
        "select position, event_id, aggregate_type, event_type, hash from ledger_log order by position",
    )
    .fetch_all(pool)
    .await
    .expect("the log");
    let stream = read_stream(js).await;
    assert_eq!(stream.len(), log.len());
    for ((sequence, subject, entry), (position, event_id, aggregate_type, event_type, hash)) in
        stream.iter().zip(&log)
    {
        assert_eq!(*sequence as i64, *position);
        assert_eq!(entry.position(), *position);
        assert_eq!(entry.entry.event_id, *event_id, "event at {position}");
        assert_eq!(entry.hash, hex::encode(hash), "hash at {position}");
        assert_eq!(subject, &format!("ledger.{aggregate_type}.{event_type}"));
    }
    stream.into_iter().map(|(_, _, entry)| entry).collect()
}

/// A counter or gauge of this process's metrics, summed over the series
/// whose line contains `filter`.
fn metric(name: &str, filter: &str) -> f64 {
    ledger::metrics::install()
        .render()
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(filter))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn nats_config(url: &str) -> NatsExportConfig {
    NatsExportConfig {
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(500),
        election_interval: Duration::from_millis(100),
        ..NatsExportConfig::new(url, STREAM)
    }
}

fn serve_exporting(database_url: &str, nats: &NatsServer) -> std::process::Child {
    common::serve_binary_with(
        database_url,
        ADMIN,
        &[("LEDGER_NATS_URL", &nats.url), ("LEDGER_DISPATCH", "false")],
    )
    .0
}

fn kill_9(mut child: std::process::Child) {
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_entries_survive_a_kill_9_of_the_exporting_process() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    // Sequences and projects; exports nothing.
    let app = common::spawn_app().await;
    fill(&app.pool, 1, 10_000).await;
    common::settle(&app.pool).await;
    assert_eq!(head(&app.pool).await, 10_000);

    // The first exporting process dies (SIGKILL) as soon as its export has
    // begun: mid-batch, acks in flight.
    let client = nats.client().await;
    let mut exported = client.subscribe("ledger.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    let first = serve_exporting(&app.database_url, &nats);
    tokio::time::timeout(Duration::from_secs(60), exported.next())
        .await
        .expect("the first process starts exporting")
        .expect("a message");
    kill_9(first);
    let interrupted = last_sequence(&js).await;
    assert!(
        interrupted < 10_000,
        "the kill came after the whole export ({interrupted}); it must interrupt it"
    );

    // More entries while nobody exports, then a second process resumes;
    // entries written while it runs are followed live.
    fill(&app.pool, 10_001, 10_500).await;
    let second = serve_exporting(&app.database_url, &nats);
    wait_exported(&nats, 10_500, Duration::from_secs(120)).await;
    fill(&app.pool, 10_501, 11_000).await;
    common::settle(&app.pool).await;
    wait_exported(&nats, 11_000, Duration::from_secs(120)).await;
    kill_9(second);

    let entries = assert_stream_is_the_log(&js, &app.pool).await;
    assert_eq!(entries.len(), 11_000);
    eprintln!("killed after {interrupted} of 10000 exported");
}

/// The `activity_logs` rows a consumer of the stream gets by applying the
/// projections crate's mapping to each message in order.
fn fold_activity(entries: Vec<ExportedEntry>) -> HashMap<Uuid, ActivityRow> {
    let mut rows: HashMap<Uuid, ActivityRow> = HashMap::new();
    for entry in entries {
        let entry = entry.into_log_entry();
        let event = entry.decode().expect("every exported entry decodes");
        for change in changes(&entry, &event) {
            match change {
                ActivityChange::Insert(row) => {
                    rows.entry(row.id).or_insert(row);
                }
                ActivityChange::UpdateDelegateRow {
                    delegation_id,
                    status,
                    error_detail,
                    response_body,
                } => {
                    for row in rows.values_mut().filter(|r| {
                        r.delegation_id == Some(delegation_id) && r.method == Some("delegate")
                    }) {
                        row.status = Some(status);
                        if error_detail.is_some() {
                            row.error_detail = error_detail.clone();
                        }
                        if response_body.is_some() {
                            row.response_body = response_body.clone();
                        }
                    }
                }
            }
        }
    }
    rows
}

/// A row as comparable JSON (times to the microsecond PostgreSQL keeps).
fn comparable(row: &ActivityRow) -> Value {
    json!({
        "id": row.id, "workspace_id": row.workspace_id, "activity_type": row.activity_type,
        "method": row.method, "source_id": row.source_id, "target_id": row.target_id,
        "summary": row.summary, "status": row.status, "request_body": row.request_body,
        "response_body": row.response_body, "error_detail": row.error_detail,
        "delegation_id": row.delegation_id, "created_at": row.created_at.timestamp_micros(),
        "log_position": row.log_position, "ordinal": row.ordinal,
    })
}

#[tokio::test]
async fn a_consumer_of_the_stream_rebuilds_the_activity_view() {
    let nats = NatsServer::start().await;
    let app = common::spawn_app_with(common::fresh_database_url().await, |config| {
        config.nats = Some(nats_config(&nats.url));
    })
    .await;
    let a = app.register().await;
    let b = app.register().await;
    let c = app.register().await;
    for n in 0..12 {
        let (source, target) = if n % 2 == 0 { (&a, &b) } else { (&b, &c) };
        let id = app.record(source, target.id, &format!("task {n}")).await;
        let update = match n % 4 {
            0 => json!({ "status": "completed", "response_preview": format!("done {n}") }),
            1 => json!({ "status": "failed", "error": format!("broke {n}") }),
            2 => json!({ "status": "received" }),
            _ => continue,
        };
        let (status, body) = app.update(source, id, update).await;
        assert_eq!(status, 200, "{body}");
    }
    app.delegate(&a, c.id, json!({})).await;
    common::settle(&app.pool).await;
    let head = head(&app.pool).await;
    wait_exported(&nats, head, Duration::from_secs(60)).await;

    let js = nats.jetstream().await;
    let entries = assert_stream_is_the_log(&js, &app.pool).await;
    let mut rebuilt: Vec<Value> = fold_activity(entries).values().map(comparable).collect();
    let table: Vec<Value> = sqlx::query_scalar(
        "select json_build_object('id', id, 'workspace_id', workspace_id, \
         'activity_type', activity_type, 'method', method, 'source_id', source_id, \
         'target_id', target_id, 'summary', summary, 'status', status, \
         'request_body', request_body, 'response_body', response_body, \
         'error_detail', error_detail, 'delegation_id', delegation_id, \
         'created_at', (extract(epoch from created_at) * 1000000)::bigint, \
         'log_position', log_position, 'ordinal', ordinal) \
         from activity_logs order by log_position, ordinal",
    )
    .fetch_all(&app.pool)
    .await
    .expect("the activity view");
    let key = |v: &Value| (v["log_position"].as_i64(), v["ordinal"].as_i64());
    rebuilt.sort_by_key(key);
    assert!(table.len() >= 13, "rows: {}", table.len());
    assert_eq!(rebuilt, table);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_exporters_at_once_store_each_position_once() {
    // The operator's stream de-duplicates for 100 ms only (the least a
    // server takes): exactly-once must come from the expected last
    // sequence, not from message ids.
    two_exporters_until(Duration::from_millis(100), collisions).await;
    // A window longer than the test: every second publish of a position is
    // acknowledged as the duplicate it is, and counted as one. (One test,
    // the two runs in turn: the counters are the process's.)
    two_exporters_until(Duration::from_secs(600), || {
        metric("ledger_nats_export_duplicates_total", "")
    })
    .await;
}

/// Two exporters at once on a stream with `duplicate_window`, the log
/// written 1,000 entries at a time until `collided` has grown; then the
/// stream must be the log, each position once.
async fn two_exporters_until(duplicate_window: Duration, collided: fn() -> f64) {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    js.create_stream(jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec!["ledger.>".into()],
        duplicate_window,
        ..Default::default()
    })
    .await
    .expect("create the stream");
    let app = common::spawn_app().await;
    fill(&app.pool, 1, 4_000).await;
    common::settle(&app.pool).await;

    let config = NatsExportConfig {
        batch: 250,
        ..nats_config(&nats.url)
    };
    let progress = Arc::new(ledger::log::Progress::new(Vec::new()));
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(ledger::log::progress::listen(
        app.pool.clone(),
        progress.clone(),
        shutdown.clone(),
    ));
    let collided_before = collided();
    // Two terms at once, as a deposed leader still sending and its
    // successor would be: no election between them. The second starts
    // once the first has begun (older servers, 2.9 among them, do not
    // check an expected last sequence of 0: position 1 is guarded only by
    // the duplicate window — see README).
    let mut exporters = Vec::new();
    for n in 0..2 {
        if n == 1 {
            wait_exported(&nats, 1, Duration::from_secs(60)).await;
        }
        let (config, progress, shutdown) = (config.clone(), progress.clone(), shutdown.clone());
        let url = app.database_url.clone();
        exporters.push(tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            let js = ledger::export::nats::connect(&config).await.expect("nats");
            ledger::export::nats::export(&mut conn, &js, &config, &progress, &shutdown).await
        }));
    }
    // Once both have resumed, each new position is published by both: the
    // later publish is acknowledged as a duplicate (within the stream's
    // window) or refused for its expected sequence (the exporter resyncs).
    // More of the log is written until that has been seen.
    let mut written = 4_000;
    while collided() - collided_before < 1.0 {
        assert!(written < 20_000, "the two exporters never collided");
        fill(&app.pool, written + 1, written + 1_000).await;
        written += 1_000;
        common::settle(&app.pool).await;
        wait_exported(&nats, written, Duration::from_secs(60)).await;
    }
    shutdown.cancel();
    for exporter in exporters {
        exporter
            .await
            .expect("joined")
            .expect("each exporter ends without error");
    }
    assert_stream_is_the_log(&js, &app.pool).await;
}

/// Publishes one exporter made of a position the other had stored:
/// acknowledged as duplicates, or refused and resynced.
fn collisions() -> f64 {
    metric("ledger_nats_export_duplicates_total", "")
        + metric("ledger_nats_export_resyncs_total", "")
}

#[tokio::test]
async fn an_invalid_nats_url_stops_ledger_serve_with_the_setting_named() {
    let database_url = common::fresh_database_url().await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("DATABASE_URL", &database_url)
        .env("LEDGER_ADMIN_TOKEN", ADMIN)
        .env("LEDGER_NATS_URL", "http://127.0.0.1:4222")
        .output()
        .expect("run ledger serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("LEDGER_NATS_URL") && stderr.contains("nats://"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_unreachable_nats_server_is_retried_until_it_is_there() {
    let port = nats_server::free_port();
    let errors_before = metric("ledger_nats_export_errors_total", "kind=\"connect\"");
    let app = common::spawn_app_with(common::fresh_database_url().await, |config| {
        config.nats = Some(nats_config(&format!("nats://127.0.0.1:{port}")));
    })
    .await;
    let a = app.register().await;
    let b = app.register().await;
    app.record(&a, b.id, "while NATS is away").await;
    common::poll_until(
        "a failed connection attempt counted",
        Duration::from_secs(30),
        || async { metric("ledger_nats_export_errors_total", "kind=\"connect\"") > errors_before },
    )
    .await;
    let nats = NatsServer::start_on(port).await;
    common::settle(&app.pool).await;
    wait_exported(&nats, head(&app.pool).await, Duration::from_secs(60)).await;
    assert_stream_is_the_log(&nats.jetstream().await, &app.pool).await;
}

#[tokio::test]
async fn a_stream_written_from_another_database_is_refused_and_left_alone() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    let first = common::spawn_app_with(common::fresh_database_url().await, |config| {
        config.nats = Some(nats_config(&nats.url));
    })
    .await;
    fill(&first.pool, 1, 200).await;
    common::settle(&first.pool).await;
    wait_exported(&nats, 200, Duration::from_secs(60)).await;

    // Another ledger, pointed at the same stream: first its log is behind
    // the stream, then past it — with other entries.
    let mismatches = || metric("ledger_nats_export_errors_total", "kind=\"mismatch\"");
    let before = mismatches();
    let other = common::spawn_app_with(common::fresh_database_url().await, |config| {
        config.nats = Some(nats_config(&nats.url));
    })
    .await;
    fill(&other.pool, 1_000_001, 1_000_100).await;
    common::settle(&other.pool).await;
    common::poll_until(
        "a refusal (log behind)",
        Duration::from_secs(30),
        || async { mismatches() > before },
    )
    .await;
    let refused = mismatches();
    fill(&other.pool, 1_000_101, 1_000_300).await;
    common::settle(&other.pool).await;
    common::poll_until(
        "a refusal (other hashes)",
        Duration::from_secs(30),
        || async { mismatches() > refused },
    )
    .await;
    // Untouched: still exactly the first ledger's log.
    assert_stream_is_the_log(&js, &first.pool).await;
}
