//! The README's Quickstart, run as written: its ```sh blocks (between the
//! `## Quickstart` heading and the next `## `), in order, in one
//! `bash -euo pipefail`, against the real `ledger serve` binary with the
//! built `ledger` first on `PATH` — so the first five minutes of a new user
//! cannot silently rot. Each block's output is checked for what the text
//! promises: a registration's exports, a delegation id, the task in the
//! inbox, the completed status, the feed's messages, a verified chain.

mod common;

use std::path::Path;
use std::time::Duration;

use uuid::Uuid;

/// The ```sh blocks of the Quickstart section (other info strings, such as
/// `sh no-run`, are not run).
fn quickstart_blocks(readme: &str) -> Vec<String> {
    let mut in_section = false;
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        if current.is_none() && line.starts_with("## ") {
            in_section = line.trim() == "## Quickstart";
            continue;
        }
        if !in_section {
            continue;
        }
        match &mut current {
            None if line.trim_end() == "```sh" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => {
                blocks.push(current.take().unwrap_or_default());
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

#[test]
fn blocks_are_found_between_the_heading_and_the_next_section() {
    let readme = "## Before\n```sh\nno\n```\n## Quickstart\ntext\n```sh\na\nb\n```\n\
                  ```sh no-run\nskip\n```\n```sh\nc\n```\n## After\n```sh\nno\n```\n";
    assert_eq!(quickstart_blocks(readme), vec!["a\nb\n", "c\n"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_quickstart_runs_verbatim() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let blocks = quickstart_blocks(&readme);
    assert!(
        blocks.len() >= 5,
        "the Quickstart should have its ```sh blocks, found {}",
        blocks.len()
    );

    let database_url = common::fresh_database_url().await;
    let admin_token = format!("admin-{}", Uuid::new_v4().simple());
    let (mut server, base) = common::serve_binary(&database_url, &admin_token);

    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut script = String::new();
    for (i, block) in blocks.iter().enumerate() {
        script.push_str(&format!("printf '\\n@@ block {i} @@\\n'\n"));
        script.push_str(block);
    }
    let ledger = Path::new(env!("CARGO_BIN_EXE_ledger"));
    let bin_dir = ledger.parent().expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("LEDGER_URL", &base)
        .env("LEDGER_ADMIN_TOKEN", &admin_token)
        .env_remove("LEDGER_TOKEN")
        .env_remove("LEDGER_WORKSPACE")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the quickstart should finish within 3 minutes")
        .expect("bash should run");
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown with --nocapture: what a user sees.
    println!("{stdout}\n--- stderr\n{stderr}");
    assert!(
        output.status.success(),
        "the quickstart failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );

    // Each block's output, by its marker.
    let outputs: Vec<&str> = (0..blocks.len())
        .map(|i| {
            let marker = format!("@@ block {i} @@\n");
            let start = stdout
                .find(&marker)
                .unwrap_or_else(|| panic!("block {i} should have run:\n{stdout}"))
                + marker.len();
            let end = stdout[start..]
                .find("\n@@ block ")
                .map_or(stdout.len(), |e| start + e);
            &stdout[start..end]
        })
        .collect();

    let mut delegation: Option<String> = None;
    let mut checked = Vec::new();
    for (block, out) in blocks.iter().zip(&outputs) {
        let context = format!("block:\n{block}\noutput:\n{out}\n--- stderr\n{stderr}");
        if block.contains("ledger register") {
            assert!(out.contains("export LEDGER_WORKSPACE="), "{context}");
            assert!(out.contains("export LEDGER_TOKEN=ldg_"), "{context}");
            checked.push("register");
        }
        if block.contains("ledger delegate") {
            let id = out
                .lines()
                .find_map(|line| Uuid::parse_str(line.trim()).ok())
                .unwrap_or_else(|| panic!("delegate should print an id; {context}"));
            delegation = Some(id.to_string());
            checked.push("delegate");
        }
        if block.contains("ledger inbox") {
            let id = delegation.as_deref().expect("delegated before the inbox");
            assert!(out.contains(id), "the task is in the inbox; {context}");
            checked.push("inbox");
        }
        if block.contains("/update") {
            assert!(out.contains(r#""status":"completed""#), "{context}");
            checked.push("complete");
        }
        if block.contains("ledger status") {
            assert!(
                out.lines()
                    .any(|l| l.trim_start().starts_with("status") && l.contains("completed")),
                "the caller sees it completed; {context}"
            );
            checked.push("status");
        }
        if block.contains("/activity") {
            let id = delegation
                .as_deref()
                .expect("delegated before the activity");
            assert!(out.contains(id), "{context}");
            checked.push("activity");
        }
        if block.contains("ledger tail") {
            let id = delegation.as_deref().expect("delegated before the tail");
            for kind in [
                "DELEGATION_SENT",
                "DELEGATION_STATUS",
                "DELEGATION_COMPLETE",
            ] {
                assert!(
                    out.lines().any(|l| l.contains(kind) && l.contains(id)),
                    "the feed shows {kind}; {context}"
                );
            }
            checked.push("tail");
        }
        if block.contains("/audit/verify") || block.contains("ledger audit verify") {
            assert!(
                out.contains(r#""ok":true"#),
                "the chain verifies; {context}"
            );
            checked.push("verify");
        }
    }
    for step in [
        "register", "delegate", "inbox", "complete", "status", "activity", "tail", "verify",
    ] {
        assert!(
            checked.contains(&step),
            "the quickstart should show the {step} step:\n{stdout}"
        );
    }
}
