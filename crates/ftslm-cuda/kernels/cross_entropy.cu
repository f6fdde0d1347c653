// The LM head's loss on one chunk of rows, forward and backward in one pass:
// logits [rows, vocab] (f32 from the head's product) are overwritten with
// scale * (softmax(z) - onehot(target)), and nll[row] = logsumexp(z) - z[target].
// A target of -100 (Hugging Face's ignore index) contributes nothing: its
// gradient row is zero and its nll 0. One block per row.

extern "C" __global__ void cross_entropy_rows(float *__restrict__ logits, const int *__restrict__ targets,
                                              float *__restrict__ nll, long vocab, float scale) {
    __shared__ float scratch[WARP];
    long row = blockIdx.x;
    float *z = logits + row * vocab;
    int target = targets[row];
    if (target < 0) {
        for (long k = threadIdx.x; k < vocab; k += blockDim.x) z[k] = 0.0f;
        if (threadIdx.x == 0) nll[row] = 0.0f;
        return;
    }
    float m = NEG_INF;
    for (long k = threadIdx.x; k < vocab; k += blockDim.x) m = fmaxf(m, z[k]);
    m = block_max(m, scratch);
    float total = 0.0f;
    for (long k = threadIdx.x; k < vocab; k += blockDim.x) total += __expf(z[k] - m);
    total = block_sum(total, scratch);
    float target_logit = z[target];
    __syncthreads();
    float inv = 1.0f / total;
    for (long k = threadIdx.x; k < vocab; k += blockDim.x) {
        float p = __expf(z[k] - m) * inv;
        z[k] = scale * (p - (k == target ? 1.0f : 0.0f));
    }
    if (threadIdx.x == 0) nll[row] = logf(total) + m - target_logit;
}
