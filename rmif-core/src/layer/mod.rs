//! The one extension point of rmif: layers, on either side, that see every call.
//!
//! A layer is a tower [`Layer`]. On a consumer ([`crate::ClientBuilder::layer`]) its service
//! takes a [`ConsumerCall`] (service, method, metadata it may add to, deadline) and answers a
//! [`ConsumerAnswer`] (the provider that answered, the status); on a provider
//! ([`crate::ServerBuilder::layer`]) it takes a [`ProviderCall`] (service, method, the
//! consumer's metadata and address, deadline) before the handler runs and answers a
//! [`ProviderAnswer`]. Measuring latency, logging outcomes, adding or checking a token, refusing
//! a call: each is a layer, never a change to the call path. The first layer added is the
//! outermost. Errors are [`BoxError`]s, as tower's own layers (timeouts, concurrency and rate
//! limits) produce them; a consumer's call that a layer fails ends with that error if it is an
//! [`Error`](crate::Error), else with [`Error::Rejected`](crate::Error::Rejected).
//!
//! Without layers a call takes a direct path that allocates nothing for this; with them, each
//! layer costs what its service does, plus one boxed future per call.
//!
//! What layers see of a server stream is its opening; the items flow past them.
//!
//! A provider that serves only callers presenting a token, and a consumer that presents it:
//!
//! ```
//! use std::task::{Context, Poll};
//!
//! use rmif_core::layer::{
//!     BoxError, ConsumerCall, ProviderAnswer, ProviderCall, Service, layer_fn,
//! };
//! use rmif_core::{Client, ConsumerConfig, ProviderConfig, Server};
//!
//! #[rmif_core::service]
//! pub trait Greeter {
//!     async fn hello(&self, name: String) -> Result<String, rmif_core::Error>;
//! }
//!
//! struct Polite;
//!
//! impl Greeter for Polite {
//!     async fn hello(&self, name: String) -> Result<String, rmif_core::Error> {
//!         Ok(format!("hello, {name}"))
//!     }
//! }
//!
//! /// Refuses calls without the right `token` in their metadata.
//! #[derive(Clone)]
//! struct RequireToken<S>(S);
//!
//! impl<S> Service<ProviderCall> for RequireToken<S>
//! where
//!     S: Service<ProviderCall, Response = ProviderAnswer, Error = BoxError>,
//!     S::Future: Send + 'static,
//! {
//!     type Response = ProviderAnswer;
//!     type Error = BoxError;
//!     type Future = std::pin::Pin<
//!         Box<dyn Future<Output = Result<ProviderAnswer, BoxError>> + Send>,
//!     >;
//!
//!     fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
//!         self.0.poll_ready(cx)
//!     }
//!
//!     fn call(&mut self, call: ProviderCall) -> Self::Future {
//!         if call.metadata().get("token") != Some("s3cret") {
//!             let refusal = ProviderAnswer::rejected("a valid token is required");
//!             return Box::pin(async move { Ok(refusal) });
//!         }
//!         Box::pin(self.0.call(call))
//!     }
//! }
//!
//! /// Adds the token to every call.
//! #[derive(Clone)]
//! struct SendToken<S>(S);
//!
//! impl<S: Service<ConsumerCall>> Service<ConsumerCall> for SendToken<S> {
//!     type Response = S::Response;
//!     type Error = S::Error;
//!     type Future = S::Future;
//!
//!     fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
//!         self.0.poll_ready(cx)
//!     }
//!
//!     fn call(&mut self, mut call: ConsumerCall) -> S::Future {
//!         call.metadata_mut().insert("token", "s3cret").expect("a short entry");
//!         self.0.call(call)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder(ProviderConfig::loopback())
//!     .layer(layer_fn(RequireToken))
//!     .add_service(GreeterProvider::new(Polite))
//!     .serve()
//!     .await?;
//! let config = ConsumerConfig {
//!     static_providers: vec![server.local_addr()],
//!     ..ConsumerConfig::default()
//! };
//!
//! let anonymous: GreeterConsumer = Client::with_static_providers(config.clone()).stub();
//! let refused = anonymous.hello("ann".into()).await.unwrap_err();
//! assert!(matches!(refused, rmif_core::Error::Rejected { .. }), "{refused}");
//!
//! let trusted: GreeterConsumer = Client::builder(config)
//!     .layer(layer_fn(SendToken))
//!     .build()
//!     .stub();
//! assert_eq!(trusted.hello("bob".into()).await?, "hello, bob");
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub(crate) mod boxed;
pub(crate) mod monitor;

pub use tower_layer::{Layer, layer_fn};
pub use tower_service::Service;

pub use crate::client::call::{ConsumerAnswer, ConsumerCall};
pub use crate::server::call::{ProviderAnswer, ProviderCall};
pub use boxed::{BoxError, Boxed};
pub use monitor::{MonitorLog, Monitored};
