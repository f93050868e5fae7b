//! The soak's correctness ledger: which sends the broker acknowledged and to whom, which pushes
//! each recipient got (new, redelivered, or a repeat of one it had confirmed), when each
//! `client_ack` went out on which connection and when that connection ended, and the totals.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// A push redelivered this long after its `client_ack` went out...
pub const REPEAT_AFTER: Duration = Duration::from_secs(5);
/// ...on a connection that stayed open at least this long afterwards, is a repeat.
pub const ACK_SETTLE: Duration = Duration::from_secs(1);

/// Totals, updated by every member task.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    /// Pushes of a message new to its recipient.
    pub delivered: AtomicU64,
    pub redelivered: AtomicU64,
    pub repeats: AtomicU64,
    /// Pushes of a message id that is not a broker id (should never happen).
    pub malformed: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub graceful: AtomicU64,
    pub abrupt: AtomicU64,
    /// Connections the broker ended (close frame or EOF) while the member was using them.
    pub dropped_by_broker: AtomicU64,
    pub sessions_opened: AtomicU64,
    pub sessions_closed: AtomicU64,
    pub presence_events: AtomicU64,
    pub client_acks: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    /// Counts an `error` frame by its code (or a client-side failure by a short name).
    pub fn error(&self, code: &str, text: &str) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(code.to_string()).or_default() += 1;
        }
        if let Ok(mut f) = self.first_error.lock() {
            f.get_or_insert_with(|| text.chars().take(300).collect());
        }
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|f| f.clone())
    }
}

/// How a push was classified for its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    New,
    /// Seen before, but its `client_ack` was not yet confirmed: at-least-once allows it.
    Redelivered,
    /// Seen and confirmed acknowledged before: the broker should not have sent it again.
    Repeat,
}

/// A `client_ack` a recipient sent: on which connection, when.
#[derive(Debug, Clone, Copy)]
struct AckMark {
    conn: u64,
    at: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    /// Acknowledged sends: broker msg id → bit mask of recipient participants.
    expected: HashMap<u128, u128>,
    /// Per participant: every msg id pushed to it, and its latest `client_ack`.
    received: Vec<HashMap<u128, Option<AckMark>>>,
    /// When each ended connection ended.
    closed: HashMap<u64, Instant>,
}

impl Inner {
    /// Whether an ack counts as confirmed at `now`: old enough, and its connection stayed open
    /// long enough afterwards for the broker to have read it.
    fn confirmed(&self, m: AckMark, now: Instant) -> bool {
        now.duration_since(m.at) > REPEAT_AFTER
            && self.closed.get(&m.conn).is_none_or(|end| end.duration_since(m.at) >= ACK_SETTLE)
    }
}

/// The ledger shared by every member task.
#[derive(Debug)]
pub struct Ledger {
    inner: Mutex<Inner>,
    pub c: Counters,
    next_conn: AtomicU64,
}

/// A broker message id (32 hex digits) as a number.
pub fn parse_id(id: &str) -> Option<u128> {
    if id.len() == 32 { u128::from_str_radix(id, 16).ok() } else { None }
}

impl Ledger {
    /// A ledger for `participants` (at most 128: recipients are a bit mask).
    pub fn new(participants: usize) -> Self {
        let inner = Inner { received: vec![HashMap::new(); participants], ..Inner::default() };
        Self { inner: Mutex::new(inner), c: Counters::default(), next_conn: AtomicU64::new(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain maps; a panic elsewhere leaves them usable.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new connection id for the ack bookkeeping.
    pub fn conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Relaxed)
    }

    /// The broker acknowledged a send to the recipients in `mask`.
    pub fn acked(&self, id: &str, mask: u128) {
        let Some(id) = parse_id(id) else {
            self.c.malformed.fetch_add(1, Relaxed);
            return;
        };
        self.c.acked.fetch_add(1, Relaxed);
        *self.lock().expected.entry(id).or_default() |= mask;
    }

    /// Participant `who` got a push of `id`.
    pub fn push(&self, who: usize, id: &str, now: Instant) -> Delivery {
        let Some(id) = parse_id(id) else {
            self.c.malformed.fetch_add(1, Relaxed);
            return Delivery::New;
        };
        let mut st = self.lock();
        let prior = st.received[who].get(&id).copied();
        let d = match prior {
            None => {
                st.received[who].insert(id, None);
                Delivery::New
            }
            Some(Some(m)) if st.confirmed(m, now) => Delivery::Repeat,
            Some(_) => Delivery::Redelivered,
        };
        drop(st);
        let counter = match d {
            Delivery::New => &self.c.delivered,
            Delivery::Redelivered => &self.c.redelivered,
            Delivery::Repeat => &self.c.repeats,
        };
        counter.fetch_add(1, Relaxed);
        d
    }

    /// Participant `who` sent `client_ack` for `ids` on connection `conn` at `now`. An ack that
    /// was already confirmed keeps its mark (a later one must not excuse a repeat).
    pub fn client_ack(&self, who: usize, ids: &[String], conn: u64, now: Instant) {
        self.c.client_acks.fetch_add(1, Relaxed);
        let mut guard = self.lock();
        let st = &mut *guard;
        for id in ids.iter().filter_map(|s| parse_id(s)) {
            let keep = matches!(st.received[who].get(&id), Some(Some(m)) if st.confirmed(*m, now));
            if !keep {
                st.received[who].insert(id, Some(AckMark { conn, at: now }));
            }
        }
    }

    /// Connection `conn` ended at `now`.
    pub fn closed(&self, conn: u64, now: Instant) {
        self.lock().closed.insert(conn, now);
    }

    /// Acknowledged (message, recipient) pairs never pushed to the recipient, and up to five
    /// examples as (msg id, participant).
    pub fn loss(&self) -> (u64, Vec<(String, usize)>) {
        let st = self.lock();
        let mut lost = 0u64;
        let mut examples = Vec::new();
        for (id, mask) in &st.expected {
            for (who, got) in st.received.iter().enumerate() {
                if mask & (1u128 << who) != 0 && !got.contains_key(id) {
                    lost += 1;
                    if examples.len() < 5 {
                        examples.push((format!("{id:032x}"), who));
                    }
                }
            }
        }
        (lost, examples)
    }

    /// Acknowledged (message, recipient) pairs.
    pub fn expected_pairs(&self) -> u64 {
        self.lock().expected.values().map(|m| u64::from(m.count_ones())).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0000000000010000000000000000000a";
    const B: &str = "0000000000020000000000000000000b";

    #[test]
    fn loss_counts_acked_pairs_never_pushed() {
        let l = Ledger::new(3);
        l.acked(A, 0b110);
        l.acked(B, 0b001);
        let t = Instant::now();
        assert_eq!(l.push(1, A, t), Delivery::New);
        assert_eq!(l.expected_pairs(), 3);
        let (lost, ex) = l.loss();
        assert_eq!(lost, 2);
        assert!(ex.contains(&(A.to_string(), 2)) && ex.contains(&(B.to_string(), 0)));
    }

    #[test]
    fn a_repeat_needs_an_old_ack_on_a_connection_that_stayed_open() {
        let l = Ledger::new(2);
        let t0 = Instant::now();
        assert_eq!(l.push(0, A, t0), Delivery::New);
        assert_eq!(l.push(0, A, t0), Delivery::Redelivered, "not acked yet");
        l.client_ack(0, &[A.to_string()], 7, t0);
        let later = t0 + Duration::from_secs(6);
        // Connection 7 ended 0.5 s after the ack: the broker may not have read it.
        l.closed(7, t0 + Duration::from_millis(500));
        assert_eq!(l.push(0, A, later), Delivery::Redelivered);
        // Acked again on connection 8, which stays open: a push 6 s later is a repeat.
        l.client_ack(0, &[A.to_string()], 8, later);
        assert_eq!(l.push(0, A, later + Duration::from_secs(2)), Delivery::Redelivered, "too soon");
        assert_eq!(l.push(0, A, later + Duration::from_secs(6)), Delivery::Repeat);
        assert_eq!(l.c.repeats.load(Relaxed), 1);
        // A later ack does not excuse it.
        l.client_ack(0, &[A.to_string()], 9, later + Duration::from_secs(6));
        assert_eq!(l.push(0, A, later + Duration::from_secs(7)), Delivery::Repeat);
    }
}
