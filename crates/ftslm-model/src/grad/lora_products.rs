//! The LoRA products of one adapted projection on `crate::kernel`'s
//! products, on the calling thread, for f32 CPU tensors (the CPU backend's;
//! others take candle's matmul there). candle handed these small products to
//! its thread pool, so a row's thread waited on another thread for each one
//! while that pool competed with the rows for the cores. The math:
//!
//!   down = x̃·Aᵀ [rows, r], y = base + s·down·Bᵀ
//!   d_down = s·dy·B, dB = (s·down)ᵀ·dy transposed, dA = d_downᵀ·x̃, dx̃ = d_down·A
//!
//! with x̃ the projection's input after dropout and s the adapter's scale.

use candle_core::{Device, Tensor};

use crate::backend::FrozenInputGradient;
use crate::dropout::DropoutMask;
use crate::error::Result;
use crate::kernel::dropout::factor;
use crate::kernel::{dense_matmul, transpose, with_cpu_f32s};
use crate::lora::LoraWeights;

/// (y, down) for the frozen projection's output `base` [rows, out] and
/// x̃ [rows, in]; None where the kernels or the tensors do not fit.
pub(crate) fn forward(
    base: &Tensor,
    x_kept: &Tensor,
    lora: &LoraWeights,
    scale: f64,
) -> Result<Option<(Tensor, Tensor)>> {
    let Some([rows, in_f, out_f, r]) = shapes(x_kept, lora) else {
        return Ok(None);
    };
    if base.dims() != [rows, out_f] {
        return Ok(None);
    }
    let s = scale as f32;
    let values = with_cpu_f32s([base, x_kept, &lora.a, &lora.b], |[base, x, a, b]| {
        // Aᵀ and Bᵀ are small; as the right operand they let the kernel read
        // x̃ and down in place instead of packing x̃ for a product of rank r.
        let (mut a_t, mut b_t) = (vec![0f32; in_f * r], vec![0f32; r * out_f]);
        transpose(a, r, in_f, &mut a_t);
        transpose(b, out_f, r, &mut b_t);
        let mut down = vec![0f32; rows * r];
        let mut y = vec![0f32; rows * out_f];
        if !dense_matmul(&a_t, [in_f, r], x, rows, &mut down)
            || !dense_matmul(&b_t, [r, out_f], &down, rows, &mut y)
        {
            return None;
        }
        // As candle's `base + up.affine(s, 0)`: the same roundings.
        for (y, &base) in y.iter_mut().zip(base) {
            *y = base + *y * s;
        }
        Some((y, down))
    })
    .flatten();
    let Some((y, down)) = values else {
        return Ok(None);
    };
    Ok(Some((
        Tensor::from_vec(y, (rows, out_f), &Device::Cpu)?,
        Tensor::from_vec(down, (rows, r), &Device::Cpu)?,
    )))
}

/// (dx = frozen dx + dx̃ ⊙ keep when `frozen` is given, the gradients of A
/// and B) from dy [rows, out] and the forward's x̃ and down; None where the
/// kernels or the tensors do not fit.
pub(crate) fn backward(
    dy: &Tensor,
    x_kept: &Tensor,
    down: &Tensor,
    lora: &LoraWeights,
    scale: f64,
    frozen: Option<FrozenInputGradient<'_>>,
) -> Result<Option<(Option<Tensor>, LoraWeights)>> {
    let Some([rows, in_f, out_f, r]) = shapes(x_kept, lora) else {
        return Ok(None);
    };
    if dy.dims() != [rows, out_f] || down.dims() != [rows, r] {
        return Ok(None);
    }
    if let Some(frozen) = frozen {
        let keep_fits = frozen.keep.is_none_or(|keep| keep.dims() == [rows, in_f]);
        if frozen.dx.dims() != [rows, in_f] || !keep_fits {
            return Ok(None);
        }
    }
    // Where there is no frozen gradient, x̃ stands in for it (unread): the
    // closure takes a fixed number of tensors.
    let frozen_dx = frozen.map_or(x_kept, |f| f.dx);
    let keep = frozen.and_then(|f| f.keep);
    let want_dx = frozen.is_some();
    let s = scale as f32;
    let run = |kept: Option<&[u8]>| {
        with_cpu_f32s(
            [dy, x_kept, down, &lora.a, &lora.b, frozen_dx],
            |[dy, x, down, a, b, frozen_dx]| {
                let keep = kept.zip(keep.map(DropoutMask::scale));
                let values = [dy, x, down, a, b, frozen_dx];
                backward_values(values, [rows, in_f, out_f, r], s, want_dx, keep)
            },
        )
        .flatten()
    };
    let values = match keep {
        Some(keep) => keep.with_kept(|kept| run(Some(kept))).flatten(),
        None => run(None),
    };
    let Some((dx, da, db)) = values else {
        return Ok(None);
    };
    let dx = match dx {
        Some(dx) => Some(Tensor::from_vec(dx, (rows, in_f), &Device::Cpu)?),
        None => None,
    };
    Ok(Some((
        dx,
        LoraWeights {
            a: Tensor::from_vec(da, (r, in_f), &Device::Cpu)?,
            b: Tensor::from_vec(db, (out_f, r), &Device::Cpu)?,
        },
    )))
}

/// dx (when asked for), dA and dB as values.
type BackwardValues = (Option<Vec<f32>>, Vec<f32>, Vec<f32>);

/// [`backward`] on the tensors' values: (dx when `want_dx`, dA, dB).
fn backward_values(
    [dy, x, down, a, b, frozen_dx]: [&[f32]; 6],
    [rows, in_f, out_f, r]: [usize; 4],
    s: f32,
    want_dx: bool,
    keep: Option<(&[u8], f32)>,
) -> Option<BackwardValues> {
    // d_down = s·dy·B [rows, r]
    let mut d_down = vec![0f32; rows * r];
    if !dense_matmul(b, [out_f, r], dy, rows, &mut d_down) {
        return None;
    }
    d_down.iter_mut().for_each(|v| *v *= s);
    // dBᵀ = (s·down)ᵀ·dy [r, out]
    let mut scaled_down_t = vec![0f32; r * rows];
    transpose(down, rows, r, &mut scaled_down_t);
    scaled_down_t.iter_mut().for_each(|v| *v *= s);
    let mut db_t = vec![0f32; r * out_f];
    if !dense_matmul(dy, [rows, out_f], &scaled_down_t, r, &mut db_t) {
        return None;
    }
    let mut db = vec![0f32; out_f * r];
    transpose(&db_t, r, out_f, &mut db);
    // dA = d_downᵀ·x̃ [r, in]
    let mut d_down_t = vec![0f32; r * rows];
    transpose(&d_down, rows, r, &mut d_down_t);
    let mut da = vec![0f32; r * in_f];
    if !dense_matmul(x, [rows, in_f], &d_down_t, r, &mut da) {
        return None;
    }
    // dx = frozen dx + (d_down·A) ⊙ keep [rows, in], in one pass
    // over the product (candle's mul then add: the same roundings).
    let dx = if want_dx {
        let mut dx = vec![0f32; rows * in_f];
        if !dense_matmul(a, [r, in_f], &d_down, rows, &mut dx) {
            return None;
        }
        add_frozen_gradient(&mut dx, frozen_dx, keep);
        Some(dx)
    } else {
        None
    };
    Some((dx, da, db))
}

/// `dx[i] = frozen[i] + dx[i] · keep[i]` with `keep[i]` 0 or the mask's
/// scale (no `keep`: `frozen[i] + dx[i]`).
fn add_frozen_gradient(dx: &mut [f32], frozen: &[f32], keep: Option<(&[u8], f32)>) {
    match keep {
        Some((kept, scale)) => {
            for ((d, &f), &k) in dx.iter_mut().zip(frozen).zip(kept) {
                *d = f + *d * factor(k, scale);
            }
        }
        None => {
            for (d, &f) in dx.iter_mut().zip(frozen) {
                *d += f;
            }
        }
    }
}

/// [rows, in, out, r] where x̃ [rows, in], A [r, in] and B [out, r] agree.
fn shapes(x_kept: &Tensor, lora: &LoraWeights) -> Option<[usize; 4]> {
    let (Ok((rows, in_f)), Ok((r, a_in)), Ok((out_f, b_r))) =
        (x_kept.dims2(), lora.a.dims2(), lora.b.dims2())
    else {
        return None;
    };
    (a_in == in_f && b_r == r).then_some([rows, in_f, out_f, r])
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::*;
    use crate::test_support::{max_diff, random_tensor as random};

    /// Against candle's matmuls (the other path), on sizes that leave
    /// partial kernel tiles in every product.
    #[test]
    fn kernel_products_match_candle_matmuls() {
        let (rows, in_f, out_f, r) = (37, 70, 45, 5);
        let scale = 1.7;
        let lora = LoraWeights {
            a: random((r, in_f), 1),
            b: random((out_f, r), 2),
        };
        let (base, x, dy) = (
            random((rows, out_f), 3),
            random((rows, in_f), 4),
            random((rows, out_f), 5),
        );
        let Some((y, down)) = forward(&base, &x, &lora, scale).unwrap() else {
            eprintln!("no fast kernels on this CPU");
            return;
        };
        let want_down = x.matmul(&lora.a.t().unwrap()).unwrap();
        let want_y = (&base
            + want_down
                .matmul(&lora.b.t().unwrap())
                .unwrap()
                .affine(scale, 0.0)
                .unwrap())
        .unwrap();
        assert!(max_diff(&down, &want_down) < 1e-5);
        assert!(max_diff(&y, &want_y) < 1e-5);

        // The frozen path's gradient and a dropout mask.
        let frozen_dx = random((rows, in_f), 6);
        let kept: Vec<u8> = (0..rows * in_f).map(|i| u8::from(i % 3 != 0)).collect();
        let kept = Tensor::from_vec(kept, (rows, in_f), &Device::Cpu).unwrap();
        let keep = DropoutMask::new(kept, 1.25).unwrap();
        let frozen = FrozenInputGradient {
            dx: &frozen_dx,
            keep: Some(&keep),
        };
        let (dx, grads) = backward(&dy, &x, &down, &lora, scale, Some(frozen))
            .unwrap()
            .unwrap();
        let d_down = dy.matmul(&lora.b).unwrap().affine(scale, 0.0).unwrap();
        let want_db = dy
            .t()
            .unwrap()
            .matmul(&down.affine(scale, 0.0).unwrap())
            .unwrap();
        let want_da = d_down.t().unwrap().matmul(&x).unwrap();
        let d_kept = d_down.matmul(&lora.a).unwrap();
        let factors = keep.factors(DType::F32).unwrap();
        let want_dx = (&frozen_dx + d_kept.mul(&factors).unwrap()).unwrap();
        assert!(max_diff(&grads.b, &want_db) < 1e-4);
        assert!(max_diff(&grads.a, &want_da) < 1e-4);
        assert!(max_diff(&dx.unwrap(), &want_dx) < 1e-5);
        let unmasked = FrozenInputGradient {
            dx: &frozen_dx,
            keep: None,
        };
        let (dx, _) = backward(&dy, &x, &down, &lora, scale, Some(unmasked))
            .unwrap()
            .unwrap();
        let want_dx = (&frozen_dx + &d_kept).unwrap();
        assert!(max_diff(&dx.unwrap(), &want_dx) < 1e-5);
        let (no_dx, _) = backward(&dy, &x, &down, &lora, scale, None)
            .unwrap()
            .unwrap();
        assert!(no_dx.is_none());
    }
}
