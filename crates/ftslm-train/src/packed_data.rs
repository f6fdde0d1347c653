//! The training and evaluation data of a run: JSONL records tokenized with
//! the model's chat template, laid out in micro-batches by packing or length
//! grouping, and re-laid out every epoch from the epoch's generator.
//!
//! Re-batching keeps the number of micro-batches fixed, which the trainer's
//! schedule and resume check rely on: length grouping makes one row per
//! example whatever the order, and first-fit-decreasing packing only looks at
//! lengths (the shuffle reorders examples of equal length, which are
//! interchangeable), so each epoch has the same rows by length, filled with
//! different examples.

use std::path::{Path, PathBuf};

use ftslm_data::batching::{make_batches, Batch, BatchStrategy};
use ftslm_data::tokenize::PromptTokenizer;
use ftslm_data::tokenize::{overlong_narrative, MAX_CHARS_PER_TOKEN};
use ftslm_data::validate::narrative_key;
use ftslm_data::validate::{read_records, LineRecord};
use ftslm_data::TaskShape;
use ftslm_data::TokenizedExample;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use crate::data::EpochSource;
use crate::engine::EngineError;
use crate::setup_error::SetupError;

/// The records of one file as training examples.
#[derive(Debug, Clone)]
pub struct TokenizedSet {
    pub path: PathBuf,
    pub examples: Vec<TokenizedExample>,
    /// Examples whose narrative was cut to fit max_seq_length.
    pub truncated: usize,
    /// Narrative tokens removed in all.
    pub truncated_tokens: usize,
    /// The instruction and answer fields the records teach.
    pub shape: TaskShape,
    /// One line per record cut in characters before tokenizing.
    pub notes: Vec<String>,
    /// Each record's `narrative_key` (duplicates, overlap between sets).
    pub narratives: Vec<String>,
}

impl TokenizedSet {
    /// Reads `path` (every line must be valid) and tokenizes its first
    /// `limit` records (all when `None`), using every core.
    pub fn read(
        path: &Path,
        tokenizer: &PromptTokenizer,
        max_seq_length: usize,
        limit: Option<usize>,
    ) -> Result<Self, SetupError> {
        let mut records = read_records(path)?;
        if let Some(limit) = limit {
            records.truncate(limit);
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(records.len().max(1));
        let chunk = records.len().div_ceil(threads).max(1);
        let encode = |part: &[LineRecord]| -> Result<Vec<TokenizedExample>, SetupError> {
            part.iter()
                .map(|r| {
                    tokenizer
                        .encode(&r.record, max_seq_length)
                        .map_err(|source| SetupError::Encode {
                            path: path.to_path_buf(),
                            line: r.line,
                            source,
                        })
                })
                .collect()
        };
        let parts: Vec<Result<Vec<TokenizedExample>, SetupError>> = std::thread::scope(|s| {
            let handles: Vec<_> = records
                .chunks(chunk)
                .map(|part| s.spawn(move || encode(part)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let mut examples = Vec::with_capacity(records.len());
        for part in parts {
            examples.extend(part?);
        }
        let shape = TaskShape::of(records.iter().map(|r| &r.record));
        let notes = records
            .iter()
            .filter_map(|r| {
                let chars = overlong_narrative(&r.record, max_seq_length)?;
                Some(format!(
                    "{}:{}: the narrative is {chars} characters; cut to {} before tokenizing \
                     (max_seq_length {max_seq_length} × {MAX_CHARS_PER_TOKEN}), then to what fits",
                    path.display(),
                    r.line,
                    max_seq_length.saturating_mul(MAX_CHARS_PER_TOKEN)
                ))
            })
            .collect();
        let truncated = examples.iter().filter(|e| e.truncated_tokens > 0).count();
        let truncated_tokens = examples.iter().map(|e| e.truncated_tokens).sum();
        Ok(TokenizedSet {
            path: path.to_path_buf(),
            examples,
            truncated,
            truncated_tokens,
            shape,
            notes,
            narratives: records.iter().map(|r| narrative_key(&r.record)).collect(),
        })
    }

    pub fn tokens(&self) -> usize {
        self.examples.iter().map(TokenizedExample::len).sum()
    }
}

/// How examples are laid out in micro-batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLayout {
    pub strategy: BatchStrategy,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Row capacity when packing.
    pub max_seq_length: usize,
    pub pad_id: u32,
}

impl BatchLayout {
    /// Packing when `packing`, else length grouping (never padding to a
    /// global maximum).
    pub fn new(packing: bool, batch_size: usize, max_seq_length: usize, pad_id: u32) -> Self {
        BatchLayout {
            strategy: if packing {
                BatchStrategy::Packed
            } else {
                BatchStrategy::LengthGrouped
            },
            batch_size,
            max_seq_length,
            pad_id,
        }
    }

    pub fn batches(&self, examples: &[TokenizedExample], seed: u64) -> Vec<Batch> {
        make_batches(
            examples,
            self.strategy,
            self.batch_size,
            self.max_seq_length,
            self.pad_id,
            seed,
        )
    }
}

/// Training micro-batches, laid out anew each epoch.
#[derive(Debug, Clone)]
pub struct EpochBatches {
    examples: Vec<TokenizedExample>,
    layout: BatchLayout,
    batches_per_epoch: usize,
}

impl EpochBatches {
    pub fn new(examples: Vec<TokenizedExample>, layout: BatchLayout) -> Self {
        let batches_per_epoch = layout.batches(&examples, 0).len();
        EpochBatches {
            examples,
            layout,
            batches_per_epoch,
        }
    }

    pub fn layout(&self) -> BatchLayout {
        self.layout
    }

    pub fn examples(&self) -> &[TokenizedExample] {
        &self.examples
    }

    /// Tokens of one epoch (prompt and answer, no padding).
    pub fn tokens(&self) -> usize {
        self.examples.iter().map(TokenizedExample::len).sum()
    }
}

impl EpochSource for EpochBatches {
    type Batch = Batch;

    fn batches_per_epoch(&self) -> usize {
        self.batches_per_epoch
    }

    fn epoch_batches(&self, epoch: u64, rng: &mut ChaCha8Rng) -> Result<Vec<Batch>, EngineError> {
        let batches = self.layout.batches(&self.examples, rng.next_u64());
        if batches.len() != self.batches_per_epoch {
            return Err(format!(
                "epoch {epoch} was laid out in {} micro-batches instead of {}; \
                 the batch layout must not depend on the shuffle",
                batches.len(),
                self.batches_per_epoch
            )
            .into());
        }
        Ok(batches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::epoch_rng;

    fn example(len: usize, first: u32) -> TokenizedExample {
        TokenizedExample {
            input_ids: (first..first + len as u32).collect(),
            answer_mask: (0..len).map(|i| i >= len / 2).collect(),
            prompt_len: len / 2,
            truncated_tokens: 0,
        }
    }

    #[test]
    fn every_epoch_has_the_same_count_and_every_example_once() {
        let examples: Vec<_> = (0..57)
            .map(|i| example(3 + (i * 7 % 13), i as u32 * 100))
            .collect();
        for packing in [true, false] {
            let source = EpochBatches::new(examples.clone(), BatchLayout::new(packing, 3, 24, 0));
            let mut orders = Vec::new();
            for epoch in 0..4 {
                let batches = source
                    .epoch_batches(epoch, &mut epoch_rng(9, epoch))
                    .unwrap();
                assert_eq!(batches.len(), source.batches_per_epoch());
                let mut seen: Vec<usize> = batches
                    .iter()
                    .flat_map(|b| b.examples.iter().flatten().copied())
                    .collect();
                orders.push(seen.clone());
                seen.sort();
                assert_eq!(seen, (0..57).collect::<Vec<_>>());
            }
            assert_ne!(orders[0], orders[1], "epochs are laid out differently");
        }
    }
}
