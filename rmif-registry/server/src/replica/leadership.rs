//! What this member does about who leads, beyond raft-rs's own timers: a follower campaigns
//! early when the leader's connection closes, and a leader asked to stop hands over first.

use std::time::Duration;

use raft::{Raft, RawNode, StateRole};

/// The connection from `member` closed. If `member` is the leader, its process most likely
/// died (the kernel closes a dead process's sockets at once), so this follower stops waiting
/// out the election timeout: it leaves the leader's lease now, so that it grants votes, and
/// campaigns one to three ticks later, staggered by id so that the followers rarely split the
/// vote. Elections are always safe; if the leader is in fact alive, the pre-vote fails against
/// the members that still hear it and nothing changes.
pub fn campaign_early<S: raft::Storage>(raft: &mut Raft<S>, member: u64) {
    if raft.state != StateRole::Follower || raft.leader_id != member || member == raft.id {
        return;
    }
    let lease = raft.election_timeout();
    let campaign_at = lease + 1 + (raft.id % 3) as usize;
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

/// A leader asked to stop first transfers leadership to the most up-to-date follower, so that
/// clients see a handover instead of an election timeout. Returns how long to wait for the
/// handover (zero if there is none to wait for).
pub fn hand_over<S: raft::Storage>(raw: &mut RawNode<S>, election_time: Duration) -> Duration {
    if raw.raft.state != StateRole::Leader {
        return Duration::ZERO;
    }
    let me = raw.raft.id;
    let transferee = raw
        .raft
        .prs()
        .iter()
        .filter(|(id, _)| **id != me)
        .max_by_key(|(_, progress)| progress.matched)
        .map(|(id, _)| *id);
    match transferee {
        Some(id) => {
            tracing::info!(to = id, "stopping: transferring leadership");
            raw.transfer_leader(id);
            election_time
        }
        None => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use raft::prelude::ConfState;
    use raft::storage::MemStorage;

    use super::*;

    fn follower_of(leader: u64, id: u64) -> RawNode<MemStorage> {
        let storage = MemStorage::new_with_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        let config = raft::Config {
            id,
            election_tick: 10,
            heartbeat_tick: 2,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut raw = RawNode::new(&config, storage, &logger).unwrap();
        raw.raft.become_follower(1, leader);
        raw
    }

    /// Ticks until `raft` campaigns (pre-vote), at most `limit`.
    fn ticks_to_campaign(raft: &mut Raft<MemStorage>, limit: usize) -> Option<usize> {
        (1..=limit).find(|_| {
            raft.tick();
            raft.state == StateRole::PreCandidate
        })
    }

    #[test]
    fn a_follower_that_loses_its_leaders_connection_campaigns_within_three_ticks() {
        for id in [2, 3] {
            let mut raw = follower_of(1, id);
            campaign_early(&mut raw.raft, 1);
            let ticks = ticks_to_campaign(&mut raw.raft, 20).unwrap();
            assert!((1..=3).contains(&ticks), "member {id}: {ticks} ticks");
        }
    }

    #[test]
    fn another_members_connection_changes_nothing() {
        let mut raw = follower_of(1, 2);
        campaign_early(&mut raw.raft, 3);
        assert_eq!(raw.raft.election_elapsed, 0);
        let ticks = ticks_to_campaign(&mut raw.raft, 30).unwrap();
        assert!(ticks >= 10, "waits out the election timeout: {ticks}");
    }

    #[test]
    fn only_a_leader_hands_over() {
        let mut raw = follower_of(1, 2);
        assert_eq!(hand_over(&mut raw, Duration::from_secs(1)), Duration::ZERO);
    }
}
