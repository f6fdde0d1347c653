//! Printing helpers shared by the commands.

use serde::Serialize;

/// Pretty JSON on stdout, for `--json`.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A one-line note on stderr unless `--quiet`.
pub fn note(quiet: bool, message: impl AsRef<str>) {
    if !quiet {
        eprintln!("note: {}", message.as_ref());
    }
}
