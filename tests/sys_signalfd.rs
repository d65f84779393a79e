//! SignalFd end to end, in its own test binary with a single test.
//!
//! Why this is reliable although libtest runs the test on a spawned thread while
//! its main thread (which does not block SIGUSR1) waits: `SignalFd::new` blocks the
//! signal in *this* thread only, so a process-directed `kill(getpid())` could be
//! delivered to the main thread and kill the process with the default action.
//! We therefore send it with `tgkill` to this very thread: a thread-directed signal
//! stays pending on its target while blocked there, and a signalfd reports the
//! signals pending for the thread that reads (and epoll-waits on) it.
use std::time::Duration;

use omdiscd::sys::{event_token, monotonic_ms, Epoll, SignalFd, EMPTY_EVENT};

#[test]
fn signalfd_reports_blocked_signal() {
    let sfd = SignalFd::new(&[libc::SIGUSR1, libc::SIGUSR2]).unwrap();
    assert_eq!(sfd.read().unwrap(), None);

    let ep = Epoll::new().unwrap();
    ep.add(sfd.as_raw_fd(), 5, libc::EPOLLIN as u32).unwrap();

    // SAFETY: getpid/gettid have no preconditions; tgkill targets this thread with
    // a signal it has just blocked, so it only becomes pending.
    let rc = unsafe { libc::tgkill(libc::getpid(), libc::gettid(), libc::SIGUSR1) };
    assert_eq!(rc, 0);

    let deadline = monotonic_ms() + 5000;
    let mut evs = [EMPTY_EVENT; 4];
    let mut ready = false;
    while !ready && monotonic_ms() < deadline {
        let n = ep.wait(&mut evs, Some(Duration::from_millis(100))).unwrap();
        ready = evs[..n].iter().any(|e| event_token(e) == 5);
    }
    assert!(ready, "signalfd never became readable");

    let info = sfd.read().unwrap().expect("a pending signal");
    assert_eq!(info.signo, libc::SIGUSR1);
    assert_eq!(info.pid, std::process::id());
    assert_eq!(sfd.read().unwrap(), None);
}
