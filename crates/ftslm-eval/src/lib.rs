//! ftslm-eval turns a model's extraction outputs into numbers. It reads each
//! raw output as the task's JSON object (strictly, or leniently when the model
//! wrapped it in a fence or prose), normalises every field value so that case,
//! punctuation and list order do not count as errors, and scores each field of
//! each record against the reference: exact match, token-level precision,
//! recall and F1, and explicit outcomes for correct nulls, missed values and
//! hallucinated values. It aggregates per field and over the run, renders a
//! readable table, writes and reads a JSON report, and compares two reports
//! (before and after fine-tuning). It knows nothing about models: the caller
//! generates the outputs and, if it wants, measures the answer loss.

#![forbid(unsafe_code)]

pub mod error;
pub mod metrics;
pub mod normalize;
pub mod parse;
pub mod report;
pub mod table;

pub use error::EvalError;
pub use metrics::{score_field, EvalSummary, FieldOutcome, FieldResult, FieldSummary, TokenCounts};
pub use normalize::normalize;
pub use parse::{parse_output, ParsedOutput, Prediction};
pub use report::{EvalReport, RecordMeta, RecordResult, Scorer};
pub use table::{render_comparison, render_table};
