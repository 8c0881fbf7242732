//! A registry member: durable storage, the Raft replica, the peer network, and the client API
//! served with rmif-core.

mod config;
mod peer;
mod replica;
mod service;
pub mod storage;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rmif_core::{ProviderConfig, Server, ServerHandle};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{REGISTRY_KEYS, RegistryConfig, parse_peers};
pub use peer::PeerInbound;
pub use replica::{Published, RaftStatus, Replica, ReplicaConfig, ReplicaShared};
pub use service::{Identity, RegistryService};
use storage::{LogStore, RedbStore, StorageError, WalStore};

use crate::api::RegistryProvider;

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A port could not be bound or the data directory created.
    #[error("{0}")]
    Io(String),
    /// The stored state could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A running registry member.
pub struct RegistryServer {
    api: ServerHandle,
    replica: Replica,
    replica_task: JoinHandle<Result<(), StorageError>>,
    shutdown: CancellationToken,
    peer_addr: SocketAddr,
}

impl RegistryServer {
    /// Starts a member with the default storage: the write-ahead log in `data_dir/wal`, or
    /// the redb database `data_dir/raft.redb` that a member of an earlier version left there.
    pub async fn start(config: RegistryConfig) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            StartError::Io(format!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let wal = config.data_dir.join("wal");
        let redb = config.data_dir.join("raft.redb");
        let store: Box<dyn LogStore> = if !wal.exists() && redb.exists() {
            tracing::info!(path = %redb.display(), "going on with the existing redb log");
            Box::new(RedbStore::open(&redb)?)
        } else {
            Box::new(WalStore::open(&wal)?)
        };
        Self::start_with_store(config, store).await
    }

    /// Starts a member on the given log store.
    pub async fn start_with_store(
        config: RegistryConfig,
        store: Box<dyn LogStore>,
    ) -> Result<Self, StartError> {
        let peer_listener = TcpListener::bind(config.peer_addr()).await.map_err(|e| {
            StartError::Io(format!(
                "cannot listen for peers on {}: {e}",
                config.peer_addr()
            ))
        })?;
        let peer_addr = peer_listener
            .local_addr()
            .map_err(|e| StartError::Io(e.to_string()))?;
        let mut peers: HashMap<u64, SocketAddr> =
            config.peers.iter().map(|(k, v)| (*k, *v)).collect();
        peers.insert(config.node_id, peer_addr);
        let shutdown = CancellationToken::new();
        let (inbound_tx, inbound_rx) = mpsc::channel(65_536);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let network = peer::PeerNetwork::start(
            config.node_id,
            peer_listener,
            &peers,
            inbound_tx,
            events_tx,
            shutdown.clone(),
        );
        let (replica, replica_task) = Replica::start(
            ReplicaConfig {
                id: config.node_id,
                voters: config.peers.keys().copied().collect(),
                tick: config.tick,
                election_ticks: config.election_ticks,
                heartbeat_ticks: config.heartbeat_ticks,
                snapshot_every: config.snapshot_entries,
                join_existing: config.join_existing,
            },
            store,
            network,
            inbound_rx,
            events_rx,
            shutdown.clone(),
        )?;
        let mut members: Vec<(u64, String)> = peers
            .iter()
            .map(|(id, addr)| (*id, addr.to_string()))
            .collect();
        members.sort();
        let listener = TcpListener::bind(config.client_addr).await.map_err(|e| {
            StartError::Io(format!(
                "cannot listen for clients on {}: {e}",
                config.client_addr
            ))
        })?;
        let client_addr = listener
            .local_addr()
            .map_err(|e| StartError::Io(e.to_string()))?;
        let service = RegistryService::new(
            replica.clone(),
            Identity {
                id: config.node_id,
                client_addr: client_addr.to_string(),
                members,
                min_session_timeout: config.min_session_timeout,
                max_session_timeout: config.max_session_timeout,
            },
        );
        let api_config = ProviderConfig {
            bind: client_addr.ip(),
            port: client_addr.port(),
            tick: Duration::from_millis(1000),
            again: 3,
            max_concurrent_requests: 100_000,
            shutdown_timeout: Duration::from_secs(2),
            ..ProviderConfig::default()
        };
        let api = Server::builder(api_config)
            .add_service(RegistryProvider::new(service))
            .serve_on(listener)
            .map_err(|e| StartError::Io(e.to_string()))?;
        tracing::info!(id = config.node_id, %client_addr, %peer_addr, "registry member started");
        Ok(RegistryServer {
            api,
            replica,
            replica_task,
            shutdown,
            peer_addr,
        })
    }

    /// Where clients connect.
    pub fn client_addr(&self) -> SocketAddr {
        self.api.local_addr()
    }

    /// Where peers connect.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The replica (for embedding and tests).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Resolves if the replica stops on its own, which happens only when storage fails; the
    /// member must not go on serving then.
    pub async fn failed(&mut self) -> StorageError {
        match (&mut self.replica_task).await {
            Ok(Err(error)) => error,
            Ok(Ok(())) => StorageError("the replica stopped".to_owned()),
            Err(error) => StorageError(format!("the replica task failed: {error}")),
        }
    }

    /// Stops the member: clients are told to go away, in-flight calls finish (everything
    /// acknowledged is already durable), then Raft stops.
    pub async fn shutdown(self) {
        self.api.shutdown().await;
        self.shutdown.cancel();
        let _ = self.replica_task.await;
    }
}
