//! Output: the machine note, one result line per run as it finishes, and the final markdown
//! table with medians, min–max spreads and the aims (measured, never asserted).

use super::broker::LogSummary;
use super::scenarios::{ConnResult, LatencyResult, ThroughputResult};
use super::stats::{Spread, count, mb, ms};
use crate::Opts;

/// A latency table row: measure name, the figure of one run, aim.
type LatencyRow<'a> = (&'a str, &'a dyn Fn(&LatencyResult) -> f64, &'a str);

/// Everything measured so far.
#[derive(Debug, Default)]
pub struct Report {
    conns: Vec<ConnResult>,
    latency: Vec<LatencyResult>,
    dm: Vec<ThroughputResult>,
    broadcast: Vec<ThroughputResult>,
    failures: Vec<String>,
    notes: Vec<String>,
}

pub fn print_machine(o: &Opts) {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1).map(|m| m.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!("machine: {cpus} CPUs ({model}); the bench clients and the broker share them (not isolated)");
    println!("broker:  {} (data under {})", o.broker.display(), o.data_root.display());
    println!(
        "runs: {} x ({} s warm-up + {} s measured); body {} B; fresh broker per run; loopback 127.0.0.1\n",
        o.runs, o.warmup, o.secs, o.body
    );
}

fn log_note(log: &LogSummary) -> String {
    if log.warnings + log.errors == 0 {
        return String::new();
    }
    format!(
        "; broker log: {} warn, {} error ({} fell-behind drops), first: {}",
        log.warnings,
        log.errors,
        log.fell_behind,
        log.first.as_deref().unwrap_or("")
    )
}

impl Report {
    fn fail(&mut self, what: String, e: &anyhow::Error) {
        println!("{what}: FAILED: {e:#}");
        self.failures.push(format!("{what}: {e:#}"));
    }

    pub fn connections(&mut self, n: usize, r: anyhow::Result<ConnResult>) {
        let r = match r {
            Ok(r) => r,
            Err(e) => return self.fail(format!("connections n={n}"), &e),
        };
        let per = (r.settled.now_kb.saturating_sub(r.before.now_kb)) as f64 * 1024.0 / n as f64;
        println!(
            "connections n={}: enroll {:.1} s, connect {:.2} s ({:.0}/s); RSS idle {} -> connected {} -> settled {} (peak {}), {:.1} KB/conn; presence to clients {:.1} MB over {:.1} s settle; dropped {}{}",
            n,
            r.enroll.as_secs_f64(),
            r.connect.as_secs_f64(),
            n as f64 / r.connect.as_secs_f64(),
            mb(r.before.now_kb as f64),
            mb(r.connected.now_kb as f64),
            mb(r.settled.now_kb as f64),
            mb(r.settled.peak_kb as f64),
            per / 1024.0,
            r.presence_bytes as f64 / 1e6,
            r.settle.as_secs_f64(),
            r.dropped,
            log_note(&r.log)
        );
        if r.dropped > 0 {
            self.notes.push(format!("connections n={n}: the broker closed {} held connections", r.dropped));
        }
        self.conns.push(r);
    }

    pub fn latency(&mut self, i: usize, r: anyhow::Result<LatencyResult>) {
        let r = match r {
            Ok(r) => r,
            Err(e) => return self.fail(format!("latency run {}", i + 1), &e),
        };
        println!(
            "latency run {}: {:.0} msg/s, sent {} delivered {} errors {}; one-way p50 {} p90 {} p99 {} max {} (n={}); send->ack p50 {} p99 {}; store {:.0} commits/s, mean {:.2} ms{}",
            i + 1,
            r.achieved_rate,
            r.sent,
            r.delivered,
            r.errors,
            ms(r.one_way.p50 as f64),
            ms(r.one_way.p90 as f64),
            ms(r.one_way.p99 as f64),
            ms(r.one_way.max as f64),
            r.one_way.n,
            ms(r.round_trip.p50 as f64),
            ms(r.round_trip.p99 as f64),
            r.commits_per_s,
            r.mean_commit_ms,
            log_note(&r.log)
        );
        self.latency.push(r);
    }

    fn throughput(what: &str, i: usize, r: &ThroughputResult) {
        let failed = match (&r.first_failure, r.failed_tasks) {
            (Some(why), n) => format!("; {n} tasks ended early, first: {why}"),
            _ => String::new(),
        };
        let errors = match &r.first_error {
            Some(e) => format!("; first error: {e}"),
            None => String::new(),
        };
        println!(
            "{what} run {}: delivered {}/s, acked sends {}/s, errors {}; store {:.0} commits/s, mean {:.2} ms; broker RSS under load {}{}{}{}",
            i + 1,
            count(r.delivered_per_s),
            count(r.acked_per_s),
            r.errors,
            r.commits_per_s,
            r.mean_commit_ms,
            mb(r.rss_under_load.now_kb as f64),
            errors,
            failed,
            log_note(&r.log)
        );
    }

    pub fn dm(&mut self, i: usize, r: anyhow::Result<ThroughputResult>) {
        match r {
            Ok(r) => {
                Self::throughput("dm-throughput", i, &r);
                self.dm.push(r);
            }
            Err(e) => self.fail(format!("dm-throughput run {}", i + 1), &e),
        }
    }

    pub fn broadcast(&mut self, i: usize, r: anyhow::Result<ThroughputResult>) {
        match r {
            Ok(r) => {
                Self::throughput("broadcast", i, &r);
                self.broadcast.push(r);
            }
            Err(e) => self.fail(format!("broadcast run {}", i + 1), &e),
        }
    }

    pub fn print_table(&self, o: &Opts) {
        let mut rows: Vec<[String; 4]> = Vec::new();
        let mut row =
            |a: String, b: &str, c: String, d: &str| rows.push([a, b.to_string(), c, d.to_string()]);
        for r in &self.conns {
            let per = r.settled.now_kb.saturating_sub(r.before.now_kb) as f64 / r.n as f64;
            let aim = if r.n >= 10_000 { "≤ 200 MB at 10,000" } else { "" };
            let what = format!("{} connections", count(r.n as f64));
            row(
                what.clone(),
                "time to connect + hello, all",
                format!("{:.2} s", r.connect.as_secs_f64()),
                "",
            );
            row(
                what.clone(),
                "broker RSS: enrolled idle → all connected → settled",
                format!(
                    "{} → {} → {}",
                    mb(r.before.now_kb as f64),
                    mb(r.connected.now_kb as f64),
                    mb(r.settled.now_kb as f64)
                ),
                aim,
            );
            row(what.clone(), "broker RSS per connection", format!("{per:.1} KB"), "");
            row(
                what,
                "presence bytes pushed to the idle clients",
                format!("{:.1} MB", r.presence_bytes as f64 / 1e6),
                "",
            );
        }
        let lat = |f: &dyn Fn(&LatencyResult) -> f64| {
            Spread::of(&self.latency.iter().map(f).collect::<Vec<_>>()).map(|s| s.show(ms))
        };
        let what = format!("DM latency at {} msg/s", count(f64::from(o.rate)));
        let lat_rows: [LatencyRow<'_>; 6] = [
            ("one-way p50", &|r| r.one_way.p50 as f64, "≤ 1 ms"),
            ("one-way p90", &|r| r.one_way.p90 as f64, ""),
            ("one-way p99", &|r| r.one_way.p99 as f64, "≤ 5 ms"),
            ("one-way max", &|r| r.one_way.max as f64, ""),
            ("send → ack p50", &|r| r.round_trip.p50 as f64, ""),
            ("send → ack p99", &|r| r.round_trip.p99 as f64, ""),
        ];
        for (name, f, aim) in lat_rows {
            if let Some(v) = lat(f) {
                row(what.clone(), name, v, aim);
            }
        }
        let tp = |v: &[ThroughputResult], f: &dyn Fn(&ThroughputResult) -> f64| {
            Spread::of(&v.iter().map(f).collect::<Vec<_>>()).map(|s| s.show(count))
        };
        let what = format!("DM throughput, {} pairs, {} B", o.pairs, o.body);
        if let Some(v) = tp(&self.dm, &|r| r.delivered_per_s) {
            row(what.clone(), "delivered DMs/s", v, "≥ 50,000");
        }
        if let Some(v) = tp(&self.dm, &|r| r.acked_per_s) {
            row(what, "acked (durable) sends/s", v, "");
        }
        let what = format!("broadcast, 1 → {} receivers, {} B", o.receivers, o.body);
        if let Some(v) = tp(&self.broadcast, &|r| r.delivered_per_s) {
            row(what.clone(), "deliveries/s", v, "≥ 200,000");
        }
        if let Some(v) = tp(&self.broadcast, &|r| r.acked_per_s) {
            row(what, "acked broadcasts/s", v, "");
        }
        println!("\n| scenario | measure | result: median (min–max) over {} runs | aim |", o.runs);
        println!("|---|---|---|---|");
        for [a, b, c, d] in rows {
            println!("| {a} | {b} | {c} | {d} |");
        }
        println!(
            "\nBench clients and broker ran on the same {} CPUs; figures are for both together.",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
        );
        for n in &self.notes {
            println!("note: {n}");
        }
        for f in &self.failures {
            println!("FAILED: {f}");
        }
    }
}
