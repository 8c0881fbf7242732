//! The lifecycle of a service process in a few lines: read one properties file, add the services
//! it provides, get stubs for the ones it calls, run until asked to stop, then leave the
//! registry, drain and stop, in that order.
//!
//! `Server_type` decides what the process does: a `provider` binds its port and announces its
//! services and never follows provider lists; a `consumer` never binds a port; `both` does both.
//! With `Config_center_url` set, providers are announced in that registry and consumers follow
//! it; without it, consumers call the static `Provider_addresses`.
//!
//! The pieces stay usable on their own (`rmif_core::Server`, `rmif_core::Client`,
//! [`crate::discovery`]) for a process that needs another order.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;

use rmif_core::config::ConfigError;
use rmif_core::{
    Client, ClientBuilder, Role, RpcConfig, Server, ServerBuilder, ServerHandle, ServiceKey,
    ServiceProvider, ShutdownReport, Stub,
};

use crate::discovery::{Registration, RegistryDiscovery, announce, consumer_discovery};
use crate::error::RegistryError;

/// Why an application could not start, or could not do what was asked of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The configuration file could not be read or has an invalid line.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The provider could not bind its port or start serving.
    #[error("cannot serve: {0}")]
    Serve(#[source] rmif_core::Error),
    /// The registry could not be reached to announce the providers, or refused.
    #[error("cannot announce the providers in the registry")]
    Announce(#[source] RegistryError),
    /// The consumer's discovery could not be set up (an invalid registry address).
    #[error("cannot follow the registry")]
    Discover(#[source] RegistryError),
    /// The process's `Server_type` does not allow what was asked.
    #[error("Server_type={role} does not allow this: {what}")]
    Role {
        /// The configured role.
        role: &'static str,
        /// What was asked, and what to change.
        what: String,
    },
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Provider => "provider",
        Role::Consumer => "consumer",
        Role::Both => "both",
    }
}

fn provides(role: Role) -> bool {
    matches!(role, Role::Provider | Role::Both)
}

fn consumes(role: Role) -> bool {
    matches!(role, Role::Consumer | Role::Both)
}

/// A service process being described: its configuration, the services it provides, the layers
/// its calls go through. [`App::start`] runs it.
///
/// ```
/// use rmif_registry::App;
///
/// #[rmif_core::service(name = "demo.Greeter")]
/// pub trait Greeter {
///     async fn hello(&self, name: String) -> Result<String, rmif_core::Error>;
/// }
///
/// struct Polite;
///
/// impl Greeter for Polite {
///     async fn hello(&self, name: String) -> Result<String, rmif_core::Error> {
///         Ok(format!("hello, {name}"))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use rmif_registry_server::{RegistryConfig, RegistryServer};
/// # let dir = tempfile::tempdir()?;
/// # let member = RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, dir.path().join("data"))).await?;
/// # let path = dir.path().join("greeter.properties");
/// # std::fs::write(&path, format!(
/// #     "Server_type=both\nConfig_center_url={}\nProvider_bind=127.0.0.1\nProvider_port=0\n",
/// #     member.client_addr()
/// # ))?;
/// // greeter.properties sets Server_type=both, Config_center_url (the registry) and
/// // Provider_port=0 (a free port, announced in the registry).
/// let app = App::from_file(&path)?
///     .provide(GreeterProvider::new(Polite))
///     .start()
///     .await?;
/// // The stub finds the provider (here, this very process) through the registry.
/// let greeter: GreeterConsumer = app.stub()?;
/// assert_eq!(greeter.hello("ann".into()).await?, "hello, ann");
/// // A real process waits for SIGTERM or Ctrl-C: `app.run().await`.
/// let report = app.shutdown().await;
/// assert!(report.drained);
/// # member.shutdown().await;
/// # Ok(()) }
/// ```
pub struct App {
    config: RpcConfig,
    server: ServerBuilder,
    client: ClientBuilder,
    provided: usize,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("role", &role_name(self.config.role))
            .field("registry", &self.config.registry)
            .field("services", &self.provided)
            .finish_non_exhaustive()
    }
}

impl App {
    /// An application configured by the properties file at `path` (see docs/OPERATIONS.md for
    /// the keys); an invalid file is an error naming the file, line and key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<App, AppError> {
        Ok(App::from_config(RpcConfig::load(path.as_ref())?))
    }

    /// An application configured by `config`.
    pub fn from_config(config: RpcConfig) -> App {
        let server = Server::builder(config.provider.clone());
        let client = Client::builder(config.consumer.clone());
        App {
            config,
            server,
            client,
            provided: 0,
        }
    }

    /// The configuration the application runs with.
    pub fn config(&self) -> &RpcConfig {
        &self.config
    }

    /// Provides `provider`'s service under its default key.
    pub fn provide(mut self, provider: impl ServiceProvider) -> App {
        self.server = self.server.add_service(provider);
        self.provided += 1;
        self
    }

    /// Provides `provider`'s service under `key` (another group or version).
    pub fn provide_as(mut self, key: ServiceKey, provider: impl ServiceProvider) -> App {
        self.server = self.server.add_service_as(key, provider);
        self.provided += 1;
        self
    }

    /// Changes how the provider serves (to add layers, for example) before it starts.
    pub fn serving(mut self, configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> App {
        self.server = configure(self.server);
        self
    }

    /// Changes how the consumer calls (to add layers, for example) before it starts; where it
    /// learns providers is set by [`App::start`] from the configuration.
    pub fn calling(mut self, configure: impl FnOnce(ClientBuilder) -> ClientBuilder) -> App {
        self.client = configure(self.client);
        self
    }

    /// Starts what `Server_type` says: binds the provider's port and announces its services
    /// (when it provides, and was given services), and sets up discovery for its stubs (when it
    /// consumes). Returns once the providers are announced.
    ///
    /// A `provider` given no service, or a `consumer` given one, is an [`AppError::Role`].
    pub async fn start(self) -> Result<RunningApp, AppError> {
        let role = self.config.role;
        if !provides(role) && self.provided > 0 {
            return Err(AppError::Role {
                role: role_name(role),
                what: format!(
                    "{} service(s) were added to provide, but a consumer does not bind a port; \
                     set Server_type=provider or both",
                    self.provided
                ),
            });
        }
        if role == Role::Provider && self.provided == 0 {
            return Err(AppError::Role {
                role: role_name(role),
                what: "no service was added to provide; add one with App::provide, or set \
                       Server_type=consumer"
                    .to_owned(),
            });
        }
        // A process that both provides and consumes but was given nothing to provide (one
        // properties file shared by a fleet, say) binds no port: an empty provider would only
        // hold a port and announce nothing.
        let (server, registration) = if provides(role) && self.provided > 0 {
            let server = self.server.serve().await.map_err(AppError::Serve)?;
            match announce(&server, &self.config).await {
                Ok(registration) => (Some(server), registration),
                Err(error) => {
                    server.shutdown().await;
                    return Err(AppError::Announce(error));
                }
            }
        } else {
            (None, None)
        };
        let (client, discovery) = if consumes(role) {
            match consumer_discovery(&self.config).map_err(AppError::Discover)? {
                Some(discovery) => (
                    Some(self.client.discovery(discovery.clone()).build()),
                    Some(discovery),
                ),
                None => (Some(self.client.build()), None),
            }
        } else {
            (None, None)
        };
        Ok(RunningApp {
            config: self.config,
            server,
            registration,
            client,
            discovery,
        })
    }
}

/// A started application; see [`App`].
pub struct RunningApp {
    config: RpcConfig,
    server: Option<ServerHandle>,
    registration: Option<Registration>,
    client: Option<Client>,
    discovery: Option<RegistryDiscovery>,
}

impl std::fmt::Debug for RunningApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningApp")
            .field("role", &role_name(self.config.role))
            .field("local_addr", &self.local_addr())
            .field("announced", &self.registration.is_some())
            .finish_non_exhaustive()
    }
}

impl RunningApp {
    /// Where the provider listens (`None` for a consumer).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(ServerHandle::local_addr)
    }

    /// The consumer's client, shared by all its stubs; an error for a provider-only process.
    pub fn client(&self) -> Result<&Client, AppError> {
        self.client.as_ref().ok_or_else(|| AppError::Role {
            role: role_name(self.config.role),
            what: "a provider does not call services; set Server_type=consumer or both".to_owned(),
        })
    }

    /// A stub for calling service `S`.
    pub fn stub<S: Stub>(&self) -> Result<S, AppError> {
        Ok(self.client()?.stub())
    }

    /// Runs until Ctrl-C or SIGTERM ([`rmif_core::shutdown_signal`]), then stops like
    /// [`RunningApp::shutdown`].
    pub async fn run(self) -> ShutdownReport {
        self.run_until(rmif_core::shutdown_signal()).await
    }

    /// Runs until `stop` resolves, then stops like [`RunningApp::shutdown`].
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> ShutdownReport {
        stop.await;
        self.shutdown().await
    }

    /// Stops in the order that loses no call: leave the registry (consumers stop choosing this
    /// provider, and the consumer map forgets this process), write the consumer's cache file,
    /// then drain calls in flight within `Shutdown_timeout`, then close.
    pub async fn shutdown(self) -> ShutdownReport {
        if let Some(registration) = self.registration {
            registration.withdraw().await;
        }
        if let Some(discovery) = &self.discovery {
            discovery.withdraw().await;
            discovery.flush_cache();
        }
        match self.server {
            Some(server) => server.shutdown().await,
            None => ShutdownReport {
                drained: true,
                aborted: 0,
            },
        }
    }
}
