//! ftslm-data owns everything between a JSONL file and the token ids a trainer
//! consumes: the record formats (instruction and chat), their validation with
//! file:line diagnostics, dataset statistics, the deterministic synthetic
//! generator, chat-template rendering and tokenization with the answer mask
//! (one function for training and inference), and batching by length grouping
//! or packing.

#![forbid(unsafe_code)]

pub mod batching;
pub mod chat_template;
pub mod example;
pub mod record;
pub mod stats;
pub mod synth;
pub mod task;
pub mod tokenize;
pub mod validate;

pub use example::TokenizedExample;
pub use record::{
    Answer, ChatMessage, InstructionRecord, Record, MEDICAL_IE_FIELDS, SYSTEM_PROMPT,
};
pub use task::{TaskShape, TrainedTask, TASK_FILE};
