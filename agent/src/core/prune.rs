//! Pruning the inbox (issue 16): seen messages older than the TTL (`inbox_ttl_secs` in
//! config.json, by default the broker's queue TTL) are deleted at start and then every
//! `inbox_prune_secs`, a bounded batch per turn, through the turn's own commit, so no write of
//! the core races them. Unseen messages, and those waiting for a session, are never pruned. A
//! pruned message leaves its msg_id and its sender's client message id behind for the replay
//! window, so a redelivery or a replay of it is never shown again.

use std::time::{Duration, Instant};

use claudemesh_protocol::limits::{
    DEFAULT_INBOX_PRUNE_SECS, DEFAULT_INBOX_TTL_SECS, IDEMPOTENCY_TTL_SECS, REPLAY_WINDOW_SECS,
};

use super::{Core, now_ms};
use crate::store::StoreOp;

/// Most records (and most dedupe keys) one turn prunes: a backlog goes over several ticks and
/// never holds the core for long.
pub const PRUNE_BATCH: usize = 1000;

/// How long seen messages are kept, and when the next prune is due.
#[derive(Debug, Clone)]
pub struct Retention {
    pub ttl: Duration,
    pub every: Duration,
    /// `None`: due now (at start, or after the settings changed).
    pub next: Option<Instant>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(DEFAULT_INBOX_TTL_SECS),
            every: Duration::from_secs(DEFAULT_INBOX_PRUNE_SECS),
            next: None,
        }
    }
}

impl Retention {
    /// New settings from the config; a change makes a prune due at once.
    pub fn set(&mut self, ttl_secs: u64, every_secs: u64) {
        let (ttl, every) = (Duration::from_secs(ttl_secs), Duration::from_secs(every_secs.max(1)));
        if (ttl, every) != (self.ttl, self.every) {
            self.next = None;
        }
        (self.ttl, self.every) = (ttl, every);
    }
}

impl Core {
    /// Prunes one batch if a prune is due at `now`; a full batch leaves the next one due at once.
    pub(crate) fn prune_due(&mut self, now: Instant) {
        if self.retention.next.is_some_and(|t| t > now) {
            return;
        }
        let ms = now_ms();
        let ttl_ms = u64::try_from(self.retention.ttl.as_millis()).unwrap_or(u64::MAX);
        let work = match self.store.prune_work(ms.saturating_sub(ttl_ms), ms, PRUNE_BATCH) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read what to prune from the inbox");
                self.retention.next = Some(now + self.retention.every);
                return;
            }
        };
        let full = work.records.len() >= PRUNE_BATCH || work.forget.len() >= PRUNE_BATCH;
        let mut pruned = 0;
        for inbox_key in work.records {
            let Some((mesh, msg)) = inbox_key.split_once('\u{1f}') else { continue };
            // The live set is what later writes start from: never prune under it.
            if self.state.live.contains_key(&(mesh.to_string(), msg.to_string())) {
                continue;
            }
            if let Some(n) = self.state.inbox_total.get_mut(mesh) {
                *n = n.saturating_sub(1);
            }
            pruned += 1;
            self.write(StoreOp::Prune { inbox_key, window_ms: REPLAY_WINDOW_SECS * 1000 });
        }
        let forgotten = work.forget.len();
        for time_key in work.forget {
            self.write(StoreOp::Forget { time_key });
        }
        if !full && let Err(e) = self.store.idempotency_prune(ms.saturating_sub(IDEMPOTENCY_TTL_SECS * 1000))
        {
            tracing::warn!(error = %e, "cannot forget old idempotency keys");
        }
        if pruned > 0 || forgotten > 0 {
            tracing::info!(pruned, forgotten, "inbox pruned (seen messages past their TTL)");
            self.changed();
        }
        self.retention.next = Some(if full { now } else { now + self.retention.every });
    }
}
