//! The `Stdout` sink through the global logger and its macros, with fd 1
//! temporarily redirected into a pipe. One test in this binary, so nothing else
//! writes to fd 1 meanwhile (libtest prints only before and after the test).
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use omdiscd::log::{self, Sink};

fn read_all(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is writable for its length; `fd` is open.
        let got = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if got <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..got as usize]);
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn stdout_sink_prints_bare_lines() {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just returned these fds; nothing else owns them.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: dup/dup2 on open fds; the saved copy restores fd 1 afterwards.
    let saved = unsafe { libc::dup(1) };
    assert!(saved >= 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::dup2(w.as_raw_fd(), 1) }, 1);

    log::init(Sink::Stdout);
    let who = "10.0.0.9";
    omdiscd::notice!("starting, version {}", "test");
    omdiscd::info!("joined {who}");
    omdiscd::debug!("not shown");
    log::set_debug(true);
    assert!(log::debug_enabled());
    omdiscd::debug!("shown");
    log::set_debug(false);
    omdiscd::debug!("not shown either");
    omdiscd::error!("100% {}", "sure");

    // SAFETY: restores the original fd 1 and closes our copy of it.
    unsafe {
        libc::dup2(saved, 1);
        libc::close(saved);
    }
    drop(w);
    assert_eq!(
        read_all(&r),
        "starting, version test\njoined 10.0.0.9\nshown\n100% sure\n"
    );
}
