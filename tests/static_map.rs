//! `--static-map`: a hand-written map wins over discovery, as in openMosix.
//!
//! - The real binary on `lo` with a fake openMosix 2.4 procfs
//!   (`--proc-root`) and a setpe script (`--setpe`): the first map of the
//!   list that exists is loaded with `setpe -w -f FILE`, published to the
//!   map file and dumped like a discovered map, reloaded on SIGHUP; no
//!   discovery starts, and the log says why. Without one, discovery starts
//!   as before. A bad map or a failing setpe stops start-up.
//! - The dracut and initramfs-tools scripts of `dist/initramfs`, run by
//!   `tests/static_map/initramfs.sh` in a root of their own (new mount, PID
//!   and network namespaces over a tmpfs; never the host's /etc, /dev or
//!   /run), with and without `/etc/openmosix.map`.
//! - The shipped unit and scripts look for the rc script's three files.
//!
//! Needs root (the namespaces). The unit under a real systemd: `tests/systemd.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[path = "common/basics.rs"]
mod basics;
use basics::{openmosix_24, script, temp_dir};

const BIN: &str = env!("CARGO_BIN_EXE_omdiscd");

/// A port of this test process's own.
fn port() -> u16 {
    40_000 + (std::process::id() % 20_000) as u16
}

/// Polls `f` until it holds; panics with `what` and `context()` after `within`.
fn poll(within: Duration, what: &str, context: impl Fn() -> String, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        if Instant::now() >= deadline {
            panic!("no {what} within {within:?}:\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The daemon in the foreground, killed if the test fails first.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, args: &[&str]) -> Daemon {
        let log = dir.join("log");
        let child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, s: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), s).unwrap();
    }

    fn await_log(&self, within: Duration, text: &str) {
        poll(within, text, || self.log(), || self.log().contains(text));
    }

    fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
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

fn dump(map_file: &Path, format: &str) -> Output {
    Command::new(BIN)
        .args(["--dump", "--format", format, "--map-file"])
        .arg(map_file)
        .output()
        .unwrap()
}

/// A map as an openMosix site wrote it: comments, blank lines, tabs, a
/// range, an alias, a host name; this host (127.0.0.1) is node 1.
const HAND_WRITTEN: &str = "# the lab's openMosix map
# ID  IP-OR-HOST      COUNT

1\t127.0.0.1\t1
10    10.0.0.10     3   # the rack
20    node20.lab    1
10    192.168.1.10  ALIAS
";

const HAND_WRITTEN_SHOWMAP: &str = "My Node-Id: 0x0001

Base Node-Id Address          Count
------------ ---------------- -----
0x0001       127.0.0.1        1
0x000a       10.0.0.10        3
0x0014       node20.lab       1
";

#[test]
fn a_static_map_is_loaded_with_setpe_and_published_instead_of_discovering() {
    let dir = temp_dir("wins");
    let root = dir.join("proc");
    openmosix_24(&root);
    let setpe = dir.join("setpe");
    let calls = dir.join("setpe.calls");
    script(&setpe, &format!("echo \"$@\" >> '{}'\n", calls.display()));
    let absent = dir.join("openmosix.map");
    let map = dir.join("mosix.map");
    fs::write(&map, HAND_WRITTEN).unwrap();
    let list = format!("{},{}", absent.display(), map.display());
    let map_file = dir.join("run/openmosix.map");
    let p = port().to_string();
    let mut d = Daemon::start(
        &dir,
        &[
            "-n",
            "-i",
            "lo",
            "--port",
            &p,
            "--static-map",
            &list,
            "--map-file",
            map_file.to_str().unwrap(),
            "--proc-root",
            root.to_str().unwrap(),
            "--setpe",
            setpe.to_str().unwrap(),
        ],
    );
    let ten = Duration::from_secs(10);
    d.await_log(ten, "setpe loaded the static map");
    let log = d.log();
    let why = format!(
        "static map {} found: loading it with setpe, not starting discovery",
        map.display()
    );
    assert!(log.contains(&why), "{log}");
    assert!(log.contains("this node is #1 (0x0001, address 127.0.0.1)"));
    // No discovery: no start-up line of it, nothing announced.
    assert!(!log.contains("starting: address") && !log.contains("announcing on"));
    // setpe got the hand-written file, as from the rc script; mospe is
    // setpe's business then.
    let want = format!("-w -f {}\n", map.display());
    assert_eq!(fs::read_to_string(&calls).unwrap(), want);
    assert_eq!(
        fs::read_to_string(root.join("hpc/admin/mospe")).unwrap(),
        "0\n"
    );

    // --dump prints it as it prints ours (exit 0: its writer runs).
    let out = dump(&map_file, "showmap");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), HAND_WRITTEN_SHOWMAP);
    let out = dump(&map_file, "hosts");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "127.0.0.1\n10.0.0.10\n10.0.0.11\n10.0.0.12\nnode20.lab\n"
    );
    let text = fs::read_to_string(&map_file).unwrap();
    assert!(
        text.starts_with(&format!(
            "# openMosix map: the static map {},",
            map.display()
        )) && text.ends_with("10 192.168.1.10 ALIAS\n"),
        "{text}"
    );

    // SIGHUP: read again and loaded again.
    fs::write(&map, format!("{HAND_WRITTEN}30 10.0.0.30 1\n")).unwrap();
    d.signal(Signal::SIGHUP);
    let context = || d.log();
    poll(ten, "a second setpe", context, || {
        fs::read_to_string(&calls).is_ok_and(|c| c.lines().count() == 2)
    });
    poll(ten, "the new node in --dump", context, || {
        String::from_utf8_lossy(&dump(&map_file, "showmap").stdout)
            .ends_with("0x001e       10.0.0.30        1\n")
    });
    // A file broken meanwhile: said, and the map loaded before stays.
    fs::write(&map, "1 127.0.0.1 1\n2 10.0.0.2\n").unwrap();
    d.signal(Signal::SIGHUP);
    let broken = format!(
        "static map {}: line 2: expected FIRST-ID ADDRESS COUNT (or ID ADDRESS ALIAS); keeping the map loaded before",
        map.display()
    );
    d.await_log(ten, &broken);
    assert_eq!(fs::read_to_string(&calls).unwrap().lines().count(), 2);
    assert!(fs::read_to_string(&map_file)
        .unwrap()
        .contains("30 10.0.0.30 1"));

    // SIGUSR1: a summary, and the process runs on.
    d.signal(Signal::SIGUSR1);
    d.await_log(ten, "6 nodes; setpe started 2 times, failed 0, timed out 0");
    assert!(d.child.try_wait().unwrap().is_none(), "{}", d.log());

    // SIGTERM: exit 0; the map file stays.
    d.signal(Signal::SIGTERM);
    let st = d.wait(ten);
    assert!(st.success(), "{st:?}\n{}", d.log());
    assert!(d
        .log()
        .contains("signal 15: stopping (the static map stays loaded)"));
    drop(d);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_openmosix_24_a_static_map_is_published_to_the_map_file_only() {
    let dir = temp_dir("fileonly");
    let root = dir.join("proc");
    fs::create_dir_all(root.join("self")).unwrap();
    let setpe = dir.join("setpe");
    let calls = dir.join("setpe.calls");
    script(&setpe, &format!("echo \"$@\" >> '{}'\n", calls.display()));
    let map = dir.join("openmosix.map");
    fs::write(&map, HAND_WRITTEN).unwrap();
    let map_file = dir.join("run/openmosix.map");
    let mut d = Daemon::start(
        &dir,
        &[
            "-n",
            "-i",
            "lo",
            "--static-map",
            map.to_str().unwrap(),
            "--map-file",
            map_file.to_str().unwrap(),
            "--proc-root",
            root.to_str().unwrap(),
            "--setpe",
            setpe.to_str().unwrap(),
        ],
    );
    let why = format!(
        "static map {} found: publishing it to {}, not starting discovery (5 nodes; no openMosix kernel (map file only), so no setpe)",
        map.display(),
        map_file.display()
    );
    d.await_log(Duration::from_secs(10), &why);
    let context = || d.log();
    poll(Duration::from_secs(10), "the map file", context, || {
        String::from_utf8_lossy(&dump(&map_file, "showmap").stdout) == HAND_WRITTEN_SHOWMAP
    });
    assert!(!calls.exists(), "setpe ran without openMosix 2.4");
    d.signal(Signal::SIGTERM);
    assert!(d.wait(Duration::from_secs(10)).success());
    drop(d);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_a_static_map_discovery_starts_and_says_why() {
    let dir = temp_dir("none");
    let list = format!(
        "{},{}",
        dir.join("openmosix.map").display(),
        dir.join("hpc.map").display()
    );
    let map_file = dir.join("run/openmosix.map");
    let p = port().wrapping_add(1).to_string();
    let mut d = Daemon::start(
        &dir,
        &[
            "-n",
            "-i",
            "lo",
            "--port",
            &p,
            "--static-map",
            &list,
            "--map-file",
            map_file.to_str().unwrap(),
        ],
    );
    d.await_log(Duration::from_secs(10), "openMosix configuration changed");
    let log = d.log();
    let why = format!(
        "no static map ({}): starting discovery",
        list.replace(',', ", ")
    );
    assert!(log.contains(&why), "{log}");
    assert!(log.contains("starting: address 127.0.0.1"), "{log}");
    d.signal(Signal::SIGTERM);
    assert!(d.wait(Duration::from_secs(10)).success());
    drop(d);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_static_map_or_a_failing_setpe_stops_start_up() {
    let dir = temp_dir("bad");
    let root = dir.join("proc");
    openmosix_24(&root);
    let setpe = dir.join("setpe");
    let calls = dir.join("setpe.calls");
    script(
        &setpe,
        &format!(
            "echo \"$@\" >> '{}'\necho 'setpe: bad map' >&2\nexit 3\n",
            calls.display()
        ),
    );
    let map_file = dir.join("run/openmosix.map");
    let run = |map: &Path| {
        Command::new(BIN)
            .args(["-n", "-i", "lo", "--static-map"])
            .arg(map)
            .arg("--map-file")
            .arg(&map_file)
            .arg("--proc-root")
            .arg(&root)
            .arg("--setpe")
            .arg(&setpe)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let map = dir.join("openmosix.map");
    let cases = [
        (
            "# ok\n1 127.0.0.1 1\n0 10.0.0.1 1\n",
            "line 3: node id must be a number from 1 to 65535",
        ),
        (
            "1 127.0.0.1 1\n2 bad_host! 1\n",
            "line 2: not an IPv4 address or host name",
        ),
        ("# only comments\n\n", "lists no node"),
    ];
    for (text, why) in cases {
        fs::write(&map, text).unwrap();
        let out = run(&map);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text:?}: {out:?}");
        let want = format!("omdiscd: static map {}: {why}\n", map.display());
        assert!(err.ends_with(&want), "{text:?}: {err}");
    }
    assert!(!calls.exists(), "setpe ran for a bad map");
    assert!(!map_file.exists(), "a bad map was published");
    // Not a regular file.
    let out = run(&dir);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
    // A good map that setpe refuses: its output logged, exit 1.
    fs::write(&map, "1 127.0.0.1 1\n").unwrap();
    let out = run(&map);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("setpe: setpe: bad map")
            && all.contains(&format!(
                "omdiscd: static map {}: setpe -w failed with status 3",
                map.display()
            )),
        "{all}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_shipped_unit_and_initramfs_scripts_look_for_the_rc_scripts_maps() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let list = omdiscd::config::RC_STATIC_MAPS;
    for f in [
        "dist/omdiscd.service",
        "dist/initramfs/busybox/init",
        "dist/initramfs/dracut/90omdiscd/omdiscd-start.sh",
        "dist/initramfs/initramfs-tools/scripts/init-premount/omdiscd",
    ] {
        let text = fs::read_to_string(repo.join(f)).unwrap();
        assert!(text.contains(&format!("--static-map {list}")), "{f}");
    }
    // What the images get: the files, in the same order.
    let files = list.replace(',', " ");
    for f in [
        "dist/initramfs/dracut/90omdiscd/module-setup.sh",
        "dist/initramfs/initramfs-tools/hooks/omdiscd",
    ] {
        let text = fs::read_to_string(repo.join(f)).unwrap();
        assert!(text.contains(&format!("for f in {files}; do")), "{f}");
    }
}

// ---- the initramfs scripts -------------------------------------------------

/// What one run of `tests/static_map/initramfs.sh` left in DIR/out.
struct Boot {
    out: PathBuf,
    dir: PathBuf,
}

impl Boot {
    fn run(kind: &str, static_map: bool, tag: &str) -> Boot {
        let dir = temp_dir(tag);
        fs::write(dir.join("openmosix.map"), HAND_WRITTEN).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cmdline = format!(
            "ro quiet omdiscd.interface=lo omdiscd.port={} omdiscd.setpe=/opt/bin/setpe omdiscd.interval=0.2",
            port().wrapping_add(2)
        );
        let out = Command::new("sh")
            .arg(repo.join("tests/static_map/initramfs.sh"))
            .arg(&dir)
            .arg(BIN)
            .arg(repo)
            .arg(kind)
            .arg(if static_map { "1" } else { "0" })
            .arg(&cmdline)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let b = Boot {
            out: dir.join("out"),
            dir,
        };
        assert!(
            out.status.success() && b.read("stopped") == "stopped\n",
            "{kind}: {out:?}\n--- scripts:\n{}\n--- omdiscd:\n{}",
            b.read("script"),
            b.read("kmsg")
        );
        b
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.out.join(name)).unwrap_or_default()
    }
}

impl Drop for Boot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn initramfs_scripts(kind: &str) {
    let list = omdiscd::config::RC_STATIC_MAPS;
    // With /etc/openmosix.map in the image: loaded, no discovery.
    let b = Boot::run(kind, true, &format!("{kind}-static"));
    let kmsg = b.read("kmsg");
    assert!(
        kmsg.contains(
            "static map /etc/openmosix.map found: loading it with setpe, not starting discovery"
        ) && !kmsg.contains("starting: address"),
        "{kmsg}"
    );
    assert_eq!(b.read("setpe"), "-w -f /etc/openmosix.map\n");
    assert_eq!(b.read("dump"), HAND_WRITTEN_SHOWMAP);
    assert!(b.read("map").contains("the static map /etc/openmosix.map"));
    assert!(kmsg.contains("signal 15: stopping"), "{kmsg}");
    let started = b.read("script");
    assert!(
        started.contains(&format!("--static-map {list}")),
        "{started}"
    );
    drop(b);
    // Without: discovery, as before; setpe loads the map omdiscd wrote.
    let b = Boot::run(kind, false, &format!("{kind}-discovery"));
    let kmsg = b.read("kmsg");
    assert!(
        kmsg.contains(&format!(
            "no static map ({}): starting discovery",
            list.replace(',', ", ")
        )) && kmsg.contains("starting: address 127.0.0.1"),
        "{kmsg}"
    );
    assert!(b.read("dump").contains("0x0001       127.0.0.1        1\n"));
    assert!(b
        .read("setpe")
        .starts_with("-w -f /run/omdiscd/openmosix.map\n"));
    assert!(kmsg.contains("signal 15: leaving the cluster"), "{kmsg}");
}

#[test]
fn the_dracut_hooks_load_a_static_map_instead_of_discovering() {
    initramfs_scripts("dracut");
}

#[test]
fn the_initramfs_tools_scripts_load_a_static_map_instead_of_discovering() {
    initramfs_scripts("initramfs-tools");
}
