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
    /// The live feed: subscriber buffer, pings, send timeout.
    pub hub: crate::ws::HubConfig,
    /// `/readyz` fails when a projection is more than this many log
    /// entries behind the head.
    pub readiness_max_lag: i64,
    /// The dispatcher: whether this process campaigns to lead it, and how
    /// it sends, retries and follows.
    pub dispatch: crate::dispatch::DispatchConfig,
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
            hub: crate::ws::HubConfig::default(),
            readiness_max_lag: 10_000,
            dispatch: crate::dispatch::DispatchConfig::default(),
        }
    }
}
