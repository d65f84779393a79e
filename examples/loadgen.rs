//! Load generator for measuring omdiscd (used by `scripts/measure`).
//!
//! ```text
//! loadgen send --port P [--to 10.77.0.1] [--net 10.77.0.0] [--nodes N] [--stride S]
//!              [--count K] [--rate PPS] [--duration SECS] [--stamp T] [--key-file F]
//! loadgen sink --port P [--batch B] [--like-daemon]
//! ```
//!
//! `send` builds valid protocol v1 ANNOUNCEs (with `omdiscd::wire::Repr`), each
//! with the 24-byte trailer (100 bytes), for N distinct nodes in the /16 of
//! `--net`: node id `i` is `A.B.(i >> 8).(i & 255)`, ids 2, 2+S, 2+2S, ... (the
//! default S = 1 gives consecutive ids and addresses, which the map file
//! compresses into one line; S = 2 gives one map file line per node). It sends
//! K of them round-robin, each node's sequence number increasing by one per
//! round, as unicast UDP to `--to:--port`: as fast as possible (`sendmmsg`, 64
//! a call), or paced at `--rate` packets per second; `--duration` stops early.
//!
//! Every ANNOUNCE leaves from the address it announces, as the receiver rules
//! ask of a direct message: each message of a `sendmmsg` batch carries its own
//! `IP_PKTINFO` control message whose `ipi_spec_dst` is that node's address and
//! whose `ipi_ifindex` is `lo`, so nothing leaves the host. The node addresses
//! must be local: `scripts/measure` runs this in a private network namespace
//! with 10.77.0.1/16 on `lo` (on `lo` the whole /16 is local).
//!
//! The trailer's `stamp` (the sender's start time) is `--stamp` (default: now,
//! in seconds since 1970) and the incarnation is new per run, so a later run
//! with a larger stamp replaces the nodes of an earlier one (a restart). Without
//! `--key-file` the messages are unsigned (key id 0, as `--auth off` sends
//! them); with it, each is signed with the first key of that file
//! (`omdiscd::auth::Keyring`), after its sequence number is set.
//!
//! It prints one `loadgen: ...` line and one machine-readable
//! `loadgen-result ...` line.
//!
//! `sink` is the baseline receiver: it binds 0.0.0.0:P (as the daemon does)
//! with the daemon's receive buffer size and only reads datagrams (`recv`, or
//! `recvmmsg` of B when `--batch B` > 1), until 500 ms pass without one after
//! the first. It prints what it received, its kernel drop count (from
//! /proc/net/udp) and its CPU time.
//!
//! `sink --like-daemon` reads like the daemon instead: the daemon's socket
//! (`omdiscd::udp::McastSocket::open`, so the same options: `IP_PKTINFO`,
//! `SO_RXQ_OVFL`, `IP_MULTICAST_ALL` 0, non-blocking, the same receive
//! buffer), the daemon's group joined on `lo`, one epoll wait per wake-up
//! (`omdiscd::sys::Epoll`), then `recvmmsg` of 8 (`McastSocket::recv_batch`:
//! source address, `IP_PKTINFO` and `SO_RXQ_OVFL` control messages read for
//! every datagram) until a read returns fewer than 8, as the daemon's
//! `on_readable` does; each datagram's first byte, source and interface are
//! looked at, nothing else. Its CPU is the kernel's work for what the daemon
//! asks of the socket plus the loop's skeleton: what the daemon spends
//! beyond it is the protocol's.
use std::io;
use std::mem::{self, size_of};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::exit;
use std::ptr;
use std::time::{Duration, Instant, SystemTime};

use omdiscd::auth::Keyring;
use omdiscd::wire::{field, Auth, Label, MessageType, Repr, ANNOUNCE_LEN, MAC_LEN, TRAILER_LEN};

/// An ANNOUNCE without aliases, with its trailer.
const MSG_LEN: usize = ANNOUNCE_LEN + TRAILER_LEN;
const SEND_BATCH: usize = 64;
const MAX_BATCH: usize = 64;
const BUF_LEN: usize = 2048;
/// The daemon's receive buffer (`RCVBUF_BYTES` in src/daemon/start.rs).
const RCVBUF: libc::c_int = 4 << 20;
/// The highest node id: A.B.255.255 would be the broadcast address of the /16.
const MAX_ID: usize = 65_534;
/// Room for one `IP_PKTINFO` cmsg (`CMSG_SPACE` of 12 bytes: 32 on 64-bit).
const CMSG_LEN: usize = 32;

/// A control-message buffer aligned like `cmsghdr`, as `CMSG_FIRSTHDR` assumes.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_LEN]);

struct Opts {
    port: u16,
    to: Ipv4Addr,
    net: Ipv4Addr,
    nodes: usize,
    count: u64,
    rate: Option<f64>,
    duration: Option<f64>,
    batch: usize,
    like_daemon: bool,
    stride: usize,
    stamp: u32,
    key_file: Option<PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen send --port P [--to 10.77.0.1] [--net 10.77.0.0] [--nodes N] [--stride S] [--count K]\n                    [--rate PPS] [--duration SECS] [--stamp T] [--key-file F]\n       loadgen sink --port P [--batch B] [--like-daemon]"
    );
    exit(2)
}

fn value<T: std::str::FromStr>(opt: &str, v: &str) -> T {
    v.parse().unwrap_or_else(|_| {
        eprintln!("loadgen: bad value for {opt}: {v}");
        exit(2)
    })
}

fn now_s() -> u32 {
    let s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    u32::try_from(s).unwrap_or(u32::MAX).max(1)
}

fn parse_opts(args: &[String]) -> Opts {
    let mut o = Opts {
        port: 0,
        to: Ipv4Addr::new(10, 77, 0, 1),
        net: Ipv4Addr::new(10, 77, 0, 0),
        nodes: 1000,
        count: 1_000_000,
        rate: None,
        duration: None,
        batch: 1,
        like_daemon: false,
        stride: 1,
        stamp: now_s(),
        key_file: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--like-daemon" {
            o.like_daemon = true;
            continue;
        }
        let v = it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => o.port = value(a, v),
            "--to" => o.to = value(a, v),
            "--net" => o.net = value(a, v),
            "--nodes" => o.nodes = value(a, v),
            "--count" => o.count = value(a, v),
            "--rate" => o.rate = Some(value(a, v)),
            "--duration" => o.duration = Some(value(a, v)),
            "--batch" => o.batch = value(a, v),
            "--stride" => o.stride = value(a, v),
            "--stamp" => o.stamp = value(a, v),
            "--key-file" => o.key_file = Some(PathBuf::from(v)),
            _ => usage(),
        }
    }
    if o.port == 0 {
        usage();
    }
    let [a, b, _, _] = o.net.octets();
    let [ta, tb, _, _] = o.to.octets();
    if !(o.to.is_loopback() || (ta, tb) == (a, b)) {
        eprintln!(
            "loadgen: refusing to send to {}: only to 127.0.0.0/8 or {a}.{b}.0.0/16 (the nodes' own /16 on lo)",
            o.to
        );
        exit(2);
    }
    if o.nodes == 0 || o.stride == 0 || (o.nodes - 1).saturating_mul(o.stride) > MAX_ID - 2 {
        eprintln!("loadgen: --nodes N and --stride S need 1 <= N, 1 <= S, 2 + (N-1)*S <= {MAX_ID}");
        exit(2);
    }
    if o.stamp == 0 {
        eprintln!("loadgen: --stamp must be at least 1");
        exit(2);
    }
    if o.batch == 0 || o.batch > MAX_BATCH {
        eprintln!("loadgen: --batch must be 1 ..= {MAX_BATCH}");
        exit(2);
    }
    o
}

/// The address of node `i` of the run: A.B.hi.lo of its id.
fn node_addr(o: &Opts, i: usize) -> Ipv4Addr {
    let id = u16::try_from(2 + i * o.stride).expect("checked by parse_opts");
    let [a, b, _, _] = o.net.octets();
    let [hi, lo] = id.to_be_bytes();
    Ipv4Addr::new(a, b, hi, lo)
}

/// One encoded ANNOUNCE per node, unsigned; the sequence field is patched
/// (and the message signed) per packet.
fn templates(o: &Opts) -> Vec<[u8; MSG_LEN]> {
    let incarnation = std::process::id() | 1;
    (0..o.nodes)
        .map(|i| {
            let mut repr = Repr::new(
                MessageType::Announce,
                node_addr(o, i),
                incarnation,
                Label::DEFAULT,
                2_000,
                600_000,
            );
            repr.auth = Some(Auth {
                key_id: 0,
                stamp: o.stamp,
                mac: [0; MAC_LEN],
            });
            let mut buf = [0u8; MSG_LEN];
            let n = repr.emit(&mut buf).expect("valid ANNOUNCE");
            assert_eq!(n, MSG_LEN);
            buf
        })
        .collect()
}

fn sockaddr_in(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is a plain C struct (with padding); all zeroes is valid.
    let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from_ne_bytes(ip.octets());
    sa
}

/// Writes an `IP_PKTINFO` cmsg (out of `ifindex`, from `src`) into `cbuf`
/// and points `h` at it.
fn set_pktinfo(h: &mut libc::msghdr, cbuf: &mut CmsgBuf, ifindex: u32, src: Ipv4Addr) {
    let info = libc::in_pktinfo {
        ipi_ifindex: ifindex as libc::c_int,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from_ne_bytes(src.octets()),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) } as usize;
    assert!(space <= CMSG_LEN);
    h.msg_control = cbuf.0.as_mut_ptr().cast();
    h.msg_controllen = space as _;
    // SAFETY: msg_control points at CMSG_LEN (>= space) bytes aligned for
    // cmsghdr, so the first header and its data fit.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(h);
        (*cmsg).cmsg_level = libc::IPPROTO_IP;
        (*cmsg).cmsg_type = libc::IP_PKTINFO;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
        ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::in_pktinfo>(), info);
    }
}

/// Exits unless this host can send from the first and last node address.
fn check_local(o: &Opts) {
    for addr in [node_addr(o, 0), node_addr(o, o.nodes - 1)] {
        if let Err(e) = UdpSocket::bind((addr, 0)) {
            eprintln!(
                "loadgen: cannot send from {addr} ({e}): the nodes' addresses must be local; run in a network namespace with {}/16 on lo (see scripts/measure)",
                o.to
            );
            exit(1);
        }
    }
}

fn send(o: &Opts) {
    check_local(o);
    let keys = o.key_file.as_ref().map(|p| {
        Keyring::load(p).unwrap_or_else(|e| {
            eprintln!("loadgen: key file {}: {e}", p.display());
            exit(1)
        })
    });
    // SAFETY: the name is a NUL-terminated C string.
    let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    if lo == 0 {
        eprintln!("loadgen: no interface lo");
        exit(1);
    }
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
    let mut dst = sockaddr_in(o.to, o.port);
    let tpl = templates(o);
    let addrs: Vec<Ipv4Addr> = (0..o.nodes).map(|i| node_addr(o, i)).collect();
    let rate = o.rate.filter(|r| *r > 0.0);
    // Paced: about one call per millisecond.
    let batch = match rate {
        Some(r) => ((r / 1000.0) as usize).clamp(1, SEND_BATCH),
        None => SEND_BATCH,
    };
    let deadline = o.duration.map(Duration::from_secs_f64);
    let mut bufs = vec![[0u8; MSG_LEN]; SEND_BATCH];
    let mut cbufs = vec![CmsgBuf([0; CMSG_LEN]); SEND_BATCH];
    // SAFETY: iovec is a plain C struct; all zeroes (a null pointer) is valid.
    let mut iov: Vec<libc::iovec> = vec![unsafe { mem::zeroed() }; SEND_BATCH];
    // SAFETY: mmsghdr is a plain C struct; all zeroes (null pointers) is valid.
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { mem::zeroed() }; SEND_BATCH];
    let (mut sent, mut errors, mut k) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while k < o.count {
        let elapsed = start.elapsed();
        if deadline.is_some_and(|d| elapsed >= d) {
            break;
        }
        if let Some(r) = rate {
            let due = Duration::from_secs_f64(k as f64 / r);
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
        let n = batch.min((o.count - k) as usize);
        for j in 0..n {
            let p = k + j as u64;
            let node = (p % o.nodes as u64) as usize;
            let seq = (p / o.nodes as u64) as u32 + 1;
            bufs[j] = tpl[node];
            bufs[j][field::SEQUENCE].copy_from_slice(&seq.to_be_bytes());
            if let Some(keys) = &keys {
                keys.sign(&mut bufs[j]);
            }
            iov[j] = libc::iovec {
                iov_base: bufs[j].as_mut_ptr().cast(),
                iov_len: MSG_LEN,
            };
            let h = &mut hdrs[j].msg_hdr;
            h.msg_name = ptr::addr_of_mut!(dst).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut iov[j];
            h.msg_iovlen = 1;
            set_pktinfo(h, &mut cbufs[j], lo, addrs[node]);
        }
        let mut off = 0;
        while off < n {
            // SAFETY: hdrs[off..n] point at live names, iovecs, buffers and
            // control buffers, which the kernel only reads.
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    hdrs[off..].as_mut_ptr(),
                    (n - off) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                // E.g. ENOBUFS: skip one packet.
                errors += 1;
                off += 1;
            } else {
                off += r as usize;
                sent += r as u64;
            }
        }
        k += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let signed = match (&keys, &o.key_file) {
        (Some(k), Some(p)) => format!(
            "signed with key {} of {}",
            k.ids().next().unwrap_or(0),
            p.display()
        ),
        _ => "unsigned".to_string(),
    };
    println!(
        "loadgen: sent {sent} ANNOUNCEs ({} nodes {}..={} step {}, {MSG_LEN} bytes, {signed}, stamp {}) to {}:{} in {secs:.3} s: {:.0} packets/s, send errors {errors}",
        o.nodes,
        addrs[0],
        addrs[o.nodes - 1],
        o.stride,
        o.stamp,
        o.to,
        o.port,
        sent as f64 / secs
    );
    println!("loadgen-result sent={sent} secs={secs:.6} errors={errors}");
}

/// Kernel drops of the UDP socket bound to `port`, from /proc/net/udp.
fn socket_drops(port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/udp").ok()?;
    let want = format!(":{port:04X}");
    text.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.get(1)?.ends_with(&want)).then(|| cols.last()?.parse().ok())?
    })
}

fn cpu_secs() -> (f64, f64) {
    // SAFETY: rusage is a plain C struct; all zeroes is valid.
    let mut ru: libc::rusage = unsafe { mem::zeroed() };
    // SAFETY: `ru` is a live, writable rusage that getrusage fills.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

/// `sink --like-daemon`: the daemon's socket, epoll wait and read loop, and
/// nothing of the protocol (see the module comment).
fn sink_like_daemon(o: &Opts) {
    use omdiscd::config::Config;
    use omdiscd::sys::{event_token, Epoll, EMPTY_EVENT};
    use omdiscd::udp::{McastSocket, RecvBatch, BATCH};

    let fail = |what: &str, e: io::Error| -> ! {
        eprintln!("loadgen sink: {what}: {e}");
        exit(1)
    };
    let sock = McastSocket::open(o.port, RCVBUF as usize).unwrap_or_else(|e| fail("socket", e));
    let lo = nix::net::if_::if_nametoindex("lo").unwrap_or(1);
    if let Err(e) = sock.join(Config::default().group, lo) {
        fail("joining the group on lo", e);
    }
    let epoll = Epoll::new().unwrap_or_else(|e| fail("epoll", e));
    epoll
        .add(sock.as_raw_fd(), 1, libc::EPOLLIN as u32)
        .unwrap_or_else(|e| fail("epoll add", e));
    println!("sink-ready port={}", o.port);

    let reads_per_wakeup = omdiscd::node::READ_AT_ONCE / BATCH;
    let mut batch: RecvBatch = RecvBatch::new();
    let (mut received, mut bytes, mut seen) = (0u64, 0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut events = [EMPTY_EVENT; 8];
    loop {
        let n = epoll
            .wait(&mut events, Some(Duration::from_millis(500)))
            .unwrap_or_else(|e| fail("epoll wait", e));
        if n == 0 {
            if first.is_some() || Instant::now() >= give_up {
                break;
            }
            continue;
        }
        for ev in &events[..n] {
            if event_token(ev) != 1 {
                continue;
            }
            for _ in 0..reads_per_wakeup {
                let got = match sock.recv_batch(&mut batch) {
                    Ok(got) => got,
                    Err(e) => fail("recvmmsg", e),
                };
                for d in batch.iter() {
                    bytes += d.data.len() as u64;
                    seen += u64::from(d.data.first().copied().unwrap_or(0))
                        + u64::from(d.src.ip().octets()[3])
                        + u64::from(d.ifindex);
                }
                std::hint::black_box(batch.dropped_total());
                received += got as u64;
                if got < BATCH {
                    break;
                }
            }
            last = Instant::now();
            first.get_or_insert(last);
        }
    }
    std::hint::black_box(seen);
    sink_report(
        o,
        received,
        bytes,
        first.map_or(0.0, |f| (last - f).as_secs_f64()),
    );
}

fn sink(o: &Opts) {
    if o.like_daemon {
        return sink_like_daemon(o);
    }
    let sock =
        UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, o.port))).unwrap_or_else(|e| {
            eprintln!("loadgen sink: bind 0.0.0.0:{}: {e}", o.port);
            exit(1)
        });
    let fd = sock.as_raw_fd();
    // SAFETY: `v` is a live c_int the kernel only reads; the length is its size.
    let set = |opt, v: libc::c_int| unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set(libc::SO_RCVBUFFORCE, RCVBUF) != 0 {
        set(libc::SO_RCVBUF, RCVBUF);
    }
    let idle = Duration::from_millis(500);
    sock.set_read_timeout(Some(idle)).expect("SO_RCVTIMEO");
    println!("sink-ready port={}", o.port);

    let mut bufs = vec![[0u8; BUF_LEN]; o.batch];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: BUF_LEN,
        })
        .collect();
    // SAFETY: mmsghdr is a plain C struct; all zeroes (null pointers) is valid.
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { mem::zeroed() }; o.batch];
    for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
    }
    let (mut received, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let r = if o.batch == 1 {
            match sock.recv(&mut bufs[0]) {
                Ok(n) => {
                    bytes += n as u64;
                    1
                }
                Err(e) => -(e.raw_os_error().unwrap_or(libc::EIO) as isize),
            }
        } else {
            // SAFETY: hdrs point at live iovecs and buffers.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    o.batch as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                -(io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO) as isize)
            } else {
                bytes += hdrs[..r as usize]
                    .iter()
                    .map(|h| u64::from(h.msg_len))
                    .sum::<u64>();
                r as isize
            }
        };
        if r > 0 {
            received += r as u64;
            last = Instant::now();
            first.get_or_insert(last);
        } else if first.is_some() || Instant::now() >= give_up {
            break;
        }
    }
    sink_report(
        o,
        received,
        bytes,
        first.map_or(0.0, |f| (last - f).as_secs_f64()),
    );
}

fn sink_report(o: &Opts, received: u64, bytes: u64, span: f64) {
    let (u, s) = cpu_secs();
    let drops = socket_drops(o.port).unwrap_or(0);
    let how = if o.like_daemon {
        "like the daemon: its socket options, epoll, recvmmsg x8".to_string()
    } else if o.batch == 1 {
        "recv".to_string()
    } else {
        format!("recvmmsg x{}", o.batch)
    };
    println!(
        "sink ({how}): received {received} datagrams ({bytes} bytes) over {span:.3} s, kernel drops {drops}, cpu {:.3} s (user {u:.3}, sys {s:.3})",
        u + s
    );
    println!(
        "sink-result received={received} drops={drops} cpu_s={:.6} span_s={span:.6}",
        u + s
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else {
        usage()
    };
    let o = parse_opts(rest);
    match mode.as_str() {
        "send" => send(&o),
        "sink" => sink(&o),
        _ => usage(),
    }
}
