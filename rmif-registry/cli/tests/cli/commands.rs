//! The `rmif` command line, run as a process against real members: output for people and for
//! machines, and errors that name the path and the reason with a non-zero exit code.

use std::process::{Command, Output};

use std::time::Duration;

use rmif_registry::CreateMode;

use crate::support::{Cluster, rmif};

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "rmif failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The stderr of a run that failed with one of `codes` (tests/cli/exit_codes.rs pins each).
fn failed(output: &Output, codes: &[i32]) -> String {
    assert!(
        output
            .status
            .code()
            .is_some_and(|code| codes.contains(&code)),
        "exit {:?}, expected one of {codes:?}; stdout: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_writes_and_reports_errors_by_path() {
    let mut cluster = Cluster::start(3).await;

    assert_eq!(
        ok(&rmif(&cluster, &["create", "/app", "hello"]).await),
        "created /app\n"
    );
    assert_eq!(ok(&rmif(&cluster, &["get", "/app"]).await), "hello\n");
    assert_eq!(
        ok(&rmif(&cluster, &["get", "--stale", "/app"]).await),
        "hello\n"
    );
    assert_eq!(
        ok(&rmif(&cluster, &["set", "/app", "world", "--version", "0"]).await),
        "set /app (version 1)\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(ok(&rmif(&cluster, &["--json", "get", "/app"]).await).trim()).unwrap();
    assert_eq!(json["path"], "/app");
    assert_eq!(json["data"], "world");
    assert_eq!(json["stat"]["version"], 1);
    assert!(json["zxid"].as_u64().unwrap() > 0);

    assert_eq!(
        ok(&rmif(&cluster, &["create", "--sequential", "/app/job-", "x"]).await),
        "created /app/job-0000000000\n"
    );
    assert_eq!(
        ok(&rmif(&cluster, &["ls", "/app"]).await),
        "job-0000000000\n"
    );
    assert!(ok(&rmif(&cluster, &["stat", "/app"]).await).contains("num_children = 1"));
    assert!(ok(&rmif(&cluster, &["sync"]).await).starts_with("synced (zxid "));
    let json_lines = ok(&rmif(&cluster, &["--json", "ls", "/app"]).await);
    assert_eq!(json_lines.lines().count(), 1, "one JSON object per result");

    let status = ok(&rmif(&cluster, &["status"]).await);
    assert_eq!(
        status.lines().filter(|l| l.contains("leader")).count(),
        1,
        "{status}"
    );
    assert_eq!(
        status.lines().filter(|l| l.contains("follower")).count(),
        2,
        "{status}"
    );
    let status_json = ok(&rmif(&cluster, &["--json", "status"]).await);
    for line in status_json.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["reachable"], true);
        assert!(row["applied"].as_u64().unwrap() > 0, "{row}");
        assert!(row["term"].as_u64().unwrap() > 0, "{row}");
    }

    let cases: [(&[&str], &str, i32); 6] = [
        (
            &["create", "/app", "again"],
            "/app: node already exists",
            11,
        ),
        (&["get", "/missing"], "/missing: no such node", 10),
        (
            &["set", "/app", "x", "--version", "7"],
            "/app: version conflict (expected 7, found 1)",
            12,
        ),
        (&["delete", "/app"], "/app: node has children", 13),
        (&["create", "/a//b"], "\"/a//b\": invalid path", 14),
        (&["create", "/nothing/here"], "/nothing: no such node", 10),
    ];
    for (args, expected, code) in cases {
        let stderr = failed(&rmif(&cluster, args).await, &[code]);
        assert!(stderr.starts_with("rmif: "), "{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }

    // Without a quorum: an error that still names the path, and a member shown unreachable.
    let (leader, follower) = cluster.leader_and_follower(Duration::from_secs(5)).await;
    cluster.stop(leader).await;
    cluster.stop(follower).await;
    // No quorum (20), or outcome unknown (30) if the write reached the old leader.
    let stderr = failed(
        &rmif(&cluster, &["create", "/app/lonely", "x"]).await,
        &[20, 30],
    );
    assert!(
        stderr.contains("/app/lonely")
            && (stderr.contains("no quorum") || stderr.contains("outcome unknown")),
        "{stderr}"
    );
    // Status fails: degraded (22) while the survivor still names the old leader, no quorum (20)
    // once it knows none.
    let output = rmif(&cluster, &["status"]).await;
    failed(&output, &[20, 22]);
    let status = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        status.lines().filter(|l| l.contains("no (")).count(),
        2,
        "{status}"
    );
}

/// `rmif --json watch --recursive PATH` prints one JSON object per event (type, path, zxid) in
/// zxid order, as the changes happen, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_watch_prints_one_json_line_per_event() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use tokio::sync::mpsc;

    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    client
        .create("/w", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    let servers = cluster.servers_arg();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rmif"))
        .args([
            "--servers",
            &servers,
            "--json",
            "watch",
            "--recursive",
            "/w",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rmif watch");
    // Lines of both streams, read on threads of their own.
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<(bool, String)>();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    for (is_stdout, stream) in [
        (true, Box::new(stdout) as Box<dyn std::io::Read + Send>),
        (false, Box::new(stderr)),
    ] {
        let tx = lines_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send((is_stdout, line));
            }
        });
    }
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(10), lines.recv())
            .await
            .ok()
            .flatten()
            .expect("a line from rmif watch within 10 s")
    };
    let (is_stdout, armed) = next_line().await;
    assert!(
        !is_stdout && armed.starts_with("rmif: watching /w from zxid"),
        "{armed}"
    );

    client
        .create("/w/a", b"1", CreateMode::PERSISTENT)
        .await
        .unwrap();
    client.set("/w/a", b"2", None).await.unwrap();
    let deleted = client.delete("/w/a", None).await.unwrap();

    let mut seen = Vec::new();
    let mut last_zxid = 0;
    while last_zxid < deleted.zxid {
        let (is_stdout, line) = next_line().await;
        assert!(is_stdout, "unexpected diagnostic: {line}");
        let event: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
        let zxid = event["zxid"].as_u64().expect("a zxid");
        assert!(zxid >= last_zxid, "zxid {zxid} after {last_zxid}");
        last_zxid = zxid;
        if event["path"] == "/w/a" {
            seen.push(event["type"].as_str().expect("a type").to_owned());
        }
    }
    assert_eq!(seen, ["created", "data_changed", "deleted"]);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmif_alerts_prints_the_alerts_the_registry_kept() {
    use rmif_registry::discovery::{ALERTS_PATH, Alert, AlertKind};

    let cluster = Cluster::start(3).await;
    let none = rmif(&cluster, &["alerts"]).await;
    assert_eq!(ok(&none), "");
    assert!(String::from_utf8_lossy(&none.stderr).contains("no alerts"));
    assert_eq!(ok(&rmif(&cluster, &["--json", "alerts"]).await), "");

    let alert = |at_ms, kind, down_ms| Alert {
        at_ms,
        kind,
        service: "demo.Echo".into(),
        address: "10.0.0.1:9000".into(),
        reason: "no answer within 200 ms".into(),
        down_ms,
    };
    let kept = [
        alert(1_764_500_000_000, AlertKind::Unavailable, 0),
        alert(1_764_500_001_500, AlertKind::Available, 1_500),
    ];
    let client = cluster.client();
    client
        .create("/rmif", b"", CreateMode::PERSISTENT)
        .await
        .unwrap();
    client
        .create(
            ALERTS_PATH,
            &Alert::list_to_json(&kept),
            CreateMode::PERSISTENT,
        )
        .await
        .unwrap();

    assert_eq!(
        ok(&rmif(&cluster, &["alerts"]).await),
        "2025-11-30T10:53:20.000Z UNAVAILABLE demo.Echo 10.0.0.1:9000 no answer within 200 ms\n\
         2025-11-30T10:53:21.500Z AVAILABLE   demo.Echo 10.0.0.1:9000 no answer within 200 ms (down 1500 ms)\n"
    );
    let lines = ok(&rmif(&cluster, &["--json", "alerts", "--last", "1"]).await);
    let objects: Vec<serde_json::Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object a line"))
        .collect();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["kind"], "available");
    assert_eq!(objects[0]["address"], "10.0.0.1:9000");
    assert_eq!(objects[0]["down_ms"], 1_500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_parents_makes_the_missing_ones_and_without_it_names_the_missing_parent() {
    let cluster = Cluster::start(3).await;
    let without = rmif(&cluster, &["create", "/deep/er/node", "x"]).await;
    assert_eq!(without.status.code(), Some(10), "no such parent");
    let with = rmif(&cluster, &["create", "-p", "/deep/er/node", "x"]).await;
    assert_eq!(ok(&with).trim(), "created /deep/er/node");
    assert_eq!(
        ok(&rmif(&cluster, &["get", "/deep/er/node"]).await).trim(),
        "x"
    );
    assert_eq!(ok(&rmif(&cluster, &["get", "/deep/er"]).await).trim(), "");
    // Existing parents are kept as they are.
    let again = rmif(&cluster, &["create", "-p", "/deep/er/other", "y"]).await;
    assert_eq!(ok(&again).trim(), "created /deep/er/other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_may_be_given_by_host_name() {
    let cluster = Cluster::start(3).await;
    let by_name: Vec<String> = cluster
        .client()
        .servers()
        .iter()
        .map(|addr| format!("localhost:{}", addr.port()))
        .collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_rmif"))
            .args(["--servers", &by_name.join(","), "create", "/named", "yes"])
            .output()
            .expect("run rmif")
    })
    .await
    .unwrap();
    assert_eq!(ok(&output).trim(), "created /named");
}
