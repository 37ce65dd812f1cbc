//! The sequencer: the single writer of the positioned log.
//!
//! One sequencer per database leads at a time, elected with a session-level
//! PostgreSQL advisory lock held on a dedicated connection; all its reads
//! and writes go through that connection, so it can only write while it
//! holds the lock, and another node takes over as soon as the connection
//! (and with it the lock) is gone.
//!
//! Each round it reads events in `(tx_id, event_id)` order after its
//! watermark, keeps the prefix whose writing transaction is older than
//! every transaction still running (`tx_id < pg_snapshot_xmin(…)`: those
//! have all finished, so no event can ever appear behind them), gives them
//! the next dense positions, chains their hashes, inserts them and
//! `NOTIFY`s once per batch. It never skips an event and never blocks a
//! writer; a long-running writing transaction only delays the log.
//!
//! Each entry also records the workspaces its event concerns
//! ([`projections::entry::workspaces_of`]), so audits can select a
//! workspace's history through an index instead of reading every payload.

use std::sync::Arc;
use std::time::Duration;

use projections::entry::workspaces_of;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::chain::{self, ChainedEvent, GENESIS};
use super::follow::{follow, OnError, Round, Rounds, WakeUps};
use super::progress::{Progress, Sequenced, Watermark, LOG_CHANNEL};
use crate::leader::Election;

/// The advisory lock key that elects the sequencer ("ledgseq1").
pub const LEADER_LOCK_KEY: i64 = 0x6c65_6467_7365_7131;

#[derive(Debug, Clone)]
pub struct SequencerConfig {
    /// Most events positioned in one transaction.
    pub batch_size: i64,
    /// Longest sleep between rounds when nobody wakes the sequencer (events
    /// written by other processes are picked up at this pace).
    pub poll_interval: Duration,
    /// Pause before a follower tries the leader lock again.
    pub election_interval: Duration,
    /// Pause before re-reading when events wait behind a running transaction.
    pub horizon_retry: Duration,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            poll_interval: Duration::from_millis(50),
            election_interval: Duration::from_millis(500),
            horizon_retry: Duration::from_millis(2),
        }
    }
}

/// The end of the log as the leader knows it.
#[derive(Debug, Clone)]
struct Tail {
    position: i64,
    hash: Vec<u8>,
    watermark: Watermark,
    /// The last entry's log time: the next entry's is never earlier.
    logged_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Run until cancelled: campaign for leadership, lead while elected,
/// campaign again if the lock's connection is lost.
pub async fn run(
    pool: PgPool,
    progress: Arc<Progress>,
    config: SequencerConfig,
    cancel: CancellationToken,
) {
    let mut election = Election::new(
        &pool,
        "sequencer",
        LEADER_LOCK_KEY,
        config.election_interval,
        &cancel,
    );
    while let Some(mut lock) = election.elected().await {
        let led = lead(&mut lock, &progress, &config, &cancel).await;
        election.step_down(lock, led).await;
    }
}

/// One term: position events through the lock connection until cancelled
/// or until it fails.
async fn lead(
    conn: &mut PgConnection,
    progress: &Progress,
    config: &SequencerConfig,
    cancel: &CancellationToken,
) -> Result<(), sqlx::Error> {
    let tail = load_tail(conn).await?;
    progress.publish_sequenced(Sequenced {
        head: tail.position,
        watermark: tail.watermark,
    });
    let mut rounds = Sequencing {
        conn,
        tail,
        progress,
        config,
    };
    let mut woken = WakeUps(|| progress.sequencer_woken());
    follow(&mut rounds, &mut woken, config.poll_interval, cancel).await
}

/// The leader's rounds: each positions the next batch of events.
struct Sequencing<'a> {
    conn: &'a mut PgConnection,
    tail: Tail,
    progress: &'a Progress,
    config: &'a SequencerConfig,
}

impl Rounds for Sequencing<'_> {
    type Error = sqlx::Error;

    async fn round(&mut self) -> Result<Round, sqlx::Error> {
        let round = sequence_batch(self.conn, &mut self.tail, self.config.batch_size).await?;
        Ok(if round.appended > 0 {
            self.progress.publish_sequenced(Sequenced {
                head: self.tail.position,
                watermark: self.tail.watermark,
            });
            Round::Progressed
        } else if round.waiting_behind_horizon {
            Round::Blocked(self.config.horizon_retry)
        } else {
            Round::CaughtUp
        })
    }

    /// Its connection is the lock's: a failure ends the term.
    fn on_error(&mut self, _: &sqlx::Error, _: u32) -> OnError {
        OnError::Stop
    }
}

/// The log's last entry, as the sequencer needs it.
#[derive(sqlx::FromRow)]
struct LastEntry {
    position: i64,
    hash: Vec<u8>,
    /// `xid8` as text (sqlx has no type for it).
    tx_id: String,
    event_id: i64,
    logged_at: chrono::DateTime<chrono::Utc>,
}

async fn load_tail(conn: &mut PgConnection) -> Result<Tail, sqlx::Error> {
    let last: Option<LastEntry> = sqlx::query_as(
        "select position, hash, tx_id::text as tx_id, event_id, logged_at from ledger_log \
         order by position desc limit 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match last {
        None => Tail {
            position: 0,
            hash: GENESIS.to_vec(),
            watermark: Watermark::default(),
            logged_at: None,
        },
        Some(last) => Tail {
            position: last.position,
            hash: last.hash,
            watermark: Watermark {
                tx_id: parse_xid(&last.tx_id)?,
                event_id: last.event_id,
            },
            logged_at: Some(last.logged_at),
        },
    })
}

/// The log time of each entry in log order: its event's `recorded_at`, or
/// the entry before's log time if that is later (a transaction that ran
/// long commits an earlier `recorded_at` after a later one). Never
/// decreasing, so audit time bounds are position bounds.
fn log_times(
    previous: Option<chrono::DateTime<chrono::Utc>>,
    recorded: impl Iterator<Item = chrono::DateTime<chrono::Utc>>,
) -> Vec<chrono::DateTime<chrono::Utc>> {
    let mut last = previous;
    recorded
        .map(|recorded_at| {
            let time = last.map_or(recorded_at, |t| t.max(recorded_at));
            last = Some(time);
            time
        })
        .collect()
}

fn parse_xid(text: &str) -> Result<u64, sqlx::Error> {
    text.parse()
        .map_err(|_| sqlx::Error::Protocol(format!("unexpected xid8 value {text:?}")))
}

struct Batch {
    appended: usize,
    /// Events exist after the watermark but their transactions are not yet
    /// behind the horizon: try again very soon.
    waiting_behind_horizon: bool,
}

/// One event row read for positioning.
#[derive(sqlx::FromRow)]
struct EventRow {
    event_id: i64,
    /// `xid8` as text (sqlx has no type for it).
    tx_id: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
    recorded_at: chrono::DateTime<chrono::Utc>,
    /// Its transaction is behind the snapshot horizon.
    ready: bool,
}

/// An event ready to be positioned: its row, with what positioning adds.
struct Candidate {
    event: EventRow,
    tx_id: u64,
    source_workspace: Option<Uuid>,
    target_workspace: Option<Uuid>,
}

impl Candidate {
    fn from_row(event: EventRow) -> Result<Self, sqlx::Error> {
        // The column is `json`, so the text always parses; if it somehow
        // did not, the entry concerns no workspace rather than stalling
        // the log.
        let (source_workspace, target_workspace) = serde_json::from_str(&event.payload)
            .map(|parsed| workspaces_of(&event.aggregate_type, &parsed))
            .unwrap_or_default();
        Ok(Self {
            tx_id: parse_xid(&event.tx_id)?,
            event,
            source_workspace,
            target_workspace,
        })
    }
}

async fn sequence_batch(
    conn: &mut PgConnection,
    tail: &mut Tail,
    batch_size: i64,
) -> Result<Batch, sqlx::Error> {
    // The horizon is computed in the same statement, so every event whose
    // transaction is below it is visible to this statement's snapshot.
    let rows: Vec<EventRow> = sqlx::query_as(
        "select e.event_id, e.tx_id::text as tx_id, e.aggregate_type, e.aggregate_id, e.sequence, \
         e.event_type, e.event_version, e.payload::text as payload, e.metadata::text as metadata, \
         e.recorded_at, e.tx_id < pg_snapshot_xmin(pg_current_snapshot()) as ready \
         from events e \
         where (e.tx_id, e.event_id) > ($1::text::xid8, $2) \
         order by e.tx_id, e.event_id \
         limit $3",
    )
    .bind(tail.watermark.tx_id.to_string())
    .bind(tail.watermark.event_id)
    .bind(batch_size)
    .fetch_all(&mut *conn)
    .await?;

    let mut ready = Vec::with_capacity(rows.len());
    let mut waiting_behind_horizon = false;
    for row in rows {
        if !row.ready {
            waiting_behind_horizon = true;
            break;
        }
        ready.push(Candidate::from_row(row)?);
    }
    if ready.is_empty() {
        return Ok(Batch {
            appended: 0,
            waiting_behind_horizon,
        });
    }

    let mut positions = Vec::with_capacity(ready.len());
    let mut prev_hashes = Vec::with_capacity(ready.len());
    let mut hashes = Vec::with_capacity(ready.len());
    let logged_at = log_times(tail.logged_at, ready.iter().map(|c| c.event.recorded_at));
    let mut prev_hash = tail.hash.clone();
    let mut position = tail.position;
    for candidate in &ready {
        position += 1;
        let hash = chain::link(
            &prev_hash,
            &ChainedEvent {
                position,
                aggregate_type: &candidate.event.aggregate_type,
                aggregate_id: &candidate.event.aggregate_id,
                sequence: candidate.event.sequence,
                event_type: &candidate.event.event_type,
                event_version: &candidate.event.event_version,
                payload: &candidate.event.payload,
                metadata: &candidate.event.metadata,
            },
        );
        positions.push(position);
        prev_hashes.push(std::mem::replace(&mut prev_hash, hash.to_vec()));
        hashes.push(hash.to_vec());
    }
    let last = ready
        .last()
        .map(|c| Watermark {
            tx_id: c.tx_id,
            event_id: c.event.event_id,
        })
        .unwrap_or(tail.watermark);

    let mut tx = conn.begin().await?;
    // The log is a deterministic function of the (durably committed) event
    // rows: after a crash the same events get the same positions and hashes
    // again. So its commits need not wait for the WAL flush.
    sqlx::query("set local synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "insert into ledger_log (position, event_id, tx_id, aggregate_type, aggregate_id, sequence, \
         event_type, recorded_at, prev_hash, hash, source_workspace, target_workspace, logged_at) \
         select * from unnest($1::bigint[], $2::bigint[], $3::text[]::xid8[], $4::text[], $5::text[], \
         $6::bigint[], $7::text[], $8::timestamptz[], $9::bytea[], $10::bytea[], $11::uuid[], $12::uuid[], \
         $13::timestamptz[])",
    )
    .bind(&positions)
    .bind(ready.iter().map(|c| c.event.event_id).collect::<Vec<_>>())
    .bind(ready.iter().map(|c| c.event.tx_id.as_str()).collect::<Vec<_>>())
    .bind(ready.iter().map(|c| c.event.aggregate_type.as_str()).collect::<Vec<_>>())
    .bind(ready.iter().map(|c| c.event.aggregate_id.as_str()).collect::<Vec<_>>())
    .bind(ready.iter().map(|c| c.event.sequence).collect::<Vec<_>>())
    .bind(ready.iter().map(|c| c.event.event_type.as_str()).collect::<Vec<_>>())
    .bind(ready.iter().map(|c| c.event.recorded_at).collect::<Vec<_>>())
    .bind(&prev_hashes)
    .bind(&hashes)
    .bind(ready.iter().map(|c| c.source_workspace).collect::<Vec<_>>())
    .bind(ready.iter().map(|c| c.target_workspace).collect::<Vec<_>>())
    .bind(&logged_at)
    .execute(&mut *tx)
    .await?;
    sqlx::query("select pg_notify($1, $2)")
        .bind(LOG_CHANNEL)
        .bind(format!("{},{},{}", position, last.tx_id, last.event_id))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics::counter!(crate::metrics::EVENTS_APPENDED).increment(ready.len() as u64);

    tail.position = position;
    tail.hash = prev_hash;
    tail.watermark = last;
    tail.logged_at = logged_at.last().copied().or(tail.logged_at);
    Ok(Batch {
        appended: ready.len(),
        waiting_behind_horizon,
    })
}

#[cfg(test)]
mod tests {
    use super::log_times;
    use chrono::{DateTime, Duration, Utc};

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + Duration::seconds(seconds)
    }

    #[test]
    fn an_earlier_recorded_time_committed_later_takes_the_time_before_it() {
        assert_eq!(
            log_times(Some(t(10)), [t(12), t(11), t(15), t(9)].into_iter()),
            vec![t(12), t(12), t(15), t(15)]
        );
    }

    #[test]
    fn the_first_entry_of_the_log_keeps_its_recorded_time() {
        assert_eq!(log_times(None, [t(5), t(3)].into_iter()), vec![t(5), t(5)]);
    }
}
