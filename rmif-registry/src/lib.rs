//! rmif-registry: the client of rmif's Raft-replicated registry, and service discovery on it.
//!
//! This is what an application depends on to announce providers or follow provider lists. It
//! builds on rmif-core alone; the registry member (Raft, storage) is the `rmif-registry-server`
//! package and the command line is `rmif-cli`.
//!
//! - [`App`]: a service process's lifecycle from one properties file: provide, call, run until
//!   asked to stop, then withdraw, drain and stop;
//! - [`RegistryClient`]: reads, writes and watches with failover between members (until a
//!   deadline, or one pass with [`FailoverPolicy::OnePass`]); [`WatchEvents`], a watch as plain
//!   node events;
//! - [`Session`]: ephemeral nodes and deduplicated retries, kept alive in the background;
//! - [`discovery`]: providers announcing themselves, consumers following provider lists;
//! - [`recipes`]: leader election and fair locks with fencing tokens;
//! - [`api`]: the registry's client API, an rmif service;
//! - [`path`], [`node`], [`op`]: the vocabulary both sides speak (paths, stats, operations).
//!
//! ```
//! use rmif_registry::{Consistency, CreateMode, RegistryClient};
//! # use rmif_registry_server::{RegistryConfig, RegistryServer};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let data = tempfile::tempdir()?;
//! # let member = RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
//! # let members = [member.client_addr()];
//! // The client addresses of the registry's members (here, one member started above).
//! let client = RegistryClient::connect(&members);
//! let created = client.create("/app", b"v1", CreateMode::PERSISTENT).await?;
//! let read = client.get("/app", Consistency::Linearizable).await?;
//! assert_eq!(read.data, b"v1");
//! assert!(read.zxid >= created.zxid, "a read never goes back before a write it saw");
//! # member.shutdown().await;
//! # Ok(()) }
//! ```

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod api;
pub mod app;
pub mod client;
pub mod discovery;
pub mod error;
pub mod node;
pub mod op;
pub mod path;
pub mod recipes;

pub use app::{App, AppError, RunningApp};
pub use client::{
    ClientOptions, Consistency, CreateMode, FailoverPolicy, NodeEvent, OnRetry, RegistryClient,
    RetryNotice, Session, SessionState, WatchEvents, WatchOptions, Watcher,
};
pub use error::{ErrorKind, Outcome, RegistryError};
pub use node::{ChangeKind, Stat};
pub use op::{Op, OpResult, SessionCall};
