//! A link's presence refreshes: after a `presence_reset` (the broker stopped sending this
//! connection presence because it changed faster than the connection's budget) the directory
//! and the peers are listed again, at once for a caller that needs them now
//! ([`UplinkCmd::RefreshPresence`] with a waiter) and at most every [`REFRESH_GAP`] for
//! dashboards watching presence, so a connect storm costs this agent a few lists, not one
//! event per join.

use std::time::Duration;

use claudemesh_protocol::frames::{ClientFrame, PeerSession};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::link::{Link, Pending};
use super::{End, report};
use crate::core::UplinkEvent;

/// Least time between two refreshes no caller waits for.
pub const REFRESH_GAP: Duration = Duration::from_secs(2);

/// Where a link stands with its presence refreshes.
#[derive(Debug, Default)]
pub(crate) struct Refresh {
    /// A refresh's lists are in flight.
    running: bool,
    /// When the last one started.
    last: Option<Instant>,
    /// When the next one, asked for without a waiter, starts.
    pub(crate) due: Option<Instant>,
    /// Callers waiting for the refresh in flight (or the next) to be applied.
    waiters: Vec<oneshot::Sender<()>>,
    /// `presence_reset` events this connection received: a walk that sees the count move
    /// after its first page ends stale.
    pub(crate) resets: u64,
    /// The running refresh's `list_members` was refused: it ends stale.
    pub(crate) members_failed: bool,
}

impl Refresh {
    /// A refresh's `list_peers` was refused: its waiters are answered (with the view as it
    /// is) and the next need asks again.
    pub(crate) fn end_failed(&mut self, refresh: bool) {
        if refresh {
            self.running = false;
            self.members_failed = false;
            self.waiters.clear();
        }
    }
}

impl Link<'_> {
    /// A refresh was asked for: with a waiter it starts now (or joins the one in flight);
    /// without, it starts once [`REFRESH_GAP`] has passed since the last.
    pub(crate) async fn ask_refresh(&mut self, waiter: Option<oneshot::Sender<()>>) -> Result<(), End> {
        let now = Instant::now();
        match waiter {
            Some(w) => {
                self.refresh.waiters.push(w);
                if self.refresh.running {
                    return Ok(());
                }
                self.start_refresh(now).await
            }
            None if self.refresh.due.is_some() => Ok(()),
            // Also while one runs: the reset that asked may have come after it started.
            None => {
                let at = self.refresh.last.map_or(now, |l| (l + REFRESH_GAP).max(now));
                self.refresh.due = Some(at);
                Ok(())
            }
        }
    }

    /// The time for a refresh nobody waits for came: it starts, or, while one still runs,
    /// waits another [`REFRESH_GAP`].
    pub(crate) async fn refresh_due(&mut self) -> Result<(), End> {
        let now = Instant::now();
        if self.refresh.running {
            self.refresh.due = Some(now + REFRESH_GAP);
            return Ok(());
        }
        self.start_refresh(now).await
    }

    /// Lists the directory and every page of peers; [`Self::peers_listed`] finishes it.
    pub(crate) async fn start_refresh(&mut self, now: Instant) -> Result<(), End> {
        self.refresh.running = true;
        self.refresh.last = Some(now);
        self.refresh.due = None;
        self.refresh.members_failed = false;
        self.request(super::members::list_members, Pending::Members { refresh: true }).await?;
        self.request(
            |req| ClientFrame::ListPeers { req, cursor: None, limit: None },
            Pending::Peers { all: vec![], refresh: true, since: None },
        )
        .await
    }

    /// The last page of a `list_peers` walk came: the core takes the whole list (after a
    /// refresh, saying who left since), still `stale` if a `presence_reset` came after the
    /// first page (or the refresh's `list_members` was refused); then the refresh's waiters
    /// are answered.
    pub(crate) async fn peers_listed(&mut self, all: Vec<PeerSession>, refresh: bool, stale: bool) {
        let stale = stale || (refresh && std::mem::take(&mut self.refresh.members_failed));
        let (done, applied) = oneshot::channel();
        let event = UplinkEvent::Peers { sessions: all, refresh, stale, done: Some(done) };
        report(self.agent, self.mesh_id, event).await;
        let _ = applied.await;
        if refresh {
            self.refresh.running = false;
            for w in self.refresh.waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}
