//! The daemon's logging: one line per message to standard output (foreground
//! `-n`) or to syslog, formatted in fixed buffers so that logging never touches
//! the heap, with per-key rate limiting for messages a hostile or broken network
//! could trigger at packet rate.
//!
//! Use the macros: `omdiscd::info!("joined {}", x)`, `omdiscd::log_limited!(...)`.

// The system calls go through crate::sys.
#![forbid(unsafe_code)]

use core::fmt::{self, Write as _};
use std::ffi::CStr;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::sys::{self, UnixAddr, UnixDgram, SUN_PATH_MAX};

/// Largest line written, newline included; longer messages end in "...".
pub const LINE_MAX: usize = 1024;
/// Size of a syslog datagram, header included (musl uses the same).
pub const SYSLOG_MAX: usize = 1024;
/// Where syslog listens unless [`set_syslog_path`] says otherwise.
pub const DEFAULT_SYSLOG_PATH: &str = "/dev/log";
const IDENT: &str = "omdiscd";

/// Message severity, mapped onto the syslog priorities of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Notice,
    Info,
    Debug,
}

impl Level {
    /// The syslog priority (`LOG_ERR` ... `LOG_DEBUG`), facility not included.
    pub const fn syslog_priority(self) -> libc::c_int {
        match self {
            Level::Error => libc::LOG_ERR,
            Level::Warn => libc::LOG_WARNING,
            Level::Notice => libc::LOG_NOTICE,
            Level::Info => libc::LOG_INFO,
            Level::Debug => libc::LOG_DEBUG,
        }
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// The message text and a newline on fd 1, one write(2) per line.
    Stdout,
    /// RFC 3164 datagrams to the local syslog socket, facility LOG_DAEMON.
    Syslog,
    /// Like `Stdout` but to any fd (not owned, never closed); for tests.
    Fd(RawFd),
}

/// What a rate-limited line is about: one rate-limit slot per kind of
/// repeatable message (see [`limited`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A datagram that failed to parse.
    BadPacket,
    /// A node of another cluster (label).
    Foreign,
    /// A node-id collision: a refused claim, a duplicate address, an id free again.
    Collision,
    /// A node id moved to an earlier claim (its own slot, so that a refused
    /// claim logged just before does not hide it).
    IdMoved,
    /// This node lost its own id.
    IdLost,
    /// Sending failed.
    SendError,
    /// Receiving failed, or the kernel dropped datagrams.
    RecvError,
    /// Writing the map file failed.
    PublishError,
    /// Handing the map to the kernel failed.
    KernelError,
    /// Netlink or a multicast membership failed.
    NetlinkError,
    /// The default route went away.
    Route,
    /// This node cannot keep up.
    Overload,
    /// A message refused by authentication or the sender checks.
    Refused,
    /// An unsigned message accepted (`--auth permissive`).
    Unsigned,
    /// A signal (SIGHUP, SIGUSR1) came again soon.
    Signal,
    /// Lines of the change log (joins and leaves) beyond the burst.
    Changes,
    /// A node joined (debug).
    Joined,
    /// The key file was re-read (SIGHUP), or could not be.
    Keys,
    /// A line a child program (setpe, the --on-change program) wrote.
    ChildOutput,
    /// A child program failed or was killed.
    ChildFailed,
    /// The control socket or the metrics file failed.
    Status,
    /// Telling the service manager (sd_notify) failed.
    Notify,
}

impl Limit {
    /// Number of kinds (and of rate-limit slots).
    pub const COUNT: usize = 22;
}

/// A fixed buffer implementing `fmt::Write` that truncates instead of failing,
/// so a long or hostile message can never make logging error out or allocate.
struct TruncBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// Writes stop here; lets a caller keep room for a suffix.
    limit: usize,
    truncated: bool,
}

impl<const N: usize> TruncBuf<N> {
    const fn new(limit: usize) -> Self {
        TruncBuf {
            buf: [0; N],
            len: 0,
            limit: if limit < N { limit } else { N },
            truncated: false,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole `str`s or char-boundary prefixes of them are ever copied in.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(N);
    }

    /// If anything was cut off, makes the text end in "..." (within `limit`).
    fn mark_truncation(&mut self) {
        if !self.truncated {
            return;
        }
        let mut end = self.len.min(self.limit.saturating_sub(3));
        while end > 0 && end < self.len && (self.buf[end] & 0xC0) == 0x80 {
            end -= 1; // back to a char boundary
        }
        self.len = end;
        self.truncated = false;
        let _ = self.write_str("...");
    }
}

impl<const N: usize> fmt::Write for TruncBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.limit.saturating_sub(self.len);
        let mut n = s.len().min(room);
        if n < s.len() {
            self.truncated = true;
            while !s.is_char_boundary(n) {
                n -= 1;
            }
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Formats `args` plus, when `suppressed > 0`, the suppression note and a newline
/// into at most [`LINE_MAX`] bytes. The note survives truncation of the message.
fn format_line(args: fmt::Arguments<'_>, suppressed: u32) -> TruncBuf<LINE_MAX> {
    let mut note = TruncBuf::<64>::new(64);
    if suppressed > 0 {
        let _ = write!(note, " ({suppressed} similar messages suppressed)");
    }
    let text_max = LINE_MAX - 1;
    let mut line = TruncBuf::<LINE_MAX>::new(text_max - note.len);
    let _ = line.write_fmt(args);
    line.mark_truncation();
    line.set_limit(text_max);
    let _ = line.write_str(note.as_str());
    line.set_limit(LINE_MAX);
    let _ = line.write_str("\n");
    line
}

/// Milliseconds shown as seconds, the way `{}` shows `ms as f64 / 1000.0`
/// ("2", "1.5", "0.025"), without pulling float formatting into the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub u64);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 1000;
        let mut frac = self.0 % 1000;
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let mut digits = 3;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        write!(f, "{whole}.{frac:0digits$}")
    }
}

/// Local time broken down as far as a syslog header needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// 0 = January.
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub min: u8,
    pub sec: u8,
}

impl LocalTime {
    /// Now, via localtime_r. The first call loads the zone file; [`init`] makes
    /// that call so it does not happen (and allocate) on the hot path.
    pub fn now() -> LocalTime {
        let tm = sys::local_time();
        LocalTime {
            month: tm.tm_mon.clamp(0, 11) as u8,
            day: tm.tm_mday.clamp(0, 31) as u8,
            hour: tm.tm_hour.clamp(0, 23) as u8,
            min: tm.tm_min.clamp(0, 59) as u8,
            sec: tm.tm_sec.clamp(0, 60) as u8,
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Builds `<PRI>Mmm dd hh:mm:ss omdiscd[PID]: msg` (day space-padded, as
/// strftime's `%e` in musl and glibc) into `out`; returns its length. No trailing
/// newline: syslog daemons take the datagram as the record.
pub fn format_syslog(
    out: &mut [u8; SYSLOG_MAX],
    level: Level,
    time: LocalTime,
    pid: u32,
    msg: &str,
) -> usize {
    let mut b = TruncBuf::<SYSLOG_MAX>::new(SYSLOG_MAX);
    let _ = write!(
        b,
        "<{}>{} {:>2} {:02}:{:02}:{:02} {}[{}]: {}",
        libc::LOG_DAEMON | level.syslog_priority(),
        MONTHS[usize::from(time.month % 12)],
        time.day,
        time.hour,
        time.min,
        time.sec,
        IDENT,
        pid,
        msg
    );
    b.mark_truncation();
    out[..b.len].copy_from_slice(b.bytes());
    b.len
}

/// How long a send may wait for a full syslog queue (the kernel queues only
/// `net.unix.max_dgram_qlen`, 10 by default, datagrams). musl and glibc block
/// without limit; a daemon stuck in a hung syslogd would stop announcing, so a
/// burst waits a little and a hung syslogd costs lines, not liveness.
const SYSLOG_SEND_TIMEOUT_US: u32 = 50_000;

/// A lazily connected AF_UNIX datagram socket to syslog, with a send timeout.
struct SyslogConn {
    fd: Option<UnixDgram>,
    path: [u8; SUN_PATH_MAX],
    path_len: usize,
}

impl SyslogConn {
    const fn new() -> SyslogConn {
        let mut path = [0u8; SUN_PATH_MAX];
        let def = DEFAULT_SYSLOG_PATH.as_bytes();
        let mut i = 0;
        while i < def.len() {
            path[i] = def[i];
            i += 1;
        }
        SyslogConn {
            fd: None,
            path,
            path_len: def.len(),
        }
    }

    fn set_path(&mut self, path: &str) -> io::Result<()> {
        let p = path.as_bytes();
        if p.is_empty() || p.len() > SUN_PATH_MAX || p.contains(&0) {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        self.path[..p.len()].copy_from_slice(p);
        self.path_len = p.len();
        self.fd = None;
        Ok(())
    }

    fn connect(&self) -> io::Result<UnixDgram> {
        let socket = UnixDgram::new()?;
        socket.set_send_timeout_us(SYSLOG_SEND_TIMEOUT_US)?;
        // set_path checked the path: it fits, NUL-terminated.
        let addr =
            UnixAddr::path(&self.path[..self.path_len]).ok_or(io::ErrorKind::InvalidInput)?;
        socket.connect(&addr)?;
        Ok(socket)
    }

    fn send_once(&self, datagram: &[u8]) -> io::Result<()> {
        let Some(socket) = &self.fd else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        socket.send(datagram)
    }

    /// Sends, connecting first if needed; on failure reconnects once and retries
    /// once, then drops the line. A syslog queue still full after the send
    /// timeout (EAGAIN) drops the line at once, without reconnecting.
    /// Returns false when no syslog daemon could be reached at all (the
    /// caller then falls back to the kernel log).
    fn send(&mut self, datagram: &[u8]) -> bool {
        if self.fd.is_none() {
            self.fd = self.connect().ok();
        }
        match self.send_once(datagram) {
            Ok(()) => return true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return true,
            Err(_) => {}
        }
        self.fd = self.connect().ok();
        if self.fd.is_none() {
            return false;
        }
        if self.send_once(datagram).is_err() {
            self.fd = None;
        }
        true
    }
}

/// The kernel log (`/dev/kmsg`), opened on first use: where a daemon's lines
/// go when no syslog daemon listens (an initramfs), and where openMosix users
/// read the kernel's own "openMosix configuration changed" lines with `dmesg`.
struct KmsgConn {
    fd: Option<OwnedFd>,
    path: &'static CStr,
}

impl KmsgConn {
    const fn new() -> KmsgConn {
        KmsgConn {
            fd: None,
            path: c"/dev/kmsg",
        }
    }

    /// Writes `<PRI>omdiscd[PID]: msg` (the kernel adds the time); drops the
    /// line if the kernel log cannot be opened.
    fn send(&mut self, level: Level, pid: u32, msg: &str) {
        if self.fd.is_none() {
            let flags = libc::O_WRONLY | libc::O_CLOEXEC;
            self.fd = sys::fs::open(self.path, flags, 0).ok();
        }
        let Some(fd) = &self.fd else { return };
        let mut b = TruncBuf::<SYSLOG_MAX>::new(SYSLOG_MAX - 1);
        let _ = write!(
            b,
            "<{}>{}[{}]: {}",
            libc::LOG_DAEMON | level.syslog_priority(),
            IDENT,
            pid,
            msg
        );
        b.mark_truncation();
        let mut line = [0u8; SYSLOG_MAX];
        line[..b.len].copy_from_slice(b.bytes());
        line[b.len] = b'\n';
        // One write is one kernel log record; errors (rate limiting) drop it.
        let _ = sys::write_all_fd(fd.as_raw_fd(), &line[..=b.len]);
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Time the last line for this key was printed; None before the first.
    last_ms: Option<u64>,
    suppressed: u32,
}

/// At most one line per key per interval, counting what it holds back.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    slots: [Slot; Limit::COUNT],
}

impl RateLimiter {
    pub const fn new() -> RateLimiter {
        RateLimiter {
            slots: [Slot {
                last_ms: None,
                suppressed: 0,
            }; Limit::COUNT],
        }
    }

    /// `Some(n)` if a line for `key` may be printed at `now_ms` (`n` lines were
    /// suppressed since the last one), `None` if this one is suppressed.
    pub fn check(&mut self, key: Limit, interval_ms: u64, now_ms: u64) -> Option<u32> {
        let slot = &mut self.slots[key as usize];
        match slot.last_ms {
            Some(last) if now_ms >= last && now_ms - last < interval_ms => {
                slot.suppressed = slot.suppressed.saturating_add(1);
                None
            }
            _ => {
                slot.last_ms = Some(now_ms);
                Some(mem::take(&mut slot.suppressed))
            }
        }
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new()
    }
}

/// A complete logger; the global one behind the macros is a `Mutex<Logger>`.
/// Separate instances make tests independent of the global state.
pub struct Logger {
    sink: Sink,
    debug: bool,
    /// Lines to a stream start with `<N>`, their syslog priority (the
    /// journal reads it: `journalctl -p`).
    priorities: bool,
    syslog: SyslogConn,
    kmsg: KmsgConn,
    limiter: RateLimiter,
}

impl Logger {
    /// A logger writing to `sink`, debug lines off.
    pub const fn new(sink: Sink) -> Logger {
        Logger {
            sink,
            debug: false,
            priorities: false,
            syslog: SyslogConn::new(),
            kmsg: KmsgConn::new(),
            limiter: RateLimiter::new(),
        }
    }

    pub fn set_sink(&mut self, sink: Sink) {
        if sink != Sink::Syslog {
            self.syslog.fd = None;
        }
        self.sink = sink;
    }

    pub fn sink(&self) -> Sink {
        self.sink
    }

    pub fn set_debug(&mut self, on: bool) {
        self.debug = on;
    }

    /// Starts each line to a stream with `<N>`, its syslog priority.
    pub fn set_priorities(&mut self, on: bool) {
        self.priorities = on;
    }

    /// Points the syslog sink at another socket (tests); the default is /dev/log.
    pub fn set_syslog_path(&mut self, path: &str) -> io::Result<()> {
        self.syslog.set_path(path)
    }

    /// Points the kernel-log fallback elsewhere (tests); the default is /dev/kmsg.
    pub fn set_kmsg_path(&mut self, path: &'static CStr) {
        self.kmsg = KmsgConn { fd: None, path };
    }

    fn enabled(&self, level: Level) -> bool {
        level != Level::Debug || self.debug
    }

    /// Logs one message.
    pub fn write(&mut self, level: Level, args: fmt::Arguments<'_>) {
        if self.enabled(level) {
            let line = format_line(args, 0);
            self.emit(level, line.bytes());
        }
    }

    /// Logs one message subject to rate limiting by `key`, at time `now_ms`.
    pub fn limited_at(
        &mut self,
        now_ms: u64,
        key: Limit,
        interval_ms: u64,
        level: Level,
        args: fmt::Arguments<'_>,
    ) {
        if !self.enabled(level) {
            return;
        }
        if let Some(suppressed) = self.limiter.check(key, interval_ms, now_ms) {
            let line = format_line(args, suppressed);
            self.emit(level, line.bytes());
        }
    }

    /// Sends a formatted line (ending in a newline) to the sink. Errors are
    /// ignored: there is nowhere left to report them.
    fn emit(&mut self, level: Level, line: &[u8]) {
        let stream = |fd| {
            if self.priorities {
                let prefix = [b'<', b'0' + level.syslog_priority() as u8, b'>'];
                let _ = sys::write_all_fd(fd, &prefix);
            }
            let _ = sys::write_all_fd(fd, line);
        };
        match self.sink {
            Sink::Stdout => stream(libc::STDOUT_FILENO),
            Sink::Fd(fd) => stream(fd),
            Sink::Syslog => {
                let text = line.strip_suffix(b"\n").unwrap_or(line);
                let text = core::str::from_utf8(text).unwrap_or("");
                let mut dgram = [0u8; SYSLOG_MAX];
                // Asked per line because daemonize() changes it.
                let pid = sys::getpid();
                let n = format_syslog(&mut dgram, level, LocalTime::now(), pid, text);
                if !self.syslog.send(&dgram[..n]) {
                    self.kmsg.send(level, pid, text);
                }
            }
        }
    }
}

static LOGGER: Mutex<Logger> = Mutex::new(Logger::new(Sink::Stdout));
/// Mirror of the global logger's debug flag, read without locking so that a
/// suppressed `debug!` costs one load and no formatting.
static DEBUG: AtomicBool = AtomicBool::new(false);

fn global() -> MutexGuard<'static, Logger> {
    // A panic while logging must not silence the daemon for good.
    LOGGER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Selects the sink at start-up. For syslog it also loads the time zone now, so
/// the first line does not do it (and allocate) from the hot path.
pub fn init(sink: Sink) {
    if sink == Sink::Syslog {
        // localtime_r loads the zone on first use (libc has no binding for tzset).
        let _ = LocalTime::now();
    }
    set_sink(sink);
}

/// Switches the sink, e.g. to syslog after daemonizing.
pub fn set_sink(sink: Sink) {
    global().set_sink(sink);
}

/// Where log lines go now.
pub fn sink() -> Sink {
    global().sink()
}

/// Starts each line to standard output with `<N>`, its syslog priority,
/// when standard output is the systemd journal (`JOURNAL_STREAM` names
/// it), so that the journal keeps the levels. Returns whether it does.
pub fn prefix_priorities_for_the_journal() -> bool {
    let on = std::env::var("JOURNAL_STREAM")
        .ok()
        .and_then(|v| {
            let (dev, ino) = v.split_once(':')?;
            Some((crate::num::u64_of(dev)?, crate::num::u64_of(ino)?))
        })
        .is_some_and(|id| sys::device_and_inode(libc::STDOUT_FILENO) == Some(id));
    global().set_priorities(on);
    on
}

/// Turns `debug!` output on or off (off by default).
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
    global().set_debug(on);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Points the syslog sink at another socket; for tests.
pub fn set_syslog_path(path: &str) -> io::Result<()> {
    global().set_syslog_path(path)
}

/// What the macros call. The message is formatted before the lock is taken, so
/// a `Display` impl that itself logs cannot deadlock.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    if level == Level::Debug && !debug_enabled() {
        return;
    }
    let line = format_line(args, 0);
    global().emit(level, line.bytes());
}

/// Logs at most one line per `key` (see [`Limit`]) per `interval_ms`; the next line
/// printed after suppressions ends with ` (N similar messages suppressed)`.
pub fn limited(key: Limit, interval_ms: u64, level: Level, args: fmt::Arguments<'_>) {
    if level == Level::Debug && !debug_enabled() {
        return;
    }
    let now = sys::monotonic_ms();
    let Some(suppressed) = global().limiter.check(key, interval_ms, now) else {
        return;
    };
    let line = format_line(args, suppressed);
    global().emit(level, line.bytes());
}

/// Logs at `Level::Error`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)+)) };
}

/// Logs at `Level::Warn`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Warn, format_args!($($arg)+)) };
}

/// Logs at `Level::Notice`.
#[macro_export]
macro_rules! notice {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Notice, format_args!($($arg)+)) };
}

/// Logs at `Level::Info`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)+)) };
}

/// Logs at `Level::Debug`, only when `log::set_debug(true)` was called.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::write($crate::log::Level::Debug, format_args!($($arg)+)) };
}

/// Rate-limited logging: `log_limited!(Limit::BadPacket, 10_000, Level::Warn, "bad packet from {}", a)`.
#[macro_export]
macro_rules! log_limited {
    ($key:expr, $interval_ms:expr, $level:expr, $($arg:tt)+) => {
        $crate::log::limited($key, $interval_ms, $level, format_args!($($arg)+))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn secs_shows_milliseconds_as_an_f64_of_seconds_would() {
        for ms in (0..=20_000u64).chain([u64::from(u32::MAX), 86_400_000_123]) {
            assert_eq!(
                Secs(ms).to_string(),
                (ms as f64 / 1000.0).to_string(),
                "{ms}"
            );
        }
    }

    #[test]
    fn without_a_syslog_daemon_lines_go_to_the_kernel_log() {
        let dir = std::env::temp_dir().join(format!("omd-kmsg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let kmsg = dir.join("kmsg");
        std::fs::write(&kmsg, b"").unwrap();
        let path = std::ffi::CString::new(kmsg.to_str().unwrap()).unwrap();
        let mut logger = Logger::new(Sink::Syslog);
        logger
            .set_syslog_path(dir.join("no-syslogd").to_str().unwrap())
            .unwrap();
        logger.set_kmsg_path(Box::leak(path.into_boxed_c_str()));
        logger.write(
            Level::Notice,
            format_args!("openMosix #1 is at IP address 10.0.0.1"),
        );
        logger.write(Level::Error, format_args!("second"));
        let pid = sys::getpid();
        assert_eq!(
            std::fs::read_to_string(&kmsg).unwrap(),
            format!(
                "<29>omdiscd[{pid}]: openMosix #1 is at IP address 10.0.0.1\n<27>omdiscd[{pid}]: second\n"
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A non-blocking pipe: (read end, write end).
    fn pipe() -> (OwnedFd, OwnedFd) {
        sys::pipe(libc::O_CLOEXEC | libc::O_NONBLOCK).unwrap()
    }

    fn drain(fd: &OwnedFd) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match sys::read_fd(fd.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// A fresh directory under the system temp dir, unique per test.
    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("omdiscd-log-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn fd_sink_writes_message_and_newline() {
        let (r, w) = pipe();
        let mut log = Logger::new(Sink::Fd(w.as_raw_fd()));
        log.write(Level::Info, format_args!("joined {} at {}", "node7", 42));
        log.write(Level::Error, format_args!("plain"));
        assert_eq!(drain(&r), "joined node7 at 42\nplain\n");
    }

    #[test]
    fn debug_is_off_by_default() {
        let (r, w) = pipe();
        let mut log = Logger::new(Sink::Fd(w.as_raw_fd()));
        log.write(Level::Debug, format_args!("hidden"));
        log.set_debug(true);
        log.write(Level::Debug, format_args!("shown"));
        assert_eq!(drain(&r), "shown\n");
    }

    #[test]
    fn long_message_is_truncated_with_ellipsis() {
        let (r, w) = pipe();
        let mut log = Logger::new(Sink::Fd(w.as_raw_fd()));
        let big = "x".repeat(5000);
        log.write(Level::Warn, format_args!("{big}"));
        let out = drain(&r);
        assert_eq!(out.len(), LINE_MAX);
        assert!(out.ends_with("x...\n"));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        for pad in 0..4 {
            let s = format!("{}{}", "a".repeat(pad), "é€😀".repeat(400));
            let line = format_line(format_args!("{s}"), 0);
            let text = line.as_str();
            assert!(text.len() <= LINE_MAX, "{}", text.len());
            assert!(text.ends_with("...\n"));
            assert!(s.starts_with(text.strip_suffix("...\n").unwrap()));
        }
    }

    #[test]
    fn exact_fit_is_not_truncated() {
        let s = "y".repeat(LINE_MAX - 1);
        let line = format_line(format_args!("{s}"), 0);
        assert_eq!(line.as_str(), format!("{s}\n"));
    }

    #[test]
    fn suppression_note_survives_truncation() {
        let big = "z".repeat(5000);
        let line = format_line(format_args!("{big}"), 7);
        assert_eq!(line.len, LINE_MAX);
        assert!(line
            .as_str()
            .ends_with("z... (7 similar messages suppressed)\n"));
    }

    #[test]
    fn rate_limiter_prints_one_of_a_hundred_then_the_count() {
        let (r, w) = pipe();
        let mut log = Logger::new(Sink::Fd(w.as_raw_fd()));
        for t in 0..100 {
            log.limited_at(
                1_000 + t,
                Limit::BadPacket,
                1_000,
                Level::Warn,
                format_args!("bad packet {t}"),
            );
        }
        // Another key is independent.
        log.limited_at(
            1_050,
            Limit::SendError,
            1_000,
            Level::Warn,
            format_args!("send"),
        );
        assert_eq!(drain(&r), "bad packet 0\nsend\n");
        log.limited_at(
            1_999,
            Limit::BadPacket,
            1_000,
            Level::Warn,
            format_args!("early"),
        );
        log.limited_at(
            2_000,
            Limit::BadPacket,
            1_000,
            Level::Warn,
            format_args!("again"),
        );
        assert_eq!(drain(&r), "again (100 similar messages suppressed)\n");
        log.limited_at(
            3_000,
            Limit::BadPacket,
            1_000,
            Level::Warn,
            format_args!("calm"),
        );
        assert_eq!(drain(&r), "calm\n");
    }

    #[test]
    fn rate_limiter_edge_cases() {
        let mut rl = RateLimiter::new();
        // The first line for a key prints even at time 0.
        assert_eq!(rl.check(Limit::Collision, 500, 0), Some(0));
        assert_eq!(rl.check(Limit::Collision, 500, 499), None);
        // A clock that went backwards does not suppress forever.
        assert_eq!(rl.check(Limit::Collision, 500, 10_000), Some(1));
        assert_eq!(rl.check(Limit::Collision, 500, 5), Some(0));
        // Each kind has its own slot.
        assert_eq!(rl.check(Limit::Route, 500, 5), Some(0));
    }

    #[test]
    fn syslog_format() {
        let t = LocalTime {
            month: 2,
            day: 5,
            hour: 7,
            min: 8,
            sec: 9,
        };
        let mut buf = [0u8; SYSLOG_MAX];
        let n = format_syslog(&mut buf, Level::Info, t, 1234, "joined 10.0.0.7");
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            "<30>Mar  5 07:08:09 omdiscd[1234]: joined 10.0.0.7"
        );
        let t = LocalTime {
            month: 11,
            day: 31,
            hour: 23,
            min: 59,
            sec: 60,
        };
        let n = format_syslog(&mut buf, Level::Error, t, 1, "x");
        assert_eq!(&buf[..n], b"<27>Dec 31 23:59:60 omdiscd[1]: x");
        let n = format_syslog(&mut buf, Level::Debug, t, 1, "x");
        assert!(buf[..n].starts_with(b"<31>"));
        let n = format_syslog(&mut buf, Level::Warn, t, 1, "x");
        assert!(buf[..n].starts_with(b"<28>"));
        let n = format_syslog(&mut buf, Level::Notice, t, 1, "x");
        assert!(buf[..n].starts_with(b"<29>"));
        let long = "w".repeat(1500);
        let n = format_syslog(&mut buf, Level::Info, t, 1, &long);
        assert_eq!(n, SYSLOG_MAX);
        assert!(buf.ends_with(b"w..."));
    }

    #[test]
    fn syslog_sends_datagrams_and_reconnects() {
        let dir = temp_dir("syslog");
        let path = dir.join("log.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

        let mut log = Logger::new(Sink::Syslog);
        log.set_syslog_path(path.to_str().unwrap()).unwrap();
        log.write(Level::Notice, format_args!("hello {}", 1));
        let mut buf = [0u8; 2048];
        let n = rx.recv(&mut buf).unwrap();
        let got = core::str::from_utf8(&buf[..n]).unwrap();
        assert!(got.starts_with("<29>"), "{got}");
        let tail = format!(" omdiscd[{}]: hello 1", std::process::id());
        assert!(got.ends_with(&tail), "{got}");
        // "<29>Mmm dd hh:mm:ss" is 19 bytes; the tail follows directly.
        assert_eq!(got.len(), 19 + tail.len(), "{got}");
        assert_eq!(&got[7..8], " ");
        assert_eq!(&got[13..14], ":");

        // syslogd restarts: the old socket goes away, a new one is bound.
        drop(rx);
        std::fs::remove_file(&path).unwrap();
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        log.write(Level::Info, format_args!("after restart"));
        let n = rx.recv(&mut buf).unwrap();
        assert!(buf[..n].ends_with(b": after restart"));

        // No syslogd at all: the line is dropped silently.
        drop(rx);
        std::fs::remove_file(&path).unwrap();
        log.write(Level::Info, format_args!("lost"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn full_syslog_queue_drops_lines_instead_of_hanging() {
        let dir = temp_dir("full");
        let path = dir.join("log.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut log = Logger::new(Sink::Syslog);
        log.set_syslog_path(path.to_str().unwrap()).unwrap();
        let start = sys::monotonic_ms();
        for i in 0..13 {
            log.write(Level::Info, format_args!("line {i}"));
        }
        // At most 3 overflowing sends, each waiting the 50 ms timeout.
        assert!(sys::monotonic_ms() - start < 2_000);
        rx.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        let mut got = 0;
        while rx.recv(&mut buf).is_ok() {
            got += 1;
        }
        assert!((1..13).contains(&got), "{got}");
        // Once drained, lines flow again on the same connection.
        log.write(Level::Info, format_args!("later"));
        rx.set_nonblocking(false).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert!(buf[..n].ends_with(b": later"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn syslog_path_is_validated() {
        let mut log = Logger::new(Sink::Syslog);
        assert!(log.set_syslog_path("").is_err());
        assert!(log.set_syslog_path(&"p".repeat(108)).is_err());
        assert!(log.set_syslog_path("a\0b").is_err());
        assert!(log.set_syslog_path(&"p".repeat(107)).is_ok());
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(Level::Error.syslog_priority(), libc::LOG_ERR);
        assert_eq!(Level::Warn.syslog_priority(), libc::LOG_WARNING);
        assert_eq!(Level::Notice.syslog_priority(), libc::LOG_NOTICE);
        assert_eq!(Level::Info.syslog_priority(), libc::LOG_INFO);
        assert_eq!(Level::Debug.syslog_priority(), libc::LOG_DEBUG);
    }
}
