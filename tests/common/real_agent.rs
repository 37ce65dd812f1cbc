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
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
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
    let mut child = Command::new(&python)
        .arg(&script)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(["--slow-seconds", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}: {INSTALL_HINT}", python.display()));

    // Keep the agent's stderr drained (and for the failure message); the
    // task ends when the agent closes it, i.e. when it exits.
    let stderr = Arc::new(Mutex::new(String::new()));
    let drained = child.stderr.take().map(|mut pipe| {
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
        })
    });

    // The agent prints `ready <port>` once its socket listens.
    let mut stdout = BufReader::new(child.stdout.take().expect("agent stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = stdout.next_line().await {
            if let Some(port) = line.strip_prefix("ready ") {
                return port.trim().parse::<u16>().ok();
            }
        }
        None
    })
    .await
    .unwrap_or_else(|_| panic!("the real A2A agent did not get ready within 60s"));
    let Some(port) = ready else {
        // It exited: wait for its last words, then report them.
        if let Some(drained) = drained {
            let _ = drained.await;
        }
        let log = stderr.lock().unwrap_or_else(|p| p.into_inner()).clone();
        panic!("the real A2A agent exited before it was ready:\n{log}\n{INSTALL_HINT}");
    };
    let base = format!("http://127.0.0.1:{port}");
    RealAgent {
        base,
        _child: child,
    }
}
