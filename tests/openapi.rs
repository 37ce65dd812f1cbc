//! `GET /openapi.json` describes every route the router serves, with the
//! bearer scheme on the routes that need a token and the error schema on
//! every error response; `GET /docs` shows it in Swagger UI.
//!
//! The route list is read from the router's source (every `.route("…",
//! method(…))` under src/http and src/ws, subfolders included), so a route added without an
//! `#[utoipa::path]` — or a path attribute naming the wrong path — fails
//! here.

mod common;

use serde_json::Value;

/// Every `(path, method)` the router serves, read from its source: each
/// `.route("PATH", METHOD(handler))` (method chains such as
/// `get(a).post(b)` included) in src/http and src/ws, with a wildcard
/// `{*name}` written as OpenAPI's `{name}`.
fn routes() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    // Every file under src/http and src/ws, subfolders (e.g. http/audit/)
    // included.
    let mut dirs: Vec<std::path::PathBuf> = vec![root.join("http"), root.join("ws")];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).expect("source dir is readable");
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(&path).expect("source is readable");
                found.extend(routes_in(&source));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

fn routes_in(source: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (at, _) in source.match_indices(".route(") {
        let rest = source[at + ".route(".len()..].trim_start();
        let Some(rest) = rest.strip_prefix('"') else {
            continue;
        };
        let Some(end) = rest.find('"') else { continue };
        let path = rest[..end].replace("{*", "{");
        let mut methods = rest[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
        // `get(handler).post(other)…`: every method up to the route's end.
        loop {
            let name: String = methods
                .chars()
                .take_while(|c| c.is_ascii_lowercase())
                .collect();
            if !HTTP_METHODS.contains(&name.as_str()) || !methods[name.len()..].starts_with('(') {
                break;
            }
            found.push((path.clone(), name.clone()));
            let Some(close) = methods.find(')') else {
                break;
            };
            methods = &methods[close + 1..];
            match methods.trim_start().strip_prefix('.') {
                Some(next) => methods = next,
                None => break,
            }
        }
    }
    found
}

#[test]
fn the_route_reader_understands_the_router_syntax() {
    let source = r#"Router::new().route("/a/{id}", get(one)).route(
            "/b/{x}/{*rest}",
            post(two),
        ).route("/c", get(three).post(four))"#;
    assert_eq!(
        routes_in(source),
        [
            ("/a/{id}".to_string(), "get".to_string()),
            ("/b/{x}/{rest}".to_string(), "post".to_string()),
            ("/c".to_string(), "get".to_string()),
            ("/c".to_string(), "post".to_string()),
        ]
    );
}

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

    let operations = operations(&doc);
    let routes = routes();
    assert!(routes.len() >= 18, "the route reader found only {routes:?}");
    for (path, method) in &routes {
        assert!(
            operations.iter().any(|(p, m, _)| p == path && m == method),
            "{method} {path} is served but not in the document"
        );
    }
    for (path, method, _) in &operations {
        assert!(
            routes.iter().any(|(p, m)| p == path && m == method),
            "the document has {method} {path}, which the router does not serve"
        );
    }
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
