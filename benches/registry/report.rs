//! The registry bench's report: what it ran on, a table of throughput and latency per workload
//! and client count, a table of times (lower is better), the discovery scenario's tables, the
//! stall, restart and size scenarios' tables, and the scenarios that failed.

use rmif_bench::measure::Results;
use rmif_bench::options::Timing;
use rmif_bench::report::{Table, machine, number, ratio};

use crate::scenarios::discovery::{self, PROVIDERS};
use crate::scenarios::fanout::{self, FANOUT};
use crate::scenarios::restart::{self, Stop};
use crate::scenarios::throughput::{CLIENTS, Load};
use crate::scenarios::{ephemeral, failover, size, stall, watch};
use crate::servers::Servers;
use crate::{Scenario, System};

pub fn print_header(timing: &Timing, servers: &Servers) {
    println!("machine: {}", machine());
    println!("peers: {}", servers.versions());
    if !servers.rmif_set.is_empty() {
        println!("rmif members run with: {}", servers.rmif_set.join(" "));
    }
    println!(
        "{} run(s); throughput cells {:.1} s warm-up + {:.1} s measured; medians across runs{}",
        timing.runs,
        timing.warmup.as_secs_f64(),
        timing.duration.as_secs_f64(),
        timing.smoke_note()
    );
    println!();
}

pub fn print_tables(scenarios: &[Scenario], results: &Results<System>) {
    let throughput: Vec<Scenario> = [Scenario::Writes, Scenario::Reads]
        .into_iter()
        .filter(|s| scenarios.contains(s))
        .collect();
    if !throughput.is_empty() {
        println!("{}", throughput_table(&throughput, results));
    }
    let times = time_table(scenarios, results);
    if let Some(table) = times {
        print!("{table}");
    }
    if scenarios.contains(&Scenario::Discovery) {
        print!("{}", discovery_tables(results));
    }
    if scenarios.contains(&Scenario::Stall) {
        print!("\n{}", stall_table(results));
    }
    if scenarios.contains(&Scenario::Restart) {
        print!("\n{}", restart_table(results));
    }
    if scenarios.contains(&Scenario::Size) {
        print!("\n{}", size_table(results));
    }
    let failed: Vec<String> = results
        .metrics()
        .filter_map(|(system, metric)| {
            let scenario = metric.strip_suffix("/failed")?;
            Some(format!("{scenario} on {}", system.name()))
        })
        .collect();
    if !failed.is_empty() {
        println!("\nFailed (no figures): {}", failed.join(", "));
    }
}

/// Operations per second and latency, one row per load and client count.
fn throughput_table(scenarios: &[Scenario], results: &Results<System>) -> Table {
    let mut table = Table::new([
        "workload",
        "clients",
        "rmif ops/s",
        "etcd ops/s",
        "ZooKeeper ops/s",
        "rmif/etcd",
        "rmif/ZK",
        "rmif p50 / p99 ms",
        "etcd p50 / p99 ms",
        "ZooKeeper p50 / p99 ms",
    ]);
    for &scenario in scenarios {
        for &load in Load::of(scenario) {
            for clients in CLIENTS {
                let key = load.key(clients);
                let figure = |system, figure| results.median(system, &format!("{key}/{figure}"));
                let latency = |system| {
                    format!(
                        "{} / {}",
                        number(figure(system, "p50"), 2),
                        number(figure(system, "p99"), 2)
                    )
                };
                let [rmif, etcd, zk] = System::ALL;
                table.row([
                    load.label().to_owned(),
                    clients.to_string(),
                    number(figure(rmif, "rate"), 0),
                    number(figure(etcd, "rate"), 0),
                    number(figure(zk, "rate"), 0),
                    ratio(figure(rmif, "rate"), figure(etcd, "rate")),
                    ratio(figure(rmif, "rate"), figure(zk, "rate")),
                    latency(rmif),
                    latency(etcd),
                    latency(zk),
                ]);
            }
        }
    }
    table
}

/// Times in ms, lower is better: the ratio is rmif's time over the peer's. `None` if no chosen
/// scenario measures a time.
fn time_table(scenarios: &[Scenario], results: &Results<System>) -> Option<Table> {
    let mut rows: Vec<(String, String)> = Vec::new();
    if scenarios.contains(&Scenario::Failover) {
        rows.push((
            "failover: longest write gap".into(),
            failover::METRIC.into(),
        ));
    }
    if scenarios.contains(&Scenario::Watch) {
        rows.push(("watch notification p50".into(), watch::P50.into()));
        rows.push(("watch notification p99".into(), watch::P99.into()));
    }
    if scenarios.contains(&Scenario::Fanout) {
        for watchers in FANOUT {
            rows.push((
                format!("fan-out to {watchers} watchers"),
                fanout::metric(watchers),
            ));
        }
    }
    if scenarios.contains(&Scenario::Ephemeral) {
        rows.push((
            "ephemeral removal after kill (2 s session)".into(),
            ephemeral::METRIC.into(),
        ));
    }
    if rows.is_empty() {
        return None;
    }
    let mut table = Table::new([
        "time (ms, lower is better)",
        "rmif",
        "etcd",
        "ZooKeeper",
        "rmif/etcd",
        "rmif/ZK",
        "samples",
    ]);
    for (label, metric) in rows {
        let time = |system| results.median(system, &metric);
        let samples = System::ALL
            .iter()
            .map(|system| results.count(*system, &metric))
            .max()
            .unwrap_or(0);
        let [rmif, etcd, zk] = System::ALL;
        table.row([
            label,
            number(time(rmif), 1),
            number(time(etcd), 1),
            number(time(zk), 1),
            ratio(time(rmif), time(etcd)),
            ratio(time(rmif), time(zk)),
            format!("{samples} per system"),
        ]);
    }
    Some(table)
}

/// The discovery scenario's tables: propagation to N consumers, bytes per change, memory per
/// consumer, and CPU per change; one row per consumer count or list size measured.
fn discovery_tables(results: &Results<System>) -> String {
    let [rmif, etcd, zk] = System::ALL;
    let measured = |prefix: &str| -> Vec<usize> {
        let mut sizes: Vec<usize> = results
            .metrics()
            .filter_map(|(_, metric)| metric.strip_prefix(prefix)?.split('/').next()?.parse().ok())
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    };
    let mut propagation = Table::new([
        format!("announcement reaching N consumers ({PROVIDERS} providers), ms"),
        "rmif p50 / p99 / max".to_owned(),
        "etcd p50 / p99 / max".to_owned(),
        "ZooKeeper p50 / p99 / max".to_owned(),
        "rmif/etcd p99".to_owned(),
        "rmif/ZK p99".to_owned(),
        "samples".to_owned(),
    ]);
    // `discovery/{consumers}/…`: the bytes and memory figures' next part is not a number.
    // Quantiles over every timed announcement of every run (each run's own p99 would rest on
    // a few dozen samples).
    for consumers in measured("discovery/") {
        let metric = discovery::latency_metric(consumers, "latency");
        let at = |system, q| results.quantile(system, &metric, q);
        let cell = |system| {
            format!(
                "{} / {} / {}",
                number(at(system, 0.50), 1),
                number(at(system, 0.99), 1),
                number(at(system, 1.0), 1)
            )
        };
        let samples = System::ALL
            .iter()
            .map(|&system| results.count(system, &metric))
            .max()
            .unwrap_or(0);
        propagation.row([
            format!("{consumers} consumers"),
            cell(rmif),
            cell(etcd),
            cell(zk),
            ratio(at(rmif, 0.99), at(etcd, 0.99)),
            ratio(at(rmif, 0.99), at(zk, 0.99)),
            format!("{samples} per system"),
        ]);
    }
    let mut bytes = Table::new([
        "bytes to the consumer per added provider",
        "rmif",
        "etcd",
        "ZooKeeper",
        "rmif / etcd / ZK bytes from the consumer",
    ]);
    for providers in measured("discovery/bytes/") {
        let down = |system| results.median(system, &discovery::bytes_metric(providers));
        let up = |system| results.median(system, &discovery::bytes_up_metric(providers));
        bytes.row([
            format!("list of {providers} providers"),
            number(down(rmif), 0),
            number(down(etcd), 0),
            number(down(zk), 0),
            format!(
                "{} / {} / {}",
                number(up(rmif), 0),
                number(up(etcd), 0),
                number(up(zk), 0)
            ),
        ]);
    }
    let mut memory = Table::new([
        "members' resident memory per consumer, KiB",
        "rmif",
        "etcd",
        "ZooKeeper",
    ]);
    // The largest count only: a member's resident memory moves by more than a few consumers
    // hold (allocator pools, the JVM's heap), so a small count's figure says nothing.
    if let Some(consumers) = measured("discovery/memory/").into_iter().max() {
        let kib = |system| results.median(system, &discovery::memory_metric(consumers));
        memory.row([
            format!("{consumers} consumers"),
            number(kib(rmif), 1),
            number(kib(etcd), 1),
            number(kib(zk), 1),
        ]);
    }
    let mut cpu = Table::new([
        "CPU ms per change (consumers' process / 3 members)",
        "rmif",
        "etcd",
        "ZooKeeper",
    ]);
    for consumers in measured("discovery/") {
        let ms = |system, name| results.median(system, &discovery::latency_metric(consumers, name));
        let cell = |system| {
            format!(
                "{} / {}",
                number(ms(system, "cpu-consumers"), 2),
                number(ms(system, "cpu-members"), 2)
            )
        };
        cpu.row([
            format!("{consumers} consumers"),
            cell(rmif),
            cell(etcd),
            cell(zk),
        ]);
    }
    format!("\n{propagation}\n{bytes}\n{memory}\n{cpu}")
}

/// The stall scenario: the longest write gaps while the members snapshot, rmif and etcd.
fn stall_table(results: &Results<System>) -> Table {
    let mut table = Table::new([
        "stall: 64 writers while members snapshot (medians)",
        "rmif",
        "etcd",
        "runs",
    ]);
    let rows: [(&str, &str, usize); 10] = [
        ("seconds written", stall::SECONDS, 0),
        ("snapshot every N entries", stall::EVERY, 0),
        (
            "longest write gap after the first 2 s, ms",
            stall::LONGEST,
            1,
        ),
        (
            "longest gap after the first 2 s with no CPU steal around it, ms",
            stall::LONGEST_UNSTOLEN,
            1,
        ),
        ("2nd longest gap, ms", stall::SECOND, 1),
        ("3rd longest gap, ms", stall::THIRD, 1),
        (
            "longest gap in the first 2 s, ms",
            stall::WARM_UP_LONGEST,
            1,
        ),
        ("of those 3, near a snapshot event", stall::NEAR_SNAPSHOT, 0),
        ("snapshots per member (fewest)", stall::SNAPSHOTS, 0),
        ("writes/s", stall::RATE, 0),
    ];
    for (label, metric, digits) in rows {
        table.row([
            label.to_owned(),
            number(results.median(System::Rmif, metric), digits),
            number(results.median(System::Etcd, metric), digits),
            results.count(System::Rmif, metric).to_string(),
        ]);
    }
    table
}

/// The restart scenario: a follower back after a stop, rmif and etcd.
fn restart_table(results: &Results<System>) -> Table {
    let mut table = Table::new(["restart of a follower (medians)", "rmif", "etcd", "runs"]);
    let row = |table: &mut Table, label: String, metric: &str, digits: usize| {
        table.row([
            label,
            number(results.median(System::Rmif, metric), digits),
            number(results.median(System::Etcd, metric), digits),
            results.count(System::Rmif, metric).to_string(),
        ]);
    };
    row(&mut table, "nodes written first".into(), restart::NODES, 0);
    row(
        &mut table,
        "their writes/s (64 clients)".into(),
        restart::LOAD_RATE,
        0,
    );
    for stop in Stop::ALL {
        let name = stop.name();
        if stop == Stop::Term {
            row(
                &mut table,
                format!("{name}: until exited, ms"),
                &restart::metric(stop, "stopping"),
                0,
            );
        }
        row(
            &mut table,
            format!("{name}: data directory, MiB"),
            &restart::metric(stop, "data-mib"),
            1,
        );
        row(
            &mut table,
            format!("{name}: spawn to accepting, ms"),
            &restart::metric(stop, "accepting"),
            0,
        );
        row(
            &mut table,
            format!("{name}: spawn to healthy, ms"),
            &restart::metric(stop, "healthy"),
            0,
        );
        row(
            &mut table,
            format!("{name}: log entries replayed"),
            &restart::metric(stop, "replay-entries"),
            0,
        );
        row(
            &mut table,
            format!("{name}: replay took (logged), ms"),
            &restart::metric(stop, "replay-ms"),
            0,
        );
    }
    table
}

/// The size scenario (rmif): memory per node and session, heartbeat CPU, snapshot, restart.
fn size_table(results: &Results<System>) -> Table {
    let mut table = Table::new(["rmif size (medians)", "leader", "followers (mean)"]);
    let both = |table: &mut Table, label: String, figure: &str, digits: usize| {
        table.row([
            label,
            number(
                results.median(System::Rmif, &size::metric(figure, true)),
                digits,
            ),
            number(
                results.median(System::Rmif, &size::metric(figure, false)),
                digits,
            ),
        ]);
    };
    let one = |table: &mut Table, label: &str, metric: &str, digits: usize| {
        table.row([
            label.to_owned(),
            number(results.median(System::Rmif, metric), digits),
            String::new(),
        ]);
    };
    let count = |metric| number(results.median(System::Rmif, metric), 0);
    let (nodes, sessions) = (count("size/nodes"), count("size/sessions"));
    for step in size::STEPS {
        both(
            &mut table,
            format!("resident MiB after: {step}"),
            &format!("rss-mib-{step}"),
            1,
        );
    }
    both(
        &mut table,
        format!("bytes per persistent node ({nodes})"),
        "bytes-per-node",
        0,
    );
    both(
        &mut table,
        format!("bytes per session ({sessions})"),
        "bytes-per-session",
        0,
    );
    both(
        &mut table,
        "bytes per ephemeral node".to_owned(),
        "bytes-per-ephemeral",
        0,
    );
    both(
        &mut table,
        "CPU ms/s, no sessions".to_owned(),
        "cpu-idle",
        1,
    );
    both(
        &mut table,
        format!("CPU ms/s, {sessions} sessions' heartbeats only"),
        "cpu-keepalive",
        1,
    );
    one(
        &mut table,
        "CPU ms/s of this process (the heartbeats)",
        "size/cpu-bench",
        1,
    );
    one(
        &mut table,
        "snapshot of it all (leader), MiB",
        "size/snapshot-mib",
        1,
    );
    one(
        &mut table,
        "snapshot took (logged), ms",
        "size/snapshot-ms",
        0,
    );
    one(
        &mut table,
        "follower data directory, MiB",
        "size/restart-data-mib",
        1,
    );
    one(
        &mut table,
        "follower restart (sigterm): spawn to accepting, ms",
        "size/restart-accepting",
        0,
    );
    one(
        &mut table,
        "follower restart (sigterm): spawn to healthy, ms",
        "size/restart-healthy",
        0,
    );
    table
}
