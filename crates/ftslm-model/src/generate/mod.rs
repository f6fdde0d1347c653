//! Text generation with a KV cache: a prompt is run once (prefill), then one
//! token per step for every unfinished sequence of a batch together, so the
//! frozen projections are read once per step for the whole batch. Decoding
//! stops at the model's end-of-turn tokens, at a token budget, or when a
//! [`TokenConstraint`] is complete; a constraint that fails ends only its own
//! sequence.

pub mod constraint;
pub mod json_object;
pub mod sampling;

pub use constraint::{TokenConstraint, TokenMask};
pub use json_object::{JsonObjectConstraint, JsonObjectGrammar};
pub use sampling::{Sampler, Sampling};

use crate::error::Result;
use crate::llama::{KvCache, LlamaModel};
use crate::lora::LoraAdapter;

/// What to generate and when to stop.
#[derive(Debug, Clone)]
pub struct GenerationOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Tokens that end a sequence (end of turn / end of text); not part of
    /// the returned text.
    pub stop_ids: Vec<u32>,
}

/// Why a sequence ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// It produced one of the stop tokens.
    EndOfTurn(u32),
    /// It used all `max_new_tokens` without ending.
    MaxNewTokens,
    /// Its constraint was complete.
    ConstraintComplete,
    /// Its constraint rejected the state or allowed no token.
    ConstraintFailed(String),
    /// The model's scores were NaN or infinite.
    NonFinite(String),
}

/// One sequence's result: the new tokens without the stop token.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    pub stop: StopReason,
}

/// One sequence being decoded.
struct Running<'c> {
    index: usize,
    cache: KvCache,
    next_input: Vec<u32>,
    sampler: Sampler,
    constraint: Option<&'c mut dyn TokenConstraint>,
    tokens: Vec<u32>,
}

/// Generates a continuation for each prompt, all decoded together.
/// `constraints`, when given, holds one constraint per prompt.
pub fn generate_batch(
    model: &LlamaModel,
    adapter: Option<&LoraAdapter>,
    prompts: &[Vec<u32>],
    options: &GenerationOptions,
    constraints: Option<Vec<&mut dyn TokenConstraint>>,
) -> Result<Vec<Generated>> {
    let mut constraints = constraints.map(Vec::into_iter);
    let mut results: Vec<Option<Generated>> = vec![None; prompts.len()];
    let mut running: Vec<Running> = Vec::with_capacity(prompts.len());
    for (index, prompt) in prompts.iter().enumerate() {
        let mut constraint = constraints.as_mut().and_then(Iterator::next);
        let mut next_input = prompt.clone();
        let mut tokens = Vec::new();
        if let Some(c) = constraint.as_deref_mut() {
            match c.forced() {
                Ok(forced) => tokens = forced,
                Err(e) => {
                    results[index] = Some(Generated {
                        tokens,
                        stop: StopReason::ConstraintFailed(e),
                    });
                    continue;
                }
            }
        }
        next_input.extend_from_slice(&tokens);
        running.push(Running {
            index,
            cache: model.new_cache(),
            next_input,
            sampler: Sampler::new(options.sampling.clone()),
            constraint,
            tokens,
        });
    }
    if options.max_new_tokens == 0 {
        for r in &running {
            results[r.index] = Some(Generated {
                tokens: Vec::new(),
                stop: StopReason::MaxNewTokens,
            });
        }
        running.clear();
    }

    while !running.is_empty() {
        let mut caches: Vec<KvCache> = running
            .iter_mut()
            .map(|r| std::mem::take(&mut r.cache))
            .collect();
        let inputs: Vec<&[u32]> = running.iter().map(|r| r.next_input.as_slice()).collect();
        let logits = model.forward_cached(&inputs, &mut caches, adapter)?; // [running, vocab]
        let logits: Vec<Vec<f32>> = logits.to_vec2()?;

        let mut still = Vec::with_capacity(running.len());
        for ((mut r, cache), logits) in running.drain(..).zip(caches).zip(logits) {
            r.cache = cache;
            match step(&mut r, &logits, options) {
                Some(stop) => {
                    results[r.index] = Some(Generated {
                        tokens: std::mem::take(&mut r.tokens),
                        stop,
                    })
                }
                None => still.push(r),
            }
        }
        running = still;
    }
    Ok(results
        .into_iter()
        .map(|g| {
            g.unwrap_or(Generated {
                tokens: Vec::new(),
                stop: StopReason::MaxNewTokens,
            })
        })
        .collect())
}

/// Picks one sequence's next token; `Some` when the sequence is done.
fn step(r: &mut Running, logits: &[f32], options: &GenerationOptions) -> Option<StopReason> {
    if let Some(bad) = logits.iter().find(|v| !v.is_finite()) {
        // Sampling would pick arbitrarily (or nothing) from NaN scores.
        return Some(StopReason::NonFinite(format!(
            "the model produced a {bad} logit after {} generated tokens; its weights or \
             adapter hold non-finite values",
            r.tokens.len()
        )));
    }
    let mask = match r.constraint.as_deref_mut().map(|c| c.next_mask()) {
        None => None,
        Some(Ok(Some(mask))) => Some(mask),
        Some(Ok(None)) => return Some(StopReason::ConstraintComplete),
        Some(Err(e)) => return Some(StopReason::ConstraintFailed(e)),
    };
    let Some(token) = r.sampler.pick(logits, mask.as_ref()) else {
        return Some(StopReason::ConstraintFailed(
            "the constraint allows no token of the model's vocabulary".into(),
        ));
    };
    if options.stop_ids.contains(&token) {
        return Some(StopReason::EndOfTurn(token));
    }
    let mut next_input = vec![token];
    if let Some(c) = r.constraint.as_deref_mut() {
        let forced = c.consume(token).and_then(|()| c.forced());
        match forced {
            Ok(forced) => next_input.extend(forced),
            Err(e) => {
                r.tokens.push(token);
                return Some(StopReason::ConstraintFailed(e));
            }
        }
    }
    r.tokens.extend_from_slice(&next_input);
    if r.tokens.len() >= options.max_new_tokens {
        r.tokens.truncate(options.max_new_tokens);
        return Some(StopReason::MaxNewTokens);
    }
    r.next_input = next_input;
    None
}
