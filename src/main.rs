//! `omdiscd`: command line and start-up. Everything else is in the library.

use std::io::Write;
use std::process::ExitCode;

use omdiscd::cli::{self, Command};
use omdiscd::daemon::{self, Daemon, StartError};
use omdiscd::log::{self, Sink};
use omdiscd::{error, mapfile};

/// `--dump`'s exit status for a map whose writer is not running.
const EXIT_STALE_MAP: u8 = 4;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("omdiscd: {e}");
            eprintln!("{}", cli::USAGE_HINT);
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("omdiscd {}", daemon::VERSION);
            ExitCode::SUCCESS
        }
        Command::Dump { map_file } => dump(&map_file),
        Command::Run(cfg) => run(cfg),
    }
}

/// `--dump`: the published map in the layout of the original `showmap`.
fn dump(path: &std::path::Path) -> ExitCode {
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
    match mapfile::parse(&bytes) {
        Ok(map) if map.ranges.is_empty() => {
            eprintln!(
                "omdiscd: the map file {} lists no node (omdiscd always writes its own)",
                path.display()
            );
            ExitCode::FAILURE
        }
        Ok(map) => {
            let mut out = std::io::stdout().lock();
            if out.write_all(mapfile::showmap(&map).as_bytes()).is_err() {
                return ExitCode::FAILURE;
            }
            // A map whose writer is gone is what a stopped daemon left.
            match map.writer {
                Some(w) if !omdiscd::sys::process_exists(w.pid) => {
                    eprintln!(
                        "omdiscd: warning: the map file {} is stale: the omdiscd that wrote it (PID {}) is not running; it was written {} s after 1970",
                        path.display(),
                        w.pid,
                        w.time_s
                    );
                    ExitCode::from(EXIT_STALE_MAP)
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("omdiscd: malformed map file {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

fn run(mut cfg: daemon::Config) -> ExitCode {
    if cfg.daemonize {
        // A daemon must not keep its starter's pipes or files open (a
        // caller waiting for end-of-file would hang).
        omdiscd::sys::close_inherited_fds();
    }
    log::init(if cfg.daemonize {
        Sink::Syslog
    } else {
        Sink::Stdout
    });
    log::set_debug(cfg.debug);
    if let Err(e) = daemon::absolutize(&mut cfg) {
        error!("cannot read the current directory: {e}");
        return ExitCode::FAILURE;
    }
    let mut daemon = match Daemon::new(&cfg) {
        Ok(d) => d,
        Err(e) => {
            report_start_error(&e, cfg.daemonize);
            return ExitCode::from(e.exit_status());
        }
    };
    // Daemon::new has read NOTIFY_SOCKET and WATCHDOG_*; setpe must not
    // inherit them. Still one thread here.
    omdiscd::notify::clear_env();
    if cfg.daemonize {
        if let Err(e) = omdiscd::sys::daemonize() {
            error!("cannot become a daemon: {e}");
            return ExitCode::FAILURE;
        }
        if let Err(e) = daemon.rewrite_pid() {
            error!("writing the PID into the lock file: {e}");
        }
    }
    if let Err(e) = daemon.start() {
        error!("cannot take over the signals: {e}");
        return ExitCode::FAILURE;
    }
    match daemon.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Start-up failures go to the log; as a daemon also to the terminal, which
/// is still ours at that point.
fn report_start_error(e: &StartError, daemonize: bool) {
    let text = e.to_string();
    for line in text.lines() {
        error!("{line}");
        if daemonize {
            eprintln!("omdiscd: {line}");
        }
    }
}
