//! claudemesh-agent: the long-lived local daemon that holds broker connections and keys, keeps
//! the inbox and outbox, and serves the Unix socket every local client talks to (DESIGN §2, §10).

pub mod admin;
pub mod api;
pub mod client;
pub mod config;
pub mod daemon;
pub mod enroll;
pub mod fds;
pub mod hooks;
pub mod inbox;
pub mod link;
pub mod local_broker;
pub mod members;
pub mod paths;
pub mod resolve;
pub mod service_unit;
pub mod sessions;
pub mod socket;
pub mod state;
pub mod store;
pub mod tls;
pub mod uplink;
pub mod views;

pub use client::{AgentClient, ClientError, connect_or_start};
pub use config::{Config, MeshConfig};
pub use daemon::{DaemonError, run};
pub use paths::Paths;
