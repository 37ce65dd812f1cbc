//! `ledger projections rebuild` on a live service: readers keep answering
//! from the old view while the new one is built beside it, commands keep
//! being positioned and projected, and the swap keeps every index's name.

mod common;

use std::time::{Duration, Instant};

use common::{settle, spawn_app};

/// Delegations written straight into the event table (each recorded and
/// completed: two events), so a log of 100,000 entries takes seconds.
const DELEGATIONS: i64 = 50_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_of_a_long_log_never_holds_up_readers_or_the_log() {
    let app = spawn_app().await;
    let source = app.register().await;
    let target = app.register().await;
    sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         select 'delegation', d.id::text, s.sequence, s.event_type, '1.0', s.payload, '{}'::json \
         from (select gen_random_uuid() as id, now() as at from generate_series(1, $3)) d \
         cross join lateral (values \
           (1, 'DelegationSent', json_build_object('DelegationSent', json_build_object( \
              'delegation_id', d.id, 'source_id', $1::uuid, 'target_id', $2::uuid, \
              'task', 'bulk task', 'task_preview', 'bulk task', 'origin', 'recorded', \
              'idempotency_key', null, 'actor', json_build_object('kind', 'workspace', 'id', $1::uuid), \
              'at', d.at))), \
           (2, 'DelegationCompleted', json_build_object('DelegationCompleted', json_build_object( \
              'delegation_id', d.id, 'source_id', $1::uuid, 'target_id', $2::uuid, \
              'result', 'bulk result', 'response_preview', 'bulk result', \
              'actor', json_build_object('kind', 'workspace', 'id', $2::uuid), 'at', d.at))) \
         ) as s(sequence, event_type, payload)",
    )
    .bind(source.id)
    .bind(target.id)
    .bind(DELEGATIONS)
    .execute(&app.pool)
    .await
    .expect("a long history");
    settle(&app.pool).await;
    let head: i64 = sqlx::query_scalar("select max(position) from ledger_log")
        .fetch_one(&app.pool)
        .await
        .expect("head");
    assert!(head >= 2 * DELEGATIONS, "{head} entries");
    let indexes_before = index_names(&app.pool).await;
    let rows_before: i64 = sqlx::query_scalar("select count(*) from activity_logs")
        .fetch_one(&app.pool)
        .await
        .expect("rows");

    // Rebuild with the real CLI while a reader and a writer keep going.
    let (done, finished) = tokio::sync::watch::channel(false);
    let rebuild = async {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["projections", "rebuild", "activity_logs"])
            .env("DATABASE_URL", &app.database_url)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output()
            .await
            .expect("the rebuild ran");
        done.send_replace(true);
        output
    };
    let reader = async {
        let mut slowest = Duration::ZERO;
        let mut reads = 0u32;
        let path = format!("/workspaces/{}/activity?limit=20", source.id);
        while !*finished.borrow() {
            let started = Instant::now();
            let (status, body) = app.get(&path, &source.token).await;
            slowest = slowest.max(started.elapsed());
            assert_eq!(status, 200, "{body}");
            assert_eq!(body.as_array().map(Vec::len), Some(20));
            reads += 1;
        }
        (slowest, reads)
    };
    let writer = async {
        let mut recorded = Vec::new();
        let mut slowest = Duration::ZERO;
        while !*finished.borrow() {
            let started = Instant::now();
            recorded.push(app.record(&source, target.id, "during the rebuild").await);
            slowest = slowest.max(started.elapsed());
        }
        (recorded, slowest)
    };
    let (output, (slowest_read, reads), (recorded, slowest_write)) =
        tokio::join!(rebuild, reader, writer);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "{reads} reads during the rebuild, slowest {slowest_read:?}; {} commands, slowest {slowest_write:?}",
        recorded.len()
    );
    assert!(
        reads > 10,
        "the rebuild was too quick to tell ({reads} reads)"
    );
    assert!(
        slowest_read < Duration::from_millis(200),
        "a read waited {slowest_read:?} during the rebuild"
    );
    // Commands kept being positioned and projected meanwhile (each answered
    // only once every view, this one included, showed it).
    assert!(!recorded.is_empty());
    assert!(
        slowest_write < Duration::from_secs(2),
        "a command waited {slowest_write:?} for the log during the rebuild"
    );

    settle(&app.pool).await;
    let rows_after: i64 = sqlx::query_scalar("select count(*) from activity_logs")
        .fetch_one(&app.pool)
        .await
        .expect("rows");
    // Every earlier row, plus a `delegate` row per command of the writer.
    assert_eq!(rows_after, rows_before + recorded.len() as i64);
    assert_eq!(index_names(&app.pool).await, indexes_before);
    let (status, body) = app
        .get(
            &format!("/workspaces/{}/delegations/{}", source.id, recorded[0]),
            &source.token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let leftovers: i64 = sqlx::query_scalar(
        "select count(*) from pg_tables where schemaname in ('ledger_rebuild', 'ledger_retired')",
    )
    .fetch_one(&app.pool)
    .await
    .expect("leftovers");
    assert_eq!(leftovers, 0, "shadow tables left behind");
}

/// Index names of the rebuilt table.
async fn index_names(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select indexname::text from pg_indexes where tablename = 'activity_logs' \
         and schemaname = current_schema() order by 1",
    )
    .fetch_all(pool)
    .await
    .expect("indexes")
}
