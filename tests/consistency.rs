//! Consistency tokens: every command's answer names the log position its
//! events reached (`X-Ledger-Position`, and `position` in the body); every
//! read may name a position it must see (`min_position`,
//! `X-Ledger-Min-Position`) and is served only once the views have applied
//! it — or answers 503 with `Retry-After` after a bounded wait.

mod common;

use std::time::Duration;

use common::{fresh_database_url, spawn_app_on, spawn_app_with, TestApp, Workspace};
use serde_json::{json, Value};
use uuid::Uuid;

/// Record a delegation from `source` to `target`: its id and the answer's
/// position (header and body, checked to agree).
async fn record(app: &TestApp, source: &Workspace, target: Uuid) -> (Uuid, i64) {
    let delegation = Uuid::new_v4();
    let response = app
        .client
        .post(app.url(&format!("/workspaces/{}/delegations/record", source.id)))
        .bearer_auth(&source.token)
        .json(&json!({ "delegation_id": delegation, "target_id": target, "task": "token test" }))
        .send()
        .await
        .expect("record request");
    assert_eq!(response.status().as_u16(), 202);
    let header: i64 = response
        .headers()
        .get("x-ledger-position")
        .expect("a command's answer carries X-Ledger-Position")
        .to_str()
        .expect("ascii header")
        .parse()
        .expect("the position is an integer");
    let body: Value = response.json().await.expect("json body");
    assert_eq!(
        body["position"],
        json!(header),
        "body and header name one position"
    );
    assert_eq!(
        body["delegation_id"],
        json!(delegation),
        "the body keeps its own fields"
    );
    (delegation, header)
}

async fn get_with(
    app: &TestApp,
    path: &str,
    token: &str,
    min_position: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.get(app.url(path)).bearer_auth(token);
    if let Some(position) = min_position {
        request = request.query(&[("min_position", position)]);
    }
    request.send().await.expect("GET request")
}

#[tokio::test]
async fn positions_grow_with_every_command_and_the_log_holds_them() {
    let app = common::spawn_app().await;
    let source = app.register().await;
    let target = app.register().await;
    let (_, first) = record(&app, &source, target.id).await;
    let (_, second) = record(&app, &source, target.id).await;
    assert!(first >= 1, "a position is a log position: {first}");
    assert!(
        second > first,
        "a later command reaches a later position: {first} then {second}"
    );
    let head: i64 = sqlx::query_scalar("select max(position) from ledger_log")
        .fetch_one(&app.pool)
        .await
        .expect("log head");
    assert!(
        second <= head,
        "the position {second} is in the log (head {head})"
    );
}

#[tokio::test]
async fn a_token_from_one_node_reads_the_write_on_another() {
    let url = fresh_database_url().await;
    let writer = spawn_app_on(url.clone()).await;
    let reader = spawn_app_on(url).await;
    let source = writer.register().await;
    let target = writer.register().await;
    let (delegation, position) = record(&writer, &source, target.id).await;

    let response = reader
        .client
        .get(reader.url(&format!(
            "/workspaces/{}/delegations/{delegation}",
            source.id
        )))
        .bearer_auth(&source.token)
        .header("X-Ledger-Min-Position", position.to_string())
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["delegation_id"], json!(delegation));

    // The query form, on a route whose own parameters refuse strangers.
    let queue = get_with(
        &reader,
        &format!("/workspaces/{}/a2a/queue?limit=5", target.id),
        &target.token,
        Some(&position.to_string()),
    )
    .await;
    assert_eq!(
        queue.status().as_u16(),
        200,
        "min_position is every GET's parameter"
    );
}

#[tokio::test]
async fn a_position_the_views_do_not_reach_in_time_is_a_503_with_retry_after() {
    let app = spawn_app_with(fresh_database_url().await, |config| {
        config.reads.min_position_wait = Duration::from_millis(200);
    })
    .await;
    let source = app.register().await;
    let target = app.register().await;
    let (_, position) = record(&app, &source, target.id).await;
    let beyond = (position + 1_000).to_string();
    let path = format!("/workspaces/{}/activity", source.id);

    let response = get_with(&app, &path, &source.token, Some(&beyond)).await;
    assert_eq!(response.status().as_u16(), 503);
    let retry: u64 = response
        .headers()
        .get("retry-after")
        .expect("a 503 says when to try again")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry >= 1);
    let body: Value = response.json().await.expect("json error");
    let error = body["error"].as_str().expect("an error sentence");
    assert!(
        error.contains(&beyond),
        "the error names the position: {error}"
    );

    // A position already applied is served at once.
    let served = get_with(&app, &path, &source.token, Some(&position.to_string())).await;
    assert_eq!(served.status().as_u16(), 200);
}

#[tokio::test]
async fn a_malformed_position_is_a_400_and_waits_for_nothing() {
    let app = common::spawn_app().await;
    let source = app.register().await;
    let path = format!("/workspaces/{}/delegations", source.id);
    for bad in ["-1", "abc", "1.5", ""] {
        let response = get_with(&app, &path, &source.token, Some(bad)).await;
        assert_eq!(response.status().as_u16(), 400, "min_position={bad:?}");
        let body: Value = response.json().await.expect("json error");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("min_position")),
            "{body}"
        );
    }
    let response = app
        .client
        .get(app.url(&path))
        .bearer_auth(&source.token)
        .header("X-Ledger-Min-Position", "soon")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 400);
}

#[tokio::test]
async fn a_read_without_credentials_is_refused_before_any_wait() {
    let app = spawn_app_with(fresh_database_url().await, |config| {
        config.reads.min_position_wait = Duration::from_secs(60);
    })
    .await;
    let source = app.register().await;
    let started = std::time::Instant::now();
    let response = get_with(
        &app,
        &format!("/workspaces/{}/delegations", source.id),
        "not-a-token",
        Some("999999"),
    )
    .await;
    assert_eq!(response.status().as_u16(), 401);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "authentication comes before the wait"
    );
}

#[tokio::test]
async fn the_live_feed_waits_for_its_position_or_refuses_with_503() {
    let app = spawn_app_with(fresh_database_url().await, |config| {
        config.reads.min_position_wait = Duration::from_millis(200);
    })
    .await;
    let source = app.register().await;
    let target = app.register().await;
    let (delegation, position) = record(&app, &source, target.id).await;
    let ws = app.base.replace("http://", "ws://");

    let url = format!(
        "{ws}/ws?token={}&from=0&min_position={position}",
        source.token
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("a reached position lets the feed open");
    use futures::StreamExt;
    let mut seen = false;
    while let Some(Ok(message)) = socket.next().await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            let message: Value = serde_json::from_str(&text).expect("json message");
            if message["delegation_id"] == json!(delegation) {
                seen = true;
                break;
            }
        }
    }
    assert!(seen, "the replay holds the write the token names");

    let url = format!(
        "{ws}/ws?token={}&min_position={}",
        source.token,
        position + 1_000
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("expected a 503 refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn the_openapi_document_describes_the_tokens() {
    let app = common::spawn_app().await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json")
        .json()
        .await
        .expect("json");
    let params = &doc["paths"]["/workspaces/{id}/delegations/{delegation_id}"]["get"]["parameters"];
    let names: Vec<&str> = params
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&"min_position"), "{names:?}");
    assert!(names.contains(&"X-Ledger-Min-Position"), "{names:?}");
    let headers =
        &doc["paths"]["/workspaces/{id}/delegations/record"]["post"]["responses"]["202"]["headers"];
    assert!(headers.get("X-Ledger-Position").is_some(), "{headers}");
}

/// POST `body` to `path` with `token`: the status, the body and the
/// answer's `X-Ledger-Position`.
async fn command(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value, Option<i64>) {
    let mut request = app.client.post(app.url(path)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    let header = response
        .headers()
        .get("x-ledger-position")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse().ok());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, header)
}

#[tokio::test]
async fn every_kind_of_command_answers_its_position_and_refusals_answer_none() {
    let app = common::spawn_app().await;
    let id = Uuid::new_v4();
    let (status, registered, at) = command(
        &app,
        "/registry/register",
        None,
        json!({ "id": id, "delivery_mode": "poll" }),
    )
    .await;
    assert_eq!(status, 200, "{registered}");
    let token = registered["auth_token"]
        .as_str()
        .expect("token")
        .to_string();
    let mut last = at.expect("registration answers a position");
    assert_eq!(registered["position"], json!(last));

    let target = app.register().await;
    let delegation = Uuid::new_v4();
    let steps: Vec<(String, Value)> = vec![
        (
            "/registry/heartbeat".into(),
            json!({ "workspace_id": id, "active_tasks": 1, "max_concurrent": 2 }),
        ),
        (
            format!("/workspaces/{id}/delegations/record"),
            json!({ "delegation_id": delegation, "target_id": target.id, "task": "t" }),
        ),
        (
            format!("/workspaces/{id}/delegations/{delegation}/update"),
            json!({ "status": "in_progress" }),
        ),
        (
            format!("/workspaces/{id}/delegations/{delegation}/cancel"),
            json!({}),
        ),
        (
            format!("/workspaces/{id}/delegate"),
            json!({ "target_id": target.id, "task": "managed" }),
        ),
        ("/registry/rotate-token".into(), json!({})),
    ];
    let mut token = token;
    for (path, body) in steps {
        let (status, answer, at) = command(&app, &path, Some(&token), body).await;
        if let Some(rotated) = answer["auth_token"].as_str() {
            token = rotated.to_string();
        }
        assert!((200..300).contains(&status), "{path}: {status} {answer}");
        let position = at.unwrap_or_else(|| panic!("{path} answers X-Ledger-Position"));
        assert!(
            position >= last,
            "{path}: positions never go back ({last} then {position})"
        );
        assert_eq!(answer["position"], json!(position), "{path}: {answer}");
        last = position;
    }

    // A refused command wrote nothing and names no position.
    let (status, _, at) = command(
        &app,
        &format!("/workspaces/{id}/delegations/{delegation}/update"),
        Some(&token),
        json!({ "status": "no-such-status" }),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(at, None);
}
