//! Bounds on what one caller can make the service do.
//!
//! Every resource a stranger can reach has a bound, each a setting
//! ([`Limits`], README "Configuration"):
//!
//! * **Rate limits** (answered 429 with `Retry-After`), from the `governor`
//!   crate's keyed GCRA limiters: registrations per client address (anyone
//!   may register, so this is what stops a flood of workspaces), failed
//!   authentications per client address (once exhausted, that address's
//!   token attempts are refused until the budget recovers, so guessing
//!   stays slow whatever the answer would have been), and commands per
//!   workspace.
//! * **Concurrency and time** (applied in `super::router`): at most
//!   `max_in_flight_requests` requests at once (more are shed with 503 and
//!   `Retry-After`), and `request_timeout` per request (websocket upgrades
//!   excepted: a feed lives as long as its client).
//! * **The live feed** has its own bounds (subscribers per token and in
//!   total, the size of what a client may send): `ws::HubConfig`.
//!
//! The client address is the TCP peer's, unless the operator names a
//! header set by a reverse proxy they run (`trusted_client_ip_header`):
//! then its *last* value, the one the proxy appended, is used. A header is
//! never trusted by default — any client could write one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use super::error::ApiError;

/// The bounds, as configured.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest a request may take (websocket upgrades excepted); 503 after.
    pub request_timeout: Duration,
    /// Most requests served at once; more are refused with 503.
    pub max_in_flight_requests: usize,
    /// Registrations of new workspaces per client address per minute (0:
    /// unlimited).
    pub registrations_per_minute: u32,
    /// Failed authentications per client address per minute before its
    /// attempts are refused (0: unlimited).
    pub auth_failures_per_minute: u32,
    /// Commands (POSTs) per workspace per second, with bursts of twice that
    /// (0: unlimited). The admin is not limited.
    pub commands_per_second: u32,
    /// A header holding the client address, set by a reverse proxy the
    /// operator runs (e.g. `x-forwarded-for`); `None`: the TCP peer.
    pub trusted_client_ip_header: Option<HeaderName>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_in_flight_requests: 512,
            registrations_per_minute: 30,
            auth_failures_per_minute: 30,
            commands_per_second: 100,
            trusted_client_ip_header: None,
        }
    }
}

/// How often (in checks) a limiter forgets keys that are back to a full
/// budget, so its memory is bounded by the keys active recently.
const RETAIN_EVERY: u64 = 4096;

/// Blocked addresses kept before expired ones are swept out.
const MAX_BLOCKED: usize = 65_536;

/// A keyed rate limiter that forgets idle keys.
struct Keyed<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone> Keyed<K> {
    fn new(quota: Quota) -> Self {
        Self {
            limiter: RateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        }
    }

    /// Spend one cell of `key`'s budget; `Err(wait)` when there is none.
    fn check(&self, key: &K) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The rate limiters of one service.
pub struct RateLimits {
    registrations: Option<Keyed<IpAddr>>,
    auth_failures: Option<Keyed<IpAddr>>,
    /// Addresses whose failure budget ran out, until when.
    auth_blocked: Mutex<HashMap<IpAddr, Instant>>,
    commands: Option<Keyed<Uuid>>,
    trusted_header: Option<HeaderName>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

impl RateLimits {
    pub fn new(limits: &Limits) -> Self {
        let per_minute = |n: u32| NonZeroU32::new(n).map(|n| Keyed::new(Quota::per_minute(n)));
        Self {
            registrations: per_minute(limits.registrations_per_minute),
            auth_failures: per_minute(limits.auth_failures_per_minute),
            auth_blocked: Mutex::new(HashMap::new()),
            commands: NonZeroU32::new(limits.commands_per_second).map(|n| {
                let burst = n.saturating_mul(NonZeroU32::MIN.saturating_add(1));
                Keyed::new(Quota::per_second(n).allow_burst(burst))
            }),
            trusted_header: limits.trusted_client_ip_header.clone(),
        }
    }

    /// Count a registration from `client`.
    pub fn registration(&self, client: IpAddr) -> Result<(), ApiError> {
        check(self.registrations.as_ref(), &client, || {
            "too many registrations from this address".to_string()
        })
    }

    /// Refuse `client`'s token attempts while its failure budget is spent.
    pub fn auth_allowed(&self, client: IpAddr) -> Result<(), ApiError> {
        let mut blocked = self.blocked();
        let Some(until) = blocked.get(&client).copied() else {
            return Ok(());
        };
        let now = Instant::now();
        if until <= now {
            blocked.remove(&client);
            return Ok(());
        }
        Err(ApiError::TooManyRequests {
            message: "too many failed authentications from this address".to_string(),
            retry_after: until - now,
        })
    }

    /// Count a failed authentication from `client`; once its budget is
    /// spent, the answer becomes 429 and the address is refused for as
    /// long as the budget takes to recover a cell.
    pub fn auth_failed(&self, client: IpAddr) -> Option<ApiError> {
        let limiter = self.auth_failures.as_ref()?;
        let wait = limiter.check(&client).err()?;
        let mut blocked = self.blocked();
        if blocked.len() >= MAX_BLOCKED {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
        }
        blocked.insert(client, Instant::now() + wait);
        Some(ApiError::TooManyRequests {
            message: "too many failed authentications from this address".to_string(),
            retry_after: wait,
        })
    }

    fn blocked(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.auth_blocked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count a command of `workspace`.
    pub fn command(&self, workspace: Uuid) -> Result<(), ApiError> {
        check(self.commands.as_ref(), &workspace, || {
            "too many commands for this workspace".to_string()
        })
    }

    /// The client's address: the trusted proxy header's last value when one
    /// is configured and present, else the TCP peer.
    pub fn client_addr(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
        // Only the last entry is the proxy's own; an earlier one (or an
        // unreadable last one) is whatever the client wrote.
        let forwarded = self.trusted_header.as_ref().and_then(|name| {
            headers
                .get_all(name)
                .iter()
                .next_back()
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.rsplit(',').next())
                .and_then(|item| item.trim().parse::<IpAddr>().ok())
        });
        forwarded
            .or(peer.map(|peer| peer.ip()))
            // No peer (a router driven without a socket, e.g. `oneshot`):
            // one shared bucket, never none.
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: Option<&Keyed<K>>,
    key: &K,
    message: impl FnOnce() -> String,
) -> Result<(), ApiError> {
    match limiter.map(|limiter| limiter.check(key)) {
        None | Some(Ok(())) => Ok(()),
        Some(Err(retry_after)) => Err(ApiError::TooManyRequests {
            message: message(),
            retry_after,
        }),
    }
}

/// The calling client's address (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<super::AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &super::AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_addr_of(parts, &state.limits)))
    }
}

/// The client address of a request.
pub fn client_addr_of(parts: &Parts, limits: &Arc<RateLimits>) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    limits.client_addr(&parts.headers, peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(adjust: impl FnOnce(&mut Limits)) -> RateLimits {
        let mut limits = Limits::default();
        adjust(&mut limits);
        RateLimits::new(&limits)
    }

    #[test]
    fn registrations_are_limited_per_address() {
        let limits = limits(|l| l.registrations_per_minute = 3);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..3 {
            assert!(limits.registration(a).is_ok());
        }
        let Err(ApiError::TooManyRequests { retry_after, .. }) = limits.registration(a) else {
            panic!("the fourth registration in a minute is refused");
        };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(20));
        assert!(
            limits.registration(b).is_ok(),
            "other addresses are not affected"
        );
    }

    #[test]
    fn spent_auth_failures_block_the_address_until_the_budget_recovers() {
        let limits = limits(|l| l.auth_failures_per_minute = 2);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!(limits.auth_allowed(a).is_ok());
        assert!(limits.auth_failed(a).is_none());
        assert!(limits.auth_failed(a).is_none());
        assert!(matches!(
            limits.auth_failed(a),
            Some(ApiError::TooManyRequests { .. })
        ));
        assert!(matches!(
            limits.auth_allowed(a),
            Err(ApiError::TooManyRequests { .. })
        ));
        assert!(limits
            .auth_allowed("192.0.2.9".parse().expect("ip"))
            .is_ok());
    }

    #[test]
    fn zero_means_unlimited() {
        let limits = limits(|l| {
            l.registrations_per_minute = 0;
            l.commands_per_second = 0;
        });
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..1000 {
            assert!(limits.registration(a).is_ok());
            assert!(limits.command(Uuid::nil()).is_ok());
        }
    }

    #[test]
    fn commands_allow_bursts_of_twice_the_rate() {
        let limits = limits(|l| l.commands_per_second = 5);
        let workspace = Uuid::new_v4();
        let allowed = (0..20)
            .filter(|_| limits.command(workspace).is_ok())
            .count();
        assert!((10..=11).contains(&allowed), "{allowed}");
    }

    #[test]
    fn the_client_address_comes_from_a_trusted_header_only_when_configured() {
        let peer: SocketAddr = "198.51.100.7:5555".parse().expect("addr");
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.9, 192.0.2.50".parse().expect("header"),
        );
        let untrusting = limits(|_| {});
        assert_eq!(
            untrusting.client_addr(&headers, Some(peer)),
            peer.ip(),
            "a client-written header is ignored by default"
        );
        let trusting = limits(|l| {
            l.trusted_client_ip_header = Some(HeaderName::from_static("x-forwarded-for"))
        });
        assert_eq!(
            trusting.client_addr(&headers, Some(peer)),
            "192.0.2.50".parse::<IpAddr>().expect("ip"),
            "the proxy's own (last) entry counts"
        );
        assert_eq!(
            trusting.client_addr(&HeaderMap::new(), Some(peer)),
            peer.ip()
        );
    }
}
