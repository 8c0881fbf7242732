//! Service discovery on the registry: providers announce themselves as ephemeral nodes, and
//! consumers follow the provider list of each service through a watch.
//!
//! Layout: `/rmif/services/{service key}/providers/{host:port}`, whose data is the provider's
//! metadata as JSON (`{"weight":100,"version":"…"}`). A `/` in the service key (from a group) is
//! written `%2F`.
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
//! let registration = Registration::announce(
//!     RegistryClient::connect(&members),
//!     server.services(),
//!     server.local_addr(),
//!     ProviderMetadata { weight: 100, extra: Default::default() },
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

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmif_core::{Discovery, ProviderInfo, ProviderSet, RpcConfig, ServerHandle, ServiceKey};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::WatchMode;
use crate::client::{Consistency, CreateMode, RegistryClient, Session, SessionState};
use crate::error::RegistryError;
use crate::node::ChangeKind;
use crate::path;

/// Root of the discovery tree.
pub const SERVICES_ROOT: &str = "/rmif/services";

/// The node under which a service's providers announce themselves.
pub fn providers_path(service: &ServiceKey) -> String {
    format!(
        "{SERVICES_ROOT}/{}/providers",
        service.to_string().replace('/', "%2F")
    )
}

/// Metadata a provider announces with itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProviderMetadata {
    /// Relative weight for weighted balancing.
    pub weight: u32,
    /// Anything else (version, zone, build, …).
    #[serde(flatten)]
    pub extra: BTreeMap<String, String>,
}

/// Picks the address to announce for a server bound to `bound`: the bound address itself unless
/// it is unspecified (0.0.0.0), else the first local address that `include` matches and `exclude`
/// does not (loopback last), as `Ip_include_pattern` and `Ip_exclude_pattern` configure.
pub fn advertised_addr(
    bound: SocketAddr,
    include: Option<&regex_lite::Regex>,
    exclude: Option<&regex_lite::Regex>,
) -> Result<SocketAddr, RegistryError> {
    if !bound.ip().is_unspecified() {
        return Ok(bound);
    }
    let mut candidates: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map_err(|e| RegistryError::NoLocalAddress {
            reason: format!("cannot list the local interfaces: {e}"),
        })?
        .into_iter()
        .map(|interface| interface.ip())
        .filter(|ip| ip.is_ipv4() == bound.is_ipv4())
        .filter(|ip| {
            let text = ip.to_string();
            include.is_none_or(|re| re.is_match(&text))
                && !exclude.is_some_and(|re| re.is_match(&text))
        })
        .collect();
    candidates.sort_by_key(|ip| ip.is_loopback());
    candidates
        .first()
        .map(|ip| SocketAddr::new(*ip, bound.port()))
        .ok_or_else(|| RegistryError::NoLocalAddress {
            reason: "no local address matches Ip_include_pattern / Ip_exclude_pattern".to_owned(),
        })
}

/// A provider's presence in the registry: one ephemeral node per service, kept while the
/// registration lives and re-created under a new session if the registry ever expires the old
/// one. Dropping it stops the upkeep; [`Registration::withdraw`] removes the nodes at once.
pub struct Registration {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    announced: watch::Receiver<bool>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("announced", &self.is_announced())
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// Announces `addr` as a provider of every service in `services`, and returns once the
    /// nodes exist.
    pub async fn announce(
        client: RegistryClient,
        services: Vec<ServiceKey>,
        addr: SocketAddr,
        metadata: ProviderMetadata,
        session_timeout: Duration,
    ) -> Result<Registration, RegistryError> {
        // A number and a map of strings: JSON always encodes them.
        let data = serde_json::to_vec(&metadata).expect("provider metadata encodes as JSON");
        let session = client.open_session(session_timeout).await?;
        create_nodes(&session, &services, addr, &data).await?;
        let stop = CancellationToken::new();
        let (announced_tx, announced) = watch::channel(true);
        let task = tokio::spawn(upkeep(
            client,
            session,
            services,
            addr,
            data,
            session_timeout,
            announced_tx,
            stop.clone(),
        ));
        Ok(Registration {
            stop,
            task: Some(task),
            announced,
        })
    }

    /// True while the provider's nodes are known to exist.
    pub fn is_announced(&self) -> bool {
        *self.announced.borrow()
    }

    /// Removes the provider's nodes (consumers stop sending it new calls), then returns. Call it
    /// before shutting the server down.
    pub async fn withdraw(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn create_nodes(
    session: &Session,
    services: &[ServiceKey],
    addr: SocketAddr,
    data: &[u8],
) -> Result<(), RegistryError> {
    for service in services {
        let parent = providers_path(service);
        ensure_path(session.client(), &parent).await?;
        let node = path::join(&parent, &addr.to_string());
        let ephemeral = CreateMode {
            ephemeral: true,
            sequential: false,
        };
        match session.create(&node, data, ephemeral).await {
            Ok(_) => {}
            // Left by this provider's previous session, not yet expired: replace it.
            Err(RegistryError::NodeExists { .. }) => {
                let _ = session.delete(&node, None).await;
                session.create(&node, data, ephemeral).await?;
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Creates `path` and its missing ancestors as persistent nodes.
async fn ensure_path(client: &RegistryClient, target: &str) -> Result<(), RegistryError> {
    let mut current = String::new();
    for name in target.split('/').filter(|n| !n.is_empty()) {
        current.push('/');
        current.push_str(name);
        match client.create(&current, b"", CreateMode::PERSISTENT).await {
            Ok(_) | Err(RegistryError::NodeExists { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn upkeep(
    client: RegistryClient,
    mut session: Session,
    services: Vec<ServiceKey>,
    addr: SocketAddr,
    data: Vec<u8>,
    session_timeout: Duration,
    announced: watch::Sender<bool>,
    stop: CancellationToken,
) {
    loop {
        let mut states = session.states();
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = session.close().await;
                announced.send_replace(false);
                return;
            }
            _ = async { states.wait_for(|s| *s == SessionState::Expired).await.map(|_| ()) } => {}
        }
        announced.send_replace(false);
        tracing::warn!(%addr, "registry expired this provider's session; announcing again");
        // Expired sessions are never revived: open a new one and create the nodes again.
        loop {
            let renewed = async {
                let fresh = client.open_session(session_timeout).await?;
                create_nodes(&fresh, &services, addr, &data).await?;
                Ok::<_, RegistryError>(fresh)
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                renewed = renewed => match renewed {
                    Ok(fresh) => {
                        session = fresh;
                        announced.send_replace(true);
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%addr, %error, "cannot announce the provider yet");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
    }
}

/// [`Discovery`] on the registry: one watch per followed service.
#[derive(Clone)]
pub struct RegistryDiscovery {
    client: RegistryClient,
    followed: Arc<Mutex<HashMap<ServiceKey, watch::Receiver<ProviderSet>>>>,
}

impl std::fmt::Debug for RegistryDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let followed: Vec<String> = self
            .followed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .map(ServiceKey::to_string)
            .collect();
        f.debug_struct("RegistryDiscovery")
            .field("client", &self.client)
            .field("followed", &followed)
            .finish()
    }
}

impl RegistryDiscovery {
    /// Discovery through `client`.
    pub fn new(client: RegistryClient) -> Self {
        RegistryDiscovery {
            client,
            followed: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl Discovery for RegistryDiscovery {
    fn subscribe(&self, service: &ServiceKey) -> watch::Receiver<ProviderSet> {
        let mut followed = self.followed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = followed.get(service) {
            return existing.clone();
        }
        let (tx, rx) = watch::channel(ProviderSet::default());
        tokio::spawn(follow_providers(
            self.client.clone(),
            providers_path(service),
            tx,
        ));
        followed.insert(service.clone(), rx.clone());
        rx
    }
}

fn provider_info(name: &str, data: &[u8]) -> Option<ProviderInfo> {
    let addr: SocketAddr = name.parse().ok()?;
    let metadata: ProviderMetadata = serde_json::from_slice(data).unwrap_or(ProviderMetadata {
        weight: 100,
        extra: BTreeMap::new(),
    });
    Some(ProviderInfo {
        addr,
        weight: metadata.weight.max(1),
        metadata: metadata.extra,
    })
}

/// Reads the provider list (a confirmed state at a zxid), then applies the watch's changes;
/// reads again on a resync. Between failures the last list stays published: a registry blip
/// never empties a consumer's list.
async fn follow_providers(client: RegistryClient, parent: String, out: watch::Sender<ProviderSet>) {
    loop {
        if out.is_closed() {
            return;
        }
        let mut watcher = match client.watch(&parent, WatchMode::Recursive).await {
            Ok(watcher) => watcher,
            Err(error) => {
                tracing::debug!(%parent, %error, "cannot watch providers yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // The watch is armed; a read now sees every provider the watch does not report.
        let mut providers = match read_providers(&client, &parent).await {
            Ok((list, zxid)) => {
                publish(&out, &list, zxid);
                list
            }
            Err(error) => {
                tracing::debug!(%parent, %error, "cannot read providers yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        while let Some(message) = watcher.next().await {
            let Ok(message) = message else { break };
            if let Some(nodes) = &message.resync {
                providers = nodes
                    .iter()
                    .filter(|n| path::parent(&n.path) == parent)
                    .filter_map(|n| {
                        provider_info(path::name(&n.path), &n.data).map(|p| (n.path.clone(), p))
                    })
                    .collect();
            }
            for event in &message.events {
                if path::parent(&event.path) != parent {
                    continue;
                }
                match event.kind {
                    ChangeKind::Deleted => {
                        providers.remove(&event.path);
                    }
                    ChangeKind::Created | ChangeKind::DataChanged => {
                        if let Ok(node) = client.get(&event.path, Consistency::Stale).await {
                            if let Some(info) = provider_info(path::name(&event.path), &node.data) {
                                providers.insert(event.path.clone(), info);
                            }
                        }
                    }
                    ChangeKind::ChildrenChanged => {}
                }
            }
            if !message.is_armed() {
                publish(&out, &providers, message.zxid);
            }
        }
    }
}

async fn read_providers(
    client: &RegistryClient,
    parent: &str,
) -> Result<(BTreeMap<String, ProviderInfo>, u64), RegistryError> {
    let list = match client.children(parent, Consistency::Linearizable).await {
        Ok(list) => list,
        // No provider ever registered: a confirmed empty list.
        Err(RegistryError::NoNode { .. }) => {
            let synced = client.sync().await?;
            return Ok((BTreeMap::new(), synced.zxid));
        }
        Err(error) => return Err(error),
    };
    let mut providers = BTreeMap::new();
    for name in &list.children {
        let full = path::join(parent, name);
        if let Ok(node) = client.get(&full, Consistency::Stale).await {
            if let Some(info) = provider_info(name, &node.data) {
                providers.insert(full, info);
            }
        }
    }
    Ok((providers, list.zxid))
}

fn publish(
    out: &watch::Sender<ProviderSet>,
    providers: &BTreeMap<String, ProviderInfo>,
    zxid: u64,
) {
    let list: Vec<ProviderInfo> = providers.values().cloned().collect();
    out.send_if_modified(|current| {
        let changed = !current.resolved || current.providers.as_ref() != list.as_slice();
        if changed {
            *current = ProviderSet::resolved(zxid.max(current.revision + 1), list.clone());
        }
        changed
    });
}

/// A consumer [`rmif_core::Client`] for `config`: providers come from the registry named by
/// `Config_center_url` when there is one, else from the static `Provider_addresses`.
pub fn consumer_client(config: &RpcConfig) -> Result<rmif_core::Client, RegistryError> {
    if config.registry.is_empty() {
        return Ok(rmif_core::Client::with_static_providers(
            config.consumer.clone(),
        ));
    }
    let registry = RegistryClient::connect(&registry_addrs(config)?);
    Ok(rmif_core::Client::new(
        config.consumer.clone(),
        RegistryDiscovery::new(registry),
    ))
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
    let metadata = ProviderMetadata {
        weight: provider.weight,
        extra: BTreeMap::new(),
    };
    let session_timeout = provider.tick * provider.again;
    let client = RegistryClient::connect(&registry_addrs(config)?);
    Registration::announce(client, server.services(), addr, metadata, session_timeout)
        .await
        .map(Some)
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
