//! Operations endpoints: `/metrics` (Prometheus text), `/readyz` (database
//! reachable, projections within the lag bound), request ids.

mod common;

use std::time::Duration;

use common::{spawn_app, spawn_app_with, TestApp};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// GET without any token.
async fn get_public(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .send()
        .await
        .expect("request should be sent")
}

async fn scrape(app: &TestApp) -> String {
    let response = get_public(app, "/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.expect("metrics body")
}

/// The sample lines of metric `name` (exactly that name, any labels).
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

/// The value of the sample line of `name` whose labels contain every one of
/// `labels` (`key="value"`).
fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    samples(text, name)
        .into_iter()
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn db_head(app: &TestApp) -> i64 {
    sqlx::query_scalar("select coalesce(max(position), 0) from ledger_log")
        .fetch_one(&app.pool)
        .await
        .expect("head")
}

/// Poll `/readyz` until it answers `status` (panics after 30 s).
async fn await_readyz(app: &TestApp, status: u16) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = get_public(app, "/readyz").await;
        let got = response.status().as_u16();
        let body: Value = response.json().await.expect("readyz answers JSON");
        if got == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed {got} ({body}), expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn projection_names() -> Vec<String> {
    projections::all()
        .iter()
        .map(|p| p.name().to_string())
        .collect()
}

#[tokio::test]
async fn metrics_are_public_and_describe_requests_log_projections_and_subscribers() {
    let app = spawn_app().await;
    let source = app.register().await;
    let target = app.register().await;
    app.record(&source, target.id, "metrics").await;
    let (status, _) = app
        .get(
            &format!("/workspaces/{}/delegations", source.id),
            &source.token,
        )
        .await;
    assert_eq!(status, 200);

    let text = scrape(&app).await;

    // Requests by route template (never the raw path) and status.
    let route = r#"route="/workspaces/{id}/delegations/record""#;
    assert!(
        value(
            &text,
            "ledger_http_requests_total",
            &[route, r#"status="202""#]
        )
        .is_some_and(|v| v >= 1.0),
        "no request counter for the record route:\n{text}"
    );
    assert!(
        value(
            &text,
            "ledger_http_requests_total",
            &[r#"route="/registry/register""#, r#"status="200""#]
        )
        .is_some_and(|v| v >= 2.0),
        "{text}"
    );
    assert!(
        !text.contains(&source.id.to_string()),
        "a raw path leaked into the labels:\n{text}"
    );
    // A latency histogram with buckets.
    assert!(text.contains("# TYPE ledger_http_request_duration_seconds histogram"));
    assert!(
        value(
            &text,
            "ledger_http_request_duration_seconds_bucket",
            &[route, r#"le="+Inf""#]
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(value(
        &text,
        "ledger_http_request_duration_seconds_count",
        &[route]
    )
    .is_some());

    // The log.
    assert!(value(&text, "ledger_events_appended_total", &[]).is_some_and(|v| v > 0.0));
    let head = db_head(&app).await;
    assert!(head > 0);
    assert_eq!(
        value(&text, "ledger_log_head", &[]),
        Some(head as f64),
        "{text}"
    );
    assert_eq!(value(&text, "ledger_database_up", &[]), Some(1.0));

    // Per-projection lag, in events and in seconds (read-your-writes: the
    // views have applied everything the commands wrote).
    for name in projection_names() {
        let label = format!("projection=\"{name}\"");
        let label = label.as_str();
        assert_eq!(
            value(&text, "ledger_projection_lag_events", &[label]),
            Some(0.0),
            "{name}:\n{text}"
        );
        assert_eq!(
            value(&text, "ledger_projection_lag_seconds", &[label]),
            Some(0.0),
            "{name}:\n{text}"
        );
        assert_eq!(
            value(&text, "ledger_projection_checkpoint", &[label]),
            Some(head as f64)
        );
    }

    // Nothing queued in this fresh database.
    assert_eq!(value(&text, "ledger_queue_depth", &[]), Some(0.0));

    // Websocket subscribers.
    assert_eq!(value(&text, "ledger_websocket_subscribers", &[]), Some(0.0));
    let (_socket, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/ws?token={}",
        app.port, app.admin_token
    ))
    .await
    .expect("the admin may follow the feed");
    let mut subscribers = app.hub.watch_subscribers();
    tokio::time::timeout(Duration::from_secs(10), subscribers.wait_for(|n| *n == 1))
        .await
        .expect("the subscriber should be counted")
        .expect("hub alive");
    let text = scrape(&app).await;
    assert_eq!(
        value(&text, "ledger_websocket_subscribers", &[]),
        Some(1.0),
        "{text}"
    );
    // The scrape itself is counted under its own route.
    assert!(value(
        &text,
        "ledger_http_requests_total",
        &[r#"route="/metrics""#, r#"status="200""#]
    )
    .is_some());
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let app = spawn_app().await;
    let response = get_public(&app, "/healthz").await;
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(Uuid::parse_str(&generated).is_ok(), "{generated}");

    // A client's own id is kept, on errors too.
    let response = app
        .client
        .get(app.url(&format!("/workspaces/{}/delegations", Uuid::new_v4())))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");

    // Unmatched paths too; they are counted as `unmatched`, not by path.
    let response = get_public(&app, "/no/such/path").await;
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("x-request-id"));
    let text = scrape(&app).await;
    assert!(value(
        &text,
        "ledger_http_requests_total",
        &[r#"route="unmatched""#, r#"status="404""#]
    )
    .is_some());
    assert!(!text.contains("/no/such/path"));
}

#[tokio::test]
async fn readyz_reports_the_head_and_each_checkpoint() {
    let app = spawn_app().await;
    app.register().await;
    let body = await_readyz(&app, 200).await;
    assert_eq!(body["status"], "ready");
    let head = db_head(&app).await;
    assert_eq!(body["head"], head);
    for name in projection_names() {
        assert_eq!(body["projections"][&name], head, "{body}");
    }
    let response = get_public(&app, "/healthz").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn readyz_fails_while_a_projection_lags_beyond_the_bound() {
    let database_url = common::fresh_database_url().await;
    let app = spawn_app_with(database_url.clone(), |config| {
        config.readiness_max_lag = 0;
        // Commands answer soon even though a view cannot catch up.
        config.visibility_timeout = Duration::from_millis(200);
    })
    .await;
    app.register().await;
    await_readyz(&app, 200).await;

    // Keep the runners from taking their checkpoint rows (`for update`),
    // while plain reads go on. A table lock, not a row lock: a row lock
    // would give this transaction an xid and hold back the sequencer's
    // horizon, so the head would not move either.
    let stuck = projection_names().remove(0);
    let mut holder = PgConnection::connect(&database_url).await.expect("connect");
    let mut tx = holder.begin().await.expect("begin");
    sqlx::query("lock table projection_checkpoints in exclusive mode")
        .execute(&mut *tx)
        .await
        .expect("lock the checkpoints");
    app.register().await;

    let body = await_readyz(&app, 503).await;
    let error = body["error"].as_str().expect("an error message");
    assert!(error.contains(&stuck), "{error}");
    // Metrics show the lag too.
    let text = scrape(&app).await;
    let label = format!("projection=\"{stuck}\"");
    assert!(
        value(&text, "ledger_projection_lag_events", &[&label]).is_some_and(|v| v > 0.0),
        "{text}"
    );
    assert!(
        value(&text, "ledger_projection_lag_seconds", &[&label]).is_some_and(|v| v >= 0.0),
        "{text}"
    );
    // The process itself is fine.
    assert_eq!(get_public(&app, "/healthz").await.status(), 200);

    tx.rollback().await.expect("release the lock");
    let body = await_readyz(&app, 200).await;
    assert_eq!(body["projections"][&stuck], db_head(&app).await);
}

#[tokio::test]
async fn readyz_fails_when_the_database_is_unreachable() {
    let app = spawn_app().await;
    app.register().await;
    await_readyz(&app, 200).await;

    let name = url::Url::parse(&app.database_url)
        .expect("database URL")
        .path()
        .trim_start_matches('/')
        .to_string();
    let mut server = common::server_connection().await;
    sqlx::query(&format!(
        "alter database \"{name}\" with allow_connections false"
    ))
    .execute(&mut server)
    .await
    .expect("refuse new connections");
    sqlx::query(
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where datname = $1 and pid <> pg_backend_pid()",
    )
    .bind(&name)
    .execute(&mut server)
    .await
    .expect("terminate the service's connections");

    let body = await_readyz(&app, 503).await;
    let error = body["error"].as_str().expect("an error message");
    assert!(error.contains("database unreachable"), "{error}");
    // Liveness and metrics do not depend on the database.
    assert_eq!(get_public(&app, "/healthz").await.status(), 200);
    let text = scrape(&app).await;
    assert_eq!(value(&text, "ledger_database_up", &[]), Some(0.0), "{text}");

    sqlx::query(&format!(
        "alter database \"{name}\" with allow_connections true"
    ))
    .execute(&mut server)
    .await
    .expect("accept connections again");
    await_readyz(&app, 200).await;
}
