//! Building and running the whole service.
//!
//! [`Application::build`] opens the database (or starts the embedded one),
//! starts the background tasks — the progress listener, the sequencer and
//! one runner per projection — and binds the listener, so a test can build
//! on port 0, read [`Application::port`], and run it.

use std::future::{Future, IntoFuture};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::commands::CommandBus;
use crate::config::Config;
use crate::db::{self, Database};
use crate::dispatch::{self, Dispatcher};
use crate::http::{self, AppState};
use crate::log::progress::{self, Progress};
use crate::log::sequencer::{self, SequencerConfig};
use crate::projection_runner;
use crate::replicas::ReadPools;
use crate::ws::{Hub, HubConfig};

/// How long in-flight requests may run on after shutdown starts.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A built service, bound and with its background tasks running.
pub struct Application {
    listener: TcpListener,
    port: u16,
    router: axum::Router,
    database: Database,
    admin_token: Option<String>,
    /// Stops the background tasks (after the HTTP server has drained).
    shutdown: CancellationToken,
    /// Closes websocket subscribers (as soon as shutdown starts); a child
    /// of `shutdown`.
    closing: CancellationToken,
    tasks: JoinSet<()>,
    hub: Arc<Hub>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        // Before any background task counts something.
        crate::metrics::install();
        let database = db::open(
            config.database_url.as_deref(),
            &config.data_dir,
            &config.pool_settings(),
        )
        .await?;
        let admin_token = match (&config.admin_token, &database.embedded) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(_)) => Some(embedded_admin_token(&config.data_dir)?),
            (None, None) => {
                tracing::warn!("LEDGER_ADMIN_TOKEN is not set: admin access is disabled");
                None
            }
        };

        let shutdown = CancellationToken::new();
        let background =
            start_background(&database.pool, config.hub.clone(), shutdown.clone()).await?;
        let bus = CommandBus::new(
            database.pool.clone(),
            background.progress.clone(),
            config.visibility_timeout,
        );
        let mut tasks = background.tasks;
        if config.dispatch.enabled {
            let dispatcher = Dispatcher::new(
                database.pool.clone(),
                bus.clone(),
                config.dispatch.clone(),
                config.outbound.clone(),
            )?;
            tasks.spawn(dispatch::leader::run(
                Arc::new(dispatcher),
                background.progress.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(nats) = config.nats.clone() {
            tasks.spawn(crate::export::nats::run(
                database.pool.clone(),
                background.progress.clone(),
                nats,
                shutdown.clone(),
            ));
        }
        let closing = shutdown.child_token();
        let key_secret =
            crate::secrets::installation_secret(&database.pool, crate::secrets::IDEMPOTENCY_KEYS)
                .await?;
        let reads = Arc::new(ReadPools::new(
            database.pool.clone(),
            background.progress.clone(),
            config.reads.clone(),
            &config.pool_settings(),
        )?);
        if reads.has_replicas() {
            tasks.spawn(reads.clone().watch(shutdown.clone()));
            background.hub.read_replays_from(reads.clone());
        }
        let state = AppState {
            pool: database.pool.clone(),
            reads,
            bus,
            admin_token: admin_token.as_deref().map(Arc::from),
            limits: Arc::new(http::limits::RateLimits::new(&config.limits)),
            outbound: Arc::new(config.outbound.clone()),
            key_secret: Arc::from(key_secret),
            deadlines: http::Deadlines {
                default: config.dispatch.default_deadline,
                max: config.dispatch.max_deadline,
            },
            hub: background.hub.clone(),
            shutdown: closing.clone(),
            progress: background.progress.clone(),
            readiness_max_lag: config.readiness_max_lag,
            readiness_max_unpositioned_age: config.readiness_max_unpositioned_age,
        };
        let hub = background.hub;
        let router = http::router(state, config.max_body_bytes, &config.limits);
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("could not listen on {}", config.addr))?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            port,
            router,
            database,
            admin_token,
            shutdown,
            closing,
            tasks,
            hub,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &PgPool {
        &self.database.pool
    }

    /// The URL of the database in use (embedded or given).
    pub fn database_url(&self) -> &str {
        &self.database.url
    }

    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// The live feed's hub (its subscriber count, for tests and metrics).
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Serve until `signal` resolves, then stop: finish in-flight requests,
    /// stop the background tasks between batches, close the pool, and stop
    /// the embedded PostgreSQL last.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            mut database,
            shutdown,
            closing,
            mut tasks,
            hub,
            ..
        } = self;
        // Should this future be dropped before the end (its runtime ending),
        // subscribers and background tasks still stop (`closing` is a child).
        let _stop_on_drop = shutdown.clone().drop_guard();
        tracing::info!(addr = %listener.local_addr()?, "serving");
        // Websocket subscribers are closed (going away, with their last
        // position) as soon as shutdown starts; background tasks stop only
        // after in-flight requests finished, since those wait on them.
        let closed = closing.clone();
        let signal = async move {
            signal.await;
            tracing::info!("shutting down: no new connections; finishing in-flight requests");
            closing.cancel();
        };
        // The peer address feeds the per-address rate limits.
        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(signal);
        // In-flight requests get a bounded grace period once shutdown starts.
        let grace = async move {
            closed.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        let served = tokio::select! {
            served = server.into_future() => served,
            _ = grace => {
                tracing::warn!(?SHUTDOWN_GRACE, "in-flight requests still running after the grace period; stopping");
                Ok(())
            }
        };
        // The subscribers' close frames (1001, with where to resume) are
        // sent by their own tasks, which the end of `main` would cut off on
        // an idle server: wait for them to go, for at most 5 s.
        let mut subscribers = hub.watch_subscribers();
        let _ = tokio::time::timeout(
            hub.config()
                .send_timeout
                .min(std::time::Duration::from_secs(5)),
            subscribers.wait_for(|connected| *connected == 0),
        )
        .await;
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        database.pool.close().await;
        if let Some(mut cluster) = database.embedded.take() {
            cluster.stop().await?;
        }
        served.context("HTTP server failed")
    }
}

/// The background tasks of a service process.
pub struct Background {
    pub progress: Arc<Progress>,
    pub hub: Arc<Hub>,
    pub tasks: JoinSet<()>,
}

/// Start the progress listener, the sequencer, the projection runners and
/// the live-feed hub.
pub async fn start_background(
    pool: &PgPool,
    hub: HubConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<Background> {
    let all = projections::all();
    projection_runner::register(pool, &all).await?;
    let progress = Arc::new(Progress::new(
        all.iter().map(|p| p.name().to_string()).collect(),
    ));
    progress.refresh(pool).await?;
    let mut tasks = JoinSet::new();
    tasks.spawn(progress::listen(
        pool.clone(),
        progress.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(sequencer::run(
        pool.clone(),
        progress.clone(),
        SequencerConfig::default(),
        shutdown.clone(),
    ));
    tasks.spawn(projection_runner::run(
        pool.clone(),
        all,
        progress.clone(),
        shutdown.clone(),
    ));
    let reader = crate::log::LogReader::new(pool.clone());
    let head = reader.head().await?;
    let hub = Hub::new(reader, head, hub);
    tasks.spawn(hub.clone().run(progress.clone(), shutdown));
    Ok(Background {
        progress,
        hub,
        tasks,
    })
}

/// Write `contents` to `path` readable by the owner only — from the first
/// byte: the file is created 0600 under a temporary name and renamed into
/// place, so it is never world-readable, not even briefly.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// The admin token of an embedded installation: generated on first start,
/// printed once, and kept (owner-readable only) in the data directory.
fn embedded_admin_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("admin-token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_string();
        if !token.is_empty() {
            tracing::info!(path = %path.display(), "admin token loaded");
            return Ok(token);
        }
    }
    let token = http::auth::new_token().map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::create_dir_all(data_dir)?;
    write_private(&path, &format!("{token}\n"))
        .with_context(|| format!("could not save {}", path.display()))?;
    println!(
        "Generated admin token (shown once; saved in {}): {token}",
        path.display()
    );
    Ok(token)
}
