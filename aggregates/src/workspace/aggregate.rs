//! The workspace registry entry.
//!
//! A push workspace is reached over HTTP, so its URL is checked here, once,
//! when it is registered or changed: the dispatcher can then trust every
//! stored URL. A poll workspace needs no URL. Repeated registrations and
//! capacity reports that change nothing write nothing, because agents send
//! them on every start and every heartbeat.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The longest workspace name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// How a workspace gets its delegations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// The ledger sends requests to the workspace's URL.
    #[default]
    Push,
    /// The workspace reads its activity feed; the ledger never calls it.
    Poll,
}

impl DeliveryMode {
    /// The wire name: `"push"` or `"poll"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Poll => "poll",
        }
    }
}

impl std::fmt::Display for DeliveryMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryMode {
    /// A sentence naming the rejected value.
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "push" => Ok(Self::Push),
            "poll" => Ok(Self::Poll),
            other => Err(format!(
                "unknown delivery mode {other:?}; expected \"push\" or \"poll\""
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum WorkspaceCommand {
    /// Create the registry entry. Registering an existing workspace is
    /// rejected; use `UpdateRegistration`.
    Register {
        workspace_id: Uuid,
        name: Option<String>,
        url: Option<String>,
        delivery_mode: DeliveryMode,
        /// The hash of the workspace's token; the token itself is never
        /// stored.
        token_hash: String,
        at: DateTime<Utc>,
    },
    /// Replace name, URL and delivery mode. No-op when nothing changes.
    UpdateRegistration {
        name: Option<String>,
        url: Option<String>,
        delivery_mode: DeliveryMode,
        at: DateTime<Utc>,
    },
    /// The A2A protocol version the dispatcher must speak to this workspace
    /// ("0.3", "1.0"; validated at the edge), or `None` to follow its agent
    /// card. No-op when unchanged.
    SetProtocolVersion {
        protocol_version: Option<String>,
        at: DateTime<Utc>,
    },
    /// A heartbeat: how busy the workspace is. No-op when unchanged.
    ReportCapacity {
        active_tasks: u32,
        max_concurrent: u32,
        at: DateTime<Utc>,
    },
    /// Replace the workspace's token (by the workspace, or by the admin to
    /// reissue a revoked one): the old one stops working.
    RotateToken {
        token_hash: String,
        at: DateTime<Utc>,
    },
    /// Take the workspace's token away (the admin); no token works for it
    /// until a rotation issues a new one. No-op when already revoked.
    RevokeToken { at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkspaceEvent {
    WorkspaceRegistered {
        workspace_id: Uuid,
        name: Option<String>,
        url: Option<String>,
        delivery_mode: DeliveryMode,
        token_hash: String,
        at: DateTime<Utc>,
    },
    WorkspaceRegistrationUpdated {
        workspace_id: Uuid,
        name: Option<String>,
        url: Option<String>,
        delivery_mode: DeliveryMode,
        at: DateTime<Utc>,
    },
    WorkspaceCapacityReported {
        workspace_id: Uuid,
        active_tasks: u32,
        max_concurrent: u32,
        at: DateTime<Utc>,
    },
    WorkspaceProtocolVersionSet {
        workspace_id: Uuid,
        protocol_version: Option<String>,
        at: DateTime<Utc>,
    },
    WorkspaceTokenRotated {
        workspace_id: Uuid,
        token_hash: String,
        at: DateTime<Utc>,
    },
    WorkspaceTokenRevoked {
        workspace_id: Uuid,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for WorkspaceEvent {
    fn event_type(&self) -> String {
        match self {
            Self::WorkspaceRegistered { .. } => "WorkspaceRegistered",
            Self::WorkspaceRegistrationUpdated { .. } => "WorkspaceRegistrationUpdated",
            Self::WorkspaceCapacityReported { .. } => "WorkspaceCapacityReported",
            Self::WorkspaceProtocolVersionSet { .. } => "WorkspaceProtocolVersionSet",
            Self::WorkspaceTokenRotated { .. } => "WorkspaceTokenRotated",
            Self::WorkspaceTokenRevoked { .. } => "WorkspaceTokenRevoked",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

/// Why a workspace command was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkspaceError {
    #[error("the workspace is already registered")]
    AlreadyRegistered,
    #[error("the workspace is not registered")]
    NotRegistered,
    #[error("a push workspace needs a url; register with \"delivery_mode\": \"poll\" to collect work from the inbox instead")]
    UrlRequiredForPush,
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    #[error("the url must not carry credentials (user:password@); agents are called without them")]
    CredentialsInUrl,
    #[error("the name is longer than {max} characters")]
    NameTooLong { max: usize },
    #[error("max_concurrent must be at least 1")]
    InvalidCapacity,
}

/// The state of one workspace, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    workspace_id: Option<Uuid>,
    name: Option<String>,
    url: Option<String>,
    delivery_mode: DeliveryMode,
    token_hash: Option<String>,
    active_tasks: Option<u32>,
    max_concurrent: Option<u32>,
    #[serde(default)]
    protocol_version: Option<String>,
    registered_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

impl Workspace {
    pub fn is_registered(&self) -> bool {
        self.workspace_id.is_some()
    }

    /// `None` until registered.
    pub fn workspace_id(&self) -> Option<Uuid> {
        self.workspace_id
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Where a push workspace is reached (validated http(s) URL).
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    pub fn delivery_mode(&self) -> DeliveryMode {
        self.delivery_mode
    }

    /// The hash of the workspace's token; `None` until registered, and
    /// after the token was revoked.
    pub fn token_hash(&self) -> Option<&str> {
        self.token_hash.as_deref()
    }

    /// Tasks running at the last capacity report; `None` before any.
    pub fn active_tasks(&self) -> Option<u32> {
        self.active_tasks
    }

    /// Capacity at the last capacity report; `None` before any.
    pub fn max_concurrent(&self) -> Option<u32> {
        self.max_concurrent
    }

    /// The A2A version given at registration; `None`: follow the card.
    pub fn protocol_version(&self) -> Option<&str> {
        self.protocol_version.as_deref()
    }

    pub fn registered_at(&self) -> Option<DateTime<Utc>> {
        self.registered_at
    }

    /// The time of the latest event.
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }

    /// The events `command` causes, or why it is rejected. An empty list
    /// means nothing changes.
    fn decide(&self, command: WorkspaceCommand) -> Result<Vec<WorkspaceEvent>, WorkspaceError> {
        match command {
            WorkspaceCommand::Register {
                workspace_id,
                name,
                url,
                delivery_mode,
                token_hash,
                at,
            } => {
                if self.is_registered() {
                    return Err(WorkspaceError::AlreadyRegistered);
                }
                validate_registration(name.as_deref(), url.as_deref(), delivery_mode)?;
                Ok(vec![WorkspaceEvent::WorkspaceRegistered {
                    workspace_id,
                    name,
                    url,
                    delivery_mode,
                    token_hash,
                    at,
                }])
            }
            WorkspaceCommand::UpdateRegistration {
                name,
                url,
                delivery_mode,
                at,
            } => {
                let workspace_id = self.workspace_id.ok_or(WorkspaceError::NotRegistered)?;
                validate_registration(name.as_deref(), url.as_deref(), delivery_mode)?;
                if name == self.name && url == self.url && delivery_mode == self.delivery_mode {
                    return Ok(Vec::new());
                }
                Ok(vec![WorkspaceEvent::WorkspaceRegistrationUpdated {
                    workspace_id,
                    name,
                    url,
                    delivery_mode,
                    at,
                }])
            }
            WorkspaceCommand::SetProtocolVersion {
                protocol_version,
                at,
            } => {
                let workspace_id = self.workspace_id.ok_or(WorkspaceError::NotRegistered)?;
                if protocol_version == self.protocol_version {
                    return Ok(Vec::new());
                }
                Ok(vec![WorkspaceEvent::WorkspaceProtocolVersionSet {
                    workspace_id,
                    protocol_version,
                    at,
                }])
            }
            WorkspaceCommand::ReportCapacity {
                active_tasks,
                max_concurrent,
                at,
            } => {
                let workspace_id = self.workspace_id.ok_or(WorkspaceError::NotRegistered)?;
                if max_concurrent == 0 {
                    return Err(WorkspaceError::InvalidCapacity);
                }
                if self.active_tasks == Some(active_tasks)
                    && self.max_concurrent == Some(max_concurrent)
                {
                    return Ok(Vec::new());
                }
                Ok(vec![WorkspaceEvent::WorkspaceCapacityReported {
                    workspace_id,
                    active_tasks,
                    max_concurrent,
                    at,
                }])
            }
            WorkspaceCommand::RotateToken { token_hash, at } => {
                let workspace_id = self.workspace_id.ok_or(WorkspaceError::NotRegistered)?;
                Ok(vec![WorkspaceEvent::WorkspaceTokenRotated {
                    workspace_id,
                    token_hash,
                    at,
                }])
            }
            WorkspaceCommand::RevokeToken { at } => {
                let workspace_id = self.workspace_id.ok_or(WorkspaceError::NotRegistered)?;
                if self.token_hash.is_none() {
                    return Ok(Vec::new());
                }
                Ok(vec![WorkspaceEvent::WorkspaceTokenRevoked {
                    workspace_id,
                    at,
                }])
            }
        }
    }
}

/// The rules shared by registering and updating a registration.
fn validate_registration(
    name: Option<&str>,
    url: Option<&str>,
    delivery_mode: DeliveryMode,
) -> Result<(), WorkspaceError> {
    match url {
        Some(url) => validate_url(url)?,
        None if delivery_mode == DeliveryMode::Push => {
            return Err(WorkspaceError::UrlRequiredForPush)
        }
        None => {}
    }
    if name.is_some_and(|name| name.chars().count() > MAX_NAME_CHARS) {
        return Err(WorkspaceError::NameTooLong {
            max: MAX_NAME_CHARS,
        });
    }
    Ok(())
}

/// An absolute http(s) URL with a host: the only kind the dispatcher can
/// call.
fn validate_url(url: &str) -> Result<(), WorkspaceError> {
    let parsed = url::Url::parse(url).map_err(|e| WorkspaceError::InvalidUrl(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(WorkspaceError::InvalidUrl(format!(
            "the scheme must be http or https, not {}",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(WorkspaceError::InvalidUrl(
            "the url has no host".to_string(),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(WorkspaceError::CredentialsInUrl);
    }
    Ok(())
}

impl Aggregate for Workspace {
    const TYPE: &'static str = "workspace";
    type Command = WorkspaceCommand;
    type Event = WorkspaceEvent;
    type Error = WorkspaceError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            WorkspaceEvent::WorkspaceRegistered {
                workspace_id,
                name,
                url,
                delivery_mode,
                token_hash,
                at,
            } => {
                self.workspace_id = Some(workspace_id);
                self.name = name;
                self.url = url;
                self.delivery_mode = delivery_mode;
                self.token_hash = Some(token_hash);
                self.registered_at = Some(at);
                self.updated_at = Some(at);
            }
            WorkspaceEvent::WorkspaceRegistrationUpdated {
                name,
                url,
                delivery_mode,
                at,
                ..
            } => {
                self.name = name;
                self.url = url;
                self.delivery_mode = delivery_mode;
                self.updated_at = Some(at);
            }
            WorkspaceEvent::WorkspaceCapacityReported {
                active_tasks,
                max_concurrent,
                at,
                ..
            } => {
                self.active_tasks = Some(active_tasks);
                self.max_concurrent = Some(max_concurrent);
                self.updated_at = Some(at);
            }
            WorkspaceEvent::WorkspaceProtocolVersionSet {
                protocol_version,
                at,
                ..
            } => {
                self.protocol_version = protocol_version;
                self.updated_at = Some(at);
            }
            WorkspaceEvent::WorkspaceTokenRotated { token_hash, at, .. } => {
                self.token_hash = Some(token_hash);
                self.updated_at = Some(at);
            }
            WorkspaceEvent::WorkspaceTokenRevoked { at, .. } => {
                self.token_hash = None;
                self.updated_at = Some(at);
            }
        }
    }
}

#[cfg(test)]
mod tests;
