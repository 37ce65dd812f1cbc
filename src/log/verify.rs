//! Walk the positioned log and prove it was not altered: every entry's hash
//! must chain from its predecessor and match the event row it was made
//! from. A changed payload, a deleted or re-inserted event, or two entries
//! swapped all break the chain at the first entry they touch.

use serde::Serialize;
use sqlx::{PgPool, Row};

use super::chain::{self, ChainedEvent, GENESIS};

/// Entries checked per query.
const VERIFY_BATCH: i64 = 5000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Verification {
    Ok {
        ok: bool,
        checked: i64,
        head_position: i64,
        head_hash: String,
    },
    Broken {
        ok: bool,
        first_bad_position: i64,
        reason: String,
    },
}

impl Verification {
    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok { .. })
    }
}

fn broken(position: i64, reason: impl Into<String>) -> Verification {
    Verification::Broken { ok: false, first_bad_position: position, reason: reason.into() }
}

/// Verify positions `from..=to` (defaults: the whole log).
pub async fn verify(pool: &PgPool, from: Option<i64>, to: Option<i64>) -> Result<Verification, sqlx::Error> {
    let from = from.unwrap_or(1).max(1);
    let mut prev_hash = if from == 1 {
        GENESIS.to_vec()
    } else {
        let prev: Option<Vec<u8>> = sqlx::query_scalar("select hash from ledger_log where position = $1")
            .bind(from - 1)
            .fetch_optional(pool)
            .await?;
        match prev {
            Some(hash) => hash,
            None => return Ok(broken(from - 1, "the entry before the range is missing")),
        }
    };
    let to = match to {
        Some(to) => to,
        None => sqlx::query_scalar("select coalesce(max(position), 0) from ledger_log").fetch_one(pool).await?,
    };
    let mut expected = from;
    let mut checked = 0;
    while expected <= to {
        let rows = sqlx::query(
            "select l.position, l.prev_hash, l.hash, l.aggregate_type as log_type, l.aggregate_id as log_id, \
             l.sequence as log_sequence, l.event_type as log_event_type, \
             e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, \
             e.payload::text as payload, e.metadata::text as metadata \
             from ledger_log l left join events e on e.event_id = l.event_id \
             where l.position >= $1 and l.position <= $2 order by l.position limit $3",
        )
        .bind(expected)
        .bind(to)
        .bind(VERIFY_BATCH)
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            return Ok(broken(expected, "entry missing from the log"));
        }
        for row in rows {
            let position: i64 = row.try_get("position")?;
            if position != expected {
                return Ok(broken(expected, "entry missing from the log"));
            }
            let Some(aggregate_type) = row.try_get::<Option<String>, _>("aggregate_type")? else {
                return Ok(broken(position, "the event this entry was made from is missing"));
            };
            let aggregate_id: String = row.try_get("aggregate_id")?;
            let sequence: i64 = row.try_get("sequence")?;
            let event_type: String = row.try_get("event_type")?;
            let identity_matches = aggregate_type == row.try_get::<String, _>("log_type")?
                && aggregate_id == row.try_get::<String, _>("log_id")?
                && sequence == row.try_get::<i64, _>("log_sequence")?
                && event_type == row.try_get::<String, _>("log_event_type")?;
            if !identity_matches {
                return Ok(broken(position, "the entry does not match its event row"));
            }
            let stored_prev: Vec<u8> = row.try_get("prev_hash")?;
            if stored_prev != prev_hash {
                return Ok(broken(position, "prev_hash does not match the previous entry's hash"));
            }
            let payload: String = row.try_get("payload")?;
            let metadata: String = row.try_get("metadata")?;
            let event_version: String = row.try_get("event_version")?;
            let hash = chain::link(
                &prev_hash,
                &ChainedEvent {
                    position,
                    aggregate_type: &aggregate_type,
                    aggregate_id: &aggregate_id,
                    sequence,
                    event_type: &event_type,
                    event_version: &event_version,
                    payload: &payload,
                    metadata: &metadata,
                },
            );
            let stored: Vec<u8> = row.try_get("hash")?;
            if stored != hash {
                return Ok(broken(position, "hash does not match the event's content"));
            }
            prev_hash = stored;
            expected += 1;
            checked += 1;
        }
    }
    Ok(Verification::Ok { ok: true, checked, head_position: to, head_hash: hex::encode(&prev_hash) })
}
