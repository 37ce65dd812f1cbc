//! Shared test harness: a fresh database per test on a real PostgreSQL, the
//! service spawned on a random port, and a real HTTP client.
//!
//! The PostgreSQL server is the one named by `DATABASE_URL` when set;
//! otherwise a private cluster is started once per test process (and
//! stopped when it exits) with the same embedded module `ledger serve`
//! uses.

#![allow(dead_code)]

pub mod browser;
pub mod fake_agent;
pub mod real_agent;

use std::str::FromStr;

use ledger::app::Application;
use ledger::config::Config;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};
use uuid::Uuid;

/// A database URL for a brand-new, empty database.
pub async fn fresh_database_url() -> String {
    let (server_url, maintenance_db) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let cluster = ledger::embedded_pg::shared_test_cluster()
                .await
                .expect("embedded test PostgreSQL should start");
            (cluster.url("postgres"), Some("postgres"))
        }
    };
    let name = format!("ledger_test_{}", Uuid::new_v4().simple());
    let options = PgConnectOptions::from_str(&server_url).expect("DATABASE_URL should parse");
    let options = match maintenance_db {
        Some(db) => options.database(db),
        None => options,
    };
    let mut conn = options
        .connect()
        .await
        .expect("test PostgreSQL should accept connections");
    sqlx::query(&format!("create database {name}"))
        .execute(&mut conn)
        .await
        .expect("test database should be created");
    let mut url = url::Url::parse(&server_url).expect("database URL should parse");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A running service on a fresh database.
pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub admin_token: String,
    pub pool: PgPool,
    pub database_url: String,
    pub client: reqwest::Client,
    pub hub: std::sync::Arc<ledger::ws::Hub>,
}

/// A service without a dispatcher: the suites that are not about dispatch
/// register workspaces at URLs nobody answers, and their assertions on
/// views must not race a dispatcher's retries. `tests/dispatch*.rs` use
/// [`spawn_dispatching_app`].
pub async fn spawn_app() -> TestApp {
    spawn_app_on(fresh_database_url().await).await
}

/// A service without a dispatcher on an existing database (e.g. a second
/// process on the same one).
pub async fn spawn_app_on(database_url: String) -> TestApp {
    spawn_app_with(database_url, |_| {}).await
}

/// A service whose dispatcher delivers delegations, with delays short
/// enough for tests; `adjust` may change them further.
pub async fn spawn_dispatching_app(adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(fresh_database_url().await, |config| {
        config.dispatch = fast_dispatch();
        adjust(config);
    })
    .await
}

/// Dispatcher settings for tests: the same logic, shorter waits.
pub fn fast_dispatch() -> ledger::dispatch::DispatchConfig {
    use std::time::Duration;
    ledger::dispatch::DispatchConfig {
        enabled: true,
        retry: ledger::dispatch::Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        poll: ledger::dispatch::Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(100),
        },
        expiry_sweep: Duration::from_millis(100),
        election_interval: Duration::from_millis(100),
        client: ledger::a2a::A2aClientConfig {
            request_timeout: Duration::from_secs(2),
            card_timeout: Duration::from_secs(2),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The outbound policy of the tests: agents on this host are allowed.
pub fn local_agents() -> ledger::a2a::OutboundPolicy {
    "127.0.0.0/8".parse().expect("a CIDR range")
}

/// No rate limits (the defaults otherwise).
pub fn unlimited() -> ledger::http::limits::Limits {
    ledger::http::limits::Limits {
        registrations_per_minute: 0,
        auth_failures_per_minute: 0,
        commands_per_second: 0,
        ..Default::default()
    }
}

/// A service on `database_url` with its configuration adjusted by `adjust`.
pub async fn spawn_app_with(database_url: String, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let admin_token = format!("admin-{}", Uuid::new_v4().simple());
    let mut config = Config {
        database_url: Some(database_url.clone()),
        addr: "127.0.0.1:0".parse().expect("valid address"),
        admin_token: Some(admin_token.clone()),
        max_connections: 20,
        dispatch: ledger::dispatch::DispatchConfig {
            enabled: false,
            ..Default::default()
        },
        // The agents of the tests run on this host.
        outbound: local_agents(),
        // Suites drive many workspaces and commands from one address;
        // `tests/limits.rs` checks the limits themselves.
        limits: unlimited(),
        ..Config::default()
    };
    adjust(&mut config);
    let app = Application::build(config)
        .await
        .expect("service should build");
    let port = app.port();
    let pool = app.pool().clone();
    let hub = app.hub();
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        port,
        admin_token,
        pool,
        database_url,
        client: reqwest::Client::new(),
        hub,
    }
}

/// A registered workspace and its token.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: Uuid,
    pub token: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request should be sent");
        read(response).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request should be sent");
        read(response).await
    }

    /// Register a push-mode workspace with a fresh id, at a URL where
    /// nothing answers.
    pub async fn register(&self) -> Workspace {
        let url = format!("http://127.0.0.1:9/{}", Uuid::new_v4());
        self.register_with(json!({ "url": url })).await
    }

    /// Record an agent-dispatched delegation; returns its id.
    pub async fn record(&self, source: &Workspace, target: Uuid, task: &str) -> Uuid {
        let delegation_id = Uuid::new_v4();
        let (status, body) = self
            .post(
                &format!("/workspaces/{}/delegations/record", source.id),
                &source.token,
                json!({ "target_id": target, "task": task, "delegation_id": delegation_id }),
            )
            .await;
        assert_eq!(status, 202, "record failed: {body}");
        delegation_id
    }

    pub async fn update(
        &self,
        workspace: &Workspace,
        delegation_id: Uuid,
        body: Value,
    ) -> (u16, Value) {
        self.post(
            &format!(
                "/workspaces/{}/delegations/{delegation_id}/update",
                workspace.id
            ),
            &workspace.token,
            body,
        )
        .await
    }
}

pub async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .expect("response body should be readable");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("response should be JSON, got {text:?}"))
    };
    (status, body)
}

/// How many events the store holds (to prove a rejected request wrote nothing).
pub async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from events")
        .fetch_one(pool)
        .await
        .expect("count events")
}

/// Wait until every event is positioned and every projection applied it —
/// woken by the sequencer's and the runners' NOTIFYs, never by a timer.
/// Panics after two minutes.
pub async fn settle(pool: &PgPool) {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool)
        .await
        .expect("listen");
    listener
        .listen_all(["ledger_log", "ledger_projection"])
        .await
        .expect("listen");
    let wait = async {
        loop {
            // Checked after LISTEN, so no notification can slip between.
            let (events, head, slowest): (i64, i64, i64) = sqlx::query_as(
                "select (select count(*) from events), \
                 (select coalesce(max(position), 0) from ledger_log), \
                 (select coalesce(min(position), 0) from projection_checkpoints)",
            )
            .fetch_one(pool)
            .await
            .expect("progress");
            if events == head && slowest >= head {
                return;
            }
            listener.recv().await.expect("notification");
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), wait)
        .await
        .expect("the log and every projection should settle");
}

/// A connection to the test PostgreSQL server's maintenance database (for
/// what a test does to a whole database: refuse connections, terminate
/// backends).
pub async fn server_connection() -> sqlx::PgConnection {
    let options = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            PgConnectOptions::from_str(&url).expect("DATABASE_URL should parse")
        }
        _ => {
            let cluster = ledger::embedded_pg::shared_test_cluster()
                .await
                .expect("embedded test PostgreSQL should start");
            PgConnectOptions::from_str(&cluster.url("postgres"))
                .expect("cluster URL should parse")
                .database("postgres")
        }
    };
    options
        .connect()
        .await
        .expect("test PostgreSQL should accept connections")
}

/// Wait until `check` holds, re-checking whenever the log or a projection
/// moves (their NOTIFYs), never on a timer. Panics after `limit`.
pub async fn wait_for<F, Fut>(pool: &PgPool, what: &str, limit: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut listener = sqlx::postgres::PgListener::connect_with(pool)
        .await
        .expect("listen");
    listener
        .listen_all(["ledger_log", "ledger_projection"])
        .await
        .expect("listen");
    let wait = async {
        loop {
            // Checked after LISTEN, so no change can slip between.
            if check().await {
                return;
            }
            listener.recv().await.expect("notification");
        }
    };
    tokio::time::timeout(limit, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"));
}

/// Wait until `check` holds, for a condition nothing announces (such as
/// the state of another database session): re-checked every 20 ms.
/// Panics after `limit`.
pub async fn poll_until<F, Fut>(what: &str, limit: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let wait = async {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
        loop {
            tick.tick().await;
            if check().await {
                return;
            }
        }
    };
    tokio::time::timeout(limit, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"));
}

impl TestApp {
    /// Register a workspace with this registration body (id added).
    pub async fn register_with(&self, body: Value) -> Workspace {
        let id = Uuid::new_v4();
        let mut body = body;
        body["id"] = json!(id);
        let response = self
            .client
            .post(self.url("/registry/register"))
            .json(&body)
            .send()
            .await
            .expect("register should be sent");
        let (status, answer) = read(response).await;
        assert_eq!(status, 200, "register failed: {answer}");
        let token = answer["auth_token"]
            .as_str()
            .expect("first registration returns a token")
            .to_string();
        Workspace { id, token }
    }

    /// A managed delegation from `source` to `target`; returns its id.
    pub async fn delegate(&self, source: &Workspace, target: Uuid, extra: Value) -> Uuid {
        let mut body = json!({ "target_id": target, "task": "do the thing" });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                body.insert(k.clone(), v.clone());
            }
        }
        let (status, answer) = self
            .post(
                &format!("/workspaces/{}/delegate", source.id),
                &source.token,
                body,
            )
            .await;
        assert_eq!(status, 202, "delegate failed: {answer}");
        answer["delegation_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("delegation_id")
    }

    /// `GET` the delegation as `ws` sees it (must answer 200).
    pub async fn delegation(&self, ws: &Workspace, delegation_id: Uuid) -> Value {
        let (status, body) = self
            .get(
                &format!("/workspaces/{}/delegations/{delegation_id}", ws.id),
                &ws.token,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The delegation's status in the `delegations` view.
    pub async fn status_of(&self, delegation_id: Uuid) -> Option<String> {
        sqlx::query_scalar("select status from delegations where delegation_id = $1")
            .bind(delegation_id)
            .fetch_optional(&self.pool)
            .await
            .expect("read delegation status")
    }

    /// Wait until the delegation has `status` in the view.
    pub async fn wait_status(&self, delegation_id: Uuid, status: &str) {
        wait_for(
            &self.pool,
            &format!("delegation {delegation_id} to be {status}"),
            std::time::Duration::from_secs(60),
            || async { self.status_of(delegation_id).await.as_deref() == Some(status) },
        )
        .await;
    }

    /// Report capacity; returns `drained`.
    pub async fn heartbeat(&self, workspace: &Workspace, active: u32, max: u32) -> u64 {
        let (status, body) = self
            .post(
                "/registry/heartbeat",
                &workspace.token,
                json!({ "workspace_id": workspace.id, "active_tasks": active, "max_concurrent": max }),
            )
            .await;
        assert_eq!(status, 200, "heartbeat failed: {body}");
        body["drained"].as_u64().expect("drained")
    }
}

/// `ledger serve` (the real binary) on `database_url` with `admin_token`;
/// returns the child and its base URL once it printed where it listens.
pub fn serve_binary(database_url: &str, admin_token: &str) -> (std::process::Child, String) {
    serve_binary_with(database_url, admin_token, &[])
}

/// [`serve_binary`] with more environment (settings as `LEDGER_*`).
pub fn serve_binary_with(
    database_url: &str,
    admin_token: &str,
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    serve_binary_at(database_url, admin_token, port, env)
}

/// [`serve_binary_with`] on a given port (e.g. to restart a server where
/// its clients expect it).
pub fn serve_binary_at(
    database_url: &str,
    admin_token: &str,
    port: u16,
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", database_url)
        .env("LEDGER_ADMIN_TOKEN", admin_token)
        // The tests' agents run on this host, and one address drives it all.
        .env("LEDGER_ALLOW_OUTBOUND", "127.0.0.0/8")
        .env("LEDGER_REGISTRATIONS_PER_MINUTE", "0")
        .env("LEDGER_AUTH_FAILURES_PER_MINUTE", "0")
        .env("LEDGER_COMMANDS_PER_SECOND", "0")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ledger serve");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read stdout");
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(line.trim(), format!("ledger listening on {base}"));
    (child, base)
}
