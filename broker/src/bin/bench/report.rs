//! Output: the machine note, one result line per run as it finishes, and the final markdown
//! table with, per server, medians and min–max spreads, the broker's ratio to each floor
//! (per interleaved run, then median and spread) and the aims (measured, never asserted).

use std::collections::BTreeMap;

use super::broker::Server;
use super::child::LogSummary;
use super::scenarios::{ConnResult, LatencyResult, ThroughputResult};
use super::stats::{Spread, count, mb, ms};
use crate::Opts;

/// What one server gave, run by run.
#[derive(Debug, Default)]
pub struct Part {
    pub conns: Vec<ConnResult>,
    pub latency: Vec<LatencyResult>,
    pub dm: Vec<ThroughputResult>,
    pub broadcast: Vec<ThroughputResult>,
}

/// Everything measured so far.
#[derive(Debug, Default)]
pub struct Report {
    pub parts: BTreeMap<Server, Part>,
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

    pub fn connections(&mut self, server: Server, n: usize, r: anyhow::Result<ConnResult>) {
        let r = match r {
            Ok(r) => r,
            Err(e) => return self.fail(format!("{}: connections n={n}", server.name()), &e),
        };
        let per = (r.settled.now_kb.saturating_sub(r.before.now_kb)) as f64 * 1024.0 / n as f64;
        println!(
            "{}: connections n={}: enroll {:.1} s, connect {:.2} s ({:.0}/s; each p50 {} p99 {}); RSS idle {} -> connected {} -> settled {} (peak {}), {:.1} KB/conn; presence to clients {:.1} MB over {:.1} s settle; dropped {}{}",
            server.name(),
            n,
            r.enroll.as_secs_f64(),
            r.connect.as_secs_f64(),
            n as f64 / r.connect.as_secs_f64(),
            ms(r.connect_each.p50 as f64),
            ms(r.connect_each.p99 as f64),
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
        if let Some(l) = &r.lists {
            let per = (l.rss.now_kb.saturating_sub(r.settled.now_kb)) as f64 * 1024.0 / n as f64;
            println!(
                "{}: connections n={}: after list_members ({} answers, {:.1} KB each): RSS {} (+{:.1} KB/conn over settled), peak {}",
                server.name(),
                n,
                l.answered,
                l.bytes as f64 / l.answered.max(1) as f64 / 1024.0,
                mb(l.rss.now_kb as f64),
                per / 1024.0,
                mb(l.rss.peak_kb as f64),
            );
        }
        if r.dropped > 0 {
            self.notes.push(format!(
                "{}: connections n={n}: the server closed {} held connections",
                server.name(),
                r.dropped
            ));
        }
        self.parts.entry(server).or_default().conns.push(r);
    }

    pub fn latency(&mut self, server: Server, i: usize, r: anyhow::Result<LatencyResult>) {
        let r = match r {
            Ok(r) => r,
            Err(e) => return self.fail(format!("{}: latency run {}", server.name(), i + 1), &e),
        };
        println!(
            "{}: latency run {}: {:.0} msg/s, sent {} delivered {} errors {}; one-way p50 {} p90 {} p99 {} max {} (n={}); send->ack p50 {} p99 {}; store {:.0} commits/s, mean {:.2} ms{}",
            server.name(),
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
        self.parts.entry(server).or_default().latency.push(r);
    }

    fn throughput(what: String, i: usize, r: &ThroughputResult) {
        let failed = match (&r.first_failure, r.failed_tasks) {
            (Some(why), n) => format!("; {n} tasks ended early, first: {why}"),
            _ => String::new(),
        };
        let errors = match &r.first_error {
            Some(e) => format!("; first error: {e}"),
            None => String::new(),
        };
        println!(
            "{what} run {}: delivered {}/s, acked sends {}/s, errors {}; store {:.0} commits/s, mean {:.2} ms; server CPU {:.1} µs per delivery{}; server RSS under load {}{}{}{}",
            i + 1,
            count(r.delivered_per_s),
            count(r.acked_per_s),
            r.errors,
            r.commits_per_s,
            r.mean_commit_ms,
            r.cpu_us_per_delivery,
            r.writer_us_per_delivery.map(|w| format!(" ({w:.1} in the store writer)")).unwrap_or_default(),
            mb(r.rss_under_load.now_kb as f64),
            errors,
            failed,
            log_note(&r.log)
        );
    }

    pub fn dm(&mut self, server: Server, i: usize, r: anyhow::Result<ThroughputResult>) {
        let what = format!("{}: dm-throughput", server.name());
        match r {
            Ok(r) => {
                Self::throughput(what, i, &r);
                self.parts.entry(server).or_default().dm.push(r);
            }
            Err(e) => self.fail(format!("{what} run {}", i + 1), &e),
        }
    }

    pub fn broadcast(&mut self, server: Server, i: usize, r: anyhow::Result<ThroughputResult>) {
        let what = format!("{}: broadcast", server.name());
        match r {
            Ok(r) => {
                Self::throughput(what, i, &r);
                self.parts.entry(server).or_default().broadcast.push(r);
            }
            Err(e) => self.fail(format!("{what} run {}", i + 1), &e),
        }
    }

    pub fn print_table(&self, o: &Opts) {
        let servers: Vec<Server> = self.parts.keys().copied().collect();
        let floors: Vec<Server> =
            [Server::Durable, Server::Storeless].into_iter().filter(|s| self.parts.contains_key(s)).collect();
        let mut head = String::from("| scenario | measure |");
        let mut rule = String::from("|---|---|");
        for s in &servers {
            head.push_str(&format!(" {} |", s.name()));
            rule.push_str("---|");
        }
        if self.parts.contains_key(&Server::Broker) {
            for f in &floors {
                head.push_str(&format!(" broker ÷ {} |", f.name()));
                rule.push_str("---|");
            }
        }
        head.push_str(" aim |");
        rule.push_str("---|");
        println!(
            "\nmedian (min–max) over {} interleaved runs; ratios are per run, then median (min–max)",
            o.runs
        );
        println!("{head}\n{rule}");
        for row in rows(o, &self.parts) {
            if self.parts.values().all(|p| (row.values)(p).is_empty()) {
                continue;
            }
            let mut line = format!("| {} | {} |", row.scenario, row.measure);
            for s in &servers {
                let v = self.parts.get(s).map(|p| (row.values)(p)).unwrap_or_default();
                let cell = Spread::of(&v).map(|sp| sp.show(&row.format)).unwrap_or_default();
                line.push_str(&format!(" {cell} |"));
            }
            if let Some(b) = self.parts.get(&Server::Broker) {
                let bv = (row.values)(b);
                for f in &floors {
                    let fv = self.parts.get(f).map(|p| (row.values)(p)).unwrap_or_default();
                    let ratios: Vec<f64> =
                        bv.iter().zip(&fv).filter(|(_, y)| **y > 0.0).map(|(x, y)| x / y).collect();
                    let cell =
                        Spread::of(&ratios).map(|sp| sp.show(|x| format!("{x:.2}×"))).unwrap_or_default();
                    line.push_str(&format!(" {cell} |"));
                }
            }
            line.push_str(&format!(" {} |", row.aim));
            println!("{line}");
        }
        println!(
            "\nBench clients and servers ran on the same {} CPUs; figures are for both together.",
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

/// A row's figure in each run of one server.
type Values = Box<dyn Fn(&Part) -> Vec<f64>>;
/// Picks one kind of throughput run from a server's results.
type PickRuns = fn(&Part) -> &Vec<ThroughputResult>;
/// A latency row: measure, its figure in one run, aim.
type LatencyRow = (&'static str, fn(&LatencyResult) -> f64, &'static str);
/// A throughput row: scenario, measure, which runs, deliveries (else acks), aim.
type ThroughputRow = (String, &'static str, PickRuns, bool, &'static str);

/// One table row: its figure in each run of a server, how to print it, and the aim.
struct Row {
    scenario: String,
    measure: &'static str,
    values: Values,
    format: Box<dyn Fn(f64) -> String>,
    aim: &'static str,
}

fn rows(o: &Opts, parts: &BTreeMap<Server, Part>) -> Vec<Row> {
    let mut out = Vec::new();
    let mut ns: Vec<usize> = parts.values().flat_map(|p| p.conns.iter().map(|c| c.n)).collect();
    ns.sort_unstable();
    ns.dedup();
    for n in ns {
        let what = format!("{} connections", count(n as f64));
        let pick = move |p: &Part, f: &dyn Fn(&ConnResult) -> f64| {
            p.conns.iter().filter(|c| c.n == n).map(f).collect::<Vec<_>>()
        };
        let aim = if n >= 10_000 { "≤ 200 MB at 10,000" } else { "" };
        out.push(Row {
            scenario: what.clone(),
            measure: "connections completed per second",
            values: Box::new(move |p| pick(p, &|c| c.n as f64 / c.connect.as_secs_f64())),
            format: Box::new(count),
            aim: "",
        });
        out.push(Row {
            scenario: what.clone(),
            measure: "connect + hello p50",
            values: Box::new(move |p| pick(p, &|c| c.connect_each.p50 as f64)),
            format: Box::new(ms),
            aim: "",
        });
        out.push(Row {
            scenario: what.clone(),
            measure: "connect + hello p99",
            values: Box::new(move |p| pick(p, &|c| c.connect_each.p99 as f64)),
            format: Box::new(ms),
            aim: "≤ 50 ms at 1,000/s",
        });
        out.push(Row {
            scenario: what.clone(),
            measure: "RSS settled, all connected",
            values: Box::new(move |p| pick(p, &|c| c.settled.now_kb as f64)),
            format: Box::new(mb),
            aim,
        });
        out.push(Row {
            scenario: what.clone(),
            measure: "RSS per connection (KB)",
            values: Box::new(move |p| {
                pick(p, &|c| c.settled.now_kb.saturating_sub(c.before.now_kb) as f64 / c.n as f64)
            }),
            format: Box::new(|x| format!("{x:.1}")),
            aim: "",
        });
        out.push(Row {
            scenario: what,
            measure: "presence bytes to the idle clients",
            values: Box::new(move |p| pick(p, &|c| c.presence_bytes as f64)),
            format: Box::new(|x| format!("{:.1} MB", x / 1e6)),
            aim: "O(N)",
        });
    }
    let what = format!("DM latency at {} msg/s", count(f64::from(o.rate)));
    let lat: [LatencyRow; 4] = [
        ("one-way p50", |r| r.one_way.p50 as f64, "≤ 1 ms"),
        ("one-way p99", |r| r.one_way.p99 as f64, "≤ 5 ms"),
        ("send → ack p50", |r| r.round_trip.p50 as f64, ""),
        ("send → ack p99", |r| r.round_trip.p99 as f64, ""),
    ];
    for (measure, f, aim) in lat {
        out.push(Row {
            scenario: what.clone(),
            measure,
            values: Box::new(move |p| p.latency.iter().map(f).collect()),
            format: Box::new(ms),
            aim,
        });
    }
    let tp: [ThroughputRow; 4] = [
        (
            format!("DM throughput, {} pairs, {} B", o.pairs, o.body),
            "delivered DMs/s",
            |p| &p.dm,
            true,
            "≥ 0.9× durable",
        ),
        (format!("DM throughput, {} pairs, {} B", o.pairs, o.body), "acked sends/s", |p| &p.dm, false, ""),
        (
            format!("broadcast, 1 → {} receivers, {} B", o.receivers, o.body),
            "deliveries/s",
            |p| &p.broadcast,
            true,
            "≥ 0.9× durable",
        ),
        (
            format!("broadcast, 1 → {} receivers, {} B", o.receivers, o.body),
            "acked broadcasts/s",
            |p| &p.broadcast,
            false,
            "",
        ),
    ];
    for (scenario, measure, pick, delivered, aim) in tp {
        out.push(Row {
            scenario,
            measure,
            values: Box::new(move |p| {
                pick(p).iter().map(|r| if delivered { r.delivered_per_s } else { r.acked_per_s }).collect()
            }),
            format: Box::new(count),
            aim,
        });
    }
    let runs: [(&'static str, PickRuns); 2] = [("DM throughput", |p| &p.dm), ("broadcast", |p| &p.broadcast)];
    type Measure = (&'static str, fn(&ThroughputResult) -> f64, fn(f64) -> String);
    let measures: [Measure; 2] = [
        ("server CPU per delivery (µs)", |r| r.cpu_us_per_delivery, |v| format!("{v:.1}")),
        ("RSS under load", |r| r.rss_under_load.now_kb as f64, mb),
    ];
    for (measure, value, format) in measures {
        for (scenario, pick) in runs {
            out.push(Row {
                scenario: scenario.into(),
                measure,
                values: Box::new(move |p| pick(p).iter().map(value).collect()),
                format: Box::new(format),
                aim: "",
            });
        }
    }
    out
}
