//! The bytes of a log segment: a header, then records, each checked by a CRC.
//!
//! ```text
//!   segment:  header | record | record | ... | zeros or garbage
//!   header:   magic "SKVWAL01" (8) | seq (u64 LE) | previous end (u64 LE) | crc (u32 LE)
//!   record:   crc (u32 LE) | len (u32 LE) | body (len bytes)
//!   crc:      CRC-32 of seq (u64 LE) ++ len (u32 LE) ++ body
//!   body:     kind (u8) then
//!               PUT          key len (u32 LE) | key | value
//!               DELETE       key
//!               DELETE_RANGE start len (u32 LE) | start | end
//!               SNAPSHOT     snapshot file number (u64 LE)
//!               FIRST        first live segment seq (u64 LE)
//! ```
//!
//! The header's previous end is where the previous segment's records end (0 for the first
//! segment): a segment whose unsynced end was lost in a power failure, while its
//! successor's records were kept, is caught by it (the file itself would just look
//! shorter). The header's CRC covers its first 24 bytes.
//!
//! The segment's seq is folded into every record's CRC, so a record copied from another
//! segment (or left in a reused file) never passes as one of this segment's. A scan stops
//! at the first record that is short, zero-length, over-long or fails its CRC: that is
//! the end of what the segment holds (see `mod.rs` for what happens to anything after).

use crate::StoreError;

/// The first bytes of every segment.
pub(crate) const MAGIC: &[u8; 8] = b"SKVWAL01";
/// Length of a segment header (magic, seq, previous end, crc).
pub(crate) const HEADER_BYTES: u64 = 28;
/// Length of a record's frame (crc and len).
pub(crate) const FRAME_BYTES: u64 = 8;

const PUT: u8 = 1;
const DELETE: u8 = 2;
const DELETE_RANGE: u8 = 3;
const SNAPSHOT: u8 = 4;
const FIRST: u8 = 5;

/// One logged change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    /// `key` now holds `value`.
    Put { key: &'a [u8], value: &'a [u8] },
    /// `key` is gone.
    Delete { key: &'a [u8] },
    /// Every key in `[start, end)` is gone.
    DeleteRange { start: &'a [u8], end: &'a [u8] },
    /// The snapshot blob is snapshot file `number`.
    Snapshot { number: u64 },
    /// Every segment before `seq` is dead: its records are superseded by what precedes
    /// this record, and the segment files may be deleted.
    First { seq: u64 },
}

/// The header of segment `seq`, whose predecessor's records end at `previous_end`.
pub(crate) fn header(seq: u64, previous_end: u64) -> [u8; HEADER_BYTES as usize] {
    let mut out = [0; HEADER_BYTES as usize];
    out[..8].copy_from_slice(MAGIC);
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    out[16..24].copy_from_slice(&previous_end.to_le_bytes());
    let checksum = crc32fast::hash(&out[..24]);
    out[24..].copy_from_slice(&checksum.to_le_bytes());
    out
}

/// The previous end a valid header of segment `seq` at the start of `bytes` records;
/// `None` when there is no such header.
pub(crate) fn read_header(bytes: &[u8], seq: u64) -> Option<u64> {
    let header = bytes.get(..HEADER_BYTES as usize)?;
    let previous_end = u64::from_le_bytes(header[16..24].try_into().ok()?);
    (*header == self::header(seq, previous_end)).then_some(previous_end)
}

fn crc(seq: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(&(body.len() as u32).to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// Appends `record`, framed for segment `seq`, to `out`; returns the offset of the
/// record's value bytes within what was appended (for a `Put`; 0 otherwise).
pub(crate) fn encode(seq: u64, record: &Record<'_>, out: &mut Vec<u8>) -> Result<u64, StoreError> {
    let start = out.len();
    let encoded = encode_at(seq, record, out, start);
    if encoded.is_err() {
        // Nothing of a record that cannot be framed stays in the buffer.
        out.truncate(start);
    }
    encoded
}

/// [`encode`], appending at `start` (`out`'s length).
fn encode_at(
    seq: u64,
    record: &Record<'_>,
    out: &mut Vec<u8>,
    start: usize,
) -> Result<u64, StoreError> {
    out.extend_from_slice(&[0; FRAME_BYTES as usize]);
    let mut value_at = 0;
    match record {
        Record::Put { key, value } => {
            out.push(PUT);
            out.extend_from_slice(&length(key.len())?.to_le_bytes());
            out.extend_from_slice(key);
            value_at = (out.len() - start) as u64;
            out.extend_from_slice(value);
        }
        Record::Delete { key } => {
            out.push(DELETE);
            out.extend_from_slice(key);
        }
        Record::DeleteRange { start: from, end } => {
            out.push(DELETE_RANGE);
            out.extend_from_slice(&length(from.len())?.to_le_bytes());
            out.extend_from_slice(from);
            out.extend_from_slice(end);
        }
        Record::Snapshot { number } => {
            out.push(SNAPSHOT);
            out.extend_from_slice(&number.to_le_bytes());
        }
        Record::First { seq } => {
            out.push(FIRST);
            out.extend_from_slice(&seq.to_le_bytes());
        }
    }
    let body_len = out.len() - start - FRAME_BYTES as usize;
    let body_len_u32 = length(body_len)?;
    let checksum = crc(seq, &out[start + FRAME_BYTES as usize..]);
    out[start..start + 4].copy_from_slice(&checksum.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&body_len_u32.to_le_bytes());
    Ok(value_at)
}

fn length(len: usize) -> Result<u32, StoreError> {
    u32::try_from(len).map_err(|_| StoreError::Backend(format!("a record of {len} bytes")))
}

/// A record read back, with where it sits in its segment.
#[derive(Debug)]
pub(crate) struct Read<'a> {
    pub(crate) record: Record<'a>,
    /// Offset of the record's frame.
    pub(crate) at: u64,
    /// Length of the whole record, frame included.
    pub(crate) len: u64,
    /// Offset of a `Put`'s value (0 otherwise).
    pub(crate) value_at: u64,
}

/// Reads the records of segment `seq` from its bytes (`bytes[0]` is the file's first
/// byte), in order, up to the first that is not whole and valid. Returns them and the
/// offset where the valid part ends.
pub(crate) fn scan(seq: u64, bytes: &[u8]) -> (Vec<Read<'_>>, u64) {
    let mut records = Vec::new();
    let mut at = HEADER_BYTES as usize;
    while let Some(frame) = bytes.get(at..at + FRAME_BYTES as usize) {
        let checksum = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let len = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
        let body_at = at + FRAME_BYTES as usize;
        let Some(body) = bytes.get(body_at..body_at.saturating_add(len)) else {
            break;
        };
        if len == 0 || crc(seq, body) != checksum {
            break;
        }
        let Some((record, value_offset)) = decode(body) else {
            break;
        };
        let value_at = match value_offset {
            0 => 0,
            offset => (body_at + offset) as u64,
        };
        records.push(Read {
            record,
            at: at as u64,
            len: FRAME_BYTES + len as u64,
            value_at,
        });
        at = body_at + len;
    }
    (records, at as u64)
}

/// Decodes a record's body; with a `Put`, the offset of its value within the body.
fn decode(body: &[u8]) -> Option<(Record<'_>, usize)> {
    let (&kind, rest) = body.split_first()?;
    match kind {
        PUT => {
            let (key, value) = split_prefixed(rest)?;
            Some((Record::Put { key, value }, body.len() - value.len()))
        }
        DELETE => Some((Record::Delete { key: rest }, 0)),
        DELETE_RANGE => {
            let (start, end) = split_prefixed(rest)?;
            Some((Record::DeleteRange { start, end }, 0))
        }
        SNAPSHOT => Some((
            Record::Snapshot {
                number: u64::from_le_bytes(rest.try_into().ok()?),
            },
            0,
        )),
        FIRST => Some((
            Record::First {
                seq: u64::from_le_bytes(rest.try_into().ok()?),
            },
            0,
        )),
        _ => None,
    }
}

/// Splits `bytes` into a u32-length-prefixed part and the rest.
fn split_prefixed(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let rest = &bytes[4..];
    (len <= rest.len()).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(seq: u64, records: &[Record<'_>]) -> Vec<u8> {
        let mut out = header(seq, 0).to_vec();
        for record in records {
            encode(seq, record, &mut out).unwrap();
        }
        out
    }

    /// Every kind of record reads back as written, and a put's value sits where the
    /// scan says.
    #[test]
    fn records_read_back() {
        let records = [
            Record::Put {
                key: b"k",
                value: b"value",
            },
            Record::Delete { key: b"gone" },
            Record::DeleteRange {
                start: b"a",
                end: b"b",
            },
            Record::Snapshot { number: 7 },
            Record::First { seq: 3 },
        ];
        let bytes = segment(9, &records);
        let (read, end) = scan(9, &bytes);
        assert_eq!(end, bytes.len() as u64);
        let got: Vec<_> = read.iter().map(|r| r.record.clone()).collect();
        assert_eq!(got, records);
        let at = read[0].value_at as usize;
        assert_eq!(&bytes[at..at + 5], b"value");
    }

    /// A scan stops at a torn or corrupt record, at zeros, and at a record framed for
    /// another segment.
    #[test]
    fn scans_stop_at_the_first_bad_record() {
        let records = [
            Record::Put {
                key: b"a",
                value: b"1",
            },
            Record::Put {
                key: b"b",
                value: b"2",
            },
        ];
        let bytes = segment(1, &records);
        let first_end = scan(1, &bytes).0[0].len + HEADER_BYTES;
        // Torn: the second record cut short.
        let (read, end) = scan(1, &bytes[..bytes.len() - 1]);
        assert_eq!((read.len(), end), (1, first_end));
        // Corrupt: a flipped bit in the second record's body.
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(scan(1, &flipped).0.len(), 1);
        // Zeros after the records.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 64]);
        assert_eq!(scan(1, &padded).1, bytes.len() as u64);
        // The same records read as segment 2's: none.
        assert!(scan(2, &bytes).0.is_empty());
        // Headers read back, and only as their own segment's.
        let header = header(7, 1234);
        assert_eq!(read_header(&header, 7), Some(1234));
        assert_eq!(read_header(&header, 8), None);
        let mut bad = header;
        bad[20] ^= 1;
        assert_eq!(read_header(&bad, 7), None);
    }
}
