//! Why the daemon could not start ([`StartError`]).
#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use crate::auth::KeyFileError;
use crate::netlink::{self};
use crate::sys::IoErr;

use super::IfName;

/// Why the daemon could not start. `main` prints it and exits with status 1.
#[derive(Debug)]
pub enum StartError {
    /// No `-i` and no default route: the original's two messages.
    NoDefaultRoute,
    /// An interface named with `-i` is unusable.
    Interface { name: IfName, reason: &'static str },
    /// A system call failed.
    Io(&'static str, io::Error),
    /// Reading interfaces, routes or addresses over netlink failed.
    Netlink(netlink::NlError),
    /// The key file is unusable.
    KeyFile(PathBuf, KeyFileError),
    /// Another omdiscd holds the lock file (its PID, if it says).
    AlreadyRunning(PathBuf, Option<u32>),
    /// Another omdiscd on this host announces this address on this group
    /// and port (its PID, if it says).
    SameNode {
        addr: Ipv4Addr,
        group: SocketAddrV4,
        pid: Option<u32>,
    },
    /// The lock file cannot be made or locked.
    PidFile(PathBuf, io::Error),
    /// The control socket cannot be made.
    Control(PathBuf, io::Error),
    /// `--static-map`: the map file found cannot be used, or setpe did
    /// not load it.
    StaticMap(PathBuf, String),
}

impl StartError {
    /// [`StartError::StaticMap`] for `path`: one function, not the error
    /// built inline at each of the places a static map is refused.
    #[inline(never)]
    pub(crate) fn static_map(path: &Path, why: String) -> StartError {
        StartError::StaticMap(path.to_path_buf(), why)
    }

    /// The exit status: `EXIT_ALREADY_RUNNING` (3) when another daemon runs,
    /// else 1.
    pub fn exit_status(&self) -> u8 {
        match self {
            StartError::AlreadyRunning(..) | StartError::SameNode { .. } => EXIT_ALREADY_RUNNING,
            _ => 1,
        }
    }
}

/// Exit status when another omdiscd holds the lock file.
const EXIT_ALREADY_RUNNING: u8 = 3;

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NoDefaultRoute => write!(
                f,
                "Unable to determine address of default interface.  This may happen because there is no default route configured.  Without a default route, an interface must be: Network is unreachable\nUnable to initialize network.  Exiting."
            ),
            StartError::Interface { name, reason } => {
                write!(f, "interface {name}: {reason}")
            }
            StartError::Io(what, e) => write!(f, "{what}: {}", IoErr(e)),
            StartError::Netlink(e) => write!(f, "reading interfaces over netlink: {e}"),
            StartError::KeyFile(path, e) => write!(f, "key file {}: {e}", path.display()),
            StartError::AlreadyRunning(path, pid) => {
                write!(f, "another omdiscd is running")?;
                if let Some(pid) = pid {
                    write!(f, " (PID {pid})")?;
                }
                write!(
                    f,
                    ": it holds {}; stop it first, or give this one another --map-file or --pid-file",
                    path.display()
                )
            }
            StartError::PidFile(path, e) => {
                write!(f, "lock file {}: {}", path.display(), IoErr(e))?;
                if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM | libc::EROFS)) {
                    write!(
                        f,
                        "; run omdiscd as root, or give --map-file a path this user can write (the lock file and the control socket go beside it)"
                    )?;
                }
                Ok(())
            }
            StartError::SameNode { addr, group, pid } => {
                write!(f, "another omdiscd is running")?;
                if let Some(pid) = pid {
                    write!(f, " (PID {pid})")?;
                }
                write!(
                    f,
                    " on this host as {addr} in group {group}: two would make every node see one address twice; stop it first, or give this one another --group or --port"
                )
            }
            StartError::Control(path, e) => {
                write!(f, "control socket {}: {}", path.display(), IoErr(e))
            }
            StartError::StaticMap(path, why) => {
                write!(f, "static map {}: {why}", path.display())
            }
        }
    }
}
