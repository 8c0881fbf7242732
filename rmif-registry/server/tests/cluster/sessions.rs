//! Sessions, ephemeral nodes and watches across member and client failures.

use std::collections::BTreeSet;
use std::time::Duration;

use rmif_registry::ChangeKind;
use rmif_registry::api::{WatchMessage, WatchMode};
use rmif_registry::{
    Consistency, CreateMode, RegistryClient, RegistryError, SessionState, WatchOptions, Watcher,
};
use tokio::time::Instant;

use rmif_testkit::{Cluster, Settings};

const EPHEMERAL: CreateMode = CreateMode {
    ephemeral: true,
    sequential: false,
};

/// The next non-armed message, failing after `limit`.
async fn next_change(watcher: &mut Watcher, limit: Duration) -> WatchMessage {
    let deadline = Instant::now() + limit;
    loop {
        let message = tokio::time::timeout_at(deadline, watcher.next())
            .await
            .expect("a watch message within the limit")
            .expect("the watch is still open")
            .expect("no watch error");
        if !message.is_armed() {
            return message;
        }
    }
}

async fn wait_for_state(session: &rmif_registry::Session, wanted: SessionState, limit: Duration) {
    let mut states = session.states();
    let reached = tokio::time::timeout(limit, states.wait_for(|s| *s == wanted)).await;
    assert!(
        reached.is_ok(),
        "session never became {wanted:?}; it is {:?}",
        session.state()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_member_a_client_uses_keeps_its_session_ephemerals_and_watch() {
    let mut cluster = Cluster::start(3, Settings::default()).await;
    let setup = cluster.client();
    setup
        .create("/e", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let leader_addr = cluster.members[(leader - 1) as usize].client_addr;

    // The session and the watch both live on the leader, which is about to die.
    let client = cluster.client();
    client.prefer(leader_addr);
    let session = client.open_session(Duration::from_secs(3)).await.unwrap();
    assert_eq!(session.member(), leader_addr);
    session
        .create("/e/mine", b"alive", EPHEMERAL)
        .await
        .unwrap();
    let mut watcher = client.watch("/e", WatchMode::Recursive).await.unwrap();

    // Changes keep coming from another client throughout.
    let writer = cluster.client();
    let writes = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0..150 {
            let path = format!("/e/w{i:03}");
            match writer.create(&path, b"", CreateMode::PERSISTENT).await {
                Ok(_) => acked.push(path),
                Err(error) if error.is_indeterminate() => {
                    // Maybe applied: the watcher must have seen it if it exists.
                    if writer.get(&path, Consistency::Linearizable).await.is_ok() {
                        acked.push(path);
                    }
                }
                Err(error) => panic!("{path}: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(leader);

    wait_for_state(&session, SessionState::Reconnected, Duration::from_secs(10)).await;
    assert_ne!(
        session.member(),
        leader_addr,
        "the session moved to a surviving member"
    );
    let acked = writes.await.unwrap();

    // Every acknowledged create reached the watcher, in zxid order, with no gap or duplicate.
    let mut seen = BTreeSet::new();
    let mut last_zxid = 0;
    while seen.len() < acked.len() {
        let message = next_change(&mut watcher, Duration::from_secs(10)).await;
        assert!(
            message.zxid > last_zxid,
            "zxids go forward: {} after {last_zxid}",
            message.zxid
        );
        last_zxid = message.zxid;
        if let Some(nodes) = message.resync {
            seen.extend(
                nodes
                    .into_iter()
                    .map(|n| n.path)
                    .filter(|p| p.starts_with("/e/w")),
            );
        }
        for event in message.events {
            if event.kind == ChangeKind::Created && event.path.starts_with("/e/w") {
                assert!(
                    seen.insert(event.path.clone()),
                    "{} delivered twice",
                    event.path
                );
            }
        }
    }
    let acked: BTreeSet<String> = acked.into_iter().collect();
    assert!(
        acked.is_subset(&seen),
        "missing: {:?}",
        acked.difference(&seen).collect::<Vec<_>>()
    );

    // Well past its 3 s timeout, the session and its ephemeral node are alive.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_ne!(session.state(), SessionState::Expired);
    let reader = cluster.client();
    assert_eq!(
        reader
            .get("/e/mine", Consistency::Linearizable)
            .await
            .unwrap()
            .data,
        b"alive"
    );
    session
        .create("/e/still-mine", b"", EPHEMERAL)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_watchers_all_see_one_change() {
    let cluster = Cluster::start(3, Settings::default()).await;
    let writer = cluster.client();
    writer
        .create("/fan", b"0", CreateMode::PERSISTENT)
        .await
        .unwrap();
    // Spread over several connections and every member. Each client first catches up with the
    // create (as a ZooKeeper client would with `sync`): a member may not have applied it yet.
    let clients: Vec<RegistryClient> = (0..8).map(|_| cluster.client()).collect();
    for client in &clients {
        client.sync().await.unwrap();
    }
    let mut watchers = Vec::new();
    for i in 0..200 {
        watchers.push(
            clients[i % clients.len()]
                .watch("/fan", WatchMode::Data)
                .await
                .unwrap(),
        );
    }
    writer.set("/fan", b"1", None).await.unwrap();
    let seen = futures_util::future::join_all(
        watchers
            .iter_mut()
            .map(|w| async { next_change(w, Duration::from_secs(10)).await }),
    )
    .await;
    for message in &seen {
        assert_eq!(message.events.len(), 1);
        assert_eq!(message.events[0].kind, ChangeKind::DataChanged);
    }
    assert!(
        seen.windows(2).all(|w| w[0].zxid == w[1].zxid),
        "all saw the same change"
    );
}

/// Drains `watcher` until it reflects `final_zxid`; returns how many data changes it reported,
/// or `None` if a resync stood in for some. Zxids must strictly increase.
async fn drain_until(watcher: &mut Watcher, final_zxid: u64) -> Option<usize> {
    let mut changes = Some(0);
    let mut last = 0;
    while last < final_zxid {
        let message = next_change(watcher, Duration::from_secs(15)).await;
        assert!(message.zxid > last, "zxid {} after {last}", message.zxid);
        last = message.zxid;
        if message.resync.is_some() {
            changes = None;
        } else if let Some(count) = &mut changes {
            *count += message
                .events
                .iter()
                .filter(|e| e.kind == ChangeKind::DataChanged)
                .count();
        }
    }
    changes
}

/// Persistent watchers of one node on one client share a registry stream. A watcher that reads
/// while another does not sees every change; the one that did not read fell more than the
/// shared backlog behind, and still sees every change (or an explicit resync) afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_sharing_a_stream_each_see_every_change_even_one_that_lags() {
    const CHANGES: usize = 1100;
    let cluster = Cluster::start(3, Settings::default()).await;
    let writer = cluster.client();
    writer
        .create("/shared", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let watching = cluster.client();
    watching.sync().await.unwrap();
    let mut reader = watching
        .watch("/shared", WatchMode::Persistent)
        .await
        .unwrap();
    let mut laggard = watching
        .watch("/shared", WatchMode::Persistent)
        .await
        .unwrap();
    // The reader keeps up as the changes happen: it must see each one, and never a resync.
    let reading = tokio::spawn(async move {
        let (mut changes, mut last) = (0, 0);
        while changes < CHANGES {
            let message = next_change(&mut reader, Duration::from_secs(15)).await;
            assert!(
                message.resync.is_none(),
                "the reading watcher was resynchronized"
            );
            assert!(message.zxid > last, "zxid {} after {last}", message.zxid);
            last = message.zxid;
            changes += message.events.len();
        }
        changes
    });
    let mut final_zxid = 0;
    for i in 0..CHANGES {
        final_zxid = writer
            .set("/shared", format!("{i}").as_bytes(), None)
            .await
            .unwrap()
            .zxid;
    }
    assert_eq!(reading.await.unwrap(), CHANGES, "the reading watcher");
    // The laggard read nothing while more changes than the shared backlog holds went by.
    if let Some(changes) = drain_until(&mut laggard, final_zxid).await {
        assert_eq!(changes, CHANGES, "the lagging watcher");
    } // else a resync stood for the changes the member no longer kept
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_cut_off_during_100_changes_sees_them_all_after_reconnecting() {
    let mut cluster = Cluster::start(3, Settings::default()).await;
    let writer = cluster.client();
    writer
        .create("/cut", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let (leader, victim) = cluster.leader_and_follower(Duration::from_secs(5)).await;
    let victim_addr = cluster.members[(victim - 1) as usize].client_addr;

    let watching = cluster.client();
    watching.prefer(victim_addr);
    let mut watcher = watching.watch("/cut", WatchMode::Persistent).await.unwrap();
    // Cut the watcher off: its member dies; the changes happen while it reconnects.
    cluster.kill(victim);
    writer.prefer(cluster.members[(leader - 1) as usize].client_addr);
    for i in 0..100 {
        writer
            .set("/cut", format!("{i}").as_bytes(), None)
            .await
            .unwrap();
    }
    let mut changes = 0;
    let mut last = 0;
    while changes < 100 {
        let message = next_change(&mut watcher, Duration::from_secs(15)).await;
        assert!(message.zxid > last);
        last = message.zxid;
        if message.resync.is_some() {
            // An explicit resync stands for everything before it.
            let data = writer.get("/cut", Consistency::Linearizable).await.unwrap();
            assert!(data.zxid >= message.zxid);
            changes = 100;
        } else {
            changes += message
                .events
                .iter()
                .filter(|e| e.kind == ChangeKind::DataChanged)
                .count();
        }
    }
    assert_eq!(changes, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_get_distinct_results() {
    let cluster = Cluster::start(3, Settings::default()).await;
    let a = cluster.client();
    let b = cluster.client();
    a.create("/race", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let session_a = a.open_session(Duration::from_secs(5)).await.unwrap();
    let session_b = b.open_session(Duration::from_secs(5)).await.unwrap();
    let mut sequence_paths = BTreeSet::new();
    for round in 0..20 {
        let path = format!("/race/lock{round}");
        let (ra, rb) = tokio::join!(
            session_a.create(&path, b"a", EPHEMERAL),
            session_b.create(&path, b"b", EPHEMERAL)
        );
        match (&ra, &rb) {
            (Ok(_), Err(RegistryError::NodeExists { path: p }))
            | (Err(RegistryError::NodeExists { path: p }), Ok(_)) => {
                assert_eq!(p, &path)
            }
            other => panic!("round {round}: exactly one create must win: {other:?}"),
        }
        let (sa, sb) = tokio::join!(
            a.create("/race/seq-", b"", CreateMode::SEQUENTIAL),
            b.create("/race/seq-", b"", CreateMode::SEQUENTIAL)
        );
        let (sa, sb) = (sa.unwrap().path, sb.unwrap().path);
        assert_ne!(sa, sb);
        assert!(sequence_paths.insert(sa) && sequence_paths.insert(sb));
    }
    let expected: BTreeSet<String> = (0..40).map(|n| format!("/race/seq-{n:010}")).collect();
    assert_eq!(sequence_paths, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_session_refuses_its_old_connection() {
    let cluster = Cluster::start(3, Settings::default()).await;
    // Two connections, one session: once the second attaches it, the first is refused.
    use rmif_registry::api::{
        AttachSessionRequest, OpenSessionRequest, Registry, RegistryConsumer, SessionRequest,
    };
    let member = cluster.servers()[0];
    let stub = |addr| {
        RegistryConsumer::new(&rmif_core::Client::with_static_providers(
            rmif_core::ConsumerConfig {
                static_providers: vec![addr],
                ..rmif_core::ConsumerConfig::default()
            },
        ))
    };
    let first = stub(member);
    let second = stub(member);
    let grant = first
        .open_session(OpenSessionRequest { timeout_ms: 5000 })
        .await
        .unwrap();
    let heartbeat = SessionRequest {
        session: grant.session,
        request_id: 0,
    };
    first.keep_alive(heartbeat).await.unwrap();
    let wrong = second
        .attach_session(AttachSessionRequest {
            session: grant.session,
            secret: grant.secret ^ 1,
        })
        .await;
    assert!(
        matches!(wrong, Err(RegistryError::SessionRejected { .. })),
        "{wrong:?}"
    );
    second
        .attach_session(AttachSessionRequest {
            session: grant.session,
            secret: grant.secret,
        })
        .await
        .unwrap();
    let refused = first.keep_alive(heartbeat).await;
    assert!(
        matches!(refused, Err(RegistryError::SessionRejected { .. })),
        "{refused:?}"
    );
    second.keep_alive(heartbeat).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_retried_across_leader_kills_are_applied_once() {
    let mut cluster = Cluster::start(3, Settings::default()).await;
    let client = cluster.client();
    client
        .create("/once", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let session = client.open_session(Duration::from_secs(5)).await.unwrap();
    let sequential = CreateMode {
        ephemeral: false,
        sequential: true,
    };
    // Sequential creates make a duplicate visible: a create applied twice leaves an extra node
    // that no call reported.
    let creator = tokio::spawn(async move {
        let mut created = Vec::new();
        for _ in 0..120 {
            created.push(
                session
                    .create("/once/n-", b"", sequential)
                    .await
                    .unwrap()
                    .path,
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        created
    });
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
        cluster.kill(leader);
        cluster.wait_for_leader(Duration::from_secs(10)).await;
        cluster.spawn(leader);
    }
    let created = creator.await.unwrap();
    let children = cluster
        .client()
        .children("/once", Consistency::Linearizable)
        .await
        .unwrap()
        .children;
    let reported: BTreeSet<String> = created
        .iter()
        .map(|p| p.trim_start_matches("/once/").to_owned())
        .collect();
    assert_eq!(reported.len(), 120, "every create reported a distinct node");
    assert_eq!(
        children.into_iter().collect::<BTreeSet<_>>(),
        reported,
        "no create was applied twice"
    );
}

/// A list to follow without a read per change: the first message is the state of the watched
/// nodes (with their data), then each change carries the changed node's data; after the member
/// serving the watch is killed, the watch resumes with the changes it missed, not the state again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_with_state_and_data_needs_no_reads_and_survives_its_member() {
    let mut cluster = Cluster::start(3, Settings::default()).await;
    let writer = cluster.client();
    writer
        .create("/list", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    for name in ["a", "b"] {
        writer
            .create(
                &format!("/list/{name}"),
                name.as_bytes(),
                CreateMode::PERSISTENT,
            )
            .await
            .unwrap();
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let leader_addr = cluster.members[(leader - 1) as usize].client_addr;
    let reader = cluster.client();
    reader.prefer(leader_addr);
    let options = WatchOptions {
        mode: WatchMode::Recursive,
        with_data: true,
        initial_state: true,
    };
    let mut watcher = reader.watch_with("/list", options).await.unwrap();
    let first = watcher.next().await.unwrap().unwrap();
    let state = first.resync.expect("the first message is the state");
    let listed: Vec<(String, Vec<u8>)> = state.into_iter().map(|n| (n.path, n.data)).collect();
    assert_eq!(
        listed,
        [
            ("/list".to_owned(), b"".to_vec()),
            ("/list/a".to_owned(), b"a".to_vec()),
            ("/list/b".to_owned(), b"b".to_vec()),
        ]
    );

    writer
        .create("/list/c", b"c0", CreateMode::PERSISTENT)
        .await
        .unwrap();
    writer.set("/list/a", b"a1", None).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let message = next_change(&mut watcher, Duration::from_secs(10)).await;
        assert!(message.resync.is_none());
        for event in message.events {
            if event.kind != ChangeKind::ChildrenChanged {
                seen.push((event.kind, event.path, event.data));
            }
        }
    }
    assert_eq!(
        seen,
        [
            (
                ChangeKind::Created,
                "/list/c".to_owned(),
                Some(b"c0".to_vec())
            ),
            (
                ChangeKind::DataChanged,
                "/list/a".to_owned(),
                Some(b"a1".to_vec())
            ),
        ]
    );

    // The member serving the watch dies; what follows arrives once, with data, without the
    // state again. (The writes go through a member known alive: a write outside a session
    // that was cut by the kill would not be sent again.)
    let survivor = cluster
        .members
        .iter()
        .find(|m| m.id != leader)
        .map(|m| m.client_addr)
        .unwrap();
    writer.prefer(survivor);
    cluster.kill(leader);
    cluster.wait_for_leader(Duration::from_secs(10)).await;
    let deleted = writer.delete("/list/b", None).await.unwrap();
    writer.set("/list/c", b"c1", None).await.unwrap();
    let mut after = Vec::new();
    while after.len() < 2 {
        let message = next_change(&mut watcher, Duration::from_secs(15)).await;
        assert!(
            message.resync.is_none(),
            "resumed, not restated: {message:?}"
        );
        for event in message.events {
            if event.kind != ChangeKind::ChildrenChanged {
                after.push((event.kind, event.path, event.data));
            }
        }
    }
    assert_eq!(
        after,
        [
            (ChangeKind::Deleted, "/list/b".to_owned(), None),
            (
                ChangeKind::DataChanged,
                "/list/c".to_owned(),
                Some(b"c1".to_vec())
            ),
        ]
    );
    assert!(deleted.zxid > first.zxid);
}
