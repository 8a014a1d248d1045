//! How fast an embedded engine takes a replica group's write pattern, with shardkv left
//! out: `--parallel` databases (a group's replicas share the machine), each loaded with
//! `--keys` keys (4-byte shard prefix, 8 hashed bytes) of `--value-bytes` random bytes,
//! then overwritten at random keys for `--seconds`, `--batch` writes per transaction
//! (sorted by key for redb, as the group flushes them), every transaction made durable
//! (redb: a durable commit; fjall: the batch, then the journal synced). Reports each
//! database's writes per second, the bytes the process wrote to disk per write
//! (`/proc/self/io`), and its peak resident memory.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Barrier, OnceLock};
use std::time::Instant;

use clap::{Parser, ValueEnum};
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Engine {
    /// redb 5: a copy-on-write B-tree of 4 KiB pages (what shardkv runs).
    Redb,
    /// fjall 3: an LSM tree, values in its blocks.
    Fjall,
    /// fjall 3 with key-value separation: values in blob files, keys in the tree.
    FjallKv,
}

#[derive(Parser, Debug)]
struct Args {
    #[arg(value_enum)]
    engine: Engine,
    /// A directory to create the databases in (emptied first).
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    #[arg(long, default_value_t = 1024)]
    value_bytes: usize,
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Writes per durable transaction.
    #[arg(long, default_value_t = 32_768, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Databases written at once, a thread each.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    parallel: u32,
    /// Each database's page or block cache, MiB.
    #[arg(long, default_value_t = 64)]
    cache_mb: u64,
    /// Overwrites per second per database at most (0: as fast as it goes).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// fjall: the most its memtables hold before it flushes them, MiB (its default: none).
    #[arg(long)]
    write_buffer_mb: Option<u64>,
    /// fjall: the largest one memtable grows, MiB (its default: 64).
    #[arg(long)]
    memtable_mb: Option<u64>,
    /// fjall: the most journal it keeps before it flushes memtables, MiB (its default: 512).
    #[arg(long)]
    journal_mb: Option<u64>,
}

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

fn key(i: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&((i % 10) as u32).to_be_bytes());
    k[4..].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k
}

/// One database under test.
trait Db {
    /// Writes `pairs` as one durable transaction.
    fn write(&mut self, pairs: &mut [([u8; 12], Vec<u8>)]) -> Result<()>;
}

struct Redb(redb::Database);
const KV: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("kv");

impl Db for Redb {
    fn write(&mut self, pairs: &mut [([u8; 12], Vec<u8>)]) -> Result<()> {
        pairs.sort_unstable_by_key(|pair| pair.0);
        let txn = self.0.begin_write()?;
        {
            let mut table = txn.open_table(KV)?;
            for (k, v) in pairs.iter() {
                table.insert(k.as_slice(), v.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

struct Fjall(fjall::Database, fjall::Keyspace);

impl Db for Fjall {
    fn write(&mut self, pairs: &mut [([u8; 12], Vec<u8>)]) -> Result<()> {
        let mut batch = self.0.batch().durability(None);
        for (k, v) in pairs.iter() {
            batch.insert(&self.1, k.to_vec(), v.clone());
        }
        batch.commit()?;
        self.0.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }
}

fn open(args: &Args, dir: &Path) -> Result<Box<dyn Db>> {
    let (engine, cache_mb) = (args.engine, args.cache_mb);
    std::fs::create_dir_all(dir)?;
    Ok(match engine {
        Engine::Redb => Box::new(Redb(
            redb::Database::builder()
                .set_cache_size((cache_mb << 20) as usize)
                .create(dir.join("data.redb"))?,
        )),
        Engine::Fjall | Engine::FjallKv => {
            let mut builder = fjall::Database::builder(dir)
                .cache_size(cache_mb << 20)
                .manual_journal_persist(true)
                .max_write_buffer_size(args.write_buffer_mb.map(|mb| mb << 20));
            if let Some(mb) = args.journal_mb {
                builder = builder.max_journaling_size(mb << 20);
            }
            let db = builder.open()?;
            let separate = matches!(engine, Engine::FjallKv);
            let keyspace = db.keyspace("kv", || {
                let mut options =
                    fjall::KeyspaceCreateOptions::default().manual_journal_persist(true);
                if let Some(mb) = args.memtable_mb {
                    options = options.max_memtable_size(mb << 20);
                }
                match separate {
                    true => options.with_kv_separation(Some(fjall::KvSeparationOptions::default())),
                    false => options,
                }
            })?;
            Box::new(Fjall(db, keyspace))
        }
    })
}

/// Loads then overwrites one database; its overwrites per second. The overwrites of all
/// databases start together, and the bytes written so far are noted then.
fn run(args: &Args, n: u32, loaded: &Barrier, before: &OnceLock<u64>) -> Result<f64> {
    let mut db = open(args, &args.dir.join(format!("db-{n}")))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let mut value = || {
        let mut v = vec![0u8; args.value_bytes];
        rng.fill(&mut v[..]);
        v
    };
    let mut order: Vec<u64> = (0..args.keys).collect();
    order.sort_unstable_by_key(|&i| key(i));
    for chunk in order.chunks(65_536) {
        let mut pairs: Vec<_> = chunk.iter().map(|&i| (key(i), value())).collect();
        db.write(&mut pairs)?;
    }
    if loaded.wait().is_leader() {
        let _ = before.set(proc_field("/proc/self/io", "write_bytes:")?);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(1_000 + n as u64);
    let started = Instant::now();
    let mut written = 0u64;
    while started.elapsed().as_secs_f64() < args.seconds {
        let mut pairs: Vec<_> = (0..args.batch)
            .map(|_| {
                let mut v = vec![0u8; args.value_bytes];
                rng.fill(&mut v[..]);
                (key(rng.gen_range(0..args.keys)), v)
            })
            .collect();
        db.write(&mut pairs)?;
        written += u64::from(args.batch);
        if args.rate > 0 {
            let due = std::time::Duration::from_secs_f64(written as f64 / args.rate as f64);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
    Ok(written as f64 / started.elapsed().as_secs_f64())
}

fn proc_field(file: &str, field: &str) -> Result<u64> {
    let text = std::fs::read_to_string(file)?;
    let line = (text.lines().find(|line| line.starts_with(field)))
        .ok_or_else(|| format!("no {field} in {file}"))?;
    let number = line[field.len()..].trim().trim_end_matches("kB").trim();
    Ok(number.parse()?)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    let loaded = Barrier::new(args.parallel as usize);
    let before = OnceLock::new();
    let rates = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..args.parallel)
            .map(|n| {
                let (args, loaded, before) = (&args, &loaded, &before);
                scope.spawn(move || run(args, n, loaded, before))
            })
            .collect();
        runs.into_iter()
            .map(|run| run.join().map_err(|_| "a writer panicked")?)
            .collect::<Result<Vec<f64>>>()
    })?;
    let before = before.get().copied().ok_or("no database was loaded")?;
    let written = proc_field("/proc/self/io", "write_bytes:")? - before;
    let writes: f64 = rates.iter().sum::<f64>() * args.seconds;
    println!(
        "{:?} keys={} value={} B batch={} parallel={}: {} writes/s each (total {:.0}); \
         {:.1} KB written per overwrite; peak RSS {} MiB",
        args.engine,
        args.keys,
        args.value_bytes,
        args.batch,
        args.parallel,
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" / "),
        rates.iter().sum::<f64>(),
        written as f64 / writes / 1000.0,
        proc_field("/proc/self/status", "VmHWM:")? / 1024,
    );
    Ok(())
}
