//! Hostile input: oversized, deeply nested, badly encoded or unexpected
//! bodies, absurd numbers and non-ids in paths. Every case must answer a
//! 4xx in the API's error shape — never a 5xx, never a crash — and write
//! nothing (the event count does not move).

mod common;

use common::{event_count, TestApp, Workspace};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// A small body limit, so oversized bodies stay cheap to send.
const MAX_BODY_BYTES: usize = 4096;

/// The app, two workspaces (`a` delegates to `b`), one recorded delegation.
struct Setup {
    app: TestApp,
    a: Workspace,
    b: Workspace,
    delegation: Uuid,
}

async fn setup() -> Setup {
    setup_with_limit(MAX_BODY_BYTES).await
}

async fn setup_with_limit(max_body_bytes: usize) -> Setup {
    let url = common::fresh_database_url().await;
    let app = common::spawn_app_with(url, |config| config.max_body_bytes = max_body_bytes).await;
    let a = app.register().await;
    let b = app.register().await;
    let delegation = app.record(&a, b.id, "hostile input baseline").await;
    Setup {
        app,
        a,
        b,
        delegation,
    }
}

impl Setup {
    /// Every POST route with a body it would accept, and the token to use
    /// (registration takes none).
    fn post_routes(&self) -> Vec<(String, Option<String>, Value)> {
        let a = self.a.id;
        vec![
            (
                "/registry/register".into(),
                None,
                json!({ "id": Uuid::new_v4(), "url": "http://127.0.0.1:9/x" }),
            ),
            (
                "/registry/heartbeat".into(),
                Some(self.a.token.clone()),
                json!({ "workspace_id": a, "active_tasks": 0 }),
            ),
            (
                format!("/workspaces/{a}/delegate"),
                Some(self.a.token.clone()),
                json!({ "target_id": self.b.id, "task": "t" }),
            ),
            (
                format!("/workspaces/{a}/delegations/record"),
                Some(self.a.token.clone()),
                json!({ "target_id": self.b.id, "task": "t", "delegation_id": Uuid::new_v4() }),
            ),
            (
                format!("/workspaces/{a}/delegations/{}/update", self.delegation),
                Some(self.a.token.clone()),
                json!({ "status": "received" }),
            ),
        ]
    }

    /// Send raw bytes; returns the status and the body, which must be the
    /// API's error shape whenever the status is an error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<reqwest::Body>,
    ) -> (u16, Value) {
        let mut request = self
            .app
            .client
            .request(method.clone(), self.app.url(path))
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request should be sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body should be readable");
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(status < 500, "{method} {path} answered {status}: {text}");
        if status >= 400 {
            assert!(
                body["error"].is_string(),
                "{method} {path} answered {status} without the error shape: {text:?}"
            );
        }
        (status, body)
    }

    /// Each POST route given `body` answers `expected`, and nothing is written.
    async fn every_post_route_answers(&self, expected: u16, body: impl Fn(&Value) -> Vec<u8>) {
        let before = event_count(&self.app.pool).await;
        for (path, token, valid) in self.post_routes() {
            let (status, answer) = self
                .send(
                    Method::POST,
                    &path,
                    token.as_deref(),
                    Some(body(&valid).into()),
                )
                .await;
            assert_eq!(status, expected, "POST {path}: {answer}");
        }
        assert_eq!(
            event_count(&self.app.pool).await,
            before,
            "something was written"
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_413_with_the_error_shape() {
    let setup = setup().await;
    setup
        .every_post_route_answers(413, |valid| {
            let mut big = valid.clone();
            big["padding"] = json!("x".repeat(MAX_BODY_BYTES * 2));
            big.to_string().into_bytes()
        })
        .await;

    // Without a Content-Length (chunked), the limit cuts the body off.
    let before = event_count(&setup.app.pool).await;
    for (path, token, _) in setup.post_routes() {
        let (status, answer) = chunked_post(&setup.app, &path, token.as_deref(), 8).await;
        assert_eq!(status, 413, "chunked POST {path}: {answer}");
    }
    assert_eq!(event_count(&setup.app.pool).await, before);
}

/// POST `chunks` chunks of `MAX_BODY_BYTES` spaces with
/// `Transfer-Encoding: chunked` (no Content-Length) over a raw connection;
/// the status and the response text. The server may answer and close
/// before the whole body is sent, so write errors are expected.
async fn chunked_post(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    chunks: usize,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    let auth = token
        .map(|token| format!("authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{auth}\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    let mut sent = stream.write_all(head.as_bytes()).await;
    let chunk = format!("{MAX_BODY_BYTES:x}\r\n{}\r\n", " ".repeat(MAX_BODY_BYTES));
    for _ in 0..chunks {
        if sent.is_err() {
            break;
        }
        sent = stream.write_all(chunk.as_bytes()).await;
    }
    if sent.is_ok() {
        let _ = stream.write_all(b"0\r\n\r\n").await;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(body.contains("\"error\""), "{text}");
    (status, body)
}

#[tokio::test]
async fn deeply_nested_json_is_400_and_the_service_stays_up() {
    // The default limit, so the nesting (not the size) is what is refused.
    let setup = setup_with_limit(ledger::config::Config::default().max_body_bytes).await;
    setup
        .every_post_route_answers(400, |_| "[".repeat(10_000).into_bytes())
        .await;
    setup
        .every_post_route_answers(400, |_| {
            format!("{}{}", "[".repeat(2_000), "]".repeat(2_000)).into_bytes()
        })
        .await;
    setup
        .every_post_route_answers(400, |_| {
            format!("{}1{}", r#"{"a":"#.repeat(1_000), "}".repeat(1_000)).into_bytes()
        })
        .await;
    let (status, _) = setup.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn invalid_utf8_and_malformed_json_are_400() {
    let setup = setup().await;
    setup
        .every_post_route_answers(400, |valid| {
            // A valid body with one byte that is not UTF-8 inside a string.
            let mut bytes = valid.to_string().into_bytes();
            let quote = bytes.iter().rposition(|b| *b == b'"').unwrap_or(0);
            bytes.insert(quote, 0xff);
            bytes
        })
        .await;
    setup
        .every_post_route_answers(400, |_| vec![0xc3, 0x28, 0xa0, 0xa1])
        .await;
    setup
        .every_post_route_answers(400, |_| b"{\"id\": ".to_vec())
        .await;
    setup.every_post_route_answers(400, |_| Vec::new()).await;
    setup
        .every_post_route_answers(400, |_| b"null".to_vec())
        .await;
    // A lone surrogate is not a character.
    setup
        .every_post_route_answers(400, |valid| {
            let text = valid.to_string();
            text.replacen(":", r#":"\ud800","x":"#, 1).into_bytes()
        })
        .await;
}

#[tokio::test]
async fn unknown_fields_are_400() {
    let setup = setup().await;
    setup
        .every_post_route_answers(400, |valid| {
            let mut extra = valid.clone();
            extra["unexpected"] = json!(true);
            extra.to_string().into_bytes()
        })
        .await;
}

#[tokio::test]
async fn unknown_query_parameters_are_400() {
    let setup = setup().await;
    let a = setup.a.id;
    for (path, token) in [
        (
            format!("/workspaces/{a}/delegations?limit=5&lmit=5"),
            &setup.a.token,
        ),
        (
            format!("/workspaces/{a}/activity?typ=delegation"),
            &setup.a.token,
        ),
        (format!("/ws?workspace_id={a}&form=0"), &setup.a.token),
        ("/audit/events?aftr=3".to_string(), &setup.app.admin_token),
        ("/audit/verify?frm=1".to_string(), &setup.app.admin_token),
    ] {
        let (status, answer) = setup.send(Method::GET, &path, Some(token), None).await;
        assert_eq!(status, 400, "GET {path}: {answer}");
    }
}

#[tokio::test]
async fn a_nul_character_anywhere_is_400() {
    let setup = setup().await;
    // In every string field of every body.
    for (path, token, valid) in setup.post_routes() {
        let before = event_count(&setup.app.pool).await;
        let fields: Vec<String> = valid
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        for field in fields.iter().filter(|f| valid[f.as_str()].is_string()) {
            let mut body = valid.clone();
            let value = valid[field.as_str()].as_str().unwrap_or_default();
            body[field.as_str()] = json!(format!("{value}\u{0}"));
            let (status, answer) = setup
                .send(
                    Method::POST,
                    &path,
                    token.as_deref(),
                    Some(body.to_string().into()),
                )
                .await;
            assert_eq!(status, 400, "POST {path} with NUL in {field}: {answer}");
        }
        assert_eq!(
            event_count(&setup.app.pool).await,
            before,
            "POST {path} wrote"
        );
    }
    // In query strings and paths.
    let a = setup.a.id;
    for path in [
        format!("/workspaces/{a}/activity?type=x%00"),
        "/audit/events?aggregate_id=x%00".to_string(),
        "/audit/events?event_type=x%00".to_string(),
        "/audit/streams/delegation/x%00y".to_string(),
        "/audit/streams/delegation/x%2500y".to_string(),
        format!("/workspaces/{a}%00/delegations"),
    ] {
        let token = if path.starts_with("/audit") {
            setup.app.admin_token.clone()
        } else {
            setup.a.token.clone()
        };
        let (status, answer) = setup.send(Method::GET, &path, Some(&token), None).await;
        assert!(matches!(status, 400 | 404), "GET {path}: {status} {answer}");
    }
}

#[tokio::test]
async fn absurd_numbers_in_list_routes_are_clamped_or_400() {
    let setup = setup().await;
    let before = event_count(&setup.app.pool).await;
    let a = setup.a.id;
    let routes = [
        (
            format!("/workspaces/{a}/delegations?limit="),
            &setup.a.token,
        ),
        (format!("/workspaces/{a}/activity?limit="), &setup.a.token),
        (
            format!("/workspaces/{a}/activity?since_secs="),
            &setup.a.token,
        ),
        ("/audit/events?limit=".to_string(), &setup.app.admin_token),
        ("/audit/events?after=".to_string(), &setup.app.admin_token),
        ("/audit/verify?from=".to_string(), &setup.app.admin_token),
        ("/audit/verify?to=".to_string(), &setup.app.admin_token),
        (
            format!("/audit/streams/delegation/{}?as_of=", setup.delegation),
            &setup.app.admin_token,
        ),
    ];
    let clamped = "9223372036854775807";
    for (route, token) in &routes {
        for value in [
            "99999999999999999999",
            "-1",
            "1e9",
            "0",
            "",
            "1.5",
            "abc",
            "-9223372036854775808",
            "%20",
            clamped,
        ] {
            let path = format!("{route}{value}");
            let (status, answer) = setup.send(Method::GET, &path, Some(token), None).await;
            let expected: &[u16] = if value == clamped {
                &[200]
            } else {
                &[200, 400]
            };
            assert!(expected.contains(&status), "GET {path}: {status} {answer}");
        }
    }
    assert_eq!(event_count(&setup.app.pool).await, before);
}

#[tokio::test]
async fn path_parameters_that_are_not_ids_are_400_or_404() {
    let setup = setup().await;
    let before = event_count(&setup.app.pool).await;
    let long = "a".repeat(10_000);
    let hostile = [
        "not-a-uuid",
        "..",
        "%2e%2e",
        "%FF",
        "%2F",
        "'%20or%201=1%20--",
        "00000000-0000-0000-0000-00000000000g",
        "%7B%7D",
        long.as_str(),
    ];
    let a = setup.a.id;
    let d = setup.delegation;
    for bad in hostile {
        let cases = [
            (Method::GET, format!("/registry/discover/{bad}"), None),
            (Method::GET, format!("/workspaces/{bad}/delegations"), None),
            (
                Method::GET,
                format!("/workspaces/{bad}/delegations/{d}"),
                None,
            ),
            (
                Method::GET,
                format!("/workspaces/{a}/delegations/{bad}"),
                None,
            ),
            (Method::GET, format!("/workspaces/{bad}/activity"), None),
            (
                Method::POST,
                format!("/workspaces/{bad}/delegate"),
                Some(json!({ "target_id": setup.b.id, "task": "t" })),
            ),
            (
                Method::POST,
                format!("/workspaces/{bad}/delegations/record"),
                Some(
                    json!({ "target_id": setup.b.id, "task": "t", "delegation_id": Uuid::new_v4() }),
                ),
            ),
            (
                Method::POST,
                format!("/workspaces/{a}/delegations/{bad}/update"),
                Some(json!({ "status": "received" })),
            ),
            (
                Method::POST,
                format!("/workspaces/{bad}/delegations/{d}/update"),
                Some(json!({ "status": "received" })),
            ),
            (Method::GET, format!("/audit/streams/{bad}/{d}"), None),
            (
                Method::GET,
                format!("/audit/streams/delegation/{bad}"),
                None,
            ),
        ];
        for (method, path, body) in cases {
            let token = if path.starts_with("/audit") {
                &setup.app.admin_token
            } else {
                &setup.a.token
            };
            let body = body.map(|b| reqwest::Body::from(b.to_string()));
            let (status, answer) = setup.send(method.clone(), &path, Some(token), body).await;
            assert!(
                matches!(status, 400 | 404),
                "{method} {path}: {status} {answer}"
            );
        }
    }
    assert_eq!(event_count(&setup.app.pool).await, before);
}

#[tokio::test]
async fn framework_errors_have_the_error_shape() {
    let setup = setup().await;
    let (status, _) = setup.send(Method::GET, "/no/such/route", None, None).await;
    assert_eq!(status, 404);
    let response = setup
        .app
        .client
        .delete(setup.app.url("/healthz"))
        .send()
        .await
        .expect("request should be sent");
    assert_eq!(response.status(), 405);
    assert!(response.headers().contains_key("allow"), "405 keeps Allow");
    let body: Value = response.json().await.expect("a JSON body");
    assert!(body["error"].is_string(), "{body}");
}
