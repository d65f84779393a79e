//! The child programs: `--on-change` ([`Hook`]) and collecting setpe.
#![forbid(unsafe_code)]

use std::fmt::{self, Write as _};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::child::{Ended, Environment, Program, CHILD_TIMEOUT_MS};
use crate::log::{Level, Limit};
use crate::map::{ClusterMap, NodeId};
use crate::node::Input;
use crate::sys::IoErr;

use super::{Daemon, Shell, LOG_LIMIT_MS};

/// Most bytes of `OMDISCD_JOINED` or `OMDISCD_LEFT` (a cold boot of
/// thousands of nodes): beyond, the list is cut and `OMDISCD_TRUNCATED=1`.
const HOOK_LIST_MAX: usize = 64 * 1024;

/// The `--on-change` program, run after each change of the map with what
/// changed since its previous run, one run at a time.
pub(super) struct Hook {
    pub(super) program: Program,
    env: Environment,
    map_file: PathBuf,
    /// Each node id's address at the previous run (0: absent).
    seen: Box<[u32]>,
    /// The map changed while a run was in progress: run again after it.
    pending: bool,
}

impl Hook {
    pub(super) fn new(path: &Path, map_file: &Path) -> io::Result<Hook> {
        Ok(Hook {
            program: Program::new("on-change program", path, &[])?,
            env: Environment::new(2 * HOOK_LIST_MAX + 1024),
            map_file: map_file.to_path_buf(),
            seen: vec![0; crate::map::CAPACITY].into_boxed_slice(),
            pending: false,
        })
    }

    /// The map changed: run now, or after the run in progress.
    pub(super) fn changed(&mut self, map: &ClusterMap, now_ms: u64) {
        self.pending = true;
        // SIGCHLD is the usual way to learn that a run ended, but a process
        // signal can go to another thread (tests) or coalesce: look anyway.
        self.poll(map, now_ms);
        if !self.program.busy() && std::mem::take(&mut self.pending) {
            self.start(map, now_ms);
        }
    }

    /// Collects a run that ended or ran out of time, and starts the next
    /// one if the map changed meanwhile.
    fn poll(&mut self, map: &ClusterMap, now_ms: u64) {
        let Some(ended) = self.program.poll(now_ms) else {
            return;
        };
        let why = match ended {
            Ended::Ok => None,
            Ended::Failed(status) => Some(Why::Status(status)),
            Ended::TimedOut => Some(Why::TimedOut),
        };
        if let Some(why) = why {
            crate::log::limited(
                Limit::ChildFailed,
                LOG_LIMIT_MS,
                Level::Warn,
                format_args!(
                    "--on-change program {}: {why}",
                    self.program.path().display()
                ),
            );
        }
        if std::mem::take(&mut self.pending) {
            self.start(map, now_ms);
        }
    }

    fn start(&mut self, map: &ClusterMap, now_ms: u64) {
        let seen = &self.seen;
        let env = &mut self.env;
        env.clear();
        let own = map.own_node();
        env.set("OMDISCD_NODE_ID", |w| {
            let _ = write!(w, "{}", own.id);
        });
        env.set("OMDISCD_NODES", |w| {
            let _ = write!(w, "{}", map.len());
        });
        env.set("OMDISCD_MAP_FILE", |w| {
            let _ = write!(w, "{}", self.map_file.display());
        });
        let mut cut = false;
        env.set("OMDISCD_JOINED", |w| {
            let joined = map
                .iter()
                .filter(|n| seen[n.id as usize] != u32::from(n.addr));
            cut |= list(w, joined.map(|n| (n.id, n.addr)));
        });
        env.set("OMDISCD_LEFT", |w| {
            let left = seen.iter().enumerate().filter_map(|(id, &addr)| {
                let id = id as NodeId;
                let gone = addr != 0 && map.get(id).is_none_or(|n| u32::from(n.addr) != addr);
                gone.then(|| (id, Ipv4Addr::from(addr)))
            });
            cut |= list(w, left);
        });
        if cut {
            env.set("OMDISCD_TRUNCATED", |w| {
                let _ = w.write_str("1");
            });
        }
        match self.program.start(now_ms, self.env.envp()) {
            Ok(()) => {
                self.seen.fill(0);
                for n in map.iter() {
                    self.seen[n.id as usize] = u32::from(n.addr);
                }
            }
            Err(e) => crate::log::limited(
                Limit::ChildFailed,
                LOG_LIMIT_MS,
                Level::Warn,
                format_args!(
                    "--on-change program {}: cannot start it: {}; the next change tries again",
                    self.program.path().display(),
                    IoErr(&e)
                ),
            ),
        }
    }
}

/// Writes `id=address` pairs separated by spaces, up to [`HOOK_LIST_MAX`]
/// bytes; true if the list was cut.
pub(super) fn list(
    w: &mut dyn fmt::Write,
    nodes: impl Iterator<Item = (NodeId, Ipv4Addr)>,
) -> bool {
    let mut len = 0;
    for (i, (id, addr)) in nodes.enumerate() {
        // At most "65535=255.255.255.255 ": 22 bytes.
        if len + 22 > HOOK_LIST_MAX {
            return true;
        }
        let mut item = heapless::String::<24>::new();
        let sep = if i == 0 { "" } else { " " };
        let _ = write!(item, "{sep}{id}={addr}");
        len += item.len();
        let _ = w.write_str(&item);
    }
    false
}

/// Why a child program failed, for the log.
pub(super) enum Why {
    Status(i32),
    TimedOut,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Status(s) => write!(f, "failed with status {s}"),
            Why::TimedOut => write!(
                f,
                "ran longer than {} s and was killed",
                CHILD_TIMEOUT_MS / 1000
            ),
        }
    }
}

impl Shell {
    /// Collects a setpe that ended or ran out of time; true if one failed.
    pub(super) fn poll_setpe(&mut self, now_ms: u64) -> bool {
        match self.kernel.poll(now_ms) {
            Some(Err(e)) => {
                self.kernel_failed(e);
                true
            }
            _ => false,
        }
    }

    /// When a child program must be killed.
    pub(super) fn child_deadline(&self) -> Option<u64> {
        let hook = self.hook.as_ref().and_then(|h| h.program.deadline());
        match (self.kernel.deadline(), hook) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Daemon {
    /// Collects child programs that ended, kills those out of time.
    pub(super) fn poll_children(&mut self, now_ms: u64) {
        if self.io.poll_setpe(now_ms) {
            self.core.handle(now_ms, Input::KernelFailed, &mut self.io);
        }
        if let Some(hook) = &mut self.io.hook {
            hook.poll(self.core.map(), now_ms);
        }
    }
}
