//! The two code books bitsandbytes uses for QLoRA and the exact rules by which
//! it picks a code: the 16-value NF4 table for weights, and the signed 8-bit
//! "dynamic" map for the double-quantized block scales.
//!
//! bitsandbytes' CPU and CUDA backends store the same format but round a few
//! values differently (see [`BnbBackend`]); both rules are reproduced here in
//! the same f32 arithmetic, including tie-breaking and the treatment of NaN.

use std::sync::OnceLock;

/// NF4 code values (quantiles of a standard normal, rescaled to [-1, 1]),
/// indexed by the 4-bit code. These are bitsandbytes' f32 values.
#[allow(clippy::excessive_precision)]
pub const NF4_CODE: [f32; 16] = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
];

/// Which bitsandbytes implementation to reproduce bit for bit. They agree on
/// the stored format and on dequantization, but not on every rounding choice
/// while quantizing:
///
/// | | `Cpu` (`backends/default` + `csrc/cpu_ops.cpp`) | `Cuda` (`kQuantizeBlockwise`) |
/// |---|---|---|
/// | NF4 boundaries | f32 midpoints `(a + b) / 2` | decimal literals (4 differ by 1 ulp) |
/// | all-zero block | code 7 (absmax clamped to 1e-38) | code 0 (0 · ∞ = NaN) |
/// | partial last block | divides by absmax | multiplies by 1/absmax |
/// | 8-bit absmax codes | nearest by a 65536-bin lookup table | 7-step binary search + midpoint test |
///
/// The 8-bit rules disagree for values within about 1.5e-5 of a midpoint
/// between map entries (the lookup table's bin width), which does happen: 5 of
/// the golden's 512 absmax codes differ between the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BnbBackend {
    /// The golden fixture (`golden/nf4_bitsandbytes.json`) was made on CPU.
    #[default]
    Cpu,
    Cuda,
}

/// The CPU backend's NF4 boundaries: `torch.bucketize` against the f32
/// midpoints of adjacent codes.
const NF4_CPU_BOUNDARIES: [f32; 15] = f32_midpoints(&NF4_CODE);

const fn f32_midpoints<const N: usize, const M: usize>(code: &[f32; N]) -> [f32; M] {
    let mut midpoints = [0.0f32; M];
    let mut k = 0;
    while k < M {
        midpoints[k] = (code[k] + code[k + 1]) / 2.0;
        k += 1;
    }
    midpoints
}

/// The CUDA kernel's NF4 boundaries, ascending: code `k` is chosen for values
/// in `(boundary[k-1], boundary[k]]`.
///
/// They are the midpoints of adjacent codes as the kernel's decision tree
/// spells them: 17-digit decimals parsed straight to f32. Four of them differ
/// by one ulp from the f32 midpoints the CPU backend computes, and from
/// `((a + b) / 2) as f32` via f64, so the kernel's decimals are kept verbatim.
#[allow(clippy::excessive_precision)]
const NF4_CUDA_BOUNDARIES: [f32; 15] = [
    -0.8480964004993439,
    -0.6106329262256622,
    -0.4599952697753906,
    -0.33967943489551544,
    -0.23460740596055984,
    -0.13791173323988914,
    -0.045525018125772476,
    0.03979014977812767,
    0.1202552504837513,
    0.2035212516784668,
    0.2920137718319893,
    0.3893125355243683,
    0.5016634166240692,
    0.6427869200706482,
    0.8614784181118011,
];

impl BnbBackend {
    pub(crate) fn nf4_boundaries(self) -> &'static [f32; 15] {
        match self {
            BnbBackend::Cpu => &NF4_CPU_BOUNDARIES,
            BnbBackend::Cuda => &NF4_CUDA_BOUNDARIES,
        }
    }
}

/// The NF4 code for `x`, a weight already scaled into [-1, 1] by its block.
///
/// The CUDA kernel walks a balanced tree of strict `x > boundary` tests and
/// `torch.bucketize` (right=False) counts the boundaries strictly below `x`;
/// both select the number of boundaries below `x`, which is counted here
/// without branches. A value equal to a boundary takes the lower code, and NaN
/// (an all-zero block on the GPU, 0 · ∞) fails every test and becomes code 0.
#[inline]
pub(crate) fn nf4_code_index(x: f32, boundaries: &[f32; 15]) -> u8 {
    boundaries
        .iter()
        .fold(0u8, |code, &boundary| code + u8::from(x > boundary))
}

/// bitsandbytes' signed 8-bit dynamic map (`create_dynamic_map(signed=True)`):
/// 127 negative and 127 positive values spread over seven decades, then 0 and
/// 1.0, sorted ascending. Used to quantize the centred block scales.
pub fn dynamic_code_map() -> &'static [f32; 256] {
    static MAP: OnceLock<[f32; 256]> = OnceLock::new();
    MAP.get_or_init(build_dynamic_code_map)
}

/// Rebuilds the map the way PyTorch computes it in f32: for decade `i` in
/// 0..7, `2^i + 1` boundaries from `torch.linspace(0.1, 1, n)`, the midpoints
/// of adjacent boundaries, scaled by `10^(i-6)`, with both signs.
fn build_dynamic_code_map() -> [f32; 256] {
    let mut values: Vec<f32> = Vec::with_capacity(256);
    // Python's `10 ** (i - 6)`, correctly rounded f64 literals (powi need not be).
    const DECADE_SCALES: [f64; 7] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
    for (decade, &scale) in DECADE_SCALES.iter().enumerate() {
        let boundaries = torch_linspace_f32(0.1, 1.0, (1usize << decade) + 1);
        // Python multiplies the f32 tensor by a Python float, which PyTorch
        // applies as an f32 scalar.
        let decade_scale = scale as f32;
        for pair in boundaries.windows(2) {
            let value = (pair[0] + pair[1]) / 2.0 * decade_scale;
            values.push(value);
            values.push(-value);
        }
    }
    values.push(0.0);
    values.push(1.0);
    values.sort_by(f32::total_cmp);
    let mut map = [0.0f32; 256];
    map.copy_from_slice(&values);
    map
}

/// `torch.linspace(start, end, steps)` for f32 on CPU: the first half counts
/// up from `start`, the second half down from `end`, each point one fused
/// multiply-add (the compiled kernel contracts `start + step * i` into an FMA;
/// without it 42 of the 256 map values come out one ulp off).
fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((steps - i - 1) as f32, end)
            }
        })
        .collect()
}

/// The CPU backend's choice of dynamic-map code for `x` (a centred scale times
/// its block's `1/absmax`): `x` is rounded to the nearest of 65536 evenly
/// spaced points on [-1, 1], and each point was assigned the code whose
/// midpoints bracket it. This is nearest-code only up to the bin width.
pub(crate) fn dynamic_code_index_cpu(x: f32) -> u8 {
    let clamped = x.clamp(-1.0, 1.0);
    // Truncating cast, as the C++ `static_cast<uint16_t>` of a value ≥ 0.
    let bin = ((clamped + 1.0) * 0.5 * LUT_LAST as f32 + 0.5) as usize;
    dynamic_code_lut()[bin.min(LUT_LAST)]
}

const LUT_LAST: usize = 65535;

/// Code per lookup bin, built as the CPU backend builds it: bin `i` stands for
/// `-1 + 2i/65535` (f32) and takes the number of f32 midpoints `0.5 · (a + b)`
/// of adjacent map entries strictly below that value.
fn dynamic_code_lut() -> &'static [u8; LUT_LAST + 1] {
    static LUT: OnceLock<Box<[u8; LUT_LAST + 1]>> = OnceLock::new();
    LUT.get_or_init(|| {
        let map = dynamic_code_map();
        let midpoints: Vec<f32> = map.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
        let mut lut = Box::new([0u8; LUT_LAST + 1]);
        let mut code = 0usize;
        for (bin, slot) in lut.iter_mut().enumerate() {
            let point = -1.0f32 + (2.0 * bin as f32) / LUT_LAST as f32;
            while code < midpoints.len() && midpoints[code] < point {
                code += 1;
            }
            // At most 255 midpoints, so the count fits a code.
            *slot = code as u8;
        }
        lut
    })
}

/// The CUDA kernel's choice of dynamic-map code for `x` (a centred scale
/// times its block's `1/absmax`), reproducing its search exactly.
///
/// The kernel does not search for the nearest value directly: it halves from
/// the middle of the map seven times (steps 64..1), remembering the last probe
/// below `x` and the last probe at or above it, and then compares `x` with the
/// f32 midpoint between the final probe and whichever remembered probe lies
/// on `x`'s side. The remembered probe need not be adjacent to the final one,
/// so this is reproduced step for step rather than replaced by a nearest-value
/// search, which could disagree at the margins.
pub(crate) fn dynamic_code_index_cuda(map: &[f32; 256], x: f32) -> u8 {
    let mut probe = 127usize;
    let mut below = 0usize; // last probe with map value < x (or the map's first entry)
    let mut above = 255usize; // last probe with map value >= x (or the map's last entry)
    let mut step = 64usize;
    while step > 0 {
        if x > map[probe] {
            below = probe;
            probe += step;
        } else {
            above = probe;
            probe -= step;
        }
        step /= 2;
    }
    // probe ∈ [0, 254] after 64+32+…+1 = 127 moves either way from 127.
    let probe_value = map[probe];
    let chosen = if x > probe_value {
        if x > (map[above] + probe_value) * 0.5 {
            above
        } else {
            probe
        }
    } else if x < (map[below] + probe_value) * 0.5 {
        below
    } else {
        probe
    };
    // All three candidates are indices into a 256-entry map.
    chosen as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nf4_boundaries_separate_adjacent_codes() {
        for backend in [BnbBackend::Cpu, BnbBackend::Cuda] {
            for (k, &boundary) in backend.nf4_boundaries().iter().enumerate() {
                assert!(NF4_CODE[k] < boundary && boundary < NF4_CODE[k + 1]);
                let midpoint = (NF4_CODE[k] as f64 + NF4_CODE[k + 1] as f64) / 2.0;
                assert!((boundary as f64 - midpoint).abs() <= f32::EPSILON as f64 * midpoint.abs());
            }
        }
        // The two backends really differ, by one ulp, at boundaries 0, 8, 12 and 14.
        let differing: Vec<usize> = (0..15)
            .filter(|&k| NF4_CPU_BOUNDARIES[k] != NF4_CUDA_BOUNDARIES[k])
            .collect();
        assert_eq!(differing, [0, 8, 12, 14]);
    }

    #[test]
    fn every_nf4_code_value_maps_to_its_own_code() {
        for backend in [BnbBackend::Cpu, BnbBackend::Cuda] {
            for (k, &value) in NF4_CODE.iter().enumerate() {
                assert_eq!(nf4_code_index(value, backend.nf4_boundaries()), k as u8);
            }
        }
        assert_eq!(nf4_code_index(f32::NAN, &NF4_CUDA_BOUNDARIES), 0);
    }

    #[test]
    fn every_dynamic_map_value_maps_to_its_own_code() {
        let map = dynamic_code_map();
        assert!(
            map.windows(2).all(|w| w[0] < w[1]),
            "map must be strictly ascending"
        );
        assert_eq!((map[127], map[255]), (0.0, 1.0));
        for (k, &value) in map.iter().enumerate() {
            assert_eq!(
                dynamic_code_index_cuda(map, value),
                k as u8,
                "value {value}"
            );
        }
        // Beyond either end the search saturates instead of running off the map.
        assert_eq!(dynamic_code_index_cuda(map, 2.0), 255);
        assert_eq!(dynamic_code_index_cuda(map, -2.0), 0);
        assert_eq!(dynamic_code_index_cuda(map, f32::NAN), 0);
    }

    #[test]
    fn cpu_lookup_table_is_nearest_code_up_to_its_bin_width() {
        let map = dynamic_code_map();
        // The coarse decades (spacing >= 1e-3) survive the 3.05e-5-wide bins intact.
        for (k, &value) in map.iter().enumerate().filter(|(_, v)| v.abs() >= 0.1) {
            assert_eq!(dynamic_code_index_cpu(value), k as u8, "value {value}");
        }
        assert_eq!(dynamic_code_index_cpu(1.0), 255);
        assert_eq!(dynamic_code_index_cpu(-1.0), 0);
        // Finer than a bin the table cannot resolve. With an odd number of
        // bins no grid point sits at 0: 0 and +5.5e-7 round to the point
        // +1.53e-5, whose code is 131 (2.125e-5); -5.5e-7 goes to 123.
        assert_eq!(dynamic_code_index_cpu(0.0), 131);
        assert_eq!(dynamic_code_index_cpu(map[128]), 131);
        assert_eq!(dynamic_code_index_cpu(map[126]), 123);
        let bin_width = 2.0 / 65535.0;
        for step in 0..=2000 {
            let x = -1.0 + step as f32 * 0.001;
            let code = usize::from(dynamic_code_index_cpu(x));
            let nearest = map
                .iter()
                .map(|&v| (v - x).abs())
                .fold(f32::INFINITY, f32::min);
            assert!((map[code] - x).abs() <= nearest + bin_width, "x {x}");
        }
    }
}
