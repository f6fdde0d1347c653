//! Scoring a run record by record and the report it produces.
//!
//! The report keeps every record's raw output next to its reference and
//! per-field outcome, so a surprising aggregate can be traced to the outputs
//! behind it without rerunning generation.

use std::fs;
use std::path::Path;

use ftslm_data::{Record, MEDICAL_IE_FIELDS};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::EvalError;
use crate::metrics::{score_field, EvalSummary, FieldResult};
use crate::parse::{parse_output, value_text, ParsedOutput, Prediction};

/// Where a record came from, for finding it again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordMeta {
    /// Position in the evaluated set.
    pub index: usize,
    pub id: Option<String>,
    /// 1-based line in the source JSONL file.
    pub line: Option<usize>,
}

/// One scored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordResult {
    pub index: usize,
    pub id: Option<String>,
    pub line: Option<usize>,
    /// `None` when no output was produced (see `error`).
    pub raw_output: Option<String>,
    pub reference: Map<String, Value>,
    pub json_valid: bool,
    pub recovered: bool,
    pub missing_keys: Vec<String>,
    pub extra_keys: Vec<String>,
    pub type_errors: Vec<String>,
    /// Why the output could not be read as an object, when it could not.
    pub parse_error: Option<String>,
    pub fields: Vec<FieldResult>,
    /// A record-level failure, such as generation failing for this record.
    pub error: Option<String>,
}

/// The summary and every record behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub summary: EvalSummary,
    pub records: Vec<RecordResult>,
}

/// Scores records one at a time and builds the report.
#[derive(Debug, Clone)]
pub struct Scorer {
    fields: Vec<String>,
    records: Vec<RecordResult>,
    generation_seconds: Option<f64>,
}

impl Scorer {
    pub fn new(fields: Vec<String>) -> Scorer {
        Scorer {
            fields,
            records: Vec::new(),
            generation_seconds: None,
        }
    }

    /// A scorer for the seven fields of the medical-IE task.
    pub fn medical() -> Scorer {
        Scorer::new(MEDICAL_IE_FIELDS.iter().map(|f| f.to_string()).collect())
    }

    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records the time spent generating, carried into the summary.
    pub fn set_generation_seconds(&mut self, seconds: f64) {
        self.generation_seconds = Some(seconds);
    }

    /// Parses `raw_output` and scores it against `reference`.
    pub fn add(
        &mut self,
        reference: &Map<String, Value>,
        raw_output: &str,
        meta: RecordMeta,
    ) -> &RecordResult {
        let parsed = parse_output(raw_output, &self.fields);
        self.push(reference, Some(raw_output.to_string()), parsed, None, meta)
    }

    /// Records a record whose output is unusable (generation failed, or the
    /// answer was cut off); any partial text is kept for the report. It counts
    /// as invalid JSON with every field predicted missing, so failures lower
    /// the rates instead of silently shrinking the denominator.
    pub fn add_failure(
        &mut self,
        reference: &Map<String, Value>,
        partial_output: Option<&str>,
        error: String,
        meta: RecordMeta,
    ) -> &RecordResult {
        let parsed = ParsedOutput {
            predictions: self
                .fields
                .iter()
                .map(|f| Prediction {
                    field: f.clone(),
                    value: None,
                })
                .collect(),
            json_valid: false,
            recovered: false,
            missing_keys: Vec::new(),
            extra_keys: Vec::new(),
            type_errors: Vec::new(),
            error: None,
        };
        let raw = partial_output.map(str::to_string);
        self.push(reference, raw, parsed, Some(error), meta)
    }

    /// [`Scorer::add`] with the reference taken from a data record's answer.
    pub fn add_record(
        &mut self,
        record: &Record,
        raw_output: &str,
        meta: RecordMeta,
    ) -> Result<&RecordResult, EvalError> {
        let index = meta.index;
        let reference = record
            .answer_fields()
            .ok_or(EvalError::ReferenceNotObject { index })?;
        Ok(self.add(&reference, raw_output, meta))
    }

    /// The report over everything added; `answer_loss` is the caller's mean
    /// NLL on the reference answers, if measured.
    pub fn finish(self, answer_loss: Option<f64>) -> EvalReport {
        let mut summary = EvalSummary::from_records(&self.fields, &self.records, answer_loss);
        summary.generation_seconds = self.generation_seconds;
        EvalReport {
            summary,
            records: self.records,
        }
    }

    fn push(
        &mut self,
        reference: &Map<String, Value>,
        raw_output: Option<String>,
        parsed: ParsedOutput,
        error: Option<String>,
        meta: RecordMeta,
    ) -> &RecordResult {
        // A reference key that is absent is scored as null: the data format
        // allows omitting nulls, and a missing key cannot be a value.
        let fields = self
            .fields
            .iter()
            .map(|f| {
                let reference_value = reference.get(f).and_then(value_text);
                score_field(f, reference_value.as_deref(), parsed.get(f))
            })
            .collect();
        let index = self.records.len();
        self.records.push(RecordResult {
            index: meta.index,
            id: meta.id,
            line: meta.line,
            raw_output,
            reference: reference.clone(),
            json_valid: parsed.json_valid,
            recovered: parsed.recovered,
            missing_keys: parsed.missing_keys,
            extra_keys: parsed.extra_keys,
            type_errors: parsed.type_errors,
            parse_error: parsed.error,
            fields,
            error,
        });
        &self.records[index]
    }
}

impl EvalReport {
    /// Writes the report as pretty JSON through a temporary file in the same
    /// directory and a rename, so a reader never sees half a report.
    pub fn write_json(&self, path: &Path) -> Result<(), EvalError> {
        let mut text = serde_json::to_vec_pretty(self).map_err(|source| EvalError::Serialize {
            path: path.to_path_buf(),
            source,
        })?;
        text.push(b'\n');
        ftslm_fs::write_atomic(path, &text).map_err(|e| EvalError::Write {
            path: e.path,
            source: e.source,
        })
    }

    /// Reads a report written by [`EvalReport::write_json`].
    pub fn read_json(path: &Path) -> Result<EvalReport, EvalError> {
        let text = fs::read_to_string(path).map_err(|source| EvalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| EvalError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}
