//! Network-namespace lab for omdiscd integration tests.
//!
//! Every test builds a [`Lab`]: a set of network namespaces wired together
//! with veth pairs and Linux bridges. Nothing is created in the root
//! namespace: bridges live in a per-lab "switch" namespace, each node is its
//! own namespace, and veth pairs are created directly between the switch and
//! the node. Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking range).
//! Dropping the lab (also while unwinding from a panic) kills its processes,
//! deletes its namespaces and removes its temporary directory.
//!
//! ```ignore
//! mod common;
//! use common::{Lab, poll_until};
//!
//! let lab = Lab::new();
//! let br = lab.bridge();
//! let a = lab.node("a");
//! let b = lab.node("b");
//! lab.link(a, br, Lab::addr(br, 1), 24); // "eth0", 198.18.10.1/24
//! lab.link(b, br, Lab::addr(br, 2), 24);
//! let d = lab.spawn(a, Path::new(env!("CARGO_BIN_EXE_omdiscd")), &["-i", "eth0"]);
//! poll_until(Duration::from_secs(5), "daemon says hello", || d.stderr_text().contains("hello"));
//! ```
//!
//! Needs root and iproute2.
//!
//! Names: every namespace and temporary directory a lab makes is named
//! `omd<run>-<proc>-<n36>` (the directory), `...sw` (the switch namespace) and
//! `...n<i>` (nodes). `<run>` is `$OMD_TEST_RUN` when set (scripts/test sets it,
//! and when it ends removes whatever `omd<run>-*` is left, e.g. by a test
//! process that was killed), else random; `<proc>` is random per test process.
//! Cleanup only ever touches names this process made: each lab removes its own
//! on drop, and at exit the process removes those of labs that were never
//! dropped. Names of other runs are left alone (they may be in use by a run in
//! another PID namespace that shares `/run/netns`); see [`note_foreign_names`].
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The default port, scratch directories, key files.
pub mod basics;
/// Real omdiscd daemons in a lab: start, map files, counters, waits.
pub mod daemons;

pub use basics::*;

/// Every lab name starts with this.
pub const NAME_PREFIX: &str = "omd";
/// Names the test run (lower-case letters and digits, 1 to 16); set by
/// scripts/test, which removes this run's leftovers when it ends.
pub const RUN_ENV: &str = "OMD_TEST_RUN";
/// How long [`Lab::link`] waits for a link to come up.
pub const LINK_UP_TIMEOUT: Duration = Duration::from_secs(10);
/// Polling period of [`poll_until`] and friends.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);
static FIRST_LAB: Once = Once::new();
/// Namespaces and directories made by labs of this process and not yet
/// removed: what [`cleanup_owned`] removes at exit.
static OWNED: Mutex<Owned> = Mutex::new(Owned {
    namespaces: Vec::new(),
    dirs: Vec::new(),
});

struct Owned {
    namespaces: Vec<String>,
    dirs: Vec<PathBuf>,
}

fn owned() -> MutexGuard<'static, Owned> {
    OWNED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A node (network namespace) of a [`Lab`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeId(pub usize);

/// A bridge (in the lab's switch namespace) of a [`Lab`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BridgeId(pub usize);

/// What [`Lab::two_networks`] made.
pub struct TwoNetworks {
    pub a: BridgeId,
    pub b: BridgeId,
    /// Each gateway with its addresses on A and on B.
    pub gateways: Vec<(NodeId, Ipv4Addr, Ipv4Addr)>,
    /// PA and its address on A.
    pub pa: (NodeId, Ipv4Addr),
    /// PB and its address on B.
    pub pb: (NodeId, Ipv4Addr),
}

/// One veth link of a node, as made by [`Lab::link`].
#[derive(Clone, Debug)]
pub struct LinkInfo {
    /// Interface name inside the node (`eth0`, `eth1`, ...).
    pub ifname: String,
    /// Name of the peer end in the switch namespace (a bridge port).
    pub port: String,
    pub bridge: BridgeId,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

struct NodeState {
    ns: String,
    hint: String,
    links: Vec<LinkInfo>,
}

#[derive(Default)]
struct State {
    nodes: Vec<NodeState>,
    bridges: Vec<String>,
    /// Every namespace this lab created (or tried to), in creation order.
    namespaces: Vec<String>,
    procs: Vec<Arc<ProcShared>>,
    spawned: usize,
}

/// A set of network namespaces wired with bridges; see the module docs.
pub struct Lab {
    prefix: String,
    dir: PathBuf,
    switch_ns: String,
    state: Mutex<State>,
}

impl Lab {
    /// A new, empty lab: a unique prefix, a temporary directory and the
    /// switch namespace. The first lab of a process arranges for
    /// [`cleanup_owned`] to run at exit, and runs [`note_foreign_names`].
    pub fn new() -> Lab {
        assert!(
            nix::unistd::geteuid().is_root(),
            "network-namespace lab tests must run as root"
        );
        FIRST_LAB.call_once(|| {
            // SAFETY: registers a plain extern "C" function that never unwinds.
            let rc = unsafe { libc::atexit(cleanup_owned_at_exit) };
            assert_eq!(rc, 0, "atexit failed");
            note_foreign_names();
        });
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{}{}", process_prefix(), base36(n));
        let dir = std::env::temp_dir().join(&prefix);
        owned().dirs.push(dir.clone());
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create lab dir {}: {e}", dir.display()));
        let lab = Lab {
            switch_ns: format!("{prefix}sw"),
            prefix,
            dir,
            state: Mutex::new(State::default()),
        };
        // From here on Drop cleans up whatever was made.
        lab.add_netns(&lab.switch_ns);
        lab
    }

    /// The unique name prefix of this lab (`omd<run>-<proc>-<n36>`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lab's temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Name of the switch namespace that holds the bridges.
    pub fn switch_ns(&self) -> &str {
        &self.switch_ns
    }

    /// Names of all namespaces this lab created.
    pub fn namespaces(&self) -> Vec<String> {
        self.lock().namespaces.clone()
    }

    /// The namespace name of `node`.
    pub fn ns(&self, node: NodeId) -> String {
        self.lock().nodes[node.0].ns.clone()
    }

    /// The links of `node`, in the order they were made.
    pub fn links(&self, node: NodeId) -> Vec<LinkInfo> {
        self.lock().nodes[node.0].links.clone()
    }

    /// Name of `bridge` inside the switch namespace.
    pub fn bridge_name(&self, bridge: BridgeId) -> String {
        self.lock().bridges[bridge.0].clone()
    }

    /// A lab with one bridge and `n` nodes at 198.18.10.1..=n, eth0 each.
    pub fn flat(n: u8) -> (Lab, BridgeId, Vec<(NodeId, Ipv4Addr)>) {
        let lab = Lab::new();
        let br = lab.bridge();
        let nodes = (1..=n)
            .map(|i| {
                let node = lab.node(&format!("n{i}"));
                let a = Lab::addr(br, i);
                lab.link(node, br, a, 24);
                (node, a)
            })
            .collect();
        (lab, br, nodes)
    }

    /// Two networks A and B joined by `gateways` (nodes with eth0 on A and
    /// eth1 on B, at host 1, 2, ... of each), with PA only on A and PB only
    /// on B (eth0, at the host number after the gateways'): the lab of the
    /// relay tests. Nodes are made in that order, gateways named as given.
    pub fn two_networks(&self, gateways: &[&str]) -> TwoNetworks {
        let (a, b) = (self.bridge(), self.bridge());
        let gws: Vec<NodeId> = gateways.iter().map(|name| self.node(name)).collect();
        let (pa, pb) = (self.node("pa"), self.node("pb"));
        let gateways = (1..)
            .zip(gws)
            .map(|(host, g)| {
                let (on_a, on_b) = (Lab::addr(a, host), Lab::addr(b, host));
                self.link(g, a, on_a, 24);
                self.link(g, b, on_b, 24);
                (g, on_a, on_b)
            })
            .collect::<Vec<_>>();
        let host = gateways.len() as u8 + 1;
        let (apa, apb) = (Lab::addr(a, host), Lab::addr(b, host));
        self.link(pa, a, apa, 24);
        self.link(pb, b, apb, 24);
        TwoNetworks {
            a,
            b,
            gateways,
            pa: (pa, apa),
            pb: (pb, apb),
        }
    }

    /// Conventional address `host` on bridge `b`: 198.18.(10+b).host.
    pub fn addr(b: BridgeId, host: u8) -> Ipv4Addr {
        let third = u8::try_from(10 + b.0).expect("too many bridges for the address plan");
        Ipv4Addr::new(198, 18, third, host)
    }

    /// A new bridge in the switch namespace: up, multicast snooping off,
    /// STP off, forward delay 0.
    pub fn bridge(&self) -> BridgeId {
        let (id, name) = {
            let mut st = self.lock();
            let id = st.bridges.len();
            let name = format!("br{id}");
            st.bridges.push(name.clone());
            (BridgeId(id), name)
        };
        let sw = &self.switch_ns;
        #[rustfmt::skip]
        ip_ok(&["-n", sw, "link", "add", &name, "type", "bridge",
                "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"]);
        ip_ok(&["-n", sw, "link", "set", &name, "up"]);
        id
    }

    /// A new node: a namespace `<prefix>n<i>` with only `lo`, up.
    /// `name_hint` is used for log file names.
    pub fn node(&self, name_hint: &str) -> NodeId {
        let (id, ns) = {
            let mut st = self.lock();
            let id = st.nodes.len();
            let ns = format!("{}n{id}", self.prefix);
            st.nodes.push(NodeState {
                ns: ns.clone(),
                hint: sanitize(name_hint),
                links: Vec::new(),
            });
            (NodeId(id), ns)
        };
        self.add_netns(&ns);
        ip_ok(&["-n", &ns, "link", "set", "lo", "up"]);
        id
    }

    /// Connects `node` to `bridge` with a veth pair, configures
    /// `addr/prefix_len` on the node end, brings both ends up and waits
    /// until the node end is operational and the bridge port forwards.
    /// Returns the node-side interface name (`eth0`, `eth1`, ...).
    pub fn link(&self, node: NodeId, bridge: BridgeId, addr: Ipv4Addr, prefix_len: u8) -> String {
        let (ns, br, ifname, port) = {
            let st = self.lock();
            let n = &st.nodes[node.0];
            let k = n.links.len();
            (
                n.ns.clone(),
                st.bridges[bridge.0].clone(),
                format!("eth{k}"),
                format!("n{}e{k}", node.0),
            )
        };
        let sw = &self.switch_ns;
        // Created from inside the switch namespace, the node end directly in
        // the node namespace: nothing ever appears in the root namespace.
        #[rustfmt::skip]
        ip_ok(&["-n", sw, "link", "add", &port, "type", "veth",
                "peer", "name", &ifname, "netns", &ns]);
        ip_ok(&["-n", sw, "link", "set", &port, "master", &br, "up"]);
        let cidr = format!("{addr}/{prefix_len}");
        ip_ok(&["-n", &ns, "addr", "add", &cidr, "dev", &ifname]);
        ip_ok(&["-n", &ns, "link", "set", &ifname, "up"]);
        self.lock().nodes[node.0].links.push(LinkInfo {
            ifname: ifname.clone(),
            port: port.clone(),
            bridge,
            addr,
            prefix_len,
        });
        poll_until(
            LINK_UP_TIMEOUT,
            &format!("{ns}/{ifname} operational and {sw}/{port} forwarding"),
            || {
                let node_side = ip_ok(&["-n", &ns, "-o", "link", "show", "dev", &ifname]);
                let sw_side = ip_ok(&["-n", sw, "-d", "-o", "link", "show", "dev", &port]);
                node_side.contains("state UP") && sw_side.contains("state forwarding")
            },
        );
        ifname
    }

    /// Sets the administrative state of a node interface (simulates
    /// unplugging when `up` is false).
    pub fn set_link(&self, node: NodeId, ifname: &str, up: bool) {
        let state = if up { "up" } else { "down" };
        self.ip(node, &["link", "set", ifname, state]);
    }

    /// Sets the switch-side port of `node`'s `ifname` up or down (the node
    /// end loses carrier but stays administratively up).
    pub fn set_port(&self, node: NodeId, ifname: &str, up: bool) {
        let port = self
            .links(node)
            .into_iter()
            .find(|l| l.ifname == ifname)
            .unwrap_or_else(|| panic!("node {node:?} has no link {ifname}"))
            .port;
        let state = if up { "up" } else { "down" };
        ip_ok(&["-n", &self.switch_ns, "link", "set", &port, state]);
    }

    /// `ip -n NS route replace default via VIA`.
    pub fn default_route(&self, node: NodeId, via: Ipv4Addr) {
        self.ip(
            node,
            &["route", "replace", "default", "via", &via.to_string()],
        );
    }

    /// `ip -n NS route del default` (panics if there is none).
    pub fn del_default_route(&self, node: NodeId) {
        self.ip(node, &["route", "del", "default"]);
    }

    /// Runs `ip netns exec NS args...` and returns its output, whatever the
    /// exit status.
    pub fn exec(&self, node: NodeId, args: &[&str]) -> Output {
        let ns = self.ns(node);
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec {ns} {args:?}: {e}"))
    }

    /// Runs `ip -n NS args...`, panics (with stderr) unless it succeeds,
    /// returns its stdout.
    pub fn ip(&self, node: NodeId, args: &[&str]) -> String {
        let ns = self.ns(node);
        let mut full = vec!["-n", ns.as_str()];
        full.extend_from_slice(args);
        ip_ok(&full)
    }

    /// Writes a sysctl (e.g. `net.ipv4.ip_forward`) inside `node`.
    pub fn sysctl(&self, node: NodeId, key: &str, value: &str) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.in_netns(node, || {
            fs::write(&path, value).unwrap_or_else(|e| panic!("cannot write {path}: {e}"))
        });
    }

    /// Interface index of `ifname` inside `node`.
    pub fn ifindex(&self, node: NodeId, ifname: &str) -> u32 {
        self.in_netns(node, || ifindex(ifname))
    }

    /// Runs `f` on a fresh thread that has first entered `node`'s network
    /// namespace; sockets made by `f` belong to that namespace (and keep
    /// belonging to it wherever they are used later). Panics in `f` are
    /// propagated.
    pub fn in_netns<T, F>(&self, node: NodeId, f: F) -> T
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        run_in_netns(&self.ns(node), f)
    }

    /// Starts `program args...` inside `node` (`ip netns exec NS program
    /// args...`; ip execs the program, so [`Proc::pid`] is the program's
    /// pid). Stdout and stderr are appended to files in the lab dir. Returns
    /// once the program itself is running (ip has exec'd it) or has exited.
    pub fn spawn(&self, node: NodeId, program: &Path, args: &[&str]) -> Proc {
        let (ns, hint, seq) = {
            let mut st = self.lock();
            st.spawned += 1;
            let n = &st.nodes[node.0];
            (n.ns.clone(), n.hint.clone(), st.spawned)
        };
        let base = program
            .file_name()
            .map(|s| sanitize(&s.to_string_lossy()))
            .unwrap_or_default();
        let stem = format!("{hint}-{seq}-{base}");
        let stdout = self.dir.join(format!("{stem}.stdout"));
        let stderr = self.dir.join(format!("{stem}.stderr"));
        let open = |p: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", p.display()))
        };
        let child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(open(&stdout))
            .stderr(open(&stderr))
            // Own process group, so Drop can also kill what it forks.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {} in {ns}: {e}", program.display()));
        let shared = Arc::new(ProcShared {
            pid: child.id(),
            name: stem,
            child: Mutex::new((child, None)),
            stdout,
            stderr,
        });
        self.lock().procs.push(Arc::clone(&shared));
        let proc = Proc { shared };
        proc.wait_exec(program);
        proc
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add_netns(&self, name: &str) {
        // Recorded first: if `ip netns add` half-fails Drop still tries.
        self.lock().namespaces.push(name.to_owned());
        owned().namespaces.push(name.to_owned());
        ip_ok(&["netns", "add", name]);
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let st = std::mem::take(&mut *self.lock());
        for p in &st.procs {
            p.kill_and_reap();
        }
        for ns in st.namespaces.iter().rev() {
            kill_netns_pids(ns);
            delete_netns(ns);
        }
        let _ = fs::remove_dir_all(&self.dir);
        let mut o = owned();
        o.namespaces.retain(|n| !st.namespaces.contains(n));
        o.dirs.retain(|d| *d != self.dir);
    }
}

struct ProcShared {
    pid: u32,
    name: String,
    /// The child and, once reaped, its exit status (after which `pid` must
    /// not be signalled any more: it may be reused).
    child: Mutex<(Child, Option<ExitStatus>)>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl ProcShared {
    fn lock(&self) -> MutexGuard<'_, (Child, Option<ExitStatus>)> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_wait(&self) -> Option<ExitStatus> {
        let mut g = self.lock();
        if g.1.is_none() {
            g.1 = g.0.try_wait().expect("waitpid failed");
        }
        g.1
    }

    fn kill_and_reap(&self) -> ExitStatus {
        let mut g = self.lock();
        if let Some(st) = g.1 {
            return st;
        }
        // Not reaped yet, so the pid (and pgid) cannot have been reused.
        let pid = i32::try_from(self.pid).expect("pid fits i32");
        let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
        let _ = g.0.kill();
        let st = g.0.wait().expect("waitpid failed");
        g.1 = Some(st);
        st
    }
}

/// A process started by [`Lab::spawn`]. SIGKILLed (with its process group)
/// and reaped on drop, or when its lab is dropped.
pub struct Proc {
    shared: Arc<ProcShared>,
}

impl Proc {
    /// The program's pid (ip exec'd it, so this is not ip's).
    pub fn pid(&self) -> u32 {
        self.shared.pid
    }

    /// Sends `sig` to the process. Returns false (and sends nothing) if it
    /// has already been reaped.
    pub fn signal(&self, sig: Signal) -> bool {
        let g = self.shared.lock();
        if g.1.is_some() {
            return false;
        }
        let pid = i32::try_from(self.shared.pid).expect("pid fits i32");
        match kill(Pid::from_raw(pid), sig) {
            Ok(()) => true,
            Err(e) => panic!("kill({pid}, {sig}) failed: {e}"),
        }
    }

    /// SIGKILLs the process and reaps it; returns its exit status.
    pub fn kill(&self) -> ExitStatus {
        self.shared.kill_and_reap()
    }

    /// Exit status if it has already exited (reaping it), without waiting.
    pub fn try_wait(&self) -> Option<ExitStatus> {
        self.shared.try_wait()
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still
    /// running then.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.shared.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything written to stdout so far.
    pub fn stdout_text(&self) -> String {
        read_lossy(&self.shared.stdout)
    }

    /// Everything written to stderr so far.
    pub fn stderr_text(&self) -> String {
        read_lossy(&self.shared.stderr)
    }

    /// Path of the stdout log file.
    pub fn stdout_path(&self) -> &Path {
        &self.shared.stdout
    }

    /// Path of the stderr log file.
    pub fn stderr_path(&self) -> &Path {
        &self.shared.stderr
    }

    /// Log stem, e.g. `a-1-omdiscd`.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Waits until `ip` has exec'd `program` (or the process has exited),
    /// so that signals go to the program and not to ip.
    fn wait_exec(&self, program: &Path) {
        let Some(ip) = which(Path::new("ip")) else {
            return;
        };
        if which(program).as_deref() == Some(ip.as_path()) {
            return; // the program is ip itself: nothing to tell apart
        }
        let exe = format!("/proc/{}/exe", self.pid());
        poll_until(
            Duration::from_secs(10),
            &format!("ip netns exec to exec {}", program.display()),
            || match fs::canonicalize(&exe) {
                Ok(p) => p != ip,
                Err(_) => true, // exited (zombie or reaped)
            },
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.shared.kill_and_reap();
    }
}

/// Reports a check that did not run, as `SKIPPED: what: why` on stderr,
/// bypassing the test harness's output capture so it shows in every run (and
/// scripts/test counts it).
pub fn skipped(what: &str, why: &str) {
    use std::io::Write;
    // One write, so the line does not interleave with the harness's own.
    let line = format!("SKIPPED: {what}: {why}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

/// Polls `f` every ~20 ms until it returns true; panics mentioning `what`
/// if `timeout` passes first.
pub fn poll_until(timeout: Duration, what: &str, f: impl FnMut() -> bool) {
    poll_until_elapsed(timeout, what, f);
}

/// Like [`poll_until`], returning how long it took.
pub fn poll_until_elapsed(timeout: Duration, what: &str, f: impl FnMut() -> bool) -> Duration {
    poll_for(timeout, f)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for: {what}"))
}

/// Polls `f` every ~20 ms until it returns true (`Some(elapsed)`) or
/// `timeout` passes (`None`). `f` is always called at least once.
pub fn poll_for(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Runs `f` on a fresh thread inside the named network namespace.
pub fn run_in_netns<T, F>(ns: &str, f: F) -> T
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            enter_netns(ns);
            f()
        });
        match h.join() {
            Ok(v) => v,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    })
}

/// Moves the calling thread into the named network namespace.
fn enter_netns(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let f = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    // SAFETY: plain syscall on a valid, open fd; it only changes this
    // thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        panic!("setns({path}) failed: {}", io::Error::last_os_error());
    }
}

// ---------------------------------------------------------------------------
// Socket helpers (call them inside `in_netns`, or on sockets made there).

/// Index of `ifname` in the calling thread's namespace; panics if absent.
pub fn ifindex(ifname: &str) -> u32 {
    nix::net::if_::if_nametoindex(ifname)
        .unwrap_or_else(|e| panic!("no interface {ifname} here: {e}"))
}

fn in_addr(a: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from_ne_bytes(a.octets()),
    }
}

fn setsockopt<T>(sock: &UdpSocket, level: libc::c_int, name: libc::c_int, val: &T, what: &str) {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>()).expect("option size");
    // SAFETY: `val` points to a live T of `len` bytes for the duration of
    // the call; the fd is owned by `sock`.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (val as *const T).cast::<libc::c_void>(),
            len,
        )
    };
    if rc != 0 {
        panic!("setsockopt({what}) failed: {}", io::Error::last_os_error());
    }
}

fn mreqn(group: Ipv4Addr, ifindex: u32) -> libc::ip_mreqn {
    libc::ip_mreqn {
        imr_multiaddr: in_addr(group),
        imr_address: in_addr(Ipv4Addr::UNSPECIFIED),
        imr_ifindex: libc::c_int::try_from(ifindex).expect("ifindex fits c_int"),
    }
}

/// IP_MULTICAST_IF with an `ip_mreqn` naming the interface by index.
pub fn set_multicast_if(sock: &UdpSocket, ifindex: u32) {
    let m = mreqn(Ipv4Addr::UNSPECIFIED, ifindex);
    setsockopt(
        sock,
        libc::IPPROTO_IP,
        libc::IP_MULTICAST_IF,
        &m,
        "IP_MULTICAST_IF",
    );
}

/// IP_ADD_MEMBERSHIP with an `ip_mreqn` naming the interface by index.
pub fn join_multicast(sock: &UdpSocket, group: Ipv4Addr, ifindex: u32) {
    let m = mreqn(group, ifindex);
    setsockopt(
        sock,
        libc::IPPROTO_IP,
        libc::IP_ADD_MEMBERSHIP,
        &m,
        "IP_ADD_MEMBERSHIP",
    );
}

/// A UDP socket for sending multicast out of interface `ifname` with TTL
/// `ttl`, bound to an ephemeral port. Call inside `in_netns`.
pub fn mcast_sender(ifname: &str, ttl: u32) -> UdpSocket {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind sender");
    set_multicast_if(&s, ifindex(ifname));
    s.set_multicast_ttl_v4(ttl).expect("IP_MULTICAST_TTL");
    s
}

/// A UDP socket bound to `0.0.0.0:port` that has joined `group` on
/// `ifname`. Call inside `in_netns`.
pub fn mcast_receiver(group: Ipv4Addr, port: u16, ifname: &str) -> UdpSocket {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind receiver");
    join_multicast(&s, group, ifindex(ifname));
    s
}

/// Receives one datagram, waiting at most `timeout`; `None` on timeout.
pub fn recv_timeout(sock: &UdpSocket, timeout: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + timeout.max(Duration::from_millis(1));
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(left)).expect("SO_RCVTIMEO");
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                buf.truncate(n);
                return Some((buf, from));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            // A signal to this process (a child of another test exiting)
            // interrupts the wait: wait out the rest.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("recv_from failed: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Stale-lab cleanup and small utilities.

/// This run's token: `$OMD_TEST_RUN` when it is set (and valid), else
/// random for this process.
pub fn run_token() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| match std::env::var(RUN_ENV) {
        Ok(v) => {
            let valid = (1..=16).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            assert!(
                valid,
                "{RUN_ENV}={v:?}: want 1 to 16 lower-case letters and digits"
            );
            v
        }
        Err(_) => random_token(),
    })
}

/// This process's token, random.
pub fn process_token() -> &'static str {
    static PROC: OnceLock<String> = OnceLock::new();
    PROC.get_or_init(random_token)
}

/// The start of every name this process's labs make: `omd<run>-<proc>-`.
pub fn process_prefix() -> String {
    format!("{NAME_PREFIX}{}-{}-", run_token(), process_token())
}

/// Eight base-36 digits from the kernel's random source.
fn random_token() -> String {
    let mut b = [0u8; 8];
    // SAFETY: `b` is writable for its length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    assert_eq!(n, 8, "getrandom: {}", io::Error::last_os_error());
    let mut v = u64::from_ne_bytes(b);
    (0..8)
        .map(|_| {
            let d = (v % 36) as u32;
            v /= 36;
            char::from_digit(d, 36).expect("digit")
        })
        .collect()
}

/// Removes the namespaces (killing what runs in them) and directories of
/// labs of this process that were never dropped (leaked, or alive at exit).
/// Runs at process exit; a test may call it only when no lab of its process
/// is alive.
pub fn cleanup_owned() {
    let Owned { namespaces, dirs } = std::mem::replace(
        &mut *owned(),
        Owned {
            namespaces: Vec::new(),
            dirs: Vec::new(),
        },
    );
    for ns in namespaces.iter().rev() {
        if Path::new("/run/netns").join(ns).exists() {
            kill_netns_pids(ns);
            delete_netns(ns);
        }
    }
    for d in dirs {
        let _ = fs::remove_dir_all(d);
    }
}

extern "C" fn cleanup_owned_at_exit() {
    // Never unwind into libc.
    let _ = std::panic::catch_unwind(cleanup_owned);
}

/// Says (once, on stderr) when lab-like names of other runs exist. They are
/// never removed here: a leftover of a killed run looks the same as a name a
/// live run in another PID namespace is using. scripts/test removes its own
/// run's leftovers; others are for whoever started that run.
pub fn note_foreign_names() {
    let mine = format!("{NAME_PREFIX}{}-", run_token());
    let foreign: Vec<String> = list_netns()
        .into_iter()
        .filter(|n| n.starts_with(NAME_PREFIX) && !n.starts_with(&mine))
        .collect();
    if !foreign.is_empty() {
        eprintln!(
            "lab: note: {} network namespace(s) of other test runs exist (e.g. {}); \
             left alone. If no other run is active: ip netns del NAME",
            foreign.len(),
            foreign[0]
        );
    }
}

/// Names of all named network namespaces (`/run/netns`).
pub fn list_netns() -> Vec<String> {
    match fs::read_dir("/run/netns") {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Names listed by `ip netns list` (first word of each line).
pub fn ip_netns_list() -> Vec<String> {
    ip_ok(&["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// `n` in lower-case base 36.
pub fn base36(mut n: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// SIGKILLs every process whose network namespace is `ns` (except this
/// one), so that deleting the name really frees the namespace.
fn kill_netns_pids(ns: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    let me = std::process::id();
    for pid in String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|s| s.parse::<i32>().ok())
    {
        if pid > 0 && u32::try_from(pid).ok() != Some(me) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn delete_netns(ns: &str) {
    match Command::new("ip").args(["netns", "del", ns]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            if Path::new("/run/netns").join(ns).exists() {
                eprintln!(
                    "lab: ip netns del {ns} failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
        }
        Err(e) => eprintln!("lab: cannot run ip netns del {ns}: {e}"),
    }
}

/// Runs `ip args...`; panics with the command and its stderr unless it
/// succeeds; returns stdout.
pub fn ip_ok(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e}", args.join(" ")));
    if !out.status.success() {
        panic!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Inode of a namespace file, to compare `/proc/PID/ns/net` with
/// `/run/netns/NAME`.
pub fn ns_inode(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}

/// Resolves a program like execvp would (PATH lookup when there is no
/// slash), canonicalized.
pub fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        return fs::canonicalize(program).ok();
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .and_then(|p| fs::canonicalize(p).ok())
}

fn read_lossy(p: &Path) -> String {
    match fs::read(p) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    }
}

fn sanitize(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(24)
        .collect();
    if t.is_empty() {
        "node".to_owned()
    } else {
        t
    }
}
