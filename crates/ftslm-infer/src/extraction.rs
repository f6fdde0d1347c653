//! Constrained extraction: each record's prompt as training rendered it, then
//! greedy decoding that may only write the task's JSON object.

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
                    None => generate_batch(
                        &self.model,
                        self.adapter.as_ref(),
                        &prompts,
                        &options,
                        None,
                    )?,
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
        })
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
