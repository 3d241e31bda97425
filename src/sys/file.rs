//! Opening files the operator names (`--config`, `--state-file`) without
//! being led astray: a FIFO must not block the open, a device must not be
//! read, and a file we create must not be a planted symlink.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Open `path` for reading and refuse anything but a regular file (after
/// following symlinks). `O_NONBLOCK` keeps the open of a FIFO from waiting
/// for a writer; the type is checked on the open descriptor (`fstat`), so
/// it is the file we will read. On a regular file `O_NONBLOCK` changes
/// nothing.
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let ft = f.metadata()?.file_type();
    if !ft.is_file() {
        return Err(not_regular(ft));
    }
    Ok(f)
}

/// The contents of the regular file `path` (see [`open_regular`]), read
/// up to `max` bytes; `Ok(None)` when it holds more.
pub(crate) fn read_capped(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut buf = Vec::new();
    open_regular(path)?.take(max + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= max).then_some(buf))
}

/// The error for a path that is not a regular file, naming what it is.
pub(crate) fn not_regular(ft: std::fs::FileType) -> io::Error {
    let what = if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_dir() {
        "a directory"
    } else {
        "not a plain file"
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file ({what})"),
    )
}

/// Create `path` for writing with `mode`, failing if anything exists there
/// (`O_CREAT|O_EXCL`) and never through a symlink (`O_NOFOLLOW`): a link
/// planted at a predictable name cannot redirect the write.
pub(crate) fn create_exclusive(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(mode)
        .open(path)
}

/// Whether a process with this id exists (`/proc/PID`).
pub(crate) fn process_exists(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}
