//! Test support shared by the ftslm crates: locating the read-only fixtures in
//! `../shared` beside the checkout (real models, goldens, data). Tests that need
//! them must not pass vacuously on CI, so under `CI=true` a missing fixture is a
//! panic, while on a developer machine without it the test says so and returns.
//! The same holds for the test venv's Python packages that read our files back
//! ([`python_with`]).

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

pub mod moto;
pub mod ssm_agent_stand_in;

/// The fixtures folder: `$FTSLM_SHARED` if set, else `shared/` beside the repository.
pub fn shared_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("FTSLM_SHARED") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// A path inside the fixtures, or `None` (with a note on stderr) when it is
/// missing outside CI. Under `CI=true` a missing fixture panics.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let path = shared_root().join(rel);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!(
            "fixture {} is missing: CI must run with ../shared beside the checkout",
            path.display()
        );
    }
    eprintln!("skipping: fixture {} is not present", path.display());
    None
}

/// `let path = require_shared!("models/tiny-llama3");` returns from the test when
/// the fixture is absent (and panics under CI).
#[macro_export]
macro_rules! require_shared {
    ($rel:expr) => {
        match $crate::shared($rel) {
            Some(p) => p,
            None => return,
        }
    };
}

/// The test venv's Python (`$FTSLM_PYTHON`, else `.venv/bin/python` of the
/// checkout) when it can import `module`; else `None` with a note, or a
/// panic under `CI=true` (`scripts/test.sh` installs the venv).
pub fn python_with(module: &str) -> Option<PathBuf> {
    let python = std::env::var_os("FTSLM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"));
    let ok = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    let why = format!(
        "{} cannot import {module} (pip install {module}, or set FTSLM_PYTHON)",
        python.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}");
    }
    eprintln!("skipping: {why}");
    None
}
