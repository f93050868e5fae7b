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

impl Upgrade {
    /// The upgrade a request asks for: `GET` with `Connection: upgrade`, `Upgrade: websocket`,
    /// `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key`, on a connection hyper can upgrade.
    /// `None` for any other request (a plain `GET /` from a browser or `curl`).
    pub fn from_request(req: &mut Request) -> Option<Self> {
        let h = req.headers();
        let asks = req.method() == Method::GET
            && has_token(h, header::CONNECTION, "upgrade")
            && has_token(h, header::UPGRADE, "websocket")
            && h.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v.as_bytes() == b"13");
        let key = h.get(header::SEC_WEBSOCKET_KEY)?;
        if !asks {
            return None;
        }
        let accept = derive_accept_key(key.as_bytes());
        let on_upgrade = req.extensions_mut().remove::<OnUpgrade>()?;
        Some(Self { accept, on_upgrade })
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

    #[test]
    fn a_websocket_request_is_accepted_with_the_rfc_key() {
        let u = Upgrade::from_request(&mut request(&OK)).expect("an upgrade");
        // RFC 6455 §1.3's example.
        assert_eq!(u.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn other_requests_are_not_upgrades() {
        for (left_out, (name, _)) in OK.iter().enumerate() {
            let h: Vec<_> = OK.iter().enumerate().filter(|(i, _)| *i != left_out).map(|(_, h)| *h).collect();
            assert!(Upgrade::from_request(&mut request(&h)).is_none(), "without {name}");
        }
        let mut v12 = OK;
        v12[2] = ("sec-websocket-version", "12");
        assert!(Upgrade::from_request(&mut request(&v12)).is_none());
        let mut post = request(&OK);
        *post.method_mut() = Method::POST;
        assert!(Upgrade::from_request(&mut post).is_none());
    }
}
