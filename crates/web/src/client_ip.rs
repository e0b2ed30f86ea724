//! Who the client is, when proxies stand between it and us. The peer address of the
//! connection is the client unless the peer is a proxy we trust (the gateway of the split
//! deployment, a local reverse proxy); then `X-Forwarded-For` says who it was forwarding
//! for. The list is read from the right, skipping trusted hops: everything left of the first
//! untrusted address was written by whoever sent it, so can be forged.

use crate::tls::ClientAddr;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address as resolved for this request; the request log, the audit trail and
/// the per-IP rate limits all use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// An address block: `10.0.0.0/8`, `::1/128`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    base: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or block (like 10.0.0.0/8)")]
pub struct BadIpBlock(pub String);

impl FromStr for IpBlock {
    type Err = BadIpBlock;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadIpBlock(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let base: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
        };
        Ok(IpBlock { base, prefix })
    }
}

impl IpBlock {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.base, ip) {
            (IpAddr::V4(b), IpAddr::V4(a)) => same_prefix(
                u128::from(u32::from(b)),
                u128::from(u32::from(a)),
                32,
                self.prefix,
            ),
            (IpAddr::V6(b), IpAddr::V6(a)) => {
                same_prefix(u128::from(b), u128::from(a), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn same_prefix(a: u128, b: u128, bits: u8, prefix: u8) -> bool {
    let shift = u32::from(bits - prefix);
    shift >= 128 || (a >> shift) == (b >> shift)
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpBlock>);

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|b| b.contains(ip))
    }

    /// The client behind `peer`, given the request's `X-Forwarded-For` headers.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all(FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // Something unreadable was not written by a proxy we trust: stop at the last
            // address we can vouch for.
            let Ok(ip) = hop.parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// Resolves the client's address once per request and keeps it as [`ClientIp`].
pub async fn resolve(
    State(trusted): State<Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0.ip());
    if let Some(peer) = peer {
        let client = trusted.resolve(peer, request.headers());
        request.extensions_mut().insert(ClientIp(client));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn trusted(blocks: &[&str]) -> TrustedProxies {
        TrustedProxies(blocks.iter().map(|b| b.parse().unwrap()).collect())
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_match_by_prefix() {
        let b: IpBlock = "10.1.0.0/16".parse().unwrap();
        assert!(b.contains(ip("10.1.255.3")));
        assert!(!b.contains(ip("10.2.0.1")));
        assert!(b.contains(ip("::ffff:10.1.0.9")));
        let one: IpBlock = "::1".parse().unwrap();
        assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
        assert!(
            "0.0.0.0/0"
                .parse::<IpBlock>()
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        for bad in ["10.0.0.0/33", "example.org", "10.0.0.0/x", ""] {
            assert!(bad.parse::<IpBlock>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let t = trusted(&["127.0.0.0/8"]);
        let claims = forwarded(&["203.0.113.9"]);
        assert_eq!(t.resolve(ip("198.51.100.7"), &claims), ip("198.51.100.7"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_forged_entries_to_its_left_are_ignored() {
        let t = trusted(&["127.0.0.1", "10.0.0.0/8"]);
        // The client forged "1.2.3.4"; our proxies appended the real address, then their own.
        let h = forwarded(&["1.2.3.4, 203.0.113.9", "10.0.0.5"]);
        assert_eq!(t.resolve(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        // No header: the proxy itself.
        assert_eq!(
            t.resolve(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        // Garbage: the last hop that could be vouched for.
        let h = forwarded(&["not-an-ip, 10.0.0.5"]);
        assert_eq!(t.resolve(ip("127.0.0.1"), &h), ip("10.0.0.5"));
    }
}
