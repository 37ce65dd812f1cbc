//! Settings of the service. Flags win over environment variables; every
//! setting has a default that works on a fresh machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What `ledger serve` (and the tests) run with.
#[derive(Debug, Clone)]
pub struct Config {
    /// PostgreSQL to use; None starts the private embedded cluster.
    pub database_url: Option<String>,
    /// Where the embedded cluster and the generated admin token live.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    pub addr: SocketAddr,
    /// The admin token; None in embedded mode generates one.
    pub admin_token: Option<String>,
    /// Largest accepted request body (larger → 413).
    pub max_body_bytes: usize,
    /// Longest a command's response waits for its events to be visible in
    /// every view (read-your-writes) before answering anyway.
    pub visibility_timeout: Duration,
    /// Connections in the pool.
    pub max_connections: u32,
    /// Longest a request waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// Longest any statement of the service may run.
    pub statement_timeout: Duration,
    /// Where the dispatcher may connect (and which push URLs registration
    /// accepts): public addresses plus the ranges allowed here.
    pub outbound: crate::a2a::OutboundPolicy,
    /// Rate limits, request timeout and in-flight bound.
    pub limits: crate::http::limits::Limits,
    /// The live feed: subscriber buffer, pings, send timeout.
    pub hub: crate::ws::HubConfig,
    /// `/readyz` fails when a projection is more than this many log
    /// entries behind the head.
    pub readiness_max_lag: i64,
    /// `/readyz` fails while the oldest event not yet positioned is older
    /// than this.
    pub readiness_max_unpositioned_age: Duration,
    /// The ledger's own connections end a transaction left idle this long
    /// (so none of them can hold the log back).
    pub idle_in_transaction_timeout: Duration,
    /// Read replicas, their lag bound, and how long a read waits for its
    /// `min_position`.
    pub reads: crate::replicas::ReadSettings,
    /// The dispatcher: whether this process campaigns to lead it, and how
    /// it sends, retries and follows.
    pub dispatch: crate::dispatch::DispatchConfig,
    /// The export of the log to NATS JetStream; None: no export.
    pub nats: Option<crate::export::NatsExportConfig>,
}

/// The shortest admin token accepted: it guards everything, so it must not
/// be guessable (a generated one is 68 characters).
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

impl Config {
    /// The pool `serve` runs on.
    pub fn pool_settings(&self) -> crate::db::PoolSettings {
        crate::db::PoolSettings {
            max_connections: self.max_connections,
            acquire_timeout: self.acquire_timeout,
            statement_timeout: Some(self.statement_timeout),
            idle_in_transaction_timeout: self.idle_in_transaction_timeout,
        }
    }

    /// Settings that cannot work together, or are unsafe, as one sentence.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(token) = &self.admin_token {
            if token.chars().count() < MIN_ADMIN_TOKEN_CHARS {
                return Err(format!(
                    "the admin token must be at least {MIN_ADMIN_TOKEN_CHARS} characters long (it guards every workspace and the audit log); generate one with e.g. `openssl rand -hex 32`"
                ));
            }
        }
        if let Some(nats) = &self.nats {
            nats.validate()?;
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: None,
            data_dir: PathBuf::from(".ledger"),
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
            max_body_bytes: 1024 * 1024,
            visibility_timeout: Duration::from_secs(5),
            max_connections: 40,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            outbound: crate::a2a::OutboundPolicy::public_only(),
            limits: crate::http::limits::Limits::default(),
            hub: crate::ws::HubConfig::default(),
            readiness_max_lag: 10_000,
            readiness_max_unpositioned_age: Duration::from_secs(30),
            idle_in_transaction_timeout: Duration::from_secs(60),
            reads: crate::replicas::ReadSettings::default(),
            dispatch: crate::dispatch::DispatchConfig::default(),
            nats: None,
        }
    }
}
