//! `GET /audit/streams/{aggregate_type}/{aggregate_id}?as_of=`: one
//! aggregate's events up to a position or a time, and the state folded
//! from exactly those events by the write path's own `Aggregate::apply`
//! and upcasters.

use aggregates::delegation::Delegation;
use aggregates::idempotency_key::IdempotencyKey;
use aggregates::queue_item::QueueItem;
use aggregates::workspace::Workspace;
use axum::Json;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use projections::{LedgerEvent, LogEntry};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::QueryBuilder;

use super::{
    audit_event, parse_aggregate_type, parse_position, require_admin, AuditEvent, COLUMNS,
};
use crate::http::auth::Caller;
use crate::http::consistency::ReadPool;
use crate::http::error::ApiError;
use crate::http::extract::{ApiPath, ApiQuery};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct StreamQuery {
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
pub(super) struct StreamAudit {
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
// `{*aggregate_id}`: axum's wildcard, as idempotency key ids are
// `workspace/key`; the document names it `{aggregate_id}` (see
// `AxumWildcards` in `http/openapi.rs`).
#[utoipa::path(get, path = "/audit/streams/{aggregate_type}/{*aggregate_id}", tag = "audit", security(("bearer" = [])),
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
pub(super) async fn stream(
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
#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
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
}
