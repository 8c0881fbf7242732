//! A log store in memory, for in-process tests of the replica: what it holds lives as long as
//! one of its clones, so a test can start a replica again on what the previous one stored.

use std::sync::{Arc, Mutex, MutexGuard};

use raft::prelude::Snapshot;

use super::{LogStore, Persist, Recovered};
use crate::error::ServerError;

/// A store whose "disk" is shared by its clones.
#[derive(Clone, Default)]
pub struct MemoryStore {
    stored: Arc<Mutex<Recovered>>,
}

impl MemoryStore {
    fn stored(&self) -> MutexGuard<'_, Recovered> {
        self.stored.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LogStore for MemoryStore {
    fn recover(&self) -> Result<Recovered, ServerError> {
        Ok(self.stored().clone())
    }

    fn persist(&mut self, batch: Persist<'_>) -> Result<(), ServerError> {
        let mut stored = self.stored();
        if let Some(snapshot) = batch.snapshot {
            stored.snapshot = Some(snapshot.clone());
            stored.entries.clear();
        }
        if let Some(first) = batch.entries.first() {
            stored.entries.retain(|entry| entry.index < first.index);
            stored.entries.extend_from_slice(batch.entries);
        }
        if let Some(hard_state) = batch.hard_state {
            stored.hard_state = hard_state.clone();
        }
        if let Some(conf_state) = batch.conf_state {
            stored.conf_state = Some(conf_state.clone());
        }
        Ok(())
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), ServerError> {
        let mut stored = self.stored();
        let through = snapshot.get_metadata().index;
        stored.entries.retain(|entry| entry.index > through);
        stored.snapshot = Some(snapshot.clone());
        Ok(())
    }
}
