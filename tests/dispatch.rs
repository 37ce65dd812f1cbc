//! Dispatch against a controllable fake A2A agent: managed delegations are
//! delivered, followed, queued behind a busy target, drained on heartbeats
//! in priority/FIFO order, expired, capped at five attempts, retried on
//! transient failures — and poll-mode targets are never called.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::fake_agent::{FakeAgent, Reply};
use common::{event_count, spawn_dispatching_app, TestApp, Workspace};
use ledger::a2a::message_id_for;
use serde_json::{json, Value};
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(60);

fn busy() -> Reply {
    Reply::Http {
        status: 503,
        body: json!({ "busy": true }).to_string(),
        retry_after: None,
    }
}

/// A source workspace and a push target served by `agent`.
async fn pair(app: &TestApp, agent: &FakeAgent) -> (Workspace, Workspace) {
    let source = app.register().await;
    let target = app.register_with(json!({ "url": agent.url() })).await;
    (source, target)
}

fn history(body: &Value) -> Vec<String> {
    body["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn queue_item(app: &TestApp, ws: &Workspace, queue_id: &str) -> Value {
    let (status, body) = app
        .get(
            &format!("/workspaces/{}/a2a/queue/{queue_id}", ws.id),
            &ws.token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn queue_status(app: &TestApp, delegation_id: Uuid) -> Option<String> {
    sqlx::query_scalar("select status from a2a_queue where delegation_id = $1")
        .bind(delegation_id)
        .fetch_optional(&app.pool)
        .await
        .expect("queue status")
}

async fn wait_queue_status(app: &TestApp, delegation_id: Uuid, status: &str) {
    common::wait_for(
        &app.pool,
        &format!("queue item to be {status}"),
        LIMIT,
        || async { queue_status(app, delegation_id).await.as_deref() == Some(status) },
    )
    .await;
}

fn sends_of(agent: &FakeAgent, delegation_id: Uuid) -> usize {
    let message_id = message_id_for(delegation_id);
    agent
        .sends()
        .iter()
        .filter(|r| r.message_id() == Some(message_id.as_str()))
        .count()
}

#[tokio::test]
async fn a_managed_delegation_completes_with_the_agents_answer_and_reaches_the_callers_inbox() {
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Message("the answer is 42".into()));
    let app = spawn_dispatching_app(|_| {}).await;
    let (source, target) = pair(&app, &agent).await;
    let id = app
        .delegate(&source, target.id, json!({ "task": "what is the answer?" }))
        .await;
    app.wait_status(id, "completed").await;
    // Every view, the activity feed included, has caught up.
    common::settle(&app.pool).await;

    let body = app.delegation(&source, id).await;
    assert_eq!(body["result"], "the answer is 42");
    assert_eq!(history(&body), ["pending", "dispatched", "completed"]);
    let sends = agent.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].message_id(), Some(message_id_for(id).as_str()));
    assert_eq!(
        sends[0].body["params"]["message"]["parts"][0]["text"],
        "what is the answer?"
    );

    // The result push: an a2a_receive row in the caller's feed.
    let (status, feed) = app
        .get(
            &format!("/workspaces/{}/activity?type=a2a_receive", source.id),
            &source.token,
        )
        .await;
    assert_eq!(status, 200, "{feed}");
    let rows = feed.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{feed}");
    assert_eq!(rows[0]["response_body"]["text"], "the answer is 42");
    assert_eq!(rows[0]["source_id"], target.id.to_string());
}

#[tokio::test]
async fn a_long_task_is_followed_by_polling_until_it_completes() {
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Task {
        polls: 4,
        text: "finally done".into(),
    });
    let app = spawn_dispatching_app(|_| {}).await;
    let (source, target) = pair(&app, &agent).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "completed").await;

    let body = app.delegation(&source, id).await;
    assert_eq!(body["result"], "finally done");
    assert_eq!(
        history(&body),
        ["pending", "dispatched", "in_progress", "completed"]
    );
    let requests = agent.requests();
    assert_eq!(agent.sends().len(), 1, "followed, never re-sent");
    let reads = requests.iter().filter(|r| r.method == "tasks/get").count();
    assert_eq!(reads, 4, "polled until the task was done");
    let remote: Option<String> =
        sqlx::query_scalar("select remote_task_id from delegations where delegation_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("remote task id");
    assert_eq!(remote.as_deref(), Some("task-1"));
}

#[tokio::test]
async fn a_v1_agent_chosen_from_its_card_is_sent_v1_requests() {
    let agent = FakeAgent::start().await;
    agent.set_card(Some(json!({
        "name": "v1", "supportedInterfaces": [
            { "url": agent.url(), "protocolBinding": "JSONRPC", "protocolVersion": "1.0" }
        ]
    })));
    agent.set_reply(Reply::Task {
        polls: 2,
        text: "v1 answer".into(),
    });
    let app = spawn_dispatching_app(|_| {}).await;
    let (source, target) = pair(&app, &agent).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "completed").await;
    assert_eq!(app.delegation(&source, id).await["result"], "v1 answer");
    let requests = agent.requests();
    assert!(requests
        .iter()
        .all(|r| r.a2a_version.as_deref() == Some("1.0")));
    assert_eq!(requests[0].method, "SendMessage");
    assert!(requests[1..].iter().all(|r| r.method == "GetTask"));
}

#[tokio::test]
async fn transient_failures_are_retried_and_permanent_ones_fail_with_a_reason() {
    let agent = FakeAgent::start().await;
    agent.script(vec![
        Reply::Http {
            status: 502,
            body: "bad gateway".into(),
            retry_after: None,
        },
        Reply::Http {
            status: 503,
            body: json!({ "restarting": true }).to_string(),
            retry_after: None,
        },
    ]);
    agent.set_reply(Reply::Message("third time lucky".into()));
    let app = spawn_dispatching_app(|_| {}).await;
    let (source, target) = pair(&app, &agent).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "completed").await;
    assert_eq!(sends_of(&agent, id), 3);
    assert_eq!(
        app.delegation(&source, id).await["result"],
        "third time lucky"
    );

    agent.set_reply(Reply::RpcError {
        code: -32602,
        message: "Invalid params".into(),
    });
    let failing = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(failing, "failed").await;
    let body = app.delegation(&source, failing).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Invalid params"),
        "{body}"
    );
    assert_eq!(
        sends_of(&agent, failing),
        1,
        "a permanent failure is not retried"
    );
}

#[tokio::test]
async fn an_unreachable_target_fails_after_the_configured_attempts() {
    let base = common::fake_agent::unused_base_url().await;
    let app = spawn_dispatching_app(|c| c.dispatch.send_attempts = 3).await;
    let source = app.register().await;
    let target = app.register_with(json!({ "url": base })).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "failed").await;
    let body = app.delegation(&source, id).await;
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("gave up after 3 attempts"), "{error}");
}

#[tokio::test]
async fn a_busy_target_queues_the_delegation_and_a_heartbeat_with_capacity_drains_it() {
    let agent = FakeAgent::start().await;
    agent.set_reply(busy());
    let app = spawn_dispatching_app(|_| {}).await;
    let (source, target) = pair(&app, &agent).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "queued").await;
    assert_eq!(
        sends_of(&agent, id),
        1,
        "a busy answer is not blindly retried"
    );

    let body = app.delegation(&source, id).await;
    let queue_id = body["queue_id"].as_str().expect("queue_id").to_string();
    let (status, queue) = app
        .get(
            &format!("/workspaces/{}/a2a/queue", target.id),
            &target.token,
        )
        .await;
    assert_eq!(status, 200, "{queue}");
    assert_eq!(queue["depth"], 1);
    assert_eq!(queue["items"][0]["queue_id"], queue_id.as_str());
    let item = queue_item(&app, &source, &queue_id).await;
    assert_eq!(item["status"], "queued");
    assert_eq!(item["priority"], 50);
    assert_eq!(item["caller_id"], source.id.to_string());

    // No spare capacity: nothing drained.
    assert_eq!(app.heartbeat(&target, 1, 1).await, 0);
    assert_eq!(queue_status(&app, id).await.as_deref(), Some("queued"));

    agent.set_reply(Reply::Message("worth the wait".into()));
    assert_eq!(app.heartbeat(&target, 0, 1).await, 1);
    app.wait_status(id, "completed").await;
    wait_queue_status(&app, id, "completed").await;
    let body = app.delegation(&source, id).await;
    assert_eq!(body["result"], "worth the wait");
    assert_eq!(
        history(&body),
        ["pending", "queued", "dispatched", "completed"]
    );
    let item = queue_item(&app, &target, &queue_id).await;
    assert_eq!(item["status"], "completed");
    assert_eq!(item["attempts"], 1);
    assert_eq!(item["response_body"]["text"], "worth the wait");
    assert_eq!(sends_of(&agent, id), 2);
    // A third workspace sees neither the item nor the queue.
    let other = app.register().await;
    let (status, _) = app
        .get(
            &format!("/workspaces/{}/a2a/queue/{queue_id}", other.id),
            &other.token,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_queue_drains_by_priority_then_in_arrival_order() {
    let agent = FakeAgent::start().await;
    agent.set_reply(busy());
    let app = spawn_dispatching_app(|_| {}).await;
    let (source, target) = pair(&app, &agent).await;
    let mut ids = Vec::new();
    for priority in [
        json!("info"),
        json!(50),
        json!("critical"),
        json!("task"),
        json!(100),
    ] {
        let id = app
            .delegate(&source, target.id, json!({ "priority": priority }))
            .await;
        // Enqueued one after the other, so arrival order is known.
        app.wait_status(id, "queued").await;
        ids.push(id);
    }
    let expected = [ids[2], ids[4], ids[1], ids[3], ids[0]];
    let (_, queue) = app
        .get(
            &format!("/workspaces/{}/a2a/queue", target.id),
            &target.token,
        )
        .await;
    let listed: Vec<String> = queue["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["delegation_id"].as_str().unwrap_or_default().to_string())
        .collect();
    let expected_text: Vec<String> = expected.iter().map(Uuid::to_string).collect();
    assert_eq!(listed, expected_text, "the list shows drain order");

    agent.set_reply(Reply::Message("done".into()));
    for (n, id) in expected.iter().enumerate() {
        assert_eq!(app.heartbeat(&target, 0, 1).await, 1, "heartbeat {n}");
        app.wait_status(*id, "completed").await;
    }
    let order: Vec<String> = agent
        .sends()
        .iter()
        .skip(5)
        .filter_map(|r| r.message_id().map(str::to_string))
        .collect();
    let expected_ids: Vec<String> = expected.iter().map(|id| message_id_for(*id)).collect();
    assert_eq!(order, expected_ids);
}

#[tokio::test]
async fn an_expired_item_is_never_sent_and_fails_its_delegation() {
    let agent = FakeAgent::start().await;
    agent.set_reply(busy());
    let app = spawn_dispatching_app(|_| {}).await;
    let (source, target) = pair(&app, &agent).await;
    let id = app
        .delegate(&source, target.id, json!({ "expires_in_seconds": 1 }))
        .await;
    // Nobody sends a heartbeat: the sweep ends it.
    app.wait_status(id, "failed").await;
    let body = app.delegation(&source, id).await;
    assert_eq!(history(&body), ["pending", "queued", "failed"]);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{body}"
    );
    // The queue view is its own projection: wait for it to show the expiry.
    wait_queue_status(&app, id, "expired").await;
    let queue_id = body["queue_id"].as_str().expect("queue_id").to_string();
    let item = queue_item(&app, &source, &queue_id).await;
    assert_eq!(item["status"], "expired");
    assert!(item["expires_at"].is_string());
    // A heartbeat now finds nothing to drain, and nothing more was sent.
    agent.set_reply(Reply::Message("too late".into()));
    assert_eq!(app.heartbeat(&target, 0, 4).await, 0);
    assert_eq!(sends_of(&agent, id), 1);
}

#[tokio::test]
async fn a_queued_request_gets_five_attempts_then_fails() {
    let agent = FakeAgent::start().await;
    agent.set_reply(busy());
    let app = spawn_dispatching_app(|_| {}).await;
    let (source, target) = pair(&app, &agent).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "queued").await;
    for attempt in 1..=5 {
        assert_eq!(app.heartbeat(&target, 0, 1).await, 1, "attempt {attempt}");
        let next = if attempt < 5 { "queued" } else { "failed" };
        common::wait_for(&app.pool, "the attempt to end", LIMIT, || async {
            let row: Option<(String, i32)> =
                sqlx::query_as("select status, attempts from a2a_queue where delegation_id = $1")
                    .bind(id)
                    .fetch_optional(&app.pool)
                    .await
                    .expect("queue row");
            row == Some((next.to_string(), attempt))
        })
        .await;
    }
    app.wait_status(id, "failed").await;
    let body = app.delegation(&source, id).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("after 5 attempts"),
        "{body}"
    );
    assert_eq!(
        sends_of(&agent, id),
        6,
        "the first send and five drained attempts"
    );
    assert_eq!(
        app.heartbeat(&target, 0, 1).await,
        0,
        "a failed item is not drained"
    );
}

#[tokio::test]
async fn concurrent_heartbeats_never_dispatch_one_item_twice() {
    let agent = FakeAgent::start().await;
    agent.set_reply(busy());
    let app = spawn_dispatching_app(|_| {}).await;
    let (source, target) = pair(&app, &agent).await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(app.delegate(&source, target.id, json!({})).await);
    }
    for id in &ids {
        app.wait_status(*id, "queued").await;
    }
    agent.set_reply(Reply::Message("once".into()));
    let beats = (0..8).map(|_| app.heartbeat(&target, 0, 3));
    let drained: u64 = futures::future::join_all(beats).await.into_iter().sum();
    assert_eq!(drained, 12, "every item claimed exactly once in total");
    for id in &ids {
        app.wait_status(*id, "completed").await;
    }
    let claims: Vec<(String, i64)> = sqlx::query_as(
        "select aggregate_id, count(*) from events where event_type = 'QueueItemDispatched' \
         group by aggregate_id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("claims");
    assert_eq!(claims.len(), 12);
    assert!(claims.iter().all(|(_, n)| *n == 1), "{claims:?}");
    for id in &ids {
        assert_eq!(sends_of(&agent, *id), 2, "one busy send, one drained send");
    }
}

#[tokio::test]
async fn a_poll_mode_target_gets_its_task_in_its_feed_and_reports_the_result() {
    let agent = FakeAgent::start().await;
    let app = spawn_dispatching_app(|_| {}).await;
    let source = app.register().await;
    let target = app.register_with(json!({ "delivery_mode": "poll" })).await;
    // A cursor before anything arrived.
    let (status, feed) = app
        .get(
            &format!("/workspaces/{}/activity", target.id),
            &target.token,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(feed.as_array().map(Vec::len), Some(0));

    let id = app
        .delegate(&source, target.id, json!({ "task": "poll me" }))
        .await;
    app.wait_status(id, "dispatched").await;
    common::settle(&app.pool).await;
    let (status, feed) = app
        .get(
            &format!("/workspaces/{}/activity?type=a2a_receive", target.id),
            &target.token,
        )
        .await;
    assert_eq!(status, 200, "{feed}");
    let rows = feed.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{feed}");
    assert_eq!(rows[0]["request_body"]["task"], "poll me");
    assert_eq!(rows[0]["request_body"]["delegation_id"], id.to_string());
    let cursor = rows[0]["id"].as_str().expect("row id").to_string();

    // The poller reports back; the caller's inbox gets the result.
    let (status, body) = app
        .update(
            &target,
            id,
            json!({ "status": "completed", "response_preview": "polled result" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The poller's cursor: after its first message, only the next one.
    let second = app
        .delegate(&source, target.id, json!({ "task": "and this" }))
        .await;
    app.wait_status(second, "dispatched").await;
    common::settle(&app.pool).await;
    let (status, after) = app
        .get(
            &format!("/workspaces/{}/activity?since_id={cursor}", target.id),
            &target.token,
        )
        .await;
    assert_eq!(status, 200, "{after}");
    let rows = after.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{after}");
    assert_eq!(rows[0]["activity_type"], "a2a_receive");
    assert_eq!(rows[0]["request_body"]["task"], "and this");
    assert_eq!(rows[0]["request_body"]["delegation_id"], second.to_string());
    let (_, inbox) = app
        .get(
            &format!("/workspaces/{}/activity?type=a2a_receive", source.id),
            &source.token,
        )
        .await;
    assert_eq!(inbox[0]["response_body"]["text"], "polled result");
    assert!(agent.requests().is_empty(), "nothing was sent over HTTP");
}

#[tokio::test]
async fn v0_2_content_is_normalised_and_a_message_without_content_is_rejected() {
    let agent = FakeAgent::start().await;
    let app = spawn_dispatching_app(|_| {}).await;
    let (source, target) = pair(&app, &agent).await;
    let path = format!("/workspaces/{}/delegate", source.id);
    let (status, body) = app
        .post(
            &path,
            &source.token,
            json!({ "target_id": target.id, "message": { "content": ["first", { "type": "text", "text": "second" }] } }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id: Uuid = body["delegation_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("id");
    app.wait_status(id, "completed").await;
    assert_eq!(app.delegation(&source, id).await["task"], "first\nsecond");

    let before = event_count(&app.pool).await;
    let cases = [
        (
            json!({ "target_id": target.id, "message": { "role": "user" } }),
            "neither",
        ),
        (json!({ "target_id": target.id }), "needs a `task`"),
        (
            json!({ "target_id": target.id, "task": "x", "message": { "content": "y" } }),
            "not both",
        ),
        (
            json!({ "target_id": target.id, "task": "x", "priority": "urgent" }),
            "priority",
        ),
        (
            json!({ "target_id": target.id, "task": "x", "priority": 7 }),
            "priority",
        ),
        (
            json!({ "target_id": target.id, "task": "x", "expires_in_seconds": 0 }),
            "expires_in_seconds",
        ),
    ];
    for (request, needle) in cases {
        let (status, body) = app.post(&path, &source.token, request.clone()).await;
        assert_eq!(status, 400, "{request} → {body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(needle),
            "{request} → {body}"
        );
    }
    assert_eq!(
        event_count(&app.pool).await,
        before,
        "rejected requests wrote events"
    );
}

#[tokio::test]
async fn a_protocol_version_given_at_registration_wins_over_the_card() {
    let agent = FakeAgent::start().await;
    agent.set_card(Some(
        json!({ "name": "x", "protocolVersion": "1.0", "url": agent.url() }),
    ));
    let app = spawn_dispatching_app(|_| {}).await;
    let source = app.register().await;
    let target = app
        .register_with(json!({ "url": agent.url(), "protocol_version": "0.3" }))
        .await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "completed").await;
    assert_eq!(agent.sends()[0].method, "message/send");
    assert_eq!(agent.sends()[0].a2a_version, None);

    let (status, body) = app
        .post(
            "/registry/register",
            "",
            json!({ "id": Uuid::new_v4(), "url": agent.url(), "protocol_version": "0.2" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("0.2"));
}

#[tokio::test]
async fn dispatch_outcomes_and_queue_depth_are_in_the_metrics() {
    let agent = FakeAgent::start().await;
    agent.set_reply(busy());
    let app = spawn_dispatching_app(|_| {}).await;
    let (source, target) = pair(&app, &agent).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "queued").await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let lines: HashMap<&str, &str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .collect();
    assert_eq!(lines.get("ledger_queue_depth"), Some(&"1"), "{text}");
    assert!(lines.contains_key("ledger_dispatcher_lag_events"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ledger_dispatch_outcomes_total{outcome=\"queued\"}")),
        "{text}"
    );
}

#[tokio::test]
async fn an_agent_that_crashes_mid_request_is_retried_then_fails_with_the_reason() {
    let (base, _closer) = common::fake_agent::spawn_connection_closer().await;
    let app = spawn_dispatching_app(|c| c.dispatch.send_attempts = 2).await;
    let source = app.register().await;
    let target = app.register_with(json!({ "url": base })).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "failed").await;
    let body = app.delegation(&source, id).await;
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("gave up after 2 attempts"), "{error}");
    assert_eq!(
        history(&body),
        ["pending", "failed"],
        "never recorded as dispatched"
    );
}

#[tokio::test]
async fn two_service_nodes_on_one_database_dispatch_each_delegation_once() {
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Task {
        polls: 2,
        text: "once".into(),
    });
    let first = spawn_dispatching_app(|_| {}).await;
    let second = common::spawn_app_with(first.database_url.clone(), |c| {
        c.dispatch = common::fast_dispatch();
    })
    .await;
    let (source, target) = pair(&first, &agent).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        // Requests arrive at both nodes.
        let node = if n % 2 == 0 { &first } else { &second };
        ids.push(node.delegate(&source, target.id, json!({})).await);
    }
    for id in &ids {
        first.wait_status(*id, "completed").await;
    }
    for id in &ids {
        assert_eq!(sends_of(&agent, *id), 1, "delegation {id}");
    }
    let tasks = agent.tasks_by_message();
    assert_eq!(tasks.len(), 20);
    assert!(tasks.values().all(|n| *n == 1), "{tasks:?}");
}

#[tokio::test]
async fn an_agent_report_that_overtakes_the_acknowledgement_does_not_stop_the_follow() {
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Task {
        polls: 2,
        text: "followed anyway".into(),
    });
    agent.gate_sends();
    let app = spawn_dispatching_app(|_| {}).await;
    let (source, target) = pair(&app, &agent).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    agent
        .wait_until("the send", |requests| {
            requests.iter().any(|r| r.method == "message/send")
        })
        .await;
    // The target reports before its answer to the send reaches the ledger.
    let (status, body) = app
        .update(&target, id, json!({ "status": "received" }))
        .await;
    assert_eq!(status, 200, "{body}");
    agent.release_sends(1);
    app.wait_status(id, "completed").await;
    let body = app.delegation(&source, id).await;
    assert_eq!(body["result"], "followed anyway");
    assert_eq!(
        history(&body),
        ["pending", "received", "in_progress", "completed"]
    );
    assert_eq!(sends_of(&agent, id), 1);
}

#[tokio::test]
async fn an_answer_with_a_nul_character_is_stored_and_projected() {
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Message("before\u{0}after".into()));
    let app = spawn_dispatching_app(|_| {}).await;
    let (source, target) = pair(&app, &agent).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "completed").await;
    assert_eq!(
        app.delegation(&source, id).await["result"],
        "before\u{FFFD}after"
    );
    common::settle(&app.pool).await;
}
