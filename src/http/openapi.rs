//! The OpenAPI 3.1 description of the API, generated from the handlers'
//! `#[utoipa::path]` attributes and the request/response types' derives,
//! so it cannot drift from the code silently: `GET /openapi.json` serves
//! it, `GET /docs` shows it in Swagger UI (with "Try it out"), and
//! `scripts/schemathesis` fuzzes the live service against it.
//!
//! The paths come from the same declaration the router serves
//! ([`super::described_routes`]); this file adds what is shared: the
//! title, the tags, the bearer security scheme, and the parts every
//! operation of a kind has ([`refusals`], [`consistency`]) or that link
//! operations ([`links`]).

mod consistency;
mod docs;
mod links;
mod refusals;

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiPath;
use super::AppState;

/// Name of the bearer security scheme in `components.securitySchemes`.
pub const BEARER: &str = "bearer";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(docs_page))
        .routes(routes!(docs_file))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Delegation Ledger",
        description = "An event-sourced ledger for agent-to-agent (A2A) task delegations. \
            Every error is `{\"error\": \"<human sentence>\", ...}`; a rejected request writes nothing.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "registry", description = "Register workspaces, report capacity, discover them"),
        (name = "delegations", description = "Delegate, record and follow delegations"),
        (name = "activity", description = "The activity feed"),
        (name = "queue", description = "Requests parked for busy targets"),
        (name = "live", description = "The live websocket feed"),
        (name = "audit", description = "The positioned, hash-chained log (admin token only)"),
        (name = "operations", description = "Health, readiness, metrics and this description"),
        (name = "console", description = "The web console"),
    ),
)]
struct ApiDoc;

/// Adds the bearer scheme the paths' `security(("bearer" = []))` refer to.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A workspace token (returned once by registration) or the admin token",
                    ))
                    .build(),
            ),
        );
    }
}

/// Names axum's wildcard segments (`{*rest}`, which a route needs to match
/// ids holding `/`) as OpenAPI path templates name every parameter
/// (`{rest}`).
struct AxumWildcards;

impl Modify for AxumWildcards {
    fn modify(&self, openapi: &mut Document) {
        let paths = &mut openapi.paths.paths;
        let wildcards: Vec<String> = paths.keys().filter(|p| p.contains("{*")).cloned().collect();
        for path in wildcards {
            if let Some(item) = paths.remove(&path) {
                paths.insert(path.replace("{*", "{"), item);
            }
        }
    }
}

/// The whole document: the routes as their handlers describe them, with
/// what this module adds.
pub fn document() -> Document {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::described_routes());
    let modifiers: [&dyn Modify; 4] = [
        &AxumWildcards,
        &refusals::Refusals,
        &consistency::ConsistencyTokens,
        &links::Links,
    ];
    for modifier in modifiers {
        modifier.modify(&mut doc);
    }
    doc
}

/// The document as JSON, built once. (Through `serde_json::Value`, whose
/// maps keep their keys sorted: the same bytes on every build.)
fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| match serde_json::to_value(document()) {
        Ok(doc) => doc.to_string(),
        Err(error) => {
            // Only a bug in a schema could do this; answer with what we have.
            tracing::error!(%error, "the OpenAPI document does not serialize");
            "{}".to_string()
        }
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

/// This document in Swagger UI, for people: every operation, with "Try it out".
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    responses((status = 200, description = "Swagger UI over /openapi.json (its files are served under /docs/)", content_type = "text/html", body = String)),
)]
async fn docs_page() -> Response {
    docs::page()
}

/// A file of Swagger UI (scripts, stylesheets, icons), embedded in the binary.
#[utoipa::path(
    get,
    path = "/docs/{file}",
    tag = "operations",
    params(("file" = String, Path, description = "The file's name, e.g. `swagger-ui-bundle.js`")),
    responses(
        (status = 200, description = "The file, with its content type (`text/javascript`, `text/css`, `image/png`, `application/json` for source maps)", content_type = "text/javascript", body = String),
        (status = 400, description = "The name is malformed (e.g. holds a NUL)", body = crate::http::error::ErrorBody),
        (status = 404, description = "Swagger UI has no such file", body = crate::http::error::ErrorBody),
    ),
)]
async fn docs_file(ApiPath(file): ApiPath<String>) -> Response {
    docs::file(&file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::{OperationBuilder, PathItem};
    use utoipa::openapi::{HttpMethod, PathsBuilder};

    #[test]
    fn a_wildcard_segment_is_documented_as_a_plain_parameter() {
        let item = || PathItem::new(HttpMethod::Get, OperationBuilder::new().build());
        let mut doc = ApiDoc::openapi();
        doc.paths = PathsBuilder::new()
            .path("/streams/{kind}/{*id}", item())
            .path("/plain/{id}", item())
            .build();
        AxumWildcards.modify(&mut doc);
        let paths: Vec<&String> = doc.paths.paths.keys().collect();
        assert_eq!(paths, ["/plain/{id}", "/streams/{kind}/{id}"]);
    }

    #[test]
    fn the_document_describes_the_wildcard_route_without_its_star() {
        let doc = document();
        assert!(doc
            .paths
            .paths
            .contains_key("/audit/streams/{aggregate_type}/{aggregate_id}"));
        assert!(!doc.paths.paths.keys().any(|p| p.contains('*')));
    }
}
