//! omdiscd as a systemd service.
//!
//! - [`the_daemon_speaks_sd_notify`]: the real binary with `NOTIFY_SOCKET`
//!   pointing at a socket of ours, no systemd needed: READY=1 with a
//!   status, WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1 and READY=1
//!   on SIGHUP, STOPPING=1 and exit status 0 on SIGTERM.
//! - [`the_unit_runs_under_systemd`]: `dist/omdiscd.service` under a real
//!   systemd: the host's when it is PID 1, else a private one booted in new
//!   namespaces by `tests/systemd/container.sh` (the host is left as it
//!   was). Start (which waits for READY=1), status text, watchdog, reload,
//!   `--dump` of the runtime directory, stop, and the map kept after it.
//!   Then again with a static map (`/etc/openmosix.map` in the container's
//!   own /etc; a file of the test's under the host's systemd): loaded by a
//!   fake setpe on a fake openMosix 2.4 procfs, no discovery, the journal
//!   says why, watchdog, reload (setpe again), stop.
//!   Where no systemd can run it says `SKIPPED: no systemd can run here:
//!   <reason>` and passes.
//!
//! Needs root.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use omdiscd::sys::monotonic_us;

#[path = "common/basics.rs"]
mod basics;
use basics::temp_dir;

const BIN: &str = env!("CARGO_BIN_EXE_omdiscd");

/// A port of this test process's own, so that daemons of other test
/// processes on `lo` do not share it.
fn port() -> u16 {
    40_000 + (std::process::id() % 20_000) as u16
}

// ---- sd_notify without systemd -------------------------------------------

/// The daemon, killed if the test fails before it exits.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the exit, at most `within`.
    fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The messages the daemon sends, with a deadline per wait.
struct Listener {
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl Listener {
    /// The next message, or `None` once `deadline` has passed.
    fn next(&mut self, deadline: Instant) -> Option<String> {
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let left = left.max(Duration::from_millis(1));
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let m = String::from_utf8(buf[..n].to_vec()).expect("UTF-8 message");
                    self.seen.push(m.clone());
                    return Some(m);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => panic!("receiving: {e}"),
            }
        }
    }

    /// Skips WATCHDOG=1 pings until a message for which `want` holds;
    /// panics on any other message or at the deadline.
    fn expect(&mut self, within: Duration, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            match self.next(deadline) {
                Some(m) if want(&m) => return m,
                Some(m) if m == "WATCHDOG=1" => {}
                Some(m) => panic!("expected {what}, got {m:?} (so far: {:?})", self.seen),
                None => panic!("no {what} within {within:?} (so far: {:?})", self.seen),
            }
        }
    }
}

fn is_ready(m: &str) -> bool {
    let mut lines = m.lines();
    lines.next() == Some("READY=1")
        && lines
            .next()
            .is_some_and(|s| s.starts_with("STATUS=announcing, ") && s.ends_with(" in the map"))
        && lines.next().is_none()
}

#[test]
fn the_daemon_speaks_sd_notify() {
    let dir = temp_dir("notify");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut l = Listener {
        sock,
        seen: Vec::new(),
    };
    let log = dir.join("log");
    let child = Command::new(BIN)
        .args(["--nodaemon", "--interface", "lo", "--port"])
        .arg(port().to_string())
        .arg("--map-file")
        .arg(dir.join("m.map"))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut d = Daemon { child, log };

    // Ready, with a status line; nothing but pings before it.
    l.expect(Duration::from_secs(10), "READY=1 with STATUS=", is_ready);

    // Pings at half of WATCHDOG_USEC (100 ms): at least 3 in 2 s.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut pings = 0;
    while pings < 3 {
        match l.next(deadline) {
            Some(m) if m == "WATCHDOG=1" => pings += 1,
            Some(m) if m.starts_with("STATUS=") => {}
            Some(m) => panic!("expected WATCHDOG=1, got {m:?}"),
            None => panic!("{pings} WATCHDOG=1 in 2 s, wanted 3; log:\n{}", d.log()),
        }
    }

    // SIGHUP: reloading (with the monotonic clock), then ready again.
    let before = monotonic_us();
    kill(d.pid(), Signal::SIGHUP).unwrap();
    let m = l.expect(Duration::from_secs(5), "RELOADING=1", |m| {
        m.starts_with("RELOADING=1\n")
    });
    let usec: u64 = m
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {m:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("MONOTONIC_USEC in {m:?}: {e}"));
    let after = monotonic_us();
    assert!(
        (before..=after).contains(&usec),
        "MONOTONIC_USEC={usec} not between {before} and {after}"
    );
    l.expect(Duration::from_secs(5), "READY=1 after the reload", is_ready);

    // SIGTERM: stopping, then exit status 0.
    kill(d.pid(), Signal::SIGTERM).unwrap();
    l.expect(Duration::from_secs(5), "STOPPING=1", |m| m == "STOPPING=1");
    let st = d.wait(Duration::from_secs(10));
    assert!(
        st.is_some_and(|s| s.success()),
        "exit {st:?}; log:\n{}",
        d.log()
    );
    drop(d);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- a real systemd ----------------------------------------------------

/// Where systemctl talks to: the host's systemd, or the container's PID 1.
enum Manager {
    Host,
    /// The host PID of the container's systemd.
    Container(u32),
}

/// A systemd to test under, stopped (container) or cleaned up (host) on drop.
struct Systemd {
    manager: Manager,
    /// The unit under test.
    unit: String,
    /// `omdiscd --dump` with the right map file.
    dump: Vec<String>,
    /// The runtime directory (inside the manager's mount namespace).
    runtime_dir: String,
    /// Where the unit looks for a static map first (inside the manager's
    /// mount namespace; the container's /etc is its own).
    static_map: String,
    /// The unit's `EnvironmentFile=` and the `OMDISCD_OPTS` it holds.
    defaults: String,
    opts: String,
    /// A directory of the test's that the unit can read (fake setpe and procfs).
    scratch: String,
    /// Container: the `container.sh` process (which became `unshare`).
    boot: Option<Child>,
    dir: PathBuf,
}

impl Systemd {
    /// `args` run where the manager is (through nsenter for the container).
    fn command(&self, args: &[&str]) -> Command {
        match self.manager {
            Manager::Host => {
                let mut c = Command::new(args[0]);
                c.args(&args[1..]);
                c
            }
            Manager::Container(pid) => {
                let mut c = Command::new("nsenter");
                c.args(["-t", &pid.to_string(), "-m", "-p", "-n", "-u", "-i", "--"]);
                c.args(args);
                c
            }
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Runs `args`, which must succeed; their standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        if !out.status.success() {
            self.fail(&format!(
                "{args:?}: {}\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Panics with `why` and the unit's journal.
    fn fail(&self, why: &str) -> ! {
        let journal = self.run(&["journalctl", "--no-pager", "-n", "60", "-u", &self.unit]);
        let status = self.run(&["systemctl", "status", "--no-pager", &self.unit]);
        panic!(
            "{why}\n--- systemctl status:\n{}\n--- journal:\n{}{}",
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&journal.stdout),
            String::from_utf8_lossy(&journal.stderr)
        );
    }

    /// `systemctl show -p NAME` of the unit.
    fn prop(&self, name: &str) -> String {
        let out = self.ok(&["systemctl", "show", "--value", "-p", name, &self.unit]);
        out.trim_end().to_string()
    }

    /// Polls `prop` until it is `want`, at most `within`.
    fn await_prop(&self, name: &str, want: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let v = self.prop(name);
            if v == want {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("{} {name}={v}, wanted {want}", self.unit));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn write_file(&self, path: &str, text: &str) {
        self.ok(&[
            "sh",
            "-c",
            "mkdir -p \"$(dirname \"$1\")\" && printf '%s' \"$2\" > \"$1\"",
            "sh",
            path,
            text,
        ]);
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        match self.manager {
            Manager::Host => {
                let _ = self.run(&["systemctl", "stop", &self.unit]);
                let _ = std::fs::remove_file(format!("/run/systemd/system/{}", self.unit));
                let _ = self.run(&["systemctl", "daemon-reload"]);
                let _ = self.run(&["systemctl", "reset-failed", &self.unit]);
                let _ = std::fs::remove_dir_all(&self.runtime_dir);
            }
            Manager::Container(pid) => {
                // SIGRTMIN+4 is poweroff; a container's systemd then exits.
                let _ = Command::new("kill")
                    .args(["-s", "SIGRTMIN+4", &pid.to_string()])
                    .status();
            }
        }
        if let Some(mut boot) = self.boot.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while boot.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if boot.try_wait().ok().flatten().is_none() {
                // Killing a PID namespace's init kills the namespace.
                if let Manager::Container(pid) = self.manager {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
                let _ = boot.kill();
                let _ = boot.wait();
            }
            remove_cgroup(&self.dir);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the cgroup `container.sh` made (named in DIR/cgroup), deepest first.
fn remove_cgroup(dir: &Path) {
    let Ok(cg) = std::fs::read_to_string(dir.join("cgroup")) else {
        return;
    };
    fn rm(p: &Path) {
        if let Ok(entries) = std::fs::read_dir(p) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(p);
    }
    let cg = Path::new(cg.trim());
    if cg
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("omd-systemd-"))
    {
        rm(cg);
    }
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", "command -v \"$1\" >/dev/null", "sh", program])
        .status()
        .is_ok_and(|s| s.success())
}

fn dist_unit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/omdiscd.service")
}

/// The host's systemd, with the dist unit adapted: this binary (copied to
/// /run, which the unit can read, unlike a private /tmp), a port, unit
/// name and runtime directory of this test's own.
fn host_systemd() -> Systemd {
    let name = format!("omd-test-{}", std::process::id());
    let unit = format!("{name}.service");
    let runtime_dir = format!("/run/{name}");
    let bin_dir = format!("/run/{name}-bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let bin = format!("{bin_dir}/omdiscd");
    std::fs::copy(BIN, &bin).unwrap();
    let map = format!("{runtime_dir}/openmosix.map");
    // Never the host's /etc: the static map is looked for here.
    let static_map = format!("{bin_dir}/openmosix.map");
    let defaults = format!("{bin_dir}/default");
    let text = std::fs::read_to_string(dist_unit()).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let line = if line.starts_with("ExecStart=") {
            format!(
                "ExecStart={bin} --nodaemon --static-map {static_map} --interface lo --port {} --map-file {map} $OMDISCD_OPTS",
                port()
            )
        } else if line.starts_with("EnvironmentFile=") {
            format!("EnvironmentFile=-{defaults}")
        } else if line.starts_with("RuntimeDirectory=") {
            format!("RuntimeDirectory={name}")
        } else if line == "ReadWritePaths=/run/omdiscd" {
            format!("ReadWritePaths={runtime_dir}")
        } else if line.starts_with("WatchdogSec=") {
            "WatchdogSec=1s".to_string()
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    std::fs::write(format!("/run/systemd/system/{unit}"), out).unwrap();
    let s = Systemd {
        manager: Manager::Host,
        unit,
        dump: vec![bin, "--dump".into(), "--map-file".into(), map],
        runtime_dir,
        static_map,
        defaults,
        opts: String::new(),
        scratch: format!("{bin_dir}/scratch"),
        boot: None,
        dir: PathBuf::from(bin_dir),
    };
    s.ok(&["systemctl", "daemon-reload"]);
    s
}

/// A private systemd booted by `tests/systemd/container.sh`, with the dist
/// unit as it is and `/etc/default/omdiscd` naming `lo`; `Err` says why
/// none could run.
fn container_systemd() -> Result<Systemd, String> {
    for p in ["unshare", "nsenter", "ip"] {
        if !have(p) {
            return Err(format!("{p} is not installed"));
        }
    }
    if !Path::new("/lib/systemd/systemd").exists() {
        return Err("/lib/systemd/systemd is not installed (apt-get install systemd)".into());
    }
    let dir = temp_dir("container");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/systemd/container.sh");
    let out = dir.join("boot.log");
    let opts = format!("--interface lo --port {}", port());
    let boot = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .arg(BIN)
        .arg(dist_unit())
        .arg(&opts)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&out).unwrap())
        .spawn()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let mut s = Systemd {
        manager: Manager::Container(0),
        unit: "omdiscd.service".into(),
        dump: vec!["/usr/sbin/omdiscd".into(), "--dump".into()],
        runtime_dir: "/run/omdiscd".into(),
        static_map: "/etc/openmosix.map".into(),
        defaults: "/etc/default/omdiscd".into(),
        opts: opts.clone(),
        scratch: "/run/omd-test".into(),
        boot: Some(boot),
        dir: dir.clone(),
    };
    let log = || std::fs::read_to_string(&out).unwrap_or_default();
    // systemd: the child of the `unshare` the script became.
    let unshare = s.boot.as_ref().unwrap().id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        if let Some(st) = s.boot.as_mut().unwrap().try_wait().unwrap() {
            return Err(format!(
                "the container did not boot ({st}): {}",
                log().trim()
            ));
        }
        let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
            .unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "systemd" {
                break pid.parse().unwrap();
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("systemd did not start in 30 s: {}", log().trim()));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    s.manager = Manager::Container(pid);
    // Until its socket is there systemctl fails at once: ask again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut state;
    loop {
        let out = s.run(&["timeout", "60", "systemctl", "is-system-running", "--wait"]);
        state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !state.is_empty() && state != "offline" || Instant::now() >= deadline {
            if state.is_empty() {
                state = String::from_utf8_lossy(&out.stderr).trim().to_string();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if state != "running" && state != "degraded" {
        let console = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
        return Err(format!(
            "the container's systemd is {state:?}, not running: {}{}",
            log().trim(),
            console.trim()
        ));
    }
    // The copy of the host's /etc must not hold a static map (which would
    // win over discovery); static_map_wins() writes one later.
    s.ok(&[
        "rm",
        "-f",
        "/etc/openmosix.map",
        "/etc/mosix.map",
        "/etc/hpc.map",
    ]);
    // A short watchdog, to see the pings keep the service alive.
    s.write_file(
        "/etc/systemd/system/omdiscd.service.d/test.conf",
        "[Service]\nWatchdogSec=1s\n",
    );
    s.ok(&["systemctl", "daemon-reload"]);
    Ok(s)
}

#[test]
fn the_unit_runs_under_systemd() {
    let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    let s = if pid1.trim() == "systemd" && Path::new("/run/systemd/system").is_dir() {
        println!("the host's systemd is PID 1: testing under it");
        host_systemd()
    } else {
        match container_systemd() {
            Ok(s) => {
                println!(
                    "PID 1 is {:?}, not systemd: testing under a private systemd in new namespaces",
                    pid1.trim()
                );
                s
            }
            Err(why) => {
                // Straight to stderr: the harness would swallow eprintln!'s
                // output of a passing test.
                let line = format!("SKIPPED: no systemd can run here: {why}\n");
                let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
                return;
            }
        }
    };
    let unit = s.unit.clone();

    // Start returns once the daemon said READY=1.
    s.ok(&["timeout", "60", "systemctl", "start", &unit]);
    assert_eq!(s.prop("ActiveState"), "active");
    assert_eq!(s.prop("SubState"), "running");
    let status = s.prop("StatusText");
    if !(status.starts_with("announcing, ") && status.ends_with(" in the map")) {
        s.fail(&format!("StatusText={status:?}"));
    }
    assert_eq!(s.prop("WatchdogUSec"), "1s");
    let main_pid = s.prop("MainPID");
    assert_ne!(main_pid, "0");
    // No static map: discovery, and the journal says so.
    let journal = s.ok(&["journalctl", "--no-pager", "-u", &unit]);
    if !journal.contains("no static map (") || !journal.contains("): starting discovery") {
        s.fail("the journal does not say why discovery started");
    }

    // The pings keep a 1 s watchdog content: its timestamp moves, the
    // process stays the same.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stamps = vec![s.prop("WatchdogTimestampMonotonic")];
    while stamps.len() < 4 {
        if Instant::now() >= deadline {
            s.fail(&format!("watchdog timestamps {stamps:?} in 5 s"));
        }
        let t = s.prop("WatchdogTimestampMonotonic");
        if stamps.last() != Some(&t) {
            stamps.push(t);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(s.prop("MainPID"), main_pid, "restarted");
    assert_eq!(s.prop("NRestarts"), "0");
    assert_eq!(s.prop("ActiveState"), "active");

    // Reload: SIGHUP, RELOADING=1, READY=1; the same process.
    s.ok(&["timeout", "30", "systemctl", "reload", &unit]);
    s.await_prop("ActiveState", "active", Duration::from_secs(10));
    assert_eq!(s.prop("MainPID"), main_pid);
    let journal = s.ok(&["journalctl", "--no-pager", "-u", &unit]);
    if !journal.contains("SIGHUP") {
        s.fail("no SIGHUP line in the journal after the reload");
    }

    // The map in the runtime directory, as `--dump` shows it.
    let dump: Vec<&str> = s.dump.iter().map(String::as_str).collect();
    let shown = s.ok(&dump);
    if !shown.contains("127.0.0.1") {
        s.fail(&format!("--dump shows:\n{shown}"));
    }

    // Stop: STOPPING=1, exit status 0; the map stays (RuntimeDirectoryPreserve).
    s.ok(&["timeout", "30", "systemctl", "stop", &unit]);
    assert_eq!(s.prop("ActiveState"), "inactive");
    assert_eq!(s.prop("Result"), "success");
    assert_eq!(s.prop("ExecMainStatus"), "0");
    let map = format!("{}/openmosix.map", s.runtime_dir);
    s.ok(&["test", "-f", &map]);

    static_map_wins(&s);
}

/// A hand-written map: this host (127.0.0.1) is node 1.
const STATIC_MAP: &str =
    "# the lab's map\n1 127.0.0.1 1\n10\t10.0.0.10\t3  # rack\n10 192.168.1.10 ALIAS\n";

/// The unit again, with a static map present: loaded with setpe (a fake,
/// on a fake openMosix 2.4 procfs), no discovery, and the journal says why.
fn static_map_wins(s: &Systemd) {
    let unit = &s.unit;
    let scratch = &s.scratch;
    s.write_file(&s.static_map, STATIC_MAP);
    s.write_file(&format!("{scratch}/proc/hpc/admin/config"), "");
    s.write_file(&format!("{scratch}/proc/hpc/admin/mospe"), "0\n");
    s.ok(&["mkdir", "-p", &format!("{scratch}/proc/self")]);
    // setpe writes where the unit may write: its runtime directory.
    let calls = format!("{}/setpe.calls", s.runtime_dir);
    let setpe = format!("{scratch}/setpe");
    s.write_file(&setpe, &format!("#!/bin/sh\necho \"$@\" >> {calls}\n"));
    s.ok(&["chmod", "755", &setpe]);
    s.write_file(
        &s.defaults,
        &format!(
            "OMDISCD_OPTS=\"{} --setpe {setpe} --proc-root {scratch}/proc\"\n",
            s.opts
        ),
    );

    s.ok(&["timeout", "60", "systemctl", "start", unit]);
    assert_eq!(s.prop("ActiveState"), "active");
    let status = s.prop("StatusText");
    if status != "static map loaded with setpe, 4 nodes; discovery not started" {
        s.fail(&format!("StatusText={status:?}"));
    }
    let main_pid = s.prop("MainPID");
    // This run's lines only.
    let journal = || {
        s.ok(&[
            "journalctl",
            "--no-pager",
            "-u",
            unit,
            &format!("_PID={main_pid}"),
        ])
    };
    let why = format!(
        "static map {} found: loading it with setpe, not starting discovery",
        s.static_map
    );
    let lines = journal();
    if !lines.contains(&why) || lines.contains("starting: address") {
        s.fail(&format!(
            "the journal of PID {main_pid} does not say why:\n{lines}"
        ));
    }
    // setpe ran before READY=1, with the hand-written file.
    let want = format!("-w -f {}\n", s.static_map);
    let got = s.ok(&["cat", &calls]);
    if got != want {
        s.fail(&format!("setpe got {got:?}, wanted {want:?}"));
    }
    let dump: Vec<&str> = s.dump.iter().map(String::as_str).collect();
    let shown = s.ok(&dump);
    if !shown.starts_with("My Node-Id: 0x0001\n")
        || !shown.ends_with("0x0001       127.0.0.1        1\n0x000a       10.0.0.10        3\n")
    {
        s.fail(&format!("--dump shows:\n{shown}"));
    }
    // The watchdog is kept content here too.
    let first = s.prop("WatchdogTimestampMonotonic");
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.prop("WatchdogTimestampMonotonic") == first {
        if Instant::now() >= deadline {
            s.fail("no WATCHDOG=1 from the static map's process in 5 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Reload: read again and loaded again, the same process.
    s.ok(&["timeout", "30", "systemctl", "reload", unit]);
    s.await_prop("ActiveState", "active", Duration::from_secs(10));
    assert_eq!(s.prop("MainPID"), main_pid);
    let got = s.ok(&["cat", &calls]);
    if got != format!("{want}{want}") {
        s.fail(&format!("after the reload setpe got {got:?}"));
    }
    s.ok(&["timeout", "30", "systemctl", "stop", unit]);
    assert_eq!(s.prop("Result"), "success");
    assert_eq!(s.prop("ExecMainStatus"), "0");
}
