//! The README's run command: `ledger serve` with no DATABASE_URL starts its
//! own PostgreSQL under the data directory, serves, and on SIGTERM stops
//! cleanly, taking that PostgreSQL down with it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn serve_without_a_database_url_runs_on_its_own_postgres_and_stops_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The embedded cluster runs as the `postgres` user when we are root, so
    // it must be able to reach the data directory.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env_remove("DATABASE_URL")
        .env_remove("LEDGER_ADMIN_TOKEN")
        .env("LEDGER_DATA_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ledger serve");

    // The generated admin token is printed once on stdout.
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read stdout");
    let admin = line.trim().rsplit(' ').next().expect("token").to_string();
    assert!(admin.starts_with("ldg_"), "{line:?}");
    let saved = std::fs::read_to_string(dir.path().join("admin-token")).expect("saved token");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("admin-token"))
            .expect("stat the token file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the admin token file is owner-only");
    }
    assert_eq!(saved.trim(), admin);

    // Then, once it is bound, where it listens.
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read stdout");
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(line.trim(), format!("ledger listening on {base}"));
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let id = uuid::Uuid::new_v4();
    let registered: Value = client
        .post(format!("{base}/registry/register"))
        .json(&json!({ "id": id, "delivery_mode": "poll" }))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    assert!(registered["auth_token"].is_string(), "{registered}");
    let discovered = client
        .get(format!("{base}/registry/discover/{id}"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("discover");
    assert_eq!(discovered.status().as_u16(), 200);

    let pid = child.id() as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    assert!(
        status.success(),
        "ledger should exit cleanly on SIGTERM: {status:?}"
    );
    assert!(
        !dir.path().join("postgres/pgdata/postmaster.pid").exists(),
        "the embedded PostgreSQL should be stopped"
    );
}
