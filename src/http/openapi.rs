//! The OpenAPI 3.1 description of the API, generated from the handlers'
//! `#[utoipa::path]` attributes and the request/response types' derives,
//! so it cannot drift from the code silently: `GET /openapi.json` serves
//! it, `GET /docs` shows it in Swagger UI (with "Try it out"), `tests/openapi.rs` checks it
//! covers the router, and `scripts/schemathesis` fuzzes the live service
//! against it.
//!
//! Each handler module holds a small `Api` (its paths); this file merges
//! them and adds what is shared: the bearer security scheme, the tags and
//! the routes served here.

mod docs;
mod links;
pub(super) mod schemas;

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::OpenApi;

use super::extract::ApiPath;
use super::AppState;

/// Name of the bearer security scheme in `components.securitySchemes`.
pub const BEARER: &str = "bearer";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs_page))
        .route("/docs/{file}", get(docs_file))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Delegation Ledger",
        description = "An event-sourced ledger for agent-to-agent (A2A) task delegations. \
            Every error is `{\"error\": \"<human sentence>\", ...}`; a rejected request writes nothing.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(openapi_json, docs_page, docs_file),
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

impl utoipa::Modify for BearerScheme {
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

/// Refusals every operation can meet, whatever its handler: the service's
/// bounds answer 503 (too many requests in flight, the request timed out,
/// the database did not answer in time), and an operation taking a token
/// answers 429 once the client's address spent its budget of failed
/// authentications (or, for commands, the workspace its command rate).
fn add_bound_responses(doc: &mut Document) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let refusal = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .header(
                "Retry-After",
                utoipa::openapi::HeaderBuilder::new()
                    .schema(
                        utoipa::openapi::ObjectBuilder::new()
                            .schema_type(utoipa::openapi::schema::Type::Integer),
                    )
                    .description(Some("Seconds to wait before trying again"))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let takes_token = operation.security.iter().flatten().any(|requirement| {
                serde_json::to_value(requirement)
                    .ok()
                    .and_then(|value| value.as_object().map(|o| o.contains_key(BEARER)))
                    .unwrap_or(false)
            });
            let responses = &mut operation.responses.responses;
            responses.entry("503".to_string()).or_insert_with(|| {
                refusal("The service is at its limit of requests in flight, the request took too long, or the database did not answer in time").into()
            });
            if takes_token {
                responses.entry("429".to_string()).or_insert_with(|| {
                    refusal("Too many failed authentications from this address, or too many commands for this workspace").into()
                });
            }
        }
    }
}

/// The consistency tokens (see `super::consistency`): every command's 2xx
/// answer names the position it reached; every read of the ledger's data
/// may name a position it must see, and answers 503 when the views did not
/// reach it in time.
fn add_consistency(doc: &mut Document) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::Type;
    use utoipa::openapi::{
        ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, Required, ResponseBuilder,
    };
    const DATA_TAGS: [&str; 6] = [
        "registry",
        "delegations",
        "activity",
        "queue",
        "audit",
        "live",
    ];
    let position = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
    };
    let min_position = |place: ParameterIn, name: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(place)
            .required(Required::False)
            .schema(Some(position()))
            .description(Some(
                "Serve the read only once the views it reads have applied this log position (a command's X-Ledger-Position); 503 with Retry-After when they do not within the configured wait",
            ))
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        for operation in [&mut item.get].into_iter().flatten() {
            let reads_data = operation
                .tags
                .iter()
                .flatten()
                .any(|tag| DATA_TAGS.contains(&tag.as_str()));
            if reads_data {
                let parameters = operation.parameters.get_or_insert_with(Vec::new);
                parameters.push(min_position(
                    ParameterIn::Query,
                    super::consistency::MIN_POSITION_PARAM,
                ));
                parameters.push(min_position(ParameterIn::Header, "X-Ledger-Min-Position"));
                operation
                    .responses
                    .responses
                    .entry("400".to_string())
                    .or_insert_with(|| {
                        ResponseBuilder::new()
                            .description("A parameter is malformed (e.g. min_position is not a non-negative integer)")
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                                    .build(),
                            )
                            .into()
                    });
            }
        }
        for operation in [&mut item.post].into_iter().flatten() {
            for (status, response) in operation.responses.responses.iter_mut() {
                let utoipa::openapi::RefOr::T(response) = response else {
                    continue;
                };
                if status.starts_with('2') {
                    response.headers.insert(
                        "X-Ledger-Position".to_string(),
                        HeaderBuilder::new()
                            .schema(position())
                            .description(Some(
                                "The log position the command's events reached (also the body's `position` field): pass it as min_position to read your own write on any node or replica",
                            ))
                            .build(),
                    );
                }
            }
        }
    }
}

/// The whole document.
pub fn document() -> Document {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::health::Api::openapi());
    doc.merge(super::metrics::Api::openapi());
    doc.merge(super::registry::Api::openapi());
    doc.merge(super::delegations::Api::openapi());
    doc.merge(super::activity::Api::openapi());
    doc.merge(super::queue::Api::openapi());
    doc.merge(super::live::Api::openapi());
    doc.merge(super::audit::Api::openapi());
    doc.merge(super::console::Api::openapi());
    add_bound_responses(&mut doc);
    add_consistency(&mut doc);
    doc
}

/// The document as JSON (with the links), built once.
fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| match serde_json::to_value(document()) {
        Ok(mut doc) => {
            links::add(&mut doc);
            doc.to_string()
        }
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
