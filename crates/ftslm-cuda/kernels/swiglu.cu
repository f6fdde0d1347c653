// Llama's gated activation a = silu(g) * u and its gradient; with s = sigmoid(g):
// da/du = g*s, da/dg = u*s*(1 + g*(1 - s)). One thread per element, f32 math.

__device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + __expf(-g)); }

extern "C" __global__ void swiglu_forward(const __nv_bfloat16 *__restrict__ gate, const __nv_bfloat16 *__restrict__ up,
                                          __nv_bfloat16 *__restrict__ a, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = ld(gate, i);
    a[i] = bf(g * sigmoid(g) * ld(up, i));
}

extern "C" __global__ void swiglu_backward(const __nv_bfloat16 *__restrict__ da, const __nv_bfloat16 *__restrict__ gate,
                                           const __nv_bfloat16 *__restrict__ up, __nv_bfloat16 *__restrict__ d_gate,
                                           __nv_bfloat16 *__restrict__ d_up, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = ld(gate, i), u = ld(up, i), d = ld(da, i);
    float s = sigmoid(g);
    d_up[i] = bf(d * g * s);
    d_gate[i] = bf(d * u * s * (1.0f + g * (1.0f - s)));
}
