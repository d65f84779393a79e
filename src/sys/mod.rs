//! Thin wrappers over the Linux system calls the daemon uses, one small file
//! per concern (mio's `sys/unix` layout); the rest of the crate names them
//! as `crate::sys::X`, re-exported here.

mod clock;
mod daemonize;
mod epoll;
mod fd;
pub(crate) mod fs;
mod lock;
mod process;
mod random;
mod signal;
pub(crate) mod socket;
mod timer;
mod unix;

pub(crate) use clock::local_time;
pub use clock::{monotonic_ms, monotonic_us, unix_time_s};
pub use daemonize::{close_inherited_fds, daemonize, Starter};
pub use epoll::{event_token, Epoll, EMPTY_EVENT};
pub(crate) use fd::{cvt, cvt_r, pipe};
pub use fd::{read_fd, write_all_fd, write_fd, Errno, IoErr};
pub use fs::{create_dir_all, device_and_inode, executable, exists};
pub use lock::{LockError, PidLock};
pub use process::{environment, getpid, kill_group, output_pipe, process_exists, reap, spawn};
pub use random::getrandom_u64;
pub use signal::{SignalFd, SignalInfo};
pub use timer::TimerFd;
pub(crate) use unix::SUN_PATH_MAX;
pub use unix::{AbstractClaim, UnixAddr, UnixDgram};
