//! `High` matmul precision (16-bit integer products on CPUs with AVX-512
//! VNNI) against `Highest` (f32) on the real SmolLM2 checkpoint with an NF4
//! base: the loss of a training row agrees to 1e-4, and the LoRA gradients
//! to about 0.5% (measured: 0.15% to 2% per matrix, 0.6% on average; the
//! integer rounding is 2⁻¹³ of each block's largest value, and the softmax
//! turns a logit's error into a relative error of its probability). bf16
//! products, the usual GPU choice, round each value to 2⁻⁹.

use candle_core::Device;
use ftslm_model::frozen_nf4::Nf4Format;
use ftslm_model::grad::{loss_and_grads, AdapterGrads, GradOptions, TrainingRow};
use ftslm_model::kernel::{integer_products_available, with_matmul_precision, MatmulPrecision};
use ftslm_model::loader::gguf::load_gguf_with_format;
use ftslm_model::{LlamaModel, LoraAdapter, LoraSettings, Projection};

const TOKENS: usize = 160;

fn run(
    model: &LlamaModel,
    adapter: &LoraAdapter,
    ids: &[u32],
    precision: MatmulPrecision,
) -> (f64, AdapterGrads) {
    let positions: Vec<u32> = (0..ids.len() as u32).collect();
    let segments = vec![0u32; ids.len()];
    let mask: Vec<bool> = (0..ids.len()).map(|t| t > 0).collect();
    let row = TrainingRow {
        input_ids: ids,
        positions: &positions,
        segments: &segments,
        target_mask: &mask,
    };
    with_matmul_precision(precision, || {
        let (nll, grads) =
            loss_and_grads(model, adapter, &row, None, &GradOptions::default()).unwrap();
        (nll.total / nll.tokens as f64, grads)
    })
}

fn values(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn high_precision_loss_and_gradients_track_f32() {
    let dir = ftslm_testkit::require_shared!("models/smollm2-135m-instruct");
    let device = Device::Cpu;
    let (model, _) = load_gguf_with_format(
        &dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        &Nf4Format::default(),
        &device,
    )
    .unwrap();
    let settings = LoraSettings {
        r: 16,
        alpha: 32.0,
        dropout: 0.0,
        target_modules: vec![Projection::Q, Projection::K, Projection::V, Projection::O],
        use_rslora: false,
    };
    let adapter = LoraAdapter::new(model.config(), settings, None, 7, &device).unwrap();
    // A reproducible token stream over the whole vocabulary's common range.
    let ids: Vec<u32> = (0..TOKENS as u32)
        .map(|t| (t.wrapping_mul(2_654_435_761) >> 7) % 20_000 + 10)
        .collect();

    let (loss_f32, grads_f32) = run(&model, &adapter, &ids, MatmulPrecision::Highest);
    let (loss, grads) = run(&model, &adapter, &ids, MatmulPrecision::High);
    eprintln!("mean nll: f32 {loss_f32:.6}, high {loss:.6}");
    assert!(
        ((loss - loss_f32) / loss_f32).abs() < 1e-4,
        "mean nll {loss} vs f32 {loss_f32}"
    );

    let mut relative_errors = vec![];
    for layer in 0..model.layers().len() {
        for projection in [Projection::Q, Projection::K, Projection::V, Projection::O] {
            // LoRA B starts at zero, so only B's gradient is non-zero.
            let want = values(&grads_f32.get(layer, projection).unwrap().b);
            let got = values(&grads.get(layer, projection).unwrap().b);
            let norm: f64 = want
                .iter()
                .map(|v| f64::from(*v).powi(2))
                .sum::<f64>()
                .sqrt();
            let error: f64 = want
                .iter()
                .zip(&got)
                .map(|(w, g)| f64::from(w - g).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(norm > 0.0, "layer {layer} {projection:?}: zero gradient");
            assert!(
                error <= 5e-2 * norm,
                "layer {layer} {projection:?}: |dB - dB_f32| = {error:e}, |dB_f32| = {norm:e}"
            );
            relative_errors.push(error / norm);
        }
    }
    assert_eq!(relative_errors.len(), 4 * model.layers().len());
    let mean = relative_errors.iter().sum::<f64>() / relative_errors.len() as f64;
    eprintln!("relative error of dB: mean {mean:.2e}");
    assert!(mean < 1e-2, "mean relative error of dB {mean:e}");

    if integer_products_available() {
        #[cfg(target_arch = "x86_64")]
        with_matmul_precision(MatmulPrecision::High, || {
            assert!(
                model.quantised_lm_head().is_some(),
                "the integer LM head was not built"
            );
        });
        assert_ne!(loss, loss_f32, "no integer product ran");
    } else {
        eprintln!("no AVX-512 VNNI on this CPU: High ran the f32 products");
    }
}
