//! claudemesh-agent: the long-lived local daemon that holds broker connections and keys, keeps
//! the inbox and outbox, and serves the Unix socket every local client talks to (DESIGN §2, §10).

pub mod api;
pub mod client;
pub mod config;
pub mod core;
pub mod daemon;
pub mod enroll;
pub mod error;
pub mod fds;
pub mod hosting;
pub mod local_broker;
pub mod mesh;
pub mod paths;
pub mod service_unit;
pub mod shared;
pub mod socket;
pub mod socket_bounds;
pub mod store;
pub mod tls;
pub mod transport;
pub mod uplink;

pub use client::{AgentClient, ClientError, connect_or_start};
pub use config::{Config, MeshConfig};
pub use daemon::{DaemonError, run};
pub use paths::Paths;
