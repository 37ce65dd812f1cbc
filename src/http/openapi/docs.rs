//! `GET /docs`: Swagger UI over `/openapi.json`, so people can read the API
//! and try each operation from the browser ("Try it out" sends the request
//! to this service, with the token given under "Authorize").
//!
//! Nothing is fetched from elsewhere: the Swagger UI files come vendored
//! with `utoipa-swagger-ui` (its `vendored` feature: no download at build
//! time) and are embedded in the binary; the validator badge, which would
//! call swagger.io, is turned off. The page itself is ours (a few lines,
//! below) so that `/docs` needs no redirect: it loads the assets from
//! `/docs/<file>`, and `swagger-initializer.js` is generated with the
//! configuration pointing at `/openapi.json` — the same single document.

use std::sync::{Arc, OnceLock};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_swagger_ui::Config;

use crate::http::error::ApiError;

/// The page: Swagger UI's own stylesheet and scripts, from `/docs/`.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Delegation Ledger API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="stylesheet" href="/docs/index.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js" charset="utf-8"></script>
<script src="/docs/swagger-ui-standalone-preset.js" charset="utf-8"></script>
<script src="/docs/swagger-initializer.js" charset="utf-8"></script>
</body>
</html>
"#;

/// Scripts from this origin only; Swagger UI sets inline styles and draws
/// some icons as `data:` images, so those two are allowed; requests
/// ("Try it out") go to this origin only.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

/// Swagger UI's configuration: the one document, "Try it out" open, no
/// call to the public validator.
fn config() -> Arc<Config<'static>> {
    static CONFIG: OnceLock<Arc<Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Arc::new(
                Config::new(["/openapi.json"])
                    .try_it_out_enabled(true)
                    .validator_url("none")
                    .display_request_duration(true)
                    .filter(true),
            )
        })
        .clone()
}

/// `GET /docs`.
pub fn page() -> Response {
    respond("text/html; charset=utf-8", PAGE.as_bytes().to_vec())
}

/// `GET /docs/{file}`: one of Swagger UI's files.
pub fn file(name: &str) -> Response {
    match utoipa_swagger_ui::serve(name, config()) {
        Ok(Some(file)) if name != "index.html" => {
            respond(content_type(name), file.bytes.into_owned())
        }
        // Its own index page would load the assets relative to itself; ours
        // is /docs.
        Ok(_) => ApiError::not_found(format!("/docs has no file named {name:?}")).into_response(),
        Err(error) => {
            ApiError::internal(format!("Swagger UI file {name:?}: {error}")).into_response()
        }
    }
}

/// Exact types for the file kinds Swagger UI ships.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "png" => "image/png",
        "map" => "application/json",
        _ => "application/octet-stream",
    }
}

fn respond(content_type: &'static str, bytes: Vec<u8>) -> Response {
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_files_served_under_docs() {
        for line in PAGE.lines() {
            for attribute in ["href=\"", "src=\""] {
                if let Some(at) = line.find(attribute) {
                    let target = &line[at + attribute.len()..];
                    assert!(target.starts_with("/docs/"), "{line}");
                    let name = target["/docs/".len()..]
                        .split('"')
                        .next()
                        .unwrap_or_default();
                    assert!(
                        matches!(utoipa_swagger_ui::serve(name, config()), Ok(Some(_))),
                        "{name} is not a Swagger UI file"
                    );
                }
            }
        }
    }

    #[test]
    fn the_initializer_points_at_the_one_document_and_calls_no_validator() {
        let file = utoipa_swagger_ui::serve("swagger-initializer.js", config())
            .ok()
            .flatten()
            .expect("the initializer is embedded");
        let text = String::from_utf8_lossy(&file.bytes);

        assert!(text.contains("\"url\": \"/openapi.json\""), "{text}");
        assert!(text.contains("\"validatorUrl\": \"none\""), "{text}");
        assert!(!text.contains("https://"), "{text}");
    }
}
