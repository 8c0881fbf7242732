//! The peer network: how Raft messages, forwarded session heartbeats and rejoin notices travel
//! between members. The replica sends through a [`PeerNetwork`] and hears back on the channels
//! bundled in [`Peers`]; [`tcp`] is the members' network, and `memory` an in-process one for
//! tests, which can drop, delay and partition traffic.
//!
//! Both tolerate loss: sending never blocks, and what could not be delivered is reported as a
//! [`PeerEvent`] so that raft-rs stops pipelining to that peer.

#[cfg(test)]
pub mod memory;
pub mod reachability;
pub mod tcp;

use raft::prelude::{Message, MessageType};
use tokio::sync::mpsc;

/// Something one member sends another.
#[derive(Debug)]
pub enum PeerMessage {
    /// A Raft message.
    Raft(Message),
    /// Sessions whose clients sent heartbeats to the sender (a follower forwards them to the
    /// leader, which alone expires sessions).
    Touch(Vec<u64>),
    /// The sender restarted with empty storage.
    LostState,
}

impl PeerMessage {
    /// A snapshot's delivery must be reported to raft-rs ([`PeerEvent::SnapshotSent`]).
    pub fn is_snapshot(&self) -> bool {
        matches!(self, PeerMessage::Raft(m) if m.get_msg_type() == MessageType::MsgSnapshot)
    }
}

/// Something a peer sent, or the end of its connection.
#[derive(Debug)]
pub enum PeerInbound {
    /// A Raft message.
    Raft(Message),
    /// Sessions whose clients sent heartbeats to that peer.
    Touch(Vec<u64>),
    /// That peer lost its storage and rejoined empty: what the leader believes it holds is gone.
    LostState(u64),
    /// The connection from that peer closed or broke. When a member's process dies, the kernel
    /// closes its sockets at once, so this is usually the first sign of a crashed member.
    Disconnected(u64),
}

/// What the network tells the sender about its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    /// Messages to this peer could not be delivered.
    Unreachable(u64),
    /// A snapshot to this peer was written (`true`) or lost (`false`).
    SnapshotSent(u64, bool),
}

/// The sending side of the peer network, as the replica sees it.
pub trait PeerNetwork: Send + 'static {
    /// Queues `message` for member `to`. Never blocks: a message that cannot be queued or
    /// delivered is dropped and reported as a [`PeerEvent`].
    fn send(&self, to: u64, message: PeerMessage);

    /// Queues Raft messages, each for the member it is addressed to.
    fn send_raft(&self, messages: Vec<Message>) {
        for message in messages {
            self.send(message.to, PeerMessage::Raft(message));
        }
    }
}

/// One member's attachment to the peer network: where it sends, what reaches it, and what the
/// network reports about its deliveries.
pub(crate) struct Peers {
    /// Where messages to other members go.
    pub network: Box<dyn PeerNetwork>,
    /// What other members sent.
    pub inbound: mpsc::Receiver<PeerInbound>,
    /// Delivery reports.
    pub events: mpsc::UnboundedReceiver<PeerEvent>,
}

/// Messages from peers queued for the replica before the network waits (TCP) or drops (the
/// in-memory network).
pub const INBOUND_CAPACITY: usize = 65_536;
