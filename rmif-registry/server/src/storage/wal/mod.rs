//! [`LogStore`] as a write-ahead log: every write is one record appended to the active segment
//! file and made durable with one `fdatasync`; snapshots live in files of their own.
//!
//! A Raft log is appended to at its end and dropped from its start, which a log of files does
//! with the fewest bytes written: a write costs its own bytes and one sync, where a B-tree
//! rewrites several pages per commit. On disk, in the WAL directory:
//!
//! - `{seq:020}.wal`: segments, replayed in order. Each after the first starts with a record of
//!   the whole small state (hard state, configuration, the current snapshot), so that older
//!   segments can be deleted once a snapshot covers their entries.
//! - `snapshot-{index:020}.snap`: the current snapshot (a checksummed protobuf), written to a
//!   temporary file and renamed. A snapshot counts only once a log record names it, so a crash
//!   between the two leaves the previous, consistent state.
//!
//! A crash can tear only the last record of the last segment: recovery drops it (it was never
//! acknowledged) and cuts the file there. Damage anywhere else, including a bad record with
//! more data after it, stops the member with the file and offset: cutting there would drop
//! writes it acknowledged.

mod record;
mod remover;

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};

use super::{LogStore, Persist, Recovered};
use crate::error::ServerError;
use record::{Marker, Read};
use remover::Remover;

/// A segment this large is closed and a new one started at the next write.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// A snapshot file is made durable this many bytes at a time (see [`SnapshotWriter`]).
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Bytes the broken build (`unsafe-skip-fsync`) holds in memory before writing them.
const UNSYNCED_BYTES: usize = 64 * 1024;
/// A record buffer grown beyond this by a rare big write is not kept for the next one.
const KEPT_BUFFER_BYTES: usize = 4 * 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".wal";
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".snap";

/// A closed segment: what it is needed for.
struct Segment {
    seq: u64,
    /// The highest entry index written to it (0 if none).
    last_index: u64,
}

/// The segment being appended to.
struct Active {
    seq: u64,
    file: File,
    len: u64,
    last_index: u64,
}

/// A member's Raft state as a write-ahead log in one directory.
pub struct WalStore {
    dir: PathBuf,
    closed: Vec<Segment>,
    active: Active,
    /// The state every new segment starts with.
    hard_state: HardState,
    conf_state: Option<ConfState>,
    snapshot: Option<Marker>,
    /// What the first `recover` returns: read at open, so that a start reads the log once.
    recovered: RefCell<Option<Recovered>>,
    /// Reused for encoding records.
    buffer: Vec<u8>,
    sync: bool,
    segment_bytes: u64,
    /// Deletes the files a snapshot made useless, off this thread.
    remover: Remover,
}

impl WalStore {
    /// Opens the log in `dir` (created if missing), reading it back and cutting a torn tail.
    pub fn open(dir: &Path) -> Result<Self, ServerError> {
        let started = std::time::Instant::now();
        fs::create_dir_all(dir).map_err(ServerError::io("create", dir))?;
        // The `unsafe-skip-fsync` feature exists only to show that the torture suite catches a
        // registry that acknowledges writes before they are durable.
        let sync = !cfg!(feature = "unsafe-skip-fsync");
        if !sync {
            tracing::error!("built with unsafe-skip-fsync: acknowledged writes are NOT durable");
        }
        let read_back = ReadBack::from_dir(dir)?;
        let mut closed = Vec::new();
        let mut active = None;
        for (i, segment) in read_back.segments.iter().enumerate() {
            if i + 1 < read_back.segments.len() {
                closed.push(Segment {
                    seq: segment.seq,
                    last_index: segment.last_index,
                });
                continue;
            }
            let path = segment_path(dir, segment.seq);
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(ServerError::io("open", &path))?;
            let on_disk = file
                .metadata()
                .map_err(ServerError::io("stat", &path))?
                .len();
            if on_disk > segment.whole_len {
                tracing::warn!(
                    segment = %path.display(),
                    dropped = on_disk - segment.whole_len,
                    "cutting a torn write at the end of the log"
                );
                file.set_len(segment.whole_len)
                    .and_then(|()| file.sync_all())
                    .map_err(ServerError::io("cut", &path))?;
            }
            active = Some(Active {
                seq: segment.seq,
                file,
                len: segment.whole_len,
                last_index: segment.last_index,
            });
        }
        let replay = read_back.replay;
        let store = WalStore {
            dir: dir.to_owned(),
            closed,
            active: match active {
                Some(active) => active,
                None => create_segment(dir, 0)?,
            },
            hard_state: replay.hard_state.clone(),
            conf_state: replay.conf_state.clone(),
            snapshot: replay.snapshot,
            recovered: RefCell::new(Some(Recovered {
                read_ahead_took: started.elapsed(),
                ..replay.into_recovered(dir)?
            })),
            buffer: Vec::new(),
            sync,
            segment_bytes: SEGMENT_BYTES,
            remover: Remover::start(),
        };
        store.remove_unreferenced_snapshots(true)?;
        Ok(store)
    }

    /// Smaller segments, so that tests see several.
    #[cfg(test)]
    fn with_segment_bytes(mut self, segment_bytes: u64) -> Self {
        self.segment_bytes = segment_bytes;
        self
    }

    /// Appends one record (starting a new segment first if the active one is full) and makes it
    /// durable unless `defer_sync`.
    fn append(
        &mut self,
        marker: Option<Marker>,
        hard_state: Option<&HardState>,
        conf_state: Option<&ConfState>,
        entries: &[Entry],
        defer_sync: bool,
    ) -> Result<(), ServerError> {
        if self.active.len >= self.segment_bytes {
            self.start_segment()?;
        }
        record::encode(&mut self.buffer, marker, hard_state, conf_state, entries)?;
        if let Some(last) = entries.last() {
            self.active.last_index = last.index;
        }
        if let Some(hard_state) = hard_state {
            self.hard_state = hard_state.clone();
        }
        if let Some(conf_state) = conf_state {
            self.conf_state = Some(conf_state.clone());
        }
        // The broken build keeps records in memory until some gather, so that a SIGKILL loses
        // acknowledged writes the way a power cut loses unsynced ones.
        if !self.sync && self.buffer.len() < UNSYNCED_BYTES {
            return Ok(());
        }
        self.write_buffer()?;
        if !defer_sync {
            self.sync_active()?;
        }
        Ok(())
    }

    /// Writes the encoded records out to the active segment.
    fn write_buffer(&mut self) -> Result<(), ServerError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let path = segment_path(&self.dir, self.active.seq);
        self.active
            .file
            .write_all(&self.buffer)
            .map_err(ServerError::io("write", &path))?;
        self.active.len += self.buffer.len() as u64;
        self.buffer.clear();
        // The buffer keeps its capacity for the next write, unless a rare big one inflated it.
        if self.buffer.capacity() > KEPT_BUFFER_BYTES {
            self.buffer = Vec::new();
        }
        Ok(())
    }

    /// Makes what was written to the active segment durable (not in the broken build).
    fn sync_active(&mut self) -> Result<(), ServerError> {
        if !self.sync {
            return Ok(());
        }
        let path = segment_path(&self.dir, self.active.seq);
        self.active
            .file
            .sync_data()
            .map_err(ServerError::io("sync", &path))
    }

    /// Closes the active segment and starts the next with a record of the whole small state.
    fn start_segment(&mut self) -> Result<(), ServerError> {
        self.write_buffer()?;
        // Writes whose sync was deferred must be durable before any in the next segment is.
        self.sync_active()?;
        let next = create_segment(&self.dir, self.active.seq + 1)?;
        let full = std::mem::replace(&mut self.active, next);
        self.closed.push(Segment {
            seq: full.seq,
            last_index: full.last_index,
        });
        // Everything older segments said, so that they can go once a snapshot covers them.
        record::encode(
            &mut self.buffer,
            self.snapshot.map(|m| Marker {
                replaces_log: false,
                ..m
            }),
            Some(&self.hard_state),
            self.conf_state.as_ref(),
            &[],
        )
    }

    /// Writes `snapshot` to its file, durably, before any record names it; one this member made
    /// may have been written already by its [`SnapshotWriter`].
    fn write_snapshot(&self, snapshot: &Snapshot) -> Result<Marker, ServerError> {
        let marker = Marker::of(snapshot);
        if !snapshot_path(&self.dir, marker.index).exists() {
            self.snapshot_writer().write(snapshot)?;
        }
        Ok(marker)
    }

    /// A snapshot at `marker` is now the base of the log: files and segments it makes useless
    /// go.
    fn snapshot_installed(&mut self, marker: Marker) -> Result<(), ServerError> {
        self.snapshot = Some(marker);
        self.remove_unreferenced_snapshots(false)?;
        // Only a prefix of segments may go, or replay would see records out of order.
        while let Some(oldest) = self.closed.first() {
            if oldest.last_index > marker.index {
                break;
            }
            self.remover
                .remove_segment(segment_path(&self.dir, oldest.seq));
            self.closed.remove(0);
        }
        Ok(())
    }

    /// Removes snapshot files no record names: all of them at open; later only those older than
    /// the current snapshot, since a newer one may be being written by the [`SnapshotWriter`].
    fn remove_unreferenced_snapshots(&self, at_open: bool) -> Result<(), ServerError> {
        let current = self.snapshot.map_or(0, |m| m.index);
        for name in list(&self.dir)? {
            let Some(index) = snapshot_file_index(&name) else {
                continue;
            };
            if index == current {
                continue;
            }
            let path = self.dir.join(&name);
            if at_open {
                fs::remove_file(&path).map_err(ServerError::io("remove", &path))?;
            } else if index < current {
                self.remover.remove_snapshot(path);
            }
        }
        Ok(())
    }

    /// Writes the snapshots this member makes on a thread of the caller's choosing; see
    /// [`SnapshotWriter`].
    pub fn snapshot_writer(&self) -> SnapshotWriter {
        SnapshotWriter {
            dir: self.dir.clone(),
            sync: self.sync,
        }
    }
}

impl LogStore for WalStore {
    fn recover(&self) -> Result<Recovered, ServerError> {
        match self.recovered.borrow_mut().take() {
            Some(recovered) => Ok(recovered),
            None => ReadBack::from_dir(&self.dir)?
                .replay
                .into_recovered(&self.dir),
        }
    }

    fn persist(&mut self, batch: Persist<'_>) -> Result<(), ServerError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.recovered.take();
        let marker = match batch.snapshot {
            Some(snapshot) => Some(Marker {
                replaces_log: true,
                ..self.write_snapshot(snapshot)?
            }),
            None => None,
        };
        self.append(
            marker,
            batch.hard_state,
            batch.conf_state,
            batch.entries,
            batch.may_defer_sync && marker.is_none(),
        )?;
        if let Some(marker) = marker {
            self.snapshot_installed(marker)?;
        }
        Ok(())
    }

    fn snapshot_writer(&self) -> Option<SnapshotWriter> {
        Some(WalStore::snapshot_writer(self))
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), ServerError> {
        self.recovered.take();
        let marker = self.write_snapshot(snapshot)?;
        // A new segment starts at each snapshot, naming it: the segment before it goes at the
        // next snapshot, so that a restart reads about one snapshot's worth of log rather than
        // most of a segment's 64 MiB.
        self.snapshot = Some(marker);
        self.start_segment()?;
        self.write_buffer()?;
        self.sync_active()?;
        self.snapshot_installed(marker)
    }
}

/// Writes snapshot files into a WAL directory away from the storage thread, so that a large
/// snapshot never holds up the log's appends: the file is complete and durable before
/// [`LogStore::save_snapshot`] names it in the log, which then has only a small record to append.
///
/// The file is written in chunks, each made durable before the next: the log's `fdatasync`s
/// then never have to carry tens of megabytes of the snapshot's data with them (a journaling
/// file system may flush other files' newly written data with a commit).
#[derive(Debug, Clone)]
pub struct SnapshotWriter {
    dir: PathBuf,
    sync: bool,
}

impl SnapshotWriter {
    /// Writes `snapshot` to its file (through a temporary name), durably.
    pub fn write(&self, snapshot: &Snapshot) -> Result<(), ServerError> {
        let index = snapshot.get_metadata().index;
        let path = snapshot_path(&self.dir, index);
        let temporary = path.with_extension("tmp");
        let parts = encode_snapshot(snapshot)?;
        let body_len: usize = parts.iter().map(|part| part.len()).sum();
        let mut crc = crc32fast::Hasher::new();
        for part in &parts {
            crc.update(part);
        }
        let mut header = Vec::with_capacity(12);
        header.extend_from_slice(&(body_len as u64).to_le_bytes());
        header.extend_from_slice(&crc.finalize().to_le_bytes());
        let mut file = File::create(&temporary).map_err(ServerError::io("create", &temporary))?;
        file.write_all(&header)
            .map_err(ServerError::io("write", &temporary))?;
        for chunk in parts
            .iter()
            .flat_map(|part| part.chunks(SNAPSHOT_CHUNK_BYTES))
        {
            file.write_all(chunk)
                .and_then(|()| if self.sync { file.sync_data() } else { Ok(()) })
                .map_err(ServerError::io("write", &temporary))?;
        }
        if self.sync {
            file.sync_all()
                .map_err(ServerError::io("sync", &temporary))?;
        }
        fs::rename(&temporary, &path).map_err(ServerError::io("rename", &temporary))?;
        if self.sync {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// A snapshot's protobuf encoding, in parts that borrow its data rather than copy it: the
/// data of a large tree is a hundred megabytes, and a copy costs as much again in memory.
/// The parts are what `write_to_bytes` would produce (fields in number order: the data,
/// field 1, then the metadata, field 2).
fn encode_snapshot(snapshot: &Snapshot) -> Result<Vec<std::borrow::Cow<'_, [u8]>>, ServerError> {
    use std::borrow::Cow;
    if snapshot.data.is_empty() || !snapshot.has_metadata() {
        // An empty field is left out; such snapshots are small, encoded whole.
        let whole = snapshot
            .write_to_bytes()
            .map_err(ServerError::protobuf("encode the snapshot"))?;
        return Ok(vec![Cow::Owned(whole)]);
    }
    let metadata = snapshot
        .get_metadata()
        .write_to_bytes()
        .map_err(ServerError::protobuf("encode the snapshot"))?;
    let mut data_key = vec![0x0a];
    put_varint(&mut data_key, snapshot.data.len() as u64);
    let mut metadata_field = vec![0x12];
    put_varint(&mut metadata_field, metadata.len() as u64);
    metadata_field.extend_from_slice(&metadata);
    Ok(vec![
        Cow::Owned(data_key),
        Cow::Borrowed(&snapshot.data[..]),
        Cow::Owned(metadata_field),
    ])
}

/// Appends `value` as a protobuf varint.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The index of a snapshot file (or of its temporary), from its name.
fn snapshot_file_index(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(SNAPSHOT_PREFIX)?;
    let digits = rest
        .strip_suffix(SNAPSHOT_SUFFIX)
        .or_else(|| rest.strip_suffix(".tmp"))?;
    digits.parse().ok()
}

/// What a directory holds, read back.
struct ReadBack {
    replay: Replay,
    /// In order.
    segments: Vec<SegmentRead>,
}

struct SegmentRead {
    seq: u64,
    last_index: u64,
    /// Bytes of whole records (a torn tail follows in the last segment).
    whole_len: u64,
}

impl ReadBack {
    fn from_dir(dir: &Path) -> Result<Self, ServerError> {
        let mut seqs: Vec<u64> = list(dir)?
            .iter()
            .filter_map(|name| name.strip_suffix(SEGMENT_SUFFIX)?.parse().ok())
            .collect();
        seqs.sort_unstable();
        let mut replay = Replay::default();
        let mut segments = Vec::with_capacity(seqs.len());
        for (i, &seq) in seqs.iter().enumerate() {
            let is_last = i + 1 == seqs.len();
            let (last_index, whole_len) = replay.segment(&segment_path(dir, seq), is_last)?;
            segments.push(SegmentRead {
                seq,
                last_index,
                whole_len,
            });
        }
        Ok(ReadBack { replay, segments })
    }
}

/// The state built up by replaying segments in order.
#[derive(Default)]
struct Replay {
    hard_state: HardState,
    conf_state: Option<ConfState>,
    snapshot: Option<Marker>,
    /// In index order: records append at the end, or replace a suffix.
    entries: Vec<Entry>,
}

impl Replay {
    /// The replayed state as a member starts from it.
    fn into_recovered(self, dir: &Path) -> Result<Recovered, ServerError> {
        let snapshot = match self.snapshot {
            Some(marker) => Some(read_snapshot(dir, marker)?),
            None => None,
        };
        let base = self.snapshot.map_or(0, |m| m.index);
        let entries: Vec<Entry> = self
            .entries
            .into_iter()
            .filter(|e| e.index > base)
            .collect();
        if let Some(gap) = entries
            .iter()
            .zip(base + 1..)
            .find(|(entry, expected)| entry.index != *expected)
        {
            return Err(ServerError::LogGap {
                dir: dir.to_owned(),
                after: gap.1 - 1,
                next: gap.0.index,
            });
        }
        let mut hard_state = self.hard_state;
        // A snapshot holds only committed state; raft-rs refuses a commit index behind it.
        hard_state.commit = hard_state.commit.max(base);
        Ok(Recovered {
            hard_state,
            conf_state: self.conf_state,
            snapshot,
            entries,
            read_ahead_took: std::time::Duration::ZERO,
        })
    }
    /// Replays one segment; returns the highest entry index in it and the length of its whole
    /// records (a torn tail is accepted only in the last segment).
    fn segment(&mut self, path: &Path, is_last: bool) -> Result<(u64, u64), ServerError> {
        let bytes = fs::read(path).map_err(ServerError::io("read", path))?;
        let mut offset = 0;
        let mut last_index = 0;
        loop {
            match record::decode(&bytes[offset..]) {
                Read::End => break,
                Read::Torn(what) if is_last && record::could_be_torn(&bytes[offset..]) => {
                    tracing::warn!(segment = %path.display(), offset, "{what}: end of the log");
                    break;
                }
                Read::Torn(what) => {
                    return Err(ServerError::Damaged {
                        path: path.to_owned(),
                        detail: format!("at byte {offset}: {what}"),
                    });
                }
                Read::Record(record, len) => {
                    offset += len;
                    if let Some(marker) = record.marker {
                        self.snapshot = Some(marker);
                        if marker.replaces_log {
                            self.entries.clear();
                        } else {
                            let covered = self.entries.partition_point(|e| e.index <= marker.index);
                            self.entries.drain(..covered);
                        }
                    }
                    if let Some(hard_state) = record.hard_state {
                        self.hard_state = hard_state;
                    }
                    if let Some(conf_state) = record.conf_state {
                        self.conf_state = Some(conf_state);
                    }
                    if let Some(first) = record.entries.first() {
                        // `entries` stays in index order, so a replaced suffix is found by
                        // bisection: a scan per record made replay quadratic in the log's length.
                        let first = first.index;
                        let kept = self.entries.partition_point(|e| e.index < first);
                        self.entries.truncate(kept);
                        last_index = record.entries.last().map_or(last_index, |e| e.index);
                        self.entries.extend(record.entries);
                    }
                }
            }
        }
        Ok((last_index, offset as u64))
    }
}

fn list(dir: &Path) -> Result<Vec<String>, ServerError> {
    let mut names = Vec::new();
    for item in fs::read_dir(dir).map_err(ServerError::io("list", dir))? {
        let item = item.map_err(ServerError::io("list", dir))?;
        if let Some(name) = item.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SEGMENT_SUFFIX}"))
}

fn snapshot_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{SNAPSHOT_PREFIX}{index:020}{SNAPSHOT_SUFFIX}"))
}

/// Makes the directory's entries (a new or renamed file) durable.
fn sync_dir(dir: &Path) -> Result<(), ServerError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(ServerError::io("sync", dir))
}

fn create_segment(dir: &Path, seq: u64) -> Result<Active, ServerError> {
    let path = segment_path(dir, seq);
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(ServerError::io("create", &path))?;
    // The new name must be durable before anything in the file counts.
    sync_dir(dir)?;
    Ok(Active {
        seq,
        file,
        len: 0,
        last_index: 0,
    })
}

fn read_snapshot(dir: &Path, marker: Marker) -> Result<Snapshot, ServerError> {
    let path = snapshot_path(dir, marker.index);
    let bytes = fs::read(&path).map_err(|source| ServerError::MissingSnapshot {
        index: marker.index,
        path: path.clone(),
        source,
    })?;
    let damaged = |what: &str| ServerError::Damaged {
        path: path.clone(),
        detail: what.to_owned(),
    };
    if bytes.len() < 12 {
        return Err(damaged("shorter than its header"));
    }
    let len = u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let body = &bytes[12..];
    if body.len() as u64 != len || crc32fast::hash(body) != crc {
        return Err(damaged("length or checksum mismatch"));
    }
    let snapshot = Snapshot::parse_from_bytes(body).map_err(|e| damaged(&e.to_string()))?;
    let metadata = snapshot.get_metadata();
    if (metadata.index, metadata.term) != (marker.index, marker.term) {
        return Err(damaged("it is not the snapshot the log names"));
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests;
