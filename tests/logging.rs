//! A rejected request is the client's mistake, not the ledger's fault: it
//! is logged once, below ERROR. (It used to be logged at ERROR, twice.)

mod common;

use std::io::Read;

use serde_json::{json, Value};
use uuid::Uuid;

const ADMIN: &str = "logging-admin-0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn a_client_error_is_logged_once_at_info_and_never_at_error() {
    let database_url = common::fresh_database_url().await;
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &database_url)
        .env("LEDGER_ADMIN_TOKEN", ADMIN)
        .env("LEDGER_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("LEDGER_DISPATCH", "false")
        .stdout(std::process::Stdio::piped())
        .stderr(log.reopen().expect("log file"))
        .spawn()
        .expect("start ledger serve");
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("listening line");
        assert!(line.starts_with("ledger listening on"), "{line:?}");
    }
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let id = Uuid::new_v4();
    let registered: Value = client
        .post(format!("{base}/registry/register"))
        .json(&json!({ "id": id, "delivery_mode": "poll" }))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let token = registered["auth_token"]
        .as_str()
        .expect("token")
        .to_string();

    let rejected = [
        // 400 from the aggregate's rule, through the command path.
        (
            "rid-bad-request",
            client
                .post(format!("{base}/workspaces/{id}/delegate"))
                .bearer_auth(&token)
                .json(&json!({ "target_id": id, "task": "myself" })),
        ),
        // 401 from authentication.
        (
            "rid-unauthorized",
            client
                .get(format!("{base}/workspaces/{id}/delegations"))
                .bearer_auth("ldg_nope"),
        ),
        // 404 from a handler.
        (
            "rid-not-found",
            client
                .get(format!(
                    "{base}/workspaces/{id}/delegations/{}",
                    Uuid::new_v4()
                ))
                .bearer_auth(&token),
        ),
    ];
    let mut expected = Vec::new();
    for (request_id, request) in rejected {
        let response = request
            .header("x-request-id", request_id)
            .send()
            .await
            .expect("sent");
        assert!(response.status().is_client_error(), "{request_id}");
        expected.push(request_id);
    }

    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("joined")
        .expect("exit status");
    assert!(status.success(), "{status:?}");

    let mut text = String::new();
    log.reopen()
        .expect("log file")
        .read_to_string(&mut text)
        .expect("read the log");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let errors: Vec<&Value> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "ERROR lines: {errors:?}");
    for request_id in expected {
        let about: Vec<&Value> = lines
            .iter()
            .filter(|line| line.to_string().contains(request_id))
            .filter(|line| line["level"] != "DEBUG" && line["level"] != "TRACE")
            .collect();
        assert_eq!(about.len(), 1, "{request_id}: {about:#?}");
        assert_eq!(about[0]["level"], "INFO", "{request_id}: {:?}", about[0]);
        assert_eq!(about[0]["message"], "request rejected", "{:?}", about[0]);
    }
}
