//! The whole A2A task lifecycle through the dispatcher: an agent that asks
//! for input, rejects or cancels; a caller that cancels; a deadline that
//! passes. Against the fake agent (each case on demand) and the real
//! `a2a-sdk` agent where the agent's own behaviour matters.

mod common;

use std::time::Duration;

use common::fake_agent::{FakeAgent, Reply};
use common::{spawn_dispatching_app, TestApp, Workspace};
use futures_util::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

async fn pair(app: &TestApp, agent: &FakeAgent) -> (Workspace, Workspace) {
    let source = app.register().await;
    let target = app.register_with(json!({ "url": agent.url() })).await;
    (source, target)
}

/// The messages of `delegation_id` the caller's feed replays from 0, once
/// at least `count` arrived.
async fn feed_of(app: &TestApp, ws: &Workspace, delegation_id: Uuid, count: usize) -> Vec<Value> {
    let url = format!("ws://127.0.0.1:{}/ws?token={}&from=0", app.port, ws.token);
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrade");
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(message)) = socket.next().await {
            if let Ok(text) = message.to_text() {
                if let Ok(value) = serde_json::from_str::<Value>(text) {
                    if value["delegation_id"] == json!(delegation_id) {
                        seen.push(value);
                        if seen.len() >= count {
                            return;
                        }
                    }
                }
            }
        }
    })
    .await
    .expect("the feed carries the delegation's messages");
    seen
}

async fn activity(app: &TestApp, ws: &Workspace) -> Vec<Value> {
    let (status, body) = app
        .get(&format!("/workspaces/{}/activity", ws.id), &ws.token)
        .await;
    assert_eq!(status, 200, "{body}");
    body.as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn an_agent_asking_for_input_makes_the_delegation_wait_with_its_question_then_go_on() {
    let app = spawn_dispatching_app(|_| {}).await;
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Scripted(vec![
        ("working", "thinking".into()),
        ("input-required", "Which branch should I build?".into()),
        ("input-required", "Which branch should I build?".into()),
        ("input-required", "Which branch should I build?".into()),
        ("working", "building".into()),
        ("completed", "built main".into()),
    ]));
    let (source, target) = pair(&app, &agent).await;
    let id = app.delegate(&source, target.id, json!({})).await;

    app.wait_status(id, "input_required").await;
    let waiting = app.delegation(&source, id).await;
    assert_eq!(waiting["question"], "Which branch should I build?");
    let feed = activity(&app, &source).await;
    assert!(
        feed.iter().any(|row| row["activity_type"] == "a2a_receive"
            && row["response_body"]["question"] == "Which branch should I build?"),
        "{feed:?}"
    );
    let messages = feed_of(&app, &source, id, 4).await;
    assert!(
        messages
            .iter()
            .any(|m| m["type"] == "DELEGATION_INPUT_REQUIRED"
                && m["payload"]["question"] == "Which branch should I build?"),
        "{messages:?}"
    );

    app.wait_status(id, "completed").await;
    let done = app.delegation(&source, id).await;
    assert_eq!(done["result"], "built main");
    assert!(done.get("question").is_none(), "{done}");
    let history: Vec<&str> = done["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert!(
        history
            .windows(2)
            .any(|w| w == ["input_required", "in_progress"]),
        "{history:?}"
    );
}

#[tokio::test]
async fn an_agent_that_rejects_fails_the_delegation_and_one_that_cancels_cancels_it() {
    let app = spawn_dispatching_app(|_| {}).await;
    let agent = FakeAgent::start().await;
    let (source, target) = pair(&app, &agent).await;

    agent.set_reply(Reply::Scripted(vec![
        ("submitted", String::new()),
        ("rejected", "I do not do builds".into()),
    ]));
    let rejected = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(rejected, "failed").await;
    let error = app.delegation(&source, rejected).await["error"].to_string();
    assert!(
        error.contains("rejected") && error.contains("I do not do builds"),
        "{error}"
    );

    agent.set_reply(Reply::Scripted(vec![
        ("working", String::new()),
        ("canceled", "shutting down".into()),
    ]));
    let canceled = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(canceled, "canceled").await;
    let body = app.delegation(&source, canceled).await;
    assert!(
        body["error"].to_string().contains("canceled its task"),
        "{body}"
    );
    // The agent cancelled it itself: it is not asked to.
    assert!(agent.cancels().is_empty(), "{:?}", agent.cancels());
}

#[tokio::test]
async fn the_caller_cancels_a_running_delegation_and_the_agent_is_asked_to_cancel_its_task() {
    let app = spawn_dispatching_app(|_| {}).await;
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Task {
        polls: 1,
        text: "never".into(),
    });
    agent.hold_tasks(true);
    let (source, target) = pair(&app, &agent).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "in_progress").await;

    let path = format!("/workspaces/{}/delegations/{id}/cancel", source.id);
    // Only the caller may cancel.
    let (status, _) = app
        .post(
            &format!("/workspaces/{}/delegations/{id}/cancel", target.id),
            &target.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = app
        .post(&path, &source.token, json!({ "reason": "plans changed" }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "canceled");
    let detail = app.delegation(&source, id).await;
    assert_eq!(detail["status"], "canceled");
    assert!(
        detail["error"].to_string().contains("plans changed"),
        "{detail}"
    );

    agent
        .wait_until("the task's cancel", |requests| {
            requests.iter().any(|r| r.method == "tasks/cancel")
        })
        .await;
    assert_eq!(agent.cancels(), vec!["task-1".to_string()]);

    let messages = feed_of(&app, &source, id, 4).await;
    assert!(
        messages.iter().any(|m| m["type"] == "DELEGATION_CANCELED"),
        "{messages:?}"
    );
    let feed = activity(&app, &source).await;
    assert!(
        feed.iter()
            .any(|row| row["method"] == "delegate_result" && row["status"] == "canceled"),
        "{feed:?}"
    );
    // Cancelling again with the same reason changes nothing; a finished
    // delegation cannot be cancelled otherwise.
    let (status, _) = app
        .post(&path, &source.token, json!({ "reason": "plans changed" }))
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .post(&path, &source.token, json!({ "reason": "another reason" }))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["current_status"], "canceled");
}

#[tokio::test]
async fn a_completed_delegation_cannot_be_cancelled() {
    let app = spawn_dispatching_app(|_| {}).await;
    let agent = FakeAgent::start().await;
    let (source, target) = pair(&app, &agent).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "completed").await;
    let (status, body) = app
        .post(
            &format!("/workspaces/{}/delegations/{id}/cancel", source.id),
            &source.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["current_status"], "completed");
}

#[tokio::test]
async fn a_queued_delegation_that_is_cancelled_is_never_sent() {
    let app = spawn_dispatching_app(|_| {}).await;
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Http {
        status: 503,
        body: json!({ "busy": true }).to_string(),
        retry_after: None,
    });
    let (source, target) = pair(&app, &agent).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "queued").await;
    let (status, body) = app
        .post(
            &format!("/workspaces/{}/delegations/{id}/cancel", source.id),
            &source.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let queue_id = app.delegation(&source, id).await["queue_id"]
        .as_str()
        .expect("a queue item")
        .to_string();
    common::wait_for(
        &app.pool,
        "the queue item withdrawn",
        Duration::from_secs(30),
        || async {
            let status: Option<String> =
                sqlx::query_scalar("select status from a2a_queue where queue_id = $1::uuid")
                    .bind(&queue_id)
                    .fetch_optional(&app.pool)
                    .await
                    .expect("queue status");
            status.as_deref() == Some("failed")
        },
    )
    .await;
    agent.set_reply(Reply::Message("too late".into()));
    assert_eq!(
        app.heartbeat(&target, 0, 4).await,
        0,
        "nothing left to drain"
    );
    assert_eq!(
        agent.sends().len(),
        1,
        "only the busy attempt reached the agent"
    );
    assert_eq!(app.status_of(id).await.as_deref(), Some("canceled"));
}

#[tokio::test]
async fn a_delegation_past_its_deadline_fails_and_the_agent_is_asked_to_cancel() {
    let app = spawn_dispatching_app(|_| {}).await;
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Task {
        polls: 1,
        text: "never".into(),
    });
    agent.hold_tasks(true);
    let (source, target) = pair(&app, &agent).await;
    let id = app
        .delegate(&source, target.id, json!({ "deadline_seconds": 1 }))
        .await;
    let deadline = app.delegation(&source, id).await["deadline"].clone();
    assert!(deadline.is_string(), "the deadline is shown: {deadline}");
    app.wait_status(id, "failed").await;
    assert_eq!(
        app.delegation(&source, id).await["error"],
        "deadline exceeded"
    );
    agent
        .wait_until("the task's cancel", |requests| {
            requests.iter().any(|r| r.method == "tasks/cancel")
        })
        .await;
    assert_eq!(agent.cancels().len(), 1);
}

#[tokio::test]
async fn deadlines_outside_the_allowed_range_are_refused() {
    let app = spawn_dispatching_app(|config| {
        config.dispatch.max_deadline = Duration::from_secs(3600);
    })
    .await;
    let agent = FakeAgent::start().await;
    let (source, target) = pair(&app, &agent).await;
    for bad in [json!(0), json!(3601), json!(-5)] {
        let (status, body) = app
            .post(
                &format!("/workspaces/{}/delegate", source.id),
                &source.token,
                json!({ "target_id": target.id, "task": "t", "deadline_seconds": bad }),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("deadline_seconds"),
            "{body}"
        );
    }
    // Without one, the configured default applies.
    let id = app.delegate(&source, target.id, json!({})).await;
    assert!(app.delegation(&source, id).await["deadline"].is_string());
}

#[tokio::test]
async fn a_recorded_delegation_reports_input_required_and_canceled_through_the_update_route() {
    let app = common::spawn_app().await;
    let source = app.register().await;
    let target = app.register().await;
    let id = app.record(&source, target.id, "review").await;
    let (status, body) = app
        .update(&target, id, json!({ "status": "input_required" }))
        .await;
    assert_eq!(status, 400, "a question is needed: {body}");
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("question"));
    let (status, body) = app
        .update(
            &target,
            id,
            json!({ "status": "input_required", "question": "Which file?" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.delegation(&source, id).await["question"], "Which file?");
    let (status, body) = app
        .update(
            &target,
            id,
            json!({ "status": "canceled", "error": "gave up" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "canceled");
    let (status, body) = app
        .update(&source, id, json!({ "status": "completed" }))
        .await;
    assert_eq!(status, 409, "{body}");
}

// ------------------------------------------------- the real a2a-sdk agent

#[tokio::test]
async fn the_real_agents_question_and_cancel_go_through_the_lifecycle() {
    let agent = common::real_agent::start_real_agent().await;
    let app = spawn_dispatching_app(|_| {}).await;
    let source = app.register().await;
    let target = app
        .register_with(json!({ "url": agent.base, "protocol_version": "1.0" }))
        .await;

    let asking = app
        .delegate(&source, target.id, json!({ "task": "ask: which branch?" }))
        .await;
    app.wait_status(asking, "input_required").await;
    assert_eq!(
        app.delegation(&source, asking).await["question"],
        "WHICH BRANCH?"
    );

    let long = app
        .delegate(&source, target.id, json!({ "task": "wait: forever" }))
        .await;
    app.wait_status(long, "in_progress").await;
    let (status, body) = app
        .post(
            &format!("/workspaces/{}/delegations/{long}/cancel", source.id),
            &source.token,
            json!({ "reason": "not needed" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let task_id: Option<String> =
        sqlx::query_scalar("select remote_task_id from delegations where delegation_id = $1")
            .bind(long)
            .fetch_one(&app.pool)
            .await
            .expect("remote task id");
    let task_id = task_id.expect("the agent's task id is on record");
    // Ask the agent itself how its task is.
    let client = ledger::a2a::A2aClient::new(
        ledger::a2a::A2aClientConfig::default(),
        common::local_agents(),
    )
    .expect("a client");
    common::poll_until(
        "the agent to cancel its task",
        Duration::from_secs(30),
        || async {
            client
                .get_task(&agent.base, ledger::a2a::ProtocolVersion::V1_0, &task_id)
                .await
                .is_ok_and(|task| task.state == ledger::a2a::TaskState::Canceled)
        },
    )
    .await;
    assert_eq!(app.status_of(long).await.as_deref(), Some("canceled"));
}
