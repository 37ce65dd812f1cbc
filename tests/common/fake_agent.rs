//! A fake A2A agent for tests: an axum server on 127.0.0.1:0 whose answers
//! the test controls, and which records every request it received.
//!
//! Why a fake next to the real SDK agent: it can misbehave on demand (busy,
//! rate-limited, queued, gateway errors, JSON-RPC errors, hangs, dropped
//! connections) and answers instantly, so every branch of the client and,
//! later, the dispatcher is exercised quickly and deterministically.
//!
//! It speaks both protocol versions on one endpoint, like the SDK with
//! `enable_v0_3_compat`: v0.3 methods (`message/send`, `tasks/get`) get v0.3
//! shapes; v1.0 methods (`SendMessage`, `GetTask`) get v1.0 shapes and, as
//! in the SDK, fail with -32009 unless the request carries
//! `A2A-Version: 1.0`. JSON-RPC is served on every POST path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the fake answers sends.
#[derive(Debug, Clone)]
pub enum Reply {
    /// An agent message with this text (the work is done at once).
    Message(String),
    /// A task in state `working`; it completes with an artifact holding
    /// `text` on the `polls`-th read (`tasks/get` / `GetTask`).
    Task { polls: usize, text: String },
    /// A raw HTTP answer (busy 503, 429, 202 queued, 502, malformed …).
    Http {
        status: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// A JSON-RPC error object.
    RpcError { code: i64, message: String },
    /// No answer for a minute (longer than any client timeout in the tests).
    Hang,
    /// `303 See Other` to this location.
    Redirect(String),
    /// A task whose readings walk through these `(state, status text)`
    /// pairs — v0.3 state names (`working`, `input-required`, `rejected`,
    /// `canceled`, `completed` …; v1.0 requests get `TASK_STATE_…`) — the
    /// first in the send's answer, then one per `tasks/get`; the last one
    /// stays.
    Scripted(Vec<(&'static str, String)>),
    /// `reply`, answered only after `delay` (the request was received and
    /// acted on at once).
    Delayed(Duration, Box<Reply>),
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    /// The JSON-RPC method ("" when the body was not JSON-RPC).
    pub method: String,
    /// The `A2A-Version` header, if sent.
    pub a2a_version: Option<String>,
    pub body: Value,
}

impl Recorded {
    /// `params.message.messageId` of a send.
    pub fn message_id(&self) -> Option<&str> {
        self.body["params"]["message"]["messageId"].as_str()
    }
}

#[derive(Debug)]
struct RemoteTask {
    reads: usize,
    polls: usize,
    text: String,
    /// The send's `contextId` (the delegation id).
    context_id: String,
    /// Scripted states, if any (see [`Reply::Scripted`]).
    script: Vec<(&'static str, String)>,
    /// Set by `tasks/cancel` / `CancelTask`.
    canceled: bool,
}

#[derive(Debug)]
struct Inner {
    reply: Reply,
    /// Answers used, one per send, before `reply`.
    scripted: std::collections::VecDeque<Reply>,
    /// While set, remote tasks stay `working` whatever their `polls`.
    hold: bool,
    /// Once this many tasks exist, further sends hang without creating one
    /// (a request the agent never accepted).
    task_limit: Option<usize>,
    /// While set, each send waits for one permit before it is answered.
    gate: Option<Arc<tokio::sync::Semaphore>>,
    card: Option<Value>,
    requests: Vec<Recorded>,
    tasks: HashMap<String, RemoteTask>,
    /// messageId → tasks created for it.
    tasks_by_message: HashMap<String, usize>,
    /// Task ids asked to cancel, in order.
    cancels: Vec<String>,
    next_task: usize,
}

/// A running fake agent; stopped when dropped.
pub struct FakeAgent {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    server: JoinHandle<()>,
    /// Bumped on every request received.
    received: tokio::sync::watch::Receiver<usize>,
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeAgent {
    /// Starts a fake that answers every send with the message "ok" and
    /// serves no agent card (404).
    pub async fn start() -> FakeAgent {
        Self::start_on("127.0.0.1").await
    }

    /// [`start`](Self::start) on another loopback address (e.g. 127.0.0.2,
    /// to tell two hosts apart under an outbound policy).
    pub async fn start_on(ip: &str) -> FakeAgent {
        let (counter, received) = tokio::sync::watch::channel(0usize);
        let inner = Arc::new(Mutex::new(Inner {
            reply: Reply::Message("ok".to_string()),
            scripted: Default::default(),
            hold: false,
            task_limit: None,
            gate: None,
            card: None,
            requests: Vec::new(),
            tasks: HashMap::new(),
            tasks_by_message: HashMap::new(),
            cancels: Vec::new(),
            next_task: 0,
        }));
        let app = Router::new()
            .route("/.well-known/agent-card.json", get(card))
            .fallback(rpc)
            .with_state((inner.clone(), Arc::new(counter)));
        let listener = TcpListener::bind((ip, 0))
            .await
            .expect("fake agent should bind");
        let addr = listener.local_addr().expect("fake agent address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAgent {
            base: format!("http://{addr}"),
            inner,
            server,
            received,
        }
    }

    /// The JSON-RPC URL at the root.
    pub fn url(&self) -> String {
        format!("{}/", self.base)
    }

    pub fn set_reply(&self, reply: Reply) {
        self.lock().reply = reply;
    }

    /// Answer the next sends with `replies`, in order, then with the reply.
    pub fn script(&self, replies: Vec<Reply>) {
        self.lock().scripted.extend(replies);
    }

    /// Keep every remote task `working` (true) or let them finish (false).
    pub fn hold_tasks(&self, hold: bool) {
        self.lock().hold = hold;
    }

    /// Hang (creating no task) on sends once `limit` tasks exist.
    pub fn limit_tasks(&self, limit: Option<usize>) {
        self.lock().task_limit = limit;
    }

    /// Hold every send until [`release_sends`](Self::release_sends) lets it
    /// through (the agent received the request but has not answered yet).
    pub fn gate_sends(&self) {
        self.lock().gate = Some(Arc::new(tokio::sync::Semaphore::new(0)));
    }

    /// Let `n` held sends be answered.
    pub fn release_sends(&self, n: usize) {
        if let Some(gate) = &self.lock().gate {
            gate.add_permits(n);
        }
    }

    /// Tasks created per `messageId`.
    pub fn tasks_by_message(&self) -> HashMap<String, usize> {
        self.lock().tasks_by_message.clone()
    }

    /// Task ids the agent was asked to cancel, in order.
    pub fn cancels(&self) -> Vec<String> {
        self.lock().cancels.clone()
    }

    /// Sends received per `messageId` (a resend counts twice).
    pub fn sends_by_message(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for send in self.sends() {
            if let Some(id) = send.message_id() {
                *counts.entry(id.to_string()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Wait until `done(requests so far)` holds, woken by each request;
    /// panics after a minute.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[Recorded]) -> bool) {
        let mut received = self.received.clone();
        let wait = async {
            loop {
                received.borrow_and_update();
                if done(&self.requests()) {
                    return;
                }
                if received.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("the fake agent never saw: {what}"));
    }

    /// Serves `card` at `/.well-known/agent-card.json` (None → 404).
    pub fn set_card(&self, card: Option<Value>) {
        self.lock().card = card;
    }

    /// Every JSON-RPC request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The sends (`message/send`, `SendMessage`) received, in order.
    pub fn sends(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "message/send" || r.method == "SendMessage")
            .collect()
    }

    /// How many distinct tasks this agent created.
    pub fn tasks_created(&self) -> usize {
        self.lock().next_task
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type Shared = Arc<Mutex<Inner>>;
type Counter = Arc<tokio::sync::watch::Sender<usize>>;

fn lock(inner: &Shared) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

async fn card(State((inner, _)): State<(Shared, Counter)>) -> Response {
    match lock(&inner).card.clone() {
        Some(card) => Json(card).into_response(),
        None => (StatusCode::NOT_FOUND, "no agent card here").into_response(),
    }
}

async fn rpc(
    State((inner, counter)): State<(Shared, Counter)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "POST only").into_response();
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let rpc_method = body["method"].as_str().unwrap_or_default().to_string();
    let id = body.get("id").cloned().unwrap_or(Value::Null);
    let a2a_version = headers
        .get("a2a-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let v1 = matches!(
        rpc_method.as_str(),
        "SendMessage" | "GetTask" | "ListTasks" | "CancelTask"
    );

    let is_send = matches!(rpc_method.as_str(), "message/send" | "SendMessage");
    let message_id = body["params"]["message"]["messageId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let context_id = body["params"]["message"]["contextId"]
        .as_str()
        .unwrap_or("ctx")
        .to_string();
    let gate = if is_send {
        lock(&inner).gate.clone()
    } else {
        None
    };
    let reply = {
        let mut state = lock(&inner);
        state.requests.push(Recorded {
            path: uri.path().to_string(),
            method: rpc_method.clone(),
            a2a_version: a2a_version.clone(),
            body: body.clone(),
        });
        let scripted = if is_send {
            state.scripted.pop_front()
        } else {
            None
        };
        let reply = scripted.unwrap_or_else(|| state.reply.clone());
        match (&reply, state.task_limit) {
            (Reply::Task { .. } | Reply::Scripted(_), Some(limit)) if state.next_task >= limit => {
                Reply::Hang
            }
            _ => reply,
        }
    };
    counter.send_modify(|n| *n += 1);

    if v1 && a2a_version.as_deref() != Some("1.0") {
        return rpc_error(
            id,
            -32009,
            "A2A version '0.3' is not supported by this handler.",
        );
    }

    match rpc_method.as_str() {
        "message/send" | "SendMessage" => {
            if let Some(gate) = gate {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
            }
            send_reply(&inner, reply, id, v1, &message_id, &context_id).await
        }
        "tasks/get" | "GetTask" => {
            let task_id = body["params"]["id"].as_str().unwrap_or_default();
            let mut state = lock(&inner);
            let hold = state.hold;
            match state.tasks.get_mut(task_id) {
                None => rpc_error(id, -32001, "Task not found"),
                Some(task) => {
                    task.reads += 1;
                    let done = task.reads >= task.polls && !hold;
                    rpc_result(id, task_state_json(task_id, task, done, v1))
                }
            }
        }
        "ListTasks" => {
            let wanted = body["params"]["contextId"].as_str().unwrap_or_default();
            let state = lock(&inner);
            let hold = state.hold;
            let mut tasks: Vec<(&String, &RemoteTask)> = state
                .tasks
                .iter()
                .filter(|(_, task)| task.context_id == wanted)
                .collect();
            tasks.sort_by_key(|(task_id, _)| task_id.to_string());
            let tasks: Vec<Value> = tasks
                .into_iter()
                .map(|(task_id, task)| {
                    let done = task.reads >= task.polls && !hold;
                    task_state_json(task_id, task, done, true)
                })
                .collect();
            rpc_result(id, json!({ "tasks": tasks, "nextPageToken": "" }))
        }
        "tasks/cancel" | "CancelTask" => {
            let task_id = body["params"]["id"].as_str().unwrap_or_default();
            let mut state = lock(&inner);
            state.cancels.push(task_id.to_string());
            match state.tasks.get_mut(task_id) {
                None => rpc_error(id, -32001, "Task not found"),
                Some(task) => {
                    task.canceled = true;
                    rpc_result(id, task_state_json(task_id, task, false, v1))
                }
            }
        }
        _ => rpc_error(id, -32601, "Method not found"),
    }
}

/// A task's current reading as JSON.
fn task_state_json(task_id: &str, task: &RemoteTask, done: bool, v1: bool) -> Value {
    if task.canceled {
        return scripted_task_json(
            task_id,
            &task.context_id,
            "canceled",
            "canceled on request",
            v1,
        );
    }
    if !task.script.is_empty() {
        let step = task.reads.min(task.script.len() - 1);
        let (state, text) = &task.script[step];
        return scripted_task_json(task_id, &task.context_id, state, text, v1);
    }
    let mut json = task_json(task_id, done, &task.text, v1);
    json["contextId"] = json!(task.context_id);
    json
}

/// A task in `state` (a v0.3 name) whose status message says `text`.
fn scripted_task_json(task_id: &str, context_id: &str, state: &str, text: &str, v1: bool) -> Value {
    let state = if v1 {
        format!("TASK_STATE_{}", state.replace('-', "_").to_uppercase())
    } else {
        state.to_string()
    };
    let part = if v1 {
        json!({ "text": text })
    } else {
        json!({ "kind": "text", "text": text })
    };
    let mut task = json!({
        "id": task_id,
        "contextId": context_id,
        "status": {
            "state": state,
            "message": {
                "messageId": format!("{task_id}-status"),
                "role": if v1 { "ROLE_AGENT" } else { "agent" },
                "parts": [part.clone()]
            }
        },
    });
    if state.ends_with("completed") || state.ends_with("COMPLETED") {
        task["artifacts"] = json!([{ "artifactId": "answer", "parts": [part] }]);
    }
    if !v1 {
        task["kind"] = json!("task");
        task["status"]["message"]["kind"] = json!("message");
    }
    task
}

fn send_reply<'a>(
    inner: &'a Shared,
    reply: Reply,
    id: Value,
    v1: bool,
    message_id: &'a str,
    context_id: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send + 'a>> {
    Box::pin(send_reply_now(inner, reply, id, v1, message_id, context_id))
}

async fn send_reply_now(
    inner: &Shared,
    reply: Reply,
    id: Value,
    v1: bool,
    message_id: &str,
    context_id: &str,
) -> Response {
    let new_task = |polls: usize, text: &str, script: Vec<(&'static str, String)>| {
        let mut state = lock(inner);
        state.next_task += 1;
        *state
            .tasks_by_message
            .entry(message_id.to_string())
            .or_default() += 1;
        let task_id = format!("task-{}", state.next_task);
        state.tasks.insert(
            task_id.clone(),
            RemoteTask {
                reads: 0,
                polls,
                text: text.to_string(),
                context_id: context_id.to_string(),
                script,
                canceled: false,
            },
        );
        task_id
    };
    match reply {
        Reply::Delayed(delay, reply) => {
            // Received and acted on now (a task exists at once); answered
            // later.
            let answer = send_reply(inner, *reply, id, v1, message_id, context_id).await;
            tokio::time::sleep(delay).await;
            answer
        }
        Reply::Scripted(script) => {
            let task_id = new_task(usize::MAX, "", script);
            let task = {
                let state = lock(inner);
                state
                    .tasks
                    .get(&task_id)
                    .map(|task| task_state_json(&task_id, task, false, v1))
                    .unwrap_or(Value::Null)
            };
            rpc_result(id, if v1 { json!({ "task": task }) } else { task })
        }
        Reply::Message(text) => {
            let message = if v1 {
                json!({ "message": {
                    "messageId": "agent-msg", "contextId": "ctx", "role": "ROLE_AGENT",
                    "parts": [{ "text": text }]
                }})
            } else {
                json!({
                    "kind": "message", "messageId": "agent-msg", "contextId": "ctx",
                    "role": "agent", "parts": [{ "kind": "text", "text": text }]
                })
            };
            rpc_result(id, message)
        }
        Reply::Task { polls, text } => {
            let task_id = new_task(polls, &text, Vec::new());
            let mut task = task_json(&task_id, false, &text, v1);
            task["contextId"] = json!(context_id);
            rpc_result(id, if v1 { json!({ "task": task }) } else { task })
        }
        Reply::Http {
            status,
            body,
            retry_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, body).into_response();
            if let Some(value) = retry_after.and_then(|v| v.parse().ok()) {
                response.headers_mut().insert("retry-after", value);
            }
            response
        }
        Reply::RpcError { code, message } => rpc_error(id, code, &message),
        Reply::Redirect(location) => (
            StatusCode::SEE_OTHER,
            [(axum::http::header::LOCATION, location)],
        )
            .into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            rpc_error(id, -32603, "too late")
        }
    }
}

fn task_json(task_id: &str, done: bool, text: &str, v1: bool) -> Value {
    let state = match (done, v1) {
        (true, true) => "TASK_STATE_COMPLETED",
        (false, true) => "TASK_STATE_WORKING",
        (true, false) => "completed",
        (false, false) => "working",
    };
    let part = |t: &str| {
        if v1 {
            json!({ "text": t })
        } else {
            json!({ "kind": "text", "text": t })
        }
    };
    let mut task = json!({
        "id": task_id,
        "contextId": "ctx",
        "status": {
            "state": state,
            "message": {
                "messageId": format!("{task_id}-status"),
                "role": if v1 { "ROLE_AGENT" } else { "agent" },
                "parts": [part(if done { "done" } else { "still working" })]
            }
        },
    });
    if done {
        task["artifacts"] = json!([{ "artifactId": "answer", "parts": [part(text)] }]);
    }
    if !v1 {
        task["kind"] = json!("task");
        task["status"]["message"]["kind"] = json!("message");
    }
    task
}

fn rpc_result(id: Value, result: Value) -> Response {
    Json(json!({ "jsonrpc": "2.0", "id": id, "result": result })).into_response()
}

fn rpc_error(id: Value, code: i64, message: &str) -> Response {
    Json(json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } }))
        .into_response()
}

/// A server that accepts connections, reads the start of the request and
/// closes the socket without answering (an agent crashing mid-request).
/// Returns its base URL; the server stops when the handle is dropped/aborted.
pub async fn spawn_connection_closer() -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("closer should bind");
    let addr = listener.local_addr().expect("closer address");
    let handle = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            drop(socket);
        }
    });
    (format!("http://{addr}"), handle)
}

/// A base URL where nothing listens (a port that was just free).
pub async fn unused_base_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("probe should bind");
    let addr = listener.local_addr().expect("probe address");
    drop(listener);
    format!("http://{addr}")
}
