//! The driver: the one task that owns raft-rs's `RawNode`. Each turn of its loop takes whatever
//! arrived (peer messages, requests, delivery reports, finished writes), then handles the Ready
//! those produced, in the order raft-rs documents ([`Driver::handle_ready`]).
//!
//! New entries go to the storage thread, which makes them durable while the loop goes on
//! stepping messages; what queues up meanwhile goes to disk together (group commit: one fsync
//! serves many writes). raft-rs counts an entry as this member's only once the storage thread
//! reports it durable, so a write is answered only once its entry is committed (durable on a
//! majority) and applied here.
//!
//! A snapshot from the leader replaces the log at once, but its tree is decoded on a thread of
//! its own ([`super::install`]): the loop goes on stepping messages, persisting and ticking, and
//! the entries committed after the snapshot apply once its tree is in place.

use std::sync::Arc;

use raft::RawNode;
use raft::prelude::{ConfChange, ConfChangeV2, Entry, EntryType, Message, Snapshot};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::feed::Published;
use super::install::{Advance, Decoded, Installs};
use super::leadership;
use super::proposals::Proposals;
use super::reads::Reads;
use super::rejoin::{self, Rejoin};
use super::sessions::SessionLiveness;
use super::snapshots::{Made, Snapshots, Turn, free};
use super::{RaftStatus, ReplicaConfig, ReplicaShared, Request, role_name};
use crate::error::ServerError;
use crate::network::{PeerEvent, PeerInbound, PeerMessage, PeerNetwork};
use crate::storage::{Persisted, RaftLog, StorageWriter, Write};
use crate::tree::{Action, Command};

/// A read index request is made again (with a new id) if no answer came within this many
/// ticks: raft-rs drops such requests silently while there is no leader.
const READ_RETRY_TICKS: u32 = 6;
/// Messages, and requests, taken per loop turn before the Ready is handled.
const MAX_BATCH: usize = 4096;

/// Everything that reaches the driver.
pub struct Inputs {
    /// Messages from other members.
    pub peers: mpsc::Receiver<PeerInbound>,
    /// Requests of this member's clients.
    pub requests: mpsc::Receiver<Request>,
    /// Delivery reports of the peer network.
    pub peer_events: mpsc::UnboundedReceiver<PeerEvent>,
    /// Writes made durable (or the error that stopped the writes).
    pub persisted: mpsc::UnboundedReceiver<Result<Persisted, ServerError>>,
    /// Snapshots of the tree, made (or why one could not be).
    pub snapshots_made: mpsc::UnboundedReceiver<Made>,
    /// Trees of snapshots received from the leader, decoded (or why one could not be).
    pub decoded: mpsc::UnboundedReceiver<Decoded>,
}

/// The Raft node and the parts of the replica it drives.
pub struct Driver {
    id: u64,
    config: ReplicaConfig,
    raw: RawNode<RaftLog>,
    /// What raft-rs reads as its storage: every entry handed over, durable or not yet.
    log: RaftLog,
    /// Makes entries and hard state durable on a thread of its own.
    storage: StorageWriter,
    network: Box<dyn PeerNetwork>,
    shared: Arc<ReplicaShared>,
    proposals: Proposals,
    reads: Reads,
    sessions: SessionLiveness,
    snapshots: Snapshots,
    installs: Installs,
    rejoin: Rejoin,
    /// The leader as of the latest Ready (0: none known).
    leader: u64,
    /// The role as of the latest Ready.
    role: raft::StateRole,
    /// Until the log recovered at start-up is applied: the commit index to reach, from which
    /// applied index, since when.
    replay: Option<(u64, u64, std::time::Instant)>,
    ticks: u64,
}

impl Driver {
    /// A driver of `raw`, whose state starts at the latest of its `snapshots`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: ReplicaConfig,
        raw: RawNode<RaftLog>,
        log: RaftLog,
        storage: StorageWriter,
        network: Box<dyn PeerNetwork>,
        shared: Arc<ReplicaShared>,
        rejoin: Rejoin,
        snapshots: Snapshots,
        installs: Installs,
    ) -> Driver {
        let commit = raw.raft.raft_log.committed;
        let last_snapshot = snapshots.last();
        let replay =
            (commit > last_snapshot).then(|| (commit, last_snapshot, std::time::Instant::now()));
        Driver {
            id: config.id,
            proposals: Proposals::new(config.id, fastrand::u64(..)),
            reads: Reads::new(config.tick * READ_RETRY_TICKS),
            sessions: SessionLiveness::new(config.tick),
            snapshots,
            installs,
            rejoin,
            config,
            raw,
            log,
            storage,
            network,
            shared,
            leader: 0,
            role: raft::StateRole::Follower,
            replay,
            ticks: 0,
        }
    }

    /// Runs until `shutdown` (after handing leadership over) or until storage fails.
    pub async fn run(
        mut self,
        mut inputs: Inputs,
        shutdown: CancellationToken,
    ) -> Result<(), ServerError> {
        let mut ticker = tokio::time::interval(self.config.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop_by: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = ticker.tick() => self.on_tick(),
                Some(received) = inputs.peers.recv() => self.on_peer(received),
                Some(request) = inputs.requests.recv() => self.on_request(request),
                Some(event) = inputs.peer_events.recv() => self.on_peer_event(event),
                done = inputs.persisted.recv() => match done {
                    Some(done) => self.on_persisted(done?),
                    // The thread ended without an error to report: it panicked.
                    None => return Err(ServerError::StorageThreadStopped),
                },
                Some(made) = inputs.snapshots_made.recv() => self.on_snapshot_made(made),
                Some(decoded) = inputs.decoded.recv() => self.on_decoded(decoded)?,
                _ = shutdown.cancelled(), if stop_by.is_none() => {
                    let election_time = self.config.tick * self.config.election_ticks as u32;
                    let wait = leadership::hand_over(&mut self.raw, election_time);
                    stop_by = Some(Instant::now() + wait);
                }
            }
            if let Some(deadline) = stop_by
                && (self.raw.raft.leader_id != self.id || Instant::now() >= deadline)
            {
                break;
            }
            for _ in 0..MAX_BATCH {
                match inputs.peers.try_recv() {
                    Ok(received) => self.on_peer(received),
                    Err(_) => break,
                }
            }
            for _ in 0..MAX_BATCH {
                if self.proposals.turn_is_full() {
                    break;
                }
                match inputs.requests.try_recv() {
                    Ok(request) => self.on_request(request),
                    Err(_) => break,
                }
            }
            while let Ok(event) = inputs.peer_events.try_recv() {
                self.on_peer_event(event);
            }
            while let Ok(done) = inputs.persisted.try_recv() {
                self.on_persisted(done?);
            }
            self.propose_turn();
            if let Some(context) = self.reads.issue(Instant::now()) {
                self.raw.read_index(context);
            }
            self.handle_ready()?;
        }
        self.proposals.fail_all("this member is shutting down");
        self.reads.fail_all("this member is shutting down");
        Ok(())
    }

    fn is_leader(&self) -> bool {
        self.raw.raft.state == raft::StateRole::Leader
    }

    fn on_tick(&mut self) {
        self.raw.tick();
        self.ticks += 1;
        let now = Instant::now();
        self.sessions.log_expiries(now);
        if self.is_leader() {
            // Not from a tree a received snapshot is about to replace.
            if !self.installs.is_decoding() {
                self.expire_sessions(now);
            }
        } else if self.leader != 0 {
            let sessions = self.sessions.take_touched();
            if !sessions.is_empty() {
                self.network.send(self.leader, PeerMessage::Touch(sessions));
            }
        }
        if self
            .rejoin
            .notice_due(self.ticks, self.leader, self.log.last_index())
        {
            self.network.send(self.leader, PeerMessage::LostState);
        }
        self.proposals.forget_abandoned();
        self.reads.retry_stale(now);
    }

    /// Leader: proposes the expiry of the sessions whose heartbeats stopped.
    fn expire_sessions(&mut self, now: Instant) {
        let expired = {
            let tree = self.shared.tree.read().unwrap_or_else(|p| p.into_inner());
            self.sessions.expired(&tree, now)
        };
        if expired.is_empty() {
            return;
        }
        tracing::debug!(sessions = ?expired, "expiring sessions whose heartbeats stopped");
        self.proposals
            .propose(Action::ExpireSessions { sessions: expired }, None, None);
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Propose {
                action,
                session,
                reply,
            } => self.proposals.propose(action, session, Some(reply)),
            Request::ReadIndex { reply } => self.reads.add(reply),
            Request::Touch(session) => {
                self.sessions
                    .touch(session, self.is_leader(), Instant::now())
            }
        }
    }

    fn on_peer(&mut self, received: PeerInbound) {
        match received {
            PeerInbound::Raft(message) => self.step(message),
            PeerInbound::Touch(sessions) => {
                let (is_leader, now) = (self.is_leader(), Instant::now());
                for session in sessions {
                    self.sessions.touch(session, is_leader, now);
                }
            }
            PeerInbound::LostState(member) => rejoin::forget_progress(&mut self.raw.raft, member),
            PeerInbound::Disconnected(member) => {
                leadership::campaign_early(&mut self.raw.raft, member)
            }
        }
    }

    fn on_peer_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Unreachable(id) => self.raw.report_unreachable(id),
            PeerEvent::SnapshotSent(id, ok) => {
                if ok {
                    tracing::info!(to = id, "snapshot sent");
                } else {
                    tracing::warn!(to = id, "snapshot not delivered; it will be sent again");
                }
                self.raw.report_snapshot(
                    id,
                    if ok {
                        raft::SnapshotStatus::Finish
                    } else {
                        raft::SnapshotStatus::Failure
                    },
                )
            }
        }
    }

    fn step(&mut self, message: Message) {
        let last_index = self.raw.raft.raft_log.last_index();
        let Some(message) = self.rejoin.admit(message, last_index) else {
            return;
        };
        if let Err(error) = self.raw.step(message) {
            tracing::debug!(%error, "raft message ignored");
        }
    }

    /// Hands this turn's proposals to raft-rs; their callers hear at once if it refuses them.
    fn propose_turn(&mut self) {
        let Some((message, turn)) = self.proposals.take_turn(self.raw.raft.term) else {
            return;
        };
        if let Err(error) = self.raw.step(message) {
            let is_leader = self.is_leader();
            self.proposals.refuse(turn, &error, is_leader);
        }
    }

    /// Handles one Ready, in the order raft-rs documents for its asynchronous-write API:
    ///
    /// 1. a leader's messages go out at once (followers persist in parallel with it);
    /// 2. a snapshot from the leader replaces the log, and its tree is decoded on a thread of
    ///    its own ([`Driver::on_decoded`] puts it in place); committed entries apply (they are
    ///    durable here already: raft-rs hands over only entries this member persisted), or wait
    ///    for that tree while it is decoded; answered read index requests are served once
    ///    their index is applied here;
    /// 3. new entries and the hard state go to the storage thread, with the messages that may
    ///    leave only once they are durable (a follower's acknowledgements, votes);
    ///    [`Driver::on_persisted`] sends those and tells raft-rs;
    /// 4. the Ready is advanced: raft-rs counts its entries as persisted only when told, so
    ///    there is no light Ready; what commits meanwhile comes with a later Ready. Applying
    ///    is acknowledged at once, except while a received snapshot is installed: raft-rs
    ///    counts it as applied once it is durable, and the entries after it once they applied
    ///    to its tree ([`Driver::advance_apply`]).
    fn handle_ready(&mut self) -> Result<(), ServerError> {
        if !self.raw.has_ready() {
            self.publish_status();
            return Ok(());
        }
        let mut ready = self.raw.ready();
        if let Some(soft) = ready.ss() {
            let (leader, role) = (soft.leader_id, soft.raft_state);
            self.log_role_change(leader, role);
            if leader != self.leader {
                self.on_leader_change(leader);
            }
        }
        let raft = &self.raw.raft;
        self.proposals
            .observe_term(raft.term, raft.raft_log.committed);

        // 1.
        self.network.send_raft(ready.take_messages());

        // 2.
        let snapshot = ready.snapshot().clone();
        if !snapshot.is_empty() {
            self.receive_snapshot(&snapshot, ready.number())?;
        }
        let committed = self.installs.admit(ready.take_committed_entries());
        self.apply(committed)?;
        let applied = *self.shared.applied.borrow();
        self.proposals.on_applied_up_to(applied);
        self.log_replay_progress(applied);
        for read in ready.take_read_states() {
            self.reads
                .on_read_state(read.index, &read.request_ctx, applied);
        }

        // 3. raft-rs reads what it handed over from `log` before it is durable; it counts it as
        // persisted (toward commit, and in the acknowledgements of the persisted messages)
        // only once the storage thread reports it written.
        let hard_state = ready.hs().cloned();
        let entries = ready.take_entries();
        self.snapshots
            .on_appended(entries.iter().map(|e| e.data.len() as u64).sum());
        self.log.append(&entries);
        if let Some(hard_state) = &hard_state {
            self.log.set_hard_state(hard_state);
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

        // 4.
        self.raw.advance_append_async(ready);
        self.advance_apply();

        self.maybe_snapshot();
        self.publish_status();
        Ok(())
    }

    /// Logs (INFO) this member becoming leader or stepping down, and the leader it follows
    /// changing; records the new role.
    fn log_role_change(&mut self, leader: u64, role: raft::StateRole) {
        let (id, term) = (self.id, self.raw.raft.term);
        let was_leader = self.role == raft::StateRole::Leader;
        if role == raft::StateRole::Leader && !was_leader {
            tracing::info!(id, term, "became leader");
        } else if was_leader && role != raft::StateRole::Leader {
            tracing::info!(
                id,
                term,
                leader,
                role = role_name(role),
                "stepped down as leader"
            );
        } else if leader != self.leader && leader != id {
            if leader == 0 {
                tracing::info!(id, term, role = role_name(role), "no leader known");
            } else {
                tracing::info!(id, term, leader, "following leader");
            }
        }
        self.role = role;
    }

    /// Logs (INFO) once the log recovered at start-up is applied: how many entries, how long.
    fn log_replay_progress(&mut self, applied: u64) {
        if let Some((commit, from, since)) = self.replay
            && applied >= commit
        {
            self.replay = None;
            tracing::info!(
                id = self.id,
                entries = commit - from,
                applied,
                took_ms = since.elapsed().as_millis() as u64,
                "start-up replay: recovered log applied"
            );
        }
    }

    /// The leader changed (to none, possibly).
    fn on_leader_change(&mut self, leader: u64) {
        self.leader = leader;
        if leader == self.id {
            let tree = self.shared.tree.read().unwrap_or_else(|p| p.into_inner());
            self.sessions.refresh(&tree, Instant::now());
        }
    }

    /// The storage thread made a write durable: raft-rs may now count it, and the messages that
    /// waited for it go out.
    fn on_persisted(&mut self, written: Persisted) {
        if let Some(number) = written.ready {
            self.raw.on_persist_ready(number);
            if self.installs.on_persisted(number) {
                self.advance_apply();
            }
        }
        self.network.send_raft(written.messages);
    }

    /// Tells raft-rs how far this member applied what it handed over: everything, unless a
    /// received snapshot is being installed (see [`Installs::advance`]).
    fn advance_apply(&mut self) {
        match self.installs.advance() {
            Advance::All => self.raw.advance_apply(),
            // The snapshot is durable: counting it as applied also keeps raft-rs from looking
            // for unapplied configuration changes below its first index (a campaign does).
            Advance::ToSnapshot(index) => {
                if self.raw.raft.raft_log.applied < index {
                    self.raw.advance_apply_to(index);
                }
            }
            Advance::Hold => {}
        }
    }

    /// A snapshot from the leader, handed over in Ready `ready`, replaces the log at once; its
    /// tree is decoded on a thread of its own ([`Driver::on_decoded`] puts it in place).
    fn receive_snapshot(&mut self, snapshot: &Snapshot, ready: u64) -> Result<(), ServerError> {
        let started = std::time::Instant::now();
        let index = snapshot.get_metadata().index;
        let (replaced_entries, replaced) = self.log.apply_snapshot(snapshot);
        self.snapshots.on_received(index);
        let _freeing = self.snapshots.recycle(replaced_entries, replaced);
        let superseded = self.installs.start(snapshot, ready, started.elapsed())?;
        if !superseded.is_empty() {
            free(superseded);
        }
        tracing::debug!(
            index,
            bytes = snapshot.data.len(),
            "snapshot received from the leader; its tree is being decoded"
        );
        Ok(())
    }

    /// A received snapshot's tree was decoded: it replaces the tree, and the entries committed
    /// after the snapshot, which waited for it, apply to it in order.
    fn on_decoded(&mut self, decoded: Decoded) -> Result<(), ServerError> {
        let Some(installed) = self.installs.on_decoded(decoded)? else {
            return Ok(());
        };
        let swapping = std::time::Instant::now();
        let index = installed.index;
        let replaced = std::mem::replace(
            &mut *self.shared.tree.write().unwrap_or_else(|p| p.into_inner()),
            installed.tree,
        );
        free(replaced);
        self.shared.applied.send_replace(index);
        self.shared.feed.publish(Published::Reset { zxid: index });
        self.proposals.on_applied_up_to(index);
        self.reads.on_applied(index);
        if self.leader == self.id {
            let tree = self.shared.tree.read().unwrap_or_else(|p| p.into_inner());
            self.sessions.refresh(&tree, Instant::now());
        }
        let blocked = installed.blocked + swapping.elapsed();
        tracing::info!(
            index,
            bytes = installed.bytes,
            took_ms = installed.received.elapsed().as_millis() as u64,
            decode_ms = installed.decode_took.as_millis() as u64,
            blocked_us = blocked.as_micros() as u64,
            held = installed.held.len(),
            "snapshot installed (received from the leader)"
        );
        let held = installed.held;
        self.apply(held)?;
        let applied = *self.shared.applied.borrow();
        self.proposals.on_applied_up_to(applied);
        self.advance_apply();
        Ok(())
    }

    /// Applies committed entries to the tree, then tells whoever waits: the sessions' liveness,
    /// watchers, the callers who proposed them, and reads waiting for them.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), ServerError> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        let shared = self.shared.clone();
        let mut results = Vec::new();
        {
            let mut tree = shared.tree.write().unwrap_or_else(|p| p.into_inner());
            for entry in &entries {
                match entry.get_entry_type() {
                    EntryType::EntryNormal if !entry.data.is_empty() => {
                        match Command::decode(&entry.data) {
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
                        tree = shared.tree.write().unwrap_or_else(|p| p.into_inner());
                        tree.skip(entry.index);
                    }
                }
            }
        }
        let now = Instant::now();
        for (proposer, applied) in results {
            self.sessions
                .on_applied(&applied.outcome, &shared.tree, now);
            if !applied.changes.is_empty() {
                shared.feed.publish(Published::Changes {
                    zxid: applied.zxid,
                    changes: Arc::new(applied.changes.clone()),
                });
            }
            self.proposals.on_applied(proposer, applied);
        }
        shared.applied.send_replace(last);
        self.reads.on_applied(last);
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

    /// Starts a snapshot if one is due.
    fn maybe_snapshot(&mut self) {
        let applied = *self.shared.applied.borrow();
        let turn = Turn::of(self.id, self.raw.raft.prs().iter().map(|(id, _)| *id));
        if !self.snapshots.due(applied, turn) {
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
        self.snapshots
            .start(tree, applied, term, self.log.conf_state());
    }

    /// A snapshot was made (its file written, if the store keeps files): it compacts the log,
    /// unless one from the leader replaced the log meanwhile.
    fn on_snapshot_made(&mut self, made: Made) {
        let took = self.snapshots.making_for();
        let (snapshot, serialize_took, write_took) = match made {
            Ok(made) => (made.snapshot, made.serialize_took, made.write_took),
            Err(error) => {
                self.snapshots.on_failed();
                tracing::warn!(%error, "snapshot not written; the log keeps growing until one is");
                return;
            }
        };
        let Some(snapshot) = self.snapshots.on_made(snapshot, self.log.snapshot_index()) else {
            return;
        };
        let index = snapshot.get_metadata().index;
        tracing::info!(
            index,
            bytes = snapshot.data.len(),
            took_ms = took.as_millis() as u64,
            serialize_ms = serialize_took.as_millis() as u64,
            write_ms = write_took.as_millis() as u64,
            "snapshot taken"
        );
        let (compacted, replaced) = self.log.store_snapshot(&snapshot);
        self.storage.write(Write {
            own_snapshot: Some(snapshot),
            ..Write::default()
        });
        let _freeing = self.snapshots.recycle(compacted, replaced);
        tracing::debug!(index, "log compacted to the snapshot");
    }

    fn publish_status(&self) {
        let raft = &self.raw.raft;
        let status = RaftStatus {
            role: role_name(raft.state).to_owned(),
            term: raft.term,
            leader: raft.leader_id,
            commit: raft.raft_log.committed,
            applied: *self.shared.applied.borrow(),
            snapshot: self.snapshots.last(),
        };
        *self
            .shared
            .status
            .write()
            .unwrap_or_else(|p| p.into_inner()) = status;
    }
}
