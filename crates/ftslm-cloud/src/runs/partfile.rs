//! The on-disk state of one file being pulled, which is what makes a killed
//! pull resumable: `NAME.part` (the file at its final size, parts written at
//! their offsets) and `NAME.part.done`, whose first line records what the
//! parts refer to and whose further lines are the indices of finished parts,
//! appended only after that part's bytes were written and synced:
//!
//! ```text
//! ftslm-parts v1 size=204800 part_size=16384 etag=5d41402abc4b2a76b9719d911017c592
//! 0
//! 2
//! 1
//! ```
//!
//! A record whose first line differs (another part size, or the object was
//! replaced and has a new ETag) is not trusted: the file starts over.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::aws::AwsError;

/// Appended to a file's name while it is being downloaded.
pub const PART_SUFFIX: &str = ".part";
/// Appended to a file's name for its record of finished parts.
pub const PART_DONE_SUFFIX: &str = ".part.done";

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// The first line of a `.part.done` record.
pub(crate) fn header(size: u64, part_size: u64, etag: Option<&str>) -> String {
    format!(
        "ftslm-parts v1 size={size} part_size={part_size} etag={}",
        etag.map(|e| e.trim_matches('"')).unwrap_or("-")
    )
}

/// A `.part` file and its record. Files are opened per write, not held: a
/// run with many files must not run out of file descriptors.
pub(crate) struct PartFile {
    pub part_path: PathBuf,
    pub done_path: PathBuf,
    /// One appender at a time keeps record lines whole.
    record: Mutex<()>,
}

pub(crate) fn io_error(path: &Path) -> impl Fn(io::Error) -> AwsError + '_ {
    move |source| AwsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl PartFile {
    /// Prepares the `.part` of `dest`, resuming it when its record matches
    /// `header` and its size is `size`; otherwise starts it afresh. Returns it
    /// with the indices (below `parts`) already finished.
    pub fn open(
        dest: &Path,
        header: &str,
        size: u64,
        parts: u64,
    ) -> Result<(PartFile, BTreeSet<u64>), AwsError> {
        let part_path = with_suffix(dest, PART_SUFFIX);
        let done_path = with_suffix(dest, PART_DONE_SUFFIX);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let finished = resumable(&part_path, &done_path, header, size, parts);
        if finished.is_none() {
            let data = File::create(&part_path).map_err(io_error(&part_path))?;
            data.set_len(size).map_err(io_error(&part_path))?;
            let mut record = File::create(&done_path).map_err(io_error(&done_path))?;
            writeln!(record, "{header}").map_err(io_error(&done_path))?;
        }
        let file = PartFile {
            part_path,
            done_path,
            record: Mutex::new(()),
        };
        Ok((file, finished.unwrap_or_default()))
    }

    /// Writes part `index` at `offset` and only then records it as finished,
    /// so a record never claims bytes that are not on disk.
    pub fn write_part(&self, index: u64, offset: u64, bytes: &[u8]) -> Result<(), AwsError> {
        let err = io_error(&self.part_path);
        let mut data = OpenOptions::new()
            .write(true)
            .open(&self.part_path)
            .map_err(&err)?;
        data.seek(SeekFrom::Start(offset)).map_err(&err)?;
        data.write_all(bytes).map_err(&err)?;
        data.sync_data().map_err(&err)?;
        drop(data);
        let _one_at_a_time = self.record.lock().map_err(|_| AwsError::RuntimeGone)?;
        let err = io_error(&self.done_path);
        let mut record = OpenOptions::new()
            .append(true)
            .open(&self.done_path)
            .map_err(&err)?;
        writeln!(record, "{index}").map_err(&err)?;
        record.flush().map_err(err)
    }

    /// Puts the verified download under its final name and drops the record.
    pub fn commit(&self, dest: &Path) -> Result<(), AwsError> {
        fs::rename(&self.part_path, dest).map_err(io_error(dest))?;
        remove_if_present(&self.done_path)
    }

    /// Removes a download that failed verification, so the next pull starts
    /// that file over instead of trusting its record.
    pub fn discard(&self) -> Result<(), AwsError> {
        remove_if_present(&self.part_path)?;
        remove_if_present(&self.done_path)
    }
}

fn remove_if_present(path: &Path) -> Result<(), AwsError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(path)(e)),
        _ => Ok(()),
    }
}

/// The finished parts of an earlier attempt, if its record and `.part` match.
/// Lines that are not a part index (a line cut short by a crash) are ignored:
/// that part is simply fetched again.
fn resumable(
    part_path: &Path,
    done_path: &Path,
    header: &str,
    size: u64,
    parts: u64,
) -> Option<BTreeSet<u64>> {
    let length = fs::metadata(part_path).ok()?.len();
    if length != size {
        return None;
    }
    let mut lines = BufReader::new(File::open(done_path).ok()?).lines();
    if lines.next()?.ok()? != header {
        return None;
    }
    Some(
        lines
            .map_while(Result::ok)
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .filter(|&i| i < parts)
            .collect(),
    )
}

/// The digests a file can be checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Sha256,
    Md5,
}

/// Lower-case hex digest of the file at `path`.
pub(crate) fn digest_file(path: &Path, algorithm: Algorithm) -> Result<String, AwsError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut sha = Sha256::new();
    let mut md5 = Md5::new();
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(path)(e)),
        };
        match algorithm {
            Algorithm::Sha256 => sha.update(&buf[..n]),
            Algorithm::Md5 => md5.update(&buf[..n]),
        }
    }
    Ok(match algorithm {
        Algorithm::Sha256 => hex(&sha.finalize()),
        Algorithm::Md5 => hex(&md5.finalize()),
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
