//! The A2A client: how the ledger talks to a target agent when it
//! dispatches a managed delegation.
//!
//! This module is the wire groundwork of dispatch (DESIGN.md "Dispatch"),
//! usable on its own: it builds requests, sends them, and turns every answer
//! into a typed value. It decides nothing about retries or events; the
//! dispatcher (a process manager over the log) does, using what this module
//! tells it.
//!
//! # Why it looks the way it does
//!
//! * **Two protocol versions, one outcome type.** Agents in the wild speak
//!   A2A v0.3 (`message/send`, `tasks/get`, parts tagged with `kind`, no
//!   version header) or v1.0 (`SendMessage`, `GetTask`, header
//!   `A2A-Version: 1.0`, `TASK_STATE_*` and `ROLE_*` enums, untagged parts,
//!   results wrapped as `{"task": …}` / `{"message": …}`). [`wire`] maps both
//!   onto [`SendOutcome`] / [`TaskSnapshot`], so the dispatcher never looks
//!   at JSON.
//! * **A stable message id.** A real A2A server treats the same `messageId`
//!   sent twice as two tasks, and an A2A proxy de-duplicates its queue by
//!   it. The id is therefore derived from the delegation
//!   ([`message_id_for`]) and never from the attempt, so a resend after a
//!   crash is recognisably the same message.
//! * **Never block on the agent.** Sends ask for a non-blocking answer
//!   (v0.3 `configuration.blocking = false`, v1.0
//!   `configuration.returnImmediately = true`): a task that runs for hours is
//!   followed with `tasks/get` / `GetTask`, never with one open request.
//! * **Busy is not transient.** An older platform's proxy answers a busy agent with
//!   HTTP 503 and `{"busy": true}` (the message may already be delivered, so
//!   a blind retry double-delivers), with 429, or with 202 and
//!   `{"queued": true}`. [`client::classify_http`] keeps those apart from
//!   transient failures (connection refused/reset, timeouts, 502, 503
//!   without the busy marker such as `{"restarting": true}`, 504) and from
//!   permanent ones (other 4xx, malformed bodies, JSON-RPC errors), so the
//!   dispatcher can queue, retry with backoff, or fail.
//! * **Nothing from the network can panic.** Every remote value is walked
//!   as untrusted JSON; a surprise becomes an error with a readable reason
//!   (an older platform's drain path died on an unchecked type assertion).
//!
//! # Sources followed
//!
//! * v1.0: the A2A specification's `specification/a2a.proto`
//!   (package `lf.a2a.v1`: `SendMessageRequest`, `SendMessageConfiguration.
//!   return_immediately`, `SendMessageResponse` oneof `task`/`message`,
//!   `Task`, `TaskStatus`, `TaskState`, `Part` oneof `text`/`raw`/`url`/
//!   `data`, `Role`, `AgentCard.supported_interfaces[]` with
//!   `protocol_version` and `protocol_binding`), rendered as ProtoJSON
//!   (camelCase names, enums by name), and its JSON-RPC binding (PascalCase
//!   methods, `A2A-Version` header). Cross-checked against the `a2a-sdk`
//!   1.3.0 Python package: `a2a/server/routes/jsonrpc_dispatcher.py`
//!   (`SendMessage` answers `MessageToDict(SendMessageResponse)`, `GetTask`
//!   answers the bare `Task`), `a2a/utils/version_validator.py` (a missing
//!   `A2A-Version` header means 0.3, so v1.0 methods without it fail with
//!   -32009) and `a2a/utils/constants.py` (`/.well-known/agent-card.json`).
//! * v0.3: the v0.3.0 specification's JSON-RPC methods and the same SDK's
//!   `a2a/compat/v0_3/` adapter (`blocking` is the inverse of
//!   `return_immediately`; lower-case states; `kind` on messages, tasks and
//!   parts).
//! * Busy/queued/restarting handling and the v0.2 `content` shim: what
//!   agents behind an older platform's A2A proxy do in practice (503 with
//!   `{"busy": true}` or `{"restarting": true}`, 202 with
//!   `{"queued": true}`, v0.2 messages with `content`).
//!
//! # Layout
//!
//! * [`wire`] — request bodies and response parsing for both versions (pure).
//! * [`card`] — the agent card and the choice of protocol and URL (pure).
//! * [`compat`] — v0.2 `content` → `parts` normalisation at the edge (pure).
//! * [`client`] — [`A2aClient`] over HTTP and the classification of HTTP
//!   answers into success / busy / transient / permanent.
//! * [`outbound`] — where the client may connect (no loopback, private or
//!   metadata addresses unless the operator allows them).

pub mod card;
pub mod client;
pub mod compat;
pub mod outbound;
pub mod wire;

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

pub use card::{select_endpoint, AgentCard, Endpoint, EndpointSource};
pub use client::{
    classify_http, A2aClient, A2aClientConfig, BusyReason, CallError, ErrorKind, HttpClass,
};
pub use compat::{normalize_content, NormalizeError};
pub use outbound::{OutboundPolicy, Refused};
pub use wire::{AgentMessage, RpcError, SendOutcome, TaskSnapshot, TaskState, WireError};

/// The A2A protocol versions the ledger can speak to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// A2A v0.3: `message/send`, `tasks/get`, no version header.
    V0_3,
    /// A2A v1.0: `SendMessage`, `GetTask`, header `A2A-Version: 1.0`.
    V1_0,
}

impl ProtocolVersion {
    /// The version as the protocol writes it ("0.3", "1.0").
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V0_3 => "0.3",
            ProtocolVersion::V1_0 => "1.0",
        }
    }

    /// The `A2A-Version` header value to send, if this version has one.
    /// v0.3 servers predate the header; the v1.0 SDK reads its absence as
    /// "0.3", so sending nothing is the v0.3 way.
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            ProtocolVersion::V0_3 => None,
            ProtocolVersion::V1_0 => Some("1.0"),
        }
    }

    /// The JSON-RPC method that sends a message.
    pub fn send_method(self) -> &'static str {
        match self {
            ProtocolVersion::V0_3 => "message/send",
            ProtocolVersion::V1_0 => "SendMessage",
        }
    }

    /// The JSON-RPC method that reads a task.
    pub fn get_task_method(self) -> &'static str {
        match self {
            ProtocolVersion::V0_3 => "tasks/get",
            ProtocolVersion::V1_0 => "GetTask",
        }
    }

    /// The JSON-RPC method that asks the agent to cancel a task.
    pub fn cancel_task_method(self) -> &'static str {
        match self {
            ProtocolVersion::V0_3 => "tasks/cancel",
            ProtocolVersion::V1_0 => "CancelTask",
        }
    }

    /// The JSON-RPC method that lists tasks by context, where the version
    /// has one (v0.3 has none).
    pub fn list_tasks_method(self) -> Option<&'static str> {
        match self {
            ProtocolVersion::V0_3 => None,
            ProtocolVersion::V1_0 => Some("ListTasks"),
        }
    }

    /// Which version a version string names: any "1.x" is v1.0 (the spec
    /// keeps one interface per major version, latest minor), any "0.3.x"
    /// is v0.3. Older or unknown versions are `None`.
    pub fn from_version_str(s: &str) -> Option<Self> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut pieces = s.split('.');
        let major = pieces.next()?.trim();
        let minor = pieces.next().map(str::trim);
        match (major, minor) {
            ("1", _) => Some(ProtocolVersion::V1_0),
            ("0", Some("3")) => Some(ProtocolVersion::V0_3),
            _ => None,
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version string that names no version the ledger speaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported A2A protocol version {0:?}: expected \"0.3\" or \"1.0\"")]
pub struct UnknownVersion(pub String);

impl FromStr for ProtocolVersion {
    type Err = UnknownVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProtocolVersion::from_version_str(s).ok_or_else(|| UnknownVersion(s.to_string()))
    }
}

/// Namespace of the UUIDv5 message ids (a fixed, random UUID: changing it
/// would change every message id and break recognition of resends).
const MESSAGE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c0e_2a47_9b1d_4f0e_a3c8_51d2_e7f4_0b93);

/// The A2A `messageId` for a delegation's task message.
///
/// Deterministic and attempt-independent: the same delegation always gets
/// the same id, so a resend after a crash or a transient failure is the
/// same message to the target (and to an A2A proxy that de-duplicates its
/// queue by message id). A UUIDv5 rather than the delegation id itself, so
/// other messages of the same delegation can later get ids of their own in
/// the same namespace without colliding.
pub fn message_id_for(delegation_id: Uuid) -> String {
    Uuid::new_v5(&MESSAGE_ID_NAMESPACE, delegation_id.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_is_the_same_for_every_attempt_of_a_delegation() {
        let delegation = Uuid::new_v4();
        assert_eq!(message_id_for(delegation), message_id_for(delegation));
        assert_ne!(message_id_for(delegation), message_id_for(Uuid::new_v4()));
        assert_ne!(message_id_for(delegation), delegation.to_string());
        let parsed = Uuid::parse_str(&message_id_for(delegation)).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 5);
    }

    #[test]
    fn the_message_id_does_not_change_between_releases() {
        let delegation = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        // Pinned: a change here means resends after an upgrade would no
        // longer be recognisable as the same message.
        assert_eq!(
            message_id_for(delegation),
            "39254f0a-ab82-5252-b6b2-9ce72a675c77"
        );
    }

    #[test]
    fn version_strings_map_to_the_versions_the_ledger_speaks() {
        assert_eq!("1.0".parse(), Ok(ProtocolVersion::V1_0));
        assert_eq!("1.0.0".parse(), Ok(ProtocolVersion::V1_0));
        assert_eq!("1.2".parse(), Ok(ProtocolVersion::V1_0));
        assert_eq!("v1".parse(), Ok(ProtocolVersion::V1_0));
        assert_eq!("0.3".parse(), Ok(ProtocolVersion::V0_3));
        assert_eq!("0.3.0".parse(), Ok(ProtocolVersion::V0_3));
        assert!("0.2.6".parse::<ProtocolVersion>().is_err());
        assert!("".parse::<ProtocolVersion>().is_err());
        assert!("latest".parse::<ProtocolVersion>().is_err());
    }

    #[test]
    fn each_version_names_its_methods_and_header() {
        assert_eq!(ProtocolVersion::V0_3.send_method(), "message/send");
        assert_eq!(ProtocolVersion::V0_3.get_task_method(), "tasks/get");
        assert_eq!(ProtocolVersion::V0_3.header_value(), None);
        assert_eq!(ProtocolVersion::V1_0.send_method(), "SendMessage");
        assert_eq!(ProtocolVersion::V1_0.get_task_method(), "GetTask");
        assert_eq!(ProtocolVersion::V1_0.header_value(), Some("1.0"));
    }
}
