//! What one exported log entry looks like on NATS: its subject
//! (`ledger.<aggregate_type>.<event_type>`, so consumers filter by
//! wildcard), its headers (position, the workspaces it concerns, the
//! de-duplication id) and its JSON body — the entry with its event, its log
//! time and its chain hash, enough to rebuild any view or check the chain.

use chrono::{DateTime, Utc};
use projections::LogEntry;
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::log::reader::{ENTRY_COLUMNS, LOG_WITH_EVENTS};

/// Every exported subject starts with this token; the stream is created
/// for `ledger.>`.
pub const SUBJECT_PREFIX: &str = "ledger";
/// The subjects of the stream the export creates.
pub const STREAM_SUBJECTS: &str = "ledger.>";
/// The log position of the entry (equal to its stream sequence).
pub const POSITION_HEADER: &str = "Ledger-Position";
/// The workspace the event concerns first (source, caller, owner).
pub const SOURCE_HEADER: &str = "Ledger-Source-Workspace";
/// The other workspace a delegation or queue item concerns.
pub const TARGET_HEADER: &str = "Ledger-Target-Workspace";

/// One log entry as exported: the message body. The entry's own fields
/// (flattened, so the body is one flat object) and what the log adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedEntry {
    #[serde(flatten)]
    pub entry: LogEntry,
    /// The log time the sequencer gave the entry.
    pub logged_at: DateTime<Utc>,
    /// The entry's chain hash, hex (see `ledger audit verify`).
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_workspace: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_workspace: Option<Uuid>,
}

impl ExportedEntry {
    /// The entry's log position (equal to its stream sequence).
    pub fn position(&self) -> i64 {
        self.entry.position
    }

    /// `ledger.<aggregate_type>.<event_type>`, each token made a valid NATS
    /// subject token.
    pub fn subject(&self) -> String {
        format!(
            "{SUBJECT_PREFIX}.{}.{}",
            subject_token(&self.entry.aggregate_type),
            subject_token(&self.entry.event_type)
        )
    }

    /// The entry as the projections read it (a consumer of the stream
    /// applies the same pure mappings the views do).
    pub fn into_log_entry(self) -> LogEntry {
        self.entry
    }
}

/// A subject token: ASCII letters, digits, `_` and `-` kept, anything else
/// (`.`, `*`, `>`, whitespace, non-ASCII) replaced by `_`; never empty.
pub fn subject_token(raw: &str) -> String {
    let token: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if token.is_empty() {
        "_".into()
    } else {
        token
    }
}

/// Up to `limit` entries with position > `after`, in order, with what the
/// export adds to [`crate::log::reader`]'s entries (log time, hash,
/// workspaces).
pub async fn read_after<'e>(
    executor: impl PgExecutor<'e>,
    after: i64,
    limit: i64,
) -> Result<Vec<ExportedEntry>, sqlx::Error> {
    let sql = format!(
        "select {ENTRY_COLUMNS}, l.logged_at, l.hash, l.source_workspace, l.target_workspace \
         {LOG_WITH_EVENTS} where l.position > $1 order by l.position limit $2"
    );
    let rows: Vec<ExportRow> = sqlx::query_as(&sql)
        .bind(after)
        .bind(limit)
        .fetch_all(executor)
        .await?;
    Ok(rows.into_iter().map(ExportedEntry::from).collect())
}

/// A row of [`read_after`]: the reader's entry, and the log's own columns
/// the export adds.
#[derive(sqlx::FromRow)]
struct ExportRow {
    #[sqlx(flatten)]
    entry: LogEntry,
    logged_at: DateTime<Utc>,
    hash: Vec<u8>,
    source_workspace: Option<Uuid>,
    target_workspace: Option<Uuid>,
}

impl From<ExportRow> for ExportedEntry {
    fn from(row: ExportRow) -> Self {
        ExportedEntry {
            entry: row.entry,
            logged_at: row.logged_at,
            hash: hex::encode(row.hash),
            source_workspace: row.source_workspace,
            target_workspace: row.target_workspace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn subject_tokens_keep_names_and_replace_what_nats_reserves() {
        assert_eq!(subject_token("DelegationSent"), "DelegationSent");
        assert_eq!(subject_token("queue_item"), "queue_item");
        assert_eq!(subject_token("a.b*c>d e"), "a_b_c_d_e");
        assert_eq!(subject_token("émoji"), "_moji");
        assert_eq!(subject_token(""), "_");
    }

    #[test]
    fn an_exported_row_is_its_log_entry_with_the_hash_in_hex() {
        let entry = LogEntry {
            position: 7,
            event_id: 9,
            aggregate_type: "delegation".into(),
            aggregate_id: "d".into(),
            sequence: 2,
            event_type: "DelegationCompleted".into(),
            event_version: "1.0".into(),
            payload: serde_json::json!({"a": 1}),
            metadata: serde_json::json!({"b": 2}),
            recorded_at: Utc::now(),
        };
        let source = Uuid::new_v4();
        let exported = ExportedEntry::from(ExportRow {
            entry: entry.clone(),
            logged_at: entry.recorded_at,
            hash: vec![0xab, 0x01],
            source_workspace: Some(source),
            target_workspace: None,
        });
        assert_eq!(exported.hash, "ab01");
        assert_eq!(exported.source_workspace, Some(source));
        assert_eq!(exported.target_workspace, None);
        assert_eq!(exported.into_log_entry(), entry);
    }

    #[test]
    fn the_subject_is_prefix_aggregate_type_event_type() {
        let entry = ExportedEntry {
            entry: LogEntry {
                position: 1,
                event_id: 1,
                aggregate_type: "delegation".into(),
                aggregate_id: "x".into(),
                sequence: 1,
                event_type: "Delegation.Sent".into(),
                event_version: "1.0".into(),
                payload: Value::Null,
                metadata: Value::Null,
                recorded_at: Utc::now(),
            },
            logged_at: Utc::now(),
            hash: String::new(),
            source_workspace: None,
            target_workspace: None,
        };
        assert_eq!(entry.subject(), "ledger.delegation.Delegation_Sent");
    }

    #[test]
    fn the_body_is_one_flat_object_of_the_entry_and_what_the_log_adds() {
        let entry = LogEntry {
            position: 3,
            event_id: 4,
            aggregate_type: "delegation".into(),
            aggregate_id: "d".into(),
            sequence: 1,
            event_type: "DelegationSent".into(),
            event_version: "1.0".into(),
            payload: serde_json::json!({"task": "t"}),
            metadata: serde_json::json!({}),
            recorded_at: Utc::now(),
        };
        let exported = ExportedEntry {
            entry,
            logged_at: Utc::now(),
            hash: "ab01".into(),
            source_workspace: None,
            target_workspace: None,
        };
        let body = serde_json::to_value(&exported).expect("serializes");
        let mut keys: Vec<&str> = body
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "aggregate_id",
                "aggregate_type",
                "event_id",
                "event_type",
                "event_version",
                "hash",
                "logged_at",
                "metadata",
                "payload",
                "position",
                "recorded_at",
                "sequence"
            ]
        );
        let back: ExportedEntry = serde_json::from_value(body).expect("deserializes");
        assert_eq!(back, exported);
    }
}
