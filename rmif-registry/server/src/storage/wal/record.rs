//! The bytes of the write-ahead log: one checksummed record per durable write, holding
//! everything that write changed, so that a write torn by a crash is dropped whole.
//!
//! A record is `[payload length: u32 LE][CRC-32 of the payload: u32 LE][payload]`. The payload
//! is a flags byte, then whichever parts the flags announce: a snapshot marker (index, term and
//! whether it replaces the log), the hard state, the configuration (both protobuf, each behind
//! a u32 length), and the entries (a u32 count, then each protobuf entry behind a u32 length).

use bytes::BufMut;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};

use crate::error::ServerError;

/// Bytes before a record's payload.
pub const HEADER_LEN: usize = 8;

const HAS_MARKER: u8 = 1;
const HAS_HARD_STATE: u8 = 1 << 1;
const HAS_CONF_STATE: u8 = 1 << 2;
const HAS_ENTRIES: u8 = 1 << 3;

/// A snapshot became the base of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Index of the snapshot's last entry.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// A snapshot received from the leader replaces the whole log; one this member made only
    /// drops the entries it covers.
    pub replaces_log: bool,
}

impl Marker {
    /// The marker of a snapshot this member made.
    pub fn of(snapshot: &Snapshot) -> Marker {
        let metadata = snapshot.get_metadata();
        Marker {
            index: metadata.index,
            term: metadata.term,
            replaces_log: false,
        }
    }
}

/// One durable write, as stored.
#[derive(Debug, Default, PartialEq)]
pub struct Record {
    pub marker: Option<Marker>,
    pub hard_state: Option<HardState>,
    pub conf_state: Option<ConfState>,
    /// Entries to append; stored entries from the first one's index on are replaced.
    pub entries: Vec<Entry>,
}

/// Appends `record`, framed, to `out`.
pub fn encode(
    out: &mut Vec<u8>,
    marker: Option<Marker>,
    hard_state: Option<&HardState>,
    conf_state: Option<&ConfState>,
    entries: &[Entry],
) -> Result<(), ServerError> {
    let start = out.len();
    out.put_slice(&[0; HEADER_LEN]);
    let flags = marker.map_or(0, |_| HAS_MARKER)
        | hard_state.map_or(0, |_| HAS_HARD_STATE)
        | conf_state.map_or(0, |_| HAS_CONF_STATE)
        | if entries.is_empty() { 0 } else { HAS_ENTRIES };
    out.put_u8(flags);
    if let Some(marker) = marker {
        out.put_u64_le(marker.index);
        out.put_u64_le(marker.term);
        out.put_u8(u8::from(marker.replaces_log));
    }
    if let Some(hard_state) = hard_state {
        put_message(out, hard_state)?;
    }
    if let Some(conf_state) = conf_state {
        put_message(out, conf_state)?;
    }
    if !entries.is_empty() {
        out.put_u32_le(length(entries.len())?);
        for entry in entries {
            put_message(out, entry)?;
        }
    }
    let payload = &out[start + HEADER_LEN..];
    let payload_len = length(payload.len())?;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn length(len: usize) -> Result<u32, ServerError> {
    u32::try_from(len).map_err(|_| ServerError::RecordTooLarge { len })
}

fn put_message(out: &mut Vec<u8>, message: &impl protobuf::Message) -> Result<(), ServerError> {
    let at = out.len();
    out.put_u32_le(0);
    message
        .write_to_vec(out)
        .map_err(ServerError::protobuf("encode a log record"))?;
    let len = length(out.len() - at - 4)?;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// What is at some offset of a segment.
#[derive(Debug, PartialEq)]
pub enum Read {
    /// A whole record, and the bytes it took.
    Record(Record, usize),
    /// The segment ends here.
    End,
    /// An incomplete or damaged record: what a crash during a write leaves behind.
    Torn(String),
}

/// Whether `rest`, the bytes from a bad record to the end of the file, can be what an
/// interrupted append left: blocks never written (zeros), or one record that reaches the end of
/// the file. Bytes beyond a bad record's end mean damage, not a torn write: cutting there would
/// silently drop records that were acknowledged. (A damaged length field that points beyond the
/// end of the file still reads as torn: the length is not checksummed on its own.)
pub fn could_be_torn(rest: &[u8]) -> bool {
    if rest.iter().all(|byte| *byte == 0) || rest.len() < HEADER_LEN {
        return true;
    }
    let payload_len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    HEADER_LEN + payload_len >= rest.len()
}

/// Reads the record at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Read {
    if bytes.is_empty() {
        return Read::End;
    }
    if bytes.len() < HEADER_LEN {
        return Read::Torn(format!("{} bytes of a record header", bytes.len()));
    }
    let payload_len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let Some(payload) = bytes.get(HEADER_LEN..HEADER_LEN + payload_len) else {
        return Read::Torn(format!(
            "a record of {payload_len} bytes with {} left in the file",
            bytes.len() - HEADER_LEN
        ));
    };
    if crc32fast::hash(payload) != crc {
        return Read::Torn("a record whose checksum does not match".to_owned());
    }
    match parse(payload) {
        Ok(record) => Read::Record(record, HEADER_LEN + payload_len),
        // A record with a valid checksum that does not parse was written that way: a bug or
        // another program's file, never a torn write.
        Err(error) => Read::Torn(format!("an unreadable record: {error}")),
    }
}

fn parse(payload: &[u8]) -> Result<Record, String> {
    let mut reader = Reader(payload);
    let flags = reader.u8()?;
    let mut record = Record::default();
    if flags & HAS_MARKER != 0 {
        record.marker = Some(Marker {
            index: reader.u64()?,
            term: reader.u64()?,
            replaces_log: reader.u8()? != 0,
        });
    }
    if flags & HAS_HARD_STATE != 0 {
        record.hard_state = Some(reader.message()?);
    }
    if flags & HAS_CONF_STATE != 0 {
        record.conf_state = Some(reader.message()?);
    }
    if flags & HAS_ENTRIES != 0 {
        let count = reader.u32()? as usize;
        // Each entry takes at least its 4-byte length: a count beyond that is damage, and must
        // not size an allocation.
        if count > reader.0.len() / 4 {
            return Err(format!("{count} entries in {} bytes", reader.0.len()));
        }
        record.entries.reserve(count);
        for _ in 0..count {
            record.entries.push(reader.message()?);
        }
    }
    if !reader.0.is_empty() {
        return Err(format!("{} bytes after the record's parts", reader.0.len()));
    }
    Ok(record)
}

/// Bounds-checked reads from a payload.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if self.0.len() < len {
            return Err(format!("{len} bytes wanted, {} left", self.0.len()));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn message<M: protobuf::Message>(&mut self) -> Result<M, String> {
        let len = self.u32()? as usize;
        M::parse_from_bytes(self.take(len)?).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: bytes::Bytes::from(format!("entry {index}")),
            ..Entry::default()
        }
    }

    fn sample() -> Vec<u8> {
        let hard_state = HardState {
            term: 3,
            vote: 2,
            commit: 7,
            ..HardState::default()
        };
        let marker = Marker {
            index: 5,
            term: 2,
            replaces_log: true,
        };
        let mut out = Vec::new();
        encode(
            &mut out,
            Some(marker),
            Some(&hard_state),
            None,
            &[entry(6, 2), entry(7, 3)],
        )
        .unwrap();
        out
    }

    #[test]
    fn a_record_round_trips_and_reports_its_length() {
        let bytes = sample();
        let Read::Record(record, len) = decode(&bytes) else {
            panic!("not a record");
        };
        assert_eq!(len, bytes.len());
        assert_eq!(record.marker.unwrap().index, 5);
        assert!(record.marker.unwrap().replaces_log);
        assert_eq!(record.hard_state.unwrap().commit, 7);
        assert!(record.conf_state.is_none());
        let indexes: Vec<u64> = record.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![6, 7]);
        assert_eq!(&record.entries[1].data[..], b"entry 7");
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_torn_not_misread() {
        let bytes = sample();
        assert_eq!(decode(&bytes[..0]), Read::End);
        for cut in 1..bytes.len() {
            assert!(
                matches!(decode(&bytes[..cut]), Read::Torn(_)),
                "cut at {cut} was not reported torn"
            );
        }
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert!(
                matches!(decode(&damaged), Read::Torn(_)),
                "a flipped byte at {at} was not reported torn"
            );
        }
    }

    #[test]
    fn only_a_tail_an_interrupted_append_can_leave_counts_as_torn() {
        let bytes = sample();
        assert!(could_be_torn(&bytes[..bytes.len() - 1]), "cut short");
        assert!(could_be_torn(&[0; 4096]), "never written");
        let mut garbled = bytes.clone();
        garbled[20] ^= 1;
        assert!(could_be_torn(&garbled), "garbled, ending at the end");
        garbled.extend_from_slice(&bytes);
        assert!(!could_be_torn(&garbled), "a record follows the damage");
    }

    #[test]
    fn a_huge_length_prefix_is_torn_without_allocating() {
        let mut bytes = sample();
        bytes[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&bytes), Read::Torn(_)));
    }
}
