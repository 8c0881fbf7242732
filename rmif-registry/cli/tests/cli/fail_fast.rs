//! `--fail-fast` and the retry line: with members SIGKILLed (processes of their own), a script
//! that asked to fail fast hears at once which members failed and why, still succeeds while a
//! member is alive, and without the flag `rmif` says on stderr that it is retrying instead of
//! waiting in silence.
//!
//! These tests run the `rmif-registry` program: `cargo build -p rmif-registry-server` builds it.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rmif_registry::CreateMode;
use rmif_testkit::{Cluster, Settings};

/// The code docs/OPERATIONS.md gives "no member could be contacted".
const UNREACHABLE: i32 = 21;
/// `rmif`'s default `--timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Runs of a command whose first member is chosen at random, so that the dead member is
/// tried first in at least one of them (each run misses it with probability 2/3).
const RUNS: usize = 20;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `rmif --servers SERVERS ARGS` (with no `--timeout`: the default) off the runtime's
/// threads; the output and how long it took.
async fn rmif(servers: &str, args: &[&str]) -> (Output, Duration) {
    let servers = servers.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_rmif"))
            .args(["--servers", &servers])
            .args(&args)
            .output()
            .expect("run rmif");
        (output, started.elapsed())
    })
    .await
    .expect("the rmif runner")
}

/// `a,b,c` with `first` in front.
fn servers_with_first(cluster: &Cluster, first: u64) -> (String, String) {
    let dead = cluster.members[(first - 1) as usize]
        .client_addr
        .to_string();
    let mut servers = vec![dead.clone()];
    servers.extend(
        cluster
            .members
            .iter()
            .filter(|m| m.id != first)
            .map(|m| m.client_addr.to_string()),
    );
    (dead, servers.join(","))
}

/// A cluster holding `/x` with one follower SIGKILLed; that member's address, and the
/// `--servers` list that starts with it.
async fn cluster_with_a_dead_follower() -> (Cluster, String, String) {
    let mut cluster = Cluster::start(3, Settings::default()).await;
    cluster
        .client()
        .create("/x", b"here", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let (_, follower) = cluster.leader_and_follower(Duration::from_secs(20)).await;
    cluster.kill(follower);
    let (dead, servers) = servers_with_first(&cluster, follower);
    (cluster, dead, servers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_makes_one_pass_over_the_members_and_names_each_when_all_are_down() {
    // One follower SIGKILLed: one pass still reaches a live member, whichever it starts with.
    let (mut cluster, dead, servers) = cluster_with_a_dead_follower().await;
    for _ in 0..RUNS {
        let (output, _) = rmif(&servers, &["--fail-fast", "get", "/x"]).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "with {dead} dead: {}",
            text(&output.stderr)
        );
        assert_eq!(text(&output.stdout), "here\n");
        assert!(
            output.stderr.is_empty(),
            "one pass prints no retry line: {}",
            text(&output.stderr)
        );
    }

    // Every member SIGKILLed: the unreachable code, long before the default timeout, and the
    // error names every member with its cause.
    for id in 1..=3 {
        cluster.kill(id);
    }
    let (output, took) = rmif(&cluster.servers_arg(), &["--fail-fast", "get", "/x"]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(UNREACHABLE), "{stderr}");
    assert!(
        took < DEFAULT_TIMEOUT / 2,
        "--fail-fast took {took:?}, the default timeout being {DEFAULT_TIMEOUT:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "one error line: {stderr}");
    assert!(stderr.starts_with("rmif: /x: "), "{stderr}");
    for member in &cluster.members {
        assert!(
            stderr.contains(&format!("{}: connection refused", member.client_addr)),
            "{} not named with its cause: {stderr}",
            member.client_addr
        );
    }
    assert!(output.stdout.is_empty());

    // The same with --json: the error object on stdout, nothing for people on stderr.
    let (output, _) = rmif(
        &cluster.servers_arg(),
        &["--fail-fast", "--json", "get", "/x"],
    )
    .await;
    assert_eq!(output.status.code(), Some(UNREACHABLE));
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
    let error: serde_json::Value =
        serde_json::from_str(text(&output.stdout).trim()).expect("one JSON object");
    assert_eq!(error["error"]["kind"], "unreachable", "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fail_fast_a_retry_is_announced_on_stderr() {
    let (mut cluster, dead, servers) = cluster_with_a_dead_follower().await;

    // A run that tries the dead member first says so in one line, and still succeeds; stdout
    // holds only the result, with --json too.
    let mut announced = 0;
    for run in 0..RUNS {
        let json = run % 2 == 1;
        let args: &[&str] = if json {
            &["--json", "get", "/x"]
        } else {
            &["get", "/x"]
        };
        let (output, _) = rmif(&servers, args).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        if json {
            let value: serde_json::Value =
                serde_json::from_str(text(&output.stdout).trim()).expect("one JSON object");
            assert_eq!(value["data"], "here");
        } else {
            assert_eq!(text(&output.stdout), "here\n");
        }
        if stderr.is_empty() {
            continue;
        }
        announced += 1;
        assert_eq!(
            stderr,
            format!(
                "rmif: {dead} unreachable (connection refused); trying the other members for up to 10s\n"
            )
        );
    }
    assert!(
        announced > 0,
        "no run of {RUNS} tried the dead member first"
    );

    // Every member down: the retry line first, then the error at the timeout.
    for id in 1..=3 {
        cluster.kill(id);
    }
    let (output, _) = rmif(&cluster.servers_arg(), &["--timeout", "1500", "get", "/x"]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(UNREACHABLE), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("rmif: 127.0.0.1:")
            && lines[0].ends_with(
                "unreachable (connection refused); trying the other members for up to 1.5s"
            ),
        "{stderr}"
    );
    assert!(lines[1].starts_with("rmif: /x: "), "{stderr}");
}
