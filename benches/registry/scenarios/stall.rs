//! Stall (`--scenario stall`): 64 clients create nodes continuously on a cluster that snapshots
//! every N entries, long enough for several snapshots; the longest intervals without any
//! completed write, each with what the members logged around it (snapshots taken, sent and
//! installed, leadership changes): events that began, or were still running, from 50 ms
//! before the gap to 50 ms after it; and what the machine did meanwhile: CPU time the
//! hypervisor took (steal), which stops every process at once, and disks that held requests
//! without completing any.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rmif_bench::machine::{MachineRecord, MachineSampler};
use rmif_bench::measure::Results;

use crate::System;
use crate::client::Conn;
use crate::cluster::Cluster;
use crate::logs::{self, Event};
use crate::scenarios::load::{self, Until};
use crate::servers::Servers;
use crate::system::Tuning;

/// Writers, as in the writes scenario's larger cell.
const CLIENTS: usize = 64;
/// How far before a gap's start or after its end an event still counts as coinciding with it.
const NEAR: Duration = Duration::from_millis(50);
/// The longest gaps reported, each with its events.
const REPORTED: usize = 3;
/// The run's first seconds, whose gaps are reported apart: a fresh cluster takes its first
/// snapshots and segments then. (Before the members turned transparent huge pages off, the
/// whole VM stood still for 20-100 ms in some runs' first seconds while the host backed fresh
/// huge pages; a gap's line now says so when it happens, see [`rmif_bench::machine`].)
const WARM_UP: Duration = Duration::from_secs(2);

/// What the scenario runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// How long the clients write.
    pub duration: Duration,
    /// Entries between snapshots, on every system measured.
    pub snapshot_entries: u64,
}

/// The metrics, in ms unless said.
pub const LONGEST: &str = "stall/gap1";
pub const SECOND: &str = "stall/gap2";
pub const THIRD: &str = "stall/gap3";
/// The longest gap after [`WARM_UP`] during which the hypervisor took no CPU from the machine
/// (see [`rmif_bench::machine`]).
pub const LONGEST_UNSTOLEN: &str = "stall/gap1-unstolen";
/// The longest gap in the run's first [`WARM_UP`] seconds, which the three above leave out.
pub const WARM_UP_LONGEST: &str = "stall/warm-up-gap1";
/// Writes per second over the run.
pub const RATE: &str = "stall/rate";
/// Snapshots the member that took the fewest took during the run.
pub const SNAPSHOTS: &str = "stall/snapshots";
/// The run's settings: seconds written, entries between snapshots.
pub const SECONDS: &str = "stall/seconds";
pub const EVERY: &str = "stall/snapshot-every";
/// Of the reported gaps, how many coincided with a snapshot event.
pub const NEAR_SNAPSHOT: &str = "stall/gaps-near-snapshot";

/// Whether the scenario measures `system`: rmif and etcd.
pub fn measures(system: System) -> bool {
    matches!(system, System::Rmif | System::Etcd)
}

/// One interval without a completed write.
struct Gap {
    from: Instant,
    to: Instant,
}

impl Gap {
    fn length(&self) -> Duration {
        self.to - self.from
    }

    /// Its length in milliseconds, as reported and recorded.
    fn ms(&self) -> f64 {
        self.length().as_secs_f64() * 1000.0
    }
}

/// A fresh cluster of `system` snapshotting every `plan.snapshot_entries` entries, written to
/// for `plan.duration`; records the longest gaps, the rate and the snapshots taken. Panics if
/// any write failed.
pub async fn run(system: System, servers: &Servers, plan: &Plan, results: &mut Results<System>) {
    let tuning = Tuning {
        snapshot_entries: Some(plan.snapshot_entries),
    };
    let mut cluster = Cluster::start_tuned(system, servers, tuning);
    cluster.wait_ready().await;
    let mut setup = Conn::connect(system, &cluster.clients)
        .await
        .expect("setup client");
    for path in ["/bench", "/bench/stall"] {
        setup.ensure(path).await.expect("setup node");
    }
    let from: Vec<u64> = (0..3).map(|m| logs::length(&cluster.log_path(m))).collect();
    // Write completions are timed on the monotonic clock, the members log wall-clock times.
    let (wall, mono) = (SystemTime::now(), Instant::now());
    let to_wall = |at: Instant| wall + (at - mono);
    let machine_sampler = MachineSampler::start();
    let started = Instant::now();
    let written = load::create_nodes(
        &cluster,
        CLIENTS,
        Arc::new(|seq| (format!("/bench/stall/n{seq}"), crate::VALUE.to_vec())),
        Until::Deadline(started + plan.duration),
        true,
    )
    .await;
    let took = started.elapsed();
    let machine = machine_sampler.stop();
    // Lines about the last snapshots may follow a moment later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.check_alive();
    written.assert_complete("stall");
    let events: Vec<Event> = (0..3)
        .flat_map(|m| logs::events(system, m, &cluster.log_path(m), from[m]))
        .filter(|e| e.kind().is_some_and(|k| k != logs::Kind::Replay))
        .collect();
    let snapshots: Vec<usize> = (0..3)
        .map(|m| {
            events
                .iter()
                .filter(|e| e.member == m && begins_snapshot(e))
                .count()
        })
        .collect();
    let warmed_up = written
        .completions
        .partition_point(|at| *at < started + WARM_UP);
    let all_gaps = longest_gaps(
        &written.completions[warmed_up.saturating_sub(1)..],
        usize::MAX,
    );
    let gaps = &all_gaps[..all_gaps.len().min(REPORTED)];
    let longest_unstolen = all_gaps
        .iter()
        .find(|gap| machine.stolen_during(gap.from, gap.to) == Some(Duration::ZERO));
    let warm_up_longest = longest_gaps(&written.completions[..warmed_up], 1);
    let rate = written.succeeded as f64 / took.as_secs_f64();
    eprintln!(
        "  {} writes in {:.1} s ({rate:.0}/s, none failed); snapshots taken per member: {:?} (every {} entries)",
        written.succeeded,
        took.as_secs_f64(),
        snapshots,
        plan.snapshot_entries
    );
    let fewest = snapshots.iter().copied().min().unwrap_or(0);
    if fewest < 2 {
        eprintln!(
            "    only {fewest} snapshot(s) on some member: the run says little about snapshots; \
             lengthen --stall-duration or lower --snapshot-every"
        );
    }
    let mut near_snapshot = 0;
    for (rank, gap) in gaps.iter().enumerate() {
        let (from, to) = (to_wall(gap.from), to_wall(gap.to));
        let near: Vec<&Event> = events
            .iter()
            // Began within 50 ms of the gap, or was still running (an rmif snapshot being
            // serialized) within 50 ms of its start.
            .filter(|e| e.ended + NEAR >= from && e.started <= to + NEAR)
            .collect();
        if near.iter().any(|e| e.message.contains("snapshot")) {
            near_snapshot += 1;
        }
        let what = if near.is_empty() {
            // The closest event, to show what the members were doing around it.
            let closest = events
                .iter()
                .min_by_key(|e| signed_ms(e.started, from).abs() as u64);
            match closest {
                Some(e) => format!(
                    "no member logged anything within 50 ms (closest: {} began {:+.0} ms from the gap's start)",
                    e.describe(),
                    signed_ms(e.started, from)
                ),
                None => "no member logged anything during the run".to_owned(),
            }
        } else {
            near.iter()
                .map(|e| {
                    let began = signed_ms(e.started, from);
                    if e.ended > e.started {
                        let ended = signed_ms(e.ended, from);
                        format!(
                            "{} ran from {began:+.0} to {ended:+.0} ms from the gap's start",
                            e.describe()
                        )
                    } else {
                        format!("{} at {began:+.0} ms from the gap's start", e.describe())
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        eprintln!(
            "    gap {}: {:.1} ms, {:.1} s into the run (at {} UTC{}): {what}",
            rank + 1,
            gap.ms(),
            (gap.from - started).as_secs_f64(),
            time_of_day(from),
            describe_machine(&machine, gap)
        );
    }
    for (metric, gap) in [LONGEST, SECOND, THIRD].into_iter().zip(gaps) {
        results.record(system, metric, gap.ms());
    }
    if let Some(gap) = longest_unstolen {
        eprintln!(
            "    longest gap with no steal around it: {:.1} ms, {:.1} s into the run",
            gap.ms(),
            (gap.from - started).as_secs_f64()
        );
        results.record(system, LONGEST_UNSTOLEN, gap.ms());
    }
    if let Some(gap) = warm_up_longest.first() {
        eprintln!(
            "    longest gap in the first {} s (left out above): {:.1} ms, {:.1} s into the run (at {} UTC{})",
            WARM_UP.as_secs(),
            gap.ms(),
            (gap.from - started).as_secs_f64(),
            time_of_day(to_wall(gap.from)),
            describe_machine(&machine, gap)
        );
        results.record(system, WARM_UP_LONGEST, gap.ms());
    }
    results.record(system, RATE, rate);
    results.record(system, SECONDS, took.as_secs_f64());
    results.record(system, EVERY, plan.snapshot_entries as f64);
    results.record(system, SNAPSHOTS, fewest as f64);
    results.record(system, NEAR_SNAPSHOT, near_snapshot as f64);
}

/// Whether `event` is the member starting or having taken a snapshot of its own (counted once
/// per snapshot: rmif logs "snapshot taken", etcd "triggering snapshot" then "saved snapshot").
fn begins_snapshot(event: &Event) -> bool {
    event.message.contains("snapshot taken") || event.message.contains("triggering snapshot")
}

/// What the machine did around `gap`, as clauses of its line ("" if nothing of note): CPU the
/// hypervisor took, and the disks holding requests without completing any for 4 ms or more.
fn describe_machine(machine: &MachineRecord, gap: &Gap) -> String {
    let mut clauses = String::new();
    match machine.stolen_during(gap.from, gap.to) {
        Some(stolen) if stolen.is_zero() => {}
        Some(stolen) => clauses.push_str(&format!(
            "; the hypervisor took {} ms of CPU from the VM around it",
            stolen.as_millis()
        )),
        None => clauses.push_str("; steal unknown"),
    }
    if let Some(stall) = machine.disk_stall_during(gap.from, gap.to)
        && stall.length >= Duration::from_millis(4)
    {
        clauses.push_str(&format!(
            "; the disks completed no request for {} ms with up to {} in flight",
            stall.length.as_millis(),
            stall.in_flight
        ));
    }
    clauses
}

/// `at` as `HH:MM:SS.mmm` (UTC), to line a gap up with what else the machine recorded.
fn time_of_day(at: SystemTime) -> String {
    let since_epoch = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_epoch.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        since_epoch.subsec_millis()
    )
}

/// `at - origin` in ms, negative if `at` is earlier.
fn signed_ms(at: SystemTime, origin: SystemTime) -> f64 {
    match at.duration_since(origin) {
        Ok(after) => after.as_secs_f64() * 1000.0,
        Err(before) => -before.duration().as_secs_f64() * 1000.0,
    }
}

/// The `count` longest intervals between consecutive completions (sorted), longest first.
fn longest_gaps(completions: &[Instant], count: usize) -> Vec<Gap> {
    let mut gaps: Vec<Gap> = completions
        .windows(2)
        .map(|pair| Gap {
            from: pair[0],
            to: pair[1],
        })
        .collect();
    gaps.sort_by_key(|gap| std::cmp::Reverse(gap.length()));
    gaps.truncate(count);
    gaps
}
