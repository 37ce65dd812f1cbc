//! `GET /audit/events`: which entries a query selects (every filter a
//! column of `ledger_log` with an index), the SQL that reads them in
//! position order, and the paged JSON answer (or the ndjson stream of
//! [`super::ndjson`]).

use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::ndjson::stream_ndjson;
use super::{
    audit_event, parse_aggregate_type, parse_position, require_admin, AuditEvent, AGGREGATE_TYPES,
    COLUMNS, NDJSON,
};
use crate::http::auth::Caller;
use crate::http::consistency::ReadPool;
use crate::http::error::ApiError;
use crate::http::extract::{parse_limit, parse_uuid, ApiQuery};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
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
pub(super) struct Selection {
    /// Exclusive lower bound on position.
    pub(super) after: i64,
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
    pub(super) fn query(&self, limit: Option<i64>) -> QueryBuilder<'static, Postgres> {
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
pub(super) struct EventsPage {
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
pub(super) async fn events(
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
