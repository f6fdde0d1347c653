//! Evaluation: extraction of every record, field scores against its
//! reference, and the answer loss (mean NLL of the reference answers), the
//! number training reports as eval loss.

use std::time::Instant;

use ftslm_data::Record;
use ftslm_eval::{EvalReport, RecordMeta, Scorer};
use ftslm_model::generate::JsonObjectGrammar;
use ftslm_model::{chunked_nll, TokenNll};

use crate::error::InferenceError;
use crate::loaded::LoadedModel;

/// Target positions projected to the vocabulary at once in the answer loss.
const LOSS_CHUNK_TOKENS: usize = 256;

/// How `evaluate` decodes.
pub struct Decoding<'g> {
    pub grammar: Option<&'g JsonObjectGrammar>,
    pub max_new_tokens: usize,
    pub batch: usize,
    /// Longest reference example, in tokens, for the answer loss.
    pub max_seq_length: usize,
}

impl LoadedModel {
    /// Extracts every record, scores each answer against the record's own
    /// reference (whose keys, from the first record, fix the schema), and
    /// adds the answer loss. `lines` give each record's line in its file;
    /// `progress` gets the number of records extracted so far.
    pub fn evaluate(
        &self,
        records: &[Record],
        lines: &[usize],
        decoding: &Decoding,
        progress: &mut dyn FnMut(usize),
    ) -> Result<EvalReport, InferenceError> {
        let mut references = Vec::with_capacity(records.len());
        for (record, &line) in records.iter().zip(lines) {
            references.push(
                record
                    .answer_fields()
                    .ok_or(InferenceError::NotExtraction { line })?,
            );
        }
        let keys: Vec<String> = references
            .first()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        let started = Instant::now();
        let extractions = self.extract(
            records,
            &keys,
            decoding.grammar,
            decoding.max_new_tokens,
            decoding.batch,
            progress,
        )?;
        let mut scorer = Scorer::new(keys);
        scorer.set_generation_seconds(started.elapsed().as_secs_f64());
        for (index, ((reference, extraction), line)) in
            references.iter().zip(&extractions).zip(lines).enumerate()
        {
            let meta = RecordMeta {
                index,
                id: None,
                line: Some(*line),
            };
            match &extraction.error {
                Some(e) => scorer.add_failure(reference, Some(&extraction.text), e.clone(), meta),
                None => scorer.add(reference, &extraction.text, meta),
            };
        }
        let loss = self.answer_loss(records, decoding.max_seq_length)?;
        Ok(scorer.finish(Some(loss)))
    }

    /// Mean NLL of the reference answers (and end-of-turn token), the number
    /// training reports as eval loss.
    pub fn answer_loss(
        &self,
        records: &[Record],
        max_seq_length: usize,
    ) -> Result<f64, InferenceError> {
        let policy = self.policy;
        policy.run(|| self.answer_nll(records, max_seq_length))
    }

    fn answer_nll(&self, records: &[Record], max_seq_length: usize) -> Result<f64, InferenceError> {
        let mut total = TokenNll::default();
        for record in records {
            let example = self.tokenizer.encode(record, max_seq_length)?;
            let n = example.input_ids.len();
            let positions: Vec<u32> = (0..n as u32).collect();
            let hidden = self.model.final_hidden(
                &example.input_ids,
                &positions,
                &vec![0; n],
                self.adapter.as_ref(),
                None,
            )?;
            total.add(chunked_nll(
                &hidden,
                self.model.lm_head(),
                &example.input_ids,
                &example.answer_mask,
                LOSS_CHUNK_TOKENS,
            )?);
        }
        Ok(total.mean())
    }
}
