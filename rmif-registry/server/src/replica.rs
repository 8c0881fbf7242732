//! The Raft driver: one task owns the `RawNode` and runs the Ready loop; the rest of the server
//! talks to it through a channel and reads the applied tree through [`ReplicaShared`].
//!
//! Each turn of the loop takes every message and request that arrived together and hands their
//! entries to the storage thread, which makes them durable while the loop goes on stepping
//! messages; what queues up meanwhile goes to disk together (group commit: one fsync serves many
//! writes). raft-rs counts an entry as this member's only once the storage thread reports it
//! durable, so a write is answered only once its entry is committed (durable on a majority) and
//! applied here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use raft::prelude::{
    ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType, Snapshot,
};
use raft::{RawNode, StateRole};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use rmif_registry::RegistryError;
use rmif_registry::op::SessionCall;

use crate::error::ServerError;
use crate::network::{PeerEvent, PeerInbound, PeerMessage, PeerNetwork, Peers};
use crate::storage::{LogStore, Persist, Persisted, RaftLog, StorageMode, StorageWriter, Write};
use crate::tree::{Action, ActionResult, Applied, Change, Command, Proposer, Tree};

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
    /// Applied entries between snapshots (each snapshot compacts the log).
    pub snapshot_every: u64,
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

/// Changes applied by one entry, published to watchers.
#[derive(Debug, Clone)]
pub enum Published {
    /// An entry changed these nodes.
    Changes {
        /// The entry's index.
        zxid: u64,
        /// What changed.
        changes: Arc<Vec<Change>>,
    },
    /// The tree was replaced by a snapshot: watchers must resynchronize.
    Reset {
        /// The snapshot's index.
        zxid: u64,
    },
}

/// Changes kept for watchers that resume from a zxid (entries, not individual changes).
const HISTORY_ENTRIES: usize = 100_000;

/// Recent changes, for watchers resuming from a zxid.
pub struct History {
    entries: std::collections::VecDeque<(u64, Arc<Vec<Change>>)>,
    /// Changes at or before this zxid are not all here (dropped, or replaced by a snapshot).
    complete_after: u64,
}

/// What a new watcher starts from: the replayable changes after its zxid, or `None` if they
/// are no longer all known (the watcher must resynchronize), and the live feed.
pub struct Subscription {
    /// Changes after the requested zxid, in order; `None` when a resync is needed.
    pub replay: Option<Vec<(u64, Arc<Vec<Change>>)>>,
    /// Everything published after the replay.
    pub live: broadcast::Receiver<Published>,
    /// The zxid the watch starts from (the replay and the live feed follow it).
    pub from: u64,
}

/// What the server's other parts share with the replica.
pub struct ReplicaShared {
    /// The applied state.
    pub tree: RwLock<Tree>,
    /// Index of the last applied entry.
    pub applied: watch::Sender<u64>,
    /// Role and progress.
    pub status: RwLock<RaftStatus>,
    /// Every applied change, in order (published while `history` is locked).
    changes: broadcast::Sender<Published>,
    history: std::sync::Mutex<History>,
}

impl ReplicaShared {
    /// Subscribes to changes after `since` (or after the current state, if `None`). The replay
    /// and the live feed together hold every change after that point exactly once.
    pub fn subscribe(&self, since: Option<u64>) -> Subscription {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let live = self.changes.subscribe();
        let applied = *self.applied.borrow();
        let from = since.unwrap_or(applied).min(applied);
        let replay = (from >= history.complete_after).then(|| {
            history
                .entries
                .iter()
                .filter(|(zxid, _)| *zxid > from)
                .cloned()
                .collect()
        });
        Subscription { replay, live, from }
    }

    fn publish(&self, event: Published) {
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        match &event {
            Published::Changes { zxid, changes } => {
                if history.entries.len() >= HISTORY_ENTRIES {
                    if let Some((dropped, _)) = history.entries.pop_front() {
                        history.complete_after = dropped;
                    }
                }
                history.entries.push_back((*zxid, changes.clone()));
            }
            Published::Reset { zxid } => {
                history.entries.clear();
                history.complete_after = *zxid;
            }
        }
        let _ = self.changes.send(event);
    }
}

enum Request {
    Propose {
        action: Action,
        session: Option<SessionCall>,
        reply: oneshot::Sender<Result<Applied, RegistryError>>,
    },
    ReadIndex {
        reply: oneshot::Sender<Result<u64, RegistryError>>,
    },
    /// A client of this member sent a heartbeat for the session.
    Touch(u64),
}

/// Handle to the replica task.
#[derive(Clone)]
pub struct Replica {
    requests: mpsc::Sender<Request>,
    shared: Arc<ReplicaShared>,
}

/// Read requests waiting for their read index.
struct ReadBatch {
    waiters: Vec<oneshot::Sender<Result<u64, RegistryError>>>,
    issued: Instant,
}

/// A read index request is sent again (with a new id) if no answer came within this many ticks:
/// raft-rs drops such requests silently while there is no leader.
const READ_RETRY_TICKS: u32 = 6;
/// Requests taken per loop turn before the Ready is handled.
const MAX_BATCH: usize = 4096;
/// Bytes of proposals taken per loop turn: bounds the append message they become.
const MAX_TURN_PROPOSAL_BYTES: usize = 8 * 1024 * 1024;
/// Bytes of entries a leader holds uncommitted before it refuses new proposals: bounds what a
/// stalled quorum makes it buffer, and the size of any one Ready.
const MAX_UNCOMMITTED_BYTES: u64 = 256 * 1024 * 1024;
/// Sessions the leader expires per second at most, so that a burst (a partition healing, a
/// rack of clients dying at once) becomes a steady trickle rather than a storm.
const MAX_EXPIRIES_PER_SECOND: u64 = 1000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn role_name(role: StateRole) -> &'static str {
    match role {
        StateRole::Leader => "leader",
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::PreCandidate => "pre-candidate",
    }
}

impl Replica {
    /// Recovers the member's state from `store` and starts the Ready loop. Returns the handle
    /// and the loop's join handle, which ends with an error if storage fails.
    pub fn start(
        config: ReplicaConfig,
        mut store: Box<dyn LogStore>,
        storage_mode: StorageMode,
        peers: Peers,
        shutdown: CancellationToken,
    ) -> Result<(Replica, tokio::task::JoinHandle<Result<(), ServerError>>), ServerError> {
        let recovered = store.recover()?;
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
        // A member that lost its state while the cluster ran may have voted in the current
        // term; it must hear from a leader before it votes again.
        let awaiting_leader =
            recovered.is_empty() && config.join_existing && config.voters.len() > 1;
        if awaiting_leader {
            tracing::info!(
                "joining an existing cluster with empty storage: not voting until a leader is heard"
            );
        }
        // Any member starting empty says so to the leader (a no-op for a brand-new cluster,
        // where the leader has recorded no progress for it yet), so that a wiped member
        // recovers even if its operator did not mark it `existing`.
        let rejoining = recovered.is_empty() && config.voters.len() > 1;
        let log = RaftLog::from_recovered(&recovered, &bootstrap);
        let mut tree = Tree::new();
        let mut applied = 0;
        if let Some(snapshot) = &recovered.snapshot {
            tree = Tree::from_snapshot(&snapshot.data)?;
            applied = snapshot.get_metadata().index;
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
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&raft_config, log.clone(), &logger).map_err(|source| {
            ServerError::Raft {
                action: "start",
                source,
            }
        })?;
        let (changes, _) = broadcast::channel(65_536);
        let shared = Arc::new(ReplicaShared {
            tree: RwLock::new(tree),
            applied: watch::Sender::new(applied),
            status: RwLock::new(RaftStatus {
                applied,
                snapshot: applied,
                ..RaftStatus::default()
            }),
            changes,
            // Changes before the state this member starts from are unknown to it.
            history: std::sync::Mutex::new(History {
                entries: std::collections::VecDeque::new(),
                complete_after: applied,
            }),
        });
        let (requests, request_rx) = mpsc::channel(65_536);
        let (storage, written) = StorageWriter::start(store, storage_mode);
        let (snapshots_made, made) = mpsc::unbounded_channel();
        let driver = Driver {
            id: config.id,
            incarnation: fastrand::u64(..),
            next_seq: 0,
            raw,
            log,
            storage,
            network: peers.network,
            shared: shared.clone(),
            config,
            pending: HashMap::new(),
            proposals: Vec::new(),
            proposal_seqs: Vec::new(),
            proposal_bytes: 0,
            new_reads: Vec::new(),
            reads_in_flight: HashMap::new(),
            reads_waiting_apply: BTreeMap::new(),
            next_read_id: 0,
            ticks: 0,
            leader: 0,
            last_snapshot: applied,
            last_seen: HashMap::new(),
            touched: HashSet::new(),
            expiring: HashSet::new(),
            awaiting_leader,
            rejoining,
            snapshot_in_flight: None,
            snapshotting: false,
            snapshots_made,
        };
        let task = tokio::spawn(driver.run(
            peers.inbound,
            request_rx,
            peers.events,
            written,
            made,
            shutdown,
        ));
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

struct Driver {
    id: u64,
    incarnation: u64,
    next_seq: u64,
    raw: RawNode<RaftLog>,
    /// What raft-rs reads as its storage: every entry handed over, durable or not yet.
    log: RaftLog,
    /// Makes entries and hard state durable on a thread of its own.
    storage: StorageWriter,
    network: Box<dyn PeerNetwork>,
    shared: Arc<ReplicaShared>,
    config: ReplicaConfig,
    pending: HashMap<u64, oneshot::Sender<Result<Applied, RegistryError>>>,
    /// Entries proposed during this loop turn, and their sequence numbers.
    proposals: Vec<Entry>,
    proposal_seqs: Vec<u64>,
    proposal_bytes: usize,
    new_reads: Vec<oneshot::Sender<Result<u64, RegistryError>>>,
    reads_in_flight: HashMap<u64, ReadBatch>,
    reads_waiting_apply: BTreeMap<u64, Vec<oneshot::Sender<Result<u64, RegistryError>>>>,
    next_read_id: u64,
    ticks: u64,
    leader: u64,
    last_snapshot: u64,
    /// Leader only: when each session was last heard of.
    last_seen: HashMap<u64, Instant>,
    /// Follower only: sessions heard of since the last batch forwarded to the leader.
    touched: HashSet<u64>,
    /// Leader only: sessions whose expiry is proposed but not yet applied.
    expiring: HashSet<u64>,
    /// Votes are refused until a leader is heard (a member rejoining with empty storage).
    awaiting_leader: bool,
    /// Rejoining with empty storage: the leader is told until this member's log has entries.
    rejoining: bool,
    /// The Ready whose received snapshot is still being written: raft-rs counts the snapshot
    /// as applied only once it is durable.
    snapshot_in_flight: Option<u64>,
    /// A snapshot of this member's tree is being serialized.
    snapshotting: bool,
    /// Where serialized snapshots come back.
    snapshots_made: mpsc::UnboundedSender<Snapshot>,
}

impl Driver {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<PeerInbound>,
        mut requests: mpsc::Receiver<Request>,
        mut peer_events: mpsc::UnboundedReceiver<PeerEvent>,
        mut written: mpsc::UnboundedReceiver<Result<Persisted, ServerError>>,
        mut made: mpsc::UnboundedReceiver<Snapshot>,
        shutdown: CancellationToken,
    ) -> Result<(), ServerError> {
        let mut ticker = tokio::time::interval(self.config.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop_by: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = ticker.tick() => self.on_tick(),
                Some(received) = inbound.recv() => self.on_peer(received),
                Some(request) = requests.recv() => self.on_request(request),
                Some(event) = peer_events.recv() => self.on_peer_event(event),
                done = written.recv() => match done {
                    Some(done) => self.on_persisted(done?),
                    // The thread ended without an error to report: it panicked.
                    None => return Err(ServerError::StorageThreadStopped),
                },
                Some(snapshot) = made.recv() => self.on_snapshot_made(snapshot),
                _ = shutdown.cancelled(), if stop_by.is_none() => {
                    stop_by = Some(Instant::now() + self.hand_over_leadership());
                }
            }
            if let Some(deadline) = stop_by {
                if self.raw.raft.leader_id != self.id || Instant::now() >= deadline {
                    break;
                }
            }
            for _ in 0..MAX_BATCH {
                match inbound.try_recv() {
                    Ok(received) => self.on_peer(received),
                    Err(_) => break,
                }
            }
            for _ in 0..MAX_BATCH {
                if self.proposal_bytes >= MAX_TURN_PROPOSAL_BYTES {
                    break;
                }
                match requests.try_recv() {
                    Ok(request) => self.on_request(request),
                    Err(_) => break,
                }
            }
            while let Ok(event) = peer_events.try_recv() {
                self.on_peer_event(event);
            }
            while let Ok(done) = written.try_recv() {
                self.on_persisted(done?);
            }
            self.flush_proposals();
            self.issue_reads();
            self.on_ready()?;
        }
        self.fail_everything("this member is shutting down");
        Ok(())
    }

    /// A leader that is asked to stop first transfers leadership to the most up-to-date
    /// follower, so that clients see a handover instead of an election timeout. Returns how long
    /// to wait for the handover.
    fn hand_over_leadership(&mut self) -> Duration {
        if self.raw.raft.state != StateRole::Leader {
            return Duration::ZERO;
        }
        let transferee = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != self.id)
            .max_by_key(|(_, progress)| progress.matched)
            .map(|(id, _)| *id);
        match transferee {
            Some(id) => {
                tracing::info!(to = id, "stopping: transferring leadership");
                self.raw.transfer_leader(id);
                self.config.tick * self.config.election_ticks as u32
            }
            None => Duration::ZERO,
        }
    }

    fn on_peer(&mut self, received: PeerInbound) {
        match received {
            PeerInbound::Raft(message) => self.step(message),
            PeerInbound::Touch(sessions) => {
                for session in sessions {
                    self.touch(session);
                }
            }
            PeerInbound::LostState(member) => self.forget_progress(member),
            PeerInbound::Disconnected(member) => self.on_disconnected(member),
        }
    }

    /// The connection from `member` closed. If `member` is the leader, its process most likely
    /// died (the kernel closes a dead process's sockets at once), so this follower stops
    /// waiting out the election timeout: it leaves the leader's lease now, so that it grants
    /// votes, and campaigns one to three ticks later, staggered by id so that the followers
    /// rarely split the vote. Elections are always safe; if the leader is in fact alive, the
    /// pre-vote fails against the members that still hear it and nothing changes.
    fn on_disconnected(&mut self, member: u64) {
        let raft = &mut self.raw.raft;
        if raft.state != StateRole::Follower || raft.leader_id != member || member == self.id {
            return;
        }
        let lease = raft.election_timeout();
        let campaign_at = lease + 1 + (self.id % 3) as usize;
        // raft-rs draws election timeouts from [lease, 2 * lease).
        if campaign_at < 2 * lease {
            raft.set_randomized_election_timeout(campaign_at);
            raft.election_elapsed = raft.election_elapsed.max(lease);
            tracing::info!(
                leader = member,
                "lost the leader's connection; campaigning early"
            );
        }
    }

    /// A follower lost its storage: replicate to it from scratch (a snapshot, once the log is
    /// compacted) instead of from where it used to be. raft-rs assumes storage is never lost, so
    /// without this the leader would keep believing the member holds what it acknowledged before.
    fn forget_progress(&mut self, member: u64) {
        if !self.is_leader() || member == self.id {
            return;
        }
        if let Some(progress) = self.raw.raft.mut_prs().get_mut(member) {
            if progress.matched == 0 {
                return;
            }
            tracing::warn!(
                member,
                matched = progress.matched,
                "member rejoined with empty storage; replicating to it from scratch"
            );
            progress.matched = 0;
            progress.become_probe();
            progress.next_idx = 1;
        }
    }

    fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// A heartbeat: the leader records it; a follower passes it on with its next batch.
    fn touch(&mut self, session: u64) {
        if self.is_leader() {
            if let Some(seen) = self.last_seen.get_mut(&session) {
                *seen = Instant::now();
            }
        } else {
            self.touched.insert(session);
        }
    }

    /// Leader only: proposes the expiry of sessions not heard of within their timeout, at most
    /// `MAX_EXPIRIES_PER_SECOND`.
    fn expire_sessions(&mut self) {
        let now = Instant::now();
        let budget =
            (MAX_EXPIRIES_PER_SECOND as u128 * self.config.tick.as_millis() / 1000).max(1) as usize;
        let expired: Vec<u64> = {
            let tree = self.shared.tree.read().unwrap_or_else(|p| p.into_inner());
            self.last_seen
                .iter()
                .filter(|(id, seen)| {
                    !self.expiring.contains(id)
                        && tree.session(**id).is_some_and(|s| {
                            now.duration_since(**seen) > Duration::from_millis(s.timeout_ms)
                        })
                })
                .map(|(id, _)| *id)
                .take(budget)
                .collect()
        };
        if expired.is_empty() {
            return;
        }
        tracing::info!(sessions = ?expired, "expiring sessions whose heartbeats stopped");
        self.expiring.extend(&expired);
        self.propose_internal(Action::ExpireSessions { sessions: expired });
    }

    /// Queues `action` for the batch proposed at the end of this loop turn; returns the proposal's
    /// sequence number, which its applied entry carries back (to find the caller waiting for
    /// it).
    fn propose(
        &mut self,
        action: Action,
        session: Option<SessionCall>,
    ) -> Result<u64, RegistryError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let command = Command {
            proposer: Proposer {
                member: self.id,
                incarnation: self.incarnation,
                seq,
            },
            time_ms: now_ms(),
            session,
            action,
        };
        let data = rmp_serde::to_vec(&command).map_err(|error| {
            RegistryError::BadRequest(format!("cannot encode the operation: {error}"))
        })?;
        self.proposal_bytes += data.len();
        self.proposals.push(Entry {
            data: data.into(),
            ..Entry::default()
        });
        self.proposal_seqs.push(seq);
        Ok(seq)
    }

    /// Proposes an operation that no caller waits for.
    fn propose_internal(&mut self, action: Action) {
        if let Err(error) = self.propose(action, None) {
            tracing::warn!(%error, "internal proposal dropped");
        }
    }

    /// Hands this turn's proposals to raft-rs as one message: the leader appends them together
    /// and sends each follower one append for all of them, and a follower forwards them to the
    /// leader in one message (one proposal at a time costs a message per write per follower).
    fn flush_proposals(&mut self) {
        if self.proposals.is_empty() {
            return;
        }
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgPropose);
        message.from = self.id;
        message.set_entries(std::mem::take(&mut self.proposals).into());
        let seqs = std::mem::take(&mut self.proposal_seqs);
        self.proposal_bytes = 0;
        let refused = match self.raw.step(message) {
            Ok(()) => return,
            Err(raft::Error::ProposalDropped) if self.is_leader() => {
                "the leader is handing over leadership or holds too many uncommitted writes; \
                 the write was not accepted"
                    .to_owned()
            }
            Err(raft::Error::ProposalDropped) => {
                "no leader is known; the write was not accepted".to_owned()
            }
            Err(error) => format!("the write was not accepted: {error}"),
        };
        for seq in seqs {
            if let Some(reply) = self.pending.remove(&seq) {
                let _ = reply.send(Err(RegistryError::NoQuorum(refused.clone())));
            }
        }
    }

    /// A new leader knows sessions only from the tree; it gives every one a fresh timeout
    /// before expiring any, since it cannot tell how long each was silent under the old leader.
    fn refresh_sessions(&mut self) {
        let now = Instant::now();
        let tree = self.shared.tree.read().unwrap_or_else(|p| p.into_inner());
        self.last_seen = tree.sessions().map(|s| (s.id, now)).collect();
        self.expiring.clear();
    }

    fn step(&mut self, message: Message) {
        if self.awaiting_leader {
            match message.get_msg_type() {
                MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => return,
                MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot => {
                    tracing::info!(leader = message.from, "heard from a leader; voting again");
                    self.awaiting_leader = false;
                }
                _ => {}
            }
        }
        // A member that lost its storage hears commit indexes beyond its log until the leader
        // learns of the loss; raft-rs would abort on them. Clamping only delays its commit.
        let mut message = message;
        if message.get_msg_type() == MessageType::MsgHeartbeat {
            let last = self.raw.raft.raft_log.last_index();
            if message.commit > last {
                message.commit = last;
            }
        }
        if let Err(error) = self.raw.step(message) {
            tracing::debug!(%error, "raft message ignored");
        }
    }

    fn on_tick(&mut self) {
        self.raw.tick();
        self.ticks += 1;
        if self.is_leader() {
            self.expire_sessions();
        } else if self.leader != 0 && !self.touched.is_empty() {
            let sessions: Vec<u64> = self.touched.drain().collect();
            self.network.send(self.leader, PeerMessage::Touch(sessions));
        }
        if self.rejoining {
            if self.log.last_index() > 0 {
                self.rejoining = false;
            } else if self.leader != 0 && self.ticks % 10 == 0 {
                self.network.send(self.leader, PeerMessage::LostState);
            }
        }
        // Calls whose caller gave up leave nothing behind.
        self.pending.retain(|_, reply| !reply.is_closed());
        // Re-issue read index requests that got no answer (no leader, lost message).
        let stale: Vec<u64> = self
            .reads_in_flight
            .iter()
            .filter(|(_, batch)| batch.issued.elapsed() >= self.config.tick * READ_RETRY_TICKS)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(batch) = self.reads_in_flight.remove(&id) {
                self.new_reads
                    .extend(batch.waiters.into_iter().filter(|w| !w.is_closed()));
            }
        }
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Propose {
                action,
                session,
                reply,
            } => match self.propose(action, session) {
                Ok(seq) => {
                    self.pending.insert(seq, reply);
                }
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            },
            Request::ReadIndex { reply } => self.new_reads.push(reply),
            Request::Touch(session) => self.touch(session),
        }
    }

    fn on_peer_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Unreachable(id) => self.raw.report_unreachable(id),
            PeerEvent::SnapshotSent(id, ok) => self.raw.report_snapshot(
                id,
                if ok {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                },
            ),
        }
    }

    /// One read index request serves every read that arrived since the last one.
    fn issue_reads(&mut self) {
        if self.new_reads.is_empty() {
            return;
        }
        let id = self.next_read_id;
        self.next_read_id += 1;
        self.raw.read_index(id.to_be_bytes().to_vec());
        self.reads_in_flight.insert(
            id,
            ReadBatch {
                waiters: std::mem::take(&mut self.new_reads),
                issued: Instant::now(),
            },
        );
    }

    fn on_ready(&mut self) -> Result<(), ServerError> {
        if !self.raw.has_ready() {
            self.publish_status();
            return Ok(());
        }
        let mut ready = self.raw.ready();
        if let Some(soft) = ready.ss() {
            if soft.leader_id != self.leader {
                self.leader = soft.leader_id;
                self.on_leader_change();
                if soft.leader_id == self.id {
                    self.refresh_sessions();
                }
            }
        }
        // A leader's messages go out before its own write: followers persist in parallel.
        if !ready.messages().is_empty() {
            self.network.send_raft(ready.take_messages());
        }
        let snapshot = ready.snapshot().clone();
        if !snapshot.is_empty() {
            self.install_snapshot(&snapshot)?;
        }
        // Committed entries are durable here already: raft-rs hands over only those this
        // member has persisted.
        self.apply(ready.take_committed_entries())?;
        for read in ready.take_read_states() {
            self.on_read_state(read.index, &read.request_ctx);
        }
        // raft-rs reads what it handed over from `log` before it is durable; it counts it as
        // persisted (toward commit, and in the acknowledgements of `persisted_messages`) only
        // once the storage thread reports it written.
        let hard_state = ready.hs().cloned();
        let entries = ready.take_entries();
        self.log.append(&entries);
        if let Some(hard_state) = &hard_state {
            self.log.set_hard_state(hard_state);
        }
        if !snapshot.is_empty() {
            self.snapshot_in_flight = Some(ready.number());
        }
        self.storage.write(Write {
            ready: Some(ready.number()),
            snapshot: (!snapshot.is_empty()).then_some(snapshot),
            entries,
            hard_state,
            may_defer_sync: !ready.must_sync(),
            messages: ready.take_persisted_messages(),
            ..Write::default()
        });
        self.raw.advance_append_async(ready);
        if self.snapshot_in_flight.is_none() {
            self.raw.advance_apply();
        }
        self.maybe_snapshot();
        self.publish_status();
        Ok(())
    }

    /// The storage thread made a write durable: raft-rs may now count it, and the messages that
    /// waited for it go out.
    fn on_persisted(&mut self, written: Persisted) {
        if let Some(number) = written.ready {
            self.raw.on_persist_ready(number);
            if self.snapshot_in_flight.is_some_and(|ready| ready <= number) {
                self.snapshot_in_flight = None;
                self.raw.advance_apply();
            }
        }
        if !written.messages.is_empty() {
            self.network.send_raft(written.messages);
        }
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), ServerError> {
        let index = snapshot.get_metadata().index;
        let tree = Tree::from_snapshot(&snapshot.data)?;
        self.log.apply_snapshot(snapshot);
        *self.shared.tree.write().unwrap_or_else(|p| p.into_inner()) = tree;
        self.last_snapshot = index;
        self.shared.applied.send_replace(index);
        self.shared.publish(Published::Reset { zxid: index });
        tracing::info!(index, "installed a snapshot from the leader");
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), ServerError> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        let mut results = Vec::new();
        {
            let mut tree = self.shared.tree.write().unwrap_or_else(|p| p.into_inner());
            for entry in &entries {
                match entry.get_entry_type() {
                    EntryType::EntryNormal if !entry.data.is_empty() => {
                        match rmp_serde::from_slice::<Command>(&entry.data) {
                            Ok(command) => {
                                let applied = tree.apply(entry.index, &command);
                                results.push((command.proposer, applied));
                            }
                            Err(error) => {
                                tracing::error!(index = entry.index, %error, "undecodable entry skipped");
                                tree.skip(entry.index);
                            }
                        }
                    }
                    EntryType::EntryNormal => tree.skip(entry.index),
                    EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                        drop(tree);
                        self.apply_conf_change(entry)?;
                        tree = self.shared.tree.write().unwrap_or_else(|p| p.into_inner());
                        tree.skip(entry.index);
                    }
                }
            }
        }
        let now = Instant::now();
        for (proposer, applied) in results {
            match &applied.outcome {
                Ok(
                    ActionResult::SessionOpened { session, .. }
                    | ActionResult::SessionAttached { session, .. },
                ) => {
                    self.last_seen.insert(*session, now);
                }
                Ok(ActionResult::Expired { .. } | ActionResult::SessionClosed { .. }) => {
                    let tree = self.shared.tree.read().unwrap_or_else(|p| p.into_inner());
                    self.last_seen.retain(|id, _| tree.session(*id).is_some());
                    self.expiring.retain(|id| tree.session(*id).is_some());
                }
                _ => {}
            }
            if !applied.changes.is_empty() {
                self.shared.publish(Published::Changes {
                    zxid: applied.zxid,
                    changes: Arc::new(applied.changes.clone()),
                });
            }
            if proposer.member == self.id && proposer.incarnation == self.incarnation {
                if let Some(reply) = self.pending.remove(&proposer.seq) {
                    let _ = reply.send(Ok(applied));
                }
            }
        }
        self.shared.applied.send_replace(last);
        let ready: Vec<u64> = self
            .reads_waiting_apply
            .range(..=last)
            .map(|(index, _)| *index)
            .collect();
        for index in ready {
            for waiter in self.reads_waiting_apply.remove(&index).unwrap_or_default() {
                let _ = waiter.send(Ok(last));
            }
        }
        Ok(())
    }

    fn apply_conf_change(&mut self, entry: &Entry) -> Result<(), ServerError> {
        use protobuf::Message as _;
        let conf_state = if entry.get_entry_type() == EntryType::EntryConfChange {
            let change = ConfChange::parse_from_bytes(&entry.data)
                .map_err(ServerError::protobuf("decode a configuration change"))?;
            self.raw.apply_conf_change(&change)
        } else {
            let change = ConfChangeV2::parse_from_bytes(&entry.data)
                .map_err(ServerError::protobuf("decode a configuration change"))?;
            self.raw.apply_conf_change(&change)
        };
        match conf_state {
            Ok(conf_state) => {
                self.storage.write(Write {
                    conf_state: Some(conf_state),
                    ..Write::default()
                });
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "configuration change rejected");
                Ok(())
            }
        }
    }

    fn on_read_state(&mut self, index: u64, context: &[u8]) {
        let Ok(id) = <[u8; 8]>::try_from(context).map(u64::from_be_bytes) else {
            return;
        };
        let Some(batch) = self.reads_in_flight.remove(&id) else {
            return;
        };
        let applied = *self.shared.applied.borrow();
        if applied >= index {
            for waiter in batch.waiters {
                let _ = waiter.send(Ok(applied));
            }
        } else {
            self.reads_waiting_apply
                .entry(index)
                .or_default()
                .extend(batch.waiters);
        }
    }

    /// Writes in flight when the leader changed may or may not commit: their callers are told
    /// so at once (and retry; a session's retries are deduplicated) instead of waiting for a
    /// deadline.
    fn on_leader_change(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        tracing::debug!(
            leader = self.leader,
            pending = self.pending.len(),
            "leader changed with writes in flight"
        );
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(RegistryError::Indeterminate(
                "the leader changed while the write was in flight".to_owned(),
            )));
        }
    }

    /// Starts a snapshot once enough entries were applied since the last one. The tree is
    /// cloned (cheap: its maps are persistent) and serialized on a blocking thread, so that the
    /// driver goes on applying; serializing a large tree here stalled every write for hundreds
    /// of milliseconds, on every member at once.
    fn maybe_snapshot(&mut self) {
        let applied = *self.shared.applied.borrow();
        if self.snapshotting || applied < self.last_snapshot + self.config.snapshot_every {
            return;
        }
        let Some(term) = self.log.term_of(applied) else {
            return;
        };
        let tree = self
            .shared
            .tree
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut snapshot = Snapshot::default();
        let metadata = snapshot.mut_metadata();
        metadata.index = applied;
        metadata.term = term;
        metadata.set_conf_state(self.log.conf_state());
        let made = self.snapshots_made.clone();
        self.snapshotting = true;
        tokio::task::spawn_blocking(move || {
            snapshot.data = bytes::Bytes::from(tree.to_snapshot());
            let _ = made.send(snapshot);
        });
    }

    /// A snapshot finished serializing: it compacts the log, unless one from the leader
    /// replaced the log meanwhile.
    fn on_snapshot_made(&mut self, snapshot: Snapshot) {
        self.snapshotting = false;
        let index = snapshot.get_metadata().index;
        if index <= self.log.snapshot_index() {
            return;
        }
        self.log.store_snapshot(&snapshot);
        self.storage.write(Write {
            own_snapshot: Some(snapshot),
            ..Write::default()
        });
        self.last_snapshot = index;
        tracing::debug!(index, "snapshot taken; log compacted");
    }

    fn publish_status(&self) {
        let raft = &self.raw.raft;
        let status = RaftStatus {
            role: role_name(raft.state).to_owned(),
            term: raft.term,
            leader: raft.leader_id,
            commit: raft.raft_log.committed,
            applied: *self.shared.applied.borrow(),
            snapshot: self.last_snapshot,
        };
        *self
            .shared
            .status
            .write()
            .unwrap_or_else(|p| p.into_inner()) = status;
    }

    fn fail_everything(&mut self, reason: &str) {
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(RegistryError::Indeterminate(reason.to_owned())));
        }
        let reads = self
            .new_reads
            .drain(..)
            .chain(self.reads_in_flight.drain().flat_map(|(_, b)| b.waiters))
            .chain(
                std::mem::take(&mut self.reads_waiting_apply)
                    .into_values()
                    .flatten(),
            );
        for waiter in reads {
            let _ = waiter.send(Err(RegistryError::NoQuorum(reason.to_owned())));
        }
    }
}
