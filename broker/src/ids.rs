//! Identifier generation: time-ordered message ids (so queue scans come out in send order),
//! random mesh, member and invite ids, and the wall clock in Unix milliseconds.

use claudemesh_protocol::crypto::random_bytes;

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Last (millisecond, sequence) handed out, so ids from this process strictly increase.
static LAST: std::sync::Mutex<(u64, u32)> = std::sync::Mutex::new((0, 0));

/// A 32-hex-character id that sorts by creation: 12 hex of milliseconds, 8 hex of a sequence
/// within that millisecond (so sends in the same millisecond keep their order in queue scans
/// and replays), then 48 random bits. If the clock steps back, the last millisecond is reused
/// with the next sequence number.
pub fn msg_id() -> String {
    let now = now_ms() & 0xffff_ffff_ffff;
    let (ms, seq) = {
        // The guarded value is two integers; a poisoned lock still holds a usable pair.
        let mut last = LAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = if now > last.0 { (now, 0) } else { (last.0, last.1.wrapping_add(1)) };
        *last
    };
    let r: [u8; 6] = random_bytes();
    format!("{ms:012x}{seq:08x}{}", hex::encode(r))
}

/// A random id with a readable prefix, e.g. `m_3f9c…`.
pub fn prefixed(prefix: &str) -> String {
    let r: [u8; 10] = random_bytes();
    format!("{prefix}_{}", hex::encode(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_ids_sort_by_time_and_are_unique() {
        let a = msg_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = msg_id();
        assert!(a < b);
        assert_eq!(a.len(), 32);
        let set: std::collections::HashSet<_> = (0..1000).map(|_| msg_id()).collect();
        assert_eq!(set.len(), 1000);
        // Within one millisecond too, later ids sort after earlier ones.
        let ids: Vec<String> = (0..10_000).map(|_| msg_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids strictly increase");
        assert!(prefixed("m").starts_with("m_"));
    }
}
