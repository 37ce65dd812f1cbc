//! Attacks on the ledger from outside, each of which worked before the
//! outbound policy, the keyed idempotency ids and the per-target cap:
//! making the dispatcher call internal addresses and read their answer,
//! squatting another workspace's idempotency key, and starving every
//! workspace's dispatch with one target that never answers.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_agent::{FakeAgent, Reply};
use common::{event_count, spawn_dispatching_app, TestApp, Workspace};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use uuid::Uuid;

/// A listener that accepts connections, counts them, and never answers
/// (holding each socket open).
struct Silent {
    base: String,
    accepted: Arc<AtomicUsize>,
    accepted_changed: tokio::sync::watch::Receiver<usize>,
    _task: tokio::task::JoinHandle<()>,
}

impl Silent {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (changed, accepted_changed) = tokio::sync::watch::channel(0);
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                changed.send_replace(n);
            }
        });
        Self {
            base,
            accepted,
            accepted_changed,
            _task: task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    async fn wait_for(&self, n: usize) {
        let mut changed = self.accepted_changed.clone();
        tokio::time::timeout(Duration::from_secs(30), changed.wait_for(|seen| *seen >= n))
            .await
            .unwrap_or_else(|_| panic!("the silent target never saw {n} connections"))
            .expect("counter alive");
    }
}

async fn delegation_error(app: &TestApp, source: &Workspace, id: Uuid) -> String {
    app.wait_status(id, "failed").await;
    let body = app.delegation(source, id).await;
    body["error"].as_str().expect("an error").to_string()
}

// ---------------------------------------------------------------- SSRF

#[tokio::test]
async fn a_redirect_to_the_ledgers_own_metrics_is_not_followed_and_nothing_of_it_is_shown() {
    let app = spawn_dispatching_app(|_| {}).await;
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Redirect(format!("{}/metrics", app.base)));
    let source = app.register().await;
    let target = app.register_with(json!({ "url": agent.url() })).await;
    let id = app.delegate(&source, target.id, json!({})).await;

    let error = delegation_error(&app, &source, id).await;
    assert!(error.contains("redirect"), "{error}");
    for leaked in ["# HELP", "ledger_", "# TYPE"] {
        assert!(!error.contains(leaked), "the metrics page leaked: {error}");
    }
    let (_, list) = app
        .get(
            &format!("/workspaces/{}/delegations", source.id),
            &source.token,
        )
        .await;
    assert!(!list.to_string().contains("# HELP"), "{list}");
}

#[tokio::test]
async fn an_agent_body_that_is_not_json_rpc_never_reaches_the_caller() {
    let app = spawn_dispatching_app(|_| {}).await;
    let agent = FakeAgent::start().await;
    let secret = "db_password=hunter2";
    agent.set_reply(Reply::Http {
        status: 200,
        body: format!("<html>internal admin page: {secret}</html>"),
        retry_after: None,
    });
    let source = app.register().await;
    let target = app
        .register_with(json!({ "url": format!("{}/a2a?key=topsecret", agent.base) }))
        .await;
    let id = app.delegate(&source, target.id, json!({})).await;
    let error = delegation_error(&app, &source, id).await;
    assert!(
        !error.contains(secret) && !error.contains("html"),
        "{error}"
    );
    assert!(
        !error.contains("topsecret"),
        "the URL's query leaked: {error}"
    );
    assert!(error.contains("not JSON"), "{error}");
}

#[tokio::test]
async fn registering_an_internal_address_or_credentials_is_a_400_that_writes_nothing() {
    // The default policy: public addresses only.
    let app = common::spawn_app_with(common::fresh_database_url().await, |config| {
        config.outbound = ledger::a2a::OutboundPolicy::public_only();
    })
    .await;
    for url in [
        "http://127.0.0.1:8080/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/",
        "http://172.20.1.1/",
        "http://192.168.0.1/",
        "http://100.64.0.1/",
        "http://0.0.0.0:9/",
        "http://[::1]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",
        "https://user:pass@agent.example/",
    ] {
        let before = event_count(&app.pool).await;
        let response = app
            .client
            .post(app.url("/registry/register"))
            .json(&json!({ "id": Uuid::new_v4(), "url": url }))
            .send()
            .await
            .expect("sent");
        let (status, body) = common::read(response).await;
        assert_eq!(status, 400, "{url}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("outbound policy") || error.contains("credentials"),
            "{url}: {error}"
        );
        assert_eq!(
            event_count(&app.pool).await,
            before,
            "{url} wrote something"
        );
    }
    // A public address is fine.
    app.register_with(json!({ "url": "https://agent.example/a2a" }))
        .await;
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_when_connecting_and_fails_at_once() {
    let app = spawn_dispatching_app(|config| {
        config.outbound = ledger::a2a::OutboundPolicy::public_only();
    })
    .await;
    let silent = Silent::start().await;
    let port = silent.base.rsplit(':').next().expect("port").to_string();
    let source = app.register_with(json!({ "delivery_mode": "poll" })).await;
    // A name passes registration; the address it resolves to does not pass
    // the connection.
    let target = app
        .register_with(json!({ "url": format!("http://localhost:{port}/") }))
        .await;
    let id = app.delegate(&source, target.id, json!({})).await;
    let error = delegation_error(&app, &source, id).await;
    assert!(error.contains("outbound policy"), "{error}");
    assert!(!error.contains("gave up after"), "retried: {error}");
    assert_eq!(silent.accepted(), 0, "a connection was made");
}

#[tokio::test]
async fn an_agent_card_pointing_inside_is_refused_before_any_request_is_sent_there() {
    // The operator allows exactly the agent's address; the card names
    // another one on the same host.
    let agent = FakeAgent::start_on("127.0.0.2").await;
    let victim = FakeAgent::start_on("127.0.0.1").await;
    agent.set_card(Some(json!({
        "name": "sneaky",
        "protocolVersion": "0.3.0",
        "url": format!("{}/", victim.base),
        "preferredTransport": "JSONRPC",
    })));
    let app = spawn_dispatching_app(|config| {
        config.outbound = "127.0.0.2/32".parse().expect("a range");
    })
    .await;
    let source = app.register_with(json!({ "delivery_mode": "poll" })).await;
    let target = app.register_with(json!({ "url": agent.url() })).await;
    let id = app.delegate(&source, target.id, json!({})).await;
    let error = delegation_error(&app, &source, id).await;
    assert!(
        error.contains("outbound policy") && error.contains("127.0.0.1"),
        "{error}"
    );
    assert!(victim.requests().is_empty(), "the victim was called");
    assert!(agent.sends().is_empty(), "the send went elsewhere");
}

// --------------------------------------------------- idempotency keys

/// The id key `nightly-7`'s first delegation got before ids were keyed
/// with the installation's secret: public, so anyone could compute it.
fn public_key_id(workspace: Uuid, generation: u32, key: &str) -> Uuid {
    const OLD_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6467_6572_2d69_6465_6d70_6f74_656e);
    Uuid::new_v5(
        &OLD_NAMESPACE,
        format!("{workspace}/{generation}/{key}").as_bytes(),
    )
}

/// The id the service derives now, computed from the stored secret (as
/// someone who stole it could).
async fn keyed_key_id(app: &TestApp, workspace: Uuid, generation: u32, key: &str) -> Uuid {
    use hmac::{Hmac, Mac};
    let secret: Vec<u8> = sqlx::query_scalar(
        "select secret from installation_secrets where name = 'idempotency_keys'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the installation has a secret");
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&secret).expect("any key length");
    mac.update(format!("{workspace}/{generation}/{key}").as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

async fn delegate_with_key(app: &TestApp, from: &Workspace, to: Uuid, key: &str) -> (u16, Value) {
    app.post(
        &format!("/workspaces/{}/delegate", from.id),
        &from.token,
        json!({ "target_id": to, "task": "nightly build", "idempotency_key": key }),
    )
    .await
}

#[tokio::test]
async fn another_workspace_cannot_take_over_an_idempotency_key_by_predicting_its_id() {
    let app = common::spawn_app().await;
    let attacker = app.register().await;
    let victim = app.register().await;
    let target = app.register().await;
    let squatted = public_key_id(victim.id, 1, "nightly-7");
    let (status, body) = app
        .post(
            &format!("/workspaces/{}/delegations/record", attacker.id),
            &attacker.token,
            json!({ "target_id": target.id, "task": "squat", "delegation_id": squatted }),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    let (status, body) = delegate_with_key(&app, &victim, target.id, "nightly-7").await;
    assert_eq!(
        status, 202,
        "the key must create the victim's own delegation: {body}"
    );
    assert_eq!(body["idempotent_hit"], Value::Null, "{body}");
    let id: Uuid = body["delegation_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    assert_ne!(id, squatted);
    let mine = app.delegation(&victim, id).await;
    assert_eq!(mine["source_id"], json!(victim.id));
    assert_eq!(mine["task"], "nightly build");

    // And the key now holds it.
    let (status, again) = delegate_with_key(&app, &victim, target.id, "nightly-7").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["delegation_id"], json!(id));
    assert_eq!(again["idempotent_hit"], true);
}

#[tokio::test]
async fn even_a_squatter_who_knows_the_secret_never_gets_answered_as_the_keys_hit() {
    let app = common::spawn_app().await;
    let attacker = app.register().await;
    let victim = app.register().await;
    let target = app.register().await;
    let squatted = keyed_key_id(&app, victim.id, 1, "nightly-7").await;
    let (status, body) = app
        .post(
            &format!("/workspaces/{}/delegations/record", attacker.id),
            &attacker.token,
            json!({ "target_id": target.id, "task": "squat", "delegation_id": squatted }),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    let (status, body) = delegate_with_key(&app, &victim, target.id, "nightly-7").await;
    assert_eq!(status, 202, "{body}");
    let id: Uuid = body["delegation_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    assert_ne!(
        id, squatted,
        "the squatted delegation must not be the answer"
    );
    assert_eq!(
        app.delegation(&victim, id).await["source_id"],
        json!(victim.id)
    );
    // The attacker's delegation is untouched and still invisible to the victim.
    let (status, _) = app
        .get(
            &format!("/workspaces/{}/delegations/{squatted}", victim.id),
            &victim.token,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_keys_delegation_id_is_keyed_with_the_installations_secret() {
    let app = common::spawn_app().await;
    let source = app.register().await;
    let target = app.register().await;
    let (status, body) = delegate_with_key(&app, &source, target.id, "weekly").await;
    assert_eq!(status, 202, "{body}");
    let id: Uuid = body["delegation_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    assert_ne!(id, public_key_id(source.id, 1, "weekly"));
    assert_eq!(id, keyed_key_id(&app, source.id, 1, "weekly").await);
}

#[tokio::test]
async fn key_ids_differ_between_installations() {
    let first = common::spawn_app().await;
    let second = common::spawn_app().await;
    let workspace = Uuid::new_v4();
    assert_ne!(
        keyed_key_id(&first, workspace, 1, "k").await,
        keyed_key_id(&second, workspace, 1, "k").await
    );
}

// ------------------------------------------------------ fair dispatch

#[tokio::test]
async fn a_target_that_never_answers_does_not_hold_up_another_targets_delegation() {
    let app = spawn_dispatching_app(|config| {
        config.dispatch.client.request_timeout = Duration::from_secs(20);
        config.dispatch.client.card_timeout = Duration::from_secs(20);
    })
    .await;
    let silent = Silent::start().await;
    let healthy = FakeAgent::start().await;
    let source = app.register().await;
    let stuck = app
        .register_with(json!({ "url": format!("{}/", silent.base) }))
        .await;
    let fine = app.register_with(json!({ "url": healthy.url() })).await;

    for _ in 0..70 {
        app.delegate(&source, stuck.id, json!({})).await;
    }
    // The silent target holds as many calls as it is allowed to.
    let per_target = common::fast_dispatch().per_target_in_flight;
    silent.wait_for(per_target).await;

    let started = Instant::now();
    let id = app.delegate(&source, fine.id, json!({})).await;
    healthy
        .wait_until("the healthy target's send", |requests| !requests.is_empty())
        .await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(1),
        "the healthy target waited {waited:?} behind the silent one"
    );
    app.wait_status(id, "completed").await;
    assert!(
        silent.accepted() <= per_target,
        "{} calls in flight to one target",
        silent.accepted()
    );
}
