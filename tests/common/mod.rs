//! Shared test harness: a fresh database per test on a real PostgreSQL, the
//! service spawned on a random port, and a real HTTP client.
//!
//! The PostgreSQL server is the one named by `DATABASE_URL` when set;
//! otherwise a private cluster is started once per test process (and
//! stopped when it exits) with the same embedded module `ledger serve`
//! uses.

#![allow(dead_code)]

pub mod fake_agent;

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

pub async fn spawn_app() -> TestApp {
    spawn_app_on(fresh_database_url().await).await
}

/// A service on an existing database (e.g. a second process on the same one).
pub async fn spawn_app_on(database_url: String) -> TestApp {
    spawn_app_with(database_url, |_| {}).await
}

/// A service on `database_url` with its configuration adjusted by `adjust`.
pub async fn spawn_app_with(database_url: String, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let admin_token = format!("admin-{}", Uuid::new_v4().simple());
    let mut config = Config {
        database_url: Some(database_url.clone()),
        addr: "127.0.0.1:0".parse().expect("valid address"),
        admin_token: Some(admin_token.clone()),
        max_connections: 20,
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

    /// Register a push-mode workspace with a fresh id.
    pub async fn register(&self) -> Workspace {
        let id = Uuid::new_v4();
        let response = self
            .client
            .post(self.url("/registry/register"))
            .json(&json!({ "id": id, "url": format!("http://127.0.0.1:9/{id}") }))
            .send()
            .await
            .expect("register should be sent");
        let (status, body) = read(response).await;
        assert_eq!(status, 200, "register failed: {body}");
        let token = body["auth_token"]
            .as_str()
            .expect("first registration returns a token")
            .to_string();
        Workspace { id, token }
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
