//! A member's process runs with transparent huge pages off (see
//! `rmif_registry_server::disable_transparent_huge_pages` for why).

use rmif_testkit::{Cluster, Settings};

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_runs_with_transparent_huge_pages_off() {
    let cluster = Cluster::start(1, Settings::default()).await;
    let pid = cluster.members[0].pid().expect("the member runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let setting = status
        .lines()
        .find_map(|line| line.strip_prefix("THP_enabled:"))
        .expect("the kernel reports THP_enabled (Linux 5.0 and later)");
    assert_eq!(setting.trim(), "0", "{status}");
}
