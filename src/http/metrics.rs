//! `GET /metrics`: Prometheus text, and the middleware counting requests.
//!
//! Two kinds of series:
//!
//! * **Event-driven** ones go through the `metrics` facade into one
//!   process-wide Prometheus recorder ([`install`], idempotent): HTTP
//!   requests by matched route template and status with a latency
//!   histogram, and events appended by the sequencer.
//! * **Scrape-time** ones are read when `/metrics` is asked, from this
//!   service's own database and hub, and written after the recorder's
//!   output: the log head, each projection's lag in events and in seconds,
//!   websocket subscribers, queue depth. Computing them per scrape (instead
//!   of setting process-wide gauges) keeps several services in one process
//!   (the tests) from overwriting each other's values.
//!
//! The dispatcher counts `ledger_dispatch_outcomes_total{outcome}`
//! (dispatched, completed, failed, queued, retried, inbox, drain_failed)
//! through the facade as they happen.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::{PgPool, Row};

use super::AppState;

/// Requests served, by method, matched route template and status.
pub const HTTP_REQUESTS: &str = "ledger_http_requests_total";
/// Request latency histogram, same labels.
pub const HTTP_DURATION: &str = "ledger_http_request_duration_seconds";
/// Events given a log position (incremented per sequencer batch).
pub const EVENTS_APPENDED: &str = "ledger_events_appended_total";
/// Route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Latency buckets in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How often histogram samples are folded into their buckets when nobody
/// scrapes (keeps memory bounded).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Longest a scrape or readiness check waits for the database.
pub const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// The process-wide Prometheus recorder, installed on first use. Later
/// calls (several services in one process) return the same handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_string()), BUCKETS)
                .expect("latency buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be sparse");
            }
            metrics::describe_counter!(
                HTTP_REQUESTS,
                "HTTP requests served, by method, matched route template and status."
            );
            metrics::describe_histogram!(
                HTTP_DURATION,
                metrics::Unit::Seconds,
                "HTTP request latency, by method, matched route template and status."
            );
            metrics::describe_counter!(
                EVENTS_APPENDED,
                "Events appended to the positioned log by this process's sequencer."
            );
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                })
                .expect("metrics upkeep thread should start");
            handle
        })
        .clone()
}

/// Count and time every request by its matched route template (never the
/// raw path, which would make one series per id).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_string());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(started.elapsed().as_secs_f64());
    response
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// Where the log and this process's projections stand.
#[derive(Debug, Clone, PartialEq)]
pub struct LogStatus {
    pub head: i64,
    /// `(name, checkpoint, seconds since the oldest unapplied entry was
    /// recorded — 0 when caught up)`, in the order asked.
    pub projections: Vec<(String, i64, f64)>,
    /// Requests waiting in the busy-target queue (all targets).
    pub queue_depth: i64,
    /// The dispatcher's checkpoint, once a dispatcher has led.
    pub dispatcher_checkpoint: Option<i64>,
    /// Committed events the sequencer has not positioned yet.
    pub unpositioned: i64,
    /// Seconds since the oldest of them was written (0 when none).
    pub oldest_unpositioned_seconds: f64,
}

/// Read the head and the checkpoints of `names` from the tables (bounded
/// by [`DATABASE_TIMEOUT`]).
pub async fn log_status(pool: &PgPool, names: &[String]) -> Result<LogStatus, String> {
    let read = async {
        let head: i64 = sqlx::query_scalar("select coalesce(max(position), 0) from ledger_log")
            .fetch_one(pool)
            .await?;
        let rows = sqlx::query(
            "select c.name, c.position, \
             coalesce((select greatest(extract(epoch from now() - l.recorded_at), 0)::float8 \
                       from ledger_log l where l.position = c.position + 1), 0) as lag_seconds \
             from projection_checkpoints c where c.name = any($1)",
        )
        .bind(names)
        .fetch_all(pool)
        .await?;
        let queue_depth: i64 =
            sqlx::query_scalar("select count(*) from a2a_queue where status = 'queued'")
                .fetch_one(pool)
                .await?;
        let dispatcher_checkpoint: Option<i64> = sqlx::query_scalar(
            "select position from process_checkpoints where name = 'dispatcher'",
        )
        .fetch_optional(pool)
        .await?;
        // Events after the sequencer's watermark (the last entry's writing
        // transaction and event id): committed, but not in the log yet —
        // normally for milliseconds; for as long as the oldest transaction
        // still running anywhere on the cluster, when one is left open.
        let (unpositioned, oldest_unpositioned_seconds): (i64, f64) = sqlx::query_as(
            "with tail as (select tx_id, event_id from ledger_log order by position desc limit 1)              select count(*),              coalesce(greatest(extract(epoch from now() - min(e.recorded_at)), 0), 0)::float8              from events e              where not exists (select 1 from tail)                 or (e.tx_id, e.event_id) > (select tx_id, event_id from tail)",
        )
        .fetch_one(pool)
        .await?;
        let mut projections = Vec::with_capacity(names.len());
        for name in names {
            let row = rows
                .iter()
                .find(|row| row.try_get::<String, _>("name").ok().as_deref() == Some(name));
            let (position, seconds) = match row {
                Some(row) => (row.try_get("position")?, row.try_get("lag_seconds")?),
                // No checkpoint row: nothing applied yet.
                None => (0, 0.0),
            };
            projections.push((name.clone(), position, seconds));
        }
        Ok::<_, sqlx::Error>(LogStatus {
            head,
            projections,
            queue_depth,
            dispatcher_checkpoint,
            unpositioned,
            oldest_unpositioned_seconds,
        })
    };
    match tokio::time::timeout(DATABASE_TIMEOUT, read).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(error)) => Err(format!("database unreachable: {error}")),
        Err(_) => Err(format!(
            "database unreachable: no answer within {DATABASE_TIMEOUT:?}"
        )),
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
async fn scrape(State(state): State<AppState>) -> Response {
    let handle = install();
    handle.run_upkeep();
    let mut body = handle.render();
    let names = state.progress.projection_names().to_vec();
    let status = log_status(&state.pool, &names).await;
    let (database_up, status) = match status {
        Ok(status) => (1, status),
        Err(error) => {
            tracing::warn!(%error, "metrics: falling back to the last known log progress");
            // What this process last heard, without the age of entries.
            let projections = names
                .iter()
                .map(|name| {
                    (
                        name.clone(),
                        state.progress.projected(name).unwrap_or(0),
                        0.0,
                    )
                })
                .collect();
            (
                0,
                LogStatus {
                    head: state.progress.head(),
                    projections,
                    queue_depth: 0,
                    dispatcher_checkpoint: None,
                    unpositioned: 0,
                    oldest_unpositioned_seconds: 0.0,
                },
            )
        }
    };
    write_scrape_time(&mut body, &status, database_up, state.hub.subscribers());
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Append the scrape-time families in Prometheus text format.
fn write_scrape_time(out: &mut String, status: &LogStatus, database_up: i64, subscribers: usize) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |value: String| vec![(String::new(), value)];
    let by_projection = |value: &dyn Fn(i64, f64) -> String| -> Vec<(String, String)> {
        status
            .projections
            .iter()
            .map(|(name, checkpoint, seconds)| {
                (
                    format!("{{projection=\"{name}\"}}"),
                    value(*checkpoint, *seconds),
                )
            })
            .collect()
    };
    family(
        "ledger_database_up",
        "gauge",
        "1 when this scrape could read the database, else 0 (log values are then the last known).",
        &one(database_up.to_string()),
    );
    family(
        "ledger_log_head",
        "gauge",
        "Position of the last entry of the positioned log.",
        &one(status.head.to_string()),
    );
    family(
        "ledger_log_unpositioned_events",
        "gauge",
        "Committed events not yet given a log position (more than a handful for long: a transaction left open on the cluster holds the log back).",
        &one(status.unpositioned.to_string()),
    );
    family(
        "ledger_log_oldest_unpositioned_seconds",
        "gauge",
        "Age of the oldest committed event not yet given a log position (0 when none).",
        &one(status.oldest_unpositioned_seconds.to_string()),
    );
    family(
        "ledger_projection_checkpoint",
        "gauge",
        "Last log position applied by each projection.",
        &by_projection(&|checkpoint, _| checkpoint.to_string()),
    );
    family(
        "ledger_projection_lag_events",
        "gauge",
        "Log entries not yet applied by each projection (head - checkpoint).",
        &by_projection(&|checkpoint, _| (status.head - checkpoint).max(0).to_string()),
    );
    family(
        "ledger_projection_lag_seconds",
        "gauge",
        "Age of the oldest log entry each projection has not applied yet (0 when caught up).",
        &by_projection(&|_, seconds| seconds.to_string()),
    );
    family(
        "ledger_websocket_subscribers",
        "gauge",
        "Live-feed websocket subscribers connected to this process.",
        &one(subscribers.to_string()),
    );
    family(
        "ledger_queue_depth",
        "gauge",
        "Requests waiting in the busy-target queue, all targets (0 when the scrape could not read the database).",
        &one(status.queue_depth.to_string()),
    );
    if let Some(checkpoint) = status.dispatcher_checkpoint {
        family(
            "ledger_dispatcher_lag_events",
            "gauge",
            "Log entries the dispatcher has not reacted to yet (head - its checkpoint).",
            &one((status.head - checkpoint).max(0).to_string()),
        );
    }
}

/// The OpenAPI description of this route (assembled in `super::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(scrape))]
pub(super) struct Api;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_time_families_are_prometheus_text() {
        let status = LogStatus {
            head: 10,
            projections: vec![("a".into(), 10, 0.0), ("b".into(), 7, 1.5)],
            queue_depth: 4,
            dispatcher_checkpoint: Some(8),
            unpositioned: 3,
            oldest_unpositioned_seconds: 12.5,
        };
        let mut out = String::from("# existing\nx 1");
        write_scrape_time(&mut out, &status, 1, 3);
        assert!(out.starts_with("# existing\nx 1\n# HELP ledger_database_up"));
        for line in [
            "ledger_log_head 10",
            "ledger_projection_lag_events{projection=\"a\"} 0",
            "ledger_projection_lag_events{projection=\"b\"} 3",
            "ledger_projection_lag_seconds{projection=\"b\"} 1.5",
            "ledger_projection_checkpoint{projection=\"b\"} 7",
            "ledger_websocket_subscribers 3",
            "ledger_queue_depth 4",
            "ledger_dispatcher_lag_events 2",
            "ledger_log_unpositioned_events 3",
            "ledger_log_oldest_unpositioned_seconds 12.5",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }
}
