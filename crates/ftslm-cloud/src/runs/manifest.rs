//! What a pull trusts from the bucket: the `SHA256SUMS` manifest (in
//! `sha256sum` format) and object keys turned into paths that stay inside the
//! output directory whatever the bucket holds.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Relative path (`/`-separated, as in the keys) → lower-case hex SHA-256.
pub(crate) type Manifest = BTreeMap<String, String>;

/// Parses `sha256sum` output: `<64 hex>  <path>` (or `<64 hex> *<path>`, the
/// binary-mode marker) per line; a leading `./` is dropped. `source` names the
/// manifest in errors.
pub(crate) fn parse_manifest(text: &str, source: &str) -> Result<Manifest, String> {
    let mut entries = Manifest::new();
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| format!("{source} line {number}: {why}: `{line}`");
        if line.starts_with('\\') {
            // sha256sum escapes names holding `\` or a newline; runs have none.
            return Err(bad("escaped file names are not supported"));
        }
        let (digest, rest) = line
            .split_once(' ')
            .ok_or_else(|| bad("expected `<sha256>  <path>`"))?;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the digest is not 64 hex digits"));
        }
        let path = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix('*'))
            .ok_or_else(|| bad("expected two spaces (or ` *`) between digest and path"))?;
        let path = path.strip_prefix("./").unwrap_or(path);
        if path.is_empty() {
            return Err(bad("no path"));
        }
        let digest = digest.to_ascii_lowercase();
        if let Some(earlier) = entries.insert(path.to_string(), digest.clone()) {
            if earlier != digest {
                return Err(bad("the path is listed twice with different digests"));
            }
        }
    }
    Ok(entries)
}

/// `relative` (a key below the run folder) as a path below the output
/// directory, or why it cannot be one: an absolute path, `..`, `.`, an empty
/// segment, a backslash or NUL would let a crafted key write elsewhere (or, on
/// Windows, mean something else).
pub(crate) fn safe_relative_path(relative: &str) -> Result<PathBuf, &'static str> {
    if relative.is_empty() {
        return Err("the key names the run folder itself");
    }
    if relative.starts_with('/') {
        return Err("it is an absolute path");
    }
    if relative.contains(['\\', '\0']) {
        return Err("it holds a backslash or NUL");
    }
    if cfg!(windows) && relative.contains(':') {
        return Err("it holds `:` (a drive or stream name on Windows)");
    }
    let mut path = PathBuf::new();
    for segment in relative.split('/') {
        match segment {
            "" => return Err("it has an empty path segment (`//`)"),
            "." | ".." => return Err("it has a `.` or `..` segment"),
            s => path.push(s),
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn sha256sum_lines_in_both_modes_parse() {
        let text = format!("{D}  final_model/a.bin\n{} *./logs/x\n\n", D.to_uppercase());
        let m = parse_manifest(&text, "SHA256SUMS").unwrap();
        assert_eq!(m.get("final_model/a.bin").map(String::as_str), Some(D));
        assert_eq!(m.get("logs/x").map(String::as_str), Some(D));
    }

    #[test]
    fn malformed_lines_are_named() {
        let err = parse_manifest("abc  x\n", "SHA256SUMS").unwrap_err();
        assert!(err.contains("line 1") && err.contains("64 hex"), "{err}");
        let twice = format!("{D}  x\n{}  x\n", "0".repeat(64));
        assert!(parse_manifest(&twice, "M").unwrap_err().contains("twice"));
    }

    #[test]
    fn keys_that_leave_the_directory_are_refused() {
        for key in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a\\..\\b",
            "",
        ] {
            assert!(safe_relative_path(key).is_err(), "{key}");
        }
        assert_eq!(
            safe_relative_path("final_model/adapter.safetensors").unwrap(),
            PathBuf::from("final_model").join("adapter.safetensors")
        );
    }
}
