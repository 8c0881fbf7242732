//! Replication under failures: leader kills, full restarts, catching up from a snapshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rmif_registry::{Consistency, CreateMode};
use tokio::sync::Mutex;
use tokio::time::Instant;

use rmif_testkit::{Cluster, Settings};

/// Checks that every path in `acked` exists, reading from member `id` alone.
async fn assert_all_present(cluster: &Cluster, id: u64, acked: &[String]) {
    let client = cluster.client_of(id);
    for path in acked {
        let found = client.get(path, Consistency::Stale).await;
        assert!(
            found.is_ok(),
            "acknowledged write {path} missing on member {id}: {found:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, Settings::default()).await;
    let client = cluster.client();
    client
        .create("/load", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let client = cluster.client();
        client
            .create(&format!("/load/w{w}"), b"", CreateMode::PERSISTENT)
            .await
            .unwrap();
        let stop = stop.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("/load/w{w}/n{n:06}");
                n += 1;
                if client
                    .create(&path, b"v", CreateMode::PERSISTENT)
                    .await
                    .is_ok()
                {
                    acked.lock().await.push((Instant::now(), path));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    assert!(
        !acked.lock().await.is_empty(),
        "writes were acknowledged before the kill"
    );
    let killed_at = Instant::now();
    cluster.kill(leader);

    // A new leader accepts writes within a few seconds.
    let deadline = killed_at + Duration::from_secs(5);
    loop {
        let resumed = acked.lock().await.iter().any(|(at, _)| *at > killed_at);
        if resumed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write acknowledged within 5 s of killing the leader: {}",
            cluster.describe().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let new_leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    assert_ne!(new_leader, leader);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    cluster.spawn(leader);
    cluster.wait_converged(Duration::from_secs(20)).await;
    let acked: Vec<String> = acked.lock().await.iter().map(|(_, p)| p.clone()).collect();
    for id in 1..=3 {
        assert_all_present(&cluster, id, &acked).await;
    }
}

/// A killed process's sockets close at once; its followers take that as the leader's death and
/// campaign without waiting out the election timeout. The timeout here is 4 to 8 s, so a leader
/// elected within 3 s of the kill can only come from that early campaign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_replace_a_killed_leader_before_the_election_timeout() {
    let settings = Settings {
        tick_ms: 50,
        election_ticks: 80,
        ..Settings::default()
    };
    let mut cluster = Cluster::start(3, settings).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let client = cluster.client();
    client
        .create("/before", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let killed_at = Instant::now();
    cluster.kill(leader);
    let successor = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let elapsed = killed_at.elapsed();
    assert_ne!(successor, leader);
    assert!(
        elapsed < Duration::from_secs(3),
        "a new leader took {elapsed:?}: the followers waited for the election timeout (4-8 s)"
    );
    cluster
        .client_of(successor)
        .create("/after", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_member_keeps_the_tree() {
    let mut cluster = Cluster::start(3, Settings::default()).await;
    let client = cluster.client();
    let mut acked = Vec::new();
    client
        .create("/keep", b"root", CreateMode::PERSISTENT)
        .await
        .unwrap();
    for i in 0..50 {
        let created = client
            .create(
                "/keep/s-",
                format!("{i}").as_bytes(),
                CreateMode::SEQUENTIAL,
            )
            .await
            .unwrap();
        acked.push(created.path);
    }
    client.set("/keep", b"changed", Some(0)).await.unwrap();
    let before = cluster.wait_converged(Duration::from_secs(10)).await;

    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        cluster.spawn(id);
    }
    cluster.wait_for_leader(Duration::from_secs(20)).await;
    let after = cluster.wait_converged(Duration::from_secs(20)).await;
    assert_eq!(
        after[0].digest, before[0].digest,
        "the tree after the restart is the tree before it"
    );
    let client = cluster.client();
    assert_eq!(
        client
            .get("/keep", Consistency::Linearizable)
            .await
            .unwrap()
            .data,
        b"changed"
    );
    for id in 1..=3 {
        assert_all_present(&cluster, id, &acked).await;
    }
    // And it keeps accepting writes with sequence numbers that continue.
    let next = client
        .create("/keep/s-", b"", CreateMode::SEQUENTIAL)
        .await
        .unwrap();
    assert_eq!(next.path, "/keep/s-0000000050");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_down_during_compaction_rejoins_through_a_snapshot() {
    let settings = Settings {
        snapshot_entries: 50,
        ..Settings::default()
    };
    let mut cluster = Cluster::start(3, settings).await;
    let client = cluster.client();
    client
        .create("/snap", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let (leader, behind) = cluster.leader_and_follower(Duration::from_secs(5)).await;
    cluster.kill(behind);

    // Through the leader: a write in flight to the member being killed has an unknown outcome
    // and is rightly not retried outside a session.
    let writer = cluster.client_of(leader);
    let mut acked = Vec::new();
    for i in 0..300 {
        let path = format!("/snap/k{i:04}");
        writer
            .create(&path, b"x", CreateMode::PERSISTENT)
            .await
            .unwrap();
        acked.push(path);
    }
    // Snapshots are made on a thread of their own: the one covering the last writes may still
    // be under way.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leader_status = cluster.status(leader).await.unwrap();
        if leader_status.snapshot > 250 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader compacted its log: {leader_status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    cluster.spawn(behind);
    let statuses = cluster.wait_converged(Duration::from_secs(20)).await;
    let rejoined = statuses.iter().find(|s| s.id == behind).unwrap();
    assert!(
        rejoined.snapshot > 250,
        "member {behind} caught up through a snapshot (its snapshot index is {})",
        rejoined.snapshot
    );
    assert_all_present(&cluster, behind, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_member_without_losing_acknowledged_writes() {
    let mut cluster = Cluster::start(3, Settings::default()).await;
    let client = cluster.client();
    let mut acked = Vec::new();
    for i in 0..30 {
        let path = format!("/t{i}");
        client
            .create(&path, b"", CreateMode::PERSISTENT)
            .await
            .unwrap();
        acked.push(path);
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    cluster.terminate(leader);
    // The stopping leader handed leadership over; the others agree on the new one at once.
    let successor = cluster.wait_for_leader(Duration::from_secs(2)).await;
    assert_ne!(successor, leader);
    client
        .create("/after", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    acked.push("/after".to_owned());
    cluster.spawn(leader);
    cluster.wait_converged(Duration::from_secs(20)).await;
    for id in 1..=3 {
        assert_all_present(&cluster, id, &acked).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_data_was_wiped_rejoins_and_converges() {
    let settings = Settings {
        snapshot_entries: 50,
        ..Settings::default()
    };
    let mut cluster = Cluster::start(3, settings).await;
    let client = cluster.client();
    client
        .create("/wipe", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let mut acked = Vec::new();
    for i in 0..100 {
        let path = format!("/wipe/a{i:03}");
        client
            .create(&path, b"", CreateMode::PERSISTENT)
            .await
            .unwrap();
        acked.push(path);
    }
    let (leader, victim) = cluster.leader_and_follower(Duration::from_secs(5)).await;
    cluster.kill(victim);
    cluster.wipe(victim);
    // Through the leader: a write in flight on a connection to the member being killed has an
    // unknown outcome, and a write outside a session is not retried then.
    let writer = cluster.client_of(leader);
    for i in 0..100 {
        let path = format!("/wipe/b{i:03}");
        writer
            .create(&path, b"", CreateMode::PERSISTENT)
            .await
            .unwrap();
        acked.push(path);
    }
    // The leader still believes the member holds what it acknowledged before the wipe; the
    // member must neither crash on that nor stay behind.
    cluster.spawn(victim);
    cluster.wait_converged(Duration::from_secs(30)).await;
    assert_all_present(&cluster, victim, &acked).await;
    client
        .create("/wipe/after", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    cluster.wait_converged(Duration::from_secs(10)).await;
}

/// The active log segment of member `id` (the newest `*.wal` file in its data directory).
fn active_segment(cluster: &Cluster, id: u64) -> std::path::PathBuf {
    let wal = cluster.members[(id - 1) as usize].data_dir.join("wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|item| item.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments.pop().expect("a log segment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_in_the_middle_of_a_log_write_rejoins_and_converges() {
    let mut cluster = Cluster::start(3, Settings::default()).await;
    let client = cluster.client();
    client
        .create("/torn", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push(
            client
                .create(&format!("/torn/before-{i}"), b"", CreateMode::PERSISTENT)
                .await
                .unwrap()
                .path,
        );
    }
    cluster.wait_converged(Duration::from_secs(10)).await;
    let (leader, victim) = cluster.leader_and_follower(Duration::from_secs(5)).await;
    cluster.kill(victim);
    // Through the leader: a write sent on a connection to the member just killed has an unknown
    // outcome and is rightly not retried outside a session.
    let client = cluster.client_of(leader);
    // What SIGKILL during an append leaves: the start of a record, its length promising more.
    let segment = active_segment(&cluster, victim);
    let whole = std::fs::metadata(&segment).unwrap().len();
    let mut torn = 4096u32.to_le_bytes().to_vec();
    torn.extend_from_slice(&[0xab; 100]);
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(&torn)
        .unwrap();
    for i in 0..20 {
        acked.push(
            client
                .create(&format!("/torn/during-{i}"), b"", CreateMode::PERSISTENT)
                .await
                .unwrap()
                .path,
        );
    }
    cluster.spawn(victim);
    let converged = cluster.wait_converged(Duration::from_secs(20)).await;
    assert!(converged.iter().all(|s| s.digest == converged[0].digest));
    assert_all_present(&cluster, victim, &acked).await;
    // The torn record was cut before anything new was appended after it.
    let bytes = std::fs::read(&segment).unwrap();
    assert!(bytes.len() as u64 > whole, "nothing appended after restart");
    assert_ne!(
        &bytes[whole as usize..whole as usize + 4],
        &4096u32.to_le_bytes(),
        "the torn record is still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_a_damaged_log_refuses_to_start_and_names_the_file() {
    let mut cluster = Cluster::start(3, Settings::default()).await;
    let client = cluster.client();
    for i in 0..10 {
        client
            .create(&format!("/d{i}"), b"", CreateMode::PERSISTENT)
            .await
            .unwrap();
    }
    cluster.wait_converged(Duration::from_secs(10)).await;
    let (_, victim) = cluster.leader_and_follower(Duration::from_secs(5)).await;
    cluster.kill(victim);
    let segment = active_segment(&cluster, victim);
    let mut bytes = std::fs::read(&segment).unwrap();
    // The last payload byte of the first record (`[length u32][crc u32][payload]`): a bit rot
    // with valid records after it, which no interrupted append can leave.
    let first_len = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    assert!(8 + first_len < bytes.len(), "records follow the first");
    bytes[8 + first_len - 1] ^= 0x5a;
    std::fs::write(&segment, &bytes).unwrap();
    cluster.spawn(victim);
    let exited = cluster.wait_exit(victim, Duration::from_secs(10)).await;
    assert!(!exited.success(), "a member with a damaged log started");
    let log = std::fs::read_to_string(&cluster.members[(victim - 1) as usize].log).unwrap();
    assert!(
        log.contains(&segment.display().to_string()) && log.contains("damaged"),
        "the member's log does not say which file is damaged:\n{log}"
    );
    // The others go on.
    client
        .create("/after", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
}
