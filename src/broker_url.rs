//! Broker URLs as people give them, and errors about reaching a broker that name the fix: an
//! http(s):// URL, wss:// to a broker without TLS, ws:// to one with TLS.
//! Used by `join` (the invite's URL) and `mesh create --broker`.

use std::sync::Arc;
use std::time::Duration;

use claudemesh_agent::enroll::JoinError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long each probe of a broker that could not be reached may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The path a claudemesh broker serves its WebSocket on (it answers on `/` too).
const WS_PATH: &str = "/ws";

/// Where a broker URL came from, which decides how to say the fix.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// `mesh create --broker`: the person can give another URL.
    Flag,
    /// An invite for this mesh: only an admin can make one with another URL.
    Invite { mesh: &'a str },
}

/// Refuses a URL that is not ws:// or wss://, saying which URL to give instead.
pub fn check(url: &str) -> anyhow::Result<()> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let scheme = scheme.to_ascii_lowercase();
    let ws_url = |ws: &str| {
        let path_given = rest.trim_end_matches('/').contains('/');
        if path_given {
            format!("{ws}://{rest}")
        } else {
            format!("{ws}://{}{WS_PATH}", rest.trim_end_matches('/'))
        }
    };
    match scheme.as_str() {
        "ws" | "wss" => Ok(()),
        "http" => anyhow::bail!("http:// is not a broker URL; use {}", ws_url("ws")),
        "https" => anyhow::bail!("https:// is not a broker URL; use {}", ws_url("wss")),
        "" => anyhow::bail!(
            "{url} is not a broker URL; use {} (or {} for a broker behind TLS)",
            ws_url("ws"),
            ws_url("wss")
        ),
        other => {
            anyhow::bail!("{other}:// is not a broker URL; use ws://HOST:PORT/ws, or wss://HOST/ws with TLS")
        }
    }
}

/// A ws(s) URL taken apart for the probes.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Option<Self> {
        let uri: http::Uri = url.parse().ok()?;
        let tls = match uri.scheme_str()?.to_ascii_lowercase().as_str() {
            "ws" => false,
            "wss" => true,
            _ => return None,
        };
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Some(Self { tls, host, port, path: uri.path().to_string() })
    }
}

/// `url` with the other scheme: ws:// for wss:// and the other way round.
fn swap_scheme(url: &str, tls: bool) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    format!("{}://{rest}", if tls { "ws" } else { "wss" })
}

/// `e`, met while reaching the broker at `url`, with the fix when the URL does not match what the
/// broker speaks (wss:// to a broker without TLS, ws:// to one with TLS).
pub async fn explain(url: &str, source: Source<'_>, e: JoinError) -> anyhow::Error {
    let (JoinError::Unreachable { .. }, Some(t)) = (&e, Target::parse(url)) else { return e.into() };
    let mismatch =
        if t.tls { !speaks_tls(&t).await && speaks_plain_http(&t).await } else { speaks_tls(&t).await };
    if mismatch {
        let (what, other) = if t.tls {
            ("does not speak TLS; use ws:// instead of wss://", swap_scheme(url, true))
        } else {
            ("speaks TLS; use wss:// instead of ws://", swap_scheme(url, false))
        };
        return match source {
            Source::Flag => anyhow::anyhow!("the broker at {url} {what}: --broker {other}"),
            Source::Invite { mesh } => anyhow::anyhow!(
                "the broker at {url} (the invite's URL) {what}; this invite cannot work: ask an admin of \
                 {mesh} for one with {other}"
            ),
        };
    }
    e.into()
}

/// Whether the server at `t` answers a TLS handshake (one failing only on its certificate counts:
/// the scheme is right, the trust is another matter).
async fn speaks_tls(t: &Target) -> bool {
    let Ok(name) = rustls_pki_types::ServerName::try_from(t.host.clone()) else { return false };
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(builder) =
        rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()
    else {
        return false;
    };
    let config = builder.with_root_certificates(roots).with_no_client_auth();
    let handshake = async {
        let tcp = TcpStream::connect((t.host.as_str(), t.port)).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await
    };
    match tokio::time::timeout(PROBE_TIMEOUT, handshake).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => matches!(
            e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
            Some(
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::AlertReceived(_)
                    | rustls::Error::PeerIncompatible(_)
            )
        ),
        Err(_) => false,
    }
}

/// Whether the server at `t` answers a plain HTTP request with HTTP.
async fn speaks_plain_http(t: &Target) -> bool {
    let ask = async {
        let mut tcp = TcpStream::connect((t.host.as_str(), t.port)).await?;
        let req = format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", t.path, t.host);
        tcp.write_all(req.as_bytes()).await?;
        let mut head = [0u8; 5];
        tcp.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    matches!(tokio::time::timeout(PROBE_TIMEOUT, ask).await, Ok(Ok(head)) if &head == b"HTTP/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_and_bare_hosts_are_refused_with_the_url_to_use() {
        for (url, want) in [
            ("http://broker.lan:7890", "http:// is not a broker URL; use ws://broker.lan:7890/ws"),
            ("http://broker.lan:7890/", "http:// is not a broker URL; use ws://broker.lan:7890/ws"),
            ("HTTPS://mesh.example.com/ws", "https:// is not a broker URL; use wss://mesh.example.com/ws"),
            ("https://mesh.example.com/mesh/ws", "use wss://mesh.example.com/mesh/ws"),
            ("broker.lan:7890", "use ws://broker.lan:7890/ws (or wss://broker.lan:7890/ws"),
            ("ftp://x", "ftp:// is not a broker URL; use ws://HOST:PORT/ws"),
        ] {
            let e = check(url).unwrap_err().to_string();
            assert!(e.contains(want), "{url}: {e}");
        }
        for ok in ["ws://127.0.0.1:7890/ws", "wss://mesh.example.com/ws", "WSS://mesh.example.com/ws"] {
            assert!(check(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn targets_and_swapped_schemes() {
        let t = Target::parse("wss://mesh.example.com/ws").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port, t.path.as_str()), (true, "mesh.example.com", 443, "/ws"));
        let t = Target::parse("ws://[::1]:7890").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port, t.path.as_str()), (false, "::1", 7890, "/"));
        assert_eq!(swap_scheme("wss://h:1/ws", true), "ws://h:1/ws");
        assert_eq!(swap_scheme("ws://h:1/ws", false), "wss://h:1/ws");
    }
}
