//! rmif-registry-server: one member of rmif's registry cluster.
//!
//! A member keeps a ZooKeeper-like tree of nodes and sessions, replicated by raft-rs over a
//! durable log of its own, and serves the client API of the `rmif-registry` crate with
//! rmif-core. Run it as the `rmif-registry` program, or embed one with [`RegistryServer`]:
//!
//! ```
//! use rmif_registry::{Consistency, CreateMode, RegistryClient};
//! use rmif_registry_server::{RegistryConfig, RegistryServer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = tempfile::tempdir()?;
//! let member =
//!     RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
//! let client = RegistryClient::connect(&[member.client_addr()]);
//! client.create("/app", b"hello", CreateMode::PERSISTENT).await?;
//! assert_eq!(client.get("/app", Consistency::Linearizable).await?.data, b"hello");
//! member.shutdown().await;
//! # Ok(()) }
//! ```

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod config;
mod error;
mod huge_pages;
mod member;
mod network;
mod probe;
mod replica;
mod service;
mod storage;
mod tree;
mod watch;

pub use config::{LogEngine, LogFormat, REGISTRY_KEYS, RegistryConfig, parse_peers};
pub use error::ServerError;
pub use huge_pages::disable_transparent_huge_pages;
pub use member::RegistryServer;
