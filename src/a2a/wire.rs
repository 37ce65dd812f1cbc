//! A2A JSON-RPC bodies for v0.3 and v1.0: the requests the ledger sends and
//! the typed reading of what agents answer.
//!
//! Requests are built per version because the two versions disagree on
//! method names, enum spellings and part shapes:
//!
//! | | v0.3 | v1.0 |
//! |---|---|---|
//! | send | `message/send` | `SendMessage` |
//! | read a task | `tasks/get` `{id}` | `GetTask` `{id}` |
//! | message | `{kind: "message", role: "user", messageId, parts}` | `{role: "ROLE_USER", messageId, parts}` |
//! | text part | `{kind: "text", text}` | `{text}` (a `oneof`, no tag) |
//! | don't wait | `configuration.blocking: false` | `configuration.returnImmediately: true` |
//! | send result | the Message or Task itself, tagged by `kind` | `{"message": …}` or `{"task": …}` |
//! | task state | `working`, `input-required`, … | `TASK_STATE_WORKING`, … |
//!
//! Responses are read leniently and version-agnostically: the two shapes
//! never collide (v1.0 wraps, v0.3 tags with `kind`), so an agent whose
//! card claims one version but answers in the other still works, and
//! nothing about a reply depends on the caller remembering which version it
//! asked in. What cannot be read becomes [`WireError::Malformed`] with a
//! reason — never a panic.
//!
//! Result text: a message's text parts; a task's artifacts' text parts, or
//! else its status message's text parts (that is where agents put a
//! failure reason or a question). Several parts are joined with a newline,
//! as the A2A SDK's own text helpers do; non-text parts are skipped.

use std::fmt;

use serde_json::{json, Value};
use uuid::Uuid;

use super::ProtocolVersion;

/// Separator between several text parts of one reply.
pub const PART_SEPARATOR: &str = "\n";

/// The JSON-RPC request that hands a delegation's task to the target.
///
/// `message_id` should come from [`super::message_id_for`], so every attempt
/// of one delegation sends the same message. The JSON-RPC `id` is the message
/// id too (any value is valid; a stable one makes the agent's logs
/// correlate). The delegation id travels in the message metadata so an
/// agent can correlate without knowing the ledger's id scheme, and is the
/// message's `contextId`, so the task it starts can be found again by
/// context (v1.0 `ListTasks`) when it is unknown whether a send arrived.
pub fn send_request(
    version: ProtocolVersion,
    message_id: &str,
    delegation_id: Uuid,
    task: &str,
) -> Value {
    let metadata = json!({ "delegationId": delegation_id.to_string() });
    let context_id = delegation_id.to_string();
    let (message, configuration) = match version {
        ProtocolVersion::V0_3 => (
            json!({
                "kind": "message",
                "messageId": message_id,
                "contextId": context_id,
                "role": "user",
                "parts": [{ "kind": "text", "text": task }],
                "metadata": metadata,
            }),
            json!({ "blocking": false }),
        ),
        ProtocolVersion::V1_0 => (
            json!({
                "messageId": message_id,
                "contextId": context_id,
                "role": "ROLE_USER",
                "parts": [{ "text": task }],
                "metadata": metadata,
            }),
            json!({ "returnImmediately": true }),
        ),
    };
    json!({
        "jsonrpc": "2.0",
        "id": message_id,
        "method": version.send_method(),
        "params": { "message": message, "configuration": configuration },
    })
}

/// The JSON-RPC request that reads the current state of a remote task.
pub fn get_task_request(version: ProtocolVersion, task_id: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": format!("get-{task_id}"),
        "method": version.get_task_method(),
        "params": { "id": task_id },
    })
}

/// The JSON-RPC request that asks the agent to cancel a task.
pub fn cancel_task_request(version: ProtocolVersion, task_id: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": format!("cancel-{task_id}"),
        "method": version.cancel_task_method(),
        "params": { "id": task_id },
    })
}

/// The v1.0 `ListTasks` request for the tasks of one context.
pub fn list_tasks_request(context_id: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": format!("list-{context_id}"),
        "method": "ListTasks",
        "params": { "contextId": context_id, "pageSize": 10 },
    })
}

/// What a send produced.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// The agent answered at once with a message: the work is done.
    Message(AgentMessage),
    /// The agent created a task; follow it with `get_task` until it is
    /// terminal (it may already be).
    Task(TaskSnapshot),
}

/// A message from the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentMessage {
    pub message_id: Option<String>,
    pub context_id: Option<String>,
    pub task_id: Option<String>,
    /// The message's text parts, joined; empty when it had none.
    pub text: String,
}

/// One reading of a remote task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSnapshot {
    /// The agent's task id: what `get_task` follows.
    pub id: String,
    pub context_id: Option<String>,
    pub state: TaskState,
    /// The state as the agent spelled it (for reasons and logs; it is the
    /// only record of a state this client does not know).
    pub raw_state: String,
    /// Text parts of all artifacts, joined; `None` when there were none.
    pub artifact_text: Option<String>,
    /// Text parts of the status message, joined; `None` when there were none.
    pub status_text: Option<String>,
}

impl TaskSnapshot {
    /// The task's answer: artifacts' text, else the status message's text.
    pub fn result_text(&self) -> Option<&str> {
        self.artifact_text
            .as_deref()
            .or(self.status_text.as_deref())
    }
}

/// A remote task's state, one enum for both protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Submitted,
    Working,
    InputRequired,
    AuthRequired,
    Completed,
    Failed,
    Canceled,
    Rejected,
    /// v0.3 `unknown`, v1.0 `TASK_STATE_UNSPECIFIED`, or a spelling this
    /// client does not know (see [`TaskSnapshot::raw_state`]).
    Unknown,
}

impl TaskState {
    /// Reads a state in either version's spelling: v0.3 lower-case names
    /// (`input-required`), v1.0 enum names (`TASK_STATE_INPUT_REQUIRED`) or
    /// v1.0 enum numbers (ProtoJSON allows them). `None` only when the value
    /// is not a string or number at all.
    pub fn from_json(value: &Value) -> Option<TaskState> {
        if let Some(n) = value.as_i64() {
            return Some(match n {
                1 => TaskState::Submitted,
                2 => TaskState::Working,
                3 => TaskState::Completed,
                4 => TaskState::Failed,
                5 => TaskState::Canceled,
                6 => TaskState::InputRequired,
                7 => TaskState::Rejected,
                8 => TaskState::AuthRequired,
                _ => TaskState::Unknown,
            });
        }
        let raw = value.as_str()?;
        let name = raw.trim();
        let name = name
            .strip_prefix("TASK_STATE_")
            .or_else(|| name.strip_prefix("task_state_"))
            .unwrap_or(name);
        let name = name.to_ascii_lowercase().replace('_', "-");
        Some(match name.as_str() {
            "submitted" => TaskState::Submitted,
            "working" => TaskState::Working,
            "input-required" => TaskState::InputRequired,
            "auth-required" => TaskState::AuthRequired,
            "completed" => TaskState::Completed,
            "failed" => TaskState::Failed,
            "canceled" | "cancelled" => TaskState::Canceled,
            "rejected" => TaskState::Rejected,
            _ => TaskState::Unknown,
        })
    }

    /// Completed, failed, canceled or rejected: the task will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected
        )
    }

    /// The agent waits for the caller (input or authentication); it will
    /// not progress by polling alone.
    pub fn is_interrupted(self) -> bool {
        matches!(self, TaskState::InputRequired | TaskState::AuthRequired)
    }

    /// The v0.3 spelling, used in reasons and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Submitted => "submitted",
            TaskState::Working => "working",
            TaskState::InputRequired => "input-required",
            TaskState::AuthRequired => "auth-required",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
            TaskState::Rejected => "rejected",
            TaskState::Unknown => "unknown",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JSON-RPC error object from the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    /// What a code means, for the codes JSON-RPC 2.0 and A2A define.
    pub fn meaning(&self) -> Option<&'static str> {
        Some(match self.code {
            -32700 => "parse error",
            -32600 => "invalid request",
            -32601 => "method not found",
            -32602 => "invalid params",
            -32603 => "internal error",
            -32001 => "task not found",
            -32002 => "task not cancelable",
            -32003 => "push notifications not supported",
            -32004 => "unsupported operation",
            -32005 => "content type not supported",
            -32006 => "invalid agent response",
            -32007 => "extended agent card not configured",
            -32008 => "extension support required",
            -32009 => "version not supported",
            _ => return None,
        })
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JSON-RPC error {}", self.code)?;
        if let Some(meaning) = self.meaning() {
            write!(f, " ({meaning})")?;
        }
        if self.message.is_empty() {
            Ok(())
        } else {
            write!(f, ": {}", self.message)
        }
    }
}

/// Why a response body could not be turned into an outcome.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// The agent answered with a JSON-RPC error.
    #[error("the agent answered with {0}")]
    Rpc(RpcError),
    /// The body is not a JSON-RPC response of the expected shape.
    #[error("malformed A2A response: {0}")]
    Malformed(String),
}

/// Reads the answer to a send (`message/send` or `SendMessage`).
pub fn parse_send_response(body: &[u8]) -> Result<SendOutcome, WireError> {
    let result = parse_envelope(body)?;
    parse_send_result(&result)
}

/// Reads the answer to `tasks/get` or `GetTask`.
pub fn parse_get_task_response(body: &[u8]) -> Result<TaskSnapshot, WireError> {
    let result = parse_envelope(body)?;
    let task = match result.get("task") {
        // Tolerate a v1.0-style wrapper even though GetTask returns a bare Task.
        Some(inner @ Value::Object(_)) => inner,
        _ => &result,
    };
    match task.get("kind").and_then(Value::as_str) {
        None | Some("task") => parse_task(task),
        Some(other) => Err(malformed(format!(
            "expected a task, got a result of kind {other:?}"
        ))),
    }
}

/// Reads the answer to `ListTasks`: `{tasks: [Task…], …}`.
pub fn parse_list_tasks_response(body: &[u8]) -> Result<Vec<TaskSnapshot>, WireError> {
    let result = parse_envelope(body)?;
    match result.get("tasks") {
        Some(Value::Array(tasks)) => tasks.iter().map(parse_task).collect(),
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(other) => Err(malformed(format!(
            "the task list is {}, not a list",
            type_name(other)
        ))),
    }
}

/// Reads the answer to `tasks/cancel` / `CancelTask`: the task, whose
/// state is not trusted to say anything yet (cancellation may be pending).
pub fn parse_cancel_task_response(body: &[u8]) -> Result<(), WireError> {
    parse_envelope(body).map(|_| ())
}

/// The JSON-RPC envelope: the `result` value, or the `error` as an error.
fn parse_envelope(body: &[u8]) -> Result<Value, WireError> {
    // The body itself is never quoted: it is remote data, and what a
    // non-JSON answer holds (a redirect target's page, say) must not reach
    // a caller through a failure reason.
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| malformed(format!("the body is not JSON ({e})")))?;
    let Value::Object(mut envelope) = value else {
        return Err(malformed(format!(
            "expected a JSON-RPC response object, got {}",
            type_name(&value)
        )));
    };
    match envelope.remove("error") {
        None | Some(Value::Null) => {}
        Some(error) => return Err(WireError::Rpc(parse_rpc_error(&error)?)),
    }
    match envelope.remove("result") {
        Some(Value::Null) | None => Err(malformed(
            "the JSON-RPC response has neither a result nor an error".to_string(),
        )),
        Some(result) => Ok(result),
    }
}

fn parse_rpc_error(error: &Value) -> Result<RpcError, WireError> {
    let Value::Object(error) = error else {
        return Err(malformed(format!(
            "the JSON-RPC error is {}, not an object",
            type_name(error)
        )));
    };
    let Some(code) = error.get("code").and_then(Value::as_i64) else {
        return Err(malformed(
            "the JSON-RPC error has no integer code".to_string(),
        ));
    };
    let message = agent_text(
        error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        MAX_RPC_MESSAGE_CHARS,
    );
    let data = error.get("data").filter(|d| !d.is_null()).cloned();
    Ok(RpcError {
        code,
        message,
        data,
    })
}

fn parse_send_result(result: &Value) -> Result<SendOutcome, WireError> {
    let Value::Object(fields) = result else {
        return Err(malformed(format!(
            "the send result is {}, not an object",
            type_name(result)
        )));
    };
    // v1.0: SendMessageResponse is a oneof, {"task": …} or {"message": …}.
    if let Some(task) = fields.get("task").filter(|v| v.is_object()) {
        return parse_task(task).map(SendOutcome::Task);
    }
    if let Some(message) = fields.get("message").filter(|v| v.is_object()) {
        return parse_message(message).map(SendOutcome::Message);
    }
    // v0.3: the Message or Task itself, tagged by `kind`.
    match fields.get("kind").and_then(Value::as_str) {
        Some("task") => parse_task(result).map(SendOutcome::Task),
        Some("message") => parse_message(result).map(SendOutcome::Message),
        Some(other) => Err(malformed(format!(
            "expected a message or a task, got a result of kind {other:?}"
        ))),
        // Untagged: a task has a status, a message has parts.
        None if fields.contains_key("status") => parse_task(result).map(SendOutcome::Task),
        None if fields.contains_key("parts") => parse_message(result).map(SendOutcome::Message),
        None => Err(malformed(
            "the send result is neither a message nor a task".to_string(),
        )),
    }
}

fn parse_message(message: &Value) -> Result<AgentMessage, WireError> {
    let Some(parts) = message.get("parts") else {
        return Err(malformed("the agent's message has no parts".to_string()));
    };
    if !parts.is_array() {
        return Err(malformed(format!(
            "the agent's message parts are {}, not a list",
            type_name(parts)
        )));
    }
    Ok(AgentMessage {
        message_id: string_field(message, "messageId"),
        context_id: string_field(message, "contextId"),
        task_id: string_field(message, "taskId"),
        text: join_texts(text_parts(parts)).unwrap_or_default(),
    })
}

fn parse_task(task: &Value) -> Result<TaskSnapshot, WireError> {
    let Value::Object(fields) = task else {
        return Err(malformed(format!(
            "the task is {}, not an object",
            type_name(task)
        )));
    };
    let id = match fields.get("id").and_then(Value::as_str) {
        Some(id) if id.chars().count() > MAX_TASK_ID_CHARS => {
            return Err(malformed(format!(
                "the task id is longer than {MAX_TASK_ID_CHARS} characters"
            )))
        }
        Some(id) if !id.trim().is_empty() => agent_text(id, MAX_TASK_ID_CHARS),
        _ => return Err(malformed("the task has no id".to_string())),
    };
    let Some(status) = fields.get("status").filter(|s| s.is_object()) else {
        return Err(malformed(format!("task {id} has no status")));
    };
    let Some(raw) = status.get("state").filter(|s| !s.is_null()) else {
        return Err(malformed(format!("task {id} has no status.state")));
    };
    let Some(state) = TaskState::from_json(raw) else {
        return Err(malformed(format!(
            "task {id} has a status.state that is {}, not a name",
            type_name(raw)
        )));
    };
    let raw_state = match raw {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let artifact_texts: Vec<&str> = match fields.get("artifacts") {
        Some(Value::Array(artifacts)) => artifacts
            .iter()
            .filter_map(|artifact| artifact.get("parts"))
            .flat_map(text_parts)
            .collect(),
        _ => Vec::new(),
    };
    let status_text = status
        .get("message")
        .and_then(|m| m.get("parts"))
        .and_then(|parts| join_texts(text_parts(parts)));
    Ok(TaskSnapshot {
        id,
        context_id: string_field(task, "contextId"),
        state,
        raw_state,
        artifact_text: join_texts(artifact_texts),
        status_text,
    })
}

/// The text of every text part in a parts list, in order. A text part is
/// an object with a string `text` whose tag, if any, says text: v0.3
/// `kind: "text"`, v0.2 `type: "text"`, or none (v1.0's oneof).
pub fn text_parts(parts: &Value) -> Vec<&str> {
    let Value::Array(parts) = parts else {
        return Vec::new();
    };
    parts
        .iter()
        .filter(|part| {
            let tag_ok = |key: &str| match part.get(key) {
                None | Some(Value::Null) => true,
                Some(tag) => tag.as_str() == Some("text"),
            };
            tag_ok("kind") && tag_ok("type")
        })
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect()
}

fn join_texts(texts: Vec<&str>) -> Option<String> {
    if texts.is_empty() {
        None
    } else {
        Some(texts.join(PART_SEPARATOR))
    }
}

fn string_field(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn malformed(reason: String) -> WireError {
    WireError::Malformed(reason)
}

pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The longest JSON-RPC error message kept from an agent, in characters.
pub const MAX_RPC_MESSAGE_CHARS: usize = 300;
/// The longest remote task id accepted, in characters (it is stored with
/// the delegation and quoted in reasons).
pub const MAX_TASK_ID_CHARS: usize = 200;

/// Text an agent wrote, fit to be quoted in a failure reason: control
/// characters (NUL, escape sequences, newlines) become spaces and it is cut
/// to `max_chars` characters.
pub fn agent_text(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max_chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

/// The first characters of a body (tests and diagnostics only; never in a
/// failure reason: it is remote data of any size).
#[cfg(test)]
pub(crate) fn preview(body: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(MAX_CHARS).collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    fn ok(result: Value) -> Vec<u8> {
        body(json!({ "jsonrpc": "2.0", "id": "1", "result": result }))
    }

    fn task_outcome(outcome: SendOutcome) -> TaskSnapshot {
        match outcome {
            SendOutcome::Task(task) => task,
            other => panic!("expected a task, got {other:?}"),
        }
    }

    fn message_outcome(outcome: SendOutcome) -> AgentMessage {
        match outcome {
            SendOutcome::Message(message) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    // ---- requests ----

    #[test]
    fn a_v0_3_send_is_a_non_blocking_message_send_with_a_kind_tagged_text_part() {
        let delegation = Uuid::new_v4();
        let request = send_request(ProtocolVersion::V0_3, "mid-1", delegation, "do the thing");
        assert_eq!(request["jsonrpc"], "2.0");
        assert_eq!(request["method"], "message/send");
        assert_eq!(request["id"], "mid-1");
        let message = &request["params"]["message"];
        assert_eq!(message["kind"], "message");
        assert_eq!(message["messageId"], "mid-1");
        assert_eq!(message["role"], "user");
        assert_eq!(
            message["parts"],
            json!([{ "kind": "text", "text": "do the thing" }])
        );
        assert_eq!(message["metadata"]["delegationId"], delegation.to_string());
        assert_eq!(
            request["params"]["configuration"],
            json!({ "blocking": false })
        );
    }

    #[test]
    fn a_v1_0_send_is_a_send_message_that_returns_immediately_with_an_untagged_text_part() {
        let delegation = Uuid::new_v4();
        let request = send_request(ProtocolVersion::V1_0, "mid-2", delegation, "do the thing");
        assert_eq!(request["method"], "SendMessage");
        let message = &request["params"]["message"];
        assert_eq!(message["messageId"], "mid-2");
        assert_eq!(message["role"], "ROLE_USER");
        assert_eq!(message["parts"], json!([{ "text": "do the thing" }]));
        assert!(message.get("kind").is_none());
        assert_eq!(
            request["params"]["configuration"],
            json!({ "returnImmediately": true })
        );
    }

    #[test]
    fn the_same_delegation_builds_byte_identical_send_requests() {
        let delegation = Uuid::new_v4();
        let id = super::super::message_id_for(delegation);
        for version in [ProtocolVersion::V0_3, ProtocolVersion::V1_0] {
            assert_eq!(
                send_request(version, &id, delegation, "t").to_string(),
                send_request(version, &id, delegation, "t").to_string()
            );
        }
    }

    #[test]
    fn get_task_requests_name_the_task_in_each_version() {
        let v03 = get_task_request(ProtocolVersion::V0_3, "task-9");
        assert_eq!(v03["method"], "tasks/get");
        assert_eq!(v03["params"], json!({ "id": "task-9" }));
        let v10 = get_task_request(ProtocolVersion::V1_0, "task-9");
        assert_eq!(v10["method"], "GetTask");
        assert_eq!(v10["params"], json!({ "id": "task-9" }));
    }

    // ---- messages ----

    #[test]
    fn a_v0_3_message_result_completes_with_its_text_parts_joined() {
        let outcome = parse_send_response(&ok(json!({
            "kind": "message",
            "messageId": "m1",
            "contextId": "c1",
            "role": "agent",
            "parts": [
                { "kind": "text", "text": "first" },
                { "kind": "data", "data": { "x": 1 } },
                { "kind": "text", "text": "second" }
            ]
        })))
        .expect("a message");
        let message = message_outcome(outcome);
        assert_eq!(message.text, "first\nsecond");
        assert_eq!(message.message_id.as_deref(), Some("m1"));
        assert_eq!(message.context_id.as_deref(), Some("c1"));
    }

    #[test]
    fn a_v1_0_message_result_is_unwrapped_and_its_untagged_text_parts_read() {
        let outcome = parse_send_response(&ok(json!({
            "message": {
                "messageId": "m2",
                "role": "ROLE_AGENT",
                "parts": [{ "text": "HELLO" }, { "url": "https://x/y.png", "mediaType": "image/png" }]
            }
        })))
        .expect("a message");
        assert_eq!(message_outcome(outcome).text, "HELLO");
    }

    #[test]
    fn a_message_without_text_parts_has_empty_text() {
        let outcome = parse_send_response(&ok(json!({
            "kind": "message", "messageId": "m", "role": "agent",
            "parts": [{ "kind": "file", "file": { "uri": "https://x" } }]
        })))
        .expect("a message");
        assert_eq!(message_outcome(outcome).text, "");
    }

    #[test]
    fn a_v0_2_style_type_tagged_text_part_is_read_as_text() {
        let outcome = parse_send_response(&ok(json!({
            "parts": [{ "type": "text", "text": "legacy" }]
        })))
        .expect("an untagged message");
        assert_eq!(message_outcome(outcome).text, "legacy");
    }

    // ---- tasks ----

    #[test]
    fn a_v0_3_working_task_is_read_with_its_id_and_state() {
        let outcome = parse_send_response(&ok(json!({
            "kind": "task",
            "id": "t1",
            "contextId": "c1",
            "status": { "state": "working" }
        })))
        .expect("a task");
        let task = task_outcome(outcome);
        assert_eq!(task.id, "t1");
        assert_eq!(task.context_id.as_deref(), Some("c1"));
        assert_eq!(task.state, TaskState::Working);
        assert_eq!(task.raw_state, "working");
        assert_eq!(task.result_text(), None);
        assert!(!task.state.is_terminal());
    }

    #[test]
    fn a_v1_0_task_result_is_unwrapped_and_its_state_enum_read() {
        let outcome = parse_send_response(&ok(json!({
            "task": {
                "id": "t2",
                "contextId": "c2",
                "status": { "state": "TASK_STATE_SUBMITTED" },
                "history": [{ "messageId": "m", "role": "ROLE_USER", "parts": [{ "text": "q" }] }]
            }
        })))
        .expect("a task");
        let task = task_outcome(outcome);
        assert_eq!(task.id, "t2");
        assert_eq!(task.state, TaskState::Submitted);
        assert_eq!(task.raw_state, "TASK_STATE_SUBMITTED");
        // History (the caller's own question) is never mistaken for a result.
        assert_eq!(task.result_text(), None);
    }

    #[test]
    fn every_v0_3_state_maps_to_one_task_state() {
        let cases = [
            ("submitted", TaskState::Submitted),
            ("working", TaskState::Working),
            ("input-required", TaskState::InputRequired),
            ("auth-required", TaskState::AuthRequired),
            ("completed", TaskState::Completed),
            ("failed", TaskState::Failed),
            ("canceled", TaskState::Canceled),
            ("rejected", TaskState::Rejected),
            ("unknown", TaskState::Unknown),
        ];
        for (raw, expected) in cases {
            let task = parse_get_task_response(&ok(json!({
                "kind": "task", "id": "t", "status": { "state": raw }
            })))
            .expect("a task");
            assert_eq!(task.state, expected, "{raw}");
            assert_eq!(task.state.as_str(), raw);
        }
    }

    #[test]
    fn every_v1_0_state_maps_to_one_task_state_by_name_and_by_number() {
        let cases = [
            ("TASK_STATE_UNSPECIFIED", 0, TaskState::Unknown),
            ("TASK_STATE_SUBMITTED", 1, TaskState::Submitted),
            ("TASK_STATE_WORKING", 2, TaskState::Working),
            ("TASK_STATE_COMPLETED", 3, TaskState::Completed),
            ("TASK_STATE_FAILED", 4, TaskState::Failed),
            ("TASK_STATE_CANCELED", 5, TaskState::Canceled),
            ("TASK_STATE_INPUT_REQUIRED", 6, TaskState::InputRequired),
            ("TASK_STATE_REJECTED", 7, TaskState::Rejected),
            ("TASK_STATE_AUTH_REQUIRED", 8, TaskState::AuthRequired),
        ];
        for (name, number, expected) in cases {
            for raw in [json!(name), json!(number)] {
                let task = parse_get_task_response(&ok(json!({
                    "id": "t", "status": { "state": raw }
                })))
                .expect("a task");
                assert_eq!(task.state, expected, "{name}");
            }
        }
    }

    #[test]
    fn only_completed_failed_canceled_and_rejected_are_terminal() {
        use TaskState::*;
        for state in [Completed, Failed, Canceled, Rejected] {
            assert!(state.is_terminal(), "{state}");
            assert!(!state.is_interrupted(), "{state}");
        }
        for state in [Submitted, Working, InputRequired, AuthRequired, Unknown] {
            assert!(!state.is_terminal(), "{state}");
        }
        assert!(InputRequired.is_interrupted());
        assert!(AuthRequired.is_interrupted());
    }

    #[test]
    fn an_unknown_state_spelling_is_kept_raw_and_read_as_unknown() {
        let task = parse_get_task_response(&ok(json!({
            "id": "t", "status": { "state": "paused-for-lunch" }
        })))
        .expect("a task");
        assert_eq!(task.state, TaskState::Unknown);
        assert_eq!(task.raw_state, "paused-for-lunch");
    }

    #[test]
    fn a_completed_task_answers_with_its_artifacts_text() {
        let task = parse_get_task_response(&ok(json!({
            "kind": "task",
            "id": "t",
            "status": {
                "state": "completed",
                "message": { "kind": "message", "role": "agent", "messageId": "s",
                             "parts": [{ "kind": "text", "text": "done!" }] }
            },
            "artifacts": [
                { "artifactId": "a1", "parts": [{ "kind": "text", "text": "part one" }] },
                { "artifactId": "a2", "parts": [
                    { "kind": "data", "data": {} },
                    { "kind": "text", "text": "part two" }
                ] }
            ]
        })))
        .expect("a task");
        assert_eq!(task.state, TaskState::Completed);
        assert_eq!(task.artifact_text.as_deref(), Some("part one\npart two"));
        assert_eq!(task.status_text.as_deref(), Some("done!"));
        assert_eq!(task.result_text(), Some("part one\npart two"));
    }

    #[test]
    fn a_task_without_text_artifacts_answers_with_its_status_message() {
        let task = parse_get_task_response(&ok(json!({
            "id": "t",
            "status": {
                "state": "TASK_STATE_FAILED",
                "message": { "messageId": "s", "role": "ROLE_AGENT",
                             "parts": [{ "text": "out of credits" }] }
            },
            "artifacts": [{ "artifactId": "a", "parts": [{ "url": "https://x" }] }]
        })))
        .expect("a task");
        assert_eq!(task.state, TaskState::Failed);
        assert_eq!(task.artifact_text, None);
        assert_eq!(task.result_text(), Some("out of credits"));
    }

    #[test]
    fn a_get_task_answer_wrapped_like_a_send_answer_is_still_read() {
        let task = parse_get_task_response(&ok(json!({
            "task": { "id": "t", "status": { "state": "TASK_STATE_WORKING" } }
        })))
        .expect("a task");
        assert_eq!(task.state, TaskState::Working);
    }

    // ---- errors and malformed bodies ----

    #[test]
    fn a_json_rpc_error_is_reported_with_its_code_meaning_and_message() {
        let err = parse_get_task_response(&body(json!({
            "jsonrpc": "2.0", "id": "1",
            "error": { "code": -32001, "message": "Task not found", "data": null }
        })))
        .expect_err("an error");
        let WireError::Rpc(rpc) = &err else {
            panic!("expected an RPC error, got {err:?}");
        };
        assert_eq!(rpc.code, -32001);
        assert_eq!(rpc.message, "Task not found");
        assert_eq!(rpc.data, None);
        assert_eq!(
            err.to_string(),
            "the agent answered with JSON-RPC error -32001 (task not found): Task not found"
        );
    }

    #[test]
    fn a_json_rpc_error_with_an_unknown_code_keeps_code_message_and_data() {
        let err = parse_send_response(&body(json!({
            "jsonrpc": "2.0", "id": "1",
            "error": { "code": 4242, "message": "quota", "data": { "left": 0 } }
        })))
        .expect_err("an error");
        assert_eq!(
            err,
            WireError::Rpc(RpcError {
                code: 4242,
                message: "quota".into(),
                data: Some(json!({ "left": 0 }))
            })
        );
        assert_eq!(
            err.to_string(),
            "the agent answered with JSON-RPC error 4242: quota"
        );
    }

    #[test]
    fn a_v1_0_version_mismatch_error_is_named() {
        let err = parse_send_response(&body(json!({
            "jsonrpc": "2.0", "id": 1,
            "error": { "code": -32009, "message": "A2A version '0.3' is not supported" }
        })))
        .expect_err("an error");
        assert!(
            err.to_string().contains("-32009 (version not supported)"),
            "{err}"
        );
    }

    #[test]
    fn malformed_bodies_are_errors_with_a_reason_never_panics() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "not JSON"),
            (b"<html>502 Bad Gateway</html>".to_vec(), "not JSON"),
            (b"{\"jsonrpc\":\"2.0\",\"result\":".to_vec(), "not JSON"),
            (b"[1,2,3]".to_vec(), "response object"),
            (b"\"ok\"".to_vec(), "response object"),
            (
                body(json!({ "jsonrpc": "2.0", "id": 1 })),
                "neither a result nor an error",
            ),
            (
                body(json!({ "jsonrpc": "2.0", "id": 1, "result": null })),
                "neither a result nor an error",
            ),
            (
                body(json!({ "jsonrpc": "2.0", "id": 1, "error": "boom" })),
                "not an object",
            ),
            (
                body(json!({ "jsonrpc": "2.0", "id": 1, "error": { "message": "x" } })),
                "integer code",
            ),
            (ok(json!("done")), "not an object"),
            (ok(json!({ "foo": 1 })), "neither a message nor a task"),
            (
                ok(json!({ "kind": "status-update", "taskId": "t" })),
                "kind \"status-update\"",
            ),
            (
                ok(json!({ "kind": "task", "status": { "state": "working" } })),
                "no id",
            ),
            (
                ok(json!({ "kind": "task", "id": "", "status": { "state": "working" } })),
                "no id",
            ),
            (
                ok(json!({ "kind": "task", "id": 7, "status": { "state": "working" } })),
                "no id",
            ),
            (ok(json!({ "kind": "task", "id": "t" })), "no status"),
            (
                ok(json!({ "kind": "task", "id": "t", "status": "working" })),
                "no status",
            ),
            (
                ok(json!({ "kind": "task", "id": "t", "status": {} })),
                "no status.state",
            ),
            (
                ok(json!({ "kind": "task", "id": "t", "status": { "state": [] } })),
                "not a name",
            ),
            (
                ok(json!({ "kind": "message", "messageId": "m" })),
                "no parts",
            ),
            (
                ok(json!({ "kind": "message", "parts": "hello" })),
                "not a list",
            ),
            (
                ok(json!({ "message": { "role": "ROLE_AGENT" } })),
                "no parts",
            ),
        ];
        for (raw, expected) in cases {
            let err = parse_send_response(&raw).expect_err("malformed");
            let WireError::Malformed(reason) = &err else {
                panic!("expected malformed for {:?}, got {err:?}", preview(&raw));
            };
            assert!(
                reason.contains(expected),
                "{:?}: reason {reason:?} should mention {expected:?}",
                preview(&raw)
            );
        }
    }

    #[test]
    fn a_get_task_answer_that_is_a_message_is_malformed() {
        let err = parse_get_task_response(&ok(json!({
            "kind": "message", "messageId": "m", "parts": []
        })))
        .expect_err("not a task");
        assert!(matches!(err, WireError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn the_preview_of_a_huge_body_is_short_and_cut_on_a_character_boundary() {
        let huge = "é".repeat(10_000);
        let p = preview(huge.as_bytes());
        assert_eq!(p.chars().count(), 201);
        assert!(p.ends_with('…'));
        assert_eq!(preview(&[0xff, 0xfe, b'a']), "\u{fffd}\u{fffd}a");
    }
}
