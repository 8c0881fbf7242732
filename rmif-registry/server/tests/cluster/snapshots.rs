//! Snapshots under load: members take several while writes go on, a follower that fell behind
//! installs one from the leader while writes continue, and a restarted member recovers from its
//! snapshot plus a short log tail. No acknowledged write is lost through any of it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rmif_registry::{Consistency, CreateMode, RegistryClient};
use rmif_testkit::{Cluster, Settings};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::member_log::{field, lines_after, log_of, wait_line};

const WRITERS: usize = 8;

/// Writers creating nodes under `/load/w{i}` until stopped; the paths acknowledged.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(cluster: &Cluster) -> Load {
        let client = cluster.client();
        client
            .create("/load", b"", CreateMode::PERSISTENT)
            .await
            .unwrap();
        let load = Load {
            stop: Arc::default(),
            acked: Arc::default(),
            count: Arc::default(),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let client = cluster.client();
            client
                .create(&format!("/load/w{w}"), b"", CreateMode::PERSISTENT)
                .await
                .unwrap();
            let (stop, acked, count) = (load.stop.clone(), load.acked.clone(), load.count.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let path = format!("/load/w{w}/n{n:06}");
                    n += 1;
                    // A write in flight through a member being killed has an unknown outcome
                    // and is not counted; every acknowledged one must survive.
                    if client
                        .create(&path, b"0123456789abcdef", CreateMode::PERSISTENT)
                        .await
                        .is_ok()
                    {
                        acked.lock().await.push(path);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        Load { tasks, ..load }
    }

    fn acked(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until `more` writes beyond `from` were acknowledged.
    async fn wait_acked(&self, from: usize, more: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked() < from + more {
            assert!(
                Instant::now() < deadline,
                "writes stalled at {} acknowledged",
                self.acked()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        Arc::try_unwrap(self.acked).unwrap().into_inner()
    }
}

/// Every acknowledged path is on member `id`, read from it alone.
async fn assert_all_present(client: &RegistryClient, id: u64, acked: &[String]) {
    let mut present = BTreeSet::new();
    for w in 0..WRITERS {
        let parent = format!("/load/w{w}");
        let listed = client.children(&parent, Consistency::Stale).await.unwrap();
        present.extend(listed.children.into_iter().map(|c| format!("{parent}/{c}")));
    }
    let missing: Vec<&String> = acked.iter().filter(|p| !present.contains(*p)).collect();
    assert!(
        missing.is_empty(),
        "member {id} lost {} acknowledged writes, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_under_load_lose_nothing_and_a_follower_installs_one_while_writes_go_on() {
    let settings = Settings {
        snapshot_entries: 100,
        ..Settings::default()
    };
    let mut cluster = Cluster::start(3, settings).await;
    let (leader, behind) = cluster.leader_and_follower(Duration::from_secs(20)).await;
    let load = Load::start(&cluster).await;

    // The follower is stopped while the others take several snapshots: the leader's log no
    // longer holds what it missed.
    cluster.kill(behind);
    let base = lines_after(&cluster, leader, 0, &["snapshot taken"]).len();
    let deadline = Instant::now() + Duration::from_secs(60);
    let compacted = loop {
        if let Some(third) = lines_after(&cluster, leader, 0, &["snapshot taken"]).get(base + 2) {
            break field(third, "index");
        }
        assert!(Instant::now() < deadline, "the leader took no 3 snapshots");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // Restarted, it is sent a snapshot and installs it, and the writes go on meanwhile.
    let since = log_of(&cluster, behind).len();
    let acked_at_restart = load.acked();
    cluster.spawn(behind);
    let installed = wait_line(
        &cluster,
        behind,
        since,
        &["snapshot installed"],
        Duration::from_secs(60),
    )
    .await;
    assert!(field(&installed, "index") >= compacted, "{installed}");
    assert!(
        load.acked() > acked_at_restart,
        "writes were acknowledged while the follower caught up"
    );
    let after_install = load.acked();
    load.wait_acked(after_install, 500).await;
    let acked = load.stop().await;

    let statuses = cluster.wait_converged(Duration::from_secs(30)).await;
    for status in &statuses {
        assert!(
            status.snapshot >= compacted,
            "member {} has a snapshot at {}, before {compacted}",
            status.id,
            status.snapshot
        );
    }
    for id in 1..=3 {
        assert!(
            lines_after(&cluster, id, 0, &["snapshot taken"]).len() >= 3,
            "member {id} took several snapshots"
        );
        assert_all_present(&cluster.client_of(id), id, &acked).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_recovers_from_its_snapshot_and_a_short_log_tail() {
    let settings = Settings {
        snapshot_entries: 100,
        ..Settings::default()
    };
    let mut cluster = Cluster::start(3, settings).await;
    let (_, restarted) = cluster.leader_and_follower(Duration::from_secs(20)).await;
    let load = Load::start(&cluster).await;
    load.wait_acked(0, 1000).await;
    let acked = load.stop().await;
    cluster.wait_converged(Duration::from_secs(30)).await;
    // A few more writes after the member's latest snapshot, so that a log tail remains: if one
    // is due within them, two more follow it.
    let client = cluster.client();
    // Snapshots are made on a thread of their own: the latest may still be under way.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = cluster.status(restarted).await.unwrap();
        if status.snapshot >= 900 {
            break status;
        }
        assert!(Instant::now() < deadline, "member {restarted}: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let until_due = (status.snapshot + 100).saturating_sub(status.applied);
    let extra = if until_due > 5 { 5 } else { until_due + 2 };
    for i in 0..extra {
        client
            .create(&format!("/tail-{i}"), b"", CreateMode::PERSISTENT)
            .await
            .unwrap();
    }
    cluster.wait_converged(Duration::from_secs(30)).await;

    // The segments and snapshot files each snapshot made useless are deleted (by a thread of
    // their own): about two snapshots' worth of log stays, and one snapshot.
    let wal = cluster.members[(restarted - 1) as usize]
        .data_dir
        .join("wal");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names: Vec<String> = std::fs::read_dir(&wal)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let segments = names.iter().filter(|n| n.ends_with(".wal")).count();
        let snapshots = names.iter().filter(|n| n.ends_with(".snap")).count();
        if segments <= 3 && snapshots == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member {restarted} kept {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    cluster.kill(restarted);
    client
        .create("/after-kill", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let since = log_of(&cluster, restarted).len();
    cluster.spawn(restarted);
    let read = wait_line(
        &cluster,
        restarted,
        since,
        &["start-up replay: stored state read"],
        Duration::from_secs(60),
    )
    .await;
    let (snapshot_index, entries) = (field(&read, "snapshot_index"), field(&read, "entries"));
    assert!(snapshot_index >= 900, "{read}");
    assert!(
        entries > 0 && entries < 200,
        "the log read back is a short tail after the snapshot: {read}"
    );
    assert_eq!(field(&read, "first_index"), snapshot_index + 1, "{read}");
    wait_line(
        &cluster,
        restarted,
        since,
        &["start-up replay: recovered log applied"],
        Duration::from_secs(60),
    )
    .await;
    cluster.wait_converged(Duration::from_secs(30)).await;
    let own = cluster.client_of(restarted);
    assert_all_present(&own, restarted, &acked).await;
    own.get("/after-kill", Consistency::Stale).await.unwrap();
}
