//! The daemon's side: the listening socket and its clients, answered
//! without blocking from the epoll loop.

#![forbid(unsafe_code)]

use std::io::{self, Read as _, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::sys::Epoll;

use super::answer::{Answer, Chunk, Snapshot};
use super::watch::{Backlog, Change, Line, DROPPED};
use super::{Request, WatchFormat};

/// A client that has not finished within this long is disconnected (the
/// daemon), or gives up (the client).
pub const CLIENT_TIMEOUT_MS: u64 = 5_000;

/// Clients served at once; more wait in the listen backlog.
pub const MAX_CLIENTS: usize = MAX_WATCHERS + 1;

/// Clients that may watch at once: one slot is always left for requests
/// (`--dump`, `--stats`), which watchers would otherwise hold.
pub const MAX_WATCHERS: usize = 4;

/// What a watch request is answered when [`MAX_WATCHERS`] clients watch.
const TOO_MANY_WATCHERS: &[u8] = b"error: too many watchers; try again later\n";

/// The longest request line.
pub(super) const REQUEST_MAX: usize = 64;

/// What an unknown request is answered.
const BAD_REQUEST: &[u8] =
    b"error: unknown request; ask showmap, map, json, hosts, stats [text|json|prometheus] or watch [text|json]\n";

/// One connection.
struct Client {
    stream: Option<UnixStream>,
    request: [u8; REQUEST_MAX],
    got: usize,
    answer: Option<Answer>,
    chunk: Chunk,
    /// Bytes of `chunk` already written.
    sent: usize,
    /// When it is disconnected: 5 s after it connected, while it asks and
    /// reads its answer; never for a watcher that has its map, until its
    /// lines were lost.
    deadline_ms: u64,
    /// The epoll events it is registered for.
    interest: u32,
    /// A `watch` request: its changes go into `backlog`.
    watch: Option<WatchFormat>,
    backlog: Backlog,
}

impl Client {
    /// A watcher that has its map: what is left to write is its backlog.
    fn watching(&self) -> bool {
        let answered = self.answer.is_some_and(|a| a.done()) && self.sent == self.chunk.len;
        answered && self.watch.is_some() && self.stream.is_some()
    }
}

/// How far a write went.
enum Wrote {
    /// Everything waiting.
    All,
    /// The socket is full.
    Full,
    /// The client is gone.
    Gone,
}

/// Writes `bytes[*sent..]`, advancing `sent`.
fn write_some(stream: &mut UnixStream, bytes: &[u8], sent: &mut usize) -> Wrote {
    while *sent < bytes.len() {
        match stream.write(&bytes[*sent..]) {
            Ok(0) => return Wrote::Gone,
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Wrote::Full,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Wrote::Gone,
        }
    }
    Wrote::All
}

/// The control socket: a listening `AF_UNIX` stream socket, mode 0600, and
/// up to [`MAX_CLIENTS`] connections, each with its own fixed buffers
/// (allocated in [`Server::bind`]). The daemon's epoll loop calls it.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    clients: Box<[Client]>,
    /// epoll token of client 0; client i has `token + i`.
    token: u64,
    /// Watchers disconnected because they read too slowly.
    pub(crate) watchers_dropped: u64,
}

/// Refuses, without creating anything, a path the control socket cannot
/// be bound at: longer than a socket address holds, ending in `/`, or
/// naming something that is not a socket. True if a socket is there (one
/// left by a daemon that died: [`Server::bind`] replaces it).
pub(crate) fn check_path(path: &Path) -> io::Result<bool> {
    let invalid = |kind, why| Err(io::Error::new(kind, why));
    // sun_path holds 108 bytes with the NUL; the socket is bound at a
    // name 2 bytes longer first (see `bound_aside`).
    if path.as_os_str().len() > 105 {
        return invalid(
            io::ErrorKind::InvalidInput,
            "longer than 105 bytes, the most a control socket's path may have; give a shorter --control-socket",
        );
    }
    if path.as_os_str().as_bytes().ends_with(b"/") || path.file_name().is_none() {
        return invalid(io::ErrorKind::InvalidInput, "does not name a file");
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => Ok(true),
        Ok(_) => invalid(io::ErrorKind::AlreadyExists, "exists and is not a socket"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A socket listening at `path`, which appears there only once it
/// listens: it is bound and narrowed to mode 0600 at `.NAME~` beside it,
/// then renamed into place. A client that sees the file can connect (bound
/// at `path` itself, the file would exist a moment before the socket
/// listened, and a connection then is refused).
fn bound_aside(path: &Path) -> io::Result<UnixListener> {
    let name = path.file_name().unwrap_or_default();
    let mut aside = std::ffi::OsString::from(".");
    aside.push(name);
    aside.push("~");
    let aside = path.with_file_name(aside);
    // One left by a daemon that died (the caller holds the lock file).
    if std::fs::symlink_metadata(&aside).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(&aside)?;
    }
    // Made with the umask's mode (no write for others: nobody else can
    // connect), then narrowed to the owner.
    let listener = UnixListener::bind(&aside)?;
    let placed = std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&aside, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&aside);
        return Err(e);
    }
    Ok(listener)
}

impl Server {
    /// Listens on `path`: a socket left there by a daemon that died is
    /// replaced (the caller holds the lock file, so no daemon uses it);
    /// anything else there is an error. Client `i` gets epoll token
    /// `client_token + i`.
    pub fn bind(path: &Path, client_token: u64) -> io::Result<Server> {
        if check_path(path)? {
            std::fs::remove_file(path)?;
        }
        if let Some(dir) = path.parent() {
            crate::sys::create_dir_all(dir)?;
        }
        let listener = bound_aside(path)?;
        listener.set_nonblocking(true)?;
        let clients = (0..MAX_CLIENTS)
            .map(|_| Client {
                stream: None,
                request: [0; REQUEST_MAX],
                got: 0,
                answer: None,
                chunk: Chunk::new(),
                sent: 0,
                deadline_ms: 0,
                interest: 0,
                watch: None,
                backlog: Backlog::new(),
            })
            .collect();
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            clients,
            token: client_token,
            watchers_dropped: 0,
        })
    }

    /// The listening socket, for epoll.
    pub fn listener_fd(&self) -> i32 {
        self.listener.as_raw_fd()
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `token` is one of the clients'; its index.
    pub fn client_of(&self, token: u64) -> Option<usize> {
        let i = token.checked_sub(self.token)?;
        (i < MAX_CLIENTS as u64).then_some(i as usize)
    }

    /// Accepts waiting connections while a client slot is free.
    pub fn accept(&mut self, now_ms: u64, epoll: &Epoll) {
        while let Some(i) = self.clients.iter().position(|c| c.stream.is_none()) {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(_) => return,
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let token = self.token + i as u64;
            let interest = libc::EPOLLIN as u32;
            if epoll.add(stream.as_raw_fd(), token, interest).is_err() {
                continue;
            }
            let c = &mut self.clients[i];
            c.stream = Some(stream);
            c.got = 0;
            c.answer = None;
            c.chunk.clear();
            c.sent = 0;
            c.deadline_ms = now_ms + CLIENT_TIMEOUT_MS;
            c.interest = interest;
            c.watch = None;
            c.backlog.clear();
        }
    }

    /// Serves client `i`: reads its request, then writes as much of the
    /// answer as the socket takes. `hangup`: epoll said the client hung up
    /// or failed (a watcher that has nothing to write learns it so).
    pub fn serve(&mut self, i: usize, snapshot: &Snapshot<'_>, epoll: &Epoll, hangup: bool) {
        let token = self.token + i as u64;
        let watchers = self.clients.iter().filter(|c| c.watch.is_some()).count();
        let c = &mut self.clients[i];
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        if c.answer.is_none() {
            match stream.read(&mut c.request[c.got..]) {
                Ok(0) => {
                    close(c, epoll);
                    return;
                }
                Ok(n) => c.got += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    return
                }
                Err(_) => {
                    close(c, epoll);
                    return;
                }
            }
            let Some(end) = c.request[..c.got].iter().position(|&b| b == b'\n') else {
                if c.got == REQUEST_MAX {
                    // What the client sent beyond is read first, so that
                    // closing does not reset the connection before it reads
                    // the answer.
                    for _ in 0..64 {
                        if !matches!(stream.read(&mut c.request), Ok(n) if n > 0) {
                            break;
                        }
                    }
                    let _ = stream.write(BAD_REQUEST);
                    close(c, epoll);
                }
                return;
            };
            match Request::parse(&c.request[..end]) {
                Some(Request::Watch(_)) if watchers == MAX_WATCHERS => {
                    let _ = stream.write(TOO_MANY_WATCHERS);
                    close(c, epoll);
                    return;
                }
                Some(r) => {
                    c.answer = Some(Answer::new(r));
                    if let Request::Watch(f) = r {
                        c.watch = Some(f);
                    }
                }
                None => {
                    let _ = stream.write(BAD_REQUEST);
                    close(c, epoll);
                    return;
                }
            }
        } else if hangup && c.watching() && c.backlog.pending().is_empty() {
            close(c, epoll);
            return;
        }
        loop {
            if c.sent == c.chunk.bytes().len() {
                c.chunk.clear();
                c.sent = 0;
                match c.answer.as_mut() {
                    Some(a) if !a.done() => a.fill(snapshot, &mut c.chunk),
                    _ => {}
                }
                if c.chunk.bytes().is_empty() {
                    break;
                }
            }
            let Some(stream) = c.stream.as_mut() else {
                return;
            };
            match write_some(stream, c.chunk.bytes(), &mut c.sent) {
                Wrote::All => {}
                Wrote::Full => {
                    want(c, token, epoll, libc::EPOLLOUT as u32);
                    return;
                }
                Wrote::Gone => {
                    close(c, epoll);
                    return;
                }
            }
        }
        if c.watch.is_none() {
            close(c, epoll);
            return;
        }
        // A watcher has its map: it is not timed out for listening.
        if !c.backlog.lost {
            c.deadline_ms = u64::MAX;
        }
        flush(c, token, epoll);
    }

    /// Whether any client watches: changes are worth rendering.
    pub(crate) fn watched(&self) -> bool {
        self.clients.iter().any(|c| c.watch.is_some())
    }

    /// Gives every watcher `change`, at `now_ms` and `time_s` (seconds
    /// since 1970). Written when [`Server::flush`] runs, or now if its
    /// backlog is full; a watcher that cannot take the line is dropped
    /// (see [`Backlog`]).
    pub(crate) fn broadcast(&mut self, change: &Change, now_ms: u64, time_s: u64) {
        for c in self.clients.iter_mut() {
            let Some(format) = c.watch.filter(|_| c.stream.is_some()) else {
                continue;
            };
            let mut line = Line::new();
            // A line longer than LINE_MAX is cut short rather than lost.
            let _ = change.line(format, time_s, &mut line);
            if c.backlog.push(line.as_bytes()) {
                continue;
            }
            if c.backlog.lost {
                continue;
            }
            // Full: write what the socket takes now, then try again.
            let answered = c.watching();
            if let Some(stream) = c.stream.as_mut().filter(|_| answered) {
                let mut sent = 0;
                let wrote = write_some(stream, c.backlog.pending(), &mut sent);
                c.backlog.consume(sent);
                if matches!(wrote, Wrote::Gone) {
                    // The epoll loop learns it (a hang-up): nothing to write.
                    c.backlog.clear();
                    continue;
                }
                if c.backlog.push(line.as_bytes()) {
                    continue;
                }
            }
            let last = DROPPED
                .iter()
                .find(|(f, _)| *f == format)
                .map_or("", |d| d.1);
            c.backlog.overflow(last.as_bytes());
            c.deadline_ms = c.deadline_ms.min(now_ms + CLIENT_TIMEOUT_MS);
            self.watchers_dropped += 1;
        }
    }

    /// Writes the watchers' backlogs (after [`Server::broadcast`]).
    pub(crate) fn flush(&mut self, epoll: &Epoll) {
        for (i, c) in self.clients.iter_mut().enumerate() {
            if c.watching() && c.interest != libc::EPOLLOUT as u32 {
                flush(c, self.token + i as u64, epoll);
            }
        }
    }

    /// The earliest client deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.clients
            .iter()
            .filter(|c| c.stream.is_some() && c.deadline_ms != u64::MAX)
            .map(|c| c.deadline_ms)
            .min()
    }

    /// Disconnects clients past their deadline.
    pub fn expire(&mut self, now_ms: u64, epoll: &Epoll) {
        for c in self.clients.iter_mut() {
            if c.stream.is_some() && now_ms >= c.deadline_ms {
                close(c, epoll);
            }
        }
    }
}

/// Writes a watcher's backlog as far as the socket takes it: registered
/// for writability while some is left, for hang-ups only when none is;
/// disconnected once it has the line that says it was dropped.
fn flush(c: &mut Client, token: u64, epoll: &Epoll) {
    let Some(stream) = c.stream.as_mut() else {
        return;
    };
    let mut sent = 0;
    let wrote = write_some(stream, c.backlog.pending(), &mut sent);
    c.backlog.consume(sent);
    match wrote {
        Wrote::All if c.backlog.lost => close(c, epoll),
        Wrote::All => want(c, token, epoll, 0),
        Wrote::Full => want(c, token, epoll, libc::EPOLLOUT as u32),
        Wrote::Gone => close(c, epoll),
    }
}

/// Registers client `c` for `interest` (0: hang-ups and errors only).
fn want(c: &mut Client, token: u64, epoll: &Epoll, interest: u32) {
    if c.interest == interest {
        return;
    }
    let Some(stream) = c.stream.as_ref() else {
        return;
    };
    if epoll.modify(stream.as_raw_fd(), token, interest).is_err() {
        close(c, epoll);
        return;
    }
    c.interest = interest;
}

fn close(c: &mut Client, epoll: &Epoll) {
    if let Some(stream) = c.stream.take() {
        let _ = epoll.delete(stream.as_raw_fd());
    }
    c.answer = None;
    c.watch = None;
}

impl Drop for Server {
    /// A stopped daemon leaves no socket behind.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{is_dropped, Stats};
    use crate::map::ClusterMap;

    /// A server on a socket in a fresh directory, its epoll, and a map.
    fn server(name: &str) -> (Server, Epoll, PathBuf, ClusterMap) {
        use std::net::Ipv4Addr;
        let dir = std::env::temp_dir().join(format!("omd-ctl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sock");
        let server = Server::bind(&path, 100).unwrap();
        let map = crate::map::test_map(Ipv4Addr::new(10, 0, 0, 1), [Ipv4Addr::new(10, 0, 0, 2)]);
        (server, Epoll::new().unwrap(), path, map)
    }

    /// Connects a client that sends `request`, and has the server answer it.
    fn connect(
        s: &mut Server,
        epoll: &Epoll,
        path: &Path,
        map: &ClusterMap,
        request: &str,
    ) -> UnixStream {
        let mut client = UnixStream::connect(path).unwrap();
        client.write_all(request.as_bytes()).unwrap();
        s.accept(0, epoll);
        let i = s.clients.iter().rposition(|c| c.stream.is_some()).unwrap();
        let stats = Stats::new();
        let snapshot = Snapshot {
            map,
            now_ms: 0,
            time_s: 0,
            pid: 1,
            version: "t",
            stats: &stats,
        };
        s.serve(i, &snapshot, epoll, false);
        client
    }

    fn read_lines(client: &mut UnixStream, n: usize) -> Vec<String> {
        let mut text = Vec::new();
        let mut byte = [0u8];
        let mut lines = Vec::new();
        while lines.len() < n {
            assert_eq!(
                client.read(&mut byte).unwrap(),
                1,
                "end-of-file after {lines:?}"
            );
            if byte[0] == b'\n' {
                lines.push(String::from_utf8(std::mem::take(&mut text)).unwrap());
            } else {
                text.push(byte[0]);
            }
        }
        lines
    }

    #[test]
    fn a_watcher_gets_the_map_then_each_change_and_no_deadline() {
        let (mut s, epoll, path, map) = server("watch");
        let mut client = connect(&mut s, &epoll, &path, &map, "watch json\n");
        let lines = read_lines(&mut client, 2);
        assert_eq!(
            lines[0],
            "{\"event\":\"present\",\"id\":1,\"address\":\"10.0.0.1\",\"self\":true}"
        );
        assert_eq!(
            lines[1],
            "{\"event\":\"present\",\"id\":2,\"address\":\"10.0.0.2\",\"self\":false}"
        );
        // Listening, it is not timed out; registered for hang-ups only.
        assert_eq!(s.next_deadline(), None);
        assert!(s.watched());
        assert_eq!(s.clients[0].interest, 0);
        for n in map.iter() {
            s.broadcast(&Change::Joined(n), 10, 0);
        }
        s.flush(&epoll);
        let lines = read_lines(&mut client, 2);
        assert!(
            lines[0].contains("\"event\":\"joined\",\"id\":1,"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("\"event\":\"joined\",\"id\":2,"),
            "{lines:?}"
        );
        // Up to four watch; a fifth is refused, a request still served.
        let _more: Vec<UnixStream> = (0..MAX_WATCHERS - 1)
            .map(|_| connect(&mut s, &epoll, &path, &map, "watch\n"))
            .collect();
        let mut fifth = connect(&mut s, &epoll, &path, &map, "watch\n");
        let mut text = String::new();
        fifth.read_to_string(&mut text).unwrap();
        assert_eq!(text.as_bytes(), TOO_MANY_WATCHERS);
        // A request alongside is answered and closed as before.
        let mut other = connect(&mut s, &epoll, &path, &map, "hosts\n");
        let mut text = String::new();
        other.read_to_string(&mut text).unwrap();
        assert_eq!(text, "10.0.0.1\n10.0.0.2\n");
        // The watcher hangs up: the next hang-up event closes its slot.
        drop(client);
        let stats = Stats::new();
        let snapshot = Snapshot {
            map: &map,
            now_ms: 0,
            time_s: 0,
            pid: 1,
            version: "t",
            stats: &stats,
        };
        s.serve(0, &snapshot, &epoll, true);
        assert!(s.clients[0].stream.is_none() && s.clients[0].watch.is_none());
    }

    #[test]
    fn a_watcher_that_does_not_read_is_dropped_with_a_last_line_not_waited_for() {
        let (mut s, epoll, path, map) = server("slow");
        let mut slow = connect(&mut s, &epoll, &path, &map, "watch\n");
        let mut fast = connect(&mut s, &epoll, &path, &map, "watch text\n");
        assert_eq!(read_lines(&mut fast, 6).len(), 6);
        // The slow one reads nothing: the socket fills, then its backlog.
        let node = map.own_node();
        let mut sent = 0;
        while s.watchers_dropped == 0 {
            s.broadcast(&Change::Joined(node), 1_000, 0);
            s.flush(&epoll);
            sent += 1;
            // The fast one keeps up.
            read_lines(&mut fast, 1);
            assert!(sent < 1_000_000, "never dropped");
        }
        assert_eq!(s.watchers_dropped, 1);
        // Lost lines are not taken; the fast watcher goes on.
        let other = map.get(2).unwrap();
        s.broadcast(&Change::Joined(other), 1_001, 0);
        s.flush(&epoll);
        assert_eq!(read_lines(&mut fast, 1).len(), 1);
        assert_eq!(s.watchers_dropped, 1);
        // The dropped one has 5 s to read what it has.
        assert_eq!(s.next_deadline(), Some(1_000 + CLIENT_TIMEOUT_MS));
        // It reads: the map, every line taken, in order, the last line, end.
        slow.set_nonblocking(false).unwrap();
        let stats = Stats::new();
        let snapshot = Snapshot {
            map: &map,
            now_ms: 0,
            time_s: 0,
            pid: 1,
            version: "t",
            stats: &stats,
        };
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = slow.read(&mut buf).unwrap();
            text.extend_from_slice(&buf[..n]);
            // The socket has room again: epoll would say so.
            s.serve(0, &snapshot, &epoll, false);
            if s.clients[0].stream.is_none() {
                slow.read_to_end(&mut text).unwrap();
                break;
            }
        }
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("My Node-Id: 0x0001"), "{}", lines[0]);
        let changes = &lines[6..];
        assert_eq!(format!("{}\n", changes.last().unwrap()), DROPPED[0].1);
        // Every line but the one that did not fit, none after it, and the
        // last line.
        assert_eq!(changes.len(), sent);
        assert!(changes[..changes.len() - 1]
            .iter()
            .all(|l| l.ends_with("openMosix #1 (IP address 10.0.0.1) joined the cluster")));
        assert!(is_dropped(DROPPED[1].1.as_bytes()));
    }
}
