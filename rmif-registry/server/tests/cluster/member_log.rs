//! Reading a member's log file as an operator would: its lines, waiting for one, and the
//! numeric fields of a line.

use std::time::Duration;

use rmif_testkit::Cluster;
use tokio::time::Instant;

/// Member `id`'s whole log so far.
pub fn log_of(cluster: &Cluster, id: u64) -> String {
    std::fs::read_to_string(&cluster.members[(id - 1) as usize].log).unwrap_or_default()
}

/// The lines of member `id`'s log after its first `since` bytes that contain every one of
/// `parts`.
pub fn lines_after(cluster: &Cluster, id: u64, since: usize, parts: &[&str]) -> Vec<String> {
    let log = log_of(cluster, id);
    log.get(since..)
        .unwrap_or_default()
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .map(str::to_owned)
        .collect()
}

/// Waits until member `id`'s log, after its first `since` bytes, has a line containing every
/// one of `parts`; returns it.
pub async fn wait_line(
    cluster: &Cluster,
    id: u64,
    since: usize,
    parts: &[&str],
    limit: Duration,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(line) = lines_after(cluster, id, since, parts).into_iter().next() {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "member {id} logged no line with {parts:?} within {limit:?}:\n{}",
            log_of(cluster, id)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The whole-number value of `key=` in a log line.
pub fn field(line: &str, key: &str) -> u64 {
    let start = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        + key.len()
        + 2;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{key}= is not a number in {line}"))
}
