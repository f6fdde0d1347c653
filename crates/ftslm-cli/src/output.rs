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

/// An error and its causes on one line, each cause once: library errors
/// often include their source's text in their own message, and printing
/// the chain as well said every cause twice ("(os error 2): No such file
/// or directory (os error 2)").
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The AWS SDK's own error chains under `err` (`-vv`): one sentence is what
/// a user sees, the SDK's detail is for when that sentence is not enough.
pub fn sdk_details(err: &anyhow::Error) -> Vec<String> {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<ftslm_cloud::aws::AwsError>())
        .filter_map(|aws| aws.sdk_detail().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file (os error 2)");
        let err = anyhow::Error::new(io)
            .context("cannot read data.jsonl: No such file (os error 2)")
            .context("cannot read --data data.jsonl");
        assert_eq!(
            error_chain(&err),
            "cannot read --data data.jsonl: cannot read data.jsonl: No such file (os error 2)"
        );
    }
}
