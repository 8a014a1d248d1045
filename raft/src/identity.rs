//! A data directory's identity file: whose data it holds, so that a directory given to
//! the wrong replica, or one that has lost its log or its data, refuses to start instead
//! of coming up as a brand-new replica.
//!
//! `IDENTITY` is written once the directory's stores exist (after a first start, or on
//! the first start of a directory an earlier shardkv wrote): a few lines of text naming
//! the service and the raft id, then a CRC-32 of those lines. While it is there, a start
//! must be the same replica's, and the directory must hold a log segment and every file
//! the caller requires (a group replica's `state.redb`): without its log a replica would
//! forget its votes and the entries it acknowledged, which raft's guarantees rest on;
//! without its data a group replica would serve empty shards. A directory without
//! `IDENTITY` is taken as it is (a new directory, or one written before the file
//! existed), and its identity recorded.

use std::fmt;

use crate::disk::{disk_error, read_all, Disk, DiskFile};
use crate::StoreError;

/// The identity file's name.
pub const IDENTITY_FILE: &str = "IDENTITY";

/// Where the identity file is written before it is renamed into place.
const IDENTITY_TMP: &str = "IDENTITY.tmp";

/// The first line of an identity file: what it is and the format's version (2: log
/// entries carry cluster time).
const HEADER: &str = "shardkv data directory, version 2";

/// The first line of a directory an earlier shardkv wrote, whose log this one cannot read.
const HEADER_V1: &str = "shardkv data directory, version 1";

/// The largest identity file read (a real one is under 100 bytes).
const MAX_IDENTITY_BYTES: u64 = 4096;

/// The replica a data directory belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataDirOwner {
    /// Its service: 0 for the shard master, a group's gid for a group.
    pub service: u64,
    /// Its raft id within the service.
    pub id: u64,
}

impl fmt::Display for DataDirOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.service {
            0 => write!(f, "shard-master replica {}", self.id),
            gid => write!(f, "replica {} of group {gid}", self.id),
        }
    }
}

impl DataDirOwner {
    /// The identity file's text for this owner.
    fn encode(&self) -> String {
        let body = format!("{HEADER}\nservice {}\nreplica {}\n", self.service, self.id);
        format!("{body}crc32 {:08x}\n", crc32fast::hash(body.as_bytes()))
    }

    /// The owner an identity file names, or why it is not a good one.
    fn decode(text: &str) -> Result<Self, String> {
        let (body, crc_line) = match text.trim_end_matches('\n').rsplit_once('\n') {
            Some((body, crc_line)) => (format!("{body}\n"), crc_line),
            None => return Err("it has no checksum line".into()),
        };
        let crc = (crc_line.strip_prefix("crc32 "))
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .ok_or_else(|| format!("its last line is not a checksum: {crc_line:?}"))?;
        if crc != crc32fast::hash(body.as_bytes()) {
            return Err("its checksum does not match its contents".into());
        }
        let mut lines = body.lines();
        match lines.next() {
            Some(HEADER) => {}
            Some(HEADER_V1) => {
                return Err(
                    "an earlier shardkv wrote it (version 1: log entries without \
                            cluster time), and this version cannot read its log; start the \
                            replica over an empty directory"
                        .into(),
                )
            }
            _ => return Err(format!("it does not start with {HEADER:?}")),
        }
        let mut field = |name: &str| {
            (lines.next())
                .and_then(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .ok_or_else(|| format!("it has no {name} line"))
        };
        Ok(DataDirOwner {
            service: field("service")?,
            id: field("replica")?,
        })
    }
}

/// Checks that `disk` may be opened as `owner`'s data directory: if it has an identity
/// file, that file names `owner`, and the directory holds a log segment and every file
/// in `required`. Returns whether the identity is recorded already (if not, record it
/// with [`record_identity`] once the stores are open).
pub fn check_identity<D: Disk>(
    disk: &D,
    owner: DataDirOwner,
    required: &[&str],
) -> Result<bool, StoreError> {
    let names = disk.list().map_err(|error| disk_error(disk, ".", &error))?;
    if !names.iter().any(|name| name == IDENTITY_FILE) {
        return Ok(false);
    }
    let file = disk
        .open(IDENTITY_FILE)
        .map_err(|error| disk_error(disk, IDENTITY_FILE, &error))?;
    let size = file
        .size()
        .map_err(|error| disk_error(disk, IDENTITY_FILE, &error))?;
    let recorded = match size <= MAX_IDENTITY_BYTES {
        true => read_all(&file)
            .map_err(|error| disk_error(disk, IDENTITY_FILE, &error))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .map(|text| DataDirOwner::decode(&text))?,
        false => Err(format!("it is {size} bytes long")),
    };
    let recorded = recorded.map_err(|reason| StoreError::Corrupt {
        what: disk.describe(IDENTITY_FILE),
        reason: format!(
            "{reason}; it says whose data the directory holds, so nothing is started on it"
        ),
    })?;
    if recorded != owner {
        return Err(StoreError::Backend(format!(
            "{} holds the data of {recorded}, not of {owner} (this node's role, --gid \
             and --id): give each replica its own data directory",
            disk.describe(".")
        )));
    }
    let mut missing: Vec<String> = required
        .iter()
        .filter(|file| !names.iter().any(|name| name == *file))
        .map(|file| file.to_string())
        .collect();
    if !names.iter().any(|name| crate::wal::is_segment(name)) {
        missing.insert(0, "its write-ahead log (wal-*.log)".into());
    }
    if !missing.is_empty() {
        return Err(StoreError::Backend(format!(
            "{} holds {owner}'s data but has lost {}: started without it, the replica \
             would forget the votes and log entries it acknowledged (or the keys it \
             holds). Restore the files, or empty the directory to rebuild the replica \
             from its group (docs/storage.md, \"A data directory's identity\")",
            disk.describe("."),
            missing.join(" and ")
        )));
    }
    Ok(true)
}

/// Records `owner` as the owner of `disk`'s data: the identity file is written aside,
/// synced, renamed into place and the directory synced.
pub fn record_identity<D: Disk>(disk: &D, owner: DataDirOwner) -> Result<(), StoreError> {
    let fail = |name: &str, error: std::io::Error| disk_error(disk, name, &error);
    let file = disk
        .create(IDENTITY_TMP)
        .map_err(|error| fail(IDENTITY_TMP, error))?;
    file.write_at(0, owner.encode().as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(|error| fail(IDENTITY_TMP, error))?;
    drop(file);
    disk.rename(IDENTITY_TMP, IDENTITY_FILE)
        .and_then(|()| disk.sync_dir())
        .map_err(|error| fail(IDENTITY_FILE, error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OsDisk;

    const OWNER: DataDirOwner = DataDirOwner {
        service: 100,
        id: 2,
    };

    fn touch(dir: &std::path::Path, name: &str) {
        std::fs::write(dir.join(name), b"").expect("write");
    }

    /// A new directory is taken and its identity recorded; then only its owner may open
    /// it, and only while it holds its log and the files it must.
    #[test]
    fn only_the_owner_opens_a_whole_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = OsDisk::open(dir.path()).expect("open");
        assert!(!check_identity(&disk, OWNER, &["state.redb"]).expect("new"));
        touch(dir.path(), "wal-00000000000000000001.log");
        touch(dir.path(), "state.redb");
        record_identity(&disk, OWNER).expect("record");
        assert!(check_identity(&disk, OWNER, &["state.redb"]).expect("recorded"));

        for other in [
            DataDirOwner {
                service: 100,
                id: 1,
            },
            DataDirOwner {
                service: 101,
                id: 2,
            },
            DataDirOwner { service: 0, id: 2 },
        ] {
            let refused = check_identity(&disk, other, &[]).expect_err("foreign");
            assert!(
                refused
                    .to_string()
                    .contains("replica 2 of group 100, not of"),
                "{refused}"
            );
        }

        std::fs::remove_file(dir.path().join("state.redb")).expect("remove");
        let refused = check_identity(&disk, OWNER, &["state.redb"]).expect_err("no data");
        assert!(
            refused.to_string().contains("has lost state.redb"),
            "{refused}"
        );
        touch(dir.path(), "state.redb");
        std::fs::remove_file(dir.path().join("wal-00000000000000000001.log")).expect("remove");
        let refused = check_identity(&disk, OWNER, &["state.redb"]).expect_err("no log");
        assert!(refused.to_string().contains("write-ahead log"), "{refused}");
    }

    /// A damaged identity file is refused, naming it.
    #[test]
    fn a_damaged_identity_is_refused() {
        let text = OWNER.encode();
        assert_eq!(DataDirOwner::decode(&text), Ok(OWNER));
        let flipped = text.replace("replica 2", "replica 3");
        let damaged = [
            flipped.as_str(),
            &text[..text.len() - 4],
            "",
            "x\ncrc32 zz\n",
        ];
        for bad in damaged {
            assert!(DataDirOwner::decode(bad).is_err(), "{bad:?} decoded");
        }
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(IDENTITY_FILE), flipped).expect("write");
        let disk = OsDisk::open(dir.path()).expect("open");
        let refused = check_identity(&disk, OWNER, &[]).expect_err("damaged");
        assert!(refused.to_string().contains("IDENTITY"), "{refused}");
    }
}
