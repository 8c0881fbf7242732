//! Writes on their way through Raft: the callers waiting for their entries to apply, and the
//! entries proposed during the current turn of the driver, which go to raft-rs together.
//!
//! Each entry carries its proposer (this member, its incarnation, a sequence number), so that
//! applying it finds the caller waiting for it; an entry proposed before a restart has another
//! incarnation and finds nobody.
//!
//! A write is answered "outcome unknown" only when it may really go either way: its term ended
//! (an election began) and it was not among the entries committed by then. Learning of a leader
//! within the same term, or losing and finding again the same leader, changes nothing for an
//! entry already on its way: the leader of a term is one member, and whatever it appends in that
//! term commits or is overwritten only by a later term's leader.

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

/// A caller waiting for its entry to apply.
struct Waiting {
    reply: ProposalReply,
    /// The Raft term in which the entry was handed to raft-rs (0: not handed over yet).
    term: u64,
    /// Set once the entry's term has ended: the commit index at that moment. Had the entry
    /// committed by then, it applies by the time this index is applied; if it has not, its
    /// outcome is unknown.
    doomed_after: Option<u64>,
}

/// Proposals of this member that have not applied yet.
pub struct Proposals {
    proposer: Proposer,
    /// Callers waiting for their entry to apply, by sequence number.
    waiting: HashMap<u64, Waiting>,
    /// The latest term raft-rs was seen in.
    term: u64,
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
            term: 0,
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
            let waiting = Waiting {
                reply,
                term: 0,
                doomed_after: None,
            };
            self.waiting.insert(proposer.seq, waiting);
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
    /// `term` is raft-rs's term as they are handed over: theirs, if the leader accepts them.
    pub fn take_turn(&mut self, term: u64) -> Option<(Message, Turn)> {
        if self.turn.is_empty() {
            return None;
        }
        for seq in &self.turn_seqs {
            if let Some(waiting) = self.waiting.get_mut(seq) {
                waiting.term = term;
            }
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
            if let Some(waiting) = self.waiting.remove(&seq) {
                let _ = waiting
                    .reply
                    .send(Err(RegistryError::NoQuorum(reason.clone())));
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
        if let Some(waiting) = self.waiting.remove(&proposer.seq) {
            let _ = waiting.reply.send(Ok(applied));
        }
    }

    /// raft-rs is in `term`, with `committed` the highest index known committed. If the term
    /// moved on (an election began), a write handed over in an earlier term either committed by
    /// `committed` (and applies with it) or may now go either way: once this member has applied
    /// `committed`, [`Proposals::on_applied_up_to`] tells its caller so at once (it may retry; a
    /// session's retries are deduplicated) instead of letting it wait for its deadline.
    pub fn observe_term(&mut self, term: u64, committed: u64) {
        if term <= self.term {
            return;
        }
        self.term = term;
        let mut doomed = 0;
        for waiting in self.waiting.values_mut() {
            if waiting.term != 0 && waiting.term < term && waiting.doomed_after.is_none() {
                waiting.doomed_after = Some(committed);
                doomed += 1;
            }
        }
        if doomed > 0 {
            tracing::debug!(
                term,
                committed,
                writes = doomed,
                "term changed with writes in flight"
            );
        }
    }

    /// Everything up to `applied` is applied: a write whose term ended and which was not among
    /// the entries committed then hears that its outcome is unknown.
    pub fn on_applied_up_to(&mut self, applied: u64) {
        let doomed: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.doomed_after.is_some_and(|index| index <= applied))
            .map(|(seq, _)| *seq)
            .collect();
        for seq in doomed {
            if let Some(waiting) = self.waiting.remove(&seq) {
                let _ = waiting.reply.send(Err(RegistryError::Indeterminate(
                    "the leader changed (a new term began) before the write committed; it may \
                     or may not be applied"
                        .to_owned(),
                )));
            }
        }
    }

    /// Every waiting caller hears that its write's outcome is unknown.
    pub fn fail_all(&mut self, reason: &str) {
        for (_, waiting) in self.waiting.drain() {
            let _ = waiting
                .reply
                .send(Err(RegistryError::Indeterminate(reason.to_owned())));
        }
    }

    /// Calls whose caller gave up leave nothing behind.
    pub fn forget_abandoned(&mut self) {
        self.waiting.retain(|_, waiting| !waiting.reply.is_closed());
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
        let (message, _) = proposals.take_turn(1).unwrap();
        assert!(proposals.take_turn(1).is_none(), "a turn is taken once");
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
    fn a_refused_turn_is_no_quorum() {
        let mut proposals = Proposals::new(1, 1);
        let mut refused = propose(&mut proposals, "/a");
        let (_, turn) = proposals.take_turn(1).unwrap();
        proposals.refuse(turn, &raft::Error::ProposalDropped, false);
        assert!(matches!(
            refused.try_recv().unwrap(),
            Err(RegistryError::NoQuorum(reason)) if reason.contains("no leader is known")
        ));
    }

    /// The proposer of the only entry of a turn taken in `term`.
    fn proposed_in(proposals: &mut Proposals, term: u64) -> Proposer {
        let (message, _) = proposals.take_turn(term).unwrap();
        Command::decode(&message.get_entries()[0].data)
            .unwrap()
            .proposer
    }

    #[test]
    fn only_a_write_whose_term_ended_before_it_committed_is_indeterminate() {
        let mut proposals = Proposals::new(1, 1);
        proposals.observe_term(5, 10);

        // Learning the leader, or losing and finding it again, within the term: nothing fails,
        // and the entry applies with its result.
        let mut same_term = propose(&mut proposals, "/a");
        let a = proposed_in(&mut proposals, 5);
        proposals.observe_term(5, 10);
        proposals.on_applied_up_to(10);
        assert!(same_term.try_recv().is_err(), "still waiting");
        proposals.on_applied(a, applied(11));
        assert_eq!(same_term.try_recv().unwrap().unwrap().zxid, 11);

        // Committed (by index 13) when term 6 began, but not applied yet: answered with its
        // result once it applies, never "unknown".
        let mut committed = propose(&mut proposals, "/b");
        let b = proposed_in(&mut proposals, 5);
        let mut uncommitted = propose(&mut proposals, "/c");
        proposed_in(&mut proposals, 5);
        proposals.observe_term(6, 13);
        proposals.on_applied_up_to(12);
        assert!(committed.try_recv().is_err() && uncommitted.try_recv().is_err());
        proposals.on_applied(b, applied(13));
        proposals.on_applied_up_to(13);
        assert_eq!(committed.try_recv().unwrap().unwrap().zxid, 13);
        // Not among the entries committed when its term ended: its outcome is unknown.
        assert!(matches!(
            uncommitted.try_recv().unwrap(),
            Err(RegistryError::Indeterminate(reason)) if reason.contains("new term")
        ));

        // A write handed over in the new term is not touched by it, nor by an older term seen
        // late.
        let mut new_term = propose(&mut proposals, "/d");
        proposed_in(&mut proposals, 6);
        proposals.observe_term(6, 20);
        proposals.observe_term(4, 20);
        proposals.on_applied_up_to(20);
        assert!(new_term.try_recv().is_err(), "still waiting");
        assert_eq!(proposals.waiting.len(), 1);
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
        proposals.take_turn(1);
        assert!(!proposals.turn_is_full());

        let abandoned = propose(&mut proposals, "/a");
        let kept = propose(&mut proposals, "/b");
        drop(abandoned);
        proposals.forget_abandoned();
        assert_eq!(proposals.waiting.len(), 1);
        drop(kept);
    }
}
