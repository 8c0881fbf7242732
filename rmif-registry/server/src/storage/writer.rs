//! The storage thread: makes the Raft driver's writes durable while the driver goes on stepping
//! messages. Writes are done in the order they were queued; those that queue up while the disk
//! is busy go to the store together, in one durable transaction (group commit across Readies).
//! Each write's completion comes back to the driver, which only then tells raft-rs (and sends
//! the messages that had to wait for it, such as a follower's acknowledgement).

use raft::prelude::{ConfState, Entry, HardState, Message, Snapshot};
use tokio::sync::mpsc;

use super::{LogStore, Persist, ServerError};

/// One write the driver hands over.
#[derive(Debug, Default)]
pub struct Write {
    /// The raft-rs Ready this write comes from, if any (reported back once durable).
    pub ready: Option<u64>,
    /// A snapshot received from the leader.
    pub snapshot: Option<Snapshot>,
    /// Entries to append (replacing any stored from the first one's index on).
    pub entries: Vec<Entry>,
    /// The hard state to store.
    pub hard_state: Option<HardState>,
    /// The configuration to store.
    pub conf_state: Option<ConfState>,
    /// Nothing here must be durable before it is reported (see [`Persist::may_defer_sync`]).
    pub may_defer_sync: bool,
    /// Messages to send once this write is durable.
    pub messages: Vec<Message>,
    /// A snapshot this member made: stored, and the log it covers dropped.
    pub own_snapshot: Option<Snapshot>,
}

/// A finished write: the newest Ready it made durable, and the messages that waited for it.
#[derive(Debug)]
pub struct Persisted {
    pub ready: Option<u64>,
    pub messages: Vec<Message>,
}

/// Where the driver's writes are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageMode {
    /// On a thread of their own, while the driver goes on (a member).
    Thread,
    /// On the driver's task, before [`StorageWriter::write`] returns, each write on its own; the
    /// completion still arrives on the same channel. For in-process tests on a runtime with
    /// paused time, which would otherwise move the clock on while a write is under way on
    /// another thread.
    #[cfg(test)]
    Inline,
}

/// The driver's side of the storage thread.
pub struct StorageWriter {
    backend: Backend,
}

enum Backend {
    Thread(mpsc::UnboundedSender<Write>),
    #[cfg(test)]
    Inline {
        /// `None` once a write failed: the store is not written again.
        store: Option<Box<dyn LogStore>>,
        done: mpsc::UnboundedSender<Result<Persisted, ServerError>>,
    },
}

impl StorageWriter {
    /// Starts writing to `store` in `mode`. Completions (or the error that stopped the writes)
    /// arrive on the returned receiver, in order.
    pub fn start(
        store: Box<dyn LogStore>,
        mode: StorageMode,
    ) -> Result<
        (
            StorageWriter,
            mpsc::UnboundedReceiver<Result<Persisted, ServerError>>,
        ),
        ServerError,
    > {
        let (done, completions) = mpsc::unbounded_channel();
        let backend = match mode {
            StorageMode::Thread => {
                let (writes, queue) = mpsc::unbounded_channel();
                std::thread::Builder::new()
                    .name("rmif-storage".to_owned())
                    .spawn(move || run(store, queue, done))
                    .map_err(|source| ServerError::Thread {
                        name: "storage",
                        source,
                    })?;
                Backend::Thread(writes)
            }
            #[cfg(test)]
            StorageMode::Inline => Backend::Inline {
                store: Some(store),
                done,
            },
        };
        Ok((StorageWriter { backend }, completions))
    }

    /// Queues a write. Writes stopped by an error have already reported it.
    pub fn write(&mut self, write: Write) {
        match &mut self.backend {
            Backend::Thread(writes) => {
                let _ = writes.send(write);
            }
            #[cfg(test)]
            Backend::Inline { store, done } => {
                let Some(writing) = store else {
                    return;
                };
                let outcome = write_batch(writing.as_mut(), vec![write]);
                if outcome.is_err() {
                    *store = None;
                }
                let _ = done.send(outcome);
            }
        }
    }
}

fn run(
    mut store: Box<dyn LogStore>,
    mut queue: mpsc::UnboundedReceiver<Write>,
    done: mpsc::UnboundedSender<Result<Persisted, ServerError>>,
) {
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(next) = queue.try_recv() {
            batch.push(next);
        }
        let outcome = write_batch(store.as_mut(), batch);
        let stop = outcome.is_err();
        if done.send(outcome).is_err() || stop {
            return;
        }
    }
}

/// Writes `batch` in order: runs of plain writes merged into one transaction, snapshots on
/// their own.
fn write_batch(store: &mut dyn LogStore, batch: Vec<Write>) -> Result<Persisted, ServerError> {
    let mut merged = Write {
        may_defer_sync: true,
        ..Write::default()
    };
    let mut written = Persisted {
        ready: None,
        messages: Vec::new(),
    };
    for write in batch {
        if write.snapshot.is_some() || write.own_snapshot.is_some() {
            flush(store, &mut merged)?;
            if let Some(own) = &write.own_snapshot {
                store.save_snapshot(own)?;
            }
            // A store ignores an empty write (an own snapshot carries nothing else).
            store.persist(Persist {
                snapshot: write.snapshot.as_ref(),
                entries: &write.entries,
                hard_state: write.hard_state.as_ref(),
                conf_state: write.conf_state.as_ref(),
                may_defer_sync: write.may_defer_sync,
            })?;
        } else {
            if let Some(first) = write.entries.first() {
                // A later write replaces entries from its first index on.
                merged.entries.retain(|entry| entry.index < first.index);
                merged.entries.extend(write.entries);
            }
            merged.hard_state = write.hard_state.or(merged.hard_state.take());
            merged.conf_state = write.conf_state.or(merged.conf_state.take());
            merged.may_defer_sync &= write.may_defer_sync;
        }
        written.ready = write.ready.or(written.ready);
        written.messages.extend(write.messages);
    }
    flush(store, &mut merged)?;
    Ok(written)
}

/// Writes what `merged` holds, if anything, and empties it.
fn flush(store: &mut dyn LogStore, merged: &mut Write) -> Result<(), ServerError> {
    let result = store.persist(Persist {
        snapshot: None,
        entries: &merged.entries,
        hard_state: merged.hard_state.as_ref(),
        conf_state: merged.conf_state.as_ref(),
        may_defer_sync: merged.may_defer_sync,
    });
    merged.entries.clear();
    merged.hard_state = None;
    merged.conf_state = None;
    merged.may_defer_sync = true;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Recovered;

    /// Records what reached the store, one line per call.
    #[derive(Default)]
    struct Recording(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl LogStore for Recording {
        fn recover(&self) -> Result<Recovered, ServerError> {
            Ok(Recovered::default())
        }

        fn persist(&mut self, batch: Persist<'_>) -> Result<(), ServerError> {
            if batch.is_empty() {
                return Ok(());
            }
            let entries: Vec<String> = batch
                .entries
                .iter()
                .map(|e| format!("{}@{}", e.index, e.term))
                .collect();
            self.0.lock().unwrap().push(format!(
                "persist snapshot={} entries=[{}] commit={:?} sync={}",
                batch.snapshot.map_or(0, |s| s.get_metadata().index),
                entries.join(","),
                batch.hard_state.map(|hs| hs.commit),
                !batch.may_defer_sync,
            ));
            Ok(())
        }

        fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), ServerError> {
            let index = snapshot.get_metadata().index;
            self.0
                .lock()
                .unwrap()
                .push(format!("save_snapshot {index}"));
            Ok(())
        }
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    fn message(to: u64) -> Message {
        Message {
            to,
            ..Message::default()
        }
    }

    #[test]
    fn queued_writes_merge_in_order_and_snapshots_stand_alone() {
        let log = std::sync::Arc::default();
        let mut store = Recording(std::sync::Arc::clone(&log));
        let mut own = Snapshot::default();
        own.mut_metadata().index = 2;
        let batch = vec![
            Write {
                ready: Some(1),
                entries: vec![entry(1, 1), entry(2, 1), entry(3, 1)],
                hard_state: Some(HardState {
                    commit: 1,
                    ..HardState::default()
                }),
                messages: vec![message(2)],
                ..Write::default()
            },
            // A new leader's entries replace the tail from index 3 on; only the commit moved
            // in the hard state, which alone would not need an fsync.
            Write {
                ready: Some(2),
                entries: vec![entry(3, 2), entry(4, 2)],
                hard_state: Some(HardState {
                    commit: 2,
                    ..HardState::default()
                }),
                may_defer_sync: true,
                messages: vec![message(3)],
                ..Write::default()
            },
            Write {
                own_snapshot: Some(own),
                ..Write::default()
            },
            Write {
                ready: Some(3),
                hard_state: Some(HardState {
                    commit: 4,
                    ..HardState::default()
                }),
                may_defer_sync: true,
                ..Write::default()
            },
        ];
        let written = write_batch(&mut store, batch).unwrap();
        assert_eq!(
            *log.lock().unwrap(),
            [
                "persist snapshot=0 entries=[1@1,2@1,3@2,4@2] commit=Some(2) sync=true",
                "save_snapshot 2",
                "persist snapshot=0 entries=[] commit=Some(4) sync=false",
            ]
        );
        assert_eq!(written.ready, Some(3));
        let to: Vec<u64> = written.messages.iter().map(|m| m.to).collect();
        assert_eq!(to, [2, 3]);
    }

    /// Refuses every write after the first `allowed`.
    struct FailingAfter(usize);

    impl LogStore for FailingAfter {
        fn recover(&self) -> Result<Recovered, ServerError> {
            Ok(Recovered::default())
        }

        fn persist(&mut self, _: Persist<'_>) -> Result<(), ServerError> {
            match self.0.checked_sub(1) {
                Some(left) => {
                    self.0 = left;
                    Ok(())
                }
                None => Err(ServerError::StorageThreadStopped),
            }
        }

        fn save_snapshot(&mut self, _: &Snapshot) -> Result<(), ServerError> {
            Ok(())
        }
    }

    #[test]
    fn inline_writes_complete_before_write_returns_and_stop_at_the_first_error() {
        let (mut writer, mut done) =
            StorageWriter::start(Box::new(FailingAfter(1)), StorageMode::Inline).unwrap();
        let numbered = |ready| Write {
            ready: Some(ready),
            entries: vec![entry(ready, 1)],
            ..Write::default()
        };
        writer.write(numbered(1));
        assert_eq!(done.try_recv().unwrap().unwrap().ready, Some(1));
        writer.write(numbered(2));
        assert!(done.try_recv().unwrap().is_err());
        writer.write(numbered(3));
        assert!(
            done.try_recv().is_err(),
            "nothing is written after an error"
        );
    }
}
