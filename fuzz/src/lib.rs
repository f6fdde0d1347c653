//! What the fuzz targets share: each writes the fuzzer's bytes to a file in
//! a scratch folder made once per process, then opens it through the same
//! path-based reader a user's command uses.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The scratch folder (under $TMPDIR), made once.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ftslm-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a writable temp folder");
        dir
    })
}

/// `data` written to `scratch()/name`, returning the path.
pub fn write(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, data).expect("the scratch folder takes writes");
    path
}
