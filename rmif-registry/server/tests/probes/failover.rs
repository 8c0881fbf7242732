//! Probing survives the leader: members are processes, the leader is SIGKILLed.

use std::time::Duration;

use rmif_testkit::cluster::{Cluster, Settings};
use rmif_testkit::proxy::{Link, LinkMode};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_goes_on_probing_after_the_leader_is_killed() {
    let settings = Settings {
        extra: "Tick_time=150\nAgain_time=3\nMonitor_log=true\n".to_owned(),
        ..Settings::default()
    };
    let mut cluster = Cluster::start(3, settings).await;
    let members = cluster.servers();
    let client = cluster.client();
    let provider = healthy_provider().await;
    let first = Link::start(provider.local_addr()).await;
    let second = Link::start(provider.local_addr()).await;
    let counted = Counting::start(provider.local_addr()).await;
    let _first = announce(&members, first.addr).await;
    let _second = announce(&members, second.addr).await;
    let _counted = announce(&members, counted.addr).await;

    // Only the leader probes, over one connection: three members, many probes, one connection.
    eventually("probes reach the provider", Duration::from_secs(10), || {
        let accepted = counted.accepted();
        async move { (accepted > 0).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(150) * 8).await;
    assert_eq!(counted.accepted(), 1, "connections to one provider");

    // The first leader probes: a port that stops answering is marked.
    first.set(LinkMode::Drop);
    until_unavailable(&client, first.addr, Duration::from_secs(15)).await;

    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    cluster.kill(leader);
    // The members still running agree on a leader, necessarily another one.
    let next = cluster.wait_for_leader(Duration::from_secs(30)).await;
    assert_ne!(next, leader);

    // The new leader takes the mark over from the tree and clears it when the port answers,
    // and marks a provider that goes down only now.
    first.set(LinkMode::Pass);
    until_available(&client, first.addr, Duration::from_secs(20)).await;
    second.set(LinkMode::Drop);
    let down = until_unavailable(&client, second.addr, Duration::from_secs(20)).await;
    assert!(!down.reason.is_empty());
    // The new leader opened its own connection; the dead one's is gone with it.
    assert_eq!(counted.accepted(), 2, "connections to one provider");
    // With Monitor_log, the new leader logged the alert.
    let log = eventually(
        "the alert in the leader's log",
        Duration::from_secs(5),
        || {
            let log = std::fs::read_to_string(&cluster.members[(next - 1) as usize].log).ok();
            async move {
                log.filter(|log| {
                    log.lines().any(|line| {
                        line.contains("WARN")
                            && line.contains("provider unavailable")
                            && line.contains(&second.addr.to_string())
                    })
                })
            }
        },
    )
    .await;
    assert!(log.contains("probes.Ping"), "the alert names the service");
    let kept = rmif_registry::discovery::alerts(&client).await.unwrap();
    assert!(
        kept.iter().any(|a| a.address == second.addr.to_string()),
        "{kept:?}"
    );
}
