//! The registry: registration with a token handed out once, re-registration
//! with it, discovery, and heartbeats that store capacity.

mod common;

use common::{event_count, spawn_app};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn registration_returns_a_token_once_and_reregistration_needs_it() {
    let app = spawn_app().await;
    let ws = app.register().await;
    let (status, body) = app
        .get(&format!("/registry/discover/{}", ws.id), &ws.token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["delivery_mode"], "push");

    let update = json!({ "id": ws.id, "url": "https://agent.example/a2a" });
    let anonymous = app
        .client
        .post(app.url("/registry/register"))
        .json(&update)
        .send()
        .await
        .expect("send");
    assert_eq!(anonymous.status().as_u16(), 401);
    let other = app.register().await;
    assert_eq!(
        app.post("/registry/register", &other.token, update.clone())
            .await
            .0,
        403
    );

    let (status, body) = app.post("/registry/register", &ws.token, update).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("auth_token").is_none(),
        "re-registration hands out no new token"
    );
    let (_, found) = app
        .get(&format!("/registry/discover/{}", ws.id), &other.token)
        .await;
    assert_eq!(found["url"], "https://agent.example/a2a");

    // The only stored form of the token is its hash.
    let stored: String = sqlx::query_scalar("select token_hash from workspaces where id = $1")
        .bind(ws.id)
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert_ne!(stored, ws.token);
    let leaked: i64 =
        sqlx::query_scalar("select count(*) from events where payload::text like '%' || $1 || '%'")
            .bind(&ws.token)
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(
        leaked, 0,
        "the token itself is never written to the event store"
    );
}

#[tokio::test]
async fn invalid_registrations_are_400_and_write_nothing() {
    let app = spawn_app().await;
    let before = event_count(&app.pool).await;
    for body in [
        json!({ "id": "nope", "url": "http://x" }),
        json!({ "id": Uuid::new_v4() }),
        json!({ "id": Uuid::new_v4(), "url": "ftp://files" }),
        json!({ "id": Uuid::new_v4(), "url": "not a url" }),
        json!({ "id": Uuid::new_v4(), "url": "http://x", "delivery_mode": "carrier-pigeon" }),
        json!({ "id": Uuid::new_v4(), "url": "http://x", "extra": true }),
    ] {
        let response = app
            .client
            .post(app.url("/registry/register"))
            .json(&body)
            .send()
            .await
            .expect("send");
        let (status, answer) = common::read(response).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(answer["error"].is_string());
    }
    assert_eq!(event_count(&app.pool).await, before);

    // The 400 for a push registration without a url says how to do without one.
    let response = app
        .client
        .post(app.url("/registry/register"))
        .json(&json!({ "id": Uuid::new_v4() }))
        .send()
        .await
        .expect("send");
    let (status, answer) = common::read(response).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"],
        "a push workspace needs a url; register with \"delivery_mode\": \"poll\" to collect work from the inbox instead"
    );

    let poll = json!({ "id": Uuid::new_v4(), "delivery_mode": "poll" });
    let response = app
        .client
        .post(app.url("/registry/register"))
        .json(&poll)
        .send()
        .await
        .expect("send");
    let (status, answer) = common::read(response).await;
    assert_eq!(status, 200, "a poll-mode workspace needs no URL: {answer}");
    assert_eq!(answer["delivery_mode"], "poll");
}

#[tokio::test]
async fn heartbeats_store_capacity_for_the_callers_own_workspace_only() {
    let app = spawn_app().await;
    let ws = app.register().await;
    let other = app.register().await;
    let (status, body) = app
        .post(
            "/registry/heartbeat",
            &ws.token,
            json!({ "workspace_id": ws.id, "active_tasks": 2, "max_concurrent": 4 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["drained"], 0);
    let capacity: (Option<i64>, Option<i64>) =
        sqlx::query_as("select active_tasks, max_concurrent from workspaces where id = $1")
            .bind(ws.id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(capacity, (Some(2), Some(4)));

    let (status, _) = app
        .post(
            "/registry/heartbeat",
            &other.token,
            json!({ "workspace_id": ws.id, "active_tasks": 0 }),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .post(
            "/registry/heartbeat",
            &ws.token,
            json!({ "workspace_id": ws.id, "active_tasks": -1 }),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = app
        .get(&format!("/registry/discover/{}", Uuid::new_v4()), &ws.token)
        .await;
    assert_eq!(status, 404);
}
