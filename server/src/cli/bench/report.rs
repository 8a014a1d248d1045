//! What a bench run measured and how it is reported (text or one line of JSON).

use std::time::Duration;

use hdrhistogram::Histogram;

use super::breakdown::Breakdown;
use super::processes::Usage;
use super::recovery::Recovery;
use super::BenchArgs;

/// What one thread of clients measured.
pub(super) struct Measured {
    pub(super) latencies: Histogram<u64>,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
}

impl Measured {
    pub(super) fn new() -> Result<Self, String> {
        let latencies = Histogram::new_with_bounds(1, 60_000_000, 3)
            .map_err(|error| format!("histogram: {error}"))?;
        Ok(Measured {
            latencies,
            errors: 0,
            first_error: None,
        })
    }

    pub(super) fn merge(&mut self, other: Measured) -> Result<(), String> {
        self.latencies
            .add(other.latencies)
            .map_err(|error| format!("histogram: {error}"))?;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        Ok(())
    }

    pub(super) fn error(&mut self, error: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Report {
    op: &'static str,
    cluster: String,
    clients: u32,
    threads: u16,
    handle: &'static str,
    conns: u32,
    key_size: u32,
    value_size: u32,
    keys: u64,
    seconds: f64,
    operations: u64,
    ops_per_sec: f64,
    errors: u64,
    pub(super) first_error: Option<String>,
    latency_ms: Latency,
    /// How long writing every key once took, before the measured run.
    pub(super) load_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) timeline: Option<Breakdown>,
    /// With `--processes`: each replica's memory and disk after the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) replicas: Option<Vec<Usage>>,
    /// With `--recovery`: the restart and the catch-up after the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) recovery: Option<Recovery>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, serde::Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Report {
    pub(super) fn new(
        args: &BenchArgs,
        cluster: &str,
        conns: u32,
        measured: Measured,
        elapsed: Duration,
    ) -> Self {
        let h = &measured.latencies;
        let ms = |micros: u64| micros as f64 / 1000.0;
        // Only operations that finished within the window count (see `run_client`).
        let seconds = elapsed.min(args.duration).as_secs_f64();
        Report {
            op: args.op.name(),
            cluster: cluster.to_string(),
            clients: args.clients,
            threads: args.threads,
            handle: args.handle.name(),
            conns,
            key_size: args.key_size,
            value_size: args.value_size,
            keys: args.keys,
            seconds,
            operations: h.len(),
            ops_per_sec: h.len() as f64 / seconds.max(1e-9),
            errors: measured.errors,
            first_error: measured.first_error,
            latency_ms: Latency {
                p50: ms(h.value_at_quantile(0.50)),
                p90: ms(h.value_at_quantile(0.90)),
                p99: ms(h.value_at_quantile(0.99)),
                max: ms(h.max()),
            },
            load_seconds: 0.0,
            timeline: None,
            replicas: None,
            recovery: None,
        }
    }

    pub(super) fn print(&self, json: bool) {
        if json {
            match serde_json::to_value(self) {
                Ok(value) => crate::cli::print_json(&value),
                Err(error) => eprintln!("error: cannot encode the report: {error}"),
            }
            return;
        }
        println!(
            "{} x {} clients ({} handle) over {} connection(s), {} B keys, {} B values, {} keys ({})",
            self.op,
            self.clients,
            self.handle,
            self.conns,
            self.key_size,
            self.value_size,
            self.keys,
            self.cluster
        );
        println!(
            "  {:>10} ops in {:.1} s   {:>10.0} ops/s   {} errors",
            self.operations, self.seconds, self.ops_per_sec, self.errors
        );
        let l = &self.latency_ms;
        println!(
            "  latency ms   p50 {:.3}   p90 {:.3}   p99 {:.3}   max {:.3}",
            l.p50, l.p90, l.p99, l.max
        );
        println!(
            "  loaded in {:.1} s ({:.0} keys/s)",
            self.load_seconds,
            self.keys as f64 / self.load_seconds.max(1e-9)
        );
        if let Some(error) = &self.first_error {
            println!("  first error: {error}");
        }
        for usage in self.replicas.iter().flatten() {
            println!(
                "  {:<14} peak rss {:>8.1} MiB   rss {:>8.1} MiB   disk {:>8.1} MiB",
                usage.name, usage.peak_rss_mib, usage.rss_mib, usage.disk_mib
            );
        }
        if let Some(r) = &self.recovery {
            println!(
                "  group {} killed whole: serving again in {:.2} s, {} keys read back",
                r.gid, r.restart_seconds, r.restart_keys_checked
            );
            println!(
                "  {} emptied: in the quorum again in {:.2} s ({})   peak rss {:.1} MiB   disk {:.1} MiB",
                r.catch_up_replica,
                r.catch_up_seconds,
                match r.catch_up_from_copy {
                    true => "copied the state",
                    false => "replayed the log",
                },
                r.catch_up_peak_rss_mib,
                r.catch_up_disk_mib
            );
        }
        if let Some(timeline) = &self.timeline {
            timeline.print();
        }
    }
}
