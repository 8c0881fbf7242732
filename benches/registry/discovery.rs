//! Service discovery as each system's ecosystem does it, whatever the system: a provider host
//! (one session holding provider nodes of one service), and a consumer following that service's
//! provider list through a client of its own. The system modules do the work; this one
//! dispatches, as `client` does for plain operations.

use std::net::SocketAddr;
use std::time::Duration;

use crate::{HANG, System, etcd, rmif, zookeeper};

/// A provider address on loopback (nothing listens there: consumers only list it).
pub fn provider_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One session (etcd: one lease) that announces and withdraws providers of one service.
/// An enum rather than a trait object, as `client::Conn`; etcd's variants are boxed, since its
/// client is 3.5 KB and the others' a pointer or two.
pub enum ProviderHost {
    Rmif(rmif::ProviderHost),
    Etcd(Box<etcd::ProviderHost>),
    Zk(zookeeper::ProviderHost),
}

impl ProviderHost {
    /// A session on `member` for providers of the service named `service`, whose nodes' parents
    /// it creates.
    pub async fn open(
        system: System,
        member: SocketAddr,
        service: &str,
    ) -> Result<ProviderHost, String> {
        Ok(match system {
            System::Rmif => ProviderHost::Rmif(rmif::ProviderHost::open(member, service).await?),
            System::Etcd => {
                ProviderHost::Etcd(Box::new(etcd::ProviderHost::open(member, service).await?))
            }
            System::Zk => ProviderHost::Zk(zookeeper::ProviderHost::open(member, service).await?),
        })
    }

    /// Creates the provider node of `addr` (returns once the registry acknowledged it).
    pub async fn announce(&self, addr: SocketAddr) -> Result<(), String> {
        match self {
            ProviderHost::Rmif(host) => host.announce(addr).await,
            ProviderHost::Etcd(host) => host.announce(addr).await,
            ProviderHost::Zk(host) => host.announce(addr).await,
        }
    }

    /// Deletes the provider node of `addr`.
    pub async fn withdraw(&self, addr: SocketAddr) -> Result<(), String> {
        match self {
            ProviderHost::Rmif(host) => host.withdraw(addr).await,
            ProviderHost::Etcd(host) => host.withdraw(addr).await,
            ProviderHost::Zk(host) => host.withdraw(addr).await,
        }
    }

    /// How many consumers have registered themselves under the service (`None` where consumers
    /// do not register: etcd).
    pub async fn registered_consumers(&self) -> Result<Option<usize>, String> {
        match self {
            ProviderHost::Rmif(host) => host.registered_consumers().await.map(Some),
            ProviderHost::Etcd(_) => Ok(None),
            ProviderHost::Zk(host) => host.registered_consumers().await.map(Some),
        }
    }

    /// Waits until `count` consumers are registered (at once where they do not register);
    /// false if that takes longer than the bench's hang limit.
    pub async fn await_consumers(&self, count: usize) -> bool {
        let wait = async {
            loop {
                match self.registered_consumers().await {
                    Ok(None) => return,
                    Ok(Some(registered)) if registered == count => return,
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        };
        tokio::time::timeout(HANG, wait).await.is_ok()
    }

    /// Ends the session (its provider nodes go with it).
    pub async fn close(self) {
        match self {
            ProviderHost::Rmif(host) => host.close().await,
            ProviderHost::Etcd(host) => (*host).close().await,
            ProviderHost::Zk(host) => host.close(),
        }
    }
}

/// A consumer following one service's providers through a client (and session) of its own.
pub enum Consumer {
    Rmif(rmif::Consumer),
    Etcd(Box<etcd::Consumer>),
    Zk(zookeeper::Consumer),
}

impl Consumer {
    /// Consumer number `id` of the service named `service`, through `member`; returns once it
    /// has a first list.
    pub async fn start(
        system: System,
        member: SocketAddr,
        service: &str,
        id: usize,
    ) -> Result<Consumer, String> {
        Ok(match system {
            System::Rmif => Consumer::Rmif(rmif::Consumer::start(member, service, id).await?),
            System::Etcd => Consumer::Etcd(Box::new(etcd::Consumer::start(member, service).await?)),
            System::Zk => Consumer::Zk(zookeeper::Consumer::start(member, service, id).await?),
        })
    }

    /// Whether the provider at `addr` is in the consumer's list.
    pub fn holds(&self, addr: SocketAddr) -> bool {
        match self {
            Consumer::Rmif(consumer) => consumer.holds(addr),
            Consumer::Etcd(consumer) => consumer.holds(addr),
            Consumer::Zk(consumer) => consumer.holds(addr),
        }
    }

    /// How many providers the consumer's list holds.
    pub fn len(&self) -> usize {
        match self {
            Consumer::Rmif(consumer) => consumer.len(),
            Consumer::Etcd(consumer) => consumer.len(),
            Consumer::Zk(consumer) => consumer.len(),
        }
    }

    /// Waits until the list may have changed (it has, as far as the system says).
    pub async fn changed(&mut self) -> Result<(), String> {
        match self {
            Consumer::Rmif(consumer) => consumer.changed().await,
            Consumer::Etcd(consumer) => consumer.changed().await,
            Consumer::Zk(consumer) => consumer.changed().await,
        }
    }

    /// Follows the list until `done` says it is as expected; an error past the hang limit.
    pub async fn wait_until(&mut self, done: impl Fn(&Consumer) -> bool) -> Result<(), String> {
        let wait = async {
            while !done(self) {
                self.changed().await?;
            }
            Ok(())
        };
        tokio::time::timeout(HANG, wait)
            .await
            .unwrap_or_else(|_| Err(format!("the list did not get there within {HANG:?}")))
    }

    /// Stops following and ends the consumer's session (its registration goes with it).
    pub async fn close(self) {
        match self {
            Consumer::Rmif(consumer) => consumer.close().await,
            Consumer::Etcd(_) | Consumer::Zk(_) => {}
        }
    }
}
