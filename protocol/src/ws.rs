//! How a claudemesh frame goes over WebSocket: one text message, sent as one WebSocket frame
//! when it is small and as a fragmented message (RFC 6455 §5.4) of [`FRAGMENT_BYTES`] pieces
//! when it is larger, so that neither end's write buffer grows to the size of its largest frame.
//!
//! tungstenite writes a frame into a per-connection buffer and keeps that buffer's capacity for
//! the connection's life; on the reading side its buffer likewise keeps room for the largest
//! frame read. One 80 KB `list_peers` answer or push then costs that connection 80 KB until it
//! closes: at 10,000 connections, gigabytes. Fragments bound both buffers by the fragment size.
//! Every conforming WebSocket reader (tungstenite, Python `websockets`, browsers) joins the
//! fragments back into one message; control frames (ping, pong, close) may come between them.

use tungstenite::Message;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};

/// Largest payload of one fragment, in bytes. A text message of at most this many bytes goes as
/// one frame. Both ends use it (the broker's `WS_BUFFER_BYTES` write threshold is the same).
pub const FRAGMENT_BYTES: usize = 4 * 1024;

/// The WebSocket messages that carry `text`: one [`Message::Text`] when it holds at most `max`
/// bytes, else raw [`Message::Frame`]s (a first text frame, continuation frames, the last one
/// final), each at most `max` bytes and cut at UTF-8 character boundaries so that each piece is
/// valid text on its own (RFC 6455 lets a cut fall inside a character; strict readers may not).
/// Feed them in order on one sink, with no other data message between them. `max` below 4 is
/// taken as 4 (a character's largest encoding).
pub fn text_messages(text: String, max: usize) -> Messages {
    let max = max.max(4);
    if text.len() <= max {
        return Messages {
            whole: Some(Message::Text(text.into())),
            rest: tungstenite::Bytes::new(),
            at: 0,
            max,
        };
    }
    Messages { whole: None, rest: tungstenite::Bytes::from(text), at: 0, max }
}

/// The messages of one text (see [`text_messages`]), in the order they must be sent.
#[derive(Debug)]
pub struct Messages {
    whole: Option<Message>,
    rest: tungstenite::Bytes,
    at: usize,
    max: usize,
}

impl Iterator for Messages {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        if let Some(m) = self.whole.take() {
            return Some(m);
        }
        let len = self.rest.len();
        if self.at >= len {
            return None;
        }
        let mut end = (self.at + self.max).min(len);
        // Back off to a character boundary: a UTF-8 continuation byte is 0b10xx_xxxx. At most
        // three steps, and `max >= 4` keeps every piece non-empty.
        while end < len && self.rest.get(end).is_some_and(|b| b & 0xC0 == 0x80) {
            end -= 1;
        }
        let opcode = if self.at == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
        let frame = Frame::message(self.rest.slice(self.at..end), opcode, end == len);
        self.at = end;
        Some(Message::Frame(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The pieces' payloads joined, with each piece's opcode and final bit.
    fn pieces(msgs: Messages) -> Vec<(OpCode, bool, Vec<u8>)> {
        msgs.map(|m| match m {
            Message::Text(t) => (OpCode::Data(Data::Text), true, t.as_bytes().to_vec()),
            Message::Frame(f) => (f.header().opcode, f.header().is_final, f.payload().to_vec()),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
    }

    #[test]
    fn a_small_text_is_one_text_message() {
        let msgs: Vec<_> = text_messages("{\"type\":\"ok\"}".into(), FRAGMENT_BYTES).collect();
        assert_eq!(msgs, vec![Message::Text("{\"type\":\"ok\"}".into())]);
        let exact = "x".repeat(FRAGMENT_BYTES);
        assert_eq!(
            text_messages(exact.clone(), FRAGMENT_BYTES).collect::<Vec<_>>(),
            vec![Message::Text(exact.into())]
        );
    }

    #[test]
    fn a_large_text_is_a_first_frame_continuations_and_a_final_one() {
        let text = "y".repeat(FRAGMENT_BYTES * 2 + 1);
        let p = pieces(text_messages(text, FRAGMENT_BYTES));
        let shape: Vec<_> = p.iter().map(|(op, fin, data)| (*op, *fin, data.len())).collect();
        assert_eq!(
            shape,
            vec![
                (OpCode::Data(Data::Text), false, FRAGMENT_BYTES),
                (OpCode::Data(Data::Continue), false, FRAGMENT_BYTES),
                (OpCode::Data(Data::Continue), true, 1),
            ]
        );
    }

    proptest! {
        /// Any text, any piece size: the pieces join back to the text, each is valid UTF-8 of
        /// at most `max` bytes, only the last is final, only the first is a text frame.
        #[test]
        fn pieces_join_back_to_the_text(text in "\\PC{0,300}", max in 0usize..40) {
            let p = pieces(text_messages(text.clone(), max));
            let joined: Vec<u8> = p.iter().flat_map(|(_, _, d)| d.clone()).collect();
            prop_assert_eq!(&joined, text.as_bytes());
            for (i, (op, fin, data)) in p.iter().enumerate() {
                prop_assert!(data.len() <= max.max(4));
                prop_assert!(std::str::from_utf8(data).is_ok());
                prop_assert_eq!(*fin, i + 1 == p.len());
                let first = *op == OpCode::Data(Data::Text);
                prop_assert_eq!(first, i == 0);
            }
        }
    }
}
