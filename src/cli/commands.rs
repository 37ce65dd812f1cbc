//! register, delegate, status, inbox: one request (or a short poll) each,
//! printed for a person, or with `--json` as the server answered.
//!
//! What goes to stdout is what a script wants to keep (the exports of a
//! registration, a delegation's id); remarks for the person go to stderr.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};
use uuid::Uuid;

use super::http::{Api, CliError};
use super::Connection;

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The ledger's base URL (here `--url` is the agent's).
    #[arg(long, env = "LEDGER_URL", default_value = "http://127.0.0.1:8080")]
    ledger_url: String,
    /// To re-register: the workspace's token (or the admin's); a first
    /// registration needs none.
    #[arg(long, env = "LEDGER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The workspace's id (a UUID); generated when absent.
    #[arg(long)]
    id: Option<Uuid>,
    /// A name to show for it.
    #[arg(long)]
    name: Option<String>,
    /// Push mode: the URL of its A2A agent, which the ledger calls.
    #[arg(long, conflicts_with = "poll", required_unless_present = "poll")]
    url: Option<String>,
    /// Poll mode: no URL; work waits in its inbox (`ledger inbox`).
    #[arg(long)]
    poll: bool,
}

pub async fn register(args: RegisterArgs) -> Result<(), CliError> {
    let api = Api::new(&Connection {
        url: args.ledger_url.clone(),
        token: args.token.clone(),
    })?;
    let id = args.id.unwrap_or_else(Uuid::new_v4);
    let mut body = json!({ "id": id });
    if let Some(name) = &args.name {
        body["name"] = json!(name);
    }
    match (&args.url, args.poll) {
        (_, true) => body["delivery_mode"] = json!("poll"),
        (Some(url), false) => {
            body["delivery_mode"] = json!("push");
            body["url"] = json!(url);
        }
        (None, false) => {
            return Err(CliError::Usage(
                "name the agent's --url (push mode), or pass --poll to collect work from \
                 the inbox instead"
                    .into(),
            ))
        }
    }
    let answer = api.post("/registry/register", body).await?;
    let mode = answer["delivery_mode"].as_str().unwrap_or("?");
    let mut out = std::io::stdout().lock();
    writeln!(out, "export LEDGER_WORKSPACE={id}")?;
    match answer["auth_token"].as_str() {
        Some(token) => {
            writeln!(out, "export LEDGER_TOKEN={token}")?;
            eprintln!(
                "registered {mode} workspace {id}; keep its token: it is shown only this once"
            );
        }
        None => eprintln!("re-registered {mode} workspace {id}; its token is unchanged"),
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct DelegateArgs {
    #[command(flatten)]
    connection: Connection,
    /// The delegating workspace (default: the token's own).
    #[arg(long, env = "LEDGER_WORKSPACE")]
    from: Option<Uuid>,
    /// The workspace to do the task.
    #[arg(long)]
    to: Uuid,
    /// What to do.
    #[arg(long)]
    task: String,
    /// Print the server's whole answer as JSON instead of the id.
    #[arg(long)]
    json: bool,
}

pub async fn delegate(args: DelegateArgs) -> Result<(), CliError> {
    let api = Api::new(&args.connection)?;
    let from = api.workspace(args.from).await?;
    let answer = api
        .post(
            &format!("/workspaces/{from}/delegate"),
            json!({ "target_id": args.to, "task": args.task }),
        )
        .await?;
    if args.json {
        return print_json(&answer);
    }
    let id = answer["delegation_id"]
        .as_str()
        .ok_or_else(|| CliError::Protocol(format!("no delegation_id in {answer}")))?;
    println!("{id}");
    Ok(())
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    connection: Connection,
    /// The delegation's id.
    delegation: Uuid,
    /// The workspace asking (its source or target; default: the token's own).
    #[arg(long, env = "LEDGER_WORKSPACE")]
    workspace: Option<Uuid>,
    /// Print the delegation as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn status(args: StatusArgs) -> Result<(), CliError> {
    let api = Api::new(&args.connection)?;
    let workspace = api.workspace(args.workspace).await?;
    let delegation = api
        .get(&format!(
            "/workspaces/{workspace}/delegations/{}",
            args.delegation
        ))
        .await?;
    if args.json {
        return print_json(&delegation);
    }
    let text = |key: &str| delegation[key].as_str().unwrap_or("").to_string();
    let mut out = std::io::stdout().lock();
    writeln!(out, "delegation {}", text("delegation_id"))?;
    writeln!(out, "  status   {}", text("status"))?;
    writeln!(out, "  from     {}", text("source_id"))?;
    writeln!(out, "  to       {}", text("target_id"))?;
    writeln!(out, "  task     {}", one_line(&text("task")))?;
    for (key, label) in [
        ("result", "result"),
        ("error", "error"),
        ("question", "question"),
    ] {
        if let Some(value) = delegation[key].as_str() {
            writeln!(out, "  {label:<8} {}", one_line(value))?;
        }
    }
    if let Some(history) = delegation["history"].as_array() {
        let steps: Vec<&str> = history
            .iter()
            .filter_map(|s| s["status"].as_str())
            .collect();
        writeln!(out, "  history  {}", steps.join(" → "))?;
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct InboxArgs {
    #[command(flatten)]
    connection: Connection,
    /// The workspace whose inbox to read (default: the token's own).
    #[arg(long, env = "LEDGER_WORKSPACE")]
    workspace: Option<Uuid>,
    /// Wait until at least one task is there (at most --timeout seconds).
    #[arg(long)]
    wait: bool,
    /// With --wait: how long to wait, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Print the inbox rows as JSON.
    #[arg(long)]
    json: bool,
}

/// The tasks delivered to a poll-mode workspace are `a2a_receive` rows of
/// its activity feed carrying the task; results coming back to a caller
/// are rows of the same type without one, and are not work to do.
pub async fn inbox(args: InboxArgs) -> Result<(), CliError> {
    let api = Api::new(&args.connection)?;
    let workspace = api.workspace(args.workspace).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let tasks = loop {
        let rows = api
            .get(&format!(
                "/workspaces/{workspace}/activity?type=a2a_receive&limit=1000"
            ))
            .await?;
        let mut tasks: Vec<Value> = rows
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter(|row| row["request_body"]["task"].is_string())
                    .filter(|row| row["target_id"].as_str() == Some(&workspace.to_string()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        // The feed is newest first; an inbox reads oldest first.
        tasks.reverse();
        if !tasks.is_empty() || !args.wait {
            break tasks;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Usage(format!(
                "no task arrived in the inbox of {workspace} within {} s",
                args.timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if args.json {
        return print_json(&Value::Array(tasks));
    }
    if tasks.is_empty() {
        eprintln!("the inbox of {workspace} is empty");
    }
    let mut out = std::io::stdout().lock();
    for task in &tasks {
        writeln!(
            out,
            "{}  from {}  {}",
            task["request_body"]["delegation_id"]
                .as_str()
                .unwrap_or("?"),
            task["source_id"].as_str().unwrap_or("?"),
            one_line(task["request_body"]["task"].as_str().unwrap_or("")),
        )?;
    }
    Ok(())
}

fn print_json(value: &Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Protocol(format!("cannot print JSON: {e}")))?;
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// A text on one line, cut at 200 characters: a terminal line per item.
pub fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut cut: String = flat.chars().take(200).collect();
    if flat.chars().count() > 200 {
        cut.push('…');
    }
    cut
}
