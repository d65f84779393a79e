//! A 100-node cluster of real daemons (see tests/common/mod.rs): every
//! daemon in its own network namespace on one bridge, `-n -i eth0 --interval
//! 1`, its own `--map-file` and an empty `--proc-root`, so nothing on the host
//! is touched. Needs root and iproute2. `scripts/scale-lab` measures the same
//! set-up at other sizes (boot traffic, joins, kills, steady state).
//!
//! Neighbour entries: Linux counts the ARP entries of every namespace against
//! one host-wide limit (`net.ipv4.neigh.default.gc_thresh3`, 1024 by
//! default). A protocol in which every node unicasts to every other one needs
//! N² of them (10,000 here): past the limit sends fail with EINVAL, and 100
//! such nodes never converged. Joins answered by a few members need a few
//! entries per node: the test counts them and leaves the host's limit alone.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_omdiscd");
const NODES: u8 = 100;
/// Generous: the cold boot converges about a second after the last start.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the converged maps must stay complete.
const HOLD: Duration = Duration::from_secs(10);
/// Sampling period of the hold window.
const SAMPLE: Duration = Duration::from_millis(100);

type Entry = (u16, Ipv4Addr);

/// The openMosix node id of an address: `(o3 << 8) | o4`.
fn nid(a: Ipv4Addr) -> u16 {
    let o = a.octets();
    (u16::from(o[2]) << 8) | u16::from(o[3])
}

/// The nodes a map file lists (ranges `ID ADDR COUNT` expanded), or `None`
/// while it does not exist yet or does not parse.
fn map_nodes(path: &Path) -> Option<BTreeSet<Entry>> {
    let text = fs::read_to_string(path).ok()?;
    let mut nodes = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 || f[2] == "ALIAS" {
            return None; // no aliases in this lab
        }
        let id: u32 = f[0].parse().ok()?;
        let addr: Ipv4Addr = f[1].parse().ok()?;
        let count: u32 = f[2].parse().ok()?;
        for k in 0..count {
            let a = Ipv4Addr::from(u32::from(addr).checked_add(k)?);
            let i = u16::try_from(id + k).ok()?;
            if i != nid(a) {
                return None;
            }
            nodes.insert((i, a));
        }
    }
    Some(nodes)
}

/// How many of `maps` list exactly `want`.
fn complete_maps(maps: &[PathBuf], want: &BTreeSet<Entry>) -> usize {
    maps.iter()
        .filter(|m| map_nodes(m).as_ref() == Some(want))
        .count()
}

/// What a failure message shows: how far each incomplete map is, and the log
/// of the first one.
fn diag(maps: &[PathBuf], want: &BTreeSet<Entry>, procs: &[Proc]) -> String {
    let mut s = String::new();
    let mut first = true;
    for (m, p) in maps.iter().zip(procs) {
        let got = map_nodes(m);
        if got.as_ref() == Some(want) {
            continue;
        }
        let n = got.map_or(0, |g| g.intersection(want).count());
        s.push_str(&format!(
            "{}: {n} of {} nodes, exit status {:?}\n",
            m.display(),
            want.len(),
            p.try_wait()
        ));
        if first {
            first = false;
            s.push_str(&format!(
                "--- map\n{}--- stdout\n{}--- stderr\n{}\n",
                fs::read_to_string(m).unwrap_or_default(),
                p.stdout_text(),
                p.stderr_text()
            ));
        }
    }
    s
}

#[test]
fn hundred_nodes_cold_boot_converge_stay_converged_and_resolve_few_neighbours() {
    let (lab, _br, nodes) = Lab::flat(NODES);

    let root = lab.dir().join("empty-proc");
    fs::create_dir_all(&root).unwrap();
    let root = root.to_str().unwrap().to_owned();
    let maps: Vec<PathBuf> = (1..=NODES)
        .map(|i| lab.dir().join(format!("n{i}.map")))
        .collect();
    let want: BTreeSet<Entry> = nodes.iter().map(|&(_, a)| (nid(a), a)).collect();

    let start = Instant::now();
    let procs: Vec<Proc> = nodes
        .iter()
        .zip(&maps)
        .map(|(&(node, _), map)| {
            let map = map.to_str().unwrap();
            #[rustfmt::skip]
            let args = ["-n", "-i", "eth0", "--interval", "1",
                        "--map-file", map, "--proc-root", &root];
            lab.spawn(node, Path::new(BIN), &args)
        })
        .collect();
    let started = start.elapsed();

    let converged = poll_for(CONVERGE_TIMEOUT, || {
        complete_maps(&maps, &want) == maps.len()
    })
    .unwrap_or_else(|| {
        panic!(
            "{NODES} nodes (started within {started:?}) not converged after \
             {CONVERGE_TIMEOUT:?}: {} of {} maps complete\n{}",
            complete_maps(&maps, &want),
            maps.len(),
            diag(&maps, &want, &procs)
        )
    });
    eprintln!(
        "scale-lab-100: started within {} ms, every map complete after {} ms \
         (from the first start)",
        started.as_millis(),
        (converged + started).as_millis()
    );

    let hold_start = Instant::now();
    let mut samples = 0u32;
    loop {
        let complete = complete_maps(&maps, &want);
        samples += 1;
        assert_eq!(
            complete,
            maps.len(),
            "converged, then a map became incomplete after {:?} (sample {samples}):\n{}",
            hold_start.elapsed(),
            diag(&maps, &want, &procs)
        );
        if hold_start.elapsed() >= HOLD {
            break;
        }
        std::thread::sleep(SAMPLE);
    }
    assert!(samples >= 20, "only {samples} samples in {HOLD:?}");
    for p in &procs {
        assert!(p.try_wait().is_none(), "{} exited", p.name());
    }
    eprintln!(
        "scale-lab-100: all {NODES} maps complete in each of {samples} samples over {:?}",
        hold_start.elapsed()
    );
    // ARP: a few unicast answers per join, not one resolution per pair.
    let neighbours: usize = nodes
        .iter()
        .map(|&(node, _)| {
            lab.ip(node, &["neigh", "show", "dev", "eth0"])
                .lines()
                .count()
        })
        .sum();
    eprintln!("scale-lab-100: {neighbours} neighbour entries in all {NODES} nodes");
    assert!(
        neighbours <= 2 * usize::from(NODES),
        "{neighbours} neighbour entries: unicast to many peers"
    );
    // The lab (declared first, dropped last) kills the daemons and removes
    // its namespaces and directory; the procs are killed first on drop.
}
