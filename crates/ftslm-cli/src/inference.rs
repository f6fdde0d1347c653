//! The model a user runs on text: base (in its stored precision, or NF4 on
//! request), an optional PEFT adapter applied unmerged, and the prompt
//! tokenizer the trainer uses, so inference sees exactly the training prompt.
//! Shared by `generate`, `extract`, `eval` and the quickstart.

use std::path::Path;

use std::time::Instant;

use anyhow::Context;
use candle_core::Device;
use ftslm_data::tokenize::PromptTokenizer;
use ftslm_data::{Answer, InstructionRecord, Record};
use ftslm_eval::{EvalReport, RecordMeta, Scorer};
use ftslm_model::generate::{
    generate_batch, GenerationOptions, JsonObjectGrammar, Sampling, StopReason, TokenConstraint,
};
use ftslm_model::{chunked_nll, LlamaModel, LoraAdapter, TokenNll};
use ftslm_train::model_source::{FrozenBase, ModelSource};

use crate::cli::{ModelArgs, QuantizeArg};
use crate::output::progress_bar;

/// Target positions projected to the vocabulary at once in the answer loss.
const LOSS_CHUNK_TOKENS: usize = 256;

pub struct LoadedModel {
    pub model: LlamaModel,
    pub adapter: Option<LoraAdapter>,
    pub tokenizer: PromptTokenizer,
    pub base: FrozenBase,
}

/// One record's answer as generated.
#[derive(Debug, Clone)]
pub struct Extraction {
    pub text: String,
    /// Why the answer is unusable, when it is (the text is kept for reports).
    pub error: Option<String>,
}

impl LoadedModel {
    /// Loads `model` (directory or .gguf) with `adapter`; `nf4` re-quantizes
    /// the frozen projections to NF4 instead of keeping their stored precision.
    pub fn load(
        model: &Path,
        adapter: Option<&Path>,
        nf4: bool,
        system_prompt: &str,
    ) -> anyhow::Result<Self> {
        let source = ModelSource::locate(model)?;
        let base = if nf4 {
            FrozenBase::Nf4 { double_quant: true }
        } else if source.is_gguf() && !small_gguf(source.weights()) {
            FrozenBase::Gguf
        } else {
            FrozenBase::F32
        };
        let (model_weights, _notes) = source
            .load(base, &Device::Cpu)
            .with_context(|| format!("cannot load --model {}", model.display()))?;
        let adapter = match adapter {
            Some(dir) => Some(
                LoraAdapter::load_peft(dir, model_weights.config(), &Device::Cpu).with_context(
                    || {
                        format!(
                            "cannot load --adapter {} onto --model {}",
                            dir.display(),
                            model.display()
                        )
                    },
                )?,
            ),
            None => None,
        };
        let tokenizer = source.prompt_tokenizer(system_prompt)?;
        Ok(LoadedModel {
            model: model_weights,
            adapter,
            tokenizer,
            base,
        })
    }

    /// The model the `--model/--adapter/--quantize` flags name.
    pub fn from_args(args: &ModelArgs, system_prompt: &str) -> anyhow::Result<Self> {
        Self::load(
            &args.model,
            args.adapter.as_deref(),
            args.quantize == QuantizeArg::Nf4,
            system_prompt,
        )
    }

    pub fn stop_ids(&self) -> Vec<u32> {
        self.tokenizer.end_of_turn_ids().to_vec()
    }

    /// The grammar `extract`/`eval` decode with: none under `--unconstrained`.
    pub fn grammar_unless(&self, unconstrained: bool) -> anyhow::Result<Option<JsonObjectGrammar>> {
        if unconstrained {
            return Ok(None);
        }
        self.json_grammar().map(Some)
    }

    /// The JSON grammar over this tokenizer's vocabulary (about a second to build).
    pub fn json_grammar(&self) -> anyhow::Result<JsonObjectGrammar> {
        let end = *self.tokenizer.end_of_turn_ids().first().context(
            "the tokenizer has no end-of-turn token, so a constrained answer could not end; \
             use --unconstrained",
        )?;
        Ok(JsonObjectGrammar::new(self.tokenizer.tokenizer(), end)?)
    }

    /// Answers `records` in batches of `batch` sequences, constrained to a
    /// JSON object with `keys` when `grammar` is given. `progress` gets the
    /// number of records finished so far.
    pub fn extract(
        &self,
        records: &[Record],
        keys: &[String],
        grammar: Option<&JsonObjectGrammar>,
        max_new_tokens: usize,
        batch: usize,
        progress: &mut dyn FnMut(usize),
    ) -> anyhow::Result<Vec<Extraction>> {
        let options = GenerationOptions {
            max_new_tokens,
            sampling: Sampling::Greedy,
            stop_ids: self.stop_ids(),
        };
        let mut out = Vec::with_capacity(records.len());
        for chunk in records.chunks(batch.max(1)) {
            let prompts = chunk
                .iter()
                .map(|r| self.tokenizer.encode_prompt(r))
                .collect::<Result<Vec<_>, _>>()?;
            let generated = match grammar {
                Some(g) => {
                    let mut constraints = chunk
                        .iter()
                        .map(|_| g.constraint(keys))
                        .collect::<Result<Vec<_>, _>>()?;
                    let refs: Vec<&mut dyn TokenConstraint> = constraints
                        .iter_mut()
                        .map(|c| c as &mut dyn TokenConstraint)
                        .collect();
                    generate_batch(
                        &self.model,
                        self.adapter.as_ref(),
                        &prompts,
                        &options,
                        Some(refs),
                    )?
                }
                None => {
                    generate_batch(&self.model, self.adapter.as_ref(), &prompts, &options, None)?
                }
            };
            for g in generated {
                let text = self.tokenizer.decode(&g.tokens)?;
                let error = match (&g.stop, grammar.is_some()) {
                    (StopReason::ConstraintFailed(e), _) => {
                        Some(format!("constrained decoding failed: {e}"))
                    }
                    (StopReason::MaxNewTokens, true) => Some(format!(
                        "the answer did not finish within --max-new-tokens {max_new_tokens}; \
                         raise it or check the model"
                    )),
                    _ => None,
                };
                out.push(Extraction { text, error });
            }
            progress(out.len());
        }
        Ok(out)
    }

    /// Mean NLL of the reference answers (and end-of-turn token), the number
    /// training reports as eval loss.
    pub fn answer_loss(&self, records: &[Record], max_seq_length: usize) -> anyhow::Result<f64> {
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

/// GGUF files up to this size are dequantized once at load for inference:
/// the values are exactly the stored ones (the block decoders are the same),
/// but decoding then reads plain f32 instead of decoding every block at every
/// step — several times faster for one token at a time. SmolLM2-135M's Q4_1
/// file (~90 MB) becomes ~540 MB; an 8B file stays in its blocks.
const DEQUANTIZE_GGUF_BELOW_BYTES: u64 = 256 << 20;

fn small_gguf(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() < DEQUANTIZE_GGUF_BELOW_BYTES)
}

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
    /// adds the answer loss. `lines` give each record's line in its file.
    pub fn evaluate(
        &self,
        records: &[Record],
        lines: &[usize],
        decoding: &Decoding,
        quiet: bool,
    ) -> anyhow::Result<EvalReport> {
        let mut references = Vec::with_capacity(records.len());
        for (record, line) in records.iter().zip(lines) {
            references.push(record.answer_fields().with_context(|| {
                format!(
                    "line {line}: the answer is not a JSON object, so there are no fields to \
                     score — eval needs extraction records"
                )
            })?);
        }
        let keys: Vec<String> = references
            .first()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        let started = Instant::now();
        let bar = progress_bar(quiet, records.len() as u64, "extracting");
        let extractions = self.extract(
            records,
            &keys,
            decoding.grammar,
            decoding.max_new_tokens,
            decoding.batch,
            &mut |done| bar.set_position(done as u64),
        )?;
        bar.finish_and_clear();
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
}

/// A narrative to extract from, with the instruction the task trains on.
pub fn extraction_record(instruction: &str, input: &str) -> Record {
    Record::Instruction(InstructionRecord {
        instruction: instruction.to_string(),
        input: input.to_string(),
        // Never rendered: prompts stop at the generation prompt.
        output: Answer::Text(String::new()),
    })
}
