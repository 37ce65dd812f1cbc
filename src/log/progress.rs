//! How far the log and each projection got, for code that must wait.
//!
//! The sequencer and the projection runners of *this* process publish here
//! directly; the [`listen`] task adds what the leaders of *other* processes
//! announce with `NOTIFY` and, as a fallback, re-reads the tables every
//! [`REFRESH_INTERVAL`], so a missed notification only delays, never blocks.
//!
//! The main customer is read-your-writes: a command's response is sent only
//! once its events are sequenced and every projection applied them.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// NOTIFY channel of the sequencer: payload `head,tx_id,event_id`.
pub const LOG_CHANNEL: &str = "ledger_log";
/// NOTIFY channel of the projection runners: payload `name,position`.
pub const PROJECTION_CHANNEL: &str = "ledger_projection";
/// How often [`listen`] re-reads head and checkpoints from the tables.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(500);

/// The sequencer's position in the event table: every event at or before
/// `(tx_id, event_id)` in that order has a log position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Watermark {
    pub tx_id: u64,
    pub event_id: i64,
}

/// What the sequencer last published: the head position and the watermark
/// it had reached when that head was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sequenced {
    pub head: i64,
    pub watermark: Watermark,
}

/// How a read-your-writes wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visibility {
    /// A log position at or after the awaited event (`None`: the event was
    /// not positioned before the timeout).
    pub position: Option<i64>,
    /// Whether every projection applied it before the timeout.
    pub visible: bool,
}

#[derive(Debug)]
pub struct Progress {
    sequenced: watch::Sender<Sequenced>,
    projected: watch::Sender<BTreeMap<String, i64>>,
    projection_names: Vec<String>,
    wake_sequencer: Notify,
}

impl Progress {
    /// `projection_names`: the projections a read-your-writes wait covers.
    pub fn new(projection_names: Vec<String>) -> Self {
        Self {
            sequenced: watch::channel(Sequenced::default()).0,
            projected: watch::channel(BTreeMap::new()).0,
            projection_names,
            wake_sequencer: Notify::new(),
        }
    }

    /// Tell the local sequencer that new events were committed.
    pub fn wake_sequencer(&self) {
        self.wake_sequencer.notify_one();
    }

    /// Resolves when [`Self::wake_sequencer`] was called.
    pub async fn sequencer_woken(&self) {
        self.wake_sequencer.notified().await
    }

    /// Record a sequencer state; ignored if older than the one known.
    pub fn publish_sequenced(&self, state: Sequenced) {
        self.sequenced.send_if_modified(|known| {
            if state.head > known.head
                || (state.head == known.head && state.watermark > known.watermark)
            {
                *known = state;
                true
            } else {
                false
            }
        });
    }

    /// Record a projection checkpoint; ignored if older than the one known.
    pub fn publish_projected(&self, name: &str, position: i64) {
        self.projected.send_if_modified(|known| {
            let entry = known.entry(name.to_string()).or_insert(-1);
            if position > *entry {
                *entry = position;
                true
            } else {
                false
            }
        });
    }

    /// The projections a read-your-writes wait covers (those this process
    /// runs).
    pub fn projection_names(&self) -> &[String] {
        &self.projection_names
    }

    pub fn head(&self) -> i64 {
        self.sequenced.borrow().head
    }

    pub fn subscribe_sequenced(&self) -> watch::Receiver<Sequenced> {
        self.sequenced.subscribe()
    }

    /// The checkpoint of `name` as last published, if any.
    pub fn projected(&self, name: &str) -> Option<i64> {
        self.projected.borrow().get(name).copied()
    }

    /// Wait until the event at `mark` is sequenced and every projection has
    /// applied it, bounded by `timeout`. The answer carries the log head
    /// reached once the event was sequenced — a position at or after the
    /// event's own, which a later read can name as its `min_position`.
    pub async fn wait_visible(&self, mark: Watermark, timeout: Duration) -> Visibility {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut sequenced = self.sequenced.subscribe();
        let sequenced =
            tokio::time::timeout_at(deadline, sequenced.wait_for(|s| s.watermark >= mark));
        let head = match sequenced.await {
            Ok(Ok(state)) => state.head,
            _ => {
                return Visibility {
                    position: None,
                    visible: false,
                }
            }
        };
        Visibility {
            position: Some(head),
            visible: self.wait_applied_until(head, deadline).await,
        }
    }

    /// Wait until every projection has applied `position`, bounded by
    /// `timeout`; false when the time ran out first.
    pub async fn wait_applied(&self, position: i64, timeout: Duration) -> bool {
        self.wait_applied_until(position, tokio::time::Instant::now() + timeout)
            .await
    }

    async fn wait_applied_until(&self, position: i64, deadline: tokio::time::Instant) -> bool {
        let mut projected = self.projected.subscribe();
        let reached = async move {
            projected
                .wait_for(|known| {
                    self.projection_names
                        .iter()
                        .all(|name| known.get(name).is_some_and(|p| *p >= position))
                })
                .await
                .is_ok()
        };
        tokio::time::timeout_at(deadline, reached)
            .await
            .unwrap_or(false)
    }

    /// The position every projection has applied (the lowest checkpoint).
    pub fn applied(&self) -> i64 {
        let known = self.projected.borrow();
        self.projection_names
            .iter()
            .map(|name| known.get(name).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    /// Read head, watermark and checkpoints from the tables.
    pub async fn refresh(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let tail: Option<(i64, String, i64)> = sqlx::query_as(
            "select position, tx_id::text as tx_id, event_id from ledger_log order by position desc limit 1",
        )
        .fetch_optional(pool)
        .await?;
        if let Some((head, tx_id, event_id)) = tail {
            self.publish_sequenced(Sequenced {
                head,
                watermark: Watermark {
                    tx_id: tx_id.parse().unwrap_or(0),
                    event_id,
                },
            });
        }
        let checkpoints: Vec<(String, i64)> =
            sqlx::query_as("select name, position from projection_checkpoints")
                .fetch_all(pool)
                .await?;
        for (name, position) in checkpoints {
            self.publish_projected(&name, position);
        }
        Ok(())
    }

    fn apply_notification(&self, channel: &str, payload: &str) {
        let parts: Vec<&str> = payload.split(',').collect();
        match (channel, parts.as_slice()) {
            (LOG_CHANNEL, [head, tx_id, event_id]) => {
                if let (Ok(head), Ok(tx_id), Ok(event_id)) =
                    (head.parse(), tx_id.parse(), event_id.parse())
                {
                    self.publish_sequenced(Sequenced {
                        head,
                        watermark: Watermark { tx_id, event_id },
                    });
                }
            }
            (PROJECTION_CHANNEL, [name, position]) => {
                if let Ok(position) = position.parse() {
                    self.publish_projected(name, position);
                }
            }
            _ => tracing::warn!(channel, payload, "ignoring malformed notification"),
        }
    }
}

/// Follow the leaders' notifications (and re-read the tables periodically)
/// until cancelled.
pub async fn listen(pool: PgPool, progress: std::sync::Arc<Progress>, cancel: CancellationToken) {
    loop {
        if let Err(error) = progress.refresh(&pool).await {
            tracing::warn!(%error, "could not read log progress");
        }
        let mut listener = match listener(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "could not LISTEN for log progress; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(REFRESH_INTERVAL) => continue,
                    _ = cancel.cancelled() => return,
                }
            }
        };
        let mut refresh = tokio::time::interval(REFRESH_INTERVAL);
        loop {
            tokio::select! {
                message = listener.try_recv() => match message {
                    Ok(Some(note)) => progress.apply_notification(note.channel(), note.payload()),
                    // The connection was lost; notifications may be missed, so
                    // reconnect through the outer loop, which refreshes first.
                    Ok(None) | Err(_) => break,
                },
                _ = refresh.tick() => {
                    if let Err(error) = progress.refresh(&pool).await {
                        tracing::warn!(%error, "could not read log progress");
                    }
                }
                _ = cancel.cancelled() => return,
            }
        }
    }
}

/// A connection listening on the leaders' channels.
async fn listener(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([LOG_CHANNEL, PROJECTION_CHANNEL])
        .await?;
    Ok(listener)
}
