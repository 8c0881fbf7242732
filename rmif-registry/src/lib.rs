//! rmif-registry: the client of rmif's Raft-replicated registry, and service discovery on it.
//!
//! This is what an application depends on to announce providers or follow provider lists. It
//! builds on rmif-core alone; the registry member (Raft, storage) is the `rmif-registry-server`
//! package and the command line is `rmif-cli`.
//!
//! - [`RegistryClient`]: reads, writes and watches with failover between members;
//! - [`Session`]: ephemeral nodes and deduplicated retries, kept alive in the background;
//! - [`discovery`]: providers announcing themselves, consumers following provider lists;
//! - [`api`]: the registry's client API, an rmif service;
//! - [`path`], [`node`], [`op`]: the vocabulary both sides speak (paths, stats, operations).

pub mod api;
pub mod client;
pub mod discovery;
pub mod error;
pub mod node;
pub mod op;
pub mod path;

pub use client::{
    ClientOptions, Consistency, CreateMode, RegistryClient, Session, SessionState, Watcher,
};
pub use error::RegistryError;
pub use node::{ChangeKind, Stat};
pub use op::{Op, OpResult, SessionCall};
