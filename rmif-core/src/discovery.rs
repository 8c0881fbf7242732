//! How a consumer learns which providers serve a service: the [`Discovery`] trait, and the
//! static implementation used when no registry is configured.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::service::ServiceKey;

/// One provider of a service, as discovery reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// Where its RPC port listens.
    pub addr: SocketAddr,
    /// Relative weight for weighted policies (1 or more).
    pub weight: u32,
    /// Whatever else it announced (version, methods, serialization, zone, …). Shared: a
    /// discovery publishes a new list on every change of any provider, and each copy of the
    /// list (every consumer's, every route's) then shares the labels instead of copying them.
    pub metadata: Arc<BTreeMap<String, String>>,
}

impl ProviderInfo {
    /// A provider with default weight (100) and no metadata.
    pub fn new(addr: SocketAddr) -> Self {
        ProviderInfo {
            addr,
            weight: 100,
            metadata: Arc::default(),
        }
    }
}

/// The providers of one service at one point in time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderSet {
    /// False until discovery has an answer; calls wait (within their deadline) for one.
    pub resolved: bool,
    /// Increases with every change (a registry uses its zxid).
    pub revision: u64,
    /// The providers.
    pub providers: Arc<[ProviderInfo]>,
}

impl ProviderSet {
    /// A resolved set.
    pub fn resolved(revision: u64, providers: impl Into<Arc<[ProviderInfo]>>) -> Self {
        ProviderSet {
            resolved: true,
            revision,
            providers: providers.into(),
        }
    }
}

/// A source of provider lists. The registry client implements it; [`StaticDiscovery`] serves a
/// fixed list.
///
/// Implementations must keep a consumer's list stable across their own hiccups: a receiver keeps
/// the last good set until a newer one is certain (an empty list the source cannot confirm is
/// not published).
pub trait Discovery: Send + Sync + 'static {
    /// Follows the providers of `service`. The receiver's current value may be unresolved; it
    /// changes whenever the set does.
    fn subscribe(&self, service: &ServiceKey) -> watch::Receiver<ProviderSet>;
}

/// The same fixed providers for every service (`Provider_addresses` in configuration).
#[derive(Debug)]
pub struct StaticDiscovery {
    providers: watch::Sender<ProviderSet>,
}

impl StaticDiscovery {
    /// Serves `addrs` for every service.
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        let providers: Vec<ProviderInfo> = addrs.into_iter().map(ProviderInfo::new).collect();
        StaticDiscovery {
            providers: watch::Sender::new(ProviderSet::resolved(1, providers)),
        }
    }

    /// Replaces the list (every subscriber sees the change).
    pub fn set(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        let providers: Vec<ProviderInfo> = addrs.into_iter().map(ProviderInfo::new).collect();
        self.providers.send_modify(|set| {
            *set = ProviderSet::resolved(set.revision + 1, providers);
        });
    }
}

impl Discovery for StaticDiscovery {
    fn subscribe(&self, _service: &ServiceKey) -> watch::Receiver<ProviderSet> {
        self.providers.subscribe()
    }
}

impl<D: Discovery> Discovery for Arc<D> {
    fn subscribe(&self, service: &ServiceKey) -> watch::Receiver<ProviderSet> {
        (**self).subscribe(service)
    }
}
