//! [`A2aClient`]: the HTTP side of talking to a target agent, and the
//! classification of every way that can go wrong.
//!
//! Why classification lives here: the dispatcher must react differently to
//! three kinds of failure, and only the transport layer can tell them apart.
//!
//! * **Busy** — the agent is alive but occupied: HTTP 503 whose JSON body
//!   says `"busy": true`, HTTP 429, or HTTP 202 with `"queued": true` from
//!   an A2A proxy that parked the request. The message may already have
//!   been delivered, so a blind retry double-delivers; the dispatcher queues
//!   the delegation and drains it when the target reports spare capacity.
//! * **Transient** — the message did not get through, or the agent is
//!   coming back: connection refused or reset, timeouts, HTTP 502, 504,
//!   408, the CDN origin-down family 521–524, and 503 *without* the busy
//!   marker (an older platform's proxy sends `"restarting": true` when the agent's
//!   container is being restarted). Retry with backoff.
//! * **Permanent** — retrying cannot help: any other 4xx, other 5xx (the
//!   agent failed while handling the request, which may have been
//!   delivered), a body that is not the JSON-RPC we asked for, or a
//!   JSON-RPC error (kept with its code in [`CallError::rpc_code`], so a
//!   dispatcher can still special-case e.g. "task not found").
//!
//! A `Retry-After` header (seconds or an HTTP date) is surfaced on every
//! error as a hint, whatever the kind.
//!
//! **Nothing remote is echoed.** A reason says what class of failure it was,
//! the HTTP status and, for a JSON-RPC error, the agent's own error message
//! (bounded, control characters removed) — never bytes of a body that is
//! not the JSON-RPC we asked for (a redirect to the ledger's own `/metrics`
//! once put its text into a delegation's `error`). URLs in reasons lose
//! their query string and credentials.
//!
//! **Only where the outbound policy allows** ([`super::outbound`]): every
//! name is resolved by the policy's resolver, IP literals are checked
//! before the request, redirects are not followed and environment proxies
//! are ignored. A refused destination is a permanent failure that names
//! the policy, never something to retry.
//!
//! Timeouts: a connect timeout and a whole-request timeout, both
//! configurable. Non-blocking sends keep requests short, so the request
//! timeout can be tight; long tasks are followed by polling instead.
//! Response bodies are read up to a cap, because they are remote data.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::card::{card_url, select_endpoint, AgentCard, Endpoint};
use super::outbound::{refusal_in, OutboundPolicy, PolicyResolver};
use super::wire::{self, SendOutcome, TaskSnapshot, WireError};
use super::{message_id_for, ProtocolVersion};

/// Settings of an [`A2aClient`].
#[derive(Debug, Clone)]
pub struct A2aClientConfig {
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest wait for a whole JSON-RPC exchange, body included.
    pub request_timeout: Duration,
    /// Longest wait for an agent card.
    pub card_timeout: Duration,
    /// Largest response body read; a larger one is a permanent failure.
    pub max_response_bytes: usize,
    /// The `User-Agent` sent to agents.
    pub user_agent: String,
}

impl Default for A2aClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            card_timeout: Duration::from_secs(10),
            max_response_bytes: 4 * 1024 * 1024,
            user_agent: concat!("delegation-ledger/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// How a failed call failed (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    Busy(BusyReason),
    Transient,
    Permanent,
}

/// Which busy signal the target gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusyReason {
    /// HTTP 503 with `"busy": true`: mid-work on an earlier request.
    AgentBusy,
    /// HTTP 429.
    RateLimited,
    /// HTTP 202 with `"queued": true`: an A2A proxy parked the request
    /// (de-duplicated by message id, so a later resend is safe).
    QueuedByProxy { queue_id: Option<String> },
}

/// A failed call to an agent, with everything the dispatcher needs to
/// decide what to do and to record why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub kind: ErrorKind,
    /// A sentence for the delegation's failure reason and the logs.
    pub reason: String,
    /// The agent's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    /// The HTTP status, when an answer arrived.
    pub http_status: Option<u16>,
    /// The JSON-RPC error code, when the agent answered with one.
    pub rpc_code: Option<i64>,
    /// Whether the request may have reached the agent although no answer
    /// arrived (a timeout or a broken connection after it was written, a
    /// gateway's 502/504): a resend then risks a second task, so the
    /// dispatcher looks for the first before sending again.
    pub maybe_delivered: bool,
}

impl CallError {
    fn new(kind: ErrorKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            maybe_delivered: false,
            reason: reason.into(),
            retry_after: None,
            http_status: None,
            rpc_code: None,
        }
    }

    pub fn is_busy(&self) -> bool {
        matches!(self.kind, ErrorKind::Busy(_))
    }

    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    pub fn is_permanent(&self) -> bool {
        self.kind == ErrorKind::Permanent
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for CallError {}

/// What an HTTP answer means, before its body is read as JSON-RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpClass {
    /// Read the body as the JSON-RPC answer.
    Success,
    Busy(BusyReason),
    Transient(String),
    Permanent(String),
}

/// Classifies an HTTP answer by status and body (pure; see module docs).
pub fn classify_http(status: u16, body: &[u8]) -> HttpClass {
    let flag = |name: &str| -> bool {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get(name).and_then(Value::as_bool))
            .unwrap_or(false)
    };
    match status {
        202 if flag("queued") => {
            let queue_id = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
                v.get("queue_id")
                    .or_else(|| v.get("queueId"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            HttpClass::Busy(BusyReason::QueuedByProxy { queue_id })
        }
        200..=299 => HttpClass::Success,
        429 => HttpClass::Busy(BusyReason::RateLimited),
        503 if flag("busy") => HttpClass::Busy(BusyReason::AgentBusy),
        503 if flag("restarting") => {
            HttpClass::Transient("HTTP 503: the agent is restarting".to_string())
        }
        503 => HttpClass::Transient("HTTP 503 Service Unavailable".to_string()),
        502 => HttpClass::Transient("HTTP 502 Bad Gateway".to_string()),
        504 => HttpClass::Transient("HTTP 504 Gateway Timeout".to_string()),
        408 => HttpClass::Transient("HTTP 408 Request Timeout".to_string()),
        521..=524 => {
            HttpClass::Transient(format!("HTTP {status}: the agent's origin is unreachable"))
        }
        300..=399 => HttpClass::Permanent(format!(
            "HTTP {status}: a redirect, which the ledger does not follow"
        )),
        400..=599 => HttpClass::Permanent(format!("HTTP {status}")),
        _ => HttpClass::Permanent(format!("unexpected HTTP status {status}")),
    }
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date (relative to
/// `now`; a date in the past means "now").
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    let delta = at.with_timezone(&Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// An A2A client over HTTP (cheap to clone; one connection pool).
#[derive(Debug, Clone)]
pub struct A2aClient {
    http: reqwest::Client,
    config: A2aClientConfig,
    outbound: std::sync::Arc<OutboundPolicy>,
}

impl A2aClient {
    /// A client that connects only where `outbound` permits.
    pub fn new(config: A2aClientConfig, outbound: OutboundPolicy) -> Result<Self, reqwest::Error> {
        let outbound = std::sync::Arc::new(outbound);
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(config.user_agent.clone())
            // A redirect would send the request somewhere the checks
            // below never looked (and hand its answer back to the caller).
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would be connected to instead
            // of the agent, bypassing the resolver's check.
            .no_proxy()
            .dns_resolver(std::sync::Arc::new(PolicyResolver::new(outbound.clone())))
            .build()?;
        Ok(Self {
            http,
            config,
            outbound,
        })
    }

    pub fn config(&self) -> &A2aClientConfig {
        &self.config
    }

    /// Fetches the agent card of the agent at `base_url`.
    ///
    /// A missing or unreadable card is a permanent error; an unreachable or
    /// busy agent keeps its transient/busy kind.
    pub async fn card(&self, base_url: &str) -> Result<AgentCard, CallError> {
        let url = card_url(base_url);
        self.check_url(&url)?;
        let request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.config.card_timeout);
        let body = self
            .exchange(request, &url, self.config.card_timeout)
            .await?;
        AgentCard::parse(&body).map_err(|reason| {
            CallError::new(
                ErrorKind::Permanent,
                format!("{reason} (from {})", display_url(&url)),
            )
        })
    }

    /// Decides how to talk to the agent registered at `base_url`: fetches
    /// its card and applies [`select_endpoint`]. No card (or an unreadable
    /// one) falls back as `select_endpoint` does; an agent that cannot be
    /// reached is an error, so a dispatcher never guesses a version just
    /// because the agent was briefly down.
    pub async fn resolve_endpoint(
        &self,
        base_url: &str,
        configured: Option<ProtocolVersion>,
    ) -> Result<Endpoint, CallError> {
        match self.card(base_url).await {
            Ok(card) => Ok(select_endpoint(base_url, Some(&card), configured)),
            Err(e) if e.is_permanent() => Ok(select_endpoint(base_url, None, configured)),
            Err(e) => Err(e),
        }
    }

    /// Sends a delegation's task as a non-blocking A2A message. The message
    /// id is derived from `delegation_id` ([`message_id_for`]), so calling
    /// this again for the same delegation sends the same message.
    pub async fn send(
        &self,
        url: &str,
        version: ProtocolVersion,
        delegation_id: Uuid,
        task: &str,
    ) -> Result<SendOutcome, CallError> {
        let request =
            wire::send_request(version, &message_id_for(delegation_id), delegation_id, task);
        let body = self.rpc(url, version, &request).await?;
        wire::parse_send_response(&body).map_err(from_wire)
    }

    /// Asks the agent to cancel a task (best effort: the agent may refuse,
    /// e.g. -32002 "not cancelable").
    pub async fn cancel_task(
        &self,
        url: &str,
        version: ProtocolVersion,
        task_id: &str,
    ) -> Result<(), CallError> {
        let request = wire::cancel_task_request(version, task_id);
        let body = self.rpc(url, version, &request).await?;
        wire::parse_cancel_task_response(&body).map_err(from_wire)
    }

    /// The agent's tasks of `context_id` (the delegation id a send carries),
    /// or `None` when the agent offers no way to list them (v0.3, or a v1.0
    /// agent that answers "method not found" / "unsupported operation").
    pub async fn find_tasks(
        &self,
        url: &str,
        version: ProtocolVersion,
        context_id: &str,
    ) -> Result<Option<Vec<TaskSnapshot>>, CallError> {
        if version.list_tasks_method().is_none() {
            return Ok(None);
        }
        let request = wire::list_tasks_request(context_id);
        let body = self.rpc(url, version, &request).await?;
        match wire::parse_list_tasks_response(&body) {
            Ok(tasks) => Ok(Some(
                tasks
                    .into_iter()
                    .filter(|task| task.context_id.as_deref().is_none_or(|c| c == context_id))
                    .collect(),
            )),
            Err(WireError::Rpc(rpc)) if matches!(rpc.code, -32601 | -32004) => Ok(None),
            Err(other) => Err(from_wire(other)),
        }
    }

    /// Reads the current state of a remote task.
    pub async fn get_task(
        &self,
        url: &str,
        version: ProtocolVersion,
        task_id: &str,
    ) -> Result<TaskSnapshot, CallError> {
        let request = wire::get_task_request(version, task_id);
        let body = self.rpc(url, version, &request).await?;
        wire::parse_get_task_response(&body).map_err(from_wire)
    }

    async fn rpc(
        &self,
        url: &str,
        version: ProtocolVersion,
        request: &Value,
    ) -> Result<Vec<u8>, CallError> {
        self.check_url(url)?;
        let mut builder = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .json(request);
        if let Some(v) = version.header_value() {
            builder = builder.header("A2A-Version", v);
        }
        self.exchange(builder, url, self.config.request_timeout)
            .await
    }

    /// Sends, reads the body (capped) and classifies the answer.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let mut response = request
            .send()
            .await
            .map_err(|e| transport_error(&e, url, timeout))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));

        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.config.max_response_bytes {
                        let mut e = CallError::new(
                            ErrorKind::Permanent,
                            format!(
                                "the agent's answer from {} is larger than {} bytes",
                                display_url(url),
                                self.config.max_response_bytes
                            ),
                        );
                        e.http_status = Some(status);
                        return Err(e);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    let mut e = transport_error(&e, url, timeout);
                    e.http_status = Some(status);
                    e.retry_after = retry_after;
                    return Err(e);
                }
            }
        }

        let (kind, reason) = match classify_http(status, &body) {
            HttpClass::Success => return Ok(body),
            HttpClass::Busy(reason) => {
                let text = match &reason {
                    BusyReason::AgentBusy => "the agent is busy (HTTP 503)".to_string(),
                    BusyReason::RateLimited => {
                        "the agent is rate limiting requests (HTTP 429)".to_string()
                    }
                    BusyReason::QueuedByProxy { queue_id: Some(id) } => {
                        format!("the agent's proxy queued the request as {id} (HTTP 202)")
                    }
                    BusyReason::QueuedByProxy { queue_id: None } => {
                        "the agent's proxy queued the request (HTTP 202)".to_string()
                    }
                };
                (ErrorKind::Busy(reason), text)
            }
            HttpClass::Transient(reason) => (ErrorKind::Transient, reason),
            HttpClass::Permanent(reason) => (ErrorKind::Permanent, reason),
        };
        let mut e = CallError::new(kind, format!("{reason} (from {})", display_url(url)));
        e.http_status = Some(status);
        e.retry_after = retry_after;
        // A gateway that timed out or lost the agent may have passed the
        // request on; a restarting or busy agent did not take it.
        e.maybe_delivered = matches!(status, 408 | 502 | 504 | 521..=524);
        Err(e)
    }

    /// An http(s) URL the outbound policy does not refuse by its text (its
    /// name, if any, is checked when resolved).
    fn check_url(&self, url: &str) -> Result<(), CallError> {
        let parsed = parse_agent_url(url)?;
        self.outbound
            .check_url(&parsed)
            .map_err(|refused| CallError::new(ErrorKind::Permanent, refused.to_string()))
    }
}

fn parse_agent_url(url: &str) -> Result<url::Url, CallError> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u),
        Ok(u) => Err(CallError::new(
            ErrorKind::Permanent,
            format!("the agent URL is not http(s) (scheme {:?})", u.scheme()),
        )),
        Err(e) => Err(CallError::new(
            ErrorKind::Permanent,
            format!("the agent URL is not a valid URL: {e}"),
        )),
    }
}

/// `url` as failure reasons show it: scheme, host, port and path — no
/// credentials, no query string, no fragment (they may hold secrets, and
/// an agent card's URL is remote text).
pub fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "an invalid URL".to_string(),
    }
}

fn from_wire(e: WireError) -> CallError {
    let rpc_code = match &e {
        WireError::Rpc(rpc) => Some(rpc.code),
        WireError::Malformed(_) => None,
    };
    let mut call = CallError::new(ErrorKind::Permanent, e.to_string());
    call.http_status = Some(200);
    call.rpc_code = rpc_code;
    call
}

/// A request that got no (complete) HTTP answer.
fn transport_error(e: &reqwest::Error, url: &str, timeout: Duration) -> CallError {
    if let Some(refused) = refusal_in(e) {
        return CallError::new(ErrorKind::Permanent, refused.to_string());
    }
    let url = display_url(url);
    let detail = error_chain(e);
    if e.is_builder() {
        return CallError::new(
            ErrorKind::Permanent,
            format!("could not build a request to {url}: {detail}"),
        );
    }
    if e.is_redirect() {
        return CallError::new(
            ErrorKind::Permanent,
            format!("too many redirects from {url}: {detail}"),
        );
    }
    let reason = if e.is_connect() {
        format!("could not connect to {url}: {detail}")
    } else if e.is_timeout() {
        format!(
            "no answer from {url} within {:.1}s (timed out)",
            timeout.as_secs_f64()
        )
    } else {
        format!("the connection to {url} failed: {detail}")
    };
    let mut error = CallError::new(ErrorKind::Transient, reason);
    // Only a connection that never opened is sure not to have carried the
    // request.
    error.maybe_delivered = !e.is_connect();
    error
}

/// The error and its sources, outermost first ("connection refused" lives
/// several levels down in hyper's chain).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = inner.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn two_hundreds_are_success() {
        for status in [200, 201, 204] {
            assert_eq!(classify_http(status, b"{}"), HttpClass::Success, "{status}");
        }
        // A 202 that is not a proxy's queue answer is read as JSON-RPC.
        assert_eq!(
            classify_http(202, b"{\"jsonrpc\":\"2.0\"}"),
            HttpClass::Success
        );
        assert_eq!(
            classify_http(202, &body(json!({ "queued": false }))),
            HttpClass::Success
        );
    }

    #[test]
    fn a_202_queued_answer_from_a_proxy_is_busy_with_its_queue_id() {
        assert_eq!(
            classify_http(
                202,
                &body(json!({ "queued": true, "queue_id": "q-7", "queue_depth": 3 }))
            ),
            HttpClass::Busy(BusyReason::QueuedByProxy {
                queue_id: Some("q-7".into())
            })
        );
        assert_eq!(
            classify_http(202, &body(json!({ "queued": true }))),
            HttpClass::Busy(BusyReason::QueuedByProxy { queue_id: None })
        );
    }

    #[test]
    fn a_429_is_busy_not_transient() {
        assert_eq!(
            classify_http(429, b"slow down"),
            HttpClass::Busy(BusyReason::RateLimited)
        );
    }

    #[test]
    fn a_503_with_the_busy_marker_is_busy_not_transient() {
        assert_eq!(
            classify_http(503, &body(json!({ "error": "agent busy", "busy": true }))),
            HttpClass::Busy(BusyReason::AgentBusy)
        );
    }

    #[test]
    fn a_503_without_the_busy_marker_is_transient() {
        let restarting = classify_http(503, &body(json!({ "restarting": true })));
        assert_eq!(
            restarting,
            HttpClass::Transient("HTTP 503: the agent is restarting".into())
        );
        assert!(matches!(classify_http(503, b""), HttpClass::Transient(_)));
        assert!(matches!(
            classify_http(503, &body(json!({ "busy": false }))),
            HttpClass::Transient(_)
        ));
        assert!(matches!(
            classify_http(503, b"<html>maintenance</html>"),
            HttpClass::Transient(_)
        ));
    }

    #[test]
    fn gateway_failures_and_origin_down_statuses_are_transient() {
        for status in [408, 502, 504, 521, 522, 523, 524] {
            assert!(
                matches!(classify_http(status, b""), HttpClass::Transient(_)),
                "{status}"
            );
        }
        // The body is remote text: it never becomes part of the reason.
        assert_eq!(
            classify_http(502, b"upstream connect error"),
            HttpClass::Transient("HTTP 502 Bad Gateway".into())
        );
    }

    #[test]
    fn other_client_and_server_errors_are_permanent() {
        for status in [
            400, 401, 403, 404, 405, 409, 413, 422, 500, 501, 505, 520, 525,
        ] {
            assert!(
                matches!(classify_http(status, b""), HttpClass::Permanent(_)),
                "{status}"
            );
        }
        assert_eq!(
            classify_http(404, b"# HELP ledger_events_appended_total"),
            HttpClass::Permanent("HTTP 404".into())
        );
        assert!(matches!(classify_http(301, b""), HttpClass::Permanent(_)));
        assert!(matches!(classify_http(101, b""), HttpClass::Permanent(_)));
    }

    #[test]
    fn a_busy_marker_on_other_statuses_does_not_make_them_busy() {
        assert!(matches!(
            classify_http(500, &body(json!({ "busy": true }))),
            HttpClass::Permanent(_)
        ));
        assert_eq!(
            classify_http(200, &body(json!({ "busy": true }))),
            HttpClass::Success
        );
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("a date")
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("15", now), Some(Duration::from_secs(15)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn json_rpc_errors_are_permanent_and_keep_their_code() {
        let e = from_wire(WireError::Rpc(wire::RpcError {
            code: -32001,
            message: "Task not found".into(),
            data: None,
        }));
        assert!(e.is_permanent());
        assert_eq!(e.rpc_code, Some(-32001));
        assert!(
            e.reason.contains("-32001 (task not found): Task not found"),
            "{e}"
        );
        let e = from_wire(WireError::Malformed("x".into()));
        assert!(e.is_permanent());
        assert_eq!(e.rpc_code, None);
    }

    #[test]
    fn only_http_urls_where_the_policy_permits_are_called() {
        let client = |policy: &str| {
            A2aClient::new(A2aClientConfig::default(), policy.parse().expect("policy"))
                .expect("client")
        };
        let strict = client("");
        let local = client("127.0.0.0/8");
        assert!(local.check_url("http://127.0.0.1:1/").is_ok());
        assert!(strict.check_url("https://agent.example/a2a").is_ok());
        let refused = strict
            .check_url("http://127.0.0.1:1/")
            .expect_err("loopback");
        assert!(refused.is_permanent() && refused.reason.contains("outbound policy"));
        let with_credentials = local
            .check_url("http://user:secret@127.0.0.1:1/")
            .expect_err("credentials");
        assert!(!with_credentials.reason.contains("secret"));
        for bad in ["ftp://x/", "file:///etc/passwd", "not a url", ""] {
            let e = strict.check_url(bad).expect_err(bad);
            assert!(e.is_permanent(), "{bad}");
        }
    }

    #[test]
    fn urls_in_reasons_lose_credentials_query_and_fragment() {
        assert_eq!(
            display_url("https://u:p@agent.example:8443/a2a?token=s3cret#x"),
            "https://agent.example:8443/a2a"
        );
        assert_eq!(display_url("not a url"), "an invalid URL");
    }

    #[test]
    fn error_kinds_answer_their_predicates() {
        let busy = CallError::new(ErrorKind::Busy(BusyReason::RateLimited), "x");
        assert!(busy.is_busy() && !busy.is_transient() && !busy.is_permanent());
        let transient = CallError::new(ErrorKind::Transient, "x");
        assert!(transient.is_transient() && !transient.is_busy());
        assert_eq!(transient.to_string(), "x");
    }
}
