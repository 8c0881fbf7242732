//! Session expiries as the operator reads them: one INFO line per burst (the count, how long
//! it lasted, and the first few ids), however many sessions it expired. When a rack of clients
//! dies, the leader expires thousands of sessions over a few seconds, and a line of thousands of
//! ids, or a line per tick, says less than a count.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// A burst ends when no session expired for this long; its line is logged then.
const QUIET: Duration = Duration::from_secs(1);
/// A burst still going on after this long is logged anyway, and a new one begins.
const LONGEST: Duration = Duration::from_secs(10);
/// Session ids a line names at most.
const SAMPLE: usize = 3;

/// The expiries of the current burst.
#[derive(Debug, Default)]
pub struct ExpiryLog {
    count: usize,
    first: Vec<u64>,
    /// When the burst began, and when it last expired a session.
    span: Option<(Instant, Instant)>,
}

/// What one burst expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    /// Sessions expired.
    pub count: usize,
    /// From its first expiry to its last.
    pub lasted: Duration,
    /// The first few ids, and how many more there were.
    pub first: FirstIds,
}

/// The first few session ids of a burst, written `0x1f, 0x20, 0x21 and 1197 more`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstIds {
    ids: Vec<u64>,
    more: usize,
}

impl fmt::Display for FirstIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.ids.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{id:#x}")?;
        }
        if self.more > 0 {
            write!(f, " and {} more", self.more)?;
        }
        Ok(())
    }
}

impl ExpiryLog {
    /// The leader proposed the expiry of `sessions` at `now`.
    pub fn record(&mut self, sessions: &[u64], now: Instant) {
        if sessions.is_empty() {
            return;
        }
        let room = SAMPLE.saturating_sub(self.first.len());
        self.first.extend(sessions.iter().take(room));
        self.count += sessions.len();
        let began = self.span.map_or(now, |(began, _)| began);
        self.span = Some((began, now));
    }

    /// The burst to log at `now`, if one ended (quiet for [`QUIET`]) or has gone on for
    /// [`LONGEST`].
    pub fn take_due(&mut self, now: Instant) -> Option<Burst> {
        let (began, last) = self.span?;
        if now.duration_since(last) < QUIET && now.duration_since(began) < LONGEST {
            return None;
        }
        self.span = None;
        let first = std::mem::take(&mut self.first);
        let count = std::mem::take(&mut self.count);
        Some(Burst {
            count,
            lasted: last.duration_since(began),
            first: FirstIds {
                more: count - first.len(),
                ids: first,
            },
        })
    }

    /// Logs (INFO) the burst that is due at `now`, if any.
    pub fn log_due(&mut self, now: Instant) {
        if let Some(burst) = self.take_due(now) {
            tracing::info!(
                count = burst.count,
                lasted_ms = burst.lasted.as_millis() as u64,
                first = %burst.first,
                "expired sessions whose heartbeats stopped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_one_summary_with_a_few_ids_once_it_is_quiet() {
        let mut log = ExpiryLog::default();
        let start = Instant::now();
        assert_eq!(log.take_due(start), None, "nothing expired");
        let mut now = start;
        for tick in 0..48u64 {
            let ids: Vec<u64> = (tick * 25..tick * 25 + 25).collect();
            log.record(&ids, now);
            assert_eq!(log.take_due(now), None, "still going");
            now += Duration::from_millis(25);
        }
        assert_eq!(log.take_due(now + Duration::from_millis(500)), None);
        let burst = log.take_due(now + QUIET).unwrap();
        assert_eq!(burst.count, 1200);
        assert_eq!(burst.lasted, Duration::from_millis(25 * 47));
        assert_eq!(burst.first.to_string(), "0x0, 0x1, 0x2 and 1197 more");
        assert_eq!(log.take_due(now + QUIET * 5), None, "logged once");

        log.record(&[0x2a], now);
        let single = log.take_due(now + QUIET).unwrap();
        assert_eq!(
            (single.count, single.first.to_string()),
            (1, "0x2a".to_owned())
        );
    }

    #[test]
    fn a_burst_that_goes_on_is_logged_every_so_often() {
        let mut log = ExpiryLog::default();
        let start = Instant::now();
        let mut now = start;
        let mut lines = Vec::new();
        while now < start + LONGEST * 2 + Duration::from_secs(1) {
            log.record(&[1, 2], now);
            lines.extend(log.take_due(now));
            now += Duration::from_millis(100);
        }
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines
                .iter()
                .all(|b| b.lasted >= LONGEST - Duration::from_millis(100))
        );
    }
}
