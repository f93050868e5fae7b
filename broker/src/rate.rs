//! Token-bucket rate limiting per member: sends, read-only queries (`list_peers`, `list_members`…),
//! presence changes (`session_open`/`update`/`close`) and new session ids, each its own bucket.

use std::time::Instant;

/// Refills `rate` tokens a second up to `burst`. One send costs one token.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self { tokens: burst, last: Instant::now(), rate, burst }
    }

    /// Takes a token at `now`, or says how many milliseconds until one is available.
    pub fn take_at(&mut self, now: Instant) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.rate.max(f64::MIN_POSITIVE);
            Err((wait * 1000.0).ceil().max(1.0) as u64)
        }
    }

    pub fn take(&mut self) -> Result<(), u64> {
        self.take_at(Instant::now())
    }
}

/// What a frame spends from its member's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// `send`.
    Send,
    /// Read-only requests whose answers can be large: `list_peers`, `list_members`,
    /// `mesh_info`, `message_status`, the `*_list` requests.
    Query,
    /// `session_open`, `session_update`, `session_close`: each is fanned out to every peer.
    Presence,
    /// A session id its member never opened before (kept as `session_owner` for `session:`
    /// targets), so the ids one member can create grow at most linearly with time.
    NewSession,
}

impl Budget {
    /// The words a rate-limited error uses.
    pub fn doing(self) -> &'static str {
        match self {
            Self::Send => "sending",
            Self::Query => "asking for lists",
            Self::Presence => "changing sessions",
            Self::NewSession => "opening new session ids",
        }
    }
}

/// A rate (tokens a second) and the burst a bucket starts with and refills to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateRule {
    pub per_sec: f64,
    pub burst: f64,
}

/// One member's buckets; outlives its connections (a reconnect does not refill them).
#[derive(Debug, Clone)]
pub struct MemberBuckets {
    send: TokenBucket,
    query: TokenBucket,
    presence: TokenBucket,
    new_session: TokenBucket,
}

impl MemberBuckets {
    /// Full buckets under the broker's rules.
    pub fn new(cfg: &crate::config::BrokerConfig) -> Self {
        let b = |r: RateRule| TokenBucket::new(r.per_sec, r.burst);
        Self {
            send: TokenBucket::new(cfg.send_rate_per_sec, cfg.send_burst),
            query: b(cfg.query_rate),
            presence: b(cfg.presence_rate),
            new_session: b(cfg.new_session_rate),
        }
    }

    /// Takes one token of `budget`, or says how many milliseconds until one is available.
    pub fn take(&mut self, budget: Budget) -> Result<(), u64> {
        match budget {
            Budget::Send => self.send.take(),
            Budget::Query => self.query.take(),
            Budget::Presence => self.presence.take(),
            Budget::NewSession => self.new_session.take(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0);
        b.last = t0;
        for _ in 0..3 {
            assert!(b.take_at(t0).is_ok());
        }
        let wait = b.take_at(t0).unwrap_err();
        assert_eq!(wait, 100, "one token takes 100 ms at 10/s");
        assert!(b.take_at(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take_at(t0 + Duration::from_millis(100)).is_err());
        // Never more than the burst, however long it waited.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.take_at(later).is_ok());
        }
        assert!(b.take_at(later).is_err());
    }
}
