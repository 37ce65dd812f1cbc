//! `ledger export`: the audit log (or one workspace's part of it) as NDJSON
//! on stdout, streamed from `GET /audit/events` with `Accept:
//! application/x-ndjson` — what an auditor archives or feeds to another
//! tool. A long log takes a while, so progress goes to stderr: the last
//! position written against the log's head (read from `/metrics` when the
//! export starts), as a bar on a terminal and as plain lines otherwise.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use uuid::Uuid;

use super::http::{error_for, Api, CliError};
use super::progress::Progress;
use super::Connection;

/// Longest an export may run (a million entries take seconds; this only
/// bounds a stream that stopped moving).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(6 * 60 * 60);

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Only entries whose source or target is this workspace.
    #[arg(long)]
    pub workspace: Option<Uuid>,
    /// Start after this log position (0: from the beginning).
    #[arg(long, default_value_t = 0)]
    pub after: i64,
}

pub async fn export(args: ExportArgs) -> Result<(), CliError> {
    let api = Api::new(&args.connection)?;
    let token = api.token()?.to_string();
    let head = log_head(&api).await;
    let mut path = format!("/audit/events?after={}", args.after);
    if let Some(workspace) = args.workspace {
        path.push_str(&format!("&workspace_id={workspace}"));
    }
    let mut response = reqwest::Client::new()
        .get(format!("{}{path}", api.base()))
        .bearer_auth(token)
        .header("accept", "application/x-ndjson")
        .timeout(EXPORT_TIMEOUT)
        .send()
        .await
        .map_err(|e| api.transport(e))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.json().await.unwrap_or_default();
        return Err(error_for(status, &body));
    }

    let mut progress = Progress::new("exported up to position", "positions");
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // The tail of the last chunk after its last newline: the start of a
    // line still on its way.
    let mut partial: Vec<u8> = Vec::new();
    let mut entries = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(|e| api.transport(e))? {
        out.write_all(&chunk)?;
        partial.extend_from_slice(&chunk);
        let Some(end) = partial.iter().rposition(|b| *b == b'\n') else {
            continue;
        };
        let complete = &partial[..end];
        entries += complete.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        let last_line = complete.rsplit(|b| *b == b'\n').next().unwrap_or_default();
        if let Some(position) = position_of(last_line) {
            progress.update(position as u64, head.unwrap_or(0).max(position) as u64);
        }
        partial.drain(..=end);
    }
    out.flush()?;
    progress.finish();
    if !partial.iter().all(u8::is_ascii_whitespace) {
        return Err(CliError::Protocol(
            "the export ended in the middle of a line; the server may have stopped".into(),
        ));
    }
    eprintln!("exported {entries} entries");
    Ok(())
}

/// The `position` of one exported entry.
fn position_of(line: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Entry {
        position: i64,
    }
    serde_json::from_slice::<Entry>(line)
        .ok()
        .map(|entry| entry.position)
}

/// The log's head from the `ledger_log_head` gauge, if `/metrics` says.
async fn log_head(api: &Api) -> Option<i64> {
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", api.base()))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    head_from_metrics(&text)
}

fn head_from_metrics(text: &str) -> Option<i64> {
    text.lines()
        .find_map(|line| line.strip_prefix("ledger_log_head "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_is_read_from_its_gauge_and_positions_from_entries() {
        let metrics = "# HELP ledger_log_head x\n# TYPE ledger_log_head gauge\nledger_log_head 1234\nledger_log_heads 9\n";
        assert_eq!(head_from_metrics(metrics), Some(1234));
        assert_eq!(head_from_metrics("nothing here"), None);
        assert_eq!(
            position_of(br#"{"position":17,"event_id":3,"payload":{"a":1}}"#),
            Some(17)
        );
        assert_eq!(position_of(b"{not json"), None);
    }
}
