//! Gradient normalisation and global-norm clipping over all trainable tensors,
//! as `torch.nn.utils.clip_grad_norm_` does it.

use crate::engine::ParamView;

/// Multiplies every gradient by `factor`.
pub fn scale_grads(params: &mut [ParamView<'_>], factor: f32) {
    for p in params.iter_mut() {
        p.grad.iter_mut().for_each(|g| *g *= factor);
    }
}

/// The L2 norm of all gradients taken together (accumulated in f64 so that
/// millions of small squares do not lose precision).
pub fn global_grad_norm(params: &[ParamView<'_>]) -> f64 {
    params
        .iter()
        .flat_map(|p| p.grad.iter())
        .map(|&g| (g as f64) * (g as f64))
        .sum::<f64>()
        .sqrt()
}

/// Scales the gradients down so their global norm is at most `max_norm`
/// (torch's `max_norm / (norm + 1e-6)`, never scaling up). Returns the norm
/// before clipping, which is what gets logged. `max_norm <= 0` disables clipping.
pub fn clip_grad_norm(params: &mut [ParamView<'_>], max_norm: f64) -> f64 {
    let norm = global_grad_norm(params);
    if max_norm > 0.0 && norm.is_finite() {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            scale_grads(params, coef as f32);
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_the_global_norm_and_reports_it_before_clipping() {
        let (mut a, mut ga) = (vec![0.0f32; 2], vec![3.0f32, 0.0]);
        let (mut b, mut gb) = (vec![0.0f32], vec![4.0f32]);
        let mut params = vec![
            ParamView {
                name: "a",
                shape: &[2],
                value: &mut a,
                grad: &mut ga,
            },
            ParamView {
                name: "b",
                shape: &[1],
                value: &mut b,
                grad: &mut gb,
            },
        ];
        let norm = clip_grad_norm(&mut params, 1.0);
        assert_eq!(norm, 5.0);
        let coef = 1.0 / (5.0 + 1e-6);
        assert!((params[0].grad[0] as f64 - 3.0 * coef).abs() < 1e-6);
        assert!((params[1].grad[0] as f64 - 4.0 * coef).abs() < 1e-6);
        assert!((global_grad_norm(&params) - 1.0).abs() < 1e-6);
        // Below the limit nothing changes.
        let before = params[1].grad[0];
        assert!((clip_grad_norm(&mut params, 10.0) - 1.0).abs() < 1e-6);
        assert_eq!(params[1].grad[0], before);
    }
}
