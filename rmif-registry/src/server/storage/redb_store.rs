//! [`LogStore`] on redb: entries, hard state, configuration and snapshot in one database file,
//! each persist one ACID transaction committed with fsync.

use std::path::Path;

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{LogStore, Persist, Recovered, StorageError};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const HARD_STATE: &str = "hard_state";
const CONF_STATE: &str = "conf_state";
const SNAPSHOT: &str = "snapshot";

fn failed(what: &str) -> impl Fn(&dyn std::fmt::Display) -> StorageError + '_ {
    move |error| StorageError(format!("{what}: {error}"))
}

/// A redb database holding one member's Raft state.
pub struct RedbStore {
    db: Database,
    durability: Durability,
}

impl RedbStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = Database::create(path)
            .map_err(|e| StorageError(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(|e| failed("begin")(&e))?;
        txn.open_table(LOG)
            .map_err(|e| failed("create log table")(&e))?;
        txn.open_table(META)
            .map_err(|e| failed("create meta table")(&e))?;
        txn.commit().map_err(|e| failed("commit")(&e))?;
        // The `unsafe-skip-fsync` feature exists only to show that the torture suite catches a
        // registry that acknowledges writes before they are durable.
        let durability = if cfg!(feature = "unsafe-skip-fsync") {
            tracing::error!("built with unsafe-skip-fsync: acknowledged writes are NOT durable");
            Durability::None
        } else {
            Durability::Immediate
        };
        Ok(RedbStore { db, durability })
    }
}

fn decode<M: protobuf::Message>(bytes: &[u8], what: &str) -> Result<M, StorageError> {
    M::parse_from_bytes(bytes).map_err(|e| StorageError(format!("corrupt {what}: {e}")))
}

fn encode(message: &impl protobuf::Message, what: &str) -> Result<Vec<u8>, StorageError> {
    message
        .write_to_bytes()
        .map_err(|e| StorageError(format!("cannot encode {what}: {e}")))
}

impl LogStore for RedbStore {
    fn recover(&self) -> Result<Recovered, StorageError> {
        let txn = self.db.begin_read().map_err(|e| failed("begin read")(&e))?;
        let meta = txn.open_table(META).map_err(|e| failed("open meta")(&e))?;
        let log = txn.open_table(LOG).map_err(|e| failed("open log")(&e))?;
        let mut recovered = Recovered::default();
        if let Some(bytes) = meta
            .get(HARD_STATE)
            .map_err(|e| failed("read hard state")(&e))?
        {
            recovered.hard_state = decode::<HardState>(bytes.value(), "hard state")?;
        }
        if let Some(bytes) = meta
            .get(CONF_STATE)
            .map_err(|e| failed("read conf state")(&e))?
        {
            recovered.conf_state = Some(decode::<ConfState>(bytes.value(), "conf state")?);
        }
        if let Some(bytes) = meta
            .get(SNAPSHOT)
            .map_err(|e| failed("read snapshot")(&e))?
        {
            recovered.snapshot = Some(decode::<Snapshot>(bytes.value(), "snapshot")?);
        }
        for row in log.iter().map_err(|e| failed("scan log")(&e))? {
            let (_, value) = row.map_err(|e| failed("read log")(&e))?;
            recovered
                .entries
                .push(decode::<Entry>(value.value(), "log entry")?);
        }
        Ok(recovered)
    }

    fn persist(&mut self, batch: Persist<'_>) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(|e| failed("begin")(&e))?;
        // A non-durable redb commit is made durable by the next durable one (commits are
        // ordered), which is what `may_defer_sync` asks for.
        let durability = if batch.may_defer_sync {
            Durability::None
        } else {
            self.durability
        };
        txn.set_durability(durability)
            .map_err(|e| failed("set durability")(&e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| failed("open meta")(&e))?;
            let mut log = txn.open_table(LOG).map_err(|e| failed("open log")(&e))?;
            if let Some(snapshot) = batch.snapshot {
                meta.insert(SNAPSHOT, encode(snapshot, "snapshot")?.as_slice())
                    .map_err(|e| failed("write snapshot")(&e))?;
                // The snapshot replaces whatever log this member had.
                log.retain(|_, _| false)
                    .map_err(|e| failed("clear log")(&e))?;
            }
            if let Some(first) = batch.entries.first() {
                log.retain_in(first.index.., |_, _| false)
                    .map_err(|e| failed("truncate log")(&e))?;
                for entry in batch.entries {
                    log.insert(entry.index, encode(entry, "log entry")?.as_slice())
                        .map_err(|e| failed("append")(&e))?;
                }
            }
            if let Some(hard_state) = batch.hard_state {
                meta.insert(HARD_STATE, encode(hard_state, "hard state")?.as_slice())
                    .map_err(|e| failed("write hard state")(&e))?;
            }
            if let Some(conf_state) = batch.conf_state {
                meta.insert(CONF_STATE, encode(conf_state, "conf state")?.as_slice())
                    .map_err(|e| failed("write conf state")(&e))?;
            }
        }
        txn.commit().map_err(|e| failed("commit")(&e))
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let through = snapshot.get_metadata().index;
        let mut txn = self.db.begin_write().map_err(|e| failed("begin")(&e))?;
        txn.set_durability(self.durability)
            .map_err(|e| failed("set durability")(&e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| failed("open meta")(&e))?;
            meta.insert(SNAPSHOT, encode(snapshot, "snapshot")?.as_slice())
                .map_err(|e| failed("write snapshot")(&e))?;
            let mut log = txn.open_table(LOG).map_err(|e| failed("open log")(&e))?;
            log.retain_in(..=through, |_, _| false)
                .map_err(|e| failed("compact")(&e))?;
        }
        txn.commit().map_err(|e| failed("commit")(&e))
    }
}
