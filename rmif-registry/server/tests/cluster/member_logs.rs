//! What a member logs about the rest of the cluster, read from its log file as an operator
//! would: a peer member becoming unreachable (killed, or paused) and reachable again, one line
//! each way; the sessions of a killed client process expired in one bounded line with their
//! count; and `log_format=json`, which makes every line one JSON object.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rmif_registry::{CreateMode, RegistryClient};
use rmif_testkit::{Cluster, Settings};

use crate::member_log::{lines_after, log_of, wait_line};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_logs_a_peer_unreachable_and_back_once_each_way() {
    let mut cluster = Cluster::start(3, Settings::default()).await;
    let (leader, follower) = cluster.leader_and_follower(Duration::from_secs(20)).await;
    let member = format!("member={follower}");
    wait_line(
        &cluster,
        leader,
        0,
        &["member reachable", &member],
        Duration::from_secs(10),
    )
    .await;

    // SIGKILL: the connection is lost, and reconnecting is refused, many times over while the
    // follower stays down. One line says so, with the address and the cause.
    let since = log_of(&cluster, leader).len();
    cluster.kill(follower);
    let line = wait_line(
        &cluster,
        leader,
        since,
        &["WARN", "member unreachable", &member],
        Duration::from_secs(10),
    )
    .await;
    let addr = "addr=127.0.0.1:";
    assert!(
        line.contains(addr) && line.contains("cause="),
        "no address or cause: {line}"
    );
    // Down for long enough to be retried several times (every 500 ms at most).
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.spawn(follower);
    let back = wait_line(
        &cluster,
        leader,
        since,
        &["INFO", "member reachable", &member],
        Duration::from_secs(20),
    )
    .await;
    assert!(back.contains("unreachable_ms="), "{back}");
    cluster.wait_converged(Duration::from_secs(30)).await;
    let down = lines_after(&cluster, leader, since, &["member unreachable", &member]);
    let up = lines_after(&cluster, leader, since, &["member reachable", &member]);
    assert_eq!(
        (down.len(), up.len()),
        (1, 1),
        "one line each way:\n{down:#?}\n{up:#?}"
    );

    // SIGSTOP: the connection stays up, but the follower stops answering.
    let since = log_of(&cluster, leader).len();
    cluster.pause(follower);
    let line = wait_line(
        &cluster,
        leader,
        since,
        &["member unreachable", &member, "not answering"],
        Duration::from_secs(15),
    )
    .await;
    assert!(line.contains(addr), "{line}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.resume(follower);
    wait_line(
        &cluster,
        leader,
        since,
        &["member reachable", &member],
        Duration::from_secs(15),
    )
    .await;
    cluster.wait_converged(Duration::from_secs(30)).await;
    let down = lines_after(&cluster, leader, since, &["member unreachable", &member]);
    let up = lines_after(&cluster, leader, since, &["member reachable", &member]);
    assert_eq!(
        (down.len(), up.len()),
        (1, 1),
        "one line each way:\n{down:#?}\n{up:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_log_format_json_every_line_is_a_json_object() {
    let settings = Settings {
        extra: "log_format=json\n".to_owned(),
        ..Settings::default()
    };
    let mut cluster = Cluster::start(3, settings).await;
    let (leader, follower) = cluster.leader_and_follower(Duration::from_secs(20)).await;
    let client = cluster.client();
    for i in 0..20 {
        client
            .create(&format!("/j{i}"), b"x", CreateMode::PERSISTENT)
            .await
            .unwrap();
    }
    // A warning and its recovery, and a restart's start-up lines, in the logs too. (A member
    // starting before its peers may already have logged them unreachable: the line looked for
    // comes after the kill.)
    let before_kill = log_of(&cluster, leader).len();
    let killed = format!("\"member\":{follower}");
    cluster.kill(follower);
    wait_line(
        &cluster,
        leader,
        before_kill,
        &["\"member unreachable\"", &killed],
        Duration::from_secs(10),
    )
    .await;
    cluster.spawn(follower);
    cluster.wait_converged(Duration::from_secs(30)).await;
    cluster.terminate(follower);

    let mut levels = std::collections::BTreeSet::new();
    for id in 1..=3 {
        let log = log_of(&cluster, id);
        assert!(log.lines().count() > 5, "member {id} logged little:\n{log}");
        for line in log.lines() {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("member {id}: not JSON ({e}): {line}"));
            let level = value["level"].as_str();
            let message = value["message"].as_str();
            assert!(
                level.is_some() && message.is_some() && value["timestamp"].is_string(),
                "member {id}: no level, message or timestamp: {line}"
            );
            levels.insert(level.unwrap().to_owned());
        }
    }
    assert!(
        levels.contains("WARN") && levels.contains("INFO"),
        "{levels:?}"
    );
    let reachable = wait_line(
        &cluster,
        leader,
        before_kill,
        &["\"member unreachable\"", &killed],
        Duration::from_secs(1),
    )
    .await;
    let value: serde_json::Value = serde_json::from_str(&reachable).unwrap();
    assert_eq!(value["member"].as_u64(), Some(follower), "{reachable}");
    assert!(value["cause"].is_string(), "{reachable}");
}

/// Sessions the client process holds when it is killed.
const HELD: usize = 200;
/// Where [`holds_sessions_until_killed`] finds the members.
const HOLD_ENV: &str = "RMIF_TEST_HOLD_SESSIONS";

/// Not a test of its own: the client process of
/// [`sessions_of_a_killed_client_expire_in_one_line_with_their_count`], which runs this test
/// binary again with only this function. It opens [`HELD`] sessions, says so on stdout, and
/// keeps them until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the client process of another test"]
async fn holds_sessions_until_killed() {
    let Ok(servers) = std::env::var(HOLD_ENV) else {
        return;
    };
    let servers: Vec<_> = servers.split(',').map(|s| s.parse().unwrap()).collect();
    let client = RegistryClient::connect(&servers);
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..HELD {
        let client = client.clone();
        opening.spawn(async move { client.open_session(Duration::from_secs(1)).await.unwrap() });
    }
    let sessions = opening.join_all().await;
    println!("holding {} sessions", sessions.len());
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_a_killed_client_expire_in_one_line_with_their_count() {
    let cluster = Cluster::start(3, Settings::default()).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "member_logs::holds_sessions_until_killed",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(HOLD_ENV, cluster.servers_arg())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = holder.stdout.take().unwrap();
    let said = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.starts_with("holding"))
    });
    let said = tokio::time::timeout(Duration::from_secs(60), said)
        .await
        .expect("the client process opened its sessions within 60 s")
        .unwrap();
    assert_eq!(said, Some(format!("holding {HELD} sessions")));

    let since = log_of(&cluster, leader).len();
    // SIGKILL: the process dies at once, its heartbeats with it.
    holder.kill().unwrap();
    let _ = holder.wait();
    let line = wait_line(
        &cluster,
        leader,
        since,
        &["expired sessions whose heartbeats stopped"],
        Duration::from_secs(30),
    )
    .await;
    assert!(line.contains(&format!("count={HELD}")), "{line}");
    assert!(
        line.len() < 400 && line.matches("0x").count() <= 3,
        "a bounded line: {line}"
    );
    assert!(line.contains(&format!("and {} more", HELD - 3)), "{line}");
    // Well after the burst: still the one line.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = lines_after(
        &cluster,
        leader,
        since,
        &["expired sessions whose heartbeats stopped"],
    );
    assert_eq!(lines.len(), 1, "{lines:#?}");
}
