//! One daemon per map file: the `flock`ed PID file.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{cvt, cvt_r, fs, getpid};

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
            fs::create_dir_all(dir).map_err(LockError::Io)?;
        }
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| LockError::Io(io::ErrorKind::InvalidInput.into()))?;
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        let flags = flags | libc::O_NONBLOCK;
        let fd = fs::open(&c, flags, 0o644).map_err(LockError::Io)?;
        if !fs::is_regular_fd(fd.as_raw_fd()).map_err(LockError::Io)? {
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
                    .and_then(|t| crate::num::u32_of(t.trim()));
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
        let pid = getpid();
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
