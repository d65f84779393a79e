//! Small simulations (16-256 nodes) of what the protocol must guarantee, with
//! fixed seeds: convergence after a cold boot and after a newcomer joins,
//! removal after a kill within the hold time plus one interval, no false
//! removals at 5 % loss, determinism, a node that loses 30 % of what
//! reaches it (issue 8); and for large clusters: cold boots
//! that cost O(N) datagrams, joins answered by a few members, the traffic
//! budget, and start-up storms that overflow receive queues without
//! collapse. Datagrams are counted, never timed.

use omdiscd::sim::{self, Action, NetConfig, Report, Scenario, Step};

fn scenario(nodes: usize, seconds: u64, seed: u64) -> Scenario {
    Scenario {
        nodes,
        duration_ms: seconds * 1000,
        seed,
        interval_ms: 1000,
        // The default: five intervals.
        hold_ms: 5000,
        ..Scenario::default()
    }
}

fn step(at_s: u64, action: Action) -> Step {
    Step {
        at_ms: at_s * 1000,
        action,
    }
}

fn run(s: &Scenario) -> Report {
    let r = sim::run(s).expect("valid scenario");
    println!("{}", r.table());
    r
}

fn converged(r: &Report, phase: usize) -> u64 {
    r.phases[phase]
        .converged_after_ms
        .unwrap_or_else(|| panic!("phase {:?} never converged", r.phases[phase]))
}

#[test]
fn a_cold_boot_of_64_nodes_converges_within_a_second_and_a_quarter_of_the_last_start() {
    let mut s = scenario(64, 20, 1);
    s.start_window_ms = 1000;
    let r = run(&s);
    // The last node starts at 1 s, announces within 250 ms, and is answered
    // by a member past its own start-up burst (or hears everyone announce).
    assert!(converged(&r, 0) <= 2250, "{:?}", r.phases[0]);
    assert_eq!(r.false_removals, 0);
    assert_eq!(r.queue_drops, 0);
}

#[test]
fn a_newcomer_learns_the_cluster_and_is_learnt_within_a_second() {
    let mut s = scenario(32, 20, 2);
    s.script = vec![step(10, Action::Join { count: 1 })];
    let r = run(&s);
    assert!(converged(&r, 1) <= 1000, "{:?}", r.phases[1]);
}

/// The goal of issue 18: a killed node leaves every map within 3.5 of the
/// intervals it advertised after its last message (suspected after 2.5,
/// then a probe, the helpers' answers and the notice), whatever the size.
fn killed_within_three_and_a_half_intervals(r: &Report, interval_ms: u64) -> u64 {
    let [k] = r.killed.as_slice() else {
        panic!("one node killed: {:?}", r.killed)
    };
    let after = k
        .gone_after_last_message_ms()
        .unwrap_or_else(|| panic!("still in a map at the end: {k:?}"));
    let bound = interval_ms * 7 / 2;
    assert!(
        after <= bound,
        "gone {after} ms after its last message, bound {bound}: {k:?}"
    );
    // Never before two of its intervals: nobody may drop it early.
    assert!(after >= 2 * interval_ms, "gone after {after} ms: {k:?}");
    after
}

#[test]
fn a_killed_node_leaves_every_map_within_three_and_a_half_intervals() {
    let mut s = scenario(32, 30, 3);
    s.script = vec![step(10, Action::Kill { count: 1 })];
    s.hold_ms = 3000;
    let r = run(&s);
    killed_within_three_and_a_half_intervals(&r, u64::from(s.interval_ms));
    assert_eq!(r.ghost_observations, 0);
    assert_eq!(r.false_removals, 0);
}

#[test]
fn at_five_percent_loss_a_kill_is_told_within_three_and_a_half_intervals_at_64_and_256_nodes() {
    for (nodes, seed) in [(64, 21), (256, 22)] {
        let mut s = storm(nodes, 60, seed);
        s.script = vec![step(40, Action::Kill { count: 1 })];
        let r = run(&s);
        killed_within_three_and_a_half_intervals(&r, u64::from(s.interval_ms));
        assert_eq!(r.false_removals, 0, "{nodes} nodes");
        // Told by its watchers, not found out by everyone's hold.
        let [_, _, _, confirmed, notices, _] = r.detection;
        assert!(confirmed >= 1, "{nodes} nodes: {:?}", r.detection);
        assert!(
            notices as usize >= nodes / 2,
            "{nodes} nodes: {:?}",
            r.detection
        );
    }
}

#[test]
fn a_graceful_stop_is_seen_at_once() {
    let mut s = scenario(32, 20, 4);
    s.script = vec![step(10, Action::Stop { count: 2 })];
    let r = run(&s);
    // LEAVE plus the 100 ms publish coalescing.
    assert!(converged(&r, 1) <= 200, "{:?}", r.phases[1]);
}

#[test]
fn five_percent_loss_removes_no_live_node() {
    let mut s = scenario(32, 60, 5);
    s.net = NetConfig {
        loss: 0.05,
        jitter_ms: 5,
        reorder: 0.01,
        duplicate: 0.01,
        ..NetConfig::default()
    };
    s.script = vec![step(30, Action::Join { count: 2 })];
    let r = run(&s);
    converged(&r, 0);
    converged(&r, 1);
    assert!(r.lost > 0, "the loss was applied");
    assert_eq!(r.false_removals, 0);
}

#[test]
fn probes_keep_even_a_three_interval_hold_from_losing_live_nodes_at_five_percent_loss() {
    // Without probes this run lost live nodes (7 false removals): three
    // intervals (3.5 scaled for 32 nodes) are too few at 5 % loss, which is
    // why the default hold is five. A silent node is now probed first.
    let mut s = scenario(32, 60, 5);
    s.net.loss = 0.05;
    s.hold_ms = 3000;
    let r = run(&s);
    assert!(r.probes > 0, "silent nodes were probed");
    assert_eq!(r.false_removals, 0);
}

#[test]
fn a_paused_node_is_removed_and_taken_back_when_it_resumes() {
    let mut s = scenario(16, 30, 6);
    s.script = vec![step(10, Action::Pause { count: 1, ms: 8000 })];
    let r = run(&s);
    // Removed once its silence is confirmed (about 2.5 of its intervals
    // after its last announcement, which came up to 1.2 intervals before
    // the pause), before it resumes ...
    let removed = converged(&r, 1);
    assert!(removed >= 2500 - 1200, "{removed}");
    assert!(removed < 8000, "{removed}");
    // ... and back in every map soon after it resumes.
    assert!(r.phases[2].what.starts_with("resume"));
    assert!(converged(&r, 2) <= 1000, "{:?}", r.phases[2]);
}

#[test]
fn a_partition_splits_the_maps_and_a_heal_joins_them() {
    let mut s = scenario(24, 50, 7);
    s.script = vec![
        step(10, Action::Partition { fraction: 0.5 }),
        step(30, Action::Heal),
    ];
    let r = run(&s);
    converged(&r, 1);
    assert!(converged(&r, 2) <= 3000, "{:?}", r.phases[2]);
}

#[test]
fn an_address_change_moves_the_node_in_every_map() {
    let mut s = scenario(16, 20, 8);
    s.script = vec![step(10, Action::ChangeAddress { count: 1 })];
    let r = run(&s);
    assert!(converged(&r, 1) <= 1000, "{:?}", r.phases[1]);
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let mut s = scenario(24, 20, 9);
    s.net.loss = 0.05;
    s.net.jitter_ms = 3;
    s.ingress_loss = vec![(3, 0.2)];
    s.script = vec![
        step(5, Action::Join { count: 2 }),
        step(8, Action::Kill { count: 1 }),
    ];
    let a = run(&s);
    let b = run(&s);
    assert_eq!(a, b, "bit for bit");
    // On two threads (here every tick runs the nodes on both cores) the run
    // is the same too.
    let mut two = s.clone();
    two.threads = 2;
    two.parallel_from = 0;
    let c2 = run(&two);
    assert_eq!(a.digest, c2.digest, "two threads change nothing");
    assert_eq!(a.phases, c2.phases);
    s.seed = 10;
    let c = run(&s);
    assert_ne!(a.digest, c.digest);
}

/// The cold boot of the large-cluster issue: every node starts within one
/// second, 5 % of every copy is lost, the defaults otherwise (interval 2 s,
/// budget 1,000/s).
fn storm(nodes: usize, seconds: u64, seed: u64) -> Scenario {
    Scenario {
        nodes,
        duration_ms: seconds * 1000,
        seed,
        start_window_ms: 1000,
        net: NetConfig {
            loss: 0.05,
            ..NetConfig::default()
        },
        ..Scenario::default()
    }
}

#[test]
fn a_cold_boot_of_256_at_five_percent_loss_converges_stays_converged_and_costs_o_n() {
    let r = run(&storm(256, 60, 11));
    // Converged once the last start's asks were answered, and never a
    // live node lost afterwards.
    assert!(converged(&r, 0) <= 6000, "{:?}", r.phases[0]);
    assert_eq!(r.false_removals, 0);
    // At most 20 datagrams per node, where every node answering every
    // newcomer cost N each (and as many ARP resolutions).
    assert!(r.boot_sent <= 20 * 256, "{} datagrams", r.boot_sent);
    assert!(
        r.boot_unicast_pairs <= 256 / 4,
        "{} pairs",
        r.boot_unicast_pairs
    );
    // The steady state is the plain announcements: one per node per 2 s.
    assert!(r.steady.cluster_datagrams <= 256.0 / 2.0 * 1.05);
}

#[test]
fn a_join_costs_one_multicast_answer_of_n_over_36_datagrams_not_n_replies() {
    let sent = |nodes: usize| {
        let mut s = storm(nodes, 30, 12);
        s.net.loss = 0.0;
        s.script = vec![step(20, Action::Join { count: 1 })];
        let r = run(&s);
        let join = &r.phases[1];
        assert!(join
            .newcomers_complete_after_ms
            .is_some_and(|ms| ms <= 1000));
        converged(&r, 1);
        assert_eq!(join.unicast, 0, "answers go by multicast");
        join.sent
    };
    // The newcomer's burst, one answer (the first silences the other
    // candidates): an ANNOUNCE and N / 36 SYNCs, and the announcements of
    // the cluster meanwhile (N / 2 a second); never one reply per member.
    let (small, large) = (sent(64), sent(256));
    assert!(small <= 3 + 1 + 2 + 64, "{small} datagrams at 64 nodes");
    assert!(large <= 3 + 1 + 8 + 256, "{large} datagrams at 256 nodes");
}

#[test]
fn the_whole_cluster_keeps_its_budget_and_a_dead_node_goes_within_its_hold() {
    // 200 nodes and a budget of 40 announcements per second: every node
    // announces every 5 s instead of every second.
    let mut s = scenario(200, 120, 13);
    s.budget = 40;
    s.start_window_ms = 1000;
    s.script = vec![step(60, Action::Kill { count: 1 })];
    let r = run(&s);
    converged(&r, 0);
    // Announcements (and answers); the probes of the killed node (at most
    // one by each watcher and each helper it asks, once) are not
    // announcements.
    let steady_s = (s.duration_ms - r.steady_from_ms) as f64 / 1000.0;
    let probes = r.probes as f64 / steady_s;
    let per_silence = omdiscd::node::WATCHERS * (1 + omdiscd::node::HELPERS);
    assert!(r.probes <= per_silence as u64, "{} probes", r.probes);
    let steady = r.steady.cluster_datagrams - probes;
    assert!((36.0..=42.0).contains(&steady), "{steady} per second");
    // The hold follows the interval: 5 intervals of 5 s, times
    // 0.8 + log10(200) / 4; a kill is seen within it and one interval (of
    // probes), never before an interval.
    let hold = 5.0 * 5000.0 * omdiscd::node::hold_scale_permille(200) as f64 / 1000.0;
    let after = converged(&r, 1) as f64;
    assert!(
        after <= hold + 5000.0,
        "removed after {after} ms, hold {hold}"
    );
    assert!(after >= 5000.0, "removed after {after} ms");
    assert_eq!(r.false_removals, 0);
    assert_eq!(r.ghost_observations, 0);
}

#[test]
fn a_start_up_storm_into_small_slow_queues_degrades_but_does_not_collapse() {
    // 256 nodes in the same millisecond into receive queues of 32
    // datagrams, each node reading at most 400 a second: queues overflow.
    let mut s = storm(256, 60, 14);
    s.start_window_ms = 0;
    s.net.queue = 32;
    s.net.rx_rate = 400;
    let r = run(&s);
    assert!(r.queue_drops > 1000, "{} drops", r.queue_drops);
    // Overloaded nodes hold everyone longer and slow down: they converge,
    // and no live node is dropped for what a full queue lost.
    converged(&r, 0);
    assert_eq!(r.false_removals, 0);
    assert!(r.steady.cluster_datagrams <= 256.0 / 2.0 * 1.05);
}

/// Issue 8: six nodes with the daemon's defaults (interval 2 s, hold 10 s),
/// a loss-free network, and node 0 losing 30 % of everything that reaches it
/// (a bad NIC, a full socket buffer); what it sends arrives.
fn lossy_node(seconds: u64, seed: u64) -> Scenario {
    Scenario {
        nodes: 6,
        duration_ms: seconds * 1000,
        seed,
        ingress_loss: vec![(0, 0.30)],
        ..Scenario::default()
    }
}

#[test]
fn a_node_with_30_percent_ingress_loss_flaps_nobody_for_ten_minutes() {
    // Without probes node 0 drops a peer whenever it missed every
    // announcement of a whole hold (four or five in a row: 0.8 % or
    // 0.24 % of the time) and takes it back at the next one: 6 false
    // removals in this run (3 to 9 with seeds 1 to 10), all by node 0.
    // Its early checks would be worse (two missed in a row: 9 %), so it
    // finds itself lossy and leaves them to the others (local health).
    let r = run(&lossy_node(600, 15));
    assert!(r.ingress_lost > 0, "the ingress loss was applied");
    assert_eq!(r.lost, 0, "the network itself lost nothing");
    // Neither the lossy node drops its peers nor they drop it.
    assert_eq!(
        r.false_removals, 0,
        "by node {:?}, of node {:?}",
        r.false_removals_by, r.false_removals_of
    );
}

#[test]
fn a_killed_node_leaves_every_map_within_three_and_a_half_intervals_at_30_percent_loss() {
    let mut s = lossy_node(120, 17);
    s.script = vec![step(60, Action::Kill { count: 1 })];
    let r = run(&s);
    // One of the lossy node's peers (node 4): node 0, which hears it 30 %
    // less, must drop it in time too (it takes the others' notice), and
    // no map may keep it longer for having waited for an answer that
    // cannot come.
    assert_ne!(r.killed[0].node, 0, "{:?}", r.killed);
    killed_within_three_and_a_half_intervals(&r, u64::from(s.interval_ms));
    assert_eq!(r.ghost_observations, 0);
    assert_eq!(r.false_removals, 0);
}

#[test]
fn ingress_loss_loses_only_what_reaches_the_node() {
    // Node 0 hears nothing at all, but everyone hears it: its map never
    // holds anyone else, so the cluster never agrees.
    let mut s = lossy_node(30, 17);
    s.ingress_loss = vec![(0, 1.0)];
    let r = run(&s);
    assert!(r.ingress_lost > 0);
    assert_eq!(r.phases[0].converged_after_ms, None, "node 0 never agrees");
    // The others never drop node 0 (its announcements all arrive); node 0
    // never had anyone to drop.
    assert_eq!(r.false_removals, 0);
    // Without it the same run converges.
    s.ingress_loss.clear();
    let r = run(&s);
    converged(&r, 0);
    assert_eq!(r.ingress_lost, 0);
}

#[test]
fn impossible_scenarios_are_refused() {
    let mut s = scenario(70_000, 1, 1);
    assert!(sim::run(&s).is_err());
    s.nodes = 4;
    s.net.loss = 1.5;
    assert!(sim::run(&s).is_err());
    s.net.loss = 0.0;
    s.ingress_loss = vec![(4, 0.5)];
    assert!(sim::run(&s).is_err(), "node 4 never starts");
    s.ingress_loss = vec![(3, -0.1)];
    assert!(sim::run(&s).is_err());
    s.ingress_loss = vec![(3, 0.1), (3, 0.2)];
    assert!(sim::run(&s).is_err());
}
