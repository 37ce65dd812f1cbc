//! The hub: the only reader of the log for live delivery.
//!
//! One task per process follows the positioned log (woken when the log head
//! moves — by this process's sequencer or by another's `NOTIFY` — and by a
//! fallback poll), maps each entry to its broadcast message once, serializes
//! it once, and publishes it on a bounded broadcast channel. Subscribers
//! never poll the database while live. The channel's capacity is each
//! subscriber's buffer: one that falls further behind than that is told so
//! by the channel (`Lagged`) and is closed, never silently skipped.
//!
//! Ordering contract with subscribers (see [`Hub::subscribe`]): the hub
//! advances its published position *before* it sends the messages up to
//! that position, so a subscriber that subscribes and then reads the
//! position can replay up to it from the log without missing anything the
//! channel will not deliver.

use std::sync::Arc;
use std::time::Duration;

use projections::broadcast::{broadcast, Broadcast};
use tokio::sync::{broadcast as channel, watch};
use tokio_util::sync::CancellationToken;

use crate::log::follow::{follow, OnError, Round, Rounds, IDLE_CHECK, RETRY_PAUSE};
use crate::log::{LogReader, Progress};
use crate::replicas::ReadPools;

/// Entries read per query while following the log.
const READ_BATCH: i64 = 1000;

#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Messages a subscriber may fall behind the hub before it is closed.
    pub buffer: usize,
    /// Subscribers connected to this process at once; more are refused.
    pub max_subscribers: usize,
    /// Subscribers of one token (one workspace, or the admin) at once.
    pub max_subscribers_per_token: usize,
    /// Largest message (and frame) a client may send; a larger one closes
    /// its connection. Clients have nothing to say beyond pongs and close
    /// frames.
    pub max_incoming_bytes: usize,
    /// Interval of keep-alive pings to each subscriber.
    pub ping_interval: Duration,
    /// Longest a single send to a subscriber may take before it is dropped
    /// as dead.
    pub send_timeout: Duration,
    /// The most recent messages kept, serialized, for replay: a subscriber
    /// resuming from a position they cover (the usual reconnect after a
    /// 4008 or 1001 close) is served from memory, not the database.
    pub replay_cache: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            buffer: 4096,
            max_subscribers: 2048,
            max_subscribers_per_token: 32,
            max_incoming_bytes: 4096,
            ping_interval: Duration::from_secs(20),
            send_timeout: Duration::from_secs(30),
            replay_cache: 16_384,
        }
    }
}

/// Whose token a subscriber connected with: the unit of the per-token cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenHolder {
    Admin,
    Workspace(uuid::Uuid),
}

/// Why a subscriber was not admitted (said in its close frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("too many live-feed subscribers for this token (at most {0}); close one first")]
    TokenFull(usize),
    #[error("the server has its limit of {0} live-feed subscribers; try again later")]
    ServerFull(usize),
}

/// Marks one connected subscriber; dropping it (when the connection task
/// ends, however it ends) counts the subscriber out.
#[derive(Debug)]
pub struct SubscriberGuard {
    hub: Arc<Hub>,
    holder: TokenHolder,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        let mut per_token = self.hub.lock_per_token();
        if let Some(count) = per_token.get_mut(&self.holder) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_token.remove(&self.holder);
            }
        }
        self.hub.connected.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// One broadcast message, mapped and serialized once for all subscribers.
#[derive(Debug)]
pub struct LiveMessage {
    pub message: Broadcast,
    /// The JSON text sent on the wire.
    pub text: Arc<str>,
}

#[derive(Debug)]
pub struct Hub {
    sender: channel::Sender<Arc<LiveMessage>>,
    position: watch::Sender<i64>,
    /// Subscribers between upgrade and the end of their connection task.
    connected: watch::Sender<usize>,
    /// The same, by token.
    per_token: std::sync::Mutex<std::collections::HashMap<TokenHolder, usize>>,
    reader: LogReader,
    /// Replicas replays may read from (none: every replay reads `reader`).
    replays: std::sync::OnceLock<Arc<ReadPools>>,
    config: HubConfig,
    recent: std::sync::RwLock<Recent>,
}

/// The replay cache: every message of the log positions after `after` up
/// to the hub's position, oldest first, at most `HubConfig::replay_cache`.
#[derive(Debug)]
struct Recent {
    after: i64,
    messages: std::collections::VecDeque<Arc<LiveMessage>>,
}

/// A page of replay served from the cache.
pub struct CachedPage {
    /// The messages after the cursor, in position order.
    pub messages: Vec<Arc<LiveMessage>>,
    /// The position the page covers up to: replay continues after it.
    pub through: i64,
}

impl Hub {
    /// A hub whose live stream starts after `start` (normally the log head).
    pub fn new(reader: LogReader, start: i64, config: HubConfig) -> Arc<Self> {
        Arc::new(Self {
            sender: channel::channel(config.buffer.max(1)).0,
            position: watch::channel(start).0,
            connected: watch::channel(0).0,
            per_token: Default::default(),
            reader,
            replays: std::sync::OnceLock::new(),
            recent: std::sync::RwLock::new(Recent {
                after: start,
                messages: Default::default(),
            }),
            config,
        })
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    pub fn reader(&self) -> &LogReader {
        &self.reader
    }

    /// Let replays read from `reads`' replicas.
    pub fn read_replays_from(&self, reads: Arc<ReadPools>) {
        let _ = self.replays.set(reads);
    }

    /// A reader for a replay up to `upto`: a replica in rotation whose
    /// views (and so its log) have reached `upto`, else the primary's. The
    /// hub itself follows the primary, so a replay from a replica that
    /// had not reached `upto` would leave a gap at the seam.
    pub fn replay_reader(&self, upto: i64) -> LogReader {
        let (reader, source) = match self.replays.get().and_then(|reads| reads.pool_at(upto)) {
            Some(pool) => (LogReader::new(pool), "replica"),
            None => (self.reader.clone(), "primary"),
        };
        ::metrics::counter!(crate::metrics::REPLAY_READS, "source" => source).increment(1);
        reader
    }

    /// Wait until the hub has published `position`, at most `timeout`.
    pub async fn wait_for_position(&self, position: i64, timeout: std::time::Duration) -> bool {
        let mut published = self.position.subscribe();
        let reached = async move { published.wait_for(|at| *at >= position).await.is_ok() };
        tokio::time::timeout(timeout, reached)
            .await
            .unwrap_or(false)
    }

    /// A live receiver, and the position up to which the log must be
    /// replayed so that the receiver carries on with no gap: every message
    /// after the returned position will arrive on the receiver (messages at
    /// or before it may arrive too; skip them).
    pub fn subscribe(&self) -> (channel::Receiver<Arc<LiveMessage>>, i64) {
        let receiver = self.sender.subscribe();
        let position = *self.position.borrow();
        (receiver, position)
    }

    /// The last position the hub has published.
    /// Up to `limit` messages after `cursor` up to `upto` from the replay
    /// cache, or `None` when the cache no longer holds all of them.
    pub fn cached(&self, cursor: i64, upto: i64, limit: usize) -> Option<CachedPage> {
        let recent = self.recent.read().unwrap_or_else(|p| p.into_inner());
        if cursor < recent.after {
            return None;
        }
        let from = recent
            .messages
            .partition_point(|m| m.message.position <= cursor);
        let messages: Vec<_> = recent
            .messages
            .range(from..)
            .take_while(|m| m.message.position <= upto)
            .take(limit)
            .cloned()
            .collect();
        let through = match messages.last() {
            Some(last) if messages.len() == limit => last.message.position,
            _ => upto,
        };
        Some(CachedPage { messages, through })
    }

    /// Add a batch's messages to the replay cache (before the hub's
    /// position moves past them), dropping the oldest beyond its size.
    fn remember(&self, messages: &[Arc<LiveMessage>]) {
        let capacity = self.config.replay_cache;
        let mut recent = self.recent.write().unwrap_or_else(|p| p.into_inner());
        recent.messages.extend(messages.iter().cloned());
        while recent.messages.len() > capacity {
            if let Some(dropped) = recent.messages.pop_front() {
                recent.after = dropped.message.position;
            }
        }
    }

    pub fn position(&self) -> i64 {
        *self.position.borrow()
    }

    /// Connected subscribers.
    pub fn subscribers(&self) -> usize {
        *self.connected.borrow()
    }

    /// Watch the number of connected subscribers (tests and metrics).
    pub fn watch_subscribers(&self) -> watch::Receiver<usize> {
        self.connected.subscribe()
    }

    /// Admit a subscriber of `holder` if both caps allow, counting it as
    /// connected for as long as the returned guard lives.
    pub fn connect(self: &Arc<Self>, holder: TokenHolder) -> Result<SubscriberGuard, Refusal> {
        let mut per_token = self.lock_per_token();
        if *self.connected.borrow() >= self.config.max_subscribers {
            return Err(Refusal::ServerFull(self.config.max_subscribers));
        }
        let count = per_token.entry(holder).or_insert(0);
        if *count >= self.config.max_subscribers_per_token {
            return Err(Refusal::TokenFull(self.config.max_subscribers_per_token));
        }
        *count += 1;
        self.connected.send_modify(|n| *n += 1);
        Ok(SubscriberGuard {
            hub: self.clone(),
            holder,
        })
    }

    fn lock_per_token(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<TokenHolder, usize>> {
        self.per_token.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follow the log until cancelled; a failed read is retried after a
    /// pause.
    pub async fn run(self: Arc<Self>, progress: Arc<Progress>, cancel: CancellationToken) {
        let mut rounds = Following {
            hub: &self,
            progress: &progress,
        };
        let mut sequenced = progress.subscribe_sequenced();
        // Every failure is retried: this ends only once cancelled.
        let _ = follow(&mut rounds, &mut sequenced, IDLE_CHECK, &cancel).await;
    }

    /// Read the next entries after the hub's position and publish their
    /// messages; the last position published (`None`: nothing new).
    async fn publish_next(&self) -> Result<Option<i64>, sqlx::Error> {
        let entries = self.reader.read_after(self.position(), READ_BATCH).await?;
        let Some(last) = entries.last().map(|e| e.position) else {
            return Ok(None);
        };
        let mut messages = Vec::with_capacity(entries.len());
        for entry in &entries {
            match entry.decode() {
                Ok(event) => messages.extend(broadcast(entry, &event)),
                // A poison entry is logged, not fatal to the feed; the
                // projection runner stops on it and readiness shows it.
                Err(error) => tracing::error!(%error, "hub cannot decode a log entry"),
            }
        }
        let messages: Vec<Arc<LiveMessage>> = messages
            .into_iter()
            .map(|message| {
                let text: Arc<str> = message.to_json().to_string().into();
                Arc::new(LiveMessage { message, text })
            })
            .collect();
        // The replay cache holds a position's messages before the
        // position is published, so a replay up to it can use them.
        self.remember(&messages);
        // Position first, then the messages: see the module docs.
        self.position.send_replace(last);
        for message in messages {
            // No receivers is fine: nobody is listening right now.
            let _ = self.sender.send(message);
        }
        Ok(Some(last))
    }
}

/// The hub's rounds: each publishes the next batch of the log.
struct Following<'a> {
    hub: &'a Hub,
    progress: &'a Progress,
}

impl Rounds for Following<'_> {
    type Error = sqlx::Error;

    async fn round(&mut self) -> Result<Round, sqlx::Error> {
        Ok(match self.hub.publish_next().await? {
            Some(last) if last < self.progress.head() => Round::Progressed,
            Some(_) | None => Round::CaughtUp,
        })
    }

    fn on_error(&mut self, error: &sqlx::Error, _: u32) -> OnError {
        tracing::warn!(%error, "hub could not read the log; retrying");
        OnError::RetryAfter(RETRY_PAUSE)
    }
}
