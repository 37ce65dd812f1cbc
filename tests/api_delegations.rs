//! Delegations over HTTP: delegate, record, update, list, get — with the
//! rules of docs/api.md, and nothing written on bad input.

mod common;

use common::{event_count, spawn_app};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn a_delegation_is_accepted_pending_and_visible_at_once() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let (status, body) = app
        .post(
            &format!("/workspaces/{}/delegate", a.id),
            &a.token,
            json!({ "target_id": b.id, "task": "summarise the logs" }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "delegated");
    assert_eq!(body["target_id"], b.id.to_string());
    let id = body["delegation_id"].as_str().expect("delegation_id");

    // Read-your-writes: the GET right after the POST sees it.
    let (status, got) = app
        .get(&format!("/workspaces/{}/delegations/{id}", a.id), &a.token)
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["status"], "pending");
    assert_eq!(got["task"], "summarise the logs");
    assert_eq!(got["history"][0]["status"], "pending");

    let (status, list) = app
        .get(&format!("/workspaces/{}/delegations", a.id), &a.token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["method"], "delegate");
    assert_eq!(list[0]["status"], "pending");
    assert_eq!(list[0]["delegation_id"], id);
}

#[tokio::test]
async fn bad_delegate_requests_are_rejected_and_write_nothing() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let path = format!("/workspaces/{}/delegate", a.id);
    let before = event_count(&app.pool).await;
    let cases = [
        (json!({ "target_id": a.id, "task": "loop" }), 400, "itself"),
        (
            json!({ "target_id": "not-a-uuid", "task": "x" }),
            400,
            "UUID",
        ),
        (json!({ "target_id": b.id, "task": "   " }), 400, "task"),
        (
            json!({ "target_id": Uuid::new_v4(), "task": "x" }),
            404,
            "not found",
        ),
        (json!({ "target_id": b.id }), 400, "task"),
        (
            json!({ "target_id": b.id, "task": "x", "surprise": 1 }),
            400,
            "surprise",
        ),
        (
            json!({ "target_id": b.id, "task": "x".repeat(70_000) }),
            400,
            "task",
        ),
        (
            json!({ "target_id": b.id, "task": "x", "idempotency_key": "" }),
            400,
            "key",
        ),
        (
            json!({ "target_id": b.id, "task": "x", "idempotency_key": "k".repeat(256) }),
            400,
            "key",
        ),
        (
            json!({ "target_id": b.id, "task": "x".repeat(70_000), "idempotency_key": "k" }),
            400,
            "task",
        ),
    ];
    for (body, expected, mentions) in cases {
        let (status, answer) = app.post(&path, &a.token, body.clone()).await;
        assert_eq!(status, expected, "{body} → {answer}");
        let error = answer["error"].as_str().expect("error sentence");
        assert!(
            error.to_lowercase().contains(&mentions.to_lowercase()),
            "{error:?} should mention {mentions}"
        );
    }
    let response = app
        .client
        .post(app.url(&path))
        .bearer_auth(&a.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 400);
    let response = app
        .client
        .post(app.url(&path))
        .bearer_auth(&a.token)
        .header("content-type", "application/json")
        .body(vec![b'a'; 2 * 1024 * 1024])
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(
        event_count(&app.pool).await,
        before,
        "rejected requests wrote events"
    );
}

#[tokio::test]
async fn callers_without_a_valid_token_or_for_another_workspace_get_401_or_404() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let path = format!("/workspaces/{}/delegate", a.id);
    let body = json!({ "target_id": b.id, "task": "x" });
    let response = app
        .client
        .post(app.url(&path))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(app.post(&path, "wrong-token", body.clone()).await.0, 401);
    // b's token on a's resources: as if they did not exist.
    assert_eq!(app.post(&path, &b.token, body.clone()).await.0, 404);
    let delegation = app.record(&a, b.id, "task").await;
    let (status, _) = app
        .get(
            &format!("/workspaces/{}/delegations/{delegation}", b.id),
            &b.token,
        )
        .await;
    assert_eq!(status, 200, "the target sees a delegation addressed to it");
    let c = app.register().await;
    let (status, _) = app
        .get(
            &format!("/workspaces/{}/delegations/{delegation}", c.id),
            &c.token,
        )
        .await;
    assert_eq!(status, 404, "a third workspace does not");
    let (status, _) = app
        .get(
            &format!("/workspaces/{}/delegations/{delegation}", a.id),
            &c.token,
        )
        .await;
    assert_eq!(status, 404);
    // The admin may act for anyone.
    let (status, _) = app
        .get(
            &format!("/workspaces/{}/delegations/{delegation}", a.id),
            &app.admin_token,
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_idempotency_key_returns_the_live_delegation_and_is_freed_by_failure() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let path = format!("/workspaces/{}/delegate", a.id);
    let body = json!({ "target_id": b.id, "task": "once", "idempotency_key": "k-1" });
    let (status, first) = app.post(&path, &a.token, body.clone()).await;
    assert_eq!(status, 202);
    let (status, again) = app.post(&path, &a.token, body.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["idempotent_hit"], true);
    assert_eq!(again["delegation_id"], first["delegation_id"]);
    assert_eq!(again["status"], "pending");
    assert_eq!(again["target_id"], b.id.to_string());

    let id: Uuid = first["delegation_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("id");
    let (status, _) = app
        .update(
            &a,
            id,
            json!({ "status": "failed", "error": "target gone" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, retry) = app.post(&path, &a.token, body).await;
    assert_eq!(status, 202, "a failed delegation frees its key: {retry}");
    assert_ne!(retry["delegation_id"], first["delegation_id"]);
}

#[tokio::test]
async fn concurrent_requests_with_one_idempotency_key_create_one_delegation() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let path = format!("/workspaces/{}/delegate", a.id);
    let body = json!({ "target_id": b.id, "task": "race", "idempotency_key": "same" });
    let requests = (0..8).map(|_| app.post(&path, &a.token, body.clone()));
    let answers = futures::future::join_all(requests).await;
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for (status, answer) in answers {
        assert!(status == 202 || status == 200, "{status} {answer}");
        if status == 202 {
            created += 1;
        }
        ids.insert(answer["delegation_id"].as_str().expect("id").to_string());
    }
    assert_eq!(created, 1, "exactly one request creates the delegation");
    assert_eq!(ids.len(), 1, "every request names the same delegation");
    let sent: i64 =
        sqlx::query_scalar("select count(*) from events where event_type = 'DelegationSent'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(sent, 1);
}

#[tokio::test]
async fn recording_is_idempotent_for_the_same_content_and_409_for_other_content() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let path = format!("/workspaces/{}/delegations/record", a.id);
    let id = Uuid::new_v4();
    let body = json!({ "target_id": b.id, "task": "t", "delegation_id": id });
    let (status, answer) = app.post(&path, &a.token, body.clone()).await;
    assert_eq!((status, answer["status"].as_str()), (202, Some("recorded")));
    let before = event_count(&app.pool).await;
    assert_eq!(app.post(&path, &a.token, body).await.0, 202);
    assert_eq!(
        event_count(&app.pool).await,
        before,
        "recording again wrote nothing"
    );
    let (status, answer) = app
        .post(
            &path,
            &a.token,
            json!({ "target_id": b.id, "task": "other", "delegation_id": id }),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    let (_, got) = app
        .get(&format!("/workspaces/{}/delegations/{id}", a.id), &a.token)
        .await;
    assert_eq!(
        got["status"], "dispatched",
        "a recorded delegation starts dispatched"
    );
}

#[tokio::test]
async fn updates_follow_the_lifecycle_and_terminal_states_are_final() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let id = app.record(&a, b.id, "work").await;
    for status in ["received", "in_progress"] {
        let (code, answer) = app.update(&a, id, json!({ "status": status })).await;
        assert_eq!(code, 200, "{answer}");
        assert_eq!(answer["status"], status);
    }
    let (code, answer) = app.update(&a, id, json!({ "status": "dispatched" })).await;
    assert_eq!(code, 409, "going back is refused: {answer}");
    assert_eq!(answer["current_status"], "in_progress");

    let done = json!({ "status": "completed", "response_preview": "42" });
    assert_eq!(app.update(&a, id, done.clone()).await.0, 200);
    let before = event_count(&app.pool).await;
    assert_eq!(
        app.update(&a, id, done).await.0,
        200,
        "repeating the terminal update is a no-op"
    );
    assert_eq!(event_count(&app.pool).await, before);
    let (code, answer) = app
        .update(&a, id, json!({ "status": "failed", "error": "late" }))
        .await;
    assert_eq!(code, 409);
    assert_eq!(answer["current_status"], "completed");
    let (code, _) = app
        .update(
            &a,
            id,
            json!({ "status": "completed", "response_preview": "43" }),
        )
        .await;
    assert_eq!(
        code, 409,
        "a different result for a completed delegation is a conflict"
    );
    let (code, answer) = app.update(&a, id, json!({ "status": "paused" })).await;
    assert_eq!(code, 400, "{answer}");

    let (_, got) = app
        .get(&format!("/workspaces/{}/delegations/{id}", a.id), &a.token)
        .await;
    assert_eq!(got["status"], "completed");
    assert_eq!(got["result"], "42");
    let steps: Vec<&str> = got["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert_eq!(
        steps,
        ["dispatched", "received", "in_progress", "completed"]
    );

    assert_eq!(
        app.update(&a, Uuid::new_v4(), json!({ "status": "received" }))
            .await
            .0,
        404
    );
    let c = app.register().await;
    assert_eq!(
        app.update(&c, id, json!({ "status": "received" })).await.0,
        404,
        "a stranger cannot update it"
    );
}

#[tokio::test]
async fn the_list_shows_current_status_and_results_newest_first() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let first = app.record(&a, b.id, "first").await;
    let second = app.record(&a, b.id, "second").await;
    let long = "r".repeat(1000);
    app.update(
        &a,
        first,
        json!({ "status": "completed", "response_preview": long }),
    )
    .await;
    app.update(&a, second, json!({ "status": "failed", "error": "boom" }))
        .await;

    let (status, list) = app
        .get(&format!("/workspaces/{}/delegations", a.id), &a.token)
        .await;
    assert_eq!(status, 200);
    let rows = list.as_array().expect("array");
    assert_eq!(rows.len(), 4, "{list}");
    // Newest first: second's result, first's result, then the two delegate rows.
    assert_eq!(rows[0]["method"], "delegate_result");
    assert_eq!(rows[0]["status"], "failed");
    assert_eq!(rows[0]["error"], "boom");
    assert_eq!(rows[1]["method"], "delegate_result");
    assert_eq!(
        rows[1]["response_preview"].as_str().map(str::len),
        Some(300)
    );
    assert_eq!(rows[2]["delegation_id"], second.to_string());
    assert_eq!(
        rows[2]["status"], "failed",
        "the delegate row carries the current status"
    );
    assert_eq!(rows[3]["delegation_id"], first.to_string());
    assert_eq!(rows[3]["status"], "completed");
    for row in rows {
        assert_eq!(row["type"], "delegation");
    }

    let (_, limited) = app
        .get(
            &format!("/workspaces/{}/delegations?limit=1", a.id),
            &a.token,
        )
        .await;
    assert_eq!(limited.as_array().map(Vec::len), Some(1));
    let (status, _) = app
        .get(
            &format!("/workspaces/{}/delegations?limit=zero", a.id),
            &a.token,
        )
        .await;
    assert_eq!(status, 400);
    let (status, huge) = app
        .get(
            &format!("/workspaces/{}/delegations?limit=99999999", a.id),
            &a.token,
        )
        .await;
    assert_eq!(status, 200, "a huge limit is clamped: {huge}");
}
