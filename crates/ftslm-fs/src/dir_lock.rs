//! One writer per directory: an exclusive advisory lock on a file inside it,
//! held for as long as the [`DirLock`] lives. The operating system releases
//! it when the process ends, however it ends, so a SIGKILL never leaves a
//! stale lock behind; the file itself stays and names its last holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file inside a locked directory.
pub const LOCK_FILE: &str = ".ftslm.lock";

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{} is in use by another ftslm process ({holder}); wait for it to finish or stop it, \
         or write to another directory",
        dir.display()
    )]
    Held { dir: PathBuf, holder: String },
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive lock on a directory for the life of this value.
#[derive(Debug)]
pub struct DirLock {
    // Held open: closing the file releases the lock.
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` (which must exist) for this process, recording `holder`
    /// (who holds it, in words) in the lock file for whoever is refused.
    pub fn acquire(dir: &Path, holder: &str) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut recorded = String::new();
                // A holder that has not yet written its name reads as empty.
                let _ = file.read_to_string(&mut recorded);
                let holder = match recorded.trim() {
                    "" => "a process that has just started".to_string(),
                    named => named.to_string(),
                };
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(source)) => return Err(io(source)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(holder.as_bytes()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(DirLock { _file: file, path })
    }

    /// This process, as [`DirLock::acquire`]'s `holder`: its pid and
    /// command line.
    pub fn this_process() -> String {
        let command: Vec<String> = std::env::args().collect();
        format!("pid {}: {}", std::process::id(), command.join(" "))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second lock in the same process is refused with the first's name
    /// (flock locks belong to the open file, so this is the same refusal
    /// another process gets), and dropping the first frees the directory.
    #[test]
    fn a_held_directory_is_refused_naming_its_holder_until_released() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(tmp.path(), "pid 1: ftslm train").unwrap();
        let err = DirLock::acquire(tmp.path(), "pid 2").unwrap_err();
        assert!(
            matches!(&err, LockError::Held { holder, .. } if holder == "pid 1: ftslm train"),
            "{err}"
        );
        assert!(err.to_string().contains("in use by another ftslm process"));
        drop(first);
        let second = DirLock::acquire(tmp.path(), "pid 2").unwrap();
        assert_eq!(std::fs::read_to_string(second.path()).unwrap(), "pid 2");
    }
}
