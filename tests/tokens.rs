//! Tokens can be rotated by their workspace and revoked by the admin, and a
//! replaced token is dead at once on every node; the admin token must be
//! long; the generated admin token file is private.

mod common;

use common::{spawn_app, spawn_app_on, TestApp, Workspace};
use serde_json::json;

async fn can_read(app: &TestApp, ws: &Workspace, token: &str) -> u16 {
    app.get(&format!("/workspaces/{}/delegations", ws.id), token)
        .await
        .0
}

#[tokio::test]
async fn a_rotated_token_is_dead_at_once_on_every_node_and_the_new_one_works() {
    let a = spawn_app().await;
    // A second node on the same database.
    let b = spawn_app_on(a.database_url.clone()).await;
    let ws = a.register().await;
    assert_eq!(can_read(&b, &ws, &ws.token).await, 200);

    let (status, body) = a.post("/registry/rotate-token", &ws.token, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], json!(ws.id));
    let new = body["auth_token"]
        .as_str()
        .expect("a new token")
        .to_string();
    assert_ne!(new, ws.token);

    for node in [&a, &b] {
        assert_eq!(can_read(node, &ws, &ws.token).await, 401, "the old token");
        assert_eq!(can_read(node, &ws, &new).await, 200, "the new token");
    }
    // Neither token is stored, only hashes.
    let stored: i64 =
        sqlx::query_scalar("select count(*) from events where payload::text like '%' || $1 || '%'")
            .bind(&new)
            .fetch_one(&a.pool)
            .await
            .expect("count");
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn rotation_without_a_body_works_too() {
    let app = spawn_app().await;
    let ws = app.register().await;
    let response = app
        .client
        .post(app.url("/registry/rotate-token"))
        .bearer_auth(&ws.token)
        .send()
        .await
        .expect("sent");
    let (status, body) = common::read(response).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["auth_token"].is_string());
}

#[tokio::test]
async fn the_admin_revokes_a_token_and_only_a_rotation_by_the_admin_brings_one_back() {
    let app = spawn_app().await;
    let ws = app.register().await;
    let (status, body) = app
        .post(
            "/registry/revoke-token",
            &app.admin_token,
            json!({ "workspace_id": ws.id }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], true);
    assert_eq!(can_read(&app, &ws, &ws.token).await, 401);
    // The workspace cannot rotate itself back in: it has no token.
    let (status, _) = app
        .post("/registry/rotate-token", &ws.token, json!({}))
        .await;
    assert_eq!(status, 401);

    let (status, body) = app
        .post(
            "/registry/rotate-token",
            &app.admin_token,
            json!({ "workspace_id": ws.id }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let reissued = body["auth_token"].as_str().expect("token");
    assert_eq!(can_read(&app, &ws, reissued).await, 200);
}

#[tokio::test]
async fn a_workspace_can_neither_revoke_nor_rotate_another_workspaces_token() {
    let app = spawn_app().await;
    let mine = app.register().await;
    let theirs = app.register().await;
    let (status, _) = app
        .post(
            "/registry/revoke-token",
            &mine.token,
            json!({ "workspace_id": theirs.id }),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .post(
            "/registry/rotate-token",
            &mine.token,
            json!({ "workspace_id": theirs.id }),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(can_read(&app, &theirs, &theirs.token).await, 200);
    // The admin must say whose token.
    let (status, body) = app
        .post("/registry/rotate-token", &app.admin_token, json!({}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("workspace_id"));
    let (status, _) = app
        .post(
            "/registry/revoke-token",
            &app.admin_token,
            json!({ "workspace_id": uuid::Uuid::new_v4() }),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_short_admin_token_is_refused_at_start() {
    let config = ledger::config::Config {
        database_url: Some(common::fresh_database_url().await),
        addr: "127.0.0.1:0".parse().expect("addr"),
        admin_token: Some("admin-too-short".into()),
        ..Default::default()
    };
    let error = match ledger::app::Application::build(config).await {
        Ok(_) => panic!("a 15-character admin token was accepted"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("at least 32 characters"), "{error}");
}

#[test]
fn a_private_file_is_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("admin-token");
    ledger::app::write_private(&path, "secret\n").expect("written");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "secret\n");
    // Rewriting keeps it private.
    ledger::app::write_private(&path, "other\n").expect("rewritten");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
