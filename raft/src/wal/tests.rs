//! The write-ahead log over real files: what reopening reads back, torn tails, roll-over.
//! Power failures (unsynced writes lost in any order) are tested over the simulated disk
//! in the `shardkv-tests` crate (`tests/tests/wal_power.rs`).

use super::*;
use crate::OsDisk;

fn open(path: &std::path::Path, segment_bytes: u64) -> WalBackend<OsDisk> {
    let disk = OsDisk::open(path).unwrap();
    WalBackend::open_with_segment_bytes(disk, Background::Threads, segment_bytes).unwrap()
}

fn segments(path: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("wal-"))
        .collect();
    names.sort();
    names
}

/// Puts, deletes and range deletes read back after a reopen, across segment roll-overs,
/// and values still in the buffer read back before any sync.
#[test]
fn reopen_reads_back_every_kind_of_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = open(dir.path(), 1024);
    for i in 0..100u32 {
        wal.put(&i.to_be_bytes(), &[i as u8; 50]).unwrap();
    }
    assert_eq!(wal.get(&7u32.to_be_bytes()).unwrap(), Some(vec![7; 50]));
    wal.delete(&3u32.to_be_bytes()).unwrap();
    wal.delete_range(&10u32.to_be_bytes(), &20u32.to_be_bytes())
        .unwrap();
    wal.put(&5u32.to_be_bytes(), b"five").unwrap();
    let expected = wal.scan(&[0], &[0xFF]).unwrap();
    assert_eq!(expected.len(), 100 - 1 - 10);
    wal.sync().unwrap();
    drop(wal);
    let wal = open(dir.path(), 1024);
    assert_eq!(wal.scan(&[0], &[0xFF]).unwrap(), expected);
    assert_eq!(
        wal.get(&5u32.to_be_bytes()).unwrap(),
        Some(b"five".to_vec())
    );
    assert!(segments(dir.path()).len() > 1, "the log rolled over");
}

/// A torn record at the end of the last segment is cut off at open (the file is
/// truncated there, zeros written ahead included), and what was whole before it is kept; writes after the reopen land
/// where the cut was and read back after another reopen.
#[test]
fn a_torn_tail_is_cut_off_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = open(dir.path(), SEGMENT_BYTES);
    wal.put(b"a", b"1").unwrap();
    wal.put(b"b", b"2").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let name = &segments(dir.path())[0];
    let path = dir.path().join(name);
    let whole = std::fs::metadata(&path).unwrap().len();
    // A record frame that promises 100 bytes and holds 3: a torn write.
    let mut torn = std::fs::read(&path).unwrap();
    torn.extend_from_slice(&[1, 2, 3, 4, 100, 0, 0, 0, 9, 9, 9]);
    std::fs::write(&path, &torn).unwrap();
    let mut wal = open(dir.path(), SEGMENT_BYTES);
    let cut = std::fs::read(&path).unwrap();
    assert!(cut.len() as u64 <= whole, "the torn record is cut off");
    assert!(!cut.ends_with(&[9, 9, 9]));
    assert_eq!(wal.get(b"b").unwrap(), Some(b"2".to_vec()));
    wal.put(b"c", b"3").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let wal = open(dir.path(), SEGMENT_BYTES);
    assert_eq!(wal.scan(b"a", b"z").unwrap().len(), 3);
}

/// A missing segment ends the log: the segments after it were never synced with their
/// directory entry, so they are removed rather than replayed out of order.
#[test]
fn a_missing_segment_ends_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = open(dir.path(), 256);
    for i in 0..40u8 {
        wal.put(&[i], &[i; 40]).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let names = segments(dir.path());
    assert!(names.len() >= 4, "{names:?}");
    std::fs::remove_file(dir.path().join(&names[2])).unwrap();
    let wal = open(dir.path(), 256);
    assert_eq!(segments(dir.path()), names[..2].to_vec());
    let kept = wal.scan(&[0], &[0xFF]).unwrap();
    assert!(!kept.is_empty() && kept.len() < 40);
    // What is kept is a prefix of the writes: keys 0..n, none after a gap.
    for (i, (key, _)) in kept.iter().enumerate() {
        assert_eq!(key, &vec![i as u8]);
    }
}

/// A key rewritten again and again leaves old segments dead: roll-overs clean them and
/// sync jobs remove their files, so the log stays a few segments long, and the snapshot
/// record is carried forward when its segment is cleaned.
#[test]
fn dead_segments_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = open(dir.path(), 512);
    wal.put_snapshot(b"snapshot one").unwrap();
    for i in 0..500u32 {
        wal.put(b"hot", &i.to_le_bytes()).unwrap();
        wal.sync().unwrap();
    }
    assert!(
        segments(dir.path()).len() <= 3,
        "{:?}",
        segments(dir.path())
    );
    drop(wal);
    let wal = open(dir.path(), 512);
    assert_eq!(
        wal.get(b"hot").unwrap(),
        Some(499u32.to_le_bytes().to_vec())
    );
    assert_eq!(wal.get_snapshot().unwrap(), Some(b"snapshot one".to_vec()));
}

/// Only names the log writes are its files: a stray `wal-8.log` (not 20 digits) is left
/// alone, neither replayed nor removed.
#[test]
fn stray_names_are_not_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = open(dir.path(), SEGMENT_BYTES);
    wal.put(b"a", b"1").unwrap();
    wal.sync().unwrap();
    drop(wal);
    std::fs::write(dir.path().join("wal-1.log"), b"stray").unwrap();
    std::fs::write(dir.path().join("snap-7.snap"), b"stray").unwrap();
    let wal = open(dir.path(), SEGMENT_BYTES);
    assert_eq!(wal.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert!(dir.path().join("wal-1.log").exists());
    assert!(dir.path().join("snap-7.snap").exists());
}
