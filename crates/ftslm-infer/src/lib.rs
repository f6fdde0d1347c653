//! ftslm-infer owns running a fine-tuned model on text, for any program (the
//! `ftslm` binary is one user): loading the base in its stored precision or
//! NF4 with a PEFT adapter applied unmerged, prompting exactly as the adapter
//! was trained (its `ftslm_task.json`: system prompt, instruction, fields,
//! base model), batched generation with JSON-constrained decoding to the
//! trained fields, scoring against references with ftslm-eval, and the answer
//! loss that lines up with training's eval loss.

#![forbid(unsafe_code)]

mod error;
mod evaluation;
mod extraction;
mod loaded;

pub use error::InferenceError;
pub use evaluation::Decoding;
pub use extraction::{extraction_record, Extraction};
pub use loaded::{InferenceTask, LoadedModel, TaskChoice};
