//! Processes that hold a session (`rmif create --ephemeral --hold`), killed or paused: the
//! registry, not the process, decides when the session ends, and an expired session is never
//! revived.

use std::process::{Command, Stdio};
use std::time::Duration;

use rmif_registry::api::WatchMode;
use rmif_registry::{ChangeKind, Consistency, CreateMode};
use tokio::time::Instant;

use crate::support::{Cluster, next_change};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_client_process_loses_its_ephemeral_node_and_watchers_see_it() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    client
        .create("/k", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let servers = cluster.servers_arg();
    let mut holder = Command::new(env!("CARGO_BIN_EXE_rmif"))
        .args(["--servers", &servers, "--session-timeout", "2000"])
        .args(["create", "--ephemeral", "--hold", "/k/proc", "pid"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn rmif");
    let deadline = Instant::now() + Duration::from_secs(10);
    while client
        .get("/k/proc", Consistency::Linearizable)
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the holder never created its node"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut watcher = client.watch("/k/proc", WatchMode::Data).await.unwrap();

    holder.kill().unwrap();
    let killed = Instant::now();
    holder.wait().unwrap();

    let message = next_change(&mut watcher, Duration::from_secs(10)).await;
    let elapsed = killed.elapsed();
    assert_eq!(message.events[0].kind, ChangeKind::Deleted);
    assert_eq!(message.events[0].path, "/k/proc");
    assert!(
        elapsed < Duration::from_millis(2000 + 3000),
        "deleted {elapsed:?} after the kill; the session timeout is 2 s"
    );
    assert!(
        elapsed >= Duration::from_millis(1500),
        "deleted before its session could time out ({elapsed:?})"
    );
    // A one-shot watch fires once.
    assert!(watcher.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_whose_session_expired_never_revives_it() {
    let cluster = Cluster::start(3).await;
    let servers = cluster.servers_arg();
    // A holder process, paused longer than its session timeout, then resumed.
    let holder = Command::new(env!("CARGO_BIN_EXE_rmif"))
        .args(["--servers", &servers, "--session-timeout", "1000"])
        .args(["create", "--ephemeral", "--hold", "/paused", ""])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rmif");
    let client = cluster.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client
        .get("/paused", Consistency::Linearizable)
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the holder never created its node"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = holder.id() as i32;
    // SAFETY: signals to a child this test spawned.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while client
        .get("/paused", Consistency::Linearizable)
        .await
        .is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "the paused holder's node was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // Resumed, it learns its session expired and exits with an error, never reviving it.
    let output = tokio::task::spawn_blocking(move || holder.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("expired"), "{stderr}");
    assert!(
        client
            .get("/paused", Consistency::Linearizable)
            .await
            .is_err()
    );
}
