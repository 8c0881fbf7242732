//! `WatchEvents` against a real member: plain events while connected, and after a resync the
//! events the watcher missed, rebuilt from the state. The resync is forced the way it happens
//! in operation: the watcher is cut off (a proxy drops its connections) while the tree changes
//! and the member takes a snapshot, then the member restarts, so that it starts from the
//! snapshot and no longer knows the changes the watcher asks for.

use std::time::Duration;

use rmif_registry::api::WatchMode;
use rmif_registry::{
    ChangeKind, ClientOptions, CreateMode, NodeEvent, RegistryClient, RegistryError, WatchEvents,
    WatchOptions,
};
use rmif_registry_server::{RegistryConfig, RegistryServer};
use rmif_testkit::proxy::{Link, LinkMode};
use tokio::time::Instant;

/// Generous bound for anything that should happen "soon".
const SOON: Duration = Duration::from_secs(20);

async fn next(events: &mut WatchEvents) -> NodeEvent {
    tokio::time::timeout(SOON, events.next())
        .await
        .expect("an event within the limit")
        .expect("the watch goes on")
}

/// (kind, path, data) of an event, for comparing.
fn plain(event: &NodeEvent) -> (ChangeKind, &str, Option<&[u8]>) {
    (event.kind, event.path.as_str(), event.data.as_deref())
}

/// Starts a member on `config`, retrying while its old address is still being released.
async fn start(config: &RegistryConfig) -> RegistryServer {
    let deadline = Instant::now() + SOON;
    loop {
        match RegistryServer::start(config.clone()).await {
            Ok(member) => return member,
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "member not started yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("the member does not start again: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_resync_the_missed_changes_come_as_plain_events() {
    let data = tempfile::tempdir().unwrap();
    let mut config = RegistryConfig::single("127.0.0.1:0".parse().unwrap(), data.path());
    config.snapshot_entries = 20;
    let member = start(&config).await;
    // The member comes back on the same address, behind the same proxy.
    config.client_addr = member.client_addr();
    let writer = RegistryClient::connect(&[member.client_addr()]);
    for (path, value) in [
        ("/w", ""),
        ("/w/keep", "k0"),
        ("/w/change", "c0"),
        ("/w/gone", "g0"),
        ("/w/again", "a0"),
    ] {
        writer
            .create(path, value.as_bytes(), CreateMode::PERSISTENT)
            .await
            .unwrap();
    }

    let link = Link::start(member.client_addr()).await;
    let watching = RegistryClient::new(&[link.addr], ClientOptions::default());
    let options = WatchOptions {
        mode: WatchMode::Recursive,
        with_data: true,
        initial_state: false, // asked for anyway: it is the helper's baseline
    };
    let mut events = watching.watch_events_with("/w", options).await.unwrap();
    assert!(
        events
            .nodes()
            .eq(["/w", "/w/again", "/w/change", "/w/gone", "/w/keep"]),
        "the baseline is the state, not events"
    );

    // Connected: the registry's own events, one per change, no armed message first.
    let live = writer
        .create("/w/live", b"l", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let created = next(&mut events).await;
    assert_eq!(
        plain(&created),
        (ChangeKind::Created, "/w/live", Some(&b"l"[..]))
    );
    assert_eq!((created.zxid, created.resynced), (live.zxid, false));
    let parent = next(&mut events).await;
    assert_eq!(plain(&parent), (ChangeKind::ChildrenChanged, "/w", None));

    // Cut off, the watcher misses: two data changes, a deletion, a creation, a node created and
    // deleted, a node deleted and created again.
    link.set(LinkMode::Drop);
    writer.set("/w/change", b"c1", None).await.unwrap();
    writer.set("/w/change", b"c2", None).await.unwrap();
    writer.delete("/w/gone", None).await.unwrap();
    writer
        .create("/w/new", b"n", CreateMode::PERSISTENT)
        .await
        .unwrap();
    writer
        .create("/w/transient", b"t", CreateMode::PERSISTENT)
        .await
        .unwrap();
    writer.delete("/w/transient", None).await.unwrap();
    writer.delete("/w/again", None).await.unwrap();
    let last = writer
        .create("/w/again", b"a1", CreateMode::PERSISTENT)
        .await
        .unwrap();

    // Writes elsewhere until the member's snapshot covers all of that, then a restart: the
    // member starts from the snapshot and cannot replay what the watcher missed.
    writer
        .create("/filler", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let deadline = Instant::now() + SOON;
    loop {
        let status = writer.member_status(member.client_addr()).await.unwrap();
        if status.snapshot > last.zxid {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot after zxid {}",
            last.zxid
        );
        writer.set("/filler", b"x", None).await.unwrap();
    }
    // The member reports a snapshot once made and hands it to its storage thread; a write
    // acknowledged after that was made durable after it, so the snapshot is on disk.
    writer.set("/filler", b"y", None).await.unwrap();
    member.shutdown().await;
    let member = start(&config).await;
    // (A client of its own: the writer's connection reconnects to the new process in its own
    // time, and member_status does not wait for it.)
    let restarted = RegistryClient::connect(&[member.client_addr()])
        .member_status(member.client_addr())
        .await
        .unwrap();
    assert!(
        restarted.snapshot > live.zxid,
        "the member restarted from snapshot {}, which does not cover what the watcher missed",
        restarted.snapshot
    );
    link.set(LinkMode::Pass);

    // The missed changes, rebuilt from the resync: deletions (children first), creations
    // (parents first), then data and children changes; the transient node is not seen, the two
    // data changes are one.
    let mut rebuilt = Vec::new();
    for _ in 0..6 {
        rebuilt.push(next(&mut events).await);
    }
    let expected: [(ChangeKind, &str, Option<&[u8]>); 6] = [
        (ChangeKind::Deleted, "/w/gone", None),
        (ChangeKind::Deleted, "/w/again", None),
        (ChangeKind::Created, "/w/again", Some(b"a1")),
        (ChangeKind::Created, "/w/new", Some(b"n")),
        (ChangeKind::ChildrenChanged, "/w", None),
        (ChangeKind::DataChanged, "/w/change", Some(b"c2")),
    ];
    assert_eq!(rebuilt.iter().map(plain).collect::<Vec<_>>(), expected);
    let resync_zxid = rebuilt[0].zxid;
    for event in &rebuilt {
        assert!(event.resynced, "{event:?}");
        assert_eq!(event.zxid, resync_zxid, "one resync, one zxid: {event:?}");
    }
    assert!(resync_zxid >= last.zxid);
    assert!(events.nodes().eq([
        "/w",
        "/w/again",
        "/w/change",
        "/w/keep",
        "/w/live",
        "/w/new"
    ]));

    // After the resync, live events again, from what the resync said.
    let written = writer.set("/w/keep", b"k1", None).await.unwrap();
    let changed = next(&mut events).await;
    assert_eq!(
        plain(&changed),
        (ChangeKind::DataChanged, "/w/keep", Some(&b"k1"[..]))
    );
    assert_eq!((changed.zxid, changed.resynced), (written.zxid, false));
    member.shutdown().await;
}

#[tokio::test]
async fn a_one_shot_mode_is_refused_with_a_reason() {
    let data = tempfile::tempdir().unwrap();
    let member = start(&RegistryConfig::single(
        "127.0.0.1:0".parse().unwrap(),
        data.path(),
    ))
    .await;
    let client = RegistryClient::connect(&[member.client_addr()]);
    let refused = client
        .watch_events("/w", WatchMode::Data)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, RegistryError::BadRequest(reason) if reason.contains("one-shot")),
        "{refused}"
    );
    member.shutdown().await;
}
