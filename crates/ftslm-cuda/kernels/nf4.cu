// NF4 dequantization as bitsandbytes decodes: blocks of 64 values, two
// 4-bit codes per byte with the first value in the high nibble, one absmax per
// block; with double quantization block b's absmax is
// dynamic_map[code[b]] * nested_scale[b / 256] + offset (two roundings, as
// bitsandbytes: the product, then the offset). One thread per output pair.

__constant__ float NF4_CODE[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// out[n] (bf16) for n < numel; absmax given per block in f32 (plain).
extern "C" __global__ void nf4_dequantize_bf16(const u8 *__restrict__ packed, const float *__restrict__ absmax,
                                               __nv_bfloat16 *__restrict__ out, long numel) {
    long pair = (long)blockIdx.x * blockDim.x + threadIdx.x;
    long first = pair * 2;
    if (first >= numel) return;
    u8 byte = packed[pair];
    float scale = absmax[first / 64];
    out[first] = bf(NF4_CODE[byte >> 4] * scale);
    if (first + 1 < numel) out[first + 1] = bf(NF4_CODE[byte & 15] * absmax[(first + 1) / 64]);
}

// The double-quantized scales to plain f32 absmax, one thread per block.
extern "C" __global__ void nf4_absmax_from_double_quant(const u8 *__restrict__ codes, const float *__restrict__ nested,
                                                        const float *__restrict__ dynamic_map, float offset,
                                                        float *__restrict__ absmax, long blocks) {
    long b = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= blocks) return;
    // _rn intrinsics: no fused multiply-add, two roundings as bitsandbytes.
    float scaled = __fmul_rn(dynamic_map[codes[b]], nested[b / 256]);
    absmax[b] = __fadd_rn(scaled, offset);
}
