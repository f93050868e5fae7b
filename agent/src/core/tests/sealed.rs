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
    for c in ["\"", "\u{1}"] {
        let (code, message) = t.call::<SendReply>(1, AgentCall::Send(send(c.repeat(max)))).unwrap_err();
        assert_eq!(code, ErrorCode::TooLarge, "{message}");
        assert!(message.contains("shorten it") && message.contains("nothing was sent"), "{message}");
        // The size it says fits does fit.
        let fits: usize =
            message.split("about ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
        assert!(fits > max / 8, "{message}");
        let ok: SendReply = t.call(1, AgentCall::Send(send(c.repeat(fits)))).unwrap();
        assert!(ok.id.is_some(), "{fits} bytes of {c:?} fit");
    }
    let queued = t.core.store.outbox_for(MESH).unwrap().len();
    assert_eq!(queued, 2, "the two that fit, nothing of the refused ones");
    let ok: SendReply = t.call(1, AgentCall::Send(send("x".repeat(max)))).unwrap();
    assert!(ok.id.is_some());
}
