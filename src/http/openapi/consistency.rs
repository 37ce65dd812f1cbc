//! The consistency tokens in the document: every command's answer names
//! its position, every read of the ledger's data may name one it must see.

use utoipa::openapi::OpenApi as Document;
use utoipa::Modify;

/// The consistency tokens (see `crate::http::consistency`): every command's 2xx
/// answer names the position it reached; every read of the ledger's data
/// may name a position it must see, and answers 503 when the views did not
/// reach it in time.
pub struct ConsistencyTokens;

impl Modify for ConsistencyTokens {
    fn modify(&self, doc: &mut Document) {
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
                        crate::http::consistency::MIN_POSITION_PARAM,
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
}
