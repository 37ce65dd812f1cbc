//! Exporting the positioned log to systems outside the database.
//!
//! [`nats`] copies every `ledger_log` entry, in position order, into a NATS
//! JetStream stream, so consumers that cannot (or should not) reach
//! PostgreSQL follow the ledger there. The export keeps one invariant that
//! makes it exactly-once and in order without any state of its own: **stream
//! sequence N holds log position N**. Where to resume is then the stream's
//! last sequence; every publish names the sequence it must follow
//! (`Nats-Expected-Last-Sequence`), so a publish that would duplicate or
//! reorder — a crash between publish and ack, a deposed leader still
//! sending, two exporters at once — is refused by the server instead of
//! stored. One exporter per database leads (its own advisory lock, like the
//! sequencer and the dispatcher); the lock is for efficiency, the invariant
//! is what keeps the stream right.
//!
//! [`message`] is the wire shape: subject, headers and the JSON body.

pub mod message;
pub mod nats;

use std::time::Duration;

/// Where and how the log is exported to NATS JetStream.
#[derive(Debug, Clone)]
pub struct NatsExportConfig {
    /// One or more NATS servers, comma-separated (`nats://host:4222`,
    /// `tls://host:4222`, or `host:port`).
    pub url: String,
    /// The JetStream stream, created (for subjects `ledger.>`) if missing.
    pub stream: String,
    /// Log entries read and published per round (acks awaited per round).
    pub batch: i64,
    /// Pause before a follower tries the leader lock again.
    pub election_interval: Duration,
    /// First pause after a failure; doubled per failure up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl NatsExportConfig {
    /// The export of the log to `url`, stream `stream`, with defaults.
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: stream.into(),
            batch: 2000,
            election_interval: Duration::from_millis(500),
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
        }
    }

    /// The servers of [`Self::url`], or why they cannot be used, as one
    /// sentence naming the setting.
    pub fn servers(&self) -> Result<Vec<async_nats::ServerAddr>, String> {
        let servers: Vec<&str> = self
            .url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if servers.is_empty() {
            return Err("LEDGER_NATS_URL (--nats-url) is empty".into());
        }
        servers
            .into_iter()
            .map(|server| {
                let scheme = server.split_once("://").map(|(scheme, _)| scheme);
                if !matches!(scheme, None | Some("nats") | Some("tls")) {
                    return Err(format!(
                        "LEDGER_NATS_URL (--nats-url) {server:?}: the scheme must be nats:// or tls://"
                    ));
                }
                server.parse::<async_nats::ServerAddr>().map_err(|error| {
                    format!("LEDGER_NATS_URL (--nats-url) {server:?} is not a NATS server address: {error}")
                })
            })
            .collect()
    }

    /// Settings that cannot work, as one sentence.
    pub fn validate(&self) -> Result<(), String> {
        self.servers()?;
        let name = &self.stream;
        if name.is_empty()
            || name.chars().any(|c| {
                c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\') || c.is_control()
            })
        {
            return Err(format!(
                "LEDGER_NATS_STREAM (--nats-stream) {name:?} is not a valid JetStream stream name (no spaces, '.', '*', '>', '/' or '\\')"
            ));
        }
        if self.batch < 1 {
            return Err("the NATS export batch must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_and_tls_urls_and_bare_addresses_are_accepted() {
        for url in [
            "nats://127.0.0.1:4222",
            "tls://nats.example:4443",
            "localhost:4222",
            "nats://a:1, nats://b:2",
        ] {
            assert_eq!(NatsExportConfig::new(url, "LEDGER").validate(), Ok(()));
        }
    }

    #[test]
    fn other_schemes_empty_urls_and_bad_stream_names_are_refused_by_name() {
        for url in ["http://127.0.0.1:4222", "", " , ", "nats://[::1"] {
            let error = NatsExportConfig::new(url, "LEDGER")
                .validate()
                .expect_err(url);
            assert!(error.contains("LEDGER_NATS_URL"), "{error}");
        }
        for stream in ["", "a.b", "a b", "x>"] {
            let error = NatsExportConfig::new("nats://127.0.0.1:4222", stream)
                .validate()
                .expect_err(stream);
            assert!(error.contains("LEDGER_NATS_STREAM"), "{error}");
        }
    }
}
