//! Discovery as a properties file configures it: what a provider announces, and a consumer's
//! client following the registry named by `Config_center_url` (with its cache file and its own
//! registration), or the static `Provider_addresses` without one.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rmif_core::{Client, RpcConfig, ServerHandle, ServiceKey};

use super::address::advertised_addr;
use super::follow::RegistryDiscovery;
use super::metadata::{
    ConsumerMetadata, ProviderMetadata, RMIF_VERSION, now_ms, supported_formats,
};
use super::registration::Registration;
use crate::client::RegistryClient;
use crate::error::RegistryError;

/// How long a consumer waits for the registry at start before it calls the providers of its
/// cache file.
pub const CACHE_AFTER: Duration = Duration::from_secs(3);

/// The metadata a provider configured by `config` announces for each service `server` serves.
pub fn provider_metadata(
    server: &ServerHandle,
    config: &RpcConfig,
) -> Vec<(ServiceKey, ProviderMetadata)> {
    let (serializations, compressions) = supported_formats();
    let started = now_ms();
    server
        .served()
        .into_iter()
        .map(|(key, descriptor)| {
            let metadata = ProviderMetadata {
                weight: config.provider.weight,
                version: key.version().to_owned(),
                group: key.group().to_owned(),
                application: config.application.clone(),
                methods: descriptor
                    .methods
                    .iter()
                    .map(|m| m.name.to_owned())
                    .collect(),
                serializations: serializations.clone(),
                compressions: compressions.clone(),
                rmif_version: RMIF_VERSION.to_owned(),
                start_time_ms: started,
                unavailable: None,
                extra: config
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect(),
            };
            (key, metadata)
        })
        .collect()
}

/// Announces every service `server` serves in the registry named by `config`'s
/// `Config_center_url`; `None` when no registry is configured. The provider's session times
/// out after `Tick_time` × `Again_time` without heartbeats, as the configuration describes.
pub async fn announce(
    server: &ServerHandle,
    config: &RpcConfig,
) -> Result<Option<Registration>, RegistryError> {
    if config.registry.is_empty() {
        return Ok(None);
    }
    let provider = &config.provider;
    let addr = advertised_addr(
        server.local_addr(),
        provider.ip_include.as_ref(),
        provider.ip_exclude.as_ref(),
    )?;
    let session_timeout = provider.tick * provider.again;
    let client = RegistryClient::connect(&registry_addrs(config)?);
    Registration::announce(
        client,
        provider_metadata(server, config),
        addr,
        session_timeout,
    )
    .await
    .map(Some)
}

/// The discovery of a consumer configured by `config`: following the registry with the cache
/// file (`Discovery_cache_file`, or a default one for this application and registry) and
/// registering the consumer; `None` without a registry.
pub fn consumer_discovery(config: &RpcConfig) -> Result<Option<RegistryDiscovery>, RegistryError> {
    if config.registry.is_empty() {
        return Ok(None);
    }
    let registry = RegistryClient::connect(&registry_addrs(config)?);
    let mut discovery = RegistryDiscovery::new(registry).for_consumer(&config.consumer);
    if let Some(path) = cache_path(config) {
        discovery = discovery.with_cache(path, CACHE_AFTER);
    }
    let provider = &config.provider;
    // Consumers do not listen: the address says which host calls (the provider's patterns
    // choose the interface).
    let host = advertised_addr(
        SocketAddr::from(([0, 0, 0, 0], 0)),
        provider.ip_include.as_ref(),
        provider.ip_exclude.as_ref(),
    )
    .map(|addr| addr.ip().to_string())
    .unwrap_or_default();
    let metadata = ConsumerMetadata {
        address: host,
        pid: std::process::id(),
        application: config.application.clone(),
        policy: policy_name(config),
        serialization: config.consumer.serialization.name().to_owned(),
        rmif_version: RMIF_VERSION.to_owned(),
        start_time_ms: now_ms(),
        extra: config
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    };
    let session_timeout = config.consumer.tick * config.consumer.again;
    Ok(Some(discovery.registering(metadata, session_timeout)))
}

/// A consumer [`rmif_core::Client`] for `config`: providers come from the registry named by
/// `Config_center_url` when there is one (see [`consumer_discovery`]), else from the static
/// `Provider_addresses`.
pub fn consumer_client(config: &RpcConfig) -> Result<Client, RegistryError> {
    Ok(match consumer_discovery(config)? {
        Some(discovery) => Client::new(config.consumer.clone(), discovery),
        None => Client::with_static_providers(config.consumer.clone()),
    })
}

/// Where a consumer configured by `config` keeps its cache: `Discovery_cache_file`, or a file
/// in the temporary directory named by the application and the registry; `None` if disabled.
pub fn cache_path(config: &RpcConfig) -> Option<PathBuf> {
    match &config.consumer.cache_file {
        Some(path) if path.as_os_str().is_empty() => None,
        Some(path) => Some(path.clone()),
        None => {
            let mut members = config.registry.clone();
            members.sort();
            let mut hasher =
                std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().build_hasher();
            hasher.write(members.join(",").as_bytes());
            let application = if config.application.is_empty() {
                "consumer"
            } else {
                config.application.as_str()
            };
            let name: String = application
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            Some(std::env::temp_dir().join(format!(
                "rmif-discovery-{name}-{:016x}.cache",
                hasher.finish()
            )))
        }
    }
}

fn policy_name(config: &RpcConfig) -> String {
    rmif_core::balance::BalancePolicy::NAMES
        .iter()
        .find(|name| {
            rmif_core::balance::BalancePolicy::from_name(name) == Some(config.consumer.policy)
        })
        .map_or_else(String::new, |name| (*name).to_owned())
}

fn registry_addrs(config: &RpcConfig) -> Result<Vec<SocketAddr>, RegistryError> {
    config
        .registry
        .iter()
        .map(|addr| {
            rmif_core::config::resolve_addr(addr).map_err(|reason| RegistryError::InvalidAddress {
                addr: addr.clone(),
                reason,
            })
        })
        .collect()
}
