//! Where the ledger may connect: the outbound policy for every A2A call.
//!
//! Anyone may register a workspace with a URL of their choosing, and an
//! agent card may name any URL; the dispatcher then makes HTTP requests to
//! it. Without a policy, that is a server-side request forgery: a stranger
//! makes the ledger call its own `/metrics`, the cloud metadata service at
//! 169.254.169.254, or a database on the private network.
//!
//! # What is refused
//!
//! Loopback, private (10/8, 172.16/12, 192.168/16), link-local
//! (169.254/16, fe80::/10), shared address space/CGNAT (100.64/10), unique-local
//! (fc00::/7), unspecified (0.0.0.0/8, ::), multicast, broadcast and the
//! reserved ranges (240/4, 192.0.0/24, 198.18/15, fec0::/10) — and the same
//! addresses in IPv6 clothing: IPv4-mapped (`::ffff:a.b.c.d`),
//! IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4
//! (`2002::/16`). The operator allows ranges explicitly
//! (`--allow-outbound 127.0.0.0/8` for agents on the same host).
//!
//! # Where it is checked
//!
//! On the address actually connected to, not on the URL's text, so a name
//! that resolves to a private address — or one that resolves differently
//! by the time of the request (DNS rebinding) — cannot slip through:
//!
//! * names go through [`PolicyResolver`], the HTTP client's only resolver:
//!   it resolves, drops every refused address, and fails when none is
//!   left. The client connects only to addresses its resolver returned.
//! * an IP literal in a URL is never resolved, so [`OutboundPolicy::check_url`]
//!   checks it before the request is built.
//! * redirects are never followed and environment proxies are ignored
//!   (see `client.rs`), so no request goes anywhere but where these two
//!   checks looked.
//!
//! Registration applies [`OutboundPolicy::check_url`] too, so a URL whose
//! literal host is refused is a 400 at once rather than a failed delegation
//! later.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use url::{Host, Url};

/// The ranges the operator allowed on top of the public internet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allowed: Vec<IpNet>,
}

/// Why a destination was refused. Its text names the policy and the flag
/// that changes it, so a failed delegation explains itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "the outbound policy refuses {address} ({class} address); an operator may allow it with --allow-outbound"
    )]
    Address {
        address: IpAddr,
        class: &'static str,
    },
    #[error("the outbound policy refuses URLs with credentials (user:password@) in them")]
    Credentials,
    #[error("the outbound policy found no address for {host} it may connect to")]
    NoAddress { host: String },
}

impl OutboundPolicy {
    /// Only public addresses (the default).
    pub fn public_only() -> Self {
        Self::default()
    }

    /// Public addresses and `allowed`.
    pub fn allowing(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// The ranges allowed on top of the public internet.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }

    /// May the ledger connect to `ip`?
    pub fn permits(&self, ip: IpAddr) -> Result<(), Refused> {
        let embedded = embedded_ipv4(ip);
        let allowed = |ip: IpAddr| self.allowed.iter().any(|net| net.contains(&ip));
        if allowed(ip) || embedded.is_some_and(|v4| allowed(IpAddr::V4(v4))) {
            return Ok(());
        }
        match forbidden_class(ip) {
            None => Ok(()),
            Some(class) => Err(Refused::Address { address: ip, class }),
        }
    }

    /// What can be checked from a URL's text: no credentials, and an IP
    /// literal host must be permitted. (A name is checked when it is
    /// resolved, by [`PolicyResolver`].)
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::Credentials);
        }
        match url.host() {
            Some(Host::Ipv4(ip)) => self.permits(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.permits(IpAddr::V6(ip)),
            Some(Host::Domain(_)) | None => Ok(()),
        }
    }
}

/// `--allow-outbound` / `LEDGER_ALLOW_OUTBOUND`: CIDRs separated by commas
/// (a bare address is a single-address range).
impl FromStr for OutboundPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut allowed = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => item
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| format!("{item:?} is not a CIDR range such as 127.0.0.0/8"))?,
            };
            allowed.push(net);
        }
        Ok(Self::allowing(allowed))
    }
}

impl fmt::Display for OutboundPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allowed.is_empty() {
            return f.write_str("public addresses only");
        }
        let ranges: Vec<String> = self.allowed.iter().map(ToString::to_string).collect();
        write!(f, "public addresses and {}", ranges.join(", "))
    }
}

/// The kind of non-public address `ip` is, or `None` for a public one.
pub fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private",
        _ if ip.is_link_local() => "link-local",
        _ if a == 0 => "unspecified",
        _ if a == 100 && (64..128).contains(&b) => "shared (CGNAT)",
        _ if ip.is_broadcast() => "broadcast",
        _ if ip.is_multicast() => "multicast",
        _ if a >= 240 => "reserved",
        _ if a == 192 && b == 0 && c == 0 => "reserved",
        _ if a == 198 && (b == 18 || b == 19) => "reserved",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_ipv4(IpAddr::V6(ip)) {
        return forbidden_v4(v4);
    }
    let first = ip.segments()[0];
    Some(match () {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_unicast_link_local() => "link-local",
        _ if ip.is_unique_local() => "unique-local",
        _ if first & 0xffc0 == 0xfec0 => "site-local",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address carries, for the forms a host or a
/// gateway turns back into that IPv4 address: IPv4-mapped, IPv4-compatible
/// (not `::` and `::1`), NAT64's well-known prefix and 6to4.
fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
        return Some(tail); // IPv4-compatible
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail); // NAT64
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        )); // 6to4
    }
    None
}

/// The HTTP client's resolver: resolves a name with the system resolver
/// and keeps only the addresses the policy permits.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: Arc<OutboundPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<OutboundPolicy>) -> Self {
        Self { policy }
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let permitted: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.permits(addr.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused = Some(why);
                        false
                    }
                })
                .collect();
            if permitted.is_empty() {
                let why = refused.unwrap_or(Refused::NoAddress { host });
                return Err(Box::new(why) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The policy refusal somewhere in an error's chain of sources, if any
/// (the client's transport errors wrap the resolver's).
pub fn refusal_in<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Refused> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused);
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    #[test]
    fn public_addresses_are_permitted() {
        let policy = OutboundPolicy::public_only();
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert_eq!(policy.permits(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn every_non_public_range_is_refused_with_its_class() {
        let policy = OutboundPolicy::public_only();
        for (address, class) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("100.127.255.255", "shared (CGNAT)"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            ("198.18.0.1", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("ff02::1", "multicast"),
            ("fec0::1", "site-local"),
        ] {
            assert_eq!(
                policy.permits(ip(address)),
                Err(Refused::Address {
                    address: ip(address),
                    class
                }),
                "{address}"
            );
        }
    }

    #[test]
    fn ipv4_addresses_dressed_as_ipv6_are_judged_as_the_ipv4_they_carry() {
        let policy = OutboundPolicy::public_only();
        for dressed in [
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(policy.permits(ip(dressed)).is_err(), "{dressed}");
        }
        assert_eq!(policy.permits(ip("::ffff:8.8.8.8")), Ok(()));
        assert_eq!(policy.permits(ip("2002:808:808::1")), Ok(()));
    }

    #[test]
    fn allowed_ranges_open_exactly_those_ranges() {
        let policy: OutboundPolicy = "127.0.0.0/8, 10.1.0.0/16,192.168.7.7"
            .parse()
            .expect("ranges");
        assert_eq!(policy.permits(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.permits(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(policy.permits(ip("10.1.200.3")), Ok(()));
        assert_eq!(policy.permits(ip("192.168.7.7")), Ok(()));
        assert!(policy.permits(ip("10.2.0.1")).is_err());
        assert!(policy.permits(ip("192.168.7.8")).is_err());
        assert!(policy.permits(ip("::1")).is_err());
        assert!("127.0.0.0/33".parse::<OutboundPolicy>().is_err());
        assert!("localhost".parse::<OutboundPolicy>().is_err());
        assert_eq!(
            "".parse::<OutboundPolicy>(),
            Ok(OutboundPolicy::public_only())
        );
    }

    #[test]
    fn urls_are_refused_for_credentials_and_refused_literal_hosts() {
        let policy = OutboundPolicy::public_only();
        let url = |text: &str| Url::parse(text).expect("a URL");
        assert_eq!(policy.check_url(&url("https://agent.example/a2a")), Ok(()));
        assert_eq!(policy.check_url(&url("http://93.184.216.34:8080/")), Ok(()));
        assert_eq!(
            policy.check_url(&url("https://user:pw@agent.example/")),
            Err(Refused::Credentials)
        );
        assert_eq!(
            policy.check_url(&url("https://user@agent.example/")),
            Err(Refused::Credentials)
        );
        assert!(policy.check_url(&url("http://127.0.0.1:9/")).is_err());
        assert!(policy.check_url(&url("http://[::1]:9/")).is_err());
        assert!(policy
            .check_url(&url("http://[::ffff:a9fe:a9fe]/"))
            .is_err());
        // Decimal and hex spellings of an address are literals to the URL
        // parser too, so they are judged as the address they spell.
        assert!(policy.check_url(&url("http://2130706433/")).is_err());
        assert!(policy.check_url(&url("http://0x7f.1/")).is_err());
    }

    #[test]
    fn a_refusal_names_the_policy_and_the_flag() {
        let text = OutboundPolicy::public_only()
            .permits(ip("169.254.169.254"))
            .expect_err("refused")
            .to_string();
        assert!(text.contains("outbound policy") && text.contains("--allow-outbound"));
        assert!(text.contains("169.254.169.254") && text.contains("link-local"));
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses_and_fails_when_none_is_left() {
        use reqwest::dns::Resolve;
        let strict = PolicyResolver::new(Arc::new(OutboundPolicy::public_only()));
        let name = reqwest::dns::Name::from_str("localhost")
            .map_err(|_| "invalid")
            .expect("a name");
        let error = match strict.resolve(name).await {
            Ok(_) => panic!("localhost resolves to loopback only"),
            Err(error) => error,
        };
        assert!(refusal_in(error.as_ref()).is_some(), "{error}");

        let open = PolicyResolver::new(Arc::new("127.0.0.0/8".parse().expect("a range")));
        let name = reqwest::dns::Name::from_str("localhost")
            .map_err(|_| "invalid")
            .expect("a name");
        let addrs: Vec<SocketAddr> = match open.resolve(name).await {
            Ok(addrs) => addrs.collect(),
            Err(error) => panic!("localhost is allowed: {error}"),
        };
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.is_ipv4()),
            "{addrs:?}"
        );
    }
}
