//! The handles every task of the agent shares ([`Agent`]): paths, the store (whose outbox and
//! sent tables the links own), this process's identity, the delivery core's handle and the
//! local broker's watch channels. Nothing here is a lock: state lives in the core and is read
//! from its snapshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use claudemesh_protocol::frames::AgentInstance;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::core::{CoreHandle, View};
use crate::local_broker::{LocalBrokerConfig, LocalBrokerStatus};
use crate::paths::Paths;
use crate::store::Store;

/// Everything the agent's tasks share.
#[derive(Debug)]
pub struct Agent {
    pub paths: Paths,
    pub store: Store,
    /// This agent process, as every hello names it: a broker tells a reconnect of the same
    /// agent from a second agent using a copy of the same key.
    pub instance: AgentInstance,
    pub shutdown: CancellationToken,
    pub core: CoreHandle,
    /// The local broker `claudemesh up` configured (what [`crate::local_broker::supervise`]
    /// should run), and what it reports.
    pub local_broker_wanted: watch::Sender<Option<LocalBrokerConfig>>,
    pub local_broker: watch::Sender<Option<LocalBrokerStatus>>,
    /// The local MCP servers this agent exposes to its meshes (peer-hosted services).
    pub hosting: crate::hosting::Hosting,
    next_conn: AtomicU64,
}

impl Agent {
    pub fn new(
        paths: Paths,
        store: Store,
        instance: AgentInstance,
        core: CoreHandle,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            paths,
            store,
            instance,
            shutdown,
            core,
            local_broker_wanted: watch::Sender::new(None),
            local_broker: watch::Sender::new(None),
            hosting: crate::hosting::Hosting::default(),
            next_conn: AtomicU64::new(1),
        }
    }

    /// The core's latest snapshot. Never waits.
    pub fn view(&self) -> Arc<View> {
        self.core.view()
    }

    /// A fresh id for a socket connection.
    pub fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Relaxed)
    }
}
