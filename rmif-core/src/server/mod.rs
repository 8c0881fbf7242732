//! The provider side: a [`Server`] accepts connections, dispatches each request to its service,
//! limits concurrency, and shuts down gracefully.

pub(crate) mod call;
mod connection;
mod handlers;
mod panics;
mod signal;
mod streams;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use call::{ProviderAnswer, ProviderCall};
pub use signal::shutdown_signal;

use crate::Error;
use crate::config::ProviderConfig;
use crate::layer::boxed::{BoxError, Boxed, LayerList};
use crate::layer::monitor::MonitorLog;
use crate::service::{ServiceDescriptor, ServiceKey, ServiceProvider};
use crate::sync::IdMap;
use call::RunHandler;

/// A service as registered on the server.
pub(crate) struct Registered {
    pub(crate) key: std::sync::Arc<str>,
    pub(crate) service_key: ServiceKey,
    pub(crate) provider: Arc<dyn ServiceProvider>,
}

/// State shared by the accept loop, every connection and the handle.
pub(crate) struct ServerShared {
    pub(crate) config: ProviderConfig,
    pub(crate) services: IdMap<Registered>,
    /// The provider's layers, if any: calls then go through them.
    pub(crate) layers: Option<Boxed<ProviderCall, ProviderAnswer>>,
    active: AtomicUsize,
    connections: AtomicUsize,
    idle: Notify,
    /// Cancelled when shutdown starts: stop accepting, send go-away, end streams.
    pub(crate) draining: CancellationToken,
    /// Cancelled when shutdown ends: close every connection.
    pub(crate) terminate: CancellationToken,
}

impl ServerShared {
    /// Counts a call (or open stream) against the concurrency limit; `None` if at the limit.
    pub(crate) fn begin_call(self: &Arc<Self>) -> Option<ActiveCall> {
        let previous = self.active.fetch_add(1, Ordering::AcqRel);
        if previous >= self.config.max_concurrent_requests {
            self.end_call();
            return None;
        }
        Some(ActiveCall(self.clone()))
    }

    fn end_call(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 && self.draining.is_cancelled() {
            self.idle.notify_waiters();
        }
    }

    async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    async fn wait_connections_closed(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.connections.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// One call counted against the concurrency limit until dropped.
pub(crate) struct ActiveCall(Arc<ServerShared>);

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.0.end_call();
    }
}

/// Counts one open connection until dropped.
pub(crate) struct OpenConnection(Arc<ServerShared>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if self.0.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Collects services, then binds and serves them.
///
/// ```no_run
/// # use rmif_core::{Server, ProviderConfig};
/// # async fn demo() -> Result<(), rmif_core::Error> {
/// let server = Server::builder(ProviderConfig::loopback())
///     // .add_service(CalculatorProvider::new(MyCalculator))
///     .serve()
///     .await?;
/// println!("serving on {}", server.local_addr());
/// server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Starts describing a server.
    pub fn builder(config: ProviderConfig) -> ServerBuilder {
        ServerBuilder {
            config,
            services: Vec::new(),
            layers: LayerList::default(),
        }
    }
}

/// Services to serve and how; see [`Server::builder`].
pub struct ServerBuilder {
    config: ProviderConfig,
    services: Vec<(ServiceKey, Arc<dyn ServiceProvider>)>,
    layers: LayerList<ProviderCall, ProviderAnswer>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let services: Vec<String> = self.services.iter().map(|(k, _)| k.to_string()).collect();
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field("services", &services)
            .field("layers", &self.layers)
            .finish()
    }
}

impl ServerBuilder {
    /// Serves `provider` under its service's default key.
    pub fn add_service(self, provider: impl ServiceProvider) -> Self {
        let key = provider.descriptor().key();
        self.add_service_as(key, provider)
    }

    /// Serves `provider` under `key` (to serve another group or version).
    pub fn add_service_as(mut self, key: ServiceKey, provider: impl ServiceProvider) -> Self {
        self.services.push((key, Arc::new(provider)));
        self
    }

    /// Makes every call go through `layer` (a tower `Layer`), inside the layers added before
    /// it. A layer sees each call before its handler runs (and may refuse it) and what the
    /// provider answers; see [`crate::layer`].
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower_layer::Layer<Boxed<ProviderCall, ProviderAnswer>> + Send + Sync + 'static,
        L::Service: tower_service::Service<ProviderCall, Response = ProviderAnswer, Error = BoxError>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower_service::Service<ProviderCall>>::Future: Send + 'static,
    {
        self.layers.push(layer);
        self
    }

    /// Binds the configured address and starts serving.
    pub async fn serve(self) -> Result<ServerHandle, Error> {
        let addr = self.config.bind_addr();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Io(format!("cannot listen on {addr}: {e}")))?;
        self.serve_on(listener)
    }

    /// Serves on an already bound listener.
    pub fn serve_on(self, listener: TcpListener) -> Result<ServerHandle, Error> {
        let mut services = IdMap::default();
        for (service_key, provider) in self.services {
            let id = service_key.id();
            let key: Arc<str> = service_key.to_string().into();
            if let Some(existing) = services.get(&id) {
                let existing: &Registered = existing;
                return Err(Error::Config(if existing.key == key {
                    format!("service {key} is added twice")
                } else {
                    format!(
                        "services {} and {key} have the same id; rename one",
                        existing.key
                    )
                }));
            }
            services.insert(
                id,
                Registered {
                    key,
                    service_key,
                    provider,
                },
            );
        }
        let local_addr = listener.local_addr()?;
        let mut layers = self.layers;
        if self.config.monitor_log {
            // Outermost, so that it also logs the calls other layers refuse.
            layers.push_outermost(MonitorLog::new());
        }
        let shared = Arc::new(ServerShared {
            config: self.config,
            layers: layers.build(Boxed::new(RunHandler)),
            services,
            active: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            idle: Notify::new(),
            draining: CancellationToken::new(),
            terminate: CancellationToken::new(),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        tracing::info!(%local_addr, services = shared.services.len(), "provider listening");
        Ok(ServerHandle {
            local_addr,
            shared,
            accept,
        })
    }
}

/// A running server. Dropping it leaves the server running; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    local_addr: SocketAddr,
    shared: Arc<ServerShared>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("services", &self.services())
            .field("connections", &self.connections())
            .field("active_calls", &self.active_calls())
            .finish()
    }
}

/// What a graceful shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// True if every in-flight call finished before the deadline.
    pub drained: bool,
    /// Calls still running at the deadline, which were aborted.
    pub aborted: usize,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Keys of the services served.
    pub fn services(&self) -> Vec<ServiceKey> {
        let mut keys: Vec<ServiceKey> = self
            .shared
            .services
            .values()
            .map(|s| s.service_key.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Each service served, by key, with its descriptor (methods and options), as discovery
    /// announces them.
    pub fn served(&self) -> Vec<(ServiceKey, &'static ServiceDescriptor)> {
        let mut served: Vec<(ServiceKey, &'static ServiceDescriptor)> = self
            .shared
            .services
            .values()
            .map(|s| (s.service_key.clone(), s.provider.descriptor()))
            .collect();
        served.sort_by(|a, b| a.0.cmp(&b.0));
        served
    }

    /// Consumer connections currently open.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// Calls and streams in progress.
    pub fn active_calls(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Serves until `stop` resolves (say, [`shutdown_signal`]), then shuts down gracefully
    /// within the configured `Shutdown_timeout`.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> ShutdownReport {
        stop.await;
        self.shutdown().await
    }

    /// Graceful shutdown within the configured `Shutdown_timeout`.
    pub async fn shutdown(self) -> ShutdownReport {
        let grace = self.shared.config.shutdown_timeout;
        self.shutdown_within(grace).await
    }

    /// Graceful shutdown: stop accepting, tell every consumer to go away (new calls on existing
    /// connections are refused as "shutting down", which consumers retry elsewhere), end
    /// streams, wait up to `grace` for in-flight calls, then close every connection.
    pub async fn shutdown_within(self, grace: Duration) -> ShutdownReport {
        self.shared.draining.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        let drained = tokio::time::timeout_at(deadline, self.shared.wait_idle())
            .await
            .is_ok();
        // Consumers close a go-away connection once their calls on it are answered; waiting for
        // that means a request already on the wire gets a "shutting down" refusal, which the
        // consumer retries elsewhere, rather than vanishing with the connection.
        let _ = tokio::time::timeout_at(deadline, self.shared.wait_connections_closed()).await;
        let aborted = self.shared.active.load(Ordering::Acquire);
        self.shared.terminate.cancel();
        let _ = self.accept.await;
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.shared.wait_connections_closed(),
        )
        .await;
        tracing::info!(local_addr = %self.local_addr, drained, aborted, "provider stopped");
        ShutdownReport { drained, aborted }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<ServerShared>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shared.draining.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                shared.connections.fetch_add(1, Ordering::AcqRel);
                let open = OpenConnection(shared.clone());
                tokio::spawn(connection::serve(stream, peer, shared.clone(), open));
            }
            Err(error) => {
                // Out of file descriptors and the like: keep serving existing connections and
                // try again shortly rather than spin or exit.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
