//! Session liveness. Clients send heartbeats to whichever member they are connected to; a
//! follower forwards them to the leader in batches, and the leader, which alone decides,
//! proposes the expiry of sessions it has not heard of within their timeout.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::Duration;

use tokio::time::Instant;

use super::expiries::ExpiryLog;
use crate::tree::{ActionResult, Outcome, Tree};

/// Sessions the leader expires per second at most, so that a burst (a partition healing, a
/// rack of clients dying at once) becomes a steady trickle rather than a storm.
const MAX_EXPIRIES_PER_SECOND: u64 = 1000;

/// What this member knows of the sessions' heartbeats.
pub struct SessionLiveness {
    /// Expiries proposed per tick at most.
    expiries_per_tick: usize,
    /// Leader only: when each session was last heard of.
    last_seen: HashMap<u64, Instant>,
    /// Follower only: sessions heard of since the last batch forwarded to the leader.
    touched: HashSet<u64>,
    /// Leader only: sessions whose expiry is proposed but not yet applied.
    expiring: HashSet<u64>,
    /// The current burst of expiries, for the log.
    expiry_log: ExpiryLog,
}

impl SessionLiveness {
    /// Nothing heard yet; the driver ticks every `tick`.
    pub fn new(tick: Duration) -> Self {
        let per_tick = (MAX_EXPIRIES_PER_SECOND as u128 * tick.as_millis() / 1000).max(1);
        SessionLiveness {
            expiries_per_tick: per_tick as usize,
            last_seen: HashMap::new(),
            touched: HashSet::new(),
            expiring: HashSet::new(),
            expiry_log: ExpiryLog::default(),
        }
    }

    /// A heartbeat of `session`: the leader records it; a follower passes it on with its next
    /// batch.
    pub fn touch(&mut self, session: u64, is_leader: bool, now: Instant) {
        if is_leader {
            if let Some(seen) = self.last_seen.get_mut(&session) {
                *seen = now;
            }
        } else {
            self.touched.insert(session);
        }
    }

    /// Follower: the heartbeats to forward to the leader, each once.
    pub fn take_touched(&mut self) -> Vec<u64> {
        self.touched.drain().collect()
    }

    /// A new leader knows sessions only from the tree; it gives every one a fresh timeout
    /// before expiring any, since it cannot tell how long each was silent under the old leader.
    pub fn refresh(&mut self, tree: &Tree, now: Instant) {
        self.last_seen = tree.sessions().map(|s| (s.id, now)).collect();
        self.expiring.clear();
    }

    /// Leader: the sessions not heard of within their timeout, whose expiry is not already
    /// proposed, at most the per-tick budget. They count as expiring from now on.
    pub fn expired(&mut self, tree: &Tree, now: Instant) -> Vec<u64> {
        let expired: Vec<u64> = self
            .last_seen
            .iter()
            .filter(|(id, seen)| {
                !self.expiring.contains(id)
                    && tree.session(**id).is_some_and(|s| {
                        now.duration_since(**seen) > Duration::from_millis(s.timeout_ms)
                    })
            })
            .map(|(id, _)| *id)
            .take(self.expiries_per_tick)
            .collect();
        self.expiring.extend(&expired);
        self.expiry_log.record(&expired, now);
        expired
    }

    /// Logs (INFO) a burst of expiries once it is over: one line with the count and a few ids.
    pub fn log_expiries(&mut self, now: Instant) {
        self.expiry_log.log_due(now);
    }

    /// An entry applied with `outcome`: a session that opened or moved was just heard of; one
    /// that ended is forgotten.
    pub fn on_applied(&mut self, outcome: &Outcome, tree: &RwLock<Tree>, now: Instant) {
        match outcome {
            Ok(
                ActionResult::SessionOpened { session, .. }
                | ActionResult::SessionAttached { session, .. },
            ) => {
                self.last_seen.insert(*session, now);
            }
            Ok(ActionResult::Expired { .. } | ActionResult::SessionClosed { .. }) => {
                let tree = tree.read().unwrap_or_else(|p| p.into_inner());
                self.last_seen.retain(|id, _| tree.session(*id).is_some());
                self.expiring.retain(|id| tree.session(*id).is_some());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{Action, Command, Proposer, SessionOwner};

    const TICK: Duration = Duration::from_millis(10);

    /// A tree holding `count` sessions with a 100 ms timeout; returns their ids.
    fn tree_with_sessions(count: u64) -> (RwLock<Tree>, Vec<u64>) {
        let mut tree = Tree::new();
        let mut ids = Vec::new();
        for zxid in 1..=count {
            let command = Command {
                proposer: Proposer {
                    member: 1,
                    incarnation: 0,
                    seq: zxid,
                },
                time_ms: 0,
                session: None,
                action: Action::OpenSession {
                    timeout_ms: 100,
                    secret: zxid,
                    owner: SessionOwner {
                        member: 1,
                        connection: format!("127.0.0.1:{zxid}"),
                    },
                },
            };
            match tree.apply(zxid, &command).outcome {
                Ok(ActionResult::SessionOpened { session, .. }) => ids.push(session),
                other => panic!("{other:?}"),
            }
        }
        (RwLock::new(tree), ids)
    }

    fn expire(tree: &RwLock<Tree>, sessions: Vec<u64>, zxid: u64) -> Outcome {
        let command = Command {
            proposer: Proposer {
                member: 1,
                incarnation: 0,
                seq: zxid,
            },
            time_ms: 0,
            session: None,
            action: Action::ExpireSessions { sessions },
        };
        tree.write().unwrap().apply(zxid, &command).outcome
    }

    #[test]
    fn a_leader_expires_a_silent_session_once_after_its_timeout() {
        let (tree, ids) = tree_with_sessions(2);
        let (quiet, chatty) = (ids[0], ids[1]);
        let mut liveness = SessionLiveness::new(TICK);
        let start = Instant::now();
        liveness.refresh(&tree.read().unwrap(), start);
        let mut now = start;
        for _ in 0..10 {
            now += TICK;
            liveness.touch(chatty, true, now);
            assert_eq!(
                liveness.expired(&tree.read().unwrap(), now),
                Vec::<u64>::new()
            );
        }
        now += TICK;
        liveness.touch(chatty, true, now);
        assert_eq!(liveness.expired(&tree.read().unwrap(), now), [quiet]);
        now += TICK * 11;
        assert_eq!(
            liveness.expired(&tree.read().unwrap(), now),
            [chatty],
            "the one already expiring is not proposed again"
        );

        let outcome = expire(&tree, vec![quiet, chatty], 3);
        liveness.on_applied(&outcome, &tree, now);
        assert!(liveness.last_seen.is_empty() && liveness.expiring.is_empty());
    }

    #[test]
    fn expiries_per_tick_are_bounded_and_a_new_leader_starts_every_timeout_afresh() {
        let (tree, ids) = tree_with_sessions(25);
        // 1000 a second: 20 per 20 ms tick.
        let mut liveness = SessionLiveness::new(Duration::from_millis(20));
        let start = Instant::now();
        liveness.refresh(&tree.read().unwrap(), start);
        let late = start + Duration::from_secs(1);
        assert_eq!(liveness.expired(&tree.read().unwrap(), late).len(), 20);
        assert_eq!(liveness.expired(&tree.read().unwrap(), late).len(), 5);

        liveness.refresh(&tree.read().unwrap(), late);
        assert_eq!(
            liveness.expired(&tree.read().unwrap(), late),
            Vec::<u64>::new()
        );
        assert_eq!(liveness.last_seen.len(), ids.len());
    }

    #[test]
    fn a_follower_forwards_each_heartbeat_once_and_a_leader_tracks_only_known_sessions() {
        let (tree, ids) = tree_with_sessions(1);
        let mut liveness = SessionLiveness::new(TICK);
        let now = Instant::now();
        liveness.touch(ids[0], false, now);
        liveness.touch(ids[0], false, now);
        liveness.touch(99, false, now);
        let mut forwarded = liveness.take_touched();
        forwarded.sort();
        assert_eq!(forwarded, [ids[0], 99]);
        assert_eq!(liveness.take_touched(), Vec::<u64>::new());

        liveness.touch(99, true, now);
        assert!(
            liveness.last_seen.is_empty(),
            "the leader never saw it open"
        );
        let opened = Ok(ActionResult::SessionOpened {
            session: ids[0],
            timeout_ms: 100,
        });
        liveness.on_applied(&opened, &tree, now);
        assert_eq!(liveness.last_seen.get(&ids[0]), Some(&now));
    }
}
