//! rtnetlink against the real kernel. Tests that need a routing setup build it in their own
//! network namespace (removed by a Drop guard even when the test fails) and run their
//! netlink code on a thread that has joined that namespace, so the host is never touched.
//!
//! Set `OMDNL_CAPTURE=DIR` to save the raw kernel replies seen here (fuzz seeds).

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use omdiscd::netlink::{DefaultRoute, Event, Netlink};

mod common;

/// One node of a lab (tests/common): a namespace of its own, removed even
/// when the test fails.
struct NetNs {
    lab: common::Lab,
    node: common::NodeId,
}

impl NetNs {
    fn new() -> NetNs {
        let lab = common::Lab::new();
        let node = lab.node("nl");
        NetNs { lab, node }
    }

    /// `ip -n NAME args...`, which must succeed.
    fn ip(&self, args: &[&str]) {
        self.lab.ip(self.node, args);
    }

    /// A link that behaves like a dummy interface (the kernel here has no dummy driver): one
    /// end of a veth pair whose peer is also up, so it has carrier.
    fn add_link(&self, name: &str, cidr: &str) {
        let peer = format!("{name}p");
        self.ip(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
        self.ip(&["link", "set", &peer, "up"]);
        self.ip(&["link", "set", name, "up"]);
        self.ip(&["addr", "add", cidr, "dev", name]);
    }

    /// Runs `f` on a thread that has moved into this namespace; sockets it opens stay there.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.lab.in_netns(self.node, f)
    }
}

thread_local! {
    /// Datagrams received on this thread since the last `capture`.
    static TAPPED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn tap(datagram: &[u8]) {
    TAPPED.with(|t| t.borrow_mut().extend_from_slice(datagram));
}

/// Opens a request socket whose received datagrams are recorded for `capture`.
fn open() -> Netlink {
    let mut nl = Netlink::open().unwrap();
    nl.set_tap(Some(tap));
    nl
}

/// Forgets what was recorded so far.
fn clear_capture() {
    TAPPED.with(|t| t.borrow_mut().clear());
}

/// Saves the datagrams recorded since the last capture as a fuzz seed when
/// `OMDNL_CAPTURE` is set (netlink datagrams concatenated are still a valid message run).
fn capture(name: &str) {
    let bytes = TAPPED.with(|t| std::mem::take(&mut *t.borrow_mut()));
    if let Some(dir) = std::env::var_os("OMDNL_CAPTURE") {
        std::fs::write(std::path::Path::new(&dir).join(name), bytes).expect("write capture");
    }
}

fn ifindex(nl: &mut Netlink, name: &str) -> u32 {
    nl.link_by_name(name).unwrap().expect(name).ifindex
}

const fn a(o3: u8, o4: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, o3, o4)
}

#[test]
fn loopback_in_current_namespace() {
    let mut nl = open();
    clear_capture();
    let lo = nl.link_by_name("lo").unwrap().expect("lo");
    capture("link-lo");
    assert_eq!(lo.ifindex, 1);
    assert_eq!(lo.name.as_str(), "lo");
    assert!(lo.up && lo.loopback);
    assert_eq!(nl.link(1).unwrap(), Some(lo));
    // Only loopback addresses: the first (a single-machine try).
    assert_eq!(nl.primary_ipv4(1).unwrap(), Some(Ipv4Addr::LOCALHOST));
}

#[test]
fn missing_links_are_none() {
    let mut nl = open();
    clear_capture();
    assert_eq!(nl.link_by_name("nonexistent0").unwrap(), None);
    capture("error-enodev");
    assert_eq!(nl.link_by_name("a-name-far-too-long").unwrap(), None);
    assert_eq!(nl.link_by_name("").unwrap(), None);
    assert_eq!(nl.link(0).unwrap(), None);
    assert_eq!(nl.link(0x7fff_fff0).unwrap(), None);
    assert_eq!(nl.link(u32::MAX).unwrap(), None);
    // The request socket stays usable after a kernel error.
    assert_eq!(nl.link(1).unwrap().unwrap().ifindex, 1);
}

#[test]
fn current_namespace_dumps_parse() {
    // Whatever the host has, the dumps must parse; the answer itself is not checked.
    let mut nl = open();
    nl.default_route().unwrap();
    let mut out = ArrayVec::new();
    nl.ipv4_addrs(1, &mut out).unwrap();
}

#[test]
fn fresh_namespace_has_no_default_route() {
    let ns = NetNs::new();
    ns.run(|| {
        let mut nl = open();
        assert_eq!(nl.default_route().unwrap(), None);
        let mut out = ArrayVec::new();
        nl.ipv4_addrs(1, &mut out).unwrap();
        assert_eq!(out.as_slice(), &[Ipv4Addr::LOCALHOST]);
    });
}

#[test]
fn default_route_follows_the_link() {
    let ns = NetNs::new();
    ns.add_link("dummy0", "198.18.7.5/24");
    ns.ip(&["route", "add", "default", "via", "198.18.7.1"]);
    ns.run(|| {
        let mut nl = open();
        let idx = ifindex(&mut nl, "dummy0");
        clear_capture();
        let route = nl.default_route().unwrap();
        capture("route-dump");
        assert_eq!(
            route,
            Some(DefaultRoute {
                ifindex: idx,
                metric: 0,
                gateway: Some(a(7, 1)),
            })
        );
        let link = nl.link(idx).unwrap().unwrap();
        assert_eq!(link.name.as_str(), "dummy0");
        assert!(link.up && link.running && link.multicast && !link.loopback);
        assert_eq!(nl.primary_ipv4(idx).unwrap(), Some(a(7, 5)));
    });
}

#[test]
fn lowest_metric_default_wins() {
    let ns = NetNs::new();
    ns.add_link("dummy0", "198.18.7.5/24");
    ns.add_link("dummy1", "198.18.8.5/24");
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        "198.18.7.1",
        "metric",
        "100",
    ]);
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        "198.18.8.1",
        "metric",
        "50",
    ]);
    ns.run(|| {
        let mut nl = open();
        let idx1 = ifindex(&mut nl, "dummy1");
        clear_capture();
        let route = nl.default_route().unwrap().unwrap();
        capture("route-dump-two-defaults");
        assert_eq!(route.ifindex, idx1);
        assert_eq!(route.metric, 50);
        assert_eq!(route.gateway, Some(a(8, 1)));
    });
}

#[test]
fn multipath_default_uses_first_nexthop() {
    let ns = NetNs::new();
    ns.add_link("dummy0", "198.18.7.5/24");
    ns.add_link("dummy1", "198.18.8.5/24");
    ns.ip(&[
        "route",
        "add",
        "default",
        "nexthop",
        "via",
        "198.18.7.1",
        "dev",
        "dummy0",
        "nexthop",
        "via",
        "198.18.8.1",
        "dev",
        "dummy1",
    ]);
    ns.run(|| {
        let mut nl = open();
        let idx0 = ifindex(&mut nl, "dummy0");
        clear_capture();
        let route = nl.default_route().unwrap().unwrap();
        capture("route-dump-multipath");
        assert_eq!(route.ifindex, idx0);
        assert_eq!(route.gateway, Some(a(7, 1)));
    });
}

#[test]
fn primary_address_comes_first() {
    let ns = NetNs::new();
    ns.add_link("dummy0", "198.18.7.5/24");
    ns.ip(&["addr", "add", "198.18.7.6/24", "dev", "dummy0"]);
    ns.ip(&["addr", "add", "198.18.9.5/24", "dev", "dummy0"]);
    ns.run(|| {
        let mut nl = open();
        let idx = ifindex(&mut nl, "dummy0");
        let mut out = ArrayVec::new();
        clear_capture();
        nl.ipv4_addrs(idx, &mut out).unwrap();
        capture("addr-dump");
        // Primaries (one per subnet) first, then the secondary.
        assert_eq!(out.as_slice(), &[a(7, 5), a(9, 5), a(7, 6)]);
        assert_eq!(nl.primary_ipv4(idx).unwrap(), Some(a(7, 5)));
        let lo = nl.link_by_name("lo").unwrap().unwrap();
        assert_eq!(lo.ifindex, 1);
    });
}

/// Polls the monitor until an event matching `want` arrives, or panics at the deadline.
fn wait_for(mon: &mut Netlink, seen: &mut Vec<Event>, want: Event) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if seen.contains(&want) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {want:?} before the deadline; saw {seen:?}"
        );
        let mut pfd = libc::pollfd {
            fd: mon.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, 10_000) as libc::c_int;
        // SAFETY: `pfd` is one live pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        assert!(r >= 0, "poll: {}", std::io::Error::last_os_error());
        mon.read_events(|e| seen.push(e)).unwrap();
    }
}

#[test]
fn monitor_reports_changes() {
    let ns = NetNs::new();
    ns.add_link("dummy0", "198.18.7.5/24");
    ns.ip(&["route", "add", "default", "via", "198.18.7.1"]);
    ns.run(|| {
        let mut nl = open();
        let idx = ifindex(&mut nl, "dummy0");
        let mut mon = Netlink::open_monitor().unwrap();
        mon.set_tap(Some(tap));
        let mut seen = Vec::new();
        clear_capture();
        // Nothing pending yet: draining returns at once.
        mon.read_events(|e| seen.push(e)).unwrap();

        ns.ip(&["addr", "add", "198.18.7.9/24", "dev", "dummy0"]);
        let added = Event::AddrAdded {
            ifindex: idx,
            addr: a(7, 9),
        };
        wait_for(&mut mon, &mut seen, added);

        ns.ip(&["addr", "del", "198.18.7.9/24", "dev", "dummy0"]);
        let removed = Event::AddrRemoved {
            ifindex: idx,
            addr: a(7, 9),
        };
        wait_for(&mut mon, &mut seen, removed);

        ns.ip(&["route", "del", "default"]);
        let gone = Event::DefaultRouteRemoved { ifindex: idx };
        wait_for(&mut mon, &mut seen, gone);

        ns.ip(&["route", "add", "default", "via", "198.18.7.1"]);
        let back = Event::DefaultRouteAdded { ifindex: idx };
        wait_for(&mut mon, &mut seen, back);

        ns.ip(&["link", "set", "dummy0", "down"]);
        let down = Event::Link {
            ifindex: idx,
            up: false,
            running: false,
        };
        wait_for(&mut mon, &mut seen, down);

        ns.ip(&["link", "del", "dummy0"]);
        let deleted = Event::LinkRemoved { ifindex: idx };
        wait_for(&mut mon, &mut seen, deleted);

        capture("event-batch");
        assert!(!seen.contains(&Event::Overrun), "{seen:?}");
    });
}
