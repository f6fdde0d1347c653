//! Constrained extraction: each record's prompt as training rendered it, then
//! greedy decoding that may only write the task's JSON object.

use ftslm_data::tokenize::char_cut;
use ftslm_data::{Answer, InstructionRecord, Record};
use ftslm_model::generate::{
    generate_batch, Generated, GenerationOptions, JsonObjectGrammar, Sampling, StopReason,
    TokenConstraint,
};

use crate::error::InferenceError;
use crate::loaded::LoadedModel;

/// One record's answer as generated.
#[derive(Debug, Clone)]
pub struct Extraction {
    pub text: String,
    /// Why the answer is unusable, when it is (the text is kept for reports).
    pub error: Option<String>,
}

impl LoadedModel {
    /// Continues each of `prompts` (token ids, rendered by `self.tokenizer`),
    /// unconstrained, computing as the model's policy says.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        options: &GenerationOptions,
    ) -> Result<Vec<Generated>, InferenceError> {
        let limit = self.prompt_limit();
        if let Some(long) = prompts.iter().find(|p| p.len() > limit) {
            return Err(InferenceError::PromptTooLong {
                tokens: long.len(),
                limit,
            });
        }
        let policy = self.policy;
        Ok(policy
            .run(|| generate_batch(&self.model, self.adapter.as_ref(), prompts, options, None))?)
    }

    /// The grammar extraction decodes with: none when `unconstrained`.
    pub fn grammar_unless(
        &self,
        unconstrained: bool,
    ) -> Result<Option<JsonObjectGrammar>, InferenceError> {
        if unconstrained {
            return Ok(None);
        }
        self.json_grammar().map(Some)
    }

    /// The JSON grammar over this tokenizer's vocabulary (about a second to build).
    pub fn json_grammar(&self) -> Result<JsonObjectGrammar, InferenceError> {
        let end = *self
            .tokenizer
            .end_of_turn_ids()
            .first()
            .ok_or(InferenceError::NoEndOfTurn)?;
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
    ) -> Result<Vec<Extraction>, InferenceError> {
        let policy = self.policy;
        policy.run(|| {
            let options = GenerationOptions {
                max_new_tokens,
                sampling: Sampling::Greedy,
                stop_ids: self.stop_ids(),
            };
            let mut out = Vec::with_capacity(records.len());
            for chunk in records.chunks(batch.max(1)) {
                // Each record's prompt, or why it is not run.
                let mut prompts = Vec::with_capacity(chunk.len());
                let mut refused: Vec<Option<String>> = Vec::with_capacity(chunk.len());
                for record in chunk {
                    match self.readable_prompt(record)? {
                        Ok(prompt) => {
                            prompts.push(prompt);
                            refused.push(None);
                        }
                        Err(why) => refused.push(Some(why)),
                    }
                }
                let generated = match grammar {
                    _ if prompts.is_empty() => Vec::new(),
                    Some(g) => {
                        let mut constraints = prompts
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
                    None => generate_batch(
                        &self.model,
                        self.adapter.as_ref(),
                        &prompts,
                        &options,
                        None,
                    )?,
                };
                let mut generated = generated.into_iter();
                for why in refused {
                    if let Some(why) = why {
                        out.push(Extraction {
                            text: String::new(),
                            error: Some(why),
                        });
                        continue;
                    }
                    let Some(g) = generated.next() else {
                        break;
                    };
                    let text = self.tokenizer.decode(&g.tokens)?;
                    let error = match (&g.stop, grammar.is_some()) {
                        (StopReason::NonFinite(why), _) => Some(why.clone()),
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
        })
    }
}

impl LoadedModel {
    /// The longest prompt this model is asked to read: what the adapter was
    /// trained on (its `max_seq_length`), else the model's context.
    pub fn prompt_limit(&self) -> usize {
        match &self.task.recorded {
            Some(task) => task.max_seq_length,
            None => self.model.config().max_position_embeddings,
        }
    }

    /// The record's prompt ids, or (inner Err) why it is too long to run:
    /// checked in characters before tokenizing, then in tokens. Attention
    /// grows with the square of the prompt, so an unbounded one aborted
    /// the process.
    fn readable_prompt(&self, record: &Record) -> Result<Result<Vec<u32>, String>, InferenceError> {
        let limit = self.prompt_limit();
        if char_cut(record.input_text(), limit).is_some() {
            let chars = record.input_text().chars().count();
            return Ok(Err(format!(
                "the narrative is {chars} characters, far more than the {limit} tokens \
                 the model reads (max_seq_length); shorten it"
            )));
        }
        let prompt = self.tokenizer.encode_prompt(record)?;
        if prompt.len() > limit {
            return Ok(Err(format!(
                "the prompt is {} tokens, more than the {limit} the model reads \
                 (max_seq_length); shorten the narrative",
                prompt.len()
            )));
        }
        Ok(Ok(prompt))
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
