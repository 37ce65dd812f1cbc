//! Read replicas against a real PostgreSQL streaming standby: the test
//! starts its own primary, takes a base backup of it (`pg_basebackup -R`)
//! and starts the standby on another port; the service writes to the
//! primary and reads from the standby.
//!
//! The standby's WAL replay is paused (`pg_wal_replay_pause()`) to make its
//! lag certain rather than lucky: a write is then invisible there without
//! a token, a read with the write's token waits until replay resumes, and
//! a read whose token is not reached in time answers 503.

mod common;

use std::time::Duration;

use common::{spawn_app_with, TestApp, Workspace};
use ledger::embedded_pg::{EmbeddedOptions, EmbeddedPostgres};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// A temp dir the `postgres` OS user can reach (when the tests run as
/// root, the servers run as `postgres`).
fn traversable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod temp dir");
    dir
}

/// Dropped in field order: the service and the pool before the servers,
/// the servers before their directory.
struct Replicated {
    app: TestApp,
    standby_pool: PgPool,
    standby: EmbeddedPostgres,
    _primary: EmbeddedPostgres,
    _dir: tempfile::TempDir,
}

/// A primary with the ledger's database, its streaming standby, and a
/// service writing to the one and reading from the other.
async fn replicated(
    wait: Duration,
    max_lag: i64,
    adjust: impl FnOnce(&mut ledger::config::Config),
) -> Replicated {
    let dir = traversable_tempdir();
    let primary = EmbeddedPostgres::start(EmbeddedOptions {
        data_dir: dir.path().join("primary"),
        ephemeral: true,
    })
    .await
    .expect("the primary starts");
    primary.create_database("ledger").await.expect("database");
    // Migrated before the backup, so the standby starts with the schema.
    let primary_url = primary.url("ledger");
    let pool = ledger::db::connect(&primary_url, 1).await.expect("connect");
    ledger::db::migrate(&pool).await.expect("migrate");
    pool.close().await;
    let standby = primary
        .start_standby(&dir.path().join("standby"))
        .await
        .expect("the standby starts from a base backup");
    let standby_url = standby.url("ledger");
    let standby_pool = ledger::db::connect(&standby_url, 2)
        .await
        .expect("connect to the standby");
    let in_recovery: bool = sqlx::query_scalar("select pg_is_in_recovery()")
        .fetch_one(&standby_pool)
        .await
        .expect("ask the standby");
    assert!(in_recovery, "the standby is a standby");
    let app = spawn_app_with(primary_url, |config| {
        config.reads.replica_urls = vec![standby_url];
        config.reads.min_position_wait = wait;
        config.reads.max_lag = max_lag;
        adjust(config);
    })
    .await;
    let replicated = Replicated {
        app,
        standby_pool,
        standby,
        _primary: primary,
        _dir: dir,
    };
    replicated.wait_serving(true).await;
    replicated
}

impl Replicated {
    async fn readyz(&self) -> Value {
        let (status, body) = self.app.get("/readyz", "").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Wait until `/readyz` shows the replica serving (or not).
    async fn wait_serving(&self, serving: bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.readyz().await;
            if ready["replicas"][0]["serving"] == json!(serving) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the replica never showed serving={serving}: {ready}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn pause_replay(&self) {
        sqlx::query("select pg_wal_replay_pause()")
            .execute(&self.standby_pool)
            .await
            .expect("pause replay");
    }

    async fn resume_replay(&self) {
        sqlx::query("select pg_wal_replay_resume()")
            .execute(&self.standby_pool)
            .await
            .expect("resume replay");
    }

    async fn get_delegation(
        &self,
        source: &Workspace,
        delegation: Uuid,
        min_position: Option<i64>,
    ) -> reqwest::Response {
        let mut request = self
            .app
            .client
            .get(self.app.url(&format!(
                "/workspaces/{}/delegations/{delegation}",
                source.id
            )))
            .bearer_auth(&source.token);
        if let Some(position) = min_position {
            request = request.header("X-Ledger-Min-Position", position.to_string());
        }
        request.send().await.expect("GET")
    }
}

async fn record(app: &TestApp, source: &Workspace, target: Uuid) -> (Uuid, i64) {
    let delegation = Uuid::new_v4();
    let (status, body) = app
        .post(
            &format!("/workspaces/{}/delegations/record", source.id),
            &source.token,
            json!({ "delegation_id": delegation, "target_id": target, "task": "replicated" }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let position = body["position"]
        .as_i64()
        .expect("the answer names its position");
    (delegation, position)
}

#[tokio::test]
async fn a_token_reads_its_write_on_a_lagging_replica_and_reads_fail_over_when_it_dies() {
    let mut replicated = replicated(Duration::from_secs(2), 10_000, |_| {}).await;
    let app = &replicated.app;
    let source = app.register().await;
    let target = app.register().await;
    // Registration went through the primary; with its token, the replica
    // has it too (the caller's own earlier write).
    let (seed, seed_position) = record(app, &source, target.id).await;
    let seen = replicated
        .get_delegation(&source, seed, Some(seed_position))
        .await;
    assert_eq!(seen.status().as_u16(), 200);

    replicated.pause_replay().await;
    let (delegation, position) = record(app, &source, target.id).await;

    // Without the token the replica answers from before the write.
    let stale = replicated.get_delegation(&source, delegation, None).await;
    assert_eq!(
        stale.status().as_u16(),
        404,
        "reads go to the paused standby, which has not replayed the write"
    );

    // With it, a replica that does not get there in time is a 503.
    let refused = replicated
        .get_delegation(&source, delegation, Some(position))
        .await;
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));

    // And one that gets there answers with the write.
    let waiting = {
        let client = app.client.clone();
        let url = app.url(&format!(
            "/workspaces/{}/delegations/{delegation}",
            source.id
        ));
        let token = source.token.clone();
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(token)
                .header("X-Ledger-Min-Position", position.to_string())
                .send()
                .await
                .expect("GET")
        })
    };
    replicated.resume_replay().await;
    let served = waiting.await.expect("the read task");
    assert_eq!(served.status().as_u16(), 200);
    let body: Value = served.json().await.expect("json");
    assert_eq!(body["delegation_id"], json!(delegation));

    // The lag is published.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("ledger_replica_lag_positions"),
        "the replica's lag is a metric"
    );

    // The standby dies: reads fail over to the primary, the node stays
    // ready and says the replica is out of rotation.
    replicated.standby.stop().await.expect("stop the standby");
    let failed_over = replicated.get_delegation(&source, delegation, None).await;
    assert_eq!(
        failed_over.status().as_u16(),
        200,
        "the primary serves the read"
    );
    replicated.wait_serving(false).await;
    let ready = replicated.readyz().await;
    assert_eq!(ready["replicas"][0]["reachable"], json!(false), "{ready}");
}

#[tokio::test]
async fn a_replica_that_lags_past_the_bound_leaves_rotation_until_it_catches_up() {
    let replicated = replicated(Duration::from_secs(2), 0, |_| {}).await;
    let app = &replicated.app;
    let source = app.register().await;
    let target = app.register().await;
    replicated.pause_replay().await;
    let (delegation, _) = record(app, &source, target.id).await;
    // Any lag is past a bound of 0: the replica leaves rotation, and reads
    // without a token go to the primary, which has the write.
    replicated.wait_serving(false).await;
    let ready = replicated.readyz().await;
    assert_eq!(ready["replicas"][0]["reachable"], json!(true), "{ready}");
    assert!(
        ready["replicas"][0]["lag"]
            .as_i64()
            .is_some_and(|lag| lag > 0),
        "{ready}"
    );
    let response = replicated.get_delegation(&source, delegation, None).await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "the primary serves while the replica lags"
    );

    replicated.resume_replay().await;
    replicated.wait_serving(true).await;
    let ready = replicated.readyz().await;
    assert_eq!(ready["replicas"][0]["lag"], json!(0), "{ready}");
}

#[tokio::test]
async fn a_replay_reads_from_a_replica_that_has_reached_the_live_position() {
    // No replay cache: every replayed page is read from a database.
    let replicated = replicated(Duration::from_secs(5), 10_000, |config| {
        config.hub.replay_cache = 0;
    })
    .await;
    let app = &replicated.app;
    let source = app.register().await;
    let target = app.register().await;
    let (delegation, position) = record(app, &source, target.id).await;
    // The token read is served by the replica once it has the write.
    let seen = replicated
        .get_delegation(&source, delegation, Some(position))
        .await;
    assert_eq!(seen.status().as_u16(), 200);

    let url = format!(
        "{}/ws?token={}&from=0",
        app.base.replace("http://", "ws://"),
        app.admin_token
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the feed opens");
    use futures::StreamExt;
    let mut replayed = false;
    while let Some(Ok(message)) = socket.next().await {
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            let message: Value = serde_json::from_str(&text).expect("json message");
            if message["delegation_id"] == json!(delegation) {
                replayed = true;
                break;
            }
        }
    }
    assert!(replayed, "the replay holds the write");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    let from_replica = metrics
        .lines()
        .find(|line| line.starts_with("ledger_replay_reads_total{source=\"replica\"}"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        from_replica >= 1.0,
        "the replay read its pages from the replica: {metrics}"
    );
}
