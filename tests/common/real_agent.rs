//! The real A2A agent: tests/a2a_sdk/agent.py on the Python `a2a-sdk`,
//! started on a free port and killed on drop. Shared by the client tests and
//! the dispatch tests.
//!
//! The agent needs a Python with the pinned packages: unless
//! LEDGER_A2A_PYTHON names an interpreter that has them, the first use
//! provisions target/a2a-venv with scripts/a2a-venv (as .ci/run does), so
//! `cargo test` works on a fresh machine with python3 and PyPI. If that
//! fails, the tests fail with the reason (they never skip silently).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// The Python `a2a-sdk` agent of tests/a2a_sdk/agent.py, killed on drop.
pub struct RealAgent {
    pub base: String,
    _child: Child,
}

fn python_interpreter() -> PathBuf {
    if let Some(path) = std::env::var_os("LEDGER_A2A_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    static PROVISIONED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let provisioned = PROVISIONED.get_or_init(|| {
        let status = std::process::Command::new("bash")
            .arg(root.join("scripts/a2a-venv"))
            .status()
            .map_err(|e| format!("could not run scripts/a2a-venv: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("scripts/a2a-venv failed: {status}"))
        }
    });
    if let Err(reason) = provisioned {
        panic!("{reason}: {INSTALL_HINT}");
    }
    root.join("target/a2a-venv/bin/python")
}

const INSTALL_HINT: &str = "the real-agent tests need a Python with the packages of \
     tests/a2a_sdk/requirements.txt. From the repository root run\n  \
     python3 -m venv target/a2a-venv && target/a2a-venv/bin/pip install -r tests/a2a_sdk/requirements.txt\n\
     (.ci/run does this), or set LEDGER_A2A_PYTHON to an interpreter that has them";

pub async fn start_real_agent() -> RealAgent {
    let python = python_interpreter();
    assert!(
        python.exists(),
        "no Python interpreter at {}: {INSTALL_HINT}",
        python.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/a2a_sdk/agent.py");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(&python)
        .arg(&script)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--slow-seconds", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}: {INSTALL_HINT}", python.display()));

    // Keep the agent's stderr drained (and for the failure message).
    let stderr = Arc::new(Mutex::new(String::new()));
    if let Some(mut pipe) = child.stderr.take() {
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut text = sink.lock().unwrap_or_else(|p| p.into_inner());
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }

    let base = format!("http://127.0.0.1:{port}");
    let card_url = format!("{base}/.well-known/agent-card.json");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let log = stderr.lock().unwrap_or_else(|p| p.into_inner()).clone();
            panic!("the real A2A agent exited ({status}) before serving its card:\n{log}\n{INSTALL_HINT}");
        }
        if let Ok(response) = http.get(&card_url).send().await {
            if response.status().is_success() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the real A2A agent did not serve {card_url} within 60s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    RealAgent {
        base,
        _child: child,
    }
}
