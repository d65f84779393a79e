//! The daemon's configuration: [`Config`], what the command line gives
//! (`crate::cli` parses and validates it, `crate::daemon` runs it), with its
//! defaults, the limits on its values, and the paths derived from it.
#![forbid(unsafe_code)]

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::auth::Mode;
use crate::wire::{LABEL_LEN, MAX_HOLD_MS};

/// Multicast group when `--group` is not given (organisation-local scope, RFC 2365).
pub(crate) const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 42);
/// UDP port when `--port` is not given.
pub(crate) const DEFAULT_PORT: u16 = 7742;
/// Announce interval when `--interval` is not given.
pub(crate) const DEFAULT_INTERVAL_MS: u32 = 2_000;
/// The hold time is this many intervals unless `--hold` says otherwise.
/// Five, as RTCP's timeout (RFC 3550 6.3.5): with announcements jittered by
/// +-20 % a node survives three lost announcements in a row, so at 5 % loss
/// a pair of nodes loses track of each other once in 160,000 intervals
/// rather than once in 400 (three intervals; shown by the simulator).
pub const DEFAULT_HOLD_INTERVALS: u32 = 5;
/// `--hold` must be at least this many intervals: with a hold of one
/// interval, announcements jittered by +-20 % drop live nodes.
pub(crate) const MIN_HOLD_INTERVALS: u32 = 2;
/// Announcements per second the whole cluster sends at most when `--budget`
/// is not given: up to 2,000 nodes announce every 2 s, 4,000 nodes every 4 s.
/// Every node receives all of them (about 1 us of CPU each).
pub(crate) const DEFAULT_BUDGET: u32 = 1_000;
/// The largest `--budget`.
pub(crate) const MAX_BUDGET: u32 = 1_000_000;
/// Where the map is published when `--map-file` is not given.
pub(crate) const DEFAULT_MAP_FILE: &str = "/run/omdiscd/openmosix.map";
/// Where procfs is mounted when `--proc-root` is not given.
pub(crate) const DEFAULT_PROC_ROOT: &str = "/proc";
/// The setpe program when `--setpe` is not given.
pub(crate) const DEFAULT_SETPE: &str = "/sbin/setpe";
/// IFNAMSIZ - 1: the kernel's limit on an interface name, without the NUL.
pub const MAX_IFNAME_LEN: usize = crate::netlink::msg::IFNAMSIZ - 1;
/// Most files `--static-map` lists.
pub(crate) const MAX_STATIC_MAPS: usize = 8;
/// The static maps the openMosix rc script looked for, in its order: what
/// the shipped unit and initramfs scripts pass to `--static-map`.
pub const RC_STATIC_MAPS: &str = "/etc/openmosix.map,/etc/mosix.map,/etc/hpc.map";

/// Everything the daemon needs from the command line (`crate::cli` parses and
/// validates it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// False with `-n/--nodaemon`.
    pub daemonize: bool,
    /// From `-i/--interface`; empty means "the interface of the default route".
    pub interfaces: Vec<String>,
    /// From `-m/--multicast-ttl`; `None` means TTL 1 (one link).
    pub multicast_ttl: Option<u8>,
    /// From `--group`; always a multicast address.
    pub group: Ipv4Addr,
    /// From `--port`; never 0.
    pub port: u16,
    /// From `--interval`, in milliseconds, `MIN_INTERVAL_MS..=MAX_INTERVAL_MS`.
    pub interval_ms: u32,
    /// From `--hold`; `None` means [`DEFAULT_HOLD_INTERVALS`] x interval. Use [`Config::hold_ms`].
    pub hold_ms: Option<u32>,
    /// From `--budget`: announcements per second for the whole cluster.
    pub budget: u32,
    /// From `--map-file`.
    pub map_file: PathBuf,
    /// From `--proc-root`; lets tests point at a fake procfs.
    pub proc_root: PathBuf,
    /// From `--setpe`.
    pub setpe: PathBuf,
    /// From `--cluster`, NUL padded; all zero means no label.
    pub label: [u8; LABEL_LEN],
    /// `-d/--debug`: log debug lines too.
    pub debug: bool,
    /// From `--key-file`: the shared keys (see [`crate::auth`]).
    pub key_file: Option<PathBuf>,
    /// From `--auth`; `enforce` by default with a key file, else `off`.
    pub auth: Mode,
    /// From `--pid-file`; `None` means the map file's path with `.pid`
    /// added. Use `Config::pid_file`.
    pub pid_file: Option<PathBuf>,
    /// From `--control-socket`; `None` means the map file's path with
    /// `.sock` added. Use `Config::control_socket`.
    pub control_socket: Option<PathBuf>,
    /// From `--metrics-file`.
    pub metrics_file: Option<PathBuf>,
    /// From `--on-change`.
    pub on_change: Option<PathBuf>,
    /// From `--static-map`: hand-written maps, the first that exists wins
    /// over discovery (see [`crate::staticmap`]).
    pub static_maps: Vec<PathBuf>,
    /// From `--static-nodes`: permanent members next to discovery (see
    /// [`crate::staticmap`]).
    pub static_nodes: Option<PathBuf>,
    /// `--cmdline`: the kernel command line's settings were applied (by
    /// `main`, which reads it).
    pub cmdline: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            daemonize: true,
            interfaces: Vec::new(),
            multicast_ttl: None,
            group: DEFAULT_GROUP,
            port: DEFAULT_PORT,
            interval_ms: DEFAULT_INTERVAL_MS,
            hold_ms: None,
            budget: DEFAULT_BUDGET,
            map_file: PathBuf::from(DEFAULT_MAP_FILE),
            proc_root: PathBuf::from(DEFAULT_PROC_ROOT),
            setpe: PathBuf::from(DEFAULT_SETPE),
            label: [0; LABEL_LEN],
            debug: false,
            key_file: None,
            auth: Mode::Off,
            pid_file: None,
            control_socket: None,
            metrics_file: None,
            on_change: None,
            static_maps: Vec::new(),
            static_nodes: None,
            cmdline: false,
        }
    }
}

impl Config {
    /// The lock file: `--pid-file`, or the map file's path and `.pid`.
    pub(crate) fn pid_file(&self) -> PathBuf {
        self.pid_file
            .clone()
            .unwrap_or_else(|| self.beside_map_file(".pid"))
    }

    /// The control socket: `--control-socket`, or the map file's path and
    /// `.sock`.
    pub(crate) fn control_socket(&self) -> PathBuf {
        self.control_socket
            .clone()
            .unwrap_or_else(|| self.beside_map_file(".sock"))
    }

    /// The map file's path with `suffix` added: where the files that belong
    /// to one daemon are by default.
    fn beside_map_file(&self, suffix: &str) -> PathBuf {
        let mut p = self.map_file.clone().into_os_string();
        p.push(suffix);
        PathBuf::from(p)
    }

    /// The effective hold time: `--hold`, or 5 x interval, never above [`MAX_HOLD_MS`]
    /// so it always fits the wire format's range.
    pub fn hold_ms(&self) -> u32 {
        self.hold_ms
            .unwrap_or_else(|| self.interval_ms.saturating_mul(DEFAULT_HOLD_INTERVALS))
            .min(MAX_HOLD_MS)
    }

    /// Keeps the paths usable after daemonizing (which changes to `/`).
    pub fn absolutize(&mut self) -> io::Result<()> {
        let cwd = std::env::current_dir()?;
        for p in [&mut self.map_file, &mut self.proc_root, &mut self.setpe] {
            if p.is_relative() {
                *p = cwd.join(&*p);
            }
        }
        let optional = [
            &mut self.pid_file,
            &mut self.key_file,
            &mut self.control_socket,
            &mut self.metrics_file,
            &mut self.on_change,
            &mut self.static_nodes,
        ];
        for p in optional.into_iter().flatten() {
            if p.is_relative() {
                *p = cwd.join(&*p);
            }
        }
        for p in &mut self.static_maps {
            if p.is_relative() {
                *p = cwd.join(&*p);
            }
        }
        Ok(())
    }
}
