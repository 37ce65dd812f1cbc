//! The client subcommands of the `ledger` binary against the real
//! `ledger serve` binary: the happy path (register, delegate, inbox,
//! status), the three first-day failures (a refused token, an unknown
//! delegation, no server) as one line and exit code 1, `tail` following the
//! feed across a graceful restart (1001) and a killed server (dropped
//! connection) with no gap and no duplicate, and the operator's progress
//! lines when stderr is not a terminal.
//!
//! Every wait is on the output of a process (a line of `tail`, the exit of
//! a command), never on a timer.

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use uuid::Uuid;

/// What a finished client command printed.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `ledger <args>` against `url` with `token` (None: no token at all).
async fn ledger(url: &str, token: Option<&str>, args: &[&str]) -> Ran {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger"));
    command
        .args(args)
        .env("LEDGER_URL", url)
        .env_remove("LEDGER_TOKEN")
        .env_remove("LEDGER_WORKSPACE")
        .kill_on_drop(true);
    if let Some(token) = token {
        command.env("LEDGER_TOKEN", token);
    }
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .unwrap_or_else(|_| panic!("ledger {args:?} should finish"))
        .expect("run ledger");
    let ran = Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !ran.stderr.contains("panicked"),
        "ledger {args:?} panicked: {}",
        ran.stderr
    );
    ran
}

impl Ran {
    fn ok(self, what: &str) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "{what} should succeed; stdout: {} stderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Failed with exit code 1 and exactly one line on stderr containing `says`.
    fn failed_saying(&self, what: &str, says: &str) {
        assert_eq!(
            self.code,
            Some(1),
            "{what} should fail with 1; stdout: {} stderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.contains(says),
            "{what}: stderr should say {says:?}, got {:?}",
            self.stderr
        );
        assert_eq!(
            self.stderr.trim().lines().count(),
            1,
            "{what}: one line: {:?}",
            self.stderr
        );
    }
}

/// A workspace registered with `ledger register`: its id and token, read
/// back from the exports it printed.
struct Registered {
    id: Uuid,
    token: String,
}

async fn register(url: &str, args: &[&str]) -> Registered {
    let mut all = vec!["register"];
    all.extend_from_slice(args);
    let ran = ledger(url, None, &all).await.ok("register");
    let export = |name: &str| {
        ran.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("register should print {name}: {}", ran.stdout))
            .to_string()
    };
    Registered {
        id: export("LEDGER_WORKSPACE").parse().expect("a UUID"),
        token: export("LEDGER_TOKEN"),
    }
}

fn admin_token() -> String {
    format!("admin-{}", Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread")]
async fn register_delegate_inbox_and_status() {
    let database_url = common::fresh_database_url().await;
    let admin = admin_token();
    let (mut server, url) = common::serve_binary(&database_url, &admin);

    let caller = register(&url, &["--poll", "--name", "caller"]).await;
    let worker = register(&url, &["--poll", "--name", "worker"]).await;
    assert!(caller.token.starts_with("ldg_"));
    let pushed = register(&url, &["--url", "http://127.0.0.1:9/agent"]).await;
    let chosen = Uuid::new_v4();
    let named = register(&url, &["--poll", "--id", &chosen.to_string()]).await;
    assert_eq!(named.id, chosen);

    // The registrations are what they say.
    let http = reqwest::Client::new();
    for (id, mode) in [(worker.id, "poll"), (pushed.id, "push")] {
        let found: Value = http
            .get(format!("{url}/registry/discover/{id}"))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("discover")
            .json()
            .await
            .expect("JSON");
        assert_eq!(found["delivery_mode"], mode, "{found}");
    }

    let task = "Summarise the incident report";
    let delegated = ledger(
        &url,
        Some(&caller.token),
        &["delegate", "--to", &worker.id.to_string(), "--task", task],
    )
    .await
    .ok("delegate");
    let delegation: Uuid = delegated
        .stdout
        .trim()
        .parse()
        .expect("delegate prints an id");

    // The worker's inbox, once the dispatcher delivered it.
    let inbox = ledger(&url, Some(&worker.token), &["inbox", "--wait"])
        .await
        .ok("inbox");
    let line = inbox
        .stdout
        .lines()
        .find(|l| l.contains(&delegation.to_string()))
        .unwrap_or_else(|| panic!("the inbox lists the delegation: {}", inbox.stdout));
    assert!(
        line.contains(task) && line.contains(&caller.id.to_string()),
        "{line}"
    );
    let rows: Value = serde_json::from_str(
        &ledger(&url, Some(&worker.token), &["inbox", "--json"])
            .await
            .ok("inbox --json")
            .stdout,
    )
    .expect("inbox --json prints JSON");
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    // The caller has sent work, not received any.
    let empty = ledger(&url, Some(&caller.token), &["inbox"])
        .await
        .ok("caller's inbox");
    assert_eq!(empty.stdout.trim(), "", "{}", empty.stdout);

    // Before the worker reports: dispatched (delivered to the inbox).
    let status = ledger(
        &url,
        Some(&caller.token),
        &["status", &delegation.to_string(), "--json"],
    )
    .await
    .ok("status");
    let body: Value = serde_json::from_str(&status.stdout).expect("status --json is JSON");
    assert_eq!(body["status"], "dispatched", "{body}");

    let answer = http
        .post(format!(
            "{url}/workspaces/{}/delegations/{delegation}/update",
            worker.id
        ))
        .bearer_auth(&worker.token)
        .json(&json!({ "status": "completed", "response_preview": "three causes" }))
        .send()
        .await
        .expect("update");
    assert_eq!(answer.status(), 200);

    // The caller sees it completed, in words and as JSON; so does the
    // worker, and the admin naming a party.
    let status = ledger(
        &url,
        Some(&caller.token),
        &["status", &delegation.to_string()],
    )
    .await
    .ok("status");
    let field = |name: &str| {
        status
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(str::trim))
            .unwrap_or_else(|| panic!("status shows {name}: {}", status.stdout))
            .to_string()
    };
    assert_eq!(field("status"), "completed");
    assert_eq!(field("result"), "three causes");
    assert_eq!(field("to"), worker.id.to_string());
    assert_eq!(field("history"), "pending → dispatched → completed");
    ledger(
        &url,
        Some(&worker.token),
        &["status", &delegation.to_string()],
    )
    .await
    .ok("the worker's status");
    let as_admin = ledger(
        &url,
        Some(&admin),
        &[
            "status",
            &delegation.to_string(),
            "--workspace",
            &caller.id.to_string(),
        ],
    )
    .await
    .ok("the admin's status");
    assert!(as_admin.stdout.contains("completed"), "{}", as_admin.stdout);
    // The admin belongs to no workspace: it must name one.
    ledger(&url, Some(&admin), &["status", &delegation.to_string()])
        .await
        .failed_saying("status as the admin", "name one with --workspace");

    // The caller's feed in words: one line per message, position first.
    let tail = ledger(
        &url,
        Some(&caller.token),
        &["tail", "--from", "0", "--limit", "3"],
    )
    .await
    .ok("tail");
    let lines: Vec<&str> = tail.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", tail.stdout);
    let mut last = 0;
    for (line, kind) in lines.iter().zip([
        "DELEGATION_SENT",
        "DELEGATION_STATUS",
        "DELEGATION_COMPLETE",
    ]) {
        let position: i64 = line
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("a line starts with its position: {line}"));
        assert!(position > last, "{}", tail.stdout);
        last = position;
        assert!(
            line.contains(kind) && line.contains(&delegation.to_string()),
            "{line}"
        );
    }
    assert!(lines[2].contains("three causes"), "{}", lines[2]);

    // A push registration needs its url; clap says so before any request.
    let missing = ledger(&url, None, &["register"]).await;
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);

    let _ = server.kill();
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_says_to_check_it() {
    let database_url = common::fresh_database_url().await;
    let admin = admin_token();
    let (mut server, url) = common::serve_binary(&database_url, &admin);
    let worker = register(&url, &["--poll"]).await;
    let bad = Some("ldg_not-a-token");
    let refused = "the token was refused: check LEDGER_TOKEN";
    let id = Uuid::new_v4().to_string();
    let worker_id = worker.id.to_string();
    for args in [
        vec!["status", id.as_str()],
        vec!["status", id.as_str(), "--workspace", worker_id.as_str()],
        vec!["inbox"],
        vec!["delegate", "--to", worker_id.as_str(), "--task", "t"],
        vec!["tail"],
    ] {
        ledger(&url, bad, &args)
            .await
            .failed_saying(&format!("{args:?}"), refused);
    }
    // No token at all is said as plainly.
    ledger(&url, None, &["inbox"])
        .await
        .failed_saying("inbox without a token", "no token: set LEDGER_TOKEN");
    let _ = server.kill();
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_delegation_is_not_found() {
    let database_url = common::fresh_database_url().await;
    let admin = admin_token();
    let (mut server, url) = common::serve_binary(&database_url, &admin);
    let worker = register(&url, &["--poll"]).await;
    let unknown = Uuid::new_v4();
    let ran = ledger(&url, Some(&worker.token), &["status", &unknown.to_string()]).await;
    ran.failed_saying("status of an unknown delegation", "not found");
    assert!(ran.stderr.contains(&unknown.to_string()), "{}", ran.stderr);
    // Delegating to a workspace that does not exist: the same.
    ledger(
        &url,
        Some(&worker.token),
        &[
            "delegate",
            "--to",
            &Uuid::new_v4().to_string(),
            "--task",
            "t",
        ],
    )
    .await
    .failed_saying("delegate to nobody", "not found");
    let _ = server.kill();
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_named() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let says = format!("cannot reach {url}: is `ledger serve` running?");
    let id = Uuid::new_v4().to_string();
    for (token, args) in [
        (None, vec!["register", "--poll"]),
        (Some("ldg_x"), vec!["status", id.as_str()]),
        (Some("ldg_x"), vec!["inbox", "--workspace", id.as_str()]),
        (
            Some("ldg_x"),
            vec![
                "delegate",
                "--from",
                id.as_str(),
                "--to",
                id.as_str(),
                "--task",
                "t",
            ],
        ),
        (Some("ldg_x"), vec!["tail"]),
    ] {
        ledger(&url, token, &args)
            .await
            .failed_saying(&format!("{args:?}"), &says);
    }
}

/// The lines `ledger tail --json` printed, read as they come.
struct Tail {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<Value>,
}

impl Tail {
    fn start(url: &str, token: &str, from: i64) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["tail", "--json", "--from", &from.to_string()])
            .env("LEDGER_URL", url)
            .env("LEDGER_TOKEN", token)
            .env_remove("LEDGER_WORKSPACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start ledger tail");
        let stdout = child.stdout.take().expect("stdout");
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        }
    }

    /// Read lines until `done` holds for what was seen (panics after a
    /// minute, or when tail ends).
    async fn until(&mut self, what: &str, done: impl Fn(&[Value]) -> bool) {
        let read = async {
            while !done(&self.seen) {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .expect("read tail's output")
                    .unwrap_or_else(|| panic!("tail ended before {what}"));
                let message: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("tail --json prints JSON lines: {line}"));
                self.seen.push(message);
            }
        };
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; seen {:?}", self.seen));
    }
}

/// Has the feed shown `kind` for `delegation`?
fn shows(seen: &[Value], delegation: Uuid, kind: &str) -> bool {
    let id = delegation.to_string();
    seen.iter()
        .any(|m| m["type"] == kind && m["delegation_id"].as_str() == Some(id.as_str()))
}

/// Both messages a delegation to a poll worker makes before it reports.
fn delivered(seen: &[Value], delegations: &[Uuid]) -> bool {
    delegations.iter().all(|d| {
        shows(seen, *d, "DELEGATION_SENT")
            && seen.iter().any(|m| {
                m["type"] == "DELEGATION_STATUS"
                    && m["delegation_id"].as_str() == Some(d.to_string().as_str())
                    && m["payload"]["status"] == "dispatched"
            })
    })
}

async fn delegate_n(url: &str, from: &Registered, to: Uuid, n: usize) -> Vec<Uuid> {
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let answer: Value = http
            .post(format!("{url}/workspaces/{}/delegate", from.id))
            .bearer_auth(&from.token)
            .json(&json!({ "target_id": to, "task": format!("task {i}") }))
            .send()
            .await
            .expect("delegate")
            .json()
            .await
            .expect("JSON");
        ids.push(
            answer["delegation_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("a delegation id: {answer}")),
        );
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_resumes_across_server_restarts_without_gaps_or_duplicates() {
    let database_url = common::fresh_database_url().await;
    let admin = admin_token();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (mut server, url) = common::serve_binary_at(&database_url, &admin, port, &[]);
    let caller = register(&url, &["--poll", "--name", "caller"]).await;
    let worker = register(&url, &["--poll", "--name", "worker"]).await;

    let first = delegate_n(&url, &caller, worker.id, 3).await;
    let mut tail = Tail::start(&url, &admin, 0);
    tail.until("the first delegations", |seen| delivered(seen, &first))
        .await;

    // Each batch's messages are all there is to see, so the last one seen
    // is where tail must resume.
    let last_position = |tail: &Tail| {
        tail.seen
            .last()
            .and_then(|m| m["position"].as_i64())
            .expect("a position")
    };
    let before_stop = last_position(&tail);

    // A graceful stop: the server closes the feed with 1001.
    let pid = i32::try_from(server.id()).expect("a pid");
    // SAFETY: signalling a child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let stopped = server.wait().expect("wait for the server");
    assert!(
        stopped.success(),
        "a SIGTERM'd server exits cleanly: {stopped}"
    );
    let (restarted, _) = common::serve_binary_at(&database_url, &admin, port, &[]);
    server = restarted;
    let second = delegate_n(&url, &caller, worker.id, 3).await;
    tail.until("the delegations after a restart", |seen| {
        delivered(seen, &second)
    })
    .await;

    let before_kill = last_position(&tail);

    // A killed server: the connection just drops.
    server.kill().expect("kill the server");
    server.wait().expect("wait for the server");
    let (restarted, _) = common::serve_binary_at(&database_url, &admin, port, &[]);
    server = restarted;
    let third = delegate_n(&url, &caller, worker.id, 3).await;
    tail.until("the delegations after a kill", |seen| {
        delivered(seen, &third)
    })
    .await;

    // No duplicate: positions only grow.
    let positions: Vec<i64> = tail
        .seen
        .iter()
        .map(|m| m["position"].as_i64().expect("a position"))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions strictly increase: {positions:?}"
    );
    // No gap: a fresh replay of as many messages is exactly what the
    // surviving tail printed.
    let limit = tail.seen.len().to_string();
    let replay = ledger(
        &url,
        Some(&admin),
        &["tail", "--json", "--from", "0", "--limit", &limit],
    )
    .await
    .ok("a fresh replay");
    let replayed: Vec<Value> = replay
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(
        replayed, tail.seen,
        "the resumed feed equals a fresh replay"
    );

    // Ctrl-C ends it cleanly.
    let pid = i32::try_from(tail.child.id().expect("tail runs")).expect("a pid");
    // SAFETY: signalling a child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let output = tokio::time::timeout(Duration::from_secs(30), tail.child.wait_with_output())
        .await
        .expect("tail should exit on Ctrl-C")
        .expect("wait for tail");
    assert_eq!(output.status.code(), Some(0), "Ctrl-C exits 0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("going away (1001"),
        "the graceful stop was a 1001 close: {stderr}"
    );
    for position in [before_stop, before_kill] {
        assert!(
            stderr.contains(&format!("reconnecting from position {position}\n")),
            "tail resumed after the last position it printed ({position}): {stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");

    let _ = server.kill();
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_prints_progress_lines_without_a_terminal() {
    let app = common::spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    app.record(&a, b.id, "one").await;
    common::settle(&app.pool).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["audit", "verify"])
        .env("DATABASE_URL", &app.database_url)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .await
        .expect("run ledger audit verify");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout} {stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("the report is JSON");
    assert_eq!(report["ok"], true, "{report}");
    let checked = report["checked"].as_i64().expect("checked");
    assert!(checked > 0);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("verified "))
        .unwrap_or_else(|| panic!("a progress line on stderr: {stderr}"));
    assert!(
        line.starts_with(&format!("verified {checked}/{checked} entries, "))
            && line.ends_with("/s"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn export_writes_the_log_as_ndjson_with_progress_on_stderr() {
    let app = common::spawn_app().await;
    let a = app.register().await;
    let b = app.register().await;
    for n in 0..5 {
        app.record(&a, b.id, &format!("task {n}")).await;
    }
    let c = app.register().await;
    common::settle(&app.pool).await;
    let head: i64 = sqlx::query_scalar("select max(position) from ledger_log")
        .fetch_one(&app.pool)
        .await
        .expect("head");

    let ran = ledger(&app.base, Some(&app.admin_token), &["export"])
        .await
        .ok("export");
    let entries: Vec<Value> = ran
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON entry a line"))
        .collect();
    let positions: Vec<i64> = entries
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert_eq!(
        positions,
        (1..=head).collect::<Vec<_>>(),
        "the whole log, in order"
    );
    assert!(
        ran.stderr
            .contains(&format!("exported up to position {head}/{head} positions")),
        "a progress line: {}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains(&format!("exported {head} entries")),
        "{}",
        ran.stderr
    );

    // One workspace's part, from a cursor.
    let ran = ledger(
        &app.base,
        Some(&app.admin_token),
        &["export", "--workspace", &c.id.to_string(), "--after", "0"],
    )
    .await
    .ok("export of one workspace");
    let own: Vec<Value> = ran
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    assert_eq!(own.len(), 1, "c only registered: {own:?}");
    assert_eq!(own[0]["aggregate_id"], c.id.to_string());

    // A workspace token may not read the audit log.
    let ran = ledger(&app.base, Some(&a.token), &["export"]).await;
    ran.failed_saying("export with a workspace token", "403");
}
