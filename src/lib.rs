//! The Delegation Ledger service: records, dispatches and replays
//! agent-to-agent task delegations as an event-sourced ledger on
//! PostgreSQL.
//!
//! # Layout
//!
//! * [`a2a`] — the A2A client the dispatcher uses: v0.3 and v1.0 wire
//!   formats, agent cards, and busy / transient / permanent classification.
//! * [`cli`] — the client subcommands of the `ledger` binary (register,
//!   delegate, status, inbox, tail) and progress for long operator work.
//! * [`app`] — builds the whole service (database, background tasks, HTTP)
//!   and runs it until shutdown; tests and benchmarks start it on port 0.
//! * [`config`] — settings from flags and environment.
//! * [`db`] — which PostgreSQL to use (DATABASE_URL, or a private embedded
//!   cluster) and the migrations.
//! * [`embedded_pg`] — the private PostgreSQL cluster.
//! * [`commands`] — the write path: aggregate decides, events commit,
//!   read-your-writes.
//! * [`log`] — the positioned, hash-chained log and its sequencer.
//! * [`metrics`] — the names of the event-driven metrics and their
//!   recorder (rendered by `GET /metrics`).
//! * [`projection_runner`] — applies the log to the views, checkpointed.
//! * [`rebuild`] — rebuilds a view beside the live one and swaps it in.
//! * [`dispatch`] — the process manager that delivers managed delegations
//!   over A2A, queues them behind busy targets and drains on heartbeats.
//! * [`http`] — the REST API (docs/api.md).
//! * [`ws`] — the live feed: websocket replay-then-live, one hub per process.
//! * [`export`] — the log copied, exactly once and in order, to NATS
//!   JetStream.
//! * [`leader`] — advisory-lock election of the single-leader roles.
//! * [`secrets`] — secrets of the installation, kept in the database.
//! * [`telemetry`] — plumbing.
//!
//! The pure domain lives in the `aggregates` crate and the read-model
//! mapping in the `projections` crate; dependencies flow one way:
//! `ledger → projections → aggregates`.

pub mod a2a;
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod dispatch;
pub mod embedded_pg;
pub mod export;
pub mod http;
pub mod leader;
pub mod log;
pub mod metrics;
pub mod projection_runner;
pub mod rebuild;
pub mod replicas;
pub mod secrets;
pub mod telemetry;
pub mod ws;
