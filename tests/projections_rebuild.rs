//! A view rebuilt from position 0 equals the one built incrementally, both
//! through the library and through `ledger projections rebuild`.

mod common;

use common::spawn_app;
use serde_json::json;
use sqlx::PgPool;

/// Every row of every view, in a fixed order, as text.
async fn snapshot(pool: &PgPool) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, order) in [
        ("workspaces", "id"),
        ("delegations", "delegation_id"),
        ("activity_logs", "log_position, ordinal"),
    ] {
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
