//! Mesh set-up for the scenarios: a mesh with a signed invite and concurrently enrolled
//! members, raw authenticated WebSocket connections, pre-encrypted send frames, and a light
//! parse of the frames the bench reads on its hot paths.

use anyhow::bail;
use claudemesh_broker::testkit::Identity;
use claudemesh_protocol::crypto::{MemberKeypair, MessagePlaintext, fan_out};
use claudemesh_protocol::frames::{ClientFrame, Envelope, Priority, Send, Target, encode};
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;

/// A raw client WebSocket.
pub use crate::ws::Ws;

/// A mesh: its admin and the members enrolled with one invite.
#[derive(Debug)]
pub struct MeshSetup {
    pub admin: Identity,
    pub members: Vec<Identity>,
}

/// A mesh of `n` members on `server`: enrolled through the broker, or, for a relay floor
/// (which lets in any key that signs its challenge), keys made here.
pub async fn mesh_for(
    server: &super::broker::Broker,
    slug: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<MeshSetup> {
    if server.kind == super::broker::Server::Broker {
        return mesh_with(&server.url, &server.token, slug, n, concurrency).await;
    }
    let local = |name: String| Identity {
        mesh_id: slug.to_string(),
        member_id: name,
        key: MemberKeypair::generate(),
    };
    Ok(MeshSetup { admin: local("admin".into()), members: (0..n).map(|i| local(format!("m{i}"))).collect() })
}

/// Creates mesh `slug` and enrolls `n` members, `concurrency` enrollments at a time. Every
/// set-up connection is dropped again, so the mesh starts with nobody online.
pub async fn mesh_with(
    url: &str,
    token: &str,
    slug: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<MeshSetup> {
    let (admin, invite) = crate::ws::mesh_with_invite(url, token, slug, "bench-all", n).await?;
    let members = futures_util::stream::iter(0..n)
        .map(|i| {
            let token = invite.token().to_string();
            let invite_id = invite.payload.invite_id.clone();
            async move { crate::ws::enroll(url, &token, &invite_id, &format!("bench{i}")).await }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    Ok(MeshSetup { admin, members })
}

/// Connects and authenticates with `hello`; returns the socket right after `hello_ack`.
pub async fn connect(url: &str, id: &Identity) -> anyhow::Result<Ws> {
    crate::ws::hello(url, id, None).await
}

/// Connects every identity, `concurrency` handshakes at a time, keeping their order.
pub async fn connect_all(url: &str, ids: &[&Identity], concurrency: usize) -> anyhow::Result<Vec<Ws>> {
    futures_util::stream::iter(ids)
        .map(|id| connect(url, id))
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

/// Just the fields the hot paths look at; everything else in the frame is skipped.
#[derive(Debug, Deserialize)]
pub struct Lite {
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub req: Option<u64>,
    #[serde(default)]
    pub msg_id: Option<String>,
    #[serde(default)]
    pub client_msg_id: Option<String>,
}

/// A 512-byte (or `len`-byte) ASCII body.
pub fn body(len: usize) -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 ";
    (0..len).map(|i| char::from(alphabet[(i * 7 + i / 37) % alphabet.len()])).collect()
}

/// Real boxes of `body` from `sender` to each recipient (encrypted once; reused per send).
pub fn envelopes(sender: &Identity, recipients: &[&Identity], body: &str) -> anyhow::Result<Vec<Envelope>> {
    let plain = MessagePlaintext::new("", "bench", body);
    let list: Vec<(String, [u8; 32])> =
        recipients.iter().map(|r| (r.member_id.clone(), *r.key.public())).collect();
    Ok(fan_out(&plain, &list, &sender.key)?)
}

const REQ_MARK: u64 = 918_273_645_546_372_819;
const CMID_MARK: &str = "@@bench-client-msg-id@@";

/// A `send` frame encoded once, with `req` and `client_msg_id` filled in per send, so the
/// bench spends its CPU on the broker rather than on serializing 512-byte boxes.
#[derive(Debug, Clone)]
pub struct SendTemplate {
    pieces: [String; 3],
    req_first: bool,
}

impl SendTemplate {
    pub fn new(target: Target, envelopes: Vec<Envelope>) -> anyhow::Result<Self> {
        let text = encode(&ClientFrame::Send(Send {
            req: REQ_MARK,
            client_msg_id: CMID_MARK.into(),
            from_session: String::new(),
            target,
            priority: Priority::Next,
            envelopes,
        }));
        let req_mark = REQ_MARK.to_string();
        let (Some(r), Some(c)) = (text.find(&req_mark), text.find(CMID_MARK)) else {
            bail!("cannot find the placeholders in the encoded send frame");
        };
        let (first, first_len, second, second_len) = if r < c {
            (r, req_mark.len(), c, CMID_MARK.len())
        } else {
            (c, CMID_MARK.len(), r, req_mark.len())
        };
        let pieces = [
            text[..first].to_string(),
            text[first + first_len..second].to_string(),
            text[second + second_len..].to_string(),
        ];
        Ok(Self { pieces, req_first: r < c })
    }

    /// The frame text with this `req` and `client_msg_id` (which must need no JSON escaping).
    pub fn render(&self, req: u64, client_msg_id: &str) -> String {
        let req = req.to_string();
        let (a, b) =
            if self.req_first { (req.as_str(), client_msg_id) } else { (client_msg_id, req.as_str()) };
        let mut s = String::with_capacity(self.pieces.iter().map(String::len).sum::<usize>() + 64);
        s.push_str(&self.pieces[0]);
        s.push_str(a);
        s.push_str(&self.pieces[1]);
        s.push_str(b);
        s.push_str(&self.pieces[2]);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_protocol::frames::decode_client;

    #[test]
    fn template_renders_a_valid_send() {
        let env = vec![Envelope { member_id: "m1".into(), nonce: "n".into(), ciphertext: "c".into() }];
        let t = SendTemplate::new(Target::Member("m1".into()), env).unwrap();
        let ClientFrame::Send(s) = decode_client(&t.render(42, "x-1")).unwrap() else { panic!() };
        assert_eq!((s.req, s.client_msg_id.as_str()), (42, "x-1"));
    }
}
