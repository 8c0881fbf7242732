//! rmif-core: the RPC half of rmif.
//!
//! Annotate a trait with [`service`], implement it on the provider and serve it with
//! [`Server`]; on the consumer, get the generated stub from a [`Client`] and call it through the
//! same trait. Calls travel as frames (see [`protocol`] and docs/PROTOCOL.md) over one long-lived,
//! multiplexed TCP connection per provider.
//!
//! ```ignore
//! #[rmif_core::service]
//! pub trait Calculator {
//!     async fn add(&self, a: u64, b: u64) -> Result<u64, CalcError>;
//! }
//! ```

#![warn(missing_docs)]

#[doc(hidden)]
#[path = "generated.rs"]
pub mod __private;
pub mod balance;
mod client;
pub mod compress;
pub mod config;
mod context;
pub mod discovery;
mod error;
pub mod protocol;
pub mod serialize;
mod server;
mod service;
mod sync;
mod transport;

pub use async_trait::async_trait;
pub use client::{Client, ServiceClient, Stub};
pub use compress::{Compression, CompressionPolicy};
pub use config::{ConfigError, ConsumerConfig, ProviderConfig, Role, RpcConfig};
pub use context::CallContext;
pub use discovery::{Discovery, ProviderInfo, ProviderSet, StaticDiscovery};
pub use error::{Error, Result};
pub use rmif_macros::service;
pub use serialize::Serialization;
pub use server::{Server, ServerBuilder, ServerHandle, ShutdownReport};
pub use service::{
    BoxFuture, Dispatch, IncomingRequest, MethodDescriptor, Reply, ServiceDescriptor, ServiceKey,
    ServiceProvider, Streaming,
};
