//! kill -9 while 100 delegations are in flight: after a restart every one
//! reaches a terminal state, and no task runs twice on the agent.
//!
//! The agent acknowledges the first 60 sends with tasks it keeps `working`,
//! and leaves the other 40 requests hanging without accepting them. The
//! ledger is killed once it has recorded the 60 acknowledgements and the
//! agent holds all 100 requests. After the restart the 60 must be followed
//! (never re-sent: re-sending would start a second task) and the 40 must be
//! sent again (no send of theirs was ever acknowledged).

mod common;

use std::collections::HashSet;
use std::process::Child;
use std::time::Duration;

use common::fake_agent::{FakeAgent, Reply};
use ledger::a2a::message_id_for;
use serde_json::{json, Value};
use uuid::Uuid;

const ADMIN: &str = "crash-admin-0123456789abcdef0123456789abcdef";
const IN_FLIGHT: usize = 100;
const ACKNOWLEDGED: usize = 60;

fn serve(database_url: &str) -> (Child, String) {
    // All 100 sends go to one agent at once: room for them past the
    // default cap per target. A short A2A timeout: after the restart, an
    // attempt on record without its answer is looked at once that long has
    // passed since it was made (it cannot be in flight any more).
    common::serve_binary_with(
        database_url,
        ADMIN,
        &[
            ("LEDGER_DISPATCH_PER_TARGET", "128"),
            ("LEDGER_DISPATCH_REQUEST_TIMEOUT", "2"),
        ],
    )
}

async fn register(client: &reqwest::Client, base: &str, body: Value) -> (Uuid, String) {
    let id = Uuid::new_v4();
    let mut body = body;
    body["id"] = json!(id);
    let answer: Value = client
        .post(format!("{base}/registry/register"))
        .json(&body)
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    (
        id,
        answer["auth_token"].as_str().expect("token").to_string(),
    )
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_with_100_in_flight_loses_none_and_duplicates_no_task() {
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Task {
        polls: 1,
        text: "survived".into(),
    });
    agent.hold_tasks(true);
    agent.limit_tasks(Some(ACKNOWLEDGED));

    let database_url = common::fresh_database_url().await;
    let (mut child, base) = serve(&database_url);
    let pool = ledger::db::connect(&database_url, 4)
        .await
        .expect("connect");
    let client = reqwest::Client::new();
    let (source, token) = register(&client, &base, json!({ "url": agent.url() })).await;
    let (target, _) = register(&client, &base, json!({ "url": agent.url() })).await;

    let mut ids = Vec::new();
    for n in 0..IN_FLIGHT {
        let answer: Value = client
            .post(format!("{base}/workspaces/{source}/delegate"))
            .bearer_auth(&token)
            .json(&json!({ "target_id": target, "task": format!("job {n}") }))
            .send()
            .await
            .expect("delegate")
            .json()
            .await
            .expect("json");
        ids.push(
            answer["delegation_id"]
                .as_str()
                .and_then(|s| s.parse::<Uuid>().ok())
                .expect("delegation_id"),
        );
    }

    // The agent holds every request, and the ledger recorded the 60 it
    // acknowledged.
    agent
        .wait_until("all 100 sends", |requests| {
            requests
                .iter()
                .filter(|r| r.method == "message/send")
                .count()
                >= IN_FLIGHT
        })
        .await;
    let acknowledged_sql = "select count(*) from events where event_type = 'DelegationDispatched' \
         and payload->'DelegationDispatched'->>'remote_task_id' is not null";
    common::wait_for(
        &pool,
        "60 acknowledged sends recorded",
        Duration::from_secs(60),
        || async { count(&pool, acknowledged_sql).await == ACKNOWLEDGED as i64 },
    )
    .await;
    let acknowledged: HashSet<Uuid> = sqlx::query_scalar::<_, String>(
        "select aggregate_id from events where event_type = 'DelegationDispatched'",
    )
    .fetch_all(&pool)
    .await
    .expect("acknowledged")
    .into_iter()
    .filter_map(|id| id.parse().ok())
    .collect();
    assert_eq!(acknowledged.len(), ACKNOWLEDGED);

    // kill -9: no shutdown, no checkpoint, connections cut mid-request.
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    agent.limit_tasks(None);
    let (mut child, _base) = serve(&database_url);
    agent.hold_tasks(false);

    common::wait_for(
        &pool,
        "every delegation terminal",
        Duration::from_secs(120),
        || async {
            count(
                &pool,
                "select count(*) from delegations where status in ('completed', 'failed')",
            )
            .await
                == IN_FLIGHT as i64
        },
    )
    .await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let completed = count(
        &pool,
        "select count(*) from delegations where status = 'completed' and result = 'survived'",
    )
    .await;
    assert_eq!(
        completed, IN_FLIGHT as i64,
        "every delegation completed with the agent's answer"
    );

    // No task ran twice: one task per message, 100 in all.
    let tasks = agent.tasks_by_message();
    assert_eq!(agent.tasks_created(), IN_FLIGHT);
    assert_eq!(tasks.len(), IN_FLIGHT);
    assert!(tasks.values().all(|n| *n == 1), "{tasks:?}");

    // The acknowledged ones were followed, the others sent again.
    let sends = agent.sends();
    for id in &ids {
        let message_id = message_id_for(*id);
        let sent = sends
            .iter()
            .filter(|r| r.message_id() == Some(message_id.as_str()))
            .count();
        let expected = if acknowledged.contains(id) { 1 } else { 2 };
        assert_eq!(sent, expected, "delegation {id}");
    }
}
