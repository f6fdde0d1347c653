//! Checks a command makes on its output paths before any work: an existing
//! file is replaced only when the user said so, and an output is never one
//! of the command's own inputs (the same file under another name included).

use std::path::{Path, PathBuf};

/// An output path a command must not write.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "{} already exists; pass --force to replace it, or choose another {flag}",
        path.display()
    )]
    Exists { path: PathBuf, flag: String },
    #[error(
        "{what} needs {} but {} has {} free; free some space or choose another folder",
        gib(*needed),
        path.display(),
        gib(*available)
    )]
    NoSpace {
        what: String,
        path: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error(
        "{flag} {} is the same file as {input_flag} {}; write the output elsewhere",
        path.display(),
        input.display()
    )]
    IsInput {
        path: PathBuf,
        flag: String,
        input: PathBuf,
        input_flag: String,
    },
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// The folder holding `path` or where it would be created: `path` itself
/// when it exists, else the nearest folder above it that does.
fn nearest_existing(path: &Path) -> &Path {
    let mut at = path;
    loop {
        if at.exists() {
            return at;
        }
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => return Path::new("."),
        }
    }
}

/// Bytes an unprivileged process may still write on the file system of
/// `path` (or of the nearest folder above it that exists); `None` where the
/// platform cannot say.
pub fn available_bytes(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let stat = rustix::fs::statvfs(nearest_existing(path)).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Refuses, before any long work, to write `needed` bytes of `what` under
/// `path` when its file system has less free.
pub fn check_free_space(path: &Path, needed: u64, what: &str) -> Result<(), OutputError> {
    match available_bytes(path) {
        Some(available) if available < needed => Err(OutputError::NoSpace {
            what: what.to_string(),
            path: nearest_existing(path).to_path_buf(),
            needed,
            available,
        }),
        _ => Ok(()),
    }
}

/// Refuses `path` (given by `flag`) when it exists, unless `force`.
pub fn check_replaceable(path: &Path, flag: &str, force: bool) -> Result<(), OutputError> {
    if !force && (path.exists() || path.is_symlink()) {
        return Err(OutputError::Exists {
            path: path.to_path_buf(),
            flag: flag.to_string(),
        });
    }
    Ok(())
}

/// Refuses `output` (given by `flag`) when it is one of `inputs` (path and
/// the flag that named it), whatever `--force` says.
pub fn check_not_an_input(
    output: &Path,
    flag: &str,
    inputs: &[(&Path, &str)],
) -> Result<(), OutputError> {
    for &(input, input_flag) in inputs {
        if same_file(output, input) {
            return Err(OutputError::IsInput {
                path: output.to_path_buf(),
                flag: flag.to_string(),
                input: input.to_path_buf(),
                input_flag: input_flag.to_string(),
            });
        }
    }
    Ok(())
}

/// Checks, before any long work, that `dir` can be written: the directory
/// itself when it exists, else the nearest folder above it that does (where
/// it would be created). A probe file is created there and removed at once;
/// nothing else is written.
pub fn check_writable_dir(dir: &Path) -> Result<(), crate::FsError> {
    let existing = nearest_existing(dir);
    if !existing.is_dir() {
        return Err(crate::FsError {
            action: "write into",
            path: existing.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "it is a file, not a folder",
            ),
        });
    }
    let probe = existing.join(format!(".ftslm-probe-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|source| crate::FsError {
        action: "write into",
        path: existing.to_path_buf(),
        source,
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Whether two paths name one file: the same device and inode where both
/// exist (hard links and symlinks included), else the same absolute path.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(ca), Ok(cb)) => ca == cb,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_from_the_file_system_and_a_larger_need_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let not_yet = tmp.path().join("a/b/out");
        let available = available_bytes(&not_yet).expect("statvfs answers on Linux");
        assert!(available > 0);
        check_free_space(&not_yet, 1, "the test").unwrap();
        let err =
            check_free_space(&not_yet, available + (1 << 40), "a 1 TiB checkpoint").unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("a 1 TiB checkpoint needs "),
            "{message}"
        );
        assert!(
            message.contains(&tmp.path().display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn existing_outputs_need_force_and_inputs_are_never_outputs() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data.jsonl");
        std::fs::write(&data, "{}\n").unwrap();
        let fresh = tmp.path().join("report.json");
        assert!(check_replaceable(&fresh, "--out", false).is_ok());
        let err = check_replaceable(&data, "--out", false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert!(check_replaceable(&data, "--out", true).is_ok());

        // The same file by another spelling, and by a hard link.
        let spelled = tmp.path().join(".").join("data.jsonl");
        let linked = tmp.path().join("linked.jsonl");
        std::fs::hard_link(&data, &linked).unwrap();
        for out in [&data, &spelled, &linked] {
            let err = check_not_an_input(out, "--out", &[(&data, "--data")]).unwrap_err();
            assert!(err.to_string().contains("--data"), "{err}");
        }
        assert!(check_not_an_input(&fresh, "--out", &[(&data, "--data")]).is_ok());
    }

    #[test]
    fn writability_is_checked_where_the_folder_would_be_created() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(check_writable_dir(&tmp.path().join("a/b/c")).is_ok());
        assert!(!tmp.path().join("a").exists(), "nothing is created");
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = check_writable_dir(&file.join("run")).unwrap_err();
        assert!(err.to_string().contains("not a folder"), "{err}");
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no probe left"
        );
    }
}
