//! Processes: this one (PID, environment), others (whether one exists),
//! and the children the daemon starts (spawn, reap, kill).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr;

use super::{cvt, cvt_r, pipe};

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

/// A pipe whose read end is non-blocking, both ends close-on-exec: a child's
/// output, read by the event loop.
pub fn output_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = pipe(libc::O_CLOEXEC)?;
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    cvt(unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) })?;
    Ok((read, write))
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

/// This process's PID.
pub fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() as u32 }
}
