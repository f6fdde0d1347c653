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

/// A progress bar on stderr for `len` items; hidden under `--quiet` and
/// when stderr is not a terminal (indicatif draws nothing there).
pub fn progress_bar(quiet: bool, len: u64, what: &str) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed} < {eta}]")
    {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}
