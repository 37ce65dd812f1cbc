//! Dispatch against a real A2A agent on the Python `a2a-sdk`
//! (tests/a2a_sdk/agent.py): a managed delegation completes with the agent's
//! answer, and a slow one completes by following the task — over v1.0
//! (chosen from the agent card) and over v0.3 (given at registration).

mod common;

use common::real_agent::start_real_agent;
use common::spawn_dispatching_app;
use serde_json::{json, Value};

async fn exercise(registration: Value) {
    let agent = start_real_agent().await;
    let app = spawn_dispatching_app(|_| {}).await;
    let source = app.register().await;
    let mut registration = registration;
    registration["url"] = json!(agent.base);
    let target = app.register_with(registration).await;

    let quick = app
        .delegate(
            &source,
            target.id,
            json!({ "task": "hello from the ledger" }),
        )
        .await;
    let slow = app
        .delegate(
            &source,
            target.id,
            json!({ "task": "slow: take your time" }),
        )
        .await;
    app.wait_status(quick, "completed").await;
    app.wait_status(slow, "completed").await;

    let body = app.delegation(&source, quick).await;
    assert_eq!(body["result"], "HELLO FROM THE LEDGER");
    let body = app.delegation(&source, slow).await;
    assert_eq!(body["result"], "TAKE YOUR TIME");
    let history: Vec<&str> = body["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert_eq!(history.first(), Some(&"pending"));
    assert_eq!(history.last(), Some(&"completed"));
    assert!(
        history.contains(&"in_progress") || history.contains(&"received"),
        "the slow task was followed while it ran: {history:?}"
    );
    let remote: Option<String> =
        sqlx::query_scalar("select remote_task_id from delegations where delegation_id = $1")
            .bind(slow)
            .fetch_one(&app.pool)
            .await
            .expect("remote task id");
    assert!(remote.is_some_and(|id| !id.is_empty()));
}

#[tokio::test]
async fn the_real_agent_completes_delegations_over_v1_0_from_its_card() {
    exercise(json!({})).await;
}

#[tokio::test]
async fn the_real_agent_completes_delegations_over_v0_3_when_registered_so() {
    exercise(json!({ "protocol_version": "0.3" })).await;
}
