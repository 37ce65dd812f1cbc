//! The audit API (admin token only): read the positioned log as it is
//! stored, rebuild any aggregate's state as of any point, and check the
//! hash chain.
//!
//! * `GET /audit/events` — a filtered selection of the log in position
//!   order, paged by position (`after` exclusive, `next_after` to continue),
//!   or with `Accept: application/x-ndjson` the whole selection streamed one
//!   JSON object per line, never held in memory.
//! * `GET /audit/streams/{aggregate_type}/{aggregate_id}?as_of=` — one
//!   aggregate's events up to a position or a time, and the state folded
//!   from exactly those events by the same `Aggregate::apply` (and the same
//!   upcasters) as the write path, so the audit cannot disagree with what
//!   the command bus decided on.
//! * `GET /audit/verify?from=&to=` — the chain walk of [`crate::log::verify`].
//!
//! Events are shown as stored: `event_version` is the stored version and
//! `payload`/`metadata` are the stored JSON text verbatim (not re-encoded),
//! which together with the other fields is exactly what the entry's hash
//! covers — an auditor can recompute every hash from this output alone
//! (see [`crate::log::chain`]). Upcasting only happens when folding state.
//!
//! Workspace tokens may not use any of this: the log holds every
//! workspace's data (403).
//!
//! # Layout
//!
//! * [`events`] — `/audit/events`: parameters, the selection's SQL, pages;
//! * [`ndjson`] — the same selection streamed with bounded memory;
//! * [`aggregate`] — `/audit/streams/…`: one aggregate's events and state;
//! * [`verify`] — `/audit/verify`;
//! * here — the router, the admin check and the stored-entry row shape all
//!   of them share.

mod aggregate;
mod events;
mod ndjson;
mod verify;

use aggregates::delegation::Delegation;
use aggregates::idempotency_key::IdempotencyKey;
use aggregates::queue_item::QueueItem;
use aggregates::workspace::Workspace;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::postgres::PgRow;
use sqlx::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::error::ApiError;
use super::AppState;

/// The media type of the ndjson export.
const NDJSON: &str = "application/x-ndjson";

/// Every aggregate type the ledger writes.
const AGGREGATE_TYPES: [&str; 4] = [
    Delegation::TYPE,
    QueueItem::TYPE,
    IdempotencyKey::TYPE,
    Workspace::TYPE,
];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(events::events))
        .routes(routes!(aggregate::stream))
        .routes(routes!(verify::verify_chain))
}

fn require_admin(caller: Caller) -> Result<(), ApiError> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::Workspace(_) => Err(ApiError::Forbidden(
            "the audit API needs the admin token".into(),
        )),
    }
}

/// One log entry with its event, as stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AuditEvent {
    position: i64,
    event_id: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    /// `null` (with `payload` and `metadata`) only when the event row is
    /// gone — the chain is broken there, and `/audit/verify` says so.
    event_version: Option<String>,
    /// The stored JSON, verbatim.
    #[schema(value_type = Option<Value>)]
    payload: Option<Box<RawValue>>,
    #[schema(value_type = Option<Value>)]
    metadata: Option<Box<RawValue>>,
    /// When the event row was written.
    recorded_at: DateTime<Utc>,
    /// The log time: `recorded_at` made monotonic along the log (never
    /// earlier than the entry before). `from_time`, `to_time` and a time
    /// `as_of` compare against this.
    logged_at: DateTime<Utc>,
    hash: String,
    prev_hash: String,
}

/// The columns [`audit_event`] reads; `l` is `ledger_log`, `e` is `events`.
const COLUMNS: &str = "l.position, l.event_id, l.aggregate_type, l.aggregate_id, l.sequence, \
     l.event_type, e.event_version, e.payload::text as payload, e.metadata::text as metadata, \
     l.recorded_at, l.logged_at, l.hash, l.prev_hash";

fn raw_json(text: Option<String>) -> Result<Option<Box<RawValue>>, sqlx::Error> {
    text.map(|text| RawValue::from_string(text).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .transpose()
}

fn audit_event(row: &PgRow) -> Result<AuditEvent, sqlx::Error> {
    Ok(AuditEvent {
        position: row.try_get("position")?,
        event_id: row.try_get("event_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: raw_json(row.try_get("payload")?)?,
        metadata: raw_json(row.try_get("metadata")?)?,
        recorded_at: row.try_get("recorded_at")?,
        logged_at: row.try_get("logged_at")?,
        hash: hex::encode(row.try_get::<Vec<u8>, _>("hash")?),
        prev_hash: hex::encode(row.try_get::<Vec<u8>, _>("prev_hash")?),
    })
}

fn parse_aggregate_type(value: &str) -> Result<&'static str, ApiError> {
    AGGREGATE_TYPES
        .iter()
        .find(|known| **known == value)
        .copied()
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown aggregate_type {value:?}; known: {}",
                AGGREGATE_TYPES.join(", ")
            ))
        })
}

fn parse_position(field: &str, value: &str, min: i64) -> Result<i64, ApiError> {
    match value.parse::<i64>() {
        Ok(position) if position >= min => Ok(position),
        _ => Err(ApiError::bad_request(format!(
            "{field} must be an integer log position of at least {min}; got {value:?}"
        ))),
    }
}
