//! Service discovery on the registry: providers announce themselves as ephemeral nodes,
//! consumers register themselves the same way and follow the provider list of each service they
//! call through one watch (the list, then only its changes).
//!
//! Layout: `/rmif/services/{service key}/providers/{host:port}`, whose data is the provider's
//! [`ProviderMetadata`] as JSON, and `/rmif/services/{service key}/consumers/consumer-NNNNNNNNNN`,
//! whose data is a consumer's [`ConsumerMetadata`]. A `/` in the service key (from a group) is
//! written `%2F`.
//!
//! The registry's leader probes every announced address (`Tick_time`, `Again_time` of the
//! registry's configuration) and marks a provider that stopped answering by setting
//! [`ProviderMetadata::unavailable`] in its node; consumers leave such a provider out until the
//! mark is cleared. With `Monitor_log`, it also keeps the [`alerts()`] of those changes.
//!
//! A provider announces what it serves; a consumer's stub finds it through the registry:
//!
//! ```
//! use std::time::Duration;
//!
//! use rmif_core::{Client, ConsumerConfig, ProviderConfig, Server};
//! use rmif_registry::RegistryClient;
//! use rmif_registry::discovery::{ProviderMetadata, Registration, RegistryDiscovery};
//!
//! #[rmif_core::service(name = "demo.Echo")]
//! pub trait Echo {
//!     async fn echo(&self, text: String) -> Result<String, rmif_core::Error>;
//! }
//!
//! struct Parrot;
//!
//! impl Echo for Parrot {
//!     async fn echo(&self, text: String) -> Result<String, rmif_core::Error> {
//!         Ok(text)
//!     }
//! }
//! # use rmif_registry_server::{RegistryConfig, RegistryServer};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let data = tempfile::tempdir()?;
//! # let member = RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
//! # let members = [member.client_addr()];
//! let server = Server::builder(ProviderConfig::loopback())
//!     .add_service(EchoProvider::new(Parrot))
//!     .serve()
//!     .await?;
//! let services = server
//!     .services()
//!     .into_iter()
//!     .map(|key| (key, ProviderMetadata::default()))
//!     .collect();
//! let registration = Registration::announce(
//!     RegistryClient::connect(&members),
//!     services,
//!     server.local_addr(),
//!     Duration::from_secs(3),
//! )
//! .await?;
//!
//! let discovery = RegistryDiscovery::new(RegistryClient::connect(&members));
//! let echo: EchoConsumer = Client::new(ConsumerConfig::default(), discovery).stub();
//! assert_eq!(echo.echo("found you".into()).await?, "found you");
//!
//! registration.withdraw().await;
//! server.shutdown().await;
//! # member.shutdown().await;
//! # Ok(()) }
//! ```

mod address;
mod alerts;
mod cache;
mod config;
mod follow;
mod metadata;
mod presence;
mod registration;

use rmif_core::ServiceKey;

pub use address::advertised_addr;
pub use alerts::{ALERTS_KEPT, ALERTS_PATH, Alert, AlertKind, alerts};
pub use config::{
    CACHE_AFTER, announce, cache_path, consumer_client, consumer_discovery, provider_metadata,
};
pub use follow::RegistryDiscovery;
pub use metadata::{ConsumerMetadata, ProviderMetadata, Unavailable};
pub use registration::Registration;

/// Root of the discovery tree.
pub const SERVICES_ROOT: &str = "/rmif/services";

/// The name of a service's node under [`SERVICES_ROOT`]: its key, with `/` written `%2F`.
pub fn service_node_name(service: &ServiceKey) -> String {
    service.to_string().replace('/', "%2F")
}

/// The service key text a node name under [`SERVICES_ROOT`] stands for.
pub fn service_key_from_node_name(name: &str) -> String {
    name.replace("%2F", "/")
}

/// The node under which a service's providers announce themselves.
pub fn providers_path(service: &ServiceKey) -> String {
    format!("{SERVICES_ROOT}/{}/providers", service_node_name(service))
}

/// The node under which a service's consumers register themselves.
pub fn consumers_path(service: &ServiceKey) -> String {
    format!("{SERVICES_ROOT}/{}/consumers", service_node_name(service))
}
