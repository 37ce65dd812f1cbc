//! One HTTP client for the client subcommands, and the one error type they
//! share: the API's `{"error": …}` bodies become sentences, and the three
//! failures a first user meets (a refused token, an unknown id, no server)
//! become sentences that say what to do.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use super::Connection;

/// Why a client command failed; its `Display` is the one line printed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// 401 from the server.
    #[error("the token was refused: check LEDGER_TOKEN (or --token)")]
    TokenRefused,
    /// A command that needs a token was given none.
    #[error("no token: set LEDGER_TOKEN or pass --token")]
    NoToken,
    /// 404 from the server, with its sentence.
    #[error("not found: {0}")]
    NotFound(String),
    /// Nothing answered at the URL.
    #[error("cannot reach {url}: is `ledger serve` running? ({detail})")]
    Unreachable { url: String, detail: String },
    /// Any other error answer.
    #[error("the server answered {status}: {message}")]
    Api { status: u16, message: String },
    /// The command line does not say enough.
    #[error("{0}")]
    Usage(String),
    /// The server answered something this client cannot read.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// Writing to stdout failed (e.g. a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// The server at a base URL, with an optional bearer token.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl Api {
    pub fn new(connection: &Connection) -> Result<Self, CliError> {
        let base = connection.url.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base)
            .map_err(|e| CliError::Usage(format!("LEDGER_URL {base:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CliError::Usage(format!(
                "LEDGER_URL must start with http:// or https://; got {base:?}"
            )));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            base,
            token: connection.token.clone().filter(|t| !t.trim().is_empty()),
            client,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The token, or [`CliError::NoToken`].
    pub fn token(&self) -> Result<&str, CliError> {
        self.token.as_deref().ok_or(CliError::NoToken)
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// Send a request; a 2xx answer's JSON body, or the error it means.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.transport(e))?;
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|_| {
                CliError::Protocol(format!(
                    "{status} with a body that is not JSON: {}",
                    text.chars().take(200).collect::<String>()
                ))
            })?
        };
        if status.is_success() {
            return Ok(body);
        }
        Err(error_for(status, &body))
    }

    /// A failure below HTTP: nothing listening, a timeout, a broken
    /// connection.
    pub fn transport(&self, error: reqwest::Error) -> CliError {
        CliError::Unreachable {
            url: self.base.clone(),
            detail: root_cause(&error),
        }
    }

    /// The workspace to act for: the one named, else the token's own (asked
    /// of the server, so a workspace token needs no id beside it).
    pub async fn workspace(&self, named: Option<Uuid>) -> Result<Uuid, CliError> {
        if let Some(id) = named {
            return Ok(id);
        }
        self.token()?;
        let session = self.get("/console/whoami").await?;
        match session["workspace_id"].as_str() {
            Some(id) => id
                .parse()
                .map_err(|_| CliError::Protocol(format!("workspace_id {id:?} is not a UUID"))),
            None => Err(CliError::Usage(
                "the admin token belongs to no workspace: name one with --workspace \
                 (or LEDGER_WORKSPACE)"
                    .into(),
            )),
        }
    }
}

/// The error an HTTP status and `{"error": …}` body mean.
pub fn error_for(status: StatusCode, body: &Value) -> CliError {
    let message = body["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase());
    match status {
        StatusCode::UNAUTHORIZED => CliError::TokenRefused,
        StatusCode::NOT_FOUND => CliError::NotFound(message),
        _ => CliError::Api {
            status: status.as_u16(),
            message,
        },
    }
}

/// The innermost cause of an error (reqwest's own text is "error sending
/// request for url", which says less than "Connection refused").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
