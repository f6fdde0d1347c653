//! Crash-safe writes for the run directory: ftslm-fs's atomic files and
//! staged directories (its errors convert into [`TrainError`]), and JSON
//! written the same way.

use std::path::Path;

pub use ftslm_fs::{copy_dir_atomic, remove_debris, write_atomic, StagedDir};

use crate::error::TrainError;

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|e| TrainError::io("cannot serialise JSON for", path, std::io::Error::other(e)))?;
    text.push(b'\n');
    Ok(write_atomic(path, &text)?)
}
