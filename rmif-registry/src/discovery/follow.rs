//! Consumers following provider lists: [`RegistryDiscovery`], rmif-core's `Discovery` on the
//! registry. One watch per service delivers the list first, then only what changes, each change
//! with the provider's data: following a list of a thousand providers costs one message per
//! change, not a read of the list. Changes that arrive together are published together, and a
//! change is applied to the one provider it concerns: the other providers' entries are shared
//! with the list published before, not rebuilt.
//!
//! The list a consumer uses is always one the registry confirmed, or, while the registry cannot
//! be reached at start, the one the consumer's cache file held: a registry blip never empties
//! it. Provider nodes whose data is not provider metadata, that cannot read what this consumer
//! sends, or that the registry's probes mark unavailable, are left out with a log line naming
//! them (a provider whose mark is cleared comes back as any changed node does).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use rmif_core::{ConsumerConfig, Discovery, ProviderInfo, ProviderSet, ServiceKey};
use tokio::sync::watch;

use super::cache::ListCache;
use super::metadata::{ConsumerMetadata, ProviderMetadata};
use super::presence::{Held, Presence};
use super::{SERVICES_ROOT, consumers_path, providers_path};
use crate::api::{WatchMessage, WatchMode};
use crate::client::{Consistency, RegistryClient, WatchOptions};
use crate::node::ChangeKind;
use crate::path;

/// Pause before opening a watch again after it ended with an error.
const REOPEN_PAUSE: Duration = Duration::from_millis(200);

/// What a [`RegistryDiscovery`] does besides following lists.
#[derive(Debug, Clone)]
struct Settings {
    /// Providers that cannot read what this consumer sends are left out.
    consumer: ConsumerConfig,
    /// The cache file, and how long the registry may take at start before it is used.
    cache: Option<(PathBuf, Duration)>,
    /// This consumer's node under each service it follows, and its session's timeout.
    registration: Option<(ConsumerMetadata, Duration)>,
}

/// [`Discovery`] on the registry: one watch per followed service (see the module's docs).
///
/// ```no_run
/// # use std::time::Duration;
/// # use rmif_core::{Client, ConsumerConfig};
/// # use rmif_registry::RegistryClient;
/// # use rmif_registry::discovery::RegistryDiscovery;
/// let registry = RegistryClient::connect(&["10.0.0.1:7000".parse().unwrap()]);
/// let discovery = RegistryDiscovery::new(registry)
///     // Serve the lists of the last run if the registry does not answer within 3 s.
///     .with_cache("/var/cache/orders.rmif".into(), Duration::from_secs(3));
/// let client = Client::new(ConsumerConfig::default(), discovery);
/// ```
#[derive(Clone)]
pub struct RegistryDiscovery {
    client: RegistryClient,
    settings: Arc<Settings>,
    followed: Arc<Mutex<HashMap<ServiceKey, watch::Receiver<ProviderSet>>>>,
    cache: Arc<Mutex<Option<Arc<ListCache>>>>,
    presence: Arc<Mutex<Option<Presence>>>,
}

impl std::fmt::Debug for RegistryDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let followed: Vec<String> = lock(&self.followed)
            .keys()
            .map(ServiceKey::to_string)
            .collect();
        f.debug_struct("RegistryDiscovery")
            .field("client", &self.client)
            .field("followed", &followed)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl RegistryDiscovery {
    /// Discovery through `client`, for a consumer with default settings, without a cache file
    /// and without registering the consumer.
    pub fn new(client: RegistryClient) -> Self {
        RegistryDiscovery {
            client,
            settings: Arc::new(Settings {
                consumer: ConsumerConfig::default(),
                cache: None,
                registration: None,
            }),
            followed: Arc::default(),
            cache: Arc::default(),
            presence: Arc::default(),
        }
    }

    /// Leaves out providers that cannot read what a consumer configured by `consumer` sends
    /// (its serialization and compression).
    pub fn for_consumer(mut self, consumer: &ConsumerConfig) -> Self {
        Arc::make_mut(&mut self.settings).consumer = consumer.clone();
        self
    }

    /// Keeps the confirmed lists in the file at `path`, and serves them from it when the
    /// registry has not answered within `serve_after` of a service's first use.
    pub fn with_cache(mut self, path: PathBuf, serve_after: Duration) -> Self {
        Arc::make_mut(&mut self.settings).cache = Some((path, serve_after));
        self
    }

    /// Registers this consumer under each service it follows (an ephemeral node with
    /// `metadata`, held by a session of `session_timeout`), so that the registry knows who
    /// calls what.
    pub fn registering(mut self, metadata: ConsumerMetadata, session_timeout: Duration) -> Self {
        Arc::make_mut(&mut self.settings).registration = Some((metadata, session_timeout));
        self
    }

    /// Ends this consumer's registration now (its nodes go at once instead of when its session
    /// expires).
    pub async fn withdraw(&self) {
        let presence = lock(&self.presence).take();
        if let Some(presence) = presence {
            presence.withdraw().await;
        }
    }

    /// Writes the lists confirmed so far to the cache file now, instead of moments later (a
    /// process about to exit calls it; [`crate::App`] does).
    pub fn flush_cache(&self) {
        let cache = lock(&self.cache).clone();
        if let Some(cache) = cache {
            cache.flush();
        }
    }

    fn cache(&self) -> Option<(Arc<ListCache>, Duration)> {
        let (path, serve_after) = self.settings.cache.clone()?;
        let mut cache = lock(&self.cache);
        let cache = cache.get_or_insert_with(|| {
            let registry: Vec<String> = self
                .client
                .servers()
                .iter()
                .map(SocketAddr::to_string)
                .collect();
            ListCache::open(path, &registry)
        });
        Some((cache.clone(), serve_after))
    }

    fn register(&self, service: &ServiceKey) {
        let Some((metadata, session_timeout)) = &self.settings.registration else {
            return;
        };
        let node = Held {
            path: path::join(&consumers_path(service), "consumer-"),
            data: metadata.to_json(),
            sequential: true,
        };
        let mut presence = lock(&self.presence);
        match presence.as_ref() {
            Some(presence) => presence.add(node),
            None => {
                *presence = Some(Presence::hold_in_background(
                    self.client.clone(),
                    vec![node],
                    *session_timeout,
                ))
            }
        }
    }
}

impl Discovery for RegistryDiscovery {
    fn subscribe(&self, service: &ServiceKey) -> watch::Receiver<ProviderSet> {
        let mut followed = lock(&self.followed);
        if let Some(existing) = followed.get(service) {
            return existing.clone();
        }
        let (tx, rx) = watch::channel(ProviderSet::default());
        tokio::spawn(follow(
            self.client.clone(),
            self.settings.clone(),
            self.cache(),
            service.clone(),
            tx,
        ));
        followed.insert(service.clone(), rx.clone());
        drop(followed);
        self.register(service);
        rx
    }
}

/// One service's providers as the registry last said, by node path.
struct ProviderList {
    parent: String,
    consumer: ConsumerConfig,
    providers: BTreeMap<String, Listed>,
    /// Nodes left out, and why: each reason is logged once.
    left_out: HashMap<String, String>,
}

/// A provider in the list: what its node says, and what consumers see of it. The latter is
/// made once per change of the node, and its labels are shared by every list published after:
/// with a thousand consumers in one process, rebuilding, comparing and freeing every provider's
/// labels on every change of any provider was half of what following a list cost.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    addr: SocketAddr,
    metadata: ProviderMetadata,
    info: ProviderInfo,
}

impl ProviderList {
    fn new(parent: String, consumer: ConsumerConfig) -> Self {
        ProviderList {
            parent,
            consumer,
            providers: BTreeMap::new(),
            left_out: HashMap::new(),
        }
    }

    /// Takes in (or leaves out) the provider node at `node` holding `data`; returns whether the
    /// list changed.
    fn put(&mut self, node: &str, data: &[u8]) -> bool {
        let parsed = path::name(node)
            .parse::<SocketAddr>()
            .map_err(|_| "its name is not host:port".to_owned())
            .and_then(|addr| {
                let metadata = ProviderMetadata::parse(data)?;
                metadata
                    .accepts(&self.consumer)
                    .map_err(|why| format!("this consumer cannot call it: {why}"))?;
                if let Some(down) = &metadata.unavailable {
                    return Err(format!(
                        "the registry's probes mark it unavailable: {}",
                        down.reason
                    ));
                }
                Ok((addr, metadata))
            });
        match parsed {
            Ok((addr, metadata)) => {
                self.left_out.remove(node);
                let unchanged = self
                    .providers
                    .get(node)
                    .is_some_and(|listed| listed.addr == addr && listed.metadata == metadata);
                if !unchanged {
                    let info = to_info(addr, &metadata);
                    let listed = Listed {
                        addr,
                        metadata,
                        info,
                    };
                    self.providers.insert(node.to_owned(), listed);
                }
                !unchanged
            }
            Err(reason) => {
                let removed = self.providers.remove(node).is_some();
                if self.left_out.get(node) != Some(&reason) {
                    tracing::warn!(node, %reason, "provider left out of the list");
                    self.left_out.insert(node.to_owned(), reason);
                }
                removed
            }
        }
    }

    /// Removes the node at `node`; returns whether the list changed.
    fn remove(&mut self, node: &str) -> bool {
        self.left_out.remove(node);
        self.providers.remove(node).is_some()
    }

    /// Applies one watch message: a state (or resync) replaces the list, events change it.
    /// Returns whether the list changed.
    async fn apply(&mut self, message: &WatchMessage, client: &RegistryClient) -> bool {
        let mut changed = false;
        if let Some(nodes) = &message.resync {
            let before = std::mem::take(&mut self.providers);
            self.left_out.clear();
            let parent = self.parent.clone();
            for node in nodes.iter().filter(|n| path::parent(&n.path) == parent) {
                self.put(&node.path, &node.data);
            }
            changed = before != self.providers;
        }
        for event in &message.events {
            if path::parent(&event.path) != self.parent {
                continue;
            }
            changed |= match event.kind {
                ChangeKind::Deleted => self.remove(&event.path),
                ChangeKind::Created | ChangeKind::DataChanged => match &event.data {
                    Some(data) => self.put(&event.path, data),
                    // A member that predates data in events: read it.
                    None => match client.get(&event.path, Consistency::Stale).await {
                        Ok(node) => self.put(&event.path, &node.data),
                        Err(_) => self.remove(&event.path),
                    },
                },
                ChangeKind::ChildrenChanged => false,
            };
        }
        changed
    }

    fn infos(&self) -> Vec<ProviderInfo> {
        self.providers
            .values()
            .map(|listed| listed.info.clone())
            .collect()
    }

    fn by_addr(&self) -> BTreeMap<SocketAddr, ProviderMetadata> {
        self.providers
            .values()
            .map(|listed| (listed.addr, listed.metadata.clone()))
            .collect()
    }
}

fn to_info(addr: SocketAddr, metadata: &ProviderMetadata) -> ProviderInfo {
    ProviderInfo {
        addr,
        weight: metadata.weight.max(1),
        metadata: metadata.labels().into(),
    }
}

/// Publishes `providers` at `revision`: always when `changed` says they differ from the list
/// published last (a change costs no comparison of the whole list), else only if they differ
/// from what consumers hold (the first list, or the registry's replacing the cached one).
fn publish(
    out: &watch::Sender<ProviderSet>,
    providers: Vec<ProviderInfo>,
    revision: u64,
    changed: bool,
) {
    out.send_if_modified(|current| {
        let changed =
            changed || !current.resolved || current.providers.as_ref() != providers.as_slice();
        if changed {
            *current = ProviderSet::resolved(revision.max(current.revision + 1), providers);
        }
        changed
    });
}

/// Follows one service's providers until every consumer of the list is gone.
async fn follow(
    client: RegistryClient,
    settings: Arc<Settings>,
    cache: Option<(Arc<ListCache>, Duration)>,
    service: ServiceKey,
    out: watch::Sender<ProviderSet>,
) {
    let key = service.to_string();
    let parent = providers_path(&service);
    let mut list = ProviderList::new(parent.clone(), settings.consumer.clone());
    let options = WatchOptions {
        mode: WatchMode::Recursive,
        with_data: true,
        initial_state: true,
    };
    let mut serving_cache = false;
    let mut cache_tried = false;
    let mut checked_names = false;
    loop {
        if out.is_closed() {
            return;
        }
        let opening = client.watch_with(&parent, options);
        tokio::pin!(opening);
        let opened = loop {
            let cache_due = match &cache {
                Some((_, serve_after)) if !cache_tried && !out.borrow().resolved => {
                    Some(*serve_after)
                }
                _ => None,
            };
            tokio::select! {
                opened = &mut opening => break opened,
                _ = tokio::time::sleep(cache_due.unwrap_or_default()), if cache_due.is_some() => {
                    cache_tried = true;
                    serving_cache = serve_cached(&cache, &key, &list, &out);
                }
                _ = out.closed() => return,
            }
        };
        let mut watcher = match opened {
            Ok(watcher) => watcher,
            Err(error) => {
                tracing::debug!(%parent, %error, "cannot watch the providers yet");
                tokio::time::sleep(REOPEN_PAUSE).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                next = watcher.next() => next,
                _ = out.closed() => return,
            };
            let Some(Ok(message)) = next else { break };
            let mut zxid = message.zxid;
            let mut changed = list.apply(&message, &client).await;
            // What already arrived goes out with it: a burst is published once.
            while let Some(Some(Ok(more))) = watcher.next().now_or_never() {
                zxid = more.zxid;
                changed |= list.apply(&more, &client).await;
            }
            // What consumers hold is the cached list, not the last one published from `list`:
            // the registry's list is compared with it.
            let replaces_cache = std::mem::take(&mut serving_cache);
            if replaces_cache {
                tracing::info!(service = %key, providers = list.providers.len(), "the registry answered; its list replaces the cached one");
            }
            // Unchanged lists are not even built, except the first (which resolves the set).
            if changed || replaces_cache || !out.borrow().resolved {
                publish(&out, list.infos(), zxid, changed && !replaces_cache);
            }
            if let Some((cache, _)) = &cache {
                cache.store(&key, zxid, list.by_addr());
            }
            if !checked_names && list.providers.is_empty() {
                checked_names = true;
                warn_if_renamed(&client, &service).await;
            }
        }
        tokio::time::sleep(REOPEN_PAUSE).await;
    }
}

/// The registry has not answered a service's first watch in time: publishes the cached list,
/// if there is one; returns whether it did.
fn serve_cached(
    cache: &Option<(Arc<ListCache>, Duration)>,
    key: &str,
    list: &ProviderList,
    out: &watch::Sender<ProviderSet>,
) -> bool {
    let Some((cache, serve_after)) = cache else {
        return false;
    };
    let Some(cached) = cache.loaded(key) else {
        tracing::warn!(
            service = key,
            "the registry has not answered within {serve_after:?} and the discovery cache has no list for this service; waiting for the registry"
        );
        return false;
    };
    let mut from_cache = ProviderList::new(list.parent.clone(), list.consumer.clone());
    for (addr, metadata) in &cached.providers {
        from_cache.put(
            &path::join(&list.parent, &addr.to_string()),
            &metadata.to_json(),
        );
    }
    tracing::warn!(
        service = key,
        providers = from_cache.providers.len(),
        cache = %cache.path().display(),
        zxid = cached.zxid,
        "the registry has not answered within {serve_after:?}; calling the providers of the discovery cache until it does"
    );
    publish(out, from_cache.infos(), cached.zxid, false);
    true
}

/// A service nobody provides may have been renamed: a trait's default wire name is its module
/// path, so moving the trait changes it. Says so when a service of the same trait name, under
/// another path, has providers.
async fn warn_if_renamed(client: &RegistryClient, service: &ServiceKey) {
    let trait_name = |name: &str| name.rsplit("::").next().unwrap_or(name).to_owned();
    let wanted = trait_name(service.name());
    let Ok(services) = client.children(SERVICES_ROOT, Consistency::Stale).await else {
        return;
    };
    let ours = super::service_node_name(service);
    for other in services.children.iter().filter(|s| **s != ours) {
        let name = super::service_key_from_node_name(other);
        if trait_name(&name) != wanted {
            continue;
        }
        let providers = path::join(&path::join(SERVICES_ROOT, other), "providers");
        if let Ok(list) = client.children(&providers, Consistency::Stale).await
            && !list.children.is_empty()
        {
            tracing::warn!(
                service = %service,
                other = %name,
                providers = list.children.len(),
                "no provider of this service is registered, but one of the same trait name under another path has providers: a service's default wire name is its trait's module path, so moving the trait renames it; give both sides #[service(name = \"…\")]"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use rmif_core::Serialization;

    use super::*;
    use crate::api::{NodeSnapshot, WatchEvent};

    const PARENT: &str = "/rmif/services/calc/providers";

    fn node(name: &str, data: &[u8]) -> NodeSnapshot {
        NodeSnapshot {
            path: path::join(PARENT, name),
            stat: crate::Stat::default(),
            data: data.to_vec(),
        }
    }

    fn event(kind: ChangeKind, name: &str, data: Option<&[u8]>) -> WatchEvent {
        WatchEvent {
            kind,
            path: path::join(PARENT, name),
            data: data.map(<[u8]>::to_vec),
        }
    }

    fn good(weight: u32) -> Vec<u8> {
        ProviderMetadata {
            weight,
            serializations: vec!["msgpack".into()],
            ..ProviderMetadata::default()
        }
        .to_json()
    }

    fn addrs(list: &ProviderList) -> Vec<String> {
        list.infos().iter().map(|p| p.addr.to_string()).collect()
    }

    #[tokio::test]
    async fn a_bad_node_is_left_out_and_the_rest_of_the_list_keeps_working() {
        // Never used: every event below carries its data.
        let client = RegistryClient::connect(&[]);
        let mut list = ProviderList::new(PARENT.to_owned(), ConsumerConfig::default());
        let state = WatchMessage {
            zxid: 10,
            events: vec![],
            resync: Some(vec![
                NodeSnapshot {
                    path: PARENT.to_owned(),
                    stat: crate::Stat::default(),
                    data: vec![],
                },
                node("10.0.0.1:9000", &good(10)),
                node("10.0.0.2:9000", b"garbage written by hand"),
                node("not-an-address", &good(10)),
                node(
                    "10.0.0.3:9000",
                    br#"{"weight":100,"serializations":["capnp"]}"#,
                ),
            ]),
        };
        list.apply(&state, &client).await;
        assert_eq!(addrs(&list), ["10.0.0.1:9000"]);
        assert_eq!(list.left_out.len(), 3);

        // The bad node is fixed, another provider comes, the first changes weight.
        let changes = WatchMessage {
            zxid: 11,
            events: vec![
                event(ChangeKind::DataChanged, "10.0.0.2:9000", Some(&good(5))),
                event(ChangeKind::Created, "10.0.0.4:9000", Some(&good(1))),
                event(ChangeKind::DataChanged, "10.0.0.1:9000", Some(&good(99))),
                event(ChangeKind::ChildrenChanged, "", None),
            ],
            resync: None,
        };
        list.apply(&changes, &client).await;
        assert_eq!(
            addrs(&list),
            ["10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.4:9000"]
        );
        let weights: Vec<u32> = list.infos().iter().map(|p| p.weight).collect();
        assert_eq!(weights, [99, 5, 1]);

        let gone = WatchMessage {
            zxid: 12,
            events: vec![event(ChangeKind::Deleted, "10.0.0.1:9000", None)],
            resync: None,
        };
        list.apply(&gone, &client).await;
        assert_eq!(addrs(&list), ["10.0.0.2:9000", "10.0.0.4:9000"]);
    }

    #[tokio::test]
    async fn only_what_changes_the_list_counts_as_a_change() {
        let client = RegistryClient::connect(&[]);
        let mut list = ProviderList::new(PARENT.to_owned(), ConsumerConfig::default());
        let state = WatchMessage {
            zxid: 1,
            events: vec![],
            resync: Some(vec![node("10.0.0.1:9000", &good(10))]),
        };
        assert!(list.apply(&state, &client).await, "the first list");
        assert!(!list.apply(&state, &client).await, "the same list again");

        let rewritten = WatchMessage {
            zxid: 2,
            events: vec![
                event(ChangeKind::DataChanged, "10.0.0.1:9000", Some(&good(10))),
                event(ChangeKind::ChildrenChanged, "", None),
                // Neither was ever in the list.
                event(ChangeKind::Deleted, "10.0.0.9:9000", None),
                event(ChangeKind::Created, "10.0.0.2:9000", Some(b"garbage")),
            ],
            resync: None,
        };
        assert!(!list.apply(&rewritten, &client).await);

        let reweighed = WatchMessage {
            zxid: 3,
            events: vec![event(
                ChangeKind::DataChanged,
                "10.0.0.1:9000",
                Some(&good(20)),
            )],
            resync: None,
        };
        assert!(list.apply(&reweighed, &client).await);
        assert_eq!(list.infos()[0].weight, 20);

        let broken = WatchMessage {
            zxid: 4,
            events: vec![event(
                ChangeKind::DataChanged,
                "10.0.0.1:9000",
                Some(b"garbage"),
            )],
            resync: None,
        };
        assert!(list.apply(&broken, &client).await, "left out now");
        assert!(list.infos().is_empty());
    }

    #[test]
    fn a_list_goes_out_when_it_changed_or_differs_from_what_consumers_hold() {
        let (out, mut consumer) = watch::channel(ProviderSet::default());
        let one = vec![ProviderInfo::new("10.0.0.1:9000".parse().unwrap())];
        publish(&out, one.clone(), 3, false);
        assert!(
            consumer.has_changed().unwrap(),
            "the first list resolves the set"
        );
        assert_eq!(consumer.borrow_and_update().revision, 3);
        publish(&out, one.clone(), 4, false);
        assert!(
            !consumer.has_changed().unwrap(),
            "the same list does not wake anyone"
        );
        publish(&out, one, 5, true);
        assert!(
            consumer.has_changed().unwrap(),
            "a change is taken at its word"
        );
        assert_eq!(consumer.borrow().revision, 5);
    }

    #[tokio::test]
    async fn a_provider_marked_unavailable_is_not_routable_until_the_mark_is_cleared() {
        let client = RegistryClient::connect(&[]);
        let mut list = ProviderList::new(PARENT.to_owned(), ConsumerConfig::default());
        let marked = |weight| {
            let mut metadata = ProviderMetadata::parse(&good(weight)).unwrap();
            metadata.unavailable = Some(crate::discovery::Unavailable {
                reason: "no answer within 200 ms".into(),
                since_ms: 1,
            });
            metadata.to_json()
        };
        let state = WatchMessage {
            zxid: 1,
            events: vec![],
            resync: Some(vec![
                node("10.0.0.1:9000", &good(10)),
                node("10.0.0.2:9000", &marked(10)),
            ]),
        };
        list.apply(&state, &client).await;
        assert_eq!(addrs(&list), ["10.0.0.1:9000"]);
        assert!(list.left_out["/rmif/services/calc/providers/10.0.0.2:9000"].contains("200 ms"));

        let cleared = WatchMessage {
            zxid: 2,
            events: vec![event(
                ChangeKind::DataChanged,
                "10.0.0.2:9000",
                Some(&good(10)),
            )],
            resync: None,
        };
        assert!(list.apply(&cleared, &client).await);
        assert_eq!(addrs(&list), ["10.0.0.1:9000", "10.0.0.2:9000"]);

        let down = WatchMessage {
            zxid: 3,
            events: vec![event(
                ChangeKind::DataChanged,
                "10.0.0.1:9000",
                Some(&marked(10)),
            )],
            resync: None,
        };
        assert!(list.apply(&down, &client).await, "marking it is a change");
        assert_eq!(addrs(&list), ["10.0.0.2:9000"]);
        assert!(list.by_addr().len() == 1, "nor is it cached");
    }

    #[tokio::test]
    async fn providers_that_cannot_read_the_consumers_format_are_avoided() {
        let client = RegistryClient::connect(&[]);
        let json_consumer = ConsumerConfig {
            serialization: Serialization::Json,
            ..ConsumerConfig::default()
        };
        let mut list = ProviderList::new(PARENT.to_owned(), json_consumer);
        let state = WatchMessage {
            zxid: 3,
            events: vec![],
            resync: Some(vec![
                node("10.0.0.1:9000", &good(1)),
                node("10.0.0.2:9000", br#"{"serializations":["msgpack","json"]}"#),
                node("10.0.0.3:9000", br#"{"weight":3}"#),
            ]),
        };
        list.apply(&state, &client).await;
        assert_eq!(addrs(&list), ["10.0.0.2:9000", "10.0.0.3:9000"]);
    }
}
