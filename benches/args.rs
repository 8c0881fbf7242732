//! Command-line values shared by the bench binaries.

use std::str::FromStr;
use std::time::Duration;

/// A positive integer given to `flag`.
pub fn parse_positive<T: FromStr + PartialOrd + From<u8>>(
    value: &str,
    flag: &str,
) -> Result<T, String> {
    value
        .parse::<T>()
        .ok()
        .filter(|n| *n > T::from(0))
        .ok_or(format!("{flag} needs a positive integer"))
}

/// A positive, finite number of seconds.
pub fn parse_seconds(value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or(format!("`{value}` is not a positive number of seconds"))
}
