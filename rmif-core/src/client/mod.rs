//! The consumer side: a [`Client`] follows discovery, keeps one multiplexed connection per
//! provider, and makes [`ServiceClient`]s that generated stubs call through.
//!
//! A call's path, in the order it runs: `service_client` (encode the arguments, hand the call
//! to the layers or straight on, decode the answer), `execute` (pick a provider with the
//! `route`'s balancer, retry as `retry` allows, eject providers as `outlier` says), `attempt` (one request frame on one
//! `endpoint`'s `connection`, wait for its answer), `answer` (the answer's status to a result).

mod answer;
mod attempt;
pub(crate) mod call;
mod cluster;
mod connection;
mod endpoint;
mod execute;
mod outlier;
mod request;
mod retry;
mod route;
mod service_client;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

pub use call::{ConsumerAnswer, ConsumerCall};
pub use cluster::ClusterPolicy;
pub use outlier::OutlierPolicy;
pub use service_client::ServiceClient;

use crate::config::ConsumerConfig;
use crate::discovery::{Discovery, StaticDiscovery};
use crate::layer::boxed::{BoxError, Boxed, LayerList};
use crate::service::{ServiceDescriptor, ServiceKey};
use crate::sync::lock;
use crate::transport::Liveness;
use call::{ServiceTarget, method_settings};
use endpoint::ConnectSettings;
use execute::CallPath;
use route::{EndpointPool, Route};

/// A generated consumer stub (`…Consumer`): made from a [`ServiceClient`] for its service.
pub trait Stub: Sized {
    /// The service the stub calls.
    const DESCRIPTOR: &'static ServiceDescriptor;

    /// Wraps a client already bound to the service.
    fn from_service_client(client: ServiceClient) -> Self;
}

/// The consumer's entry point; cheap to clone, and meant to be shared by the whole process.
///
/// ```no_run
/// # use rmif_core::{Client, ConsumerConfig};
/// # async fn demo() {
/// let mut config = ConsumerConfig::default();
/// config.static_providers = vec!["127.0.0.1:9999".parse().unwrap()];
/// let client = Client::with_static_providers(config);
/// // let calculator: CalculatorConsumer = client.stub();
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .field("layered", &self.inner.layers.is_some())
            .finish_non_exhaustive()
    }
}

struct ClientInner {
    config: ConsumerConfig,
    discovery: Arc<dyn Discovery>,
    routes: Mutex<HashMap<ServiceKey, Weak<Route>>>,
    pool: Arc<EndpointPool>,
    layers: Option<Boxed<ConsumerCall, ConsumerAnswer>>,
}

impl Client {
    /// A client that learns providers from `discovery`. Nothing starts before the first call (or
    /// [`ServiceClient::ready`]), so a client can be made outside a runtime; calls need one.
    pub fn new(config: ConsumerConfig, discovery: impl Discovery) -> Self {
        Client::builder(config).discovery(discovery).build()
    }

    /// A client that calls the fixed providers in `config.static_providers` for every service.
    pub fn with_static_providers(config: ConsumerConfig) -> Self {
        Client::builder(config).build()
    }

    /// Starts describing a client: where it learns providers (the static ones of `config`
    /// unless [`ClientBuilder::discovery`] says otherwise) and the layers its calls go through.
    pub fn builder(config: ConsumerConfig) -> ClientBuilder {
        ClientBuilder {
            config,
            discovery: None,
            layers: LayerList::default(),
        }
    }

    /// The configuration this client was made with.
    pub fn config(&self) -> &ConsumerConfig {
        &self.inner.config
    }

    /// A generated stub for its service under the service's default key.
    pub fn stub<S: Stub>(&self) -> S {
        S::from_service_client(self.service(S::DESCRIPTOR))
    }

    /// A generated stub for its service under another key (another group or version).
    pub fn stub_with_key<S: Stub>(&self, key: ServiceKey) -> S {
        S::from_service_client(self.service_with_key(S::DESCRIPTOR, key))
    }

    /// A client for `descriptor`'s service under its default key.
    pub fn service(&self, descriptor: &'static ServiceDescriptor) -> ServiceClient {
        self.service_with_key(descriptor, descriptor.key())
    }

    /// A client for `descriptor`'s methods served under `key`.
    pub fn service_with_key(
        &self,
        descriptor: &'static ServiceDescriptor,
        key: ServiceKey,
    ) -> ServiceClient {
        let config = &self.inner.config;
        ServiceClient::new(ServiceTarget {
            service: key.to_string().into(),
            service_id: key.id(),
            route: self.route(&key),
            methods: method_settings(descriptor, config),
            serialization: config.serialization,
            compression: config.compression,
            retries: config.retries,
            outlier: config.outlier,
            forks: config.forks,
            max_frame_size: config.max_frame_size,
            layers: self.inner.layers.clone(),
        })
    }

    fn route(&self, key: &ServiceKey) -> Arc<Route> {
        let mut routes = lock(&self.inner.routes);
        if let Some(route) = routes.get(key).and_then(Weak::upgrade) {
            return route;
        }
        routes.retain(|_, weak| weak.strong_count() > 0);
        let route = Route::new(
            key,
            self.inner.discovery.clone(),
            self.inner.config.policy.build(),
            self.inner.config.retry_budget_percent,
            self.inner.pool.clone(),
        );
        routes.insert(key.clone(), Arc::downgrade(&route));
        route
    }
}

/// Describes a [`Client`]; see [`Client::builder`].
///
/// ```no_run
/// # use rmif_core::{Client, ConsumerConfig};
/// # async fn demo() {
/// let config = ConsumerConfig {
///     static_providers: vec!["127.0.0.1:9999".parse().unwrap()],
///     ..ConsumerConfig::default()
/// };
/// let client = Client::builder(config)
///     .layer(rmif_core::layer::MonitorLog::new())
///     .build();
/// # }
/// ```
pub struct ClientBuilder {
    config: ConsumerConfig,
    discovery: Option<Arc<dyn Discovery>>,
    layers: LayerList<ConsumerCall, ConsumerAnswer>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Learns providers from `discovery` (a registry, say) instead of the static list.
    pub fn discovery(mut self, discovery: impl Discovery) -> Self {
        self.discovery = Some(Arc::new(discovery));
        self
    }

    /// Makes every call go through `layer` (a tower `Layer`), inside the layers added before
    /// it. A layer sees each call before it is sent (and may add metadata or refuse it) and
    /// what came back; see [`crate::layer`].
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower_layer::Layer<Boxed<ConsumerCall, ConsumerAnswer>> + Send + Sync + 'static,
        L::Service: tower_service::Service<ConsumerCall, Response = ConsumerAnswer, Error = BoxError>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower_service::Service<ConsumerCall>>::Future: Send + 'static,
    {
        self.layers.push(layer);
        self
    }

    /// Makes the client (nothing runs before its first call).
    pub fn build(self) -> Client {
        let config = self.config;
        let mut layers = self.layers;
        if config.monitor_log {
            // Outermost, so that it also logs the calls other layers refuse.
            layers.push_outermost(crate::layer::MonitorLog::new());
        }
        let discovery = self.discovery.unwrap_or_else(|| {
            Arc::new(StaticDiscovery::new(
                config.static_providers.iter().copied(),
            ))
        });
        let pool = Arc::new(EndpointPool::new(ConnectSettings {
            liveness: Liveness {
                tick: config.tick,
                again: config.again,
            },
            connect_timeout: config.connect_timeout,
            max_frame_size: config.max_frame_size,
        }));
        Client {
            inner: Arc::new(ClientInner {
                config,
                discovery,
                routes: Mutex::new(HashMap::new()),
                pool,
                layers: layers.build(Boxed::new(CallPath)),
            }),
        }
    }
}
