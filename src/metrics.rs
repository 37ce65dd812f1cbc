//! The name of every metric, and the one process-wide
//! Prometheus recorder they go into. Every layer counts through the
//! `metrics` facade with a name from here, so the sequencer, the
//! dispatcher and the HTTP layer never reach into each other for a name;
//! `/metrics` (in `http/metrics.rs`) renders the recorder and the
//! [`scraped`] gauges.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests served, by method, matched route template and status.
pub const HTTP_REQUESTS: &str = "ledger_http_requests_total";
/// Request latency histogram, same labels.
pub const HTTP_DURATION: &str = "ledger_http_request_duration_seconds";
/// Events given a log position (incremented per sequencer batch).
pub const EVENTS_APPENDED: &str = "ledger_events_appended_total";
/// Managed-delegation outcomes of the dispatcher, by `outcome`
/// (dispatched, completed, failed, queued, retried, inbox, drain_failed).
pub const DISPATCH_OUTCOMES: &str = "ledger_dispatch_outcomes_total";
/// Sends a delegation may count as uncertain: resent without a way to
/// check that the earlier one had not arrived.
pub const DISPATCH_UNCERTAIN: &str = "ledger_dispatch_uncertain_total";
/// Positions a read replica's views are behind the primary's, by `replica`.
pub const REPLICA_LAG: &str = "ledger_replica_lag_positions";
/// 1 when a read replica answered its last check, else 0, by `replica`.
pub const REPLICA_UP: &str = "ledger_replica_up";

/// Pages of websocket replay read from the database, by `source`
/// (`replica` or `primary`).
pub const REPLAY_READS: &str = "ledger_replay_reads_total";
/// The last log position the NATS stream acknowledged (export leader only).
pub const NATS_EXPORT_POSITION: &str = "ledger_nats_export_position";
/// Log entries not yet in the NATS stream: head − exported position.
pub const NATS_EXPORT_LAG: &str = "ledger_nats_export_lag";
/// Log entries this process published to NATS (acknowledged).
pub const NATS_EXPORTED: &str = "ledger_nats_exported_total";
/// Failed NATS export terms, by `kind` (connect, stream, publish,
/// database, mismatch).
pub const NATS_EXPORT_ERRORS: &str = "ledger_nats_export_errors_total";
/// Times the stream had moved under the exporter (another exporter wrote)
/// and it resumed where the stream ends.
pub const NATS_EXPORT_RESYNCS: &str = "ledger_nats_export_resyncs_total";
/// Positions the stream acknowledged as duplicates: another exporter had
/// stored them moments before (within the stream's duplicate window).
pub const NATS_EXPORT_DUPLICATES: &str = "ledger_nats_export_duplicates_total";

/// Gauges read from the database at each scrape (`http/metrics.rs`), not
/// kept in the recorder: their values live in the tables.
pub mod scraped {
    /// 1 when the scrape could read the database, else 0.
    pub const DATABASE_UP: &str = "ledger_database_up";
    /// Position of the log's last entry.
    pub const LOG_HEAD: &str = "ledger_log_head";
    /// Committed events not yet given a position.
    pub const LOG_UNPOSITIONED: &str = "ledger_log_unpositioned_events";
    /// Age of the oldest of them.
    pub const LOG_OLDEST_UNPOSITIONED: &str = "ledger_log_oldest_unpositioned_seconds";
    /// Each projection's checkpoint, by `projection`.
    pub const PROJECTION_CHECKPOINT: &str = "ledger_projection_checkpoint";
    /// Entries each projection has not applied, by `projection`.
    pub const PROJECTION_LAG_EVENTS: &str = "ledger_projection_lag_events";
    /// Age of the oldest entry each projection has not applied.
    pub const PROJECTION_LAG_SECONDS: &str = "ledger_projection_lag_seconds";
    /// Live-feed subscribers of this process.
    pub const WEBSOCKET_SUBSCRIBERS: &str = "ledger_websocket_subscribers";
    /// Requests waiting in the busy-target queue.
    pub const QUEUE_DEPTH: &str = "ledger_queue_depth";
    /// Entries the dispatcher has not reacted to.
    pub const DISPATCHER_LAG: &str = "ledger_dispatcher_lag_events";
}

/// Latency buckets in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How often histogram samples are folded into their buckets when nobody
/// scrapes (keeps memory bounded).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
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
            if ::metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be sparse");
            }
            ::metrics::describe_counter!(
                HTTP_REQUESTS,
                "HTTP requests served, by method, matched route template and status."
            );
            ::metrics::describe_histogram!(
                HTTP_DURATION,
                ::metrics::Unit::Seconds,
                "HTTP request latency, by method, matched route template and status."
            );
            ::metrics::describe_counter!(
                EVENTS_APPENDED,
                "Events appended to the positioned log by this process's sequencer."
            );
            ::metrics::describe_counter!(
                DISPATCH_OUTCOMES,
                "Managed-delegation outcomes of this process's dispatcher, by outcome."
            );
            ::metrics::describe_counter!(
                DISPATCH_UNCERTAIN,
                "Sends resent without a way to check the earlier one had not arrived."
            );
            ::metrics::describe_gauge!(
                REPLICA_LAG,
                "Log positions a read replica's views are behind the primary's."
            );
            ::metrics::describe_gauge!(
                REPLICA_UP,
                "1 when a read replica answered its last check, else 0."
            );
            ::metrics::describe_counter!(
                REPLAY_READS,
                "Pages of websocket replay read from the database, by source (replica or primary)."
            );
            ::metrics::describe_gauge!(
                NATS_EXPORT_POSITION,
                "The last log position the NATS JetStream stream acknowledged."
            );
            ::metrics::describe_gauge!(
                NATS_EXPORT_LAG,
                "Log entries not yet exported to NATS (head minus exported position)."
            );
            ::metrics::describe_counter!(
                NATS_EXPORTED,
                "Log entries this process exported to NATS JetStream."
            );
            ::metrics::describe_counter!(
                NATS_EXPORT_ERRORS,
                "Failed NATS export attempts, by kind (connect, stream, publish, database, mismatch)."
            );
            ::metrics::describe_counter!(
                NATS_EXPORT_RESYNCS,
                "Times the NATS stream had moved under the exporter and it resumed where it ends."
            );
            ::metrics::describe_counter!(
                NATS_EXPORT_DUPLICATES,
                "Positions the NATS stream acknowledged as duplicates another exporter had just stored."
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
