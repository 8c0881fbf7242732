//! rmif-registry: the Raft-replicated registry that keeps every consumer's provider list
//! current, and its client.
//!
//! - [`tree`]: the replicated state machine (nodes, sessions, ephemeral and sequential nodes);
//! - [`server`]: a member: raft-rs driver, durable write-ahead log, peer network, client API;
//! - [`api`]: the client API, an rmif service;
//! - [`client`]: [`RegistryClient`], the async client with failover;
//! - [`discovery`]: providers announcing themselves, consumers following provider lists.

pub mod api;
pub mod client;
pub mod discovery;
pub mod error;
pub mod server;
pub mod tree;

pub use client::{
    ClientOptions, Consistency, CreateMode, RegistryClient, Session, SessionState, Watcher,
};
pub use error::RegistryError;
