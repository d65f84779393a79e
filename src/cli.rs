//! Command-line parsing, written by hand so the binary stays small.
//!
//! The grammar is getopt_long's, minus abbreviations: `--opt value`, `--opt=value`,
//! `-i eth0`, `-ieth0`, clustered flags (`-nd`, `-ndi eth0`), `--` ends the options.
//! A value is always taken from the next argument, even if it starts with `-`, so
//! `--interval -1` reports a bad interval rather than a missing value.
//!
//! Repeated options: the last one wins, except `-i/--interface`, which is an error when
//! given twice, because `-i eth0 -i eth1` would otherwise silently drop eth0 (the list
//! form is `-i eth0,eth1`).
//!
//! `-h/--help` anywhere wins over everything else, even over errors elsewhere on the
//! line; then `-V/--version`; then the first error; then the command.
//!
//! Values must be UTF-8, except the paths (`--map-file`, `--proc-root`, `--setpe`,
//! `--key-file`, `--pid-file`, `--control-socket`, `--metrics-file`, `--on-change`,
//! `--static-map`, `--static-nodes`), because a Linux path may be any bytes.
//!
//! With `--cmdline`, [`parse_with_kernel`] first applies the kernel command
//! line's `omdiscd.<option>=<value>` and `omdiscd.<flag>` words, then the
//! real command line, which wins.
#![forbid(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::Ipv4Addr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The accepted `--interval` and `--hold` ranges and the label size are the
/// wire format's: defined in [`crate::wire`], re-exported for the command line's users.
pub use crate::wire::{LABEL_LEN, MAX_HOLD_MS, MAX_INTERVAL_MS, MIN_INTERVAL_MS};

use crate::auth::Mode;
use crate::control::{StatsFormat, View, WatchFormat};
use crate::daemon::Config;

/// Multicast group when `--group` is not given (organisation-local scope, RFC 2365).
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 42);
/// UDP port when `--port` is not given.
pub const DEFAULT_PORT: u16 = 7742;
/// Announce interval when `--interval` is not given.
pub const DEFAULT_INTERVAL_MS: u32 = 2_000;
/// The hold time is this many intervals unless `--hold` says otherwise.
/// Five, as RTCP's timeout (RFC 3550 6.3.5): with announcements jittered by
/// +-20 % a node survives three lost announcements in a row, so at 5 % loss
/// a pair of nodes loses track of each other once in 160,000 intervals
/// rather than once in 400 (three intervals; shown by the simulator).
pub const DEFAULT_HOLD_INTERVALS: u32 = 5;
/// `--hold` must be at least this many intervals: with a hold of one
/// interval, announcements jittered by +-20 % drop live nodes.
pub const MIN_HOLD_INTERVALS: u32 = 2;
/// Announcements per second the whole cluster sends at most when `--budget`
/// is not given: up to 2,000 nodes announce every 2 s, 4,000 nodes every 4 s.
/// Every node receives all of them (about 1 us of CPU each).
pub const DEFAULT_BUDGET: u32 = 1_000;
/// The largest `--budget`.
pub const MAX_BUDGET: u32 = 1_000_000;
/// Where the map is published when `--map-file` is not given.
pub const DEFAULT_MAP_FILE: &str = "/run/omdiscd/openmosix.map";
/// Where procfs is mounted when `--proc-root` is not given.
pub const DEFAULT_PROC_ROOT: &str = "/proc";
/// The setpe program when `--setpe` is not given.
pub const DEFAULT_SETPE: &str = "/sbin/setpe";
/// The interface limit is the core's (it sizes the link storage there).
pub use crate::node::MAX_INTERFACES;
/// IFNAMSIZ - 1: the kernel's limit on an interface name, without the NUL.
pub const MAX_IFNAME_LEN: usize = 15;
/// Most files `--static-map` lists.
pub(crate) const MAX_STATIC_MAPS: usize = 8;
/// The static maps the openMosix rc script looked for, in its order: what
/// the shipped unit and initramfs scripts pass to `--static-map`.
pub const RC_STATIC_MAPS: &str = "/etc/openmosix.map,/etc/mosix.map,/etc/hpc.map";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the daemon.
    Run(Box<Config>),
    /// Print the map (asking the running daemon, else reading the map file)
    /// and exit.
    Dump {
        map_file: PathBuf,
        control: PathBuf,
        view: View,
    },
    /// Print the running daemon's counters and exit.
    Stats {
        control: PathBuf,
        format: StatsFormat,
    },
    /// Print the running daemon's map, then each change as it happens.
    Watch {
        control: PathBuf,
        format: WatchFormat,
    },
    /// Print [`USAGE`] and exit successfully.
    Help,
    /// Print the version and exit successfully.
    Version,
}

/// A bad command line; `message` is one line naming the option and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    pub message: String,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// Printed after a [`UsageError`], like the GNU tools do.
pub const USAGE_HINT: &str = "Try 'omdiscd --help' for more information.";

/// The `--help` text. Keep the defaults in step with the constants above (a test checks).
pub const USAGE: &str = "\
Usage: omdiscd [OPTIONS]
       omdiscd --dump [--format showmap|map|json|hosts] [--map-file PATH]
       omdiscd --stats [--format text|json|prometheus] [--map-file PATH]
       omdiscd --watch [--format text|json] [--map-file PATH]
Announce this node to the openMosix cluster by UDP multicast, learn the other
nodes, and publish the cluster map to the kernel and to a map file.

  -n, --nodaemon             stay in the foreground, log to standard output
  -i, --interface IF[,IF...] announce on these interfaces (1 to 6); default: the
                             interface of the default route
  -m, --multicast-ttl TTL    multicast TTL for routed clusters, 1 to 255
                             (default 1)
      --group ADDR           IPv4 multicast group (default 239.255.77.42)
      --port PORT            UDP port (default 7742)
      --interval SECS        seconds between announcements, 0.1 to 3600, up to
                             3 decimals (default 2)
      --hold SECS            forget a node not heard from for SECS, from 2 x
                             the interval to 86400 (default 5 x the interval)
      --budget N             announcements per second for the whole cluster,
                             1 to 1000000 (default 1000): in a cluster of more
                             than N x interval nodes each node announces every
                             nodes / N seconds, and holds grow with it
      --cluster LABEL        cluster label, 1 to 16 printable ASCII characters
                             without spaces; nodes with another label are
                             ignored (default: no label)
      --key-file PATH        shared keys: sign every message and check every
                             message received (HMAC-SHA256); one
                             '<key-id> <hex secret>' per line, the first signs;
                             mode 600; re-read on SIGHUP
      --auth MODE            off (no keys), permissive (sign, also accept
                             unsigned messages) or enforce (accept only signed
                             messages); default enforce with --key-file
      --map-file PATH        where to publish the map
                             (default /run/omdiscd/openmosix.map)
      --pid-file PATH        lock file that keeps a second omdiscd from using
                             the same map file; holds the PID (default: the
                             map file's path with .pid added)
      --proc-root DIR        where procfs is mounted (default /proc)
      --setpe PATH           setpe program that loads the map into an
                             openMosix 2.4 kernel (default /sbin/setpe)
      --control-socket PATH  the daemon's control socket, mode 0600, used by
                             --dump, --stats and --watch (default: the map
                             file's path with .sock added)
      --metrics-file PATH    write every counter in the Prometheus text format
                             to PATH every 10 s (node_exporter textfile)
      --on-change PROG       run PROG after each change of the map, with the
                             change in its environment (OMDISCD_JOINED, ...)
      --static-map FILE[,FILE...]
                             if one of these hand-written maps exists (the
                             first that does), load it with setpe -w -f FILE
                             and publish it to the map file instead of
                             discovering the cluster, as the openMosix rc
                             script did; none exists: discovery as usual;
                             empty (--static-map=): none
      --static-nodes FILE    discover, and keep the nodes of this hand-written
                             map (IPv4, ids by the address rule) as permanent
                             members: never expired, kept over a goodbye,
                             keeping their ids against any other claimant
      --cmdline              also take omdiscd.<option>=<value> settings from
                             the kernel command line; options given here win
  -d, --debug                log debug messages too
      --dump                 print the map (like showmap) and exit: asks the
                             running daemon, else reads the map file
      --stats                print the running daemon's counters and exit
      --watch                print the running daemon's map, then a line per
                             change (joined, left and why, id collision) as
                             it happens, until interrupted
      --format FMT           --dump: showmap (default), map, json or hosts;
                             --stats: text (default), json or prometheus;
                             --watch: text (default) or json (a line each)
  -h, --help                 show this help and exit
  -V, --version              show the version and exit

setpe and the --on-change program are killed if they run longer than 10 s.

Exit status: 0 success; 1 the daemon could not start (network, key file,
lock file, control socket, kernel command line), --dump/--stats found no
daemon and no usable map, --watch found no daemon, or the daemon dropped a
--watch that read too slowly; 2 bad usage; 3 another omdiscd holds the lock
file (--pid-file), or runs on this host with the same address, group and
port; 4 --dump printed a stale map (the omdiscd that wrote it is not
running).
";

/// Parses the arguments after `argv[0]`.
pub fn parse<I, S>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    parse_into(State::default(), None, args)
}

/// Like [`parse`], after applying the settings of the kernel command line
/// `kernel` (the contents of `/proc/cmdline`): each word
/// `omdiscd.<long-option>=<value>` acts as `--<long-option>=<value>`, and
/// `omdiscd.<flag>` as `--<flag>`; other words are ignored. Options on the
/// real command line win (even `-i`, which may otherwise be given once).
pub fn parse_with_kernel<I, S>(kernel: &[u8], args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut state = State::default();
    let mut error = None;
    for word in kernel.split(|b| b.is_ascii_whitespace()) {
        let Some(setting) = word.strip_prefix(b"omdiscd.") else {
            continue;
        };
        if let Err(e) = state.kernel_setting(setting) {
            error.get_or_insert(err(format!("{e} (on the kernel command line)")));
        }
    }
    state.interface_given = false;
    state.run_option = None;
    parse_into(state, error, args)
}

fn parse_into<I, S>(
    mut state: State,
    mut first_error: Option<UsageError>,
    args: I,
) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut args = args.into_iter().map(Into::into);
    // Keep going after an error so a later -h/--help still wins.
    while let Some(arg) = args.next() {
        if let Err(e) = state.step(&arg, &mut args) {
            first_error.get_or_insert(e);
        }
    }
    if state.help {
        return Ok(Command::Help);
    }
    if state.version {
        return Ok(Command::Version);
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    state.finish()
}

/// `ms` as `--interval` and `--hold` take it: `100` -> `"0.1"`, `3_600_000` -> `"3600"`.
fn secs(ms: u32) -> String {
    let mut s = format_duration_ms(ms);
    s.pop();
    s
}

/// `2000` -> `"2s"`, `500` -> `"0.5s"`, `1250` -> `"1.25s"`: the form `--interval` takes.
pub fn format_duration_ms(ms: u32) -> String {
    let (secs, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        return format!("{secs}s");
    }
    let frac = format!("{frac:03}");
    format!("{secs}.{}s", frac.trim_end_matches('0'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Nodaemon,
    Interface,
    Ttl,
    Group,
    Port,
    Interval,
    Hold,
    Budget,
    MapFile,
    ProcRoot,
    Setpe,
    Cluster,
    KeyFile,
    Auth,
    PidFile,
    ControlSocket,
    MetricsFile,
    OnChange,
    StaticMap,
    StaticNodes,
    Cmdline,
    Debug,
    Dump,
    Stats,
    Watch,
    Format,
    Help,
    Version,
}

impl Opt {
    fn long(name: &[u8]) -> Option<Opt> {
        Some(match name {
            b"nodaemon" => Opt::Nodaemon,
            b"interface" => Opt::Interface,
            b"multicast-ttl" => Opt::Ttl,
            b"group" => Opt::Group,
            b"port" => Opt::Port,
            b"interval" => Opt::Interval,
            b"hold" => Opt::Hold,
            b"budget" => Opt::Budget,
            b"map-file" => Opt::MapFile,
            b"proc-root" => Opt::ProcRoot,
            b"setpe" => Opt::Setpe,
            b"cluster" => Opt::Cluster,
            b"key-file" => Opt::KeyFile,
            b"auth" => Opt::Auth,
            b"pid-file" => Opt::PidFile,
            b"control-socket" => Opt::ControlSocket,
            b"metrics-file" => Opt::MetricsFile,
            b"on-change" => Opt::OnChange,
            b"static-map" => Opt::StaticMap,
            b"static-nodes" => Opt::StaticNodes,
            b"cmdline" => Opt::Cmdline,
            b"debug" => Opt::Debug,
            b"dump" => Opt::Dump,
            b"stats" => Opt::Stats,
            b"watch" => Opt::Watch,
            b"format" => Opt::Format,
            b"help" => Opt::Help,
            b"version" => Opt::Version,
            _ => return None,
        })
    }

    fn short(c: u8) -> Option<Opt> {
        Some(match c {
            b'n' => Opt::Nodaemon,
            b'i' => Opt::Interface,
            b'm' => Opt::Ttl,
            b'd' => Opt::Debug,
            b'h' => Opt::Help,
            b'V' => Opt::Version,
            _ => return None,
        })
    }

    fn takes_value(self) -> bool {
        !matches!(
            self,
            Opt::Nodaemon
                | Opt::Debug
                | Opt::Dump
                | Opt::Stats
                | Opt::Watch
                | Opt::Cmdline
                | Opt::Help
                | Opt::Version
        )
    }

    /// Options that only make sense when running (everything but the paths
    /// that find the daemon, `--format` and the commands), so `--dump` and
    /// `--stats` can refuse them instead of ignoring them.
    fn run_only(self) -> bool {
        !matches!(
            self,
            Opt::MapFile
                | Opt::ControlSocket
                | Opt::Format
                | Opt::Dump
                | Opt::Stats
                | Opt::Watch
                | Opt::Help
                | Opt::Version
        )
    }

    /// Settings the kernel command line may give: the daemon's, not the
    /// commands.
    fn kernel_may_set(self) -> bool {
        match self {
            Opt::MapFile | Opt::ControlSocket => true,
            Opt::Cmdline => false,
            _ => self.run_only(),
        }
    }
}

#[derive(Default)]
struct State {
    cfg: Config,
    help: bool,
    version: bool,
    dump: bool,
    stats: bool,
    watch: bool,
    /// `--format` as spelled and its value (its meaning depends on the command).
    format: Option<(String, String)>,
    options_ended: bool,
    interface_given: bool,
    /// The first run-only option as the user spelled it, for the --dump error.
    run_option: Option<String>,
    /// `--hold` as spelled and its value, to name them if it ends up below the interval.
    hold_arg: Option<(String, String)>,
    /// `--auth` as spelled and its value (the default depends on `--key-file`).
    auth: Option<(String, Mode)>,
}

impl State {
    /// One `omdiscd.` word of the kernel command line, without the prefix.
    fn kernel_setting(&mut self, setting: &[u8]) -> Result<(), UsageError> {
        let (name, value) = match setting.iter().position(|&b| b == b'=') {
            Some(eq) => (&setting[..eq], Some(&setting[eq + 1..])),
            None => (setting, None),
        };
        let spelled = format!("omdiscd.{}", String::from_utf8_lossy(name));
        let opt = Opt::long(name)
            .filter(|o| o.kernel_may_set())
            .ok_or_else(|| err(format!("unknown setting {}", quote(spelled.as_ref()))))?;
        // The kernel keeps double quotes around a value with spaces.
        let value = value.map(|v| {
            let v = v.strip_prefix(b"\"").unwrap_or(v);
            OsStr::from_bytes(v.strip_suffix(b"\"").unwrap_or(v)).to_os_string()
        });
        match (opt.takes_value(), value) {
            (true, None) => Err(err(format!("setting '{spelled}' needs a value"))),
            (false, Some(_)) => Err(err(format!("setting '{spelled}' does not take a value"))),
            (_, value) => self.apply(opt, &spelled, value),
        }
    }

    fn step(
        &mut self,
        arg: &OsStr,
        rest: &mut impl Iterator<Item = OsString>,
    ) -> Result<(), UsageError> {
        let bytes = arg.as_bytes();
        if self.options_ended || bytes.len() < 2 || bytes[0] != b'-' {
            return Err(err(format!("unexpected argument {}", quote(arg))));
        }
        if bytes == b"--" {
            self.options_ended = true;
            return Ok(());
        }
        if let Some(long) = bytes.strip_prefix(b"--") {
            let (name, inline) = match long.iter().position(|&b| b == b'=') {
                Some(eq) => (&long[..eq], Some(OsStr::from_bytes(&long[eq + 1..]))),
                None => (long, None),
            };
            let spelled = format!("--{}", String::from_utf8_lossy(name));
            let opt = Opt::long(name)
                .ok_or_else(|| err(format!("unknown option {}", quote(spelled.as_ref()))))?;
            let value = match (opt.takes_value(), inline) {
                (true, Some(v)) => Some(v.to_os_string()),
                (true, None) => Some(rest.next().ok_or_else(|| missing(&spelled))?),
                (false, Some(_)) => {
                    return Err(err(format!("option '{spelled}' does not take a value")))
                }
                (false, None) => None,
            };
            return self.apply(opt, &spelled, value);
        }
        // A cluster of short options: flags first, at most one value option, last.
        for (i, &c) in bytes.iter().enumerate().skip(1) {
            let spelled = format!("-{}", String::from_utf8_lossy(&[c]));
            let opt = Opt::short(c)
                .ok_or_else(|| err(format!("unknown option {}", quote(spelled.as_ref()))))?;
            if !opt.takes_value() {
                self.apply(opt, &spelled, None)?;
                continue;
            }
            let value = if i + 1 < bytes.len() {
                OsStr::from_bytes(&bytes[i + 1..]).to_os_string()
            } else {
                rest.next().ok_or_else(|| missing(&spelled))?
            };
            return self.apply(opt, &spelled, Some(value));
        }
        Ok(())
    }

    fn apply(&mut self, opt: Opt, name: &str, value: Option<OsString>) -> Result<(), UsageError> {
        if opt.run_only() && self.run_option.is_none() {
            self.run_option = Some(name.to_string());
        }
        let value = value.unwrap_or_default();
        let cfg = &mut self.cfg;
        match opt {
            Opt::Nodaemon => cfg.daemonize = false,
            Opt::Debug => cfg.debug = true,
            Opt::Dump => self.dump = true,
            Opt::Stats => self.stats = true,
            Opt::Watch => self.watch = true,
            Opt::Cmdline => cfg.cmdline = true,
            Opt::Format => self.format = Some((name.to_string(), utf8(name, &value)?.to_string())),
            Opt::Help => self.help = true,
            Opt::Version => self.version = true,
            Opt::MapFile => cfg.map_file = path(name, value)?,
            Opt::ProcRoot => cfg.proc_root = path(name, value)?,
            Opt::Setpe => cfg.setpe = path(name, value)?,
            Opt::KeyFile => cfg.key_file = Some(path(name, value)?),
            Opt::PidFile => cfg.pid_file = Some(path(name, value)?),
            Opt::ControlSocket => cfg.control_socket = Some(path(name, value)?),
            Opt::MetricsFile => cfg.metrics_file = Some(path(name, value)?),
            Opt::OnChange => cfg.on_change = Some(path(name, value)?),
            Opt::StaticMap => cfg.static_maps = static_maps(name, &value)?,
            Opt::StaticNodes => cfg.static_nodes = Some(path(name, value)?),
            Opt::Auth => {
                let v = utf8(name, &value)?;
                let mode = Mode::NAMES
                    .iter()
                    .find(|(n, _)| *n == v)
                    .map(|&(_, m)| m)
                    .ok_or_else(|| invalid(name, v, "not off, permissive or enforce"))?;
                self.auth = Some((name.to_string(), mode));
            }
            Opt::Interface => {
                let v = utf8(name, &value)?;
                if self.interface_given {
                    return Err(err(format!(
                        "option '{name}' given twice (at {}); list the interfaces \
                         comma separated: -i eth0,eth1",
                        quote(value.as_ref())
                    )));
                }
                self.interface_given = true;
                cfg.interfaces = interfaces(v).map_err(|why| invalid(name, v, &why))?;
            }
            Opt::Ttl => {
                let v = utf8(name, &value)?;
                cfg.multicast_ttl = Some(
                    decimal(v)
                        .filter(|n| (1..=255).contains(n))
                        .ok_or_else(|| invalid(name, v, "not a number from 1 to 255"))?
                        as u8,
                );
            }
            Opt::Group => {
                let v = utf8(name, &value)?;
                cfg.group = v
                    .parse::<Ipv4Addr>()
                    .ok()
                    .filter(Ipv4Addr::is_multicast)
                    .ok_or_else(|| {
                        invalid(
                            name,
                            v,
                            "not an IPv4 multicast address (224.0.0.0 to 239.255.255.255)",
                        )
                    })?;
            }
            Opt::Port => {
                let v = utf8(name, &value)?;
                cfg.port = decimal(v)
                    .filter(|n| (1..=65535).contains(n))
                    .ok_or_else(|| invalid(name, v, "not a number from 1 to 65535"))?
                    as u16;
            }
            Opt::Interval => {
                let v = utf8(name, &value)?;
                cfg.interval_ms = millis(v)
                    .filter(|ms| (MIN_INTERVAL_MS as u64..=MAX_INTERVAL_MS as u64).contains(ms))
                    .ok_or_else(|| {
                        let why = format!(
                            "not a number of seconds from {} to {} (at most 3 decimals)",
                            secs(MIN_INTERVAL_MS),
                            secs(MAX_INTERVAL_MS)
                        );
                        invalid(name, v, &why)
                    })? as u32;
            }
            Opt::Hold => {
                let v = utf8(name, &value)?;
                // The lower bound (the interval) is checked in finish(): --interval may follow.
                cfg.hold_ms = Some(
                    millis(v)
                        .filter(|&ms| ms <= MAX_HOLD_MS as u64)
                        .ok_or_else(|| {
                            let why = format!(
                                "not a number of seconds up to {} (at most 3 decimals)",
                                secs(MAX_HOLD_MS)
                            );
                            invalid(name, v, &why)
                        })? as u32,
                );
                self.hold_arg = Some((name.to_string(), v.to_string()));
            }
            Opt::Budget => {
                let v = utf8(name, &value)?;
                cfg.budget = decimal(v)
                    .filter(|n| (1..=u64::from(MAX_BUDGET)).contains(n))
                    .ok_or_else(|| {
                        invalid(name, v, &format!("not a number from 1 to {MAX_BUDGET}"))
                    })? as u32;
            }
            Opt::Cluster => {
                let v = utf8(name, &value)?;
                cfg.label = label(v).ok_or_else(|| {
                    let why =
                        format!("not 1 to {LABEL_LEN} printable ASCII characters without spaces");
                    invalid(name, v, &why)
                })?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Command, UsageError> {
        let commands = [
            (self.dump, "--dump"),
            (self.stats, "--stats"),
            (self.watch, "--watch"),
        ];
        let mut given = commands.iter().filter(|(on, _)| *on).map(|&(_, name)| name);
        if let Some(command) = given.next() {
            if let Some(other) = given.next() {
                return Err(err(format!(
                    "options '{command}' and '{other}' exclude each other"
                )));
            }
            if let Some(opt) = self.run_option {
                return Err(err(format!("option '{opt}' cannot be used with {command}")));
            }
            let control = self.cfg.control_socket();
            return Ok(match command {
                "--dump" => Command::Dump {
                    view: format_value(&self.format, &View::NAMES)?,
                    map_file: self.cfg.map_file,
                    control,
                },
                "--stats" => Command::Stats {
                    format: format_value(&self.format, &StatsFormat::NAMES)?,
                    control,
                },
                _ => Command::Watch {
                    format: format_value(&self.format, &WatchFormat::NAMES)?,
                    control,
                },
            });
        }
        if let Some((name, _)) = &self.format {
            return Err(err(format!(
                "option '{name}' needs --dump, --stats or --watch"
            )));
        }
        if let (Some(hold), Some((name, v))) = (self.cfg.hold_ms, &self.hold_arg) {
            let least = u64::from(self.cfg.interval_ms) * u64::from(MIN_HOLD_INTERVALS);
            if u64::from(hold) < least {
                return Err(invalid(
                    name,
                    v,
                    &format!(
                        "shorter than {MIN_HOLD_INTERVALS} x the interval ({}): one lost announcement, or the +-20 % jitter, would drop a live node",
                        format_duration_ms(least as u32)
                    ),
                ));
            }
        }
        let mut cfg = self.cfg;
        cfg.auth = match (self.auth, &cfg.key_file) {
            (None, None) => Mode::Off,
            (None, Some(_)) => Mode::Enforce,
            (Some((_, Mode::Off)), None) => Mode::Off,
            (Some((name, Mode::Off)), Some(_)) => {
                return Err(err(format!(
                    "option '{name}' is off: then '--key-file' has no use; leave one out"
                )))
            }
            (Some((name, mode)), None) => {
                return Err(err(format!(
                    "option '{name}' {} needs '--key-file' (the keys to sign and check with)",
                    mode.name()
                )))
            }
            (Some((_, mode)), Some(_)) => mode,
        };
        Ok(Command::Run(Box::new(cfg)))
    }
}

/// `--format`'s value among `names` (the first is the default).
fn format_value<T: Copy>(
    given: &Option<(String, String)>,
    names: &[(&'static str, T)],
) -> Result<T, UsageError> {
    let Some((name, v)) = given else {
        return Ok(names[0].1);
    };
    names
        .iter()
        .find(|(n, _)| n == v)
        .map(|&(_, t)| t)
        .ok_or_else(|| {
            let list: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
            invalid(name, v, &format!("not one of {}", list.join(", ")))
        })
}

fn err(message: String) -> UsageError {
    UsageError { message }
}

fn missing(name: &str) -> UsageError {
    err(format!("option '{name}' needs a value"))
}

fn invalid(name: &str, value: &str, why: &str) -> UsageError {
    err(format!(
        "invalid value {} for {name}: {why}",
        quote(value.as_ref())
    ))
}

/// Quotes an argument for a message: lossy UTF-8, control characters escaped so the
/// message stays on one line.
fn quote(s: &OsStr) -> String {
    let mut out = String::from("'");
    for c in s.to_string_lossy().chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

fn utf8<'a>(name: &str, value: &'a OsStr) -> Result<&'a str, UsageError> {
    value.to_str().ok_or_else(|| {
        err(format!(
            "invalid value {} for {name}: not valid UTF-8",
            quote(value)
        ))
    })
}

fn path(name: &str, value: OsString) -> Result<PathBuf, UsageError> {
    if value.is_empty() {
        return Err(invalid(name, "", "empty path"));
    }
    Ok(PathBuf::from(value))
}

/// Plain decimal digits only: `str::parse` would also take `+7`. Saturates, so a huge
/// number fails the range check rather than looking like a typo.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Seconds with up to 3 decimals to whole milliseconds, in integers so "0.1" is exactly
/// 100 ms. Rejects signs, exponents, "nan", "", "1." and ".5".
fn millis(s: &str) -> Option<u64> {
    let (int, frac) = match s.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (s, "000"),
    };
    if frac.is_empty() || frac.len() > 3 {
        return None;
    }
    let scale = 10u64.pow(3 - frac.len() as u32);
    Some(
        decimal(int)?
            .saturating_mul(1000)
            .saturating_add(decimal(frac)? * scale),
    )
}

/// Splits `FILE[,FILE...]` (any bytes but `,`); empty means none.
fn static_maps(name: &str, value: &OsStr) -> Result<Vec<PathBuf>, UsageError> {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let files: Vec<PathBuf> = bytes
        .split(|&b| b == b',')
        .map(|f| PathBuf::from(OsStr::from_bytes(f)))
        .collect();
    let why = if files.len() > MAX_STATIC_MAPS {
        format!("more than {MAX_STATIC_MAPS} files")
    } else if files.iter().any(|f| f.as_os_str().is_empty()) {
        "empty path in the list".to_string()
    } else if files
        .iter()
        .any(|f| f.as_os_str().as_bytes().ends_with(b"/"))
    {
        "a path that ends with '/' names no file".to_string()
    } else {
        return Ok(files);
    };
    Err(err(format!(
        "invalid value {} for {name}: {why}",
        quote(value)
    )))
}

/// Splits and checks `IF[,IF...]`. The name rules are the kernel's (dev_valid_name), so a
/// name no interface can have fails here, with the option named, not later.
fn interfaces(list: &str) -> Result<Vec<String>, String> {
    let names: Vec<&str> = list.split(',').collect();
    if names.len() > MAX_INTERFACES {
        return Err(format!("more than {MAX_INTERFACES} interfaces"));
    }
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err("empty interface name".into());
        }
        if name.len() > MAX_IFNAME_LEN {
            return Err(format!("interface name longer than {MAX_IFNAME_LEN} bytes"));
        }
        if *name == "." || *name == ".." || name.bytes().any(|b| b == b'/' || b == b':') {
            return Err("interface name with '/' or ':', or '.' or '..'".into());
        }
        // The kernel's isspace(): also \v, which is_ascii_whitespace() does not cover.
        if name.bytes().any(|b| b.is_ascii_whitespace() || b == 0x0b) {
            return Err("interface name with white space".into());
        }
        if names[..i].contains(name) {
            return Err("interface listed twice".into());
        }
    }
    Ok(names.into_iter().map(String::from).collect())
}

/// No spaces: the label is shown in logs and dumps as one word.
fn label(s: &str) -> Option<[u8; LABEL_LEN]> {
    if s.is_empty() || s.len() > LABEL_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let mut out = [0; LABEL_LEN];
    out[..s.len()].copy_from_slice(s.as_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Config {
        match parse(args.iter().copied()) {
            Ok(Command::Run(cfg)) => *cfg,
            other => panic!("{args:?}: expected Run, got {other:?}"),
        }
    }

    fn fail(args: &[&str]) -> String {
        match parse(args.iter().copied()) {
            Err(e) => {
                assert!(!e.message.contains('\n'), "not one line: {e}");
                assert_eq!(e.to_string(), e.message);
                e.message
            }
            other => panic!("{args:?}: expected an error, got {other:?}"),
        }
    }

    /// The error names the option as typed and quotes the value.
    fn fails_naming(args: &[&str], option: &str, value: &str) {
        let msg = fail(args);
        assert!(msg.contains(option), "{args:?}: {msg:?} lacks {option}");
        let quoted = format!("'{value}'");
        assert!(msg.contains(&quoted), "{args:?}: {msg:?} lacks {quoted}");
    }

    #[test]
    fn defaults() {
        let cfg = run(&[]);
        assert_eq!(cfg, Config::default());
        assert!(cfg.daemonize);
        assert!(cfg.interfaces.is_empty());
        assert_eq!(cfg.multicast_ttl, None);
        assert_eq!(cfg.group, Ipv4Addr::new(239, 255, 77, 42));
        assert_eq!(cfg.port, 7742);
        assert_eq!(cfg.interval_ms, 2000);
        assert_eq!(cfg.hold_ms, None);
        assert_eq!(cfg.hold_ms(), 10_000);
        assert_eq!(cfg.map_file, PathBuf::from("/run/omdiscd/openmosix.map"));
        assert_eq!(cfg.proc_root, PathBuf::from("/proc"));
        assert_eq!(cfg.setpe, PathBuf::from("/sbin/setpe"));
        assert_eq!(cfg.label, [0; 16]);
        assert!(!cfg.debug);
    }

    #[test]
    fn flags_in_every_form() {
        for args in [&["-n"][..], &["--nodaemon"]] {
            assert!(!run(args).daemonize, "{args:?}");
        }
        for args in [&["-d"][..], &["--debug"]] {
            assert!(run(args).debug, "{args:?}");
        }
        let cfg = run(&["-nd"]);
        assert!(!cfg.daemonize && cfg.debug);
        let cfg = run(&["-ndieth0"]);
        assert!(!cfg.daemonize && cfg.debug);
        assert_eq!(cfg.interfaces, ["eth0"]);
        assert_eq!(run(&["-dn", "-i", "eth1"]).interfaces, ["eth1"]);
    }

    #[test]
    fn flags_take_no_value() {
        fails_naming(&["--debug=1"], "--debug", "--debug");
        assert!(fail(&["--nodaemon=yes"]).contains("does not take a value"));
    }

    #[test]
    fn interface_forms() {
        for args in [
            &["-i", "eth0"][..],
            &["-ieth0"],
            &["--interface", "eth0"],
            &["--interface=eth0"],
        ] {
            assert_eq!(run(args).interfaces, ["eth0"], "{args:?}");
        }
        assert_eq!(run(&["-i", "eth0,eth1"]).interfaces, ["eth0", "eth1"]);
        assert_eq!(
            run(&["-i", "a,b,c,d,e,f"]).interfaces,
            ["a", "b", "c", "d", "e", "f"]
        );
        let fifteen = "abcdefghijklmno";
        assert_eq!(run(&["-i", fifteen]).interfaces, [fifteen]);
    }

    #[test]
    fn interface_errors() {
        fails_naming(&["-i", "a,b,c,d,e,f,g"], "-i", "a,b,c,d,e,f,g");
        fails_naming(
            &["--interface", "a,b,c,d,e,f,g"],
            "--interface",
            "a,b,c,d,e,f,g",
        );
        fails_naming(&["-i", "eth0,,eth1"], "-i", "eth0,,eth1");
        fails_naming(&["-i", ""], "-i", "");
        fails_naming(&["--interface="], "--interface", "");
        fails_naming(&["-i", "eth0,"], "-i", "eth0,");
        fails_naming(&["-i", "eth0,eth1,eth0"], "-i", "eth0,eth1,eth0");
        fails_naming(&["-i", "abcdefghijklmnop"], "-i", "abcdefghijklmnop");
        fails_naming(
            &["--interface", "abcdefghijklmnop"],
            "--interface",
            "abcdefghijklmnop",
        );
        for bad in ["a/b", "eth 0", "eth\t0", "eth0:1", ".", ".."] {
            let msg = fail(&["-i", bad]);
            assert!(msg.contains("-i"), "{bad:?}: {msg}");
        }
        // Control characters are escaped so the message stays on one line.
        assert!(fail(&["-i", "eth\n0"]).contains("'eth\\n0'"));
        // Given twice: an error rather than dropping the first list.
        fails_naming(
            &["-i", "eth0", "--interface", "eth1"],
            "--interface",
            "eth1",
        );
        assert!(fail(&["-i", "eth0", "-i", "eth1"]).contains("twice"));
    }

    #[test]
    fn multicast_ttl() {
        for args in [
            &["-m", "5"][..],
            &["-m5"],
            &["--multicast-ttl", "5"],
            &["--multicast-ttl=5"],
        ] {
            assert_eq!(run(args).multicast_ttl, Some(5), "{args:?}");
        }
        assert_eq!(run(&["-m", "1"]).multicast_ttl, Some(1));
        assert_eq!(run(&["-m", "255"]).multicast_ttl, Some(255));
        for bad in [
            "0",
            "256",
            "abc",
            "",
            "-1",
            "+5",
            " 5",
            "99999999999999999999999",
        ] {
            fails_naming(&["-m", bad], "-m", bad);
            fails_naming(&["--multicast-ttl", bad], "--multicast-ttl", bad);
        }
    }

    #[test]
    fn group() {
        let g = Ipv4Addr::new(239, 1, 2, 3);
        assert_eq!(run(&["--group", "239.1.2.3"]).group, g);
        assert_eq!(run(&["--group=239.1.2.3"]).group, g);
        assert_eq!(
            run(&["--group=224.0.1.1"]).group,
            Ipv4Addr::new(224, 0, 1, 1)
        );
        for bad in [
            "10.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "abc",
            "",
            "239.1.2",
            "::1",
        ] {
            fails_naming(&["--group", bad], "--group", bad);
        }
        assert!(fail(&["--group", "10.0.0.1"]).contains("multicast"));
    }

    #[test]
    fn port() {
        assert_eq!(run(&["--port", "1"]).port, 1);
        assert_eq!(run(&["--port=65535"]).port, 65535);
        assert_eq!(run(&["--port", "07742"]).port, 7742);
        for bad in ["0", "65536", "abc", "", "-1", "+80", "80 "] {
            fails_naming(&["--port", bad], "--port", bad);
        }
        assert_eq!(
            fail(&["--port", "abc"]),
            "invalid value 'abc' for --port: not a number from 1 to 65535"
        );
    }

    #[test]
    fn interval() {
        assert_eq!(run(&["--interval", "0.25"]).interval_ms, 250);
        assert_eq!(run(&["--interval=0.5"]).interval_ms, 500);
        assert_eq!(run(&["--interval", "0.1"]).interval_ms, 100);
        assert_eq!(run(&["--interval", "1.005"]).interval_ms, 1005);
        assert_eq!(run(&["--interval", "3600"]).interval_ms, 3_600_000);
        assert_eq!(run(&["--interval", "3600.000"]).interval_ms, 3_600_000);
        assert_eq!(run(&["--interval", "5"]).hold_ms(), 25_000);
        for bad in [
            "0.05",
            "0",
            "0.099",
            "abc",
            "3601",
            "3600.001",
            "",
            "1e3",
            "-1",
            "nan",
            "inf",
            "1.",
            ".5",
            "0.2500",
            "+1",
            "1,5",
            "1 ",
            "99999999999999999999999",
        ] {
            fails_naming(&["--interval", bad], "--interval", bad);
        }
    }

    #[test]
    fn hold() {
        let cfg = run(&["--hold", "10"]);
        assert_eq!((cfg.hold_ms, cfg.hold_ms()), (Some(10_000), 10_000));
        assert_eq!(run(&["--hold=4"]).hold_ms(), 4000); // twice the interval is fine
        assert_eq!(run(&["--hold", "86400"]).hold_ms(), 86_400_000);
        assert_eq!(run(&["--hold", "0.3", "--interval", "0.1"]).hold_ms(), 300);
        fails_naming(&["--hold", "3.999"], "--hold", "3.999");
        fails_naming(&["--hold", "2"], "--hold", "2");
        fails_naming(&["--hold", "0"], "--hold", "0");
        // Named even when --interval comes after it.
        let msg = fail(&["--hold", "9", "--interval", "5"]);
        assert!(
            msg.contains("--hold") && msg.contains("'9'") && msg.contains("10s"),
            "{msg}"
        );
        for bad in ["86400.001", "100000", "abc", "", "-1", "1e3"] {
            fails_naming(&["--hold", bad], "--hold", bad);
        }
    }

    #[test]
    fn budget() {
        assert_eq!(run(&[]).budget, DEFAULT_BUDGET);
        assert_eq!(run(&["--budget", "250"]).budget, 250);
        assert_eq!(run(&["--budget=1000000"]).budget, MAX_BUDGET);
        for bad in ["0", "1000001", "-5", "1.5", "many", ""] {
            fails_naming(&["--budget", bad], "--budget", bad);
        }
    }

    #[test]
    fn hold_default_is_capped() {
        let cfg = Config {
            interval_ms: u32::MAX,
            ..Config::default()
        };
        assert_eq!(cfg.hold_ms(), 86_400_000);
        assert_eq!(run(&["--interval", "3600"]).hold_ms(), 18_000_000);
    }

    #[test]
    fn paths() {
        let cfg = run(&[
            "--map-file",
            "/tmp/m",
            "--proc-root=/tmp/p",
            "--setpe",
            "/x/setpe",
        ]);
        assert_eq!(cfg.map_file, PathBuf::from("/tmp/m"));
        assert_eq!(cfg.proc_root, PathBuf::from("/tmp/p"));
        assert_eq!(cfg.setpe, PathBuf::from("/x/setpe"));
        for opt in ["--map-file", "--proc-root", "--setpe"] {
            fails_naming(&[opt, ""], opt, "");
        }
    }

    #[test]
    fn static_maps() {
        assert!(run(&[]).static_maps.is_empty());
        let cfg = run(&["--static-map", RC_STATIC_MAPS]);
        let want: Vec<PathBuf> = ["/etc/openmosix.map", "/etc/mosix.map", "/etc/hpc.map"]
            .map(PathBuf::from)
            .into();
        assert_eq!(cfg.static_maps, want);
        assert_eq!(
            run(&["--static-map=my.map"]).static_maps,
            vec![PathBuf::from("my.map")]
        );
        // Empty: none (how OMDISCD_OPTS turns the unit's list off); the last one wins.
        assert!(run(&["--static-map", "/a", "--static-map="])
            .static_maps
            .is_empty());
        for (value, why) in [
            ("/a,,/b", "empty path"),
            ("/a,", "empty path"),
            ("/etc/", "ends with '/'"),
            ("1,2,3,4,5,6,7,8,9", "more than 8"),
        ] {
            let msg = fail(&["--static-map", value]);
            assert!(
                msg.contains("--static-map") && msg.contains(value) && msg.contains(why),
                "{msg}"
            );
        }
        assert_eq!(
            fail(&["--dump", "--static-map", "/a"]),
            "option '--static-map' cannot be used with --dump"
        );
        match kernel("omdiscd.static-map=/k.map", &[]) {
            Ok(Command::Run(cfg)) => assert_eq!(cfg.static_maps, vec![PathBuf::from("/k.map")]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            run(&["--static-nodes", "/s.map"]).static_nodes,
            Some(PathBuf::from("/s.map"))
        );
        fails_naming(&["--static-nodes", ""], "--static-nodes", "");
        // Empty on the kernel command line: none.
        match kernel("omdiscd.static-map=", &[]) {
            Ok(Command::Run(cfg)) => assert!(cfg.static_maps.is_empty()),
            other => panic!("{other:?}"),
        }
        // The command line wins over the kernel's.
        match kernel("omdiscd.static-map=/k.map", &["--static-map", "/c.map"]) {
            Ok(Command::Run(cfg)) => assert_eq!(cfg.static_maps, vec![PathBuf::from("/c.map")]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn label() {
        let cfg = run(&["--cluster", "lab-A"]);
        assert_eq!(&cfg.label[..5], b"lab-A");
        assert_eq!(cfg.label[5..], [0; 11]);
        let sixteen = "0123456789abcdef";
        assert_eq!(
            &run(&["--cluster=0123456789abcdef"]).label,
            sixteen.as_bytes()
        );
        for (bad, shown) in [
            ("0123456789abcdefg", "0123456789abcdefg"),
            ("", ""),
            ("a b", "a b"),
            ("caf\u{e9}", "caf\u{e9}"),
            ("a\tb", "a\\tb"),
        ] {
            fails_naming(&["--cluster", bad], "--cluster", shown);
        }
    }

    #[test]
    fn last_one_wins() {
        assert_eq!(run(&["--port", "1", "--port", "2"]).port, 2);
        assert_eq!(
            run(&["-m", "3", "--multicast-ttl=4"]).multicast_ttl,
            Some(4)
        );
        // ...but every value is still checked.
        fails_naming(&["--port", "0", "--port", "2"], "--port", "0");
    }

    #[test]
    fn value_may_start_with_a_dash() {
        fails_naming(&["--interval", "-1"], "--interval", "-1");
        assert_eq!(&run(&["--cluster", "-n"]).label[..2], b"-n");
        assert!(run(&["--cluster", "-n"]).daemonize);
    }

    #[test]
    fn dump() {
        let default = Command::Dump {
            map_file: PathBuf::from(DEFAULT_MAP_FILE),
            control: PathBuf::from("/run/omdiscd/openmosix.map.sock"),
            view: View::Showmap,
        };
        assert_eq!(parse(["--dump"]), Ok(default));
        let custom = Ok(Command::Dump {
            map_file: PathBuf::from("/tmp/m"),
            control: PathBuf::from("/tmp/m.sock"),
            view: View::Showmap,
        });
        assert_eq!(parse(["--dump", "--map-file", "/tmp/m"]), custom);
        assert_eq!(parse(["--map-file=/tmp/m", "--dump"]), custom);
        assert_eq!(
            parse(["--dump", "--format", "json", "--control-socket", "/c"]),
            Ok(Command::Dump {
                map_file: PathBuf::from(DEFAULT_MAP_FILE),
                control: PathBuf::from("/c"),
                view: View::Json,
            })
        );
        for (name, view) in View::NAMES {
            match parse(["--dump", "--format", name]) {
                Ok(Command::Dump { view: v, .. }) => assert_eq!(v, view),
                other => panic!("{name}: {other:?}"),
            }
        }
        fails_naming(&["--dump", "--format", "text"], "--format", "text");
        assert_eq!(
            fail(&["--dump", "-i", "eth0"]),
            "option '-i' cannot be used with --dump"
        );
        assert!(fail(&["--interface=eth0", "--dump"]).contains("--interface"));
        assert!(fail(&["--dump", "-n"]).contains("-n"));
        assert!(fail(&["--dump", "--port", "1"]).contains("--port"));
        assert!(fail(&["--dump=x"]).contains("--dump"));
    }

    #[test]
    fn stats() {
        assert_eq!(
            parse(["--stats"]),
            Ok(Command::Stats {
                control: PathBuf::from("/run/omdiscd/openmosix.map.sock"),
                format: StatsFormat::Text,
            })
        );
        assert_eq!(
            parse(["--stats", "--format=prometheus", "--map-file", "/m"]),
            Ok(Command::Stats {
                control: PathBuf::from("/m.sock"),
                format: StatsFormat::Prometheus,
            })
        );
        fails_naming(&["--stats", "--format", "hosts"], "--format", "hosts");
        assert_eq!(
            fail(&["--stats", "-n"]),
            "option '-n' cannot be used with --stats"
        );
        assert!(fail(&["--stats", "--dump"]).contains("exclude each other"));
        assert_eq!(
            fail(&["--format", "json"]),
            "option '--format' needs --dump, --stats or --watch"
        );
    }

    #[test]
    fn watch() {
        assert_eq!(
            parse(["--watch"]),
            Ok(Command::Watch {
                control: PathBuf::from("/run/omdiscd/openmosix.map.sock"),
                format: WatchFormat::Text,
            })
        );
        assert_eq!(
            parse(["--watch", "--format=json", "--control-socket", "/c"]),
            Ok(Command::Watch {
                control: PathBuf::from("/c"),
                format: WatchFormat::Json,
            })
        );
        fails_naming(&["--watch", "--format", "showmap"], "--format", "showmap");
        assert_eq!(
            fail(&["--watch", "-i", "eth0"]),
            "option '-i' cannot be used with --watch"
        );
        assert_eq!(
            fail(&["--watch", "--stats"]),
            "options '--stats' and '--watch' exclude each other"
        );
        assert!(fail(&["--watch=x"]).contains("--watch"));
    }

    #[test]
    fn daemon_paths() {
        let cfg = run(&[
            "--control-socket",
            "/c",
            "--metrics-file",
            "/m.prom",
            "--on-change",
            "/bin/hook",
        ]);
        assert_eq!(cfg.control_socket(), PathBuf::from("/c"));
        assert_eq!(cfg.metrics_file, Some(PathBuf::from("/m.prom")));
        assert_eq!(cfg.on_change, Some(PathBuf::from("/bin/hook")));
        let cfg = run(&["--map-file", "/x/m"]);
        assert_eq!(cfg.control_socket(), PathBuf::from("/x/m.sock"));
        assert_eq!(cfg.pid_file(), PathBuf::from("/x/m.pid"));
        fails_naming(&["--on-change", ""], "--on-change", "");
    }

    fn kernel(line: &str, args: &[&str]) -> Result<Command, UsageError> {
        parse_with_kernel(line.as_bytes(), args.iter().copied())
    }

    #[test]
    fn kernel_command_line_settings() {
        let line = "BOOT_IMAGE=/vmlinuz root=/dev/ram0 quiet omdiscd.interface=eth0,eth1 \
                    omdiscd.cluster=\"lab\" omdiscd.interval=0.5 omdiscd.hold=2 omdiscd.debug \
                    omdiscd.nodaemon ip=dhcp\n";
        let Ok(Command::Run(cfg)) = kernel(line, &["--cmdline"]) else {
            panic!("{:?}", kernel(line, &["--cmdline"]));
        };
        assert_eq!(cfg.interfaces, ["eth0", "eth1"]);
        assert_eq!(&cfg.label[..4], b"lab\0");
        assert_eq!((cfg.interval_ms, cfg.hold_ms), (500, Some(2000)));
        assert!(cfg.debug && !cfg.daemonize && cfg.cmdline);
        // The real command line wins, even for -i (given once on each).
        let Ok(Command::Run(cfg)) = kernel(line, &["--cmdline", "-i", "br0", "--hold", "3"]) else {
            panic!()
        };
        assert_eq!(cfg.interfaces, ["br0"]);
        assert_eq!(cfg.hold_ms, Some(3000));
        // Nothing of ours on it: the defaults.
        assert_eq!(
            kernel("quiet splash", &["--cmdline"]),
            Ok(Command::Run(Box::new(Config {
                cmdline: true,
                ..Config::default()
            })))
        );
    }

    #[test]
    fn kernel_command_line_errors_name_the_setting() {
        let msg = |line: &str| kernel(line, &["--cmdline"]).unwrap_err().message;
        assert_eq!(
            msg("omdiscd.interfce=eth0"),
            "unknown setting 'omdiscd.interfce' (on the kernel command line)"
        );
        assert_eq!(
            msg("omdiscd.dump"),
            "unknown setting 'omdiscd.dump' (on the kernel command line)"
        );
        assert_eq!(
            msg("omdiscd.interval=0"),
            "invalid value '0' for omdiscd.interval: not a number of seconds from 0.1 to 3600 (at most 3 decimals) (on the kernel command line)"
        );
        assert!(msg("omdiscd.port").contains("needs a value"));
        assert!(msg("omdiscd.debug=1").contains("does not take a value"));
        // --help still wins.
        assert_eq!(
            kernel("omdiscd.port=0", &["--cmdline", "-h"]),
            Ok(Command::Help)
        );
    }

    #[test]
    fn help_and_version_precedence() {
        for args in [
            &["-h"][..],
            &["--help"],
            &["-i", "eth0", "--help"],
            &["--version", "-h"],
            &["-V", "--help"],
            &["--port", "0", "-h"],
            &["--bogus", "--help"],
            &["stray", "-h"],
            &["--dump", "-i", "eth0", "-h"],
            &["-nh"],
        ] {
            assert_eq!(parse(args.iter().copied()), Ok(Command::Help), "{args:?}");
        }
        for args in [
            &["-V"][..],
            &["--version"],
            &["--port", "0", "--version"],
            &["--dump", "-V"],
        ] {
            assert_eq!(
                parse(args.iter().copied()),
                Ok(Command::Version),
                "{args:?}"
            );
        }
        // A value, or after --, is not an option.
        assert_eq!(&run(&["--cluster", "-h"]).label[..2], b"-h");
        assert!(fail(&["--", "-h"]).contains("'-h'"));
    }

    #[test]
    fn unknown_missing_and_positional() {
        assert_eq!(fail(&["--foo"]), "unknown option '--foo'");
        assert_eq!(fail(&["--foo=bar"]), "unknown option '--foo'");
        assert_eq!(fail(&["-x"]), "unknown option '-x'");
        assert_eq!(fail(&["-nx"]), "unknown option '-x'");
        assert_eq!(fail(&["--inter", "eth0"]), "unknown option '--inter'"); // no abbreviations
        assert_eq!(fail(&["--port"]), "option '--port' needs a value");
        assert_eq!(fail(&["-i"]), "option '-i' needs a value");
        assert_eq!(fail(&["-n", "-m"]), "option '-m' needs a value");
        assert_eq!(fail(&["eth0"]), "unexpected argument 'eth0'");
        assert_eq!(fail(&["-"]), "unexpected argument '-'");
        assert_eq!(fail(&["-n", "--", "x"]), "unexpected argument 'x'");
        assert!(!run(&["-n", "--"]).daemonize); // a trailing -- is fine
                                                // The first error is the one reported.
        assert_eq!(fail(&["--foo", "--port"]), "unknown option '--foo'");
    }

    #[test]
    fn non_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let bad = || OsString::from_vec(b"eth\xff".to_vec());
        let msg = parse([OsString::from("-i"), bad()]).unwrap_err().message;
        assert!(msg.contains("-i") && msg.contains("UTF-8"), "{msg}");
        let mut long = b"--port=".to_vec();
        long.push(0xff);
        let msg = parse([OsString::from_vec(long)]).unwrap_err().message;
        assert!(msg.contains("--port") && msg.contains("UTF-8"), "{msg}");
        // Paths may be any bytes on Linux.
        match parse([OsString::from("--map-file"), bad()]) {
            Ok(Command::Run(cfg)) => assert_eq!(cfg.map_file, PathBuf::from(bad())),
            other => panic!("{other:?}"),
        }
        assert!(parse([bad()])
            .unwrap_err()
            .message
            .starts_with("unexpected argument"));
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration_ms(2000), "2s");
        assert_eq!(format_duration_ms(500), "0.5s");
        assert_eq!(format_duration_ms(250), "0.25s");
        assert_eq!(format_duration_ms(1005), "1.005s");
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(86_400_000), "86400s");
    }

    #[test]
    fn usage_text() {
        assert!(USAGE.starts_with("Usage: omdiscd [OPTIONS]\n"));
        for line in USAGE.lines() {
            assert!(line.len() <= 80, "too long: {line:?}");
        }
        for option in [
            "-n, --nodaemon",
            "-i, --interface",
            "-m, --multicast-ttl",
            "--group",
            "--port",
            "--interval",
            "--hold",
            "--cluster",
            "--map-file",
            "--proc-root",
            "--setpe",
            "-d, --debug",
            "--dump",
            "--stats",
            "--watch",
            "--format",
            "--control-socket",
            "--metrics-file",
            "--on-change",
            "--static-map",
            "--static-nodes",
            "--cmdline",
            "-h, --help",
            "-V, --version",
        ] {
            assert!(USAGE.contains(option), "{option} missing");
        }
        let cfg = Config::default();
        for default in [
            format!("(default {})", cfg.group),
            format!("(default {})", cfg.port),
            format!(
                "(default {})",
                format_duration_ms(cfg.interval_ms).trim_end_matches('s')
            ),
            format!("(default {})", cfg.proc_root.display()),
            format!("(default {})", cfg.setpe.display()),
            cfg.map_file.display().to_string(),
        ] {
            assert!(USAGE.contains(&default), "{default} missing");
        }
        assert!(USAGE_HINT.contains("omdiscd --help"));
    }

    /// The limits in the help text are the constants' (which for the interval,
    /// hold and label are the wire format's).
    #[test]
    fn usage_text_limits_match_the_constants() {
        let text = USAGE.split_whitespace().collect::<Vec<_>>().join(" ");
        for limit in [
            format!("(1 to {MAX_INTERFACES})"),
            format!("{} to {}", secs(MIN_INTERVAL_MS), secs(MAX_INTERVAL_MS)),
            format!("interval to {}", secs(MAX_HOLD_MS)),
            format!("1 to {LABEL_LEN} printable"),
            format!("(default {DEFAULT_HOLD_INTERVALS} x the interval)"),
        ] {
            assert!(text.contains(&limit), "{limit:?} not in the help text");
        }
    }
}
