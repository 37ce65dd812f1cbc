//! The audit API and CLI against a real PostgreSQL: admin-only access, the
//! filtered and paged log, ndjson streaming of a large selection without
//! holding it, per-aggregate state as of a point, and tamper evidence
//! (each kind of tampering reported at the first entry it touches).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aggregates::delegation::Delegation;
use common::{TestApp, Workspace};
use ledger::commands::CommandBus;
use ledger::log::chain::{self, ChainedEvent};
use ledger::log::Progress;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// helpers

/// Wait until every event is positioned and every projection applied it.
async fn settle(pool: &PgPool) {
    common::settle(pool).await
}

/// Every entry of a selection, following `next_after` page by page.
async fn all_pages(app: &TestApp, query: &str, limit: i64) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let (status, body) = app
            .get(
                &format!("/audit/events?after={after}&limit={limit}&{query}"),
                &app.admin_token,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let page = body["events"].as_array().expect("events").clone();
        assert!(page.len() as i64 <= limit);
        events.extend(page);
        match body["next_after"].as_i64() {
            Some(next) => after = next,
            None => return events,
        }
    }
}

fn positions(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["position"].as_i64().expect("position"))
        .collect()
}

/// Two workspaces and a delegation from the first to the second, completed.
async fn delegation_completed(app: &TestApp) -> (Workspace, Workspace, Uuid) {
    let a = app.register().await;
    let b = app.register().await;
    let id = app.record(&a, b.id, "summarise the report").await;
    let (status, body) = app
        .update(
            &b,
            id,
            json!({ "status": "completed", "response_preview": "done" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    settle(&app.pool).await;
    (a, b, id)
}

async fn verify_over_http(app: &TestApp, query: &str) -> Value {
    let (status, body) = app
        .get(&format!("/audit/verify{query}"), &app.admin_token)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn head(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select max(position) from ledger_log")
        .fetch_one(pool)
        .await
        .expect("head")
}

async fn position_of(pool: &PgPool, event_type: &str) -> i64 {
    sqlx::query_scalar("select min(position) from ledger_log where event_type = $1")
        .bind(event_type)
        .fetch_one(pool)
        .await
        .expect("position")
}

/// Insert `count` `IdempotencyKeyClaimed` events of `workspace` in one
/// statement (about 0.5 KiB per ndjson line). No projection reacts to them,
/// so they are positioned and "projected" fast.
async fn bulk_insert_key_claims(pool: &PgPool, workspace: Uuid, count: i64) {
    sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         select 'idempotency_key', $1::text || '/' || k.key, 1, 'IdempotencyKeyClaimed', '1.0', \
         json_build_object('IdempotencyKeyClaimed', json_build_object( \
             'workspace_id', $1, 'key', k.key, 'delegation_id', gen_random_uuid(), \
             'replaced', null, 'at', '2024-05-01T12:00:00Z')), '{}'::json \
         from generate_series(1, $2) g \
         cross join lateral (select 'bulk-' || g as key) k",
    )
    .bind(workspace)
    .bind(count)
    .execute(pool)
    .await
    .expect("bulk insert");
}

/// This process's resident set size in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

async fn run_cli(app: &TestApp, args: &[&str]) -> (i32, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the ledger binary runs");
    (
        output.status.code().expect("exit code"),
        String::from_utf8(output.stdout).expect("utf-8 stdout"),
    )
}

// ---------------------------------------------------------------------------
// access

#[tokio::test]
async fn a_workspace_token_is_forbidden_and_no_token_is_unauthorized_on_every_audit_route() {
    let app = common::spawn_app().await;
    let a = app.register().await;
    for path in [
        "/audit/events".to_string(),
        format!("/audit/streams/workspace/{}", a.id),
        "/audit/verify".to_string(),
    ] {
        let (status, body) = app.get(&path, &a.token).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(
            body,
            json!({ "error": "the audit API needs the admin token" })
        );

        let response = app.client.get(app.url(&path)).send().await.expect("send");
        assert_eq!(response.status().as_u16(), 401, "{path}");
    }
}

// ---------------------------------------------------------------------------
// GET /audit/events

#[tokio::test]
async fn the_log_is_listed_in_position_order_with_each_event_as_stored_and_chained() {
    let app = common::spawn_app().await;
    let (a, b, delegation) = delegation_completed(&app).await;

    let (status, body) = app.get("/audit/events", &app.admin_token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["next_after"],
        Value::Null,
        "a page that is not full is the last"
    );
    let events = body["events"].as_array().expect("events");
    let kinds: Vec<(&str, &str, i64)> = events
        .iter()
        .map(|e| {
            (
                e["aggregate_type"].as_str().unwrap(),
                e["event_type"].as_str().unwrap(),
                e["sequence"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("workspace", "WorkspaceRegistered", 1),
            ("workspace", "WorkspaceRegistered", 1),
            ("delegation", "DelegationSent", 1),
            ("delegation", "DelegationCompleted", 2),
        ]
    );
    assert_eq!(positions(events), vec![1, 2, 3, 4]);
    assert_eq!(events[0]["aggregate_id"], json!(a.id.to_string()));
    assert_eq!(events[1]["aggregate_id"], json!(b.id.to_string()));
    let sent = &events[2];
    assert_eq!(sent["aggregate_id"], json!(delegation.to_string()));
    assert_eq!(sent["event_version"], json!("1.0"));
    assert_eq!(
        sent["payload"]["DelegationSent"]["task"],
        json!("summarise the report")
    );
    assert_eq!(sent["payload"]["DelegationSent"]["source_id"], json!(a.id));
    assert_eq!(
        sent["metadata"],
        json!({ "actor": format!("workspace:{}", a.id) })
    );
    assert_eq!(events[0]["prev_hash"], json!("0".repeat(64)));
    for pair in events.windows(2) {
        assert_eq!(
            pair[1]["prev_hash"], pair[0]["hash"],
            "each entry chains to the last"
        );
        assert!(
            pair[1]["event_id"].as_i64().unwrap() > pair[0]["event_id"].as_i64().unwrap(),
            "event ids grow with position here (one writer at a time)"
        );
    }
    let recorded_at = sent["recorded_at"].as_str().expect("recorded_at");
    assert!(
        chrono::DateTime::parse_from_rfc3339(recorded_at).is_ok(),
        "recorded_at is RFC 3339: {recorded_at}"
    );
}

#[tokio::test]
async fn every_hash_can_be_recomputed_from_the_exported_fields_alone() {
    #[derive(Deserialize)]
    struct Exported {
        position: i64,
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
        event_type: String,
        event_version: String,
        payload: Box<RawValue>,
        metadata: Box<RawValue>,
        hash: String,
        prev_hash: String,
    }
    #[derive(Deserialize)]
    struct Page {
        events: Vec<Exported>,
    }
    let app = common::spawn_app().await;
    delegation_completed(&app).await;

    let page: Page = app
        .client
        .get(app.url("/audit/events"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("page");
    assert_eq!(page.events.len(), 4);
    for event in &page.events {
        let prev = hex::decode(&event.prev_hash).expect("hex");
        let hash = chain::link(
            &prev,
            &ChainedEvent {
                position: event.position,
                aggregate_type: &event.aggregate_type,
                aggregate_id: &event.aggregate_id,
                sequence: event.sequence,
                event_type: &event.event_type,
                event_version: &event.event_version,
                payload: event.payload.get(),
                metadata: event.metadata.get(),
            },
        );
        assert_eq!(hex::encode(hash), event.hash, "position {}", event.position);
    }
}

#[tokio::test]
async fn pages_continue_after_next_after_and_the_last_page_has_none() {
    let app = common::spawn_app().await;
    for _ in 0..5 {
        app.register().await;
    }
    settle(&app.pool).await;

    let (_, first) = app.get("/audit/events?limit=2", &app.admin_token).await;
    assert_eq!(positions(first["events"].as_array().unwrap()), vec![1, 2]);
    assert_eq!(first["next_after"], json!(2));
    let (_, second) = app
        .get("/audit/events?limit=2&after=2", &app.admin_token)
        .await;
    assert_eq!(positions(second["events"].as_array().unwrap()), vec![3, 4]);
    assert_eq!(second["next_after"], json!(4));
    let (_, last) = app
        .get("/audit/events?limit=2&after=4", &app.admin_token)
        .await;
    assert_eq!(positions(last["events"].as_array().unwrap()), vec![5]);
    assert_eq!(last["next_after"], Value::Null);
    let (_, beyond) = app.get("/audit/events?after=5", &app.admin_token).await;
    assert_eq!(beyond, json!({ "events": [], "next_after": null }));
}

#[tokio::test]
async fn the_workspace_filter_selects_every_event_where_the_workspace_is_source_or_target() {
    let app = common::spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let c = app.register().await;
    let a_to_b = app.record(&a, b.id, "from a to b").await;
    let c_to_a = app.record(&c, a.id, "from c to a").await;
    let b_to_c = app.record(&b, c.id, "from b to c").await;
    assert_eq!(
        app.update(&a, c_to_a, json!({ "status": "received" }))
            .await
            .0,
        200
    );
    settle(&app.pool).await;

    let everything = all_pages(&app, "", 1000).await;
    let concerns_a = |e: &&Value| {
        let id = e["aggregate_id"].as_str().unwrap();
        id == a.id.to_string() || id == a_to_b.to_string() || id == c_to_a.to_string()
    };
    let expected: Vec<i64> = positions(
        &everything
            .iter()
            .filter(concerns_a)
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        expected.len(),
        4,
        "a's registration, a→b sent, c→a sent and received"
    );

    let query = format!("workspace_id={}", a.id);
    assert_eq!(positions(&all_pages(&app, &query, 1000).await), expected);
    assert_eq!(
        positions(&all_pages(&app, &query, 1).await),
        expected,
        "paging one by one through the union gives the same entries"
    );
    let b_to_c_positions: Vec<i64> = positions(
        &everything
            .iter()
            .filter(|e| e["aggregate_id"] == json!(b_to_c.to_string()))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let c_selection = positions(&all_pages(&app, &format!("workspace_id={}", c.id), 1000).await);
    assert!(b_to_c_positions.iter().all(|p| c_selection.contains(p)));

    let columns: Vec<(String, Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
        "select aggregate_id, source_workspace, target_workspace from ledger_log \
         where event_type in ('WorkspaceRegistered', 'DelegationSent') order by position",
    )
    .fetch_all(&app.pool)
    .await
    .expect("columns");
    assert_eq!(
        columns,
        vec![
            (a.id.to_string(), Some(a.id), None),
            (b.id.to_string(), Some(b.id), None),
            (c.id.to_string(), Some(c.id), None),
            (a_to_b.to_string(), Some(a.id), Some(b.id)),
            (c_to_a.to_string(), Some(c.id), Some(a.id)),
            (b_to_c.to_string(), Some(b.id), Some(c.id)),
        ],
        "the sequencer records the workspaces each entry concerns"
    );
}

#[tokio::test]
async fn aggregate_event_type_and_time_filters_select_exactly_their_entries() {
    let app = common::spawn_app().await;
    let (a, b, delegation) = delegation_completed(&app).await;
    let c = app.register().await;
    app.record(&c, a.id, "another").await;
    settle(&app.pool).await;
    let everything = all_pages(&app, "", 1000).await;
    let select = |keep: &dyn Fn(&Value) -> bool| -> Vec<i64> {
        positions(
            &everything
                .iter()
                .filter(|e| keep(e))
                .cloned()
                .collect::<Vec<_>>(),
        )
    };

    assert_eq!(
        positions(&all_pages(&app, "aggregate_type=workspace", 1000).await),
        select(&|e| e["aggregate_type"] == json!("workspace"))
    );
    assert_eq!(
        positions(&all_pages(&app, &format!("aggregate_id={delegation}"), 1000).await),
        select(&|e| e["aggregate_id"] == json!(delegation.to_string())),
        "aggregate_id alone matches it in every aggregate type"
    );
    assert_eq!(
        positions(
            &all_pages(
                &app,
                &format!("aggregate_type=workspace&aggregate_id={}", b.id),
                1000
            )
            .await
        ),
        select(&|e| e["aggregate_id"] == json!(b.id.to_string()))
    );
    assert_eq!(
        positions(&all_pages(&app, "event_type=DelegationSent", 1000).await),
        select(&|e| e["event_type"] == json!("DelegationSent"))
    );

    let at = |e: &Value, field: &str| {
        chrono::DateTime::parse_from_rfc3339(e[field].as_str().unwrap()).unwrap()
    };
    let time = |e: &Value| at(e, "logged_at");
    for pair in everything.windows(2) {
        assert!(
            time(&pair[1]) >= time(&pair[0]),
            "the log time never decreases along the log: {pair:?}"
        );
    }
    for e in &everything {
        assert!(time(e) >= at(e, "recorded_at"), "{e}");
    }
    let from = time(&everything[2]);
    let to = time(&everything[4]);
    let window = format!(
        "from_time={}&to_time={}",
        everything[2]["logged_at"].as_str().unwrap(),
        everything[4]["logged_at"].as_str().unwrap()
    );
    let expected = select(&|e| time(e) >= from && time(e) < to);
    assert!(!expected.is_empty());
    assert_eq!(positions(&all_pages(&app, &window, 1000).await), expected);
    assert_eq!(
        positions(&all_pages(&app, &format!("{window}&workspace_id={}", a.id), 1).await),
        select(&|e| time(e) >= from
            && time(e) < to
            && (e["aggregate_id"] == json!(a.id.to_string())
                || e["aggregate_id"] == json!(delegation.to_string())))
    );
}

#[tokio::test]
async fn bad_parameters_are_answered_400_with_a_json_error() {
    let app = common::spawn_app().await;
    let a = app.register().await;
    let cases: Vec<(String, &str)> = vec![
        (
            "/audit/events?after=x".into(),
            r#"after must be an integer log position of at least 0; got "x""#,
        ),
        (
            "/audit/events?limit=0".into(),
            r#"limit must be a positive integer (at most 1000); got "0""#,
        ),
        (
            "/audit/events?workspace_id=nope".into(),
            "workspace_id must be a valid UUID",
        ),
        (
            "/audit/events?aggregate_type=invoice".into(),
            r#"unknown aggregate_type "invoice"; known: delegation, queue_item, idempotency_key, workspace"#,
        ),
        (
            "/audit/events?event_type=".into(),
            "event_type must not be empty",
        ),
        (
            "/audit/events?to_time=yesterday".into(),
            r#"to_time must be an RFC 3339 time such as 2024-05-01T12:00:00Z; got "yesterday""#,
        ),
        (
            "/audit/verify?from=0".into(),
            r#"from must be an integer log position of at least 1; got "0""#,
        ),
        (
            "/audit/verify?from=5&to=2".into(),
            "from (5) must not be after to (2)",
        ),
        (
            format!("/audit/streams/workspace/{}?as_of=later", a.id),
            r#"as_of must be a log position (an integer ≥ 1) or an RFC 3339 time; got "later""#,
        ),
        (
            format!("/audit/streams/invoice/{}", a.id),
            r#"unknown aggregate_type "invoice"; known: delegation, queue_item, idempotency_key, workspace"#,
        ),
    ];
    for (path, error) in cases {
        let (status, body) = app.get(&path, &app.admin_token).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body, json!({ "error": error }), "{path}");
    }
    let (status, body) = app.get("/audit/events?workspace=x", &app.admin_token).await;
    assert_eq!(
        status, 400,
        "an unknown parameter is not silently ignored: {body}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `workspace`"),
        "{body}"
    );
}

// ---------------------------------------------------------------------------
// ndjson

#[tokio::test]
async fn ndjson_returns_the_whole_selection_one_object_per_line_ignoring_the_page_limit() {
    let app = common::spawn_app().await;
    let (a, _, _) = delegation_completed(&app).await;
    let paged = all_pages(&app, &format!("workspace_id={}", a.id), 1000).await;

    let response = app
        .client
        .get(app.url(&format!("/audit/events?workspace_id={}&limit=1", a.id)))
        .bearer_auth(&app.admin_token)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.expect("body");
    assert!(text.ends_with('\n'));
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect();
    assert_eq!(lines, paged);
    assert_eq!(lines.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_event_selection_streams_without_ever_being_held_in_memory() {
    const EVENTS: i64 = 100_000;
    let app = common::spawn_app().await;
    let workspace = Uuid::new_v4();
    bulk_insert_key_claims(&app.pool, workspace, EVENTS).await;
    settle(&app.pool).await;

    let before = rss_bytes();
    let mut response = app
        .client
        .get(app.url("/audit/events?aggregate_type=idempotency_key"))
        .bearer_auth(&app.admin_token)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    let mut buffer = response
        .chunk()
        .await
        .expect("first chunk")
        .expect("a first chunk")
        .to_vec();

    // The client has read one chunk and stops reading. The server reads
    // the selection a page at a time into a bounded channel, so an unread
    // response holds its reader back after a few pages; a server that
    // materialized the selection would hold all of it (> 60 MiB) by now.
    // The memory measured while paused, and at every 10,000 lines read
    // after, is the evidence.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paused = rss_bytes();

    let mut lines = 0i64;
    let mut last_position = 0i64;
    let mut peak = paused;
    loop {
        while let Some(newline) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=newline).collect();
            // Every line starts with its position; fully parsing 100,000
            // lines in a debug build would dominate the test, so every
            // 1000th is parsed and checked to agree.
            let position: i64 = std::str::from_utf8(&line)
                .ok()
                .and_then(|text| text.strip_prefix(r#"{"position":"#))
                .and_then(|rest| rest.split(',').next())
                .and_then(|digits| digits.parse().ok())
                .expect("a line starting with its position");
            if lines % 1000 == 0 {
                let event: Value = serde_json::from_slice(&line).expect("one JSON object per line");
                assert_eq!(event["position"], json!(position));
                assert_eq!(event["event_type"], json!("IdempotencyKeyClaimed"));
            }
            assert!(position > last_position, "log order");
            last_position = position;
            lines += 1;
            if lines % 10_000 == 0 {
                peak = peak.max(rss_bytes());
            }
        }
        match response.chunk().await.expect("next chunk") {
            Some(chunk) => buffer.extend_from_slice(&chunk),
            None => break,
        }
    }
    assert!(buffer.is_empty(), "the stream ends with a complete line");
    assert_eq!(lines, EVENTS);
    assert_eq!(last_position, head(&app.pool).await);

    // ~0.5 KiB per line: holding the selection takes > 60 MiB (measured
    // by serving it with fetch_all instead); streaming it, about 1 MiB.
    const BOUND: u64 = 24 * 1024 * 1024;
    assert!(
        paused.saturating_sub(before) < BOUND,
        "RSS grew by {} MiB before the client read the stream",
        (paused - before) / (1024 * 1024)
    );
    assert!(
        peak.saturating_sub(before) < BOUND,
        "RSS grew by {} MiB while streaming",
        (peak - before) / (1024 * 1024)
    );
}

// ---------------------------------------------------------------------------
// GET /audit/streams/{aggregate_type}/{aggregate_id}

#[tokio::test]
async fn a_stream_audit_folds_the_state_from_exactly_the_events_up_to_as_of() {
    let app = common::spawn_app().await;
    let (a, b, delegation) = delegation_completed(&app).await;
    let bus = CommandBus::new(
        app.pool.clone(),
        Arc::new(Progress::new(Vec::new())),
        Duration::from_secs(1),
    );
    let current: Delegation = bus.load(&delegation.to_string()).await.expect("load");

    let path = format!("/audit/streams/delegation/{delegation}");
    let (status, all) = app.get(&path, &app.admin_token).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["aggregate_type"], json!("delegation"));
    assert_eq!(all["aggregate_id"], json!(delegation.to_string()));
    assert_eq!(all["as_of_position"], json!(4));
    assert_eq!(positions(all["events"].as_array().unwrap()), vec![3, 4]);
    assert_eq!(
        all["state"],
        serde_json::to_value(&current).unwrap(),
        "the audit folds the same state as the write path"
    );
    assert_eq!(all["state"]["status"], json!("completed"));
    assert_eq!(all["state"]["result"], json!("done"));
    assert_eq!(all["state"]["source_id"], json!(a.id));
    assert_eq!(all["state"]["target_id"], json!(b.id));

    let (status, at_sent) = app.get(&format!("{path}?as_of=3"), &app.admin_token).await;
    assert_eq!(status, 200, "{at_sent}");
    assert_eq!(at_sent["as_of_position"], json!(3));
    assert_eq!(positions(at_sent["events"].as_array().unwrap()), vec![3]);
    assert_eq!(at_sent["state"]["status"], json!("dispatched"));
    assert_eq!(at_sent["state"]["result"], Value::Null);

    let sent_at = all["events"][0]["recorded_at"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, by_time) = app
        .get(&format!("{path}?as_of={sent_at}"), &app.admin_token)
        .await;
    assert_eq!(status, 200, "{by_time}");
    assert_eq!(
        by_time, at_sent,
        "as_of a time is as_of the last event recorded by then"
    );

    let (status, before) = app.get(&format!("{path}?as_of=2"), &app.admin_token).await;
    assert_eq!(status, 404, "{before}");
    assert_eq!(
        before,
        json!({ "error": format!("delegation {delegation} has no events at or before position 2") })
    );
}

#[tokio::test]
async fn an_aggregate_without_events_is_404_and_key_ids_with_a_slash_are_addressable() {
    let app = common::spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let (status, body) = app
        .post(
            &format!("/workspaces/{}/delegate", a.id),
            &a.token,
            json!({ "target_id": b.id, "task": "t", "idempotency_key": "nightly-7" }),
        )
        .await;
    assert!(status == 200 || status == 202, "{status} {body}");
    settle(&app.pool).await;

    let (status, key) = app
        .get(
            &format!("/audit/streams/idempotency_key/{}/nightly-7", a.id),
            &app.admin_token,
        )
        .await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["aggregate_id"], json!(format!("{}/nightly-7", a.id)));
    assert_eq!(key["state"]["key"], json!("nightly-7"));
    assert_eq!(key["state"]["generation"], json!(1));

    let nobody = Uuid::new_v4();
    let (status, body) = app
        .get(
            &format!("/audit/streams/workspace/{nobody}"),
            &app.admin_token,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({ "error": format!("workspace {nobody} has no events") })
    );
}

// ---------------------------------------------------------------------------
// tamper evidence

#[tokio::test]
async fn an_intact_log_verifies_and_reports_the_head_that_audit_head_prints() {
    let app = common::spawn_app().await;
    delegation_completed(&app).await;
    let (_, page) = app.get("/audit/events", &app.admin_token).await;
    let last_hash = page["events"][3]["hash"].clone();

    assert_eq!(
        verify_over_http(&app, "").await,
        json!({ "ok": true, "checked": 4, "head_position": 4, "head_hash": last_hash })
    );
    assert_eq!(
        verify_over_http(&app, "?from=2&to=3").await,
        json!({ "ok": true, "checked": 2, "head_position": 3, "head_hash": page["events"][2]["hash"] })
    );
    assert_eq!(
        verify_over_http(&app, "?to=99").await["checked"],
        json!(4),
        "a range past the head stops at the head"
    );

    let (code, stdout) = run_cli(&app, &["audit", "head"]).await;
    assert_eq!(code, 0);
    let printed: Value = serde_json::from_str(&stdout).expect("head is JSON");
    assert_eq!(printed, json!({ "position": 4, "hash": last_hash }));
    let (code, stdout) = run_cli(&app, &["audit", "verify"]).await;
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["ok"],
        json!(true)
    );
}

#[tokio::test]
async fn a_changed_payload_is_reported_at_its_entry_and_the_cli_exits_1() {
    let app = common::spawn_app().await;
    delegation_completed(&app).await;
    let position = position_of(&app.pool, "DelegationSent").await;
    sqlx::query(
        "update events set payload = replace(payload::text, 'summarise', 'summarize')::json \
         where event_id = (select event_id from ledger_log where position = $1)",
    )
    .bind(position)
    .execute(&app.pool)
    .await
    .expect("tamper");

    let expected = json!({
        "ok": false,
        "first_bad_position": position,
        "reason": "hash does not match the event's content",
    });
    assert_eq!(verify_over_http(&app, "").await, expected);
    let (code, stdout) = run_cli(&app, &["audit", "verify"]).await;
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), expected);

    assert_eq!(
        verify_over_http(&app, &format!("?from={}", position + 1)).await["ok"],
        json!(true),
        "a range after the change trusts its anchor and checks out"
    );
}

#[tokio::test]
async fn a_deleted_event_is_reported_at_the_entry_made_from_it() {
    let app = common::spawn_app().await;
    delegation_completed(&app).await;
    let position = position_of(&app.pool, "DelegationCompleted").await;
    sqlx::query(
        "delete from events where event_id = (select event_id from ledger_log where position = $1)",
    )
    .bind(position)
    .execute(&app.pool)
    .await
    .expect("tamper");

    assert_eq!(
        verify_over_http(&app, "").await,
        json!({
            "ok": false,
            "first_bad_position": position,
            "reason": "the event this entry was made from is missing",
        })
    );
    let (_, listed) = app
        .get(
            &format!("/audit/events?after={}", position - 1),
            &app.admin_token,
        )
        .await;
    assert_eq!(
        listed["events"][0]["payload"],
        Value::Null,
        "the entry is still listed"
    );
}

#[tokio::test]
async fn a_deleted_log_entry_is_reported_where_it_was() {
    let app = common::spawn_app().await;
    delegation_completed(&app).await;
    sqlx::query("delete from ledger_log where position = 2")
        .execute(&app.pool)
        .await
        .expect("tamper");

    assert_eq!(
        verify_over_http(&app, "").await,
        json!({ "ok": false, "first_bad_position": 2, "reason": "entry missing from the log" })
    );
}

#[tokio::test]
async fn two_swapped_entries_are_reported_at_the_first_of_them() {
    let app = common::spawn_app().await;
    delegation_completed(&app).await;
    // Swap whole rows: entry 2 takes entry 3's place and vice versa (via a
    // free position; the primary key forbids a direct swap).
    let mut tx = app.pool.begin().await.expect("tx");
    for (from, to) in [(2, 1_000_002), (3, 2), (1_000_002, 3)] {
        sqlx::query("update ledger_log set position = $2 where position = $1")
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await
            .expect("swap");
    }
    tx.commit().await.expect("commit");

    assert_eq!(
        verify_over_http(&app, "").await,
        json!({
            "ok": false,
            "first_bad_position": 2,
            "reason": "prev_hash does not match the previous entry's hash",
        })
    );
}

#[tokio::test]
async fn a_consistently_rewritten_chain_verifies_but_no_longer_ends_in_the_exported_head() {
    let app = common::spawn_app().await;
    delegation_completed(&app).await;
    let exported = ledger::log::verify::head(&app.pool).await.expect("head");

    // Someone with write access changes a payload and recomputes every hash
    // from there on.
    let position = position_of(&app.pool, "DelegationSent").await;
    sqlx::query(
        "update events set payload = replace(payload::text, 'summarise', 'summarize')::json \
         where event_id = (select event_id from ledger_log where position = $1)",
    )
    .bind(position)
    .execute(&app.pool)
    .await
    .expect("tamper");
    /// position, aggregate type and id, sequence, event type and version,
    /// payload and metadata text: what the chain covers.
    type Covered = (i64, String, String, i64, String, String, String, String);
    let rows: Vec<Covered> = sqlx::query_as(
        "select l.position, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, \
         e.event_version, e.payload::text, e.metadata::text \
         from ledger_log l join events e on e.event_id = l.event_id \
         where l.position >= $1 order by l.position",
    )
    .bind(position)
    .fetch_all(&app.pool)
    .await
    .expect("rows");
    let mut prev: Vec<u8> = sqlx::query_scalar("select hash from ledger_log where position = $1")
        .bind(position - 1)
        .fetch_one(&app.pool)
        .await
        .expect("anchor");
    for (pos, aggregate_type, aggregate_id, sequence, event_type, version, payload, metadata) in
        rows
    {
        let hash = chain::link(
            &prev,
            &ChainedEvent {
                position: pos,
                aggregate_type: &aggregate_type,
                aggregate_id: &aggregate_id,
                sequence,
                event_type: &event_type,
                event_version: &version,
                payload: &payload,
                metadata: &metadata,
            },
        );
        sqlx::query("update ledger_log set prev_hash = $2, hash = $3 where position = $1")
            .bind(pos)
            .bind(&prev)
            .bind(hash.to_vec())
            .execute(&app.pool)
            .await
            .expect("rewrite");
        prev = hash.to_vec();
    }

    let verification = verify_over_http(&app, "").await;
    assert_eq!(
        verification["ok"],
        json!(true),
        "the rewrite is self-consistent"
    );
    assert_eq!(verification["head_position"], json!(exported.position));
    assert_ne!(
        verification["head_hash"],
        json!(exported.hash),
        "only the head kept elsewhere reveals it"
    );
}

// ---------------------------------------------------------------------------
// migration 0004

#[tokio::test]
async fn migrations_fill_the_workspace_columns_and_log_times_of_entries_positioned_before_them() {
    let url = common::fresh_database_url().await;
    let pool = ledger::db::connect(&url, 2).await.expect("connect");
    let earlier = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.as_str() < "0004" {
            std::fs::copy(&path, earlier.path().join(&name)).unwrap();
        }
    }
    sqlx::migrate::Migrator::new(earlier.path())
        .await
        .expect("migrations 0001-0003")
        .run(&pool)
        .await
        .expect("migrate to 0003");

    let a = Uuid::from_u128(0xa);
    let b = Uuid::from_u128(0xb);
    let rows = [
        (
            "delegation",
            json!({ "DelegationSent": { "source_id": a, "target_id": b } }),
        ),
        (
            "queue_item",
            json!({ "QueueItemEnqueued": { "caller_id": b, "target_id": a } }),
        ),
        (
            "workspace",
            json!({ "WorkspaceRegistered": { "workspace_id": a } }),
        ),
        (
            "idempotency_key",
            json!({ "IdempotencyKeyClaimed": { "workspace_id": b } }),
        ),
        (
            "delegation",
            json!({ "DelegationSent": { "source_id": "garbage" } }),
        ),
    ];
    for (n, (aggregate_type, payload)) in rows.iter().enumerate() {
        let position = n as i64 + 1;
        sqlx::query(
            "with e as (insert into events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) values ($1, $2, 1, 'E', '1.0', $3, '{}') \
             returning event_id, tx_id, recorded_at) \
             insert into ledger_log (position, event_id, tx_id, aggregate_type, aggregate_id, sequence, \
             event_type, recorded_at, prev_hash, hash) \
             select $4, event_id, tx_id, $1, $2, 1, 'E', recorded_at, '', '' from e",
        )
        .bind(aggregate_type)
        .bind(format!("id-{n}"))
        .bind(payload)
        .bind(position)
        .execute(&pool)
        .await
        .expect("old entry");
    }

    // An entry whose transaction began before the one positioned ahead of
    // it: its recorded_at is earlier than its predecessor's.
    sqlx::query(
        "update ledger_log set recorded_at = recorded_at - interval '1 hour' where position = 2",
    )
    .execute(&pool)
    .await
    .expect("an out-of-order recorded_at");

    ledger::db::migrate(&pool)
        .await
        .expect("migrate to the latest");
    let times: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("select recorded_at, logged_at from ledger_log order by position")
            .fetch_all(&pool)
            .await
            .expect("log times");
    assert_eq!(times[0].1, times[0].0);
    assert_eq!(
        times[1].1, times[0].1,
        "0008 never lets the log time go back"
    );
    assert!(times[1].0 < times[1].1);
    for pair in times.windows(2) {
        assert!(pair[1].1 >= pair[0].1, "{times:?}");
    }
    let filled: Vec<(Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
        "select source_workspace, target_workspace from ledger_log order by position",
    )
    .fetch_all(&pool)
    .await
    .expect("columns");
    assert_eq!(
        filled,
        vec![
            (Some(a), Some(b)),
            (Some(b), Some(a)),
            (Some(a), None),
            (Some(b), None),
            (None, None),
        ]
    );
}

#[tokio::test]
async fn positions_listed_for_a_workspace_are_unique_even_when_both_sides_match() {
    // A queue item whose caller is also its target cannot be produced
    // through the API, but the log must still list such an entry once.
    let app = common::spawn_app().await;
    let w = Uuid::new_v4();
    sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         values ('queue_item', $2, 1, 'QueueItemExpired', '1.0', \
         json_build_object('QueueItemExpired', json_build_object('queue_id', $2::uuid, 'target_id', $1, \
         'caller_id', $1, 'delegation_id', null, 'at', '2024-05-01T12:00:00Z')), '{}')",
    )
    .bind(w)
    .bind(Uuid::new_v4().to_string())
    .execute(&app.pool)
    .await
    .expect("insert");
    settle(&app.pool).await;

    let listed = positions(&all_pages(&app, &format!("workspace_id={w}"), 10).await);
    assert_eq!(listed, vec![1]);
    assert_eq!(listed.iter().collect::<HashSet<_>>().len(), 1);
}
