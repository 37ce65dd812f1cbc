//! Faults of the dispatcher and the log, each against the real service:
//! a leader deposed while sends are in flight, a send that times out after
//! it reached the agent, SIGTERM with sends in flight, the database
//! dropping the dispatcher's connections, and a transaction left open
//! elsewhere on the cluster.

mod common;

use std::collections::HashMap;
use std::process::Child;
use std::time::Duration;

use common::fake_agent::{FakeAgent, Reply};
use common::{spawn_dispatching_app, TestApp, Workspace};
use serde_json::{json, Value};
use uuid::Uuid;

const ADMIN: &str = "faults-admin-0123456789abcdef0123456789abcdef";

/// Every messageId the agent received, and how often.
fn assert_each_message_once(agent: &FakeAgent, expected: usize) {
    let sends = agent.sends_by_message();
    let repeated: HashMap<&String, &usize> = sends.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "sent more than once: {repeated:?}");
    assert_eq!(sends.len(), expected, "distinct messages");
    let tasks = agent.tasks_by_message();
    assert!(
        tasks.values().all(|n| *n == 1),
        "tasks per message: {tasks:?}"
    );
}

/// Terminate the backends holding advisory locks in the app's database
/// (the sequencer's and the dispatcher's leader connections).
async fn terminate_leaders(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "select count(*) from (select pg_terminate_backend(l.pid) from pg_locks l \
         join pg_stat_activity a on a.pid = l.pid \
         where l.locktype = 'advisory' and l.granted and a.datname = current_database()) t",
    )
    .fetch_one(&app.pool)
    .await
    .expect("terminate the leaders")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_makes_no_send_so_the_agent_sees_each_message_once() {
    let agent = FakeAgent::start().await;
    // Each answer takes a while: sends are in flight when the lock goes.
    agent.set_reply(Reply::Delayed(
        Duration::from_millis(300),
        Box::new(Reply::Task {
            polls: 1,
            text: "done".into(),
        }),
    ));
    let first = spawn_dispatching_app(|_| {}).await;
    let second = common::spawn_app_with(first.database_url.clone(), |config| {
        config.dispatch = common::fast_dispatch();
    })
    .await;
    let source = first.register().await;
    let target = first.register_with(json!({ "url": agent.url() })).await;

    let mut ids = Vec::new();
    for n in 0..40 {
        let app = if n % 2 == 0 { &first } else { &second };
        ids.push(app.delegate(&source, target.id, json!({})).await);
        if n == 12 || n == 26 {
            // Under load: once this delegation's send is on the wire (the
            // agent holds it for a while), depose the leaders.
            let delegation = *ids.last().expect("just delegated");
            let message = ledger::a2a::message_id_for(delegation);
            agent
                .wait_until("the latest send in flight", |r| {
                    r.iter().any(|r| r.message_id() == Some(message.as_str()))
                })
                .await;
            assert!(terminate_leaders(&first).await >= 1);
        }
    }
    for id in &ids {
        first.wait_status(*id, "completed").await;
    }
    assert_each_message_once(&agent, 40);
    let epoch: i64 =
        sqlx::query_scalar("select epoch from leadership_epochs where role = 'dispatcher'")
            .fetch_one(&first.pool)
            .await
            .expect("epoch");
    assert!(epoch >= 3, "two take-overs bump the epoch twice: {epoch}");
}

async fn ledger_metric(app: &TestApp, name: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_send_that_timed_out_after_reaching_a_v1_agent_is_found_not_repeated() {
    let app = spawn_dispatching_app(|config| {
        config.dispatch.client.request_timeout = Duration::from_millis(500);
    })
    .await;
    let agent = FakeAgent::start().await;
    // The agent creates the task at once but answers after the timeout.
    agent.set_reply(Reply::Delayed(
        Duration::from_secs(2),
        Box::new(Reply::Task {
            polls: 1,
            text: "answered".into(),
        }),
    ));
    let source = app.register().await;
    let target = app
        .register_with(json!({ "url": agent.url(), "protocol_version": "1.0" }))
        .await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "completed").await;
    assert_eq!(app.delegation(&source, id).await["result"], "answered");
    assert_each_message_once(&agent, 1);
    let sends = agent.sends();
    assert_eq!(
        sends[0].body["params"]["message"]["contextId"],
        json!(id.to_string()),
        "the context is the delegation"
    );
    assert!(
        agent.requests().iter().any(|r| r.method == "ListTasks"),
        "the agent was asked for the task"
    );
}

#[tokio::test]
async fn a_resend_to_a_v0_3_agent_that_may_duplicate_is_counted() {
    let app = spawn_dispatching_app(|config| {
        config.dispatch.client.request_timeout = Duration::from_millis(500);
    })
    .await;
    let agent = FakeAgent::start().await;
    agent.script(vec![Reply::Delayed(
        Duration::from_secs(2),
        Box::new(Reply::Task {
            polls: 1,
            text: "first".into(),
        }),
    )]);
    agent.set_reply(Reply::Task {
        polls: 1,
        text: "second".into(),
    });
    let before = ledger_metric(&app, "ledger_dispatch_uncertain_total").await;
    let source = app.register().await;
    let target = app.register_with(json!({ "url": agent.url() })).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    app.wait_status(id, "completed").await;
    // v0.3 has no way to look for the first task: it was sent again, and
    // that is on record.
    assert_eq!(agent.sends().len(), 2);
    let after = ledger_metric(&app, "ledger_dispatch_uncertain_total").await;
    assert!(after >= before + 1.0, "{before} → {after}");
}

#[tokio::test]
async fn a_drive_that_fails_on_the_database_is_retried_in_the_same_process() {
    let app = spawn_dispatching_app(|_| {}).await;
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Delayed(
        Duration::from_millis(50),
        Box::new(Reply::Task {
            polls: 2,
            text: "done".into(),
        }),
    ));
    let source = app.register().await;
    let target = app.register_with(json!({ "url": agent.url() })).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(app.delegate(&source, target.id, json!({})).await);
    }
    // While answers come back and acknowledgements are written, drop the
    // pool's connections (not the leaders' locks: no take-over may rescue
    // a stranded drive).
    let mut dropped = 0;
    for round in 1..=5 {
        agent
            .wait_until("answers in flight", |r| {
                r.iter().filter(|r| r.method == "message/send").count() >= round * 4
            })
            .await;
        dropped += sqlx::query_scalar::<_, i64>(
            "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity \
             where datname = current_database() and pid <> pg_backend_pid() \
             and pid not in (select pid from pg_locks where locktype = 'advisory' and granted)) t",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap_or(0);
    }
    assert!(dropped > 0, "no connection was dropped");
    for id in &ids {
        app.wait_status(*id, "completed").await;
    }
    assert_each_message_once(&agent, 20);
}

#[tokio::test]
async fn a_transaction_left_open_elsewhere_stalls_the_log_and_readyz_says_so() {
    let app = common::spawn_app_with(common::fresh_database_url().await, |config| {
        config.readiness_max_unpositioned_age = Duration::from_secs(1);
        config.visibility_timeout = Duration::from_millis(200);
    })
    .await;
    let idle: String = sqlx::query_scalar("show idle_in_transaction_session_timeout")
        .fetch_one(&app.pool)
        .await
        .expect("setting");
    assert_eq!(
        idle, "1min",
        "the ledger's own connections bound idle transactions"
    );

    let source = app.register().await;
    let target = app.register().await;
    // Another database on the same cluster: a transaction with an id,
    // left open.
    let mut foreign = common::server_connection().await;
    sqlx::query("begin")
        .execute(&mut foreign)
        .await
        .expect("begin");
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut foreign)
        .await
        .expect("take a transaction id");
    // Committed, but behind the open transaction's horizon.
    app.record(&source, target.id, "stuck behind the horizon")
        .await;
    let readiness = || async {
        let response = app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("readyz");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("json"))
    };
    common::poll_until(
        "readyz to report the stall",
        Duration::from_secs(30),
        || async { readiness().await.0 == 503 },
    )
    .await;
    let (_, body) = readiness().await;
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("stalled"),
        "{body}"
    );
    assert!(body["unpositioned"].as_i64().unwrap_or(0) >= 1, "{body}");
    assert!(ledger_metric(&app, "ledger_log_unpositioned_events").await >= 1.0);
    assert!(ledger_metric(&app, "ledger_log_oldest_unpositioned_seconds").await > 1.0);

    sqlx::query("rollback")
        .execute(&mut foreign)
        .await
        .expect("end it");
    common::poll_until("readyz to recover", Duration::from_secs(30), || async {
        readiness().await.0 == 200
    })
    .await;
    assert_eq!(readiness().await.1["unpositioned"], 0);
}

// ------------------------------------------------ the real binary, SIGTERM

async fn register(client: &reqwest::Client, base: &str, body: Value) -> Workspace {
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
    Workspace {
        id,
        token: answer["auth_token"].as_str().expect("token").to_string(),
    }
}

fn serve(database_url: &str) -> (Child, String) {
    common::serve_binary_with(
        database_url,
        ADMIN,
        &[
            ("LEDGER_DISPATCH_PER_TARGET", "64"),
            ("LEDGER_DISPATCH_REQUEST_TIMEOUT", "10"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_twenty_sends_in_flight_finishes_them_and_sends_each_once() {
    let database_url = common::fresh_database_url().await;
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Delayed(
        Duration::from_secs(2),
        Box::new(Reply::Task {
            polls: 1,
            text: "done".into(),
        }),
    ));
    let (mut ledger, base) = serve(&database_url);
    let client = reqwest::Client::new();
    let source = register(&client, &base, json!({ "delivery_mode": "poll" })).await;
    let target = register(&client, &base, json!({ "url": agent.url() })).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let answer: Value = client
            .post(format!("{base}/workspaces/{}/delegate", source.id))
            .bearer_auth(&source.token)
            .json(&json!({ "target_id": target.id, "task": "t" }))
            .send()
            .await
            .expect("delegate")
            .json()
            .await
            .expect("json");
        ids.push(answer["delegation_id"].as_str().expect("id").to_string());
    }
    agent
        .wait_until("all twenty sends held by the agent", |r| {
            r.iter().filter(|r| r.method == "message/send").count() >= 20
        })
        .await;
    unsafe { libc::kill(ledger.id() as libc::pid_t, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || ledger.wait())
        .await
        .expect("joined")
        .expect("exit");
    assert!(status.success(), "{status:?}");

    // The answers were recorded before the process left: the next start
    // follows the tasks instead of sending again.
    let (mut ledger, _base) = serve(&database_url);
    let pool = ledger::db::connect(&database_url, 2).await.expect("pool");
    common::poll_until(
        "every delegation completed",
        Duration::from_secs(60),
        || async {
            let open: i64 =
                sqlx::query_scalar("select count(*) from delegations where status <> 'completed'")
                    .fetch_one(&pool)
                    .await
                    .unwrap_or(-1);
            open == 0
        },
    )
    .await;
    assert_each_message_once(&agent, 20);
    let _ = ledger.kill();
    let _ = ledger.wait();
}
