//! A rolling upgrade: daemons of this build and of the previous release
//! in one cluster, in network namespaces. The previous release is built
//! here from the repository's history (into `target/upgrade-base/`, kept
//! between runs); in a clone without that commit (a shallow one) the test
//! says `SKIPPED: ...` and passes. Needs root, iproute2 and git.
//!
//! Measured numbers are printed as `MEASURED ...` lines on stderr (run with
//! `--nocapture`).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemons::*;
use common::*;

/// The previous landing: the last release before early failure detection
/// (issue 18), which knows message types 1 to 3 only.
const BASE_COMMIT: &str = "7921aa3";
/// ANNOUNCEs of the new node heard before it is killed, so that it has
/// "earned" early suspicion (as in tests/detection.rs).
const EARNED: usize = 25;
/// From a kill until every survivor's map has lost the node: the old
/// daemons wait out its hold (5 s) and probe window (0.75 s).
const GONE_TIMEOUT: Duration = Duration::from_secs(20);
/// The counter an old daemon drops a message of a type it does not know
/// under (`ParseError::UnknownType` at [`BASE_COMMIT`]).
const UNKNOWN_TYPE: &str = "dropped unknown_type";

/// Runs `cmd`; its output when it fails (or cannot start).
fn run(cmd: &mut Command) -> Result<(), String> {
    match cmd.stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{cmd:?}: {}\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => Err(format!("{cmd:?}: {e}")),
    }
}

/// The omdiscd binary of [`BASE_COMMIT`], built (debug) from its source in
/// `target/upgrade-base/src` (extracted once) into
/// `target/upgrade-base/target` (cargo's cache, kept between runs); `None`
/// (after saying SKIPPED) when the repository does not have the commit.
fn base_binary() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let what = format!("rolling upgrade from {BASE_COMMIT}");
    let commit = format!("{BASE_COMMIT}^{{commit}}");
    if let Err(e) = run(Command::new("git")
        .current_dir(repo)
        .args(["cat-file", "-e", &commit]))
    {
        let why = format!(
            "git finds no commit {BASE_COMMIT} here (a shallow clone? \
             `git fetch --unshallow`): {}",
            e.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        // One line, as scripts/test counts them.
        skipped(&what, &why);
        return None;
    }
    let base = repo.join("target/upgrade-base");
    let src = base.join("src");
    if !src.join("Cargo.toml").exists() {
        // Extracted aside and renamed, so that a half-extracted tree is
        // never taken for a whole one.
        let tmp = base.join(format!("src.tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).unwrap();
        let mut archive = Command::new("git")
            .current_dir(repo)
            .args(["archive", BASE_COMMIT])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run git archive");
        let tar = Command::new("tar")
            .arg("-x")
            .current_dir(&tmp)
            .stdin(archive.stdout.take().expect("git archive's stdout"))
            .status()
            .expect("run tar");
        let git = archive.wait().expect("wait for git archive");
        assert!(
            git.success() && tar.success(),
            "git archive {BASE_COMMIT} | tar -x: {git}, {tar}"
        );
        fs::rename(&tmp, &src).unwrap_or_else(|e| panic!("rename {}: {e}", tmp.display()));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let build = |offline: bool| {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&src)
            .args(["build", "--bin", "omdiscd"])
            .env("CARGO_TARGET_DIR", base.join("target"))
            // build.rs runs `git describe`: not of the repository around.
            .env("GIT_CEILING_DIRECTORIES", &base);
        if offline {
            cmd.arg("--offline");
        }
        // What cargo test sets for this test, not for that build.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            let ours = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_BIN_",
                "CARGO_CRATE_",
            ]
            .iter()
            .any(|p| k.starts_with(p))
                || k == "CARGO_PRIMARY_PACKAGE"
                || k == "CARGO_TARGET_TMPDIR";
            if ours {
                cmd.env_remove(&*k);
            }
        }
        run(&mut cmd)
    };
    let t = Instant::now();
    if let Err(offline) = build(true) {
        eprintln!("upgrade: the offline build of {BASE_COMMIT} failed, trying online:\n{offline}");
        if let Err(e) = build(false) {
            panic!("cannot build omdiscd at {BASE_COMMIT}:\n{e}");
        }
    }
    eprintln!(
        "upgrade: omdiscd of {BASE_COMMIT} built (or found up to date) in {:?}",
        t.elapsed()
    );
    let bin = base.join("target/debug/omdiscd");
    assert!(bin.exists(), "no {} after the build", bin.display());
    Some(bin)
}

/// Starts `bin` as the daemon of `node`, with the options of
/// [`spawn_daemon`] (`-n`, a map file in the lab dir, an empty
/// `--proc-root`) and `args`.
fn start_bin(
    lab: &Lab,
    node: NodeId,
    addr: Ipv4Addr,
    name: &str,
    bin: &Path,
    args: &[&str],
) -> Daemon {
    let mut d = Daemon {
        node,
        addr,
        map: map_path(lab, name),
        proc: None,
    };
    let map = d.map.to_str().unwrap().to_owned();
    let root = empty_proc_root(lab).to_str().unwrap().to_owned();
    let mut full: Vec<&str> = vec!["-n", "--map-file", &map, "--proc-root", &root];
    full.extend_from_slice(args);
    d.proc = Some(lab.spawn(node, bin, &full));
    d
}

/// What [`FlapWatch`]'s thread checks and finds.
struct Watched {
    /// The maps of the live daemons.
    maps: Vec<(Ipv4Addr, PathBuf)>,
    /// The live nodes: none may be missing from a map.
    alive: BTreeSet<Entry>,
    /// What was found missing, and when.
    flaps: Vec<String>,
    polls: u64,
}

/// Checks every ~20 ms, on its own thread, that every live daemon's map
/// holds every live node, from the moment the cluster is complete to the
/// end (also while the test reads counters).
struct FlapWatch {
    state: Arc<Mutex<Watched>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl FlapWatch {
    fn new(ds: &[Daemon]) -> FlapWatch {
        let state = Arc::new(Mutex::new(Watched {
            maps: ds.iter().map(|d| (d.addr, d.map.clone())).collect(),
            alive: ds.iter().map(|d| entry(d.addr)).collect(),
            flaps: Vec::new(),
            polls: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (state2, stop2) = (Arc::clone(&state), Arc::clone(&stop));
        let began = Instant::now();
        let handle = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                {
                    let mut w = state2.lock().unwrap();
                    let mut found = Vec::new();
                    for (addr, path) in &w.maps {
                        let nodes = read_map(path).unwrap_or_default().nodes;
                        let missing: Vec<&Entry> = w.alive.difference(&nodes).collect();
                        if !missing.is_empty() {
                            found.push(format!(
                                "{:?} after the cluster was complete: {addr}'s map lacks \
                                 {missing:?}",
                                began.elapsed()
                            ));
                        }
                    }
                    w.polls += 1;
                    // The first few are enough to tell what happened.
                    let room = 20usize.saturating_sub(w.flaps.len());
                    w.flaps.extend(found.into_iter().take(room));
                }
                std::thread::sleep(POLL_INTERVAL);
            }
        });
        FlapWatch {
            state,
            stop,
            handle: Some(handle),
        }
    }

    /// `a` is about to be killed: neither its map nor its presence in the
    /// others is checked from now on.
    fn dead(&self, a: Ipv4Addr) {
        let mut w = self.state.lock().unwrap();
        w.maps.retain(|(addr, _)| *addr != a);
        w.alive.remove(&entry(a));
    }

    /// Stops the thread: (what it found missing, how many polls it made).
    fn finish(mut self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().expect("the flap watch thread");
        }
        let w = self.state.lock().unwrap();
        (w.flaps.clone(), w.polls)
    }
}

impl Drop for FlapWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The `dropped unknown_type` counter of each daemon of `ds`, read at once.
fn unknown_types(ds: &[&Daemon]) -> Vec<u64> {
    std::thread::scope(|s| {
        let hs: Vec<_> = ds
            .iter()
            .map(|d| s.spawn(move || d.counters_with_drops().get(UNKNOWN_TYPE)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Kills `ds[victim]` and waits until every other daemon still running has
/// dropped it (no live node missing from a map meanwhile, the victim never
/// back in a map it left), then until they all agree. Returns how long each
/// of them took (in the order of `ds`, the dead ones left out).
fn kill_and_watch(
    ds: &[Daemon],
    dead: &mut Vec<usize>,
    victim: usize,
    watch: &FlapWatch,
) -> Vec<(usize, Duration)> {
    let addr = ds[victim].addr;
    watch.dead(addr);
    let killed = Instant::now();
    ds[victim].proc().kill();
    dead.push(victim);
    let living: Vec<usize> = (0..ds.len()).filter(|i| !dead.contains(i)).collect();
    let rs: Vec<&Daemon> = living.iter().map(|&i| &ds[i]).collect();
    let alive: BTreeSet<Entry> = rs.iter().map(|d| entry(d.addr)).collect();
    let gone = watch_departure(&rs, &alive, addr, killed, GONE_TIMEOUT);
    wait_for_without_flaps(
        Duration::from_secs(5),
        &format!("the survivors agree without {addr}"),
        &rs,
        &alive,
        || rs.iter().all(|d| d.has_exactly(&alive)),
    );
    living.into_iter().zip(gone).collect()
}

/// Three daemons of this build and three of [`BASE_COMMIT`] (the last
/// release before early failure detection) on one bridge, `--interval 1`
/// (hold 5 s): all six maps fill; a new node is SIGKILLed and all five maps
/// drop it (the old ones by its hold) and agree; an old node is SIGKILLed
/// and the four left agree; the old daemons count the new message type
/// (notices) as `dropped unknown_type`, at least once after the new node's
/// death (its death notice); and no map ever lacks a live node.
#[test]
fn a_mixed_cluster_of_this_build_and_the_last_release_fills_drops_killed_nodes_and_never_flaps() {
    let Some(old_bin) = base_binary() else {
        return;
    };
    let (lab, br, nodes) = Lab::flat(6);
    let obs = lab.node("observer");
    lab.link(obs, br, Lab::addr(br, 100), 24);
    let observer = Observer::new(&lab, obs);
    let args = ["-i", "eth0", "--interval", "1"];
    // 0..3 this build, 3..6 the old one.
    let ds: Vec<Daemon> = nodes
        .iter()
        .enumerate()
        .map(|(i, &(n, a))| {
            if i < 3 {
                start(&lab, n, a, &format!("new{}", i + 1), &args)
            } else {
                start_bin(&lab, n, a, &format!("old{}", i - 2), &old_bin, &args)
            }
        })
        .collect();
    let kind = |i: usize| if i < 3 { "new" } else { "old" };
    let all = set_of(&nodes.iter().map(|&(_, a)| a).collect::<Vec<_>>());
    let conv = wait_for(
        Duration::from_secs(20),
        "the 6 maps hold the 6 nodes",
        &refs(&ds),
        || all_have(&ds, &all),
    );
    eprintln!("MEASURED upgrade: 3 new and 3 old daemons in every map {conv:?} after the start");
    let watch = FlapWatch::new(&ds);
    let new_victim = 2;
    let a = ds[new_victim].addr;
    wait_for(
        Duration::from_secs(EARNED as u64 + 10),
        &format!("{a} heard {EARNED} times"),
        &refs(&ds),
        || observer.announces_from(a) >= EARNED,
    );
    drop(observer);
    let old: Vec<&Daemon> = ds[3..].iter().collect();
    let before = unknown_types(&old);

    let mut dead = Vec::new();
    let report = |victim: usize, gone: &[(usize, Duration)]| {
        for k in ["new", "old"] {
            let times: Vec<String> = gone
                .iter()
                .filter(|&&(i, _)| kind(i) == k)
                .map(|&(i, t)| format!("{} {t:.2?}", ds[i].addr))
                .collect();
            eprintln!(
                "MEASURED upgrade: {} node {} SIGKILLed: gone from the {k} nodes' maps after {}",
                kind(victim),
                ds[victim].addr,
                times.join(", ")
            );
        }
    };
    let gone = kill_and_watch(&ds, &mut dead, new_victim, &watch);
    report(new_victim, &gone);
    let after = unknown_types(&old);

    let old_victim = 5;
    let gone = kill_and_watch(&ds, &mut dead, old_victim, &watch);
    report(old_victim, &gone);

    let (flaps, polls) = watch.finish();
    assert!(
        flaps.is_empty(),
        "a live node went missing from a map ({polls} polls):\n{}\n{}",
        flaps.join("\n"),
        diag(&refs(&ds))
    );
    eprintln!(
        "MEASURED upgrade: `{UNKNOWN_TYPE}` of the old nodes {:?} before the new node's death, \
         {after:?} after it",
        before
    );
    for ((d, b), a) in old.iter().zip(&before).zip(&after) {
        assert!(
            a > b,
            "{} (old) counted no message of an unknown type ({UNKNOWN_TYPE}: {b} before, {a} \
             after) after the new node's death: no death notice reached it\n{}",
            d.addr,
            diag(&[d])
        );
    }
}
