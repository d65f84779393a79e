//! McastSocket on real kernel sockets.
//!
//! Network safety: every datagram here goes to 127.0.0.1, or to the group
//! with the output interface pinned to `lo`, or travels inside network
//! namespaces this test creates (and deletes on drop). Nothing touches eth0.

use std::ffi::CString;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use omdiscd::udp::{McastSocket, RecvBatch, DGRAM_BUF};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 42);
const LOCALHOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const WAIT: Duration = Duration::from_secs(5);

fn ifindex(name: &str) -> u32 {
    let c = CString::new(name).unwrap();
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(idx, 0, "no interface {name}");
    idx
}

fn lo() -> u32 {
    ifindex("lo")
}

/// Waits until `sock` is readable or `deadline` passes; false on timeout.
fn wait_readable(sock: &McastSocket, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: pfd is one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r > 0 {
            return true;
        }
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            panic!("poll: {}", std::io::Error::last_os_error());
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    data: Vec<u8>,
    src: SocketAddrV4,
    ifindex: u32,
    dst: Ipv4Addr,
    truncated: bool,
}

/// Reads until `n` datagrams arrived or `timeout` passed.
fn recv_n(sock: &McastSocket, batch: &mut RecvBatch, n: usize, timeout: Duration) -> Vec<Got> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n {
        let k = sock.recv_batch(batch).unwrap();
        if k == 0 {
            if !wait_readable(sock, deadline) {
                break;
            }
            continue;
        }
        for d in batch.iter() {
            out.push(Got {
                data: d.data.to_vec(),
                src: d.src,
                ifindex: d.ifindex,
                dst: d.dst,
                truncated: d.truncated,
            });
        }
    }
    out
}

/// Reads whatever is already queued, without waiting.
fn drain_now(sock: &McastSocket, batch: &mut RecvBatch) -> usize {
    let mut total = 0;
    loop {
        let k = sock.recv_batch(batch).unwrap();
        if k == 0 {
            return total;
        }
        total += k;
    }
}

/// A receiver joined to GROUP on lo, and a sender whose multicast defaults to lo.
fn lo_pair() -> (McastSocket, McastSocket) {
    let rx = McastSocket::open(0, 1 << 20).unwrap();
    rx.join(GROUP, lo()).unwrap();
    let tx = McastSocket::open(0, 0).unwrap();
    tx.set_default_interface(lo()).unwrap();
    (rx, tx)
}

#[test]
fn multicast_on_lo_arrives_with_pktinfo() {
    let (rx, tx) = lo_pair();
    let dst = SocketAddrV4::new(GROUP, rx.local_port());
    for i in 0..20u8 {
        tx.send(&[b'm', i, 0xAA, i], dst, Some(lo())).unwrap();
    }
    let mut batch = RecvBatch::new();
    let got = recv_n(&rx, &mut batch, 20, WAIT);
    assert_eq!(got.len(), 20);
    for (i, g) in got.iter().enumerate() {
        let i = i as u8;
        assert_eq!(g.data, [b'm', i, 0xAA, i]);
        // Multicast out of lo takes its source address from another
        // interface (127.0.0.1 is host-scope): only the port is ours to check.
        assert_eq!(g.src.port(), tx.local_port());
        assert_eq!(g.ifindex, lo());
        assert_eq!(g.dst, GROUP);
        assert!(!g.truncated);
    }
    // lo delivers synchronously: a duplicate would already be queued.
    assert_eq!(drain_now(&rx, &mut batch), 0);
    assert_eq!(batch.dropped_total(), 0);
}

#[test]
fn send_from_pins_the_source_address_on_lo() {
    let (rx, tx) = lo_pair();
    let dst = SocketAddrV4::new(GROUP, rx.local_port());
    tx.send_from(b"pinned", dst, lo(), Ipv4Addr::LOCALHOST)
        .unwrap();
    let mut batch = RecvBatch::new();
    let got = recv_n(&rx, &mut batch, 1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].src,
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, tx.local_port())
    );
    assert_eq!(got[0].ifindex, lo());
}

#[test]
fn default_interface_used_without_pktinfo() {
    let (rx, tx) = lo_pair();
    tx.send(
        b"default-if",
        SocketAddrV4::new(GROUP, rx.local_port()),
        None,
    )
    .unwrap();
    let mut batch = RecvBatch::new();
    let got = recv_n(&rx, &mut batch, 1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"default-if");
    assert_eq!(got[0].ifindex, lo());
    assert_eq!(got[0].dst, GROUP);
}

#[test]
fn oversized_datagram_reported_truncated() {
    let (rx, tx) = lo_pair();
    let big: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    tx.send(&big, SocketAddrV4::new(GROUP, rx.local_port()), Some(lo()))
        .unwrap();
    tx.send(
        b"after",
        SocketAddrV4::new(GROUP, rx.local_port()),
        Some(lo()),
    )
    .unwrap();
    let mut batch = RecvBatch::new();
    let got = recv_n(&rx, &mut batch, 2, WAIT);
    assert_eq!(got.len(), 2);
    assert!(got[0].truncated);
    assert_eq!(got[0].data, big[..DGRAM_BUF]);
    assert!(!got[1].truncated);
    assert_eq!(got[1].data, b"after");
}

#[test]
fn unicast_to_port_arrives_with_local_dst() {
    let (rx, tx) = lo_pair();
    tx.send(b"uni", SocketAddrV4::new(LOCALHOST, rx.local_port()), None)
        .unwrap();
    let mut batch = RecvBatch::new();
    let got = recv_n(&rx, &mut batch, 1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"uni");
    assert_eq!(got[0].dst, LOCALHOST);
    assert_eq!(got[0].ifindex, lo());
    assert_eq!(got[0].src, SocketAddrV4::new(LOCALHOST, tx.local_port()));
}

#[test]
fn rejoin_and_releave_are_ok() {
    let rx = McastSocket::open(0, 0).unwrap();
    rx.join(GROUP, lo()).unwrap();
    rx.join(GROUP, lo()).unwrap();
    rx.leave(GROUP, lo()).unwrap();
    rx.leave(GROUP, lo()).unwrap();
    rx.set_multicast_ttl(1).unwrap();
}

#[test]
fn left_group_no_longer_delivered() {
    let (rx, tx) = lo_pair();
    rx.leave(GROUP, lo()).unwrap();
    tx.send(
        b"mcast",
        SocketAddrV4::new(GROUP, rx.local_port()),
        Some(lo()),
    )
    .unwrap();
    tx.send(
        b"marker",
        SocketAddrV4::new(LOCALHOST, rx.local_port()),
        None,
    )
    .unwrap();
    let mut batch = RecvBatch::new();
    let got = recv_n(&rx, &mut batch, 1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"marker");
    assert_eq!(drain_now(&rx, &mut batch), 0);
}

#[test]
fn own_send_loops_back() {
    let s = McastSocket::open(0, 0).unwrap();
    s.join(GROUP, lo()).unwrap();
    s.send(
        b"self",
        SocketAddrV4::new(GROUP, s.local_port()),
        Some(lo()),
    )
    .unwrap();
    let mut batch = RecvBatch::new();
    let got = recv_n(&s, &mut batch, 1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"self");
    assert_eq!(got[0].src.port(), s.local_port());
    assert_eq!(got[0].ifindex, lo());
}

#[test]
fn multicast_all_off_unjoined_socket_hears_nothing() {
    let (rx, tx) = lo_pair();
    // Same port, SO_REUSEADDR, but never joined.
    let other = McastSocket::open(rx.local_port(), 0).unwrap();
    assert_eq!(other.local_port(), rx.local_port());
    tx.send(
        b"only-rx",
        SocketAddrV4::new(GROUP, rx.local_port()),
        Some(lo()),
    )
    .unwrap();
    let mut batch = RecvBatch::new();
    let got = recv_n(&rx, &mut batch, 1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"only-rx");
    assert_eq!(drain_now(&other, &mut batch), 0);
}

#[test]
fn rcvbuf_granted_as_root() {
    let s = McastSocket::open(0, 4 << 20).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(
            s.granted_rcvbuf() >= 1 << 20,
            "granted {}",
            s.granted_rcvbuf()
        );
    }
    let d = McastSocket::open(0, 0).unwrap();
    assert!(d.granted_rcvbuf() > 0);
}

#[test]
fn overflow_drops_are_counted() {
    // The smallest buffer the kernel allows: a few datagrams fit.
    let rx = McastSocket::open(0, 1).unwrap();
    let tx = McastSocket::open(0, 0).unwrap();
    let dst = SocketAddrV4::new(LOCALHOST, rx.local_port());
    let payload = [0x5Au8; 76];
    const SENT: usize = 200;
    for _ in 0..SENT {
        tx.send(&payload, dst, None).unwrap();
    }
    let mut batch = RecvBatch::new();
    let mut received = drain_now(&rx, &mut batch);
    // The counter rides on the next datagram queued after the drops.
    tx.send(b"last", dst, None).unwrap();
    let got = recv_n(&rx, &mut batch, 1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"last");
    received += 1;
    let dropped = batch.dropped_total() as usize;
    assert!(dropped > 0, "received {received}, nothing dropped");
    assert_eq!(received + dropped, SENT + 1);
}

#[test]
fn batch_reads_at_most_eight_and_small_batch_works() {
    let (rx, tx) = lo_pair();
    let dst = SocketAddrV4::new(GROUP, rx.local_port());
    for i in 0..11u8 {
        tx.send(&[i], dst, Some(lo())).unwrap();
    }
    assert!(wait_readable(&rx, Instant::now() + WAIT));
    let mut batch: RecvBatch = RecvBatch::new();
    assert_eq!(rx.recv_batch(&mut batch).unwrap(), 8);
    assert_eq!(batch.len(), 8);
    assert!(batch.get(8).is_none());
    assert_eq!(batch.get(7).unwrap().data, [7]);
    let mut one: RecvBatch<1> = RecvBatch::new();
    let mut rest = Vec::new();
    while rest.len() < 3 {
        match rx.recv_batch(&mut one).unwrap() {
            0 => assert!(wait_readable(&rx, Instant::now() + WAIT)),
            1 => rest.push(one.get(0).unwrap().data[0]),
            n => panic!("batch of 1 returned {n}"),
        }
    }
    assert_eq!(rest, [8, 9, 10]);
}

// ---- network namespaces -------------------------------------------------

mod common;

#[test]
fn multicast_crosses_a_veth_link_between_namespaces() {
    // Two hosts of a lab (tests/common): namespaces, veths and a bridge that
    // the host's own stack never sees, removed even when the test fails.
    let lab = common::Lab::new();
    let br = lab.bridge();
    let (n1, n2) = (lab.node("a"), lab.node("b"));
    lab.link(n1, br, common::Lab::addr(br, 1), 24);
    lab.link(n2, br, common::Lab::addr(br, 2), 24);

    const PORT: u16 = 47042;
    let open = || (McastSocket::open(PORT, 1 << 20).unwrap(), ifindex("eth0"));
    let (a, a_if) = lab.in_netns(n1, open);
    let (b, b_if) = lab.in_netns(n2, open);
    b.join(GROUP, b_if).unwrap();
    // A hears its own announcements through IP_MULTICAST_LOOP.
    a.join(GROUP, a_if).unwrap();

    let dst = SocketAddrV4::new(GROUP, PORT);
    let mut batch = RecvBatch::new();
    // The link may need a moment after coming up: resend until B hears one.
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut sent = 0;
    while got.is_empty() && Instant::now() < deadline {
        a.send(b"over-veth", dst, Some(a_if)).unwrap();
        sent += 1;
        got = recv_n(&b, &mut batch, 1, Duration::from_millis(200));
    }
    assert_eq!(got.len(), 1, "nothing crossed the veth after {sent} sends");
    assert_eq!(got[0].data, b"over-veth");
    assert_eq!(got[0].ifindex, b_if);
    assert_eq!(got[0].dst, GROUP);
    assert_eq!(
        got[0].src,
        SocketAddrV4::new(common::Lab::addr(br, 1), PORT)
    );

    let own = recv_n(&a, &mut batch, sent, WAIT);
    assert_eq!(own.len(), sent, "own copies looped back");
    assert!(own
        .iter()
        .all(|g| g.data == b"over-veth" && g.ifindex == a_if && g.dst == GROUP));
}
