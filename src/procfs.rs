//! Publishing the map: the map file (always) and the kernel (openMosix 2.4).
//!
//! The map file is written atomically (temporary file in the same directory,
//! fsync, rename, fsync of the directory) so a reader never sees a torn file.
//! Everything needed is prepared at start-up: publishing allocates nothing.

// The system calls go through crate::sys; only the tests make their own (mkfifo).
#![cfg_attr(not(test), forbid(unsafe_code))]

use std::ffi::{CString, OsStr};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::child::{Ended, Environment, Program, Runs, CHILD_TIMEOUT_MS};
use crate::map::{ClusterMap, NodeId};
use crate::mapfile;
use crate::sys::{fs, write_all_fd, write_fd};

/// Size of the write buffer: a 65,535-node map is written in ~25 chunks.
const WRITE_BUF: usize = 64 * 1024;

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// The largest map file read back (`--dump`, and the previous run's map at
/// start-up): the largest possible map, 65,535 nodes with 6 aliases each
/// and no two in a range, is about 13 MiB.
pub const MAX_MAP_FILE_BYTES: u64 = 16 << 20;

/// Reads a map file back: only a regular file (not a FIFO, which could
/// hang, nor a device such as `/dev/zero`, which never ends), and at most
/// [`MAX_MAP_FILE_BYTES`]. Start-up and `--dump` only: it allocates.
pub fn read_map_file(path: &Path) -> io::Result<Vec<u8>> {
    read_regular(path, MAX_MAP_FILE_BYTES)
}

/// The kernel command line (`/proc/cmdline`, 4 KiB at most), for
/// `--cmdline`.
pub fn read_cmdline(path: &Path) -> io::Result<Vec<u8>> {
    read_regular(path, 4096)
}

/// Reads the regular file at `path`, refusing one larger than `max` bytes.
fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    // Non-blocking, so that opening a FIFO does not wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(invalid("not a regular file".to_string()));
    }
    if meta.len() > max {
        let why = if max >= 1 << 20 {
            format!("larger than {} MiB", max >> 20)
        } else {
            format!("larger than {max} bytes")
        };
        return Err(invalid(why));
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// True if `path` is a regular file or does not exist (lstat: a symlink is
/// neither).
fn regular_or_absent(path: &CString) -> bool {
    match fs::is_regular_path(path) {
        Ok(regular) => regular,
        Err(e) => e.raw_os_error() == Some(libc::ENOENT),
    }
}

/// Refuses, without creating anything, a path the daemon may not write a
/// file of its own at (the map file, the metrics file, the lock file): one
/// that ends in `/` or has no file name, or that names anything but a
/// regular file (a device node, a FIFO, a directory, a symlink), which the
/// atomic rename would replace: `--map-file /dev/null` would destroy
/// `/dev/null`. Start-up checks every such path before it creates any file.
pub fn check_file_path(path: &Path) -> io::Result<()> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    if path.as_os_str().as_bytes().ends_with(b"/") {
        let why = format!("{} ends with '/': it must name a file", path.display());
        return Err(invalid(why));
    }
    if path.file_name().is_none() {
        let why = format!("{} names no file", path.display());
        return Err(invalid(why));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => Err(invalid(format!(
            "{} is not a regular file (a directory, device, FIFO, socket or symlink): refusing to replace it",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Writes a file atomically (the map file, the metrics file): the text goes
/// to a temporary file beside it, which is renamed over it. Created at
/// start-up; writing does not allocate.
pub struct AtomicFile {
    path: CString,
    tmp: CString,
    dir: CString,
    buf: Box<[u8]>,
}

impl AtomicFile {
    /// Prepares the paths and creates the directory if missing. Refuses a
    /// path that ends in `/` or names anything but a regular file (a device
    /// node, a FIFO, a directory, a symlink): the atomic rename would
    /// replace it, and `--map-file /dev/null` would destroy `/dev/null`.
    pub fn new(path: &Path) -> io::Result<AtomicFile> {
        check_file_path(path)?;
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name")
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        crate::sys::create_dir_all(&dir)?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".tmp");
        Ok(AtomicFile {
            path: cstring(path)?,
            tmp: cstring(&dir.join(tmp_name))?,
            dir: cstring(&dir)?,
            buf: vec![0u8; WRITE_BUF].into_boxed_slice(),
        })
    }

    /// Writes the whole map, naming this process as its writer.
    pub fn write(&mut self, map: &ClusterMap, version: &str) -> io::Result<()> {
        let writer = mapfile::Writer {
            pid: std::process::id(),
            time_s: crate::sys::unix_time_s(),
        };
        self.write_with(|w| mapfile::render(map, version, Some(writer), w))
    }

    /// Writes what `render` writes to the temporary file and renames it
    /// into place.
    pub fn write_with(
        &mut self,
        render: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result,
    ) -> io::Result<()> {
        let fd = match self.open_tmp() {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // The directory vanished (a cleaned /run): make it again, once.
                fs::mkdir(&self.dir, 0o755)?;
                self.open_tmp()?
            }
            other => other?,
        };
        let result = self.fill(fd.as_raw_fd(), render);
        drop(fd);
        if let Err(e) = result {
            let _ = fs::unlink(&self.tmp);
            return Err(e);
        }
        // Never replace anything but a regular file, even one that took the
        // map file's place after start-up.
        if !regular_or_absent(&self.path) {
            let _ = fs::unlink(&self.tmp);
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        fs::rename(&self.tmp, &self.path)?;
        // Make the rename itself durable; failure here is not worth an error.
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
        if let Ok(dir) = fs::open(&self.dir, flags, 0) {
            let _ = fs::fsync(dir.as_raw_fd());
        }
        Ok(())
    }

    fn open_tmp(&self) -> io::Result<OwnedFd> {
        // Not through a symlink, and not into a FIFO without a reader.
        let flags = libc::O_WRONLY
            | libc::O_CREAT
            | libc::O_TRUNC
            | libc::O_CLOEXEC
            | libc::O_NOFOLLOW
            | libc::O_NONBLOCK;
        let fd = fs::open(&self.tmp, flags, 0o644)?;
        if fs::is_regular_fd(fd.as_raw_fd()).unwrap_or(false) {
            return Ok(fd);
        }
        Err(io::Error::from_raw_os_error(libc::EEXIST))
    }

    fn fill(
        &mut self,
        fd: i32,
        render: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result,
    ) -> io::Result<()> {
        let mut w = FdWriter {
            fd,
            buf: &mut self.buf,
            len: 0,
            error: None,
        };
        let rendered = render(&mut w);
        w.flush()?;
        if let Some(e) = w.error {
            return Err(e);
        }
        if rendered.is_err() {
            return Err(io::Error::other("formatting the file failed"));
        }
        fs::fsync(fd)?;
        Ok(())
    }
}

/// A `fmt::Write` over a file descriptor through a fixed buffer.
struct FdWriter<'a> {
    fd: i32,
    buf: &'a mut [u8],
    len: usize,
    error: Option<io::Error>,
}

impl FdWriter<'_> {
    fn flush(&mut self) -> io::Result<()> {
        write_all_fd(self.fd, &self.buf[..self.len])?;
        self.len = 0;
        Ok(())
    }
}

impl fmt::Write for FdWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut bytes = s.as_bytes();
        while !bytes.is_empty() {
            if self.len == self.buf.len() {
                if let Err(e) = self.flush() {
                    self.error = Some(e);
                    return Err(fmt::Error);
                }
            }
            let n = bytes.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

/// Which openMosix interface the running kernel has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// openMosix 2.4: `/proc/hpc/admin/config` and `mospe`; the map is loaded with setpe.
    OpenMosix24,
    /// openMosix 2.6: no map interface; the map file is the product.
    OpenMosix26,
    /// LinuxPMI: no map interface; the map file is the product.
    LinuxPmi,
    /// No openMosix in this kernel: the map file is the product.
    MapFileOnly,
}

impl Backend {
    /// Looks under `proc_root` (normally `/proc`) for the interfaces.
    pub fn detect(proc_root: &Path) -> Backend {
        Probes::new(proc_root).map_or(Backend::MapFileOnly, |p| p.detect())
    }

    /// How the start-up log line names it.
    pub fn describe(self) -> &'static str {
        match self {
            Backend::OpenMosix24 => "openMosix 2.4 kernel (mospe + setpe)",
            Backend::OpenMosix26 => "openMosix 2.6 kernel (no map interface: map file only)",
            Backend::LinuxPmi => "LinuxPMI kernel (no map interface: map file only)",
            Backend::MapFileOnly => "no openMosix kernel (map file only)",
        }
    }
}

/// The paths that tell the backends apart, made once so that looking again
/// allocates nothing.
struct Probes {
    /// In the order of [`Probes::BACKENDS`].
    paths: [CString; 3],
    /// `self`: there once procfs is mounted.
    mounted: CString,
}

impl Probes {
    const BACKENDS: [(&'static str, Backend); 3] = [
        ("hpc/admin/config", Backend::OpenMosix24),
        ("self/om", Backend::OpenMosix26),
        ("self/pms", Backend::LinuxPmi),
    ];

    fn new(proc_root: &Path) -> io::Result<Probes> {
        let [a, b, c] = Self::BACKENDS.map(|(p, _)| cstring(&proc_root.join(p)));
        Ok(Probes {
            paths: [a?, b?, c?],
            mounted: cstring(&proc_root.join("self"))?,
        })
    }

    fn detect(&self) -> Backend {
        let found = self.paths.iter().zip(Self::BACKENDS);
        found
            .filter(|(path, _)| crate::sys::exists(path))
            .map(|(_, (_, b))| b)
            .next()
            .unwrap_or(Backend::MapFileOnly)
    }
}

/// Why handing the map to the kernel failed. Logged and retried, never fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// Writing the node id to `mospe` failed with this errno.
    Mospe(i32),
    /// setpe could not be started (errno).
    Spawn(i32),
    /// setpe exited with this status (or was killed: 128 + signal).
    Setpe(i32),
    /// setpe ran longer than [`CHILD_TIMEOUT_MS`] and was killed.
    Timeout,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KernelError::Mospe(e) => {
                write!(f, "writing mospe: {}", crate::sys::Errno(e))
            }
            KernelError::Spawn(e) => {
                write!(f, "starting setpe: {}", crate::sys::Errno(e))
            }
            KernelError::Setpe(s) => write!(f, "setpe -w failed with status {s}"),
            KernelError::Timeout => write!(
                f,
                "setpe -w ran longer than {} s and was killed",
                CHILD_TIMEOUT_MS / 1000
            ),
        }
    }
}

/// Hands the map to an openMosix 2.4 kernel: the node id to `mospe`, the map
/// through `setpe -w -f MAPFILE` (its binary format is undocumented, so we
/// never write it ourselves). One setpe at a time, killed after
/// [`CHILD_TIMEOUT_MS`]; a change during a run is loaded by a second run
/// when the first ends.
pub struct Kernel {
    backend: Backend,
    probes: Probes,
    mospe: CString,
    setpe: Program,
    env: Environment,
    rerun: bool,
    written_id: Option<NodeId>,
}

impl Kernel {
    /// Prepares everything publishing needs, so that it allocates nothing later.
    pub fn new(
        backend: Backend,
        proc_root: &Path,
        setpe: &Path,
        map_file: &Path,
    ) -> io::Result<Kernel> {
        let args = [OsStr::new("-w"), OsStr::new("-f"), map_file.as_os_str()];
        Ok(Kernel {
            backend,
            probes: Probes::new(proc_root)?,
            mospe: cstring(&proc_root.join("hpc/admin/mospe"))?,
            setpe: Program::new("setpe", setpe, &args)?,
            env: Environment::new(0),
            rerun: false,
            written_id: None,
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Looks for the kernel's interface again (procfs may have been mounted
    /// since, as in an initramfs); true if the backend changed.
    pub fn redetect(&mut self) -> bool {
        let now = self.probes.detect();
        if now == self.backend {
            return false;
        }
        self.backend = now;
        self.written_id = None;
        true
    }

    /// Whether procfs is mounted at the proc root (its `self` is there).
    pub fn proc_mounted(&self) -> bool {
        crate::sys::exists(&self.probes.mounted)
    }

    /// A setpe run is in progress.
    pub fn busy(&self) -> bool {
        self.setpe.busy()
    }

    /// setpe's runs.
    pub fn runs(&self) -> Runs {
        self.setpe.runs
    }

    /// When a running setpe is killed.
    pub fn deadline(&self) -> Option<u64> {
        self.setpe.deadline()
    }

    /// Publishes this node's id and starts loading the map file (already written).
    pub fn publish(&mut self, own_id: NodeId, now_ms: u64) -> Result<(), KernelError> {
        if self.backend != Backend::OpenMosix24 {
            return Ok(());
        }
        if self.written_id != Some(own_id) {
            self.write_mospe(own_id).map_err(KernelError::Mospe)?;
            self.written_id = Some(own_id);
        }
        if self.setpe.busy() {
            self.rerun = true;
            return Ok(());
        }
        self.spawn_setpe(now_ms)
    }

    /// Starts loading a map file with setpe alone, without writing
    /// `mospe` (`--static-map`: `setpe -w` finds this node in the file, as
    /// the openMosix rc script relied on). Nothing to do but on openMosix 2.4.
    pub(crate) fn load(&mut self, now_ms: u64) -> Result<(), KernelError> {
        if self.backend != Backend::OpenMosix24 {
            return Ok(());
        }
        self.spawn_setpe(now_ms)
    }

    /// Collects a finished setpe (on SIGCHLD), or kills one past its
    /// deadline. Returns its result, if it ended.
    pub fn poll(&mut self, now_ms: u64) -> Option<Result<(), KernelError>> {
        let result = match self.setpe.poll(now_ms)? {
            Ended::Ok => Ok(()),
            Ended::Failed(status) => Err(KernelError::Setpe(status)),
            Ended::TimedOut => Err(KernelError::Timeout),
        };
        if self.rerun {
            self.rerun = false;
            if let Err(e) = self.spawn_setpe(now_ms) {
                return Some(Err(e));
            }
        }
        Some(result)
    }

    /// Waits for a running setpe (at exit), at most `timeout_ms`, then kills it.
    pub fn finish(&mut self, timeout_ms: u64) -> Option<Result<(), KernelError>> {
        self.rerun = false;
        match self.setpe.finish(timeout_ms)? {
            Ended::Ok => Some(Ok(())),
            Ended::Failed(status) => Some(Err(KernelError::Setpe(status))),
            Ended::TimedOut => Some(Err(KernelError::Timeout)),
        }
    }

    fn write_mospe(&self, id: NodeId) -> Result<(), i32> {
        let mut text = [0u8; 8];
        let len = {
            let mut w = &mut text[..];
            let before = w.len();
            io::Write::write_fmt(&mut w, format_args!("{id}\n")).map_err(|_| libc::EINVAL)?;
            before - w.len()
        };
        let flags = libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC;
        let fd =
            fs::open(&self.mospe, flags, 0).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        // One write: a /proc file takes the whole value in one call or not at all.
        let r = write_fd(fd.as_raw_fd(), &text[..len]);
        drop(fd);
        match r {
            Ok(n) if n == len => Ok(()),
            Ok(_) => Err(libc::EIO),
            Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    fn spawn_setpe(&mut self, now_ms: u64) -> Result<(), KernelError> {
        self.setpe
            .start(now_ms, self.env.envp())
            .map_err(|e| KernelError::Spawn(e.raw_os_error().unwrap_or(libc::EIO)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::Announcement;
    use std::net::Ipv4Addr;
    use std::os::unix::fs::FileTypeExt;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("omd-procfs-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn map_of(n: u8) -> ClusterMap {
        let peers = (1..=n).map(|last| Ipv4Addr::new(192, 168, 10, last));
        crate::map::test_map(Ipv4Addr::new(192, 168, 10, 220), peers)
    }

    #[test]
    fn a_map_path_that_is_not_a_regular_file_is_refused_and_left_alone() {
        let dir = temp_dir("refuse");
        let fifo = dir.join("fifo");
        let c = cstring(&fifo).unwrap();
        // SAFETY: c is a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let sub = dir.join("sub");
        std::fs::create_dir(&sub).unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(dir.join("target"), &link).unwrap();
        for (path, what) in [
            (fifo.clone(), "not a regular file"),
            (sub.clone(), "not a regular file"),
            (link.clone(), "not a regular file"),
            (
                PathBuf::from(format!("{}/", dir.join("x").display())),
                "ends with '/'",
            ),
        ] {
            let e = AtomicFile::new(&path).err().expect("refused");
            let text = e.to_string();
            assert!(
                text.contains(what) && text.contains(&*dir.to_string_lossy()),
                "{text}"
            );
        }
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
        assert!(sub.is_dir() && std::fs::read_link(&link).is_ok());

        // A FIFO that takes the map file's place later is not replaced either.
        let path = dir.join("openmosix.map");
        let mut w = AtomicFile::new(&path).unwrap();
        let map = map_of(2);
        w.write(&map, "t").unwrap();
        std::fs::remove_file(&path).unwrap();
        let c = cstring(&path).unwrap();
        // SAFETY: c is a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(w.write(&map, "t").is_err());
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_fifo());
        assert!(
            !dir.join(".openmosix.map.tmp").exists(),
            "no temporary file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn map_file_is_written_whole_and_directory_created() {
        let dir = temp_dir("write");
        let path = dir.join("sub/dir/openmosix.map");
        let mut w = AtomicFile::new(&path).unwrap();
        let map = map_of(4);
        w.write(&map, "t").unwrap();
        // Whole, and naming this process as its writer.
        let text = std::fs::read_to_string(&path).unwrap();
        let writer = mapfile::parse(text.as_bytes()).unwrap().writer.unwrap();
        assert_eq!(writer.pid, std::process::id());
        let mut expected = String::new();
        mapfile::render(&map, "t", Some(writer), &mut expected).unwrap();
        assert_eq!(text, expected);
        // The directory disappears under us: it is made again.
        std::fs::remove_dir_all(dir.join("sub/dir")).unwrap();
        w.write(&map, "t").unwrap();
        assert!(path.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("sub/dir"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_map_larger_than_the_buffer_is_written_whole() {
        let dir = temp_dir("large");
        let path = dir.join("openmosix.map");
        let mut map = ClusterMap::new(Ipv4Addr::new(10, 0, 0, 1), &[], 1);
        // Every other id, so nothing compresses into ranges: ~65 KB per 4096 nodes.
        for id in (3..=u16::MAX).step_by(2) {
            let [hi, lo] = id.to_be_bytes();
            let a = Announcement {
                addr: Ipv4Addr::new(10, 0, hi, lo),
                aliases: &[],
                incarnation: 1,
                sequence: 1,
                hold_ms: 1000,
                started: 0,
                probe_ms: 0,
                ifindex: 0,
                authentic: false,
                watcher: false,
            };
            map.apply_announce(&a, 0);
        }
        let mut w = AtomicFile::new(&path).unwrap();
        w.write(&map, "t").unwrap();
        let text = std::fs::read(&path).unwrap();
        assert!(text.len() > 4 * WRITE_BUF);
        let parsed = mapfile::parse(&text).unwrap();
        assert_eq!(parsed.ranges.len(), map.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_concurrent_reader_never_sees_a_torn_file() {
        let dir = temp_dir("torn");
        let path = dir.join("openmosix.map");
        let small = map_of(2);
        let large = map_of(250);
        let mut w = AtomicFile::new(&path).unwrap();
        w.write(&small, "t").unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let reads = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let text = std::fs::read(&path).unwrap();
                    let parsed = mapfile::parse(&text).expect("a whole map file");
                    let declared = std::str::from_utf8(&text)
                        .unwrap()
                        .lines()
                        .find_map(|l| l.strip_prefix("# nodes: "))
                        .expect("header present")
                        .parse::<usize>()
                        .unwrap();
                    let listed: u32 = parsed.ranges.iter().map(|r| r.count).sum();
                    assert_eq!(listed as usize, declared, "torn read");
                    reads += 1;
                }
                reads
            });
            for i in 0..200 {
                let map = if i % 2 == 0 { &large } else { &small };
                w.write(map, "t").unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            reader.join().unwrap()
        });
        assert!(reads > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn backend_detection() {
        let root = temp_dir("detect");
        assert_eq!(Backend::detect(&root), Backend::MapFileOnly);
        std::fs::create_dir_all(root.join("self/pms")).unwrap();
        assert_eq!(Backend::detect(&root), Backend::LinuxPmi);
        std::fs::create_dir_all(root.join("self/om")).unwrap();
        assert_eq!(Backend::detect(&root), Backend::OpenMosix26);
        std::fs::create_dir_all(root.join("hpc/admin")).unwrap();
        std::fs::write(root.join("hpc/admin/config"), b"").unwrap();
        assert_eq!(Backend::detect(&root), Backend::OpenMosix24);
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn wait_reaped(k: &mut Kernel) -> Result<(), KernelError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(r) = k.poll(crate::sys::monotonic_ms()) {
                if !k.busy() {
                    return r;
                }
            }
            assert!(std::time::Instant::now() < deadline, "setpe never ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn openmosix_24_gets_mospe_and_setpe() {
        let root = temp_dir("om24");
        std::fs::create_dir_all(root.join("hpc/admin")).unwrap();
        std::fs::write(root.join("hpc/admin/config"), b"").unwrap();
        std::fs::write(root.join("hpc/admin/mospe"), b"0\n").unwrap();
        let record = root.join("setpe.args");
        let setpe = root.join("setpe");
        std::fs::write(
            &setpe,
            format!("#!/bin/sh\necho \"$@\" >> '{}'\n", record.display()),
        )
        .unwrap();
        std::fs::set_permissions(&setpe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let map_file = root.join("openmosix.map");
        let mut k = Kernel::new(Backend::detect(&root), &root, &setpe, &map_file).unwrap();
        assert_eq!(k.backend(), Backend::OpenMosix24);
        k.publish(2780, crate::sys::monotonic_ms()).unwrap();
        assert_eq!(wait_reaped(&mut k), Ok(()));
        assert_eq!(
            std::fs::read_to_string(root.join("hpc/admin/mospe")).unwrap(),
            "2780\n"
        );
        assert_eq!(
            std::fs::read_to_string(&record).unwrap(),
            format!("-w -f {}\n", map_file.display())
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn setpe_failures_are_reported_not_fatal() {
        let root = temp_dir("om24fail");
        std::fs::create_dir_all(root.join("hpc/admin")).unwrap();
        std::fs::write(root.join("hpc/admin/config"), b"").unwrap();
        std::fs::write(root.join("hpc/admin/mospe"), b"0\n").unwrap();
        let map_file = root.join("openmosix.map");
        let missing = root.join("no-such-setpe");
        let mut k = Kernel::new(Backend::OpenMosix24, &root, &missing, &map_file).unwrap();
        assert_eq!(k.publish(1, 0), Err(KernelError::Spawn(libc::ENOENT)));
        let failing = root.join("setpe");
        std::fs::write(&failing, "#!/bin/sh\nexit 3\n").unwrap();
        std::fs::set_permissions(
            &failing,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let mut k = Kernel::new(Backend::OpenMosix24, &root, &failing, &map_file).unwrap();
        k.publish(1, crate::sys::monotonic_ms()).unwrap();
        assert_eq!(wait_reaped(&mut k), Err(KernelError::Setpe(3)));
        std::fs::remove_file(root.join("hpc/admin/mospe")).unwrap();
        std::fs::remove_dir_all(root.join("hpc/admin")).unwrap();
        let mut k = Kernel::new(Backend::OpenMosix24, &root, &failing, &map_file).unwrap();
        assert_eq!(k.publish(1, 0), Err(KernelError::Mospe(libc::ENOENT)));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_setpe_that_hangs_is_killed_with_its_children_and_the_next_publish_runs_it_again() {
        let root = temp_dir("om24hang");
        std::fs::create_dir_all(root.join("hpc/admin")).unwrap();
        std::fs::write(root.join("hpc/admin/config"), b"").unwrap();
        std::fs::write(root.join("hpc/admin/mospe"), b"0\n").unwrap();
        let pids = root.join("pids");
        let setpe = root.join("setpe");
        // It starts a grandchild, then hangs; both must die.
        std::fs::write(
            &setpe,
            format!(
                "#!/bin/sh\nsleep 60 &\necho $! $$ > '{}'\nwait\n",
                pids.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&setpe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut k = Kernel::new(Backend::OpenMosix24, &root, &setpe, &root.join("m")).unwrap();
        let t0 = crate::sys::monotonic_ms();
        k.publish(1, t0).unwrap();
        assert_eq!(k.deadline(), Some(t0 + CHILD_TIMEOUT_MS));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(&pids).map_or(true, |t| !t.ends_with('\n')) {
            assert!(std::time::Instant::now() < deadline, "setpe never started");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(k.poll(t0 + 1), None, "still running");
        // Read now: the run started after the kill writes its own.
        let text = std::fs::read_to_string(&pids).unwrap();
        // A publish meanwhile waits for the run to end.
        k.publish(1, t0 + 2).unwrap();
        assert_eq!(k.runs().started, 1);
        // Its deadline passes (the clock is the caller's).
        assert_eq!(
            k.poll(t0 + CHILD_TIMEOUT_MS),
            Some(Err(KernelError::Timeout))
        );
        assert_eq!(k.runs().timed_out, 1);
        for pid in text.split_whitespace() {
            // Gone, or a zombie waiting for whoever inherited it.
            let running = || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| !r.starts_with(" Z")))
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while running() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "process {pid} of the killed setpe still runs"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        // The publish that waited runs now.
        assert_eq!(k.runs().started, 2);
        assert!(k.busy());
        assert_eq!(k.finish(0), Some(Err(KernelError::Timeout)));
        assert!(!k.busy());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn other_backends_do_not_touch_the_kernel() {
        let root = temp_dir("none");
        let mut k = Kernel::new(
            Backend::MapFileOnly,
            &root,
            Path::new("/nonexistent/setpe"),
            &root.join("m"),
        )
        .unwrap();
        assert_eq!(k.publish(5, 0), Ok(()));
        assert!(!k.busy());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
