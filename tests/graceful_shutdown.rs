//! SIGTERM under load: the service stops accepting, lets in-flight commands
//! finish, closes websocket subscribers with "going away" and their last
//! position, stops its background tasks at a clean checkpoint — and the next
//! start on the same database resumes with nothing lost.

mod common;

use std::collections::HashSet;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const ADMIN: &str = "graceful-admin-0123456789abcdef0123456789abcdef";

fn serve(database_url: &str) -> (Child, String) {
    common::serve_binary(database_url, ADMIN)
}

fn terminate(child: &Child) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
}

async fn register(client: &reqwest::Client, base: &str) -> (Uuid, String) {
    let id = Uuid::new_v4();
    let body: Value = client
        .post(format!("{base}/registry/register"))
        .json(&json!({ "id": id, "delivery_mode": "poll" }))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    (id, body["auth_token"].as_str().expect("token").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_loses_no_accepted_command_and_the_next_start_resumes() {
    let database_url = common::fresh_database_url().await;
    let (mut child, base) = serve(&database_url);
    let client = reqwest::Client::new();
    let (a, token) = register(&client, &base).await;
    let (b, _) = register(&client, &base).await;
    let port = base.rsplit(':').next().expect("port").to_string();
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws?token={ADMIN}&from=0"))
            .await
            .expect("subscribe");

    let accepted = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            let (accepted, count, enough) = (accepted.clone(), count.clone(), enough.clone());
            tokio::spawn(async move {
                // Until the service stops answering.
                loop {
                    let id = Uuid::new_v4();
                    let response = client
                        .post(format!("{base}/workspaces/{a}/delegations/record"))
                        .bearer_auth(&token)
                        .json(&json!({ "target_id": b, "task": "work", "delegation_id": id }))
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status().as_u16() == 202 => {
                            accepted.lock().expect("lock").push(id);
                            if count.fetch_add(1, Ordering::SeqCst) + 1 == 100 {
                                enough.notify_one();
                            }
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    enough.notified().await;
    terminate(&child);
    for client in clients {
        client.await.expect("client");
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(
        status.success(),
        "ledger should exit cleanly on SIGTERM: {status:?}"
    );

    // The subscriber was told the server is going away, and where to resume.
    let mut last_seen = 0;
    let close = loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(&text).expect("json");
                last_seen = message["position"].as_i64().expect("position");
            }
            Some(Ok(Message::Close(frame))) => break frame.expect("a close frame"),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1001, "{}", close.reason);
    assert!(
        close.reason.ends_with(&format!("from={last_seen}")),
        "{}",
        close.reason
    );

    // Every accepted command is in the event store and in the views.
    let accepted: HashSet<Uuid> = accepted.lock().expect("lock").iter().copied().collect();
    assert!(accepted.len() >= 100);
    let pool = ledger::db::connect(&database_url, 2)
        .await
        .expect("connect");
    let stored: HashSet<Uuid> = sqlx::query_scalar::<_, String>(
        "select aggregate_id from events where event_type = 'DelegationSent'",
    )
    .fetch_all(&pool)
    .await
    .expect("events")
    .into_iter()
    .filter_map(|id| id.parse().ok())
    .collect();
    assert!(accepted.is_subset(&stored), "an accepted command was lost");
    let viewed: HashSet<Uuid> = sqlx::query_scalar("select delegation_id from delegations")
        .fetch_all(&pool)
        .await
        .expect("view")
        .into_iter()
        .collect();
    assert!(
        accepted.is_subset(&viewed),
        "an accepted command is missing from the view"
    );

    // The next start resumes: it serves, sequences everything, chain intact.
    let (child, base) = serve(&database_url);
    let id = Uuid::new_v4();
    let response = client
        .post(format!("{base}/workspaces/{a}/delegations/record"))
        .bearer_auth(&token)
        .json(&json!({ "target_id": b, "task": "after restart", "delegation_id": id }))
        .send()
        .await
        .expect("record after restart");
    assert_eq!(response.status().as_u16(), 202);
    let (events, head): (i64, i64) = sqlx::query_as(
        "select (select count(*) from events), (select coalesce(max(position), 0) from ledger_log)",
    )
    .fetch_one(&pool)
    .await
    .expect("counts");
    assert_eq!(head, events, "every event is in the log after the restart");
    let verified = ledger::log::verify::verify(&pool, None, None)
        .await
        .expect("verify");
    assert!(verified.is_ok(), "{verified:?}");
    terminate(&child);
    let mut child = child;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "{status:?}");
}
