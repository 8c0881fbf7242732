//! The consumer side: a [`Client`] follows discovery, keeps one multiplexed connection per
//! provider, and makes [`ServiceClient`]s that generated stubs call through.

mod connection;
mod endpoint;
mod route;
mod service_client;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

pub use service_client::ServiceClient;

use crate::config::ConsumerConfig;
use crate::discovery::{Discovery, StaticDiscovery};
use crate::service::{ServiceDescriptor, ServiceKey};
use crate::sync::lock;
use crate::transport::Liveness;
use endpoint::ConnectSettings;
use route::{EndpointPool, Route};
use service_client::{ServiceShared, method_settings};

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

struct ClientInner {
    config: ConsumerConfig,
    discovery: Arc<dyn Discovery>,
    routes: Mutex<HashMap<ServiceKey, Weak<Route>>>,
    pool: Arc<EndpointPool>,
}

impl Client {
    /// A client that learns providers from `discovery`. Must be called inside a tokio runtime.
    pub fn new(config: ConsumerConfig, discovery: impl Discovery) -> Self {
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
                discovery: Arc::new(discovery),
                routes: Mutex::new(HashMap::new()),
                pool,
            }),
        }
    }

    /// A client that calls the fixed providers in `config.static_providers` for every service.
    pub fn with_static_providers(config: ConsumerConfig) -> Self {
        let discovery = StaticDiscovery::new(config.static_providers.iter().copied());
        Client::new(config, discovery)
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
        ServiceClient::new(ServiceShared {
            service: key.to_string(),
            service_id: key.id(),
            route: self.route(&key),
            methods: method_settings(descriptor, config.timeout),
            serialization: config.serialization,
            compression: config.compression,
            retries: config.retries,
            max_frame_size: config.max_frame_size,
        })
    }

    fn route(&self, key: &ServiceKey) -> Arc<Route> {
        let mut routes = lock(&self.inner.routes);
        if let Some(route) = routes.get(key).and_then(Weak::upgrade) {
            return route;
        }
        routes.retain(|_, weak| weak.strong_count() > 0);
        let route = Route::follow(
            key.to_string(),
            self.inner.discovery.subscribe(key),
            self.inner.config.policy.build(),
            self.inner.pool.clone(),
        );
        routes.insert(key.clone(), Arc::downgrade(&route));
        route
    }
}
