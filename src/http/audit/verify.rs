//! `GET /audit/verify?from=&to=`: the chain walk of [`crate::log::verify`].

use axum::Json;
use serde::Deserialize;

use super::{parse_position, require_admin};
use crate::http::auth::Caller;
use crate::http::consistency::ReadPool;
use crate::http::error::ApiError;
use crate::http::extract::ApiQuery;
use crate::log::verify::{self, Verification};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifyQuery {
    /// First position to check (1 by default).
    #[param(value_type = Option<i64>, minimum = 1)]
    from: Option<String>,
    /// Last position to check (the head by default).
    #[param(value_type = Option<i64>, minimum = 1)]
    to: Option<String>,
}

/// Walk the hash chain and report the first bad entry.
#[utoipa::path(get, path = "/audit/verify", tag = "audit", security(("bearer" = [])),
    params(VerifyQuery),
    responses(
        (status = 200, description = "`ok: true` with the head, or `ok: false` with the first bad position", body = Verification),
        (status = 400, description = "from or to is not a position, or from > to", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 403, description = "A workspace token: the audit API needs the admin token", body = crate::http::error::ErrorBody),
    ))]
pub(super) async fn verify_chain(
    caller: Caller,
    ApiQuery(query): ApiQuery<VerifyQuery>,
    ReadPool(reads): ReadPool,
) -> Result<Json<Verification>, ApiError> {
    require_admin(caller)?;
    let from = query
        .from
        .as_deref()
        .map(|from| parse_position("from", from, 1))
        .transpose()?;
    let to = query
        .to
        .as_deref()
        .map(|to| parse_position("to", to, 1))
        .transpose()?;
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(ApiError::bad_request(format!(
                "from ({from}) must not be after to ({to})"
            )));
        }
    }
    Ok(Json(verify::verify(&reads, from, to).await?))
}
