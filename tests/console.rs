//! The web console (`GET /console`) in a real browser: headless Chromium
//! driven over WebDriver (see `common::browser`), against the service on a
//! real PostgreSQL, with delegations made through the REST API.
//!
//! Without Chromium and chromedriver installed the browser tests print one
//! line and pass; `LEDGER_REQUIRE_BROWSER=1` (as `.ci/run` sets) makes that
//! a failure. Screenshots of the board and the detail view are saved under
//! `target/console-screenshots/` as evidence.

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::fake_agent::{FakeAgent, Reply};
use common::{TestApp, Workspace};
use futures::future::join_all;
use serde_json::{json, Value};
use uuid::Uuid;

/// Long enough for a loaded two-core machine; a condition met earlier
/// returns at once.
const WAIT: Duration = Duration::from_secs(30);

/// Open the console signed in with `token` through the fragment, and wait
/// until its feed has caught up.
async fn open_signed_in(browser: &Browser, app: &TestApp, token: &str) {
    browser
        .goto(&app.url(&format!("/console#token={token}")))
        .await;
    wait_live(browser).await;
}

async fn wait_live(browser: &Browser) {
    browser
        .wait_until(
            "the board to be live",
            WAIT,
            "return !document.getElementById('app').hidden
               && document.getElementById('feed-state').dataset.state === 'live';",
            vec![],
        )
        .await;
}

/// Every script error or policy violation the page reported.
async fn assert_no_problems(browser: &Browser) {
    let problems = browser.problems().await;
    assert!(problems.is_empty(), "the page reported: {problems:?}");
}

async fn card_text(browser: &Browser, delegation: Uuid) -> String {
    browser
        .js(
            "return document.querySelector(`.card[data-delegation-id='${arguments[0]}']`).textContent;",
            vec![json!(delegation)],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn update(app: &TestApp, who: &Workspace, delegation: Uuid, body: Value) {
    let (status, answer) = app.update(who, delegation, body).await;
    assert_eq!(status, 200, "update failed: {answer}");
}

#[tokio::test]
async fn a_workspace_signs_in_with_the_form_and_sees_its_cards_finish_live() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = common::spawn_app().await;
    let (a, b, c) = (
        app.register().await,
        app.register().await,
        app.register().await,
    );
    let elsewhere = app.record(&c, b.id, "not for a's eyes").await;

    browser.goto(&app.url("/console")).await;
    browser
        .wait_until(
            "the sign-in form",
            WAIT,
            "return !document.getElementById('sign-in').hidden;",
            vec![],
        )
        .await;
    browser.type_into("#token-input", "not-a-token").await;
    browser.click("#sign-in-button").await;
    browser
        .wait_until(
            "a refused token to be said so",
            WAIT,
            "return document.getElementById('sign-in-error').textContent.includes('not valid');",
            vec![],
        )
        .await;
    browser
        .js("document.getElementById('token-input').value = '';", vec![])
        .await;
    browser.type_into("#token-input", &a.token).await;
    browser.click("#sign-in-button").await;
    wait_live(&browser).await;
    let who = browser
        .js("return document.getElementById('who').textContent;", vec![])
        .await;
    assert!(
        who.as_str()
            .is_some_and(|w| w.contains(&a.id.to_string()[..8])),
        "{who}"
    );

    // Made through REST while the board is open: they appear and move live.
    let report = app
        .record(&a, b.id, "summarise the quarterly report for the board")
        .await;
    let hostile_task = "<img src=x onerror=\"document.title='pwned'\"> translate this";
    let hostile = app.record(&a, b.id, hostile_task).await;
    let incoming = app.record(&b, a.id, "review a's pull request").await;
    for id in [report, hostile, incoming] {
        browser.wait_card(id, "dispatched").await;
        assert_eq!(app.status_of(id).await.as_deref(), Some("dispatched"));
    }
    update(&app, &a, report, json!({ "status": "in_progress" })).await;
    browser.wait_card(report, "in_progress").await;
    update(
        &app,
        &a,
        report,
        json!({ "status": "completed", "response_preview": "Revenue grew 12%; costs flat." }),
    )
    .await;
    update(
        &app,
        &b,
        hostile,
        json!({ "status": "failed", "error": "<b>agent</b> refused: out of scope" }),
    )
    .await;
    update(&app, &b, incoming, json!({ "status": "received" })).await;
    browser.wait_card(report, "completed").await;
    browser.wait_card(hostile, "failed").await;
    browser.wait_card(incoming, "received").await;

    // Untrusted text is text: no element made from it, nothing run.
    let hostile_text = card_text(&browser, hostile).await;
    assert!(hostile_text.contains(hostile_task), "{hostile_text}");
    assert!(
        hostile_text.contains("<b>agent</b> refused"),
        "{hostile_text}"
    );
    let injected = browser
        .js(
            "return document.querySelectorAll('#board img, #board b').length;",
            vec![],
        )
        .await;
    assert_eq!(injected, json!(0));
    assert_ne!(browser.js("return document.title;", vec![]).await, "pwned");
    assert!(card_text(&browser, report)
        .await
        .contains("Revenue grew 12%"));
    // Another workspace's delegation is not on a's board.
    let foreign = browser
        .js(
            "return !!document.querySelector(`[data-delegation-id='${arguments[0]}']`);",
            vec![json!(elsewhere)],
        )
        .await;
    assert_eq!(foreign, json!(false));
    let shot = browser.screenshot("board").await;
    println!("board screenshot: {}", shot.display());

    // The detail: task, parties, result, the history with its times.
    browser
        .click(&format!(".card[data-delegation-id='{report}']"))
        .await;
    browser
        .wait_until(
            "the detail of the completed delegation",
            WAIT,
            "const d = document.getElementById('detail');
             return !d.hidden && d.dataset.delegationId === arguments[0]
               && d.dataset.status === 'completed'
               && d.querySelectorAll('.history li').length === 3;",
            vec![json!(report)],
        )
        .await;
    let detail = browser
        .js(
            "const d = document.getElementById('detail');
             return { text: d.textContent,
                      history: [...d.querySelectorAll('.history li')].map(li => li.dataset.status),
                      times: [...d.querySelectorAll('.history time')].map(t => t.getAttribute('datetime')) };",
            vec![],
        )
        .await;
    let text = detail["text"].as_str().unwrap_or_default();
    for expected in [
        "summarise the quarterly report for the board",
        "Revenue grew 12%; costs flat.",
        &a.id.to_string(),
        &b.id.to_string(),
    ] {
        assert!(text.contains(expected), "detail lacks {expected}: {text}");
    }
    assert_eq!(
        detail["history"],
        json!(["dispatched", "in_progress", "completed"])
    );
    assert!(
        detail["times"]
            .as_array()
            .is_some_and(|t| t.iter().all(|t| t.as_str().is_some_and(|t| t.len() > 10))),
        "{detail}"
    );
    let shot = browser.screenshot("detail").await;
    println!("detail screenshot: {}", shot.display());
    assert_eq!(
        browser
            .js(
                "return !!document.getElementById('cancel-delegation');",
                vec![]
            )
            .await,
        json!(false),
        "a finished delegation offers no cancel"
    );
    browser.click("#detail .close").await;

    // Its caller withdraws a live delegation from the detail; the card
    // moves to canceled with the feed. The target is offered no such button.
    let withdrawn = app.record(&a, b.id, "no longer needed").await;
    browser.wait_card(withdrawn, "dispatched").await;
    browser
        .click(&format!(".card[data-delegation-id='{incoming}']"))
        .await;
    browser
        .wait_until(
            "the detail of a delegation a received",
            WAIT,
            "const d = document.getElementById('detail');
             return !d.hidden && d.dataset.delegationId === arguments[0] && d.dataset.status === 'received';",
            vec![json!(incoming)],
        )
        .await;
    assert_eq!(
        browser
            .js(
                "return !!document.getElementById('cancel-delegation');",
                vec![]
            )
            .await,
        json!(false),
        "only the caller may cancel"
    );
    browser.click("#detail .close").await;
    browser
        .click(&format!(".card[data-delegation-id='{withdrawn}']"))
        .await;
    browser
        .wait_until(
            "the cancel button of a live delegation",
            WAIT,
            "const d = document.getElementById('detail');
             return !d.hidden && d.dataset.delegationId === arguments[0]
               && !!document.getElementById('cancel-delegation');",
            vec![json!(withdrawn)],
        )
        .await;
    browser.click("#cancel-delegation").await;
    browser.wait_card(withdrawn, "canceled").await;
    app.wait_status(withdrawn, "canceled").await;
    browser
        .wait_until(
            "the detail to show it canceled, without the button",
            WAIT,
            "const d = document.getElementById('detail');
             return d.dataset.status === 'canceled' && !document.getElementById('cancel-delegation');",
            vec![],
        )
        .await;
    browser.click("#detail .close").await;

    // Activity: newest first; a row made later arrives on top (since_id).
    browser.click("#tab-activity").await;
    browser
        .wait_until(
            "the activity rows",
            WAIT,
            "return document.querySelectorAll('#activity-table tbody tr').length >= 3;",
            vec![],
        )
        .await;
    let (_, rows) = app
        .get(
            &format!("/workspaces/{}/activity?limit=100", a.id),
            &a.token,
        )
        .await;
    let shown = browser
        .js(
            "return [...document.querySelectorAll('#activity-table tbody tr')].map(r => r.dataset.activityId);",
            vec![],
        )
        .await;
    let expected: Vec<Value> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(shown, json!(expected), "activity newest first, as the API");
    let later = app
        .record(&a, b.id, "one more, after the page loaded")
        .await;
    let (_, newest) = app
        .get(&format!("/workspaces/{}/activity?limit=1", a.id), &a.token)
        .await;
    browser
        .wait_until(
            "the new activity row on top",
            WAIT,
            "const rows = [...document.querySelectorAll('#activity-table tbody tr')];
             return rows.length === arguments[1] + 1 && rows[0].dataset.activityId === arguments[0];",
            vec![newest[0]["id"].clone(), json!(expected.len())],
        )
        .await;
    browser.wait_card(later, "dispatched").await;
    // Filter by type.
    browser
        .js(
            "const s = document.getElementById('activity-type'); s.value = 'delegation';
             s.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await;
    browser
        .wait_until(
            "only delegation rows",
            WAIT,
            "const rows = [...document.querySelectorAll('#activity-table tbody tr')];
             return rows.length > 0 && rows.every(r => r.children[1].textContent === 'delegation');",
            vec![],
        )
        .await;

    // Queue: a's own queue, empty.
    browser.click("#tab-queue").await;
    browser
        .wait_until(
            "a's queue",
            WAIT,
            "const q = document.querySelector(`.queue[data-target='${arguments[0]}']`);
             return !!q && q.dataset.depth === '0';",
            vec![json!(a.id)],
        )
        .await;
    // The audit tab is the admin's.
    let audit_tab = browser
        .js(
            "return document.getElementById('tab-audit').hidden;",
            vec![],
        )
        .await;
    assert_eq!(audit_tab, json!(true));
    assert_no_problems(&browser).await;
    browser.close().await;
}

#[tokio::test]
async fn the_token_in_the_fragment_signs_in_and_stays_in_the_tab_only() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = common::spawn_app().await;
    let (a, b) = (app.register().await, app.register().await);
    let first = app.record(&a, b.id, "made before the page").await;

    open_signed_in(&browser, &app, &a.token).await;
    browser.wait_card(first, "dispatched").await;
    let storage = browser
        .js(
            "return { href: location.href, hash: location.hash,
                      session: sessionStorage.getItem('ledger-console-token'),
                      local: localStorage.length, cookies: document.cookie };",
            vec![],
        )
        .await;
    assert_eq!(storage["hash"], "", "the fragment is removed: {storage}");
    assert!(
        !storage["href"]
            .as_str()
            .unwrap_or_default()
            .contains(&a.token),
        "{storage}"
    );
    assert_eq!(storage["session"], json!(a.token));
    assert_eq!(storage["local"], json!(0));
    assert_eq!(storage["cookies"], json!(""));

    // A reload in the same tab stays signed in; the board replays again.
    browser.goto(&app.url("/console")).await;
    wait_live(&browser).await;
    browser.wait_card(first, "dispatched").await;
    update(&app, &a, first, json!({ "status": "completed" })).await;
    browser.wait_card(first, "completed").await;

    // Signing out forgets the token.
    browser.click("#sign-out").await;
    browser
        .wait_until(
            "the sign-in form after signing out",
            WAIT,
            "return !document.getElementById('sign-in').hidden
               && sessionStorage.getItem('ledger-console-token') === null;",
            vec![],
        )
        .await;
    // A token in the fragment that matches nothing is refused.
    browser
        .goto(&app.url("/console#token=ldg_not_a_real_token"))
        .await;
    browser
        .wait_until(
            "the refusal of a bad fragment token",
            WAIT,
            "return !document.getElementById('sign-in').hidden
               && document.getElementById('sign-in-error').textContent.includes('not valid')
               && location.hash === '';",
            vec![],
        )
        .await;
    assert_no_problems(&browser).await;
    browser.close().await;
}

#[tokio::test]
async fn the_admin_sees_every_workspace_travels_in_time_and_verifies_the_chain() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = common::spawn_app().await;
    let (a, b, c) = (
        app.register().await,
        app.register().await,
        app.register().await,
    );
    let from_a = app
        .record(&a, b.id, "compile the release notes for 2.0")
        .await;
    let from_c = app.record(&c, b.id, "answer the customer email").await;
    update(&app, &b, from_a, json!({ "status": "received" })).await;
    update(&app, &b, from_a, json!({ "status": "in_progress" })).await;
    update(
        &app,
        &b,
        from_a,
        json!({ "status": "completed", "response_preview": "Release notes drafted." }),
    )
    .await;

    open_signed_in(&browser, &app, &app.admin_token).await;
    browser.wait_card(from_a, "completed").await;
    browser.wait_card(from_c, "dispatched").await;

    // The workspace selector narrows the board to one workspace.
    browser
        .js(
            "const s = document.getElementById('workspace-select'); s.value = arguments[0];
             s.dispatchEvent(new Event('change'));",
            vec![json!(c.id)],
        )
        .await;
    browser
        .wait_until(
            "only c's delegation on the board",
            WAIT,
            "const cards = [...document.querySelectorAll('.card')].map(c => c.dataset.delegationId);
             return cards.length === 1 && cards[0] === arguments[0];",
            vec![json!(from_c)],
        )
        .await;
    browser
        .js(
            "const s = document.getElementById('workspace-select'); s.value = '';
             s.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await;
    browser.wait_card(from_a, "completed").await;

    // Time travel over the audit stream: each position's folded state.
    browser
        .click(&format!(".card[data-delegation-id='{from_a}']"))
        .await;
    browser
        .wait_until(
            "the time-travel slider at the last event",
            WAIT,
            "const s = document.getElementById('time-travel');
             const state = document.querySelector('.travel-state');
             return !!s && s.max === '3' && state.dataset.stateStatus === 'completed';",
            vec![],
        )
        .await;
    let (_, stream) = app
        .get(
            &format!("/audit/streams/delegation/{from_a}"),
            &app.admin_token,
        )
        .await;
    let positions: Vec<i64> = stream["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["position"].as_i64())
        .collect();
    for (index, status) in ["dispatched", "received", "in_progress", "completed"]
        .iter()
        .enumerate()
    {
        browser
            .js(
                "const s = document.getElementById('time-travel'); s.value = arguments[0];
                 s.dispatchEvent(new Event('input'));",
                vec![json!(index)],
            )
            .await;
        browser
            .wait_until(
                &format!("the state as of event {index} to be {status}"),
                WAIT,
                "const state = document.querySelector('.travel-state');
                 return state.dataset.asOf === String(arguments[0])
                   && state.dataset.stateStatus === arguments[1];",
                vec![json!(positions[index]), json!(status)],
            )
            .await;
        if index == 1 {
            let shot = browser.screenshot("detail-time-travel").await;
            println!("time-travel screenshot: {}", shot.display());
        }
    }
    browser.click("#detail .close").await;

    // Audit: the head, and Verify says ok.
    browser.click("#tab-audit").await;
    let (_, ready) = app.get("/readyz", "").await;
    browser
        .wait_until(
            "the log head",
            WAIT,
            "const h = document.getElementById('audit-head');
             return h.dataset.position === String(arguments[0]) && /[0-9a-f]{64}/.test(h.textContent);",
            vec![ready["head"].clone()],
        )
        .await;
    browser.click("#verify").await;
    browser
        .wait_until(
            "verify to say ok",
            WAIT,
            "const r = document.getElementById('verify-result');
             return r.dataset.ok === 'true' && r.querySelector('.verdict').textContent === 'ok';",
            vec![],
        )
        .await;
    let shot = browser.screenshot("audit").await;
    println!("audit screenshot: {}", shot.display());
    assert_no_problems(&browser).await;
    browser.close().await;
}

/// A feed buffer of one message: any burst overflows it, the server closes
/// the console's websocket with 4008, and the console says so, resumes
/// from its last position and ends with every card right.
#[tokio::test]
async fn a_slow_consumer_is_told_and_the_board_catches_up() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = common::spawn_app_with(common::fresh_database_url().await, |config| {
        config.hub.buffer = 1;
    })
    .await;
    let (a, b) = (app.register().await, app.register().await);
    open_signed_in(&browser, &app, &a.token).await;

    let mut expected: Vec<(Uuid, &str)> = Vec::new();
    for round in 0..5 {
        // A burst: 30 delegations recorded and finished concurrently.
        let tasks: Vec<String> = (0..30).map(|n| format!("burst {round}/{n}")).collect();
        let made = join_all(tasks.iter().map(|task| app.record(&a, b.id, task))).await;
        join_all(made.iter().enumerate().map(|(n, id)| {
            let body = if n % 3 == 0 {
                json!({ "status": "failed", "error": "burst failure" })
            } else {
                json!({ "status": "completed", "response_preview": "done" })
            };
            let who = if n % 2 == 0 { &a } else { &b };
            update(&app, who, *id, body)
        }))
        .await;
        for (n, id) in made.into_iter().enumerate() {
            expected.push((id, if n % 3 == 0 { "failed" } else { "completed" }));
        }
        // Wait until the console either was told it fell behind or shows
        // every card right.
        browser
            .wait_until(
                "a 4008 notice or a board that caught up",
                WAIT,
                "const notice = document.getElementById('notice');
                 if (notice.dataset.closeCode === '4008') return true;
                 return arguments[0].every(([id, status]) =>
                   document.querySelector(`.card[data-delegation-id='${id}']`)?.dataset.status === status);",
                vec![json!(expected)],
            )
            .await;
        let told = browser
            .js(
                "return document.getElementById('notice').dataset.closeCode === '4008';",
                vec![],
            )
            .await;
        if told == json!(true) {
            break;
        }
    }
    browser
        .wait_until(
            "the notice that the feed resumed after 4008",
            WAIT,
            "const n = document.getElementById('notice');
             return !n.hidden && n.dataset.closeCode === '4008' && n.dataset.kind === 'resumed'
               && n.textContent.includes('4008, slow consumer')
               && n.textContent.includes('last position delivered');",
            vec![],
        )
        .await;
    let shot = browser.screenshot("slow-consumer").await;
    println!("slow-consumer screenshot: {}", shot.display());
    // Every card in its column; the counter at the feed's last position.
    browser
        .js(
            "document.querySelectorAll('.column .more').forEach(b => { for (let i = 0; i < 5; i++) b.click(); });",
            vec![],
        )
        .await;
    for (id, status) in &expected {
        browser.wait_card(*id, status).await;
        assert_eq!(app.status_of(*id).await.as_deref(), Some(*status));
    }
    let (_, ready) = app.get("/readyz", "").await;
    browser
        .wait_until(
            "the position counter at the head",
            WAIT,
            "return document.getElementById('feed-position').dataset.position === String(arguments[0]);",
            vec![ready["head"].clone()],
        )
        .await;
    assert_no_problems(&browser).await;
    browser.close().await;
}

/// The queue tab: per target, the parked requests in drain order (priority,
/// then arrival) with priority, attempts, expiry and depth — here behind a
/// real dispatcher and an agent that answers "busy".
#[tokio::test]
async fn the_queue_shows_each_target_in_drain_order() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let agent = FakeAgent::start().await;
    agent.set_reply(Reply::Http {
        status: 503,
        body: json!({ "busy": true }).to_string(),
        retry_after: None,
    });
    let app = common::spawn_dispatching_app(|_| {}).await;
    let source = app.register().await;
    let target = app.register_with(json!({ "url": agent.url() })).await;
    let mut made = Vec::new();
    for (priority, extra) in [
        ("info", json!({})),
        ("critical", json!({ "expires_in_seconds": 3600 })),
        ("task", json!({})),
    ] {
        let mut body = extra;
        body["priority"] = json!(priority);
        body["task"] = json!(format!("{priority} work"));
        made.push(app.delegate(&source, target.id, body).await);
    }
    for id in &made {
        app.wait_status(*id, "queued").await;
    }

    open_signed_in(&browser, &app, &app.admin_token).await;
    for id in &made {
        browser.wait_card(*id, "queued").await;
    }
    browser.click("#tab-queue").await;
    let (_, queue) = app
        .get(
            &format!("/workspaces/{}/a2a/queue", target.id),
            &target.token,
        )
        .await;
    let order: Vec<Value> = queue["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["queue_id"].clone())
        .collect();
    assert_eq!(order.len(), 3);
    browser
        .wait_until(
            "the target's queue in drain order",
            WAIT,
            "const q = document.querySelector(`.queue[data-target='${arguments[0]}']`);
             if (!q || q.dataset.depth !== '3') return false;
             const rows = [...q.querySelectorAll('tbody tr')];
             return JSON.stringify(rows.map(r => r.dataset.queueId)) === JSON.stringify(arguments[1]);",
            vec![json!(target.id), json!(order)],
        )
        .await;
    let cells = browser
        .js(
            "const q = document.querySelector(`.queue[data-target='${arguments[0]}']`);
             return [...q.querySelectorAll('tbody tr')].map(r => [...r.children].map(c => c.textContent));",
            vec![json!(target.id)],
        )
        .await;
    let rows = cells.as_array().expect("rows");
    assert!(
        rows[0][3]
            .as_str()
            .is_some_and(|p| p.starts_with("critical (100)")),
        "{cells}"
    );
    assert!(
        rows[1][3]
            .as_str()
            .is_some_and(|p| p.starts_with("task (50)")),
        "{cells}"
    );
    assert!(
        rows[2][3]
            .as_str()
            .is_some_and(|p| p.starts_with("info (10)")),
        "{cells}"
    );
    assert!(
        rows[0][7].as_str().is_some_and(|e| e.contains("in ")),
        "expiry: {cells}"
    );
    assert_eq!(rows[1][7], "never", "{cells}");
    for row in rows {
        assert_eq!(row[4], "queued", "{cells}");
        assert_eq!(row[5], queue["items"][0]["attempts"].to_string(), "{cells}");
    }
    let shot = browser.screenshot("queue").await;
    println!("queue screenshot: {}", shot.display());
    assert_no_problems(&browser).await;
    browser.close().await;
}

/// `/docs` in the browser: Swagger UI renders every operation from
/// /openapi.json, and "Try it out" really calls the service — with every
/// file from this origin.
#[tokio::test]
async fn the_docs_page_lets_people_try_an_operation() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = common::spawn_app().await;
    browser.goto(&app.url("/docs")).await;
    browser
        .wait_until(
            "Swagger UI to list the operations",
            WAIT,
            "return document.querySelectorAll('.opblock').length >= 20;",
            vec![],
        )
        .await;
    browser
        .click("#operations-operations-healthz .opblock-summary-control")
        .await;
    browser
        .wait_until(
            "the Execute button of GET /healthz",
            WAIT,
            "return !!document.querySelector('#operations-operations-healthz .execute');",
            vec![],
        )
        .await;
    browser
        .click("#operations-operations-healthz .execute")
        .await;
    browser
        .wait_until(
            "the live answer of GET /healthz",
            WAIT,
            "const live = document.querySelector('#operations-operations-healthz .live-responses-table');
             return !!live && live.textContent.includes('200') && live.textContent.includes('\"ok\"');",
            vec![],
        )
        .await;
    let foreign = browser
        .js(
            "return performance.getEntriesByType('resource').map(e => e.name)
               .filter(name => !name.startsWith(location.origin));",
            vec![],
        )
        .await;
    assert_eq!(foreign, json!([]), "files fetched from elsewhere");
    let shot = browser.screenshot("docs").await;
    println!("docs screenshot: {}", shot.display());
    assert_no_problems(&browser).await;
    browser.close().await;
}

/// The page and every file it loads come from the binary, with exact
/// content types, `nosniff` and a policy allowing nothing inline and
/// nothing from elsewhere; and no script of the console writes HTML.
#[tokio::test]
async fn the_console_is_served_from_the_binary_under_a_strict_policy() {
    let app = common::spawn_app().await;
    let page = fetch(&app, "/console", "text/html").await;
    assert!(
        !page.contains("https://") && !page.contains("http://"),
        "{page}"
    );
    // Every <script> has a src (no inline script).
    for (at, _) in page.match_indices("<script") {
        let tag = &page[at..at + page[at..].find('>').expect("tag end")];
        assert!(
            tag.contains("src=\"/console/"),
            "inline or foreign script: {tag}"
        );
    }
    let mut files: Vec<String> = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in page.match_indices(attribute) {
            let rest = &page[at + attribute.len()..];
            let target = &rest[..rest.find('"').expect("closing quote")];
            if target.starts_with("/console/") {
                files.push(target.to_string());
            }
        }
    }
    // The modules the entry imports, and theirs.
    let mut at = 0;
    while at < files.len() {
        let file = files[at].clone();
        at += 1;
        let kind = match file.rsplit('.').next() {
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            Some("svg") => "image/svg+xml",
            other => panic!("{file}: unexpected kind {other:?}"),
        };
        let body = fetch(&app, &file, kind).await;
        if kind != "text/javascript" {
            continue;
        }
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!body.contains(sink), "{file} uses {sink}");
        }
        for (i, _) in body.match_indices("from \"./") {
            let rest = &body[i + "from \"./".len()..];
            let module = format!("/console/{}", &rest[..rest.find('"').expect("quote")]);
            if !files.contains(&module) {
                files.push(module);
            }
        }
    }
    assert!(files.len() >= 10, "{files:?}");

    let (status, body) = app.get("/console/no-such-file.js", "").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = app.get("/console/main%00.js", "").await;
    assert_eq!(status, 400, "{body}");

    // What a token is: the admin, a workspace, or nothing.
    let a = app.register().await;
    let (status, body) = app.get("/console/whoami", &app.admin_token).await;
    assert_eq!((status, body), (200, json!({ "role": "admin" })));
    let (status, body) = app.get("/console/whoami", &a.token).await;
    assert_eq!(
        (status, body),
        (200, json!({ "role": "workspace", "workspace_id": a.id }))
    );
    let (status, _) = app.get("/console/whoami", "ldg_unknown").await;
    assert_eq!(status, 401);
}

/// GET `path` → 200 of `kind`, under the console's policy; the body.
async fn fetch(app: &TestApp, path: &str, kind: &str) -> String {
    let response = app
        .client
        .get(app.url(path))
        .header("host", format!("127.0.0.1:{}", app.port))
        .send()
        .await
        .expect("request should be sent");
    assert_eq!(response.status(), 200, "{path}");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        header("content-type").starts_with(kind),
        "{path}: {}",
        header("content-type")
    );
    assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
    let policy = header("content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self';",
        "style-src 'self';",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(
            policy.contains(directive),
            "{path}: {policy} lacks {directive}"
        );
    }
    assert!(
        policy.contains(&format!("connect-src 'self' ws://127.0.0.1:{}", app.port)),
        "{path}: {policy}"
    );
    assert!(!policy.contains("unsafe"), "{path}: {policy}");
    response.text().await.expect("body")
}

/// Time to board with 10,000 delegations: from navigation start to the
/// first paint after the replay caught up (the console's own figure,
/// `data-time-to-board`), for the admin, who sees all of them. A
/// measurement, not a test: run it with
/// `cargo test --release --test console -- --ignored --nocapture time_to_board`.
#[tokio::test]
#[ignore = "a measurement: creates 10,000 delegations"]
async fn time_to_board_with_10000_delegations() {
    use futures::stream::{self, StreamExt};

    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = common::spawn_app().await;
    let mut workspaces = Vec::new();
    for _ in 0..20 {
        workspaces.push(app.register().await);
    }
    // Recorded, then moved on: a third completed, a third failed, the rest
    // in progress — about 17,000 messages in the replay.
    let seeded = std::time::Instant::now();
    let ids: Vec<(usize, Uuid)> = stream::iter(0..10_000usize)
        .map(|n| {
            let (app, workspaces) = (&app, &workspaces);
            async move {
                let source = &workspaces[n % 20];
                let target = &workspaces[(n * 7 + 3) % 20];
                let target = if target.id == source.id {
                    &workspaces[(n + 1) % 20]
                } else {
                    target
                };
                let id = app
                    .record(
                        source,
                        target.id,
                        &format!("task {n}: summarise report {n}"),
                    )
                    .await;
                (n, id)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    stream::iter(ids.iter())
        .map(|(n, id)| {
            let (app, workspaces) = (&app, &workspaces);
            async move {
                let source = &workspaces[n % 20];
                let body = match n % 3 {
                    0 => {
                        json!({ "status": "completed", "response_preview": format!("result {n}") })
                    }
                    1 => json!({ "status": "failed", "error": format!("error {n}") }),
                    _ => json!({ "status": "in_progress" }),
                };
                update(app, source, *id, body).await;
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    common::settle(&app.pool).await;
    let (_, ready) = app.get("/readyz", "").await;
    println!(
        "seeded 10,000 delegations in {:?}; log head {}; database {}",
        seeded.elapsed(),
        ready["head"],
        app.database_url
    );

    // The server's part alone: the same replay read by a plain client.
    for _ in 0..2 {
        let replay = std::time::Instant::now();
        let url = format!(
            "ws://127.0.0.1:{}/ws?from=0&token={}",
            app.port, app.admin_token
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        let head = ready["head"].as_i64().expect("head");
        let mut messages = 0;
        while let Some(Ok(message)) = socket.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                messages += 1;
                let message: Value = serde_json::from_str(&text).expect("JSON");
                if message["position"].as_i64() == Some(head) {
                    break;
                }
            }
        }
        println!(
            "the server alone: {messages} messages replayed to a plain client in {:?}",
            replay.elapsed()
        );
    }

    let mut runs = Vec::new();
    for _ in 0..5 {
        browser.goto("about:blank").await;
        browser
            .goto(&app.url(&format!("/console#token={}", app.admin_token)))
            .await;
        browser
            .wait_until(
                "the board with 10,000 delegations",
                Duration::from_secs(120),
                "return !!document.documentElement.dataset.timeToBoard;",
                vec![],
            )
            .await;
        let figures = browser
            .js(
                "return { ms: Number(document.documentElement.dataset.timeToBoard),
                          position: Number(document.getElementById('feed-position').dataset.position),
                          cards: document.querySelectorAll('.card').length,
                          summary: document.getElementById('board-summary').textContent };",
                vec![],
            )
            .await;
        assert_eq!(figures["position"], ready["head"], "{figures}");
        assert!(
            figures["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("10000 delegations")),
            "{figures}"
        );
        println!("run: {figures}");
        runs.push(figures["ms"].as_f64().unwrap_or_default());
    }
    browser.screenshot("board-10000").await;
    // The browser's part alone: the same replay received by a bare
    // WebSocket in the page (no parsing, no board), one message per frame
    // and batched.
    for batch in ["false", "true", "false", "true"] {
        let bare = browser
            .client
            .execute_async(
                "const [head, batch, done] = arguments; const started = performance.now();
                 const token = sessionStorage.getItem('ledger-console-token');
                 const socket = new WebSocket(`ws://${location.host}/ws?from=0&batch=${batch}&token=${token}`);
                 let frames = 0;
                 socket.onmessage = (event) => {
                   frames += 1;
                   if (event.data.includes(`\"position\":${head},`)) {
                     socket.close();
                     done({ batch, frames, ms: Math.round(performance.now() - started) });
                   }
                 };",
                vec![ready["head"].clone(), json!(batch)],
            )
            .await
            .expect("a bare replay in the page");
        println!("the browser alone: {bare}");
    }
    runs.sort_by(f64::total_cmp);
    println!(
        "time to board with 10,000 delegations: median {} ms (runs {runs:?})",
        runs[runs.len() / 2]
    );
    assert_no_problems(&browser).await;
    browser.close().await;
}
