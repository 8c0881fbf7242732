//! The leader's probes of providers: marks written into the tree when a provider's port stops
//! answering (or never spoke rmif), cleared when it answers again, alerts kept, and probing
//! carried on by a new leader after the old one is SIGKILLed.

mod failover;
mod marks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rmif_core::{ProviderConfig, Server, ServerHandle, ServiceKey};
use rmif_registry::discovery::{ProviderMetadata, Registration, Unavailable, providers_path};
use rmif_registry::{Consistency, RegistryClient, path};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

#[rmif_core::service(name = "probes.Ping")]
pub trait Ping {
    async fn ping(&self) -> Result<u32, rmif_core::Error>;
}

/// Answers `ping` with its own number.
struct Pong(u32);

impl Ping for Pong {
    async fn ping(&self) -> Result<u32, rmif_core::Error> {
        Ok(self.0)
    }
}

/// A provider that answers probes like any rmif provider.
async fn healthy_provider() -> ServerHandle {
    provider_with(ProviderConfig::loopback(), 0).await
}

async fn provider_with(config: ProviderConfig, number: u32) -> ServerHandle {
    Server::builder(config)
        .add_service(PingProvider::new(Pong(number)))
        .serve()
        .await
        .expect("provider")
}

fn ping_key() -> ServiceKey {
    ServiceKey::new("probes.Ping")
}

/// Announces a provider of `probes.Ping` at `addr` (whatever listens there), with a session
/// held by this process.
async fn announce(members: &[SocketAddr], addr: SocketAddr) -> Registration {
    let registration = Registration::announce(
        RegistryClient::connect(members),
        vec![(ping_key(), ProviderMetadata::default())],
        addr,
        Duration::from_secs(15),
    )
    .await
    .expect("announce");
    registration.announced().await;
    registration
}

fn node_of(addr: SocketAddr) -> String {
    path::join(&providers_path(&ping_key()), &addr.to_string())
}

/// The provider node's mark: `None` if the node is gone, else its `unavailable` field.
async fn mark(client: &RegistryClient, addr: SocketAddr) -> Option<Option<Unavailable>> {
    let node = client
        .get(&node_of(addr), Consistency::Linearizable)
        .await
        .ok()?;
    Some(
        ProviderMetadata::parse(&node.data)
            .expect("provider metadata")
            .unavailable,
    )
}

/// The data version of the provider node at `addr`: 0 while the leader never wrote a mark.
async fn version(client: &RegistryClient, addr: SocketAddr) -> u32 {
    client
        .get(&node_of(addr), Consistency::Linearizable)
        .await
        .expect("the provider node")
        .stat
        .version
}

/// Polls `check` until it returns `Some` or `limit` passes (then panics, naming `what`).
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the provider at `addr` is marked unavailable; returns the mark.
async fn until_unavailable(
    client: &RegistryClient,
    addr: SocketAddr,
    limit: Duration,
) -> Unavailable {
    eventually(&format!("{addr} marked unavailable"), limit, || async {
        mark(client, addr).await.flatten()
    })
    .await
}

/// Waits until the provider at `addr` is listed and not marked.
async fn until_available(client: &RegistryClient, addr: SocketAddr, limit: Duration) {
    eventually(&format!("{addr} available"), limit, || async {
        matches!(mark(client, addr).await, Some(None)).then_some(())
    })
    .await
}

/// A plain forwarder to `target` that counts the connections it accepted.
struct Counting {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Counting {
    async fn start(target: SocketAddr) -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Counting { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}
