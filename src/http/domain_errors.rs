//! The HTTP meaning of each aggregate's domain errors.

use aggregates::delegation::DelegationError;
use aggregates::idempotency_key::IdempotencyKeyError;
use aggregates::queue_item::QueueItemError;
use aggregates::workspace::WorkspaceError;

use super::error::{ApiError, DomainErrorStatus};

impl DomainErrorStatus for DelegationError {
    fn into_api_error(self) -> ApiError {
        let message = self.to_string();
        match self {
            Self::SelfDelegation | Self::EmptyTask | Self::TaskTooLarge { .. } => {
                ApiError::BadRequest(message)
            }
            Self::NotFound => ApiError::NotFound(message),
            Self::AlreadyExists | Self::Superseded { .. } => ApiError::Conflict {
                message,
                current_status: None,
            },
            Self::InvalidTransition { .. } | Self::TerminalConflict { .. } => ApiError::Conflict {
                current_status: self.current_status().map(|s| s.as_str().to_string()),
                message,
            },
        }
    }
}

impl DomainErrorStatus for IdempotencyKeyError {
    fn into_api_error(self) -> ApiError {
        let message = self.to_string();
        match self {
            Self::EmptyKey | Self::KeyTooLong { .. } => ApiError::BadRequest(message),
            Self::Held { .. } => ApiError::Conflict {
                message,
                current_status: None,
            },
        }
    }
}

impl DomainErrorStatus for WorkspaceError {
    fn into_api_error(self) -> ApiError {
        let message = self.to_string();
        match self {
            Self::AlreadyRegistered => ApiError::Conflict {
                message,
                current_status: None,
            },
            Self::NotRegistered => ApiError::NotFound(message),
            Self::UrlRequiredForPush
            | Self::InvalidUrl(_)
            | Self::CredentialsInUrl
            | Self::NameTooLong { .. }
            | Self::InvalidCapacity => ApiError::BadRequest(message),
        }
    }
}

impl DomainErrorStatus for QueueItemError {
    fn into_api_error(self) -> ApiError {
        let message = self.to_string();
        match self {
            Self::NotFound => ApiError::NotFound(message),
            Self::EmptyMethod => ApiError::BadRequest(message),
            Self::AlreadyExists
            | Self::Expired
            | Self::NotYetExpired
            | Self::NotQueued { .. }
            | Self::NotDispatched { .. } => ApiError::Conflict {
                message,
                current_status: None,
            },
        }
    }
}
