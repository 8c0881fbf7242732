//! The recipe examples run as a user runs them (each with its embedded registry) and show what
//! their documentation says they show.

use std::process::Command;

/// Runs example `name`; returns its standard output, failing the test if it failed.
fn run(name: &str) -> String {
    let output = Command::new(rmif_testkit::program(&format!("examples/{name}")))
        .output()
        .unwrap_or_else(|error| panic!("cannot run examples/{name}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "examples/{name} failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The position of the first line of `out` that starts with `prefix`.
fn line(out: &str, prefix: &str) -> usize {
    out.lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{out}"))
}

#[test]
fn fair_lock_grants_in_order_and_the_printer_fences_the_old_holder() {
    let out = run("fair_lock");
    let bob = line(&out, "bob         got the lock");
    let carol = line(&out, "carol       got the lock");
    let dave = line(&out, "dave        got the lock");
    assert!(bob < carol && carol < dave, "granted out of order:\n{out}");
    line(&out, "printer     refused alice's second page");
    line(&out, "erin        try_lock on a held lock: not granted");
}

#[test]
fn batch_job_election_runs_each_batch_once_and_fails_over_after_a_kill() {
    let out = run("batch_job_election");
    for batch in 1..=6 {
        let runs = out
            .lines()
            .filter(|l| l.contains(&format!("ran batch {batch} of 6")))
            .count();
        assert_eq!(runs, 1, "batch {batch} ran {runs} times:\n{out}");
    }
    let killed = line(&out, "machine-1   killed with SIGKILL");
    let next = line(&out, "machine-2   leads");
    assert!(
        killed < next,
        "machine-2 led before machine-1 was killed:\n{out}"
    );
    line(&out, "all 6 batches ran");
}

#[test]
fn config_center_pushes_refuses_a_stale_publish_and_keeps_the_last_good_value() {
    let out = run("config_center");
    line(&out, "orders      was pushed Limits { max_connections: 200");
    line(&out, "billing     was pushed Limits { max_connections: 200");
    line(
        &out,
        "operator-2  refused: /rmif/config/limits: version conflict",
    );
    line(&out, "orders      rejected a value: version 2");
    line(
        &out,
        "orders      keeps Limits { max_connections: 200, requests_per_second: 1000 } (version 1)",
    );
}

#[test]
fn scheduled_job_runs_each_tick_once_and_moves_after_a_kill() {
    let out = run("scheduled_job");
    let killed_line = out
        .lines()
        .find(|l| l.ends_with("killed with SIGKILL"))
        .unwrap_or_else(|| panic!("nobody was killed:\n{out}"));
    let victim = killed_line.split_whitespace().next().unwrap();
    let after: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.ends_with("killed with SIGKILL"))
        .filter(|l| l.contains("ran the report"))
        .collect();
    assert!(!after.is_empty(), "no tick ran after the kill:\n{out}");
    assert!(
        after.iter().all(|l| !l.starts_with(victim)),
        "the killed node still ran:\n{out}"
    );
    line(&out, "8 ticks, each run once");
}
