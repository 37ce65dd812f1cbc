//! The one error type of the HTTP API. Every variant documents its status;
//! every response body is `{"error": "<human sentence>", ...}`.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
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
    /// 429: a rate limit (see `super::limits`); `Retry-After` says when to
    /// try again.
    #[error("{message}; try again in {} s", retry_seconds(*retry_after))]
    TooManyRequests {
        message: String,
        retry_after: std::time::Duration,
    },
    /// 503: the service cannot take the request now (overloaded, timed
    /// out, or waiting on the database); `Retry-After` says when to try
    /// again.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: std::time::Duration,
    },
    /// 500: something failed inside; logged once with its causes,
    /// answered opaquely.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    /// A fault, keeping its cause (an error, or a sentence).
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(cause.into())
    }
}

impl From<sqlx::Error> for ApiError {
    /// The database being slow or saturated is the service being
    /// unavailable (503, try again), not a fault: no free connection within
    /// the acquire timeout, or a statement cancelled by the statement
    /// timeout (SQLSTATE 57014). Anything else is a fault.
    fn from(error: sqlx::Error) -> Self {
        let cancelled = error
            .as_database_error()
            .and_then(|e| e.code())
            .is_some_and(|code| code == "57014");
        match error {
            sqlx::Error::PoolTimedOut => Self::Unavailable {
                message: "the database is busy: no connection was free in time".into(),
                retry_after: std::time::Duration::from_secs(1),
            },
            _ if cancelled => Self::Unavailable {
                message: "the database did not answer in time".into(),
                retry_after: std::time::Duration::from_secs(1),
            },
            other => Self::internal(other),
        }
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
            CommandError::Store(cause) => Self::internal(cause),
            fenced @ CommandError::Fenced { .. } => Self::internal(fenced.to_string()),
        }
    }
}

/// An error and every cause below it, `outer: inner: …`.
pub fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        // Transparent wrappers repeat their cause's words.
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// Whole seconds to wait, rounded up (a `Retry-After` of 0 invites a
/// client to hammer).
fn retry_seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl IntoResponse for ApiError {
    /// The one place a failed request is logged: a fault of the ledger or
    /// its database (5xx) at ERROR with its cause, a client's mistake (4xx)
    /// once at INFO.
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        match &self {
            Self::Internal(cause) => {
                tracing::error!(error = %causes(cause.as_ref()), "request failed")
            }
            Self::Unavailable { message, .. } => {
                tracing::warn!(status = status.as_u16(), %message, "request refused")
            }
            other => tracing::info!(status = status.as_u16(), error = %other, "request rejected"),
        }
        let retry_after = match &self {
            Self::TooManyRequests { retry_after, .. } | Self::Unavailable { retry_after, .. } => {
                Some(retry_seconds(*retry_after).max(1))
            }
            _ => None,
        };
        let body = match self {
            Self::Internal(_) => {
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
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The body of every error response (the OpenAPI `ErrorBody` schema; the
/// responses themselves are built by [`ApiError`]'s `IntoResponse`).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // only described, never built
pub struct ErrorBody {
    /// A human sentence saying what was wrong.
    pub error: String,
    /// On a 409 for a forbidden lifecycle transition: the delegation's
    /// current status.
    #[schema(nullable = false)]
    pub current_status: Option<String>,
}

/// Longest framework error body turned into the `error` sentence.
const FRAMEWORK_ERROR_BODY_BYTES: usize = 1024;

/// Response middleware: an error answered by the framework rather than a
/// handler (an unknown path's 404, a wrong method's 405, the body limit's
/// 413) comes as plain text or nothing; give it the API's error shape too,
/// so a client can parse every error the same way. Headers (such as a
/// 405's `Allow`) are kept.
pub async fn json_error_bodies(response: Response, max_body_bytes: usize) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, FRAMEWORK_ERROR_BODY_BYTES)
        .await
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .filter(|text| !text.is_empty());
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    let message = match (status, text) {
        (StatusCode::PAYLOAD_TOO_LARGE, _) => {
            format!("the request body is larger than {max_body_bytes} bytes")
        }
        (_, Some(text)) => format!("{reason}: {text}"),
        (StatusCode::NOT_FOUND, None) => "no such route".to_string(),
        (_, None) => reason,
    };
    let body = json!({ "error": message }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::StoreError;

    #[derive(Debug, thiserror::Error)]
    #[error("no such delegation")]
    struct Refusal;

    impl DomainErrorStatus for Refusal {
        fn into_api_error(self) -> ApiError {
            ApiError::not_found(self.to_string())
        }
    }

    fn disk_full() -> std::io::Error {
        std::io::Error::other("could not extend file: no space left on device")
    }

    #[test]
    fn a_store_failure_keeps_its_cause_through_the_command_and_the_api_error() {
        let failed: CommandError<Refusal> = CommandError::Store(StoreError::new(disk_full()));
        let api = ApiError::from(failed);
        assert!(matches!(api, ApiError::Internal(_)));
        let chain = causes(&api);
        assert!(
            chain.contains("no space left on device"),
            "the logged line names the cause: {chain}"
        );
        let kept = std::error::Error::source(&api).and_then(|e| e.downcast_ref::<StoreError>());
        assert!(kept.is_some(), "the cause stays the typed error, not text");
    }

    #[tokio::test]
    async fn a_fault_is_answered_opaquely_whatever_its_cause() {
        let api = ApiError::from(CommandError::<Refusal>::Store(StoreError::new(disk_full())));
        let response = api.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("no space"), "{text}");
        assert!(text.contains("internal error"), "{text}");
    }

    #[test]
    fn a_causes_line_does_not_repeat_what_a_wrapper_already_said() {
        let wrapped = CommandError::<Refusal>::Store(StoreError::new(disk_full()));
        assert_eq!(
            causes(&wrapped),
            "event store failure: could not extend file: no space left on device"
        );
    }
}
