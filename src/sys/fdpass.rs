//! File descriptors between two processes over a `SOCK_SEQPACKET` Unix
//! socket pair (SCM_RIGHTS), and the one descriptor a successor inherits
//! across `exec`: what `upgrade` hands the listening sockets over with.
//! Message boundaries are kept, so each message is one frame.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;
use std::time::Duration;

/// The most descriptors one message carries (the kernel's SCM_MAX_FD is 253).
pub(crate) const MAX_FDS: usize = 200;
/// The largest frame: a message longer than this is refused, not cut.
pub(crate) const MAX_FRAME: usize = 64 << 10;

/// A connected `SOCK_SEQPACKET` pair, close-on-exec.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: socketpair writes two descriptors into the array we own.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Both send and receive give up after `t` (SO_SNDTIMEO, SO_RCVTIMEO).
pub(crate) fn set_timeouts(fd: BorrowedFd<'_>, t: Duration) -> io::Result<()> {
    let sock = socket2::SockRef::from(&fd);
    sock.set_read_timeout(Some(t))?;
    sock.set_write_timeout(Some(t))
}

/// Send one frame with `fds` attached (at most [`MAX_FDS`]).
pub(crate) fn send(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS || data.len() > MAX_FRAME || data.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let fd_bytes = std::mem::size_of_val(raw.as_slice());
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    // u64 words: the control buffer must be aligned for cmsghdr.
    let mut cbuf = vec![0u64; space.div_ceil(8).max(1)];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` zeroed, aligned bytes we
        // own, enough for one header with `fd_bytes` of data (CMSG_SPACE);
        // CMSG_FIRSTHDR is therefore non-null and CMSG_DATA lies inside it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
            std::ptr::copy_nonoverlapping(raw.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), fd_bytes);
        }
    }
    loop {
        // SAFETY: msg and everything it points to (iov, data, cbuf) live
        // across the call; sendmsg only reads them.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receive one frame and the descriptors attached to it (close-on-exec).
/// `Ok(None)` at end of stream (the peer closed or exited). A frame cut
/// short (too long, or too many descriptors) is an error: its
/// descriptors are closed.
pub(crate) fn recv(sock: BorrowedFd<'_>) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut data = vec![0u8; MAX_FRAME];
    let fd_bytes = MAX_FDS * std::mem::size_of::<RawFd>();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: msg points at buffers we own for the whole call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of
    // well-formed headers; CMSG_FIRSTHDR/NXTHDR stay inside them, and each
    // SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / 4 descriptors
    // that are now ours.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let p = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(p.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message cut short (too long or too many descriptors)",
        ));
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    data.truncate(n);
    Ok(Some((data, fds)))
}

/// Let `cmd`'s process find `fd` as descriptor `at` (dup2 between fork
/// and exec: the copy is not close-on-exec; nothing else leaks).
pub(crate) fn inherit_as(cmd: &mut Command, fd: OwnedFd, at: RawFd) {
    use std::os::unix::process::CommandExt;
    let raw = fd.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls dup2/fcntl, which are async-signal-safe; `fd` is kept alive by
    // the closure (moved in) until the Command is dropped.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &fd;
            if raw == at {
                let flags = libc::fcntl(at, libc::F_GETFD);
                if flags < 0 || libc::fcntl(at, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(raw, at) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Take descriptor `fd` (inherited across exec) if it is a Unix socket,
/// and make it close-on-exec. None: not open, or not a socket (then it is
/// left alone).
pub(crate) fn take_inherited(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: an all-zero stat is a valid out-buffer; fstat only writes it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on any integer is safe (EBADF if not open).
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    // SAFETY: as above; setting FD_CLOEXEC touches no memory.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the descriptor is open, a socket, and this process's parent
    // placed it here for us alone; nothing else in the process owns it
    // (callers take it once).
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn frames_carry_descriptors_and_eof_is_none() {
        let (a, b) = seqpacket_pair().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        send(a.as_fd(), b"one", &[l.as_fd()]).unwrap();
        send(a.as_fd(), b"two", &[]).unwrap();
        let (d, fds) = recv(b.as_fd()).unwrap().unwrap();
        assert_eq!(d, b"one");
        assert_eq!(fds.len(), 1);
        let got = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        assert_eq!(got.local_addr().unwrap(), addr);
        assert_eq!(recv(b.as_fd()).unwrap().unwrap().0, b"two");
        drop(a);
        assert!(recv(b.as_fd()).unwrap().is_none());
    }

    #[test]
    fn take_inherited_refuses_a_non_socket() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(take_inherited(f.as_raw_fd()).is_none());
    }
}
