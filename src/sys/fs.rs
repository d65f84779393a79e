//! Files: opening, creating, renaming and syncing them by path, whether one
//! exists or may be executed, and what a descriptor or a path refers to.
//! The paths are C strings made at start-up, so none of this allocates.

use std::ffi::{CStr, CString};
use std::io;
use std::mem;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{cvt, cvt_r};

/// Opens `path` with `flags`; `mode` is used only with `O_CREAT`.
pub(crate) fn open(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // SAFETY: path is NUL-terminated and alive for the call; the mode is
    // passed as open(2) wants it.
    let fd = cvt_r(|| unsafe { libc::open(path.as_ptr(), flags, libc::c_uint::from(mode)) })?;
    // SAFETY: open just returned this descriptor, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates the directory `path`.
pub(crate) fn mkdir(path: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: path is NUL-terminated and alive for the call.
    cvt(unsafe { libc::mkdir(path.as_ptr(), mode) })?;
    Ok(())
}

/// Creates the directory `path` and its missing parents (mode 0777 less the
/// umask), as `std::fs::create_dir_all` does, without the generic
/// `DirBuilder` machinery: an existing directory is fine. Start-up only (it
/// allocates the C strings).
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    if path.as_os_str().is_empty() {
        return Ok(());
    }
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    match mkdir(&c, 0o777) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) if path.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    match path.parent() {
        Some(parent) => create_dir_all(parent)?,
        None => return Err(io::ErrorKind::NotFound.into()),
    }
    match mkdir(&c, 0o777) {
        Err(_) if path.is_dir() => Ok(()),
        other => other,
    }
}

/// Renames `from` to `to`, replacing `to` atomically.
pub(crate) fn rename(from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: both paths are NUL-terminated and alive for the call.
    cvt(unsafe { libc::rename(from.as_ptr(), to.as_ptr()) })?;
    Ok(())
}

/// Removes the file `path`.
pub(crate) fn unlink(path: &CStr) -> io::Result<()> {
    // SAFETY: path is NUL-terminated and alive for the call.
    cvt(unsafe { libc::unlink(path.as_ptr()) })?;
    Ok(())
}

/// Flushes what was written to `fd` (a file or a directory) to the disk.
pub(crate) fn fsync(fd: RawFd) -> io::Result<()> {
    // SAFETY: fsync takes no pointers.
    cvt(unsafe { libc::fsync(fd) })?;
    Ok(())
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st = mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is a stat buffer fstat fills on success.
    cvt(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so st is initialised.
    Ok(unsafe { st.assume_init() })
}

fn is_regular(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// Whether `fd` refers to a regular file.
pub(crate) fn is_regular_fd(fd: RawFd) -> io::Result<bool> {
    fstat(fd).map(|st| is_regular(&st))
}

/// Whether `path` itself (`lstat`: a symlink is not followed, and is not a
/// regular file) is a regular file.
pub(crate) fn is_regular_path(path: &CStr) -> io::Result<bool> {
    let mut st = mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: path is NUL-terminated; st is a stat buffer lstat fills on success.
    cvt(unsafe { libc::lstat(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: lstat succeeded, so st is initialised.
    Ok(is_regular(&unsafe { st.assume_init() }))
}

/// Whether `path` is a file this process may execute.
pub fn executable(path: &CStr) -> io::Result<()> {
    // SAFETY: path is NUL-terminated and alive for the call.
    cvt(unsafe { libc::access(path.as_ptr(), libc::X_OK) })?;
    Ok(())
}

/// Whether `path` exists (following symlinks).
pub fn exists(path: &CStr) -> bool {
    // SAFETY: path is NUL-terminated and alive for the call.
    unsafe { libc::access(path.as_ptr(), libc::F_OK) == 0 }
}

/// The device and inode of what `fd` refers to (how `JOURNAL_STREAM` names
/// the journal's stream).
pub fn device_and_inode(fd: RawFd) -> Option<(u64, u64)> {
    fstat(fd).ok().map(|st| (st.st_dev, st.st_ino))
}
