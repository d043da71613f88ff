// GPT-2 in C, float32, per shared/SPEC.md, in the spirit of llm.c's train_gpt2.c: every layer is a
// name_forward / name_backward pair (outputs first, then inputs, weights, dims); the forward keeps
// what the backward needs (LayerNorm's mean and rstd, attention's weights after softmax); the backward
// is the forward read in reverse. A backward writes its inputs' gradients (=) and adds to its
// parameters' gradients (+=, kept until gpt_zero_grad), except LayerNorm's, which adds its input's
// gradient onto the residual stream's, where the skip path and the branch meet. The matmuls are in
// matmul.c.
//
// Names follow the spec's vocabulary: parameter fields are the checkpoint names (gpt.h), activation
// fields the named activations of shared/activations.py (emb, ln_1, attn_qkv, ...).
// Letters: B batch, T time, C channels (n_embd), NH heads, HS = C / NH head size, V vocabulary,
// L layers, N = B * T rows.
//
// Precision: everything is float32, as the spec asks of this tier; reductions whose error would
// otherwise grow with their length (LayerNorm's mean and variance, softmax and loss sums, bias and gain
// gradients, the gradient norm) accumulate in double. Results do not depend on the number of threads:
// every parallel loop gives each output element to one thread, which sums in one fixed order.
#include "gpt.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "matmul.h"

#ifdef _OPENMP
#include <omp.h>
#endif

// loops shorter than this run on one thread: starting the team would cost more than it saves
#define PARALLEL_MIN 16384

#define GELU_SCALE 0.7978845608028654f  // sqrt(2 / pi)

// the naive twins of the fast layers are used by test_gpt.c only
#if defined(__GNUC__)
#define NAIVE_TWIN __attribute__((unused))
#else
#define NAIVE_TWIN
#endif

// ----------------------------------------------------------------------------------------------------
// exp for float32 that the compiler can vectorize (libm's expf is one call per element, and the
// softmaxes, GELU and the loss call it millions of times per step). exp(x) = 2^n * exp(r) with
// x = n ln2 + r, |r| <= ln2 / 2 (ln2 split in two parts so n * ln2 is exact), exp(r) by Cephes expf's
// degree-6 polynomial (about 1 ulp), 2^n written straight into the exponent bits.

static inline float exp_fast(float x) {
    // keep 2^n a normal float: below -87 this returns exp(-87) = 1.6e-38 instead of something smaller
    // (negligible beside the values it is added to), above 88 the largest float exp reaches. NaN fails
    // both comparisons and goes through: NaN in, NaN out, so a diverging run stays visible.
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    // n = round(x / ln2): adding and subtracting 1.5 * 2^23 rounds to an integer (plain arithmetic,
    // where floorf or rintf would be a library call that stops the loop from vectorizing; it relies on
    // IEEE arithmetic as written, so this file must not be built with -ffast-math)
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    // 2^n from its bits, with no float -> int conversion (undefined behaviour for NaN): n + 127, in
    // 1 .. 254, is the low bits of the float 2^23 + 127 + n; read as unsigned and shifted into the
    // exponent. For NaN the bits are garbage, but unsigned arithmetic is defined and p is NaN anyway.
    union {
        float f;
        uint32_t u;
    } biased = {.f = n + 8388735.0f}, two_n;  // 8388735 = 2^23 + 127
    two_n.u = (biased.u - 0x4B000000u) << 23;  // 0x4B000000: the bits of 2^23
    return p * two_n.f;
}

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

// p[0 .. n-1] = 0, on all threads
static void zero(float *p, size_t n) {
#pragma omp parallel for simd if (n > PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) p[i] = 0.0f;
}

// dst[0 .. n-1] = src[0 .. n-1], on all threads
static void copy(float *dst, const float *src, size_t n) {
#pragma omp parallel for simd if (n > PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

// ----------------------------------------------------------------------------------------------------
// the layers, each a forward / backward pair

// embedding (llm.c's encoder): x (B, T, C) = wte[idx] + wpe[pos0 + t]
// pos0 > 0 when earlier positions are already in the KV cache (SPEC.md "KV cache").
// wpe NULL: x = wte[idx], the model without position embedding (SPEC.md "Ablations")
static void embedding_forward(float *out, const int32_t *idx, const float *wte, const float *wpe, int B,
                              int T, int C, int pos0) {
#pragma omp parallel for collapse(2) if ((long)B * T * C > PARALLEL_MIN)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *out_bt = out + ((size_t)b * T + t) * C;
            const float *wte_ix = wte + (size_t)idx[b * T + t] * C;
            if (wpe == NULL) {
                memcpy(out_bt, wte_ix, (size_t)C * sizeof(float));
                continue;
            }
            const float *wpe_t = wpe + (size_t)(pos0 + t) * C;
            for (int i = 0; i < C; i++) out_bt[i] = wte_ix[i] + wpe_t[i];
        }
    }
}

// dwpe NULL: wpe took no part in the forward, and its gradient stays as it is (0 after gpt_zero_grad)
static void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *idx, int B,
                               int T, int C) {
    // a token may appear many times, and its rows must add up in one fixed order: the threads split
    // the channels (fixed chunks), each adding every position's row in order
    enum { CHUNK = 64 };
#pragma omp parallel for if ((long)B * T * C > PARALLEL_MIN)
    for (int i0 = 0; i0 < C; i0 += CHUNK) {
        int i1 = C - i0 < CHUNK ? C : i0 + CHUNK;
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < T; t++) {
                const float *dout_bt = dout + ((size_t)b * T + t) * C;
                float *dwte_ix = dwte + (size_t)idx[b * T + t] * C;
                for (int i = i0; i < i1; i++) dwte_ix[i] += dout_bt[i];
                if (dwpe == NULL) continue;
                float *dwpe_t = dwpe + (size_t)t * C;
                for (int i = i0; i < i1; i++) dwpe_t[i] += dout_bt[i];
            }
        }
    }
}

// layernorm: (N, C) -> (N, C), over the last axis, biased variance, eps 1e-5 (SPEC.md "Architecture").
// Stores each row's mean and rstd = 1 / sqrt(var + eps) for the backward pass.
static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                              const float *bias, int N, int C) {
#pragma omp parallel for if ((long)N * C > PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double m = 0.0;
#pragma omp simd reduction(+ : m)
        for (int i = 0; i < C; i++) m += x[i];
        m /= C;
        double v = 0.0;
#pragma omp simd reduction(+ : v)
        for (int i = 0; i < C; i++) v += (x[i] - m) * (x[i] - m);
        v /= C;
        double s = 1.0 / sqrt(v + 1e-5);
        float *y = out + (size_t)n * C;
        for (int i = 0; i < C; i++) y[i] = (float)((x[i] - m) * s) * weight[i] + bias[i];
        mean[n] = (float)m;
        rstd[n] = (float)s;
    }
}

static void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const float *mean,
                               const float *rstd, int N, int C) {
    // dinp: with norm = (x - mean) * rstd and dnorm = weight * dout,
    // dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
#pragma omp parallel for if ((long)N * C > PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float mu = mean[n], rs = rstd[n];
        double dnorm_mean = 0.0, dnorm_norm_mean = 0.0;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - mu) * rs;
            float dnorm = weight[i] * dy[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        float a = (float)(dnorm_mean / C), b = (float)(dnorm_norm_mean / C);
        float *dx = dinp + (size_t)n * C;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - mu) * rs;
            dx[i] += (weight[i] * dy[i] - a - norm * b) * rs;
        }
    }
    // dweight += sum over rows of dout * norm, dbias += sum of dout: a reduction over rows, so the
    // channels are split among threads (fixed chunks), each summing its rows in order, in double
    enum { CHUNK = 64 };
#pragma omp parallel for if ((long)N * C > PARALLEL_MIN)
    for (int i0 = 0; i0 < C; i0 += CHUNK) {
        int w = C - i0 < CHUNK ? C - i0 : CHUNK;
        double dw[CHUNK] = {0.0}, db[CHUNK] = {0.0};
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C + i0, *dy = dout + (size_t)n * C + i0;
            float mu = mean[n], rs = rstd[n];
            for (int i = 0; i < w; i++) {
                dw[i] += dy[i] * ((x[i] - mu) * rs);
                db[i] += dy[i];
            }
        }
        for (int i = 0; i < w; i++) {
            dweight[i0 + i] += (float)dw[i];
            dbias[i0 + i] += (float)db[i];
        }
    }
}

// attention, one head of one sequence, as the spec writes it: att = softmax(q @ k^T * scale, causal),
// y = att @ v, with the two products on the fast gemm; scale is 1 / sqrt(HS), or 1 without
// scale_attn_weights (attention_scale). nq queries at positions pos0 .. pos0+nq-1 attend over the keys
// and values of positions 0 .. nk-1, nk = pos0 + nq (pos0 = 0 in training; the KV cache passes its
// length). Rows of q, k, v, y are ldq, ldk, ldv, ldy floats apart; att is (nq, nk).
// Query t sees keys 0 .. pos0+t; the masked weights are exactly 0, so the masked terms of att @ v
// add exact zeros. Returns nonzero if a gemm could not allocate its packing buffers.
static int attention_head_forward(float *y, long ldy, float *att, const float *q, long ldq,
                                  const float *k, long ldk, const float *v, long ldv, int nq, int pos0,
                                  int HS, float scale) {
    int nk = pos0 + nq;
    // att = q @ k^T  (nq, HS) @ (HS, nk)
    int rc = gemm(nq, nk, HS, q, ldq, 1, k, 1, ldk, att, nk, 0);
    for (int t = 0; t < nq; t++) {
        int n = pos0 + t + 1;  // keys visible to this query
        float *row = att + (size_t)t * nk;
        // softmax of the scaled scores; the max is a constant that cancels (no gradient flows through it)
        float maxval = -INFINITY;
#pragma omp simd reduction(max : maxval)
        for (int t2 = 0; t2 < n; t2++) {
            row[t2] *= scale;
            maxval = row[t2] > maxval ? row[t2] : maxval;
        }
        for (int t2 = 0; t2 < n; t2++) row[t2] = exp_fast(row[t2] - maxval);
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int t2 = 0; t2 < n; t2++) sum += row[t2];
        float s = (float)sum;
        for (int t2 = 0; t2 < n; t2++) row[t2] /= s;
        for (int t2 = n; t2 < nk; t2++) row[t2] = 0.0f;  // the masked future
    }
    // y = att @ v  (nq, nk) @ (nk, HS)
    rc |= gemm(nq, HS, nk, att, nk, 1, v, ldv, 1, y, ldy, 0);
    return rc;
}

// the backward of one head (training: pos0 = 0, nk = T): dq, dk, dv = ..., rows ldd apart (they are
// slices of dqkv); datt (T, T) is scratch
static int attention_head_backward(float *dq, float *dk, float *dv, long ldd, const float *dy, long ldy,
                                   const float *q, const float *k, const float *v, long ld,
                                   const float *att, int T, int HS, float scale, float *datt) {
    // y = att @ v:  datt = dy @ v^T,  dv = att^T @ dy
    int rc = gemm(T, T, HS, dy, ldy, 1, v, 1, ld, datt, T, 0);
    rc |= gemm(T, HS, T, att, 1, T, dy, ldy, 1, dv, ldd, 0);
    // softmax: dpreatt = att * (datt - sum(att * datt)), times the scale of preatt = q @ k^T * scale;
    // the masked entries have att = 0, so their dpreatt is 0
    for (int t = 0; t < T; t++) {
        const float *row = att + (size_t)t * T;
        float *d = datt + (size_t)t * T;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int t2 = 0; t2 <= t; t2++) s += row[t2] * d[t2];
        float sf = (float)s;
        for (int t2 = 0; t2 < T; t2++) d[t2] = row[t2] * (d[t2] - sf) * scale;
    }
    // preatt = q @ k^T:  dq = dpreatt @ k,  dk = dpreatt^T @ q
    rc |= gemm(T, HS, T, datt, T, 1, k, ld, 1, dq, ldd, 0);
    rc |= gemm(T, HS, T, datt, 1, T, q, ld, 1, dk, ldd, 0);
    return rc;
}

// one layer's slice of the KV cache (SPEC.md "KV cache"): keys and values (B, NH, block_size, HS),
// positions 0 .. pos0-1 filled
typedef struct {
    float *k, *v;
    int pos0, block_size;
} LayerCache;

// attention over a batch: qkv (B, T, 3C) -> y (B, T, C), att (B, NH, T, nk) after softmax.
// q, k, v are the thirds of qkv; head h is channels h*HS .. (h+1)*HS-1 of each (SPEC.md). Without a
// cache, nk = T; with one, the new keys and values are appended at positions pos0 .. pos0+T-1 and the
// queries attend over all nk = pos0 + T of them. The heads run in parallel, each on one thread.
static int attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH,
                             float scale, const LayerCache *cache) {
    int HS = C / NH, pos0 = cache != NULL ? cache->pos0 : 0, nk = pos0 + T, rc = 0;
#pragma omp parallel for collapse(2) reduction(| : rc) if ((long)B * NH * T * nk * HS > PARALLEL_MIN)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            size_t bh = (size_t)b * NH + h;
            const float *q = qkv + (size_t)b * T * 3 * C + h * HS;  // rows 3C apart
            const float *k = q + C, *v = q + 2 * C;
            long ldk = 3 * C;
            if (cache != NULL) {
                float *k_bh = cache->k + bh * cache->block_size * HS;  // rows HS apart
                float *v_bh = cache->v + bh * cache->block_size * HS;
                for (int t = 0; t < T; t++) {
                    memcpy(k_bh + (size_t)(pos0 + t) * HS, k + (size_t)t * 3 * C, HS * sizeof(float));
                    memcpy(v_bh + (size_t)(pos0 + t) * HS, v + (size_t)t * 3 * C, HS * sizeof(float));
                }
                k = k_bh, v = v_bh, ldk = HS;
            }
            rc |= attention_head_forward(out + (size_t)b * T * C + h * HS, C, att + bh * T * nk, q, 3 * C,
                                         k, ldk, v, ldk, T, pos0, HS, scale);
        }
    }
    return rc;
}

// datt: (B, NH, T, T) scratch
static int attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                              float *datt, int B, int T, int C, int NH, float scale) {
    int HS = C / NH, rc = 0;
    // one (b, h) per thread: its dq, dk, dv are its own slices of dqkv
#pragma omp parallel for collapse(2) reduction(| : rc) if ((long)B * NH * T * T * HS > PARALLEL_MIN)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            size_t off = (size_t)b * T * 3 * C + h * HS, bh = (size_t)b * NH + h;
            rc |= attention_head_backward(dqkv + off, dqkv + off + C, dqkv + off + 2 * C, 3 * C,
                                          dout + (size_t)b * T * C + h * HS, C, qkv + off, qkv + off + C,
                                          qkv + off + 2 * C, 3 * C, att + bh * T * T, T, HS, scale,
                                          datt + bh * T * T);
        }
    }
    return rc;
}

// the naive twins of attention (llm.c's loops: a dot product per score), for training (no cache)
NAIVE_TWIN static void attention_forward_naive(float *out, float *att, const float *qkv, int B, int T,
                                               int C, int NH, float scale) {
    int HS = C / NH;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < NH; h++) {
                const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * HS;
                float *row = att + (((size_t)b * NH + h) * T + t) * T;
                float maxval = -INFINITY;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * HS;
                    float dot = 0.0f;
                    for (int i = 0; i < HS; i++) dot += q[i] * k[i];
                    row[t2] = dot * scale;
                    maxval = row[t2] > maxval ? row[t2] : maxval;
                }
                float sum = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) {
                    row[t2] = expf(row[t2] - maxval);
                    sum += row[t2];
                }
                for (int t2 = 0; t2 < T; t2++) row[t2] = t2 <= t ? row[t2] / sum : 0.0f;
                float *y = out + ((size_t)b * T + t) * C + h * HS;
                for (int i = 0; i < HS; i++) {
                    float val = 0.0f;
                    for (int t2 = 0; t2 <= t; t2++) {
                        val += row[t2] * qkv[((size_t)b * T + t2) * 3 * C + 2 * C + h * HS + i];
                    }
                    y[i] = val;
                }
            }
        }
    }
}

NAIVE_TWIN static void attention_backward_naive(float *dqkv, const float *dout, const float *qkv,
                                                const float *att, int B, int T, int C, int NH,
                                                float scale) {
    int HS = C / NH;
    memset(dqkv, 0, (size_t)B * T * 3 * C * sizeof(float));  // then += over queries
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < NH; h++) {
                const float *row = att + (((size_t)b * NH + h) * T + t) * T;
                const float *dy = dout + ((size_t)b * T + t) * C + h * HS;
                const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * HS;
                float *dq = dqkv + ((size_t)b * T + t) * 3 * C + h * HS;
                // datt[t2] = dy . v[t2], then the softmax's backward, one key at a time
                float s = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *v = qkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * HS;
                    float datt = 0.0f;
                    for (int i = 0; i < HS; i++) datt += dy[i] * v[i];
                    s += row[t2] * datt;
                }
                for (int t2 = 0; t2 <= t; t2++) {
                    size_t r2 = ((size_t)b * T + t2) * 3 * C + h * HS;
                    const float *k = qkv + r2 + C, *v = qkv + r2 + 2 * C;
                    float *dk = dqkv + r2 + C, *dv = dqkv + r2 + 2 * C;
                    float datt = 0.0f;
                    for (int i = 0; i < HS; i++) datt += dy[i] * v[i];
                    float dpre = row[t2] * (datt - s) * scale;
                    for (int i = 0; i < HS; i++) {
                        dv[i] += row[t2] * dy[i];
                        dq[i] += dpre * k[i];
                        dk[i] += dpre * q[i];
                    }
                }
            }
        }
    }
}

// gelu_new(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)   (SPEC.md: tanh form, not erf)
// computed as x * sigmoid(2u) = x / (1 + exp(-2u)), the same function (0.5 (1 + tanh u) = sigmoid(2u))
// with one vectorizable exp and no cancellation where tanh(u) is near -1
static void gelu_forward(float *out, const float *inp, size_t N) {
#pragma omp parallel for simd if (N > PARALLEL_MIN)
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        out[i] = x / (1.0f + exp_fast(-2.0f * u));
    }
}

static void gelu_backward(float *dinp, const float *inp, const float *dout, size_t N) {
    // d/dx [x s(2u)] = s + x * 2 s (1 - s) * du/dx, with s = 1 / (1 + e), e = exp(-2u), 1 - s = e s
#pragma omp parallel for simd if (N > PARALLEL_MIN)
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        float e = exp_fast(-2.0f * u);
        float s = 1.0f / (1.0f + e);
        dinp[i] = (s + x * 2.0f * s * (e * s) * du) * dout[i];
    }
}

// the naive twins of gelu: the spec's tanh formula, as llm.c writes it (test_gpt.c compares them)
NAIVE_TWIN static void gelu_forward_naive(float *out, const float *inp, size_t N) {
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}

NAIVE_TWIN static void gelu_backward_naive(float *dinp, const float *inp, const float *dout, size_t N) {
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        float th = tanhf(u), sech2 = 1.0f - th * th;
        float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] = grad * dout[i];
    }
}

// residual: out = inp1 + inp2; the gradient flows to both inputs unchanged
static void residual_forward(float *out, const float *inp1, const float *inp2, size_t N) {
#pragma omp parallel for simd if (N > PARALLEL_MIN)
    for (size_t i = 0; i < N; i++) out[i] = inp1[i] + inp2[i];
}

static void residual_backward(float *dinp1, float *dinp2, const float *dout, size_t N) {
#pragma omp parallel for simd if (N > PARALLEL_MIN)
    for (size_t i = 0; i < N; i++) {
        dinp1[i] = dout[i];
        dinp2[i] = dout[i];
    }
}

// cross-entropy over the logits (N, V), targets -1 ignored (SPEC.md "Loss"): stores each row's
// log-sum-exp lse (the backward's softmax is exp(logits - lse)) and loss lse - logits[target] (0 if
// ignored), both computed in double, and returns the mean over the count counted rows, rows in order
static double cross_entropy_forward(float *losses, float *lse, const float *logits,
                                    const int32_t *targets, int N, int V, int count) {
#pragma omp parallel for if ((long)N * V > PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * V;
        float maxval = -INFINITY;
#pragma omp simd reduction(max : maxval)
        for (int v = 0; v < V; v++) maxval = z[v] > maxval ? z[v] : maxval;
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int v = 0; v < V; v++) sum += exp_fast(z[v] - maxval);
        double lse_n = maxval + log(sum);  // the stable log-sum-exp
        lse[n] = (float)lse_n;
        losses[n] = targets[n] == -1 ? 0.0f : (float)(lse_n - z[targets[n]]);
    }
    double loss = 0.0;
    for (int n = 0; n < N; n++) loss += losses[n];
    return loss / count;
}

static void cross_entropy_backward(float *dlogits, const float *logits, const float *lse,
                                   const int32_t *targets, int N, int V, int count) {
    // d mean loss / d logits = (softmax(logits) - onehot(target)) / count on counted rows, 0 elsewhere
    float inv = 1.0f / (float)count;
#pragma omp parallel for if ((long)N * V > PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        float *dz = dlogits + (size_t)n * V;
        if (targets[n] == -1) {
            memset(dz, 0, (size_t)V * sizeof(float));
            continue;
        }
        const float *z = logits + (size_t)n * V;
        float l = lse[n];
        for (int v = 0; v < V; v++) dz[v] = exp_fast(z[v] - l) * inv;
        dz[targets[n]] -= inv;
    }
}

// ----------------------------------------------------------------------------------------------------
// parameters: the canonical order of shared/params.py, one flat buffer

// the 12 tensors of a block, in order; shapes in units of C, cols 0 for a vector
static const struct {
    const char *name;
    int rows, cols;
} BLOCK_TENSORS[12] = {
    {"ln_1.weight", 1, 0},        {"ln_1.bias", 1, 0},       {"attn.c_attn.weight", 1, 3},
    {"attn.c_attn.bias", 3, 0},   {"attn.c_proj.weight", 1, 1}, {"attn.c_proj.bias", 1, 0},
    {"ln_2.weight", 1, 0},        {"ln_2.bias", 1, 0},       {"mlp.c_fc.weight", 1, 4},
    {"mlp.c_fc.bias", 4, 0},      {"mlp.c_proj.weight", 4, 1}, {"mlp.c_proj.bias", 1, 0},
};

_Static_assert(sizeof(size_t) >= 8, "the C tier needs 64-bit sizes (a model may have 2^40 parameters)");

static int is_switch(int v) { return v == 0 || v == 1; }

// the parameters of a config that passed the range checks, exactly: each term fits 64 bits
static uint64_t count_params(GPTConfig c) {
    uint64_t C = (uint64_t)c.n_embd, L = (uint64_t)c.n_layer;
    return (uint64_t)c.vocab_size * C + (uint64_t)c.block_size * C + L * (12 * C * C + 13 * C) + 2 * C;
}

// SPEC.md "Limits", in shared/config.py's order (the switches, then the sizes); the message names the
// field, its value and what is allowed
int gpt_config_check(GPTConfig c, char *err, size_t errlen) {
    static const char *const switches[3] = {"scale_attn_weights", "residual", "position_embedding"};
    const int on[3] = {c.scale_attn_weights, c.residual, c.position_embedding};
    const struct {
        const char *name;
        int value, max;
    } sizes[4] = {
        {"n_layer", c.n_layer, GPT_MAX_N_LAYER},
        {"n_embd", c.n_embd, GPT_MAX_N_EMBD},
        {"block_size", c.block_size, GPT_MAX_BLOCK_SIZE},
        {"vocab_size", c.vocab_size, GPT_MAX_VOCAB_SIZE},
    };
    char msg[200] = "";
    for (int i = 0; i < 3 && !msg[0]; i++)
        if (!is_switch(on[i]))
            snprintf(msg, sizeof msg, "config.%s must be true or false (1 or 0), got %d", switches[i], on[i]);
    for (int i = 0; i < 4 && !msg[0]; i++)
        if (sizes[i].value < 1 || sizes[i].value > sizes[i].max)
            snprintf(msg, sizeof msg, "config.%s must be in 1 .. %d, got %d", sizes[i].name, sizes[i].max,
                     sizes[i].value);
    if (msg[0] != '\0') {
        // reported above
    } else if (c.n_head < 1 || c.n_head > c.n_embd) {
        snprintf(msg, sizeof msg, "config.n_head must be in 1 .. n_embd (%d), got %d", c.n_embd, c.n_head);
    } else if (c.n_embd % c.n_head != 0) {
        snprintf(msg, sizeof msg, "config.n_embd (%d) must be divisible by n_head (%d)", c.n_embd, c.n_head);
    } else if (count_params(c) > GPT_MAX_PARAMS) {
        snprintf(msg, sizeof msg,
                 "config (n_layer %d, n_embd %d, block_size %d, vocab_size %d) has %llu parameters; at most "
                 "2^40 (%llu) are allowed",
                 c.n_layer, c.n_embd, c.block_size, c.vocab_size, (unsigned long long)count_params(c),
                 GPT_MAX_PARAMS);
    }
    if (!msg[0]) return GPT_OK;
    if (err != NULL && errlen > 0) snprintf(err, errlen, "%s", msg);
    return GPT_ERR_CONFIG;
}

int gpt_num_tensors(GPTConfig c) { return 2 + 12 * c.n_layer + 2; }

int gpt_tensor_shape(GPTConfig c, int i, size_t shape[2]) {
    size_t C = c.n_embd;
    int last = gpt_num_tensors(c) - 1;
    shape[0] = shape[1] = 0;
    if (i < 0 || i > last) return 0;
    if (i == 0) {
        shape[0] = c.vocab_size, shape[1] = C;  // wte
    } else if (i == 1) {
        shape[0] = c.block_size, shape[1] = C;  // wpe
    } else if (i >= last - 1) {
        shape[0] = C;  // ln_f.weight, ln_f.bias
    } else {
        shape[0] = BLOCK_TENSORS[(i - 2) % 12].rows * C;
        shape[1] = BLOCK_TENSORS[(i - 2) % 12].cols * C;
    }
    return shape[1] > 0 ? 2 : 1;
}

size_t gpt_tensor_numel(GPTConfig c, int i) {
    size_t shape[2];
    int ndim = gpt_tensor_shape(c, i, shape);
    return ndim == 0 ? 0 : ndim == 1 ? shape[0] : shape[0] * shape[1];
}

// in constant time (a reader walks tensors in file order, not canonical order): the embeddings, the
// whole blocks before i's, then i's predecessors within its block
size_t gpt_tensor_offset(GPTConfig c, int i) {
    size_t C = c.n_embd, V = c.vocab_size, T = c.block_size, L = c.n_layer, per_block = 12 * C * C + 13 * C;
    int last = gpt_num_tensors(c) - 1;
    if (i <= 0) return 0;
    if (i == 1) return V * C;
    if (i >= last - 1) return V * C + T * C + L * per_block + (size_t)(i - (last - 1)) * C;
    size_t offset = V * C + T * C + (size_t)((i - 2) / 12) * per_block;
    for (int k = 0; k < (i - 2) % 12; k++) offset += gpt_tensor_numel(c, 2 + k);
    return offset;
}

int gpt_tensor_name(GPTConfig c, int i, char *buf, size_t buflen) {
    int last = gpt_num_tensors(c) - 1;
    if (buf == NULL || buflen == 0) return -1;
    if (i < 0 || i > last) return buf[0] = '\0', -1;
    if (i == 0) return snprintf(buf, buflen, "wte.weight");
    if (i == 1) return snprintf(buf, buflen, "wpe.weight");
    if (i == last - 1) return snprintf(buf, buflen, "ln_f.weight");
    if (i == last) return snprintf(buf, buflen, "ln_f.bias");
    return snprintf(buf, buflen, "h.%d.%s", (i - 2) / 12, BLOCK_TENSORS[(i - 2) % 12].name);
}

size_t gpt_num_params(GPTConfig c) { return (size_t)count_params(c); }

// points t's fields into the flat buffer, in canonical order
static void point_tensors(ParamTensors *t, float *p, GPTConfig c) {
    size_t C = c.n_embd;
    t->wte = p, p += (size_t)c.vocab_size * C;
    t->wpe = p, p += (size_t)c.block_size * C;
    for (int l = 0; l < c.n_layer; l++) {
        BlockTensors *h = &t->h[l];
        h->ln_1_w = p, p += C;
        h->ln_1_b = p, p += C;
        h->attn_c_attn_w = p, p += C * 3 * C;
        h->attn_c_attn_b = p, p += 3 * C;
        h->attn_c_proj_w = p, p += C * C;
        h->attn_c_proj_b = p, p += C;
        h->ln_2_w = p, p += C;
        h->ln_2_b = p, p += C;
        h->mlp_c_fc_w = p, p += C * 4 * C;
        h->mlp_c_fc_b = p, p += 4 * C;
        h->mlp_c_proj_w = p, p += 4 * C * C;
        h->mlp_c_proj_b = p, p += C;
    }
    t->ln_f_w = p, p += C;
    t->ln_f_b = p;
}

// ----------------------------------------------------------------------------------------------------
// the model

// the forward's activations: the spec's named activations (gpt_activation) and what the backward needs
typedef struct {
    float *emb;                            // (B, T, C)
    float *ln_1, *ln_1_mean, *ln_1_rstd;   // (L, B, T, C), (L, B, T), (L, B, T)
    float *attn_qkv;                       // (L, B, T, 3C)
    float *attn_att;                       // (L, B, NH, T, T), after softmax
    float *attn_y;                         // (L, B, T, C), heads merged
    float *attn_out;                       // (L, B, T, C), after c_proj
    float *res_1;                          // (L, B, T, C)
    float *ln_2, *ln_2_mean, *ln_2_rstd;   // (L, B, T, C), (L, B, T), (L, B, T)
    float *mlp_fc;                         // (L, B, T, 4C)
    float *mlp_gelu;                       // (L, B, T, 4C)
    float *mlp_out;                        // (L, B, T, C)
    float *res_2;                          // (L, B, T, C), the block's output
    float *ln_f, *ln_f_mean, *ln_f_rstd;   // (B, T, C), (B, T), (B, T)
    float *logits;                         // (B, T, V)
    float *lse;                            // (B, T), log-sum-exp of each row of logits
    float *losses;                         // (B, T), each position's loss (0 where ignored)
} ActivationTensors;

// one block's slice of the activations
typedef struct {
    float *ln_1, *ln_1_mean, *ln_1_rstd, *attn_qkv, *attn_att, *attn_y, *attn_out, *res_1;
    float *ln_2, *ln_2_mean, *ln_2_rstd, *mlp_fc, *mlp_gelu, *mlp_out, *res_2;
} BlockActs;

// the backward's work space, reused by every block (gradients of one block's activations)
typedef struct {
    float *dlogits;                 // (B, T, V)
    float *dres, *dres_prev;        // (B, T, C): the residual stream's gradient after / before a block
    float *dln;                     // (B, T, C): of a LayerNorm's output
    float *dres_1, *dmlp_out;       // (B, T, C)
    float *dmlp_fc, *dmlp_gelu;     // (B, T, 4C)
    float *dattn_out, *dattn_y;     // (B, T, C)
    float *dattn_qkv;               // (B, T, 3C)
    float *datt;                    // (B, NH, T, T)
} GradScratch;

// the KV cache (SPEC.md "KV cache") and the work space of one gpt_cache_forward call
typedef struct {
    int B, len;            // batch size it was reset for, positions cached
    float *k, *v;          // (L, B, NH, block_size, HS) each
    float *mem;            // the work space below
    size_t capacity;       // floats
    float *x;              // (B, T, C): the residual stream, updated in place block after block
    float *ln, *ln_mean, *ln_rstd, *qkv, *y, *attn_out, *fc, *gelu, *mlp_out;  // (B, T, ...)
    float *att;            // (B, NH, T, len + T)
} KVCache;

struct GPT {
    GPTConfig config;
    size_t num_params;
    float *params_memory, *grads_memory, *m_memory, *v_memory;  // num_params floats each
    ParamTensors params, grads;
    int64_t step;  // AdamW steps taken, 0 .. GPT_MAX_STEP
    // the last forward
    ActivationTensors acts;
    float *acts_memory;
    size_t acts_capacity;  // floats
    int32_t *inputs, *targets;  // (B, T) copies
    size_t inputs_capacity;
    int B, T;
    int have_forward, have_targets, count;  // count: positions whose target is not -1
    // the backward's work space
    GradScratch scratch;
    float *scratch_memory;
    size_t scratch_capacity;
    KVCache cache;
    char error[256];
};

static int fail(GPT *m, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->error, sizeof(m->error), fmt, ap);
    va_end(ap);
    return code;
}

// One buffer holds many tensors: lay `n` parts out in it (each 64-byte aligned) and point *parts[i].p
// at them (base NULL: only count). Returns the floats needed, or 0 if that is beyond any machine.
typedef struct {
    float **p;
    double n;  // floats; double so that a product of dimensions cannot overflow before it is checked
} Part;

static size_t lay_out(Part *parts, int n, float *base) {
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        if (base != NULL) *parts[i].p = base + (size_t)total;
        total += (double)round_up((size_t)parts[i].n, 16);
        if (total > (double)(1LL << 44)) return 0;
    }
    return (size_t)total;
}

// (re)allocates *mem to hold the parts if it is too small, then points the parts into it
static int fit_parts(GPT *m, Part *parts, int n, float **mem, size_t *capacity, const char *what) {
    size_t need = lay_out(parts, n, NULL);
    if (need == 0) return fail(m, GPT_ERR_MEMORY, "%s: sizes too large", what);
    if (need > *capacity) {
        free(*mem);
        *capacity = 0;
        *mem = malloc(need * sizeof(float));
        if (*mem == NULL) {
            return fail(m, GPT_ERR_MEMORY, "%s: out of memory allocating %.1f MB", what,
                        need * sizeof(float) / 1e6);
        }
        *capacity = need;
    }
    lay_out(parts, n, *mem);
    return GPT_OK;
}

static int fit_activations(GPT *m, int B, int T) {
    GPTConfig c = m->config;
    double L = c.n_layer, BT = (double)B * T, C = c.n_embd, NH = c.n_head, V = c.vocab_size;
    ActivationTensors *a = &m->acts;
    Part parts[] = {
        {&a->emb, BT * C},         {&a->ln_1, L * BT * C},         {&a->ln_1_mean, L * BT},
        {&a->ln_1_rstd, L * BT},   {&a->attn_qkv, L * BT * 3 * C}, {&a->attn_att, L * BT * NH * T},
        {&a->attn_y, L * BT * C},  {&a->attn_out, L * BT * C},     {&a->res_1, L * BT * C},
        {&a->ln_2, L * BT * C},    {&a->ln_2_mean, L * BT},        {&a->ln_2_rstd, L * BT},
        {&a->mlp_fc, L * BT * 4 * C}, {&a->mlp_gelu, L * BT * 4 * C}, {&a->mlp_out, L * BT * C},
        {&a->res_2, L * BT * C},   {&a->ln_f, BT * C},             {&a->ln_f_mean, BT},
        {&a->ln_f_rstd, BT},       {&a->logits, BT * V},           {&a->lse, BT},
        {&a->losses, BT},
    };
    return fit_parts(m, parts, sizeof(parts) / sizeof(parts[0]), &m->acts_memory, &m->acts_capacity,
                     "activations");
}

static int fit_scratch(GPT *m, int B, int T) {
    GPTConfig c = m->config;
    double BT = (double)B * T, C = c.n_embd, V = c.vocab_size, NH = c.n_head;
    GradScratch *s = &m->scratch;
    Part parts[] = {
        {&s->dlogits, BT * V},     {&s->dres, BT * C},          {&s->dres_prev, BT * C},
        {&s->dln, BT * C},         {&s->dres_1, BT * C},        {&s->dmlp_out, BT * C},
        {&s->dmlp_fc, BT * 4 * C}, {&s->dmlp_gelu, BT * 4 * C}, {&s->dattn_out, BT * C},
        {&s->dattn_y, BT * C},     {&s->dattn_qkv, BT * 3 * C}, {&s->datt, BT * NH * T},
    };
    return fit_parts(m, parts, sizeof(parts) / sizeof(parts[0]), &m->scratch_memory,
                     &m->scratch_capacity, "backward work space");
}

static BlockActs block_acts(const ActivationTensors *a, GPTConfig c, int l, int B, int T) {
    size_t BT = (size_t)B * T, C = c.n_embd, NH = c.n_head;
    BlockActs s = {
        .ln_1 = a->ln_1 + l * BT * C,
        .ln_1_mean = a->ln_1_mean + l * BT,
        .ln_1_rstd = a->ln_1_rstd + l * BT,
        .attn_qkv = a->attn_qkv + l * BT * 3 * C,
        .attn_att = a->attn_att + l * BT * NH * T,
        .attn_y = a->attn_y + l * BT * C,
        .attn_out = a->attn_out + l * BT * C,
        .res_1 = a->res_1 + l * BT * C,
        .ln_2 = a->ln_2 + l * BT * C,
        .ln_2_mean = a->ln_2_mean + l * BT,
        .ln_2_rstd = a->ln_2_rstd + l * BT,
        .mlp_fc = a->mlp_fc + l * BT * 4 * C,
        .mlp_gelu = a->mlp_gelu + l * BT * 4 * C,
        .mlp_out = a->mlp_out + l * BT * C,
        .res_2 = a->res_2 + l * BT * C,
    };
    return s;
}

GPT *gpt_create(GPTConfig c, char *err, size_t errlen) {
    if (gpt_config_check(c, err, errlen) != GPT_OK) return NULL;
    GPT *m = calloc(1, sizeof(GPT));
    BlockTensors *h = calloc((size_t)c.n_layer * 2, sizeof(BlockTensors));  // params' blocks, grads'
    size_t n = gpt_num_params(c);
    float *memory[4] = {NULL, NULL, NULL, NULL};  // params, grads, m, v: zeroed
    int ok = m != NULL && h != NULL;
    for (int i = 0; i < 4 && ok; i++) ok = (memory[i] = calloc(n, sizeof(float))) != NULL;
    if (!ok) {
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "out of memory allocating %zu parameters (%.1f MB each for weights, "
                     "gradients and two AdamW moments)", n, n * sizeof(float) / 1e6);
        }
        for (int i = 0; i < 4; i++) free(memory[i]);
        free(h);
        free(m);
        return NULL;
    }
    m->config = c;
    m->num_params = n;
    m->params_memory = memory[0], m->grads_memory = memory[1];
    m->m_memory = memory[2], m->v_memory = memory[3];
    m->params.h = h, m->grads.h = h + c.n_layer;
    point_tensors(&m->params, m->params_memory, c);
    point_tensors(&m->grads, m->grads_memory, c);
    return m;
}

void gpt_destroy(GPT *m) {
    if (m == NULL) return;
    free(m->params_memory);
    free(m->grads_memory);
    free(m->m_memory);
    free(m->v_memory);
    free(m->params.h);  // both BlockTensors arrays, one allocation
    free(m->acts_memory);
    free(m->inputs);
    free(m->targets);
    free(m->scratch_memory);
    free(m->cache.k);
    free(m->cache.v);
    free(m->cache.mem);
    free(m);
}

const char *gpt_error(const GPT *m) { return m == NULL ? "no model" : m->error; }
GPTConfig gpt_config(const GPT *m) { return m->config; }
float *gpt_params(GPT *m) { return m->params_memory; }
float *gpt_grads(GPT *m) { return m->grads_memory; }
float *gpt_adam_m(GPT *m) { return m->m_memory; }
float *gpt_adam_v(GPT *m) { return m->v_memory; }
int64_t gpt_get_step(const GPT *m) { return m->step; }

int gpt_set_step(GPT *m, int64_t step) {
    if (step < 0 || step > GPT_MAX_STEP)
        return fail(m, GPT_ERR_INPUT, "step %lld is outside 0 .. 2^53", (long long)step);
    m->step = step;
    return GPT_OK;
}

// the checks of SPEC.md "Bad input" that reach C: B, T, token ids, targets
static int check_tokens(GPT *m, const int32_t *idx, int B, int T) {
    if (idx == NULL) return fail(m, GPT_ERR_INPUT, "idx is NULL");
    if (B < 1 || T < 1) return fail(m, GPT_ERR_INPUT, "B and T must be >= 1, got B=%d T=%d", B, T);
    if (T > m->config.block_size) {
        return fail(m, GPT_ERR_INPUT, "T=%d exceeds block_size %d", T, m->config.block_size);
    }
    if (B > (1 << 30) / T) return fail(m, GPT_ERR_INPUT, "B*T too large (B=%d T=%d)", B, T);
    for (long i = 0; i < (long)B * T; i++) {
        if (idx[i] < 0 || idx[i] >= m->config.vocab_size) {
            return fail(m, GPT_ERR_INPUT, "token id %d at position %ld is outside [0, %d)", (int)idx[i], i,
                        m->config.vocab_size);
        }
    }
    return GPT_OK;
}

// attention's scale: 1 / sqrt(HS), or 1 without scale_attn_weights (SPEC.md "Ablations")
static float attention_scale(GPTConfig c) {
    return c.scale_attn_weights ? 1.0f / sqrtf((float)(c.n_embd / c.n_head)) : 1.0f;
}

// one transformer block: x (B, T, C) -> a.res_2 (B, T, C); pre-LayerNorm, residual around each half
// (without c.residual, each half's output replaces the stream: SPEC.md "Ablations")
static int block_forward(BlockActs a, const float *x, const BlockTensors *p, int B, int T, GPTConfig c,
                         const LayerCache *cache) {
    int N = B * T, C = c.n_embd, NH = c.n_head, rc = 0;  // rc: nonzero if a matmul could not allocate
    size_t NC = (size_t)N * C;
    layernorm_forward(a.ln_1, a.ln_1_mean, a.ln_1_rstd, x, p->ln_1_w, p->ln_1_b, N, C);
    rc |= matmul_forward(a.attn_qkv, a.ln_1, p->attn_c_attn_w, p->attn_c_attn_b, N, C, 3 * C);
    rc |= attention_forward(a.attn_y, a.attn_att, a.attn_qkv, B, T, C, NH, attention_scale(c), cache);
    rc |= matmul_forward(a.attn_out, a.attn_y, p->attn_c_proj_w, p->attn_c_proj_b, N, C, C);
    if (c.residual) residual_forward(a.res_1, x, a.attn_out, NC);
    else copy(a.res_1, a.attn_out, NC);
    layernorm_forward(a.ln_2, a.ln_2_mean, a.ln_2_rstd, a.res_1, p->ln_2_w, p->ln_2_b, N, C);
    rc |= matmul_forward(a.mlp_fc, a.ln_2, p->mlp_c_fc_w, p->mlp_c_fc_b, N, C, 4 * C);
    gelu_forward(a.mlp_gelu, a.mlp_fc, 4 * NC);
    rc |= matmul_forward(a.mlp_out, a.mlp_gelu, p->mlp_c_proj_w, p->mlp_c_proj_b, N, 4 * C, C);
    if (c.residual) residual_forward(a.res_2, a.res_1, a.mlp_out, NC);
    else copy(a.res_2, a.mlp_out, NC);
    return rc;
}

int gpt_forward(GPT *m, const int32_t *idx, const int32_t *targets, int B, int T, float *loss) {
    GPTConfig c = m->config;
    int C = c.n_embd, V = c.vocab_size, L = c.n_layer;
    int rc = check_tokens(m, idx, B, T);
    if (rc != GPT_OK) return rc;
    int count = 0;
    if (targets != NULL) {
        for (long i = 0; i < (long)B * T; i++) {
            if (targets[i] == -1) continue;
            if (targets[i] < 0 || targets[i] >= V) {
                return fail(m, GPT_ERR_INPUT, "target %d at position %ld is outside [0, %d) and not -1",
                            (int)targets[i], i, V);
            }
            count++;
        }
        if (count == 0) return fail(m, GPT_ERR_INPUT, "every target is -1: the mean loss is undefined");
    }
    m->have_forward = m->have_targets = 0;
    size_t N = (size_t)B * T;
    if ((rc = fit_activations(m, B, T)) != GPT_OK) return rc;
    if (N > m->inputs_capacity) {
        free(m->inputs);
        free(m->targets);
        m->inputs = malloc(N * sizeof(int32_t));
        m->targets = malloc(N * sizeof(int32_t));
        m->inputs_capacity = m->inputs != NULL && m->targets != NULL ? N : 0;
        if (m->inputs_capacity == 0) return fail(m, GPT_ERR_MEMORY, "out of memory copying the inputs");
    }
    memcpy(m->inputs, idx, N * sizeof(int32_t));
    if (targets != NULL) memcpy(m->targets, targets, N * sizeof(int32_t));
    m->B = B, m->T = T, m->count = count;

    // SPEC.md "Architecture", top to bottom
    ActivationTensors *a = &m->acts;
    embedding_forward(a->emb, idx, m->params.wte, c.position_embedding ? m->params.wpe : NULL, B, T, C, 0);
    int mm = 0;
    for (int l = 0; l < L; l++) {
        const float *x = l == 0 ? a->emb : a->res_2 + (size_t)(l - 1) * N * C;
        mm |= block_forward(block_acts(a, c, l, B, T), x, &m->params.h[l], B, T, c, NULL);
    }
    const float *x = a->res_2 + (size_t)(L - 1) * N * C;
    layernorm_forward(a->ln_f, a->ln_f_mean, a->ln_f_rstd, x, m->params.ln_f_w, m->params.ln_f_b, (int)N,
                      C);
    mm |= head_forward(a->logits, a->ln_f, m->params.wte, (int)N, C, V);  // tied head: ln_f @ wte^T
    if (mm != 0) return fail(m, GPT_ERR_MEMORY, "out of memory for a matmul's packing buffers");
    if (targets != NULL) {
        double l = cross_entropy_forward(a->losses, a->lse, a->logits, m->targets, (int)N, V, count);
        if (loss != NULL) *loss = (float)l;
    }
    m->have_forward = 1;
    m->have_targets = targets != NULL;
    return GPT_OK;
}

const float *gpt_logits(const GPT *m) { return m->have_forward ? m->acts.logits : NULL; }

const float *gpt_activation(const GPT *m, int kind, int layer) {
    if (!m->have_forward) return NULL;
    const ActivationTensors *a = &m->acts;
    switch (kind) {
        case ACT_EMB: return a->emb;
        case ACT_LN_F: return a->ln_f;
        case ACT_LOGITS: return a->logits;
    }
    if (layer < 0 || layer >= m->config.n_layer) return NULL;
    BlockActs b = block_acts(a, m->config, layer, m->B, m->T);
    switch (kind) {
        case ACT_LN_1: return b.ln_1;
        case ACT_ATTN_QKV: return b.attn_qkv;
        case ACT_ATTN_ATT: return b.attn_att;
        case ACT_ATTN_Y: return b.attn_y;
        case ACT_ATTN_OUT: return b.attn_out;
        case ACT_RES_1: return b.res_1;
        case ACT_LN_2: return b.ln_2;
        case ACT_MLP_FC: return b.mlp_fc;
        case ACT_MLP_GELU: return b.mlp_gelu;
        case ACT_MLP_OUT: return b.mlp_out;
        case ACT_RES_2: return b.res_2;
    }
    return NULL;
}

// One piece of the forward on its own, with the model's weights (the benchmarks time them). Both run in
// the activations' buffers of block `layer`, so the last forward's activations are gone after them.
static int check_piece(GPT *m, int layer, const float *x, int B, int T, float *out) {
    GPTConfig c = m->config;
    if (x == NULL || out == NULL) return fail(m, GPT_ERR_INPUT, "x and out must not be NULL");
    if (layer < 0 || layer >= c.n_layer) {
        return fail(m, GPT_ERR_INPUT, "layer %d is outside [0, %d)", layer, c.n_layer);
    }
    if (B < 1 || T < 1 || T > c.block_size || B > (1 << 30) / T) {
        return fail(m, GPT_ERR_INPUT, "need B >= 1 and 1 <= T <= block_size %d, got B=%d T=%d", c.block_size,
                    B, T);
    }
    m->have_forward = m->have_targets = 0;
    return fit_activations(m, B, T);
}

int gpt_attention_forward(GPT *m, int layer, const float *x, int B, int T, float *out) {
    int rc = check_piece(m, layer, x, B, T, out);
    if (rc != GPT_OK) return rc;
    GPTConfig c = m->config;
    int N = B * T, C = c.n_embd;
    BlockActs a = block_acts(&m->acts, c, layer, B, T);
    const BlockTensors *p = &m->params.h[layer];
    // block_forward's attention lines
    int mm = matmul_forward(a.attn_qkv, x, p->attn_c_attn_w, p->attn_c_attn_b, N, C, 3 * C);
    mm |= attention_forward(a.attn_y, a.attn_att, a.attn_qkv, B, T, C, c.n_head, attention_scale(c), NULL);
    mm |= matmul_forward(out, a.attn_y, p->attn_c_proj_w, p->attn_c_proj_b, N, C, C);
    return mm != 0 ? fail(m, GPT_ERR_MEMORY, "out of memory for a matmul's packing buffers") : GPT_OK;
}

int gpt_block_forward(GPT *m, int layer, const float *x, int B, int T, float *out) {
    int rc = check_piece(m, layer, x, B, T, out);
    if (rc != GPT_OK) return rc;
    GPTConfig c = m->config;
    BlockActs a = block_acts(&m->acts, c, layer, B, T);
    a.res_2 = out;
    int mm = block_forward(a, x, &m->params.h[layer], B, T, c, NULL);
    return mm != 0 ? fail(m, GPT_ERR_MEMORY, "out of memory for a matmul's packing buffers") : GPT_OK;
}

void gpt_zero_grad(GPT *m) { zero(m->grads_memory, m->num_params); }

// the block's forward in reverse: dout is d loss / d res_2, dx = d loss / d x (the block's input)
static int block_backward(float *dx, BlockTensors *g, const float *dout, BlockActs a, const float *x,
                          const BlockTensors *p, GradScratch *s, int B, int T, GPTConfig c) {
    int N = B * T, C = c.n_embd, NH = c.n_head, rc = 0;
    size_t NC = (size_t)N * C;
    // res_2 = res_1 + mlp_out; without the residual, res_2 = mlp_out and res_1's gradient comes only
    // through ln_2 (which adds to it, so it starts at 0)
    if (c.residual) {
        residual_backward(s->dres_1, s->dmlp_out, dout, NC);
    } else {
        zero(s->dres_1, NC);
        copy(s->dmlp_out, dout, NC);
    }
    // mlp_out = mlp_gelu @ mlp.c_proj;  mlp_gelu = gelu(mlp_fc);  mlp_fc = ln_2 @ mlp.c_fc
    rc |= matmul_backward(s->dmlp_gelu, g->mlp_c_proj_w, g->mlp_c_proj_b, s->dmlp_out, a.mlp_gelu,
                          p->mlp_c_proj_w, N, 4 * C, C);
    gelu_backward(s->dmlp_fc, a.mlp_fc, s->dmlp_gelu, 4 * NC);
    rc |= matmul_backward(s->dln, g->mlp_c_fc_w, g->mlp_c_fc_b, s->dmlp_fc, a.ln_2, p->mlp_c_fc_w, N, C,
                          4 * C);
    // ln_2 = LN(res_1)
    layernorm_backward(s->dres_1, g->ln_2_w, g->ln_2_b, s->dln, a.res_1, p->ln_2_w, a.ln_2_mean,
                       a.ln_2_rstd, N, C);
    // res_1 = x + attn_out; without the residual, res_1 = attn_out and x's gradient comes only
    // through ln_1
    if (c.residual) {
        residual_backward(dx, s->dattn_out, s->dres_1, NC);
    } else {
        zero(dx, NC);
        copy(s->dattn_out, s->dres_1, NC);
    }
    // attn_out = attn_y @ attn.c_proj;  attn_y = attention(attn_qkv);  attn_qkv = ln_1 @ attn.c_attn
    rc |= matmul_backward(s->dattn_y, g->attn_c_proj_w, g->attn_c_proj_b, s->dattn_out, a.attn_y,
                          p->attn_c_proj_w, N, C, C);
    rc |= attention_backward(s->dattn_qkv, s->dattn_y, a.attn_qkv, a.attn_att, s->datt, B, T, C, NH,
                             attention_scale(c));
    rc |= matmul_backward(s->dln, g->attn_c_attn_w, g->attn_c_attn_b, s->dattn_qkv, a.ln_1,
                          p->attn_c_attn_w, N, C, 3 * C);
    // ln_1 = LN(x)
    layernorm_backward(dx, g->ln_1_w, g->ln_1_b, s->dln, x, p->ln_1_w, a.ln_1_mean, a.ln_1_rstd, N, C);
    return rc;
}

int gpt_backward(GPT *m) {
    if (!m->have_forward || !m->have_targets) {
        return fail(m, GPT_ERR_STATE, "backward needs a forward with targets first");
    }
    GPTConfig c = m->config;
    int B = m->B, T = m->T, C = c.n_embd, V = c.vocab_size, L = c.n_layer;
    int N = B * T;
    size_t NC = (size_t)N * C;
    int rc = fit_scratch(m, B, T);
    if (rc != GPT_OK) return rc;
    ActivationTensors *a = &m->acts;
    GradScratch *s = &m->scratch;
    ParamTensors *g = &m->grads;
    int mm = 0;

    // the forward in reverse, starting from d loss / d loss = 1
    cross_entropy_backward(s->dlogits, a->logits, a->lse, m->targets, N, V, m->count);
    // logits = ln_f @ wte^T
    mm |= head_backward(s->dln, g->wte, s->dlogits, a->ln_f, m->params.wte, N, C, V);
    // ln_f = LN(res_2 of the last block); LayerNorm's backward adds to its input's gradient
    zero(s->dres, NC);
    const float *x_last = a->res_2 + (size_t)(L - 1) * NC;
    layernorm_backward(s->dres, g->ln_f_w, g->ln_f_b, s->dln, x_last, m->params.ln_f_w, a->ln_f_mean,
                       a->ln_f_rstd, N, C);
    for (int l = L - 1; l >= 0; l--) {
        // dres: d loss / d (block l's output); dres_prev receives d loss / d (its input)
        const float *x = l == 0 ? a->emb : a->res_2 + (size_t)(l - 1) * NC;
        mm |= block_backward(s->dres_prev, &g->h[l], s->dres, block_acts(a, c, l, B, T), x,
                             &m->params.h[l], s, B, T, c);
        float *t = s->dres;
        s->dres = s->dres_prev, s->dres_prev = t;
    }
    // emb = wte[idx] + wpe[t] (without position embedding, emb = wte[idx]: wpe's gradient stays 0)
    embedding_backward(g->wte, c.position_embedding ? g->wpe : NULL, s->dres, m->inputs, B, T, C);
    if (mm != 0) return fail(m, GPT_ERR_MEMORY, "out of memory for a matmul's packing buffers");
    return GPT_OK;
}

// ----------------------------------------------------------------------------------------------------
// AdamW (SPEC.md "AdamW"): clip_grad_norm_ then torch.optim.AdamW, per element in double. A step is
// checked whole before it changes anything (SPEC.md "Limits"): the settings, the step count, then the
// loss and the gradient norm, so a refused or diverging step leaves weights, moments and step as they were.

// AdamWConfig's ranges (shared/schedule.py), plus the learning rate and the step count
static int adamw_check(GPT *m, float lr, float beta1, float beta2, float eps, float weight_decay,
                       float grad_clip) {
    if (m->step >= GPT_MAX_STEP)
        return fail(m, GPT_ERR_INPUT,
                    "the model is at step %lld, the most allowed (9007199254740992 (2^53)); it takes no further step",
                    (long long)m->step);
    // each written so that NaN, which fails every comparison, is refused too
    const char *bad = NULL;
    if (!(isfinite(lr) && lr >= 0.0f)) bad = "lr must be a finite number >= 0";
    else if (!(beta1 >= 0.0f && beta1 < 1.0f)) bad = "beta1 must be in [0, 1)";
    else if (!(beta2 >= 0.0f && beta2 < 1.0f)) bad = "beta2 must be in [0, 1)";
    else if (!(isfinite(eps) && eps > 0.0f)) bad = "eps must be finite, > 0";
    else if (!(isfinite(weight_decay) && weight_decay >= 0.0f)) bad = "weight_decay must be finite, >= 0";
    else if (!(grad_clip <= 0.0f || isfinite(grad_clip))) bad = "grad_clip must be finite (<= 0: none)";
    if (bad == NULL) return GPT_OK;
    return fail(m, GPT_ERR_INPUT, "%s (lr %g, beta1 %g, beta2 %g, eps %g, weight_decay %g, grad_clip %g)",
                bad, lr, beta1, beta2, eps, weight_decay, grad_clip);
}

// the global L2 norm over every gradient: fixed chunks (independent of the thread count), each summed
// in double, the chunks' sums added in order. inf when a gradient is not finite, and when the sum of
// squares passes float32's range (SPEC.md "Limits"): the float32 tiers' sum overflows there, and the
// second moments (g^2) would too.
static double grad_norm(const float *grads, size_t n) {
    enum { NORM_CHUNKS = 256 };
    double partial[NORM_CHUNKS];
#pragma omp parallel for if (n > PARALLEL_MIN)
    for (int ch = 0; ch < NORM_CHUNKS; ch++) {
        size_t lo = n * ch / NORM_CHUNKS, hi = n * (ch + 1) / NORM_CHUNKS;
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (size_t i = lo; i < hi; i++) sum += (double)grads[i] * grads[i];
        partial[ch] = sum;
    }
    double sumsq = 0.0;
    for (int ch = 0; ch < NORM_CHUNKS; ch++) sumsq += partial[ch];
    return sumsq > FLT_MAX ? INFINITY : sqrt(sumsq);  // NaN stays NaN
}

static const char *nonfinite_name(double x) { return isnan(x) ? "nan" : x > 0 ? "inf" : "-inf"; }

// the step itself, on gradients whose norm is finite
static void adamw_apply(GPT *m, double norm, float lr, float beta1, float beta2, float eps,
                        float weight_decay, float grad_clip) {
    double gscale = 1.0;  // torch's clip_grad_norm_: scale every gradient if coef < 1
    if (grad_clip > 0.0f) {
        double coef = grad_clip / (norm + 1e-6);
        if (coef < 1.0) gscale = coef;
    }
    int64_t t = m->step + 1;  // the step being taken, from 1
    m->step = t;
    double bc1 = 1.0 - pow(beta1, (double)t), bc2 = 1.0 - pow(beta2, (double)t);
    double step_size = lr / bc1, sqrt_bc2 = sqrt(bc2);
    for (int ti = 0; ti < gpt_num_tensors(m->config); ti++) {
        size_t shape[2];
        int ndim = gpt_tensor_shape(m->config, ti, shape);
        size_t numel = gpt_tensor_numel(m->config, ti), offset = gpt_tensor_offset(m->config, ti);
        // decoupled weight decay on the 2-D tensors only: matmul weights and both embeddings
        double decay = ndim == 2 ? 1.0 - (double)lr * weight_decay : 1.0;
        float *p = m->params_memory + offset, *mt = m->m_memory + offset, *vt = m->v_memory + offset;
        const float *gt = m->grads_memory + offset;
#pragma omp parallel for simd if (numel > PARALLEL_MIN)
        for (size_t i = 0; i < numel; i++) {
            double g = gt[i] * gscale;
            double mi = beta1 * (double)mt[i] + (1.0 - beta1) * g;
            double vi = beta2 * (double)vt[i] + (1.0 - beta2) * g * g;
            double denom = sqrt(vi) / sqrt_bc2 + eps;  // eps outside the square root
            p[i] = (float)(p[i] * decay - step_size * mi / denom);
            mt[i] = (float)mi;
            vt[i] = (float)vi;
        }
    }
}

int gpt_adamw_update(GPT *m, float lr, float beta1, float beta2, float eps, float weight_decay,
                     float grad_clip, float *norm_out) {
    int rc = adamw_check(m, lr, beta1, beta2, eps, weight_decay, grad_clip);
    if (rc != GPT_OK) return rc;
    double norm = grad_norm(m->grads_memory, m->num_params);
    if (!isfinite(norm)) {  // gradients given by the caller: name the first tensor at fault
        for (int ti = 0; ti < gpt_num_tensors(m->config); ti++) {
            const float *g = m->grads_memory + gpt_tensor_offset(m->config, ti);
            size_t numel = gpt_tensor_numel(m->config, ti), i = 0;
            while (i < numel && isfinite(g[i])) i++;
            if (i == numel) continue;
            char name[64];
            gpt_tensor_name(m->config, ti, name, sizeof name);
            return fail(m, GPT_ERR_INPUT, "the gradient of %s holds %s; no step taken", name,
                        nonfinite_name(g[i]));
        }
        return fail(m, GPT_ERR_DIVERGED,  // every gradient finite, their squares' sum beyond float32
                    "step %lld: the gradient norm is inf; the run diverged (try a lower learning rate)",
                    (long long)m->step);
    }
    adamw_apply(m, norm, lr, beta1, beta2, eps, weight_decay, grad_clip);
    if (norm_out != NULL) *norm_out = (float)norm;
    return GPT_OK;
}

int gpt_train_step(GPT *m, const int32_t *idx, const int32_t *targets, int B, int T, float lr, float beta1,
                   float beta2, float eps, float weight_decay, float grad_clip, float *loss_out,
                   float *norm_out) {
    int rc = adamw_check(m, lr, beta1, beta2, eps, weight_decay, grad_clip);
    if (rc != GPT_OK) return rc;
    if (targets == NULL) return fail(m, GPT_ERR_INPUT, "a training step needs targets");
    float loss = 0.0f;
    if ((rc = gpt_forward(m, idx, targets, B, T, &loss)) != GPT_OK) return rc;
    if (loss_out != NULL) *loss_out = loss;
    if (!isfinite(loss))
        return fail(m, GPT_ERR_DIVERGED,
                    "step %lld: the loss is %s; the run diverged (try a lower learning rate)",
                    (long long)m->step, nonfinite_name(loss));
    gpt_zero_grad(m);
    if ((rc = gpt_backward(m)) != GPT_OK) return rc;
    double norm = grad_norm(m->grads_memory, m->num_params);
    if (norm_out != NULL) *norm_out = (float)norm;
    if (!isfinite(norm))
        return fail(m, GPT_ERR_DIVERGED,
                    "step %lld: the gradient norm is %s; the run diverged (try a lower learning rate)",
                    (long long)m->step, nonfinite_name(norm));
    adamw_apply(m, norm, lr, beta1, beta2, eps, weight_decay, grad_clip);
    return GPT_OK;
}

// ----------------------------------------------------------------------------------------------------
// KV-cache decoding (SPEC.md "KV cache"): the same layers, with each layer's keys and values kept

int gpt_cache_reset(GPT *m, int B) {
    GPTConfig c = m->config;
    KVCache *kv = &m->cache;
    if (B < 1 || B > (1 << 30) / c.block_size) return fail(m, GPT_ERR_INPUT, "cache batch B=%d", B);
    if (B != kv->B || kv->k == NULL) {
        free(kv->k);
        free(kv->v);
        kv->B = 0;
        size_t n = (size_t)c.n_layer * B * c.block_size * c.n_embd;  // L * B * NH * block_size * HS
        kv->k = malloc(n * sizeof(float));
        kv->v = malloc(n * sizeof(float));
        if (kv->k == NULL || kv->v == NULL) {
            free(kv->k), free(kv->v);
            kv->k = kv->v = NULL;
            return fail(m, GPT_ERR_MEMORY, "out of memory for the KV cache (%.1f MB)", 2e-6 * n * 4);
        }
        kv->B = B;
    }
    kv->len = 0;
    return GPT_OK;
}

int gpt_cache_len(const GPT *m) { return m->cache.len; }

int gpt_cache_forward(GPT *m, const int32_t *idx, int B, int T, float *logits_out) {
    GPTConfig c = m->config;
    KVCache *kv = &m->cache;
    int C = c.n_embd, NH = c.n_head, HS = C / NH, V = c.vocab_size, L = c.n_layer;
    if (kv->k == NULL) return fail(m, GPT_ERR_STATE, "gpt_cache_reset must come before gpt_cache_forward");
    if (B != kv->B) return fail(m, GPT_ERR_INPUT, "the cache was reset for B=%d, got B=%d", kv->B, B);
    if (T > c.block_size - kv->len) {
        return fail(m, GPT_ERR_INPUT, "the cache holds %d positions: %d more exceed block_size %d", kv->len,
                    T, c.block_size);
    }
    int rc = check_tokens(m, idx, B, T);
    if (rc != GPT_OK) return rc;
    if (logits_out == NULL) return fail(m, GPT_ERR_INPUT, "logits_out is NULL");
    int pos0 = kv->len, N = B * T;
    double Nd = N, Cd = C, nk = pos0 + T, BNH = (double)B * NH;
    Part parts[] = {
        {&kv->x, Nd * Cd},        {&kv->ln, Nd * Cd},        {&kv->ln_mean, Nd},
        {&kv->ln_rstd, Nd},       {&kv->qkv, Nd * 3 * Cd},   {&kv->y, Nd * Cd},
        {&kv->attn_out, Nd * Cd}, {&kv->fc, Nd * 4 * Cd},    {&kv->gelu, Nd * 4 * Cd},
        {&kv->mlp_out, Nd * Cd},  {&kv->att, BNH * T * nk},
    };
    rc = fit_parts(m, parts, sizeof(parts) / sizeof(parts[0]), &kv->mem, &kv->capacity, "KV-cache work");
    if (rc != GPT_OK) return rc;
    // the training forward's layers on a work space reused by every block: the residual stream x is
    // updated in place (res_1 and res_2 are x), ln_2 reuses ln_1's buffer
    BlockActs a = {
        .ln_1 = kv->ln, .ln_1_mean = kv->ln_mean, .ln_1_rstd = kv->ln_rstd, .attn_qkv = kv->qkv,
        .attn_att = kv->att, .attn_y = kv->y, .attn_out = kv->attn_out, .res_1 = kv->x,
        .ln_2 = kv->ln, .ln_2_mean = kv->ln_mean, .ln_2_rstd = kv->ln_rstd, .mlp_fc = kv->fc,
        .mlp_gelu = kv->gelu, .mlp_out = kv->mlp_out, .res_2 = kv->x,
    };
    const float *wpe = c.position_embedding ? m->params.wpe : NULL;
    embedding_forward(kv->x, idx, m->params.wte, wpe, B, T, C, pos0);  // positions pos0 ..
    int mm = 0;
    for (int l = 0; l < L; l++) {
        size_t layer = (size_t)l * B * NH * c.block_size * HS;
        LayerCache lc = {kv->k + layer, kv->v + layer, pos0, c.block_size};
        mm |= block_forward(a, kv->x, &m->params.h[l], B, T, c, &lc);
    }
    layernorm_forward(kv->ln, kv->ln_mean, kv->ln_rstd, kv->x, m->params.ln_f_w, m->params.ln_f_b, N, C);
    mm |= head_forward(logits_out, kv->ln, m->params.wte, N, C, V);
    if (mm != 0) return fail(m, GPT_ERR_MEMORY, "out of memory for a matmul's packing buffers");
    kv->len += T;
    return GPT_OK;
}

// ----------------------------------------------------------------------------------------------------
// threads

void gpt_set_num_threads(int n) {
#ifdef _OPENMP
    static int initial = 0;  // the count before the first call: OMP_NUM_THREADS, or one per core
    if (initial == 0) initial = omp_get_max_threads();
    omp_set_num_threads(n >= 1 ? n : initial);
#else
    (void)n;
#endif
}

int gpt_get_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
