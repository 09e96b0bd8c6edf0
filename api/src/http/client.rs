//! The client's address: the TCP peer, or, when the peer is a configured
//! trusted proxy, the nearest address in `X-Forwarded-For` that is not one.

use std::net::IpAddr;

use actix_web::HttpRequest;

/// The address a request came from, as far as it can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// An address or a CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    base: u128,
    prefix: u32,
    v4: bool,
}

fn bits(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), true),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (u128::from(u32::from(v4)), true),
            None => (u128::from(v6), false),
        },
    }
}

impl Range {
    fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u32>().ok()?)),
            None => (s.trim(), None),
        };
        let (base, v4) = bits(addr.parse::<IpAddr>().ok()?);
        let width = if v4 { 32 } else { 128 };
        let prefix = prefix.unwrap_or(width);
        (prefix <= width).then_some(Self { base, prefix, v4 })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (value, v4) = bits(ip);
        if v4 != self.v4 {
            return false;
        }
        let width = if v4 { 32 } else { 128 };
        let shift = width - self.prefix;
        if shift >= 128 {
            return true;
        }
        (value >> shift) == (self.base >> shift)
    }
}

/// The configured `http.trusted_proxies`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Range>);

impl TrustedProxies {
    /// Parses every entry; the first one that is neither an address nor a CIDR
    /// range is returned as the error.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| Range::parse(e).ok_or_else(|| e.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|r| r.contains(ip))
    }

    /// The client of `req`.
    pub fn client(&self, req: &HttpRequest) -> Option<ClientAddr> {
        let peer = req.peer_addr()?.ip();
        if !self.trusts(peer) {
            return Some(ClientAddr(peer));
        }
        // Walk from the nearest hop outwards; the first untrusted hop is the
        // client (anything further out could be forged by it).
        let mut client = peer;
        let hops = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Some(ClientAddr(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn req(peer: &str, xff: Option<&str>) -> HttpRequest {
        let mut r = TestRequest::default().peer_addr(peer.parse().unwrap());
        if let Some(v) = xff {
            r = r.insert_header(("x-forwarded-for", v));
        }
        r.to_http_request()
    }

    fn ip(s: &str) -> Option<ClientAddr> {
        Some(ClientAddr(s.parse().unwrap()))
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.168.1.5".into()]).unwrap();
        // An untrusted peer cannot choose its address.
        assert_eq!(proxies.client(&req("203.0.113.9:1", Some("1.2.3.4"))), ip("203.0.113.9"));
        // Through a trusted proxy, the hop before it is the client…
        assert_eq!(proxies.client(&req("10.1.2.3:1", Some("198.51.100.7"))), ip("198.51.100.7"));
        // …and what the client itself prepended is ignored.
        assert_eq!(
            proxies.client(&req("10.1.2.3:1", Some("6.6.6.6, 198.51.100.7, 192.168.1.5"))),
            ip("198.51.100.7")
        );
        assert_eq!(proxies.client(&req("10.1.2.3:1", None)), ip("10.1.2.3"));
        assert_eq!(proxies.client(&req("10.1.2.3:1", Some("garbage"))), ip("10.1.2.3"));
    }

    #[test]
    fn bad_entries_are_named() {
        assert_eq!(TrustedProxies::parse(&["10.0.0.0/33".into()]).unwrap_err(), "10.0.0.0/33");
        assert_eq!(TrustedProxies::parse(&["proxy.local".into()]).unwrap_err(), "proxy.local");
        assert!(TrustedProxies::parse(&["::1".into(), "0.0.0.0/0".into()]).is_ok());
    }
}
