//! One websocket subscriber: replay, then live.
//!
//! Replay reads the log from `from` up to the hub's position at the moment
//! of subscribing (the live receiver already exists then, so nothing after
//! that position can be missed), then drains the receiver, skipping what
//! replay already covered. If the receiver overflowed while a long replay
//! ran, the subscriber simply subscribes again and replays the difference:
//! a client is never closed for the length of its own history.
//!
//! With `batch`, each replay read goes out as one frame holding a JSON
//! array of its messages: a browser pays a fixed cost per websocket frame,
//! so a replay of 20,000 messages arrives several times faster. Live
//! messages are always one per frame.
//!
//! Live, a subscriber that lets the hub's buffer overflow is closed with
//! code [`CLOSE_TOO_SLOW`] and a reason naming the last position delivered;
//! on shutdown it is closed with 1001 (going away) and the same. Either way
//! the client reconnects with `from=<that position>` and loses nothing.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use projections::broadcast::{broadcast, Broadcast};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::hub::{CachedPage, Hub, LiveMessage, Refusal, TokenHolder};

/// Close code for a consumer that fell further behind than its buffer.
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Close code when the server shuts down (RFC 6455 "going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code when the token already has its most subscribers (RFC 6455
/// "policy violation").
pub const CLOSE_TOKEN_FULL: u16 = 1008;
/// Close code when the server has its most subscribers (RFC 6455 "try
/// again later").
pub const CLOSE_SERVER_FULL: u16 = 1013;
/// Log entries read per replay query.
const REPLAY_BATCH: i64 = 1000;

/// Which messages a subscriber receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The admin's unfiltered feed.
    Everything,
    /// Messages of delegations and queue items this workspace sent or is
    /// the target of.
    Workspace(Uuid),
}

impl Audience {
    fn admits(self, message: &Broadcast) -> bool {
        match self {
            Self::Everything => true,
            Self::Workspace(id) => message.visible_to(id),
        }
    }
}

/// Why a subscriber stopped.
#[derive(Debug)]
enum End {
    /// The client went away (closed, or the connection broke).
    ClientGone,
    /// The subscriber decided to close with this frame.
    Close(u16, String),
}

struct Connection {
    sink: SplitSink<WebSocket, Message>,
    stream: SplitStream<WebSocket>,
    hub: Arc<Hub>,
    audience: Audience,
    /// Position of the last message sent to the client (or the cursor it
    /// connected with): where it resumes.
    delivered: i64,
    /// Every position up to here has been considered (sent or filtered).
    cursor: i64,
    /// Replay one frame (a JSON array) per log read, not per message.
    batch: bool,
}

/// Serve one subscriber until it leaves, falls behind, or shutdown — if
/// the hub admits another subscriber of `holder`; else close at once,
/// saying why.
#[tracing::instrument(skip_all, fields(?audience, from))]
pub async fn serve(
    mut socket: WebSocket,
    hub: Arc<Hub>,
    audience: Audience,
    holder: TokenHolder,
    from: Option<i64>,
    batch: bool,
    shutdown: CancellationToken,
) {
    let _connected = match hub.connect(holder) {
        Ok(guard) => guard,
        Err(refusal) => {
            let code = match refusal {
                Refusal::TokenFull(_) => CLOSE_TOKEN_FULL,
                Refusal::ServerFull(_) => CLOSE_SERVER_FULL,
            };
            tracing::info!(code, %refusal, "subscriber refused");
            let frame = CloseFrame {
                code,
                reason: refusal.to_string().into(),
            };
            let _ = tokio::time::timeout(
                hub.config().send_timeout,
                socket.send(Message::Close(Some(frame))),
            )
            .await;
            return;
        }
    };
    let start = from.unwrap_or_else(|| hub.position());
    let (sink, stream) = socket.split();
    let mut connection = Connection {
        sink,
        stream,
        hub,
        audience,
        delivered: start,
        cursor: start,
        batch,
    };
    let end = tokio::select! {
        end = connection.run() => end,
        _ = shutdown.cancelled() => End::Close(CLOSE_GOING_AWAY, "server shutting down".into()),
    };
    match end {
        End::ClientGone => tracing::debug!(delivered = connection.delivered, "subscriber left"),
        End::Close(code, why) => {
            let reason = format!(
                "{why}; last position delivered {0}; reconnect with from={0}",
                connection.delivered
            );
            tracing::info!(code, %reason, "closing subscriber");
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let send_timeout = connection.hub.config().send_timeout;
            let _ = tokio::time::timeout(
                send_timeout,
                connection.sink.send(Message::Close(Some(frame))),
            )
            .await;
        }
    }
}

impl Connection {
    async fn run(&mut self) -> End {
        let receiver = match self.replay().await {
            Ok(receiver) => receiver,
            Err(end) => return end,
        };
        self.live(receiver).await
    }

    /// Replay from the cursor until caught up with a live receiver that
    /// has not overflowed; return that receiver.
    async fn replay(&mut self) -> Result<tokio::sync::broadcast::Receiver<Arc<LiveMessage>>, End> {
        loop {
            let (mut receiver, upto) = self.hub.subscribe();
            while self.cursor < upto {
                if let Some(page) = self.hub.cached(self.cursor, upto, REPLAY_BATCH as usize) {
                    self.replay_cached(page).await?;
                    continue;
                }
                let batch = REPLAY_BATCH.min(upto - self.cursor);
                let reader = self.hub.replay_reader(upto);
                let read = match self.audience {
                    Audience::Everything => reader.read_after(self.cursor, batch).await,
                    Audience::Workspace(id) => {
                        reader
                            .read_for_workspace(id, self.cursor, upto, batch)
                            .await
                    }
                };
                let entries = read.map_err(|error| {
                    tracing::warn!(%error, "replay could not read the log");
                    End::Close(1011, "could not read the log; reconnect".to_string())
                })?;
                // A short page of a workspace's entries means none is left
                // before `upto`.
                let last = match entries.last().map(|e| e.position) {
                    Some(last) if entries.len() as i64 == batch => last,
                    Some(_) | None if matches!(self.audience, Audience::Workspace(_)) => upto,
                    Some(last) => last,
                    None => break,
                };
                let mut frame: Vec<String> = Vec::new();
                let mut frame_last = self.delivered;
                for entry in &entries {
                    let Ok(event) = entry.decode() else { continue };
                    if let Some(message) = broadcast(entry, &event) {
                        if self.audience.admits(&message) {
                            let text = message.to_json().to_string();
                            if self.batch {
                                frame.push(text);
                                frame_last = message.position;
                            } else {
                                self.feed(text, message.position).await?;
                            }
                        }
                    }
                }
                if !frame.is_empty() {
                    self.feed(format!("[{}]", frame.join(",")), frame_last)
                        .await?;
                }
                self.cursor = last;
                self.flush().await?;
            }
            self.cursor = self.cursor.max(upto);
            // Drain what arrived live meanwhile; an overflow means replay
            // again from the cursor with a fresh receiver.
            loop {
                match receiver.try_recv() {
                    Ok(live) => self.deliver(&live).await?,
                    Err(TryRecvError::Empty) => return Ok(receiver),
                    Err(TryRecvError::Lagged(_)) => break,
                    Err(TryRecvError::Closed) => {
                        return Err(End::Close(CLOSE_GOING_AWAY, "server shutting down".into()))
                    }
                }
            }
        }
    }

    async fn live(
        &mut self,
        mut receiver: tokio::sync::broadcast::Receiver<Arc<LiveMessage>>,
    ) -> End {
        let mut ping = tokio::time::interval(self.hub.config().ping_interval);
        ping.tick().await;
        loop {
            let step = tokio::select! {
                received = receiver.recv() => match received {
                    Ok(live) => self.deliver(&live).await,
                    Err(RecvError::Lagged(missed)) => Err(End::Close(
                        CLOSE_TOO_SLOW,
                        format!("too slow: fell {missed} messages behind"),
                    )),
                    Err(RecvError::Closed) => Err(End::Close(CLOSE_GOING_AWAY, "server shutting down".into())),
                },
                incoming = self.stream.next() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Err(End::ClientGone),
                    // Pongs and anything the client says are ignored; pings
                    // are answered by the websocket layer.
                    Some(Ok(_)) => Ok(()),
                },
                _ = ping.tick() => self.send(Message::Ping(Default::default())).await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Send a page of replay the hub had in memory: the same messages, in
    /// the same framing, as a page read from the log.
    async fn replay_cached(&mut self, page: CachedPage) -> Result<(), End> {
        let mut frame: Vec<&str> = Vec::new();
        let mut frame_last = self.delivered;
        for live in &page.messages {
            if !self.audience.admits(&live.message) {
                continue;
            }
            if self.batch {
                frame.push(&live.text);
                frame_last = live.message.position;
            } else {
                self.feed(live.text.to_string(), live.message.position)
                    .await?;
            }
        }
        if !frame.is_empty() {
            let text = format!("[{}]", frame.join(","));
            self.feed(text, frame_last).await?;
        }
        self.cursor = page.through;
        self.flush().await
    }

    async fn deliver(&mut self, live: &LiveMessage) -> Result<(), End> {
        let position = live.message.position;
        if position <= self.cursor {
            return Ok(());
        }
        self.cursor = position;
        if self.audience.admits(&live.message) {
            self.send(Message::Text(live.text.as_ref().into())).await?;
            self.delivered = position;
        }
        Ok(())
    }

    /// Queue a replayed message without flushing (replay flushes per batch).
    async fn feed(&mut self, text: String, position: i64) -> Result<(), End> {
        let timeout = self.hub.config().send_timeout;
        match tokio::time::timeout(timeout, self.sink.feed(Message::Text(text.into()))).await {
            Ok(Ok(())) => {
                self.delivered = position;
                Ok(())
            }
            Ok(Err(_)) => Err(End::ClientGone),
            Err(_) => Err(End::Close(
                CLOSE_TOO_SLOW,
                "too slow: a send timed out".into(),
            )),
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        let timeout = self.hub.config().send_timeout;
        match tokio::time::timeout(timeout, self.sink.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::ClientGone),
            Err(_) => Err(End::Close(
                CLOSE_TOO_SLOW,
                "too slow: a send timed out".into(),
            )),
        }
    }

    async fn send(&mut self, message: Message) -> Result<(), End> {
        let timeout = self.hub.config().send_timeout;
        match tokio::time::timeout(timeout, self.sink.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::ClientGone),
            Err(_) => Err(End::Close(
                CLOSE_TOO_SLOW,
                "too slow: a send timed out".into(),
            )),
        }
    }
}
