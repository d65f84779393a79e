//! The cluster simulator's command (see `omdiscd::sim` and `docs/SCALE.md`).
//!
//! ```text
//! cargo run --release --example sim -- --nodes 4096 --seconds 120 --loss 0.05 --seed 7
//! ```
//!
//! Network: `--delay MS` (1), `--jitter MS` (1), `--loss P`, `--dup P`,
//! `--reorder P`, `--reorder-ms MS` (10), `--queue N` datagrams (8192),
//! `--rx-rate N` datagrams/s a node can process (0: unlimited),
//! `--ingress-loss NODE:P` (repeatable: node NODE, numbered from 0 in start
//! order, loses this part of every copy that reaches it, on top of `--loss`;
//! what it sends is not affected).
//! Nodes: `--nodes N`, `--interval MS` (2000), `--hold MS` (5 x interval),
//! `--budget N` announcements/s for the whole cluster (1000; 0: none),
//! `--remembered` (nodes know the cluster's size at start, as from a
//! surviving map file),
//! `--start-window MS` (0: all in one millisecond), `--seed S`, `--seconds S`,
//! `--threads 1|2` (2; the run is the same bit for bit with either).
//! Script (T in seconds, repeatable): `--join T:K`, `--stop T:K`,
//! `--kill T:K`, `--pause T:K:MS`, `--change-address T:K`,
//! `--partition T:FRACTION`, `--heal T`.
//!
//! Prints the report table, one machine-readable `sim ...` line, and one
//! `sim-speed ...` line (wall time, simulated node-seconds per second, peak
//! RSS).
use std::process::exit;
use std::time::Instant;

use omdiscd::sim::{self, Action, Scenario, Step};

fn usage(msg: &str) -> ! {
    eprintln!("sim: {msg}");
    eprintln!("usage: sim [--nodes N] [--seconds S] [--seed S] [--loss P] [--dup P] [--reorder P] [--reorder-ms MS] [--delay MS] [--jitter MS] [--queue N] [--rx-rate N] [--ingress-loss NODE:P] [--interval MS] [--hold MS] [--budget N] [--remembered] [--start-window MS] [--threads 1|2] [--join T:K] [--stop T:K] [--kill T:K] [--pause T:K:MS] [--change-address T:K] [--partition T:F] [--heal T]");
    exit(2)
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> T {
    v.parse()
        .unwrap_or_else(|_| usage(&format!("{flag}: bad value {v:?}")))
}

fn at(flag: &str, v: &str) -> u64 {
    let secs: f64 = num(flag, v);
    if !(0.0..1e7).contains(&secs) {
        usage(&format!("{flag}: time out of range"));
    }
    (secs * 1000.0).round() as u64
}

fn parts<'a>(flag: &str, v: &'a str, n: usize) -> Vec<&'a str> {
    let p: Vec<&str> = v.split(':').collect();
    if p.len() != n {
        usage(&format!("{flag}: expected {n} fields separated by ':'"));
    }
    p
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut s = Scenario {
        duration_ms: 120_000,
        threads: 2,
        ..Scenario::default()
    };
    let mut hold: Option<u32> = None;
    let mut quiet = false;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let flag = flag.as_str();
        if flag == "--quiet" {
            quiet = true;
            continue;
        }
        if flag == "--remembered" {
            s.remembered = true;
            continue;
        }
        let v = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let step = |action| Step {
            at_ms: at(flag, v.split(':').next().unwrap_or("")),
            action,
        };
        match flag {
            "--nodes" => s.nodes = num(flag, v),
            "--seconds" => s.duration_ms = at(flag, v),
            "--seed" => s.seed = num(flag, v),
            "--loss" => s.net.loss = num(flag, v),
            "--dup" => s.net.duplicate = num(flag, v),
            "--reorder" => s.net.reorder = num(flag, v),
            "--reorder-ms" => s.net.reorder_ms = num(flag, v),
            "--delay" => s.net.delay_ms = num(flag, v),
            "--jitter" => s.net.jitter_ms = num(flag, v),
            "--queue" => s.net.queue = num(flag, v),
            "--rx-rate" => s.net.rx_rate = num(flag, v),
            "--ingress-loss" => {
                let p = parts(flag, v, 2);
                s.ingress_loss.push((num(flag, p[0]), num(flag, p[1])));
            }
            "--interval" => s.interval_ms = num(flag, v),
            "--hold" => hold = Some(num(flag, v)),
            "--budget" => s.budget = num(flag, v),
            "--start-window" => s.start_window_ms = num(flag, v),
            "--threads" => s.threads = num(flag, v),
            "--join" | "--stop" | "--kill" | "--change-address" => {
                let p = parts(flag, v, 2);
                let count = num(flag, p[1]);
                let action = match flag {
                    "--join" => Action::Join { count },
                    "--stop" => Action::Stop { count },
                    "--kill" => Action::Kill { count },
                    _ => Action::ChangeAddress { count },
                };
                s.script.push(step(action));
            }
            "--pause" => {
                let p = parts(flag, v, 3);
                let action = Action::Pause {
                    count: num(flag, p[1]),
                    ms: num(flag, p[2]),
                };
                s.script.push(step(action));
            }
            "--partition" => {
                let p = parts(flag, v, 2);
                let action = Action::Partition {
                    fraction: num(flag, p[1]),
                };
                s.script.push(step(action));
            }
            "--heal" => s.script.push(step(Action::Heal)),
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    s.hold_ms = hold.unwrap_or(
        s.interval_ms
            .saturating_mul(omdiscd::config::DEFAULT_HOLD_INTERVALS),
    );
    s.script.sort_by_key(|st| st.at_ms);
    let started = Instant::now();
    let report = sim::run(&s).unwrap_or_else(|e| usage(e));
    let wall = started.elapsed().as_secs_f64();
    if !quiet {
        print!("{}", report.table());
    }
    println!("{}", report.line());
    println!(
        "sim-speed wall_s={wall:.2} node_seconds={:.0} node_seconds_per_s={:.0} peak_rss_mib={:.0}",
        report.node_seconds,
        report.node_seconds / wall.max(1e-9),
        peak_rss_kib() as f64 / 1024.0
    );
}
