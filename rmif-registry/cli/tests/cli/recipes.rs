//! `rmif elect`, `rmif lock` and `rmif config` run as processes: the command runs only while
//! the lock is held or the election led, with the token in its environment, and is stopped
//! when the leadership is lost.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rmif_registry::recipes::lock::FairLock;
use rmif_testkit::proxy::{Link, LinkMode};
use tokio::time::Instant;

use crate::support::{Cluster, rmif};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_runs_the_command_with_its_fencing_token_and_passes_its_exit_code_on() {
    let cluster = Cluster::start(3).await;
    let first = rmif(
        &cluster,
        &[
            "lock",
            "jobs",
            "--",
            "sh",
            "-c",
            "echo token=$RMIF_FENCING_TOKEN",
        ],
    )
    .await;
    assert!(first.status.success(), "{}", stderr(&first));
    let token: u64 = stdout(&first)
        .trim()
        .strip_prefix("token=")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no token in {:?}", stdout(&first)));
    let second = rmif(
        &cluster,
        &[
            "lock",
            "jobs",
            "--",
            "sh",
            "-c",
            "echo token=$RMIF_FENCING_TOKEN; exit 3",
        ],
    )
    .await;
    assert_eq!(second.status.code(), Some(3), "{}", stderr(&second));
    let later: u64 = stdout(&second).trim()[6..].parse().unwrap();
    assert!(later > token, "{later} after {token}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_with_wait_gives_up_without_running_the_command_while_another_holds_it() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let session = Arc::new(client.open_session(Duration::from_secs(5)).await.unwrap());
    let held = FairLock::new(session, "busy")
        .await
        .unwrap()
        .lock()
        .await
        .unwrap();
    let marker = tempfile::tempdir().unwrap();
    let ran = marker.path().join("ran");
    let output = rmif(
        &cluster,
        &[
            "lock",
            "busy",
            "--wait",
            "300",
            "--",
            "touch",
            ran.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(16), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not granted within 300 ms"),
        "{}",
        stderr(&output)
    );
    assert!(!ran.exists(), "the command ran without the lock");
    held.unlock().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elect_stops_the_command_when_cut_off_from_the_registry_and_says_so() {
    let cluster = Cluster::start(3).await;
    let link = Link::start(cluster.client().servers()[0]).await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!(
        "echo $$ > {}; echo leading with $RMIF_LEADER_TOKEN; exec sleep 60",
        pid_file.display()
    );
    let elect = std::process::Command::new(env!("CARGO_BIN_EXE_rmif"))
        .args([
            "--servers",
            &link.addr.to_string(),
            "--session-timeout",
            "1500",
        ])
        .args(["elect", "nightly", "--id", "cli", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rmif elect");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pid_file.exists()
        || std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .is_empty()
    {
        assert!(Instant::now() < deadline, "the command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let command_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        rmif_registry::recipes::election::Election::leader(&cluster.client(), "nightly")
            .await
            .unwrap()
            .as_deref(),
        Some("cli")
    );

    link.set(LinkMode::Drop);
    let output = tokio::task::spawn_blocking(move || elect.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(17), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("leading with "),
        "{}",
        stdout(&output)
    );
    let said = stderr(&output);
    assert!(
        said.contains("no contact with the registry") && said.contains("stopped sh (SIGKILL)"),
        "{said}"
    );
    // The command is gone (not left running without the leadership).
    let alive = unsafe { libc::kill(command_pid, 0) } == 0;
    assert!(!alive, "the command (pid {command_pid}) still runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_sets_with_compare_and_set_and_gets_json_values() {
    let cluster = Cluster::start(3).await;
    let set = rmif(
        &cluster,
        &["config", "set", "limits", r#"{"max": 100}"#, "--new"],
    )
    .await;
    assert!(set.status.success(), "{}", stderr(&set));
    assert_eq!(stdout(&set).trim(), "set limits (version 0)");
    let again = rmif(
        &cluster,
        &["config", "set", "limits", r#"{"max": 1}"#, "--new"],
    )
    .await;
    assert_eq!(again.status.code(), Some(11), "{}", stderr(&again));
    let cas = rmif(
        &cluster,
        &[
            "config",
            "set",
            "limits",
            r#"{"max": 200}"#,
            "--version",
            "0",
        ],
    )
    .await;
    assert!(cas.status.success(), "{}", stderr(&cas));
    let stale = rmif(
        &cluster,
        &["config", "set", "limits", r#"{"max": 5}"#, "--version", "0"],
    )
    .await;
    assert_eq!(stale.status.code(), Some(12), "{}", stderr(&stale));
    let not_json = rmif(&cluster, &["config", "set", "limits", "{max: 5"]).await;
    assert_eq!(not_json.status.code(), Some(2), "{}", stderr(&not_json));
    let get = rmif(&cluster, &["--json", "config", "get", "limits"]).await;
    let value: serde_json::Value = serde_json::from_str(stdout(&get).trim()).unwrap();
    assert_eq!(value["value"]["max"], 200);
    assert_eq!(value["version"], 1);
}
