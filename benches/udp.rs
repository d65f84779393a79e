//! Receive cost per datagram on loopback: `recv_batch` (recvmmsg, batch 8,
//! with IP_PKTINFO parsing) against the same with batch 1 and against a plain
//! `recvfrom` loop (no cmsgs at all) as the baseline, on the same traffic.
//!
//! Each iteration pre-sends 256 datagrams of 76 bytes (a typical
//! announcement) to 127.0.0.1, untimed, then times draining them.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use omdiscd::udp::{McastSocket, RecvBatch, DGRAM_BUF};

const PER_ITER: usize = 256;
const MSG_LEN: usize = 76;

struct Rig {
    rx: McastSocket,
    tx: UdpSocket,
    dst: SocketAddrV4,
}

impl Rig {
    fn new() -> Rig {
        let rx = McastSocket::open(0, 4 << 20).expect("open rx");
        let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind tx");
        let dst = SocketAddrV4::new(Ipv4Addr::LOCALHOST, rx.local_port());
        Rig { rx, tx, dst }
    }

    fn fill(&self) {
        let msg = [0x42u8; MSG_LEN];
        for _ in 0..PER_ITER {
            self.tx.send_to(&msg, self.dst).expect("send");
        }
    }

    /// Times `drain` over `iters` fills; `drain` must return the count read.
    fn run(&self, iters: u64, mut drain: impl FnMut(&McastSocket) -> usize) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            self.fill();
            let t = Instant::now();
            let n = drain(&self.rx);
            total += t.elapsed();
            assert_eq!(n, PER_ITER, "lost datagrams: rcvbuf too small?");
        }
        total
    }
}

fn drain_batch<const N: usize>(rx: &McastSocket, batch: &mut RecvBatch<N>) -> usize {
    let mut got = 0;
    loop {
        let k = rx.recv_batch(batch).expect("recv_batch");
        if k == 0 {
            return got;
        }
        for d in batch.iter() {
            black_box((d.data, d.ifindex, d.dst));
        }
        got += k;
    }
}

fn drain_recvfrom(rx: &McastSocket, buf: &mut [u8; DGRAM_BUF]) -> usize {
    let mut got = 0;
    loop {
        // SAFETY: all-zero sockaddr_in is valid.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let sa_ptr = std::ptr::addr_of_mut!(sa).cast::<libc::sockaddr>();
        // SAFETY: buf, sa and len are live, writable and sized as passed.
        let n = unsafe {
            libc::recvfrom(
                rx.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::c_void>(),
                buf.len(),
                libc::MSG_DONTWAIT,
                sa_ptr,
                &mut len,
            )
        };
        let r = if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n)
        };
        match r {
            Ok(n) => {
                black_box((&buf[..n as usize], sa.sin_port));
                got += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return got,
            Err(e) => panic!("recvfrom: {e}"),
        }
    }
}

/// Medians of the three drains taken round-robin on the same traffic, so
/// drift in this noisy VM hits all three alike; prints ns per datagram and
/// the ratios criterion's sequential groups can't give reliably.
fn interleaved(rig: &Rig) {
    const ROUNDS: usize = 300;
    let mut batch8: Box<RecvBatch<8>> = Box::default();
    let mut batch1: Box<RecvBatch<1>> = Box::default();
    let mut buf = [0u8; DGRAM_BUF];
    let mut t = [[0f64; 3]; ROUNDS];
    for round in t.iter_mut() {
        round[0] = rig.run(1, |rx| drain_batch(rx, &mut batch8)).as_nanos() as f64;
        round[1] = rig.run(1, |rx| drain_batch(rx, &mut batch1)).as_nanos() as f64;
        round[2] = rig.run(1, |rx| drain_recvfrom(rx, &mut buf)).as_nanos() as f64;
    }
    let med = |k: usize| {
        let mut v = t.map(|round| round[k]);
        v.sort_by(f64::total_cmp);
        v[ROUNDS / 2] / PER_ITER as f64
    };
    let (a, b, f) = (med(0), med(1), med(2));
    eprintln!(
        "interleaved medians, ns/datagram: recv_batch_8 {a:.0}, recv_batch_1 {b:.0}, \
         recvfrom {f:.0}; batch_8/recvfrom {:.2}, batch_8/batch_1 {:.2}",
        a / f,
        a / b
    );
}

fn bench_recv(c: &mut Criterion) {
    let rig = Rig::new();
    eprintln!("granted rcvbuf: {} bytes", rig.rx.granted_rcvbuf());
    interleaved(&rig);
    let mut g = c.benchmark_group("udp_recv_256x76B");
    g.throughput(Throughput::Elements(PER_ITER as u64));

    let mut batch8: Box<RecvBatch<8>> = Box::default();
    g.bench_function("recv_batch_8", |b| {
        b.iter_custom(|iters| rig.run(iters, |rx| drain_batch(rx, &mut batch8)))
    });
    let mut batch1: Box<RecvBatch<1>> = Box::default();
    g.bench_function("recv_batch_1", |b| {
        b.iter_custom(|iters| rig.run(iters, |rx| drain_batch(rx, &mut batch1)))
    });
    let mut buf = [0u8; DGRAM_BUF];
    g.bench_function("recvfrom_baseline", |b| {
        b.iter_custom(|iters| rig.run(iters, |rx| drain_recvfrom(rx, &mut buf)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(30);
    targets = bench_recv
}
criterion_main!(benches);
