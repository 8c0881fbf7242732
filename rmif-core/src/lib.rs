//! rmif-core: the RPC half of rmif.
//!
//! Annotate a trait with [`service`], implement it on the provider and serve it with
//! [`Server`]; on the consumer, get the generated stub from a [`Client`] and call it through the
//! same trait. Calls travel as frames (see [`protocol`] and docs/PROTOCOL.md) over one long-lived,
//! multiplexed TCP connection per provider.
//!
//! ```
//! use rmif_core::{Client, ConsumerConfig, ProviderConfig, Server};
//!
//! #[derive(Debug, serde::Serialize, serde::Deserialize, thiserror::Error)]
//! pub enum CalcError {
//!     #[error("division by zero")]
//!     DivisionByZero,
//!     #[error(transparent)]
//!     Rpc(#[from] rmif_core::Error),
//! }
//!
//! #[rmif_core::service]
//! pub trait Calculator {
//!     async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
//! }
//!
//! struct Local;
//!
//! impl Calculator for Local {
//!     async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
//!         a.checked_div(b).ok_or(CalcError::DivisionByZero)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder(ProviderConfig::loopback())
//!     .add_service(CalculatorProvider::new(Local))
//!     .serve()
//!     .await?;
//!
//! let config = ConsumerConfig {
//!     static_providers: vec![server.local_addr()],
//!     ..ConsumerConfig::default()
//! };
//! let calculator: CalculatorConsumer = Client::with_static_providers(config).stub();
//! assert_eq!(calculator.div(7, 2).await?, 3);
//! assert!(matches!(calculator.div(1, 0).await, Err(CalcError::DivisionByZero)));
//! server.shutdown().await;
//! # Ok(()) }
//! ```

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

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
pub mod layer;
pub mod protocol;
pub mod serialize;
mod server;
mod service;
mod sync;
mod transport;

pub use client::{Client, ClientBuilder, ServiceClient, Stub};
pub use compress::{Compression, CompressionPolicy};
pub use config::{ConfigError, ConsumerConfig, ProviderConfig, Role, RpcConfig};
pub use context::CallContext;
pub use discovery::{Discovery, ProviderInfo, ProviderSet, StaticDiscovery};
pub use error::{Error, Result};
pub use rmif_macros::{async_trait, service};
pub use serialize::Serialization;
pub use server::{Server, ServerBuilder, ServerHandle, ShutdownReport};
pub use service::{
    BoxFuture, Dispatch, IncomingRequest, MethodDescriptor, Reply, ServiceDescriptor, ServiceKey,
    ServiceProvider, Streaming,
};
