//! The client side of the `ledger` binary: subcommands that talk to a
//! running `ledger serve` over its HTTP API and live feed, so a first user
//! (or a shell script) can register, delegate and watch without writing a
//! client. The server's own commands (serve, migrate, audit, projections)
//! stay in `main.rs`; this module owns everything that goes over the wire.
//!
//! Every command reads the server from `LEDGER_URL` (or `--url`) and the
//! token from `LEDGER_TOKEN` (or `--token`), and turns the failures a user
//! meets first — a refused token, an unknown id, a server that is not
//! running — into one sentence and a nonzero exit code, never a panic.

mod commands;
mod export;
mod http;
pub mod progress;
mod tail;

use clap::{Args, Subcommand};

pub use http::CliError;

/// The client subcommands (flattened into `ledger`'s own).
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a workspace; prints `export LEDGER_WORKSPACE=…` and
    /// `export LEDGER_TOKEN=…` (the token is shown only this once).
    Register(commands::RegisterArgs),
    /// Delegate a task to another workspace; prints the delegation's id.
    Delegate(commands::DelegateArgs),
    /// Show one delegation: status, parties, task, result, history.
    Status(commands::StatusArgs),
    /// List the tasks waiting in a poll-mode workspace's inbox.
    Inbox(commands::InboxArgs),
    /// Follow the live feed, one line per message (resumes after
    /// disconnects; Ctrl-C stops it).
    Tail(tail::TailArgs),
    /// Write the audit log (or one workspace's part) as NDJSON to stdout,
    /// with progress on stderr; needs the admin token.
    Export(export::ExportArgs),
}

/// Where the server is and who is asking.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The ledger's base URL.
    #[arg(long, env = "LEDGER_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A workspace token (or the admin token).
    #[arg(long, env = "LEDGER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Run a client command; returns the process exit code (0 on success, 1
/// with one line on stderr otherwise).
pub async fn run(command: ClientCommand) -> i32 {
    let result = match command {
        ClientCommand::Register(args) => commands::register(args).await,
        ClientCommand::Delegate(args) => commands::delegate(args).await,
        ClientCommand::Status(args) => commands::status(args).await,
        ClientCommand::Inbox(args) => commands::inbox(args).await,
        ClientCommand::Tail(args) => tail::tail(args).await,
        ClientCommand::Export(args) => export::export(args).await,
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    match result {
        Ok(()) => 0,
        // The reader went away (`ledger tail | head`): nothing to say.
        Err(CliError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(error) => {
            eprintln!("error: {error}");
            1
        }
    }
}
