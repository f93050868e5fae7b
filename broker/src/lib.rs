//! claudemesh-broker: the server that authenticates members, keeps presence, routes
//! end-to-end encrypted messages with durable at-least-once delivery (DESIGN §2, §5, §6).

pub mod cli;
pub mod config;
pub mod conn;
pub mod guard;
pub mod handlers;
pub mod http;
pub mod hub;
pub mod ids;
pub mod keyuse;
pub mod metrics;
pub mod presence_out;
pub mod rate;
pub mod runner;
pub mod server;
pub mod services;
pub mod socket;
pub mod store;
pub mod testkit;
pub mod tls;
pub mod upgrade;

pub use config::BrokerConfig;
pub use server::{BrokerError, TlsFiles, serve};
