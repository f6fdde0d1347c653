// The small passes between products: dtype casts, gradient sums, LoRA
// dropout with a mask drawn on the host (the CPU engine's own masks, so both
// backends drop the same values), and the embedding gather.

extern "C" __global__ void f32_to_bf16(const float *__restrict__ x, __nv_bfloat16 *__restrict__ y, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = bf(x[i]);
}

extern "C" __global__ void bf16_to_f32(const __nv_bfloat16 *__restrict__ x, float *__restrict__ y, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = ld(x, i);
}

// acc += x, both bf16, the sum in f32 (the input gradients of q, k and v).
extern "C" __global__ void add_bf16(__nv_bfloat16 *__restrict__ acc, const __nv_bfloat16 *__restrict__ x, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) acc[i] = bf(ld(acc, i) + ld(x, i));
}

// y = x * (kept ? scale : 0), mask bytes 0/1.
extern "C" __global__ void apply_dropout(const __nv_bfloat16 *__restrict__ x, const u8 *__restrict__ kept,
                                         __nv_bfloat16 *__restrict__ y, long n, float scale) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = bf(kept[i] ? ld(x, i) * scale : 0.0f);
}

// rows of the embedding table [vocab, hidden] gathered by token id.
extern "C" __global__ void embedding_gather(const __nv_bfloat16 *__restrict__ table, const u32 *__restrict__ ids,
                                            __nv_bfloat16 *__restrict__ out, long tokens, int hidden) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= tokens * hidden) return;
    long token = i / hidden;
    int j = (int)(i % hidden);
    out[i] = table[(long)ids[token] * hidden + j];
}
