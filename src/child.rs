//! Child programs: setpe and the `--on-change` program.
//!
//! One run at a time per program. A run gets [`CHILD_TIMEOUT_MS`]; then its
//! whole process group is killed and reaped. What it writes to stdout and
//! stderr goes to a pipe that is read when it ends, and is logged a line at a
//! time, rate-limited. A child is killed with the daemon (`PR_SET_PDEATHSIG`,
//! and the daemon kills what still runs when it stops). Everything a run
//! needs is allocated when the [`Program`] is made.
#![forbid(unsafe_code)]

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::log::{Level, Limit};
use crate::sys;

/// A child program that runs longer than this is killed.
pub const CHILD_TIMEOUT_MS: u64 = 10_000;
/// How often the lines a child prints may be logged, per kind.
const OUTPUT_LOG_LIMIT_MS: u64 = 10_000;
/// Most bytes of a child's output logged per run (the pipe holds 64 KiB).
const OUTPUT_MAX: usize = 2048;
/// Whether a child gets the daemon's environment variable `var`
/// (`NAME=value`): not what systemd gave the daemon alone (a child must not
/// notify in its name), nor `JOURNAL_STREAM` (a child's output goes to a
/// pipe, not to the journal).
fn inherited(var: &[u8]) -> bool {
    let ours = crate::notify::ENV_VARS.iter().chain(&["JOURNAL_STREAM"]);
    !ours.into_iter().any(|name| {
        var.strip_prefix(name.as_bytes())
            .is_some_and(|rest| rest.starts_with(b"="))
    })
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Ok,
    /// Exit status, or 128 + the signal that killed it.
    Failed(i32),
    /// Killed after [`CHILD_TIMEOUT_MS`].
    TimedOut,
}

/// Counters of one program's runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Runs {
    pub started: u64,
    pub failed: u64,
    pub timed_out: u64,
    /// Could not be started (fork or pipe failed).
    pub not_started: u64,
}

struct Run {
    pid: libc::pid_t,
    started_ms: u64,
    output: OwnedFd,
}

/// One child program and its arguments.
pub struct Program {
    /// How the log names it (`setpe`, `on-change program`).
    name: &'static str,
    /// Owned here; `argv` points into them.
    args: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    run: Option<Run>,
    pub runs: Runs,
}

impl Program {
    /// A program `path` with `args` (after `argv[0]`), named `name` in the log.
    pub fn new(name: &'static str, path: &Path, args: &[&OsStr]) -> io::Result<Program> {
        let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
        let mut owned = Vec::new();
        for a in std::iter::once(path.as_os_str()).chain(args.iter().copied()) {
            owned.push(CString::new(a.as_bytes()).map_err(|_| invalid())?);
        }
        let mut argv: Vec<*const libc::c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        argv.push(std::ptr::null());
        Ok(Program {
            name,
            args: owned,
            argv,
            run: None,
            runs: Runs::default(),
        })
    }

    /// A run is in progress.
    pub fn busy(&self) -> bool {
        self.run.is_some()
    }

    /// When the running program is killed.
    pub fn deadline(&self) -> Option<u64> {
        self.run.as_ref().map(|r| r.started_ms + CHILD_TIMEOUT_MS)
    }

    /// Starts a run with the environment `envp` (see [`Environment`]).
    /// The caller checks [`Program::busy`] first.
    pub fn start(&mut self, now_ms: u64, envp: &[*const libc::c_char]) -> io::Result<()> {
        debug_assert!(self.run.is_none());
        // Said here rather than by the child, which could only exit 127.
        let started = sys::executable(&self.args[0])
            .and_then(|()| sys::output_pipe())
            .and_then(|(read, write)| {
                let pid = sys::spawn(&self.argv, envp, write.as_raw_fd())?;
                Ok((pid, read))
            });
        match started {
            Ok((pid, output)) => {
                self.runs.started += 1;
                self.run = Some(Run {
                    pid,
                    started_ms: now_ms,
                    output,
                });
                Ok(())
            }
            Err(e) => {
                self.runs.not_started += 1;
                Err(e)
            }
        }
    }

    /// Collects a run that ended (on SIGCHLD), or kills and collects one
    /// past its deadline; logs its output. `None` while it runs.
    pub fn poll(&mut self, now_ms: u64) -> Option<Ended> {
        let run = self.run.as_ref()?;
        let ended = match sys::reap(run.pid, false) {
            Some(0) => Ended::Ok,
            Some(status) => Ended::Failed(status),
            None if now_ms >= run.started_ms + CHILD_TIMEOUT_MS => {
                sys::kill_group(run.pid);
                sys::reap(run.pid, true);
                Ended::TimedOut
            }
            None => return None,
        };
        let run = self.run.take()?;
        self.log_output(&run.output);
        match ended {
            Ended::Ok => {}
            Ended::Failed(_) => self.runs.failed += 1,
            Ended::TimedOut => self.runs.timed_out += 1,
        }
        Some(ended)
    }

    /// At exit: waits up to `wait_ms` for a run to end, then kills it.
    pub fn finish(&mut self, wait_ms: u64) -> Option<Ended> {
        let deadline = sys::monotonic_ms() + wait_ms;
        while self.run.is_some() {
            let now = sys::monotonic_ms();
            if let Some(e) = self.poll(now) {
                return Some(e);
            }
            if now >= deadline {
                if let Some(run) = self.run.take() {
                    sys::kill_group(run.pid);
                    sys::reap(run.pid, true);
                    self.log_output(&run.output);
                    self.runs.timed_out += 1;
                }
                return Some(Ended::TimedOut);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        None
    }

    /// Logs what the run wrote (what the pipe holds, at most
    /// [`OUTPUT_MAX`] bytes), a line at a time, rate-limited.
    fn log_output(&self, output: &OwnedFd) {
        let mut buf = [0u8; OUTPUT_MAX];
        let mut len = 0;
        while len < buf.len() {
            match sys::read_fd(output.as_raw_fd(), &mut buf[len..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => len += n,
            }
        }
        for line in buf[..len].split(|&b| b == b'\n') {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            crate::log::limited(
                Limit::ChildOutput,
                OUTPUT_LOG_LIMIT_MS,
                Level::Warn,
                format_args!("{}: {}", self.name, String::from_utf8_lossy(line)),
            );
        }
    }

    /// The program's path.
    pub fn path(&self) -> &Path {
        Path::new(std::ffi::OsStr::from_bytes(self.args[0].as_bytes()))
    }
}

/// A child's environment: the daemon's own (without what systemd gave the
/// daemon alone) and up to [`MAX_VARS`] variables of ours, set per run in a
/// fixed buffer.
pub struct Environment {
    inherited: usize,
    /// Our variables, NUL-terminated, one after another.
    buf: Box<[u8]>,
    used: usize,
    /// `inherited` pointers into the process environment, then ours, then NULL.
    ptrs: Vec<*const libc::c_char>,
}

/// Most variables [`Environment::set`] adds.
pub const MAX_VARS: usize = 16;

impl Environment {
    /// The process environment as it is now (call at start-up; the daemon
    /// never changes its environment afterwards), with room for `bytes` of
    /// our variables.
    pub fn new(bytes: usize) -> Environment {
        let bytes = bytes.max(1);
        let mut ptrs: Vec<*const libc::c_char> = Vec::new();
        for var in sys::environment() {
            if inherited(var.to_bytes()) {
                ptrs.push(var.as_ptr());
            }
        }
        let inherited = ptrs.len();
        ptrs.reserve_exact(MAX_VARS + 1);
        ptrs.push(std::ptr::null());
        Environment {
            inherited,
            buf: vec![0; bytes].into_boxed_slice(),
            used: 0,
            ptrs,
        }
    }

    /// Drops the variables of the previous run.
    pub fn clear(&mut self) {
        self.used = 0;
        self.ptrs.truncate(self.inherited);
        self.ptrs.push(std::ptr::null());
    }

    /// Adds `NAME=value`, with the value cut to what is left of the buffer
    /// (the caller keeps lists short enough). False if it was cut or not
    /// added.
    pub fn set(&mut self, name: &str, value: impl FnOnce(&mut dyn std::fmt::Write)) -> bool {
        // A thin generic shell: the work is done once, in `set_dyn`, not
        // once per caller's closure.
        let mut value = Some(value);
        self.set_dyn(name, &mut |w| {
            if let Some(value) = value.take() {
                value(w);
            }
        })
    }

    #[inline(never)]
    fn set_dyn(&mut self, name: &str, value: &mut dyn FnMut(&mut dyn std::fmt::Write)) -> bool {
        if self.ptrs.len() > self.inherited + MAX_VARS {
            return false;
        }
        let start = self.used;
        let mut w = Cursor {
            buf: &mut self.buf[..],
            len: start,
            cut: false,
        };
        let _ = std::fmt::Write::write_str(&mut w, name);
        let _ = std::fmt::Write::write_str(&mut w, "=");
        value(&mut w);
        // Room for the NUL.
        if w.len >= w.buf.len() {
            w.len = w.buf.len() - 1;
            w.cut = true;
        }
        let (end, cut) = (w.len, w.cut);
        self.buf[end] = 0;
        self.used = end + 1;
        self.ptrs.pop();
        self.ptrs.push(self.buf[start..].as_ptr().cast());
        self.ptrs.push(std::ptr::null());
        !cut
    }

    /// The NULL-terminated array for [`Program::start`].
    pub fn envp(&self) -> &[*const libc::c_char] {
        &self.ptrs
    }

    /// Our variables, for tests.
    pub fn ours(&self) -> impl Iterator<Item = &CStr> {
        self.buf[..self.used]
            .split_inclusive(|&b| b == 0)
            .filter_map(|s| CStr::from_bytes_with_nul(s).ok())
    }
}

/// A `fmt::Write` into a byte buffer that stops (and says so) when full.
struct Cursor<'a> {
    buf: &'a mut [u8],
    len: usize,
    cut: bool,
}

impl std::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.buf.len().saturating_sub(self.len + 1);
        let n = s.len().min(room);
        // No NUL inside a variable.
        for (d, &b) in self.buf[self.len..self.len + n]
            .iter_mut()
            .zip(s.as_bytes())
        {
            *d = if b == 0 { b'?' } else { b };
        }
        self.len += n;
        if n < s.len() {
            self.cut = true;
            return Err(std::fmt::Error);
        }
        Ok(())
    }
}
