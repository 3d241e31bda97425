//! Raw `pipe2(2)`, `splice(2)` and `F_SETPIPE_SZ` for the zero-copy relay.
//! The async driving lives in `proxy::splice`; this file only wraps the
//! syscalls. Every `unsafe` block carries a `// SAFETY:` note.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking, close-on-exec pipe: `r` is the read end, `w` the write end.
/// Both ends close when it is dropped.
#[derive(Debug)]
pub(crate) struct RawPipe {
    pub(crate) r: OwnedFd,
    pub(crate) w: OwnedFd,
}

impl RawPipe {
    /// `pipe2(O_NONBLOCK | O_CLOEXEC)`.
    pub(crate) fn new() -> io::Result<RawPipe> {
        let mut fds: [libc::c_int; 2] = [-1, -1];
        // SAFETY: `fds` is a valid, writable array of two c_ints, as pipe2
        // requires; the flags are plain constants.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody
        // else; each is wrapped exactly once.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(RawPipe { r, w })
    }

    /// Ask for a capacity of `bytes` (`F_SETPIPE_SZ`); returns the capacity
    /// the kernel granted (it rounds up to a power-of-two number of pages and
    /// may refuse beyond `/proc/sys/fs/pipe-max-size`).
    pub(crate) fn set_size(&self, bytes: usize) -> io::Result<usize> {
        let arg = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: fcntl on an fd we own with an integer argument; no pointers.
        let rc = unsafe { libc::fcntl(self.w.as_raw_fd(), libc::F_SETPIPE_SZ, arg) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    /// `read(2)` from the read end: bytes left in the pipe when splice
    /// refuses the destination go out through a buffer instead.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a valid, writable region of `buf.len()` bytes for
        // the duration of the call; the fd is owned by `self`.
        let rc = unsafe { libc::read(self.r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    /// The current capacity (`F_GETPIPE_SZ`).
    #[cfg(test)]
    pub(crate) fn size(&self) -> io::Result<usize> {
        // SAFETY: fcntl on an fd we own; no pointers.
        let rc = unsafe { libc::fcntl(self.w.as_raw_fd(), libc::F_GETPIPE_SZ) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }
}

/// `splice(fd_in, NULL, fd_out, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)`:
/// moves up to `len` bytes. One of the two fds must be a pipe. `Ok(0)` from
/// a socket means EOF. `WouldBlock` means the source is empty or the
/// destination is full.
pub(crate) fn splice(fd_in: RawFd, fd_out: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both offsets are NULL (no pointers are dereferenced); the fds
    // are borrowed from live owners for the duration of the call, and a bad
    // fd only yields EBADF.
    let rc = unsafe {
        libc::splice(
            fd_in,
            std::ptr::null_mut(),
            fd_out,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// Errors that mean "splice does not work for these fds here", after which
/// the caller copies through a buffer instead.
pub(crate) fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

#[cfg(test)]
mod tests;
