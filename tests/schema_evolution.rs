//! Event schema evolution: events stored by older code stay readable on
//! every path. A `DelegationSent` and a `DelegationCompleted` at
//! `event_version` 0.9 — before `task_preview` and `response_preview`
//! existed — and a `QueueItemCompleted` at 1.0 — its outcome stored as the
//! views' JSON, before it was typed — are inserted directly into the event
//! table (the sequencer positions whatever is there) and must still
//!
//! * replay: the command bus loads the aggregate and decides on it;
//! * audit: `/audit/streams/...` folds the same state;
//! * project: the runners apply them, and a rebuild gives the same views;
//! * react: the dispatcher's log rule ends the delegation of an old
//!   completed queue item with the outcome it stored;
//!
//! while the stored rows themselves stay exactly as written (the hash chain
//! covers them, so they are upcast on read, never rewritten).

mod common;

use std::sync::Arc;
use std::time::Duration;

use aggregates::delegation::Delegation;
use aggregates::queue_item::{QueueItem, QueueItemCommand, QueueItemError, QueueItemStatus};
use aggregates::upcasters::UNRECORDED_CANCEL_REASON;
use common::TestApp;
use ledger::commands::{CommandBus, CommandError};
use ledger::log::Progress;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

const OLD_VERSION: &str = "0.9";

/// Wait until every event is positioned and every projection applied it.
async fn settle(pool: &PgPool) {
    common::settle(pool).await
}

/// Write a delegation's event row the way the 0.9 code did.
async fn insert_old(pool: &PgPool, delegation: Uuid, sequence: i64, payload: Value) {
    insert_event(
        pool,
        "delegation",
        delegation,
        sequence,
        OLD_VERSION,
        payload,
    )
    .await
}

/// Write an event row as code writing `version` did.
async fn insert_event(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: Uuid,
    sequence: i64,
    version: &str,
    payload: Value,
) {
    let event_type = payload
        .as_object()
        .and_then(|tagged| tagged.keys().next())
        .expect("tagged payload")
        .clone();
    sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         values ($1, $2, $3, $4, $5, $6, '{}')",
    )
    .bind(aggregate_type)
    .bind(aggregate_id.to_string())
    .bind(sequence)
    .bind(event_type)
    .bind(version)
    .bind(payload)
    .execute(pool)
    .await
    .expect("insert an old event");
}

/// `DelegationSent` 0.9: no `task_preview`.
fn sent_v0_9(delegation: Uuid, source: Uuid, target: Uuid, task: &str) -> Value {
    json!({ "DelegationSent": {
        "delegation_id": delegation,
        "source_id": source,
        "target_id": target,
        "task": task,
        "origin": "recorded",
        "idempotency_key": null,
        "actor": { "kind": "workspace", "id": source },
        "at": "2024-05-01T12:00:00Z",
    }})
}

/// `DelegationCompleted` 0.9: no `response_preview`.
fn completed_v0_9(delegation: Uuid, source: Uuid, target: Uuid, result: &str) -> Value {
    json!({ "DelegationCompleted": {
        "delegation_id": delegation,
        "source_id": source,
        "target_id": target,
        "result": result,
        "actor": { "kind": "workspace", "id": target },
        "at": "2024-05-01T12:05:00Z",
    }})
}

async fn stored(pool: &PgPool, delegation: Uuid) -> Vec<(String, String)> {
    sqlx::query_as(
        "select event_version, payload::text from events where aggregate_id = $1 order by sequence",
    )
    .bind(delegation.to_string())
    .fetch_all(pool)
    .await
    .expect("stored events")
}

async fn views(pool: &PgPool) -> (String, String) {
    sqlx::query_as(
        "select (select coalesce(json_agg(d order by d.delegation_id), '[]')::text from delegations d), \
         (select coalesce(json_agg(a order by a.log_position, a.ordinal), '[]')::text from activity_logs a)",
    )
    .fetch_one(pool)
    .await
    .expect("views")
}

async fn audit_stream(app: &TestApp, delegation: Uuid) -> Value {
    let (status, body) = app
        .get(
            &format!("/audit/streams/delegation/{delegation}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn a_0_9_delegation_sent_projects_audits_and_takes_new_commands() {
    let app = common::spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let delegation = Uuid::new_v4();
    let task = format!(
        "Summarise the quarterly report. {}",
        "Details follow. ".repeat(10)
    );
    insert_old(
        &app.pool,
        delegation,
        1,
        sent_v0_9(delegation, a.id, b.id, &task),
    )
    .await;
    let as_written = stored(&app.pool, delegation).await;
    settle(&app.pool).await;

    // projects
    let row: (String, String, Uuid, Uuid) = sqlx::query_as(
        "select task, status, source_id, target_id from delegations where delegation_id = $1",
    )
    .bind(delegation)
    .fetch_one(&app.pool)
    .await
    .expect("the delegations view has the old delegation");
    assert_eq!(row, (task.clone(), "dispatched".to_string(), a.id, b.id));
    let (status, body) = app
        .get(
            &format!("/workspaces/{}/delegations/{delegation}", a.id),
            &a.token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["task"], json!(task));

    // audits
    let audit = audit_stream(&app, delegation).await;
    assert_eq!(audit["events"][0]["event_version"], json!("0.9"));
    assert_eq!(
        audit["events"][0]["payload"],
        sent_v0_9(delegation, a.id, b.id, &task),
        "events are shown as stored, not upcast"
    );
    assert_eq!(audit["state"]["task"], json!(task));
    assert_eq!(audit["state"]["status"], json!("dispatched"));

    // replays: the bus folds the 0.9 event and decides on the new command
    let (status, body) = app
        .update(
            &b,
            delegation,
            json!({ "status": "completed", "response_preview": "revenue grew" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("completed"));
    settle(&app.pool).await;
    let after = stored(&app.pool, delegation).await;
    assert_eq!(after[0], as_written[0], "the old row is never rewritten");
    assert_eq!(after.len(), 2);
    assert_eq!(
        after[1].0, "1.0",
        "new events are written at the current version"
    );

    let audit = audit_stream(&app, delegation).await;
    assert_eq!(audit["state"]["status"], json!("completed"));
    assert_eq!(audit["state"]["result"], json!("revenue grew"));
    let (_, verification) = app.get("/audit/verify", &app.admin_token).await;
    assert_eq!(verification["ok"], json!(true), "{verification}");
}

#[tokio::test]
async fn a_0_9_delegation_completed_gets_its_response_preview_from_the_result_everywhere() {
    let app = common::spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let delegation = Uuid::new_v4();
    let result = "r".repeat(250) + &"s".repeat(150);
    let preview = "r".repeat(250) + &"s".repeat(50);
    insert_old(
        &app.pool,
        delegation,
        1,
        sent_v0_9(delegation, a.id, b.id, "the task"),
    )
    .await;
    insert_old(
        &app.pool,
        delegation,
        2,
        completed_v0_9(delegation, a.id, b.id, &result),
    )
    .await;
    settle(&app.pool).await;

    // projects: the preview the 1.0 event would have carried
    let row: (String, Option<String>, Option<String>) = sqlx::query_as(
        "select status, result, response_preview from delegations where delegation_id = $1",
    )
    .bind(delegation)
    .fetch_one(&app.pool)
    .await
    .expect("delegations row");
    assert_eq!(
        row,
        (
            "completed".to_string(),
            Some(result.clone()),
            Some(preview.clone())
        )
    );
    let delegate_row: Option<String> = sqlx::query_scalar(
        "select response_body->>'text' from activity_logs where delegation_id = $1 and method = 'delegate'",
    )
    .bind(delegation)
    .fetch_one(&app.pool)
    .await
    .expect("activity row");
    assert_eq!(delegate_row, Some(preview));

    // audits
    let audit = audit_stream(&app, delegation).await;
    assert_eq!(audit["as_of_position"], json!(4));
    assert_eq!(audit["state"]["status"], json!("completed"));
    assert_eq!(audit["state"]["result"], json!(result));

    // replays: the bus sees a completed delegation and refuses to fail it
    let (status, body) = app
        .update(
            &b,
            delegation,
            json!({ "status": "failed", "error": "late" }),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["current_status"], json!("completed"));

    // projects again from scratch: a rebuild gives the same views
    let live = views(&app.pool).await;
    for projection in projections::all() {
        ledger::projection_runner::rebuild(&app.pool, projection.as_ref())
            .await
            .expect("rebuild");
    }
    assert_eq!(views(&app.pool).await, live);
}

/// A queue item's three events as the 1.0 code wrote them: enqueued and
/// dispatched for `delegation`, then completed with `response_body` — the
/// outcome as the JSON the views show.
fn queue_item_v1_0(
    queue: Uuid,
    caller: Uuid,
    target: Uuid,
    delegation: Uuid,
    response_body: &Value,
) -> [Value; 3] {
    let ids = json!({
        "queue_id": queue,
        "target_id": target,
        "caller_id": caller,
        "delegation_id": delegation,
    });
    let with = |fields: Value| {
        let mut all = ids.clone();
        if let (Some(all), Value::Object(fields)) = (all.as_object_mut(), fields) {
            all.extend(fields);
        }
        all
    };
    [
        json!({ "QueueItemEnqueued": with(json!({
            "priority": "task",
            "method": "message/send",
            "body": { "delegation_id": delegation },
            "idempotency_key": null,
            "expires_at": null,
            "at": "2024-05-01T12:00:00Z",
        })) }),
        json!({ "QueueItemDispatched": with(json!({
            "attempt": 1,
            "at": "2024-05-01T12:01:00Z",
        })) }),
        json!({ "QueueItemCompleted": with(json!({
            "response_body": response_body,
            "at": "2024-05-01T12:02:00Z",
        })) }),
    ]
}

async fn stored_queue_item(pool: &PgPool, queue: Uuid) -> Vec<(String, String)> {
    sqlx::query_as(
        "select event_version, payload::text from events where aggregate_type = 'queue_item' \
         and aggregate_id = $1 order by sequence",
    )
    .bind(queue.to_string())
    .fetch_all(pool)
    .await
    .expect("stored queue item events")
}

async fn queue_view(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "select coalesce(json_agg(q order by q.queue_id), '[]')::text from a2a_queue q",
    )
    .fetch_one(pool)
    .await
    .expect("queue view")
}

/// The old code completed the queue item and then ended the delegation in
/// a second commit; a crash between the two left items like these. The
/// current dispatcher reads them, ends each delegation with the outcome
/// its item stored, and every reader shows the item as before.
#[tokio::test]
async fn a_1_0_queue_item_completed_ends_its_delegation_and_shows_the_json_it_stored() {
    let app = common::spawn_dispatching_app(|_| {}).await;
    let a = app.register().await;
    let b = app.register().await;
    let bus = CommandBus::new(
        app.pool.clone(),
        Arc::new(Progress::new(Vec::new())),
        Duration::from_secs(1),
    );
    let cases = [
        (json!({ "text": "worth the wait" }), "completed"),
        (
            json!({ "error": "the agent's task t-1 ended failed: no" }),
            "failed",
        ),
        (Value::Null, "canceled"),
    ];
    let mut items = Vec::new();
    for (body, status) in &cases {
        // Recorded, so only the log rule acts on it (nothing is sent).
        let delegation = app.record(&a, b.id, "the task").await;
        let queue = Uuid::new_v4();
        for (sequence, payload) in (1..).zip(queue_item_v1_0(queue, a.id, b.id, delegation, body)) {
            insert_event(&app.pool, "queue_item", queue, sequence, "1.0", payload).await;
        }
        items.push((delegation, queue, body.clone(), *status));
    }

    for (delegation, queue, body, status) in &items {
        let as_written = stored_queue_item(&app.pool, *queue).await;

        // reacts: the log rule ends the delegation with the stored outcome
        app.wait_status(*delegation, status).await;
        let ended: Delegation = bus.load(&delegation.to_string()).await.expect("load");
        match *status {
            "completed" => assert_eq!(ended.result(), Some("worth the wait")),
            "failed" => assert_eq!(ended.error(), Some("the agent's task t-1 ended failed: no")),
            _ => assert_eq!(ended.cancel_reason(), Some(UNRECORDED_CANCEL_REASON)),
        }

        // replays (cqrs-es load, and the group commit's load and decision)
        let item: QueueItem = bus.load(&queue.to_string()).await.expect("load");
        assert_eq!(item.status(), Some(QueueItemStatus::Completed));
        assert_eq!(item.response_body(), Some(body).filter(|b| !b.is_null()));
        let again = bus
            .execute::<QueueItem>(
                &queue.to_string(),
                QueueItemCommand::Complete {
                    outcome: aggregates::delegation::Outcome::Completed {
                        result: "again".into(),
                    },
                    at: chrono::Utc::now(),
                },
                Default::default(),
            )
            .await;
        assert!(
            matches!(
                again,
                Err(CommandError::Rejected(QueueItemError::NotDispatched {
                    current: QueueItemStatus::Completed
                }))
            ),
            "{again:?}"
        );

        // projects: the queue API shows the JSON that was stored
        let (code, shown) = app
            .get(&format!("/workspaces/{}/a2a/queue/{queue}", b.id), &b.token)
            .await;
        assert_eq!(code, 200, "{shown}");
        assert_eq!(shown["status"], json!("completed"));
        assert_eq!(
            shown.get("response_body"),
            Some(body).filter(|b| !b.is_null())
        );

        // audits: events as stored, the state as the write path folds it
        let (code, audit) = app
            .get(
                &format!("/audit/streams/queue_item/{queue}"),
                &app.admin_token,
            )
            .await;
        assert_eq!(code, 200, "{audit}");
        assert_eq!(audit["events"][2]["event_version"], json!("1.0"));
        assert_eq!(
            audit["events"][2]["payload"]["QueueItemCompleted"]["response_body"], *body,
            "events are shown as stored, not upcast"
        );
        assert_eq!(audit["state"]["response_body"], *body);
        assert_eq!(audit["state"], serde_json::to_value(&item).unwrap());

        assert_eq!(
            stored_queue_item(&app.pool, *queue).await,
            as_written,
            "the old rows are never rewritten"
        );
    }

    // projects again from scratch: a rebuild gives the same views
    settle(&app.pool).await;
    let live = (views(&app.pool).await, queue_view(&app.pool).await);
    for projection in projections::all() {
        ledger::projection_runner::rebuild(&app.pool, projection.as_ref())
            .await
            .expect("rebuild");
    }
    assert_eq!((views(&app.pool).await, queue_view(&app.pool).await), live);
    let (_, verification) = app.get("/audit/verify", &app.admin_token).await;
    assert_eq!(verification["ok"], json!(true), "{verification}");
}
