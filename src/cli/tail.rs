//! `ledger tail`: follow the live feed (`GET /ws`) and print one line per
//! message, resuming where it left off.
//!
//! Every message carries its log position, so resuming is exact: after a
//! close with 4008 (too slow) or 1001 (the server going away), or a
//! connection that simply dropped, the next connection asks for
//! `from=<last position printed>` and anything at or below it is skipped —
//! no gap, no duplicate, whatever the server restarted in between. Only the
//! first connection's failure is an error (a wrong URL, token or
//! workspace should say so at once rather than retry forever).

use std::io::Write;
use std::time::Duration;

use clap::Args;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

use super::commands::one_line;
use super::http::{error_for, Api, CliError};
use super::Connection;

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    connection: Connection,
    /// Only this workspace's messages (the admin may omit it to see
    /// everything; a workspace token sees its own).
    #[arg(long, env = "LEDGER_WORKSPACE")]
    workspace: Option<Uuid>,
    /// Replay every message after this log position first (default: only
    /// what happens from now on).
    #[arg(long)]
    from: Option<i64>,
    /// Stop after printing this many messages.
    #[arg(long)]
    limit: Option<u64>,
    /// Print each message as the server sent it (one JSON object a line).
    #[arg(long)]
    json: bool,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

pub async fn tail(args: TailArgs) -> Result<(), CliError> {
    let api = Api::new(&args.connection)?;
    let token = api.token()?.to_string();
    if let Some(from) = args.from {
        if from < 0 {
            return Err(CliError::Usage("--from must be 0 or more".into()));
        }
    }
    // Without --from, start at the head as it is now: a reconnect then
    // resumes from a known position even before anything was printed.
    let last = match args.from {
        Some(from) => Some(from),
        None => head(&api).await,
    };
    let mut follower = Follower {
        api,
        token,
        workspace: args.workspace,
        last,
        printed: 0,
        limit: args.limit,
        json: args.json,
    };
    tokio::select! {
        result = follower.run() => result,
        // Ctrl-C ends a tail normally: it is how one stops following.
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// The log head from `/readyz` (None when it does not say: then the
/// first connection starts live, without a position).
async fn head(api: &Api) -> Option<i64> {
    let ready = api.get("/readyz").await.ok()?;
    ready["head"].as_i64()
}

/// Why one connection ended.
enum Ended {
    /// The limit was reached: stop.
    Done,
    /// The server closed the connection or it broke: reconnect.
    Lost(String),
}

struct Follower {
    api: Api,
    token: String,
    workspace: Option<Uuid>,
    /// The last position printed (or the one to start after).
    last: Option<i64>,
    printed: u64,
    limit: Option<u64>,
    json: bool,
}

impl Follower {
    async fn run(&mut self) -> Result<(), CliError> {
        if self.limit == Some(0) {
            return Ok(());
        }
        let mut connected_once = false;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let why = match self.connect().await {
                Ok(socket) => {
                    connected_once = true;
                    backoff = FIRST_BACKOFF;
                    match self.follow(socket).await? {
                        Ended::Done => return Ok(()),
                        Ended::Lost(why) => why,
                    }
                }
                Err(error) if !connected_once => return Err(error),
                // The token was revoked or rotated, or the workspace is
                // not visible any more: retrying cannot help.
                Err(error @ (CliError::TokenRefused | CliError::NotFound(_))) => return Err(error),
                Err(error) => error.to_string(),
            };
            let from = self.last.map_or("now".to_string(), |p| p.to_string());
            eprintln!("tail: {why}; reconnecting from position {from}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn connect(&self) -> Result<Socket, CliError> {
        let mut url = self.api.base().to_string();
        if let Some(rest) = url.strip_prefix("http") {
            // http → ws, https → wss
            url = format!("ws{rest}");
        }
        let mut query = Vec::new();
        if let Some(workspace) = self.workspace {
            query.push(format!("workspace_id={workspace}"));
        }
        if let Some(from) = self.last {
            query.push(format!("from={from}"));
        }
        url.push_str("/ws");
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| CliError::Usage(format!("cannot make a websocket request: {e}")))?;
        let bearer = HeaderValue::from_str(&format!("Bearer {}", self.token))
            .map_err(|_| CliError::Usage("the token holds characters a header cannot".into()))?;
        request.headers_mut().insert("authorization", bearer);
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => Ok(socket),
            Err(tungstenite::Error::Http(response)) => {
                let body: Value = response
                    .body()
                    .as_deref()
                    .and_then(|bytes| serde_json::from_slice(bytes).ok())
                    .unwrap_or(Value::Null);
                Err(error_for(response.status(), &body))
            }
            Err(error) => Err(CliError::Unreachable {
                url: self.api.base().to_string(),
                detail: error.to_string(),
            }),
        }
    }

    /// Print what one connection delivers until it ends.
    async fn follow(&mut self, mut socket: Socket) -> Result<Ended, CliError> {
        while let Some(frame) = socket.next().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(error) => return Ok(Ended::Lost(format!("connection lost ({error})"))),
            };
            match frame {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(text.as_str()).map_err(|_| {
                        CliError::Protocol(format!("a feed message that is not JSON: {text}"))
                    })?;
                    // A batched replay is an array; the plain feed one object.
                    let messages = match value {
                        Value::Array(messages) => messages,
                        single => vec![single],
                    };
                    for message in messages {
                        if self.print(&message)? {
                            let _ = socket.close(None).await;
                            return Ok(Ended::Done);
                        }
                    }
                }
                Message::Close(frame) => {
                    let why = match frame {
                        Some(frame) => closed(frame.code, &frame.reason),
                        None => "the server closed the feed".into(),
                    };
                    return Ok(Ended::Lost(why));
                }
                // Pings are answered by the library; nothing else is sent.
                _ => {}
            }
        }
        Ok(Ended::Lost("connection closed".into()))
    }

    /// Print one message unless it was printed before; true once the limit
    /// is reached.
    fn print(&mut self, message: &Value) -> Result<bool, CliError> {
        let position = message["position"].as_i64().ok_or_else(|| {
            CliError::Protocol(format!("a feed message without position: {message}"))
        })?;
        if self.last.is_some_and(|last| position <= last) {
            return Ok(false);
        }
        let line = if self.json {
            message.to_string()
        } else {
            human(message, position)
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        self.last = Some(position);
        self.printed += 1;
        Ok(self.limit.is_some_and(|limit| self.printed >= limit))
    }
}

/// The reason a close frame gives, for the reconnect note.
fn closed(code: CloseCode, reason: &str) -> String {
    let code = u16::from(code);
    let what = match code {
        4008 => "the server closed the feed: this client fell behind",
        1001 => "the server is going away",
        1008 | 1013 => "the server refused another subscriber",
        _ => "the server closed the feed",
    };
    format!("{what} ({code}: {reason})")
}

/// `position  time  TYPE  delegation  details`.
fn human(message: &Value, position: i64) -> String {
    let text = |key: &str| message[key].as_str().unwrap_or("");
    let payload = &message["payload"];
    let field = |key: &str| payload[key].as_str().map(one_line);
    let details = match text("type") {
        "DELEGATION_SENT" => format!(
            "{} → {}  {}",
            text("workspace_id"),
            payload["target_id"].as_str().unwrap_or("?"),
            field("task_preview").unwrap_or_default()
        ),
        "DELEGATION_STATUS" => format!("status {}", field("status").unwrap_or_default()),
        "DELEGATION_COMPLETE" => {
            format!("result {}", field("response_preview").unwrap_or_default())
        }
        "DELEGATION_FAILED" => format!("error {}", field("error").unwrap_or_default()),
        "DELEGATION_CANCELED" => format!("reason {}", field("reason").unwrap_or_default()),
        "DELEGATION_INPUT_REQUIRED" => {
            format!("question {}", field("question").unwrap_or_default())
        }
        _ => {
            let mut parts = Vec::new();
            if let Some(queue) = payload["queue_id"].as_str() {
                parts.push(format!("queue item {queue}"));
            }
            if let Some(attempt) = payload["attempt"].as_i64() {
                parts.push(format!("attempt {attempt}"));
            }
            if let Some(error) = field("error") {
                parts.push(format!("error {error}"));
            }
            parts.join("  ")
        }
    };
    format!(
        "{position:>8}  {}  {:<25}  {}  {details}",
        text("at"),
        text("type"),
        message["delegation_id"].as_str().unwrap_or("-"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_line_leads_with_the_position_and_says_what_happened() {
        let message = json!({
            "position": 42,
            "type": "DELEGATION_COMPLETE",
            "workspace_id": "3f1c0000-0000-0000-0000-000000000001",
            "delegation_id": "3f1c0000-0000-0000-0000-0000000000d1",
            "at": "2026-01-01T12:00:00.000000Z",
            "payload": {"target_id": "3f1c0000-0000-0000-0000-000000000002",
                        "response_preview": "done\nwell"},
        });
        let line = human(&message, 42);
        assert!(line
            .trim_start()
            .starts_with("42  2026-01-01T12:00:00.000000Z"));
        assert!(line.contains("DELEGATION_COMPLETE"));
        assert!(line.contains("3f1c0000-0000-0000-0000-0000000000d1"));
        // One line, whatever the agent wrote.
        assert!(line.ends_with("result done well"), "{line}");

        let queued = json!({
            "position": 7, "type": "QUEUE_ITEM_REQUEUED", "at": "t",
            "payload": {"queue_id": "q", "attempt": 2, "error": "busy"},
        });
        assert!(human(&queued, 7).ends_with("queue item q  attempt 2  error busy"));
    }

    #[test]
    fn the_closes_that_resume_say_why() {
        let slow = closed(CloseCode::from(4008), "too slow; reconnect with from=9");
        assert!(
            slow.contains("fell behind") && slow.contains("4008"),
            "{slow}"
        );
        let away = closed(CloseCode::Away, "server shutting down");
        assert!(away.contains("going away (1001"), "{away}");
    }
}
