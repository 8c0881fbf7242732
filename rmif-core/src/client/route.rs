//! The consumer's live view of one service's providers: follows discovery, maps providers to
//! shared endpoints, and picks one per call with the configured balancer.
//!
//! A route starts following discovery on first use, not when it is made, so that clients and
//! stubs can be made before a runtime runs (in a `static`, in `main` before `block_on`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::cluster::RetryBudget;
use super::endpoint::{ConnectSettings, Endpoint};
use crate::Error;
use crate::balance::{Balancer, Candidates};
use crate::discovery::{Discovery, ProviderInfo, ProviderSet};
use crate::service::ServiceKey;
use crate::sync::lock;

/// Endpoints shared by every route of one client, so that two services served by the same
/// provider share its connection.
pub(crate) struct EndpointPool {
    endpoints: Mutex<HashMap<SocketAddr, Weak<Endpoint>>>,
    settings: ConnectSettings,
}

impl EndpointPool {
    pub(crate) fn new(settings: ConnectSettings) -> Self {
        EndpointPool {
            endpoints: Mutex::new(HashMap::new()),
            settings,
        }
    }

    fn get(&self, addr: SocketAddr) -> Arc<Endpoint> {
        let mut endpoints = lock(&self.endpoints);
        if let Some(endpoint) = endpoints.get(&addr).and_then(Weak::upgrade) {
            return endpoint;
        }
        endpoints.retain(|_, weak| weak.strong_count() > 0);
        let endpoint = Endpoint::spawn(addr, self.settings);
        endpoints.insert(addr, Arc::downgrade(&endpoint));
        endpoint
    }
}

/// The providers of one service at one revision, with their endpoints.
struct Snapshot {
    resolved: bool,
    revision: u64,
    providers: Vec<(ProviderInfo, Arc<Endpoint>)>,
}

/// A snapshot seen through one call's exclusions (providers that already failed it).
struct View<'a> {
    snapshot: &'a Snapshot,
    excluded: &'a [SocketAddr],
}

impl Candidates for View<'_> {
    fn len(&self) -> usize {
        self.snapshot.providers.len()
    }
    fn is_available(&self, i: usize) -> bool {
        let endpoint = &self.snapshot.providers[i].1;
        endpoint.is_available()
            && !endpoint.outlier().is_ejected()
            && !self.excluded.contains(&endpoint.addr())
    }
    fn weight(&self, i: usize) -> u32 {
        self.snapshot.providers[i].0.weight
    }
    fn active(&self, i: usize) -> u32 {
        self.snapshot.providers[i].1.in_flight()
    }
    fn latency_ns(&self, i: usize) -> u64 {
        self.snapshot.providers[i].1.latency_ns()
    }
    fn identity(&self, i: usize) -> u64 {
        self.snapshot.providers[i].1.identity()
    }
    fn revision(&self) -> u64 {
        self.snapshot.revision
    }
}

/// What a route needs to start following discovery.
struct Source {
    key: ServiceKey,
    discovery: Arc<dyn Discovery>,
    pool: Arc<EndpointPool>,
}

/// One service's providers as this consumer currently sees them.
pub(crate) struct Route {
    service: String,
    snapshot: RwLock<Arc<Snapshot>>,
    resolved: watch::Sender<bool>,
    /// Counts installed snapshots, for those waiting for a change.
    installed: watch::Sender<u64>,
    balancer: Box<dyn Balancer>,
    /// Retries of this service's calls, bounded to a share of them.
    pub(crate) retry_budget: RetryBudget,
    stop: CancellationToken,
    started: AtomicBool,
    source: Mutex<Option<Source>>,
}

impl Route {
    /// A route for `key`'s providers as `discovery` reports them; it starts following on first
    /// use.
    pub(crate) fn new(
        key: &ServiceKey,
        discovery: Arc<dyn Discovery>,
        balancer: Box<dyn Balancer>,
        retry_budget_percent: u32,
        pool: Arc<EndpointPool>,
    ) -> Arc<Self> {
        Arc::new(Route {
            service: key.to_string(),
            snapshot: RwLock::new(Arc::new(Snapshot {
                resolved: false,
                revision: 0,
                providers: Vec::new(),
            })),
            resolved: watch::Sender::new(false),
            installed: watch::Sender::new(0),
            balancer,
            retry_budget: RetryBudget::new(retry_budget_percent),
            stop: CancellationToken::new(),
            started: AtomicBool::new(false),
            source: Mutex::new(Some(Source {
                key: key.clone(),
                discovery,
                pool,
            })),
        })
    }

    /// Starts following discovery, once. Called from calls, which run inside a runtime.
    fn ensure_started(self: &Arc<Self>) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let Some(source) = lock(&self.source).take() else {
            return;
        };
        let providers = source.discovery.subscribe(&source.key);
        tokio::spawn(track(
            Arc::downgrade(self),
            providers,
            source.pool,
            self.stop.clone(),
        ));
        self.started.store(true, Ordering::Release);
    }

    /// Whether the balancer wants a hash of the request body.
    pub(crate) fn needs_request_hash(&self) -> bool {
        self.balancer.needs_request_hash()
    }

    fn install(&self, set: &ProviderSet, pool: &EndpointPool) {
        let providers = set
            .providers
            .iter()
            .map(|info| (info.clone(), pool.get(info.addr)))
            .collect();
        let snapshot = Arc::new(Snapshot {
            resolved: set.resolved,
            revision: set.revision,
            providers,
        });
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
        self.installed.send_modify(|count| *count += 1);
        if set.resolved {
            self.resolved
                .send_if_modified(|resolved| !std::mem::replace(resolved, true));
        }
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until a provider of the service is connected; fails at `deadline` saying why none
    /// is (discovery silent, no provider listed, or each listed one's connection failure).
    pub(crate) async fn ready(self: &Arc<Self>, deadline: Instant) -> Result<(), Error> {
        self.ensure_started();
        let mut installed = self.installed.subscribe();
        loop {
            installed.borrow_and_update();
            let snapshot = self.current();
            if snapshot.providers.iter().any(|(_, e)| e.is_connected()) {
                return Ok(());
            }
            // Wake up on a new list or on any listed provider's connection changing.
            let mut changes: FuturesUnordered<_> = snapshot
                .providers
                .iter()
                .map(|(_, endpoint)| endpoint.state_changed())
                .collect();
            tokio::select! {
                _ = installed.changed() => {}
                _ = changes.next(), if !changes.is_empty() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Error::NoProvider {
                        service: self.service.clone(),
                        detail: format!(": {}", self.why_not_ready(&snapshot)),
                    });
                }
            }
        }
    }

    fn why_not_ready(&self, snapshot: &Snapshot) -> String {
        if !snapshot.resolved {
            return "discovery has not answered".to_owned();
        }
        if snapshot.providers.is_empty() {
            return "no provider is listed".to_owned();
        }
        let reasons: Vec<String> = snapshot
            .providers
            .iter()
            .map(|(_, endpoint)| format!("{}: {}", endpoint.addr(), endpoint.describe_state()))
            .collect();
        format!(
            "none of the {} listed providers is connected ({})",
            reasons.len(),
            reasons.join("; ")
        )
    }

    /// Picks a provider for one attempt of a call, skipping `excluded`. Waits (until `deadline`)
    /// for discovery's first answer.
    pub(crate) async fn pick(
        self: &Arc<Self>,
        request_hash: u64,
        excluded: &[SocketAddr],
        deadline: Instant,
    ) -> Result<Arc<Endpoint>, Error> {
        self.ensure_started();
        let mut snapshot = self.current();
        if !snapshot.resolved {
            let mut resolved = self.resolved.subscribe();
            let waited = tokio::time::timeout_at(deadline, resolved.wait_for(|r| *r)).await;
            if !matches!(waited, Ok(Ok(_))) {
                return Err(Error::NoProvider {
                    service: self.service.clone(),
                    detail: ": discovery has not answered yet".to_owned(),
                });
            }
            snapshot = self.current();
        }
        let view = View {
            snapshot: &snapshot,
            excluded,
        };
        match self.balancer.pick(&view, request_hash) {
            Some(i) => Ok(snapshot.providers[i].1.clone()),
            None => Err(Error::NoProvider {
                service: self.service.clone(),
                detail: match snapshot.providers.len() {
                    0 => ": the provider list is empty".to_owned(),
                    n => format!(
                        ": all {n} known providers are unreachable or already failed this call ({})",
                        why_each_is_out(&snapshot, excluded)
                    ),
                },
            }),
        }
    }
}

/// For an error: why each provider of `snapshot` could not take a call, by address.
fn why_each_is_out(snapshot: &Snapshot, excluded: &[SocketAddr]) -> String {
    let reasons: Vec<String> = snapshot
        .providers
        .iter()
        .map(|(_, endpoint)| {
            let why = if excluded.contains(&endpoint.addr()) {
                "already failed this call".to_owned()
            } else if endpoint.outlier().is_ejected() {
                "ejected after failing calls in a row".to_owned()
            } else {
                endpoint.describe_state()
            };
            format!("{}: {why}", endpoint.addr())
        })
        .collect();
    reasons.join("; ")
}

impl Route {
    /// Whether one more of this service's providers may be ejected under `policy`.
    pub(crate) fn may_eject(&self, policy: &super::OutlierPolicy) -> bool {
        let snapshot = self.current();
        let ejected = snapshot
            .providers
            .iter()
            .filter(|(_, endpoint)| endpoint.outlier().is_ejected())
            .count();
        ejected < policy.max_ejected(snapshot.providers.len())
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn track(
    route: Weak<Route>,
    mut providers: watch::Receiver<ProviderSet>,
    pool: Arc<EndpointPool>,
    stop: CancellationToken,
) {
    loop {
        let set = providers.borrow_and_update().clone();
        match route.upgrade() {
            Some(route) => route.install(&set, &pool),
            None => return,
        }
        tokio::select! {
            changed = providers.changed() => {
                if changed.is_err() {
                    // Discovery went away: keep serving from the last list.
                    return;
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}
