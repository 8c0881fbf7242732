//! In-process tests of the replica: whole clusters of replicas in one test, on the in-memory
//! network, with in-memory logs written inline, on a current-thread runtime whose clock is
//! paused. Time moves only when every replica is idle, straight to the next timer, so a test
//! runs in virtual time: its bounds are generous in virtual time and cost nothing in real time,
//! and the network's faults follow the test's seed.
//!
//! Each test checks what a client may rely on, never how long something took, except where a
//! reaction to an event is the behaviour under test.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use rmif_registry::RegistryError;

use super::{Published, RaftStatus, Replica, ReplicaConfig, SnapshotPolicy};
use crate::error::ServerError;
use crate::network::memory::{LinkFaults, MemoryNetwork};
use crate::storage::{MemoryStore, StorageMode};
use crate::tree::{Action, ActionResult};

const TICK: Duration = Duration::from_millis(10);
const ELECTION_TICKS: usize = 20;
const HEARTBEAT_TICKS: usize = 2;
/// What "eventually" means here, in virtual time: hundreds of election timeouts.
const LIVENESS: Duration = Duration::from_secs(60);
/// A write's deadline.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// One member: its replica and the task running it.
struct Member {
    replica: Replica,
    task: JoinHandle<Result<(), ServerError>>,
    /// Stops the member gracefully (dropping it does not).
    shutdown: CancellationToken,
}

/// Replicas 1..=n on one in-memory network.
struct Cluster {
    network: MemoryNetwork,
    members: BTreeMap<u64, Member>,
}

impl Cluster {
    fn start(size: u64, snapshot_every: u64, seed: u64) -> Cluster {
        let network = MemoryNetwork::new(seed);
        let voters: Vec<u64> = (1..=size).collect();
        let mut members = BTreeMap::new();
        for id in 1..=size {
            let config = ReplicaConfig {
                id,
                voters: voters.clone(),
                tick: TICK,
                election_ticks: ELECTION_TICKS,
                heartbeat_ticks: HEARTBEAT_TICKS,
                snapshots: SnapshotPolicy {
                    entries: snapshot_every,
                    log_bytes: u64::MAX,
                },
                join_existing: false,
            };
            let shutdown = CancellationToken::new();
            let (replica, task) = Replica::start(
                config,
                Box::new(MemoryStore::default()),
                StorageMode::Inline,
                network.join(id),
                shutdown.clone(),
            )
            .unwrap();
            members.insert(
                id,
                Member {
                    replica,
                    task,
                    shutdown,
                },
            );
        }
        Cluster { network, members }
    }

    fn ids(&self) -> Vec<u64> {
        self.members.keys().copied().collect()
    }

    fn replica(&self, id: u64) -> &Replica {
        &self.members[&id].replica
    }

    fn status(&self, id: u64) -> RaftStatus {
        self.replica(id).shared().status.read().unwrap().clone()
    }

    fn applied(&self, id: u64) -> u64 {
        *self.replica(id).shared().applied.borrow()
    }

    fn digest(&self, id: u64) -> u64 {
        self.replica(id).shared().tree.read().unwrap().digest()
    }

    fn has(&self, id: u64, path: &str) -> bool {
        self.replica(id)
            .shared()
            .tree
            .read()
            .unwrap()
            .stat(path)
            .is_ok()
    }

    /// The process of member `id` dies: its task stops where it is and its connections close.
    fn crash(&mut self, id: u64) {
        let member = self.members.remove(&id).unwrap();
        member.task.abort();
        self.network.isolate(id);
    }

    /// Polls `done` every tick until it holds; fails the test after [`LIVENESS`].
    async fn eventually<T>(&self, what: &str, mut done: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + LIVENESS;
        loop {
            if let Some(value) = done(self) {
                return value;
            }
            for (id, member) in &self.members {
                assert!(!member.task.is_finished(), "member {id} stopped");
            }
            assert!(
                Instant::now() < deadline,
                "not within {LIVENESS:?}: {what}; statuses: {:?}",
                self.ids()
                    .into_iter()
                    .map(|id| (id, self.status(id), self.applied(id)))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(TICK).await;
        }
    }

    /// The leader that every member of `among` agrees on.
    async fn leader_of(&self, among: &[u64]) -> u64 {
        self.eventually(&format!("{among:?} agree on a leader"), |cluster| {
            let leader = cluster.status(among[0]).leader;
            let agreed = leader != 0
                && among.contains(&leader)
                && cluster.status(leader).role == "leader"
                && among.iter().all(|id| cluster.status(*id).leader == leader);
            agreed.then_some(leader)
        })
        .await
    }

    /// Waits until every member of `among` applied the same entries, at least through
    /// `zxid`, and holds the same tree.
    async fn converged(&self, among: &[u64], zxid: u64) {
        self.eventually(&format!("{among:?} converge past {zxid}"), |cluster| {
            let applied = cluster.applied(among[0]);
            let digest = cluster.digest(among[0]);
            let same = applied >= zxid
                && among
                    .iter()
                    .all(|id| cluster.applied(*id) == applied && cluster.digest(*id) == digest);
            same.then_some(())
        })
        .await
    }

    /// Creates `path` through member `id`; returns the zxid of its entry.
    async fn create(&self, id: u64, path: &str) -> Result<u64, RegistryError> {
        let deadline = Instant::now() + WRITE_DEADLINE;
        let applied = self
            .replica(id)
            .propose(create(path), None, deadline)
            .await?;
        match applied.outcome? {
            ActionResult::Created { .. } => Ok(applied.zxid),
            other => panic!("creating {path}: {other:?}"),
        }
    }

    /// Creates `path` through member `id`, again after an unknown outcome or a refusal, until
    /// it exists; returns the zxid of a read point at or after its creation.
    async fn create_surely(&self, id: u64, path: &str) -> u64 {
        let deadline = Instant::now() + LIVENESS;
        loop {
            match self.create(id, path).await {
                Ok(zxid) => return zxid,
                // An earlier try committed after all.
                Err(RegistryError::NodeExists { .. }) => return self.applied(id),
                // A refusal comes at once (no leader known yet); like a client, wait a little
                // before trying again, or the clock would never move on to elect one.
                Err(RegistryError::Indeterminate(_) | RegistryError::NoQuorum(_)) => {
                    assert!(Instant::now() < deadline, "{path} never committed");
                    tokio::time::sleep(TICK).await;
                }
                Err(other) => panic!("creating {path}: {other:?}"),
            }
        }
    }
}

fn create(path: &str) -> Action {
    Action::Create {
        path: path.to_owned(),
        data: path.as_bytes().to_vec(),
        ephemeral: false,
        sequential: false,
    }
}

#[tokio::test(start_paused = true)]
async fn a_crashed_leader_is_replaced_and_no_acknowledged_write_is_lost() {
    let mut cluster = Cluster::start(3, 1000, 1);
    let old = cluster.leader_of(&[1, 2, 3]).await;
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let path = format!("/before{i}");
        cluster.create(old, &path).await.unwrap();
        acknowledged.push(path);
    }

    let crashed_at = Instant::now();
    cluster.crash(old);
    let survivors = cluster.ids();
    let new = cluster.leader_of(&survivors).await;
    assert_ne!(new, old);
    // The followers heard the leader's connection close and campaigned at once: without that
    // they would wait out an election timeout (at least ELECTION_TICKS - HEARTBEAT_TICKS).
    let election = crashed_at.elapsed();
    assert!(
        election < TICK * (ELECTION_TICKS / 2) as u32,
        "a new leader took {election:?}"
    );

    let mut last = 0;
    for i in 0..20 {
        let path = format!("/after{i}");
        // Through both survivors: a follower forwards its proposals to the new leader.
        last = cluster.create(survivors[i % 2], &path).await.unwrap();
        acknowledged.push(path);
    }
    cluster.converged(&survivors, last).await;
    for id in survivors {
        for path in &acknowledged {
            assert!(cluster.has(id, path), "member {id} lacks {path}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_stopping_leader_hands_over_before_it_stops() {
    let mut cluster = Cluster::start(3, 1000, 5);
    let old = cluster.leader_of(&[1, 2, 3]).await;
    cluster.create(old, "/before").await.unwrap();

    let stopping = cluster.members.remove(&old).unwrap();
    let stopped_at = Instant::now();
    stopping.shutdown.cancel();
    stopping.task.await.unwrap().unwrap();
    // The stopping leader transferred leadership and waited for its successor, rather than
    // leaving the followers to wait out an election timeout: they agree on a new leader
    // before its connections close (and followers would campaign early).
    let survivors = cluster.ids();
    let new = cluster.leader_of(&survivors).await;
    assert_ne!(new, old);
    let handover = stopped_at.elapsed();
    assert!(
        handover < TICK * (ELECTION_TICKS / 2) as u32,
        "the handover took {handover:?}"
    );
    cluster.network.isolate(old);
    let last = cluster.create(new, "/after").await.unwrap();
    cluster.converged(&survivors, last).await;
    assert!(survivors.iter().all(|id| cluster.has(*id, "/before")));
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_in_the_minority_commits_nothing_and_steps_down() {
    let cluster = Cluster::start(3, 1000, 2);
    let old = cluster.leader_of(&[1, 2, 3]).await;
    cluster.create(old, "/before").await.unwrap();
    let majority: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != old).collect();

    cluster.network.isolate(old);
    let minority_writes: Vec<_> = (0..5)
        .map(|i| {
            let replica = cluster.replica(old).clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + WRITE_DEADLINE;
                replica
                    .propose(create(&format!("/minority{i}")), None, deadline)
                    .await
            })
        })
        .collect();

    let new = cluster.leader_of(&majority).await;
    let mut last = 0;
    for i in 0..10 {
        last = cluster
            .create(majority[i % 2], &format!("/majority{i}"))
            .await
            .unwrap();
    }
    for write in minority_writes {
        match write.await.unwrap() {
            Err(RegistryError::Indeterminate(_) | RegistryError::NoQuorum(_)) => {}
            other => panic!("a write in the minority ended {other:?}"),
        }
    }
    assert_ne!(
        cluster.status(old).role,
        "leader",
        "a leader without a quorum steps down"
    );
    let refused = cluster.create(old, "/refused").await;
    assert!(
        matches!(refused, Err(RegistryError::NoQuorum(_))),
        "{refused:?}"
    );

    cluster.network.heal();
    assert_eq!(cluster.leader_of(&[1, 2, 3]).await, new);
    cluster.converged(&[1, 2, 3], last).await;
    for id in cluster.ids() {
        for i in 0..10 {
            assert!(cluster.has(id, &format!("/majority{i}")));
        }
        for i in 0..5 {
            assert!(!cluster.has(id, &format!("/minority{i}")));
        }
        assert!(cluster.has(id, "/before") && !cluster.has(id, "/refused"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_follower_left_behind_a_compacted_log_catches_up_from_a_snapshot() {
    let cluster = Cluster::start(3, 20, 3);
    let leader = cluster.leader_of(&[1, 2, 3]).await;
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let behind = cluster.applied(lagging);

    cluster.network.isolate(lagging);
    let mut last = 0;
    for i in 0..100 {
        last = cluster.create(leader, &format!("/n{i:03}")).await.unwrap();
    }
    // The leader's log no longer holds what the lagging member needs next.
    cluster
        .eventually("the leader compacts its log", |cluster| {
            (cluster.status(leader).snapshot > behind + 1).then_some(())
        })
        .await;
    let mut feed = cluster.replica(lagging).shared().subscribe(None).live;

    cluster.network.heal();
    cluster.converged(&[1, 2, 3], last).await;
    let mut reset = None;
    while let Ok(published) = feed.try_recv() {
        if let Published::Reset { zxid } = published {
            reset = Some(zxid);
        }
    }
    let reset = reset.expect("the lagging member installed a snapshot");
    assert!(reset > behind + 1, "snapshot at {reset}");
    assert!(cluster.status(lagging).snapshot >= reset);
    for i in 0..100 {
        assert!(cluster.has(lagging, &format!("/n{i:03}")));
    }
}

impl Cluster {
    /// A linearizable read point on member `id`, asked again after a refusal.
    async fn read_point(&self, id: u64) -> u64 {
        let deadline = Instant::now() + LIVENESS;
        loop {
            match self
                .replica(id)
                .read_index(Instant::now() + WRITE_DEADLINE)
                .await
            {
                Ok(index) => return index,
                Err(RegistryError::NoQuorum(_)) => {
                    assert!(Instant::now() < deadline, "no read point on {id}");
                    tokio::time::sleep(TICK).await;
                }
                Err(other) => panic!("read on {id}: {other:?}"),
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn writes_through_a_lossy_slow_network_all_commit_and_reads_see_them() {
    for seed in 0..8 {
        let cluster = Cluster::start(3, 50, seed);
        cluster.network.set_default_faults(LinkFaults {
            loss: 0.1,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(15),
        });
        let writes = (0..60).map(|i| {
            let cluster = &cluster;
            async move {
                let path = format!("/w{i:02}");
                let zxid = cluster.create_surely(1 + i % 3, &path).await;
                // A linearizable read that starts after the write was acknowledged sees it,
                // on any member.
                let reader = 1 + (i + 1) % 3;
                let read_point = cluster.read_point(reader).await;
                assert!(
                    read_point >= zxid && cluster.has(reader, &path),
                    "seed {seed}: member {reader} read at {read_point} without {path} ({zxid})"
                );
                zxid
            }
        });
        let last = futures_util::future::join_all(writes)
            .await
            .into_iter()
            .max()
            .unwrap_or(0);

        cluster.network.set_default_faults(LinkFaults::NONE);
        cluster.converged(&[1, 2, 3], last).await;
        for id in cluster.ids() {
            for i in 0..60 {
                assert!(cluster.has(id, &format!("/w{i:02}")), "seed {seed}");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn entries_committed_after_a_received_snapshot_wait_for_its_tree_then_apply_in_order() {
    let cluster = Cluster::start(3, 20, 4);
    let leader = cluster.leader_of(&[1, 2, 3]).await;
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let behind = cluster.applied(lagging);

    cluster.network.isolate(lagging);
    for i in 0..100 {
        cluster.create(leader, &format!("/n{i:03}")).await.unwrap();
    }
    cluster
        .eventually("the leader compacts its log", |cluster| {
            (cluster.status(leader).snapshot > behind + 1).then_some(())
        })
        .await;
    // The lagging member's decoding of the snapshot it is sent waits until the test opens this.
    let gate = super::install::gate::close();
    let mut feed = cluster.replica(lagging).shared().subscribe(None).live;

    cluster.network.heal();
    let snapshot = cluster
        .eventually("the lagging member receives a snapshot", |cluster| {
            let snapshot = cluster.status(lagging).snapshot;
            (snapshot > behind + 1).then_some(snapshot)
        })
        .await;
    // Writes go on, and commit on the lagging member too: it steps messages and persists while
    // the tree is decoded, but applies nothing to the tree the snapshot replaces.
    let mut zxids = Vec::new();
    for i in 0..30 {
        zxids.push(cluster.create(leader, &format!("/a{i:02}")).await.unwrap());
    }
    let last = *zxids.last().unwrap();
    cluster
        .eventually(
            "the lagging member commits the writes after the snapshot",
            |cluster| (cluster.status(lagging).commit >= last).then_some(()),
        )
        .await;
    assert!(cluster.applied(lagging) < snapshot, "nothing applied yet");
    assert!(!cluster.has(lagging, "/n099") && !cluster.has(lagging, "/a00"));
    assert_eq!(cluster.status(lagging).leader, leader);
    assert!(cluster.feed_is_empty(&mut feed));
    // A linearizable read waits for the tree too: its read index is past the snapshot.
    let reader = cluster.replica(lagging).clone();
    let read =
        tokio::spawn(async move { reader.read_index(Instant::now() + LIVENESS).await.unwrap() });
    tokio::time::sleep(TICK * (ELECTION_TICKS as u32)).await;
    assert!(
        !read.is_finished(),
        "a read was served from the replaced tree"
    );

    gate.open();
    assert!(read.await.unwrap() >= last);
    cluster.converged(&[1, 2, 3], last).await;
    for i in 0..100 {
        assert!(cluster.has(lagging, &format!("/n{i:03}")));
    }
    for i in 0..30 {
        assert!(cluster.has(lagging, &format!("/a{i:02}")));
    }
    // Watchers saw the snapshot replace the tree, then every write after it, in order.
    let mut published = Vec::new();
    while let Ok(event) = feed.try_recv() {
        published.push(match event {
            Published::Reset { zxid } => (zxid, true),
            Published::Changes { zxid, .. } => (zxid, false),
        });
    }
    assert_eq!(published.first(), Some(&(snapshot, true)), "{published:?}");
    let changes: Vec<u64> = published[1..].iter().map(|(zxid, _)| *zxid).collect();
    assert!(
        changes.is_sorted() && changes.first() > Some(&snapshot),
        "{published:?}"
    );
    for zxid in zxids.iter().filter(|zxid| **zxid > snapshot) {
        assert!(
            changes.contains(zxid),
            "the write at {zxid} was not published"
        );
    }
}

impl Cluster {
    /// Nothing was published on `feed` so far.
    fn feed_is_empty(&self, feed: &mut tokio::sync::broadcast::Receiver<Published>) -> bool {
        matches!(
            feed.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty)
        )
    }
}
