//! The NATS JetStream exporter: one leader per database copies the log,
//! in position order, into a stream where **stream sequence N holds log
//! position N**.
//!
//! Why that invariant: it is the exporter's whole state, kept where the
//! messages are, so nothing can drift apart.
//!
//! * **Resume** — on election the exporter reads the stream's last sequence
//!   and continues after it; a crash between a publish and its ack costs
//!   nothing, since the stream itself says what arrived.
//! * **Exactly once, in order** — position `p` is published with
//!   `Nats-Expected-Last-Sequence: p-1` (and `Nats-Msg-Id: p`). The server
//!   stores it only right after `p-1`; anything else is refused (wrong last
//!   sequence) or recognised as the copy it is (duplicate, acked with its
//!   original sequence). So a deposed leader still publishing, or two
//!   exporters at once, cannot duplicate or reorder: the loser's publishes
//!   fail, it re-reads the stream's state and goes on from there.
//! * **Throughput** — a round publishes a whole batch without waiting and
//!   then awaits the acks: the server checks each expected sequence in the
//!   order the messages arrived on the one connection.
//! * **A stream that is not this log's** — before resuming, the message at
//!   the last sequence must carry that position and the same chain hash as
//!   the log; a stream ahead of the log, or written from another database,
//!   is refused (error logged, `ledger_nats_export_errors_total{kind=
//!   "mismatch"}`), and retried with backoff, never overwritten.
//!
//! The leader follows the log through the sequenced-head watch of
//! [`Progress`] (woken by this process's sequencer or by other processes'
//! `NOTIFY`s) and reads through its lock connection, so it stops reading as
//! soon as it no longer holds the lock.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, RawMessageErrorKind, Stream};
use async_nats::jetstream::{self, Context};
use async_nats::HeaderMap;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use super::message::{
    self, ExportedEntry, POSITION_HEADER, SOURCE_HEADER, STREAM_SUBJECTS, TARGET_HEADER,
};
use super::NatsExportConfig;
use crate::leader::{Election, LivenessCheck, TermError, LIVENESS_CHECK};
use crate::log::follow::{follow, OnError, Round, Rounds};
use crate::log::progress::Progress;
use crate::metrics;

/// The advisory lock key that elects the NATS exporter ("ledgnat1").
pub const LEADER_LOCK_KEY: i64 = 0x6c65_6467_6e61_7431;
/// The role's name in log lines.
const ROLE: &str = "NATS exporter";
/// Longest a JetStream request (stream info, a publish's ack) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an export term ended.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("could not connect to NATS at {url}: {cause}")]
    Connect {
        url: String,
        cause: async_nats::ConnectError,
    },
    #[error("JetStream stream {stream:?}: {cause}")]
    Stream { stream: String, cause: String },
    #[error("publishing log position {position} to NATS: {cause}")]
    Publish {
        position: i64,
        cause: async_nats::jetstream::context::PublishError,
    },
    #[error("reading the log: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "stream {stream:?} does not match this database's log ({reason}); refusing to export \
         into it — point LEDGER_NATS_STREAM at this ledger's stream, or delete the stream"
    )]
    Mismatch { stream: String, reason: String },
}

impl ExportError {
    /// The `kind` label of `ledger_nats_export_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Stream { .. } => "stream",
            Self::Publish { .. } => "publish",
            Self::Database(_) => "database",
            Self::Mismatch { .. } => "mismatch",
        }
    }
}

impl TermError for ExportError {
    /// A stream that is not this log's needs an operator; the rest (NATS or
    /// the database away for a while) passes.
    fn is_severe(&self) -> bool {
        matches!(self, Self::Mismatch { .. })
    }
}

/// Run until cancelled: connect, then campaign and export while elected;
/// after a failure, log it once and try again with backoff.
pub async fn run(
    pool: PgPool,
    progress: Arc<Progress>,
    config: NatsExportConfig,
    cancel: CancellationToken,
) {
    let Some(js) = connected(&config, &cancel).await else {
        return;
    };
    let mut election = Election::new(
        &pool,
        ROLE,
        LEADER_LOCK_KEY,
        config.election_interval,
        &cancel,
    )
    .retry_pause(|failures| backoff(&config, failures))
    .on_campaign_error(|_| count_error("database"));
    while let Some(mut lock) = election.elected().await {
        let exported = export(&mut lock, &js, &config, &progress, &cancel).await;
        if let Err(error) = &exported {
            count_error(error.kind());
        }
        election.step_down(lock, exported).await;
    }
}

/// Connect to NATS, retrying with backoff; `None` once cancelled. (Before
/// campaigning: a process that cannot reach NATS leaves the lead to one
/// that can.)
async fn connected(config: &NatsExportConfig, cancel: &CancellationToken) -> Option<Context> {
    let mut failures = 0u32;
    while !cancel.is_cancelled() {
        let error = match connect(config).await {
            Ok(js) => {
                tracing::info!(url = %config.url, "connected to NATS");
                return Some(js);
            }
            Err(error) => error,
        };
        let pause = backoff(config, failures);
        failures = failures.saturating_add(1);
        count_error(error.kind());
        tracing::warn!(%error, ?pause, "NATS exporter could not connect; retrying");
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => {}
        }
    }
    None
}

fn count_error(kind: &'static str) {
    ::metrics::counter!(metrics::NATS_EXPORT_ERRORS, "kind" => kind).increment(1);
}

/// `retry_initial` doubled per earlier failure, at most `retry_max`.
fn backoff(config: &NatsExportConfig, failures: u32) -> Duration {
    config
        .retry_initial
        .saturating_mul(1u32 << failures.min(16))
        .min(config.retry_max)
}

/// A JetStream context on the configured servers (the client reconnects by
/// itself once connected).
pub async fn connect(config: &NatsExportConfig) -> Result<Context, ExportError> {
    let url = config.url.clone();
    let servers = config.servers().map_err(|reason| ExportError::Connect {
        url: url.clone(),
        cause: std::io::Error::new(std::io::ErrorKind::InvalidInput, reason).into(),
    })?;
    let client = async_nats::ConnectOptions::new()
        .name("ledger-export")
        .connection_timeout(Duration::from_secs(5))
        .connect(servers)
        .await
        .map_err(|cause| ExportError::Connect { url, cause })?;
    let capacity = usize::try_from(config.batch).unwrap_or(1).max(1) * 2;
    Ok(jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .max_ack_inflight(capacity)
        .build(client))
}

/// One term: export from where the stream ends until cancelled, or until
/// an error (the lock connection failing among them). Public so tests can
/// run two exporters at once, as a deposed and a new leader would.
pub async fn export(
    lock: &mut PgConnection,
    js: &Context,
    config: &NatsExportConfig,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<(), ExportError> {
    let mut stream = ensure_stream(js, &config.stream).await?;
    let exported = resume_point(&mut stream, lock, &config.stream).await?;
    tracing::info!(stream = %config.stream, position = exported, "NATS export resuming");
    record_position(exported, progress);
    let mut rounds = Exporting {
        lock,
        js,
        config,
        progress,
        cancel,
        stream,
        exported,
        liveness: LivenessCheck::new(),
    };
    let mut sequenced = progress.subscribe_sequenced();
    follow(&mut rounds, &mut sequenced, LIVENESS_CHECK, cancel).await
}

/// The leader's rounds: each publishes the next batch of the log.
struct Exporting<'a> {
    lock: &'a mut PgConnection,
    js: &'a Context,
    config: &'a NatsExportConfig,
    progress: &'a Progress,
    cancel: &'a CancellationToken,
    stream: Stream,
    /// The last position the stream holds.
    exported: i64,
    liveness: LivenessCheck,
}

impl Rounds for Exporting<'_> {
    type Error = ExportError;

    async fn round(&mut self) -> Result<Round, ExportError> {
        let config = self.config;
        let entries = message::read_after(&mut *self.lock, self.exported, config.batch).await?;
        if entries.is_empty() {
            record_position(self.exported, self.progress);
            self.liveness.if_due(self.lock).await?;
            return Ok(Round::CaughtUp);
        }
        let published = tokio::select! {
            published = publish(self.js, &config.stream, &entries) => published,
            // Stopping mid-batch is safe: the stream says what arrived.
            _ = self.cancel.cancelled() => return Ok(Round::CaughtUp),
        };
        match published {
            Ok(last) => {
                ::metrics::counter!(metrics::NATS_EXPORTED).increment(entries.len() as u64);
                self.exported = last;
                record_position(self.exported, self.progress);
            }
            // Someone else moved the stream (a deposed or a concurrent
            // exporter): go on from where it now ends, once it is checked.
            Err(ExportError::Publish { position, cause })
                if cause.kind() == PublishErrorKind::WrongLastSequence =>
            {
                ::metrics::counter!(metrics::NATS_EXPORT_RESYNCS).increment(1);
                self.exported = resume_point(&mut self.stream, self.lock, &config.stream).await?;
                tracing::info!(
                    position,
                    resumed_after = self.exported,
                    "the stream moved under the NATS exporter; resuming where it ends"
                );
            }
            Err(other) => return Err(other),
        }
        Ok(Round::Progressed)
    }

    /// Its reads go through the lock connection, and a stream that is not
    /// this log's is not retried in place: a failure ends the term (the
    /// election loop retries with backoff).
    fn on_error(&mut self, _: &ExportError, _: u32) -> OnError {
        OnError::Stop
    }
}

fn record_position(exported: i64, progress: &Progress) {
    ::metrics::gauge!(metrics::NATS_EXPORT_POSITION).set(exported as f64);
    ::metrics::gauge!(metrics::NATS_EXPORT_LAG).set((progress.head() - exported).max(0) as f64);
}

/// The stream, created for `ledger.>` if missing; an existing stream must
/// take the ledger's subjects.
async fn ensure_stream(js: &Context, name: &str) -> Result<Stream, ExportError> {
    let failed = |cause: String| ExportError::Stream {
        stream: name.to_string(),
        cause,
    };
    let mut stream = js
        .get_or_create_stream(stream::Config {
            name: name.to_string(),
            subjects: vec![STREAM_SUBJECTS.to_string()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| failed(e.to_string()))?;
    let subjects = stream
        .info()
        .await
        .map_err(|e| failed(e.to_string()))?
        .config
        .subjects
        .clone();
    if !subjects
        .iter()
        .any(|s| s == STREAM_SUBJECTS || s == ">" || s == "ledger.*.>")
    {
        return Err(ExportError::Mismatch {
            stream: name.to_string(),
            reason: format!("it takes subjects {subjects:?}, not {STREAM_SUBJECTS}"),
        });
    }
    Ok(stream)
}

/// The last position the stream holds, once checked against the log: its
/// last sequence must not be past the head, and the message there must be
/// that position with the log's chain hash.
async fn resume_point(
    stream: &mut Stream,
    lock: &mut PgConnection,
    name: &str,
) -> Result<i64, ExportError> {
    let mismatch = |reason: String| ExportError::Mismatch {
        stream: name.to_string(),
        reason,
    };
    let last = stream
        .info()
        .await
        .map_err(|e| ExportError::Stream {
            stream: name.to_string(),
            cause: e.to_string(),
        })?
        .state
        .last_sequence;
    if last == 0 {
        return Ok(0);
    }
    let last = i64::try_from(last).map_err(|_| mismatch(format!("last sequence {last}")))?;
    let logged: Option<Vec<u8>> =
        sqlx::query_scalar("select hash from ledger_log where position = $1")
            .bind(last)
            .fetch_optional(&mut *lock)
            .await?;
    let Some(logged) = logged else {
        let head: i64 = sqlx::query_scalar("select coalesce(max(position), 0) from ledger_log")
            .fetch_one(&mut *lock)
            .await?;
        return Err(mismatch(format!(
            "its last sequence is {last} but the log's head is {head}"
        )));
    };
    match stream.get_raw_message(last as u64).await {
        Ok(stored) => {
            let position = stored
                .headers
                .get(POSITION_HEADER)
                .and_then(|v| v.as_str().parse::<i64>().ok());
            if position != Some(last) {
                return Err(mismatch(format!(
                    "sequence {last} holds position {position:?}, not {last}"
                )));
            }
            #[derive(serde::Deserialize)]
            struct Hashed {
                hash: String,
            }
            let hash = serde_json::from_slice::<Hashed>(&stored.payload)
                .map(|h| h.hash)
                .unwrap_or_default();
            if hash != hex::encode(&logged) {
                return Err(mismatch(format!(
                    "position {last} has hash {hash:?} in the stream, {} in the log",
                    hex::encode(&logged)
                )));
            }
        }
        // Removed (purged, or a retention limit): nothing to compare with;
        // the sequence still says where the export ended.
        Err(error) if matches!(error.kind(), RawMessageErrorKind::NoMessageFound) => {
            tracing::warn!(
                stream = name,
                sequence = last,
                "the stream's last message is gone; resuming after its sequence unchecked"
            );
        }
        Err(error) => {
            return Err(ExportError::Stream {
                stream: name.to_string(),
                cause: error.to_string(),
            })
        }
    }
    Ok(last)
}

/// Publish a batch without waiting, then await its acks; the last position
/// stored. Each ack must name the entry's own position as its sequence.
async fn publish(
    js: &Context,
    stream: &str,
    entries: &[ExportedEntry],
) -> Result<i64, ExportError> {
    let mut acks = Vec::with_capacity(entries.len());
    for entry in entries {
        let position = entry.position();
        let failed = |cause| ExportError::Publish { position, cause };
        let body = serde_json::to_vec(entry).map_err(|e| ExportError::Stream {
            stream: stream.to_string(),
            cause: format!("encoding position {position}: {e}"),
        })?;
        let mut headers = HeaderMap::new();
        headers.insert(POSITION_HEADER, position.to_string().as_str());
        if let Some(source) = entry.source_workspace {
            headers.insert(SOURCE_HEADER, source.to_string().as_str());
        }
        if let Some(target) = entry.target_workspace {
            headers.insert(TARGET_HEADER, target.to_string().as_str());
        }
        let message = PublishMessage::build()
            .payload(body.into())
            .headers(headers)
            .message_id(position.to_string())
            .expected_last_sequence(u64::try_from(position - 1).unwrap_or(0));
        let ack = js
            .send_publish(entry.subject(), message)
            .await
            .map_err(failed)?;
        acks.push((position, ack));
    }
    let mut last = 0;
    let mut duplicates = 0u64;
    for (position, ack) in acks {
        let ack = ack
            .await
            .map_err(|cause| ExportError::Publish { position, cause })?;
        if ack.sequence != position as u64 {
            return Err(ExportError::Mismatch {
                stream: stream.to_string(),
                reason: format!(
                    "position {position} was acknowledged at sequence {}{}",
                    ack.sequence,
                    if ack.duplicate { " (a duplicate)" } else { "" }
                ),
            });
        }
        duplicates += u64::from(ack.duplicate);
        last = position;
    }
    // Another exporter stored these moments ago (within the stream's
    // duplicate window): harmless, but a sign of two writers at once.
    if duplicates > 0 {
        ::metrics::counter!(metrics::NATS_EXPORT_DUPLICATES).increment(duplicates);
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let config = NatsExportConfig::new("nats://127.0.0.1:4222", "LEDGER");
        assert_eq!(backoff(&config, 0), Duration::from_millis(200));
        assert_eq!(backoff(&config, 1), Duration::from_millis(400));
        assert_eq!(backoff(&config, 40), Duration::from_secs(30));
    }
}
