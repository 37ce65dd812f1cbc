//! OpenAPI links: which response feeds which operation's parameters (a
//! registered workspace's id into its delegations, a new delegation's id
//! into its update and view, …). Clients may read them as documentation;
//! schemathesis' stateful phase follows them to chain real requests.

use serde_json::{json, Map, Value};

/// (path, method, status, link name, target operation id, parameters).
type LinkSpec = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const LINKS: &[LinkSpec] = &[
    (
        "/registry/register",
        "post",
        "200",
        "Discover",
        "discover",
        &[("id", "$response.body#/id")],
    ),
    (
        "/registry/register",
        "post",
        "200",
        "ListDelegations",
        "list",
        &[("id", "$response.body#/id")],
    ),
    (
        "/registry/register",
        "post",
        "200",
        "Activity",
        "activity",
        &[("id", "$response.body#/id")],
    ),
    (
        "/workspaces/{id}/delegate",
        "post",
        "202",
        "GetDelegation",
        "get_one",
        &[
            ("id", "$request.path.id"),
            ("delegation_id", "$response.body#/delegation_id"),
        ],
    ),
    (
        "/workspaces/{id}/delegate",
        "post",
        "202",
        "UpdateDelegation",
        "update",
        &[
            ("id", "$request.path.id"),
            ("delegation_id", "$response.body#/delegation_id"),
        ],
    ),
    (
        "/workspaces/{id}/delegations/record",
        "post",
        "202",
        "GetDelegation",
        "get_one",
        &[
            ("id", "$request.path.id"),
            ("delegation_id", "$response.body#/delegation_id"),
        ],
    ),
    (
        "/workspaces/{id}/delegations/record",
        "post",
        "202",
        "UpdateDelegation",
        "update",
        &[
            ("id", "$request.path.id"),
            ("delegation_id", "$response.body#/delegation_id"),
        ],
    ),
    (
        "/workspaces/{id}/delegations/{delegation_id}/update",
        "post",
        "200",
        "GetDelegation",
        "get_one",
        &[
            ("id", "$request.path.id"),
            ("delegation_id", "$request.path.delegation_id"),
        ],
    ),
    (
        "/workspaces/{id}/delegations",
        "get",
        "200",
        "GetFirstDelegation",
        "get_one",
        &[
            ("id", "$request.path.id"),
            ("delegation_id", "$response.body#/0/delegation_id"),
        ],
    ),
    (
        "/workspaces/{id}/activity",
        "get",
        "200",
        "ActivityAfterFirst",
        "activity",
        &[
            ("id", "$request.path.id"),
            ("since_id", "$response.body#/0/id"),
        ],
    ),
    (
        "/audit/events",
        "get",
        "200",
        "FirstEventStream",
        "stream",
        &[
            ("aggregate_type", "$response.body#/events/0/aggregate_type"),
            ("aggregate_id", "$response.body#/events/0/aggregate_id"),
        ],
    ),
];

/// Add [`LINKS`] to the responses of `doc`, the document in its JSON form
/// (utoipa 5's `Link` serializes `operation_id` in snake case, which no
/// OpenAPI reader understands). A link whose response is not in the
/// document is skipped; `tests/openapi.rs` checks none is.
pub fn add(doc: &mut Value) {
    for (path, method, status, name, operation_id, parameters) in LINKS {
        let Some(response) = doc
            .pointer_mut(&format!(
                "/paths/{}/{method}/responses/{status}",
                path.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let parameters: Map<String, Value> = parameters
            .iter()
            .map(|(name, value)| ((*name).to_string(), json!(value)))
            .collect();
        let links = response
            .entry("links")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(links) = links {
            links.insert(
                (*name).to_string(),
                json!({ "operationId": operation_id, "parameters": parameters }),
            );
        }
    }
}
