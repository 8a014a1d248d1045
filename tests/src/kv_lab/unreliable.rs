//! 6.824 `TestUnreliable1/2/3`: the flows of the earlier tests over a network that
//! drops 10% of messages and replies and delays the rest, so clients and groups retry
//! and exactly-once matters; the third with random operations judged only by the
//! linearizability checker.

use super::cluster::{KvCluster, GIDS};
use super::concurrent::hand_over;
use super::lab::KvLab;
use super::workload::{appends_during, check_all, check_and_append, keys, put_all, RandomClients};
use crate::scenario::Outcome;

/// Join 101 and 102 and leave 100, checking and appending every key twice; join 100
/// and leave 101, checking every key twice more.
pub fn unreliable1<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, true, Some(100));
    c.run("unreliable1", async {
        let mut ck = c.clerk();
        c.join(&GIDS[..1]).await?;
        let ka = keys(10);
        let mut va = put_all(&c, &mut ck, &ka, 5).await?;
        c.join(&GIDS[1..2]).await?;
        c.join(&GIDS[2..]).await?;
        c.leave(&GIDS[..1]).await?;
        for round in 0..2 {
            check_and_append(&mut ck, &ka, &mut va, round).await?;
        }
        c.join(&GIDS[..1]).await?;
        c.leave(&GIDS[1..2]).await?;
        for _ in 0..2 {
            check_all(&mut ck, &ka, &va).await?;
        }
        Ok(())
    })
}

/// The configuration changes of `unreliable2` and `unreliable3`, 500 ms apart.
async fn churn<L: KvLab>(c: &KvCluster<L>) -> Result<(), String> {
    hand_over(c).await?;
    c.sleep_ms(500).await;
    c.leave(&GIDS[1..2]).await?;
    c.sleep_ms(500).await;
    c.join(&GIDS[1..2]).await?;
    c.join(&GIDS[..1]).await?;
    c.sleep_ms(2000).await;
    Ok(())
}

/// One appender per key while groups join and leave.
pub fn unreliable2<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, true, Some(100));
    c.run("unreliable2", async {
        let during = async {
            churn(&c).await?;
            c.sim.set_reliable(true);
            Ok(())
        };
        appends_during(&c, &GIDS[..1], 5, 10, during)
            .await
            .map(|_| ())
    })
}

/// Ten clients issue random gets, puts, appends and deletes while groups join and
/// leave; the history must be linearizable.
pub fn unreliable3<L: KvLab>(seed: u64) -> Outcome {
    let c = KvCluster::<L>::new(seed, true, Some(100));
    c.run("unreliable3", async {
        let mut ck = c.clerk();
        c.join(&GIDS[..1]).await?;
        let ka = keys(10);
        put_all(&c, &mut ck, &ka, 5).await?;
        let clients = RandomClients::start(&c, 10, &ka);
        churn(&c).await?;
        c.sim.set_reliable(true);
        clients.stop().await
    })
}
