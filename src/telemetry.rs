//! Tracing set up once per process.
//!
//! Human-readable lines by default; one JSON object per line with
//! `LEDGER_LOG_FORMAT=json` (spans — the request's method, route and
//! request id — included). `RUST_LOG` overrides the default filter.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Environment variable choosing the log format.
pub const LOG_FORMAT_ENV: &str = "LEDGER_LOG_FORMAT";
/// Filter used when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Parse `LEDGER_LOG_FORMAT`'s value: unset, empty, `text` → text;
    /// `json` → JSON (case-insensitive). Anything else is an error.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("text") => Ok(Self::Text),
            Some("json") => Ok(Self::Json),
            Some(other) => Err(format!(
                "{LOG_FORMAT_ENV}={other:?} is not a log format (use `text` or `json`)"
            )),
        }
    }
}

/// A subscriber writing `format` to `writer`, filtered by `filter`.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    }
}

/// Logs to stderr in the format `LEDGER_LOG_FORMAT` names.
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let value = std::env::var(LOG_FORMAT_ENV).ok();
    let (format, problem) = match LogFormat::parse(value.as_deref()) {
        Ok(format) => (format, None),
        Err(problem) => (LogFormat::Text, Some(problem)),
    };
    // A second init (tests, benches) keeps the first subscriber; the first
    // also routes `log` records of dependencies into tracing.
    let _ = subscriber(format, filter, std::io::stderr).try_init();
    if let Some(problem) = problem {
        tracing::warn!("{problem}; logging human-readable lines");
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn log_one(format: LogFormat) -> String {
        let buffer = Buffer::default();
        let subscriber = subscriber(format, EnvFilter::new("info"), buffer.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                method = "POST",
                route = "/workspaces/{id}/delegate",
                request_id = "abc"
            );
            let _entered = span.enter();
            tracing::info!(answer = 42, "hello");
        });
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn format_parses() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("text")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("JSON")), Ok(LogFormat::Json));
        assert!(LogFormat::parse(Some("xml")).is_err());
    }

    #[test]
    fn json_format_writes_one_object_per_line_with_the_request_span() {
        let out = log_one(LogFormat::Json);
        let line: serde_json::Value =
            serde_json::from_str(out.trim()).expect("one JSON object per line");
        assert_eq!(line["message"], "hello");
        assert_eq!(line["answer"], 42);
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["span"]["name"], "request");
        assert_eq!(line["span"]["route"], "/workspaces/{id}/delegate");
        assert_eq!(line["span"]["request_id"], "abc");
    }

    #[test]
    fn text_format_is_human_readable() {
        let out = log_one(LogFormat::Text);
        assert!(serde_json::from_str::<serde_json::Value>(out.trim()).is_err());
        assert!(out.contains("hello"), "{out}");
        assert!(out.contains("request_id"), "{out}");
        assert!(out.contains("\"abc\""), "{out}");
    }
}
