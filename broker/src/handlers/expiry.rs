//! The expiry sweep: queued copies older than the queue TTL are removed and marked `expired`
//! for their recipient, their senders are told (`expired` events), and message records and
//! idempotency keys past the TTL are dropped. Run periodically by the server.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use claudemesh_protocol::frames::{DeliveryState, Event, ServerFrame, encode};

use crate::hub::Hub;
use crate::ids::now_ms;
use crate::metrics::Metrics;
use crate::store::{
    IDEMPOTENCY, MESHES, MESSAGES, MessageRecord, QUEUE, RECIPIENTS, RecipientState, SEP, key,
};

/// Expires queued copies older than the TTL: removes them, marks the recipient `expired`, tells
/// online senders, and drops message records and idempotency keys past the TTL.
pub async fn sweep_expired(hub: &Arc<Hub>) {
    let ttl_ms = hub.config.queue_ttl.as_millis() as u64;
    let cutoff = now_ms().saturating_sub(ttl_ms);
    let floor = id_floor(cutoff);
    let apply = move |tx: &crate::store::Tx<'_>, state: &mut crate::store::WriterState| {
        let mut expired: Vec<(String, String, String)> = Vec::new(); // mesh, recipient, msg
        // Keys only: the queued push frames (up to a whole message each) are not copied. The
        // queue holds only what is undelivered, so it stays small while members are online.
        for k in tx.keys_all(QUEUE)? {
            let parts: Vec<&str> = k.split(SEP).collect();
            if let [mesh, member, id] = parts[..]
                && id < floor.as_str()
            {
                tx.remove(QUEUE, &k)?;
                state.add_depth(mesh, member, -1);
                tx.put(
                    RECIPIENTS,
                    &key(&[mesh, id, member]),
                    &RecipientState { state: DeliveryState::Expired, at: now_ms() },
                )?;
                expired.push((mesh.into(), member.into(), id.into()));
            }
        }
        // Records and idempotency keys live as long as the queue TTL. Message ids sort by
        // time, so each mesh's expired records are a range at the start of its keys: the sweep
        // reads those alone, not every message kept (a busy mesh keeps millions).
        let mut senders = Vec::new();
        for mesh in tx.keys_all(MESHES)? {
            for (k, v) in tx.scan_below(MESSAGES, &mesh, &floor)? {
                let Some((_, id)) = k.split_once(SEP) else { continue };
                if let Ok(rec) = serde_json::from_slice::<MessageRecord>(&v) {
                    tx.remove(IDEMPOTENCY, &key(&[&mesh, &rec.from_member, &rec.client_msg_id]))?;
                    senders.push((mesh.clone(), id.to_string(), rec.from_member));
                }
                tx.remove(MESSAGES, &k)?;
                for (rk, _) in tx.scan(RECIPIENTS, &key(&[&mesh, id]))? {
                    tx.remove(RECIPIENTS, &rk)?;
                }
            }
        }
        Ok((expired, senders))
    };
    let metrics = hub.metrics.clone();
    let hub2 = hub.clone();
    let r = hub.store.write(apply).await;
    match r {
        Ok((expired, senders)) if !expired.is_empty() => {
            expired_events(&hub2, &metrics, &expired, &senders);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "expiry sweep failed; will retry"),
    }
}

/// The smallest message id of millisecond `ms`: ids start with their millisecond in 12 lowercase
/// hex digits ([`crate::ids::msg_id`]), so an id sorts below this exactly when it was made
/// earlier.
fn id_floor(ms: u64) -> String {
    format!("{:012x}", ms & 0xffff_ffff_ffff)
}

fn expired_events(
    hub: &Hub,
    metrics: &Metrics,
    expired: &[(String, String, String)],
    senders: &[(String, String, String)],
) {
    metrics.messages_expired.fetch_add(expired.len() as u64, Relaxed);
    metrics.queue_depth.fetch_sub(expired.len() as i64, Relaxed);
    let sender_of: HashMap<(&str, &str), &str> =
        senders.iter().map(|(m, id, s)| ((m.as_str(), id.as_str()), s.as_str())).collect();
    let mut per: HashMap<(String, String, String), Vec<String>> = HashMap::new();
    for (mesh, member, id) in expired {
        if let Some(sender) = sender_of.get(&(mesh.as_str(), id.as_str())) {
            per.entry((mesh.clone(), sender.to_string(), member.clone())).or_default().push(id.clone());
        }
    }
    for ((mesh_id, sender, member), ids) in per {
        if let Some(mesh) = hub.mesh(&mesh_id) {
            let ev = ServerFrame::Event(Event::Expired { msg_ids: ids, member_id: member });
            mesh.lock().send_to(&sender, encode(&ev), "event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_below_the_floor_of_a_later_millisecond_only() {
        let id = crate::ids::msg_id();
        let ms = u64::from_str_radix(&id[..12], 16).unwrap();
        assert!(id.as_str() < id_floor(ms + 1).as_str());
        assert!(id.as_str() >= id_floor(ms).as_str());
        assert!(id.as_str() > id_floor(ms - 1).as_str());
        assert_eq!(id_floor(0x1_0000_0000), "000100000000");
    }
}
