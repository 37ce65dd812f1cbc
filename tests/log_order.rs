//! The positioned log under concurrent writers: dense positions, every
//! committed event exactly once, per-aggregate order kept, chain intact.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aggregates::workspace::{DeliveryMode, Workspace, WorkspaceCommand};
use chrono::Utc;
use ledger::commands::{CommandBus, CommandError};
use ledger::log::reader::LogReader;
use ledger::log::verify::verify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WRITERS: usize = 8;
const AGGREGATES: usize = 64;
const COMMANDS_PER_WRITER: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_produce_a_dense_complete_ordered_chained_log() {
    let url = common::fresh_database_url().await;
    let pool = ledger::db::connect(&url, 30).await.expect("connect");
    ledger::db::migrate(&pool).await.expect("migrate");
    let shutdown = CancellationToken::new();
    let background = ledger::app::start_background(&pool, Default::default(), shutdown.clone())
        .await
        .expect("background");
    let bus = CommandBus::new(
        pool.clone(),
        background.progress.clone(),
        Duration::from_secs(10),
    );

    let ids: Vec<Uuid> = (0..AGGREGATES).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        let command = WorkspaceCommand::Register {
            workspace_id: *id,
            name: None,
            url: None,
            delivery_mode: DeliveryMode::Poll,
            token_hash: id.simple().to_string(),
            at: Utc::now(),
        };
        bus.execute::<Workspace>(&id.to_string(), command, HashMap::new())
            .await
            .expect("register");
    }

    // A reader follows the log while the writers append, and checks density
    // as it goes: each batch must start right after the last position seen.
    let reader = LogReader::new(pool.clone());
    let expected_total = (AGGREGATES + WRITERS * COMMANDS_PER_WRITER) as i64;
    let follower = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut last = 0;
        while last < expected_total {
            let batch = reader.read_after(last, 700).await.expect("read log");
            for entry in batch {
                assert_eq!(entry.position, last + 1, "the log has a gap or a repeat");
                last = entry.position;
                seen.push(entry);
            }
            tokio::task::yield_now().await;
        }
        seen
    });

    let ids = Arc::new(ids);
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let bus = bus.clone();
        let ids = ids.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..COMMANDS_PER_WRITER {
                // Writers overlap on aggregates, so optimistic-concurrency
                // conflicts (and retries) happen for real.
                let id = ids[(n * 7 + writer * 13) % ids.len()];
                let command = WorkspaceCommand::ReportCapacity {
                    active_tasks: (writer * COMMANDS_PER_WRITER + n) as u32 + 1,
                    max_concurrent: 100_000,
                    at: Utc::now(),
                };
                loop {
                    match bus
                        .execute::<Workspace>(&id.to_string(), command.clone(), HashMap::new())
                        .await
                    {
                        Ok(executed) => {
                            assert_eq!(executed.committed, 1);
                            break;
                        }
                        Err(CommandError::Conflict) => continue,
                        Err(other) => panic!("write failed: {other}"),
                    }
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer task");
    }
    let seen = tokio::time::timeout(Duration::from_secs(60), follower)
        .await
        .expect("the reader should reach every committed event")
        .expect("reader task");
    shutdown.cancel();

    let committed: Vec<(i64, String, String, i64)> =
        sqlx::query_as("select event_id, aggregate_type, aggregate_id, sequence from events")
            .fetch_all(&pool)
            .await
            .expect("events");
    assert_eq!(
        committed.len() as i64,
        expected_total,
        "every command committed one event"
    );
    assert_eq!(
        seen.len(),
        committed.len(),
        "the log holds every committed event"
    );
    let positions: Vec<i64> = seen.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=expected_total).collect::<Vec<_>>());

    let logged: HashSet<i64> = seen.iter().map(|e| e.event_id).collect();
    assert_eq!(logged.len(), seen.len(), "no event appears twice");
    let all: HashSet<i64> = committed.iter().map(|c| c.0).collect();
    assert_eq!(logged, all, "exactly the committed events are in the log");

    let mut last_sequence: HashMap<(String, String), i64> = HashMap::new();
    for entry in &seen {
        let key = (entry.aggregate_type.clone(), entry.aggregate_id.clone());
        let previous = last_sequence.insert(key, entry.sequence).unwrap_or(0);
        assert_eq!(entry.sequence, previous + 1, "per-aggregate order is kept");
    }

    let verification = verify(&pool, None, None).await.expect("verify");
    assert!(
        verification.is_ok(),
        "chain should verify: {verification:?}"
    );
}

#[tokio::test]
async fn verify_reports_the_first_altered_entry() {
    let app = common::spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    for n in 0..3 {
        app.record(&a, b.id, &format!("task {n}")).await;
    }
    let before = verify(&app.pool, None, None).await.expect("verify");
    assert!(before.is_ok(), "{before:?}");

    let position: i64 = sqlx::query_scalar(
        "select min(position) from ledger_log where event_type = 'DelegationSent'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("a sent event");
    sqlx::query(
        "update events set payload = replace(payload::text, 'task 0', 'task X')::json \
         where event_id = (select event_id from ledger_log where position = $1)",
    )
    .bind(position)
    .execute(&app.pool)
    .await
    .expect("tamper");
    match verify(&app.pool, None, None).await.expect("verify") {
        ledger::log::verify::Verification::Broken {
            first_bad_position, ..
        } => {
            assert_eq!(first_bad_position, position)
        }
        ok => panic!("a changed payload must be detected, got {ok:?}"),
    }
}
