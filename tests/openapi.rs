//! `GET /openapi.json` describes every route the router serves, with the
//! bearer scheme on the routes that need a token and the error schema on
//! every error response; `GET /docs` shows it in Swagger UI.
//!
//! Routes and their descriptions come from one declaration (each
//! handler module's `routes!` over its `#[utoipa::path]` handlers), so
//! a route cannot be served undescribed; these tests check what the
//! document says about them, and that each documented operation is served.

mod common;

use serde_json::Value;

/// Every operation the API serves, `(method, path)`.
const OPERATIONS: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("post", "/registry/register"),
    ("post", "/registry/rotate-token"),
    ("post", "/registry/revoke-token"),
    ("post", "/registry/heartbeat"),
    ("get", "/registry/discover/{id}"),
    ("post", "/workspaces/{id}/delegate"),
    ("post", "/workspaces/{id}/delegations/record"),
    (
        "post",
        "/workspaces/{id}/delegations/{delegation_id}/update",
    ),
    (
        "post",
        "/workspaces/{id}/delegations/{delegation_id}/cancel",
    ),
    ("get", "/workspaces/{id}/delegations"),
    ("get", "/workspaces/{id}/delegations/{delegation_id}"),
    ("get", "/workspaces/{id}/activity"),
    ("get", "/workspaces/{id}/a2a/queue"),
    ("get", "/workspaces/{id}/a2a/queue/{queue_id}"),
    ("get", "/ws"),
    ("get", "/audit/events"),
    ("get", "/audit/streams/{aggregate_type}/{aggregate_id}"),
    ("get", "/audit/verify"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("get", "/docs/{file}"),
    ("get", "/console"),
    ("get", "/console/whoami"),
    ("get", "/console/{asset}"),
];

/// Routes anyone may call without a token.
const PUBLIC: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/{file}",
    "/console",
    "/console/{asset}",
];

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(app: &common::TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request should be sent");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    response.json().await.expect("the document is JSON")
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (method, operation) in item.as_object().expect("a path item is an object") {
            if HTTP_METHODS.contains(&method.as_str()) {
                found.push((path.clone(), method.clone(), operation.clone()));
            }
        }
    }
    found
}

/// The operation's security requirements name the bearer scheme.
fn takes_bearer(operation: &Value) -> bool {
    operation["security"]
        .as_array()
        .is_some_and(|requirements| requirements.iter().any(|r| r.get("bearer").is_some()))
}

/// The operation may be called with no token at all.
fn allows_anonymous(operation: &Value) -> bool {
    match operation["security"].as_array() {
        None => true,
        Some(requirements) => requirements
            .iter()
            .any(|r| r.as_object().is_some_and(|r| r.is_empty())),
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_covers_every_route() {
    let app = common::spawn_app().await;
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "openapi version {version:?}");

    let mut documented: Vec<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(path, method, _)| (method, path))
        .collect();
    documented.sort();
    let mut expected: Vec<(String, String)> = OPERATIONS
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);
}

#[tokio::test]
async fn every_route_but_the_public_ones_takes_the_bearer_scheme() {
    let app = common::spawn_app().await;
    let doc = document(&app).await;
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");

    for (path, method, operation) in operations(&doc) {
        if PUBLIC.contains(&path.as_str()) {
            assert!(
                allows_anonymous(&operation) && !takes_bearer(&operation),
                "{method} {path} should need no token"
            );
            continue;
        }
        assert!(
            takes_bearer(&operation),
            "{method} {path} should take a bearer token"
        );
        // Registration of a new workspace and the websocket (`?token=`)
        // also work without the header; nothing else does.
        let anonymous_ok = path == "/registry/register" || path == "/ws";
        assert_eq!(
            allows_anonymous(&operation),
            anonymous_ok,
            "{method} {path}: anonymous access documented wrongly"
        );
    }
}

#[tokio::test]
async fn every_error_response_is_the_error_schema() {
    let app = common::spawn_app().await;
    let doc = document(&app).await;
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["properties"]["error"]["type"], "string", "{error}");
    assert!(
        error["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|f| f == "error")),
        "{error}"
    );

    let mut errors = 0;
    for (path, method, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{method} {path} has no responses");
        if !PUBLIC.contains(&path.as_str()) {
            assert!(
                responses.contains_key("401"),
                "{method} {path} does not document 401"
            );
        }
        for (status, response) in responses {
            if !status.starts_with('4') && !status.starts_with('5') {
                continue;
            }
            errors += 1;
            let schema = &response["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(
                schema, "#/components/schemas/ErrorBody",
                "{method} {path} {status}"
            );
        }
    }
    assert!(errors > 30, "only {errors} error responses documented");
}

#[tokio::test]
async fn request_bodies_and_parameters_are_described() {
    let app = common::spawn_app().await;
    let doc = document(&app).await;
    for (path, method, operation) in operations(&doc) {
        if method == "post" {
            assert!(
                operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                    .is_string(),
                "{method} {path} has no request body schema"
            );
        }
        let parameters = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for name in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        {
            assert!(
                parameters
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                "{method} {path}: path parameter {name} not described"
            );
        }
    }
    let activity = &doc["paths"]["/workspaces/{id}/activity"]["get"]["parameters"];
    for name in ["type", "source", "limit", "since_secs", "since_id"] {
        assert!(
            activity
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "query")),
            "activity query parameter {name} not described"
        );
    }
}

/// `/docs` is Swagger UI over `/openapi.json`: an HTML page whose every
/// stylesheet and script is served by the binary itself (nothing from
/// elsewhere), configured with the one document and no outside validator.
/// (`tests/console.rs` opens it in a real browser and tries an operation.)
#[tokio::test]
async fn the_docs_page_is_swagger_ui_over_the_document_with_its_files_served_here() {
    let app = common::spawn_app().await;
    let (page, content_type) = fetch_text(&app, "/docs").await;
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("<div id=\"swagger-ui\">"), "{page}");
    assert!(
        !page.contains("https://"),
        "the page refers to another site"
    );

    let mut loaded = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in page.match_indices(attribute) {
            let target = &page[at + attribute.len()..];
            let target = &target[..target.find('"').expect("closing quote")];
            assert!(target.starts_with("/docs/"), "{target} is not served here");
            loaded.push(target.to_string());
        }
    }
    for file in [
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/swagger-initializer.js",
    ] {
        assert!(
            loaded.iter().any(|l| l == file),
            "/docs does not load {file}"
        );
    }
    for file in &loaded {
        let (body, content_type) = fetch_text(&app, file).await;
        let expected = match file.rsplit('.').next() {
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            Some("png") => "image/png",
            other => panic!("{file}: unexpected kind {other:?}"),
        };
        assert!(content_type.starts_with(expected), "{file}: {content_type}");
        assert!(!body.is_empty(), "{file} is empty");
    }
    let (bundle, _) = fetch_text(&app, "/docs/swagger-ui-bundle.js").await;
    assert!(bundle.len() > 500_000 && bundle.contains("SwaggerUIBundle"));
    let (initializer, _) = fetch_text(&app, "/docs/swagger-initializer.js").await;
    assert!(
        initializer.contains("\"url\": \"/openapi.json\""),
        "{initializer}"
    );
    assert!(
        initializer.contains("\"validatorUrl\": \"none\""),
        "{initializer}"
    );
    assert!(
        initializer.contains("\"tryItOutEnabled\": true"),
        "{initializer}"
    );

    let (status, body) = app.get("/docs/no-such-file.js", "").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let (status, body) = app.get("/docs/swagger-ui.css%00", "").await;
    assert_eq!(status, 400, "{body}");
}

/// GET `path`: 200, with `X-Content-Type-Options: nosniff`; the body as
/// text and the content type.
async fn fetch_text(app: &common::TestApp, path: &str) -> (String, String) {
    let response = app
        .client
        .get(app.url(path))
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
    assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
    let content_type = header("content-type");
    let body = response.text().await.expect("body");
    (body, content_type)
}

/// Each documented operation is really served: its path, with ids filled
/// in, reaches a handler (no "no such route" 404, no 405).
#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let app = common::spawn_app().await;
    let doc = document(&app).await;
    let id = uuid::Uuid::new_v4().to_string();
    for (path, method, _) in operations(&doc) {
        let concrete = path
            .replace("{aggregate_type}", "delegation")
            .replace("{id}", &id)
            .replace("{delegation_id}", &id)
            .replace("{aggregate_id}", &id);
        let request = match method.as_str() {
            "get" => app.client.get(app.url(&concrete)),
            "post" => app
                .client
                .post(app.url(&concrete))
                .json(&serde_json::json!({})),
            other => panic!("unexpected method {other}"),
        };
        let response = request
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .expect("request should be sent");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !(status == 404 && body.contains("no such route")),
            "{method} {path} is not served: {body}"
        );
        assert!(status < 500, "{method} {path}: {status} {body}");
    }
}

/// Every link names an operation of the document and only its parameters.
#[tokio::test]
async fn links_point_to_real_operations_and_parameters() {
    let app = common::spawn_app().await;
    let doc = document(&app).await;
    let operations = operations(&doc);
    let mut links = 0;
    for (path, method, operation) in &operations {
        for (status, response) in operation["responses"].as_object().into_iter().flatten() {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                links += 1;
                let target_id = link["operationId"].as_str().unwrap_or_default();
                let target = operations
                    .iter()
                    .find(|(_, _, o)| o["operationId"] == target_id)
                    .unwrap_or_else(|| {
                        panic!("{method} {path} {status} {name}: no operation {target_id}")
                    });
                for parameter in link["parameters"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    assert!(
                        target.2["parameters"]
                            .as_array()
                            .is_some_and(|ps| ps.iter().any(|p| &p["name"] == parameter)),
                        "{method} {path} {status} {name}: {target_id} has no parameter {parameter}"
                    );
                }
            }
        }
    }
    assert_eq!(
        links, 11,
        "a link was dropped (its response is not documented)"
    );
}
