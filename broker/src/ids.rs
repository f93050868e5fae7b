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

/// A 32-hex-character id whose first 12 characters are the millisecond timestamp, so ids sort
/// by creation time; the other 80 bits are random.
pub fn msg_id() -> String {
    let r: [u8; 10] = random_bytes();
    format!("{:012x}{}", now_ms() & 0xffff_ffff_ffff, hex::encode(r))
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
        assert!(prefixed("m").starts_with("m_"));
    }
}
