//! The activity feed: newest first, the since_id cursor (410 for foreign or
//! unknown rows), since_secs validation and clamping, filters, and the
//! a2a_receive result push to the caller's inbox.

mod common;

use common::spawn_app;
use serde_json::{json, Value};

fn ids(rows: &Value) -> Vec<String> {
    rows.as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn the_feed_is_newest_first_and_since_id_pages_forward_oldest_first() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let feed = format!("/workspaces/{}/activity", a.id);
    let first = app.record(&a, b.id, "one").await;
    app.record(&a, b.id, "two").await;

    let (status, rows) = app.get(&feed, &a.token).await;
    assert_eq!(status, 200, "{rows}");
    let newest_first = ids(&rows);
    assert_eq!(newest_first.len(), 2);
    assert_eq!(rows[0]["request_body"]["task"], "two");
    assert_eq!(rows[1]["request_body"]["delegation_id"], first.to_string());

    // A poller holding the oldest row's id gets what came after it, in order.
    let cursor = &newest_first[1];
    app.update(
        &a,
        first,
        json!({ "status": "completed", "response_preview": "done" }),
    )
    .await;
    let (status, after) = app
        .get(&format!("{feed}?since_id={cursor}"), &a.token)
        .await;
    assert_eq!(status, 200);
    let types: Vec<(&str, &str)> = after
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["activity_type"].as_str().unwrap_or(""),
                r["method"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            ("delegation", "delegate"),
            ("delegation", "delegate_result"),
            ("a2a_receive", "delegate_result")
        ],
        "{after}"
    );
    let last = ids(&after).pop().expect("rows after the cursor");
    let (status, none) = app.get(&format!("{feed}?since_id={last}"), &a.token).await;
    assert_eq!((status, none), (200, json!([])));
}

#[tokio::test]
async fn a_cursor_from_another_workspace_or_unknown_is_gone() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    app.record(&b, a.id, "b's work").await;
    let (_, b_rows) = app
        .get(&format!("/workspaces/{}/activity", b.id), &b.token)
        .await;
    let foreign = ids(&b_rows).pop().expect("a row of b");
    let feed = format!("/workspaces/{}/activity", a.id);
    let (status, body) = app
        .get(&format!("{feed}?since_id={foreign}"), &a.token)
        .await;
    assert_eq!(status, 410, "{body}");
    let (status, _) = app
        .get(
            &format!("{feed}?since_id={}", uuid::Uuid::new_v4()),
            &a.token,
        )
        .await;
    assert_eq!(status, 410);
    let (status, _) = app.get(&format!("{feed}?since_id=nope"), &a.token).await;
    assert_eq!(status, 400);
    let (status, _) = app.get(&feed, &b.token).await;
    assert_eq!(status, 404, "another workspace's feed does not exist for b");
}

#[tokio::test]
async fn since_secs_must_be_a_positive_integer_and_is_clamped_to_30_days() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    app.record(&a, b.id, "recent").await;
    let feed = format!("/workspaces/{}/activity", a.id);
    for bad in ["0", "-5", "1.5", "soon", ""] {
        let (status, body) = app.get(&format!("{feed}?since_secs={bad}"), &a.token).await;
        assert_eq!(status, 400, "since_secs={bad:?} → {body}");
        assert!(body["error"].as_str().unwrap_or("").contains("since_secs"));
    }
    let (status, rows) = app
        .get(&format!("{feed}?since_secs=999999999"), &a.token)
        .await;
    assert_eq!(status, 200, "a huge window is clamped, not refused");
    assert_eq!(rows.as_array().map(Vec::len), Some(1));
    let (_, rows) = app.get(&format!("{feed}?since_secs=3600"), &a.token).await;
    assert_eq!(rows.as_array().map(Vec::len), Some(1));

    // Rows older than the window are left out.
    sqlx::query("update activity_logs set created_at = now() - interval '2 hours'")
        .execute(&app.pool)
        .await
        .expect("age the rows");
    let (_, rows) = app.get(&format!("{feed}?since_secs=3600"), &a.token).await;
    assert_eq!(rows, json!([]));
}

#[tokio::test]
async fn filters_by_type_and_source_and_results_reach_the_callers_inbox() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let ok = app.record(&a, b.id, "works").await;
    let bad = app.record(&a, b.id, "breaks").await;
    app.update(
        &a,
        ok,
        json!({ "status": "completed", "response_preview": "fine" }),
    )
    .await;
    app.update(&a, bad, json!({ "status": "failed", "error": "exploded" }))
        .await;

    let (status, inbox) = app
        .get(
            &format!("/workspaces/{}/activity?type=a2a_receive", a.id),
            &a.token,
        )
        .await;
    assert_eq!(status, 200);
    let inbox = inbox.as_array().expect("array");
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    assert_eq!(inbox[0]["status"], "error");
    assert_eq!(inbox[0]["error_detail"], "exploded");
    assert_eq!(
        inbox[0]["source_id"],
        b.id.to_string(),
        "the result comes from the target"
    );
    assert_eq!(inbox[1]["status"], "ok");
    assert_eq!(inbox[1]["response_body"]["text"], "fine");

    let (_, from_b) = app
        .get(
            &format!("/workspaces/{}/activity?source={}", a.id, b.id),
            &a.token,
        )
        .await;
    assert_eq!(
        from_b.as_array().map(Vec::len),
        Some(2),
        "only the inbox rows come from b"
    );
    let (_, limited) = app
        .get(&format!("/workspaces/{}/activity?limit=1", a.id), &a.token)
        .await;
    assert_eq!(limited.as_array().map(Vec::len), Some(1));
    let (status, _) = app
        .get(&format!("/workspaces/{}/activity?limit=-1", a.id), &a.token)
        .await;
    assert_eq!(status, 400);
}
