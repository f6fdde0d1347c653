// Rotary position embeddings in Hugging Face's rotate_half convention, in
// place on x [tokens, heads, head_dim]: each head's halves (x1, x2) turn by
// the token's angles, y1 = x1*c - x2*s, y2 = x2*c + x1*s. `back` turns by
// -theta (the transpose, which is the gradient). cos/sin are f32
// [tokens, head_dim] as the CPU tables. One thread per pair.

extern "C" __global__ void rope_rotate(__nv_bfloat16 *__restrict__ x, const float *__restrict__ cos,
                                       const float *__restrict__ sin, int heads, int head_dim, long tokens, int back) {
    int half = head_dim / 2;
    long pair = (long)blockIdx.x * blockDim.x + threadIdx.x;
    long pairs_per_token = (long)heads * half;
    if (pair >= tokens * pairs_per_token) return;
    long token = pair / pairs_per_token;
    long within = pair % pairs_per_token;
    long head = within / half;
    int i = (int)(within % half);
    __nv_bfloat16 *h = x + (token * heads + head) * head_dim;
    const float *c = cos + token * head_dim;
    const float *s = sin + token * head_dim;
    float x1 = __bfloat162float(h[i]), x2 = __bfloat162float(h[i + half]);
    float y1, y2;
    if (back) {
        y1 = x1 * c[i] + x2 * s[i + half];
        y2 = x2 * c[i + half] - x1 * s[i];
    } else {
        y1 = x1 * c[i] - x2 * s[i];
        y2 = x2 * c[i + half] + x1 * s[i + half];
    }
    h[i] = bf(y1);
    h[i + half] = bf(y2);
}
