//! The daemon's counters and gauges, named once: the [`Counters`] struct the
//! core counts in, and `TABLE`, every statistic with its name, help text,
//! kind and SIGUSR1 label. `--stats` (text, JSON, Prometheus),
//! `--metrics-file` and the SIGUSR1 lines are all rendered from the table.
//!
//! A counter is added in two places next to each other: its field here in
//! `counters!` and its row in `TABLE`; a test checks that every field is
//! read by some row.
#![forbid(unsafe_code)]

use core::fmt;

use crate::child::Runs;
use crate::control::{Stat, Stats};
use crate::map::MapStats;
use crate::wire::ParseError;

/// Defines [`Counters`] and, for the tests, the list of its fields.
macro_rules! counters {
    ($(#[$m:meta])* pub struct Counters { $( $(#[$doc:meta])* pub $field:ident: $ty:ty, )* }) => {
        $(#[$m])*
        pub struct Counters { $( $(#[$doc])* pub $field: $ty, )* }

        #[cfg(test)]
        impl Counters {
            /// The fields, in order.
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// All zero but field `i` (of [`Counters::FIELDS`]).
            fn only(i: usize) -> Counters {
                let mut c = Counters::default();
                let mut k = 0;
                $(
                    if k == i {
                        c.$field = tests::One::ONE;
                    }
                    k += 1;
                )*
                let _ = k;
                c
            }
        }
    };
}

counters! {
/// Packet and event counters, kept by the core ([`crate::node::Core::counters`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub received: u64,
    pub sent: u64,
    pub send_errors: u64,
    pub dropped: [u64; ParseError::COUNT],
    pub foreign_cluster: u64,
    pub own_looped: u64,
    pub relayed: u64,
    /// Announcements that asked for the map.
    pub asks: u64,
    /// Answers sent (an ANNOUNCE with `REPLY`, then the map in SYNCs, by
    /// multicast).
    pub answers: u64,
    /// SYNC datagrams sent.
    pub syncs: u64,
    /// Pending answers dropped because another member answered first.
    pub suppressed: u64,
    /// Times this node found itself overloaded.
    pub overloads: u64,
    pub kernel_overflows: u32,
    pub publishes: u64,
    /// A signed message with a wrong MAC.
    pub auth_failed: u64,
    /// An unsigned message (accepted in `permissive`, refused in `enforce`).
    pub unsigned: u64,
    /// An authenticated message that was not new (see [`crate::node::Refusal::Replayed`]).
    pub replayed: u64,
    /// A message signed with a key id this node does not have.
    pub unknown_key: u64,
    /// A message whose source address does not fit (see [`crate::node::Refusal::Spoofed`]).
    pub spoofed: u64,
    /// A SYNC from a non-member.
    pub not_member: u64,
    /// Answers not sent because of the rate limit.
    pub answers_limited: u64,
    /// Probes sent to nodes whose hold ran out, and replies to probes.
    pub probes: u64,
    pub probe_replies: u64,
    /// Silences this node checked as one of the node's watchers.
    pub suspected: u64,
    /// Members asked to check a silent node (indirect probes), and asks of
    /// others answered.
    pub indirect_asks: u64,
    pub asks_answered: u64,
    /// Deaths this node confirmed and told, nodes it removed on others'
    /// death notices, and notices about itself it refuted.
    pub deaths_confirmed: u64,
    pub death_notices: u64,
    pub refutations: u64,
}
}

/// Everything a statistic's value is read from.
pub(crate) struct Sample<'a> {
    pub(crate) core: &'a Counters,
    pub(crate) map: &'a MapStats,
    pub(crate) setpe: Runs,
    pub(crate) hook: Runs,
    pub(crate) watchers_dropped: u64,
    pub(crate) nodes: u64,
    pub(crate) interval_ms: u32,
    pub(crate) uptime_s: u64,
}

/// A counter (only grows) or a gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// Where SIGUSR1 logs a statistic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Log {
    /// Not logged.
    No,
    /// On the first `counters:` line, as `LABEL VALUE`.
    First(&'static str),
    /// On the second `counters:` line (what was refused), as `LABEL VALUE`.
    Second(&'static str),
    /// One `NAME REASON: VALUE` line per reason with a non-zero value.
    Reasons,
}

/// How a statistic's value is read.
#[derive(Clone, Copy)]
enum Value {
    One(fn(&Sample<'_>) -> u64),
    /// One value per [`ParseError`], labelled with its name.
    ByReason(fn(&Sample<'_>, ParseError) -> u64),
}

/// One statistic.
struct Entry {
    /// Snake case, without the `omdiscd_` prefix and the `_total` suffix.
    name: &'static str,
    help: &'static str,
    kind: Kind,
    log: Log,
    value: Value,
}

const fn counter(
    name: &'static str,
    help: &'static str,
    log: Log,
    value: fn(&Sample<'_>) -> u64,
) -> Entry {
    Entry {
        name,
        help,
        kind: Kind::Counter,
        log,
        value: Value::One(value),
    }
}

const fn gauge(name: &'static str, help: &'static str, value: fn(&Sample<'_>) -> u64) -> Entry {
    Entry {
        name,
        help,
        kind: Kind::Gauge,
        log: Log::No,
        value: Value::One(value),
    }
}

use Log::{First, No, Second};

/// Every statistic, in the order `--stats` lists them.
static TABLE: [Entry; 42] = [
    counter("received", "Datagrams received.", First("received"), |s| {
        s.core.received
    }),
    counter("sent", "Datagrams sent.", First("sent"), |s| s.core.sent),
    counter(
        "send_errors",
        "Sends that failed.",
        First("send errors"),
        |s| s.core.send_errors,
    ),
    counter(
        "relayed",
        "Announcements relayed to the other interfaces.",
        First("relayed"),
        |s| s.core.relayed,
    ),
    counter(
        "asks",
        "Announcements heard that asked for the map.",
        First("asks"),
        |s| s.core.asks,
    ),
    counter(
        "answers",
        "Answers sent to nodes asking for the map.",
        First("answers"),
        |s| s.core.answers,
    ),
    counter(
        "syncs",
        "SYNC datagrams sent.",
        First("SYNC datagrams"),
        |s| s.core.syncs,
    ),
    counter(
        "answers_suppressed",
        "Answers not sent because another member answered first.",
        First("answers suppressed"),
        |s| s.core.suppressed,
    ),
    counter(
        "answers_limited",
        "Answers not sent because of the rate limits.",
        First("answers limited"),
        |s| s.core.answers_limited,
    ),
    counter(
        "probes",
        "Probes sent to silent nodes.",
        First("probes"),
        |s| s.core.probes,
    ),
    counter(
        "probe_replies",
        "Replies sent to probes.",
        First("probe replies"),
        |s| s.core.probe_replies,
    ),
    counter(
        "suspected",
        "Silent nodes this node checked as one of their watchers.",
        First("suspected"),
        |s| s.core.suspected,
    ),
    counter(
        "indirect_asks",
        "Members asked to check a silent node.",
        First("indirect asks"),
        |s| s.core.indirect_asks,
    ),
    counter(
        "asks_answered",
        "Other members' asks to check a silent node answered.",
        First("asks answered"),
        |s| s.core.asks_answered,
    ),
    counter(
        "deaths_confirmed",
        "Deaths this node confirmed and multicast.",
        First("deaths confirmed"),
        |s| s.core.deaths_confirmed,
    ),
    counter(
        "death_notices",
        "Nodes removed on another member's death notice.",
        First("death notices"),
        |s| s.core.death_notices,
    ),
    counter(
        "refutations",
        "Death notices about this node it refuted with an announcement.",
        First("refutations"),
        |s| s.core.refutations,
    ),
    counter(
        "overloads",
        "Times this node found itself overloaded.",
        First("overloads"),
        |s| s.core.overloads,
    ),
    counter(
        "foreign_cluster",
        "Messages of another cluster label.",
        First("foreign cluster"),
        |s| s.core.foreign_cluster,
    ),
    counter("own_looped", "Own messages heard back.", No, |s| {
        s.core.own_looped
    }),
    counter(
        "kernel_drops",
        "Datagrams the kernel dropped (receive buffer full).",
        First("kernel drops"),
        |s| u64::from(s.core.kernel_overflows),
    ),
    counter("publishes", "Maps published.", First("publishes"), |s| {
        s.core.publishes
    }),
    counter(
        "collisions",
        "Node id collisions seen.",
        First("collisions"),
        |s| s.map.collisions,
    ),
    counter(
        "duplicates",
        "Messages from a second live node with one address.",
        First("duplicates"),
        |s| s.map.duplicates,
    ),
    counter(
        "stale",
        "Messages older than what the map has.",
        First("stale"),
        |s| s.map.stale,
    ),
    counter(
        "expired",
        "Nodes dropped after their hold time and probes.",
        First("expired"),
        |s| s.map.expired,
    ),
    counter(
        "auth_failed",
        "Signed messages with a wrong MAC.",
        Second("auth_failed"),
        |s| s.core.auth_failed,
    ),
    counter("unsigned", "Unsigned messages.", Second("unsigned"), |s| {
        s.core.unsigned
    }),
    counter(
        "replayed",
        "Authenticated messages that were not new.",
        Second("replayed"),
        |s| s.core.replayed,
    ),
    counter(
        "unknown_key",
        "Messages signed with an unknown key id.",
        Second("unknown_key"),
        |s| s.core.unknown_key,
    ),
    counter(
        "spoofed",
        "Messages whose source address does not fit.",
        Second("spoofed"),
        |s| s.core.spoofed,
    ),
    counter(
        "not_member",
        "SYNCs from nodes not in the map.",
        Second("not_member"),
        |s| s.core.not_member,
    ),
    counter("setpe_runs", "setpe runs started.", No, |s| s.setpe.started),
    counter(
        "setpe_failures",
        "setpe runs that failed, timed out or did not start.",
        No,
        |s| s.setpe.failed + s.setpe.timed_out + s.setpe.not_started,
    ),
    counter("hook_runs", "--on-change runs started.", No, |s| {
        s.hook.started
    }),
    counter(
        "watchers_dropped",
        "--watch clients disconnected because they read too slowly.",
        No,
        |s| s.watchers_dropped,
    ),
    counter(
        "hook_failures",
        "--on-change runs that failed, timed out or did not start.",
        No,
        |s| s.hook.failed + s.hook.timed_out + s.hook.not_started,
    ),
    counter(
        "child_timeouts",
        "Child programs killed after their time ran out.",
        No,
        |s| s.setpe.timed_out + s.hook.timed_out,
    ),
    Entry {
        name: "dropped",
        help: "Malformed datagrams dropped, by reason.",
        kind: Kind::Counter,
        log: Log::Reasons,
        value: Value::ByReason(|s, e| s.core.dropped[e.index()]),
    },
    gauge("nodes", "Nodes in the map, this one included.", |s| s.nodes),
    gauge(
        "interval_milliseconds",
        "This node's announcement interval.",
        |s| u64::from(s.interval_ms),
    ),
    gauge("uptime_seconds", "Seconds since the daemon started.", |s| {
        s.uptime_s
    }),
];

impl Sample<'_> {
    /// Every statistic's value, for `--stats` and `--metrics-file`.
    pub(crate) fn stats(&self) -> Stats {
        let mut out = Stats::new();
        for entry in &TABLE {
            let stat = |reason, value| Stat {
                name: entry.name,
                reason,
                help: entry.help,
                value,
                gauge: entry.kind == Kind::Gauge,
            };
            match entry.value {
                Value::One(f) => {
                    let _ = out.push(stat(None, f(self)));
                }
                Value::ByReason(f) => {
                    for e in ParseError::ALL {
                        let _ = out.push(stat(Some(e.name()), f(self, e)));
                    }
                }
            }
        }
        out
    }

    /// The first SIGUSR1 line after `counters: `: the node count, the
    /// interval, then every [`Log::First`] statistic.
    pub(crate) fn first_line(&self) -> Line<'_> {
        Line(self, false)
    }

    /// The second SIGUSR1 line after `counters: `: every [`Log::Second`] statistic.
    pub(crate) fn second_line(&self) -> Line<'_> {
        Line(self, true)
    }

    /// The [`Log::Reasons`] statistics: `(name, reason, value)` for every
    /// non-zero value, one SIGUSR1 line each.
    pub(crate) fn reasons(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        TABLE.iter().flat_map(move |entry| {
            ParseError::ALL
                .into_iter()
                .filter_map(move |e| match entry.value {
                    Value::ByReason(f) if entry.log == Log::Reasons => {
                        let v = f(self, e);
                        (v > 0).then_some((entry.name, e.name(), v))
                    }
                    _ => None,
                })
        })
    }
}

/// One SIGUSR1 `counters:` line (see [`Sample::first_line`]).
pub(crate) struct Line<'a>(&'a Sample<'a>, bool);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Line(s, second) = *self;
        let mut sep = "";
        if !second {
            write!(
                f,
                "{} nodes, interval {} s",
                s.nodes,
                crate::log::Secs(u64::from(s.interval_ms))
            )?;
            sep = ", ";
        }
        for entry in &TABLE {
            let label = match (entry.log, second) {
                (Log::First(label), false) | (Log::Second(label), true) => label,
                _ => continue,
            };
            let Value::One(value) = entry.value else {
                continue;
            };
            write!(f, "{sep}{label} {}", value(s))?;
            sep = ", ";
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The value 1 of a counter field's type.
    pub(crate) trait One {
        const ONE: Self;
    }
    impl One for u64 {
        const ONE: u64 = 1;
    }
    impl One for u32 {
        const ONE: u32 = 1;
    }
    impl One for [u64; ParseError::COUNT] {
        const ONE: Self = [1; ParseError::COUNT];
    }

    fn sample(core: &Counters) -> Sample<'_> {
        static MAP: MapStats = MapStats {
            collisions: 0,
            stale: 0,
            expired: 0,
            duplicates: 0,
            heard: 0,
            missed: 0,
        };
        Sample {
            core,
            map: &MAP,
            setpe: Runs::default(),
            hook: Runs::default(),
            watchers_dropped: 0,
            nodes: 0,
            interval_ms: 0,
            uptime_s: 0,
        }
    }

    #[test]
    fn every_field_of_counters_is_in_the_table() {
        let zero = Counters::default();
        assert!(sample(&zero).stats().iter().all(|s| s.value == 0));
        for (i, field) in Counters::FIELDS.iter().enumerate() {
            let c = Counters::only(i);
            let s = sample(&c);
            assert!(
                s.stats().iter().any(|s| s.value != 0),
                "Counters::{field} is not in counters::TABLE"
            );
        }
    }

    #[test]
    fn the_outputs_list_every_statistic() {
        let c = Counters::default();
        let s = sample(&c);
        let stats = s.stats();
        let mut listed = stats.iter().map(|s| s.name);
        for entry in &TABLE {
            let n = match entry.value {
                Value::One(_) => 1,
                Value::ByReason(_) => ParseError::COUNT,
            };
            for _ in 0..n {
                assert_eq!(listed.next(), Some(entry.name));
            }
        }
        assert_eq!(listed.next(), None);
        assert!(stats.len() < stats.capacity(), "Stats is too small");
        let (first, second) = (s.first_line().to_string(), s.second_line().to_string());
        assert!(first.starts_with("0 nodes, interval 0 s, received 0, "));
        assert!(second.starts_with("auth_failed 0, "));
        for entry in &TABLE {
            match entry.log {
                Log::First(label) => assert!(first.contains(&format!(" {label} 0"))),
                Log::Second(label) => assert!(second.contains(&format!("{label} 0"))),
                Log::No | Log::Reasons => {}
            }
        }
        let mut one = Counters::default();
        one.dropped[ParseError::ALL[0].index()] = 2;
        let reasons: Vec<_> = sample(&one).reasons().collect();
        assert_eq!(reasons, [("dropped", ParseError::ALL[0].name(), 2)]);
    }
}
