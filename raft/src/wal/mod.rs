//! [`WalBackend`]: the [`Backend`] real nodes and the simulator's reference replicas
//! run, a segmented write-ahead log of key/value records over a [`Disk`].
//!
//! ```text
//!   put/delete ─► record (CRC) ─► pending buffer ─► active segment file ─► sync job
//!                     │                               wal-<seq>.log          (fdatasync)
//!                     └─► index: key ─► (segment, offset, length) of its value
//! ```
//!
//! Every change is one record appended to the active segment (`record.rs` has the
//! format); the index in memory says where each live key's value is, and values are read
//! back from the file (the store above caches what it needs, so reads are rare: opening,
//! tests). Records collect in a buffer written with one `write` when a sync job is taken
//! (or the buffer passes [`PENDING_BYTES`]), so a Ready's records cost one system call.
//! Durability is reported, not assumed: [`Backend::sync_job`] hands out the fdatasyncs
//! (and directory syncs) that make everything so far durable, to run on any thread.
//!
//! Segments roll over at [`SEGMENT_BYTES`]. At each rollover the oldest segments whose
//! live records are at most a quarter of their size are cleaned: their live records are
//! written again into the new segment, then a `First` record names the first segment
//! still needed, and the old files are removed by the next sync job, after that record is
//! durable, one at a time with a directory sync after each, so the segment files on disk
//! are always consecutive.
//!
//! Segments are filled with zeros ahead of the records ([`ZERO_AHEAD_BYTES`] at a time,
//! synced with them), so most syncs write into a file whose length does not change.
//!
//! Opening replays the segments in order and stops at the first record that is torn or
//! fails its CRC, or at a missing segment; zeros after the records are the space written
//! ahead, anything else was never synced (a power failure kept some of it, in any order),
//! so it is cut off: the file is truncated there, later
//! segments are removed, and everything kept is synced before the store is used. A crash
//! therefore loses a suffix of the writes since the last completed sync, never anything
//! before it, and never keeps a later write without the earlier ones.
//!
//! Snapshots (`snapshot.rs`) are files of their own, written `snap-N.tmp`, synced,
//! renamed to `snap-N.snap`, the directory synced; then a `Snapshot` record names the
//! current one and the next sync job removes the previous file.

mod record;
mod snapshot;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use record::{Record, HEADER_BYTES};
pub use snapshot::Background;
use snapshot::Snapshots;

use crate::disk::{disk_error, read_all};
use crate::{
    Backend, Disk, DiskFile, KeyValues, SnapshotMaker, SnapshotReader, StoreError, SyncJob,
};

/// A segment is rolled over once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// Zeros written ahead of the active segment's records, so that most syncs do not grow
/// the file (an `fdatasync` that must also commit a new file size costs a journal write).
const ZERO_AHEAD_BYTES: u64 = 1 << 20;

/// Buffered record bytes are written to the file once they reach this many.
const PENDING_BYTES: usize = 1 << 20;

/// Files that show a data directory was written by the sled-based store of earlier
/// versions, which this one does not read.
const SLED_FILES: [&str; 2] = ["conf", "db"];

/// Keys for [`SyncJob::sync_file`], unique across every open segment of the process.
static NEXT_FILE_KEY: AtomicU64 = AtomicU64::new(1);

fn segment_name(seq: u64) -> String {
    format!("wal-{seq:020}.log")
}

/// The seq of a segment file name: exactly `wal-`, 20 digits, `.log` (what
/// [`segment_name`] writes); any other name is not a segment.
/// Whether `name` is a log segment's file name.
pub(crate) fn is_segment(name: &str) -> bool {
    segment_seq(name).is_some()
}

fn segment_seq(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The seq after `seq`; `Corrupt` past the last one (a segment numbered by hand).
fn next_seq(seq: u64) -> Result<u64, StoreError> {
    seq.checked_add(1).ok_or_else(|| StoreError::Corrupt {
        what: "log segments".into(),
        reason: format!("a segment is numbered {seq}, the last number"),
    })
}

/// Where a live key's value is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    seq: u64,
    /// Offset of the value in the segment.
    at: u64,
    len: u64,
    /// Length of the whole record (what the key keeps alive).
    record_len: u64,
}

/// A segment to sync: its seq, its key for [`SyncJob::sync_file`] and its file.
type SegmentFile<F> = (u64, (u64, Arc<F>));

/// A sync job handed out and not known to have run yet.
struct InFlight<F> {
    /// Set by the job's last step.
    done: Arc<AtomicBool>,
    /// The segments it syncs.
    files: Vec<SegmentFile<F>>,
    /// Whether it syncs the directory.
    dir: bool,
}

/// One segment file.
struct Segment<F> {
    file: Arc<F>,
    key: u64,
    /// Bytes of the records still live in it.
    live: u64,
}

/// A write-ahead log of key/value records over a [`Disk`]; see the module docs.
pub struct WalBackend<D: Disk> {
    disk: D,
    index: BTreeMap<Vec<u8>, Loc>,
    segments: BTreeMap<u64, Segment<D::File>>,
    /// The segment appended to.
    active: u64,
    /// Bytes of the active segment already written to its file.
    written: u64,
    /// The active segment file's length: records up to `written`, zeros after.
    allocated: u64,
    /// Record bytes not yet written to the active segment's file (they follow
    /// `written`).
    pending: Vec<u8>,
    /// Segments written since the last sync job was taken (cleaned ones too: their last
    /// records must be durable before their successors' are relied on), by seq.
    unsynced: BTreeMap<u64, (u64, Arc<D::File>)>,
    /// Whether a segment was created since the last sync job was taken.
    created: bool,
    /// Files to remove once the next sync job's syncs are done, in order.
    doomed: Vec<String>,
    /// Sync jobs handed out that have not run yet, as far as the log knows: a blocking
    /// [`Backend::sync`] syncs their segments too.
    in_flight: Vec<InFlight<D::File>>,
    /// The current snapshot file's number, and the segment holding its record.
    snapshot: Option<(u64, Loc)>,
    snapshots: Snapshots<D>,
    /// Segment size at which the active segment rolls over.
    segment_bytes: u64,
}

impl<D: Disk> fmt::Debug for WalBackend<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalBackend")
            .field("keys", &self.index.len())
            .field("segments", &self.segments.keys().collect::<Vec<_>>())
            .field("written", &self.written)
            .field("pending", &self.pending.len())
            .field("snapshot", &self.snapshot.map(|(number, _)| number))
            .finish()
    }
}

impl<D: Disk> WalBackend<D> {
    /// Opens the log kept on `disk` (an empty disk gives an empty log), cutting off a
    /// torn tail and syncing what it keeps; `background` says how snapshot files are
    /// written (see [`Background`]).
    pub fn open(disk: D, background: Background) -> Result<Self, StoreError> {
        Self::open_with_segment_bytes(disk, background, SEGMENT_BYTES)
    }

    /// [`WalBackend::open`] with segments of `segment_bytes` (tests roll segments over
    /// sooner).
    pub fn open_with_segment_bytes(
        disk: D,
        background: Background,
        segment_bytes: u64,
    ) -> Result<Self, StoreError> {
        let names = disk
            .list()
            .map_err(|error| disk_error(&disk, ".", &error))?;
        if SLED_FILES
            .iter()
            .all(|file| names.iter().any(|name| name == file))
        {
            return Err(StoreError::Backend(format!(
                "{} holds the data of an earlier shardkv (a sled database), which this version does not read; start this node on an empty data directory",
                disk.describe(".")
            )));
        }
        let mut seqs: Vec<u64> = names.iter().filter_map(|name| segment_seq(name)).collect();
        seqs.sort_unstable();
        seqs.dedup();
        let mut wal = WalBackend {
            snapshots: Snapshots::new(disk.clone(), background, &names)?,
            disk,
            index: BTreeMap::new(),
            segments: BTreeMap::new(),
            active: 0,
            written: 0,
            allocated: 0,
            pending: Vec::new(),
            unsynced: BTreeMap::new(),
            created: false,
            doomed: Vec::new(),
            in_flight: Vec::new(),
            snapshot: None,
            segment_bytes: segment_bytes.max(HEADER_BYTES + 1),
        };
        let first = wal.replay(&seqs)?;
        if wal.segments.is_empty() {
            let seq = match seqs.last() {
                None => 1,
                Some(last) => next_seq(*last)?,
            };
            wal.create_segment(seq)?;
        }
        // Everything kept is made durable before anything is removed or written.
        wal.sync_job()?.run()?;
        let dead: Vec<u64> = wal.segments.range(..first).map(|(&seq, _)| seq).collect();
        for seq in dead {
            wal.segments.remove(&seq);
            wal.doomed.push(segment_name(seq));
        }
        let recorded = wal.snapshot.map(|(number, _)| number);
        wal.doomed.extend(wal.snapshots.strays(recorded));
        wal.sync_job()?.run()?;
        wal.count_live();
        Ok(wal)
    }

    /// Replays segments `seqs` (sorted) into the index, cutting the log off at the
    /// first missing segment, bad header, or torn or corrupt record; returns the first
    /// live segment the log names.
    fn replay(&mut self, seqs: &[u64]) -> Result<u64, StoreError> {
        let mut first = 0;
        let mut cut = None;
        // Where the previous segment's records end, as read.
        let mut previous_end = None;
        for (i, &seq) in seqs.iter().enumerate() {
            let consecutive = i == 0 || seqs[i - 1].checked_add(1) == Some(seq);
            let name = segment_name(seq);
            if !consecutive && cut.is_none() {
                tracing::warn!(segment = %self.disk.describe(&name), "a segment is missing before this one: the log ends there");
                cut = Some(seq);
            }
            if cut.is_some() {
                self.remove_now(&name)?;
                continue;
            }
            let file = self
                .disk
                .open(&name)
                .map_err(|error| disk_error(&self.disk, &name, &error))?;
            let bytes = read_all(&file).map_err(|error| disk_error(&self.disk, &name, &error))?;
            let Some(recorded_end) = record::read_header(&bytes, seq) else {
                // Created, but its header never reached the disk.
                tracing::warn!(segment = %self.disk.describe(&name), "a segment without its header is removed");
                drop(file);
                self.remove_now(&name)?;
                cut = Some(seq);
                continue;
            };
            if previous_end.is_some_and(|end| end != recorded_end) {
                // The previous segment lost records its successor came after.
                tracing::warn!(
                    segment = %self.disk.describe(&name),
                    "the previous segment lost its end: the log ends there"
                );
                drop(file);
                self.remove_now(&name)?;
                cut = Some(seq);
                continue;
            }
            let (records, end) = record::scan(seq, &bytes);
            previous_end = Some(end);
            for read in &records {
                self.apply(seq, read, &mut first);
            }
            let file = Arc::new(file);
            let tail = &bytes[end as usize..];
            // Zeros after the records are space written ahead (see `ZERO_AHEAD_BYTES`).
            if tail.iter().any(|&byte| byte != 0) {
                tracing::warn!(
                    segment = %self.disk.describe(&name),
                    kept = end,
                    cut = bytes.len() as u64 - end,
                    "the log ends in a torn or corrupt record: cut off there"
                );
                file.set_len(end)
                    .map_err(|error| disk_error(&self.disk, &name, &error))?;
                cut = Some(seq);
                self.allocated = end;
            } else {
                self.allocated = bytes.len() as u64;
            }
            self.segments.insert(
                seq,
                Segment {
                    file,
                    key: NEXT_FILE_KEY.fetch_add(1, Ordering::Relaxed),
                    live: 0,
                },
            );
            self.active = seq;
            self.written = end;
        }
        if cut.is_some() {
            self.created = true;
        }
        for (&seq, segment) in &self.segments {
            self.unsynced
                .insert(seq, (segment.key, Arc::clone(&segment.file)));
        }
        Ok(first)
    }

    /// Applies one replayed record to the index.
    fn apply(&mut self, seq: u64, read: &record::Read<'_>, first: &mut u64) {
        let loc = |at: u64, len: u64| Loc {
            seq,
            at,
            len,
            record_len: read.len,
        };
        match &read.record {
            Record::Put { key, value } => {
                self.index
                    .insert(key.to_vec(), loc(read.value_at, value.len() as u64));
            }
            Record::Delete { key } => {
                self.index.remove(*key);
            }
            Record::DeleteRange { start, end } => {
                let doomed = self.keys_in(start, end);
                for key in doomed {
                    self.index.remove(&key);
                }
            }
            Record::Snapshot { number } => self.snapshot = Some((*number, loc(read.at, 0))),
            Record::First { seq } => *first = (*first).max(*seq),
        }
    }

    /// Removes file `name` at once (while opening), with the directory synced after.
    fn remove_now(&self, name: &str) -> Result<(), StoreError> {
        self.disk
            .remove(name)
            .and_then(|()| self.disk.sync_dir())
            .map_err(|error| disk_error(&self.disk, name, &error))
    }

    /// Recounts every segment's live bytes from the index.
    fn count_live(&mut self) {
        for segment in self.segments.values_mut() {
            segment.live = 0;
        }
        let locs = self
            .index
            .values()
            .chain(self.snapshot.iter().map(|(_, loc)| loc));
        for loc in locs {
            if let Some(segment) = self.segments.get_mut(&loc.seq) {
                segment.live += loc.record_len;
            }
        }
    }

    fn keys_in(&self, start: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
        if start >= end {
            return Vec::new();
        }
        self.index
            .range(start.to_vec()..end.to_vec())
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Creates segment `seq` with its header (naming where the active segment's records
    /// end, none when there is none) and makes it the active one.
    fn create_segment(&mut self, seq: u64) -> Result<(), StoreError> {
        let name = segment_name(seq);
        let previous_end = match self.segments.is_empty() {
            true => 0,
            false => self.written,
        };
        let file = self
            .disk
            .create(&name)
            .map_err(|error| disk_error(&self.disk, &name, &error))?;
        file.write_at(0, &record::header(seq, previous_end))
            .map_err(|error| disk_error(&self.disk, &name, &error))?;
        let (file, key) = (
            Arc::new(file),
            NEXT_FILE_KEY.fetch_add(1, Ordering::Relaxed),
        );
        self.unsynced.insert(seq, (key, Arc::clone(&file)));
        self.segments.insert(seq, Segment { file, key, live: 0 });
        self.active = seq;
        self.written = HEADER_BYTES;
        self.allocated = HEADER_BYTES;
        self.created = true;
        Ok(())
    }

    /// Appends `record` to the active segment; returns where a put's value is.
    fn append(&mut self, record: &Record<'_>) -> Result<Loc, StoreError> {
        let start = self.pending.len();
        let value_at = record::encode(self.active, record, &mut self.pending)?;
        let record_len = (self.pending.len() - start) as u64;
        let at = self.written + start as u64;
        let len = match record {
            Record::Put { value, .. } => value.len() as u64,
            _ => 0,
        };
        let loc = Loc {
            seq: self.active,
            at: if value_at == 0 { at } else { at + value_at },
            len,
            record_len,
        };
        if self.pending.len() >= PENDING_BYTES {
            self.write_pending()?;
        }
        Ok(loc)
    }

    /// Writes the buffered records to the active segment's file.
    fn write_pending(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let segment = self.segment(self.active)?;
        let (key, file) = (segment.key, Arc::clone(&segment.file));
        let name = || segment_name(self.active);
        file.write_at(self.written, &self.pending)
            .map_err(|error| disk_error(&self.disk, &name(), &error))?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        if self.written > self.allocated.saturating_sub(ZERO_AHEAD_BYTES / 2) {
            // Zeros ahead of the records, synced with them: later syncs then only write
            // blocks of a file whose length stays put, which the file system commits
            // without a journal entry for the size.
            let ahead = ZERO_AHEAD_BYTES.min(self.segment_bytes);
            let zeros = vec![0; ahead as usize];
            let at = self.written.max(self.allocated);
            file.write_at(at, &zeros)
                .map_err(|error| disk_error(&self.disk, &name(), &error))?;
            self.allocated = at + ahead;
        }
        self.unsynced.insert(self.active, (key, file));
        Ok(())
    }

    fn segment(&self, seq: u64) -> Result<&Segment<D::File>, StoreError> {
        self.segments
            .get(&seq)
            .ok_or_else(|| StoreError::Backend(format!("log segment {seq} is not open (a bug)")))
    }

    /// Reads the value at `loc`.
    fn read(&self, loc: Loc) -> Result<Vec<u8>, StoreError> {
        let len = usize::try_from(loc.len)
            .map_err(|_| StoreError::Backend("a value larger than memory".into()))?;
        if loc.seq == self.active && loc.at >= self.written {
            let from = (loc.at - self.written) as usize;
            return self
                .pending
                .get(from..from + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| {
                    StoreError::Backend("a buffered value out of range (a bug)".into())
                });
        }
        let name = segment_name(loc.seq);
        let file = &self.segment(loc.seq)?.file;
        let mut out = vec![0; len];
        let mut done = 0;
        while done < len {
            let read = file
                .read_at(loc.at + done as u64, &mut out[done..])
                .map_err(|error| disk_error(&self.disk, &name, &error))?;
            if read == 0 {
                return Err(StoreError::Corrupt {
                    what: self.disk.describe(&name),
                    reason: format!("a value at {} runs past the end of the file", loc.at),
                });
            }
            done += read;
        }
        Ok(out)
    }

    /// Appends a put of `key` and points the index at it (no roll-over: the caller's).
    fn write_put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let loc = self.append(&Record::Put { key, value })?;
        self.unlink(key);
        self.link(key.to_vec(), loc);
        Ok(())
    }

    /// Takes `key` out of the index, uncounting its record.
    fn unlink(&mut self, key: &[u8]) {
        if let Some(old) = self.index.remove(key) {
            self.uncount(old);
        }
    }

    fn uncount(&mut self, loc: Loc) {
        if let Some(segment) = self.segments.get_mut(&loc.seq) {
            segment.live = segment.live.saturating_sub(loc.record_len);
        }
    }

    fn link(&mut self, key: Vec<u8>, loc: Loc) {
        if let Some(segment) = self.segments.get_mut(&loc.seq) {
            segment.live += loc.record_len;
        }
        self.index.insert(key, loc);
    }

    /// Rolls the active segment over once it is full, then cleans the oldest segments.
    fn roll_over(&mut self) -> Result<(), StoreError> {
        if self.written + (self.pending.len() as u64) < self.segment_bytes {
            return Ok(());
        }
        self.write_pending()?;
        self.create_segment(next_seq(self.active)?)?;
        self.clean()
    }

    /// Cleans the oldest segments while at most a quarter of each is live: their live
    /// records are written again, then a `First` record says they are no longer needed,
    /// and the next sync job removes them.
    fn clean(&mut self) -> Result<(), StoreError> {
        let mut first = None;
        while let Some((&seq, segment)) = self.segments.iter().next() {
            if seq == self.active || segment.live.saturating_mul(4) > self.segment_bytes {
                break;
            }
            let keys: Vec<Vec<u8>> = (self.index.iter())
                .filter(|(_, loc)| loc.seq == seq)
                .map(|(key, _)| key.clone())
                .collect();
            for key in keys {
                if let Some(&loc) = self.index.get(&key) {
                    let value = self.read(loc)?;
                    self.write_put(&key, &value)?;
                }
            }
            if let Some((number, loc)) = self.snapshot {
                if loc.seq == seq {
                    self.record_snapshot(number)?;
                }
            }
            self.segments.remove(&seq);
            self.doomed.push(segment_name(seq));
            first = Some(seq + 1);
        }
        if let Some(seq) = first {
            self.append(&Record::First { seq })?;
        }
        Ok(())
    }

    /// Adds to `job` the syncs of `files` (oldest first: a segment's records are durable
    /// before its successor's), then of the directory when `dir`.
    fn add_syncs(&self, job: &mut SyncJob, files: &[SegmentFile<D::File>], dir: bool) {
        for (seq, (key, file)) in files {
            let (file, disk, name) = (Arc::clone(file), self.disk.clone(), segment_name(*seq));
            job.sync_file(*key, move || {
                file.sync_data()
                    .map_err(|error| disk_error(&disk, &name, &error))
            });
        }
        if dir {
            let disk = self.disk.clone();
            job.then(move || {
                disk.sync_dir()
                    .map_err(|error| disk_error(&disk, ".", &error))
            });
        }
    }

    /// Appends the record naming snapshot file `number` as the current one.
    fn record_snapshot(&mut self, number: u64) -> Result<(), StoreError> {
        let loc = self.append(&Record::Snapshot { number })?;
        if let Some((_, old)) = self.snapshot.replace((number, loc)) {
            self.uncount(old);
        }
        if let Some(segment) = self.segments.get_mut(&loc.seq) {
            segment.live += loc.record_len;
        }
        Ok(())
    }

    /// Records the snapshot file the background finished, if it did (waiting for it with
    /// `wait`); the previous file is removed by the next sync job.
    fn settle_snapshot(&mut self, wait: bool) -> Result<bool, StoreError> {
        match self.snapshots.finished(wait)? {
            None => Ok(true),
            Some(None) => Ok(false),
            Some(Some(number)) => {
                let previous = self.snapshot.map(|(number, _)| number);
                self.record_snapshot(number)?;
                self.doomed.extend(previous.map(snapshot::file_name));
                self.roll_over()?;
                Ok(true)
            }
        }
    }
}

impl<D: Disk> Backend for WalBackend<D> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.index.get(key).map(|&loc| self.read(loc)).transpose()
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write_put(key, value)?;
        self.roll_over()
    }

    fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), StoreError> {
        let keys = self.keys_in(start, end);
        if keys.is_empty() {
            return Ok(());
        }
        self.append(&Record::DeleteRange { start, end })?;
        for key in keys {
            self.unlink(&key);
        }
        self.roll_over()
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if !self.index.contains_key(key) {
            return Ok(());
        }
        self.append(&Record::Delete { key })?;
        self.unlink(key);
        self.roll_over()
    }

    fn scan(&self, start: &[u8], end: &[u8]) -> Result<KeyValues, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        (self.index.range(start.to_vec()..end.to_vec()))
            .map(|(key, &loc)| Ok((key.clone(), self.read(loc)?)))
            .collect()
    }

    fn put_snapshot(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let bytes = bytes.to_vec();
        self.start_put_snapshot(Box::new(move || Ok(vec![bytes])))?;
        self.settle_snapshot(true).map(drop)
    }

    fn start_put_snapshot(&mut self, make: SnapshotMaker) -> Result<(), StoreError> {
        self.settle_snapshot(true)?;
        self.snapshots.start(make)
    }

    fn snapshot_stored(&mut self, wait: bool) -> Result<bool, StoreError> {
        self.settle_snapshot(wait)
    }

    fn get_snapshot(&self) -> Result<Option<Vec<u8>>, StoreError> {
        match self.snapshot {
            Some((number, _)) => self.snapshots.read(number).map(Some),
            None => Ok(None),
        }
    }

    fn snapshot_reader(&self) -> Result<Option<SnapshotReader>, StoreError> {
        Ok(self
            .snapshot
            .and_then(|(number, _)| self.snapshots.reader(number)))
    }

    fn sync_job(&mut self) -> Result<SyncJob, StoreError> {
        self.write_pending()?;
        self.in_flight
            .retain(|job| !job.done.load(Ordering::Acquire));
        let files: Vec<_> = std::mem::take(&mut self.unsynced).into_iter().collect();
        let dir = std::mem::take(&mut self.created);
        let mut job = SyncJob::done();
        self.add_syncs(&mut job, &files, dir);
        for name in std::mem::take(&mut self.doomed) {
            let disk = self.disk.clone();
            job.then(
                move || match disk.remove(&name).and_then(|()| disk.sync_dir()) {
                    Ok(()) => Ok(()),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(error) => Err(disk_error(&disk, &name, &error)),
                },
            );
        }
        let done = Arc::new(AtomicBool::new(false));
        let ran = Arc::clone(&done);
        job.then(move || {
            ran.store(true, Ordering::Release);
            Ok(())
        });
        self.in_flight.push(InFlight { done, files, dir });
        Ok(job)
    }

    /// Syncs every write so far, those of jobs handed out and not yet run included (a
    /// node's sync thread may still hold one): their segments are synced first.
    fn sync(&mut self) -> Result<(), StoreError> {
        self.in_flight
            .retain(|job| !job.done.load(Ordering::Acquire));
        let mut job = SyncJob::done();
        for in_flight in &self.in_flight {
            self.add_syncs(&mut job, &in_flight.files, in_flight.dir);
        }
        job.merge(self.sync_job()?);
        job.run()
    }
}

#[cfg(test)]
mod tests;
