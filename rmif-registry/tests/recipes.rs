//! The coordination recipes against a real registry member: a fair lock's order, fencing
//! tokens and release by a holder cut off; an election's succession, and a leader cut off from
//! the registry giving up before anyone else leads; a config value's compare-and-set, pushes,
//! rejected values and catching up after a cut; a session's atomic multi.

use std::sync::Arc;
use std::time::Duration;

use rmif_registry::recipes::election::{Election, Leadership};
use rmif_registry::recipes::lock::{FairLock, LOCKS_PATH};
use rmif_registry::{Consistency, RegistryClient, Session};
use rmif_registry_server::{RegistryConfig, RegistryServer};
use rmif_testkit::proxy::{Link, LinkMode};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Generous bound for anything that should happen "soon".
const SOON: Duration = Duration::from_secs(10);

struct Registry {
    member: RegistryServer,
    _data: tempfile::TempDir,
}

async fn registry() -> Registry {
    let data = tempfile::tempdir().unwrap();
    let member = RegistryServer::start(RegistryConfig::single(
        "127.0.0.1:0".parse().unwrap(),
        data.path(),
    ))
    .await
    .expect("registry starts");
    Registry {
        member,
        _data: data,
    }
}

impl Registry {
    fn client(&self) -> RegistryClient {
        RegistryClient::connect(&[self.member.client_addr()])
    }
}

async fn session(client: &RegistryClient, timeout_ms: u64) -> Arc<Session> {
    Arc::new(
        client
            .open_session(Duration::from_millis(timeout_ms))
            .await
            .expect("session"),
    )
}

/// Number of requests (held or waiting) of lock `name`.
async fn requests(client: &RegistryClient, name: &str) -> usize {
    client
        .children(&format!("{LOCKS_PATH}/{name}"), Consistency::Linearizable)
        .await
        .expect("lock node")
        .children
        .len()
}

async fn until_requests(client: &RegistryClient, name: &str, count: usize) {
    let deadline = Instant::now() + SOON;
    while requests(client, name).await != count {
        assert!(
            Instant::now() < deadline,
            "lock {name} never had {count} requests"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_lock_is_granted_in_request_order_with_growing_tokens() {
    let registry = registry().await;
    let client = registry.client();
    let holder = FairLock::new(session(&client, 5000).await, "fifo")
        .await
        .unwrap();
    let held = holder.lock().await.unwrap();
    let (granted, mut grants) = mpsc::unbounded_channel();
    for waiter in 1..=4 {
        let lock = FairLock::new(session(&client, 5000).await, "fifo")
            .await
            .unwrap();
        let granted = granted.clone();
        tokio::spawn(async move {
            let guard = lock.lock().await.unwrap();
            granted.send((waiter, guard.token())).unwrap();
            guard.unlock().await.unwrap();
        });
        // The next waiter asks only once this one is in line.
        until_requests(&client, "fifo", waiter + 1).await;
    }
    let mut last_token = held.token();
    held.unlock().await.unwrap();
    for expected in 1..=4 {
        let (waiter, token) = tokio::time::timeout(SOON, grants.recv())
            .await
            .expect("granted in time")
            .unwrap();
        assert_eq!(waiter, expected, "served out of order");
        assert!(token > last_token, "token {token} after {last_token}");
        last_token = token;
    }
    until_requests(&client, "fifo", 0).await;
}

#[tokio::test]
async fn try_lock_and_a_timed_out_wait_leave_no_request_behind() {
    let registry = registry().await;
    let client = registry.client();
    let lock = FairLock::new(session(&client, 5000).await, "busy")
        .await
        .unwrap();
    let other = FairLock::new(session(&client, 5000).await, "busy")
        .await
        .unwrap();
    let held = lock.lock().await.unwrap();
    assert!(other.try_lock().await.unwrap().is_none());
    assert!(
        other
            .lock_timeout(Duration::from_millis(200))
            .await
            .unwrap()
            .is_none()
    );
    // A waiter whose caller gives up (the future dropped) withdraws too.
    let waiting = tokio::spawn({
        let other = other.clone();
        async move { other.lock().await }
    });
    until_requests(&client, "busy", 2).await;
    waiting.abort();
    until_requests(&client, "busy", 1).await;
    held.unlock().await.unwrap();
    let next = other.try_lock().await.unwrap().expect("free now");
    drop(next);
    until_requests(&client, "busy", 0).await;
}

#[tokio::test]
async fn a_holder_cut_off_from_the_registry_releases_the_lock_when_its_session_expires() {
    let registry = registry().await;
    let client = registry.client();
    // The holder reaches the registry through a proxy that will cut it off, as if its
    // process had died: no unlock, and its heartbeats stop arriving.
    let link = Link::start(registry.member.client_addr()).await;
    let holder_client = RegistryClient::connect(&[link.addr]);
    let held = FairLock::new(session(&holder_client, 1000).await, "crash")
        .await
        .unwrap()
        .lock()
        .await
        .unwrap();
    let first_token = held.token();
    link.set(LinkMode::Drop);
    let survivor = FairLock::new(session(&client, 5000).await, "crash")
        .await
        .unwrap();
    let guard = tokio::time::timeout(SOON, survivor.lock())
        .await
        .expect("granted once the holder's session expired")
        .unwrap();
    assert!(guard.token() > first_token);
    drop(held);
}

#[tokio::test]
async fn leadership_passes_in_line_and_ends_when_the_leader_resigns() {
    let registry = registry().await;
    let client = registry.client();
    let mut candidates = Vec::new();
    for id in ["a", "b", "c"] {
        let election = Election::new(session(&client, 5000).await, "succession")
            .await
            .unwrap();
        candidates.push(election.campaign(id).await.unwrap());
    }
    let first = tokio::time::timeout(SOON, candidates[0].leading())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(candidates[1].state(), Leadership::Waiting);
    assert_eq!(candidates[2].state(), Leadership::Waiting);
    assert_eq!(
        Election::leader(&client, "succession")
            .await
            .unwrap()
            .as_deref(),
        Some("a")
    );

    // b gives up its place in line: c comes after a.
    let b = candidates.remove(1);
    b.resign().await.unwrap();
    let a = candidates.remove(0);
    a.resign().await.unwrap();
    let third = tokio::time::timeout(SOON, candidates[0].leading())
        .await
        .unwrap()
        .unwrap();
    assert!(third > first, "tokens grow with each leader");
    assert_eq!(
        Election::leader(&client, "succession")
            .await
            .unwrap()
            .as_deref(),
        Some("c")
    );
}

#[tokio::test]
async fn a_leader_cut_off_from_the_registry_stops_leading_before_the_next_one_starts() {
    let registry = registry().await;
    let direct = registry.client();
    // The leader reaches the registry through a proxy that will cut it off.
    let link = Link::start(registry.member.client_addr()).await;
    let cut_off = RegistryClient::connect(&[link.addr]);
    let election = Election::new(session(&cut_off, 1500).await, "partition")
        .await
        .unwrap();
    let mut leader = election.campaign("cut-off").await.unwrap();
    tokio::time::timeout(SOON, leader.leading())
        .await
        .unwrap()
        .unwrap();
    let mut next = Election::new(session(&direct, 5000).await, "partition")
        .await
        .unwrap()
        .campaign("next")
        .await
        .unwrap();

    link.set(LinkMode::Drop);
    let (lost_at, reason) = {
        let mut changes = leader.changes();
        let lost = tokio::time::timeout(SOON, async {
            changes
                .wait_for(|s| matches!(s, Leadership::Lost { .. }))
                .await
                .unwrap()
                .clone()
        })
        .await
        .expect("the cut-off leader gives up");
        (Instant::now(), format!("{lost:?}"))
    };
    tokio::time::timeout(SOON, next.leading())
        .await
        .expect("the next candidate leads once the registry expired the old session")
        .unwrap();
    let next_at = Instant::now();
    // Given up for the suspension, by its own clock, not for some error of the watch.
    assert!(reason.contains("no contact with the registry"), "{reason}");
    assert!(
        lost_at < next_at,
        "the old leader gave up at {lost_at:?}, after the next one led at {next_at:?} ({reason})"
    );
    drop(leader);
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Limits {
    max_connections: u32,
}

fn limits(max_connections: u32) -> Limits {
    Limits { max_connections }
}

#[tokio::test]
async fn a_config_value_is_published_with_compare_and_set_and_pushed_in_order() {
    use rmif_registry::RegistryError;
    use rmif_registry::recipes::config::ConfigError;
    use rmif_registry::recipes::config::{ConfigCenter, Expect};

    let registry = registry().await;
    let config = ConfigCenter::new(registry.client());
    let mut subscription = config.subscribe::<Limits>("pushed").await.unwrap();
    assert!(subscription.current().is_none());

    let v0 = config
        .publish("pushed", &limits(1), Expect::Absent)
        .await
        .unwrap();
    assert!(matches!(
        config.publish("pushed", &limits(9), Expect::Absent).await,
        Err(ConfigError::Registry(RegistryError::NodeExists { .. }))
    ));
    let v1 = config
        .publish("pushed", &limits(2), Expect::Version(v0))
        .await
        .unwrap();
    assert!(matches!(
        config
            .publish("pushed", &limits(9), Expect::Version(v0))
            .await,
        Err(ConfigError::Registry(RegistryError::BadVersion { .. }))
    ));
    config
        .publish("pushed", &limits(3), Expect::Any)
        .await
        .unwrap();
    assert_eq!(v1, v0 + 1);

    // The subscriber may skip values published in a burst, but never goes back.
    let mut seen = Vec::new();
    while seen.last() != Some(&3) {
        let value = tokio::time::timeout(SOON, subscription.changed())
            .await
            .expect("pushed in time")
            .expect("still published");
        seen.push(value.value.max_connections);
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let read = config.get::<Limits>("pushed").await.unwrap().unwrap();
    assert_eq!((read.value, read.version), (limits(3), v1 + 1));
}

#[tokio::test]
async fn a_value_that_does_not_read_is_rejected_and_the_last_good_one_kept() {
    use rmif_registry::recipes::config::{ConfigCenter, Expect};

    let registry = registry().await;
    let config = ConfigCenter::new(registry.client());
    config
        .publish("typed", &limits(5), Expect::Absent)
        .await
        .unwrap();
    let mut subscription = config.subscribe::<Limits>("typed").await.unwrap();
    config
        .publish("typed", &"not limits at all", Expect::Any)
        .await
        .unwrap();
    let deadline = Instant::now() + SOON;
    while subscription.rejected().is_none() {
        assert!(
            Instant::now() < deadline,
            "the bad value was never reported"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(subscription.current().unwrap().value, limits(5));
    config
        .publish("typed", &limits(6), Expect::Any)
        .await
        .unwrap();
    let value = tokio::time::timeout(SOON, subscription.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value.value, limits(6));
    assert!(subscription.rejected().is_none());
}

#[tokio::test]
async fn a_subscriber_cut_off_catches_up_with_the_newest_value_when_it_reconnects() {
    use rmif_registry::recipes::config::{ConfigCenter, Expect};

    let registry = registry().await;
    let publisher = ConfigCenter::new(registry.client());
    publisher
        .publish("cut", &limits(1), Expect::Absent)
        .await
        .unwrap();
    let link = Link::start(registry.member.client_addr()).await;
    let subscriber = ConfigCenter::new(RegistryClient::connect(&[link.addr]));
    let mut subscription = subscriber.subscribe::<Limits>("cut").await.unwrap();
    assert_eq!(subscription.current().unwrap().value, limits(1));

    link.set(LinkMode::Drop);
    for n in 2..=4 {
        publisher
            .publish("cut", &limits(n), Expect::Any)
            .await
            .unwrap();
    }
    link.set(LinkMode::Pass);
    let mut seen = vec![1];
    while seen.last() != Some(&4) {
        let value = tokio::time::timeout(SOON, subscription.changed())
            .await
            .expect("caught up after the reconnect")
            .expect("still published");
        seen.push(value.value.max_connections);
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

#[tokio::test]
async fn a_multi_in_a_session_creates_ephemeral_nodes_atomically() {
    use rmif_registry::Op;

    let registry = registry().await;
    let client = registry.client();
    let owner = client.open_session(Duration::from_secs(5)).await.unwrap();
    let create = |path: &str, ephemeral| Op::Create {
        path: path.to_owned(),
        data: b"x".to_vec(),
        ephemeral,
        sequential: false,
    };
    // A failed check applies nothing, the ephemeral create included.
    let refused = owner
        .multi(vec![
            create("/claimed", true),
            Op::Check {
                path: "/nowhere".to_owned(),
                version: 0,
            },
        ])
        .await;
    assert!(refused.is_err());
    assert!(
        client
            .stat("/claimed", Consistency::Linearizable)
            .await
            .is_err()
    );

    let applied = owner
        .multi(vec![create("/claimed", true), create("/record", false)])
        .await
        .unwrap();
    assert_eq!(applied.results.len(), 2);
    let claimed = client
        .stat("/claimed", Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(claimed.stat.ephemeral_owner, owner.id());
    // The session's end takes the ephemeral node only.
    owner.close().await.unwrap();
    assert!(
        client
            .stat("/claimed", Consistency::Linearizable)
            .await
            .is_err()
    );
    assert!(
        client
            .stat("/record", Consistency::Linearizable)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn readers_share_a_writer_is_alone_and_a_reader_behind_a_waiting_writer_waits() {
    use rmif_registry::recipes::lock::ReadWriteLock;

    let registry = registry().await;
    let client = registry.client();
    let lock = ReadWriteLock::new(session(&client, 5000).await, "catalog")
        .await
        .unwrap();
    let first = lock.read().await.unwrap();
    let second = tokio::time::timeout(SOON, lock.read())
        .await
        .expect("readers share")
        .unwrap();
    let (granted, mut grants) = mpsc::unbounded_channel();
    let writer = tokio::spawn({
        let (lock, granted) = (lock.clone(), granted.clone());
        async move {
            let guard = lock.write().await.unwrap();
            granted.send(("writer", guard.token())).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            guard.unlock().await.unwrap();
        }
    });
    until_requests(&client, "catalog", 3).await;
    let late_reader = tokio::spawn({
        let lock = lock.clone();
        async move {
            let guard = lock.read().await.unwrap();
            granted.send(("late reader", guard.token())).unwrap();
            guard.unlock().await.unwrap();
        }
    });
    until_requests(&client, "catalog", 4).await;
    // Neither the writer (readers hold it) nor the reader behind the writer goes yet.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), grants.recv())
            .await
            .is_err()
    );
    first.unlock().await.unwrap();
    second.unlock().await.unwrap();
    let (who, writer_token) = tokio::time::timeout(SOON, grants.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(who, "writer");
    let (who, reader_token) = tokio::time::timeout(SOON, grants.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(who, "late reader");
    assert!(reader_token > writer_token);
    writer.await.unwrap();
    late_reader.await.unwrap();
}

#[tokio::test]
async fn a_scheduled_task_runs_each_tick_once_and_moves_when_its_process_is_cut_off() {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use rmif_registry::recipes::schedule::Schedule;

    let registry = registry().await;
    let runs: Arc<Mutex<Vec<(u64, &'static str)>>> = Arc::default();
    let schedule =
        Schedule::every(Duration::from_millis(150)).session_timeout(Duration::from_millis(1000));
    let start = |client: RegistryClient, id: &'static str| {
        let runs = runs.clone();
        schedule.start(client, "report", id, move |tick| {
            let runs = runs.clone();
            async move { runs.lock().unwrap().push((tick, id)) }
        })
    };
    // The first process reaches the registry through a proxy that will cut it off.
    let link = Link::start(registry.member.client_addr()).await;
    let first = start(RegistryClient::connect(&[link.addr]), "first");
    let count = |id: &str| {
        runs.lock()
            .unwrap()
            .iter()
            .filter(|(_, by)| *by == id)
            .count()
    };
    let deadline = Instant::now() + SOON;
    while count("first") < 3 {
        assert!(
            Instant::now() < deadline,
            "the first process never ran the task"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = start(registry.client(), "second");
    let third = start(registry.client(), "third");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        count("second") + count("third"),
        0,
        "only the leader runs the task"
    );

    link.set(LinkMode::Drop);
    let deadline = Instant::now() + SOON;
    while count("second") + count("third") < 3 {
        assert!(
            Instant::now() < deadline,
            "no other process took the task over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.stop().await;
    third.stop().await;
    drop(first);
    let runs = runs.lock().unwrap().clone();
    let ticks: HashSet<u64> = runs.iter().map(|(tick, _)| *tick).collect();
    assert_eq!(ticks.len(), runs.len(), "a tick ran twice: {runs:?}");
    assert!(
        runs.windows(2).all(|w| w[0].0 < w[1].0),
        "ticks out of order: {runs:?}"
    );
}

#[tokio::test]
async fn a_lock_request_whose_answer_is_lost_is_retried_without_leaving_an_orphan() {
    let registry = registry().await;
    let direct = registry.client();
    let link = Link::start(registry.member.client_addr()).await;
    let through_proxy = RegistryClient::connect(&[link.addr]);
    let held_by = session(&through_proxy, 5000).await;
    let mut states = held_by.states();
    let suspended = tokio::spawn(async move {
        states
            .wait_for(|s| *s == rmif_registry::SessionState::Suspended)
            .await
            .is_ok()
    });
    let lock = FairLock::new(held_by, "protected").await.unwrap();
    // Every chunk now takes half a second each way: the request reaches the registry, and
    // the connection is cut while the answer is on its way back.
    link.set(LinkMode::Delay(Duration::from_millis(500)));
    let waiting = tokio::spawn(async move { lock.lock().await });
    let deadline = Instant::now() + SOON;
    while requests(&direct, "protected").await == 0 {
        assert!(Instant::now() < deadline, "the request never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    link.set(LinkMode::Drop);
    tokio::time::sleep(Duration::from_millis(200)).await;
    link.set(LinkMode::Pass);
    let guard = tokio::time::timeout(SOON, waiting)
        .await
        .expect("granted after the retry")
        .unwrap()
        .expect("the retried request is answered");
    assert!(
        suspended.await.unwrap(),
        "the cut never reached the session: nothing was retried"
    );
    // The retry was recognised as the same request: one node, the one granted.
    assert_eq!(requests(&direct, "protected").await, 1);
    let only = direct
        .children(
            &format!("{LOCKS_PATH}/protected"),
            Consistency::Linearizable,
        )
        .await
        .unwrap()
        .children;
    let granted = direct
        .get(
            &format!("{LOCKS_PATH}/protected/{}", only[0]),
            Consistency::Linearizable,
        )
        .await
        .unwrap();
    assert_eq!(granted.stat.czxid, guard.token());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_follows_the_value_across_a_member_failover() {
    use rmif_registry::recipes::config::{ConfigCenter, Expect};
    use rmif_testkit::local::LocalCluster;

    let mut cluster = LocalCluster::start(3).await;
    let publisher = ConfigCenter::new(cluster.client());
    publisher
        .publish("failover", &limits(1), Expect::Absent)
        .await
        .unwrap();
    // The subscriber's client talks to member 1 first: its watch is there.
    let mut subscription = ConfigCenter::new(cluster.client())
        .subscribe::<Limits>("failover")
        .await
        .unwrap();
    cluster.stop(1).await;
    for n in 2..=4 {
        tokio::time::timeout(SOON, publisher.publish("failover", &limits(n), Expect::Any))
            .await
            .expect("published after the failover")
            .unwrap();
    }
    let mut seen = vec![1];
    while seen.last() != Some(&4) {
        let value = tokio::time::timeout(SOON, subscription.changed())
            .await
            .expect("followed after the failover")
            .expect("still published");
        seen.push(value.value.max_connections);
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

#[tokio::test]
async fn a_holder_whose_request_is_deleted_by_hand_learns_it_has_lost_the_lock() {
    let registry = registry().await;
    let client = registry.client();
    let guard = FairLock::new(session(&client, 5000).await, "by-hand")
        .await
        .unwrap()
        .lock()
        .await
        .unwrap();
    let node = client
        .children(&format!("{LOCKS_PATH}/by-hand"), Consistency::Linearizable)
        .await
        .unwrap()
        .children
        .remove(0);
    let path = format!("{LOCKS_PATH}/by-hand/{node}");
    let (reason, deleted) = tokio::join!(
        tokio::time::timeout(SOON, guard.lost()),
        client.delete(&path, None)
    );
    deleted.unwrap();
    assert!(reason.expect("noticed").contains("deleted"));
}

#[tokio::test]
async fn a_session_shared_by_recipes_is_closed_by_any_holder_and_its_nodes_go() {
    let registry = registry().await;
    let client = registry.client();
    let shared = session(&client, 5000).await;
    let held = FairLock::new(shared.clone(), "shared")
        .await
        .unwrap()
        .lock()
        .await
        .unwrap();
    // Closing through the Arc, while the guard still holds its own handle.
    shared.close().await.unwrap();
    until_requests(&client, "shared", 0).await;
    assert_eq!(shared.state(), rmif_registry::SessionState::Closed);
    drop(held);
}
