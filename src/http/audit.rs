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

use std::io;

use aggregates::delegation::Delegation;
use aggregates::idempotency_key::IdempotencyKey;
use aggregates::queue_item::QueueItem;
use aggregates::workspace::Workspace;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use projections::{LedgerEvent, LogEntry};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::auth::Caller;
use super::consistency::ReadPool;
use super::error::ApiError;
use super::extract::{parse_limit, parse_uuid, ApiPath, ApiQuery};
use super::AppState;
use crate::log::verify::{self, Verification};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
/// The ndjson stream sends lines in chunks of about this many bytes.
const NDJSON_CHUNK_BYTES: usize = 64 * 1024;
/// Chunks buffered between the database reader and a slow client. With
/// the chunk size this bounds a stream's memory (≈ 4 × 64 KiB), whatever
/// the size of the selection.
const NDJSON_BUFFERED_CHUNKS: usize = 4;
/// Entries read per query of an ndjson export.
const NDJSON_PAGE: i64 = 1000;
const NDJSON: &str = "application/x-ndjson";

/// Every aggregate type the ledger writes.
const AGGREGATE_TYPES: [&str; 4] = [
    Delegation::TYPE,
    QueueItem::TYPE,
    IdempotencyKey::TYPE,
    Workspace::TYPE,
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit/events", get(events))
        // A wildcard: idempotency key ids are `workspace/key`.
        .route(
            "/audit/streams/{aggregate_type}/{*aggregate_id}",
            get(stream),
        )
        .route("/audit/verify", get(verify_chain))
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

// ---------------------------------------------------------------------------
// GET /audit/events

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Entries after this position (exclusive); 0 by default.
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<String>,
    /// Entries per page: 100 by default, at most 1000 (larger is clamped).
    #[param(value_type = Option<i64>, minimum = 1)]
    limit: Option<String>,
    #[param(pattern = "^(delegation|queue_item|idempotency_key|workspace)$")]
    aggregate_type: Option<String>,
    #[param(min_length = 1)]
    aggregate_id: Option<String>,
    /// Entries whose source or target is this workspace.
    #[param(format = Uuid)]
    workspace_id: Option<String>,
    #[param(min_length = 1)]
    event_type: Option<String>,
    /// Entries whose log time (`logged_at`) is at or after this RFC 3339
    /// time.
    #[param(format = DateTime)]
    from_time: Option<String>,
    /// Entries whose log time (`logged_at`) is before this RFC 3339 time.
    #[param(format = DateTime)]
    to_time: Option<String>,
}

/// Which entries `/audit/events` selects. Every filter is a column of
/// `ledger_log`, so each has an index (see migrations/0004_audit.sql and
/// 0008_log_time.sql).
#[derive(Debug, Clone, Default)]
struct Selection {
    /// Exclusive lower bound on position.
    after: i64,
    aggregate_type: Option<&'static str>,
    aggregate_id: Option<String>,
    /// The entry's source or target workspace.
    workspace_id: Option<Uuid>,
    event_type: Option<String>,
    /// Inclusive.
    from_time: Option<DateTime<Utc>>,
    /// Exclusive.
    to_time: Option<DateTime<Utc>>,
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

fn parse_time(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| {
            // A `+` in a query string decodes to a space.
            let hint = if value.contains(' ') {
                " (write a `+` offset as %2B, or use Z)"
            } else {
                ""
            };
            ApiError::bad_request(format!(
                "{field} must be an RFC 3339 time such as 2024-05-01T12:00:00Z; got {value:?}{hint}"
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

fn non_empty(field: &str, value: String) -> Result<String, ApiError> {
    if value.is_empty() {
        Err(ApiError::bad_request(format!("{field} must not be empty")))
    } else {
        Ok(value)
    }
}

impl Selection {
    fn parse(query: EventsQuery) -> Result<Self, ApiError> {
        let selection = Self {
            after: query
                .after
                .as_deref()
                .map(|after| parse_position("after", after, 0))
                .transpose()?
                .unwrap_or(0),
            aggregate_type: query
                .aggregate_type
                .as_deref()
                .map(parse_aggregate_type)
                .transpose()?,
            aggregate_id: query
                .aggregate_id
                .map(|id| non_empty("aggregate_id", id))
                .transpose()?,
            workspace_id: query
                .workspace_id
                .as_deref()
                .map(|id| parse_uuid("workspace_id", id))
                .transpose()?,
            event_type: query
                .event_type
                .map(|event_type| non_empty("event_type", event_type))
                .transpose()?,
            from_time: query
                .from_time
                .as_deref()
                .map(|time| parse_time("from_time", time))
                .transpose()?,
            to_time: query
                .to_time
                .as_deref()
                .map(|time| parse_time("to_time", time))
                .transpose()?,
        };
        if let (Some(from), Some(to)) = (selection.from_time, selection.to_time) {
            if from >= to {
                return Err(ApiError::bad_request(
                    "from_time must be earlier than to_time (from_time is inclusive, to_time exclusive)",
                ));
            }
        }
        Ok(selection)
    }

    /// ` and …` for every filter except the workspace, on alias `l`.
    fn push_conditions(&self, sql: &mut QueryBuilder<'static, Postgres>) {
        sql.push(" and l.position > ").push_bind(self.after);
        match (self.aggregate_type, &self.aggregate_id) {
            (Some(aggregate_type), _) => {
                sql.push(" and l.aggregate_type = ")
                    .push_bind(aggregate_type);
            }
            // Naming every type keeps the (type, id, sequence) index usable.
            (None, Some(_)) => {
                sql.push(" and l.aggregate_type = any(")
                    .push_bind(AGGREGATE_TYPES.to_vec())
                    .push(")");
            }
            (None, None) => {}
        }
        if let Some(aggregate_id) = &self.aggregate_id {
            sql.push(" and l.aggregate_id = ")
                .push_bind(aggregate_id.clone());
        }
        if let Some(event_type) = &self.event_type {
            sql.push(" and l.event_type = ")
                .push_bind(event_type.clone());
        }
        // The log time never decreases along the log, so a time bound is
        // the position of the first entry at or after it: one probe of the
        // (logged_at, position) index, and the rest of the query walks
        // positions as if no time had been given.
        if let Some(from) = self.from_time {
            sql.push(" and l.position >= coalesce((select t.position from ledger_log t where t.logged_at >= ")
                .push_bind(from)
                .push(" order by t.logged_at, t.position limit 1), 9223372036854775807)");
        }
        if let Some(to) = self.to_time {
            sql.push(" and l.position < coalesce((select t.position from ledger_log t where t.logged_at >= ")
                .push_bind(to)
                .push(" order by t.logged_at, t.position limit 1), 9223372036854775807)");
        }
    }

    /// The selection in position order, at most `limit` entries.
    fn query(&self, limit: Option<i64>) -> QueryBuilder<'static, Postgres> {
        let mut sql = QueryBuilder::new(format!("select {COLUMNS} from "));
        match self.workspace_id {
            None => {
                sql.push("ledger_log l left join events e on e.event_id = l.event_id where true");
                self.push_conditions(&mut sql);
            }
            Some(workspace) => {
                // Two ordered index scans, one per side, instead of an OR
                // that can use neither index in position order. An entry
                // whose source and target are both W is taken once.
                sql.push("((select l.position from ledger_log l where l.source_workspace = ")
                    .push_bind(workspace);
                self.push_conditions(&mut sql);
                push_order(&mut sql, limit);
                sql.push(
                    ") union all (select l.position from ledger_log l where l.target_workspace = ",
                )
                .push_bind(workspace)
                .push(" and l.source_workspace is distinct from ")
                .push_bind(workspace);
                self.push_conditions(&mut sql);
                push_order(&mut sql, limit);
                sql.push(
                    ")) w join ledger_log l on l.position = w.position \
                     left join events e on e.event_id = l.event_id where true",
                );
            }
        }
        push_order(&mut sql, limit);
        sql
    }
}

fn push_order(sql: &mut QueryBuilder<'static, Postgres>, limit: Option<i64>) {
    sql.push(" order by l.position");
    if let Some(limit) = limit {
        sql.push(" limit ").push_bind(limit);
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct EventsPage {
    events: Vec<AuditEvent>,
    /// The last position returned when the page is full (pass it as
    /// `after` for the next page); `null` when this was the last page.
    next_after: Option<i64>,
}

fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|media| {
            media
                .split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case(NDJSON))
        })
}

/// The log in position order, paged (or streamed as ndjson).
#[utoipa::path(get, path = "/audit/events", tag = "audit", security(("bearer" = [])),
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of entries; with `Accept: application/x-ndjson` the whole selection, one entry per line",
            content((EventsPage = "application/json"), (AuditEvent = "application/x-ndjson"))),
        (status = 400, description = "A parameter is malformed or unknown", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 403, description = "A workspace token: the audit API needs the admin token", body = crate::http::error::ErrorBody),
    ))]
async fn events(
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
    ReadPool(reads): ReadPool,
) -> Result<Response, ApiError> {
    require_admin(caller)?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let selection = Selection::parse(query)?;
    if wants_ndjson(&headers) {
        return Ok(stream_ndjson(reads.clone(), selection));
    }
    let events = selection
        .query(Some(limit))
        .build()
        .try_map(|row: PgRow| audit_event(&row))
        .fetch_all(&reads)
        .await?;
    let next_after = if events.len() as i64 == limit {
        events.last().map(|event| event.position)
    } else {
        None
    };
    Ok(Json(EventsPage { events, next_after }).into_response())
}

/// The whole selection as ndjson. A task reads the selection page by page
/// (keyset on position, so every statement is short whatever the size of
/// the log) and hands chunks to the response body through a bounded
/// channel: a slow client slows the reader down, nothing piles up in this
/// process.
///
/// An error after the first byte cannot become a status code any more: the
/// body is cut off instead, so the client sees an incomplete response
/// rather than a short one that looks whole.
fn stream_ndjson(pool: PgPool, selection: Selection) -> Response {
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<io::Result<Bytes>>(NDJSON_BUFFERED_CHUNKS);
    tokio::spawn(async move {
        let mut selection = selection;
        let mut chunk = Vec::with_capacity(NDJSON_CHUNK_BYTES);
        loop {
            let page = selection
                .query(Some(NDJSON_PAGE))
                .build()
                .try_map(|row: PgRow| audit_event(&row))
                .fetch_all(&pool)
                .await;
            let events = match page {
                Ok(events) => events,
                Err(error) => {
                    tracing::error!(%error, "audit ndjson stream failed; cutting the response off");
                    let _ = sender.send(Err(io::Error::other(error))).await;
                    return;
                }
            };
            for event in &events {
                if let Err(error) = serde_json::to_writer(&mut chunk, event) {
                    tracing::error!(%error, "audit ndjson stream failed; cutting the response off");
                    let _ = sender.send(Err(io::Error::other(error))).await;
                    return;
                }
                chunk.push(b'\n');
                if chunk.len() >= NDJSON_CHUNK_BYTES {
                    let full =
                        std::mem::replace(&mut chunk, Vec::with_capacity(NDJSON_CHUNK_BYTES));
                    if sender.send(Ok(Bytes::from(full))).await.is_err() {
                        return; // the client went away
                    }
                }
            }
            match events.last() {
                Some(last) if events.len() as i64 == NDJSON_PAGE => selection.after = last.position,
                _ => break,
            }
        }
        if !chunk.is_empty() {
            let _ = sender.send(Ok(Bytes::from(chunk))).await;
        }
    });
    let body = tokio_stream::wrappers::ReceiverStream::new(receiver);
    ([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(body)).into_response()
}

// ---------------------------------------------------------------------------
// GET /audit/streams/{aggregate_type}/{aggregate_id}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    /// Stop at this log position (an integer ≥ 1) or RFC 3339 time.
    as_of: Option<String>,
}

/// Where an audit of one aggregate stops.
#[derive(Debug, Clone, Copy, PartialEq)]
enum AsOf {
    Everything,
    /// Entries at or before this log position.
    Position(i64),
    /// Entries recorded at or before this time.
    Time(DateTime<Utc>),
}

fn parse_as_of(value: Option<&str>) -> Result<AsOf, ApiError> {
    let Some(text) = value else {
        return Ok(AsOf::Everything);
    };
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return parse_position("as_of", text, 1).map(AsOf::Position);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|time| AsOf::Time(time.with_timezone(&Utc)))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "as_of must be a log position (an integer ≥ 1) or an RFC 3339 time; got {text:?}"
            ))
        })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct StreamAudit {
    aggregate_type: &'static str,
    aggregate_id: String,
    events: Vec<AuditEvent>,
    /// The aggregate's state folded from exactly `events`.
    #[schema(value_type = Object)]
    state: Value,
    /// The position of the last event folded in: asking again with
    /// `as_of=<this>` gives the same answer.
    as_of_position: i64,
}

/// One aggregate's events and the state folded from them.
///
/// Idempotency keys are addressed as `idempotency_key/{workspace}/{key}`.
#[utoipa::path(get, path = "/audit/streams/{aggregate_type}/{aggregate_id}", tag = "audit", security(("bearer" = [])),
    params(
        ("aggregate_type" = String, Path, pattern = "^(delegation|queue_item|idempotency_key|workspace)$"),
        ("aggregate_id" = String, Path, min_length = 1, description = "The aggregate's id (may contain `/`)"),
        StreamQuery,
    ),
    responses(
        (status = 200, description = "The events up to `as_of` and the state folded from them", body = StreamAudit),
        (status = 400, description = "Unknown aggregate_type or a malformed as_of", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 403, description = "A workspace token: the audit API needs the admin token", body = crate::http::error::ErrorBody),
        (status = 404, description = "The aggregate has no events (up to as_of)", body = crate::http::error::ErrorBody),
        (status = 409, description = "An event cannot be folded (see /audit/verify)", body = crate::http::error::ErrorBody),
    ))]
async fn stream(
    caller: Caller,
    ApiPath((aggregate_type, aggregate_id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<StreamQuery>,
    ReadPool(reads): ReadPool,
) -> Result<Json<StreamAudit>, ApiError> {
    require_admin(caller)?;
    let aggregate_type = parse_aggregate_type(&aggregate_type)?;
    let as_of = parse_as_of(query.as_of.as_deref())?;

    let mut sql = QueryBuilder::new(format!(
        "select {COLUMNS} from ledger_log l left join events e on e.event_id = l.event_id \
         where l.aggregate_type = "
    ));
    sql.push_bind(aggregate_type)
        .push(" and l.aggregate_id = ")
        .push_bind(aggregate_id.clone());
    match as_of {
        AsOf::Everything => {}
        AsOf::Position(position) => {
            sql.push(" and l.position <= ").push_bind(position);
        }
        AsOf::Time(time) => {
            sql.push(" and l.logged_at <= ").push_bind(time);
        }
    }
    // Sequence order is log order within one aggregate, and it is the
    // order of the (aggregate_type, aggregate_id, sequence) index.
    sql.push(" order by l.sequence");
    let events = sql
        .build()
        .try_map(|row: PgRow| audit_event(&row))
        .fetch_all(&reads)
        .await?;
    let Some(last) = events.last() else {
        let scope = match as_of {
            AsOf::Everything => String::new(),
            AsOf::Position(position) => format!(" at or before position {position}"),
            AsOf::Time(time) => format!(" recorded at or before {}", time.to_rfc3339()),
        };
        return Err(ApiError::not_found(format!(
            "{aggregate_type} {aggregate_id} has no events{scope}"
        )));
    };
    let as_of_position = last.position;
    let folded = match aggregate_type {
        Delegation::TYPE => fold::<Delegation>(&events, |event| match event {
            LedgerEvent::Delegation(event) => Some(event),
            _ => None,
        }),
        QueueItem::TYPE => fold::<QueueItem>(&events, |event| match event {
            LedgerEvent::QueueItem(event) => Some(event),
            _ => None,
        }),
        IdempotencyKey::TYPE => fold::<IdempotencyKey>(&events, |event| match event {
            LedgerEvent::IdempotencyKey(event) => Some(event),
            _ => None,
        }),
        Workspace::TYPE => fold::<Workspace>(&events, |event| match event {
            LedgerEvent::Workspace(event) => Some(event),
            _ => None,
        }),
        other => Err(ApiError::bad_request(format!(
            "unknown aggregate_type {other:?}"
        ))),
    }?;
    Ok(Json(StreamAudit {
        aggregate_type,
        aggregate_id,
        events,
        state: folded,
        as_of_position,
    }))
}

/// Fold `events` into a default `A` exactly as the write path does: decode
/// (through the upcasters), then `Aggregate::apply`, in order.
fn fold<A>(
    events: &[AuditEvent],
    pick: impl Fn(LedgerEvent) -> Option<A::Event>,
) -> Result<Value, ApiError>
where
    A: Aggregate + Serialize,
{
    let unfoldable = |position: i64, why: String| ApiError::Conflict {
        message: format!(
            "the event at position {position} cannot be folded: {why}; see /audit/verify"
        ),
        current_status: None,
    };
    let mut aggregate = A::default();
    for event in events {
        let (Some(event_version), Some(payload)) = (&event.event_version, &event.payload) else {
            return Err(unfoldable(
                event.position,
                "its event row is missing".into(),
            ));
        };
        let entry = LogEntry {
            position: event.position,
            event_id: event.event_id,
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            event_version: event_version.clone(),
            payload: serde_json::from_str(payload.get())
                .map_err(|e| unfoldable(event.position, e.to_string()))?,
            metadata: Value::Null,
            recorded_at: event.recorded_at,
        };
        let decoded = entry
            .decode()
            .map_err(|e| unfoldable(event.position, e.to_string()))?;
        let typed = pick(decoded).ok_or_else(|| {
            unfoldable(
                event.position,
                "it belongs to another aggregate type".into(),
            )
        })?;
        aggregate.apply(typed);
    }
    serde_json::to_value(&aggregate).map_err(ApiError::internal)
}

// ---------------------------------------------------------------------------
// GET /audit/verify

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct VerifyQuery {
    /// First position to check (1 by default).
    #[param(value_type = Option<i64>, minimum = 1)]
    from: Option<String>,
    /// Last position to check (the head by default).
    #[param(value_type = Option<i64>, minimum = 1)]
    to: Option<String>,
}

/// Walk the hash chain and report the first bad entry.
#[utoipa::path(get, path = "/audit/verify", tag = "audit", security(("bearer" = [])),
    params(VerifyQuery),
    responses(
        (status = 200, description = "`ok: true` with the head, or `ok: false` with the first bad position", body = Verification),
        (status = 400, description = "from or to is not a position, or from > to", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 403, description = "A workspace token: the audit API needs the admin token", body = crate::http::error::ErrorBody),
    ))]
async fn verify_chain(
    caller: Caller,
    ApiQuery(query): ApiQuery<VerifyQuery>,
    ReadPool(reads): ReadPool,
) -> Result<Json<Verification>, ApiError> {
    require_admin(caller)?;
    let from = query
        .from
        .as_deref()
        .map(|from| parse_position("from", from, 1))
        .transpose()?;
    let to = query
        .to
        .as_deref()
        .map(|to| parse_position("to", to, 1))
        .transpose()?;
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(ApiError::bad_request(format!(
                "from ({from}) must not be after to ({to})"
            )));
        }
    }
    Ok(Json(verify::verify(&reads, from, to).await?))
}

/// The OpenAPI description of these routes (assembled in `super::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(events, stream, verify_chain))]
pub(super) struct Api;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Parse `k=v&…` (written as it would appear in a URL) the way the
    /// extractor does.
    fn query(fields: &[(&str, &str)]) -> EventsQuery {
        let text = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let uri: axum::http::Uri = format!("/audit/events?{text}").parse().unwrap();
        axum::extract::Query::<EventsQuery>::try_from_uri(&uri)
            .unwrap()
            .0
    }

    fn bad_request(result: Result<Selection, ApiError>) -> String {
        match result {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn no_parameters_select_the_whole_log_from_the_start() {
        let selection = Selection::parse(query(&[])).unwrap();
        assert_eq!(selection.after, 0);
        assert_eq!(selection.aggregate_type, None);
        assert_eq!(selection.workspace_id, None);
        assert_eq!(selection.from_time, None);
    }

    #[test]
    fn every_filter_is_parsed_into_its_type() {
        let selection = Selection::parse(query(&[
            ("after", "41"),
            ("aggregate_type", "delegation"),
            ("aggregate_id", "abc"),
            ("workspace_id", "00000000-0000-0000-0000-00000000005a"),
            ("event_type", "DelegationSent"),
            ("from_time", "2024-05-01T12:00:00Z"),
            ("to_time", "2024-05-01T15:00:00%2B02:00"),
        ]))
        .unwrap();
        assert_eq!(selection.after, 41);
        assert_eq!(selection.aggregate_type, Some("delegation"));
        assert_eq!(selection.aggregate_id.as_deref(), Some("abc"));
        assert_eq!(selection.workspace_id, Some(Uuid::from_u128(0x5a)));
        assert_eq!(selection.event_type.as_deref(), Some("DelegationSent"));
        assert_eq!(selection.from_time, Some(time("2024-05-01T12:00:00Z")));
        assert_eq!(selection.to_time, Some(time("2024-05-01T13:00:00Z")));
    }

    #[test]
    fn a_negative_after_is_a_bad_request() {
        assert_eq!(
            bad_request(Selection::parse(query(&[("after", "-1")]))),
            r#"after must be an integer log position of at least 0; got "-1""#
        );
    }

    #[test]
    fn an_unknown_aggregate_type_is_a_bad_request_naming_the_known_ones() {
        assert_eq!(
            bad_request(Selection::parse(query(&[("aggregate_type", "invoice")]))),
            r#"unknown aggregate_type "invoice"; known: delegation, queue_item, idempotency_key, workspace"#
        );
    }

    #[test]
    fn a_plus_offset_decoded_to_a_space_gets_a_hint() {
        assert_eq!(
            bad_request(Selection::parse(query(&[(
                "from_time",
                "2024-05-01T12:00:00+02:00"
            )]))),
            r#"from_time must be an RFC 3339 time such as 2024-05-01T12:00:00Z; got "2024-05-01T12:00:00 02:00" (write a `+` offset as %2B, or use Z)"#
        );
    }

    #[test]
    fn an_empty_time_window_is_a_bad_request() {
        assert_eq!(
            bad_request(Selection::parse(query(&[
                ("from_time", "2024-05-01T12:00:00Z"),
                ("to_time", "2024-05-01T12:00:00Z"),
            ]))),
            "from_time must be earlier than to_time (from_time is inclusive, to_time exclusive)"
        );
    }

    #[test]
    fn as_of_is_a_position_or_a_time() {
        assert_eq!(parse_as_of(None).unwrap(), AsOf::Everything);
        assert_eq!(parse_as_of(Some("17")).unwrap(), AsOf::Position(17));
        assert_eq!(
            parse_as_of(Some("2024-05-01T12:00:00Z")).unwrap(),
            AsOf::Time(time("2024-05-01T12:00:00Z"))
        );
        assert!(matches!(
            parse_as_of(Some("0")),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_as_of(Some("-3")),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_as_of(Some("yesterday")),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn ndjson_is_chosen_only_when_accepted() {
        let mut headers = HeaderMap::new();
        assert!(!wants_ndjson(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_ndjson(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html, Application/X-NDJSON;q=0.9"),
        );
        assert!(wants_ndjson(&headers));
    }

    #[test]
    fn a_workspace_selection_is_a_union_of_both_sides_each_limited() {
        let selection = Selection {
            workspace_id: Some(Uuid::from_u128(0x5a)),
            ..Selection::default()
        };
        let sql = selection.query(Some(100)).into_sql();
        assert_eq!(
            sql,
            format!(
                "select {COLUMNS} from ((select l.position from ledger_log l where l.source_workspace = $1 \
                 and l.position > $2 order by l.position limit $3) union all (select l.position from ledger_log l \
                 where l.target_workspace = $4 and l.source_workspace is distinct from $5 and l.position > $6 \
                 order by l.position limit $7)) w join ledger_log l on l.position = w.position \
                 left join events e on e.event_id = l.event_id where true order by l.position limit $8"
            )
        );
    }
}
