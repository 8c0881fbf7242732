//! [`LogStore`] on redb: entries, hard state, configuration and snapshot in one database file,
//! each persist one ACID transaction committed with fsync.

use std::path::Path;

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{LogStore, Persist, Recovered};
use crate::error::ServerError;

const LOG: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("raft_meta");

const HARD_STATE: &str = "hard_state";
const CONF_STATE: &str = "conf_state";
const SNAPSHOT: &str = "snapshot";

/// A redb database holding one member's Raft state.
pub struct RedbStore {
    db: Database,
    durability: Durability,
}

impl RedbStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        let db = Database::create(path).map_err(ServerError::redb("open the database"))?;
        let txn = db.begin_write().map_err(ServerError::redb("begin"))?;
        txn.open_table(LOG)
            .map_err(ServerError::redb("create log table"))?;
        txn.open_table(META)
            .map_err(ServerError::redb("create meta table"))?;
        txn.commit().map_err(ServerError::redb("commit"))?;
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

fn decode<M: protobuf::Message>(bytes: &[u8], action: &'static str) -> Result<M, ServerError> {
    M::parse_from_bytes(bytes).map_err(ServerError::protobuf(action))
}

fn encode(message: &impl protobuf::Message, action: &'static str) -> Result<Vec<u8>, ServerError> {
    message
        .write_to_bytes()
        .map_err(ServerError::protobuf(action))
}

impl LogStore for RedbStore {
    fn recover(&self) -> Result<Recovered, ServerError> {
        let txn = self
            .db
            .begin_read()
            .map_err(ServerError::redb("begin read"))?;
        let meta = txn
            .open_table(META)
            .map_err(ServerError::redb("open meta"))?;
        let log = txn.open_table(LOG).map_err(ServerError::redb("open log"))?;
        let mut recovered = Recovered::default();
        if let Some(bytes) = meta
            .get(HARD_STATE)
            .map_err(ServerError::redb("read hard state"))?
        {
            recovered.hard_state = decode::<HardState>(bytes.value(), "decode the hard state")?;
        }
        if let Some(bytes) = meta
            .get(CONF_STATE)
            .map_err(ServerError::redb("read conf state"))?
        {
            recovered.conf_state =
                Some(decode::<ConfState>(bytes.value(), "decode the conf state")?);
        }
        if let Some(bytes) = meta
            .get(SNAPSHOT)
            .map_err(ServerError::redb("read snapshot"))?
        {
            recovered.snapshot = Some(decode::<Snapshot>(bytes.value(), "decode the snapshot")?);
        }
        for row in log.iter().map_err(ServerError::redb("scan log"))? {
            let (_, value) = row.map_err(ServerError::redb("read log"))?;
            recovered
                .entries
                .push(decode::<Entry>(value.value(), "decode the log entry")?);
        }
        Ok(recovered)
    }

    fn persist(&mut self, batch: Persist<'_>) -> Result<(), ServerError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(ServerError::redb("begin"))?;
        // A non-durable redb commit is made durable by the next durable one (commits are
        // ordered), which is what `may_defer_sync` asks for.
        let durability = if batch.may_defer_sync {
            Durability::None
        } else {
            self.durability
        };
        txn.set_durability(durability)
            .map_err(ServerError::redb("set durability"))?;
        {
            let mut meta = txn
                .open_table(META)
                .map_err(ServerError::redb("open meta"))?;
            let mut log = txn.open_table(LOG).map_err(ServerError::redb("open log"))?;
            if let Some(snapshot) = batch.snapshot {
                meta.insert(
                    SNAPSHOT,
                    encode(snapshot, "encode the snapshot")?.as_slice(),
                )
                .map_err(ServerError::redb("write snapshot"))?;
                // The snapshot replaces whatever log this member had.
                log.retain(|_, _| false)
                    .map_err(ServerError::redb("clear log"))?;
            }
            if let Some(first) = batch.entries.first() {
                log.retain_in(first.index.., |_, _| false)
                    .map_err(ServerError::redb("truncate log"))?;
                for entry in batch.entries {
                    log.insert(
                        entry.index,
                        encode(entry, "encode the log entry")?.as_slice(),
                    )
                    .map_err(ServerError::redb("append"))?;
                }
            }
            if let Some(hard_state) = batch.hard_state {
                meta.insert(
                    HARD_STATE,
                    encode(hard_state, "encode the hard state")?.as_slice(),
                )
                .map_err(ServerError::redb("write hard state"))?;
            }
            if let Some(conf_state) = batch.conf_state {
                meta.insert(
                    CONF_STATE,
                    encode(conf_state, "encode the conf state")?.as_slice(),
                )
                .map_err(ServerError::redb("write conf state"))?;
            }
        }
        txn.commit().map_err(ServerError::redb("commit"))
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), ServerError> {
        let through = snapshot.get_metadata().index;
        let mut txn = self.db.begin_write().map_err(ServerError::redb("begin"))?;
        txn.set_durability(self.durability)
            .map_err(ServerError::redb("set durability"))?;
        {
            let mut meta = txn
                .open_table(META)
                .map_err(ServerError::redb("open meta"))?;
            meta.insert(
                SNAPSHOT,
                encode(snapshot, "encode the snapshot")?.as_slice(),
            )
            .map_err(ServerError::redb("write snapshot"))?;
            let mut log = txn.open_table(LOG).map_err(ServerError::redb("open log"))?;
            log.retain_in(..=through, |_, _| false)
                .map_err(ServerError::redb("compact"))?;
        }
        txn.commit().map_err(ServerError::redb("commit"))
    }
}
