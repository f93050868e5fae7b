//! Which broker URLs an agent may speak plaintext to (DESIGN §4: "`ws://` only on loopback").
//! `ws://` carries the member's signed hello, its presence and every queued ciphertext in the
//! clear, and lets anyone on the path drop or replay frames; so `ws://` to a host that is not
//! loopback is refused unless the member chose `--insecure-transport` at join or mesh create
//! (kept in the mesh's config as [`INSECURE_TRANSPORT_KEY`]). Checked before enrolling
//! ([`crate::enroll`]) and before every connection of the agent's link ([`crate::uplink`]), so a
//! config edited by hand is held to it too.

use std::net::{IpAddr, Ipv6Addr};

/// The key in a mesh's entry of `config.json` that records `--insecure-transport`.
pub const INSECURE_TRANSPORT_KEY: &str = "insecure_transport";

/// A broker URL the agent will not use as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// `ws://` to a host that is not loopback, and plaintext was not chosen.
    #[error(
        "refusing plaintext ws:// to {host}, which is not this machine: anyone on the network path \
         could read and tamper with the connection. Use wss:// with the broker's --tls-cert/--tls-key, \
         or terminate TLS at a reverse proxy; or join with --insecure-transport to accept plaintext"
    )]
    PlaintextRemote { host: String },
    /// Neither `ws://` nor `wss://`, or no host.
    #[error("{url} is not a ws:// or wss:// URL with a host")]
    NotWebSocket { url: String },
}

impl TransportError {
    /// A stable code for this refusal (for `--json` output and tests).
    pub fn code(&self) -> &'static str {
        match self {
            TransportError::PlaintextRemote { .. } => "insecure_transport",
            TransportError::NotWebSocket { .. } => "bad_url",
        }
    }
}

/// Whether `host` (a URL's host: a name, an IPv4 address, or an IPv6 address with or without
/// brackets) is this machine's loopback: `localhost`, 127.0.0.0/8, `::1` (or `::ffff:127.x`).
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match h.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6 == Ipv6Addr::LOCALHOST || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// The scheme (lower case) and host of a ws(s) URL.
fn scheme_and_host(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if hostport.starts_with('[') {
        hostport.split_once(']').map(|(h, _)| format!("{h}]"))?
    } else {
        hostport.split(':').next().unwrap_or("").to_string()
    };
    if host.is_empty() {
        return None;
    }
    Some((scheme.to_ascii_lowercase(), host))
}

/// Whether the agent may connect to `url`: `wss://` always, `ws://` to loopback always, `ws://`
/// elsewhere only when `insecure` (the member chose `--insecure-transport`).
pub fn check(url: &str, insecure: bool) -> Result<(), TransportError> {
    let bad = || TransportError::NotWebSocket { url: url.into() };
    let (scheme, host) = scheme_and_host(url).ok_or_else(bad)?;
    match scheme.as_str() {
        "wss" => Ok(()),
        "ws" if insecure || is_loopback_host(&host) => Ok(()),
        "ws" => Err(TransportError::PlaintextRemote { host }),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "127.0.0.1",
            "127.9.8.7",
            "::1",
            "[::1]",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "example.com",
            "localhost.example.com",
            "mylocalhost",
            "10.0.0.1",
            "192.0.2.2",
            "0.0.0.0",
            "128.0.0.1",
            "[fd00::2]",
            "::",
            "[::ffff:10.0.0.1]",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn plaintext_only_to_loopback_unless_chosen() {
        for ok in [
            "ws://127.0.0.1:7000/ws",
            "ws://localhost/ws",
            "ws://[::1]:7000/ws",
            "WS://LocalHost:1",
            "wss://broker.example.com/ws",
            "wss://10.0.0.1:443",
        ] {
            assert_eq!(check(ok, false), Ok(()), "{ok}");
        }
        for (url, host) in [
            ("ws://broker.example.com/ws", "broker.example.com"),
            ("ws://192.0.2.2:7000/ws", "192.0.2.2"),
            ("ws://[fd00::2]:7000/ws", "[fd00::2]"),
            ("ws://127.0.0.1@evil.example:80/ws", "evil.example"),
            ("ws://localhost.evil.example/ws", "localhost.evil.example"),
        ] {
            let e = check(url, false).unwrap_err();
            assert_eq!(e, TransportError::PlaintextRemote { host: host.into() }, "{url}");
            assert_eq!(e.code(), "insecure_transport");
            assert!(e.to_string().contains("--insecure-transport") && e.to_string().contains("--tls-cert"));
            assert_eq!(check(url, true), Ok(()), "{url} with --insecure-transport");
        }
        assert_eq!(check("http://x", true).unwrap_err().code(), "bad_url");
        assert_eq!(check("ws://", true).unwrap_err().code(), "bad_url");
    }
}
