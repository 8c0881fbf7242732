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
//!
//! # Features
//!
//! All are on by default. A provider or consumer with static addresses and no configuration
//! file can build with `default-features = false` and leave out their dependencies:
//!
//! - `properties`: reading configuration files (`RpcConfig::load`, `RpcConfig::parse`,
//!   `config::Properties`; java-properties and encoding_rs), and the provider's
//!   `Ip_include_pattern`/`Ip_exclude_pattern` address filters (regex-lite), which only
//!   announcements in a registry use.
//! - `json`: the JSON body format, `Serialization::Json` (serde_json).
//! - `lz4`: LZ4 body compression, `Compression::Lz4` (lz4_flex).
//!
//! A build without `json` or `lz4` still knows them by wire id and name: a request that uses
//! one gets a `BadRequest` answer naming the missing feature, and a configuration file that
//! chooses one is an error naming it.
//!
//! Features only add: [`Serialization`] and [`Compression`] are non-exhaustive so that a `match`
//! keeps compiling when another crate turns a feature on, and a [`ProviderConfig`] built with
//! `..ProviderConfig::default()` keeps compiling when `properties` adds its two pattern fields.

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![cfg_attr(docsrs, feature(doc_cfg))]

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
mod features;
pub mod layer;
pub mod protocol;
pub mod serialize;
mod server;
mod service;
mod sync;
mod transport;

pub use client::{Client, ClientBuilder, ClusterPolicy, OutlierPolicy, ServiceClient, Stub};
pub use compress::{Compression, CompressionPolicy};
pub use config::{ConfigError, ConsumerConfig, ProviderConfig, Role, RpcConfig};
pub use context::CallContext;
pub use discovery::{Discovery, ProviderInfo, ProviderSet, StaticDiscovery};
pub use error::{Error, Result};
pub use rmif_macros::{async_trait, service};
pub use serialize::Serialization;
pub use server::{Server, ServerBuilder, ServerHandle, ShutdownReport, shutdown_signal};
pub use service::{
    BoxFuture, Dispatch, IncomingRequest, MethodDescriptor, Reply, ServiceDescriptor, ServiceKey,
    ServiceProvider, Streaming,
};
