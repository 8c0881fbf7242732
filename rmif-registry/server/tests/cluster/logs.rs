//! What a member logs for its operator (RMIF_LOG=info, into a file): leadership won, followed
//! and lost with term and id, snapshots taken, sent and installed with index, size and
//! duration, the start-up replay, raft-rs's own log under the target `raft`, and no terminal
//! colour codes in a file.

use std::time::Duration;

use crate::member_log::{field, log_of, wait_line};
use rmif_registry::CreateMode;
use rmif_testkit::{Cluster, Settings};

async fn write(cluster: &Cluster, prefix: &str, count: usize) {
    let client = cluster.client();
    for i in 0..count {
        client
            .create(
                &format!("/{prefix}-{i}"),
                b"some data",
                CreateMode::PERSISTENT,
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_logs_leadership_snapshots_and_its_start_up_replay() {
    let settings = Settings {
        snapshot_entries: 40,
        ..Settings::default()
    };
    let mut cluster = Cluster::start(3, settings).await;
    let (leader, follower) = cluster.leader_and_follower(Duration::from_secs(20)).await;

    // The leader says it leads, with its id and term; raft-rs's own log is there too.
    let line = wait_line(
        &cluster,
        leader,
        0,
        &["became leader", &format!("id={leader}")],
        Duration::from_secs(10),
    )
    .await;
    let first_term = field(&line, "term");
    assert!(first_term > 0, "{line}");
    wait_line(
        &cluster,
        leader,
        0,
        &[" raft: ", &format!("raft_id={leader}")],
        Duration::from_secs(10),
    )
    .await;

    // A follower stopped while the others take snapshots, then restarted: the leader's log has
    // been compacted past it, so it is sent a snapshot and installs it.
    cluster.kill(follower);
    write(&cluster, "a", 100).await;
    let taken = wait_line(
        &cluster,
        leader,
        0,
        &["snapshot taken"],
        Duration::from_secs(20),
    )
    .await;
    // Members snapshot in turn: the leader's first may come before 40 entries, at its phase.
    assert!(
        field(&taken, "index") > 0 && field(&taken, "bytes") > 0,
        "{taken}"
    );
    field(&taken, "took_ms");
    cluster.spawn(follower);
    let replay = wait_line(
        &cluster,
        follower,
        0,
        &["start-up replay: stored state read"],
        Duration::from_secs(20),
    )
    .await;
    field(&replay, "entries");
    field(&replay, "entry_bytes");
    field(&replay, "took_ms");
    let installed = wait_line(
        &cluster,
        follower,
        0,
        &["snapshot installed"],
        Duration::from_secs(30),
    )
    .await;
    assert!(
        field(&installed, "index") >= 40 && field(&installed, "bytes") > 0,
        "{installed}"
    );
    field(&installed, "took_ms");
    field(&installed, "decode_ms");
    field(&installed, "blocked_us");
    field(&installed, "held");
    wait_line(
        &cluster,
        leader,
        0,
        &["snapshot sent", &format!("to={follower}")],
        Duration::from_secs(10),
    )
    .await;

    // The leader SIGKILLed: another member says it became leader, at a later term.
    cluster.kill(leader);
    let new_leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    assert_ne!(new_leader, leader);
    let line = wait_line(
        &cluster,
        new_leader,
        0,
        &["became leader", &format!("id={new_leader}")],
        Duration::from_secs(10),
    )
    .await;
    assert!(field(&line, "term") > first_term, "{line}");

    // Restarted after writes it saw, the old leader reads its snapshot and log tail back, and
    // says when it has applied them; then it follows the new leader (or steps down first).
    let before_restart = log_of(&cluster, leader).len();
    cluster.spawn(leader);
    let read = wait_line(
        &cluster,
        leader,
        before_restart,
        &["start-up replay: stored state read", "snapshot_index="],
        Duration::from_secs(20),
    )
    .await;
    assert!(field(&read, "snapshot_index") >= 40, "{read}");
    if field(&read, "commit") > field(&read, "snapshot_index") {
        wait_line(
            &cluster,
            leader,
            before_restart,
            &["start-up replay: recovered log applied", "entries="],
            Duration::from_secs(20),
        )
        .await;
    }
    wait_line(
        &cluster,
        leader,
        before_restart,
        &["following leader", &format!("leader={new_leader}")],
        Duration::from_secs(30),
    )
    .await;

    // Both others SIGKILLed: the leader loses its quorum and steps down (check quorum), and says
    // so.
    for id in (1..=3).filter(|id| *id != new_leader) {
        cluster.kill(id);
    }
    let line = wait_line(
        &cluster,
        new_leader,
        0,
        &["stepped down as leader", &format!("id={new_leader}")],
        Duration::from_secs(30),
    )
    .await;
    field(&line, "term");

    // Written to files, the logs carry no terminal colour codes.
    for id in 1..=3 {
        assert!(
            !log_of(&cluster, id).contains('\u{1b}'),
            "member {id}'s log has escape codes"
        );
    }
}
