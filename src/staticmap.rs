//! `--static-map`: a hand-written map wins over discovery, as it did in
//! openMosix, whose rc script loaded `/etc/openmosix.map` (or the older
//! `/etc/mosix.map`, `/etc/hpc.map`) with `setpe -w -f FILE` and started
//! omdiscd only when there was none.
//!
//! `--static-map FILE[,FILE...]`: the first of these files that exists is
//! read and checked with the map file parser ([`crate::mapfile::parse`]: a
//! bad line stops start-up, naming it), loaded into an openMosix 2.4 kernel
//! by `setpe -w -f FILE` through the child runner (waited for: a setpe that
//! fails or runs out of time stops start-up), and published to the map file
//! so that `omdiscd --dump` prints it as it prints a discovered map. Then
//! the process stays, announcing nothing: it holds the lock file, tells
//! systemd it is ready (and pings its watchdog), re-reads and reloads the
//! file on SIGHUP (looking for the kernel interface again), logs a summary
//! on SIGUSR1, and exits 0 on SIGTERM. When none of the files exists,
//! the daemon discovers the cluster as usual.
//!
//! `--static-nodes FILE` is the other use of a hand-written map: discovery
//! runs, and the file's nodes are permanent members of the map (the
//! daemon's `static_nodes` module).
//!
//! Host names in the file are passed on as written (setpe resolves them);
//! omdiscd never resolves a name (an initramfs has no resolver), so it finds
//! this node only among the IPv4 ranges and aliases.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrayvec::ArrayVec;

use crate::child::CHILD_TIMEOUT_MS;
use crate::config::Config;
use crate::daemon::{take_lock, StartError, VERSION};
use crate::mapfile::{self, ParsedMap, Writer};
use crate::notify::Notifier;
use crate::procfs::{AtomicFile, Backend, Kernel};
use crate::sys::{monotonic_ms, monotonic_us, Epoll, PidLock, SignalFd};
use crate::{error, info, notice, warn};

/// The first of `files` that exists; `None` if none does. A file that is
/// there but cannot be looked at (a directory on the way that may not be
/// read) is an error, not "absent": discovery must not start by mistake.
pub fn find(files: &[PathBuf]) -> Result<Option<PathBuf>, StartError> {
    for f in files {
        match std::fs::metadata(f) {
            Ok(_) => return Ok(Some(f.clone())),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) => {}
            Err(e) => {
                let why = format!("cannot tell whether it exists: {}", crate::sys::IoErr(&e));
                return Err(StartError::StaticMap(f.clone(), why));
            }
        }
    }
    Ok(None)
}

/// The files `--static-map` lists, for the log: `a, b, c`.
pub fn list(files: &[PathBuf]) -> String {
    let mut s = String::new();
    for (i, f) in files.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(s, "{sep}{}", f.display());
    }
    s
}

/// Reads and checks a static map, and finds this node in it among
/// `here` (this host's addresses).
fn read(path: &Path, here: &[Ipv4Addr]) -> Result<ParsedMap, StartError> {
    let fail = |why: String| StartError::static_map(path, why);
    let bytes = crate::procfs::read_map_file(path)
        .map_err(|e| fail(format!("cannot read it: {}", crate::sys::IoErr(&e))))?;
    let mut map = mapfile::parse(&bytes).map_err(|e| fail(e.to_string()))?;
    if map.ranges.is_empty() {
        return Err(fail("lists no node".to_string()));
    }
    // Ours, not the file's: a hand-written map has no such comments.
    map.writer = None;
    map.own = mapfile::node_of(&map, here).map(|(id, addr)| (id, addr.to_string()));
    Ok(map)
}

/// The process that publishes a static map instead of discovering.
pub struct StaticMap {
    path: PathBuf,
    map: ParsedMap,
    /// This host's addresses, to find this node in the map.
    here: ArrayVec<Ipv4Addr, 8>,
    /// `--setpe` and `--map-file`, for the log.
    setpe: PathBuf,
    map_file: PathBuf,
    /// `--pid-file`, locked for the process's life.
    lock: PidLock,
    writer: AtomicFile,
    kernel: Kernel,
    epoll: Epoll,
    /// Made in [`StaticMap::start`], after daemonizing.
    signals: Option<SignalFd>,
    notify: Option<Notifier>,
    watchdog_at_ms: u64,
}

impl StaticMap {
    /// Takes the lock file, reads and checks the static map at `path`,
    /// prepares the map file and setpe.
    pub fn new(cfg: &Config, path: PathBuf) -> Result<StaticMap, StartError> {
        let lock = take_lock(cfg)?;
        let here = crate::daemon::local_addrs(cfg);
        let map = read(&path, &here)?;
        let io = |what| move |e| StartError::Io(what, e);
        let writer = AtomicFile::new(&cfg.map_file).map_err(io("preparing the map file"))?;
        let backend = Backend::detect(&cfg.proc_root);
        // setpe loads the hand-written file itself, as the rc script did.
        let kernel = Kernel::new(backend, &cfg.proc_root, &cfg.setpe, &path)
            .map_err(io("preparing the kernel interface"))?;
        let epoll = Epoll::new().map_err(io("creating epoll"))?;
        Ok(StaticMap {
            path,
            map,
            here,
            setpe: cfg.setpe.clone(),
            map_file: cfg.map_file.clone(),
            lock,
            writer,
            kernel,
            epoll,
            signals: None,
            notify: Notifier::from_env(),
            watchdog_at_ms: 0,
        })
    }

    /// Writes this process's PID into the lock file again (after daemonizing).
    pub fn rewrite_pid(&self) -> io::Result<()> {
        self.lock.write_pid()
    }

    /// Takes over the signals and says what was chosen, and why.
    pub fn start(&mut self) -> io::Result<()> {
        let signals = SignalFd::new(&crate::daemon::HANDLED_SIGNALS)?;
        self.epoll
            .add(signals.as_raw_fd(), 0, libc::EPOLLIN as u32)?;
        self.signals = Some(signals);
        let p = self.path.display();
        let nodes = mapfile::node_count(&self.map);
        if self.kernel.backend() == Backend::OpenMosix24 {
            notice!(
                "static map {p} found: loading it with setpe, not starting discovery ({} -w -f {p}; {nodes} nodes)",
                self.setpe.display()
            );
        } else {
            notice!(
                "static map {p} found: publishing it to {}, not starting discovery ({nodes} nodes; {}, so no setpe)",
                self.map_file.display(),
                self.kernel.backend().describe()
            );
        }
        self.say_own();
        Ok(())
    }

    /// Logs which node of the map this one is.
    fn say_own(&self) {
        match &self.map.own {
            Some((id, addr)) => {
                info!("this node is #{id} (0x{id:04x}, address {addr}) in the static map")
            }
            None => warn!(
                "none of this host's addresses ({}) is in the static map {}: --dump shows 0x0000 as this node's id",
                crate::daemon::AddrList(&self.here),
                self.path.display()
            ),
        }
    }

    /// Publishes the map read last: the map file, then setpe (waited for).
    pub fn load(&mut self) -> Result<(), StartError> {
        let writer = Writer {
            pid: std::process::id(),
            time_s: crate::sys::unix_time_s(),
        };
        let (map, path) = (&self.map, &self.path);
        self.writer
            .write_with(|w| mapfile::render_static(map, path, VERSION, writer, w))
            .map_err(|e| StartError::Io("writing the map file", e))?;
        let fail = |why: String| StartError::static_map(&self.path, why);
        self.kernel
            .load(monotonic_ms())
            .map_err(|e| fail(e.to_string()))?;
        // A bit longer than the child runner's own deadline, which kills it.
        if let Some(Err(e)) = self.kernel.finish(CHILD_TIMEOUT_MS + 1_000) {
            return Err(fail(e.to_string()));
        }
        if self.kernel.backend() == Backend::OpenMosix24 {
            info!("setpe loaded the static map {}", self.path.display());
        }
        self.ready();
        Ok(())
    }

    /// READY=1 with the status line.
    fn ready(&self) {
        let loaded = self.kernel.backend() == Backend::OpenMosix24;
        self.notify(|n| n.ready_static(mapfile::node_count(&self.map), loaded));
    }

    /// Runs until SIGTERM or SIGINT: pings the watchdog, reloads on SIGHUP.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = [crate::sys::EMPTY_EVENT; 4];
        loop {
            let wait = self.watchdog(monotonic_ms());
            let n = self.epoll.wait(&mut events, wait)?;
            if n > 0 && self.on_signals() {
                return Ok(());
            }
        }
    }

    /// Sends WATCHDOG=1 when due; how long until the next one.
    fn watchdog(&mut self, now: u64) -> Option<Duration> {
        let n = self.notify.as_ref()?;
        let every = n.watchdog_every_ms()?;
        if now >= self.watchdog_at_ms {
            if let Err(e) = n.watchdog() {
                crate::daemon::notify_failed(&e);
            }
            self.watchdog_at_ms = now + every;
        }
        Some(Duration::from_millis(self.watchdog_at_ms - now))
    }

    fn notify(&self, send: impl FnOnce(&Notifier) -> io::Result<()>) {
        if let Some(n) = &self.notify {
            if let Err(e) = send(n) {
                crate::daemon::notify_failed(&e);
            }
        }
    }

    /// Handles the pending signals; true on SIGTERM or SIGINT.
    fn on_signals(&mut self) -> bool {
        loop {
            let Some(signals) = &self.signals else {
                return false;
            };
            let info = match signals.read() {
                Ok(Some(info)) => info,
                Ok(None) | Err(_) => return false,
            };
            match info.signo {
                libc::SIGTERM | libc::SIGINT => {
                    notice!(
                        "signal {}: stopping (the static map stays loaded)",
                        info.signo
                    );
                    self.notify(Notifier::stopping);
                    return true;
                }
                libc::SIGHUP => self.reload(),
                libc::SIGUSR1 => {
                    let runs = self.kernel.runs();
                    info!(
                        "static map {}: {} nodes; setpe started {} times, failed {}, timed out {}",
                        self.path.display(),
                        mapfile::node_count(&self.map),
                        runs.started,
                        runs.failed,
                        runs.timed_out
                    );
                }
                // setpe is waited for where it is started.
                _ => {}
            }
        }
    }

    /// SIGHUP: reads the file again and loads it; a file that is now
    /// unusable keeps the map loaded.
    fn reload(&mut self) {
        info!("SIGHUP: re-reading the static map {}", self.path.display());
        self.notify(|n| n.reloading(monotonic_us()));
        // procfs may have been mounted since (an initramfs).
        if self.kernel.redetect() {
            notice!(
                "kernel interface found again: {}",
                self.kernel.backend().describe()
            );
        }
        match read(&self.path, &self.here) {
            Ok(map) => {
                self.map = map;
                self.say_own();
                if let Err(e) = self.load() {
                    error!("{e}");
                    // Ready again all the same: the process runs on.
                    self.ready();
                }
            }
            Err(e) => {
                error!("{e}; keeping the map loaded before");
                self.ready();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_file_that_exists_wins_and_a_missing_one_is_skipped() {
        let dir = std::env::temp_dir().join(format!("omd-staticmap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (dir.join("a.map"), dir.join("b.map"), dir.join("c.map"));
        std::fs::write(&b, "1 10.0.0.1 1\n").unwrap();
        std::fs::write(&c, "1 10.0.0.1 1\n").unwrap();
        // A file where a directory should be is "absent" too (ENOTDIR).
        let under_file = b.join("x.map");
        let files = [a.clone(), under_file, b.clone(), c.clone()];
        assert_eq!(find(&files).unwrap(), Some(b.clone()));
        assert_eq!(find(std::slice::from_ref(&a)).unwrap(), None);
        assert_eq!(find(&[]).unwrap(), None);
        assert_eq!(
            list(&[a.clone(), b.clone()]),
            format!("{}, {}", a.display(), b.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
