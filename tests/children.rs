//! What the daemon runs and finds besides the network: setpe and the
//! `--on-change` program (timeouts, output, coalescing, no child outliving
//! the daemon), and a kernel interface that appears after start (procfs
//! mounted late, as in an initramfs). The openMosix 2.4 kernel is a fake
//! procfs directory of the test's (`--proc-root`) and setpe a script.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::daemons::*;
use common::*;
use nix::sys::signal::Signal;

const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether process `pid` runs (a zombie does not).
fn running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| !r.starts_with(" Z")))
}

fn pids_in(path: &Path) -> Vec<i32> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_kernel_interface_that_appears_after_start_gets_the_map() {
    let (lab, _br, nodes) = Lab::flat(1);
    let (n, a) = nodes[0];
    // procfs is not mounted yet: the proc root is an empty directory.
    let root = lab.dir().join("late-proc");
    fs::create_dir_all(&root).unwrap();
    let setpe = lab.dir().join("setpe-late");
    let calls = lab.dir().join("setpe-late.calls");
    script(&setpe, &format!("echo \"$@\" >> '{}'\n", calls.display()));
    let setpe_s = setpe.to_str().unwrap();
    let args = ["-i", "eth0", "--interval", "0.3", "--setpe", setpe_s];
    let d = start_with_root(&lab, n, a, "late", &root, &args);
    wait_for(CONVERGE_TIMEOUT, "the map file", &[&d], || d.lists(a));
    assert!(
        d.log().contains("no openMosix kernel (map file only)"),
        "{}",
        d.log()
    );
    // "Mounted" now: the daemon finds it within a second or two, without a
    // SIGHUP and without any change of the map.
    openmosix_24(&root);
    wait_for(Duration::from_secs(5), "setpe ran", &[&d], || {
        calls.exists()
    });
    let mospe = fs::read_to_string(root.join("hpc/admin/mospe")).unwrap();
    assert_eq!(mospe.trim(), nid(a).to_string());
    assert!(
        d.log().contains("kernel interface found again") && d.log().contains("openMosix 2.4"),
        "{}",
        d.log()
    );
}

#[test]
fn a_setpe_that_hangs_is_killed_and_logged_and_no_child_outlives_the_daemon() {
    let (lab, _br, nodes) = Lab::flat(1);
    let (n, a) = nodes[0];
    let root = lab.dir().join("om24");
    openmosix_24(&root);
    let setpe = lab.dir().join("setpe-hangs");
    let pids = lab.dir().join("setpe.pids");
    // It says something on stderr, leaves a child behind, and hangs.
    script(
        &setpe,
        &format!(
            "echo \"setpe: cannot talk to the kernel\" >&2\nsleep 120 &\necho $$ $! >> '{}'\nwait\n",
            pids.display()
        ),
    );
    let args = [
        "-i",
        "eth0",
        "--interval",
        "0.3",
        "--setpe",
        setpe.to_str().unwrap(),
    ];
    let d = start_with_root(&lab, n, a, "hang", &root, &args);
    let killed = "setpe -w ran longer than 10 s and was killed";
    let took = wait_for(
        Duration::from_secs(20),
        "the hung setpe is killed",
        &[&d],
        || d.log().contains(killed),
    );
    eprintln!("MEASURED hung setpe killed and logged {took:?} after start");
    let first: Vec<i32> = pids_in(&pids)[..2].to_vec();
    wait_for(EXIT_TIMEOUT, "setpe and its child are gone", &[&d], || {
        first.iter().all(|&p| !running(p))
    });
    // Its output was logged, and the daemon kept running (and retries).
    assert!(
        d.log().contains("setpe: setpe: cannot talk to the kernel"),
        "{}",
        d.log()
    );
    let stats = std::process::Command::new(BIN)
        .args(["--stats", "--map-file"])
        .arg(&d.map)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&stats.stdout);
    assert!(
        text.contains("\nchild_timeouts 1\n") || text.contains("\nchild_timeouts 2\n"),
        "{text}"
    );
    // The retry hangs too; the daemon stops: no child is left.
    wait_for(Duration::from_secs(5), "the retry started", &[&d], || {
        pids_in(&pids).len() >= 4
    });
    let second: Vec<i32> = pids_in(&pids)[2..4].to_vec();
    d.proc().signal(Signal::SIGTERM);
    assert!(d.proc().wait_exit(Duration::from_secs(10)).is_some());
    wait_for(EXIT_TIMEOUT, "no child outlives the daemon", &[&d], || {
        second.iter().all(|&p| !running(p))
    });
    // And a daemon killed outright takes its setpe with it.
    let d = start_with_root(&lab, n, a, "hang2", &root, &args);
    wait_for(Duration::from_secs(5), "a setpe runs", &[&d], || {
        pids_in(&pids).len() >= 6
    });
    let third = pids_in(&pids)[4];
    d.proc().kill();
    wait_for(EXIT_TIMEOUT, "setpe dies with the daemon", &[&d], || {
        !running(third)
    });
}

/// The `--on-change` program's runs, as it recorded them: one line each,
/// `NODES|JOINED|LEFT`.
fn runs(path: &PathBuf) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn the_on_change_program_gets_who_joined_and_left_coalesced_and_its_stderr_is_logged() {
    let (lab, _br, nodes) = Lab::flat(3);
    let record = lab.dir().join("hook.runs");
    let signals = lab.dir().join("hook.signals");
    let hook = lab.dir().join("hook");
    // Slow on purpose: changes while it runs are coalesced into one run.
    // Its signal masks are put in place (renamed) before the run is
    // recorded, so a run the test sees has its masks complete.
    script(
        &hook,
        &format!(
            "grep -E '^Sig(Blk|Ign)' /proc/self/status > '{sig}.tmp' && mv '{sig}.tmp' '{sig}'\necho \"$OMDISCD_NODES|$OMDISCD_JOINED|$OMDISCD_LEFT|$OMDISCD_NODE_ID|$OMDISCD_MAP_FILE\" >> '{}'\necho hook ran >&2\nsleep 0.5\n",
            record.display(),
            sig = signals.display()
        ),
    );
    let iv = ["-i", "eth0", "--interval", "0.3", "--hold", "0.9"];
    let mut args = iv.to_vec();
    args.extend(["--on-change", hook.to_str().unwrap()]);
    let (n0, a0) = nodes[0];
    let d = start(&lab, n0, a0, "hooked", &args);
    let others: Vec<Daemon> = nodes[1..]
        .iter()
        .enumerate()
        .map(|(i, &(n, a))| start(&lab, n, a, &format!("o{i}"), &iv))
        .collect();
    let all: Vec<std::net::Ipv4Addr> = nodes.iter().map(|&(_, a)| a).collect();
    wait_for(CONVERGE_TIMEOUT, "a run with all three", &[&d], || {
        runs(&record).iter().any(|r| r.starts_with("3|"))
    });
    // Every node appears in some run's JOINED, this node included.
    let joined: String = runs(&record)
        .iter()
        .map(|r| r.split('|').nth(1).unwrap().to_string() + " ")
        .collect();
    for a in &all {
        assert!(
            joined.contains(&format!("{}={a}", nid(*a))),
            "{a} never joined: {:?}",
            runs(&record)
        );
    }
    // It starts as from a shell: nothing blocked (the daemon blocks its
    // signals for signalfd), SIGPIPE not ignored (Rust ignores it in the
    // daemon; what the daemon's own parent ignored stays ignored).
    let sig = fs::read_to_string(&signals).unwrap();
    let mask = |name: &str| {
        let line = sig.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split('\t').nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{sig}");
    assert_eq!(mask("SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0, "{sig}");
    let first = runs(&record)[0].clone();
    let f: Vec<&str> = first.split('|').collect();
    assert_eq!(f[3], nid(a0).to_string());
    assert_eq!(f[4], d.map.to_str().unwrap());
    // One node stops: the next run names it in LEFT.
    let gone = &others[1];
    gone.proc().signal(Signal::SIGTERM);
    let left = format!("{}={}", nid(gone.addr), gone.addr);
    wait_for(CONVERGE_TIMEOUT, "a run with it in LEFT", &[&d], || {
        runs(&record)
            .iter()
            .any(|r| r.starts_with("2|") && r.split('|').nth(2) == Some(left.as_str()))
    });
    // Coalesced: fewer runs than publishes, never two at once.
    let publishes = d.log().matches("openMosix configuration changed").count();
    assert!(
        runs(&record).len() <= publishes,
        "{} runs for {publishes} publishes",
        runs(&record).len()
    );
    assert!(
        d.log().contains("on-change program: hook ran"),
        "{}",
        d.log()
    );
}
