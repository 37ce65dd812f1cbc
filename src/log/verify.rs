//! Walk the positioned log and prove it was not altered: every entry's hash
//! must chain from its predecessor and match the event row it was made
//! from. A changed payload, a deleted or re-inserted event, or two entries
//! swapped all break the chain at the first entry they touch.
//!
//! What a clean walk does *not* prove: that nobody with write access
//! rewrote the whole chain consistently, or cut entries off its end. Both
//! leave a chain that verifies on its own. They are caught by comparing the
//! [`head`] with a copy kept outside the database (`ledger audit head`, or
//! `head_position`/`head_hash` of a verification): a rewritten chain ends in
//! a different hash at that position, a truncated one no longer reaches it.
//!
//! A range `from..=to` is anchored on the stored hash of entry `from - 1`,
//! which the walk trusts; only a walk from position 1 checks everything.

use futures::TryStreamExt;
use serde::Serialize;
use sqlx::PgPool;

use super::chain::{self, ChainedEvent, GENESIS};

/// The result of a walk; serialized as the `GET /audit/verify` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Verification {
    /// Every entry of the range checked out; `head_*` is its last entry
    /// (export it to detect a later rewrite).
    Ok {
        ok: bool,
        checked: i64,
        head_position: i64,
        head_hash: String,
    },
    /// The first entry that does not check out, and why.
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

/// The last entry of the log: the value to keep outside the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    /// 0 for an empty log.
    pub position: i64,
    /// Lowercase hex SHA-256; 64 zeros for an empty log.
    pub hash: String,
}

fn broken(position: i64, reason: impl Into<String>) -> Verification {
    Verification::Broken {
        ok: false,
        first_bad_position: position,
        reason: reason.into(),
    }
}

/// The current head of the log.
pub async fn head(pool: &PgPool) -> Result<Head, sqlx::Error> {
    let last: Option<(i64, Vec<u8>)> =
        sqlx::query_as("select position, hash from ledger_log order by position desc limit 1")
            .fetch_optional(pool)
            .await?;
    Ok(match last {
        Some((position, hash)) => Head {
            position,
            hash: hex::encode(hash),
        },
        None => Head {
            position: 0,
            hash: hex::encode(GENESIS),
        },
    })
}

/// Entries read per query of a walk: each statement stays short (well
/// inside a serving pool's `statement_timeout`) however long the log is,
/// and memory stays flat.
const CHUNK: i64 = 10_000;

/// Verify positions `from..=to` (defaults: the whole log; `to` beyond the
/// head is cut to the head), in chunks of `CHUNK` entries.
pub async fn verify(
    pool: &PgPool,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Verification, sqlx::Error> {
    verify_reporting(pool, from, to, &mut |_| {}).await
}

/// How far a walk got: `checked` of `total` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkProgress {
    pub checked: i64,
    pub total: i64,
}

/// [`verify`], calling `report` after every chunk (for a progress bar).
pub async fn verify_reporting(
    pool: &PgPool,
    from: Option<i64>,
    to: Option<i64>,
    report: &mut (dyn FnMut(WalkProgress) + Send),
) -> Result<Verification, sqlx::Error> {
    let head = head(pool).await?;
    let from = from.unwrap_or(1).max(1);
    let to = to.map_or(head.position, |to| to.min(head.position));
    if from > to {
        // Nothing to check: the range starts after the head.
        return Ok(Verification::Ok {
            ok: true,
            checked: 0,
            head_position: head.position,
            head_hash: head.hash,
        });
    }
    let mut prev_hash = if from == 1 {
        GENESIS.to_vec()
    } else {
        let prev: Option<Vec<u8>> =
            sqlx::query_scalar("select hash from ledger_log where position = $1")
                .bind(from - 1)
                .fetch_optional(pool)
                .await?;
        match prev {
            Some(hash) => hash,
            None => return Ok(broken(from - 1, "the entry before the range is missing")),
        }
    };

    let total = to - from + 1;
    let mut expected = from;
    let mut checked = 0;
    while expected <= to {
        let chunk_end = to.min(expected.saturating_add(CHUNK - 1));
        if let Some(broken) =
            verify_chunk(pool, expected, chunk_end, &mut prev_hash, &mut checked).await?
        {
            return Ok(broken);
        }
        expected = chunk_end + 1;
        report(WalkProgress { checked, total });
    }
    Ok(Verification::Ok {
        ok: true,
        checked,
        head_position: to,
        head_hash: hex::encode(&prev_hash),
    })
}

/// Check `from..=to`, chained from `prev_hash` (moved to the last entry's
/// hash); the first bad entry, if any.
async fn verify_chunk(
    pool: &PgPool,
    from: i64,
    to: i64,
    prev_hash: &mut Vec<u8>,
    checked: &mut i64,
) -> Result<Option<Verification>, sqlx::Error> {
    // A left join: an entry whose event row was deleted must be reported,
    // not silently skipped.
    let mut links = sqlx::query_as::<_, ChainLink>(
        "select l.position, l.prev_hash, l.hash, l.aggregate_type as log_type, l.aggregate_id as log_id, \
         l.sequence as log_sequence, l.event_type as log_event_type, \
         e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, \
         e.payload::text as payload, e.metadata::text as metadata \
         from ledger_log l left join events e on e.event_id = l.event_id \
         where l.position >= $1 and l.position <= $2 order by l.position",
    )
    .bind(from)
    .bind(to)
    .fetch(pool);

    let mut expected = from;
    while let Some(link) = links.try_next().await? {
        let position = link.position;
        if position != expected {
            return Ok(Some(broken(expected, "entry missing from the log")));
        }
        let Some(event) = link.event() else {
            return Ok(Some(broken(
                position,
                "the event this entry was made from is missing",
            )));
        };
        let identity_matches = event.aggregate_type == link.log_type
            && event.aggregate_id == link.log_id
            && event.sequence == link.log_sequence
            && event.event_type == link.log_event_type;
        if !identity_matches {
            return Ok(Some(broken(
                position,
                "the entry does not match its event row",
            )));
        }
        if link.prev_hash != *prev_hash {
            return Ok(Some(broken(
                position,
                "prev_hash does not match the previous entry's hash",
            )));
        }
        let hash = chain::link(prev_hash, &event);
        if link.hash != hash {
            return Ok(Some(broken(
                position,
                "hash does not match the event's content",
            )));
        }
        *prev_hash = link.hash;
        expected += 1;
        *checked += 1;
    }
    if expected <= to {
        // The entries at the end of the range vanished after the head was read.
        return Ok(Some(broken(expected, "entry missing from the log")));
    }
    Ok(None)
}

/// One entry of a walk: what the log says it is (`log_*`) and its hashes,
/// and the event row it was made from — every event column `None` when
/// that row is gone (the walk's left join).
#[derive(sqlx::FromRow)]
struct ChainLink {
    position: i64,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
    log_type: String,
    log_id: String,
    log_sequence: i64,
    log_event_type: String,
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    sequence: Option<i64>,
    event_type: Option<String>,
    event_version: Option<String>,
    payload: Option<String>,
    metadata: Option<String>,
}

impl ChainLink {
    /// The event row as the chain hashes it, `None` when the row is gone.
    fn event(&self) -> Option<ChainedEvent<'_>> {
        Some(ChainedEvent {
            position: self.position,
            aggregate_type: self.aggregate_type.as_deref()?,
            aggregate_id: self.aggregate_id.as_deref()?,
            sequence: self.sequence?,
            event_type: self.event_type.as_deref()?,
            event_version: self.event_version.as_deref()?,
            payload: self.payload.as_deref()?,
            metadata: self.metadata.as_deref()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link_of(event: bool) -> ChainLink {
        let some = |s: &str| event.then(|| s.to_owned());
        ChainLink {
            position: 3,
            prev_hash: vec![1],
            hash: vec![2],
            log_type: "delegation".into(),
            log_id: "d".into(),
            log_sequence: 1,
            log_event_type: "DelegationSent".into(),
            aggregate_type: some("delegation"),
            aggregate_id: some("d"),
            sequence: event.then_some(1),
            event_type: some("DelegationSent"),
            event_version: some("1.0"),
            payload: some("{}"),
            metadata: some("{}"),
        }
    }

    #[test]
    fn a_link_hashes_its_event_row_and_has_none_when_the_row_is_gone() {
        let link = link_of(true);
        let event = link.event().expect("the event row is there");
        assert_eq!(event.position, 3);
        assert_eq!(event.aggregate_id, "d");
        assert_eq!(event.payload, "{}");
        assert!(link_of(false).event().is_none());
    }
}
