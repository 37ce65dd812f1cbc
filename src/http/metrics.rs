//! `GET /metrics`: Prometheus text, and the middleware counting requests.
//!
//! Two kinds of series:
//!
//! * **Event-driven** ones go through the `metrics` facade into one
//!   process-wide Prometheus recorder ([`crate::metrics::install`],
//!   idempotent; the names are in [`crate::metrics`]): HTTP
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
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::log::status::{log_status, LogStatus};
use crate::metrics::{install, scraped, HTTP_DURATION, HTTP_REQUESTS};

/// Route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

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

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(scrape))
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
        scraped::DATABASE_UP,
        "gauge",
        "1 when this scrape could read the database, else 0 (log values are then the last known).",
        &one(database_up.to_string()),
    );
    family(
        scraped::LOG_HEAD,
        "gauge",
        "Position of the last entry of the positioned log.",
        &one(status.head.to_string()),
    );
    family(
        scraped::LOG_UNPOSITIONED,
        "gauge",
        "Committed events not yet given a log position (more than a handful for long: a transaction left open on the cluster holds the log back).",
        &one(status.unpositioned.to_string()),
    );
    family(
        scraped::LOG_OLDEST_UNPOSITIONED,
        "gauge",
        "Age of the oldest committed event not yet given a log position (0 when none).",
        &one(status.oldest_unpositioned_seconds.to_string()),
    );
    family(
        scraped::PROJECTION_CHECKPOINT,
        "gauge",
        "Last log position applied by each projection.",
        &by_projection(&|checkpoint, _| checkpoint.to_string()),
    );
    family(
        scraped::PROJECTION_LAG_EVENTS,
        "gauge",
        "Log entries not yet applied by each projection (head - checkpoint).",
        &by_projection(&|checkpoint, _| (status.head - checkpoint).max(0).to_string()),
    );
    family(
        scraped::PROJECTION_LAG_SECONDS,
        "gauge",
        "Age of the oldest log entry each projection has not applied yet (0 when caught up).",
        &by_projection(&|_, seconds| seconds.to_string()),
    );
    family(
        scraped::WEBSOCKET_SUBSCRIBERS,
        "gauge",
        "Live-feed websocket subscribers connected to this process.",
        &one(subscribers.to_string()),
    );
    family(
        scraped::QUEUE_DEPTH,
        "gauge",
        "Requests waiting in the busy-target queue, all targets (0 when the scrape could not read the database).",
        &one(status.queue_depth.to_string()),
    );
    if let Some(checkpoint) = status.dispatcher_checkpoint {
        family(
            scraped::DISPATCHER_LAG,
            "gauge",
            "Log entries the dispatcher has not reacted to yet (head - its checkpoint).",
            &one((status.head - checkpoint).max(0).to_string()),
        );
    }
}

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
