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

use crate::auth::Mode;
use crate::config::{Config, MAX_BUDGET, MAX_IFNAME_LEN, MAX_STATIC_MAPS, MIN_HOLD_INTERVALS};
use crate::control::{StatsFormat, View, WatchFormat};
use crate::node::MAX_INTERFACES;
// The accepted `--interval` and `--hold` ranges and the label size are the
// wire format's.
use crate::wire::{LABEL_LEN, MAX_HOLD_MS, MAX_INTERVAL_MS, MIN_INTERVAL_MS};

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
    let early = if state.help {
        Ok(Command::Help)
    } else if state.version {
        Ok(Command::Version)
    } else if let Some(e) = first_error {
        Err(e)
    } else {
        return state.finish();
    };
    // One drop of the state for the three early answers, not one each.
    drop(state);
    early
}

/// `ms` as `--interval` and `--hold` take it: `100` -> `"0.1"`, `3_600_000` -> `"3600"`.
fn secs(ms: u32) -> String {
    crate::log::Secs(u64::from(ms)).to_string()
}

/// `2000` -> `"2s"`, `500` -> `"0.5s"`, `1250` -> `"1.25s"`: the form `--interval` takes.
pub fn format_duration_ms(ms: u32) -> String {
    format!("{}s", crate::log::Secs(u64::from(ms)))
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
        // A table, not a `match`: one loop instead of a chain of compares.
        const LONG: [(&[u8], Opt); 28] = [
            (b"nodaemon", Opt::Nodaemon),
            (b"interface", Opt::Interface),
            (b"multicast-ttl", Opt::Ttl),
            (b"group", Opt::Group),
            (b"port", Opt::Port),
            (b"interval", Opt::Interval),
            (b"hold", Opt::Hold),
            (b"budget", Opt::Budget),
            (b"map-file", Opt::MapFile),
            (b"proc-root", Opt::ProcRoot),
            (b"setpe", Opt::Setpe),
            (b"cluster", Opt::Cluster),
            (b"key-file", Opt::KeyFile),
            (b"auth", Opt::Auth),
            (b"pid-file", Opt::PidFile),
            (b"control-socket", Opt::ControlSocket),
            (b"metrics-file", Opt::MetricsFile),
            (b"on-change", Opt::OnChange),
            (b"static-map", Opt::StaticMap),
            (b"static-nodes", Opt::StaticNodes),
            (b"cmdline", Opt::Cmdline),
            (b"debug", Opt::Debug),
            (b"dump", Opt::Dump),
            (b"stats", Opt::Stats),
            (b"watch", Opt::Watch),
            (b"format", Opt::Format),
            (b"help", Opt::Help),
            (b"version", Opt::Version),
        ];
        LONG.iter().find(|(n, _)| *n == name).map(|&(_, opt)| opt)
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
        // The paths (any bytes): one check, then where each goes.
        if let Opt::MapFile
        | Opt::ProcRoot
        | Opt::Setpe
        | Opt::KeyFile
        | Opt::PidFile
        | Opt::ControlSocket
        | Opt::MetricsFile
        | Opt::OnChange
        | Opt::StaticNodes = opt
        {
            let p = path(name, value)?;
            match opt {
                Opt::MapFile => cfg.map_file = p,
                Opt::ProcRoot => cfg.proc_root = p,
                Opt::Setpe => cfg.setpe = p,
                _ => {
                    *match opt {
                        Opt::KeyFile => &mut cfg.key_file,
                        Opt::PidFile => &mut cfg.pid_file,
                        Opt::ControlSocket => &mut cfg.control_socket,
                        Opt::MetricsFile => &mut cfg.metrics_file,
                        Opt::OnChange => &mut cfg.on_change,
                        _ => &mut cfg.static_nodes,
                    } = Some(p)
                }
            }
            return Ok(());
        }
        if opt == Opt::StaticMap {
            cfg.static_maps = static_maps(name, &value)?;
            return Ok(());
        }
        // Every other value is text (a flag's, empty, always is).
        let v = utf8(name, &value)?;
        match opt {
            Opt::Nodaemon => cfg.daemonize = false,
            Opt::Debug => cfg.debug = true,
            Opt::Dump => self.dump = true,
            Opt::Stats => self.stats = true,
            Opt::Watch => self.watch = true,
            Opt::Cmdline => cfg.cmdline = true,
            Opt::Format => self.format = Some((name.to_string(), v.to_string())),
            Opt::Help => self.help = true,
            Opt::Version => self.version = true,
            // Handled above.
            Opt::MapFile
            | Opt::ProcRoot
            | Opt::Setpe
            | Opt::KeyFile
            | Opt::PidFile
            | Opt::ControlSocket
            | Opt::MetricsFile
            | Opt::OnChange
            | Opt::StaticMap
            | Opt::StaticNodes => {}
            Opt::Auth => {
                let mode = Mode::NAMES
                    .iter()
                    .find(|(n, _)| *n == v)
                    .map(|&(_, m)| m)
                    .ok_or_else(|| invalid(name, v, "not off, permissive or enforce"))?;
                self.auth = Some((name.to_string(), mode));
            }
            Opt::Interface => {
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
                cfg.multicast_ttl = Some(
                    decimal(v)
                        .filter(|n| (1..=255).contains(n))
                        .ok_or_else(|| invalid(name, v, "not a number from 1 to 255"))?
                        as u8,
                );
            }
            Opt::Group => {
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
                cfg.port = decimal(v)
                    .filter(|n| (1..=65535).contains(n))
                    .ok_or_else(|| invalid(name, v, "not a number from 1 to 65535"))?
                    as u16;
            }
            Opt::Interval => {
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
                cfg.budget = decimal(v)
                    .filter(|n| (1..=u64::from(MAX_BUDGET)).contains(n))
                    .ok_or_else(|| {
                        invalid(name, v, &format!("not a number from 1 to {MAX_BUDGET}"))
                    })? as u32;
            }
            Opt::Cluster => {
                cfg.label = label(v).ok_or_else(|| {
                    let why =
                        format!("not 1 to {LABEL_LEN} printable ASCII characters without spaces");
                    invalid(name, v, &why)
                })?;
            }
        }
        Ok(())
    }

    /// The command, once every option is read. The checks borrow `self`, so
    /// it is dropped in one place, not field by field at each refusal.
    fn finish(mut self) -> Result<Command, UsageError> {
        match self.command() {
            Ok(Some(command)) => Ok(command),
            Ok(None) => Ok(Command::Run(Box::new(self.cfg))),
            Err(e) => Err(e),
        }
    }

    /// [`State::finish`]'s checks and command; `None`: run the daemon with
    /// `self.cfg` (its `auth` settled).
    fn command(&mut self) -> Result<Option<Command>, UsageError> {
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
            if let Some(opt) = &self.run_option {
                return Err(err(format!("option '{opt}' cannot be used with {command}")));
            }
            let control = self.cfg.control_socket();
            return Ok(Some(match command {
                "--dump" => Command::Dump {
                    view: format_value(&self.format, &View::NAMES)?,
                    map_file: std::mem::take(&mut self.cfg.map_file),
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
            }));
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
        self.cfg.auth = match (&self.auth, &self.cfg.key_file) {
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
            (Some((_, mode)), Some(_)) => *mode,
        };
        Ok(None)
    }
}

/// `--format`'s value among `names` (the first is the default).
fn format_value<T: Copy>(
    given: &Option<(String, String)>,
    names: &[(&'static str, T)],
) -> Result<T, UsageError> {
    let i = format_index(given, names.len(), &|i| names[i].0)?;
    Ok(names[i].1)
}

/// [`format_value`]'s work, once for every kind of value: the index of the
/// name given among the `count` names `name_at` gives (0 if none is given).
fn format_index(
    given: &Option<(String, String)>,
    count: usize,
    name_at: &dyn Fn(usize) -> &'static str,
) -> Result<usize, UsageError> {
    let Some((name, v)) = given else {
        return Ok(0);
    };
    (0..count).find(|&i| name_at(i) == v).ok_or_else(|| {
        let list: Vec<&str> = (0..count).map(name_at).collect();
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
mod tests;
