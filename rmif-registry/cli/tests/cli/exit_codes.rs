//! Exit codes a script can act on: a distinct code for each way an operation did not happen, one
//! for "may have happened", clap's usage code, and with `--json` errors as JSON objects on
//! stdout. `rmif status` fails when a member is down (members killed with SIGKILL, as processes
//! of their own) or when there is no leader.
//!
//! The status tests run the `rmif-registry` program: `cargo test --workspace` builds it, as
//! `cargo build -p rmif-registry-server` does.

use std::process::{Command, Output};
use std::time::Duration;

use rmif_testkit::Settings;

use crate::support::{Cluster, rmif};

/// The codes docs/OPERATIONS.md documents.
const NO_NODE: i32 = 10;
const NODE_EXISTS: i32 = 11;
const BAD_VERSION: i32 = 12;
const NOT_EMPTY: i32 = 13;
const INVALID: i32 = 14;
const USAGE: i32 = 2;
const NO_QUORUM: i32 = 20;
const UNREACHABLE: i32 = 21;
const DEGRADED: i32 = 22;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

/// The `--json` error object, the last line of stdout.
fn json_error(output: &Output) -> serde_json::Value {
    let stdout = text(&output.stdout);
    let line = stdout.lines().last().expect("a line on stdout");
    let value: serde_json::Value =
        serde_json::from_str(line).expect("the error is one JSON object");
    value["error"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_has_its_own_exit_code_and_a_json_form() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    client
        .create("/app", b"v", rmif_registry::CreateMode::PERSISTENT)
        .await
        .unwrap();
    client
        .create("/app/child", b"", rmif_registry::CreateMode::PERSISTENT)
        .await
        .unwrap();

    let cases: [(&[&str], i32, &str); 5] = [
        (&["get", "/missing"], NO_NODE, "no_node"),
        (&["create", "/app", "again"], NODE_EXISTS, "node_exists"),
        (
            &["set", "/app", "x", "--version", "9"],
            BAD_VERSION,
            "bad_version",
        ),
        (&["delete", "/app"], NOT_EMPTY, "not_empty"),
        (&["create", "/a//b"], INVALID, "invalid"),
    ];
    for (args, expected, kind) in cases {
        let output = rmif(&cluster, args).await;
        assert_eq!(
            code(&output),
            Some(expected),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(text(&output.stderr).starts_with("rmif: "), "{args:?}");

        let mut json_args = vec!["--json"];
        json_args.extend_from_slice(args);
        let output = rmif(&cluster, &json_args).await;
        assert_eq!(code(&output), Some(expected), "{json_args:?}");
        assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
        let error = json_error(&output);
        assert_eq!(error["kind"], kind, "{error}");
        assert_eq!(error["outcome"], "not_applied", "{error}");
        assert_eq!(error["exit_code"], expected, "{error}");
        assert!(
            error["message"].as_str().unwrap().contains(args[1]),
            "{error}"
        );
        assert_eq!(error["path"], args[1], "{error}");
    }

    // Nothing was changed by the refused writes.
    let node = client
        .get("/app", rmif_registry::Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!((node.data.as_slice(), node.stat.version), (&b"v"[..], 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_error_exits_2_and_is_json_with_json() {
    let rmif = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rmif"))
            .args(args)
            .output()
            .expect("run rmif")
    };
    let output = rmif(&["get"]);
    assert_eq!(code(&output), Some(USAGE));
    assert!(
        text(&output.stderr).contains("PATH"),
        "{}",
        text(&output.stderr)
    );

    let output = rmif(&["--json", "frobnicate", "/x"]);
    assert_eq!(code(&output), Some(USAGE));
    let error = json_error(&output);
    assert_eq!(error["kind"], "usage", "{error}");
    assert_eq!(error["exit_code"], USAGE, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("frobnicate"),
        "{error}"
    );

    // An address that cannot be used is a usage error too, before anything is contacted.
    let output = rmif(&["--servers", "not an address", "get", "/x"]);
    assert_eq!(code(&output), Some(USAGE), "{}", text(&output.stderr));

    // --help is not an error.
    assert_eq!(code(&rmif(&["--json", "--help"])), Some(0));
}

#[test]
fn no_member_to_contact_is_unreachable_and_not_applied() {
    // Nothing listens there: every attempt is refused, until the deadline.
    let nobody = format!("127.0.0.1:{}", rmif_testkit::free_port());
    let output = Command::new(env!("CARGO_BIN_EXE_rmif"))
        .args(["--servers", &nobody, "--timeout", "500", "--json"])
        .args(["create", "/x", "1"])
        .output()
        .expect("run rmif");
    assert_eq!(code(&output), Some(UNREACHABLE), "{}", text(&output.stdout));
    let error = json_error(&output);
    assert_eq!(error["kind"], "unreachable", "{error}");
    assert_eq!(error["outcome"], "not_applied", "{error}");

    let output = Command::new(env!("CARGO_BIN_EXE_rmif"))
        .args(["--servers", &nobody, "--timeout", "500", "status"])
        .output()
        .expect("run rmif status");
    assert_eq!(code(&output), Some(UNREACHABLE));
    assert!(
        text(&output.stderr).contains(&nobody),
        "{}",
        text(&output.stderr)
    );
}

/// Runs `rmif --servers … --timeout 3000 [--json] status` against a process cluster.
fn status(cluster: &rmif_testkit::Cluster, json: bool) -> Output {
    let servers = cluster.servers_arg();
    let mut command = Command::new(env!("CARGO_BIN_EXE_rmif"));
    command.args(["--servers", &servers, "--timeout", "3000"]);
    if json {
        command.arg("--json");
    }
    command.arg("status").output().expect("run rmif status")
}

/// Runs `rmif status` until its exit code is `expected`, for at most `limit`; the last output.
async fn status_until(cluster: &rmif_testkit::Cluster, expected: i32, limit: Duration) -> Output {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let output = status(cluster, false);
        if code(&output) == Some(expected) {
            return output;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rmif status did not exit {expected} within {limit:?}; last exit {:?}:\n{}{}",
            code(&output),
            text(&output.stdout),
            text(&output.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_fails_naming_a_killed_member_and_says_no_leader_without_quorum() {
    let mut cluster = rmif_testkit::Cluster::start(3, Settings::default()).await;

    // All up and agreed on a leader: 0, one leader and two followers.
    let output = status(&cluster, false);
    assert_eq!(code(&output), Some(0), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    assert_eq!(
        table.lines().filter(|l| l.contains(" leader ")).count(),
        1,
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.contains("follower")).count(),
        2,
        "{table}"
    );

    // One follower SIGKILLed: the others still have a leader, but the cluster is degraded, and
    // the error names the dead member's address.
    let (leader, follower) = cluster.leader_and_follower(Duration::from_secs(20)).await;
    let dead = cluster.members[(follower - 1) as usize]
        .client_addr
        .to_string();
    cluster.kill(follower);
    let output = status_until(&cluster, DEGRADED, Duration::from_secs(30)).await;
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("degraded") && stderr.contains(&dead),
        "{stderr}"
    );
    let row = text(&output.stdout)
        .lines()
        .find(|l| l.contains(&dead))
        .map(str::to_owned)
        .expect("a row for the killed member");
    assert!(row.contains("no ("), "{row}");
    let output = status(&cluster, true);
    assert_eq!(code(&output), Some(DEGRADED));
    let error = json_error(&output);
    assert_eq!(error["kind"], "degraded", "{error}");
    assert_eq!(error["unreachable"], serde_json::json!([dead]), "{error}");

    // The leader SIGKILLed too: the one member left knows no leader (once it notices), calls
    // itself so rather than a follower, and status exits with the no-quorum code.
    cluster.kill(leader);
    let output = status_until(&cluster, NO_QUORUM, Duration::from_secs(30)).await;
    let stderr = text(&output.stderr);
    assert!(stderr.contains("no leader"), "{stderr}");
    let table = text(&output.stdout);
    assert!(!table.contains("follower"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains("no (")).count(),
        2,
        "{table}"
    );
    let output = status(&cluster, true);
    assert_eq!(code(&output), Some(NO_QUORUM));
    let error = json_error(&output);
    assert_eq!(error["kind"], "no_quorum", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("no leader"),
        "{error}"
    );
}
