//! The replica: this member's copy of the tree, kept in step with the others by raft-rs. One
//! task, the [`driver`], owns the `RawNode` and runs the Ready loop; the rest of the member
//! talks to it through a [`Replica`] handle and reads the applied tree through
//! [`ReplicaShared`].
//!
//! The driver composes parts that each own their state: [`proposals`] (writes waiting to
//! apply), [`reads`] (ReadIndex reads), [`sessions`] (session liveness), [`snapshots`],
//! [`install`] (a snapshot received from the leader), [`rejoin`] (a member that lost its
//! storage), [`leadership`] (early campaigns, handover on stop) and the change [`feed`]
//! watchers read.

mod driver;
mod expiries;
mod feed;
mod install;
mod leadership;
mod proposals;
mod raft_log;
mod reads;
mod rejoin;
mod sessions;
mod snapshots;
#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use raft::prelude::ConfState;
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use rmif_registry::RegistryError;
use rmif_registry::op::SessionCall;

use crate::error::ServerError;
use crate::network::Peers;
use crate::storage::{LogStore, Persist, RaftLog, StorageMode, StorageWriter};
use crate::tree::{Action, Applied, Tree};

use driver::{Driver, Inputs};
use feed::ChangeFeed;
pub use feed::{Published, Subscription};
use install::Installs;
use proposals::ProposalReply;
use reads::ReadReply;
use rejoin::Rejoin;
pub use snapshots::SnapshotPolicy;
use snapshots::Snapshots;

/// Raft settings of one member.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This member's id.
    pub id: u64,
    /// Every voter's id (this member included).
    pub voters: Vec<u64>,
    /// Length of one Raft tick.
    pub tick: Duration,
    /// Ticks without a leader before a follower campaigns (randomized up to twice this).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// When a snapshot is due (each snapshot compacts the log).
    pub snapshots: SnapshotPolicy,
    /// This member joins a running cluster (see `RegistryConfig::join_existing`).
    pub join_existing: bool,
}

/// The role and progress of this member, for status reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftStatus {
    /// Leader, follower, candidate or pre-candidate.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// The leader this member knows of (0: none).
    pub leader: u64,
    /// Highest index known committed.
    pub commit: u64,
    /// Highest index applied to the tree.
    pub applied: u64,
    /// Index of the latest snapshot.
    pub snapshot: u64,
}

/// Logs (INFO) what start-up read from disk: the snapshot, the log entries after it, their size,
/// and how long reading took. The driver logs when it has applied them.
fn log_recovered(id: u64, recovered: &crate::storage::Recovered, took: Duration) {
    if recovered.is_empty() {
        tracing::info!(id, "start-up: no stored state (a new member)");
        return;
    }
    let snapshot_index = recovered
        .snapshot
        .as_ref()
        .map_or(0, |s| s.get_metadata().index);
    let snapshot_bytes = recovered.snapshot.as_ref().map_or(0, |s| s.data.len());
    let entry_bytes: usize = recovered.entries.iter().map(|e| e.data.len()).sum();
    tracing::info!(
        id,
        snapshot_index,
        snapshot_bytes,
        entries = recovered.entries.len(),
        entry_bytes,
        first_index = recovered.entries.first().map_or(0, |e| e.index),
        last_index = recovered.entries.last().map_or(0, |e| e.index),
        commit = recovered.hard_state.commit,
        took_ms = took.as_millis() as u64,
        "start-up replay: stored state read"
    );
}

/// The name a status report gives a Raft role.
fn role_name(role: StateRole) -> &'static str {
    match role {
        StateRole::Leader => "leader",
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::PreCandidate => "pre-candidate",
    }
}

/// What the member's other parts share with the replica.
pub(crate) struct ReplicaShared {
    /// The applied state.
    pub tree: RwLock<Tree>,
    /// Index of the last applied entry.
    pub applied: watch::Sender<u64>,
    /// Role and progress.
    pub status: RwLock<RaftStatus>,
    /// Every applied change, in order.
    feed: ChangeFeed,
}

impl ReplicaShared {
    /// Subscribes to changes after `since` (or after the current state, if `None`). The replay
    /// and the live feed together hold every change after that point exactly once.
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        self.feed.subscribe(since, || *self.applied.borrow())
    }
}

/// A request to the driver.
enum Request {
    Propose {
        action: Action,
        session: Option<SessionCall>,
        reply: ProposalReply,
    },
    ReadIndex {
        reply: ReadReply,
    },
    /// A client of this member sent a heartbeat for the session.
    Touch(u64),
}

/// Requests queued for the driver before callers wait.
const REQUEST_CAPACITY: usize = 65_536;
/// Bytes of entries a leader holds uncommitted before it refuses new proposals: bounds what a
/// stalled quorum makes it buffer, and the size of any one Ready.
const MAX_UNCOMMITTED_BYTES: u64 = 256 * 1024 * 1024;

/// Handle to the replica task.
#[derive(Clone)]
pub(crate) struct Replica {
    requests: mpsc::Sender<Request>,
    shared: Arc<ReplicaShared>,
}

impl Replica {
    /// Recovers the member's state from `store` and starts the Ready loop, writing through a
    /// storage writer in `storage_mode` and talking to the other members through `peers`.
    /// Returns the handle and the loop's join handle, which ends with an error if storage
    /// fails.
    pub fn start(
        config: ReplicaConfig,
        mut store: Box<dyn LogStore>,
        storage_mode: StorageMode,
        peers: Peers,
        shutdown: CancellationToken,
    ) -> Result<(Replica, tokio::task::JoinHandle<Result<(), ServerError>>), ServerError> {
        let started = std::time::Instant::now();
        let recovered = store.recover()?;
        log_recovered(
            config.id,
            &recovered,
            started.elapsed() + recovered.read_ahead_took,
        );
        let bootstrap = ConfState {
            voters: config.voters.clone(),
            ..ConfState::default()
        };
        if recovered.is_empty() {
            store.persist(Persist {
                conf_state: Some(&bootstrap),
                ..Persist::default()
            })?;
        }
        let rejoin = Rejoin::new(
            recovered.is_empty(),
            config.join_existing,
            config.voters.len(),
        );
        let log = RaftLog::from_recovered(&recovered, &bootstrap);
        let mut tree = Tree::new();
        let mut applied = 0;
        if let Some(snapshot) = &recovered.snapshot {
            let restoring = std::time::Instant::now();
            tree = Tree::from_snapshot(&snapshot.data)?;
            applied = snapshot.get_metadata().index;
            tracing::info!(
                id = config.id,
                index = applied,
                nodes = tree.node_count(),
                took_ms = restoring.elapsed().as_millis() as u64,
                "start-up replay: snapshot restored"
            );
        }
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            check_quorum: true,
            pre_vote: true,
            // One append message carries at most 1 MiB of entries, and at most 256 may be in
            // flight to a follower: enough to keep a loopback or LAN link busy without letting
            // a slow follower make the leader buffer without bound.
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            // Appends queued for a follower within one Ready travel as one message, and commit
            // index updates join them: without it every write costs a message per follower.
            batch_append: true,
            max_uncommitted_size: MAX_UNCOMMITTED_BYTES,
            ..raft::Config::default()
        };
        raft_config.validate().map_err(|source| ServerError::Raft {
            action: "accept the configuration",
            source,
        })?;
        let raw =
            RawNode::new(&raft_config, log.clone(), &raft_log::logger()).map_err(|source| {
                ServerError::Raft {
                    action: "start",
                    source,
                }
            })?;
        let shared = Arc::new(ReplicaShared {
            tree: RwLock::new(tree),
            applied: watch::Sender::new(applied),
            status: RwLock::new(RaftStatus {
                applied,
                snapshot: applied,
                ..RaftStatus::default()
            }),
            // Changes before the state this member starts from are unknown to it.
            feed: ChangeFeed::new(applied),
        });
        let (requests, request_rx) = mpsc::channel(REQUEST_CAPACITY);
        let snapshot_writer = store.snapshot_writer();
        let (storage, persisted) = StorageWriter::start(store, storage_mode)?;
        let (snapshots, made) = Snapshots::new(config.snapshots, applied, snapshot_writer);
        let (installs, decoded) = Installs::new();
        let driver = Driver::new(
            config,
            raw,
            log,
            storage,
            peers.network,
            shared.clone(),
            rejoin,
            snapshots,
            installs,
        );
        let inputs = Inputs {
            peers: peers.inbound,
            requests: request_rx,
            peer_events: peers.events,
            persisted,
            snapshots_made: made,
            decoded,
        };
        let task = tokio::spawn(driver.run(inputs, shutdown));
        Ok((Replica { requests, shared }, task))
    }

    /// The shared state (tree, applied index, status, changes).
    pub fn shared(&self) -> &Arc<ReplicaShared> {
        &self.shared
    }

    /// Replicates `action` and returns what applying it did. The error for a lost leader or a
    /// deadline says that the outcome is unknown.
    pub async fn propose(
        &self,
        action: Action,
        session: Option<SessionCall>,
        deadline: Instant,
    ) -> Result<Applied, RegistryError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Propose {
                action,
                session,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RegistryError::Indeterminate(
                "this member stopped before the write committed".to_owned(),
            )),
            Err(_) => Err(RegistryError::Indeterminate(
                "the write was not committed before the deadline; it may still be applied"
                    .to_owned(),
            )),
        }
    }

    /// A linearizable read point: resolves once this member has applied everything committed
    /// when the call started (ReadIndex: the leader confirms its leadership with a quorum).
    /// Returns the applied index.
    pub async fn read_index(&self, deadline: Instant) -> Result<u64, RegistryError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::ReadIndex { reply })
            .await
            .map_err(|_| stopped())?;
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(RegistryError::NoQuorum(
                "no leader confirmed a read index before the deadline".to_owned(),
            )),
        }
    }

    /// Records a heartbeat of `session` (from a client connected to this member). Never
    /// blocks: under overload a heartbeat may be dropped, which the session timeout absorbs.
    pub fn touch(&self, session: u64) {
        let _ = self.requests.try_send(Request::Touch(session));
    }

    /// Waits until this member has applied `index` (for reads that must not go back in time).
    pub async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<u64, RegistryError> {
        let mut applied = self.shared.applied.subscribe();
        match tokio::time::timeout_at(deadline, applied.wait_for(|a| *a >= index)).await {
            Ok(Ok(now)) => Ok(*now),
            _ => Err(RegistryError::NoQuorum(format!(
                "this member has not caught up to zxid {index} yet"
            ))),
        }
    }
}

fn stopped() -> RegistryError {
    RegistryError::NoQuorum("this member's replica has stopped".to_owned())
}
