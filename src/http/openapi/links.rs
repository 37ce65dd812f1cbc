//! OpenAPI links: which response feeds which operation's parameters (a
//! registered workspace's id into its delegations, a new delegation's id
//! into its update and view, …). Clients may read them as documentation;
//! schemathesis' stateful phase follows them to chain real requests.

use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::link::{Link, LinkBuilder};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::{HttpMethod, OpenApi as Document, RefOr};
use utoipa::Modify;

/// A link from one operation's response to another operation.
struct LinkSpec {
    /// The response the link starts from: path, method and status.
    path: &'static str,
    method: HttpMethod,
    status: &'static str,
    /// The link's name, unique within that response.
    name: &'static str,
    /// The operation it leads to.
    operation_id: &'static str,
    /// Each of that operation's parameters, and the runtime expression
    /// giving its value.
    parameters: &'static [(&'static str, &'static str)],
}

const LINKS: &[LinkSpec] = &[
    LinkSpec {
        path: "/registry/register",
        method: HttpMethod::Post,
        status: "200",
        name: "Discover",
        operation_id: "discover",
        parameters: &[("id", "$response.body#/id")],
    },
    LinkSpec {
        path: "/registry/register",
        method: HttpMethod::Post,
        status: "200",
        name: "ListDelegations",
        operation_id: "list",
        parameters: &[("id", "$response.body#/id")],
    },
    LinkSpec {
        path: "/registry/register",
        method: HttpMethod::Post,
        status: "200",
        name: "Activity",
        operation_id: "activity",
        parameters: &[("id", "$response.body#/id")],
    },
    LinkSpec {
        path: "/workspaces/{id}/delegate",
        method: HttpMethod::Post,
        status: "202",
        name: "GetDelegation",
        operation_id: "get_one",
        parameters: &[
            ("id", "$request.path.id"),
            ("delegation_id", "$response.body#/delegation_id"),
        ],
    },
    LinkSpec {
        path: "/workspaces/{id}/delegate",
        method: HttpMethod::Post,
        status: "202",
        name: "UpdateDelegation",
        operation_id: "update",
        parameters: &[
            ("id", "$request.path.id"),
            ("delegation_id", "$response.body#/delegation_id"),
        ],
    },
    LinkSpec {
        path: "/workspaces/{id}/delegations/record",
        method: HttpMethod::Post,
        status: "202",
        name: "GetDelegation",
        operation_id: "get_one",
        parameters: &[
            ("id", "$request.path.id"),
            ("delegation_id", "$response.body#/delegation_id"),
        ],
    },
    LinkSpec {
        path: "/workspaces/{id}/delegations/record",
        method: HttpMethod::Post,
        status: "202",
        name: "UpdateDelegation",
        operation_id: "update",
        parameters: &[
            ("id", "$request.path.id"),
            ("delegation_id", "$response.body#/delegation_id"),
        ],
    },
    LinkSpec {
        path: "/workspaces/{id}/delegations/{delegation_id}/update",
        method: HttpMethod::Post,
        status: "200",
        name: "GetDelegation",
        operation_id: "get_one",
        parameters: &[
            ("id", "$request.path.id"),
            ("delegation_id", "$request.path.delegation_id"),
        ],
    },
    LinkSpec {
        path: "/workspaces/{id}/delegations",
        method: HttpMethod::Get,
        status: "200",
        name: "GetFirstDelegation",
        operation_id: "get_one",
        parameters: &[
            ("id", "$request.path.id"),
            ("delegation_id", "$response.body#/0/delegation_id"),
        ],
    },
    LinkSpec {
        path: "/workspaces/{id}/activity",
        method: HttpMethod::Get,
        status: "200",
        name: "ActivityAfterFirst",
        operation_id: "activity",
        parameters: &[
            ("id", "$request.path.id"),
            ("since_id", "$response.body#/0/id"),
        ],
    },
    LinkSpec {
        path: "/audit/events",
        method: HttpMethod::Get,
        status: "200",
        name: "FirstEventStream",
        operation_id: "stream",
        parameters: &[
            ("aggregate_type", "$response.body#/events/0/aggregate_type"),
            ("aggregate_id", "$response.body#/events/0/aggregate_id"),
        ],
    },
];

/// Adds [`LINKS`] to the responses they start from. A link whose response
/// is not in the document is skipped; `tests/openapi.rs` checks none is.
pub struct Links;

impl Modify for Links {
    fn modify(&self, doc: &mut Document) {
        for spec in LINKS {
            let response = doc
                .paths
                .paths
                .get_mut(spec.path)
                .and_then(|item| operation_mut(item, &spec.method))
                .and_then(|operation| operation.responses.responses.get_mut(spec.status));
            if let Some(RefOr::T(response)) = response {
                response
                    .links
                    .insert(spec.name.to_string(), RefOr::T(link(spec)));
            }
        }
    }
}

/// The link [`LinkSpec`] describes.
///
/// utoipa 5.5's `Link` serializes its `operation_id` field as
/// `operation_id` (the struct lacks `rename_all = "camelCase"`), a key no
/// OpenAPI reader knows. So the field stays empty (and is then left out)
/// and the spec's `operationId` key goes in through the link's
/// extensions, which are written flattened under the key given —
/// `Extensions::from_iter` does not add the `x-` prefix the builder would.
fn link(spec: &LinkSpec) -> Link {
    let operation_id = Extensions::from_iter([("operationId", spec.operation_id)]);
    spec.parameters
        .iter()
        .fold(LinkBuilder::new(), |link, (name, value)| {
            link.parameter(*name, *value)
        })
        .extensions(Some(operation_id))
        .build()
}

fn operation_mut<'a>(item: &'a mut PathItem, method: &HttpMethod) -> Option<&'a mut Operation> {
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Put => item.put.as_mut(),
        HttpMethod::Delete => item.delete.as_mut(),
        HttpMethod::Options => item.options.as_mut(),
        HttpMethod::Head => item.head.as_mut(),
        HttpMethod::Patch => item.patch.as_mut(),
        HttpMethod::Trace => item.trace.as_mut(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_names_its_operation_as_the_specification_spells_it() {
        let spec = &LINKS[3];
        let link = serde_json::to_value(link(spec)).expect("a link serializes");
        assert_eq!(
            link,
            serde_json::json!({
                "operationId": "get_one",
                "parameters": {
                    "id": "$request.path.id",
                    "delegation_id": "$response.body#/delegation_id",
                },
            })
        );
    }

    #[test]
    fn every_link_lands_on_a_documented_response() {
        let doc = serde_json::to_value(super::super::document()).expect("serializes");
        let mut landed = 0;
        for spec in LINKS {
            let method = serde_json::to_value(&spec.method).expect("a method serializes");
            let pointer = format!(
                "/paths/{}/{}/responses/{}/links/{}/operationId",
                spec.path.replace('~', "~0").replace('/', "~1"),
                method.as_str().unwrap_or_default(),
                spec.status,
                spec.name,
            );
            assert_eq!(
                doc.pointer(&pointer).and_then(|v| v.as_str()),
                Some(spec.operation_id),
                "{pointer}"
            );
            landed += 1;
        }
        assert_eq!(landed, LINKS.len());
    }
}
