//! A config center: typed values (any serde type, stored as JSON) in nodes under
//! `/rmif/config/{name}`, published with compare-and-set on their version and pushed to every
//! subscriber, in order, across reconnects and member failovers.
//!
//! A subscriber never sees an older value after a newer one (values are ordered by the zxid of
//! the write that made them). A value that does not deserialize as the subscriber's type is
//! reported ([`Subscription::rejected`]) and the last good one kept.
//!
//! ```
//! use rmif_registry::RegistryClient;
//! use rmif_registry::recipes::config::{ConfigCenter, Expect};
//! # use rmif_registry_server::{RegistryConfig, RegistryServer};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let data = tempfile::tempdir()?;
//! # let member = RegistryServer::start(RegistryConfig::single("127.0.0.1:0".parse()?, data.path())).await?;
//! # let members = [member.client_addr()];
//! #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct Limits {
//!     max_connections: u32,
//! }
//!
//! let config = ConfigCenter::new(RegistryClient::connect(&members));
//! let version = config.publish("limits", &Limits { max_connections: 100 }, Expect::Absent).await?;
//! let mut limits = config.subscribe::<Limits>("limits").await?;
//! assert_eq!(limits.current().unwrap().value.max_connections, 100);
//!
//! // Compare-and-set: only over the version this publisher read.
//! config.publish("limits", &Limits { max_connections: 200 }, Expect::Version(version)).await?;
//! assert!(config.publish("limits", &Limits { max_connections: 1 }, Expect::Version(version)).await.is_err());
//!
//! let pushed = limits.changed().await.unwrap();
//! assert_eq!(pushed.value.max_connections, 200);
//! # member.shutdown().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::WatchMode;
use crate::client::CreateMode;
use crate::error::RegistryError;
use crate::{Consistency, RegistryClient};

/// Where configuration values live in the tree.
pub const CONFIG_PATH: &str = "/rmif/config";

/// How long a subscription waits before watching again after its watch failed.
const REWATCH: Duration = Duration::from_millis(200);

/// Publishes and follows configuration values.
#[derive(Debug, Clone)]
pub struct ConfigCenter {
    client: RegistryClient,
}

/// What a publisher expects to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is there (or nothing).
    Any,
    /// Nothing: the value is new.
    Absent,
    /// The value at this version (as [`Versioned::version`] or a publish returned it).
    Version(u32),
}

/// A value with where it stands in the value's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its version: 0 when first published, one more with every publish.
    pub version: u32,
    /// The zxid of the write that published it (grows with every publish).
    pub zxid: u64,
}

/// Why publishing or reading a value failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The registry refused or failed the request (a version conflict is
    /// [`RegistryError::BadVersion`], an existing value with [`Expect::Absent`] is
    /// [`RegistryError::NodeExists`]).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The stored value is not valid JSON of the requested type.
    #[error("config {name} (version {version}) does not read as the expected type: {reason}")]
    Malformed {
        /// The value's name.
        name: String,
        /// Its version.
        version: u32,
        /// What the JSON reader said.
        reason: String,
    },
    /// The value could not be written as JSON.
    #[error("config {name} cannot be written as JSON: {reason}")]
    Unserializable {
        /// The value's name.
        name: String,
        /// What the JSON writer said.
        reason: String,
    },
}

impl ConfigCenter {
    /// A config center on `client`'s registry.
    pub fn new(client: RegistryClient) -> Self {
        ConfigCenter { client }
    }

    fn path(name: &str) -> Result<String, RegistryError> {
        let path = format!("{CONFIG_PATH}/{name}");
        crate::path::validate(&path)?;
        Ok(path)
    }

    /// Publishes `value` under `name` if what is there is what `expect` says; returns the new
    /// version.
    pub async fn publish<T: Serialize>(
        &self,
        name: &str,
        value: &T,
        expect: Expect,
    ) -> Result<u32, ConfigError> {
        let path = Self::path(name)?;
        let data =
            serde_json::to_vec_pretty(value).map_err(|error| ConfigError::Unserializable {
                name: name.to_owned(),
                reason: error.to_string(),
            })?;
        self.client.create_path(CONFIG_PATH).await?;
        let create = || self.client.create(&path, &data, CreateMode::PERSISTENT);
        match expect {
            Expect::Absent => Ok(create().await?.stat.version),
            Expect::Version(version) => Ok(self
                .client
                .set(&path, &data, Some(version))
                .await?
                .stat
                .map_or(version + 1, |stat| stat.version)),
            Expect::Any => match self.client.set(&path, &data, None).await {
                Ok(written) => Ok(written.stat.map_or(0, |stat| stat.version)),
                Err(RegistryError::NoNode { .. }) => match create().await {
                    Ok(created) => Ok(created.stat.version),
                    // Created meanwhile by another publisher: replace it.
                    Err(RegistryError::NodeExists { .. }) => Ok(self
                        .client
                        .set(&path, &data, None)
                        .await?
                        .stat
                        .map_or(0, |stat| stat.version)),
                    Err(error) => Err(error.into()),
                },
                Err(error) => Err(error.into()),
            },
        }
    }

    /// The value of `name` now, if it has one.
    pub async fn get<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<Versioned<T>>, ConfigError> {
        read(&self.client, name, &Self::path(name)?).await
    }

    /// Follows the value of `name`: its current value, then every change, pushed.
    pub async fn subscribe<T>(&self, name: &str) -> Result<Subscription<T>, ConfigError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let path = Self::path(name)?;
        // Watch first, then read: a change between the two is not missed.
        let watcher = self.client.watch(&path, WatchMode::Persistent).await?;
        let (rejected, rejections) = watch::channel(None);
        let first = match read::<T>(&self.client, name, &path).await {
            Ok(value) => value.map(Arc::new),
            Err(ConfigError::Malformed { .. }) => None,
            Err(error) => return Err(error),
        };
        let (current, values) = watch::channel(first);
        let stop = CancellationToken::new();
        tokio::spawn(follow(
            self.client.clone(),
            name.to_owned(),
            path,
            watcher,
            current,
            rejected,
            stop.clone(),
        ));
        Ok(Subscription {
            values,
            rejections,
            _stop: stop.drop_guard(),
        })
    }
}

/// A subscription to one configuration value. Dropping it stops following.
#[derive(Debug)]
pub struct Subscription<T> {
    values: watch::Receiver<Option<Arc<Versioned<T>>>>,
    rejections: watch::Receiver<Option<String>>,
    _stop: tokio_util::sync::DropGuard,
}

impl<T> Subscription<T> {
    /// The newest good value (none if the value was never published, or deleted).
    pub fn current(&self) -> Option<Arc<Versioned<T>>> {
        self.values.borrow().clone()
    }

    /// Waits for a newer value; `None` once the subscription ended (its task stopped) or the
    /// value was deleted.
    pub async fn changed(&mut self) -> Option<Arc<Versioned<T>>> {
        self.values.changed().await.ok()?;
        self.values.borrow_and_update().clone()
    }

    /// Why the newest published value was not taken, if it was not (it did not read as `T`).
    pub fn rejected(&self) -> Option<String> {
        self.rejections.borrow().clone()
    }
}

async fn read<T: DeserializeOwned>(
    client: &RegistryClient,
    name: &str,
    path: &str,
) -> Result<Option<Versioned<T>>, ConfigError> {
    let node = match client.get(path, Consistency::Linearizable).await {
        Ok(node) => node,
        Err(RegistryError::NoNode { .. }) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let value = serde_json::from_slice(&node.data).map_err(|error| ConfigError::Malformed {
        name: name.to_owned(),
        version: node.stat.version,
        reason: error.to_string(),
    })?;
    Ok(Some(Versioned {
        value,
        version: node.stat.version,
        zxid: node.stat.mzxid,
    }))
}

/// The subscription's task: on every change of the node (or a resync), reads the value and
/// publishes it if it is newer than the last one.
async fn follow<T: DeserializeOwned + Send + Sync + 'static>(
    client: RegistryClient,
    name: String,
    path: String,
    mut watcher: crate::Watcher,
    current: watch::Sender<Option<Arc<Versioned<T>>>>,
    rejected: watch::Sender<Option<String>>,
    stop: CancellationToken,
) {
    let mut newest = current.borrow().as_ref().map_or(0, |v| v.zxid);
    loop {
        let message = tokio::select! {
            message = watcher.next() => message,
            _ = stop.cancelled() => return,
        };
        let trouble = match message {
            Some(Ok(message)) if message.is_armed() => continue,
            Some(Ok(_)) => None,
            Some(Err(error)) => Some(error.to_string()),
            None => Some("the watch stream ended".to_owned()),
        };
        if let Some(reason) = trouble {
            tracing::debug!(%path, %reason, "config watch ended; watching again");
            tokio::select! {
                _ = tokio::time::sleep(REWATCH) => {}
                _ = stop.cancelled() => return,
            }
            match client.watch(&path, WatchMode::Persistent).await {
                // Then read: a change while no watch was armed is not missed.
                Ok(again) => watcher = again,
                Err(_) => continue,
            }
        }
        match read::<T>(&client, &name, &path).await {
            Ok(Some(value)) if value.zxid > newest => {
                newest = value.zxid;
                rejected.send_replace(None);
                current.send_replace(Some(Arc::new(value)));
            }
            // Not newer than what subscribers have (a resync, or a change already read).
            Ok(Some(_)) => {}
            Ok(None) => {
                if current.borrow().is_some() {
                    current.send_replace(None);
                }
            }
            Err(ConfigError::Malformed {
                version, reason, ..
            }) => {
                tracing::warn!(config = %name, version, %reason, "config value rejected; keeping the last good one");
                rejected.send_replace(Some(format!("version {version}: {reason}")));
            }
            Err(error) => tracing::debug!(%path, %error, "cannot read the config value yet"),
        }
    }
}
