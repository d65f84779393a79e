//! Load generator for measuring omdiscd (used by `scripts/measure`).
//!
//! ```text
//! loadgen send --port P [--to 127.0.0.1] [--nodes N] [--stride S] [--count K] [--rate PPS] [--duration SECS]
//! loadgen sink --port P [--batch B]
//! ```
//!
//! `send` builds valid protocol v1 ANNOUNCEs (with `omdiscd::wire::Repr`) for N
//! distinct nodes 127.1.y.z (node ids 2, 2+S, 2+2S, ...; the default S = 1 gives
//! consecutive ids and addresses, which the map file compresses into one line,
//! S = 2 gives one map file line per node), and sends K of them round-robin,
//! each node's sequence number increasing by one per round, as unicast UDP to
//! `--to:--port`: as fast as possible (`sendmmsg`, 64 a call), or paced at
//! `--rate` packets per second; `--duration` stops early. It prints one
//! `loadgen: ...` line and one machine-readable `loadgen-result ...` line.
//!
//! `sink` is the baseline receiver: it binds 127.0.0.1:P with the daemon's
//! receive buffer size and only reads datagrams (`recv`, or `recvmmsg` of B when
//! `--batch B` > 1), until 500 ms pass without one after the first. It prints
//! what it received, its kernel drop count (from /proc/net/udp) and its CPU time.
//!
//! Loopback only: `--to` must be in 127.0.0.0/8.
use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::exit;
use std::time::{Duration, Instant};

use omdiscd::wire::{field, Label, MessageType, Repr, ANNOUNCE_LEN};

const SEND_BATCH: usize = 64;
const MAX_BATCH: usize = 64;
const BUF_LEN: usize = 2048;
/// The daemon's receive buffer (`omdiscd::daemon::RCVBUF_BYTES`).
const RCVBUF: libc::c_int = 4 << 20;

struct Opts {
    port: u16,
    to: Ipv4Addr,
    nodes: usize,
    count: u64,
    rate: Option<f64>,
    duration: Option<f64>,
    batch: usize,
    stride: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen send --port P [--to 127.0.0.1] [--nodes N] [--stride S] [--count K] [--rate PPS] [--duration SECS]\n       loadgen sink --port P [--batch B]"
    );
    exit(2)
}

fn value<T: std::str::FromStr>(opt: &str, v: &str) -> T {
    v.parse().unwrap_or_else(|_| {
        eprintln!("loadgen: bad value for {opt}: {v}");
        exit(2)
    })
}

fn parse_opts(args: &[String]) -> Opts {
    let mut o = Opts {
        port: 0,
        to: Ipv4Addr::LOCALHOST,
        nodes: 1000,
        count: 1_000_000,
        rate: None,
        duration: None,
        batch: 1,
        stride: 1,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => o.port = value(a, v),
            "--to" => o.to = value(a, v),
            "--nodes" => o.nodes = value(a, v),
            "--count" => o.count = value(a, v),
            "--rate" => o.rate = Some(value(a, v)),
            "--duration" => o.duration = Some(value(a, v)),
            "--batch" => o.batch = value(a, v),
            "--stride" => o.stride = value(a, v),
            _ => usage(),
        }
    }
    if o.port == 0 {
        usage();
    }
    if !o.to.is_loopback() {
        eprintln!("loadgen: refusing to send to {}: loopback only", o.to);
        exit(2);
    }
    if o.nodes == 0 || o.stride == 0 || (o.nodes - 1).saturating_mul(o.stride) > 65_533 {
        eprintln!("loadgen: --nodes N and --stride S need 1 <= N, 1 <= S, 2 + (N-1)*S <= 65535");
        exit(2);
    }
    if o.batch == 0 || o.batch > MAX_BATCH {
        eprintln!("loadgen: --batch must be 1 ..= {MAX_BATCH}");
        exit(2);
    }
    o
}

/// One encoded ANNOUNCE per node; the sequence field is patched per packet.
fn templates(nodes: usize, stride: usize) -> Vec<[u8; ANNOUNCE_LEN]> {
    let incarnation = std::process::id() | 1;
    (0..nodes)
        .map(|i| {
            let id = u16::try_from(2 + i * stride).expect("checked by parse_opts");
            let [hi, lo] = id.to_be_bytes();
            let addr = Ipv4Addr::new(127, 1, hi, lo);
            let repr = Repr::new(
                MessageType::Announce,
                addr,
                incarnation,
                Label::DEFAULT,
                2_000,
                600_000,
            );
            let mut buf = [0u8; ANNOUNCE_LEN];
            let n = repr.emit(&mut buf).expect("valid ANNOUNCE");
            assert_eq!(n, ANNOUNCE_LEN);
            buf
        })
        .collect()
}

fn send(o: &Opts) {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    sock.connect((o.to, o.port)).expect("connect");
    let tpl = templates(o.nodes, o.stride);
    let rate = o.rate.filter(|r| *r > 0.0);
    // Paced: about one call per millisecond.
    let batch = match rate {
        Some(r) => ((r / 1000.0) as usize).clamp(1, SEND_BATCH),
        None => SEND_BATCH,
    };
    let deadline = o.duration.map(Duration::from_secs_f64);
    let mut bufs = vec![[0u8; ANNOUNCE_LEN]; SEND_BATCH];
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
            iov[j] = libc::iovec {
                iov_base: bufs[j].as_mut_ptr().cast(),
                iov_len: ANNOUNCE_LEN,
            };
            hdrs[j].msg_hdr.msg_iov = &mut iov[j];
            hdrs[j].msg_hdr.msg_iovlen = 1;
        }
        let mut off = 0;
        while off < n {
            // SAFETY: hdrs[off..n] point at live iovecs and buffers.
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    hdrs[off..].as_mut_ptr(),
                    (n - off) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                // E.g. ECONNREFUSED from an earlier ICMP error: skip one packet.
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
    println!(
        "loadgen: sent {sent} ANNOUNCEs ({} nodes, ids 2..={} step {}) to {}:{} in {secs:.3} s: {:.0} packets/s, send errors {errors}",
        o.nodes,
        2 + (o.nodes - 1) * o.stride,
        o.stride,
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

fn sink(o: &Opts) {
    let sock =
        UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, o.port))).unwrap_or_else(|e| {
            eprintln!("loadgen sink: bind 127.0.0.1:{}: {e}", o.port);
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
            mem::size_of::<libc::c_int>() as libc::socklen_t,
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
    let span = first.map_or(0.0, |f| (last - f).as_secs_f64());
    let (u, s) = cpu_secs();
    let drops = socket_drops(o.port).unwrap_or(0);
    let how = if o.batch == 1 {
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
