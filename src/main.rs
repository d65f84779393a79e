//! `omdiscd`: command line and start-up. Everything else is in the library.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::path::Path;
use std::process::ExitCode;

use omdiscd::cli::{self, Command};
use omdiscd::config::Config;
use omdiscd::control::{self, Request, StatsFormat, View, WatchFormat};
use omdiscd::daemon::{self, Daemon, StartError};
use omdiscd::log::{self, Sink};
use omdiscd::staticmap::{self, StaticMap};
use omdiscd::sys::{self, Starter};
use omdiscd::{error, info, mapfile};

/// `--dump`'s exit status for a map whose writer is not running.
const EXIT_STALE_MAP: u8 = 4;

/// Standard output and standard error, written to straight: no `std::io`
/// stdout/stderr machinery (locks, line buffer, panics on a failed write) in
/// the binary. Each piece is one `write(2)`, as `eprintln!` does.
struct Out(i32);

impl fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        sys::write_all_fd(self.0, s.as_bytes()).map_err(|_| fmt::Error)
    }
}

/// `args` and a newline on file descriptor `fd` (1 or 2); false if a write failed.
fn say(fd: i32, args: fmt::Arguments<'_>) -> bool {
    let mut out = Out(fd);
    out.write_fmt(args)
        .and_then(|()| out.write_str("\n"))
        .is_ok()
}

/// `eprintln!` without std's stderr: one line on standard error.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        say(2, format_args!($($arg)*));
    }};
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let command = match cli::parse(args.iter().cloned()) {
        Ok(Command::Run(cfg)) if cfg.cmdline => {
            // The kernel command line's settings, then ours again on top.
            let path = cfg.proc_root.join("cmdline");
            match omdiscd::procfs::read_cmdline(&path) {
                Ok(line) => cli::parse_with_kernel(&line, args.iter().cloned()),
                Err(e) => {
                    eprintln!(
                        "omdiscd: cannot read the kernel command line {}: {} (is /proc mounted?)",
                        path.display(),
                        sys::IoErr(&e)
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        other => other,
    };
    let command = match command {
        Ok(c) => c,
        Err(e) => {
            eprintln!("omdiscd: {e}");
            eprintln!("{}", cli::USAGE_HINT);
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help if print_all(cli::USAGE.as_bytes()) => ExitCode::SUCCESS,
        Command::Version if say(1, format_args!("omdiscd {}", daemon::VERSION)) => {
            ExitCode::SUCCESS
        }
        Command::Help | Command::Version => ExitCode::FAILURE,
        Command::Dump {
            map_file,
            control,
            view,
        } => dump(&map_file, &control, view),
        Command::Stats { control, format } => stats(&control, format),
        Command::Watch { control, format } => watch(&control, format),
        Command::Run(cfg) => run(*cfg),
    }
}

/// Writes `bytes` to standard output; false if that failed.
fn print_all(bytes: &[u8]) -> bool {
    sys::write_all_fd(1, bytes).is_ok()
}

/// `--stats`: the running daemon's counters.
fn stats(control: &Path, format: StatsFormat) -> ExitCode {
    match control::ask(control, Request::Stats(format)) {
        Ok(answer) if print_all(&answer) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "omdiscd: omdiscd runs, but its control socket {} is open only to the user it runs as (mode 0600, root under the shipped unit): run --stats as that user, e.g. with sudo",
                control.display()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!(
                "omdiscd: no omdiscd answers on {}: {} (is it running? see --control-socket)",
                control.display(),
                sys::IoErr(&e)
            );
            ExitCode::FAILURE
        }
    }
}

/// `--watch`: the running daemon's map, then its changes, until the daemon
/// stops (status 0) or drops this client for reading too slowly (1).
fn watch(control: &Path, format: WatchFormat) -> ExitCode {
    let mut lines = match control::watch(control, format) {
        Ok(lines) => lines,
        // The daemon's answer (too many watchers).
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            eprintln!("omdiscd: {}: {e}", control.display());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!(
                "omdiscd: no omdiscd answers on {}: {} (is it running? see --control-socket)",
                control.display(),
                sys::IoErr(&e)
            );
            return ExitCode::FAILURE;
        }
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        match std::io::BufRead::read_until(&mut lines, b'\n', &mut line) {
            Ok(0) => return ExitCode::SUCCESS,
            Ok(_) if control::is_dropped(&line) => {
                let text = String::from_utf8_lossy(&line);
                eprintln!("omdiscd: {}", text.trim_end().trim_start_matches("error: "));
                return ExitCode::FAILURE;
            }
            // Each line as it comes (a pipe would hold it otherwise).
            Ok(_) if print_all(&line) => {}
            Ok(_) => return ExitCode::FAILURE,
            Err(e) => {
                eprintln!(
                    "omdiscd: reading from {}: {}",
                    control.display(),
                    sys::IoErr(&e)
                );
                return ExitCode::FAILURE;
            }
        }
    }
}

/// `--dump`: the map, from the running daemon, else from the map file.
fn dump(path: &Path, control: &Path, view: View) -> ExitCode {
    match control::ask(control, Request::Show(view)) {
        Ok(answer) => {
            return if print_all(&answer) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => eprintln!(
            "omdiscd: note: omdiscd runs, but its control socket {} is open only to the user it runs as (mode 0600): showing the map file it writes instead",
            control.display()
        ),
        Err(_) => {}
    }
    let bytes = match omdiscd::procfs::read_map_file(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "omdiscd: cannot read the map file {}: {e} (is omdiscd running? see --map-file)",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let map = match mapfile::parse(&bytes) {
        Ok(map) if map.ranges.is_empty() => {
            eprintln!(
                "omdiscd: the map file {} lists no node (omdiscd always writes its own)",
                path.display()
            );
            return ExitCode::FAILURE;
        }
        Ok(map) => map,
        Err(e) => {
            eprintln!("omdiscd: malformed map file {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let text = match view {
        View::Showmap => mapfile::showmap(&map),
        View::Map => String::from_utf8_lossy(&bytes).into_owned(),
        View::Hosts => mapfile::hosts(&map),
        View::Json => mapfile::json(&map),
    };
    if !print_all(text.as_bytes()) {
        return ExitCode::FAILURE;
    }
    // A map whose writer is gone is what a stopped daemon left.
    match map.writer {
        Some(w) if !sys::process_exists(w.pid) => {
            let now = sys::unix_time_s();
            eprintln!(
                "omdiscd: warning: the map file {} is stale: the omdiscd that wrote it (PID {}) is not running; it was written at {} ({} ago)",
                path.display(),
                w.pid,
                mapfile::Utc(w.time_s),
                mapfile::Span(now.saturating_sub(w.time_s))
            );
            ExitCode::from(EXIT_STALE_MAP)
        }
        _ => ExitCode::SUCCESS,
    }
}

fn run(mut cfg: Config) -> ExitCode {
    if cfg.daemonize {
        // A daemon must not keep its starter's pipes or files open (a
        // caller waiting for end-of-file would hang).
        sys::close_inherited_fds();
    }
    log::init(if cfg.daemonize {
        Sink::Syslog
    } else {
        Sink::Stdout
    });
    if !cfg.daemonize {
        log::prefix_priorities_for_the_journal();
    }
    log::set_debug(cfg.debug);
    if let Err(e) = cfg.absolutize() {
        return start_failed(None, 1, &format!("cannot read the current directory: {e}"));
    }
    // A hand-written map wins over discovery, as in openMosix.
    match staticmap::find(&cfg.static_maps) {
        Ok(Some(path)) => return run_static(&cfg, path),
        Ok(None) if !cfg.static_maps.is_empty() => info!(
            "no static map ({}): starting discovery",
            staticmap::list(&cfg.static_maps)
        ),
        Ok(None) => {}
        Err(e) => return start_error(None, 1, &e),
    }
    let mut daemon = match Daemon::new(&cfg) {
        Ok(d) => d,
        Err(e) => return start_error(None, e.exit_status(), &e),
    };
    // Without -n the starter waits until the daemon announces or fails.
    let starter = match detach(&cfg, || daemon.rewrite_pid()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Err(e) = daemon.start() {
        return start_error(starter, 1, &StartError::Io("taking over the signals", e));
    }
    match daemon.run(starter) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--static-map` found a map: load and publish it instead of discovering.
fn run_static(cfg: &Config, path: std::path::PathBuf) -> ExitCode {
    let mut d = match StaticMap::new(cfg, path) {
        Ok(d) => d,
        Err(e) => return start_error(None, e.exit_status(), &e),
    };
    let starter = match detach(cfg, || d.rewrite_pid()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Err(e) = d.start() {
        return start_error(starter, 1, &StartError::Io("taking over the signals", e));
    }
    if let Err(e) = d.load() {
        return start_error(starter, 1, &e);
    }
    if let Some(s) = starter {
        s.ready();
    }
    match d.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Without `-n`, becomes a daemon and writes the new PID into the lock
/// file (`rewrite_pid`); the returned starter waits until the daemon says
/// it runs or fails. With `-n`, nothing.
fn detach(
    cfg: &Config,
    rewrite_pid: impl FnOnce() -> std::io::Result<()>,
) -> Result<Option<Starter>, ExitCode> {
    if !cfg.daemonize {
        return Ok(None);
    }
    let starter = sys::daemonize()
        .map_err(|e| start_failed(None, 1, &format!("cannot become a daemon: {e}")))?;
    if let Err(e) = rewrite_pid() {
        error!("writing the PID into the lock file: {e}");
    }
    Ok(Some(starter))
}

/// [`start_failed`] with the text of `e`: one copy of its formatting, not
/// one at each of the six places start-up can fail with a [`StartError`].
#[inline(never)]
fn start_error(starter: Option<Starter>, status: u8, e: &StartError) -> ExitCode {
    start_failed(starter, status, &e.to_string())
}

/// A start-up failure: on standard error with the `omdiscd:` prefix in
/// every mode (through the starter once daemonized), and in the log as a
/// daemon.
fn start_failed(starter: Option<Starter>, status: u8, text: &str) -> ExitCode {
    for line in text.lines() {
        if log::sink() == Sink::Syslog {
            error!("{line}");
        }
    }
    match starter {
        Some(s) => s.failed(status, text),
        None => {
            for line in text.lines() {
                eprintln!("omdiscd: {line}");
            }
        }
    }
    ExitCode::from(status)
}
