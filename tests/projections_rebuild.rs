//! A view rebuilt from position 0 equals the one built incrementally, both
//! through the library and through `ledger projections rebuild`.

mod common;

use common::spawn_app;
use serde_json::json;
use sqlx::PgPool;

/// Every row of every view, in a fixed order, as text.
async fn snapshot(pool: &PgPool) -> Vec<String> {
    snapshot_of(
        pool,
        &[
            ("workspaces", "id"),
            ("delegations", "delegation_id"),
            ("activity_logs", "log_position, ordinal"),
        ],
    )
    .await
}

/// Every row of `tables`, in a fixed order, as text.
async fn snapshot_of(pool: &PgPool, tables: &[(&str, &str)]) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, order) in tables {
        let sql = format!("select t::text from {table} t order by {order}");
        let table_rows: Vec<String> = sqlx::query_scalar(&sql)
            .fetch_all(pool)
            .await
            .expect("snapshot");
        assert!(
            !table_rows.is_empty(),
            "{table} should not be empty for this test to mean anything"
        );
        rows.extend(table_rows);
    }
    rows
}

async fn make_history(app: &common::TestApp) {
    let a = app.register().await;
    let b = app.register().await;
    app.post(
        "/registry/heartbeat",
        &b.token,
        json!({ "workspace_id": b.id, "active_tasks": 1 }),
    )
    .await;
    for n in 0..5 {
        let id = app.record(&a, b.id, &format!("task {n}")).await;
        app.update(&a, id, json!({ "status": "received" })).await;
        if n % 2 == 0 {
            app.update(
                &a,
                id,
                json!({ "status": "completed", "response_preview": format!("result {n}") }),
            )
            .await;
        } else {
            app.update(
                &a,
                id,
                json!({ "status": "failed", "error": format!("error {n}") }),
            )
            .await;
        }
    }
    let (status, _) = app
        .post(
            &format!("/workspaces/{}/delegate", a.id),
            &a.token,
            json!({ "target_id": b.id, "task": "managed" }),
        )
        .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn rebuilt_views_equal_the_incrementally_built_ones() {
    let app = spawn_app().await;
    make_history(&app).await;
    let live = snapshot(&app.pool).await;
    for projection in projections::all() {
        let position = ledger::projection_runner::rebuild(&app.pool, projection.as_ref())
            .await
            .expect("rebuild");
        assert!(position > 0);
    }
    assert_eq!(snapshot(&app.pool).await, live);
}

#[tokio::test]
async fn the_rebuild_command_rebuilds_one_or_all_projections() {
    let app = spawn_app().await;
    make_history(&app).await;
    let live = snapshot(&app.pool).await;
    sqlx::query("update activity_logs set summary = 'corrupted'")
        .execute(&app.pool)
        .await
        .expect("corrupt the view");
    assert_ne!(snapshot(&app.pool).await, live);

    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(args)
            .env("DATABASE_URL", &app.database_url)
            .output()
            .expect("run ledger")
    };
    let output = run(&["projections", "rebuild", "activity_logs"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(snapshot(&app.pool).await, live);

    let output = run(&["projections", "rebuild", "--all"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(snapshot(&app.pool).await, live);

    let output = run(&["projections", "rebuild", "nonsense"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no projection named"));
}

/// Dispatch writes through the same log: after deliveries, a busy target's
/// queue (drained and expired items) and a poll-mode inbox, every view —
/// the queue included — rebuilds to exactly what was built live.
#[tokio::test]
async fn views_built_by_dispatch_rebuild_equal() {
    use common::fake_agent::{FakeAgent, Reply};
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Http {
        status: 503,
        body: json!({ "busy": true }).to_string(),
        retry_after: None,
    });
    let app = common::spawn_dispatching_app(|_| {}).await;
    let source = app.register().await;
    let busy = app.register_with(json!({ "url": agent.url() })).await;
    let poller = app.register_with(json!({ "delivery_mode": "poll" })).await;
    let drained = app
        .delegate(&source, busy.id, json!({ "priority": "critical" }))
        .await;
    let expiring = app
        .delegate(
            &source,
            busy.id,
            json!({ "priority": "info", "expires_in_seconds": 1 }),
        )
        .await;
    let inboxed = app.delegate(&source, poller.id, json!({})).await;
    app.wait_status(drained, "queued").await;
    app.wait_status(expiring, "failed").await;
    agent.set_reply(Reply::Message("drained".into()));
    assert_eq!(app.heartbeat(&busy, 0, 1).await, 1);
    app.wait_status(drained, "completed").await;
    app.wait_status(inboxed, "dispatched").await;
    // The drained item's own completion is the dispatcher's last write.
    common::wait_for(
        &app.pool,
        "the drained queue item to complete",
        std::time::Duration::from_secs(60),
        || async {
            sqlx::query_scalar::<_, i64>(
                "select count(*) from a2a_queue where status in ('completed', 'expired')",
            )
            .fetch_one(&app.pool)
            .await
            .expect("queue")
                == 2
        },
    )
    .await;
    common::settle(&app.pool).await;

    let tables = [
        ("workspaces", "id"),
        ("delegations", "delegation_id"),
        ("activity_logs", "log_position, ordinal"),
        ("a2a_queue", "queue_id"),
    ];
    let live = snapshot_of(&app.pool, &tables).await;
    for projection in projections::all() {
        ledger::projection_runner::rebuild(&app.pool, projection.as_ref())
            .await
            .expect("rebuild");
    }
    assert_eq!(snapshot_of(&app.pool, &tables).await, live);
}
