//! Schemas of the responses that handlers build ad hoc with `json!`.
//!
//! These types are never constructed: they exist so the OpenAPI document
//! can describe those bodies without the handlers changing how they build
//! them. Keep them in step with the handlers (`tests/openapi.rs` and
//! `scripts/schemathesis` check the live responses against them).
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /workspaces/{id}/delegate` → 202: a new managed delegation.
#[derive(ToSchema)]
pub struct DelegateAccepted {
    pub delegation_id: Uuid,
    /// Always `delegated`.
    #[schema(pattern = "^delegated$")]
    pub status: String,
    pub target_id: Uuid,
}

/// `POST /workspaces/{id}/delegate` → 200: the idempotency key's earlier
/// delegation, which is not failed.
#[derive(ToSchema)]
pub struct DelegateIdempotentHit {
    pub delegation_id: Uuid,
    /// The earlier delegation's current status.
    pub status: Option<String>,
    pub target_id: Uuid,
    /// Always `true`.
    pub idempotent_hit: bool,
}

/// `POST /workspaces/{id}/delegations/record` → 202.
#[derive(ToSchema)]
pub struct RecordAccepted {
    pub delegation_id: Uuid,
    /// Always `recorded`.
    #[schema(pattern = "^recorded$")]
    pub status: String,
}

/// `POST /workspaces/{id}/delegations/{delegation_id}/update` and
/// `…/cancel` → 200.
#[derive(ToSchema)]
pub struct UpdateAccepted {
    /// The delegation's status after the update.
    pub status: Option<String>,
    pub delegation_id: Uuid,
}

/// One row of `GET /workspaces/{id}/delegations`: a `delegate` row per
/// delegation (with its current status), plus a `delegate_result` row when
/// it completed or failed.
#[derive(ToSchema)]
pub struct DelegationListEntry {
    /// The activity row's id.
    pub id: Uuid,
    /// Always `delegation`.
    #[serde(rename = "type")]
    pub entry_type: String,
    /// `delegate` or `delegate_result`.
    pub method: Option<String>,
    pub source_id: Option<Uuid>,
    pub target_id: Option<Uuid>,
    pub summary: String,
    pub status: Option<String>,
    pub delegation_id: Option<Uuid>,
    /// Why it failed (failed delegations only).
    #[schema(nullable = false)]
    pub error: Option<String>,
    /// The result's first 300 characters (completed delegations only).
    #[schema(nullable = false)]
    pub response_preview: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One step of a delegation's status history.
#[derive(ToSchema)]
pub struct HistoryStep {
    pub status: String,
    pub at: String,
}

/// `GET /workspaces/{id}/delegations/{delegation_id}` → 200.
#[derive(ToSchema)]
pub struct DelegationDetail {
    pub delegation_id: Uuid,
    pub source_id: Uuid,
    pub target_id: Uuid,
    pub task: String,
    pub status: String,
    /// The result (completed delegations only).
    #[schema(nullable = false)]
    pub result: Option<String>,
    /// Why it failed or was canceled (those delegations only).
    #[schema(nullable = false)]
    pub error: Option<String>,
    /// The target's question (`input_required` delegations only).
    #[schema(nullable = false)]
    pub question: Option<String>,
    /// When a still-live managed delegation fails with `deadline exceeded`.
    #[schema(nullable = false)]
    pub deadline: Option<DateTime<Utc>>,
    /// The queue item carrying it, when it was queued.
    #[schema(nullable = false)]
    pub queue_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every status it went through, oldest first.
    pub history: Vec<HistoryStep>,
}

/// `GET /healthz` → 200.
#[derive(ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz` → 200.
#[derive(ToSchema)]
pub struct Ready {
    /// Always `ready`.
    pub status: String,
    /// The log head position.
    pub head: i64,
    /// Each projection's checkpoint (the last log position it applied).
    pub projections: BTreeMap<String, i64>,
    /// Committed events not yet given a log position.
    pub unpositioned: i64,
    /// Age of the oldest of them, in seconds (0 when none).
    pub oldest_unpositioned_seconds: f64,
    /// Each read replica (only when some are configured).
    pub replicas: Option<Vec<ReplicaReady>>,
}

/// A read replica in `/readyz`.
#[derive(ToSchema)]
pub struct ReplicaReady {
    /// Its URL, without the password.
    pub replica: String,
    /// Whether it answered its last check.
    pub reachable: bool,
    /// The log position every view has applied there.
    pub applied: i64,
    /// Positions behind the primary's views.
    pub lag: i64,
    /// The bound past which it stops serving reads.
    pub max_lag: i64,
    /// Whether reads go to it now (reachable and within the bound).
    pub serving: bool,
}
