//! Every resource a stranger can reach has a bound: registrations and
//! failed authentications per address, commands per workspace, the time
//! and number of requests, the database's time, and the live feed's
//! subscribers and incoming messages.

mod common;

use std::time::Duration;

use common::{event_count, spawn_app_with, TestApp};
use futures_util::{SinkExt, StreamExt};
use ledger::config::Config;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

async fn app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(common::fresh_database_url().await, adjust).await
}

/// Register a fresh workspace; the raw answer.
async fn try_register(app: &TestApp) -> reqwest::Response {
    app.client
        .post(app.url("/registry/register"))
        .json(&json!({ "id": Uuid::new_v4(), "delivery_mode": "poll" }))
        .send()
        .await
        .expect("sent")
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header in seconds")
}

/// Hold an exclusive lock on the `workspaces` view (every authentication
/// reads it) until the returned transaction ends.
async fn lock_workspaces(app: &TestApp) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = app.pool.begin().await.expect("begin");
    sqlx::query("lock table workspaces in access exclusive mode")
        .execute(&mut *tx)
        .await
        .expect("lock");
    tx
}

#[tokio::test]
async fn registrations_are_limited_per_client_address() {
    let app = app_with(|config| config.limits.registrations_per_minute = 3).await;
    for _ in 0..3 {
        assert_eq!(try_register(&app).await.status(), 200);
    }
    let before = event_count(&app.pool).await;
    let refused = try_register(&app).await;
    assert_eq!(refused.status(), 429);
    assert!(retry_after(&refused) >= 1);
    let (_, body) = common::read(refused).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("too many registrations"),
        "{body}"
    );
    assert_eq!(
        event_count(&app.pool).await,
        before,
        "a refused registration wrote"
    );
}

#[tokio::test]
async fn failed_authentications_exhaust_the_address_and_then_nothing_authenticates_from_it() {
    let app = app_with(|config| config.limits.auth_failures_per_minute = 3).await;
    let ws = app.register().await;
    let path = format!("/workspaces/{}/delegations", ws.id);
    for _ in 0..3 {
        let (status, _) = app.get(&path, "ldg_guess").await;
        assert_eq!(status, 401);
    }
    let (status, body) = app.get(&path, "ldg_guess").await;
    assert_eq!(status, 429, "{body}");
    // Even the right token is refused from this address for now, so
    // guessing stays slow whatever the answer would have been.
    let (status, _) = app.get(&path, &ws.token).await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn a_workspaces_commands_are_rate_limited_and_its_reads_are_not() {
    let app = app_with(|config| config.limits.commands_per_second = 2).await;
    let source = app.register().await;
    let target = app.register().await;
    let mut refused = 0;
    let started = std::time::Instant::now();
    for _ in 0..12 {
        let response = app
            .client
            .post(app.url(&format!("/workspaces/{}/delegations/record", source.id)))
            .bearer_auth(&source.token)
            .json(&json!({ "target_id": target.id, "task": "t", "delegation_id": Uuid::new_v4() }))
            .send()
            .await
            .expect("sent");
        match response.status().as_u16() {
            202 => {}
            429 => {
                assert!(retry_after(&response) >= 1);
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    // A burst of twice the rate, then the rate: however slowly this machine
    // sent the twelve.
    let accepted = 12 - refused;
    let allowed = 4.0 + 2.0 * started.elapsed().as_secs_f64() + 1.0;
    assert!(refused >= 1, "nothing refused");
    assert!(
        (accepted as f64) <= allowed,
        "{accepted} accepted where at most {allowed:.1} were allowed"
    );
    // Another workspace's commands are its own business.
    app.record(&target, source.id, "mine").await;
    // Reads are not commands.
    for _ in 0..10 {
        let (status, _) = app
            .get(
                &format!("/workspaces/{}/delegations", source.id),
                &source.token,
            )
            .await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn a_request_that_takes_too_long_is_answered_503_at_the_timeout() {
    let app = app_with(|config| config.limits.request_timeout = Duration::from_secs(1)).await;
    let ws = app.register().await;
    let lock = lock_workspaces(&app).await;
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        app.get(&format!("/registry/discover/{}", ws.id), &ws.token),
    )
    .await
    .expect("answered at the timeout, not when the lock went");
    let (status, body) = answered;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("took longer than"),
        "{body}"
    );
    drop(lock);
}

#[tokio::test]
async fn a_statement_that_runs_too_long_is_cancelled_and_answered_503() {
    let app = app_with(|config| {
        config.statement_timeout = Duration::from_secs(1);
        config.limits.request_timeout = Duration::from_secs(30);
    })
    .await;
    let ws = app.register().await;
    let lock = lock_workspaces(&app).await;
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(10),
        app.get(&format!("/registry/discover/{}", ws.id), &ws.token),
    )
    .await
    .expect("answered at the statement timeout");
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("did not answer in time"),
        "{body}"
    );
    drop(lock);
}

#[tokio::test]
async fn requests_past_the_in_flight_limit_are_shed_with_503() {
    let app = app_with(|config| config.limits.max_in_flight_requests = 2).await;
    let ws = app.register().await;
    let lock = lock_workspaces(&app).await;
    let stuck: Vec<_> = (0..2)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url(&format!("/registry/discover/{}", ws.id));
            let token = ws.token.clone();
            tokio::spawn(async move {
                client
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("sent")
                    .status()
                    .as_u16()
            })
        })
        .collect();
    // Both are in: waiting for the lock inside the database.
    common::poll_until("two requests waiting on the lock", Duration::from_secs(10), || async {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()",
        )
        .fetch_one(&app.pool)
        .await
        .expect("count");
        waiting >= 2
    })
    .await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 503);
    assert!(retry_after(&response) >= 1);
    let (_, body) = common::read(response).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("limit of 2"),
        "{body}"
    );
    drop(lock);
    for request in stuck {
        assert_eq!(request.await.expect("joined"), 200);
    }
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("sent")
            .status(),
        200
    );
}

#[tokio::test]
async fn the_pool_waits_for_a_connection_only_as_long_as_configured() {
    let app = app_with(|config| config.acquire_timeout = Duration::from_millis(1500)).await;
    assert_eq!(
        app.pool.options().get_acquire_timeout(),
        Duration::from_millis(1500)
    );
}

// ------------------------------------------------------------ live feed

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp, token: &str) -> Socket {
    let url = format!("ws://127.0.0.1:{}/ws?token={token}", app.port);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade")
        .0
}

/// The close frame the server sends next (code, reason).
async fn closed_with(socket: &mut Socket) -> (u16, String) {
    let next = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(Some(frame))) => {
                    return Some((u16::from(frame.code), frame.reason.to_string()))
                }
                Ok(Message::Close(None)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
        None
    })
    .await
    .expect("the server closed the socket");
    next.expect("a close frame with a reason")
}

/// Wait until the hub counts `n` subscribers.
async fn subscribers(app: &TestApp, n: usize) {
    let mut count = app.hub.watch_subscribers();
    tokio::time::timeout(Duration::from_secs(10), count.wait_for(|c| *c == n))
        .await
        .expect("subscriber count")
        .expect("hub alive");
}

#[tokio::test]
async fn a_token_may_hold_only_so_many_subscribers_and_the_next_is_told_why() {
    let app = app_with(|config| config.hub.max_subscribers_per_token = 2).await;
    let ws = app.register().await;
    let other = app.register().await;
    let first = connect(&app, &ws.token).await;
    let _second = connect(&app, &ws.token).await;
    subscribers(&app, 2).await;
    let mut third = connect(&app, &ws.token).await;
    let (code, reason) = closed_with(&mut third).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("at most 2"), "{reason}");
    // Another token is not affected.
    let _theirs = connect(&app, &other.token).await;
    subscribers(&app, 3).await;
    // And a freed slot is taken again.
    drop(first);
    subscribers(&app, 2).await;
    let _again = connect(&app, &ws.token).await;
    subscribers(&app, 3).await;
}

#[tokio::test]
async fn the_process_holds_only_so_many_subscribers() {
    let app = app_with(|config| config.hub.max_subscribers = 2).await;
    let a = app.register().await;
    let b = app.register().await;
    let _one = connect(&app, &a.token).await;
    let _two = connect(&app, &b.token).await;
    subscribers(&app, 2).await;
    let mut three = connect(&app, &app.admin_token).await;
    let (code, reason) = closed_with(&mut three).await;
    assert_eq!(code, 1013);
    assert!(reason.contains("limit of 2"), "{reason}");
}

#[tokio::test]
async fn a_client_that_sends_a_large_message_is_disconnected() {
    let app = common::spawn_app().await;
    let ws = app.register().await;
    let mut socket = connect(&app, &ws.token).await;
    subscribers(&app, 1).await;
    socket
        .send(Message::Text("x".repeat(64 * 1024).into()))
        .await
        .expect("sent");
    // The server drops the connection; the hub counts it out.
    subscribers(&app, 0).await;
}
