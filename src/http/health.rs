//! Liveness and readiness.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;
use crate::log::status::log_status;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up; says nothing about the database.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = crate::http::openapi::schemas::Health)))]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers, the log is not stalled (no committed event has
/// waited for its position longer than the configured age), and no
/// projection this process runs lags the log head by more than the
/// configured bound (read from the checkpoint table, so the projections of
/// every process on the database count).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready: the database answers and no projection lags too far", body = crate::http::openapi::schemas::Ready),
        (status = 503, description = "The database does not answer, the log is stalled, or a projection lags the head", body = crate::http::error::ErrorBody),
    ))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let status = match log_status(&state.pool, state.progress.projection_names()).await {
        Ok(status) => status,
        Err(error) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": error })),
            )
        }
    };
    let stalled_for = state.readiness_max_unpositioned_age.as_secs_f64();
    if status.oldest_unpositioned_seconds > stalled_for {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "error": format!(
                    "the log is stalled: {} committed events wait for a position, the oldest for {:.0} s (more than {stalled_for:.0} s); a transaction left open on the database cluster holds the log's horizon back (see README, Operations)",
                    status.unpositioned, status.oldest_unpositioned_seconds
                ),
                "unpositioned": status.unpositioned,
                "oldest_unpositioned_seconds": status.oldest_unpositioned_seconds,
            })),
        );
    }
    let lagging: Vec<String> = status
        .projections
        .iter()
        .filter(|(_, checkpoint, _)| status.head - checkpoint > state.readiness_max_lag)
        .map(|(name, checkpoint, _)| {
            format!(
                "{name} at {checkpoint} ({} behind)",
                status.head - checkpoint
            )
        })
        .collect();
    if !lagging.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "error": format!(
                    "projections lag the log head {} by more than {}: {}",
                    status.head,
                    state.readiness_max_lag,
                    lagging.join(", ")
                )
            })),
        );
    }
    let projections: BTreeMap<String, i64> = status
        .projections
        .into_iter()
        .map(|(name, checkpoint, _)| (name, checkpoint))
        .collect();
    let mut ready = json!({
        "status": "ready",
        "head": status.head,
        "projections": projections,
        "unpositioned": status.unpositioned,
        "oldest_unpositioned_seconds": status.oldest_unpositioned_seconds,
    });
    if state.reads.has_replicas() {
        ready["replicas"] = replicas(&state);
    }
    (StatusCode::OK, Json(ready))
}

/// Each read replica as last checked. A replica that is down or lags more
/// than the bound is out of rotation (`serving: false`) but does not make
/// the node unready: its reads go to the primary meanwhile.
fn replicas(state: &AppState) -> Value {
    let bound = state.reads.max_lag();
    state
        .reads
        .status()
        .into_iter()
        .map(|replica| {
            json!({
                "replica": replica.name,
                "reachable": replica.reachable,
                "applied": replica.applied,
                "lag": replica.lag,
                "max_lag": bound,
                "serving": replica.serving,
            })
        })
        .collect()
}

/// The OpenAPI description of these routes (assembled in `super::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz))]
pub(super) struct Api;
