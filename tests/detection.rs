//! Early failure detection (issue 18), in network namespaces: a node that
//! dies without a LEAVE is removed from every map on a death notice of the
//! cluster (a member that missed it asks, the node does not answer, the
//! member multicasts "node X is dead"), not each member on its own when
//! its hold runs out. Needs root and iproute2.
//!
//! Measured numbers are printed as `MEASURED ...` lines on stderr (run with
//! `--nocapture`); they are not asserted as wall-clock bounds, since the
//! machine may be loaded.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::daemons::*;
use common::*;
use omdiscd::sim::{self, Action, Scenario, Step};

/// ANNOUNCEs of a node heard before it is killed: a node is suspected
/// early, and probed, only once it has "earned" it by being heard many
/// times. 25 is what the made-up "earned" nodes of tests/hostile.rs (attack
/// 11) send; it must be at least the core's threshold.
const EARNED: usize = 25;
/// From the kill until the node has left every survivor's map: its hold
/// (5 s) and probe window (0.75 s) with room to spare, so that a daemon
/// without early detection passes the wait and fails the log check.
const GONE_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether `line` names `a` as a whole address (not 198.18.10.6 in
/// 198.18.10.60).
fn names(line: &str, a: Ipv4Addr) -> bool {
    let a = a.to_string();
    line.match_indices(&a).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let mut after = line[at + a.len()..].chars();
        let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
        let longer = match after.next() {
            Some('.') => digit(after.next()),
            c => digit(c),
        };
        !(digit(before) || before == Some('.') || longer)
    })
}

/// Six daemons, `--interval 1` (hold 5 s). Once every map is full and the
/// last node has been heard [`EARNED`] times, it is SIGKILLed. Every
/// survivor's map loses it (within 20 s), no survivor's map ever lacks a
/// live node meanwhile, and each survivor logs that it removed the node on
/// a death notice ("confirmed dead", on the line that names its address),
/// not because its hold ran out.
#[test]
fn a_killed_node_leaves_every_map_on_a_death_notice_not_by_its_hold_and_no_live_node_flaps() {
    let (lab, br, nodes) = Lab::flat(6);
    // A namespace that only listens: it counts the victim's ANNOUNCEs.
    let obs = lab.node("observer");
    lab.link(obs, br, Lab::addr(br, 100), 24);
    let observer = Observer::new(&lab, obs);
    let args = ["-i", "eth0", "--interval", "1"];
    let ds: Vec<Daemon> = nodes
        .iter()
        .enumerate()
        .map(|(i, &(n, a))| start(&lab, n, a, &format!("n{}", i + 1), &args))
        .collect();
    let addrs: Vec<Ipv4Addr> = nodes.iter().map(|&(_, a)| a).collect();
    let all = set_of(&addrs);
    wait_for(
        Duration::from_secs(20),
        "6 nodes converge",
        &refs(&ds),
        || all_have(&ds, &all),
    );
    let victim = addrs[5];
    let earned = wait_for_without_flaps(
        Duration::from_secs(EARNED as u64 + 10),
        &format!("{victim} heard {EARNED} times"),
        &refs(&ds),
        &all,
        || observer.announces_from(victim) >= EARNED,
    );
    drop(observer);
    eprintln!("MEASURED detection: {victim} heard {EARNED} times {earned:?} after convergence");

    let killed = Instant::now();
    ds[5].proc.as_ref().expect("started").kill();
    let survivors = &ds[..5];
    let alive = set_of(&addrs[..5]);
    let gone = watch_departure(
        &survivors.iter().collect::<Vec<_>>(),
        &alive,
        victim,
        killed,
        GONE_TIMEOUT,
    );
    for (d, t) in survivors.iter().zip(&gone) {
        eprintln!(
            "MEASURED detection: {victim} gone from {}'s map {t:?} after SIGKILL \
             (interval 1 s, hold 5 s)",
            d.addr
        );
    }
    let rs: Vec<&Daemon> = survivors.iter().collect();
    wait_for_without_flaps(
        Duration::from_secs(5),
        "the survivors agree",
        &rs,
        &alive,
        || all_have(survivors, &alive),
    );

    // The same scenario in the simulator, side by side: six nodes,
    // interval 1 s, hold 5 s, one killed once it was heard well over
    // EARNED times.
    let s = Scenario {
        nodes: 6,
        duration_ms: 60_000,
        seed: 18,
        interval_ms: 1000,
        hold_ms: 5000,
        script: vec![Step {
            at_ms: 40_000,
            action: Action::Kill { count: 1 },
        }],
        ..Scenario::default()
    };
    let r = sim::run(&s).expect("valid scenario");
    let [k] = r.killed.as_slice() else {
        panic!("one node killed: {:?}", r.killed)
    };
    let sim_gone = k
        .gone_after_last_message_ms()
        .expect("gone in the simulator");
    let real_gone = gone.iter().max().expect("survivors");
    println!(
        "detection-comparison: 6 nodes, interval 1 s, hold 5 s: gone from every map {sim_gone} ms \
         after its last message (simulator, seed 18), {real_gone:?} after SIGKILL (namespaces)"
    );
    // The simulator's run is exact: it is told within 3.5 intervals, by a
    // notice, and nobody else is dropped.
    assert!(
        sim_gone <= 3500,
        "simulator: gone {sim_gone} ms after its last message"
    );
    assert!(
        r.detection[3] >= 1,
        "simulator: no death confirmed: {:?}",
        r.detection
    );
    assert_eq!(r.false_removals, 0);

    // How each survivor came to remove it.
    for d in survivors.iter() {
        let log = d.log();
        assert!(
            log.lines()
                .any(|l| l.contains("confirmed dead") && names(l, victim)),
            "{} removed {victim} without logging it \"confirmed dead\" (by its hold, not \
             on a death notice)\n{}",
            d.addr,
            diag(&[d])
        );
    }
}

#[test]
fn names_matches_whole_addresses_only() {
    let a = Ipv4Addr::new(198, 18, 10, 6);
    assert!(names("node 198.18.10.6 confirmed dead", a));
    assert!(names("198.18.10.6: confirmed dead", a));
    assert!(!names("node 198.18.10.60 confirmed dead", a));
    assert!(!names("node 1198.18.10.6 confirmed dead", a));
    assert!(names("confirmed dead: 198.18.10.6.", a));
    assert!(!names("confirmed dead: 198.18.10.6.1", a));
}
