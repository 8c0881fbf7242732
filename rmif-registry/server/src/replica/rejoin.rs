//! A member that restarted with empty storage (its disk was wiped or replaced) while the
//! cluster ran. raft-rs assumes storage is never lost, so both sides make up for it: the member
//! refuses votes until it hears a leader (it may have voted in the current term already) and
//! tells the leader it lost its state; the leader then replicates to it from scratch.

use raft::Raft;
use raft::prelude::{Message, MessageType};

/// Ticks between two notices to the leader.
const NOTICE_EVERY_TICKS: u64 = 10;

/// What this member still owes the cluster after starting empty.
pub struct Rejoin {
    /// Votes are refused until a leader is heard.
    awaiting_leader: bool,
    /// The leader is told until this member's log has entries.
    rejoining: bool,
}

impl Rejoin {
    /// For a member of `voters` members that recovered nothing (`started_empty`), and was told
    /// it joins a running cluster (`join_existing`) or not.
    pub fn new(started_empty: bool, join_existing: bool, voters: usize) -> Self {
        let awaiting_leader = started_empty && join_existing && voters > 1;
        if awaiting_leader {
            tracing::info!(
                "joining an existing cluster with empty storage: not voting until a leader is heard"
            );
        }
        // Any member starting empty says so to the leader (a no-op for a brand-new cluster,
        // where the leader has recorded no progress for it yet), so that a wiped member
        // recovers even if its operator did not mark it `existing`.
        Rejoin {
            awaiting_leader,
            rejoining: started_empty && voters > 1,
        }
    }

    /// Screens a message before raft-rs steps it; `None` drops it. `last_index` is this
    /// member's last log index.
    pub fn admit(&mut self, mut message: Message, last_index: u64) -> Option<Message> {
        if self.awaiting_leader {
            match message.get_msg_type() {
                MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => return None,
                MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot => {
                    tracing::info!(leader = message.from, "heard from a leader; voting again");
                    self.awaiting_leader = false;
                }
                _ => {}
            }
        }
        // A member that lost its storage hears commit indexes beyond its log until the leader
        // learns of the loss; raft-rs would abort on them. Clamping only delays its commit.
        if message.get_msg_type() == MessageType::MsgHeartbeat && message.commit > last_index {
            message.commit = last_index;
        }
        Some(message)
    }

    /// Called every tick (`ticks` so far): true when the leader should be told now that this
    /// member lost its state. Stops once the log has entries again.
    pub fn notice_due(&mut self, ticks: u64, leader: u64, last_index: u64) -> bool {
        if !self.rejoining {
            return false;
        }
        if last_index > 0 {
            self.rejoining = false;
            return false;
        }
        leader != 0 && ticks.is_multiple_of(NOTICE_EVERY_TICKS)
    }
}

/// Leader: `member` lost its storage, so replicate to it from scratch (a snapshot, once the log
/// is compacted) instead of from where it used to be; without this the leader would keep
/// believing the member holds what it acknowledged before.
pub fn forget_progress<S: raft::Storage>(raft: &mut Raft<S>, member: u64) {
    if raft.state != raft::StateRole::Leader || member == raft.id {
        return;
    }
    if let Some(progress) = raft.mut_prs().get_mut(member) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: MessageType, commit: u64) -> Message {
        let mut message = Message {
            from: 1,
            commit,
            ..Message::default()
        };
        message.set_msg_type(kind);
        message
    }

    #[test]
    fn an_empty_member_joining_a_running_cluster_votes_only_after_hearing_a_leader() {
        let mut rejoin = Rejoin::new(true, true, 3);
        assert!(
            rejoin
                .admit(message(MessageType::MsgRequestPreVote, 0), 0)
                .is_none()
        );
        assert!(
            rejoin
                .admit(message(MessageType::MsgRequestVote, 0), 0)
                .is_none()
        );
        let heartbeat = rejoin
            .admit(message(MessageType::MsgHeartbeat, 40), 0)
            .unwrap();
        assert_eq!(heartbeat.commit, 0, "no commit beyond the log");
        assert!(
            rejoin
                .admit(message(MessageType::MsgRequestVote, 0), 0)
                .is_some()
        );

        let mut new_cluster = Rejoin::new(true, false, 3);
        assert!(
            new_cluster
                .admit(message(MessageType::MsgRequestVote, 0), 0)
                .is_some()
        );
        let mut restarted = Rejoin::new(false, true, 3);
        assert!(
            restarted
                .admit(message(MessageType::MsgRequestVote, 0), 0)
                .is_some()
        );
    }

    #[test]
    fn the_leader_is_told_every_few_ticks_until_the_log_has_entries() {
        let mut rejoin = Rejoin::new(true, false, 3);
        let told: Vec<u64> = (1..=30)
            .filter(|ticks| rejoin.notice_due(*ticks, if *ticks < 15 { 0 } else { 2 }, 0))
            .collect();
        assert_eq!(told, [20, 30], "only once a leader is known");
        assert!(!rejoin.notice_due(40, 2, 5));
        assert!(!rejoin.notice_due(50, 2, 0), "done for good once caught up");

        let mut single = Rejoin::new(true, true, 1);
        assert!(!single.notice_due(10, 1, 0));
    }
}
