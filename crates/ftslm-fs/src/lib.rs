//! ftslm-fs owns crash-safe writing for every ftslm crate. A file is written
//! beside its destination under a `<name>.tmp-<pid>` name, synced, and
//! renamed over it; a directory is filled under such a name and renamed when
//! complete. A reader, or a resumed run, therefore sees the old content or the
//! new, never half of one, and anything named `*.tmp-*` is debris of a killed
//! process that [`remove_debris`] may clear — once the directory's
//! [`DirLock`] is held, since a live writer holds it.

#![forbid(unsafe_code)]

mod dir_lock;
mod output;

pub use dir_lock::{DirLock, LockError, LOCK_FILE};
pub use output::{
    available_bytes, check_free_space, check_not_an_input, check_replaceable, check_writable_dir,
    OutputError,
};

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The marker every temporary name carries.
pub const TMP_MARK: &str = ".tmp-";

/// A filesystem step that failed, with the path it was applied to.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct FsError {
    /// What was being done, as a verb phrase ("write", "rename into place").
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FsError {
    fn new(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        FsError {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `<name>.tmp-<pid><tag>` beside `path`: the same directory, so the final
/// rename is atomic.
pub fn tmp_name(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{name}{TMP_MARK}{}{tag}", std::process::id()))
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Like [`write_atomic`], for content written piece by piece: `fill` writes
/// into the temporary file, which is synced and renamed only if it succeeds
/// (and removed if it fails).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> Result<(), FsError> {
    let tmp = tmp_name(path, "");
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        fill(&mut file)?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(FsError::new("write", path, e));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        FsError::new("rename into place", path, e)
    })
}

/// A directory being assembled under a temporary name.
#[derive(Debug)]
pub struct StagedDir {
    tmp: PathBuf,
    dest: PathBuf,
}

impl StagedDir {
    /// Starts `dest` afresh (removing debris of an earlier attempt by this pid).
    pub fn create(dest: &Path) -> Result<StagedDir, FsError> {
        let tmp = tmp_name(dest, "");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| FsError::new("remove", &tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| FsError::new("create", &tmp, e))?;
        Ok(StagedDir {
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// Where to write the directory's files.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Moves the finished directory to its name, replacing an older one. The
    /// old one is first renamed to a `*.tmp-*` name, so a crash in between
    /// leaves debris that the next start removes rather than a mixed directory.
    pub fn publish(self) -> Result<PathBuf, FsError> {
        sync_dir(&self.tmp);
        let old = tmp_name(&self.dest, "-old");
        let replaced = self.dest.exists();
        if replaced {
            if old.exists() {
                fs::remove_dir_all(&old).map_err(|e| FsError::new("remove", &old, e))?;
            }
            fs::rename(&self.dest, &old).map_err(|e| FsError::new("move aside", &self.dest, e))?;
        }
        fs::rename(&self.tmp, &self.dest)
            .map_err(|e| FsError::new("rename into place", &self.dest, e))?;
        if let Some(parent) = self.dest.parent() {
            sync_dir(parent);
        }
        if replaced {
            fs::remove_dir_all(&old).map_err(|e| FsError::new("remove", &old, e))?;
        }
        Ok(self.dest)
    }

    /// Removes the unfinished directory (best effort: it is debris either way).
    pub fn abandon(self) {
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

/// Copies a finished directory's files into a new staged copy at `dest`.
pub fn copy_dir_atomic(src: &Path, dest: &Path) -> Result<PathBuf, FsError> {
    let staged = StagedDir::create(dest)?;
    let entries = fs::read_dir(src).map_err(|e| FsError::new("read", src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| FsError::new("read", src, e))?;
        let from = entry.path();
        if from.is_file() {
            fs::copy(&from, staged.path().join(entry.file_name()))
                .map_err(|e| FsError::new("copy", &from, e))?;
        }
    }
    staged.publish()
}

/// Makes the rename durable; best effort because not every filesystem lets a
/// directory be opened for syncing, and the rename itself is what matters.
fn sync_dir(dir: &Path) {
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Removes `*.tmp-*` entries left in `dir` by killed processes, returning what
/// was removed.
pub fn remove_debris(dir: &Path) -> Result<Vec<PathBuf>, FsError> {
    let mut removed = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(FsError::new("read", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| FsError::new("read", dir, e))?;
        if !entry.file_name().to_string_lossy().contains(TMP_MARK) {
            continue;
        }
        let path = entry.path();
        let result = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        result.map_err(|e| FsError::new("remove leftover", &path, e))?;
        removed.push(path);
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_dir_replaces_whole_and_debris_is_found() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("best_model");
        let s = StagedDir::create(&dest).unwrap();
        fs::write(s.path().join("a"), "1").unwrap();
        assert!(!dest.exists(), "invisible until published");
        s.publish().unwrap();
        let s = StagedDir::create(&dest).unwrap();
        fs::write(s.path().join("b"), "2").unwrap();
        s.publish().unwrap();
        assert!(
            !dest.join("a").exists() && dest.join("b").exists(),
            "replaced, not merged"
        );

        write_atomic(&root.path().join("x.json"), b"{}").unwrap();
        fs::create_dir(root.path().join("checkpoint-4.tmp-123")).unwrap();
        fs::write(root.path().join("metrics.jsonl.tmp-9"), "partial").unwrap();
        let removed = remove_debris(root.path()).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        let left: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "best_model and x.json remain: {left:?}");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_no_debris() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("report.json");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |f| {
            f.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.action, "write");
        assert!(err.to_string().contains("report.json"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);

        let staged = StagedDir::create(&root.path().join("merged")).unwrap();
        fs::write(staged.path().join("w"), "x").unwrap();
        staged.abandon();
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }
}
