//! A running member: opens its log, starts the Raft replica, the peer network and the prober
//! of providers, and serves the client API with rmif-core.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rmif_core::{ProviderConfig, Server, ServerHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use rmif_registry::api::RegistryProvider;

use crate::config::{LogEngine, RegistryConfig};
use crate::error::ServerError;
use crate::network::tcp::TcpNetwork;
use crate::probe::{self, ProbeConfig};
use crate::replica::{Replica, ReplicaConfig, SnapshotPolicy};
use crate::service::{Identity, RegistryService};
use crate::storage::{LogStore, RedbStore, StorageMode, WalStore};

/// Opens the member's log: the engine asked for, or the one `data_dir` already holds. A member
/// whose directory holds the other engine's log refuses to start rather than start empty: a
/// member that forgot its log could vote twice in a term or lose acknowledged writes.
fn open_store(
    data_dir: &Path,
    engine: Option<LogEngine>,
) -> Result<Box<dyn LogStore>, ServerError> {
    let wal = data_dir.join("wal");
    let redb = data_dir.join("raft.redb");
    let found = if wal.exists() {
        Some(LogEngine::Wal)
    } else if redb.exists() {
        Some(LogEngine::Redb)
    } else {
        None
    };
    let engine = match (engine, found) {
        (Some(asked), Some(found)) if asked != found => {
            return Err(ServerError::EngineMismatch {
                asked: asked.name(),
                found: found.name(),
                dir: data_dir.to_owned(),
            });
        }
        (Some(engine), _) | (None, Some(engine)) => engine,
        (None, None) => LogEngine::Wal,
    };
    Ok(match engine {
        LogEngine::Wal => Box::new(WalStore::open(&wal)?),
        LogEngine::Redb => Box::new(RedbStore::open(&redb)?),
    })
}

async fn bind(role: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { role, addr, source })
}

fn local_addr(
    role: &'static str,
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, ServerError> {
    listener
        .local_addr()
        .map_err(|source| ServerError::Bind { role, addr, source })
}

/// A running registry member.
pub struct RegistryServer {
    api: ServerHandle,
    replica_task: JoinHandle<Result<(), ServerError>>,
    shutdown: CancellationToken,
    peer_addr: SocketAddr,
}

impl std::fmt::Debug for RegistryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryServer")
            .field("client_addr", &self.client_addr())
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

impl RegistryServer {
    /// Starts a member with the log engine its configuration names (see
    /// [`RegistryConfig::log_engine`]).
    pub async fn start(config: RegistryConfig) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(ServerError::io(
            "create the data directory",
            &config.data_dir,
        ))?;
        let store = open_store(&config.data_dir, config.log_engine)?;
        Self::start_with_store(config, store).await
    }

    /// Starts a member on the given log store.
    pub async fn start_with_store(
        config: RegistryConfig,
        store: Box<dyn LogStore>,
    ) -> Result<Self, ServerError> {
        let peer_listener = bind("peers", config.peer_addr()).await?;
        let peer_addr = local_addr("peers", &peer_listener, config.peer_addr())?;
        let mut peer_addrs: HashMap<u64, SocketAddr> =
            config.peers.iter().map(|(k, v)| (*k, *v)).collect();
        peer_addrs.insert(config.node_id, peer_addr);
        let shutdown = CancellationToken::new();
        // A peer is logged as not answering after twice the longest election timeout (at least
        // a second): long enough that a busy member is not reported, short enough that an
        // operator reads it before the members have given up on it.
        let election = config.tick * config.election_ticks as u32;
        let silence = (election * 4).max(Duration::from_secs(1));
        let peers = TcpNetwork::start(
            config.node_id,
            peer_listener,
            &peer_addrs,
            silence,
            shutdown.clone(),
        );
        let (replica, replica_task) = Replica::start(
            ReplicaConfig {
                id: config.node_id,
                voters: config.peers.keys().copied().collect(),
                tick: config.tick,
                election_ticks: config.election_ticks,
                heartbeat_ticks: config.heartbeat_ticks,
                snapshots: SnapshotPolicy {
                    entries: config.snapshot_entries,
                    log_bytes: config.snapshot_log_bytes,
                },
                join_existing: config.join_existing,
            },
            store,
            StorageMode::Thread,
            peers,
            shutdown.clone(),
        )?;
        let mut members: Vec<(u64, String)> = peer_addrs
            .iter()
            .map(|(id, addr)| (*id, addr.to_string()))
            .collect();
        members.sort();
        let listener = bind("clients", config.client_addr).await?;
        let client_addr = local_addr("clients", &listener, config.client_addr)?;
        if config.probe_providers {
            probe::start(
                replica.clone(),
                ProbeConfig {
                    tick: config.probe_tick,
                    again: config.probe_again,
                    monitor_log: config.monitor_log,
                },
                shutdown.clone(),
            );
        }
        let service = RegistryService::new(
            replica,
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
            .map_err(ServerError::Serve)?;
        tracing::info!(
            id = config.node_id,
            %client_addr,
            %peer_addr,
            data_dir = %config.data_dir.display(),
            "registry member started"
        );
        Ok(RegistryServer {
            api,
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

    /// Resolves if the replica stops on its own, which happens only when storage fails; the
    /// member must not go on serving then.
    pub async fn failed(&mut self) -> ServerError {
        match (&mut self.replica_task).await {
            Ok(Err(error)) => error,
            Ok(Ok(())) => ServerError::ReplicaStopped,
            Err(error) => ServerError::ReplicaPanicked(error),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::{append, entry};

    fn write_entry(store: &mut dyn LogStore) {
        append(store, &[entry(1, 1)]);
    }

    #[test]
    fn a_member_keeps_the_engine_its_directory_holds_and_refuses_the_other() {
        let dir = tempfile::tempdir().unwrap();
        write_entry(
            open_store(dir.path(), Some(LogEngine::Redb))
                .unwrap()
                .as_mut(),
        );
        // Unset: the redb log found there, with its entry.
        let store = open_store(dir.path(), None).unwrap();
        assert_eq!(store.recover().unwrap().entries.len(), 1);
        drop(store);
        let refused = open_store(dir.path(), Some(LogEngine::Wal)).err().unwrap();
        assert!(
            refused.to_string().contains("holds a redb log"),
            "{refused}"
        );

        let fresh = tempfile::tempdir().unwrap();
        write_entry(open_store(fresh.path(), None).unwrap().as_mut());
        assert!(
            fresh.path().join("wal").is_dir(),
            "a new member uses the WAL"
        );
        assert!(open_store(fresh.path(), Some(LogEngine::Redb)).is_err());
    }
}
