//! Becoming a daemon: the double fork, and the start-up verdict relayed to
//! whoever started it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{cvt, cvt_r, pipe, write_all_fd};

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
    let (read, write) = pipe(libc::O_CLOEXEC)?;
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
