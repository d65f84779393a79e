//! sd_notify without the heap: every message of [`omdiscd::notify`] is
//! formatted on the stack and sent with one `sendto`, also when sending
//! fails (nobody listening any more).

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use omdiscd::notify::Notifier;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::watched;

#[test]
fn notifying_does_not_allocate() {
    let dir = std::env::temp_dir().join(format!("omd-notify-noalloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = Notifier::from_values(
        Some(path.as_os_str()),
        Some("200000".as_ref()),
        None,
        std::process::id(),
    )
    .unwrap();

    counting_alloc::reset();
    let sent = watched(|| {
        [
            n.ready(4096),
            n.status(17),
            n.reloading(u64::MAX),
            n.watchdog(),
            n.stopping(),
        ]
    });
    assert_eq!(counting_alloc::count(), 0, "heap allocations while sending");
    assert!(sent.iter().all(Result::is_ok), "{sent:?}");
    let mut buf = [0u8; 512];
    for want in [
        &b"READY=1\nSTATUS=announcing, 4096 nodes in the map"[..],
        b"STATUS=announcing, 17 nodes in the map",
        b"RELOADING=1\nMONOTONIC_USEC=18446744073709551615",
        b"WATCHDOG=1",
        b"STOPPING=1",
    ] {
        let got = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got], want);
    }

    // Nobody listening: an error (ECONNREFUSED or ENOENT), still no heap.
    drop(sock);
    std::fs::remove_dir_all(&dir).unwrap();
    counting_alloc::reset();
    let failed = watched(|| n.watchdog().map_err(|e| e.raw_os_error()));
    assert_eq!(
        counting_alloc::count(),
        0,
        "heap allocations on the error path"
    );
    assert!(failed.is_err());
}
