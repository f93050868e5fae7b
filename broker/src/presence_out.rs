//! One connection's outgoing presence: events waiting for the batch interval, their frames
//! (at most [`PRESENCE_FRAME_BYTES`] each) and the connection's presence budget. Past the
//! budget the connection gets one `presence_reset` and no sheddable presence until it lists
//! again, so a connect storm of N members costs each connection a bounded number of bytes
//! (O(N) in all) instead of one event per peer per join. Owned by the connection's writer task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use claudemesh_protocol::frames::{Event, encode};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::metrics::Metrics;
use crate::rate::{RateRule, TokenBucket};
use crate::upgrade::WebSocket;

/// Largest batched presence frame, in bytes of its events.
pub const PRESENCE_FRAME_BYTES: usize = 4 * 1024;

/// Presence waiting to be written to one connection.
#[derive(Debug)]
pub struct PresenceOut {
    /// Encoded events (`{"kind":…,"data":…}`) in the order they happened, and whether each
    /// may be shed.
    pending: Vec<(Arc<str>, bool)>,
    /// Bytes of `pending` counted in the connection's queued bytes (the reset is not).
    counted: usize,
    budget: TokenBucket,
    /// [`crate::hub::ConnHandle::presence_stale`]: set here, cleared by the connection's lists.
    stale: Arc<AtomicBool>,
}

impl PresenceOut {
    /// Nothing pending, a full budget of `rule` (events a second, burst).
    pub fn new(rule: RateRule, stale: Arc<AtomicBool>) -> Self {
        Self { pending: Vec::new(), counted: 0, budget: TokenBucket::new(rule.per_sec, rule.burst), stale }
    }

    /// Takes one event from the connection's queue. Returns the queued bytes that were shed
    /// (this event's and any pending sheddable ones'), for the caller to release; what is kept
    /// is released by [`Self::drain`].
    pub fn take(&mut self, json: Arc<str>, sheddable: bool, metrics: &Metrics) -> usize {
        let bytes = json.len();
        if sheddable {
            // The connection lists again before it gets more: its answer has this change.
            if self.stale.load(Ordering::Acquire) {
                return bytes;
            }
            if self.budget.take().is_err() {
                self.stale.store(true, Ordering::Release);
                metrics.presence_resets.fetch_add(1, Ordering::Relaxed);
                let mut shed = bytes;
                self.pending.retain(|(e, s)| {
                    if *s {
                        shed += e.len();
                    }
                    !*s
                });
                self.counted -= shed - bytes;
                self.pending.push((encode(&Event::PresenceReset {}).into(), false));
                return shed;
            }
        }
        self.counted += bytes;
        self.pending.push((json, sheddable));
        0
    }

    /// Whether no event waits to be written.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The pending events to write, oldest first, and the queued bytes they free once written.
    /// The pending list's memory goes with them (a burst of events does not stay
    /// allocated in every idle connection).
    pub fn drain(&mut self) -> (Vec<Arc<str>>, usize) {
        let events = std::mem::take(&mut self.pending).into_iter().map(|(e, _)| e).collect();
        (events, std::mem::take(&mut self.counted))
    }
}

/// Sends encoded events as `event`/`events` frames of at most [`PRESENCE_FRAME_BYTES`] each
/// (one larger event goes alone), so a burst of joins never grows a connection's write buffer
/// past a few KiB at a time, then flushes.
pub async fn send_events(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    pending: &[Arc<str>],
    metrics: &Metrics,
) -> Result<(), WsError> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut start = 0;
    while start < pending.len() {
        let mut end = start + 1;
        let mut bytes = pending[start].len();
        while end < pending.len() && bytes + pending[end].len() < PRESENCE_FRAME_BYTES {
            bytes += pending[end].len() + 1;
            end += 1;
        }
        let text = batch_frame(&pending[start..end]);
        metrics.frame_out(if end - start > 1 { "events" } else { "event" });
        crate::socket::feed_text(sink, text).await?;
        start = end;
    }
    sink.flush().await
}

/// The frame text for encoded events: `{"type":"event",kind,data}` or `{"type":"events",…}`.
pub fn batch_frame(events: &[Arc<str>]) -> String {
    if let [one] = events {
        // `{"kind":…}` becomes `{"type":"event","kind":…}`.
        return format!(r#"{{"type":"event",{}"#, one.strip_prefix('{').unwrap_or(one));
    }
    let mut s = String::with_capacity(32 + events.iter().map(|e| e.len() + 1).sum::<usize>());
    s.push_str(r#"{"type":"events","events":["#);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(e);
    }
    s.push_str("]}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_protocol::frames::{ServerFrame, decode_server};

    fn enc(e: &Event) -> Arc<str> {
        encode(e).into()
    }

    #[test]
    fn batched_event_text_decodes_as_frames() {
        let a = Event::PeerLeft { member_id: "m".into(), session_id: "s".into() };
        let b = Event::MemberRemoved {
            member_id: "m".into(),
            reason: Default::default(),
            display_name: "bob".into(),
        };
        assert_eq!(decode_server(&batch_frame(&[enc(&a)])).unwrap(), ServerFrame::Event(a.clone()));
        assert_eq!(
            decode_server(&batch_frame(&[enc(&a), enc(&b)])).unwrap(),
            ServerFrame::Events { events: vec![a, b] }
        );
    }

    #[test]
    fn over_budget_sheds_presence_once_keeps_membership_and_resumes_after_a_list() {
        let metrics = Metrics::default();
        let stale = Arc::new(AtomicBool::new(false));
        let mut out = PresenceOut::new(RateRule { per_sec: 0.001, burst: 3.0 }, stale.clone());
        let online = |i: u32| enc(&Event::MemberOnline { member_id: format!("m_{i}"), online: true });
        let removed = enc(&Event::MemberRemoved {
            member_id: "m_x".into(),
            reason: Default::default(),
            display_name: "x".into(),
        });
        let mut freed = 0;
        for i in 0..3 {
            freed += out.take(online(i), true, &metrics);
        }
        freed += out.take(removed.clone(), false, &metrics);
        assert_eq!(freed, 0, "within the budget nothing is shed");
        // The fourth sheddable event is over: the three pending ones and it are shed.
        freed += out.take(online(3), true, &metrics);
        assert_eq!(freed, 4 * online(0).len());
        assert!(stale.load(Ordering::Acquire));
        // Stale: more presence is shed, membership is still sent, no second reset.
        assert_eq!(out.take(online(4), true, &metrics), online(4).len());
        assert_eq!(out.take(removed.clone(), false, &metrics), 0);
        let (events, counted) = out.drain();
        let reset = enc(&Event::PresenceReset {});
        assert_eq!(events, vec![removed.clone(), reset, removed.clone()]);
        assert_eq!(counted, 2 * removed.len(), "the reset itself was never counted as queued");
        assert_eq!(metrics.presence_resets.load(Ordering::Relaxed), 1);
        // A list clears the flag: events flow again as the budget allows (here, none left).
        stale.store(false, Ordering::Release);
        out.take(online(5), true, &metrics);
        assert!(stale.load(Ordering::Acquire), "an empty budget goes stale again at once");
    }
}
