//! `--static-nodes FILE`: a hand-written map's nodes as permanent members
//! of the map, next to discovery (see [`crate::map::ClusterMap`]'s pinned
//! nodes). Read once, at start-up.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::path::Path;

use arrayvec::ArrayVec;

use crate::info;
use crate::mapfile;

use super::StartError;

/// `--static-nodes`: reads the hand-written map at `path` and makes its
/// nodes permanent members of `core`'s map, next to discovery. Each node
/// must have an IPv4 address whose last two octets are its id (the map is
/// indexed by that rule, and an announcement of the address must land on
/// the same entry); an alias line must name a node of the file.
pub(super) fn pin_nodes(path: &Path, core: &mut crate::node::Core) -> Result<(), StartError> {
    let fail = |why: String| StartError::static_map(path, why);
    let bytes = crate::procfs::read_map_file(path)
        .map_err(|e| fail(format!("cannot read it: {}", crate::sys::IoErr(&e))))?;
    let map = mapfile::parse(&bytes).map_err(|e| fail(e.to_string()))?;
    let mut nodes: Vec<(Ipv4Addr, ArrayVec<Ipv4Addr, { crate::wire::MAX_ALIASES }>)> = Vec::new();
    for r in &map.ranges {
        let Ok(first) = r.addr.parse::<Ipv4Addr>() else {
            return Err(fail(format!(
                "node #{} is at the host name {}: --static-nodes takes IPv4 addresses (omdiscd resolves no names)",
                r.first, r.addr
            )));
        };
        for k in 0..r.count {
            // The parser keeps a range within ids and addresses.
            let addr = Ipv4Addr::from(u32::from(first) + k);
            let id = r.first + k as crate::map::NodeId;
            let natural = crate::wire::node_id_of(addr);
            if natural != id {
                return Err(fail(format!(
                    "node #{id} is at {addr}, whose node id is #{natural} (the last two octets): with discovery, ids follow the addresses"
                )));
            }
            nodes.push((addr, ArrayVec::new()));
        }
    }
    for (id, alias) in &map.aliases {
        let alias = alias.parse::<Ipv4Addr>().map_err(|_| {
            fail(format!(
                "an alias of node #{id} is the host name {alias}: --static-nodes takes IPv4 addresses"
            ))
        })?;
        let node = nodes
            .iter_mut()
            .find(|(a, _)| crate::wire::node_id_of(*a) == *id)
            .ok_or_else(|| {
                fail(format!(
                    "alias {alias} of node #{id}, which the file does not list"
                ))
            })?;
        node.1.try_push(alias).map_err(|_| {
            fail(format!(
                "node #{id} has more than {} aliases",
                crate::wire::MAX_ALIASES
            ))
        })?;
    }
    for (addr, aliases) in &nodes {
        core.pin(*addr, aliases).map_err(|holder| {
            fail(format!(
                "node #{} ({addr}) has this node's id, and this node is {holder}",
                crate::wire::node_id_of(*addr)
            ))
        })?;
    }
    info!(
        "static nodes {}: {} permanent members (never expired); discovery adds the rest",
        path.display(),
        nodes.len()
    );
    Ok(())
}
