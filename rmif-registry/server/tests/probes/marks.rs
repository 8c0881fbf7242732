//! One in-process member probing providers behind test sockets: a proxy that stops forwarding,
//! a port that answers garbage, one that never answers, one that refuses.

use std::net::SocketAddr;
use std::time::Duration;

use rmif_core::Discovery;
use rmif_registry::RegistryClient;
use rmif_registry::discovery::{AlertKind, RegistryDiscovery, alerts};
use rmif_registry_server::{RegistryConfig, RegistryServer};
use rmif_testkit::proxy::{Link, LinkMode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::*;

const TICK: Duration = Duration::from_millis(150);
const AGAIN: u32 = 3;

async fn member(dir: &std::path::Path) -> RegistryServer {
    member_with(dir, AGAIN).await
}

async fn member_with(dir: &std::path::Path, again: u32) -> RegistryServer {
    let config = RegistryConfig {
        probe_tick: TICK,
        probe_again: again,
        monitor_log: true,
        ..RegistryConfig::single("127.0.0.1:0".parse().unwrap(), dir)
    };
    RegistryServer::start(config).await.expect("member")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_whose_port_stops_answering_is_marked_unavailable_then_available_again() {
    let dir = tempfile::tempdir().unwrap();
    let member = member(dir.path()).await;
    let members = [member.client_addr()];
    let client = RegistryClient::connect(&members);
    let provider = provider_with(rmif_core::ProviderConfig::loopback(), 1).await;
    // The provider is announced at the proxy's address: that is the one probed.
    let counted = Counting::start(provider.local_addr()).await;
    let proxy = Link::start(counted.addr).await;
    let _registration = announce(&members, proxy.addr).await;
    let other = provider_with(rmif_core::ProviderConfig::loopback(), 2).await;
    let _other = announce(&members, other.local_addr()).await;
    let discovery = RegistryDiscovery::new(RegistryClient::connect(&members));
    let mut list = discovery.subscribe(&ping_key());
    let consumer: PingConsumer = rmif_core::Client::new(
        rmif_core::ConsumerConfig::default(),
        RegistryDiscovery::new(RegistryClient::connect(&members)),
    )
    .stub();
    let listed = |list: &tokio::sync::watch::Receiver<rmif_core::ProviderSet>| {
        list.borrow().providers.iter().any(|p| p.addr == proxy.addr)
    };
    list.wait_for(|set| set.resolved).await.unwrap();
    assert!(listed(&list), "a healthy provider is routable");
    // Probed for a while, still healthy: never marked.
    tokio::time::sleep(TICK * (AGAIN + 2)).await;
    assert_eq!(mark(&client, proxy.addr).await, Some(None));
    assert_eq!(
        counted.accepted(),
        1,
        "one long-lived connection, not one per probe"
    );

    // The port stops answering; the provider's session goes on.
    proxy.set(LinkMode::Delay(Duration::from_secs(600)));
    let stopped = Instant::now();
    let down = until_unavailable(&client, proxy.addr, Duration::from_secs(10)).await;
    let took = stopped.elapsed();
    assert!(
        took >= TICK * (AGAIN - 1),
        "marked after {took:?}, before {AGAIN} probes could fail"
    );
    assert!(down.reason.contains("no answer within"), "{down:?}");
    eventually("consumers leave it out", Duration::from_secs(5), || {
        let gone = !listed(&list);
        async move { gone.then_some(()) }
    })
    .await;
    // A consumer's calls now all go to the other provider, at once.
    eventually("calls avoid it", Duration::from_secs(5), || async {
        let answered = tokio::time::timeout(Duration::from_secs(2), async {
            let mut answers = Vec::new();
            for _ in 0..20 {
                answers.push(consumer.ping().await.ok()?);
            }
            Some(answers)
        })
        .await
        .ok()
        .flatten()?;
        answered.iter().all(|n| *n == 2).then_some(())
    })
    .await;

    proxy.set(LinkMode::Pass);
    until_available(&client, proxy.addr, Duration::from_secs(10)).await;
    eventually(
        "consumers route to it again",
        Duration::from_secs(5),
        || {
            let back = listed(&list);
            async move { back.then_some(()) }
        },
    )
    .await;

    let kept = eventually("both alerts kept", Duration::from_secs(5), || async {
        let kept = alerts(&client).await.ok()?;
        (kept.len() >= 2).then_some(kept)
    })
    .await;
    assert_eq!(kept[0].kind, AlertKind::Unavailable);
    assert_eq!(kept[0].address, proxy.addr.to_string());
    assert_eq!(kept[0].service, "probes.Ping");
    assert_eq!(kept[1].kind, AlertKind::Available);
    assert!(
        kept[1].down_ms > 0 && kept[1].reason.contains("no answer"),
        "{:?}",
        kept[1]
    );
    drop(list);
    member.shutdown().await;
}

/// A port that accepts connections and answers each with `reply` (if any), then keeps them
/// open without reading.
async fn impostor(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            if !reply.is_empty() {
                let _ = socket.write_all(reply).await;
            }
            held.push(socket);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_that_do_not_speak_rmif_are_marked_with_the_reason_and_a_healthy_neighbour_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let member = member(dir.path()).await;
    let members = [member.client_addr()];
    let client = RegistryClient::connect(&members);
    let garbage = impostor(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
    let silent = impostor(b"").await;
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let provider = healthy_provider().await;
    let healthy = provider.local_addr();
    let _held = [
        announce(&members, garbage).await,
        announce(&members, silent).await,
        announce(&members, refused).await,
        announce(&members, healthy).await,
    ];

    let limit = Duration::from_secs(10);
    let down = until_unavailable(&client, garbage, limit).await;
    assert!(down.reason.contains("not an rmif answer"), "{down:?}");
    let down = until_unavailable(&client, silent, limit).await;
    assert!(down.reason.contains("no answer within"), "{down:?}");
    let down = until_unavailable(&client, refused, limit).await;
    assert!(down.reason.contains("cannot connect"), "{down:?}");

    // Twenty more ports that never answer: probed one after the other, each taking its whole
    // `Tick_time`, they would delay every round of probes by 3 s.
    let mut hung = Vec::new();
    for _ in 0..20 {
        let silent = impostor(b"").await;
        hung.push(announce(&members, silent).await);
    }

    // Next to them, the healthy provider stays available all along, and a provider that fails
    // now is still marked on time: the hung ones stall nothing.
    assert_eq!(mark(&client, healthy).await, Some(None));
    let proxy = Link::start(healthy).await;
    let _proxied = announce(&members, proxy.addr).await;
    tokio::time::sleep(TICK * (AGAIN + 2)).await;
    assert_eq!(mark(&client, proxy.addr).await, Some(None));
    assert_eq!(mark(&client, healthy).await, Some(None));
    proxy.set(LinkMode::Drop);
    let stopped = Instant::now();
    let down = until_unavailable(&client, proxy.addr, limit).await;
    // About `Tick_time × Again_time` (0.45 s); nine seconds if hung probes held up the others.
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "took {:?}",
        stopped.elapsed()
    );
    assert!(!down.reason.is_empty());
    assert_eq!(
        version(&client, healthy).await,
        0,
        "the healthy one was marked"
    );
    member.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mark_keeps_the_providers_own_data_and_goes_with_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let member = member(dir.path()).await;
    let members = [member.client_addr()];
    let client = RegistryClient::connect(&members);
    let silent = impostor(b"").await;
    let registration = announce(&members, silent).await;
    until_unavailable(&client, silent, Duration::from_secs(10)).await;
    // The provider's side rewrites its node (a new weight, without the mark): its data is
    // kept, and the leader marks it again.
    let reweighed = ProviderMetadata {
        weight: 5,
        ..ProviderMetadata::default()
    };
    client
        .set(&node_of(silent), &reweighed.to_json(), None)
        .await
        .unwrap();
    let node = eventually("marked again", Duration::from_secs(10), || async {
        let node = client
            .get(&node_of(silent), rmif_registry::Consistency::Linearizable)
            .await
            .ok()?;
        let metadata = ProviderMetadata::parse(&node.data).ok()?;
        metadata.unavailable.is_some().then_some(metadata)
    })
    .await;
    assert_eq!(node.weight, 5, "the provider's own data was overwritten");
    registration.withdraw().await;
    eventually("the node is gone", Duration::from_secs(5), || async {
        mark(&client, silent).await.is_none().then_some(())
    })
    .await;
    // Announced again under a new session, it starts unmarked and is marked again.
    let _again = announce(&members, silent).await;
    until_unavailable(&client, silent, Duration::from_secs(10)).await;
    member.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_closes_idle_connections_between_probes_is_not_marked() {
    let dir = tempfile::tempdir().unwrap();
    // A single failed probe would mark it.
    let member = member_with(dir.path(), 1).await;
    let members = [member.client_addr()];
    let client = RegistryClient::connect(&members);
    // It closes a connection after 2 intervals of 30 ms without a frame: between two probes,
    // which find it closed and connect again within the probe.
    let provider = provider_with(
        rmif_core::ProviderConfig {
            tick: Duration::from_millis(30),
            again: 2,
            ..rmif_core::ProviderConfig::loopback()
        },
        0,
    )
    .await;
    let counted = Counting::start(provider.local_addr()).await;
    let _registration = announce(&members, counted.addr).await;
    eventually("probes reconnect", Duration::from_secs(10), || {
        let accepted = counted.accepted();
        async move { (accepted >= 6).then_some(()) }
    })
    .await;
    // Never marked, not even for a moment: its node was never written.
    assert_eq!(
        version(&client, counted.addr).await,
        0,
        "marked and cleared"
    );
    member.shutdown().await;
}
