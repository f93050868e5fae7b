//! claudemesh-protocol: everything agents and brokers must agree on, with no I/O — wire
//! frames, agent-socket frames, crypto, invites, scopes, names, limits and how a frame goes
//! over WebSocket.

pub mod codec;
pub mod crypto;
pub mod frames;
pub mod invite;
pub mod limits;
pub mod local;
pub mod names;
pub mod scope;
pub mod sharing;
pub mod text;
pub mod trust;
pub mod vault_ref;
pub mod ws;

pub use frames::{ClientFrame, ServerFrame, decode_client, decode_server, encode};
