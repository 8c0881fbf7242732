//! A provider's announcement: one ephemeral node per service it serves, whose data is the
//! provider's metadata for that service, held for as long as the provider runs.

use std::net::SocketAddr;
use std::time::Duration;

use rmif_core::ServiceKey;

use super::metadata::ProviderMetadata;
use super::presence::{Held, Presence};
use super::providers_path;
use crate::client::RegistryClient;
use crate::error::RegistryError;
use crate::path;

/// A provider's presence in the registry: one ephemeral node per service, kept while the
/// registration lives and created again under a new session if the registry ever expires the
/// old one. Dropping it stops the upkeep (the nodes then go when the session expires);
/// [`Registration::withdraw`] removes them at once.
#[derive(Debug)]
pub struct Registration {
    presence: Presence,
}

impl Registration {
    /// Announces `addr` as a provider of each of `services`, with its metadata for that service,
    /// and returns once the nodes exist.
    pub async fn announce(
        client: RegistryClient,
        services: Vec<(ServiceKey, ProviderMetadata)>,
        addr: SocketAddr,
        session_timeout: Duration,
    ) -> Result<Registration, RegistryError> {
        let nodes = services
            .iter()
            .map(|(service, metadata)| Held {
                path: path::join(&providers_path(service), &addr.to_string()),
                data: metadata.to_json(),
                sequential: false,
            })
            .collect();
        let presence = Presence::hold(client, nodes, session_timeout).await?;
        Ok(Registration { presence })
    }

    /// True while the provider's nodes are known to exist.
    pub fn is_announced(&self) -> bool {
        self.presence.is_held()
    }

    /// Resolves once the provider's nodes exist again (after the registry expired its session).
    pub async fn announced(&self) {
        self.presence.wait_held().await
    }

    /// Removes the provider's nodes (consumers stop sending it new calls), then returns. Call it
    /// before shutting the server down.
    pub async fn withdraw(self) {
        self.presence.withdraw().await
    }
}
