//! Interfaces and addresses: resolving them over netlink at start, and
//! following their changes (the netlink monitor) while running.
#![forbid(unsafe_code)]

use std::fmt;
use std::net::Ipv4Addr;

use arrayvec::ArrayVec;

use crate::config::Config;
use crate::log::{Level, Limit};
use crate::netlink::{self, Netlink};
use crate::node::MAX_INTERFACES;
use crate::node::{Input, Link};
use crate::sys::{monotonic_ms, IoErr};
use crate::{notice, warn};

use super::error::StartError;
use super::{Daemon, IfName, Iface, LOG_LIMIT_MS};

impl Iface {
    fn link(&self) -> Link {
        Link {
            index: self.index,
            addr: self.addr,
            up: self.up,
        }
    }
}

/// This host's IPv4 addresses on the `-i` interfaces (else the default
/// route's), for `--static-map` to find this node in its map; none when
/// they cannot be read (a static map needs no network).
pub(crate) fn local_addrs(cfg: &Config) -> ArrayVec<Ipv4Addr, 8> {
    let mut out = ArrayVec::new();
    let Ok(mut nl) = Netlink::open() else {
        return out;
    };
    let mut wanted = ArrayVec::<IfName, MAX_INTERFACES>::new();
    for name in &cfg.interfaces {
        let mut s = IfName::new();
        let _ = s.push_str(name);
        wanted.push(s);
    }
    let Ok(ifaces) = resolve(&mut nl, &wanted) else {
        return out;
    };
    let mut addrs = ArrayVec::new();
    for i in &ifaces {
        if nl.ipv4_addrs(i.index, &mut addrs).is_ok() {
            for &a in &addrs {
                let _ = out.try_push(a);
            }
        }
    }
    out
}

/// Addresses for the log: `a, b`, or `none`.
pub(crate) struct AddrList<'a>(pub(crate) &'a [Ipv4Addr]);

impl fmt::Display for AddrList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none found");
        }
        for (i, a) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{a}")?;
        }
        Ok(())
    }
}

/// The core's view of the interfaces.
pub(super) fn links_of(ifaces: &[Iface]) -> ArrayVec<Link, MAX_INTERFACES> {
    ifaces.iter().map(Iface::link).collect()
}

impl Daemon {
    pub(super) fn join_groups(&mut self) {
        let group = *self.io.group.ip();
        for (i, iface) in self.io.ifaces.iter().enumerate() {
            if (self.routed && i > 0) || !iface.up {
                continue;
            }
            if let Err(e) = self.io.sock.join(group, iface.index) {
                crate::log::limited(
                    Limit::NetlinkError,
                    LOG_LIMIT_MS,
                    Level::Warn,
                    format_args!("joining {group} on {}: {}", iface.name, IoErr(&e)),
                );
            }
        }
    }

    pub(super) fn on_netlink(&mut self) {
        let mut relevant = false;
        let ours: ArrayVec<u32, MAX_INTERFACES> = self.io.ifaces.iter().map(|i| i.index).collect();
        let explicit = self.explicit;
        // A named interface that is gone may come back under a new index:
        // then any new link or address may be it.
        let missing = explicit && self.io.ifaces.iter().any(|i| i.index == 0);
        let mut link_changes: ArrayVec<(u32, bool), 16> = ArrayVec::new();
        let r = self.monitor.read_events(|ev| match ev {
            netlink::Event::Link { ifindex, up, .. } => {
                if ours.contains(&ifindex) {
                    let _ = link_changes.try_push((ifindex, up));
                } else if missing {
                    relevant = true;
                }
            }
            netlink::Event::LinkRemoved { ifindex } => {
                if ours.contains(&ifindex) {
                    let _ = link_changes.try_push((ifindex, false));
                    // Gone, not just down: its index is no longer ours.
                    relevant = true;
                }
            }
            netlink::Event::AddrAdded { ifindex, .. }
            | netlink::Event::AddrRemoved { ifindex, .. } => {
                if ours.contains(&ifindex) || missing {
                    relevant = true;
                }
            }
            netlink::Event::DefaultRouteAdded { .. }
            | netlink::Event::DefaultRouteRemoved { .. } => {
                if !explicit {
                    relevant = true;
                }
            }
            netlink::Event::Overrun => relevant = true,
        });
        if let Err(e) = r {
            crate::log::limited(
                Limit::NetlinkError,
                LOG_LIMIT_MS,
                Level::Warn,
                format_args!("reading netlink events: {e}"),
            );
            relevant = true;
        }
        for (ifindex, up) in link_changes {
            self.on_link(ifindex, up);
        }
        if relevant {
            self.resolve_pending = true;
        }
    }

    fn on_link(&mut self, ifindex: u32, up: bool) {
        let Some(pos) = self.io.ifaces.iter().position(|i| i.index == ifindex) else {
            return;
        };
        if self.io.ifaces[pos].up == up {
            return;
        }
        self.io.ifaces[pos].up = up;
        let name = self.io.ifaces[pos].name.clone();
        if up {
            notice!("link {name} is up: re-joining and announcing");
            self.join_groups();
            // An address may have come or gone while the link was down.
            self.resolve_pending = true;
        } else {
            warn!("link {name} is down: not announcing on it");
        }
        let links = links_of(&self.io.ifaces);
        self.core
            .handle(monotonic_ms(), Input::Links(&links), &mut self.io);
    }

    /// Re-reads interfaces and addresses (SIGHUP, netlink changes) and hands
    /// them to the core, which decides what a new address means.
    pub(super) fn reresolve(&mut self) {
        let fresh = if self.explicit {
            resolve_lenient(&mut self.nl, &self.wanted)
        } else {
            match resolve(&mut self.nl, &self.wanted) {
                Ok(f) => Some(f),
                Err(StartError::NoDefaultRoute) => {
                    crate::log::limited(
                        Limit::Route,
                        LOG_LIMIT_MS,
                        Level::Warn,
                        format_args!(
                            "no default route any more; staying on {}",
                            self.io.ifaces[0].name
                        ),
                    );
                    // Keep the interface but re-read its address.
                    let wanted: ArrayVec<IfName, MAX_INTERFACES> =
                        self.io.ifaces.iter().map(|i| i.name.clone()).collect();
                    resolve_lenient(&mut self.nl, &wanted)
                }
                Err(e) => {
                    crate::log::limited(
                        Limit::Route,
                        LOG_LIMIT_MS,
                        Level::Warn,
                        format_args!("re-reading the default interface: {e}"),
                    );
                    None
                }
            }
        };
        let Some(fresh) = fresh else { return };
        // Named interfaces keep their places in the list.
        let named = self.explicit.then_some(self.io.ifaces.iter().zip(&fresh));
        for (old, new) in named.into_iter().flatten() {
            if old.index == new.index {
                continue;
            }
            if new.index == 0 {
                warn!(
                    "interface {} was removed: not announcing on it until it is back",
                    old.name
                );
            } else {
                notice!(
                    "interface {} is back (index {}): re-joining and announcing",
                    new.name,
                    new.index
                );
            }
        }
        let group = *self.io.group.ip();
        for old in &self.io.ifaces {
            if !fresh.iter().any(|f| f.index == old.index) {
                let _ = self.io.sock.leave(group, old.index);
            }
        }
        self.io.ifaces = fresh;
        if let Some(first) = self.io.ifaces.first() {
            let _ = self.io.sock.set_default_interface(first.index);
        }
        self.join_groups();
        let links = links_of(&self.io.ifaces);
        self.core
            .handle(monotonic_ms(), Input::Links(&links), &mut self.io);
    }
}

/// Finds the interfaces (named, or the default route's) with their
/// addresses. Any problem is an error: used at start-up.
pub(super) fn resolve(
    nl: &mut Netlink,
    wanted: &ArrayVec<IfName, MAX_INTERFACES>,
) -> Result<ArrayVec<Iface, MAX_INTERFACES>, StartError> {
    let nl_err = StartError::Netlink;
    let mut out = ArrayVec::new();
    if wanted.is_empty() {
        let route = nl.default_route().map_err(nl_err)?;
        let Some(route) = route else {
            return Err(StartError::NoDefaultRoute);
        };
        let link = nl.link(route.ifindex).map_err(nl_err)?;
        let Some(link) = link else {
            return Err(StartError::NoDefaultRoute);
        };
        let addr = nl.primary_ipv4(link.ifindex).map_err(nl_err)?;
        if addr.is_none() || !link.up {
            return Err(StartError::NoDefaultRoute);
        }
        out.push(Iface {
            name: link.name.clone(),
            index: link.ifindex,
            addr,
            up: link.up,
        });
        return Ok(out);
    }
    for name in wanted {
        let fail = |reason| StartError::Interface {
            name: name.clone(),
            reason,
        };
        let link = nl
            .link_by_name(name)
            .map_err(nl_err)?
            .ok_or_else(|| fail("no such interface"))?;
        if !link.up {
            return Err(fail("link is down"));
        }
        let addr = nl
            .primary_ipv4(link.ifindex)
            .map_err(nl_err)?
            .ok_or_else(|| fail("has no IPv4 address"))?;
        if crate::wire::node_id_of(addr) == 0 && out.is_empty() {
            return Err(fail(
                "its address ends in .0.0, which gives the invalid node id 0",
            ));
        }
        out.push(Iface {
            name: link.name.clone(),
            index: link.ifindex,
            addr: Some(addr),
            up: true,
        });
    }
    Ok(out)
}

/// Like [`resolve`] for named interfaces, but keeps going: a missing, down
/// or address-less interface stays in the list, marked so. Used while running.
fn resolve_lenient(
    nl: &mut Netlink,
    wanted: &ArrayVec<IfName, MAX_INTERFACES>,
) -> Option<ArrayVec<Iface, MAX_INTERFACES>> {
    let mut out = ArrayVec::new();
    for name in wanted {
        let link = match nl.link_by_name(name) {
            Ok(l) => l,
            Err(_) => return None,
        };
        let (index, up, addr) = match link {
            Some(l) => (l.ifindex, l.up, nl.primary_ipv4(l.ifindex).ok().flatten()),
            None => (0, false, None),
        };
        out.push(Iface {
            name: name.clone(),
            index,
            addr,
            up,
        });
    }
    Some(out)
}
