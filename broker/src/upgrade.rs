//! The HTTP/1.1 upgrade to WebSocket (RFC 6455 §4.2.1–4.2.2), done on hyper's upgrade so the
//! broker holds tokio-tungstenite's stream itself: axum's wrapper does not pass raw frames,
//! and the connection writer sends large messages as fragments ([`claudemesh_protocol::ws`]).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// A server-side WebSocket over an upgraded HTTP connection.
pub type WebSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A request that asked for a WebSocket and can be upgraded.
#[derive(Debug)]
pub struct Upgrade {
    accept: String,
    on_upgrade: OnUpgrade,
}

/// What a request asked for, as far as WebSockets go.
#[derive(Debug)]
pub enum Asked {
    /// A valid opening handshake: answer it with [`Upgrade::on_upgrade`].
    Upgrade(Upgrade),
    /// No WebSocket upgrade asked for (a plain `GET` from a browser or `curl`).
    Other,
    /// An upgrade to WebSocket asked for with a handshake that cannot be accepted: answer this
    /// (400, or 426 with `Sec-WebSocket-Version: 13` for another version, RFC 6455 §4.2.2, §4.4).
    Refused(Response),
}

impl Upgrade {
    /// Reads a request's opening handshake (RFC 6455 §4.2.1): `GET` with `Connection: upgrade`,
    /// `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key` of 16 bytes
    /// in base64, on a connection hyper can upgrade (HTTP/1.1).
    pub fn from_request(req: &mut Request) -> Asked {
        let h = req.headers();
        if !has_token(h, header::UPGRADE, "websocket") {
            return Asked::Other;
        }
        if req.method() != Method::GET || !has_token(h, header::CONNECTION, "upgrade") {
            return Asked::Refused(refuse(
                StatusCode::BAD_REQUEST,
                "a WebSocket upgrade is a GET with `Connection: Upgrade`",
            ));
        }
        if h.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v.as_bytes() != b"13") {
            let mut r = refuse(StatusCode::UPGRADE_REQUIRED, "this broker speaks WebSocket version 13");
            // RFC 6455 §4.4 names the version; RFC 9110 §15.5.22 wants the protocol in a 426.
            r.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            r.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            return Asked::Refused(r);
        }
        let key = h.get(header::SEC_WEBSOCKET_KEY).map(HeaderValue::as_bytes).unwrap_or_default();
        if !is_key(key) {
            return Asked::Refused(refuse(
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Key must be 16 bytes in base64",
            ));
        }
        let accept = derive_accept_key(key);
        match req.extensions_mut().remove::<OnUpgrade>() {
            Some(on_upgrade) => Asked::Upgrade(Self { accept, on_upgrade }),
            None => Asked::Refused(refuse(
                StatusCode::BAD_REQUEST,
                "this connection cannot be upgraded (HTTP/1.1 is needed)",
            )),
        }
    }

    /// Answers `101 Switching Protocols` and, once hyper has handed the connection over, runs
    /// `callback` with the WebSocket (configured by `config`) in a task of its own. A connection
    /// that fails before the switch completes ends without calling it.
    pub fn on_upgrade<F, Fut>(self, config: WebSocketConfig, callback: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
            callback(ws).await;
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        // The accept key is base64 (RFC 6455 §4.2.2), always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&self.accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        response
    }
}

/// A refusal with a one-line plain-text reason.
fn refuse(status: StatusCode, why: &'static str) -> Response {
    let mut r = Response::new(Body::from(format!("{why}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// Whether `key` is a `Sec-WebSocket-Key`: base64 of 16 bytes (RFC 6455 §4.1, point 7).
fn is_key(key: &[u8]) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(key).is_ok_and(|k| k.len() == 16)
}

/// Whether the comma-separated header `name` holds `token` (case-insensitive), as in
/// `Connection: keep-alive, Upgrade`.
fn has_token(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method(Method::GET).uri("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut r = b.body(Body::empty()).unwrap();
        // hyper puts this in on a real connection; a request built here has none of its own.
        r.extensions_mut().insert(hyper::upgrade::on(Request::new(Body::empty())));
        r
    }

    const OK: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    fn asked(r: &mut Request) -> Result<Upgrade, u16> {
        match Upgrade::from_request(r) {
            Asked::Upgrade(u) => Ok(u),
            Asked::Other => Err(200),
            Asked::Refused(r) => Err(r.status().as_u16()),
        }
    }

    #[test]
    fn a_websocket_request_is_accepted_with_the_rfc_key() {
        let u = asked(&mut request(&OK)).expect("an upgrade");
        // RFC 6455 §1.3's example.
        assert_eq!(u.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn bad_handshakes_are_refused_with_the_rfc_status() {
        let without =
            |name: &str| -> Vec<(&str, &str)> { OK.iter().filter(|(n, _)| *n != name).copied().collect() };
        let with = |name: &str, value: &'static str| -> Vec<(&'static str, &'static str)> {
            OK.iter().map(|&(n, v)| if n == name { (n, value) } else { (n, v) }).collect()
        };
        // Not asking for a WebSocket at all: the broker's plain page.
        assert_eq!(asked(&mut request(&without("upgrade"))).err(), Some(200));
        // Asking, badly.
        assert_eq!(asked(&mut request(&without("connection"))).err(), Some(400));
        assert_eq!(asked(&mut request(&without("sec-websocket-key"))).err(), Some(400));
        assert_eq!(asked(&mut request(&with("sec-websocket-key", "x"))).err(), Some(400));
        assert_eq!(asked(&mut request(&without("sec-websocket-version"))).err(), Some(426));
        let mut v8 = request(&with("sec-websocket-version", "8"));
        let Asked::Refused(r) = Upgrade::from_request(&mut v8) else { panic!("refused") };
        assert_eq!(
            (r.status().as_u16(), r.headers()[header::SEC_WEBSOCKET_VERSION].as_bytes()),
            (426, &b"13"[..])
        );
        assert_eq!(r.headers()[header::UPGRADE], "websocket");
        let mut post = request(&OK);
        *post.method_mut() = Method::POST;
        assert_eq!(asked(&mut post).err(), Some(400));
        // A connection hyper cannot upgrade (no OnUpgrade, as for HTTP/1.0).
        let mut b = Request::builder().method(Method::GET).uri("/");
        for (k, v) in OK {
            b = b.header(k, v);
        }
        assert_eq!(asked(&mut b.body(Body::empty()).unwrap()).err(), Some(400));
    }
}
