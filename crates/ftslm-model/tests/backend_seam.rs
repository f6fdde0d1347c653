//! The layer code runs through the `Backend` trait alone: a backend that
//! wraps the CPU backend and records each operation it is asked for runs a
//! decoder layer's forward, backward and KV-cache forward to the same values
//! as the CPU backend, and is asked for every operation of the seam. An
//! operation the layer code computed behind the trait's back would be
//! missing from the record.

use std::collections::BTreeMap;
use std::sync::Mutex;

use candle_core::{Device, Tensor};
use ftslm_model::attention::{Attention, LayerKv};
use ftslm_model::backend::{FrozenInputGradient, LoraSaved, SavedProbabilities};
use ftslm_model::grad::decoder::{layer_backward, layer_forward, layer_forward_cached};
use ftslm_model::grad::{LayerAdapter, LayerGrads};
use ftslm_model::mlp::Mlp;
use ftslm_model::norm::RmsNorm;
use ftslm_model::rope::{RopeTables, RotaryEmbedding};
use ftslm_model::{
    Backend, CpuBackend, DecoderLayer, DenseWeight, DropoutMask, FrozenWeight, LlamaModel,
    LoraDropout, LoraWeights, Projection, Result, RopeConfig, RopeScaling, SharedInput, TokenNll,
};

/// The CPU backend, with a count of the calls of each operation.
#[derive(Debug, Default)]
struct Recording {
    calls: Mutex<BTreeMap<&'static str, usize>>,
}

impl Recording {
    fn note(&self, op: &'static str) {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
    }

    fn ops(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().keys().copied().collect()
    }
}

impl Backend for Recording {
    fn frozen_forward(&self, w: &dyn FrozenWeight, x: &Tensor, s: &SharedInput) -> Result<Tensor> {
        self.note("frozen_forward");
        CpuBackend.frozen_forward(w, x, s)
    }
    fn frozen_input_gradient(&self, w: &dyn FrozenWeight, dy: &Tensor) -> Result<Tensor> {
        self.note("frozen_input_gradient");
        CpuBackend.frozen_input_gradient(w, dy)
    }
    fn lora_forward(
        &self,
        y: Tensor,
        x: &Tensor,
        l: &LoraWeights,
        s: f64,
    ) -> Result<(Tensor, Tensor)> {
        self.note("lora_forward");
        CpuBackend.lora_forward(y, x, l, s)
    }
    fn lora_backward(
        &self,
        dy: &Tensor,
        saved: LoraSaved<'_>,
        l: &LoraWeights,
        s: f64,
        frozen: Option<FrozenInputGradient<'_>>,
    ) -> Result<(Option<Tensor>, LoraWeights)> {
        self.note("lora_backward");
        CpuBackend.lora_backward(dy, saved, l, s, frozen)
    }
    fn rms_norm(&self, n: &RmsNorm, x: &Tensor) -> Result<Tensor> {
        self.note("rms_norm");
        CpuBackend.rms_norm(n, x)
    }
    fn rms_norm_backward(&self, n: &RmsNorm, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        self.note("rms_norm_backward");
        CpuBackend.rms_norm_backward(n, x, dy)
    }
    fn rope(&self, t: &RopeTables, x: &Tensor) -> Result<Tensor> {
        self.note("rope");
        CpuBackend.rope(t, x)
    }
    fn rope_backward(&self, t: &RopeTables, dy: &Tensor) -> Result<Tensor> {
        self.note("rope_backward");
        CpuBackend.rope_backward(t, dy)
    }
    fn causal_attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        scale: f64,
    ) -> Result<(Tensor, SavedProbabilities)> {
        self.note("causal_attention");
        CpuBackend.causal_attention(q, k, v, scale)
    }
    fn causal_attention_backward(
        &self,
        qkv: [&Tensor; 3],
        p: &SavedProbabilities,
        dc: &Tensor,
        scale: f64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.note("causal_attention_backward");
        CpuBackend.causal_attention_backward(qkv, p, dc, scale)
    }
    fn cached_attention(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        self.note("cached_attention");
        CpuBackend.cached_attention(q, k, v)
    }
    fn swiglu(&self, g: &Tensor, u: &Tensor) -> Result<Tensor> {
        self.note("swiglu");
        CpuBackend.swiglu(g, u)
    }
    fn swiglu_backward(&self, da: &Tensor, g: &Tensor, u: &Tensor) -> Result<(Tensor, Tensor)> {
        self.note("swiglu_backward");
        CpuBackend.swiglu_backward(da, g, u)
    }
    fn cross_entropy(
        &self,
        h: &Tensor,
        model: &LlamaModel,
        ids: &[u32],
        mask: &[bool],
        chunk: usize,
    ) -> Result<(TokenNll, Tensor)> {
        self.note("cross_entropy");
        CpuBackend.cross_entropy(h, model, ids, mask, chunk)
    }
    fn dropout_mask(
        &self,
        d: &mut LoraDropout,
        dims: &[usize],
        device: &Device,
    ) -> Result<Option<DropoutMask>> {
        self.note("dropout_mask");
        CpuBackend.dropout_mask(d, dims, device)
    }
    fn apply_dropout(&self, m: &DropoutMask, x: &Tensor) -> Result<Tensor> {
        self.note("apply_dropout");
        CpuBackend.apply_dropout(m, x)
    }
    fn sum_input_gradients(&self, parts: [Option<Tensor>; 3]) -> Result<Option<Tensor>> {
        self.note("sum_input_gradients");
        CpuBackend.sum_input_gradients(parts)
    }
}

/// Values in [−spread, spread) from a fixed xorshift stream.
fn tensor(dims: &[usize], seed: u64, spread: f32) -> Tensor {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * spread
        })
        .collect();
    Tensor::from_vec(values, dims, &Device::Cpu).unwrap()
}

fn dense(out: usize, input: usize, seed: u64) -> Box<dyn FrozenWeight> {
    let w = tensor(&[out, input], seed, 0.3);
    Box::new(DenseWeight::new("w", w).unwrap())
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn the_decoder_layer_runs_through_the_backend_trait_alone() {
    let (hidden, intermediate, heads, kv_heads, head_dim) = (32, 48, 4, 2, 8);
    let layer = DecoderLayer {
        input_layernorm: RmsNorm::new(tensor(&[hidden], 1, 1.0), 1e-5),
        self_attn: Attention {
            q_proj: dense(heads * head_dim, hidden, 2),
            k_proj: dense(kv_heads * head_dim, hidden, 3),
            v_proj: dense(kv_heads * head_dim, hidden, 4),
            o_proj: dense(hidden, heads * head_dim, 5),
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
        },
        post_attention_layernorm: RmsNorm::new(tensor(&[hidden], 6, 1.0), 1e-5),
        mlp: Mlp {
            gate_proj: dense(intermediate, hidden, 7),
            up_proj: dense(intermediate, hidden, 8),
            down_proj: dense(hidden, intermediate, 9),
        },
    };
    let (tokens, r) = (7, 4);
    let segments = [0..4, 4..7];
    let positions = [0u32, 1, 2, 3, 0, 1, 2];
    let rope = RotaryEmbedding::new(
        head_dim,
        &RopeConfig {
            theta: 10_000.0,
            scaling: RopeScaling::None,
        },
    );
    let tables = rope.tables(&positions, &Device::Cpu).unwrap();
    let shape = |p: Projection| match p {
        Projection::Q => (heads * head_dim, hidden),
        Projection::K | Projection::V => (kv_heads * head_dim, hidden),
        Projection::O => (hidden, heads * head_dim),
        Projection::Gate | Projection::Up => (intermediate, hidden),
        Projection::Down => (hidden, intermediate),
    };
    let weights: Vec<LoraWeights> = Projection::ALL
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let (out, input) = shape(p);
            LoraWeights {
                a: tensor(&[r, input], 20 + i as u64, 0.2),
                b: tensor(&[out, r], 40 + i as u64, 0.2),
            }
        })
        .collect();
    let x = tensor(&[tokens, hidden], 60, 1.0);
    let d_out = tensor(&[tokens, hidden], 61, 1.0);

    let run = |backend: &dyn Backend| {
        let mut lora = LayerAdapter::none();
        lora.scale = 2.0;
        let mut dropout = LoraDropout::new(0.1, 5);
        for (i, p) in Projection::ALL.iter().enumerate() {
            lora.weights[i] = Some(&weights[i]);
            let dims = [tokens, shape(*p).1];
            lora.keep[i] = backend
                .dropout_mask(&mut dropout, &dims, &Device::Cpu)
                .unwrap();
        }
        let (out, cache) = layer_forward(backend, &layer, &lora, &x, &tables, &segments).unwrap();
        let (dx, grads): (_, LayerGrads) = layer_backward(
            backend, &layer, &lora, &tables, &segments, &cache, &d_out, true,
        )
        .unwrap();
        // Generation: the same tokens through a KV cache per sequence.
        let no_dropout = LayerAdapter {
            keep: Default::default(),
            ..lora.clone()
        };
        let mut kv = [LayerKv::default(), LayerKv::default()];
        let mut caches: Vec<&mut LayerKv> = kv.iter_mut().collect();
        let cached = layer_forward_cached(
            backend,
            &layer,
            &no_dropout,
            &x,
            &tables,
            &segments,
            &mut caches,
        )
        .unwrap();
        let mut all = vec![values(&out), values(&dx.unwrap()), values(&cached)];
        for g in grads.iter().flatten() {
            all.push(values(&g.a));
            all.push(values(&g.b));
        }
        all
    };

    let recording = Recording::default();
    assert_eq!(run(&recording), run(&CpuBackend));
    let expected = [
        "apply_dropout",
        "cached_attention",
        "causal_attention",
        "causal_attention_backward",
        "dropout_mask",
        "frozen_forward",
        "frozen_input_gradient",
        "lora_backward",
        "lora_forward",
        "rms_norm",
        "rms_norm_backward",
        "rope",
        "rope_backward",
        "sum_input_gradients",
        "swiglu",
        "swiglu_backward",
    ];
    assert_eq!(recording.ops(), expected);
    let calls = recording.calls.lock().unwrap();
    // Seven projections forward twice (training and cached), once back;
    // one attention per segment in each forward.
    assert_eq!(calls["frozen_forward"], 14);
    assert_eq!(calls["lora_forward"], 14);
    assert_eq!(calls["lora_backward"], 7);
    assert_eq!(calls["causal_attention"], 2);
    assert_eq!(calls["cached_attention"], 2);
}
