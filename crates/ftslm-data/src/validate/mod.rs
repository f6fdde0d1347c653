//! Reading JSONL training files line by line, and saying precisely what is wrong.
//!
//! The original system skipped lines it could not parse; a user then trained on
//! less data than they thought. Here every line is either a record or a
//! [`Problem`] with its file, line, what is wrong and how to fix it, and loaders
//! refuse a file that has any.

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::record::{Record, MEDICAL_IE_FIELDS};

mod line;

pub use line::parse_line;
use line::problem;

/// Which rules a file's records must follow beyond the basic record format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Output is an object with exactly the seven medical-IE fields, each string or null.
    MedicalIe,
    /// Any instruction or chat record.
    Generic,
    /// MedicalIe when the file's first record answers with any medical-IE field, else Generic.
    Auto,
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Schema::MedicalIe => "medical-ie",
            Schema::Generic => "generic",
            Schema::Auto => "auto",
        })
    }
}

/// One thing wrong with one line of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub line: usize,
    pub column: Option<usize>,
    pub what: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)?;
        if let Some(c) = self.column {
            write!(f, ":{c}")?;
        }
        write!(f, ": {} — {}", self.what, self.fix)
    }
}

/// Counts for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    pub path: PathBuf,
    /// Non-blank lines.
    pub lines: usize,
    pub valid: usize,
    pub invalid: usize,
    pub schema: Schema,
}

/// The outcome of validating a set of files together.
#[derive(Debug, Clone, Default)]
pub struct ValidationReport {
    pub files: Vec<FileSummary>,
    pub problems: Vec<Problem>,
}

impl ValidationReport {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source} — check the path and its permissions")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} has {} invalid line(s); first: {}\nrun `ftslm data validate {}` to list them all", .path.display(), .problems.len(), .problems[0], .path.display())]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
    #[error("{path} holds no records — it is empty")]
    Empty { path: PathBuf },
    #[error("{path} is not a regular file (a pipe, device or folder); give a JSONL file")]
    NotAFile { path: PathBuf },
}

/// A record with the (1-based) line it came from.
#[derive(Debug, Clone)]
pub struct LineRecord {
    pub line: usize,
    pub record: Record,
}

/// Reads every record of a JSONL file; any bad line makes the whole read fail
/// with all problems listed, so training never silently runs on a subset.
pub fn read_records(path: &Path) -> Result<Vec<LineRecord>, DataError> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for item in TextLines::open(path)? {
        let (line, content) = item?;
        let content = match content.as_deref() {
            Ok(content) => content,
            Err(offset) => {
                problems.push(not_utf8(path, line, *offset));
                continue;
            }
        };
        match parse_line(path, line, content, Schema::Generic) {
            Ok(record) => out.push(LineRecord { line, record }),
            Err(mut p) => problems.append(&mut p),
        }
    }
    if !problems.is_empty() {
        return Err(DataError::Invalid {
            path: path.to_path_buf(),
            problems,
        });
    }
    if out.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

/// Validates files together: each line on its own, then duplicate narratives
/// within a file and the same narrative in two files (train/validation overlap).
pub fn validate_files(paths: &[PathBuf], schema: Schema) -> Result<ValidationReport, DataError> {
    let mut report = ValidationReport::default();
    // Digest of the normalised narrative -> where it was first seen. The
    // file is read line by line; only these 16 bytes per record are kept.
    let mut seen: HashMap<NarrativeDigest, (usize, usize)> = HashMap::new();
    for (file_index, path) in paths.iter().enumerate() {
        let mut summary = FileSummary {
            path: path.clone(),
            lines: 0,
            valid: 0,
            invalid: 0,
            schema,
        };
        let mut empty = true;
        let mut problems = Vec::new();
        for item in TextLines::open(path)? {
            let (line, content) = item?;
            summary.lines += 1;
            if content.as_deref().map_or(true, |c| !c.trim().is_empty()) {
                empty = false;
            }
            let content = match content.as_deref() {
                Ok(content) => content,
                Err(&offset) => {
                    summary.invalid += 1;
                    problems.push(not_utf8(path, line, offset));
                    continue;
                }
            };
            if summary.schema == Schema::Auto {
                summary.schema = detect_schema(content);
            }
            let result = parse_line(path, line, content, summary.schema).and_then(|record| {
                check_duplicate(&mut seen, paths, file_index, path, line, &record)?;
                Ok(record)
            });
            match result {
                Ok(_) => summary.valid += 1,
                Err(mut found) => {
                    summary.invalid += 1;
                    problems.append(&mut found);
                }
            }
        }
        if empty {
            report.problems.push(Problem {
                path: path.clone(),
                line: 1,
                column: None,
                what: "file is empty".into(),
                fix: "add one JSON record per line".into(),
            });
        }
        report.problems.append(&mut problems);
        if summary.schema == Schema::Auto {
            summary.schema = Schema::Generic;
        }
        report.files.push(summary);
    }
    Ok(report)
}

/// The lines of a text file, read one at a time: each with its 1-based
/// number and its text or, where it is not UTF-8, the byte offset in the
/// line where it stops being so. A leading UTF-8 byte-order mark is skipped;
/// a final newline does not make an empty last line (nor does a file that
/// is one newline). What is not a regular file is refused before reading
/// (a FIFO would block forever).
struct TextLines {
    path: PathBuf,
    reader: std::io::BufReader<std::fs::File>,
    number: usize,
    buffer: Vec<u8>,
}

impl TextLines {
    fn open(path: &Path) -> Result<Self, DataError> {
        let read_error = |source| DataError::Read {
            path: path.to_path_buf(),
            source,
        };
        if !std::fs::metadata(path).map_err(read_error)?.is_file() {
            return Err(DataError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let file = std::fs::File::open(path).map_err(read_error)?;
        Ok(TextLines {
            path: path.to_path_buf(),
            reader: std::io::BufReader::with_capacity(1 << 16, file),
            number: 0,
            buffer: Vec::new(),
        })
    }

    fn read_error(&self, source: std::io::Error) -> DataError {
        DataError::Read {
            path: self.path.clone(),
            source,
        }
    }
}

impl Iterator for TextLines {
    type Item = Result<(usize, Result<String, usize>), DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.buffer.clear();
        match self.reader.read_until(b'\n', &mut self.buffer) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(Err(self.read_error(e))),
        }
        self.number += 1;
        let mut bytes = self.buffer.as_slice();
        if self.number == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            if bytes == b"\n" {
                match self.reader.fill_buf() {
                    Ok([]) => return None,
                    Ok(_) => {}
                    Err(e) => return Some(Err(self.read_error(e))),
                }
            }
        }
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let text = std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|e| e.valid_up_to());
        Some(Ok((self.number, text)))
    }
}

/// A line's 1-based number and its text, or why it has none.
pub type TextLine = (usize, Result<String, Problem>);

/// The lines of a text file with their 1-based numbers, each its text or
/// the problem that it is not UTF-8 (for readers of other line formats,
/// such as `extract --file`).
pub fn read_lines(path: &Path) -> Result<Vec<TextLine>, DataError> {
    TextLines::open(path)?
        .map(|item| {
            item.map(|(line, text)| (line, text.map_err(|offset| not_utf8(path, line, offset))))
        })
        .collect()
}

fn not_utf8(path: &Path, line: usize, offset: usize) -> Problem {
    Problem {
        path: path.to_path_buf(),
        line,
        column: None,
        what: format!("not UTF-8 (byte offset {offset})"),
        fix: "save the file as UTF-8 (for Latin-1: iconv -f latin1 -t utf-8)".into(),
    }
}

fn detect_schema(line: &str) -> Schema {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else {
        return Schema::Auto;
    };
    match obj.get("output") {
        Some(Value::Object(out)) if MEDICAL_IE_FIELDS.iter().any(|f| out.contains_key(*f)) => {
            Schema::MedicalIe
        }
        _ => Schema::Generic,
    }
}

/// What makes two records the same example: the narrative, with case and
/// whitespace ignored (used for duplicates and train/validation overlap).
pub fn narrative_key(record: &Record) -> String {
    normalise_narrative(record.input_text())
}

fn normalise_narrative(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// 128 bits of the SHA-256 of a narrative key: a collision between two
/// different narratives of one data set is out of reach.
type NarrativeDigest = [u8; 16];

fn narrative_digest(record: &Record) -> NarrativeDigest {
    let digest = Sha256::digest(narrative_key(record).as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

fn check_duplicate(
    seen: &mut HashMap<NarrativeDigest, (usize, usize)>,
    paths: &[PathBuf],
    file_index: usize,
    path: &Path,
    line: usize,
    record: &Record,
) -> Result<(), Vec<Problem>> {
    let key = narrative_digest(record);
    match seen.get(&key) {
        None => {
            seen.insert(key, (file_index, line));
            Ok(())
        }
        Some(&(first_file, first_line)) if first_file == file_index => Err(vec![problem(
            path,
            line,
            format!("duplicate input: the same narrative as line {first_line}"),
            "remove one of the two records",
        )]),
        Some(&(first_file, first_line)) => Err(vec![problem(
            path,
            line,
            format!(
                "input also appears in {}:{first_line} (overlap between files)",
                paths[first_file].display()
            ),
            "a narrative must be in only one split; remove it from one file",
        )]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, schema: Schema) -> Vec<String> {
        match parse_line(Path::new("f.jsonl"), 3, line, schema) {
            Ok(_) => vec![],
            Err(p) => p.iter().map(|p| p.to_string()).collect(),
        }
    }

    const GOOD: &str = r#"{"instruction":"x","input":"t","output":{"cancer_type":"a","stage":null,"gene_mutation":null,"biomarker":null,"treatment":"b","response":null,"metastasis_site":null}}"#;

    #[test]
    fn good_record_passes_medical_schema() {
        assert!(check(GOOD, Schema::MedicalIe).is_empty());
    }

    #[test]
    fn bad_json_names_line_and_column() {
        let p = check(r#"{"instruction": "x", "input": }"#, Schema::Generic);
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("f.jsonl:3:31: invalid JSON"), "{}", p[0]);
    }

    #[test]
    fn each_problem_on_a_line_is_reported() {
        let p = check(
            r#"{"instruction": 5, "input": "  ", "output": {"cancer_type": 1, "grade": "x"}, "extra": 1}"#,
            Schema::MedicalIe,
        );
        let all = p.join("\n");
        assert!(all.contains("unknown key \"extra\""), "{all}");
        assert!(
            all.contains("\"instruction\" is a number, expected a string"),
            "{all}"
        );
        assert!(all.contains("\"input\" is empty"), "{all}");
        assert!(all.contains("output.cancer_type is a number"), "{all}");
        assert!(all.contains("output is missing field \"stage\""), "{all}");
        assert!(all.contains("unexpected field \"grade\""), "{all}");
        assert!(p
            .iter()
            .all(|l| l.starts_with("f.jsonl:3: ") && l.contains(" — ")));
    }

    #[test]
    fn chat_records_need_a_final_assistant_turn() {
        assert!(check(
            r#"{"messages":[{"role":"user","content":"t"},{"role":"assistant","content":"{}"}]}"#,
            Schema::Generic
        )
        .is_empty());
        let p = check(
            r#"{"messages":[{"role":"user","content":"t"}]}"#,
            Schema::Generic,
        );
        assert!(p[0].contains("not from the assistant"), "{p:?}");
    }

    #[test]
    fn duplicates_and_overlap_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("train.jsonl");
        let b = dir.path().join("validation.jsonl");
        let rec = |input: &str| format!(r#"{{"instruction":"x","input":"{input}","output":"y"}}"#);
        std::fs::write(
            &a,
            format!("{}\n{}\n{}\n", rec("one"), rec("two"), rec("One ")),
        )
        .unwrap();
        std::fs::write(&b, format!("{}\n{}\n", rec("two"), rec("three"))).unwrap();
        let report = validate_files(&[a.clone(), b.clone()], Schema::Auto).unwrap();
        let lines: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("train.jsonl:3: duplicate input: the same narrative as line 1"));
        assert!(lines[1].contains("validation.jsonl:1: input also appears in"));
        assert_eq!(report.files[0].valid, 2);
        assert_eq!(report.files[1].valid, 1);
        assert_eq!(report.files[0].schema, Schema::Generic);
    }

    #[test]
    fn read_records_refuses_a_file_with_any_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("t.jsonl");
        std::fs::write(&a, format!("{GOOD}\nnot json\n")).unwrap();
        let err = read_records(&a).unwrap_err().to_string();
        assert!(err.contains("1 invalid line"), "{err}");
        assert!(err.contains("t.jsonl:2:"), "{err}");
    }
}
