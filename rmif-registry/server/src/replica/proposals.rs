//! Writes on their way through Raft: the callers waiting for their entries to apply, and the
//! entries proposed during the current turn of the driver, which go to raft-rs together.
//!
//! Each entry carries its proposer (this member, its incarnation, a sequence number), so that
//! applying it finds the caller waiting for it; an entry proposed before a restart has another
//! incarnation and finds nobody.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use raft::prelude::{Entry, Message, MessageType};
use tokio::sync::oneshot;

use rmif_registry::RegistryError;
use rmif_registry::op::SessionCall;

use crate::tree::{Action, Applied, Command, Proposer};

/// Where a proposal's outcome goes.
pub type ProposalReply = oneshot::Sender<Result<Applied, RegistryError>>;

/// Bytes of proposals taken per driver turn: bounds the append message they become.
const MAX_TURN_BYTES: usize = 8 * 1024 * 1024;

/// The proposals of a turn handed to raft-rs (by their sequence numbers), in case it refuses
/// them.
pub struct Turn {
    seqs: Vec<u64>,
}

/// Proposals of this member that have not applied yet.
pub struct Proposals {
    proposer: Proposer,
    /// Callers waiting for their entry to apply, by sequence number.
    waiting: HashMap<u64, ProposalReply>,
    /// Entries proposed during this turn, and their sequence numbers.
    turn: Vec<Entry>,
    turn_seqs: Vec<u64>,
    turn_bytes: usize,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Proposals {
    /// Proposals of `member` in this start of it (`incarnation`).
    pub fn new(member: u64, incarnation: u64) -> Self {
        Proposals {
            proposer: Proposer {
                member,
                incarnation,
                seq: 0,
            },
            waiting: HashMap::new(),
            turn: Vec::new(),
            turn_seqs: Vec::new(),
            turn_bytes: 0,
        }
    }

    /// Adds `action` to this turn's proposals; `reply`, if any, hears what applying it did.
    pub fn propose(
        &mut self,
        action: Action,
        session: Option<SessionCall>,
        reply: Option<ProposalReply>,
    ) {
        let proposer = self.proposer;
        self.proposer.seq += 1;
        let data = Command {
            proposer,
            time_ms: now_ms(),
            session,
            action,
        }
        .encode();
        self.turn_bytes += data.len();
        self.turn.push(Entry {
            data: data.into(),
            ..Entry::default()
        });
        self.turn_seqs.push(proposer.seq);
        if let Some(reply) = reply {
            self.waiting.insert(proposer.seq, reply);
        }
    }

    /// This turn holds as many bytes as one append should carry: further requests wait for the
    /// next turn.
    pub fn turn_is_full(&self) -> bool {
        self.turn_bytes >= MAX_TURN_BYTES
    }

    /// Ends the turn: its proposals as one `MsgPropose`, so that the leader appends them together
    /// and sends each follower one append for all of them, and a follower forwards them to the
    /// leader in one message (one proposal at a time cost a message per write per follower).
    pub fn take_turn(&mut self) -> Option<(Message, Turn)> {
        if self.turn.is_empty() {
            return None;
        }
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgPropose);
        message.from = self.proposer.member;
        message.set_entries(std::mem::take(&mut self.turn).into());
        self.turn_bytes = 0;
        let turn = Turn {
            seqs: std::mem::take(&mut self.turn_seqs),
        };
        Some((message, turn))
    }

    /// raft-rs did not accept `turn`: its callers are told that their writes were not made.
    pub fn refuse(&mut self, turn: Turn, error: &raft::Error, is_leader: bool) {
        let reason = match error {
            raft::Error::ProposalDropped if is_leader => {
                "the leader is handing over leadership or holds too many uncommitted writes; \
                 the write was not accepted"
                    .to_owned()
            }
            raft::Error::ProposalDropped => {
                "no leader is known; the write was not accepted".to_owned()
            }
            error => format!("the write was not accepted: {error}"),
        };
        for seq in turn.seqs {
            if let Some(reply) = self.waiting.remove(&seq) {
                let _ = reply.send(Err(RegistryError::NoQuorum(reason.clone())));
            }
        }
    }

    /// An entry applied: if this member proposed it in this incarnation, its caller hears the
    /// outcome.
    pub fn on_applied(&mut self, proposer: Proposer, applied: Applied) {
        if proposer.member != self.proposer.member
            || proposer.incarnation != self.proposer.incarnation
        {
            return;
        }
        if let Some(reply) = self.waiting.remove(&proposer.seq) {
            let _ = reply.send(Ok(applied));
        }
    }

    /// Writes in flight when the leader changed may or may not commit: their callers are told
    /// so at once (and retry; a session's retries are deduplicated) instead of waiting for a
    /// deadline.
    pub fn on_leader_change(&mut self, leader: u64) {
        if self.waiting.is_empty() {
            return;
        }
        tracing::debug!(
            leader,
            pending = self.waiting.len(),
            "leader changed with writes in flight"
        );
        self.fail_all("the leader changed while the write was in flight");
    }

    /// Every waiting caller hears that its write's outcome is unknown.
    pub fn fail_all(&mut self, reason: &str) {
        for (_, reply) in self.waiting.drain() {
            let _ = reply.send(Err(RegistryError::Indeterminate(reason.to_owned())));
        }
    }

    /// Calls whose caller gave up leave nothing behind.
    pub fn forget_abandoned(&mut self) {
        self.waiting.retain(|_, reply| !reply.is_closed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(path: &str) -> Action {
        Action::Create {
            path: path.to_owned(),
            data: Vec::new(),
            ephemeral: false,
            sequential: false,
        }
    }

    fn applied(zxid: u64) -> Applied {
        Applied {
            zxid,
            outcome: Err(RegistryError::NoNode {
                path: "/".to_owned(),
            }),
            changes: Vec::new(),
        }
    }

    fn propose(
        proposals: &mut Proposals,
        path: &str,
    ) -> oneshot::Receiver<Result<Applied, RegistryError>> {
        let (reply, answer) = oneshot::channel();
        proposals.propose(create(path), None, Some(reply));
        answer
    }

    #[test]
    fn a_turn_is_one_message_and_each_entry_finds_its_caller() {
        let mut proposals = Proposals::new(1, 77);
        let mut first = propose(&mut proposals, "/a");
        let mut second = propose(&mut proposals, "/b");
        proposals.propose(create("/internal"), None, None);
        let (message, _) = proposals.take_turn().unwrap();
        assert!(proposals.take_turn().is_none(), "a turn is taken once");
        assert_eq!(message.get_msg_type(), MessageType::MsgPropose);
        let commands: Vec<Command> = message
            .get_entries()
            .iter()
            .map(|entry| Command::decode(&entry.data).unwrap())
            .collect();
        assert_eq!(commands.len(), 3);
        assert_eq!(commands[0].action, create("/a"));
        assert!(
            commands
                .iter()
                .all(|c| (c.proposer.member, c.proposer.incarnation) == (1, 77))
        );

        // The same member before a restart, and another member, use the same numbers.
        let mut before_restart = commands[1].proposer;
        before_restart.incarnation = 76;
        proposals.on_applied(before_restart, applied(5));
        let mut other_member = commands[1].proposer;
        other_member.member = 2;
        proposals.on_applied(other_member, applied(5));
        assert!(
            second.try_recv().is_err(),
            "not answered by someone else's entry"
        );

        proposals.on_applied(commands[1].proposer, applied(6));
        assert_eq!(second.try_recv().unwrap().unwrap().zxid, 6);
        proposals.on_applied(commands[0].proposer, applied(7));
        assert_eq!(first.try_recv().unwrap().unwrap().zxid, 7);
    }

    #[test]
    fn a_refused_turn_is_no_quorum_and_a_leader_change_is_indeterminate() {
        let mut proposals = Proposals::new(1, 1);
        let mut refused = propose(&mut proposals, "/a");
        let (_, turn) = proposals.take_turn().unwrap();
        proposals.refuse(turn, &raft::Error::ProposalDropped, false);
        assert!(matches!(
            refused.try_recv().unwrap(),
            Err(RegistryError::NoQuorum(reason)) if reason.contains("no leader is known")
        ));

        let mut in_flight = propose(&mut proposals, "/b");
        proposals.take_turn();
        proposals.on_leader_change(2);
        assert!(matches!(
            in_flight.try_recv().unwrap(),
            Err(RegistryError::Indeterminate(_))
        ));
    }

    #[test]
    fn a_turn_fills_up_and_abandoned_calls_are_forgotten() {
        let mut proposals = Proposals::new(1, 1);
        proposals.propose(
            Action::Set {
                path: "/big".to_owned(),
                data: vec![0; MAX_TURN_BYTES],
                version: None,
            },
            None,
            None,
        );
        assert!(proposals.turn_is_full());
        proposals.take_turn();
        assert!(!proposals.turn_is_full());

        let abandoned = propose(&mut proposals, "/a");
        let kept = propose(&mut proposals, "/b");
        drop(abandoned);
        proposals.forget_abandoned();
        assert_eq!(proposals.waiting.len(), 1);
        drop(kept);
    }
}
