//! The agent card, and which protocol version and URL to use for a target.
//!
//! Why the choice is made here and not at registration alone: a target may
//! upgrade its agent from v0.3 to v1.0 (or sit behind a platform that
//! serves a different JSON-RPC path) without re-registering, and its card at
//! `/.well-known/agent-card.json` says so. The order is:
//!
//! 1. a version given at registration wins (an operator knows better than
//!    a stale card);
//! 2. otherwise v1.0 when the card's `supportedInterfaces[]` list a
//!    `protocolVersion` 1.x;
//! 3. otherwise the card's top-level (v0.3-era) `protocolVersion`, e.g.
//!    "0.3.0"; or a 0.3 entry in `supportedInterfaces`;
//! 4. otherwise — no card, or a card that names no version we speak — v0.3,
//!    the version most agents in the wild still accept.
//!
//! The URL is the card's JSON-RPC interface for the chosen version when it
//! names one (v1.0: `supportedInterfaces[]` with `protocolBinding`
//! "JSONRPC"; v0.3: the card's `url` when its `preferredTransport` is
//! JSON-RPC or absent, else an `additionalInterfaces[]` entry with
//! `transport` "JSONRPC"), resolved against the registered URL; only http(s)
//! URLs are taken. Otherwise the registered URL itself.
//!
//! Card reading is lenient: unknown fields are ignored and a field of the
//! wrong type counts as absent, so a slightly odd card still yields the
//! best choice instead of an error.

use serde_json::Value;
use url::Url;

use super::ProtocolVersion;

/// Path of the agent card, appended to the agent's base URL the way the
/// A2A SDK's card resolver does (base without trailing slash + path).
pub const AGENT_CARD_PATH: &str = "/.well-known/agent-card.json";

/// The URL of the agent card of the agent at `base_url`.
pub fn card_url(base_url: &str) -> String {
    format!("{}{}", base_url.trim_end_matches('/'), AGENT_CARD_PATH)
}

/// The parts of an agent card that decide how to talk to the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentCard {
    pub name: Option<String>,
    /// v0.3-era top-level `protocolVersion` (e.g. "0.3.0").
    pub protocol_version: Option<String>,
    /// v0.3-era top-level `url` (the preferred transport's endpoint).
    pub url: Option<String>,
    /// v0.3-era `preferredTransport` (e.g. "JSONRPC").
    pub preferred_transport: Option<String>,
    /// v1.0 `supportedInterfaces[]`.
    pub supported_interfaces: Vec<AgentInterface>,
    /// v0.3-era `additionalInterfaces[]`.
    pub additional_interfaces: Vec<AgentInterface>,
}

/// One way to reach the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentInterface {
    pub url: Option<String>,
    /// v1.0 `protocolBinding` or v0.3 `transport` ("JSONRPC", "GRPC", "HTTP+JSON").
    pub binding: Option<String>,
    /// v1.0 `protocolVersion` ("0.3", "1.0").
    pub protocol_version: Option<String>,
}

impl AgentCard {
    /// Reads a card from JSON. Fails only when the value is not an object.
    pub fn from_json(value: &Value) -> Result<AgentCard, String> {
        if !value.is_object() {
            return Err("the agent card is not a JSON object".to_string());
        }
        Ok(AgentCard {
            name: string(value, "name"),
            protocol_version: string(value, "protocolVersion"),
            url: string(value, "url"),
            preferred_transport: string(value, "preferredTransport"),
            supported_interfaces: interfaces(value, "supportedInterfaces", "protocolBinding"),
            additional_interfaces: interfaces(value, "additionalInterfaces", "transport"),
        })
    }

    /// Reads a card from a response body.
    pub fn parse(body: &[u8]) -> Result<AgentCard, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("the agent card is not JSON: {e}"))?;
        AgentCard::from_json(&value)
    }

    /// The version the card asks for, if it names one we speak.
    pub fn preferred_version(&self) -> Option<ProtocolVersion> {
        let listed = |wanted: ProtocolVersion| {
            self.supported_interfaces.iter().any(|i| {
                i.protocol_version
                    .as_deref()
                    .and_then(ProtocolVersion::from_version_str)
                    == Some(wanted)
            })
        };
        if listed(ProtocolVersion::V1_0) {
            return Some(ProtocolVersion::V1_0);
        }
        if let Some(version) = self
            .protocol_version
            .as_deref()
            .and_then(ProtocolVersion::from_version_str)
        {
            return Some(version);
        }
        if listed(ProtocolVersion::V0_3) {
            return Some(ProtocolVersion::V0_3);
        }
        None
    }

    /// The card's JSON-RPC URL for `version`, resolved against `base_url`.
    pub fn jsonrpc_url(&self, version: ProtocolVersion, base_url: &str) -> Option<String> {
        let from_interfaces = self
            .supported_interfaces
            .iter()
            .filter(|i| is_jsonrpc(i.binding.as_deref()))
            .filter(|i| {
                i.protocol_version
                    .as_deref()
                    .and_then(ProtocolVersion::from_version_str)
                    == Some(version)
            })
            .find_map(|i| i.url.as_deref().and_then(|u| resolve(base_url, u)));
        if from_interfaces.is_some() || version == ProtocolVersion::V1_0 {
            return from_interfaces;
        }
        // v0.3-era layout: the preferred transport's URL, then the extras.
        let preferred = self
            .url
            .as_deref()
            .filter(|_| is_jsonrpc(self.preferred_transport.as_deref()))
            .and_then(|u| resolve(base_url, u));
        preferred.or_else(|| {
            self.additional_interfaces
                .iter()
                .filter(|i| i.binding.as_deref().is_some_and(|b| is_jsonrpc(Some(b))))
                .find_map(|i| i.url.as_deref().and_then(|u| resolve(base_url, u)))
        })
    }
}

/// Where and how to reach a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The JSON-RPC URL to POST to.
    pub url: String,
    pub version: ProtocolVersion,
    /// What decided the version.
    pub source: EndpointSource,
}

/// What decided an endpoint's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointSource {
    /// The version given at registration.
    Configured,
    /// The agent card.
    Card,
    /// Nothing: no card, or none naming a version we speak.
    Fallback,
}

/// Chooses version and URL for the agent registered at `base_url` (see the
/// module docs for the order).
pub fn select_endpoint(
    base_url: &str,
    card: Option<&AgentCard>,
    configured: Option<ProtocolVersion>,
) -> Endpoint {
    let (version, source) = match (configured, card.and_then(AgentCard::preferred_version)) {
        (Some(version), _) => (version, EndpointSource::Configured),
        (None, Some(version)) => (version, EndpointSource::Card),
        (None, None) => (ProtocolVersion::V0_3, EndpointSource::Fallback),
    };
    let url = card
        .and_then(|c| c.jsonrpc_url(version, base_url))
        .unwrap_or_else(|| base_url.to_string());
    Endpoint {
        url,
        version,
        source,
    }
}

fn string(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn interfaces(card: &Value, key: &str, binding_key: &str) -> Vec<AgentInterface> {
    let Some(Value::Array(items)) = card.get(key) else {
        return Vec::new();
    };
    items
        .iter()
        .filter(|item| item.is_object())
        .map(|item| AgentInterface {
            url: string(item, "url"),
            binding: string(item, binding_key).or_else(|| string(item, "transport")),
            protocol_version: string(item, "protocolVersion"),
        })
        .collect()
}

/// JSON-RPC binding names as cards write them; an absent binding means the
/// default transport, which is JSON-RPC.
fn is_jsonrpc(binding: Option<&str>) -> bool {
    match binding {
        None => true,
        Some(b) => {
            let b: String = b
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_uppercase();
            b == "JSONRPC"
        }
    }
}

/// `candidate` resolved against `base` (relative URLs allowed), if it is an
/// http(s) URL.
fn resolve(base: &str, candidate: &str) -> Option<String> {
    let url = match Url::parse(base) {
        Ok(base) => base.join(candidate).ok()?,
        Err(_) => Url::parse(candidate).ok()?,
    };
    matches!(url.scheme(), "http" | "https").then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BASE: &str = "http://agent.test:9000";

    fn card(value: Value) -> AgentCard {
        AgentCard::from_json(&value).expect("a card")
    }

    #[test]
    fn the_card_url_is_the_well_known_path_under_the_base_url() {
        assert_eq!(
            card_url(BASE),
            "http://agent.test:9000/.well-known/agent-card.json"
        );
        assert_eq!(
            card_url("http://h/agents/x/"),
            "http://h/agents/x/.well-known/agent-card.json"
        );
    }

    #[test]
    fn a_card_listing_a_v1_0_interface_selects_v1_0_and_its_jsonrpc_url() {
        let c = card(json!({
            "name": "a",
            "supportedInterfaces": [
                { "url": "http://agent.test:9000/grpc", "protocolBinding": "GRPC", "protocolVersion": "1.0" },
                { "url": "http://agent.test:9000/a2a/jsonrpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0" },
                { "url": "http://agent.test:9000/v03", "protocolBinding": "JSONRPC", "protocolVersion": "0.3" }
            ],
            "protocolVersion": "0.3",
            "url": "http://agent.test:9000/v03"
        }));
        assert_eq!(
            select_endpoint(BASE, Some(&c), None),
            Endpoint {
                url: "http://agent.test:9000/a2a/jsonrpc".into(),
                version: ProtocolVersion::V1_0,
                source: EndpointSource::Card,
            }
        );
    }

    #[test]
    fn a_v0_3_card_selects_v0_3_and_its_url() {
        let c = card(json!({
            "name": "old", "protocolVersion": "0.3.0",
            "url": "http://agent.test:9000/rpc", "preferredTransport": "JSONRPC"
        }));
        assert_eq!(
            select_endpoint(BASE, Some(&c), None),
            Endpoint {
                url: "http://agent.test:9000/rpc".into(),
                version: ProtocolVersion::V0_3,
                source: EndpointSource::Card,
            }
        );
    }

    #[test]
    fn a_v0_3_card_preferring_grpc_uses_its_additional_jsonrpc_interface() {
        let c = card(json!({
            "protocolVersion": "0.3.0",
            "url": "http://agent.test:9000/grpc", "preferredTransport": "GRPC",
            "additionalInterfaces": [
                { "url": "http://agent.test:9000/rest", "transport": "HTTP+JSON" },
                { "url": "http://agent.test:9000/jsonrpc", "transport": "JSONRPC" }
            ]
        }));
        assert_eq!(
            select_endpoint(BASE, Some(&c), None).url,
            "http://agent.test:9000/jsonrpc"
        );
    }

    #[test]
    fn a_configured_version_wins_over_the_card_but_still_takes_the_cards_url() {
        let c = card(json!({
            "supportedInterfaces": [
                { "url": "http://agent.test:9000/v1", "protocolBinding": "JSONRPC", "protocolVersion": "1.0" },
                { "url": "http://agent.test:9000/v03", "protocolBinding": "JSONRPC", "protocolVersion": "0.3" }
            ]
        }));
        assert_eq!(
            select_endpoint(BASE, Some(&c), Some(ProtocolVersion::V0_3)),
            Endpoint {
                url: "http://agent.test:9000/v03".into(),
                version: ProtocolVersion::V0_3,
                source: EndpointSource::Configured,
            }
        );
    }

    #[test]
    fn no_card_falls_back_to_v0_3_at_the_registered_url() {
        assert_eq!(
            select_endpoint(BASE, None, None),
            Endpoint {
                url: BASE.into(),
                version: ProtocolVersion::V0_3,
                source: EndpointSource::Fallback,
            }
        );
        assert_eq!(
            select_endpoint(BASE, None, Some(ProtocolVersion::V1_0)).source,
            EndpointSource::Configured
        );
    }

    #[test]
    fn a_card_naming_no_version_we_speak_falls_back_to_v0_3() {
        for value in [
            json!({ "name": "x" }),
            json!({ "protocolVersion": "0.2.6", "url": "http://agent.test:9000/old" }),
            json!({ "supportedInterfaces": [{ "url": "http://x", "protocolVersion": "2.0" }] }),
            json!({ "supportedInterfaces": "not a list", "protocolVersion": 3 }),
        ] {
            let endpoint = select_endpoint(BASE, Some(&card(value.clone())), None);
            assert_eq!(endpoint.version, ProtocolVersion::V0_3, "{value}");
            assert_eq!(endpoint.source, EndpointSource::Fallback, "{value}");
        }
    }

    #[test]
    fn a_top_level_protocol_version_of_1_selects_v1_0() {
        let c = card(json!({ "protocolVersion": "1.0", "url": "http://agent.test:9000/" }));
        assert_eq!(c.preferred_version(), Some(ProtocolVersion::V1_0));
        // No v1.0 JSON-RPC interface is listed, so the registered URL is used.
        assert_eq!(select_endpoint(BASE, Some(&c), None).url, BASE);
    }

    #[test]
    fn a_v1_0_card_without_a_jsonrpc_interface_url_uses_the_registered_url() {
        let c = card(json!({
            "supportedInterfaces": [
                { "url": "grpc://agent.test:9001", "protocolBinding": "GRPC", "protocolVersion": "1.0" }
            ]
        }));
        let endpoint = select_endpoint(BASE, Some(&c), None);
        assert_eq!(endpoint.version, ProtocolVersion::V1_0);
        assert_eq!(endpoint.url, BASE);
    }

    #[test]
    fn relative_interface_urls_are_resolved_and_non_http_urls_ignored() {
        let c = card(json!({
            "supportedInterfaces": [
                { "url": "file:///etc/passwd", "protocolBinding": "JSONRPC", "protocolVersion": "1.0" },
                { "url": "/a2a", "protocolBinding": "json-rpc", "protocolVersion": "1.0.0" }
            ]
        }));
        assert_eq!(
            select_endpoint(BASE, Some(&c), None).url,
            "http://agent.test:9000/a2a"
        );
    }

    #[test]
    fn cards_that_are_not_json_objects_are_rejected() {
        assert!(AgentCard::parse(b"<html>").is_err());
        assert!(AgentCard::parse(b"[]").is_err());
        assert!(AgentCard::parse(b"{}").is_ok());
    }

    #[test]
    fn the_sdk_cards_both_layouts_are_read() {
        // As served by the a2a-sdk 1.3 with a v1.0 and a v0.3 interface: the
        // v1.0 fields plus the v0.3 compat fields merged in.
        let c = AgentCard::parse(
            br#"{"name":"uppercase-agent","supportedInterfaces":[
                {"url":"http://127.0.0.1:1/","protocolBinding":"JSONRPC","protocolVersion":"1.0"},
                {"url":"http://127.0.0.1:1/","protocolBinding":"JSONRPC","protocolVersion":"0.3"}],
                "version":"1.0.0","preferredTransport":"JSONRPC","protocolVersion":"0.3",
                "url":"http://127.0.0.1:1/"}"#,
        )
        .expect("a card");
        assert_eq!(c.name.as_deref(), Some("uppercase-agent"));
        assert_eq!(c.preferred_version(), Some(ProtocolVersion::V1_0));
        assert_eq!(
            c.jsonrpc_url(ProtocolVersion::V0_3, BASE).as_deref(),
            Some("http://127.0.0.1:1/")
        );
    }
}
