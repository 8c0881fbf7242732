//! What the machine itself did during a scenario, sampled every 2 ms, so that a gap without
//! writes can tell whether the whole machine stood still: CPU time the hypervisor took from
//! this virtual machine (the `steal` column of `/proc/stat`), and stretches in which the disks
//! held requests but completed none (`/proc/diskstats`).
//!
//! On the bench's VM, write gaps of 17-37 ms in which every thread of every registry member,
//! and the bench's own, waited on the network were each matched by 20-70 ms of steal (summed
//! over the two vCPUs).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the counters are read: often enough to place a stall within a few ms.
const EVERY: Duration = Duration::from_millis(2);
/// How far around an interval steal still counts as falling in it. The kernel accounts steal at
/// its next tick after the VM runs again, so a stretch shows up a little after it happened.
const SLACK_BEFORE: Duration = Duration::from_millis(5);
const SLACK_AFTER: Duration = Duration::from_millis(15);

/// Reads the counters on a thread of its own until stopped.
#[derive(Debug)]
pub struct MachineSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Reading>>,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    /// Steal so far, summed over the CPUs.
    stolen: Duration,
    /// Requests the disks completed so far, and how many they held at that moment.
    disk: DiskCounters,
}

/// Summed over the machine's disks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct DiskCounters {
    /// Reads, writes, discards and flushes completed.
    completed: u64,
    /// Requests issued and not completed.
    in_flight: u64,
}

/// The readings of one scenario.
#[derive(Debug)]
pub struct MachineRecord {
    readings: Vec<Reading>,
}

/// The longest stretch within an interval in which the disks held requests and completed none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStall {
    /// How long it lasted (to the sampling period).
    pub length: Duration,
    /// The most requests held meanwhile.
    pub in_flight: u64,
}

impl MachineSampler {
    /// Starts reading. Where `/proc/stat` cannot be read, nothing is recorded and every interval
    /// reads as unknown.
    pub fn start() -> MachineSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let disks = whole_disks();
        let thread = std::thread::spawn(move || {
            let mut readings = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                let Some(stolen) = read_stolen() else { break };
                let disk = std::fs::read_to_string("/proc/diskstats")
                    .map(|stats| parse_disks(&stats, &disks))
                    .unwrap_or_default();
                readings.push(Reading {
                    at: Instant::now(),
                    stolen,
                    disk,
                });
                std::thread::sleep(EVERY);
            }
            readings
        });
        MachineSampler { stop, thread }
    }

    /// Stops reading; returns what was read.
    pub fn stop(self) -> MachineRecord {
        self.stop.store(true, Ordering::Relaxed);
        MachineRecord {
            readings: self.thread.join().unwrap_or_default(),
        }
    }
}

impl MachineRecord {
    /// Steal (summed over CPUs) accounted from a little before `from` to a little after `to`;
    /// `None` if the readings do not cover that stretch.
    pub fn stolen_during(&self, from: Instant, to: Instant) -> Option<Duration> {
        let (from, to) = (from.checked_sub(SLACK_BEFORE)?, to + SLACK_AFTER);
        let before = self.readings.iter().rev().find(|r| r.at <= from)?;
        let after = self.readings.iter().find(|r| r.at >= to)?;
        Some(after.stolen.saturating_sub(before.stolen))
    }

    /// The longest stretch between `from` and `to` over which consecutive readings saw requests
    /// held and none completed, if any.
    pub fn disk_stall_during(&self, from: Instant, to: Instant) -> Option<DiskStall> {
        let first = self
            .readings
            .partition_point(|r| r.at < from)
            .saturating_sub(1);
        let last = self.readings.partition_point(|r| r.at <= to);
        let within = self
            .readings
            .get(first..=last.min(self.readings.len().saturating_sub(1)))?;
        let mut longest: Option<DiskStall> = None;
        let mut stalled_since: Option<(Instant, u64)> = None;
        for pair in within.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.disk.in_flight > 0 && b.disk.completed == a.disk.completed {
                let (since, held) = stalled_since.get_or_insert((a.at, 0));
                *held = (*held).max(a.disk.in_flight).max(b.disk.in_flight);
                let stall = DiskStall {
                    length: b.at - *since,
                    in_flight: *held,
                };
                if longest.is_none_or(|l| stall.length > l.length) {
                    longest = Some(stall);
                }
            } else {
                stalled_since = None;
            }
        }
        longest
    }
}

/// The `steal` column of the `cpu` line of `/proc/stat`, in clock ticks, as a duration.
fn read_stolen() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks = parse_steal(&stat)?;
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).ok().filter(|&hz| hz > 0)?;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / per_second))
}

/// The eighth number of the aggregate `cpu` line (user nice system idle iowait irq softirq
/// steal).
fn parse_steal(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    line.split_whitespace().nth(8)?.parse().ok()
}

/// The machine's disks, not their partitions, nor loop, RAM or compressed-RAM devices.
fn whole_disks() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| !["loop", "ram", "zram"].iter().any(|p| name.starts_with(p)))
        .collect()
}

/// The counters of `disks` in `/proc/diskstats`, summed: completed reads (field 1 after the
/// name), writes (5), discards (12) and flushes (16), and requests in flight (9).
fn parse_disks(stats: &str, disks: &[String]) -> DiskCounters {
    let mut sum = DiskCounters::default();
    for line in stats.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 12 || !disks.iter().any(|disk| disk == fields[2]) {
            continue;
        }
        let field = |n: usize| -> u64 {
            fields
                .get(2 + n)
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        sum.completed += field(1) + field(5) + field(12) + field(16);
        sum.in_flight += field(9);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steal_column_is_read_from_the_aggregate_cpu_line() {
        let stat = "cpu  3601163 470291 1535409 5467098 59043 0 328833 4737 0 0\n\
                    cpu0 1800000 1 2 3 4 5 6 99 0 0\n";
        assert_eq!(parse_steal(stat), Some(4737));
        assert_eq!(parse_steal("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(parse_steal("cpu  1 2 3\n"), None);
    }

    #[test]
    fn disk_counters_sum_the_named_disks_completions_and_requests_in_flight() {
        let stats = " 254 0 vda 10 0 0 0 20 0 0 0 3 0 0 40 0 0 0 50 0\n\
                     254 1 vda1 1 0 0 0 2 0 0 0 1 0 0 4 0 0 0 5 0\n\
                     7 0 loop0 100 0 0 0 100 0 0 0 9 0 0 0 0 0 0 0 0\n\
                     254 16 vdb 1 0 0 0 1 0 0 0 2 0 0\n";
        let disks = ["vda".to_owned(), "vdb".to_owned()];
        assert_eq!(
            parse_disks(stats, &disks),
            DiskCounters {
                completed: 10 + 20 + 40 + 50 + 1 + 1,
                in_flight: 5
            }
        );
    }

    fn record(readings: &[(u64, u64, u64, u64)]) -> (Instant, MachineRecord) {
        let start = Instant::now() + Duration::from_secs(1);
        let readings = readings
            .iter()
            .map(|&(ms, stolen_ms, completed, in_flight)| Reading {
                at: start + Duration::from_millis(ms),
                stolen: Duration::from_millis(stolen_ms),
                disk: DiskCounters {
                    completed,
                    in_flight,
                },
            })
            .collect();
        (start, MachineRecord { readings })
    }

    #[test]
    fn steal_during_an_interval_is_the_growth_of_the_counter_around_it() {
        let (start, record) = record(&[
            (0, 100, 0, 0),
            (10, 100, 0, 0),
            (50, 100, 0, 0),
            (80, 160, 0, 0),
            (200, 160, 0, 0),
        ]);
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(
            record.stolen_during(at(60), at(62)),
            Some(Duration::from_millis(60))
        );
        assert_eq!(record.stolen_during(at(20), at(30)), Some(Duration::ZERO));
        assert_eq!(
            record.stolen_during(at(150), at(190)),
            None,
            "no reading after"
        );
    }

    #[test]
    fn a_disk_stall_is_the_longest_run_of_readings_with_requests_held_and_none_completed() {
        let (start, record) = record(&[
            (0, 0, 5, 0),
            (2, 0, 6, 1),
            (4, 0, 6, 2),
            (6, 0, 6, 3),
            (8, 0, 9, 0),
            (10, 0, 9, 1),
            (12, 0, 9, 1),
            (14, 0, 10, 0),
            (16, 0, 10, 0),
            (18, 0, 10, 0),
        ]);
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(
            record.disk_stall_during(at(1), at(15)),
            Some(DiskStall {
                length: Duration::from_millis(4),
                in_flight: 3
            })
        );
        assert_eq!(
            record.disk_stall_during(at(15), at(18)),
            None,
            "idle, not stalled"
        );
    }
}
