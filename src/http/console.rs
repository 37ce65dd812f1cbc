//! `GET /console` — the web console, served by the binary itself.
//!
//! Why it lives here: people would rather look than read JSON, and a
//! console that ships inside the binary needs no second deployment, no
//! CDN and no build step. The assets (plain HTML, CSS and JavaScript
//! modules in `console/` at the repository root) are embedded at compile
//! time; the console talks to the same REST API and websocket as any other
//! client, with the token the user typed (kept in the tab's
//! `sessionStorage`, sent as `Authorization` and, for the websocket only,
//! as `?token=`).
//!
//! Hostile by default: the delegations it shows carry text written by
//! untrusted agents, so the page renders through DOM APIs only and is
//! served with a strict Content-Security-Policy (scripts and styles from
//! this origin only, no inline script, nothing fetched from elsewhere, no
//! framing), `X-Content-Type-Options: nosniff` and exact content types.
//!
//! `GET /console/whoami` tells the console what a token is (the admin's,
//! or which workspace's), since a token alone does not say and the
//! console needs the workspace id for the workspace's REST routes.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiPath;
use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(whoami))
        .routes(routes!(asset))
}

/// One embedded file of the console.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the console is made of, by the name it is served under
/// (`/console/<name>`); the page itself is `index.html`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../console/index.html"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../console/console.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../../console/favicon.svg"),
    },
    Asset {
        name: "main.js",
        content_type: JS,
        bytes: include_bytes!("../../console/main.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        bytes: include_bytes!("../../console/api.js"),
    },
    Asset {
        name: "dom.js",
        content_type: JS,
        bytes: include_bytes!("../../console/dom.js"),
    },
    Asset {
        name: "feed.js",
        content_type: JS,
        bytes: include_bytes!("../../console/feed.js"),
    },
    Asset {
        name: "board.js",
        content_type: JS,
        bytes: include_bytes!("../../console/board.js"),
    },
    Asset {
        name: "detail.js",
        content_type: JS,
        bytes: include_bytes!("../../console/detail.js"),
    },
    Asset {
        name: "activity.js",
        content_type: JS,
        bytes: include_bytes!("../../console/activity.js"),
    },
    Asset {
        name: "queue.js",
        content_type: JS,
        bytes: include_bytes!("../../console/queue.js"),
    },
    Asset {
        name: "audit.js",
        content_type: JS,
        bytes: include_bytes!("../../console/audit.js"),
    },
];

/// The console page.
#[utoipa::path(get, path = "/console", tag = "console",
    responses((status = 200, description = "The web console (sign in with a workspace or the admin token; `/console#token=<token>` signs in directly)", content_type = "text/html", body = String)))]
async fn page(headers: HeaderMap) -> Response {
    match find("index.html") {
        Some(index) => serve(index, &headers),
        None => ApiError::internal("the console page is not embedded").into_response(),
    }
}

/// A file of the console (its scripts, styles and icon).
#[utoipa::path(get, path = "/console/{asset}", tag = "console",
    params(("asset" = String, Path, pattern = "^[a-z]+\\.(js|css|svg|html)$", description = "The file's name, e.g. `main.js`")),
    responses(
        (status = 200, description = "The file, with its content type (`text/javascript`, `text/css`, `image/svg+xml` or `text/html`)", content_type = "text/javascript", body = String),
        (status = 400, description = "The name is malformed (e.g. holds a NUL)", body = crate::http::error::ErrorBody),
        (status = 404, description = "The console has no such file", body = crate::http::error::ErrorBody),
    ))]
async fn asset(ApiPath(name): ApiPath<String>, headers: HeaderMap) -> Response {
    match find(&name) {
        Some(asset) => serve(asset, &headers),
        None => {
            ApiError::not_found(format!("the console has no file named {name:?}")).into_response()
        }
    }
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

/// The file with the console's security headers.
fn serve(asset: &'static Asset, headers: &HeaderMap) -> Response {
    let mut response = (StatusCode::OK, asset.bytes).into_response();
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if let Ok(policy) = HeaderValue::from_str(&content_security_policy(headers)) {
        out.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The files change with the binary: revalidate rather than keep a
    // stale console after an upgrade.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Everything from this origin only; no inline script or style, no
/// plugins, no framing, no form posts. The websocket is allowed to the
/// same host explicitly (`'self'` covers `ws:` only in newer browsers).
pub(super) fn content_security_policy(headers: &HeaderMap) -> String {
    let websocket = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .filter(|host| is_plain_host(host))
        .map(|host| format!(" ws://{host} wss://{host}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'{websocket}; object-src 'none'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'"
    )
}

/// A `Host` header that can go into the policy verbatim: a name or an
/// address with an optional port, nothing that could end a directive.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// What a token is, for the console.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Session {
    /// `admin` or `workspace`.
    #[schema(pattern = "^(admin|workspace)$")]
    role: &'static str,
    /// The workspace a workspace token acts for (absent for the admin).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    workspace_id: Option<Uuid>,
}

/// Who the bearer token belongs to: the admin, or which workspace.
#[utoipa::path(get, path = "/console/whoami", tag = "console", security(("bearer" = [])),
    responses(
        (status = 200, description = "The token's role (and workspace)", body = Session),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
    ))]
async fn whoami(caller: Caller) -> Json<Session> {
    Json(match caller {
        Caller::Admin => Session {
            role: "admin",
            workspace_id: None,
        },
        Caller::Workspace(id) => Session {
            role: "workspace",
            workspace_id: Some(id),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host(host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).expect("header"));
        headers
    }

    #[test]
    fn the_policy_allows_the_websocket_to_the_same_host_only() {
        let policy = content_security_policy(&with_host("127.0.0.1:8080"));

        assert!(policy.contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;"));
        assert!(policy.contains("script-src 'self';"));
        assert!(!policy.contains("unsafe"));
    }

    #[test]
    fn a_host_that_could_break_the_policy_is_left_out() {
        let policy = content_security_policy(&with_host("evil.example; script-src *"));

        assert!(policy.contains("connect-src 'self';"));
        assert!(!policy.contains("evil"));
    }

    #[test]
    fn every_asset_has_a_known_content_type() {
        for asset in ASSETS {
            let extension = asset.name.rsplit('.').next().unwrap_or_default();
            let expected = match extension {
                "html" => "text/html",
                "js" => "text/javascript",
                "css" => "text/css",
                "svg" => "image/svg+xml",
                other => panic!("{}: unexpected extension {other}", asset.name),
            };
            assert!(asset.content_type.starts_with(expected), "{}", asset.name);
        }
    }
}
