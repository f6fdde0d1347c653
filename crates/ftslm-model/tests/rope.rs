//! Llama 3.1 RoPE frequencies against a direct evaluation of the scaling
//! formula, one frequency from each band, and the rotation itself.

use candle_core::{Device, Tensor};
use ftslm_model::rope::{inverse_frequencies, RotaryEmbedding};
use ftslm_model::{RopeConfig, RopeScaling};

fn llama31(theta: f64) -> RopeConfig {
    RopeConfig {
        theta,
        scaling: RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        },
    }
}

fn relative_error(got: f32, want: f64) -> f64 {
    ((got as f64 - want) / want).abs()
}

#[test]
fn llama3_scaling_in_each_band() {
    // Llama 3.1 8B: head_dim 128, theta 500000.
    let (head_dim, theta) = (128usize, 500_000f64);
    let scaled = inverse_frequencies(head_dim, &llama31(theta));
    let plain = |i: usize| theta.powf(-(2.0 * i as f64) / head_dim as f64);
    let wavelength = |i: usize| 2.0 * std::f64::consts::PI / plain(i);
    assert_eq!(scaled.len(), 64);

    // High frequencies (wavelength < 8192/4 = 2048) are kept.
    let high = 10;
    assert!(wavelength(high) < 2048.0);
    assert!(relative_error(scaled[high], plain(high)) < 1e-6);

    // Low frequencies (wavelength > 8192/1) are divided by the factor 8.
    let low = 60;
    assert!(wavelength(low) > 8192.0);
    assert!(relative_error(scaled[low], plain(low) / 8.0) < 1e-6);

    // In between, a blend: s = (8192/λ − 1)/(4 − 1); (1−s)·f/8 + s·f.
    let medium = (0..64)
        .find(|&i| wavelength(i) > 2048.0 && wavelength(i) < 8192.0)
        .unwrap();
    let s = (8192.0 / wavelength(medium) - 1.0) / 3.0;
    let want = (1.0 - s) * plain(medium) / 8.0 + s * plain(medium);
    assert!(s > 0.0 && s < 1.0);
    assert!(relative_error(scaled[medium], want) < 1e-6);
    assert!(
        relative_error(scaled[medium], plain(medium)) > 1e-3,
        "the blend must change it"
    );
}

#[test]
fn plain_rope_is_theta_to_the_minus_2i_over_d() {
    let config = RopeConfig {
        theta: 10_000.0,
        scaling: RopeScaling::None,
    };
    let freqs = inverse_frequencies(64, &config);
    for (i, &f) in freqs.iter().enumerate() {
        assert!(relative_error(f, 10_000f64.powf(-(2.0 * i as f64) / 64.0)) < 1e-6);
    }
}

#[test]
fn rotation_pairs_dimension_i_with_i_plus_half() {
    // head_dim 4: angles θ0 = 1, θ1 = theta^(-1/2) = 0.01 for theta 1e4.
    let config = RopeConfig {
        theta: 10_000.0,
        scaling: RopeScaling::None,
    };
    let rope = RotaryEmbedding::new(4, &config);
    let tables = rope.tables(&[0, 3], &Device::Cpu).unwrap();
    // [tokens 2, heads 1, head_dim 4]
    let x = Tensor::new(
        &[[[1f32, 2.0, 3.0, 4.0]], [[1.0, 2.0, 3.0, 4.0]]],
        &Device::Cpu,
    )
    .unwrap();
    let y: Vec<Vec<Vec<f32>>> = tables.apply(&x).unwrap().to_vec3().unwrap();
    assert_eq!(
        y[0][0],
        vec![1.0, 2.0, 3.0, 4.0],
        "position 0 is the identity"
    );
    let (a0, a1) = (3.0f64, 0.03f64);
    let want = [
        1.0 * a0.cos() - 3.0 * a0.sin(),
        2.0 * a1.cos() - 4.0 * a1.sin(),
        3.0 * a0.cos() + 1.0 * a0.sin(),
        4.0 * a1.cos() + 2.0 * a1.sin(),
    ];
    for (got, want) in y[1][0].iter().zip(want) {
        assert!((*got as f64 - want).abs() < 1e-5, "{got} vs {want}");
    }
}
