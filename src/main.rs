//! `ledger`: run the service, migrate, rebuild projections, audit the log —
//! and, as a client of a running service, the commands of [`ledger::cli`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use ledger::app::Application;
use ledger::cli::progress::Progress;
use ledger::config::Config;
use ledger::db::PoolSettings;
use ledger::http::limits::Limits;
use ledger::{db, projection_runner, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "ledger",
    version,
    about = "Event-sourced ledger for agent-to-agent task delegations"
)]
struct Cli {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct DatabaseArgs {
    /// PostgreSQL URL; without it a private PostgreSQL is started under --data-dir.
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Directory for the embedded PostgreSQL and the generated admin token.
    #[arg(
        long,
        env = "LEDGER_DATA_DIR",
        default_value_os_t = defaults().data_dir.clone(),
        global = true
    )]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve(Box<ServeArgs>),
    /// Apply the database migrations and exit.
    Migrate,
    /// Manage projections.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Check the hash-chained log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    #[command(flatten)]
    Client(ledger::cli::ClientCommand),
}

/// Every flag's default is the `Config` default: one place sets them.
fn defaults() -> &'static Config {
    static DEFAULTS: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    DEFAULTS.get_or_init(Config::default)
}

/// `ledger serve`'s settings.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LEDGER_ADDR", default_value_t = defaults().addr)]
    addr: SocketAddr,
    /// Admin token (generated and saved in the data directory if unset in embedded mode).
    #[arg(long, env = "LEDGER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "LEDGER_MAX_BODY_BYTES", default_value_t = defaults().max_body_bytes)]
    max_body_bytes: usize,
    /// /readyz fails when a projection lags the log head by more than this many events.
    #[arg(long, env = "LEDGER_READINESS_MAX_LAG", default_value_t = defaults().readiness_max_lag)]
    readiness_max_lag: i64,
    /// Whether this process campaigns to lead the dispatcher (one
    /// dispatching process per database suffices).
    #[arg(long, env = "LEDGER_DISPATCH", default_value_t = defaults().dispatch.enabled, action = clap::ArgAction::Set)]
    dispatch: bool,
    /// Most A2A calls the dispatcher runs at once.
    #[arg(long, env = "LEDGER_DISPATCH_CONCURRENCY", default_value_t = defaults().dispatch.max_in_flight)]
    dispatch_concurrency: usize,
    /// Most A2A calls in flight to one target workspace.
    #[arg(long, env = "LEDGER_DISPATCH_PER_TARGET", default_value_t = defaults().dispatch.per_target_in_flight)]
    dispatch_per_target: usize,
    /// Longest wait for an A2A answer, in seconds (sends are
    /// non-blocking, so answers are quick; shutdown waits this long for
    /// sends in flight).
    #[arg(long, env = "LEDGER_DISPATCH_REQUEST_TIMEOUT", default_value_t = defaults().dispatch.client.request_timeout.as_secs())]
    dispatch_request_timeout: u64,
    /// Deadline of a managed delegation that names none, in seconds.
    #[arg(long, env = "LEDGER_DELEGATION_DEADLINE", default_value_t = defaults().dispatch.default_deadline.as_secs())]
    delegation_deadline: u64,
    /// Longest deadline a delegate request may ask for, in seconds.
    #[arg(
        long,
        env = "LEDGER_MAX_DELEGATION_DEADLINE",
        default_value_t = defaults().dispatch.max_deadline.as_secs()
    )]
    max_delegation_deadline: u64,
    /// /readyz fails while the oldest event not yet in the log is older
    /// than this many seconds (a transaction left open somewhere on the
    /// cluster holds the log back).
    #[arg(
        long,
        env = "LEDGER_READINESS_MAX_UNPOSITIONED_AGE",
        default_value_t = defaults().readiness_max_unpositioned_age.as_secs()
    )]
    readiness_max_unpositioned_age: u64,
    #[command(flatten)]
    reads: ReadArgs,
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    nats: NatsArgs,
}

/// The export of the log to NATS JetStream (off unless a URL is given).
#[derive(Debug, Args)]
struct NatsArgs {
    /// NATS server(s) to export the log to, comma-separated
    /// (nats://host:4222 or tls://host:4222); unset: no export.
    #[arg(long, env = "LEDGER_NATS_URL")]
    nats_url: Option<String>,
    /// The JetStream stream the log goes to (created for ledger.> if missing).
    #[arg(long, env = "LEDGER_NATS_STREAM", default_value = "LEDGER")]
    nats_stream: String,
}

/// Where reads go, and how long a read waits for its `min_position`.
#[derive(Debug, Args)]
struct ReadArgs {
    /// A read replica (a PostgreSQL streaming standby of the database):
    /// GET routes, replays and audit queries read from it. Repeat the flag,
    /// or give a comma-separated list, for several.
    #[arg(
        long = "read-database-url",
        env = "LEDGER_READ_DATABASE_URL",
        value_delimiter = ',',
        hide_env_values = true
    )]
    read_database_urls: Vec<String>,
    /// A replica whose views are more than this many log positions behind
    /// the primary's stops serving reads until it catches up.
    #[arg(long, env = "LEDGER_REPLICA_MAX_LAG", default_value_t = defaults().reads.max_lag)]
    replica_max_lag: i64,
    /// Longest a read waits for the views to reach its `min_position`, in
    /// seconds, before answering 503.
    #[arg(long, env = "LEDGER_MIN_POSITION_WAIT", default_value_t = defaults().reads.min_position_wait.as_secs())]
    min_position_wait: u64,
}

/// Where the service may connect and how much one caller may ask of it.
#[derive(Debug, Args)]
struct SecurityArgs {
    /// Address ranges the dispatcher may call besides public addresses,
    /// comma-separated CIDRs (e.g. 127.0.0.0/8 for agents on this host).
    #[arg(long, env = "LEDGER_ALLOW_OUTBOUND", default_value = "")]
    allow_outbound: ledger::a2a::OutboundPolicy,
    /// Longest a request may take, in seconds (websocket feeds excepted).
    #[arg(long, env = "LEDGER_REQUEST_TIMEOUT", default_value_t = defaults().limits.request_timeout.as_secs())]
    request_timeout: u64,
    /// Most requests served at once; more get 503.
    #[arg(long, env = "LEDGER_MAX_IN_FLIGHT", default_value_t = defaults().limits.max_in_flight_requests)]
    max_in_flight: usize,
    /// Registrations per client address per minute (0: unlimited).
    #[arg(long, env = "LEDGER_REGISTRATIONS_PER_MINUTE", default_value_t = defaults().limits.registrations_per_minute)]
    registrations_per_minute: u32,
    /// Failed authentications per client address per minute (0: unlimited).
    #[arg(long, env = "LEDGER_AUTH_FAILURES_PER_MINUTE", default_value_t = defaults().limits.auth_failures_per_minute)]
    auth_failures_per_minute: u32,
    /// Commands per workspace per second, bursts of twice that (0: unlimited).
    #[arg(long, env = "LEDGER_COMMANDS_PER_SECOND", default_value_t = defaults().limits.commands_per_second)]
    commands_per_second: u32,
    /// Live-feed subscribers of this process.
    #[arg(long, env = "LEDGER_WS_MAX_SUBSCRIBERS", default_value_t = defaults().hub.max_subscribers)]
    ws_max_subscribers: usize,
    /// Live-feed subscribers per token.
    #[arg(long, env = "LEDGER_WS_MAX_PER_TOKEN", default_value_t = defaults().hub.max_subscribers_per_token)]
    ws_max_per_token: usize,
    /// A header carrying the client address, set by a reverse proxy you run
    /// (e.g. x-forwarded-for; its last value is used). Unset: the TCP peer.
    #[arg(long, env = "LEDGER_TRUSTED_CLIENT_IP_HEADER")]
    trusted_client_ip_header: Option<axum::http::HeaderName>,
    /// Longest wait for a database connection, in seconds.
    #[arg(long, env = "LEDGER_DB_ACQUIRE_TIMEOUT", default_value_t = defaults().acquire_timeout.as_secs())]
    db_acquire_timeout: u64,
    /// Longest any statement may run, in seconds.
    #[arg(long, env = "LEDGER_DB_STATEMENT_TIMEOUT", default_value_t = defaults().statement_timeout.as_secs())]
    db_statement_timeout: u64,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk the hash chain and check every entry against its event; prints
    /// the report as JSON and exits with status 1 when the chain is broken.
    Verify {
        /// First position to check (default 1; a later start trusts the
        /// stored hash of the entry before it).
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        from: Option<i64>,
        /// Last position to check (default: the head).
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        to: Option<i64>,
    },
    /// Print the head of the log, `{"position": N, "hash": "<hex>"}`, to keep
    /// outside the database: a chain rewritten consistently still verifies,
    /// but no longer ends in this hash at this position.
    Head,
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Empty a view and replay the whole log into it.
    Rebuild {
        /// The projection to rebuild (workspaces, delegations, activity_logs).
        name: Option<String>,
        /// Rebuild every projection.
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(serve) => {
            let ServeArgs {
                addr,
                admin_token,
                max_body_bytes,
                readiness_max_lag,
                dispatch,
                dispatch_concurrency,
                dispatch_per_target,
                dispatch_request_timeout,
                delegation_deadline,
                max_delegation_deadline,
                readiness_max_unpositioned_age,
                reads,
                security,
                nats,
            } = *serve;
            let defaults = Config::default();
            let config = Config {
                database_url: cli.database.database_url,
                data_dir: cli.database.data_dir,
                addr,
                admin_token,
                max_body_bytes,
                readiness_max_lag,
                dispatch: ledger::dispatch::DispatchConfig {
                    enabled: dispatch,
                    max_in_flight: dispatch_concurrency.max(1),
                    per_target_in_flight: dispatch_per_target.max(1),
                    default_deadline: Duration::from_secs(delegation_deadline.max(1)),
                    max_deadline: Duration::from_secs(
                        max_delegation_deadline.max(delegation_deadline).max(1),
                    ),
                    client: ledger::a2a::A2aClientConfig {
                        request_timeout: Duration::from_secs(dispatch_request_timeout.max(1)),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                readiness_max_unpositioned_age: Duration::from_secs(
                    readiness_max_unpositioned_age.max(1),
                ),
                reads: ledger::replicas::ReadSettings {
                    replica_urls: reads.read_database_urls,
                    max_lag: reads.replica_max_lag.max(0),
                    min_position_wait: Duration::from_secs(reads.min_position_wait),
                },
                outbound: security.allow_outbound,
                acquire_timeout: Duration::from_secs(security.db_acquire_timeout.max(1)),
                statement_timeout: Duration::from_secs(security.db_statement_timeout.max(1)),
                limits: Limits {
                    request_timeout: Duration::from_secs(security.request_timeout.max(1)),
                    max_in_flight_requests: security.max_in_flight.max(1),
                    registrations_per_minute: security.registrations_per_minute,
                    auth_failures_per_minute: security.auth_failures_per_minute,
                    commands_per_second: security.commands_per_second,
                    trusted_client_ip_header: security.trusted_client_ip_header,
                },
                hub: ledger::ws::HubConfig {
                    max_subscribers: security.ws_max_subscribers.max(1),
                    max_subscribers_per_token: security.ws_max_per_token.max(1),
                    ..defaults.hub.clone()
                },
                nats: nats
                    .nats_url
                    .map(|url| ledger::export::NatsExportConfig::new(url, nats.nats_stream)),
                ..defaults
            };
            let app = Application::build(config).await?;
            println!("ledger listening on http://{}:{}", addr.ip(), app.port());
            app.run_until(shutdown_signal()).await
        }
        Command::Migrate => {
            let database = db::open(
                cli.database.database_url.as_deref(),
                &cli.database.data_dir,
                &PoolSettings::small(),
            )
            .await?;
            println!("migrations applied");
            stop(database).await
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild { name, all },
        } => {
            let database = db::open(
                cli.database.database_url.as_deref(),
                &cli.database.data_dir,
                &PoolSettings::small(),
            )
            .await?;
            let result = rebuild(&database.pool, name.as_deref(), all).await;
            stop(database).await?;
            result
        }
        Command::Client(command) => std::process::exit(ledger::cli::run(command).await),
        Command::Audit { command } => {
            if let AuditCommand::Verify {
                from: Some(from),
                to: Some(to),
            } = command
            {
                if from > to {
                    Cli::command()
                        .error(
                            clap::error::ErrorKind::ArgumentConflict,
                            format!("--from ({from}) must not be after --to ({to})"),
                        )
                        .exit();
                }
            }
            let database = db::open(
                cli.database.database_url.as_deref(),
                &cli.database.data_dir,
                &PoolSettings::small(),
            )
            .await?;
            let result = audit(&database.pool, command).await;
            stop(database).await?;
            if !result? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// Run an audit command, printing its JSON; false when the chain is broken.
async fn audit(pool: &sqlx::PgPool, command: AuditCommand) -> anyhow::Result<bool> {
    match command {
        AuditCommand::Verify { from, to } => {
            let mut progress = Progress::new("verified", "entries");
            let verification = ledger::log::verify::verify_reporting(pool, from, to, &mut |walk| {
                progress.update(walk.checked.max(0) as u64, walk.total.max(0) as u64)
            })
            .await;
            progress.finish();
            let verification = verification?;
            println!("{}", serde_json::to_string_pretty(&verification)?);
            Ok(verification.is_ok())
        }
        AuditCommand::Head => {
            let head = ledger::log::verify::head(pool).await?;
            println!("{}", serde_json::to_string(&head)?);
            Ok(true)
        }
    }
}

async fn rebuild(pool: &sqlx::PgPool, name: Option<&str>, all: bool) -> anyhow::Result<()> {
    let available = projections::all();
    let chosen: Vec<_> = match (name, all) {
        (_, true) => available,
        (Some(name), false) => {
            let names: Vec<&str> = available.iter().map(|p| p.name()).collect();
            let names = names.join(", ");
            let found: Vec<_> = available.into_iter().filter(|p| p.name() == name).collect();
            anyhow::ensure!(
                !found.is_empty(),
                "no projection named {name:?}; known: {names}"
            );
            found
        }
        (None, false) => anyhow::bail!("name a projection to rebuild, or pass --all"),
    };
    projection_runner::register(pool, &chosen).await?;
    for projection in chosen {
        let mut progress = Progress::new(format!("rebuilt {}:", projection.name()), "entries");
        let position = ledger::rebuild::rebuild_reporting(pool, projection.as_ref(), &mut |step| {
            progress.update(step.position.max(0) as u64, step.head.max(0) as u64)
        })
        .await;
        progress.finish();
        let position = position.with_context(|| format!("rebuilding {}", projection.name()))?;
        println!("rebuilt {} up to position {position}", projection.name());
    }
    Ok(())
}

async fn stop(mut database: db::Database) -> anyhow::Result<()> {
    database.pool.close().await;
    if let Some(mut cluster) = database.embedded.take() {
        cluster.stop().await?;
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown requested");
}
