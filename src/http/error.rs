//! The one error type of the HTTP API. Every variant documents its status;
//! every response body is `{"error": "<human sentence>", ...}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::commands::CommandError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the input is malformed or breaks a rule; nothing was written.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or credentials that match nothing.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: valid credentials that may not do this (e.g. re-registering
    /// another workspace).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource — or one the caller may not see (so ids do not
    /// leak).
    #[error("{0}")]
    NotFound(String),
    /// 409: the request conflicts with the resource's current state.
    #[error("{message}")]
    Conflict {
        message: String,
        current_status: Option<String>,
    },
    /// 410: the cursor no longer exists (or never existed for this caller).
    #[error("{0}")]
    Gone(String),
    /// 500: something failed inside; logged once, answered opaquely.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::internal(error)
    }
}

/// Domain errors each know their HTTP meaning; store failures are opaque.
pub trait DomainErrorStatus: std::error::Error {
    fn into_api_error(self) -> ApiError;
}

impl<E: DomainErrorStatus> From<CommandError<E>> for ApiError {
    fn from(error: CommandError<E>) -> Self {
        match error {
            CommandError::Rejected(domain) => domain.into_api_error(),
            CommandError::Conflict => Self::Conflict {
                message: error.to_string(),
                current_status: None,
            },
            CommandError::Store(message) => Self::Internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = match self {
            Self::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                json!({ "error": "internal error; see the service log" })
            }
            Self::Conflict {
                message,
                current_status: Some(current),
            } => {
                json!({ "error": message, "current_status": current })
            }
            other => json!({ "error": other.to_string() }),
        };
        (status, Json(body)).into_response()
    }
}
