//! 6.824's challenges. Challenge 1: a group deletes the shards it gave away, so the
//! persisted state of the whole deployment stays near one copy of the data per replica
//! (`challenge1_delete`, and under concurrent appends and restarts,
//! `challenge1_concurrent`). Challenge 2: a group keeps serving the shards a
//! configuration change does not touch (`challenge2_unaffected`), and serves the shards
//! it could pull while another is stuck (`challenge2_partial`).

use std::time::Duration;

use super::cluster::{KvCluster, GIDS, GROUP_SIZE};
use super::concurrent::churn1;
use super::lab::KvLab;
use super::statics::SETTLE_TIMEOUT;
use super::workload::{appends_during, check_all, key_per_shard, keys, put_all};
use crate::scenario::Outcome;

/// How long a challenge 2 clerk may take for an operation on a shard that can be
/// served: ample for a group that serves it, while an operation that waits for the dead
/// group never finishes (it stays down until the scenario ends). On the unreliable
/// network a dropped reply costs the clerk its whole 1 s call timeout, and an operation
/// makes several calls (finding the master's leader, the query, finding the group's
/// leader), so a run of unlucky drops can cost ten seconds: a 10 s deadline fails
/// about one run in 14,000 with no server at fault.
const UNAFFECTED_DEADLINE: Duration = Duration::from_secs(30);

/// Bytes every running group replica persists (Raft state plus snapshot, as each counts
/// it: [`KvLab::persisted_bytes`]), summed (6.824's `RaftStateSize() +
/// len(ReadSnapshot())` loop).
pub fn persisted_bytes<L: KvLab>(c: &KvCluster<L>) -> usize {
    (GIDS.iter())
        .flat_map(|&gid| (0..GROUP_SIZE).map(move |me| (gid, me)))
        .filter_map(|(gid, me)| {
            let persister = c.persister(gid, me);
            c.with_lab(gid, me, |lab| lab.persisted_bytes(&persister))
        })
        .sum()
}

/// Fails unless `c` persists at most `bound` bytes.
fn check_persisted<L: KvLab>(c: &KvCluster<L>, bound: usize, what: &str) -> Result<(), String> {
    let total = persisted_bytes(c);
    if total > bound {
        return Err(format!(
            "groups persist {total} bytes, more than {bound} ({what})"
        ));
    }
    Ok(())
}

/// Snapshot after every entry; 30 keys of 1000 bytes move back and forth between the
/// groups twice, then spread over all three: the groups then persist at most 6.824's
/// bound, `3 * (27 * 1000 + 2 * 3 * 1000 + 6000)` bytes.
pub fn challenge1_delete<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, Some(1));
    c.run("challenge1_delete", async {
        let mut ck = c.clerk();
        c.join(&GIDS[..1]).await?;
        let (ka, n) = (keys(30), 30);
        let va = put_all(&c, &mut ck, &ka, 1000).await?;
        check_all(&mut ck, &ka[..3], &va[..3]).await?;
        for _ in 0..2 {
            c.join(&GIDS[1..2]).await?;
            c.leave(&GIDS[..1]).await?;
            c.join(&GIDS[2..]).await?;
            c.sleep_ms(3000).await;
            check_all(&mut ck, &ka[..3], &va[..3]).await?;
            c.leave(&GIDS[1..2]).await?;
            c.join(&GIDS[..1]).await?;
            c.leave(&GIDS[2..]).await?;
            c.sleep_ms(3000).await;
            check_all(&mut ck, &ka[..3], &va[..3]).await?;
        }
        c.join(&GIDS[1..]).await?;
        c.settle(SETTLE_TIMEOUT).await?;
        check_all(&mut ck, &ka[..3], &va[..3]).await?;
        c.sleep_ms(1000).await;
        let expected = 3 * ((n - 3) * 1000 + 2 * 3 * 1000 + 6000);
        check_persisted(&c, expected, "after shards left every group at least once")?;
        check_all(&mut ck, &ka, &va).await
    })
}

/// Snapshots past 100 bytes; 1000-byte values under concurrent appends while groups
/// join, leave and restart (`concurrent1`'s flow). Once settled, the groups persist at
/// most one copy of the data per replica plus 2 KiB of bookkeeping per replica.
pub fn challenge1_concurrent<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, false, Some(100));
    c.run("challenge1_concurrent", async {
        let during = async {
            churn1(&c).await?;
            c.sleep_ms(1000).await;
            Ok(())
        };
        let (ka, va) = appends_during(&c, &GIDS[..1], 1000, 10, during).await?;
        c.settle(SETTLE_TIMEOUT).await?;
        c.sleep_ms(1000).await;
        let data: usize = ka.iter().zip(&va).map(|(k, v)| k.len() + v.len()).sum();
        let bound = GROUP_SIZE * data + GIDS.len() * GROUP_SIZE * 2048;
        check_persisted(&c, bound, &format!("{data} bytes of keys and values"))
    })
}

/// Unreliable network. 101 joins and takes some shards, whose keys get new values; 100
/// is shut down and leaves, so 101 cannot pull 100's shards; 101 still serves the shards
/// it already had, within 30 s per operation.
pub fn challenge2_unaffected<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, true, Some(100));
    c.run("challenge2_unaffected", async {
        let mut ck = c.clerk();
        c.join(&GIDS[..1]).await?;
        let ka = key_per_shard();
        let mut va = vec!["100".to_string(); ka.len()];
        check_puts(&mut ck, &ka, &va).await?;
        c.join(&GIDS[1..2]).await?;
        let owned = c.settle(SETTLE_TIMEOUT).await?.shards_of(GIDS[1]);
        for &shard in &owned {
            va[shard] = "101".to_string();
            ck.put(&ka[shard], &va[shard]).await?;
        }
        c.shutdown_group(GIDS[0]);
        c.leave(&GIDS[..1]).await?;
        c.sleep_ms(1000).await;
        let mut ck1 = c.clerk_with_deadline(Some(UNAFFECTED_DEADLINE));
        for &shard in &owned {
            ck1.check(&ka[shard], &va[shard]).await?;
            ck1.put(&ka[shard], &format!("{}-1", va[shard])).await?;
            ck1.check(&ka[shard], &format!("{}-1", va[shard])).await?;
        }
        c.start_group(GIDS[0]);
        Ok(())
    })
}

/// Unreliable network. All three groups join; 100 is shut down, then 100 and 102 leave
/// together: 101 can pull 102's shards but not 100's, and serves 102's old shards within
/// 30 s per operation while 100's stay stuck.
pub fn challenge2_partial<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, true, Some(100));
    c.run("challenge2_partial", async {
        let mut ck = c.clerk();
        c.join(&GIDS).await?;
        let owned = c.settle(SETTLE_TIMEOUT).await?.shards_of(GIDS[2]);
        let ka = key_per_shard();
        let va = vec!["100".to_string(); ka.len()];
        check_puts(&mut ck, &ka, &va).await?;
        c.shutdown_group(GIDS[0]);
        c.leave(&[GIDS[0], GIDS[2]]).await?;
        c.sleep_ms(1000).await;
        let mut ck1 = c.clerk_with_deadline(Some(UNAFFECTED_DEADLINE));
        for &shard in &owned {
            ck1.check(&ka[shard], &va[shard]).await?;
            ck1.put(&ka[shard], &format!("{}-2", va[shard])).await?;
            ck1.check(&ka[shard], &format!("{}-2", va[shard])).await?;
        }
        c.start_group(GIDS[0]);
        Ok(())
    })
}

async fn check_puts(
    ck: &mut super::KvClerk,
    keys: &[String],
    values: &[String],
) -> Result<(), String> {
    for (key, value) in keys.iter().zip(values) {
        ck.put(key, value).await?;
    }
    check_all(ck, keys, values).await
}
