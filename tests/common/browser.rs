//! A real browser for the console tests: headless Chromium, driven over
//! WebDriver (fantoccini) through a chromedriver this module starts on a
//! free port with a fresh profile.
//!
//! Where Chromium or chromedriver is not installed, [`Browser::start`]
//! returns `None` (the test passes without running) and the first such
//! test prints one line saying so;
//! with `LEDGER_REQUIRE_BROWSER=1` (set by `.ci/run`) that is a failure.
//! Browser sessions are taken one at a time (two cores run the suite), and
//! waits are conditions polled in the page with a deadline, never sleeps
//! standing in for them.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Flags that keep Chromium quiet on a machine with a closed network (no
/// background updates, sync or QUIC probes) and runnable as root in CI.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1440,900",
];

/// How often a condition is checked in the page.
const POLL: Duration = Duration::from_millis(50);

/// Whether a missing browser fails the test instead of skipping it.
const REQUIRE: &str = "LEDGER_REQUIRE_BROWSER";

pub struct Browser {
    pub client: Client,
    driver: Child,
    driver_port: u16,
    session: Option<String>,
    _profile: tempfile::TempDir,
    _turn: OwnedSemaphorePermit,
}

/// The executable: `$override` when set, else the first candidate found on
/// `PATH` (or as an absolute path).
fn find_program(override_var: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(override_var) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for candidate in candidates {
        let candidate = Path::new(candidate);
        if candidate.is_absolute() {
            if candidate.is_file() {
                return Some(candidate.to_path_buf());
            }
            continue;
        }
        for dir in std::env::split_paths(&path) {
            let full = dir.join(candidate);
            if full.is_file() {
                return Some(full);
            }
        }
    }
    None
}

impl Browser {
    /// A fresh headless Chromium session, or `None` (after one line on
    /// stdout) when none is installed and `LEDGER_REQUIRE_BROWSER` is not 1.
    pub async fn start() -> Option<Browser> {
        let chromium = find_program(
            "LEDGER_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let driver = find_program("LEDGER_CHROMEDRIVER", &["chromedriver"]);
        let (chromium, driver) = match (chromium, driver) {
            (Some(chromium), Some(driver)) => (chromium, driver),
            (chromium, driver) => {
                let missing = [
                    ("chromium", chromium.is_none()),
                    ("chromedriver", driver.is_none()),
                ]
                .iter()
                .filter(|(_, missing)| *missing)
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(" and ");
                if std::env::var(REQUIRE).as_deref() == Ok("1") {
                    panic!("{REQUIRE}=1 but {missing} not found: install the Debian packages chromium and chromium-driver");
                }
                // Once per test process, past the harness's capture (a
                // skipped test passes, and a passing test's output is
                // otherwise hidden).
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    let _ = writeln!(
                        std::io::stderr(),
                        "browser tests skipped: {missing} not installed (apt-get install chromium chromium-driver; {REQUIRE}=1 makes this a failure)"
                    );
                });
                return None;
            }
        };

        static TURNS: OnceLock<Arc<Semaphore>> = OnceLock::new();
        let turn = TURNS
            .get_or_init(|| Arc::new(Semaphore::new(1)))
            .clone()
            .acquire_owned()
            .await
            .expect("the browser semaphore is never closed");

        let (driver, driver_port) = start_driver(&driver);
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": args,
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("capabilities are an object")
        };
        let mut browser = Browser {
            client: connect(capabilities, driver_port).await,
            driver,
            driver_port,
            session: None,
            _profile: profile,
            _turn: turn,
        };
        browser.session = browser.client.session_id().await.ok().flatten();
        Some(browser)
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
        // Record script errors and policy violations from here on; each
        // test checks there were none.
        self.js(
            "window.__problems = window.__problems || [];
             addEventListener('error', e => __problems.push('error: ' + e.message));
             addEventListener('unhandledrejection', e => __problems.push('rejection: ' + e.reason));
             document.addEventListener('securitypolicyviolation',
               e => __problems.push('CSP: ' + e.violatedDirective + ' ' + e.blockedURI));",
            vec![],
        )
        .await;
    }

    /// Run `script` (a function body; `arguments[i]` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Wait until `script` returns true in the page; panics after `limit`
    /// with `what` and the page's text.
    pub async fn wait_until(&self, what: &str, limit: Duration, script: &str, args: Vec<Value>) {
        let deadline = Instant::now() + limit;
        loop {
            if self.js(script, args.clone()).await == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let text = self
                    .js("return document.body.innerText.slice(0, 4000);", vec![])
                    .await;
                self.screenshot(&format!("failed-{}", slug(what))).await;
                panic!(
                    "timed out after {limit:?} waiting for {what}; the page says:\n{}",
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait until the card of `delegation` shows `status` (attribute and
    /// column both).
    pub async fn wait_card(&self, delegation: uuid::Uuid, status: &str) {
        self.wait_until(
            &format!("the card of {delegation} to be {status}"),
            Duration::from_secs(30),
            "const card = document.querySelector(`[data-delegation-id='${arguments[0]}'].card`);
             return !!card && card.dataset.status === arguments[1]
               && card.closest('[data-column]').dataset.column === arguments[1];",
            vec![json!(delegation), json!(status)],
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
    }

    /// Save the viewport as `target/console-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Script errors and policy violations the page reported.
    pub async fn problems(&self) -> Vec<String> {
        let found = self.js("return window.__problems || [];", vec![]).await;
        serde_json::from_value(found).unwrap_or_default()
    }

    /// End the session (Chromium exits) and chromedriver.
    pub async fn close(mut self) {
        if let Ok(()) = self.client.clone().close().await {
            self.session = None;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that panicked never called close(): end the session over
        // plain HTTP so Chromium does not outlive the test.
        if let Some(session) = self.session.take() {
            delete_session(self.driver_port, &session);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where the screenshots go: `target/console-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("console-screenshots")
}

fn slug(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(60)
        .collect()
}

/// chromedriver on a free port, once it said it started.
fn start_driver(program: &Path) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let stdout = child.stdout.take().expect("chromedriver stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("started successfully") => break,
            Some(Ok(_)) => continue,
            _ => panic!("chromedriver exited before it started"),
        }
    }
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, port)
}

async fn connect(capabilities: serde_json::Map<String, Value>, port: u16) -> Client {
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with headless Chromium")
}

/// `DELETE /session/{id}` without an async runtime (for `Drop`).
fn delete_session(port: u16, session: &str) {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = std::io::Read::read_to_end(&mut stream, &mut Vec::new());
    }
}
