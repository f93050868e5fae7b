//! Mesh set-up for the soak: a mesh with a signed invite and enrolled members, each member's
//! pre-encrypted boxes (one per sender and target, reused for every send), its pool of session
//! ids, authenticated connections, and a small seeded random source.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use claudemesh_broker::testkit::Identity;
use claudemesh_protocol::codec::to_hex;
use claudemesh_protocol::crypto::{MessagePlaintext, fan_out, random_bytes};
use claudemesh_protocol::frames::{AgentInstance, Envelope};
use futures_util::{StreamExt, TryStreamExt};

/// A raw client WebSocket.
pub use crate::ws::Ws;

/// Session ids per member: sessions are drawn from this pool, so ids come back across
/// reconnects (as an agent's do) instead of growing the broker's session-owner map forever.
pub const SESSION_POOL: usize = 4;

/// One participant: its identity, agent instance, session-id pool and pre-encrypted boxes.
#[derive(Debug)]
pub struct Member {
    pub idx: usize,
    pub id: Identity,
    pub instance: AgentInstance,
    pub session_pool: Vec<String>,
    /// `dm[j]`: the box to participant `j` (empty for `j == idx`).
    pub dm: Vec<Vec<Envelope>>,
    /// One box for every other participant (a broadcast reaches every other active member).
    pub broadcast: Vec<Envelope>,
}

/// Creates mesh `slug` and enrolls `n` members; the admin takes part too, as participant 0
/// (a broadcast is addressed to it like to anyone else). Nobody is online afterwards.
pub async fn participants(
    url: &str,
    token: &str,
    slug: &str,
    n: usize,
    body: usize,
) -> anyhow::Result<Vec<Member>> {
    let (admin, invite) = crate::ws::mesh_with_invite(url, token, slug, "soak", n).await?;
    let enrolled = futures_util::stream::iter(0..n)
        .map(|i| {
            let token = invite.token().to_string();
            async move { crate::ws::enroll(url, &token, "soak", &format!("soak{i}")).await }
        })
        .buffered(8)
        .try_collect::<Vec<_>>()
        .await?;
    let ids: Vec<Identity> = std::iter::once(admin).chain(enrolled).collect();
    let plain = MessagePlaintext::new("", "soak", body_text(body));
    let started_at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let mut out = Vec::with_capacity(ids.len());
    for (idx, me) in ids.iter().enumerate() {
        let boxes = |to: &[&Identity]| -> anyhow::Result<Vec<Envelope>> {
            let list: Vec<(String, [u8; 32])> =
                to.iter().map(|r| (r.member_id.clone(), *r.key.public())).collect();
            Ok(fan_out(&plain, &list, &me.key)?)
        };
        let dm = ids
            .iter()
            .enumerate()
            .map(|(j, to)| if j == idx { Ok(Vec::new()) } else { boxes(&[to]) })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let others: Vec<&Identity> =
            ids.iter().enumerate().filter(|(j, _)| *j != idx).map(|(_, m)| m).collect();
        out.push((idx, dm, boxes(&others)?));
    }
    Ok(ids
        .into_iter()
        .zip(out)
        .map(|(id, (idx, dm, broadcast))| Member {
            idx,
            id,
            instance: AgentInstance { id: to_hex(&random_bytes::<16>()), started_at },
            session_pool: (0..SESSION_POOL).map(|_| uuid()).collect(),
            dm,
            broadcast,
        })
        .collect())
}

/// Connects and authenticates with `hello` as the member's agent instance; returns the socket
/// right after `hello_ack`, or the refusal's error code.
pub async fn connect(url: &str, m: &Member) -> anyhow::Result<Ws> {
    crate::ws::hello(url, &m.id, Some(m.instance.clone())).await
}

/// A `len`-byte ASCII body.
fn body_text(len: usize) -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 ";
    (0..len).map(|i| char::from(alphabet[(i * 7 + i / 37) % alphabet.len()])).collect()
}

/// A random lowercase UUID (the shape the broker requires of session ids).
pub fn uuid() -> String {
    let h = to_hex(&random_bytes::<16>());
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// splitmix64: a small, seeded random source for traffic choices (not for keys).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Self {
        Self(u64::from_le_bytes(random_bytes::<8>()))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; 0 when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A duration uniform in `[lo, hi]` seconds.
    pub fn secs(&mut self, lo: f64, hi: f64) -> Duration {
        Duration::from_secs_f64(lo + (hi - lo) * self.unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_have_the_session_id_shape() {
        let s = claudemesh_protocol::frames::SessionInfo {
            session_id: uuid(),
            display_name: "x".into(),
            ..Default::default()
        };
        assert!(claudemesh_protocol::names::validate_session(&s).is_ok(), "{}", s.session_id);
    }

    #[test]
    fn rng_stays_in_range() {
        let mut r = Rng::seeded();
        for _ in 0..1000 {
            assert!(r.below(7) < 7);
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            let d = r.secs(5.0, 30.0).as_secs_f64();
            assert!((5.0..=30.0).contains(&d));
        }
    }
}
