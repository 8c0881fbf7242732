//! Measurement: latency histograms, the warm-up/measured window of a throughput cell, what its
//! load tasks tally, and the figures kept per run and reduced to medians for the report.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// A latency distribution: nanoseconds from 1 ns to 60 s, to 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Latencies {
    /// An empty distribution.
    pub fn new() -> Self {
        Latencies(Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds"))
    }

    /// Records `latency`; one longer than the bounds counts as the longest.
    pub fn record(&mut self, latency: Duration) {
        self.0.saturating_record(latency.as_nanos() as u64);
    }

    /// Adds every latency `other` recorded.
    pub fn merge(&mut self, other: &Latencies) {
        self.0.add(&other.0).expect("histograms of equal bounds");
    }

    /// The latency below which `quantile` (0 to 1) of the recorded ones fall.
    pub fn quantile(&self, quantile: f64) -> Duration {
        Duration::from_nanos(self.0.value_at_quantile(quantile))
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

/// When a throughput cell counts: operations that start during the warm-up are not counted, and
/// none starts after the end.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    from: Instant,
    until: Instant,
    duration: Duration,
}

impl Window {
    /// A window that opens `warmup` from now and lasts `duration`.
    pub fn after(warmup: Duration, duration: Duration) -> Window {
        let from = Instant::now() + warmup;
        Window {
            from,
            until: from + duration,
            duration,
        }
    }

    /// When the measured part begins.
    pub fn start(&self) -> Instant {
        self.from
    }

    /// How long the measured part lasts.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Whether an operation starting `at` is too late to start at all.
    pub fn is_over(&self, at: Instant) -> bool {
        at >= self.until
    }

    fn counts(&self, started: Instant) -> bool {
        started >= self.from
    }
}

/// What one load task (or, merged, a whole cell) saw inside its window.
#[derive(Debug)]
pub struct Tally {
    latencies: Latencies,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    /// Nothing counted yet.
    pub fn new() -> Self {
        Tally {
            latencies: Latencies::new(),
            ok: 0,
            errors: 0,
            first_error: None,
        }
    }

    /// Counts an operation that started at `started` and has just ended with `outcome`, unless
    /// it started during the warm-up.
    pub fn record(&mut self, window: &Window, started: Instant, outcome: Result<(), String>) {
        let latency = started.elapsed();
        if !window.counts(started) {
            return;
        }
        match outcome {
            Ok(()) => {
                self.ok += 1;
                self.latencies.record(latency);
            }
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }

    /// Adds what `other` counted.
    pub fn merge(&mut self, other: Tally) {
        self.latencies.merge(&other.latencies);
        self.ok += other.ok;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
    }

    /// "N {operations} failed, the first with: …", if any did.
    pub fn failures(&self, operations: &str) -> Option<String> {
        let error = self.first_error.as_ref()?;
        Some(format!(
            "{} {operations} failed, the first with: {error}",
            self.errors
        ))
    }

    /// The cell's figures, for a tally of the whole of `window`.
    pub fn sample(&self, window: &Window) -> Sample {
        Sample {
            per_sec: self.ok as f64 / window.duration.as_secs_f64(),
            p50: self.latencies.quantile(0.50),
            p99: self.latencies.quantile(0.99),
            errors: self.errors,
        }
    }
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

/// The figures of one throughput cell.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Successful operations per second.
    pub per_sec: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Failed operations.
    pub errors: u64,
}

/// The unit a bench reports latencies in.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// Microseconds (the RPC bench).
    Micros,
    /// Milliseconds (the registry bench).
    Millis,
}

impl Unit {
    /// `duration` in this unit.
    pub fn of(self, duration: Duration) -> f64 {
        match self {
            Unit::Micros => duration.as_secs_f64() * 1e6,
            Unit::Millis => duration.as_secs_f64() * 1e3,
        }
    }
}

/// Every figure measured, by system and metric name: one value per run, or per kill, change or
/// removal for the scenarios that repeat within a run.
#[derive(Debug)]
pub struct Results<S> {
    values: BTreeMap<(S, String), Vec<f64>>,
}

impl<S: Copy + Ord> Results<S> {
    /// Nothing recorded yet.
    pub fn new() -> Self {
        Results {
            values: BTreeMap::new(),
        }
    }

    /// Adds one value of `metric` for `system`.
    pub fn record(&mut self, system: S, metric: impl Into<String>, value: f64) {
        self.values
            .entry((system, metric.into()))
            .or_default()
            .push(value);
    }

    /// A throughput cell's figures, as the metrics `{cell}/rate`, `{cell}/p50` and `{cell}/p99`.
    pub fn record_sample(&mut self, system: S, cell: &str, sample: &Sample, unit: Unit) {
        self.record(system, format!("{cell}/rate"), sample.per_sec);
        self.record(system, format!("{cell}/p50"), unit.of(sample.p50));
        self.record(system, format!("{cell}/p99"), unit.of(sample.p99));
    }

    /// The median of `metric`'s values for `system`, if it was measured.
    pub fn median(&self, system: S, metric: &str) -> Option<f64> {
        median(self.values.get(&(system, metric.to_owned()))?)
    }

    /// The `q` quantile (0 to 1, nearest rank) of every value of `metric` for `system`, across
    /// runs, if it was measured: for figures recorded once per sample.
    pub fn quantile(&self, system: S, metric: &str, q: f64) -> Option<f64> {
        quantile(self.values.get(&(system, metric.to_owned()))?, q)
    }

    /// How many values of `metric` `system` has.
    pub fn count(&self, system: S, metric: &str) -> usize {
        self.values
            .get(&(system, metric.to_owned()))
            .map_or(0, Vec::len)
    }

    /// Every (system, metric) measured, in order.
    pub fn metrics(&self) -> impl Iterator<Item = (S, &str)> {
        self.values
            .keys()
            .map(|(system, metric)| (*system, metric.as_str()))
    }
}

impl<S: Copy + Ord> Default for Results<S> {
    fn default() -> Self {
        Self::new()
    }
}

/// The median, or `None` of nothing: the middle value, or the mean of the middle two.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[n / 2]),
        n => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The `q` quantile (0 to 1) of `values` by nearest rank: the smallest value that at least `q`
/// of them do not exceed (the largest for 1), or `None` of nothing.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize;
    values.get(rank.max(1) - 1).copied()
}

/// `items` rotated by the run number, so that across runs none always goes first or last (the
/// first to run meets a colder machine, the last a warmer one).
pub fn rotated<T: Clone>(items: &[T], run: usize) -> Vec<T> {
    let mut order = items.to_vec();
    if !order.is_empty() {
        let shift = run % order.len();
        order.rotate_left(shift);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_no_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=150).rev().map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), Some(75.0));
        assert_eq!(quantile(&values, 0.99), Some(149.0));
        assert_eq!(quantile(&values, 1.0), Some(150.0));
        assert_eq!(quantile(&values, 0.0), Some(1.0));
        assert_eq!(quantile(&[4.0], 0.99), Some(4.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn rotation_cycles_through_every_order() {
        assert_eq!(rotated(&[1, 2, 3], 0), [1, 2, 3]);
        assert_eq!(rotated(&[1, 2, 3], 4), [2, 3, 1]);
        assert!(rotated::<u8>(&[], 1).is_empty());
    }

    #[test]
    fn warm_up_operations_are_not_counted() {
        let window = Window::after(Duration::from_secs(60), Duration::from_secs(1));
        let mut tally = Tally::new();
        tally.record(&window, Instant::now(), Ok(()));
        tally.record(&window, Instant::now(), Err("refused".to_owned()));
        assert_eq!((tally.ok, tally.errors), (0, 0));
        assert!(tally.failures("calls").is_none());
    }

    #[test]
    fn merged_tallies_keep_the_first_error() {
        let window = Window::after(Duration::ZERO, Duration::from_secs(2));
        let mut a = Tally::new();
        a.record(&window, Instant::now(), Ok(()));
        let mut b = Tally::new();
        b.record(&window, Instant::now(), Err("first".to_owned()));
        b.record(&window, Instant::now(), Err("second".to_owned()));
        a.merge(b);
        assert_eq!(
            a.failures("calls").as_deref(),
            Some("2 calls failed, the first with: first")
        );
        assert_eq!(a.sample(&window).per_sec, 0.5);
    }
}
