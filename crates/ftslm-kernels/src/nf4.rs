//! Frozen base weights in NF4 with optional double quantization, stored and
//! decoded bit for bit as bitsandbytes does (`quantize_4bit(quant_type="nf4",
//! blocksize=64)`, `compress_statistics=True` for double quantization), so a
//! checkpoint quantized here or there dequantizes to the same values.
//!
//! Layout, as in bitsandbytes: the weight matrix `[out_features, in_features]`
//! is flattened row-major and cut into blocks of 64 values; each block keeps
//! one f32 absmax, each value a 4-bit code, two codes per byte with the first
//! element in the high nibble. Blocks may span rows when `in_features` is not
//! a multiple of 64. A final partial block is kept, as bitsandbytes keeps it:
//! its absmax covers the real values only, and when the value count is odd
//! the last low nibble holds the code of a zero pad (7, the NF4 zero).
//!
//! Double quantization replaces the f32 absmax vector by its mean (`offset`)
//! plus one 8-bit dynamic-map code per block, scaled per group of 256 blocks.
//!
//! bitsandbytes' CPU and CUDA backends round a few values differently while
//! quantizing; [`BnbBackend`] picks which to reproduce. The default is the
//! CPU backend, which produced the golden fixture. Dequantization is the same
//! for both.

#[cfg(target_arch = "x86_64")]
mod avx512;
mod codebook;
mod matmul;
#[cfg(target_arch = "x86_64")]
mod vnni;

pub use codebook::{dynamic_code_map, BnbBackend, NF4_CODE};
pub use matmul::SharedPanels;

use codebook::{dynamic_code_index_cpu, dynamic_code_index_cuda, nf4_code_index};

/// Values per NF4 block (one absmax each).
pub const NF4_BLOCK_SIZE: usize = 64;
/// Absmax values per block of the second quantization (one f32 scale each).
pub const NESTED_BLOCK_SIZE: usize = 256;

/// Below this many weights quantization stays on the calling thread.
const PARALLEL_QUANTIZE_MIN: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Nf4Error {
    #[error("NF4 shape {shape:?} holds {expected} values but {actual} were given")]
    WeightCount {
        shape: [usize; 2],
        expected: usize,
        actual: usize,
    },
    #[error("NF4 shape {shape:?} is empty or too large to address")]
    UnusableShape { shape: [usize; 2] },
    #[error(
        "weight {index} (row {row}, column {column}) is {value}; NF4 quantizes finite weights only"
    )]
    NonFiniteWeight {
        index: usize,
        row: usize,
        column: usize,
        value: f32,
    },
    #[error("{buffer} holds {actual} values but shape {shape:?} needs {expected}")]
    BufferLength {
        buffer: &'static str,
        shape: [usize; 2],
        expected: usize,
        actual: usize,
    },
    #[error("{what} {index} is {value}; block scales must be finite")]
    NonFiniteScale {
        what: &'static str,
        index: usize,
        value: f32,
    },
    #[error("row {row} is out of range for a weight with {out_features} rows")]
    RowOutOfRange { row: usize, out_features: usize },
}

/// The per-block scales of an [`Nf4Tensor`].
#[derive(Debug, Clone, PartialEq)]
pub enum Absmax {
    /// One f32 absmax per 64-value block (bitsandbytes' `absmax`).
    Plain(Vec<f32>),
    /// The absmax vector after double quantization: block `b`'s absmax is
    /// `dynamic_code_map()[codes[b]] * scales[b / 256] + offset`.
    /// `codes` is bitsandbytes' `absmax` (u8), `scales` its `nested_absmax`,
    /// `offset` its `offset`.
    DoubleQuantized {
        codes: Vec<u8>,
        scales: Vec<f32>,
        offset: f32,
    },
}

impl Absmax {
    /// Number of 64-value blocks these scales describe.
    pub fn block_count(&self) -> usize {
        match self {
            Absmax::Plain(values) => values.len(),
            Absmax::DoubleQuantized { codes, .. } => codes.len(),
        }
    }

    /// Bytes these scales occupy when saved.
    pub fn storage_bytes(&self) -> usize {
        match self {
            Absmax::Plain(values) => values.len() * 4,
            Absmax::DoubleQuantized { codes, scales, .. } => codes.len() + scales.len() * 4 + 4,
        }
    }

    /// The f32 absmax of block `block` (caller keeps `block < block_count()`).
    #[inline]
    fn block_absmax(&self, block: usize) -> f32 {
        match self {
            Absmax::Plain(values) => values[block],
            Absmax::DoubleQuantized {
                codes,
                scales,
                offset,
            } => {
                // Two roundings, as bitsandbytes: dequantize_blockwise, then `+= offset`.
                let scaled = dynamic_code_map()[usize::from(codes[block])]
                    * scales[block / NESTED_BLOCK_SIZE];
                scaled + offset
            }
        }
    }
}

/// A frozen weight matrix `[out_features, in_features]` stored as NF4 codes.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Tensor {
    shape: [usize; 2],
    packed: Vec<u8>,
    absmax: Absmax,
}

impl Nf4Tensor {
    /// Quantizes a row-major `[out_features, in_features]` matrix exactly as
    /// bitsandbytes' CPU backend does.
    pub fn quantize(
        weights: &[f32],
        shape: [usize; 2],
        double_quant: bool,
    ) -> Result<Self, Nf4Error> {
        Self::quantize_as(weights, shape, double_quant, BnbBackend::Cpu)
    }

    /// Quantizes exactly as the given bitsandbytes backend does.
    pub fn quantize_as(
        weights: &[f32],
        shape: [usize; 2],
        double_quant: bool,
        backend: BnbBackend,
    ) -> Result<Self, Nf4Error> {
        let numel = element_count(shape)?;
        if weights.len() != numel {
            return Err(Nf4Error::WeightCount {
                shape,
                expected: numel,
                actual: weights.len(),
            });
        }
        if let Some(index) = weights.iter().position(|w| !w.is_finite()) {
            return Err(Nf4Error::NonFiniteWeight {
                index,
                row: index / shape[1],
                column: index % shape[1],
                value: weights[index],
            });
        }
        let (packed, block_absmax) = quantize_blocks(weights, backend);
        let absmax = if double_quant {
            double_quantize(&block_absmax, backend)
        } else {
            Absmax::Plain(block_absmax)
        };
        Ok(Nf4Tensor {
            shape,
            packed,
            absmax,
        })
    }

    /// Quantizes bf16 weights (the usual checkpoint dtype) as bitsandbytes'
    /// CPU backend does; bf16 widens to f32 exactly, as in bitsandbytes.
    pub fn quantize_bf16(
        weights: &[half::bf16],
        shape: [usize; 2],
        double_quant: bool,
    ) -> Result<Self, Nf4Error> {
        Self::quantize_bf16_as(weights, shape, double_quant, BnbBackend::Cpu)
    }

    /// As [`Self::quantize_bf16`], reproducing the given backend.
    pub fn quantize_bf16_as(
        weights: &[half::bf16],
        shape: [usize; 2],
        double_quant: bool,
        backend: BnbBackend,
    ) -> Result<Self, Nf4Error> {
        let widened: Vec<f32> = weights.iter().map(|w| w.to_f32()).collect();
        Self::quantize_as(&widened, shape, double_quant, backend)
    }

    /// Reassembles a tensor from saved parts (e.g. a bitsandbytes checkpoint),
    /// checking that their sizes fit the shape.
    pub fn from_parts(
        shape: [usize; 2],
        packed: Vec<u8>,
        absmax: Absmax,
    ) -> Result<Self, Nf4Error> {
        let numel = element_count(shape)?;
        let blocks = numel.div_ceil(NF4_BLOCK_SIZE);
        check_len("packed codes", shape, numel.div_ceil(2), packed.len())?;
        match &absmax {
            Absmax::Plain(values) => {
                check_len("absmax", shape, blocks, values.len())?;
                check_finite("absmax", values)?;
            }
            Absmax::DoubleQuantized {
                codes,
                scales,
                offset,
            } => {
                check_len("absmax codes", shape, blocks, codes.len())?;
                let nested_blocks = blocks.div_ceil(NESTED_BLOCK_SIZE);
                check_len("nested absmax", shape, nested_blocks, scales.len())?;
                check_finite("nested absmax", scales)?;
                check_finite("absmax offset", std::slice::from_ref(offset))?;
            }
        }
        Ok(Nf4Tensor {
            shape,
            packed,
            absmax,
        })
    }

    /// `[out_features, in_features]`.
    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }

    pub fn out_features(&self) -> usize {
        self.shape[0]
    }

    pub fn in_features(&self) -> usize {
        self.shape[1]
    }

    /// Two 4-bit codes per byte, first element in the high nibble
    /// (bitsandbytes' packed `weight`, flattened).
    pub fn packed(&self) -> &[u8] {
        &self.packed
    }

    pub fn absmax(&self) -> &Absmax {
        &self.absmax
    }

    pub fn into_parts(self) -> ([usize; 2], Vec<u8>, Absmax) {
        (self.shape, self.packed, self.absmax)
    }

    /// The f32 absmax of every block, dequantizing the double quantization.
    pub fn block_absmax(&self) -> Vec<f32> {
        (0..self.absmax.block_count())
            .map(|b| self.absmax.block_absmax(b))
            .collect()
    }

    /// Bytes of packed codes plus block scales (the fixed 16- and 256-entry
    /// code books are shared by every tensor and not counted).
    pub fn storage_bytes(&self) -> usize {
        self.packed.len() + self.absmax.storage_bytes()
    }

    /// The whole matrix in f32, row-major. Each value is the kernel's f32
    /// product `NF4_CODE[code] * absmax`; bitsandbytes then stores it in the
    /// input dtype, so `bf16::from_f32` of these equals its bf16 output.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.numel()];
        self.decode_span(0, &mut out);
        out
    }

    /// Dequantizes row `row` into `out[..in_features]`.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) -> Result<(), Nf4Error> {
        if row >= self.shape[0] {
            return Err(Nf4Error::RowOutOfRange {
                row,
                out_features: self.shape[0],
            });
        }
        check_len("row buffer", self.shape, self.shape[1], out.len())?;
        self.decode_span(row * self.shape[1], out);
        Ok(())
    }

    /// Number of weights (validated at construction not to overflow).
    fn numel(&self) -> usize {
        self.shape[0] * self.shape[1]
    }

    /// Dequantizes the flat elements `start .. start + out.len()` (which the
    /// caller keeps inside the matrix), one block scale per block touched.
    fn decode_span(&self, start: usize, out: &mut [f32]) {
        let end = start + out.len();
        let mut element = start;
        let mut written = 0;
        while element < end {
            let block = element / NF4_BLOCK_SIZE;
            let block_end = ((block + 1) * NF4_BLOCK_SIZE).min(end);
            let scale = self.absmax.block_absmax(block);
            let segment = &mut out[written..written + (block_end - element)];
            decode_segment(&self.packed, element, scale, segment);
            written += block_end - element;
            element = block_end;
        }
    }
}

/// Decodes `out.len()` codes starting at flat element `start`, all sharing `scale`.
#[inline]
fn decode_segment(packed: &[u8], start: usize, scale: f32, out: &mut [f32]) {
    // An odd start begins in the low nibble of a byte; the rest is whole bytes.
    let skip = (start % 2).min(out.len());
    let (head, body) = out.split_at_mut(skip);
    if let Some(first) = head.first_mut() {
        *first = NF4_CODE[usize::from(packed[start / 2] & 0x0f)] * scale;
    }
    let element = start + skip;
    let last_element = element + body.len();
    let bytes = &packed[element / 2..];
    let mut pairs = body.chunks_exact_mut(2);
    for (pair, &byte) in (&mut pairs).zip(bytes) {
        pair[0] = NF4_CODE[usize::from(byte >> 4)] * scale;
        pair[1] = NF4_CODE[usize::from(byte & 0x0f)] * scale;
    }
    if let [last] = pairs.into_remainder() {
        let byte = packed[(last_element - 1) / 2];
        *last = NF4_CODE[usize::from(byte >> 4)] * scale;
    }
}

/// NF4-quantizes every 64-value block: `(packed codes, f32 absmax per block)`.
fn quantize_blocks(weights: &[f32], backend: BnbBackend) -> (Vec<u8>, Vec<f32>) {
    let numel = weights.len();
    let blocks = numel.div_ceil(NF4_BLOCK_SIZE);
    let mut packed = vec![0u8; numel.div_ceil(2)];
    let mut absmax = vec![0.0f32; blocks];

    let threads = if numel < PARALLEL_QUANTIZE_MIN {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    // Chunks of whole blocks keep every thread's bytes and scales disjoint.
    let blocks_per_chunk = blocks.div_ceil(threads).max(1);
    let chunks = weights
        .chunks(blocks_per_chunk * NF4_BLOCK_SIZE)
        .zip(packed.chunks_mut(blocks_per_chunk * NF4_BLOCK_SIZE / 2))
        .zip(absmax.chunks_mut(blocks_per_chunk));
    if threads == 1 {
        for ((w, p), a) in chunks {
            quantize_chunk(w, p, a, backend);
        }
    } else {
        std::thread::scope(|scope| {
            for ((w, p), a) in chunks {
                scope.spawn(move || quantize_chunk(w, p, a, backend));
            }
        });
    }
    (packed, absmax)
}

/// The CPU backend clamps absmax to this before scaling (`clamp(min=1e-38)`).
const CPU_MIN_ABSMAX: f32 = 1e-38;

/// Quantizes whole blocks of `weights` into `packed` (two codes per byte) and `absmax`.
fn quantize_chunk(weights: &[f32], packed: &mut [u8], absmax: &mut [f32], backend: BnbBackend) {
    let boundaries = backend.nf4_boundaries();
    for ((block, bytes), block_absmax) in weights
        .chunks(NF4_BLOCK_SIZE)
        .zip(packed.chunks_mut(NF4_BLOCK_SIZE / 2))
        .zip(absmax.iter_mut())
    {
        let max_magnitude = block.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        *block_absmax = max_magnitude;
        // Both backends multiply full blocks by the reciprocal rather than
        // dividing; the two round differently and codes must match bit for
        // bit. Only the CPU backend's partial last block divides.
        let (inverse, divisor) = match backend {
            // A zero block gives 0 · ∞ = NaN, hence code 0, as on the GPU.
            BnbBackend::Cuda => (1.0 / max_magnitude, None),
            BnbBackend::Cpu if block.len() == NF4_BLOCK_SIZE => {
                (1.0 / max_magnitude.max(CPU_MIN_ABSMAX), None)
            }
            BnbBackend::Cpu => (1.0, Some(max_magnitude.max(CPU_MIN_ABSMAX))),
        };
        let code = |w: f32| {
            let scaled = match divisor {
                Some(d) => w / d,
                None => w * inverse,
            };
            nf4_code_index(scaled, boundaries)
        };
        let mut pairs = block.chunks_exact(2);
        for (pair, byte) in (&mut pairs).zip(bytes.iter_mut()) {
            *byte = (code(pair[0]) << 4) | code(pair[1]);
        }
        if let ([last], Some(byte)) = (pairs.remainder(), bytes.last_mut()) {
            // Odd count: both backends quantize a zero pad into the low nibble.
            *byte = (code(*last) << 4) | code(0.0);
        }
    }
}

/// Double quantization of the f32 absmax vector (bitsandbytes'
/// `compress_statistics`): subtract the mean, then quantize blockwise
/// (256 per block) with the signed dynamic map.
fn double_quantize(absmax: &[f32], backend: BnbBackend) -> Absmax {
    // torch takes the mean in f32 with its own reduction order; summing in
    // f64 and rounding once is within an ulp of any such order (and equal on
    // the golden), while staying independent of thread count.
    let offset = (absmax.iter().map(|&a| f64::from(a)).sum::<f64>() / absmax.len() as f64) as f32;
    let map = dynamic_code_map();
    let mut codes = Vec::with_capacity(absmax.len());
    let mut scales = Vec::with_capacity(absmax.len().div_ceil(NESTED_BLOCK_SIZE));
    for group in absmax.chunks(NESTED_BLOCK_SIZE) {
        // bitsandbytes subtracts in place (f32) before quantizing.
        let centred: Vec<f32> = group.iter().map(|&a| a - offset).collect();
        let scale = centred.iter().fold(0.0f32, |m, c| m.max(c.abs()));
        scales.push(scale);
        let inverse = 1.0 / scale;
        codes.extend(centred.iter().map(|&c| match backend {
            // The CPU backend writes code 0 for a zero-scale group; the CUDA
            // search reaches 0 too, from 0 · ∞ = NaN.
            BnbBackend::Cpu if scale == 0.0 => 0,
            BnbBackend::Cpu => dynamic_code_index_cpu(c * inverse),
            BnbBackend::Cuda => dynamic_code_index_cuda(map, c * inverse),
        }));
    }
    Absmax::DoubleQuantized {
        codes,
        scales,
        offset,
    }
}

fn element_count(shape: [usize; 2]) -> Result<usize, Nf4Error> {
    match shape[0].checked_mul(shape[1]) {
        Some(n) if n > 0 && n <= isize::MAX as usize / 4 => Ok(n),
        _ => Err(Nf4Error::UnusableShape { shape }),
    }
}

fn check_len(
    buffer: &'static str,
    shape: [usize; 2],
    expected: usize,
    actual: usize,
) -> Result<(), Nf4Error> {
    if expected == actual {
        Ok(())
    } else {
        Err(Nf4Error::BufferLength {
            buffer,
            shape,
            expected,
            actual,
        })
    }
}

fn check_finite(what: &'static str, values: &[f32]) -> Result<(), Nf4Error> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Nf4Error::NonFiniteScale {
            what,
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}
