//! Liveness and readiness.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::log::status::log_status;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

// The bodies' fields are declared in alphabetical order: that is the order
// they were always written in (as `serde_json` maps), kept byte for byte.

/// `GET /healthz` → 200.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// `GET /readyz` → 200.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// The log head position.
    pub head: i64,
    /// Age of the oldest of them, in seconds (0 when none).
    pub oldest_unpositioned_seconds: f64,
    /// Each projection's checkpoint (the last log position it applied).
    pub projections: BTreeMap<String, i64>,
    /// Each read replica (only when some are configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<ReplicaReady>>,
    /// Always `ready`.
    pub status: &'static str,
    /// Committed events not yet given a log position.
    pub unpositioned: i64,
}

/// A read replica in `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaReady {
    /// The log position every view has applied there.
    pub applied: i64,
    /// Positions behind the primary's views.
    pub lag: i64,
    /// The bound past which it stops serving reads.
    pub max_lag: i64,
    /// Whether it answered its last check.
    pub reachable: bool,
    /// Its URL, without the password.
    pub replica: String,
    /// Whether reads go to it now (reachable and within the bound).
    pub serving: bool,
}

/// `GET /readyz` → 503: the error sentence, and how stalled the log is
/// when that is the reason (described as the shared `ErrorBody`, whose
/// `error` it carries).
#[derive(Debug, Serialize)]
struct NotReady {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_unpositioned_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unpositioned: Option<i64>,
}

impl NotReady {
    fn because(error: String) -> Self {
        Self {
            error,
            oldest_unpositioned_seconds: None,
            unpositioned: None,
        }
    }
}

impl IntoResponse for NotReady {
    fn into_response(self) -> Response {
        (StatusCode::SERVICE_UNAVAILABLE, Json(self)).into_response()
    }
}

/// The process is up; says nothing about the database.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database answers, the log is not stalled (no committed event has
/// waited for its position longer than the configured age), and no
/// projection this process runs lags the log head by more than the
/// configured bound (read from the checkpoint table, so the projections of
/// every process on the database count).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready: the database answers and no projection lags too far", body = Ready),
        (status = 503, description = "The database does not answer, the log is stalled, or a projection lags the head", body = crate::http::error::ErrorBody),
    ))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, NotReady> {
    let status = log_status(&state.pool, state.progress.projection_names())
        .await
        .map_err(NotReady::because)?;
    let stalled_for = state.readiness_max_unpositioned_age.as_secs_f64();
    if status.oldest_unpositioned_seconds > stalled_for {
        return Err(NotReady {
            error: format!(
                "the log is stalled: {} committed events wait for a position, the oldest for {:.0} s (more than {stalled_for:.0} s); a transaction left open on the database cluster holds the log's horizon back (see README, Operations)",
                status.unpositioned, status.oldest_unpositioned_seconds
            ),
            unpositioned: Some(status.unpositioned),
            oldest_unpositioned_seconds: Some(status.oldest_unpositioned_seconds),
        });
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
        return Err(NotReady::because(format!(
            "projections lag the log head {} by more than {}: {}",
            status.head,
            state.readiness_max_lag,
            lagging.join(", ")
        )));
    }
    Ok(Json(Ready {
        head: status.head,
        oldest_unpositioned_seconds: status.oldest_unpositioned_seconds,
        projections: status
            .projections
            .into_iter()
            .map(|(name, checkpoint, _)| (name, checkpoint))
            .collect(),
        replicas: state.reads.has_replicas().then(|| replicas(&state)),
        status: "ready",
        unpositioned: status.unpositioned,
    }))
}

/// Each read replica as last checked. A replica that is down or lags more
/// than the bound is out of rotation (`serving: false`) but does not make
/// the node unready: its reads go to the primary meanwhile.
fn replicas(state: &AppState) -> Vec<ReplicaReady> {
    let bound = state.reads.max_lag();
    state
        .reads
        .status()
        .into_iter()
        .map(|replica| ReplicaReady {
            applied: replica.applied,
            lag: replica.lag,
            max_lag: bound,
            reachable: replica.reachable,
            replica: replica.name,
            serving: replica.serving,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_keeps_its_sorted_field_order_and_shows_replicas_only_when_there_are_some() {
        let ready = |replicas| Ready {
            head: 3,
            oldest_unpositioned_seconds: 0.0,
            projections: BTreeMap::from([("delegations".to_string(), 3)]),
            replicas,
            status: "ready",
            unpositioned: 0,
        };
        let replica = ReplicaReady {
            applied: 2,
            lag: 1,
            max_lag: 10,
            reachable: true,
            replica: "postgres://replica/ledger".into(),
            serving: true,
        };
        for body in [ready(None), ready(Some(vec![replica]))] {
            let sent = serde_json::to_string(&body).expect("serializes");
            let sorted = serde_json::to_value(&body).expect("serializes").to_string();
            assert_eq!(sent, sorted);
            assert_eq!(sent.contains("\"replicas\""), body.replicas.is_some());
        }
        let stalled = NotReady {
            error: "stalled".into(),
            oldest_unpositioned_seconds: Some(90.0),
            unpositioned: Some(2),
        };
        let sent = serde_json::to_string(&stalled).expect("serializes");
        assert_eq!(
            sent,
            r#"{"error":"stalled","oldest_unpositioned_seconds":90.0,"unpositioned":2}"#
        );
        let lagging = serde_json::to_string(&NotReady::because("lag".into())).expect("serializes");
        assert_eq!(lagging, r#"{"error":"lag"}"#);
    }
}
