// AdamW as torch.optim.AdamW (decoupled weight decay, bias-corrected
// moments) over one flat f32 buffer holding every LoRA tensor, so a step is
// one launch. bias1 = 1 - beta1^t, bias2 = 1 - beta2^t from the host.

extern "C" __global__ void adamw_step(float *__restrict__ params, const float *__restrict__ grads,
                                      float *__restrict__ m, float *__restrict__ v, long n, float lr, float beta1,
                                      float beta2, float eps, float weight_decay, float bias1, float bias2) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = grads[i];
    float p = params[i] * (1.0f - lr * weight_decay);
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi / bias2) + eps;
    params[i] = p - lr * (mi / bias1) / denom;
}

// Sum of squares of the gradients (for clipping), accumulated into *out.
extern "C" __global__ void squared_norm(const float *__restrict__ grads, long n, float *__restrict__ out) {
    __shared__ float scratch[WARP];
    float s = 0.0f;
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        s += grads[i] * grads[i];
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) atomicAdd(out, s);
}

// grads *= factor, the clip.
extern "C" __global__ void scale_in_place(float *__restrict__ grads, long n, const float *__restrict__ factor) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) grads[i] *= *factor;
}
