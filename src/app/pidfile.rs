//! `--pidfile`: claimed with an exclusive `flock` before anything else is
//! bound, so a second instance given the same file refuses to start
//! (naming the holder's pid) instead of overwriting it, and never deletes
//! the file of the instance that holds it. The lock is held for the
//! process's lifetime (a daemon inherits it across the fork).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A pidfile this process holds the lock on.
#[derive(Debug)]
pub(super) struct PidFile {
    file: File,
    path: PathBuf,
}

impl PidFile {
    /// Open (create) and lock `path`. Err names the holder's pid when
    /// another instance holds it.
    pub(super) fn claim(path: &Path) -> Result<PidFile, String> {
        let shown = path.display();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(|e| format!("cannot open pidfile {shown}: {e}"))?;
        match crate::sys::try_lock_exclusive(&file) {
            Ok(true) => Ok(PidFile {
                file,
                path: path.to_path_buf(),
            }),
            Ok(false) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "another process".to_string(),
                };
                Err(format!(
                    "pidfile {shown} is held by {holder} (another balance instance is running)"
                ))
            }
            Err(e) => Err(format!("cannot lock pidfile {shown}: {e}")),
        }
    }

    /// The pidfile a previous process handed over (`upgrade`): the same
    /// open file, so its lock is ours too.
    pub(super) fn inherit(path: PathBuf, file: File) -> PidFile {
        PidFile { file, path }
    }

    /// A copy of the locked file, for a successor.
    pub(super) fn dup(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        self.file.as_fd().try_clone_to_owned()
    }

    /// The terminal's side of a fork: the daemon holds the lock and
    /// removes the file; this process must not.
    pub(super) fn leave_to_child(self) {
        std::mem::forget(self);
    }

    /// Write this process's pid (after daemonizing: the daemon's).
    pub(super) fn write_pid(&mut self) -> Result<(), String> {
        let pid = std::process::id();
        let res = (|| {
            self.file.set_len(0)?;
            self.file.rewind()?;
            self.file.write_all(format!("{pid}\n").as_bytes())
        })();
        res.map_err(|e| format!("cannot write pidfile {}: {e}", self.path.display()))
    }
}

impl Drop for PidFile {
    /// Remove the file while still holding its lock, and only if the path
    /// still names the file we locked.
    fn drop(&mut self) {
        let ours = |md: std::fs::Metadata| {
            self.file
                .metadata()
                .is_ok_and(|f| (f.dev(), f.ino()) == (md.dev(), md.ino()))
        };
        if std::fs::symlink_metadata(&self.path).is_ok_and(ours) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
