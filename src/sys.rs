//! Thin wrappers over the Linux system calls the daemon uses.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::time::Duration;

/// Return types of libc calls that report failure as `-1` and set `errno`.
pub(crate) trait IsMinusOne: Copy {
    fn is_minus_one(self) -> bool;
}

macro_rules! impl_is_minus_one {
    ($($t:ty)*) => ($(impl IsMinusOne for $t {
        fn is_minus_one(self) -> bool {
            self == -1
        }
    })*)
}

impl_is_minus_one! { i32 i64 isize }

/// Turns a libc return of `-1` into the `errno` it left, as std's `cvt` does.
/// The only place the C error convention is converted; never allocates.
pub(crate) fn cvt<T: IsMinusOne>(ret: T) -> io::Result<T> {
    if ret.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// [`cvt`] for calls a signal can interrupt: repeats `call` while it fails with
/// `EINTR`. The crate's one EINTR retry loop.
pub(crate) fn cvt_r<T: IsMinusOne>(mut call: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(call()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// An all-zero `epoll_event`, for initialising the array handed to [`Epoll::wait`]
/// without a heap allocation: `[EMPTY_EVENT; 64]`.
pub const EMPTY_EVENT: libc::epoll_event = libc::epoll_event { events: 0, u64: 0 };

/// The token registered with [`Epoll::add`], copied out of the (packed on x86_64)
/// `epoll_event` so callers never take a reference to a packed field.
pub fn event_token(ev: &libc::epoll_event) -> u64 {
    ev.u64
}

/// The daemon's event loop multiplexer. Owning the fd closes it on drop.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// Creates the epoll instance; close-on-exec so hooks we spawn do not inherit it.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: epoll_create1 just returned this fd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    /// Registers `fd` for `events` (`EPOLLIN as u32`, ...); `token` comes back in `wait`.
    pub fn add(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        let op = libc::EPOLL_CTL_ADD;
        // SAFETY: `ev` is a live epoll_event the kernel only reads during the call.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Changes what `fd` (registered with [`Epoll::add`]) waits for.
    pub fn modify(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        let op = libc::EPOLL_CTL_MOD;
        // SAFETY: `ev` is a live epoll_event the kernel only reads during the call.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Stops waiting on `fd` (before it is closed).
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        let op = libc::EPOLL_CTL_DEL;
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL (since Linux 2.6.9).
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, ptr::null_mut()) })?;
        Ok(())
    }

    /// Waits for events; returns how many entries of `events` were filled.
    ///
    /// `None` waits forever. A signal interrupting the wait is not an error: it
    /// returns `Ok(0)` so the loop simply recomputes its deadlines and goes round.
    pub fn wait(
        &self,
        events: &mut [libc::epoll_event],
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let max = events.len().min(libc::c_int::MAX as usize) as libc::c_int;
        let timeout = epoll_timeout_ms(timeout);
        // SAFETY: `events` is writable for `max` (at most its length) entries and
        // outlives the call.
        match cvt(unsafe {
            libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, timeout)
        }) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Converts a timeout to epoll's milliseconds, rounding up (as mio does) so that a
/// deadline less than 1 ms away sleeps 1 ms instead of spinning with timeout 0.
/// Capped at `i32::MAX` ms (~24.8 days); `None` is -1, wait forever.
pub(crate) fn epoll_timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(to) => {
            let to = to.checked_add(Duration::from_nanos(999_999)).unwrap_or(to);
            to.as_millis().min(libc::c_int::MAX as u128) as libc::c_int
        }
    }
}

/// Milliseconds on CLOCK_MONOTONIC: the daemon's only clock for deadlines, immune
/// to wall-clock steps. The same clock drives [`TimerFd::arm_at_ms`].
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on
    // Linux so the call cannot fail with valid arguments.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1000)
        .wrapping_add(ts.tv_nsec as u64 / 1_000_000)
}

/// A one-shot CLOCK_MONOTONIC timer fd, armed at absolute deadlines so that time
/// spent between computing and arming a deadline is not added to it.
#[derive(Debug)]
pub struct TimerFd {
    fd: OwnedFd,
}

impl TimerFd {
    /// Creates a disarmed, non-blocking, close-on-exec timer.
    pub fn new() -> io::Result<TimerFd> {
        let flags = libc::TFD_NONBLOCK | libc::TFD_CLOEXEC;
        // SAFETY: timerfd_create takes no pointers.
        let fd = cvt(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, flags) })?;
        // SAFETY: timerfd_create just returned this fd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(TimerFd { fd })
    }

    /// Arms the timer to fire once at `deadline_ms` on [`monotonic_ms`]'s clock.
    /// A deadline already past fires at once.
    pub fn arm_at_ms(&self, deadline_ms: u64) -> io::Result<()> {
        // Capped well inside any time_t (musl's is changing width); ~292 years.
        let secs = (deadline_ms / 1000).min(i32::MAX as u64);
        let mut nsecs = ((deadline_ms % 1000) * 1_000_000) as libc::c_long;
        if secs == 0 && nsecs == 0 {
            // An all-zero it_value disarms; 1 ns after boot is just as much "past".
            nsecs = 1;
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: secs as _,
                tv_nsec: nsecs,
            },
        };
        let flags = libc::TFD_TIMER_ABSTIME;
        // SAFETY: `spec` is a live itimerspec the kernel only reads; the old
        // value is not requested (null is allowed).
        cvt(unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), flags, &spec, ptr::null_mut()) })?;
        Ok(())
    }

    /// Reads and clears the expiration count (0 if it has not fired), so the fd
    /// stops being readable and the level-triggered loop does not spin.
    pub fn drain(&self) -> io::Result<u64> {
        let mut count: u64 = 0;
        let fd = self.fd.as_raw_fd();
        let size = mem::size_of::<u64>();
        // SAFETY: `count` is a live u64, writable for the `size` bytes passed.
        match cvt_r(|| unsafe { libc::read(fd, ptr::addr_of_mut!(count).cast(), size) }) {
            Ok(_) => Ok(count),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The raw fd, to register with [`Epoll`].
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for TimerFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What a [`SignalFd`] read returns: the signal and the pid that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalInfo {
    pub signo: i32,
    pub pid: u32,
}

/// Signals delivered as readable events in the epoll loop instead of through
/// async handlers, so handling them needs no async-signal-safety reasoning.
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
}

fn sigset_of(signals: &[i32]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data for which all-zero is valid; sigemptyset
    // initialises it fully below.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a live, writable sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for &sig in signals {
        // SAFETY: `set` is a live, initialised sigset_t; a bad signal number is
        // reported as EINVAL, not undefined behaviour.
        cvt(unsafe { libc::sigaddset(&mut set, sig) })?;
    }
    Ok(set)
}

fn set_sigmask(how: libc::c_int, set: &libc::sigset_t) -> io::Result<()> {
    // SAFETY: `set` is an initialised sigset_t; the old mask is not requested.
    let rc = unsafe { libc::pthread_sigmask(how, set, ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

impl SignalFd {
    /// Blocks `signals` in the calling thread (the whole daemon, as it is
    /// single-threaded and threads inherit the mask) and returns a non-blocking,
    /// close-on-exec signalfd that reports them.
    pub fn new(signals: &[i32]) -> io::Result<SignalFd> {
        let set = sigset_of(signals)?;
        set_sigmask(libc::SIG_BLOCK, &set)?;
        let flags = libc::SFD_NONBLOCK | libc::SFD_CLOEXEC;
        // SAFETY: `set` is a live, initialised sigset_t the kernel only reads.
        let fd = cvt(unsafe { libc::signalfd(-1, &set, flags) })?;
        // SAFETY: signalfd(-1, ..) just returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(SignalFd { fd })
    }

    /// Takes one pending signal, or `None` when none is pending.
    pub fn read(&self) -> io::Result<Option<SignalInfo>> {
        // SAFETY: signalfd_siginfo is plain data for which all-zero is valid.
        let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
        let size = mem::size_of::<libc::signalfd_siginfo>();
        let fd = self.fd.as_raw_fd();
        // SAFETY: `info` is a live signalfd_siginfo, writable for the `size` bytes passed.
        match cvt_r(|| unsafe { libc::read(fd, ptr::addr_of_mut!(info).cast(), size) }) {
            Ok(n) if n as usize == size => Ok(Some(SignalInfo {
                signo: info.ssi_signo as i32,
                pid: info.ssi_pid,
            })),
            Ok(_) => Err(io::ErrorKind::UnexpectedEof.into()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The raw fd, to register with [`Epoll`].
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for SignalFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// 64 random bits from the kernel, for seeding jitter and instance ids. Uses
/// GRND_NONBLOCK so an early-boot start never hangs; falls back to a mix of the
/// clocks and the pid, which is enough to desynchronise nodes booted together.
pub fn getrandom_u64() -> u64 {
    let mut buf = [0u8; 8];
    let len = buf.len();
    // SAFETY: `buf` is writable for the `len` bytes passed.
    let got =
        cvt_r(|| unsafe { libc::getrandom(buf.as_mut_ptr().cast(), len, libc::GRND_NONBLOCK) });
    if let Ok(8) = got {
        return u64::from_ne_bytes(buf);
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    // SAFETY: getpid has no preconditions and cannot fail.
    let pid = unsafe { libc::getpid() } as u64;
    let t = (ts.tv_sec as u64).wrapping_mul(1_000_000_000) ^ ts.tv_nsec as u64;
    crate::rng::Rng::from_seed(t ^ monotonic_ms().rotate_left(20) ^ (pid << 40)).next_u64()
}

/// Detaches from the terminal the classic double-fork way: the session
/// leader exits so the daemon can never reacquire a controlling tty, then cwd
/// is `/`, umask 022 and stdio point at /dev/null (or, where there is none,
/// as in a bare initramfs, at `/` opened read-only, so writes fail harmlessly).
///
/// The original process does not exit at once: it waits on a pipe until the
/// daemon reports through the returned [`Starter`] that it is running (exit
/// 0) or why it failed (that exit status, the message on its standard error),
/// and exits 1 if the daemon dies before saying either.
///
/// Must be called before any thread exists (only the calling thread survives a
/// fork) and before anything is buffered in Rust's stdout (the parents `_exit`
/// without flushing). Returns only in the daemon (grandchild).
pub fn daemonize() -> io::Result<Starter> {
    let mut fds = [0; 2];
    // SAFETY: fds is a writable array of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 just returned these two descriptors, owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists (see above), so the child is a complete
    // copy of the process and may go on running Rust code.
    if cvt(unsafe { libc::fork() })? != 0 {
        drop(write);
        wait_for_daemon(read);
    }
    drop(read);
    // SAFETY: setsid takes no arguments.
    cvt(unsafe { libc::setsid() })?;
    fork_and_exit_parent()?;
    // SAFETY: the path is a NUL-terminated literal.
    cvt(unsafe { libc::chdir(c"/".as_ptr()) })?;
    // SAFETY: umask has no preconditions and cannot fail.
    unsafe { libc::umask(0o022) };
    // SAFETY: the paths are NUL-terminated literals; no mode is needed without O_CREAT.
    let null = cvt(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) }).or_else(|_| {
        // SAFETY: as above.
        cvt(unsafe { libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) })
    })?;
    for target in 0..=2 {
        // SAFETY: dup2 takes no pointers; replacing stdio is this function's purpose.
        cvt(unsafe { libc::dup2(null, target) })?;
    }
    if null > 2 {
        // SAFETY: `null` was opened above, is not stdio and is closed once.
        cvt(unsafe { libc::close(null) })?;
    }
    Ok(Starter { pipe: write })
}

/// The original process of [`daemonize`]: relays the daemon's verdict and
/// exits with it.
fn wait_for_daemon(pipe: OwnedFd) -> ! {
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        let rest = &mut buf[len..];
        // SAFETY: `rest` is writable for the `rest.len()` bytes passed.
        match cvt_r(|| unsafe {
            libc::read(pipe.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len())
        }) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n as usize,
        }
    }
    let status = match buf[..len].split_first() {
        Some((&status, message)) => {
            for line in message.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let _ = write_all_fd(2, b"omdiscd: ");
                let _ = write_all_fd(2, line);
                let _ = write_all_fd(2, b"\n");
            }
            status
        }
        None => {
            let _ = write_all_fd(
                2,
                b"omdiscd: the daemon exited during start-up; see the system log\n",
            );
            1
        }
    };
    // SAFETY: _exit never returns and is always safe to call.
    unsafe { libc::_exit(i32::from(status)) }
}

/// The daemon's end of the start-up pipe of [`daemonize`].
#[derive(Debug)]
pub struct Starter {
    pipe: OwnedFd,
}

impl Starter {
    /// The daemon is running: its starter exits 0.
    pub fn ready(self) {
        let _ = write_all_fd(self.pipe.as_raw_fd(), &[0]);
    }

    /// The daemon could not start: its starter prints `message` (one or
    /// more lines) and exits with `status`.
    pub fn failed(self, status: u8, message: &str) {
        let fd = self.pipe.as_raw_fd();
        let _ = write_all_fd(fd, &[status.max(1)]);
        let _ = write_all_fd(fd, message.as_bytes());
    }
}

/// Closes every descriptor above stderr. Called first thing by a daemon,
/// before it opens its own: inherited pipes would keep whoever started it
/// waiting for end-of-file.
pub fn close_inherited_fds() {
    // SAFETY: close_range only closes descriptors; nothing of ours is open yet.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if r != 0 {
        // Kernels before 5.9: close them one by one.
        // SAFETY: sysconf has no preconditions.
        let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(0, 65536) as i32;
        for fd in 3..max {
            // SAFETY: closing a descriptor that may not exist is harmless.
            unsafe { libc::close(fd) };
        }
    }
}

/// Forks; the parent leaves at once with `_exit(0)` (no atexit handlers or
/// destructors, which belong to the child now), the child returns.
fn fork_and_exit_parent() -> io::Result<()> {
    // SAFETY: the caller guarantees no other thread exists (see `daemonize`), so
    // the child is a complete copy of the process and may go on running Rust code.
    if cvt(unsafe { libc::fork() })? != 0 {
        // SAFETY: _exit never returns and is always safe to call.
        unsafe { libc::_exit(0) };
    }
    Ok(())
}

/// Writes all of `buf` to `fd`, retrying on EINTR and after partial writes.
/// Does not allocate; used by the logger for its one-write-per-line output
/// and by the map-file writer to flush its buffer.
pub fn write_all_fd(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is readable for the `buf.len()` bytes passed.
        match cvt_r(|| unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => buf = &buf[n as usize..],
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` is writable for the two fds pipe2 stores.
        cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) }).unwrap();
        // SAFETY: pipe2 just returned these two fds, owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// Waits until `token` is reported, giving up after a generous 5 s.
    fn wait_for(ep: &Epoll, token: u64) -> bool {
        let deadline = monotonic_ms() + 5000;
        let mut evs = [EMPTY_EVENT; 8];
        while monotonic_ms() < deadline {
            let n = ep.wait(&mut evs, Some(Duration::from_millis(100))).unwrap();
            if evs[..n].iter().any(|e| event_token(e) == token) {
                return true;
            }
        }
        false
    }

    #[test]
    fn epoll_reports_readable_pipe() {
        let ep = Epoll::new().unwrap();
        let (r, w) = pipe();
        ep.add(r.as_raw_fd(), 7, libc::EPOLLIN as u32).unwrap();
        let mut evs = [EMPTY_EVENT; 4];
        assert_eq!(ep.wait(&mut evs, Some(Duration::ZERO)).unwrap(), 0);
        write_all_fd(w.as_raw_fd(), b"x").unwrap();
        let n = ep.wait(&mut evs, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(n, 1);
        assert_eq!(event_token(&evs[0]), 7);
        let flags = evs[0].events;
        assert_ne!(flags & libc::EPOLLIN as u32, 0);
        // The same fd cannot be registered twice.
        assert!(ep.add(r.as_raw_fd(), 8, libc::EPOLLIN as u32).is_err());
    }

    #[test]
    fn timeout_rounds_up_and_caps() {
        assert_eq!(epoll_timeout_ms(None), -1);
        assert_eq!(epoll_timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(epoll_timeout_ms(Some(Duration::from_micros(300))), 1);
        assert_eq!(epoll_timeout_ms(Some(Duration::from_nanos(1))), 1);
        assert_eq!(epoll_timeout_ms(Some(Duration::from_millis(5))), 5);
        assert_eq!(epoll_timeout_ms(Some(Duration::from_micros(5001))), 6);
        assert_eq!(
            epoll_timeout_ms(Some(Duration::from_secs(1 << 40))),
            i32::MAX
        );
        assert_eq!(epoll_timeout_ms(Some(Duration::MAX)), i32::MAX);
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_ms();
        let b = monotonic_ms();
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn timer_in_the_past_fires_at_once() {
        let ep = Epoll::new().unwrap();
        let t = TimerFd::new().unwrap();
        ep.add(t.as_raw_fd(), 1, libc::EPOLLIN as u32).unwrap();
        assert_eq!(t.drain().unwrap(), 0);
        t.arm_at_ms(monotonic_ms().saturating_sub(1000)).unwrap();
        assert!(wait_for(&ep, 1));
        assert_eq!(t.drain().unwrap(), 1);
        assert_eq!(t.drain().unwrap(), 0);
        // Deadline 0 must not be the "disarm" all-zero value.
        t.arm_at_ms(0).unwrap();
        assert!(wait_for(&ep, 1));
        assert_eq!(t.drain().unwrap(), 1);
    }

    #[test]
    fn timer_in_the_near_future_fires() {
        let ep = Epoll::new().unwrap();
        let t = TimerFd::new().unwrap();
        ep.add(t.as_raw_fd(), 2, libc::EPOLLIN as u32).unwrap();
        let start = monotonic_ms();
        t.arm_at_ms(start + 20).unwrap();
        assert!(wait_for(&ep, 2));
        assert!(monotonic_ms() >= start + 20);
        assert_eq!(t.drain().unwrap(), 1);
    }

    #[test]
    fn write_all_fd_writes_everything() {
        let (r, w) = pipe();
        write_all_fd(w.as_raw_fd(), b"hello").unwrap();
        let mut buf = [0u8; 16];
        // SAFETY: `buf` is writable for the `buf.len()` bytes passed.
        let n =
            cvt(unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }).unwrap();
        assert_eq!(&buf[..n as usize], b"hello");
        assert!(write_all_fd(-1, b"x").is_err());
    }

    #[test]
    fn getrandom_differs() {
        // 2^-64 chance of a false failure.
        assert_ne!(getrandom_u64(), getrandom_u64());
    }
}

/// An OS error number, printed the way std prints an `io::Error`
/// ("No such file or directory (os error 2)") but without allocating: std
/// builds a `String` for the message, and the event loop must not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buf = [0u8; 128];
        // SAFETY: `buf` is writable for its whole length; the XSI strerror_r
        // (which the libc crate binds) writes a NUL-terminated message into
        // it or returns an error and leaves it alone.
        let r = unsafe { libc::strerror_r(self.0, buf.as_mut_ptr().cast(), buf.len()) };
        let msg = (r == 0)
            .then(|| std::ffi::CStr::from_bytes_until_nul(&buf).ok())
            .flatten()
            .and_then(|c| c.to_str().ok());
        match msg {
            Some(msg) => write!(f, "{msg} (os error {})", self.0),
            None => write!(f, "Unknown error {} (os error {})", self.0, self.0),
        }
    }
}

/// Displays an `io::Error` without allocating when it carries an OS error
/// (all the daemon's do); others print as std prints them.
pub struct IoErr<'a>(pub &'a io::Error);

impl std::fmt::Display for IoErr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.raw_os_error() {
            Some(n) => Errno(n).fmt(f),
            None => self.0.fmt(f),
        }
    }
}

#[cfg(test)]
mod errno_tests {
    use super::*;

    #[test]
    fn errno_prints_as_std_does() {
        for n in [1, 2, 13, 21, 28, 9999] {
            let std_text = io::Error::from_raw_os_error(n).to_string();
            assert_eq!(Errno(n).to_string(), std_text);
            assert_eq!(
                IoErr(&io::Error::from_raw_os_error(n)).to_string(),
                std_text
            );
        }
        let custom = io::Error::other("custom");
        assert_eq!(IoErr(&custom).to_string(), "custom");
    }
}

/// The lock that makes one daemon per map file (`--pid-file`): a file
/// locked with `flock` for as long as the descriptor is open (a fork keeps
/// it, the process's death releases it), holding the daemon's PID.
#[derive(Debug)]
pub struct PidLock {
    fd: OwnedFd,
}

/// Why [`PidLock::take`] failed.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; its PID, if the file says.
    Held(Option<u32>),
    /// The path is not a regular file.
    NotRegular,
    Io(io::Error),
}

impl PidLock {
    /// Creates (and its directory) or opens `path`, without following a
    /// symlink, locks it and writes this process's PID. Called at start-up
    /// (it allocates).
    pub fn take(path: &std::path::Path) -> Result<PidLock, LockError> {
        use std::os::unix::ffi::OsStrExt;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(LockError::Io)?;
        }
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| LockError::Io(io::ErrorKind::InvalidInput.into()))?;
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        let flags = flags | libc::O_NONBLOCK;
        // SAFETY: `c` is a NUL-terminated path; the mode is passed as open(2) wants.
        let raw = cvt_r(|| unsafe { libc::open(c.as_ptr(), flags, 0o644 as libc::c_uint) })
            .map_err(LockError::Io)?;
        // SAFETY: `raw` was just opened and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero stat is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { mem::zeroed() };
        // SAFETY: `fd` is open and `st` is writable.
        cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }).map_err(LockError::Io)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(LockError::NotRegular);
        }
        // SAFETY: flock takes no pointers.
        let locked = cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) });
        match locked {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                let mut buf = [0u8; 16];
                // SAFETY: `buf` is writable for its length.
                let n =
                    unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                let text = buf.get(..usize::try_from(n).unwrap_or(0)).unwrap_or(&[]);
                let pid = std::str::from_utf8(text)
                    .ok()
                    .and_then(|t| t.trim().parse().ok());
                return Err(LockError::Held(pid));
            }
            Err(e) => return Err(LockError::Io(e)),
        }
        let lock = PidLock { fd };
        lock.write_pid().map_err(LockError::Io)?;
        Ok(lock)
    }

    /// Writes this process's PID into the file (again after daemonizing).
    pub fn write_pid(&self) -> io::Result<()> {
        let mut text = [0u8; 12];
        // SAFETY: getpid has no preconditions and cannot fail.
        let pid = unsafe { libc::getpid() } as u32;
        let mut n = text.len() - 1;
        text[n] = b'\n';
        let mut v = pid;
        loop {
            n -= 1;
            text[n] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        // SAFETY: ftruncate takes no pointers.
        cvt(unsafe { libc::ftruncate(self.fd.as_raw_fd(), 0) })?;
        let body = &text[n..];
        // SAFETY: `body` is readable for its length.
        let w = cvt_r(|| unsafe {
            libc::pwrite(self.fd.as_raw_fd(), body.as_ptr().cast(), body.len(), 0)
        })?;
        if w as usize != body.len() {
            return Err(io::ErrorKind::WriteZero.into());
        }
        Ok(())
    }
}

/// Whether a process with this PID exists (in this PID namespace).
pub fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

// ---- child processes ------------------------------------------------------

/// A pipe whose read end is non-blocking, both ends close-on-exec: a child's
/// output, read by the event loop.
pub fn output_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a writable array of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 just returned these two descriptors, owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    cvt(unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) })?;
    Ok((read, write))
}

/// Reads what is there from a non-blocking descriptor: `Ok(0)` at end of
/// file, `Err(WouldBlock)` when nothing is waiting.
pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for the `buf.len()` bytes passed.
    cvt_r(|| unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }).map(|n| n as usize)
}

/// Starts `argv[0]` with `argv` and `envp` (both NULL-terminated arrays of
/// pointers to NUL-terminated strings, alive for the call), its stdout and
/// stderr on `output`, in a process group of its own, with every signal
/// unblocked and SIGPIPE at its default, and killed (SIGKILL) if the daemon
/// dies first. Allocates
/// nothing: between fork and exec the child makes system calls only. A
/// program that cannot be executed writes why to `output` and exits 127.
pub fn spawn(
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    output: RawFd,
) -> io::Result<libc::pid_t> {
    assert!(argv.last().is_some_and(|p| p.is_null()) && argv.len() >= 2);
    assert!(envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the daemon has one thread; the child below only makes
    // async-signal-safe system calls before execve or _exit.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid != 0 {
        // Also here, so that the group exists before kill_group can run.
        // SAFETY: setpgid takes integers; the child may have done it already.
        unsafe { libc::setpgid(pid, pid) };
        return Ok(pid);
    }
    // SAFETY: the child: system calls on integers and on the caller's
    // arrays, which the fork copied; it never returns from this block.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        // The daemon died between fork and prctl: nobody would kill us.
        if libc::getppid() != parent {
            libc::_exit(127);
        }
        libc::setpgid(0, 0);
        // Rust ignores SIGPIPE, and an ignored signal stays ignored across
        // execve: give the program the default, as a shell would.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut none: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, ptr::null_mut());
        libc::dup2(output, 1);
        libc::dup2(output, 2);
        libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
        let errno = *libc::__errno_location();
        let mut msg = *b"cannot be executed: errno 0000\n";
        let mut n = errno.unsigned_abs();
        for i in (26..30).rev() {
            msg[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// How a child ended: its exit status, or 128 + the signal that killed it.
/// `None` while it runs.
pub fn reap(pid: libc::pid_t, block: bool) -> Option<i32> {
    let mut status = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    // SAFETY: status is a valid out-pointer; pid is our own child.
    let r = cvt_r(|| unsafe { libc::waitpid(pid, &mut status, flags) });
    match r {
        Ok(0) => None,
        // Reaped already elsewhere: nothing to report.
        Err(_) => Some(0),
        Ok(_) if libc::WIFSIGNALED(status) => Some(128 + libc::WTERMSIG(status)),
        Ok(_) => Some(libc::WEXITSTATUS(status)),
    }
}

/// Kills a child's whole process group (it leads one: see [`spawn`]).
pub fn kill_group(pid: libc::pid_t) {
    // SAFETY: kill takes integers; a group that is gone gives ESRCH.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
}

/// The process environment, as C strings (read at start-up).
pub fn environment() -> Vec<&'static std::ffi::CStr> {
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    let mut out = Vec::new();
    // SAFETY: environ is the NULL-terminated array of NUL-terminated strings
    // libc keeps; the daemon never changes its environment, so the strings
    // live as long as the process.
    unsafe {
        let mut p = environ;
        while !p.is_null() && !(*p).is_null() {
            out.push(std::ffi::CStr::from_ptr(*p));
            p = p.add(1);
        }
    }
    out
}

/// Whether `path` is a file this process may execute.
pub fn executable(path: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: path is NUL-terminated and alive for the call.
    cvt(unsafe { libc::access(path.as_ptr(), libc::X_OK) })?;
    Ok(())
}

/// Whether `path` exists (following symlinks).
pub fn exists(path: &std::ffi::CStr) -> bool {
    // SAFETY: path is NUL-terminated and alive for the call.
    unsafe { libc::access(path.as_ptr(), libc::F_OK) == 0 }
}

/// The device and inode of what `fd` refers to (how `JOURNAL_STREAM` names
/// the journal's stream).
pub fn device_and_inode(fd: RawFd) -> Option<(u64, u64)> {
    let mut st = mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is a stat buffer fstat fills on success.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so st is initialised.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

/// A name in the abstract `AF_UNIX` namespace held by a listening socket:
/// one holder per network namespace, released when the process dies (no
/// file is left behind). Connecting to it tells who holds it.
#[derive(Debug)]
pub struct AbstractClaim {
    fd: OwnedFd,
}

fn abstract_addr(name: &[u8]) -> io::Result<UnixAddr> {
    UnixAddr::abstract_name(name).ok_or_else(|| io::Error::from_raw_os_error(libc::ENAMETOOLONG))
}

fn unix_stream() -> io::Result<OwnedFd> {
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: socket takes integers only.
    let fd = cvt(unsafe { libc::socket(libc::AF_UNIX, kind, 0) })?;
    // SAFETY: socket just returned this descriptor, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl AbstractClaim {
    /// Takes `name`; `EADDRINUSE` if another process holds it.
    pub fn take(name: &[u8]) -> io::Result<AbstractClaim> {
        let fd = unix_stream()?;
        let addr = abstract_addr(name)?;
        // SAFETY: addr.addr is a valid sockaddr_un of addr.len bytes.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr.addr as *const libc::sockaddr_un).cast(),
                addr.len,
            )
        })?;
        // SAFETY: listen takes integers only.
        cvt(unsafe { libc::listen(fd.as_raw_fd(), 4) })?;
        Ok(AbstractClaim { fd })
    }

    /// The PID of the process holding `name`, if one does and says.
    pub fn holder(name: &[u8]) -> Option<u32> {
        let fd = unix_stream().ok()?;
        let addr = abstract_addr(name).ok()?;
        // SAFETY: addr.addr is a valid sockaddr_un of addr.len bytes. A
        // listening peer accepts the connection into its backlog at once.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr.addr as *const libc::sockaddr_un).cast(),
                addr.len,
            )
        };
        if r != 0 {
            return None;
        }
        // SAFETY: ucred is plain data; all zero is a valid value.
        let mut cred: libc::ucred = unsafe { mem::zeroed() };
        let mut cred_len = mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: cred is writable for cred_len bytes.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut cred_len,
            )
        };
        (r == 0 && cred.pid > 0).then_some(cred.pid as u32)
    }

    /// Closes the connections of those who asked (see [`AbstractClaim::holder`]).
    pub fn drain(&self) {
        loop {
            // SAFETY: accept4 with null address pointers is allowed.
            let r = unsafe {
                libc::accept4(
                    self.fd.as_raw_fd(),
                    ptr::null_mut(),
                    ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if r < 0 {
                return;
            }
            // SAFETY: accept4 just returned this descriptor; closed once.
            unsafe { libc::close(r) };
        }
    }
}

impl AsRawFd for AbstractClaim {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An `AF_UNIX` socket address built once (at start-up) and handed to
/// [`UnixDgram::send_to`] as often as needed: a filesystem path, or an
/// abstract name (Linux: the first byte of `sun_path` is NUL).
#[derive(Clone, Copy)]
pub struct UnixAddr {
    addr: libc::sockaddr_un,
    len: libc::socklen_t,
}

impl UnixAddr {
    /// Offset of `sun_path` in `sockaddr_un` (after the 2-byte family).
    const PATH_OFFSET: usize = mem::size_of::<libc::sa_family_t>();

    /// A filesystem path: NUL-terminated in `sun_path`; `None` when it is
    /// empty, holds a NUL or does not fit (107 bytes at most).
    pub fn path(path: &[u8]) -> Option<UnixAddr> {
        if path.is_empty() || path.contains(&0) {
            return None;
        }
        // The terminating NUL is part of the address length.
        Self::raw(path, 0, 1)
    }

    /// An abstract name (without the leading NUL; the `@` of
    /// `NOTIFY_SOCKET` already stripped): exactly these bytes, no NUL at
    /// the end, at most 107 bytes.
    pub fn abstract_name(name: &[u8]) -> Option<UnixAddr> {
        Self::raw(name, 1, 0)
    }

    /// `name` at `sun_path[skip..]`, with `extra` bytes (the NUL) counted
    /// in the length.
    fn raw(name: &[u8], skip: usize, extra: usize) -> Option<UnixAddr> {
        let mut addr = libc::sockaddr_un {
            sun_family: libc::AF_UNIX as libc::sa_family_t,
            sun_path: [0; 108],
        };
        let used = skip + name.len() + extra;
        if used > addr.sun_path.len() {
            return None;
        }
        for (dst, &b) in addr.sun_path[skip..].iter_mut().zip(name) {
            *dst = b as libc::c_char;
        }
        let len = (Self::PATH_OFFSET + skip + name.len() + extra) as libc::socklen_t;
        Some(UnixAddr { addr, len })
    }

    /// The address as the kernel takes it: `sun_path` bytes within the
    /// length (the abstract name with its leading NUL).
    pub fn as_bytes(&self) -> &[u8] {
        let n = self.len as usize - Self::PATH_OFFSET;
        // c_char is i8 or u8 by target; either way one byte each.
        let path: &[libc::c_char] = &self.addr.sun_path[..n];
        // SAFETY: c_char and u8 have the same size and alignment and every
        // bit pattern is valid for both; the slice borrows `self`.
        unsafe { std::slice::from_raw_parts(path.as_ptr().cast::<u8>(), path.len()) }
    }
}

impl std::fmt::Debug for UnixAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.as_bytes();
        match b.split_first() {
            Some((0, name)) => write!(f, "UnixAddr(@{})", name.escape_ascii()),
            _ => write!(
                f,
                "UnixAddr({})",
                b.strip_suffix(&[0]).unwrap_or(b).escape_ascii()
            ),
        }
    }
}

/// An unbound, unconnected `AF_UNIX` datagram socket that sends to a
/// [`UnixAddr`] (sd_notify's socket). Close-on-exec, so setpe does not
/// inherit it. Sends never block: a receiver whose queue is full
/// (`net.unix.max_dgram_qlen`, 10 in a new network namespace) makes them
/// fail with `WouldBlock` instead of stopping the event loop.
#[derive(Debug)]
pub struct UnixDgram {
    fd: OwnedFd,
}

impl UnixDgram {
    /// `socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)`.
    pub fn new() -> io::Result<UnixDgram> {
        let kind = libc::SOCK_DGRAM | libc::SOCK_CLOEXEC;
        // SAFETY: socket takes no pointers.
        let fd = cvt(unsafe { libc::socket(libc::AF_UNIX, kind, 0) })?;
        // SAFETY: socket just returned this fd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(UnixDgram { fd })
    }

    /// Sends `buf` as one datagram to `to`, without waiting (`MSG_DONTWAIT`)
    /// and without SIGPIPE (`MSG_NOSIGNAL`). Retries on EINTR; never
    /// allocates.
    pub fn send_to(&self, buf: &[u8], to: &UnixAddr) -> io::Result<usize> {
        let fd = self.fd.as_raw_fd();
        let addr: *const libc::sockaddr_un = &to.addr;
        // SAFETY: `buf` is readable for `buf.len()` bytes and `to.addr` is a
        // live sockaddr_un of which `to.len` (at most its size) bytes are
        // read; the kernel reads both only during the call.
        let n = cvt_r(|| unsafe {
            libc::sendto(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                addr.cast(),
                to.len,
            )
        })?;
        Ok(n as usize)
    }
}

impl AsFd for UnixDgram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Microseconds on CLOCK_MONOTONIC, as sd_notify's `MONOTONIC_USEC=` wants
/// (the same clock as [`monotonic_ms`]).
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000)
        .wrapping_add(ts.tv_nsec as u64 / 1000)
}

/// This process's PID.
pub fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() as u32 }
}

#[cfg(test)]
mod unix_tests {
    use super::*;

    #[test]
    fn unix_addresses_are_laid_out_as_the_kernel_wants() {
        let p = UnixAddr::path(b"/run/systemd/notify").unwrap();
        assert_eq!(p.as_bytes(), b"/run/systemd/notify\0");
        assert_eq!(p.len as usize, 2 + 20);
        let a = UnixAddr::abstract_name(b"sd").unwrap();
        assert_eq!(a.as_bytes(), b"\0sd");
        assert_eq!(format!("{a:?}"), "UnixAddr(@sd)");
        assert_eq!(format!("{p:?}"), "UnixAddr(/run/systemd/notify)");
        assert!(UnixAddr::path(b"").is_none());
        assert!(UnixAddr::path(b"/a\0b").is_none());
        assert!(UnixAddr::path(&[b'x'; 107]).is_some());
        assert!(
            UnixAddr::path(&[b'x'; 108]).is_none(),
            "no room for the NUL"
        );
        assert!(UnixAddr::abstract_name(&[b'x'; 107]).is_some());
        assert!(UnixAddr::abstract_name(&[b'x'; 108]).is_none());
    }

    #[test]
    fn monotonic_us_agrees_with_monotonic_ms() {
        let ms = monotonic_ms();
        let us = monotonic_us();
        assert!(us / 1000 >= ms && us / 1000 - ms < 1000);
    }
}
