//! Refusals every operation can meet, whatever its handler, described
//! once for all of them.

use utoipa::openapi::OpenApi as Document;
use utoipa::Modify;

use super::BEARER;

/// Refusals every operation can meet, whatever its handler: the service's
/// bounds answer 503 (too many requests in flight, the request timed out,
/// the database did not answer in time), and an operation taking a token
/// answers 429 once the client's address spent its budget of failed
/// authentications (or, for commands, the workspace its command rate).
pub struct Refusals;

impl Modify for Refusals {
    fn modify(&self, doc: &mut Document) {
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
}
