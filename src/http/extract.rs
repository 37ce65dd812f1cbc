//! Turning request parts into typed values, with clear 400s.
//!
//! All three extractors also refuse a NUL character (`\u0000` in a JSON
//! string, `%00` in a path or query): PostgreSQL text cannot hold one, so
//! it would fail the write after the event was accepted (a 500 at best, a
//! projection stuck on the event at worst) — it is refused up front, with
//! nothing written.

use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;

/// `axum::Json`, rejecting through [`ApiError`] so a bad body gets the
/// API's error shape (and 400, or 413 via the body limit layer).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = axum::response::Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        // Read the body once (the body limit answers 413 here), keep the
        // bytes for the NUL check, and let `axum::Json` judge them as usual.
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let req = Request::from_parts(parts, Body::from(bytes.clone()));
        match axum::Json::<T>::from_request(req, state).await {
            Ok(_) if has_nul_escape(&bytes) => Err(nul_rejected("the JSON body").into_response()),
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::BytesRejection(rejection)) => Err(rejection.into_response()),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text()).into_response()),
        }
    }
}

/// An optional JSON body: a request with no body at all (no content type,
/// no length) is `None`; anything else is judged as [`ApiJson`].
impl<S, T> axum::extract::OptionalFromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = axum::response::Response;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        use axum::http::header;
        let headers = req.headers();
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let chunked = headers.contains_key(header::TRANSFER_ENCODING);
        if !headers.contains_key(header::CONTENT_TYPE) && !chunked && length.unwrap_or(0) == 0 {
            return Ok(None);
        }
        <Self as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

/// Path parameters, rejecting through [`ApiError`].
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if has_percent_nul(parts.uri.path()) {
            return Err(nul_rejected("the path"));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection: PathRejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// Parse a UUID field, naming the field in the error.
pub fn parse_uuid(field: &str, value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value)
        .map_err(|_| ApiError::bad_request(format!("{field} must be a valid UUID")))
}

/// Parse an optional positive integer `limit`, clamped to `max`.
pub fn parse_limit(value: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value {
        None => Ok(default),
        Some(text) => match text.parse::<i64>() {
            Ok(limit) if limit > 0 => Ok(limit.min(max)),
            _ => Err(ApiError::bad_request(format!(
                "limit must be a positive integer (at most {max}); got {text:?}"
            ))),
        },
    }
}

/// Query parameters, rejecting through [`ApiError`].
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_some_and(has_percent_nul) {
            return Err(nul_rejected("the query string"));
        }
        // `min_position` belongs to every GET (see `super::consistency`),
        // not to any route's own parameters.
        let uri = match parts.uri.query() {
            Some(query) if query.contains(super::consistency::MIN_POSITION_PARAM) => {
                let kept = super::consistency::without_min_position(query);
                let rebuilt = format!("{}?{kept}", parts.uri.path());
                rebuilt
                    .parse::<axum::http::Uri>()
                    .map_err(|_| ApiError::bad_request("the query string is malformed"))?
            }
            _ => parts.uri.clone(),
        };
        axum::extract::Query::<T>::try_from_uri(&uri)
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

fn nul_rejected(place: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{place} holds a NUL character (\\u0000 or %00), which no field may contain"
    ))
}

/// Does this JSON text (already known to be valid) hold a `\u0000`
/// escape, i.e. a NUL character in a string? Valid JSON has backslashes
/// only inside strings, where `\\` escapes a backslash: the escape counts
/// when an even number of backslashes precede it.
fn has_nul_escape(json: &[u8]) -> bool {
    json.windows(6).enumerate().any(|(at, window)| {
        window == b"\\u0000"
            && json[..at]
                .iter()
                .rev()
                .take_while(|byte| **byte == b'\\')
                .count()
                % 2
                == 0
    })
}

/// Does this URI part (path or query, percent-encoded) hold an encoded NUL?
/// A literal `%` is itself encoded (`%25`), so `%00` is always a NUL.
fn has_percent_nul(text: &str) -> bool {
    text.contains("%00")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_escape_is_found_but_an_escaped_backslash_before_u0000_is_not() {
        assert!(has_nul_escape(br#"{"task": "a\u0000b"}"#));
        assert!(has_nul_escape(br#"{"task": "a\\\\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"task": "a\\\\u0000b"}"#));
        assert!(!has_nul_escape(br#"{"task": "u0000"}"#));
    }

    #[test]
    fn an_encoded_nul_is_found_but_an_encoded_percent_is_not() {
        assert!(has_percent_nul("type=a%00"));
        assert!(!has_percent_nul("type=a%2500"));
    }
}
