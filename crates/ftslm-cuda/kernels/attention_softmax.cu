// Attention's softmax over f32 scores [rows, width] for packed rows: query
// row r sits at position `positions[r]` of segment `segments[r]` and sees the
// keys k <= r of its own segment (no attention across packed examples). The
// scores are scaled first; masked entries become 0, as an additive -inf mask
// then softmax make them. The backward: dS = P * (dP - rowsum(dP * P)) * scale.
// One block per query row; `row_offset` lets one launch cover a head's rows.

extern "C" __global__ void causal_softmax_forward(float *__restrict__ scores, const int *__restrict__ segments,
                                                  int width, float scale) {
    __shared__ float scratch[WARP];
    long row = blockIdx.x;
    int query = (int)(row % width);
    float *s = scores + row * width;
    int segment = segments[query];
    float m = NEG_INF;
    for (int k = threadIdx.x; k <= query; k += blockDim.x)
        if (segments[k] == segment) m = fmaxf(m, s[k] * scale);
    m = block_max(m, scratch);
    float total = 0.0f;
    for (int k = threadIdx.x; k < width; k += blockDim.x) {
        float e = (k <= query && segments[k] == segment) ? __expf(s[k] * scale - m) : 0.0f;
        s[k] = e;
        total += e;
    }
    float inv = 1.0f / block_sum(total, scratch);
    for (int k = threadIdx.x; k < width; k += blockDim.x) s[k] *= inv;
}

extern "C" __global__ void causal_softmax_backward(float *__restrict__ d_scores, const float *__restrict__ probs,
                                                   int width, float scale) {
    __shared__ float scratch[WARP];
    long row = blockIdx.x;
    float *ds = d_scores + row * width;
    const float *p = probs + row * width;
    float dot = 0.0f;
    for (int k = threadIdx.x; k < width; k += blockDim.x) dot += ds[k] * p[k];
    dot = block_sum(dot, scratch);
    for (int k = threadIdx.x; k < width; k += blockDim.x) ds[k] = p[k] * (ds[k] - dot) * scale;
}
