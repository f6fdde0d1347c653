// RMSNorm over rows of `hidden` bf16 values: y = x * r * w with
// r = (mean(x^2) + eps)^(-1/2) per row, kept in f32 for the backward. The
// norm weight is frozen; the input gradient is dx = r*g - x*r^3*mean(g*x)
// with g = dy * w. One block per row.

extern "C" __global__ void rms_norm_forward(const __nv_bfloat16 *__restrict__ x, const __nv_bfloat16 *__restrict__ w,
                                            __nv_bfloat16 *__restrict__ y, float *__restrict__ rstd, int hidden,
                                            float eps) {
    __shared__ float scratch[WARP];
    long row = blockIdx.x;
    const __nv_bfloat16 *xr = x + row * hidden;
    float squares = 0.0f;
    for (int j = threadIdx.x; j < hidden; j += blockDim.x) {
        float v = ld(xr, j);
        squares += v * v;
    }
    float r = rsqrtf(block_sum(squares, scratch) / hidden + eps);
    if (threadIdx.x == 0) rstd[row] = r;
    for (int j = threadIdx.x; j < hidden; j += blockDim.x) y[row * hidden + j] = bf(ld(xr, j) * r * ld(w, j));
}

extern "C" __global__ void rms_norm_backward(const __nv_bfloat16 *__restrict__ x, const __nv_bfloat16 *__restrict__ w,
                                             const float *__restrict__ rstd, const __nv_bfloat16 *__restrict__ dy,
                                             __nv_bfloat16 *__restrict__ dx, int hidden) {
    __shared__ float scratch[WARP];
    long row = blockIdx.x;
    const __nv_bfloat16 *xr = x + row * hidden;
    const __nv_bfloat16 *dyr = dy + row * hidden;
    float r = rstd[row];
    float gx = 0.0f;
    for (int j = threadIdx.x; j < hidden; j += blockDim.x) gx += ld(dyr, j) * ld(w, j) * ld(xr, j);
    float mean_gx = block_sum(gx, scratch) / hidden;
    float r3 = r * r * r;
    for (int j = threadIdx.x; j < hidden; j += blockDim.x) {
        float g = ld(dyr, j) * ld(w, j);
        dx[row * hidden + j] = bf(r * g - ld(xr, j) * r3 * mean_gx);
    }
}
