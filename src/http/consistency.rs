//! Consistency tokens: a command's answer names the log position its
//! events reached; a read may name a position it must see.
//!
//! * Every 2xx answer of a request that ran commands carries
//!   `X-Ledger-Position` and, when its body is a JSON object, a `position`
//!   field ([`stamp_position`]): the highest position its commands reached
//!   (see [`crate::commands::position`]).
//! * Every GET route (and `/ws`) accepts `min_position` (query) or
//!   `X-Ledger-Min-Position` (header) and is served only once the views it
//!   reads have applied that position — on whichever node or replica
//!   serves it ([`ReadPool`]); after a bounded wait it answers 503 with
//!   `Retry-After`. So a client that passes on its last token reads its
//!   own writes anywhere.

use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::Response;
use sqlx::PgPool;

use super::error::ApiError;
use super::AppState;
use crate::commands::position;
use crate::replicas::NotYetApplied;

/// The response header carrying a command's position.
pub const POSITION: HeaderName = HeaderName::from_static("x-ledger-position");
/// The request header naming the position a read must see.
pub const MIN_POSITION: HeaderName = HeaderName::from_static("x-ledger-min-position");
/// The query parameter naming the position a read must see.
pub const MIN_POSITION_PARAM: &str = "min_position";
/// Largest command response body the position is added to (they are a
/// few hundred bytes; anything larger is passed through untouched).
const MAX_STAMPED_BODY: usize = 64 * 1024;

/// Run the request tracking the positions its commands reach, and stamp
/// the highest on a successful answer.
pub async fn stamp_position(request: Request, next: Next) -> Response {
    let (response, reached) = position::track(next.run(request)).await;
    match reached {
        Some(position) if response.status().is_success() => stamp(response, position).await,
        _ => response,
    }
}

async fn stamp(response: Response, position: i64) -> Response {
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(POSITION, HeaderValue::from(position));
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !is_json {
        return Response::from_parts(parts, body);
    }
    let bytes = match axum::body::to_bytes(body, MAX_STAMPED_BODY).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "could not read a command response to stamp its position");
            return Response::from_parts(parts, Body::empty());
        }
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut fields)) => {
            fields.insert("position".into(), position.into());
            serde_json::to_vec(&fields).map_or(bytes, Into::into)
        }
        _ => bytes,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// The position a read must see, from the query or the header (the
/// higher when both are given).
pub fn min_position(parts: &Parts) -> Result<Option<i64>, ApiError> {
    min_position_of(&parts.uri, &parts.headers)
}

/// [`min_position`] from a request's URI and headers.
pub fn min_position_of(uri: &Uri, headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let from_query = uri.query().and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .filter(|(key, _)| key == MIN_POSITION_PARAM)
            .map(|(_, value)| value.into_owned())
            .last()
    });
    let from_header = match headers.get(&MIN_POSITION) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map(str::to_owned)
                .map_err(|_| invalid("?"))?,
        ),
    };
    let mut wanted = None;
    for text in from_query.into_iter().chain(from_header) {
        let position = text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| invalid(&text))?;
        wanted = wanted.max(Some(position));
    }
    Ok(wanted)
}

fn invalid(text: &str) -> ApiError {
    let shown: String = text.chars().take(40).collect();
    ApiError::bad_request(format!(
        "min_position must be a non-negative integer (a command's X-Ledger-Position); got {shown:?}"
    ))
}

/// The 503 of a read whose position was not reached in time.
pub fn not_yet(error: NotYetApplied) -> ApiError {
    ApiError::Unavailable {
        message: error.to_string(),
        retry_after: std::time::Duration::from_secs(1),
    }
}

/// Wait (bounded) until the live feed of this process has published
/// `wanted`, so a subscriber's replay includes it.
pub async fn wait_for_live(state: &AppState, wanted: i64) -> Result<(), ApiError> {
    if state
        .hub
        .wait_for_position(wanted, state.reads.min_position_wait())
        .await
    {
        Ok(())
    } else {
        Err(not_yet(NotYetApplied {
            wanted,
            applied: state.hub.position(),
        }))
    }
}

/// The pool a GET reads from: a replica or the primary, once its views
/// have applied the request's `min_position`. Put it after the caller's
/// authentication, so an unauthenticated request never waits.
pub struct ReadPool(pub PgPool);

impl FromRequestParts<AppState> for ReadPool {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let wanted = min_position(parts)?;
        state
            .reads
            .pool_for(wanted)
            .await
            .map(ReadPool)
            .map_err(not_yet)
    }
}

/// A query string without `min_position`, for extractors that refuse
/// parameters they do not know.
pub fn without_min_position(query: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            url::form_urlencoded::parse(query.as_bytes())
                .filter(|(key, _)| key != MIN_POSITION_PARAM),
        )
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, header: Option<&str>) -> Parts {
        let mut request = axum::http::Request::builder().uri(uri);
        if let Some(value) = header {
            request = request.header(MIN_POSITION, value);
        }
        request.body(()).expect("valid request").into_parts().0
    }

    #[test]
    fn no_token_asks_for_no_position() {
        assert_eq!(min_position(&parts("/x?limit=3", None)).ok(), Some(None));
    }

    #[test]
    fn the_query_or_the_header_names_the_position_and_the_higher_wins() {
        assert_eq!(
            min_position(&parts("/x?min_position=7", None)).ok(),
            Some(Some(7))
        );
        assert_eq!(min_position(&parts("/x", Some("9"))).ok(), Some(Some(9)));
        assert_eq!(
            min_position(&parts("/x?min_position=12", Some("9"))).ok(),
            Some(Some(12))
        );
    }

    #[test]
    fn a_position_that_is_not_a_non_negative_integer_is_refused() {
        for uri in [
            "/x?min_position=-1",
            "/x?min_position=abc",
            "/x?min_position=",
        ] {
            assert!(
                matches!(
                    min_position(&parts(uri, None)),
                    Err(ApiError::BadRequest(_))
                ),
                "{uri}"
            );
        }
        assert!(matches!(
            min_position(&parts("/x", Some("1.5"))),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn other_parameters_survive_when_the_position_is_taken_out() {
        assert_eq!(
            without_min_position("limit=3&min_position=7&type=a%20b"),
            "limit=3&type=a+b"
        );
    }
}
