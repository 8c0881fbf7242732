//! Load for the tests that restart and stop members under it: writers that count what they
//! were answered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rmif_registry::{CreateMode, RegistryClient, RegistryError};

/// Writers per test: as many client connections as the registry bench's write load.
pub const WRITERS: usize = 64;

/// What one writer saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub written: usize,
    /// Writes answered "outcome unknown: … leader changed …".
    pub leader_changed: usize,
    /// Every other error, by its text (up to its first colon-separated part), counted.
    pub other: BTreeMap<String, usize>,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.written += other.written;
        self.leader_changed += other.leader_changed;
        for (kind, count) in other.other {
            *self.other.entry(kind).or_default() += count;
        }
    }
}

/// Creates nodes `/{prefix}-{i}` through `client` until `stop` is set.
pub async fn write_until(client: RegistryClient, prefix: String, stop: Arc<AtomicBool>) -> Tally {
    let mut tally = Tally::default();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        match client
            .create(&format!("/{prefix}-{i}"), b"x", CreateMode::PERSISTENT)
            .await
        {
            Ok(_) => tally.written += 1,
            Err(RegistryError::Indeterminate(reason)) if reason.contains("leader changed") => {
                tally.leader_changed += 1
            }
            Err(error) => {
                let text = error.to_string();
                let kind = text.split(';').next().unwrap_or_default().to_owned();
                *tally.other.entry(kind).or_default() += 1;
                // A member that is down refuses at once: pace the retries.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    tally
}
