//! What the harness and each system's module exchange: a member's ports and role, and what a
//! watcher saw.

use std::net::SocketAddr;

/// Each member's ports on loopback, member i at index i.
pub struct MemberPorts {
    /// Where clients connect.
    pub clients: Vec<SocketAddr>,
    /// Where the members talk to each other.
    pub peers: Vec<u16>,
    /// ZooKeeper's leader-election ports.
    pub elections: Vec<u16>,
}

/// What a member says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

/// What a watcher saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Updated,
    Deleted,
}
