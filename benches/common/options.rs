//! The command-line options both benches share: how often and how long to measure, whether this
//! is a benchmark at all, and how `--only` / `--scenario` choices are read.

use std::time::Duration;

use clap::Args;

/// `--runs`, `--duration` and `--warmup`, and the `--bench` that Cargo passes.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Repeat everything N times and report the median of each figure
    #[arg(long, value_name = "N", default_value = "3", value_parser = positive)]
    runs: usize,

    /// Seconds measured per throughput cell
    #[arg(long, value_name = "S", default_value = "3", value_parser = seconds)]
    duration: Duration,

    /// Seconds of load before each throughput cell's measurement starts
    #[arg(long, value_name = "S", default_value = "1", value_parser = seconds)]
    warmup: Duration,

    /// Measure for real. Cargo passes it to harness-less benches under `cargo bench` only, so
    /// without it (as under `cargo test --benches`) the binary only smoke-tests itself.
    #[arg(long, hide = true)]
    bench: bool,
}

impl RunArgs {
    /// What to run. A smoke test is one run of `smoke_duration` per cell whatever the flags say:
    /// it checks that every cell works, quickly.
    pub fn timing(&self, smoke_duration: Duration) -> Timing {
        if self.bench {
            Timing {
                runs: self.runs,
                warmup: self.warmup,
                duration: self.duration,
                smoke: false,
            }
        } else {
            Timing {
                runs: 1,
                warmup: Duration::from_millis(100),
                duration: smoke_duration,
                smoke: true,
            }
        }
    }
}

/// How often and how long a bench measures.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Times the whole matrix is measured.
    pub runs: usize,
    /// Load before measuring starts, in each cell.
    pub warmup: Duration,
    /// How long each cell is measured.
    pub duration: Duration,
    /// Run without `--bench`: the figures mean nothing.
    pub smoke: bool,
}

impl Timing {
    /// What the report's header appends, so that smoke figures are never taken for a benchmark.
    pub fn smoke_note(&self) -> &'static str {
        if self.smoke {
            " (smoke test, not a benchmark: pass --bench)"
        } else {
            ""
        }
    }
}

/// The items of `all` that were `chosen`, in `all`'s order (which is the running and table order,
/// whatever order the flags came in); all of them when none was.
pub fn selected<T: Copy + PartialEq>(all: &[T], chosen: &[T]) -> Vec<T> {
    all.iter()
        .copied()
        .filter(|item| chosen.is_empty() || chosen.contains(item))
        .collect()
}

/// A positive integer.
pub fn positive(value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "needs a positive integer".to_owned())
}

/// A positive, finite number of seconds.
pub fn seconds(value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{value}` is not a positive number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_keeps_the_canonical_order() {
        assert_eq!(selected(&[1, 2, 3], &[]), [1, 2, 3]);
        assert_eq!(selected(&[1, 2, 3], &[3, 1, 3]), [1, 3]);
    }

    #[test]
    fn numbers_must_be_positive() {
        assert_eq!(positive("2"), Ok(2));
        assert!(positive("0").is_err());
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(seconds("-1").is_err());
        assert!(seconds("inf").is_err());
    }
}
