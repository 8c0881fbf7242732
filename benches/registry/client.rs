//! One client, whatever the system: the operations the scenarios make, each handed to the
//! system's own module, and armed watches.

use std::net::SocketAddr;
use std::time::Duration;

use rmif_registry::{ClientOptions, RegistryClient};
use zookeeper_client as zk;

use crate::system::Change;
use crate::{System, VALUE, etcd, rmif, zookeeper};

/// A client with its own connection(s). Cloning shares them (for several watches per
/// connection). An enum rather than a trait object: the harness adds no boxing to any system.
#[derive(Clone)]
pub enum Conn {
    Rmif(RegistryClient),
    // Boxed: etcd's client is 3.5 KB, the others are a pointer or two.
    Etcd(Box<etcd_client::Client>),
    Zk(zk::Client),
}

impl Conn {
    /// A client of `members` (failing over among them where the client does), starting with the
    /// first. Every op has 10 s at most, as rmif's default.
    pub async fn connect(system: System, members: &[SocketAddr]) -> Result<Conn, String> {
        let timeout = Duration::from_secs(10);
        Ok(match system {
            System::Rmif => Conn::Rmif(rmif::client(members, ClientOptions::default())),
            System::Etcd => Conn::Etcd(Box::new(etcd::connect(members, timeout).await?)),
            System::Zk => Conn::Zk(zookeeper::connect(members, timeout).await?),
        })
    }

    /// A client of `members` whose every request gives up after `deadline`, where the system's
    /// client has such a deadline (rmif, etcd; ZooKeeper's has none).
    pub async fn with_request_deadline(
        system: System,
        members: &[SocketAddr],
        deadline: Duration,
    ) -> Result<Conn, String> {
        match system {
            System::Rmif => Ok(Conn::Rmif(rmif::client(
                members,
                rmif::request_deadline(deadline),
            ))),
            System::Etcd => Ok(Conn::Etcd(Box::new(
                etcd::connect(members, deadline).await?,
            ))),
            System::Zk => Self::connect(system, members).await,
        }
    }

    /// A client of the one member at `member`.
    pub async fn to(system: System, member: SocketAddr) -> Result<Conn, String> {
        Self::connect(system, &[member]).await
    }

    /// Whether this client can still be used (a ZooKeeper session can expire for good).
    pub fn usable(&self) -> bool {
        match self {
            Conn::Zk(client) => zookeeper::usable(client),
            _ => true,
        }
    }

    pub async fn create(&mut self, path: &str, value: &[u8]) -> Result<(), String> {
        match self {
            Conn::Rmif(c) => rmif::create(c, path, value).await,
            Conn::Etcd(c) => etcd::put(c, path, value).await,
            Conn::Zk(c) => zookeeper::create(c, path, value).await,
        }
    }

    pub async fn set(&mut self, path: &str, value: &[u8]) -> Result<(), String> {
        match self {
            Conn::Rmif(c) => rmif::set(c, path, value).await,
            Conn::Etcd(c) => etcd::put(c, path, value).await,
            Conn::Zk(c) => zookeeper::set(c, path, value).await,
        }
    }

    /// Reads a node's value: linearizable, or from the member's local state.
    pub async fn read(&mut self, path: &str, linearizable: bool) -> Result<Vec<u8>, String> {
        match self {
            Conn::Rmif(c) => rmif::read(c, path, linearizable).await,
            Conn::Etcd(c) => etcd::read(c, path, linearizable).await,
            Conn::Zk(c) => zookeeper::read(c, path, linearizable).await,
        }
    }

    /// Creates `path` (and, for the trees, nothing above it) unless it exists.
    pub async fn ensure(&mut self, path: &str) -> Result<(), String> {
        match self.create(path, VALUE).await {
            Err(e) if e.contains("exists") => Ok(()),
            other => other,
        }
    }

    /// Follows every change of `path`; returns once the watch is armed.
    pub async fn watch(&mut self, path: &str) -> Result<Watch, String> {
        let feed = match self {
            Conn::Rmif(c) => Feed::Rmif(rmif::watch(c, path).await?),
            Conn::Etcd(c) => Feed::Etcd(etcd::watch(c, path).await?),
            Conn::Zk(c) => Feed::Zk(zookeeper::watch(c, path).await?),
        };
        Ok(Watch {
            feed,
            _conn: self.clone(),
        })
    }
}

/// An armed watch. It keeps its client: a ZooKeeper session ends with its last client handle.
pub struct Watch {
    feed: Feed,
    _conn: Conn,
}

enum Feed {
    Rmif(rmif_registry::Watcher),
    Etcd(etcd_client::WatchStream),
    Zk(zk::PersistentWatcher),
}

impl Watch {
    /// The next change of the watched node (skipping progress and connection messages).
    pub async fn next_change(&mut self) -> Result<Change, String> {
        match &mut self.feed {
            Feed::Rmif(watcher) => rmif::next_change(watcher).await,
            Feed::Etcd(stream) => etcd::next_change(stream).await,
            Feed::Zk(watcher) => zookeeper::next_change(watcher).await,
        }
    }
}
