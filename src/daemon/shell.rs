//! The core's [`Actions`] as syscalls: sending, publishing the map, and
//! the log lines of its events.
#![forbid(unsafe_code)]

use std::fmt::{self};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::control::Change;
use crate::log::{Level, Limit};
use crate::map::Collision;
use crate::node::{Actions, Datagram, Dest, Event, Overload, Publish, Published};
use crate::procfs::KernelError;
use crate::sys::{monotonic_ms, IoErr};
use crate::udp::McastSocket;
use crate::{mapfile, notice, warn};

use super::{realtime_s, Shell, CHANGE_LOG_BURST, LOG_LIMIT_MS, VERSION};

impl Shell {
    pub(super) fn kernel_failed(&mut self, e: KernelError) {
        crate::log::limited(
            Limit::KernelError,
            LOG_LIMIT_MS,
            Level::Error,
            format_args!("handing the map to the kernel: {e}; retrying"),
        );
    }
}

impl Actions for Shell {
    fn send(&mut self, d: &Datagram<'_>) -> bool {
        let dst = match d.to {
            Dest::Group => self.group,
            Dest::Node(ip) => SocketAddrV4::new(ip, self.group.port()),
        };
        match send_from(&self.sock, d.bytes, dst, d.ifindex, d.src) {
            Ok(()) => true,
            Err(e) => {
                crate::log::limited(
                    Limit::SendError,
                    LOG_LIMIT_MS,
                    Level::Warn,
                    format_args!("sending to {dst} failed: {}", IoErr(&e)),
                );
                false
            }
        }
    }

    fn publish(&mut self, p: &Publish<'_>) -> Published {
        let mut r = Published::default();
        // The change lines first: a reader who sees the new map file (or
        // a watcher) finds them logged already.
        if p.changes && self.control.watched() {
            let (now, time_s) = (monotonic_ms(), u64::from(realtime_s()));
            let own = p.map.own_id();
            for n in p.map.joined().filter(|n| n.id != own) {
                self.control.broadcast(&Change::Joined(n), now, time_s);
            }
            for n in p.map.left() {
                self.control.broadcast(&Change::Left(n), now, time_s);
            }
        }
        if p.changes {
            let now = monotonic_ms();
            if self.change_logs.take_per(now, 1, CHANGE_LOG_BURST, 60_000) {
                mapfile::change_log(p.map, |line| notice!("{line}"));
            } else {
                let own = p.map.own_id();
                crate::log::limited(
                    Limit::Changes,
                    LOG_LIMIT_MS,
                    Level::Notice,
                    format_args!(
                        "openMosix configuration changed: This is openMosix #{own} (of {} configured); the map changes often, so not every change is listed",
                        p.map.len()
                    ),
                );
            }
        }
        if p.file {
            if let Err(e) = self.writer.write(p.map, VERSION) {
                crate::log::limited(
                    Limit::PublishError,
                    LOG_LIMIT_MS,
                    Level::Error,
                    format_args!("writing {}: {}", self.map_file.display(), IoErr(&e)),
                );
                r.file_failed = true;
            }
        }
        if p.kernel {
            // SIGCHLD is the usual way to learn that setpe ended, but a
            // process signal can go to another thread (tests) or coalesce:
            // look anyway. An earlier failure is superseded by this publish.
            let now = monotonic_ms();
            self.poll_setpe(now);
            if let Err(e) = self.kernel.publish(p.map.own_id(), now) {
                self.kernel_failed(e);
                r.kernel_failed = true;
            }
        }
        if p.changes {
            if let Some(hook) = &mut self.hook {
                hook.changed(p.map, monotonic_ms());
            }
        }
        r
    }

    fn event(&mut self, _now_ms: u64, e: Event) {
        let limited = |key, level, args: fmt::Arguments<'_>| {
            crate::log::limited(key, LOG_LIMIT_MS, level, args)
        };
        match e {
            Event::Dropped { src, error } => limited(
                Limit::BadPacket,
                Level::Warn,
                format_args!("dropped a packet from {src}: {error}"),
            ),
            Event::ForeignCluster { addr } => limited(
                Limit::Foreign,
                Level::Info,
                format_args!("ignoring node {addr} of another cluster"),
            ),
            Event::Collision(c) => {
                if self.control.watched() {
                    let time_s = u64::from(realtime_s());
                    self.control
                        .broadcast(&Change::Collision(c), monotonic_ms(), time_s);
                }
                let (limit, level) = collision_log(&c);
                limited(limit, level, format_args!("{}", mapfile::CollisionLine(c)));
            }
            Event::Duplicate(d) if d.own => limited(
                Limit::Collision,
                Level::Error,
                format_args!(
                    "another node announces this node's address {} (an address conflict, or a second omdiscd on this host); the cluster keeps the one that started later",
                    d.addr
                ),
            ),
            Event::Duplicate(d) => limited(
                Limit::Collision,
                Level::Warn,
                format_args!(
                    "two nodes announce {} (an address conflict, or two omdiscd on one host): keeping the one that started later",
                    d.addr
                ),
            ),
            Event::Refused { src, why } => limited(
                Limit::Refused,
                Level::Warn,
                format_args!("refused a message from {src}: {}", why.name()),
            ),
            Event::Unsigned { src } => limited(
                Limit::Unsigned,
                Level::Info,
                format_args!("accepted an unsigned message from {src} (--auth permissive)"),
            ),
            Event::IdFree { id } => limited(
                Limit::Collision,
                Level::Notice,
                format_args!("node id #{id} is free again: rejoining the cluster"),
            ),
            Event::Joined { id, addr } => limited(
                Limit::Joined,
                Level::Debug,
                format_args!("node #{id} ({addr}) joined"),
            ),
            Event::Lonely { intervals } => warn!(
                "no other node heard for {intervals} intervals on {}: if this is not the only node, check that multicast {} reaches this host (a switch with IGMP snooping and no querier drops it; so does a firewall)",
                self.ifaces.first().map_or("?", |i| i.name.as_str()),
                self.group,
            ),
            Event::Overloaded { why, interval_ms } => {
                let every = crate::log::Secs(u64::from(interval_ms));
                let then = "holding every node longer and announcing every";
                match why {
                    Overload::Dropped(n) => limited(
                        Limit::Overload,
                        Level::Warn,
                        format_args!("overloaded: the kernel dropped {n} datagrams (receive buffer full); {then} {every} s until it recovers"),
                    ),
                    Overload::Late(ms) => limited(
                        Limit::Overload,
                        Level::Warn,
                        format_args!("overloaded: ran {} s late; {then} {every} s until it recovers", crate::log::Secs(ms)),
                    ),
                    Overload::Behind => limited(
                        Limit::Overload,
                        Level::Warn,
                        format_args!("overloaded: datagrams arrive faster than they are read; {then} {every} s until it recovers"),
                    ),
                }
            }
            Event::AddressChanged { old, new } => notice!(
                "address changed from {old} to {new}: leaving as #{} and joining as #{}",
                crate::wire::node_id_of(old),
                crate::wire::node_id_of(new)
            ),
            Event::NoAddress => {
                warn!("no IPv4 address on any interface: not announcing until one returns")
            }
            Event::InvalidAddress { new, keeping } => warn!(
                "new address {new} gives the invalid openMosix node id 0: keeping {keeping} until that changes"
            ),
            Event::LocalHealth { lossy: true, loss_percent } => warn!(
                "this node missed {loss_percent} % of its peers' announcements in the last {} s: it leaves checking silent nodes and telling deaths to the others until that improves (check its link)",
                crate::node::HEALTH_WINDOW_MS / 1000
            ),
            Event::LocalHealth { lossy: false, loss_percent } => notice!(
                "this node missed {loss_percent} % of its peers' announcements in the last {} s: it checks silent nodes again",
                crate::node::HEALTH_WINDOW_MS / 1000
            ),
        }
    }
}

/// Sends with `src` pinned as the source address, so peers see (and reply
/// to) the address on that link, also on `lo`.
fn send_from(
    sock: &McastSocket,
    buf: &[u8],
    dst: SocketAddrV4,
    ifindex: u32,
    src: Option<Ipv4Addr>,
) -> io::Result<()> {
    let Some(src) = src else {
        return sock.send(buf, dst, Some(ifindex));
    };
    match sock.send_from(buf, dst, ifindex, src) {
        // The address went away under us (netlink will tell us soon): let
        // the kernel pick a source rather than lose the datagram.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EADDRNOTAVAIL | libc::ENETUNREACH | libc::EINVAL)
            ) =>
        {
            sock.send(buf, dst, Some(ifindex))
        }
        r => r,
    }
}

/// The rate-limit slot and level of a node-id collision's log line
/// ([`mapfile::CollisionLine`]). The node that lost its own id says so as
/// an error; a move and a refused claim have slots of their own, so that a
/// refused claim logged just before does not hide the move that follows it
/// (an earlier claim after a later one).
fn collision_log(c: &Collision) -> (Limit, Level) {
    match c {
        c if c.own_lost => (Limit::IdLost, Level::Error),
        c if c.replaced => (Limit::IdMoved, Level::Warn),
        _ => (Limit::Collision, Level::Warn),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_own_id_is_an_error_and_a_move_says_where_the_id_went() {
        let (a, b) = (Ipv4Addr::new(10, 0, 1, 5), Ipv4Addr::new(10, 9, 1, 5));
        let refused = Collision {
            id: 261,
            winner: a,
            loser: b,
            replaced: false,
            own_lost: false,
            first_report: true,
        };
        let line = mapfile::CollisionLine(refused);
        assert_eq!(collision_log(&refused), (Limit::Collision, Level::Warn));
        assert!(line
            .to_string()
            .starts_with("node id collision: #261 (0x0105) is claimed by 10.0.1.5 and 10.9.1.5; 10.0.1.5 keeps it"));
        let moved = Collision {
            winner: b,
            loser: a,
            replaced: true,
            ..refused
        };
        let line = mapfile::CollisionLine(moved);
        assert_eq!(collision_log(&moved), (Limit::IdMoved, Level::Warn));
        assert!(line.to_string().starts_with(
            "node id collision: #261 (0x0105) moves from 10.0.1.5 to 10.9.1.5, which started first"
        ));
        let lost = Collision {
            own_lost: true,
            ..moved
        };
        let line = mapfile::CollisionLine(lost);
        assert_eq!(collision_log(&lost), (Limit::IdLost, Level::Error));
        assert!(line
            .to_string()
            .starts_with("lost node id #261 (0x0105) to 10.9.1.5, which started first: this node (10.0.1.5) is out of the cluster"));
    }
}
