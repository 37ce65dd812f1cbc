//! Many delegation events written straight into the event table, for the
//! tests and benchmarks that need a big log fast: one `INSERT … SELECT
//! generate_series` per 100,000 events instead of a command per event. The
//! service's own sequencer then positions and chains them and its runners
//! project them, as if they had come through the API.
//!
//! Event g belongs to delegation d = (g + 1) / 2 — odd g its
//! `DelegationSent`, even g its `DelegationCompleted` — so a range from an
//! odd number to an even one writes whole delegations. Ids come from d
//! (md5), so the same numbers make the same delegations in any database.
//!
//! Why a file included with `#[path]` (like `nats_server.rs`) rather than a
//! module of the `ledger` crate: it is test data, not the service — the
//! crate's `test-support` feature is the embedded cluster's — and its users
//! are one test binary (`tests/nats_export.rs`) and two benchmarks
//! (`benches/audit.rs`, `benches/export.rs`), which all include it from here.

#![allow(dead_code)]

use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// How many events one insert statement writes.
const CHUNK: i64 = 100_000;

/// The shape of the history [`insert`] writes.
#[derive(Debug, Clone, Copy)]
pub struct Delegations {
    /// How many workspaces the delegations run between (at least 2):
    /// delegation d goes from workspace d mod `workspaces` to another one,
    /// a different one in each round of `workspaces` delegations, so every
    /// workspace is source and target of about as many delegations and
    /// pairs repeat rarely.
    pub workspaces: i64,
    /// `recorded_at` of event g: g seconds after this — a history spread
    /// over time, for time windows — or, when `None`, the time of the insert.
    pub recorded_from: Option<DateTime<Utc>>,
}

/// Write events `events` (numbered from 1 across calls; see the module
/// doc) of the history `shape`, in statements of [`CHUNK`] events.
pub async fn insert(
    pool: &PgPool,
    events: RangeInclusive<i64>,
    shape: Delegations,
) -> Result<(), sqlx::Error> {
    let (mut from, last) = events.into_inner();
    while from <= last {
        let to = last.min(from + CHUNK - 1);
        insert_chunk(pool, from, to, shape).await?;
        from = to + 1;
    }
    Ok(())
}

async fn insert_chunk(
    pool: &PgPool,
    from: i64,
    to: i64,
    shape: Delegations,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata, recorded_at) \
         select 'delegation', x.delegation::text, 2 - g % 2, \
           case when g % 2 = 1 then 'DelegationSent' else 'DelegationCompleted' end, '1.0', \
           case when g % 2 = 1 then json_build_object('DelegationSent', json_build_object( \
               'delegation_id', x.delegation, 'source_id', x.source, 'target_id', x.target, \
               'task', x.task, 'task_preview', x.task, 'origin', 'recorded', 'idempotency_key', null, \
               'actor', json_build_object('kind', 'workspace', 'id', x.source), 'at', x.at)) \
           else json_build_object('DelegationCompleted', json_build_object( \
               'delegation_id', x.delegation, 'source_id', x.source, 'target_id', x.target, \
               'result', 'revenue grew', 'response_preview', 'revenue grew', \
               'actor', json_build_object('kind', 'workspace', 'id', x.target), 'at', x.at)) end, \
           json_build_object('actor', 'workspace:' || x.source), x.at \
         from generate_series($1::bigint, $2::bigint) g \
         cross join lateral (select (g + 1) / 2 as d) dd \
         cross join lateral (select \
             md5('d' || dd.d)::uuid as delegation, \
             md5('ws' || (dd.d % $3))::uuid as source, \
             md5('ws' || ((dd.d % $3 + 1 + (dd.d / $3) % ($3 - 1)) % $3))::uuid as target, \
             'benchmark task ' || dd.d || ': summarise the quarterly report' as task, \
             coalesce($4::timestamptz + make_interval(secs => g), now()) as at) x",
    )
    .bind(from)
    .bind(to)
    .bind(shape.workspaces)
    .bind(shape.recorded_from)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    // Benchmarks compile this module too (with `cfg(test)`, but no test
    // harness to run the tests), so the test's own imports are inside it.
    use projections::LogEntry;

    use super::*;

    async fn migrated_database() -> PgPool {
        let url = ledger::embedded_pg::shared_test_database("bulk_events")
            .await
            .expect("a test database");
        let pool = ledger::db::connect(&url, 2).await.expect("connect");
        ledger::db::migrate(&pool).await.expect("migrate");
        pool
    }

    /// Every event so far, as the projections would read it (position 0:
    /// nothing has positioned them).
    async fn events(pool: &PgPool) -> Vec<LogEntry> {
        sqlx::query_as(
            "select 0::bigint as position, event_id, aggregate_type, aggregate_id, sequence, \
             event_type, event_version, payload, metadata, recorded_at \
             from events order by event_id",
        )
        .fetch_all(pool)
        .await
        .expect("read the events")
    }

    #[tokio::test]
    async fn whole_delegations_between_two_workspaces_at_the_asked_times() {
        use std::collections::HashSet;

        use projections::entry::{workspaces_of, LedgerEvent};

        let pool = migrated_database().await;
        let start = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .expect("a time")
            .to_utc();
        let shape = Delegations {
            workspaces: 3,
            recorded_from: Some(start),
        };
        insert(&pool, 1..=12, shape).await.expect("insert");

        let written = events(&pool).await;
        assert_eq!(written.len(), 12);
        let mut pairs = HashSet::new();
        for (entry, g) in written.iter().zip(1i64..) {
            let sent = g % 2 == 1;
            assert_eq!(entry.sequence, if sent { 1 } else { 2 }, "event {g}");
            match entry.decode().expect("a delegation event") {
                LedgerEvent::Delegation(event) => assert_eq!(
                    entry.event_type,
                    if sent {
                        "DelegationSent"
                    } else {
                        "DelegationCompleted"
                    },
                    "{event:?}"
                ),
                other => panic!("event {g} is not a delegation's: {other:?}"),
            }
            let (source, target) = workspaces_of(&entry.aggregate_type, &entry.payload);
            let (source, target) = (source.expect("a source"), target.expect("a target"));
            assert_ne!(source, target, "event {g}");
            pairs.insert((source, target));
            assert_eq!(
                entry.recorded_at,
                start + chrono::Duration::seconds(g),
                "event {g}"
            );
        }
        // Six delegations between three workspaces: every ordered pair once.
        assert_eq!(pairs.len(), 6);
        let ids: HashSet<_> = written.iter().map(|e| &e.aggregate_id).collect();
        assert_eq!(ids.len(), 6);

        // Without a start time, events are recorded now.
        let before = Utc::now() - chrono::Duration::seconds(60);
        let now = Delegations {
            recorded_from: None,
            ..shape
        };
        insert(&pool, 13..=14, now).await.expect("insert");
        let written = events(&pool).await;
        assert_eq!(written.len(), 14);
        assert!(written[12..].iter().all(|e| e.recorded_at > before));
    }
}
