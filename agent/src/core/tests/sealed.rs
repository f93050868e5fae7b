//! Core tests of what a send must fit once sealed: a body under the body limit that the broker
//! would refuse as too large after JSON escaping is refused by the agent at once.

use claudemesh_protocol::local::{SendParams, SendReply};

use super::*;

/// A body under the 64 KiB limit that the broker would still refuse once sealed (JSON escapes
/// each `"` as two bytes, each control character as six) is refused at once with `too_large`,
/// nothing queued; the largest plain body goes through.
#[test]
fn a_body_too_large_once_sealed_is_refused_at_once_not_queued_then_failed() {
    let mut t = setup(&[]);
    let send = |message: String| SendParams {
        to: "alice".into(),
        message,
        priority: Priority::Low,
        mesh: None,
        from_session: None,
        reply_to: None,
        idempotency_key: None,
    };
    let max = claudemesh_protocol::limits::MAX_BODY_BYTES;
    for body in ["\"".repeat(max), "\u{1}".repeat(max)] {
        let (code, message) = t.call::<SendReply>(1, AgentCall::Send(send(body))).unwrap_err();
        assert_eq!(code, ErrorCode::TooLarge, "{message}");
        assert!(message.contains("sealed") && message.contains("shorten it"), "{message}");
    }
    assert_eq!(t.core.store.outbox_for(MESH).unwrap().len(), 0, "nothing queued");
    let ok: SendReply = t.call(1, AgentCall::Send(send("x".repeat(max)))).unwrap();
    assert!(ok.id.is_some());
}
