//! The live feed over a real websocket client: replay then live with no gap
//! or duplicate at the seam under concurrent writers, per-workspace
//! filtering, slow consumers closed with a resumable position, several
//! processes on one database, and refused subscriptions.

mod common;

use std::collections::HashSet;

use common::{fresh_database_url, spawn_app, spawn_app_on, spawn_app_with, TestApp};
use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::postgres::PgListener;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(
    app: &TestApp,
    query: &str,
    token: &str,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://127.0.0.1:{}/ws{query}", app.port)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

/// The next feed message (pings are skipped); None when the socket closed.
async fn next_message(socket: &mut Socket) -> Option<Result<Value, (CloseCode, String)>> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => {
                return Some(Ok(serde_json::from_str(&text).expect("JSON message")))
            }
            Ok(Message::Close(frame)) => {
                let frame = frame.expect("a close frame with a reason");
                return Some(Err((frame.code, frame.reason.to_string())));
            }
            Ok(_) => continue,
            Err(error) => panic!("websocket error: {error}"),
        }
    }
}

/// Positions of every log entry that is broadcast (delegation and queue
/// item events), optionally only those a workspace may see.
async fn broadcast_positions(app: &TestApp, workspace: Option<Uuid>) -> Vec<i64> {
    let rows: Vec<(i64, Value)> = sqlx::query_as(
        "select l.position, e.payload::jsonb from ledger_log l join events e using (event_id) \
         where l.aggregate_type in ('delegation', 'queue_item') order by l.position",
    )
    .fetch_all(&app.pool)
    .await
    .expect("log");
    rows.into_iter()
        .filter(|(_, payload)| match workspace {
            None => true,
            Some(ws) => {
                let body = payload
                    .as_object()
                    .and_then(|o| o.values().next())
                    .expect("event body");
                let w = ws.to_string();
                body["source_id"] == w.as_str() || body["target_id"] == w.as_str()
            }
        })
        .map(|(position, _)| position)
        .collect()
}

/// Wait (on the sequencer's NOTIFY, no sleeping) until the log head reaches `head`.
async fn await_head(app: &TestApp, head: i64) {
    let mut listener = PgListener::connect(&app.database_url)
        .await
        .expect("listen");
    listener.listen("ledger_log").await.expect("listen");
    loop {
        let current: i64 = sqlx::query_scalar("select coalesce(max(position), 0) from ledger_log")
            .fetch_one(&app.pool)
            .await
            .expect("head");
        if current >= head {
            return;
        }
        listener.recv().await.expect("notification");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_then_live_delivers_every_position_once_in_order_while_writers_append() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    for n in 0..20 {
        app.record(&a, b.id, &format!("before {n}")).await;
    }
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let app_base = app.base.clone();
            let (a, b) = (a.clone(), b.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for n in 0..40 {
                    let id = Uuid::new_v4();
                    let response = client
                        .post(format!("{app_base}/workspaces/{}/delegations/record", a.id))
                        .bearer_auth(&a.token)
                        .json(&json!({ "target_id": b.id, "task": format!("w{w} n{n}"), "delegation_id": id }))
                        .send()
                        .await
                        .expect("record");
                    assert_eq!(response.status().as_u16(), 202);
                    let response = client
                        .post(format!("{app_base}/workspaces/{}/delegations/{id}/update", a.id))
                        .bearer_auth(&a.token)
                        .json(&json!({ "status": "completed", "response_preview": "ok" }))
                        .send()
                        .await
                        .expect("update");
                    assert_eq!(response.status().as_u16(), 200);
                }
            })
        })
        .collect();

    // Subscribe from the start while the writers are busy: part replay,
    // part live.
    let mut socket = connect(&app, "?from=0", &app.admin_token)
        .await
        .expect("connect");
    for writer in writers {
        writer.await.expect("writer");
    }
    let expected = broadcast_positions(&app, None).await;
    assert_eq!(expected.len(), 20 + 4 * 40 * 2);
    let last = *expected.last().expect("positions");
    let mut received = Vec::new();
    while received.last() != Some(&last) {
        let message = next_message(&mut socket)
            .await
            .expect("open")
            .expect("not closed");
        received.push(message["position"].as_i64().expect("position"));
    }
    assert_eq!(
        received, expected,
        "every broadcast position exactly once, in order"
    );
}

#[tokio::test]
async fn a_workspace_sees_only_what_it_sent_or_received_and_message_shapes_follow_the_contract() {
    let app = spawn_app().await;
    let (a, b, c, d) = (
        app.register().await,
        app.register().await,
        app.register().await,
        app.register().await,
    );
    let mut socket = connect(&app, &format!("?workspace_id={}&from=0", b.id), &b.token)
        .await
        .expect("connect");
    let to_b = app.record(&a, b.id, "for b").await;
    app.update(&a, to_b, json!({ "status": "in_progress" }))
        .await;
    app.update(&a, to_b, json!({ "status": "failed", "error": "nope" }))
        .await;
    let from_b = app.record(&b, c.id, "from b").await;
    app.update(
        &b,
        from_b,
        json!({ "status": "completed", "response_preview": "yes" }),
    )
    .await;
    for n in 0..5 {
        let other = app.record(&c, d.id, &format!("c to d {n}")).await;
        app.update(
            &c,
            other,
            json!({ "status": "completed", "response_preview": "private" }),
        )
        .await;
    }
    let expected = broadcast_positions(&app, Some(b.id)).await;
    assert_eq!(expected.len(), 5);
    let mut messages = Vec::new();
    while messages.len() < expected.len() {
        messages.push(
            next_message(&mut socket)
                .await
                .expect("open")
                .expect("not closed"),
        );
    }
    let positions: Vec<i64> = messages
        .iter()
        .filter_map(|m| m["position"].as_i64())
        .collect();
    assert_eq!(positions, expected);
    let kinds: Vec<&str> = messages.iter().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "DELEGATION_SENT",
            "DELEGATION_STATUS",
            "DELEGATION_FAILED",
            "DELEGATION_SENT",
            "DELEGATION_COMPLETE"
        ]
    );
    assert_eq!(messages[0]["workspace_id"], a.id.to_string());
    assert_eq!(messages[0]["delegation_id"], to_b.to_string());
    assert_eq!(
        messages[0]["payload"],
        json!({ "target_id": b.id, "task_preview": "for b", "status": "dispatched" })
    );
    assert_eq!(
        messages[1]["payload"],
        json!({ "target_id": b.id, "status": "in_progress" })
    );
    assert_eq!(
        messages[2]["payload"],
        json!({ "target_id": b.id, "error": "nope" })
    );
    assert_eq!(
        messages[4]["payload"],
        json!({ "target_id": c.id, "response_preview": "yes" })
    );
    assert!(messages[0]["at"].is_string());

    // Nothing of c → d follows: the next message is one made after this.
    let marker = app.record(&a, b.id, "marker").await;
    let next = next_message(&mut socket)
        .await
        .expect("open")
        .expect("not closed");
    assert_eq!(next["delegation_id"], marker.to_string());
}

#[tokio::test]
async fn subscriptions_with_bad_credentials_or_a_foreign_workspace_are_refused() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    let status = |result: Result<Socket, tokio_tungstenite::tungstenite::Error>| match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => 101,
    };
    assert_eq!(
        status(connect(&app, &format!("?workspace_id={}", a.id), &b.token).await),
        404
    );
    assert_eq!(status(connect(&app, "", "not-a-token").await), 401);
    assert_eq!(status(connect(&app, "?from=-1", &a.token).await), 400);
    assert_eq!(status(connect(&app, "?from=abc", &a.token).await), 400);
    let anonymous =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws", app.port)).await;
    assert_eq!(status(anonymous.map(|(s, _)| s)), 401);
    // The token may come in the query string (browsers cannot set headers).
    let by_query = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/ws?token={}",
        app.port, a.token
    ))
    .await;
    assert_eq!(status(by_query.map(|(s, _)| s)), 101);
    assert_eq!(
        status(connect(&app, &format!("?workspace_id={}", a.id), &a.token).await),
        101
    );
}

/// `batch=true`: the same replay, in frames holding arrays of messages;
/// live messages one per frame as always.
#[tokio::test]
async fn a_batched_replay_sends_the_same_messages_in_arrays_then_goes_live_one_per_frame() {
    let app = spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    for n in 0..30 {
        let id = app.record(&a, b.id, &format!("before {n}")).await;
        if n % 2 == 0 {
            let (status, body) = app.update(&b, id, json!({ "status": "completed" })).await;
            assert_eq!(status, 200, "{body}");
        }
    }
    let expected = broadcast_positions(&app, Some(a.id)).await;
    assert_eq!(expected.len(), 45);

    let mut one_by_one = Vec::new();
    let mut plain = connect(&app, "?from=0", &a.token).await.expect("connect");
    while one_by_one.len() < expected.len() {
        one_by_one.push(
            next_message(&mut plain)
                .await
                .expect("open")
                .expect("not closed"),
        );
    }
    let mut batched = Vec::new();
    let mut frames = 0;
    let mut socket = connect(&app, "?from=0&batch=true", &a.token)
        .await
        .expect("connect");
    while batched.len() < expected.len() {
        let frame = next_message(&mut socket)
            .await
            .expect("open")
            .expect("not closed");
        frames += 1;
        batched.extend(
            frame
                .as_array()
                .expect("a replay frame is an array")
                .iter()
                .cloned(),
        );
    }
    assert_eq!(batched, one_by_one, "the same messages, in the same order");
    assert!(
        frames < expected.len(),
        "{frames} frames for {} messages",
        expected.len()
    );

    let live = app.record(&a, b.id, "after").await;
    let message = next_message(&mut socket)
        .await
        .expect("open")
        .expect("not closed");
    assert!(
        message.is_object(),
        "a live message is one object: {message}"
    );
    assert_eq!(message["delegation_id"], live.to_string());
    assert!(message["position"].as_i64() > expected.last().copied());

    let refused = connect(&app, "?batch=yes", &a.token).await;
    assert!(
        matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == 400),
        "batch=yes is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_its_last_position_and_resumes_without_loss() {
    let url = common::fresh_database_url().await;
    let app = common::spawn_app_with(url, |config| config.hub.buffer = 4).await;
    let a = app.register().await;
    let b = app.register().await;
    let mut socket = connect(&app, "", &app.admin_token).await.expect("connect");
    let before: i64 = sqlx::query_scalar("select coalesce(max(position), 0) from ledger_log")
        .fetch_one(&app.pool)
        .await
        .expect("head");

    // A burst far larger than the subscriber's buffer, written straight into
    // the event store, while the client does not read.
    const BURST: i64 = 20_000;
    sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         select 'delegation', d.id::text, 1, 'DelegationSent', '1.0', json_build_object('DelegationSent', \
           json_build_object('delegation_id', d.id, 'source_id', $1::uuid, 'target_id', $2::uuid, \
             'task', 'burst ' || d.n, 'task_preview', 'burst ' || d.n, 'origin', 'recorded', \
             'idempotency_key', null, 'actor', json_build_object('kind', 'admin'), 'at', now())), '{}' \
         from (select n, gen_random_uuid() as id from generate_series(1, $3) n) d",
    )
    .bind(a.id)
    .bind(b.id)
    .bind(BURST)
    .execute(&app.pool)
    .await
    .expect("burst");
    let head = before + BURST;
    await_head(&app, head).await;

    let mut received = Vec::new();
    let (code, reason) = loop {
        match next_message(&mut socket)
            .await
            .expect("a close frame, not a dropped connection")
        {
            Ok(message) => received.push(message["position"].as_i64().expect("position")),
            Err(close) => break close,
        }
    };
    assert_eq!(u16::from(code), 4008, "{reason}");
    let resume: i64 = reason
        .rsplit("from=")
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("the reason names the resume position: {reason:?}"));
    match received.last() {
        Some(last) => assert_eq!(resume, *last, "resume from the last delivered position"),
        // Closed before anything was delivered: resume where it connected.
        None => assert!(resume <= before, "{resume} > {before}"),
    }
    assert!(resume < head, "the consumer was closed before the end");

    // Resume as a client would: from the position the close named, again
    // after each close (the hub may still be fanning the burst out, and a
    // 4-message buffer can fall behind it again).
    let mut resume = resume;
    while received.last() != Some(&head) {
        let mut socket = connect(&app, &format!("?from={resume}"), &app.admin_token)
            .await
            .expect("reconnect");
        while received.last() != Some(&head) {
            match next_message(&mut socket).await.expect("open") {
                Ok(message) => received.push(message["position"].as_i64().expect("position")),
                Err((code, reason)) => {
                    assert_eq!(u16::from(code), 4008, "{reason}");
                    let named: i64 = reason
                        .rsplit("from=")
                        .next()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or_else(|| panic!("a resume position: {reason:?}"));
                    assert_eq!(Some(&named), received.last(), "{reason}");
                    resume = named;
                    break;
                }
            }
        }
    }
    assert_eq!(
        received,
        ((before + 1)..=head).collect::<Vec<_>>(),
        "nothing lost, nothing repeated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_process_receives_commands_sent_to_another() {
    let first = spawn_app().await;
    let second = spawn_app_on(first.database_url.clone()).await;
    let a = first.register().await;
    let b = first.register().await;
    let mut socket = connect(&second, "", &second.admin_token)
        .await
        .expect("connect to the second process");
    let mut expected = HashSet::new();
    for n in 0..3 {
        expected.insert(
            first
                .record(&a, b.id, &format!("via first {n}"))
                .await
                .to_string(),
        );
    }
    let mut seen = HashSet::new();
    while seen.len() < expected.len() {
        let message = next_message(&mut socket)
            .await
            .expect("open")
            .expect("not closed");
        assert_eq!(message["type"], "DELEGATION_SENT");
        seen.insert(message["delegation_id"].as_str().expect("id").to_string());
    }
    assert_eq!(seen, expected);
    // And the other way round, on a workspace-scoped subscription.
    let mut scoped = connect(&first, "", &b.token)
        .await
        .expect("connect to the first process");
    let id = second.record(&a, b.id, "via second").await;
    let message = next_message(&mut scoped)
        .await
        .expect("open")
        .expect("not closed");
    assert_eq!(message["delegation_id"], id.to_string());
}

/// Wait until the hub counts `expected` subscribers (bounded; no sleeping).
async fn await_subscribers(app: &TestApp, expected: usize) {
    let mut count = app.hub.watch_subscribers();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        count.wait_for(|n| *n == expected),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the hub should count {expected} subscribers, has {}",
            app.hub.subscribers()
        )
    })
    .expect("hub alive");
}

#[tokio::test]
async fn subscribers_that_close_or_vanish_are_cleaned_up_promptly() {
    let app = spawn_app().await;
    let a = app.register().await;
    let mut polite = connect(&app, "", &a.token).await.expect("connect");
    let rude = connect(&app, "", &a.token).await.expect("connect");
    await_subscribers(&app, 2).await;
    polite.close(None).await.expect("close");
    await_subscribers(&app, 1).await;
    // Dropping the connection without a close frame.
    drop(rude);
    await_subscribers(&app, 0).await;
}

/// Every message of a replay from `from` up to the last broadcast position,
/// frames flattened.
async fn replay(app: &TestApp, query: &str, token: &str, last: i64) -> Vec<Value> {
    let mut socket = connect(app, query, token).await.expect("connect");
    let mut messages: Vec<Value> = Vec::new();
    while messages.last().and_then(|m| m["position"].as_i64()) != Some(last) {
        match next_message(&mut socket)
            .await
            .expect("open")
            .expect("not closed")
        {
            Value::Array(frame) => messages.extend(frame),
            message => messages.push(message),
        }
    }
    messages
}

#[tokio::test]
async fn a_replay_older_than_the_replay_cache_reads_the_log_and_joins_the_cache_seamlessly() {
    // A hub that keeps only the 5 most recent messages in memory.
    let database_url = fresh_database_url().await;
    let app = spawn_app_with(database_url.clone(), |config| config.hub.replay_cache = 5).await;
    let a = app.register().await;
    let b = app.register().await;
    for n in 0..12 {
        let id = app.record(&a, b.id, &format!("task {n}")).await;
        if n % 3 == 0 {
            let (status, body) = app.update(&b, id, json!({ "status": "completed" })).await;
            assert_eq!(status, 200, "{body}");
        }
    }
    let expected = broadcast_positions(&app, None).await;
    assert_eq!(expected.len(), 16);
    let last = *expected.last().expect("positions");
    // A second process started now has none of it in memory: its replay is
    // read from the log alone, the reference.
    let cold = spawn_app_on(database_url).await;
    let from_log = replay(&cold, "?from=0", &cold.admin_token, last).await;
    let positions: Vec<i64> = from_log
        .iter()
        .filter_map(|m| m["position"].as_i64())
        .collect();
    assert_eq!(positions, expected);

    // Part log, part cache: the same messages, whatever the framing.
    assert_eq!(
        replay(&app, "?from=0", &app.admin_token, last).await,
        from_log
    );
    assert_eq!(
        replay(&app, "?from=0&batch=true", &app.admin_token, last).await,
        from_log
    );
    // All from the cache: a resume inside its window.
    let resume_after = expected[expected.len() - 4];
    assert_eq!(
        replay(
            &app,
            &format!("?from={resume_after}"),
            &app.admin_token,
            last
        )
        .await,
        from_log[from_log.len() - 3..]
    );
    // A workspace's view of it, filtered the same way on both paths.
    let own = replay(&app, "?from=0", &b.token, last).await;
    assert_eq!(own, replay(&cold, "?from=0", &b.token, last).await);
    assert_eq!(own.len(), 16, "b received every one of these");
}
