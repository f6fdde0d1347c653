//! Generation with the KV cache: the cached step equals a full forward pass,
//! batching does not change what each sequence produces, and greedy decoding
//! of SmolLM2 reproduces transformers' `generate` token for token.

use std::path::Path;

use candle_core::{Device, IndexOp};
use ftslm_model::generate::{
    generate_batch, GenerationOptions, Sampling, StopReason, TokenConstraint, TokenMask,
};
use ftslm_model::loader::gguf::{load_gguf, GgufBase};
use ftslm_model::{DenseF32, LlamaModel, LoraAdapter};
use serde_json::Value;

fn golden(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The tiny checkpoint and its adapter; `None` (or a panic under CI) without ../shared.
fn tiny() -> Option<(LlamaModel, LoraAdapter)> {
    let dir = ftslm_testkit::shared("models/tiny-llama3")?;
    let model = LlamaModel::load_hf(&dir, &DenseF32, &Device::Cpu).unwrap();
    let adapter =
        LoraAdapter::load_peft(&dir.join("adapter"), model.config(), &Device::Cpu).unwrap();
    Some((model, adapter))
}

fn greedy(max_new_tokens: usize) -> GenerationOptions {
    GenerationOptions {
        max_new_tokens,
        sampling: Sampling::Greedy,
        stop_ids: Vec::new(),
    }
}

#[test]
fn cached_steps_give_the_logits_of_a_full_forward_pass() {
    let Some((model, adapter)) = tiny() else {
        return;
    };
    let tokens: Vec<u32> = (0..12).map(|i| (i * 7 + 3) % 100).collect();
    let full = model
        .forward(
            &tokens,
            &(0..12).collect::<Vec<_>>(),
            &[0; 12],
            Some(&adapter),
        )
        .unwrap();
    // prefill 8 tokens, then 4 single steps
    let mut caches = vec![model.new_cache()];
    let mut last = model
        .forward_cached(&[&tokens[..8]], &mut caches, Some(&adapter))
        .unwrap();
    for t in 8..12 {
        let expected = full.i(t - 1).unwrap();
        let diff = (last.i(0).unwrap() - expected).unwrap().abs().unwrap();
        let worst: f32 = diff.max(0).unwrap().to_scalar().unwrap();
        assert!(worst < 1e-4, "position {}: logits differ by {worst}", t - 1);
        last = model
            .forward_cached(&[&tokens[t..t + 1]], &mut caches, Some(&adapter))
            .unwrap();
    }
    assert_eq!(caches[0].len(), 12);
}

#[test]
fn a_batch_generates_what_each_prompt_generates_alone() {
    let Some((model, adapter)) = tiny() else {
        return;
    };
    let prompts = vec![
        vec![5u32, 9, 11, 2],
        vec![17u32, 3],
        vec![40u32, 41, 42, 43, 44, 45],
    ];
    let together = generate_batch(&model, Some(&adapter), &prompts, &greedy(6), None).unwrap();
    for (prompt, batched) in prompts.iter().zip(&together) {
        let alone = generate_batch(
            &model,
            Some(&adapter),
            std::slice::from_ref(prompt),
            &greedy(6),
            None,
        )
        .unwrap();
        assert_eq!(&alone[0], batched);
        assert_eq!(batched.tokens.len(), 6);
        assert_eq!(batched.stop, StopReason::MaxNewTokens);
    }
    // the adapter changes what is generated (its B is not zero)
    let base = generate_batch(&model, None, &prompts, &greedy(6), None).unwrap();
    assert_ne!(base, together);
}

#[test]
fn stop_tokens_end_a_sequence_and_are_not_returned() {
    let Some((model, adapter)) = tiny() else {
        return;
    };
    let prompt = vec![vec![5u32, 9, 11, 2]];
    let free = generate_batch(&model, Some(&adapter), &prompt, &greedy(6), None).unwrap();
    let third = free[0].tokens[2];
    let first_third = free[0].tokens.iter().position(|&t| t == third).unwrap();
    let mut options = greedy(6);
    options.stop_ids = vec![third];
    let stopped = generate_batch(&model, Some(&adapter), &prompt, &options, None).unwrap();
    assert_eq!(stopped[0].tokens, free[0].tokens[..first_third]);
    assert_eq!(stopped[0].stop, StopReason::EndOfTurn(third));
}

/// Allows only even token ids, then stops after three tokens.
struct EvenThenStop {
    vocab: usize,
    seen: Vec<u32>,
}

impl TokenConstraint for EvenThenStop {
    fn next_mask(&mut self) -> Result<Option<TokenMask>, String> {
        if self.seen.len() == 3 {
            return Ok(None);
        }
        Ok(Some(TokenMask::from_allowed(
            self.vocab,
            (0..self.vocab as u32).filter(|t| t % 2 == 0),
        )))
    }
    fn consume(&mut self, token: u32) -> Result<(), String> {
        if token % 2 == 1 {
            return Err(format!("odd token {token}"));
        }
        self.seen.push(token);
        Ok(())
    }
}

#[test]
fn a_constraint_narrows_every_choice_and_can_end_the_sequence() {
    let Some((model, adapter)) = tiny() else {
        return;
    };
    let vocab = model.config().vocab_size;
    let mut c = EvenThenStop {
        vocab,
        seen: Vec::new(),
    };
    let out = generate_batch(
        &model,
        Some(&adapter),
        &[vec![5u32, 9, 11, 2]],
        &greedy(10),
        Some(vec![&mut c as &mut dyn TokenConstraint]),
    )
    .unwrap();
    assert_eq!(out[0].stop, StopReason::ConstraintComplete);
    assert_eq!(out[0].tokens.len(), 3);
    assert!(out[0].tokens.iter().all(|t| t % 2 == 0));
    assert_eq!(c.seen, out[0].tokens);
}

#[test]
fn greedy_decoding_reproduces_transformers_generate() {
    let dir = ftslm_testkit::require_shared!("models/smollm2-135m-instruct");
    let golden = golden(&dir);
    // The golden ran transformers in float32 on the dequantized GGUF weights.
    let (model, _) = load_gguf(
        &dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        GgufBase::F32,
        &Device::Cpu,
    )
    .unwrap();
    let examples = golden["examples"].as_array().unwrap();
    let prompts: Vec<Vec<u32>> = examples.iter().map(|e| ids(&e["prompt_ids"])).collect();
    let out = generate_batch(&model, None, &prompts, &greedy(24), None).unwrap();
    for (example, generated) in examples.iter().zip(&out) {
        assert_eq!(generated.tokens, ids(&example["greedy_24_ids"]));
    }
}

/// NaN scores stop the sequence with a reason naming them, instead of a
/// sampler picking arbitrarily (or nothing) among them.
#[test]
fn non_finite_logits_stop_generation_with_a_reason() {
    let Some((model, mut adapter)) = tiny() else {
        return;
    };
    let (layer, projection) = {
        let (l, p, _) = adapter.iter().next().unwrap();
        (l, p)
    };
    let weights = adapter.get_mut(layer, projection).unwrap();
    weights.b = (weights.b.ones_like().unwrap() * f64::NAN).unwrap();
    weights.a = weights.a.ones_like().unwrap();
    let out = generate_batch(&model, Some(&adapter), &[vec![1, 2, 3]], &greedy(4), None).unwrap();
    match &out[0].stop {
        StopReason::NonFinite(why) => assert!(why.contains("NaN"), "{why}"),
        other => panic!("stopped with {other:?}"),
    }
    assert!(out[0].tokens.is_empty());
}
