//! The A2A client against agents over real HTTP: a controllable fake (every
//! success and failure shape, both protocol versions, with the requests it
//! received checked) and a real agent built on the Python `a2a-sdk`
//! (tests/a2a_sdk/agent.py), exercised over v0.3 and v1.0.
//!
//! The real agent needs a Python with the pinned packages: unless
//! LEDGER_A2A_PYTHON names an interpreter that has them, the first real-agent
//! test provisions target/a2a-venv with scripts/a2a-venv (as .ci/run does),
//! so `cargo test` works on a fresh machine with python3 and PyPI. If that
//! fails, those tests fail with the reason (they never skip silently).

mod common;

use std::time::{Duration, Instant};

use common::fake_agent::{spawn_connection_closer, unused_base_url, FakeAgent, Reply};
use common::real_agent::start_real_agent;
use ledger::a2a::{
    message_id_for, A2aClient, A2aClientConfig, BusyReason, CallError, EndpointSource, ErrorKind,
    ProtocolVersion, SendOutcome, TaskSnapshot, TaskState,
};
use serde_json::json;
use uuid::Uuid;

const BOTH: [ProtocolVersion; 2] = [ProtocolVersion::V0_3, ProtocolVersion::V1_0];

fn client() -> A2aClient {
    client_with(|_| {})
}

fn client_with(adjust: impl FnOnce(&mut A2aClientConfig)) -> A2aClient {
    let mut config = A2aClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        card_timeout: Duration::from_secs(5),
        ..A2aClientConfig::default()
    };
    adjust(&mut config);
    // The agents of these tests run on this host.
    A2aClient::new(config, "127.0.0.0/8".parse().expect("a range"))
        .expect("the A2A client should build")
}

fn expect_message(outcome: SendOutcome) -> String {
    match outcome {
        SendOutcome::Message(message) => message.text,
        other => panic!("expected an immediate message, got {other:?}"),
    }
}

fn expect_task(outcome: SendOutcome) -> TaskSnapshot {
    match outcome {
        SendOutcome::Task(task) => task,
        other => panic!("expected a task, got {other:?}"),
    }
}

async fn send_err(agent_url: &str, version: ProtocolVersion) -> CallError {
    client()
        .send(agent_url, version, Uuid::new_v4(), "task")
        .await
        .expect_err("the send should fail")
}

/// Follows a task with backoff until it is terminal.
async fn poll_until_terminal(
    client: &A2aClient,
    url: &str,
    version: ProtocolVersion,
    task_id: &str,
    within: Duration,
) -> (TaskSnapshot, usize) {
    let deadline = Instant::now() + within;
    let mut delay = Duration::from_millis(50);
    let mut reads = 0;
    loop {
        let task = client
            .get_task(url, version, task_id)
            .await
            .unwrap_or_else(|e| panic!("reading task {task_id} over v{version} failed: {e}"));
        reads += 1;
        assert_eq!(task.id, task_id);
        if task.state.is_terminal() {
            return (task, reads);
        }
        assert!(
            Instant::now() < deadline,
            "task {task_id} still {} after {within:?}",
            task.state
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(400));
    }
}

// ---------------------------------------------------------------- fake agent

#[tokio::test]
async fn a_message_reply_completes_at_once_with_the_agents_text_in_both_versions() {
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Message("DONE: all of it".into()));
    for version in BOTH {
        let delegation = Uuid::new_v4();
        let outcome = client()
            .send(&agent.url(), version, delegation, "do all of it")
            .await
            .unwrap_or_else(|e| panic!("v{version} send failed: {e}"));
        assert_eq!(expect_message(outcome), "DONE: all of it");

        let sent = agent.sends().pop().expect("the agent saw the send");
        let message = &sent.body["params"]["message"];
        assert_eq!(sent.message_id(), Some(message_id_for(delegation).as_str()));
        match version {
            ProtocolVersion::V0_3 => {
                assert_eq!(sent.method, "message/send");
                assert_eq!(sent.a2a_version, None, "v0.3 sends no version header");
                assert_eq!(message["role"], "user");
                assert_eq!(
                    message["parts"],
                    json!([{ "kind": "text", "text": "do all of it" }])
                );
                assert_eq!(sent.body["params"]["configuration"]["blocking"], false);
            }
            ProtocolVersion::V1_0 => {
                assert_eq!(sent.method, "SendMessage");
                assert_eq!(sent.a2a_version.as_deref(), Some("1.0"));
                assert_eq!(message["role"], "ROLE_USER");
                assert_eq!(message["parts"], json!([{ "text": "do all of it" }]));
                assert_eq!(
                    sent.body["params"]["configuration"]["returnImmediately"],
                    true
                );
            }
        }
    }
}

#[tokio::test]
async fn a_task_reply_is_followed_with_get_task_until_it_completes_in_both_versions() {
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Task {
        polls: 3,
        text: "the long answer".into(),
    });
    let client = client();
    for version in BOTH {
        let task = expect_task(
            client
                .send(&agent.url(), version, Uuid::new_v4(), "think hard")
                .await
                .unwrap_or_else(|e| panic!("v{version} send failed: {e}")),
        );
        assert_eq!(task.state, TaskState::Working);
        assert_eq!(task.result_text(), Some("still working"));

        let (done, reads) = poll_until_terminal(
            &client,
            &agent.url(),
            version,
            &task.id,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(reads, 3, "working, working, completed");
        assert_eq!(done.state, TaskState::Completed);
        assert_eq!(done.artifact_text.as_deref(), Some("the long answer"));
        assert_eq!(done.result_text(), Some("the long answer"));

        let reads = agent
            .requests()
            .into_iter()
            .filter(|r| r.body["params"]["id"] == task.id.as_str())
            .collect::<Vec<_>>();
        assert_eq!(reads.len(), 3);
        for read in reads {
            match version {
                ProtocolVersion::V0_3 => {
                    assert_eq!(read.method, "tasks/get");
                    assert_eq!(read.a2a_version, None);
                }
                ProtocolVersion::V1_0 => {
                    assert_eq!(read.method, "GetTask");
                    assert_eq!(read.a2a_version.as_deref(), Some("1.0"));
                }
            }
        }
    }
}

#[tokio::test]
async fn sending_the_same_delegation_twice_sends_the_same_message_id() {
    let agent = FakeAgent::start().await;
    let client = client();
    for version in BOTH {
        let delegation = Uuid::new_v4();
        let other = Uuid::new_v4();
        for id in [delegation, delegation, other] {
            client
                .send(&agent.url(), version, id, "same task")
                .await
                .expect("send");
        }
        let sends = agent.sends();
        let ids: Vec<_> = sends[sends.len() - 3..]
            .iter()
            .map(|s| s.message_id().expect("a messageId").to_string())
            .collect();
        assert_eq!(ids[0], ids[1], "a resend is the same message");
        assert_ne!(ids[0], ids[2], "another delegation is another message");
        assert_eq!(ids[0], message_id_for(delegation));
        assert_eq!(
            sends[sends.len() - 3].body,
            sends[sends.len() - 2].body,
            "a resend is byte-for-byte the same request"
        );
    }
}

#[tokio::test]
async fn a_busy_503_is_busy_and_carries_the_retry_after_hint() {
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Http {
        status: 503,
        body: json!({ "error": "workspace agent busy", "busy": true }).to_string(),
        retry_after: Some("7".into()),
    });
    for version in BOTH {
        let e = send_err(&agent.url(), version).await;
        assert_eq!(e.kind, ErrorKind::Busy(BusyReason::AgentBusy), "{e}");
        assert!(!e.is_transient(), "busy must never be treated as transient");
        assert_eq!(e.http_status, Some(503));
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    }
}

#[tokio::test]
async fn a_429_is_busy_not_transient() {
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Http {
        status: 429,
        body: "Too Many Requests".into(),
        retry_after: None,
    });
    let e = send_err(&agent.url(), ProtocolVersion::V1_0).await;
    assert_eq!(e.kind, ErrorKind::Busy(BusyReason::RateLimited), "{e}");
    assert_eq!(e.retry_after, None);
}

#[tokio::test]
async fn a_202_queued_answer_from_a_proxy_is_busy_with_its_queue_id() {
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Http {
        status: 202,
        body: json!({ "queued": true, "queue_id": "q-42", "queue_depth": 2 }).to_string(),
        retry_after: None,
    });
    let e = send_err(&agent.url(), ProtocolVersion::V0_3).await;
    assert_eq!(
        e.kind,
        ErrorKind::Busy(BusyReason::QueuedByProxy {
            queue_id: Some("q-42".into())
        })
    );
    assert!(e.reason.contains("queued"), "{e}");
}

#[tokio::test]
async fn gateway_errors_and_a_restarting_503_are_transient() {
    let agent = FakeAgent::start().await;
    let cases = [
        (502, "failed to reach workspace agent".to_string(), None),
        (
            503,
            json!({ "error": "agent restarting", "restarting": true }).to_string(),
            Some("15"),
        ),
        (503, String::new(), None),
        (504, "upstream timed out".to_string(), None),
    ];
    for (status, body, retry_after) in cases {
        agent.set_reply(Reply::Http {
            status,
            body: body.clone(),
            retry_after: retry_after.map(str::to_string),
        });
        let e = send_err(&agent.url(), ProtocolVersion::V0_3).await;
        assert_eq!(e.kind, ErrorKind::Transient, "{status} {body}: {e}");
        assert_eq!(e.http_status, Some(status));
        assert_eq!(
            e.retry_after,
            retry_after.map(|s| Duration::from_secs(s.parse().expect("seconds")))
        );
    }
}

#[tokio::test]
async fn a_json_rpc_error_is_permanent_with_its_code_and_message() {
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::RpcError {
        code: -32602,
        message: "params.message.parts: Field required".into(),
    });
    for version in BOTH {
        let e = send_err(&agent.url(), version).await;
        assert!(e.is_permanent(), "{e}");
        assert_eq!(e.rpc_code, Some(-32602));
        assert!(
            e.reason.contains(
                "JSON-RPC error -32602 (invalid params): params.message.parts: Field required"
            ),
            "{e}"
        );
    }
}

#[tokio::test]
async fn a_malformed_body_and_other_client_errors_are_permanent() {
    let agent = FakeAgent::start().await;
    let cases = [
        (200, "<html>hello</html>", "not JSON"),
        (
            200,
            "{\"jsonrpc\":\"2.0\",\"id\":1}",
            "neither a result nor an error",
        ),
        (
            200,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"kind\":\"task\"}}",
            "no id",
        ),
        (404, "Not Found", "HTTP 404"),
        (401, "missing token", "HTTP 401"),
        (500, "Traceback (most recent call last)", "HTTP 500"),
    ];
    for (status, body, expected) in cases {
        agent.set_reply(Reply::Http {
            status,
            body: body.into(),
            retry_after: None,
        });
        let e = send_err(&agent.url(), ProtocolVersion::V1_0).await;
        assert!(e.is_permanent(), "{status} {body}: {e}");
        assert!(e.reason.contains(expected), "{e} should mention {expected}");
    }
}

#[tokio::test]
async fn an_agent_that_hangs_past_the_timeout_is_transient() {
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Hang);
    let client = client_with(|c| c.request_timeout = Duration::from_millis(300));
    let started = Instant::now();
    let e = client
        .send(&agent.url(), ProtocolVersion::V1_0, Uuid::new_v4(), "t")
        .await
        .expect_err("the send should time out");
    assert!(e.is_transient(), "{e}");
    assert!(e.reason.contains("timed out"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout should cut the wait short, took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_agent_that_closes_the_connection_is_transient() {
    let (base, server) = spawn_connection_closer().await;
    for version in BOTH {
        let e = send_err(&format!("{base}/"), version).await;
        assert!(e.is_transient(), "{e}");
        assert_eq!(e.http_status, None);
    }
    server.abort();
}

#[tokio::test]
async fn an_agent_that_is_not_listening_is_transient() {
    let base = unused_base_url().await;
    let e = send_err(&format!("{base}/"), ProtocolVersion::V0_3).await;
    assert!(e.is_transient(), "{e}");
    assert!(e.reason.contains("could not connect"), "{e}");
}

#[tokio::test]
async fn reading_an_unknown_task_is_permanent_with_task_not_found() {
    let agent = FakeAgent::start().await;
    for version in BOTH {
        let e = client()
            .get_task(&agent.url(), version, "no-such-task")
            .await
            .expect_err("unknown task");
        assert!(e.is_permanent(), "{e}");
        assert_eq!(e.rpc_code, Some(-32001));
    }
}

#[tokio::test]
async fn the_agent_card_chooses_v1_0_and_its_jsonrpc_url() {
    let agent = FakeAgent::start().await;
    agent.set_card(Some(json!({
        "name": "fake",
        "supportedInterfaces": [
            { "url": format!("{}/a2a/v1", agent.base), "protocolBinding": "JSONRPC", "protocolVersion": "1.0" },
            { "url": format!("{}/a2a/v03", agent.base), "protocolBinding": "JSONRPC", "protocolVersion": "0.3" }
        ]
    })));
    let client = client();
    let endpoint = client
        .resolve_endpoint(&agent.base, None)
        .await
        .expect("an endpoint");
    assert_eq!(endpoint.version, ProtocolVersion::V1_0);
    assert_eq!(endpoint.source, EndpointSource::Card);
    assert_eq!(endpoint.url, format!("{}/a2a/v1", agent.base));

    client
        .send(&endpoint.url, endpoint.version, Uuid::new_v4(), "t")
        .await
        .expect("send over the card's interface");
    let sent = agent.sends().pop().expect("a send");
    assert_eq!(sent.path, "/a2a/v1");
    assert_eq!(sent.method, "SendMessage");
}

#[tokio::test]
async fn a_v0_3_agent_card_chooses_v0_3() {
    let agent = FakeAgent::start().await;
    agent.set_card(Some(json!({
        "name": "older", "protocolVersion": "0.3.0",
        "url": format!("{}/rpc", agent.base), "preferredTransport": "JSONRPC"
    })));
    let endpoint = client()
        .resolve_endpoint(&agent.base, None)
        .await
        .expect("an endpoint");
    assert_eq!(endpoint.version, ProtocolVersion::V0_3);
    assert_eq!(endpoint.source, EndpointSource::Card);
    assert_eq!(endpoint.url, format!("{}/rpc", agent.base));
}

#[tokio::test]
async fn without_an_agent_card_the_client_falls_back_to_v0_3() {
    let agent = FakeAgent::start().await;
    let client = client();
    let e = client.card(&agent.base).await.expect_err("no card");
    assert!(e.is_permanent(), "{e}");
    assert_eq!(e.http_status, Some(404));

    let endpoint = client
        .resolve_endpoint(&agent.base, None)
        .await
        .expect("a fallback endpoint");
    assert_eq!(endpoint.version, ProtocolVersion::V0_3);
    assert_eq!(endpoint.source, EndpointSource::Fallback);
    assert_eq!(endpoint.url, agent.base);

    agent.set_card(Some(json!(["not", "a", "card"])));
    let endpoint = client
        .resolve_endpoint(&agent.base, None)
        .await
        .expect("a fallback endpoint");
    assert_eq!(endpoint.source, EndpointSource::Fallback);
}

#[tokio::test]
async fn a_configured_version_wins_over_the_agent_card() {
    let agent = FakeAgent::start().await;
    agent.set_card(Some(json!({
        "supportedInterfaces": [
            { "url": format!("{}/", agent.base), "protocolBinding": "JSONRPC", "protocolVersion": "1.0" }
        ]
    })));
    let endpoint = client()
        .resolve_endpoint(&agent.base, Some(ProtocolVersion::V0_3))
        .await
        .expect("an endpoint");
    assert_eq!(endpoint.version, ProtocolVersion::V0_3);
    assert_eq!(endpoint.source, EndpointSource::Configured);
}

#[tokio::test]
async fn an_unreachable_agent_fails_endpoint_resolution_instead_of_guessing() {
    let base = unused_base_url().await;
    let e = client()
        .resolve_endpoint(&base, None)
        .await
        .expect_err("nothing to resolve against");
    assert!(e.is_transient(), "{e}");
}

// ---------------------------------------------------------- real SDK agent

async fn exercise_real_agent(version: ProtocolVersion, url: &str) {
    let client = client();

    // An immediate answer: a message.
    let text = expect_message(
        client
            .send(url, version, Uuid::new_v4(), "hello from the ledger")
            .await
            .unwrap_or_else(|e| panic!("v{version} send to the SDK agent failed: {e}")),
    );
    assert_eq!(text, "HELLO FROM THE LEDGER");

    // A slow answer: the non-blocking send returns the task before it is
    // done, and polling follows it to completion.
    let task = expect_task(
        client
            .send(url, version, Uuid::new_v4(), "slow: take your time")
            .await
            .unwrap_or_else(|e| panic!("v{version} slow send to the SDK agent failed: {e}")),
    );
    assert!(
        !task.state.is_terminal(),
        "a non-blocking send should not wait for the task (got {})",
        task.state
    );
    let (done, reads) =
        poll_until_terminal(&client, url, version, &task.id, Duration::from_secs(30)).await;
    assert!(reads > 1, "the task should have been polled while working");
    assert_eq!(done.state, TaskState::Completed);
    assert_eq!(done.result_text(), Some("TAKE YOUR TIME"));

    // An unknown task is the SDK's "task not found".
    let e = client
        .get_task(url, version, &Uuid::new_v4().to_string())
        .await
        .expect_err("unknown task");
    assert!(e.is_permanent(), "{e}");
    assert_eq!(e.rpc_code, Some(-32001), "{e}");
}

#[tokio::test]
async fn the_real_a2a_sdk_agent_is_reached_over_v1_0_chosen_from_its_card() {
    let agent = start_real_agent().await;
    let endpoint = client()
        .resolve_endpoint(&agent.base, None)
        .await
        .expect("the SDK agent's card");
    assert_eq!(endpoint.version, ProtocolVersion::V1_0);
    assert_eq!(endpoint.source, EndpointSource::Card);
    exercise_real_agent(endpoint.version, &endpoint.url).await;
}

#[tokio::test]
async fn the_real_a2a_sdk_agent_is_reached_over_v0_3_when_configured() {
    let agent = start_real_agent().await;
    let endpoint = client()
        .resolve_endpoint(&agent.base, Some(ProtocolVersion::V0_3))
        .await
        .expect("the SDK agent's card");
    assert_eq!(endpoint.version, ProtocolVersion::V0_3);
    assert_eq!(endpoint.source, EndpointSource::Configured);
    exercise_real_agent(endpoint.version, &endpoint.url).await;
}
