// The matmuls of training (matmul.h), each fast kernel beside its naive reference.
//
// The fast path is the classic GotoBLAS / BLIS design, small enough to read in one sitting:
//   1. all products are one gemm, c (M, N) [+]= A (M, K) @ B (K, N), with strides that say whether A
//      or B is read transposed (the backward passes and the tied head need both kinds);
//   2. the operands are copied ("packed") into small contiguous panels, a KC x NC block of B that stays
//      in the L3 cache and an MC x KC block of A that stays in L2, laid out in the exact order the
//      micro-kernel reads them, so the inner loop never strides through memory;
//   3. the micro-kernel computes an MR x NR tile of c in registers (6 x 16: twelve 8-float AVX registers
//      of accumulators, two for B, one for a broadcast A value), one fused multiply-add per register
//      per k;
//   4. OpenMP threads split c into rectangles of whole tiles, one per thread, and each runs the blocked
//      loops on its own rectangle with its own packing buffers (no barriers, no shared writes). Every
//      element of c is the same sum whichever thread computes it (KC blocks in order, k in order within
//      a block, the same fused multiply-adds), so the result does not depend on the number of threads,
//      and repeated runs are bit-identical.
#include "matmul.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

// ----------------------------------------------------------------------------------------------------
// naive references: the definitions, one output element at a time

void gemm_naive(int M, int N, int K, const float *a, long rsa, long csa, const float *b, long rsb,
                long csb, float *c, long ldc, int accumulate) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float sum = 0.0f;
            for (int k = 0; k < K; k++) {
                sum += a[i * rsa + k * csa] * b[k * rsb + j * csb];
            }
            c[i * ldc + j] = accumulate ? c[i * ldc + j] + sum : sum;
        }
    }
}

void matmul_forward_naive(float *out, const float *inp, const float *weight, const float *bias, int N,
                          int C, int OC) {
    // out (N, OC) = inp (N, C) @ weight (C, OC) + bias (OC)
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            float val = bias != NULL ? bias[o] : 0.0f;
            for (int i = 0; i < C; i++) {
                val += inp[(long)n * C + i] * weight[(long)i * OC + o];
            }
            out[(long)n * OC + o] = val;
        }
    }
}

void matmul_backward_naive(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, int N, int C, int OC) {
    for (int n = 0; n < N; n++) {
        const float *dout_n = dout + (long)n * OC;
        for (int i = 0; i < C; i++) {
            // dinp = dout @ W^T
            float sum = 0.0f;
            for (int o = 0; o < OC; o++) {
                sum += dout_n[o] * weight[(long)i * OC + o];
            }
            dinp[(long)n * C + i] = sum;
            // dweight = inp^T @ dout
            for (int o = 0; o < OC; o++) {
                dweight[(long)i * OC + o] += inp[(long)n * C + i] * dout_n[o];
            }
        }
        if (dbias != NULL) {
            for (int o = 0; o < OC; o++) {
                dbias[o] += dout_n[o];
            }
        }
    }
}

void head_forward_naive(float *logits, const float *x, const float *wte, int N, int C, int V) {
    // logits (N, V) = x (N, C) @ wte^T: each logit is the dot product of x with one token's embedding
    for (int n = 0; n < N; n++) {
        for (int v = 0; v < V; v++) {
            float sum = 0.0f;
            for (int i = 0; i < C; i++) {
                sum += x[(long)n * C + i] * wte[(long)v * C + i];
            }
            logits[(long)n * V + v] = sum;
        }
    }
}

void head_backward_naive(float *dx, float *dwte, const float *dlogits, const float *x, const float *wte,
                         int N, int C, int V) {
    memset(dx, 0, (size_t)N * C * sizeof(float));
    for (int n = 0; n < N; n++) {
        for (int v = 0; v < V; v++) {
            float d = dlogits[(long)n * V + v];
            for (int i = 0; i < C; i++) {
                dx[(long)n * C + i] += d * wte[(long)v * C + i];    // dx = dlogits @ wte
                dwte[(long)v * C + i] += d * x[(long)n * C + i];    // dwte = dlogits^T @ x
            }
        }
    }
}

// ----------------------------------------------------------------------------------------------------
// the fast gemm

#define MR 6     // micro-tile rows (A values broadcast per k)
#define NR 16    // micro-tile columns (two 8-float vectors of B per k)
#define MC 144   // rows of A packed at a time (MC x KC floats = 144 KB, stays in L2)
#define KC 256   // depth of one block (a KC x NR panel of B, 16 KB, stays in L1 across MC / MR tiles)
#define NC 4080  // columns of B packed at a time (KC x NC floats = 4 MB, stays in L3)

static int imin(int a, int b) { return a < b ? a : b; }

#if defined(__AVX2__) && defined(__FMA__)
// transposes the 8 x 8 block held in r[0..7] (one row per register) in place
static void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i + 0] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}
#endif

// Copies mr (<= MR) rows and kc columns of A (from a = &A[i0][k0]) into one panel, k-major:
// dst[k * MR + i] = A[i][k]. Rows past mr are zero, so edge tiles run the same kernel.
static void pack_a(float *restrict dst, const float *restrict a, long rsa, long csa, int mr, int kc) {
    int k = 0;
    if (csa == 1) {  // rows of A contiguous: a transpose
#if defined(__AVX2__) && defined(__FMA__)
        if (mr == MR) {  // 8 k at a time: the 6 rows and 2 of zeros, transposed in registers
            for (; k + 8 <= kc; k += 8) {
                __m256 r[8];
                for (int i = 0; i < MR; i++) r[i] = _mm256_loadu_ps(a + i * rsa + k);
                r[6] = r[7] = _mm256_setzero_ps();
                transpose8(r);
                for (int kk = 0; kk < 8; kk++) {  // 6 floats: 4, then 2
                    _mm_storeu_ps(dst + (k + kk) * MR, _mm256_castps256_ps128(r[kk]));
                    _mm_storel_pi((__m64 *)(dst + (k + kk) * MR + 4), _mm256_extractf128_ps(r[kk], 1));
                }
            }
        }
#endif
        for (; k < kc; k++) {
            for (int i = 0; i < mr; i++) dst[k * MR + i] = a[i * rsa + k];
        }
    } else if (rsa == 1 && mr == MR) {  // A read transposed: each k's MR values are contiguous
        for (; k < kc; k++) {
            for (int i = 0; i < MR; i++) dst[k * MR + i] = a[k * csa + i];
        }
    } else {
        for (; k < kc; k++) {
            for (int i = 0; i < mr; i++) dst[k * MR + i] = a[k * csa + i * rsa];
        }
    }
    for (int i = mr; i < MR; i++) {
        for (k = 0; k < kc; k++) dst[k * MR + i] = 0.0f;
    }
}

// The same for B: kc rows and nr (<= NR) columns, into dst[k * NR + j] = B[k][j]; columns past nr are 0.
static void pack_b(float *restrict dst, const float *restrict b, long rsb, long csb, int nr, int kc) {
    if (csb == 1) {  // rows of B contiguous: a copy (loops of a known length, not memcpy calls)
        for (int k = 0; k < kc; k++) {
            if (nr == NR) {
                for (int j = 0; j < NR; j++) dst[k * NR + j] = b[k * rsb + j];
            } else {
                for (int j = 0; j < NR; j++) dst[k * NR + j] = j < nr ? b[k * rsb + j] : 0.0f;
            }
        }
        return;
    }
    int k = 0;  // B read transposed (W^T, wte^T): a transpose
#if defined(__AVX2__) && defined(__FMA__)
    if (rsb == 1 && nr == NR) {  // 8 x 8 blocks, columns 0..7 then 8..15
        for (; k + 8 <= kc; k += 8) {
            for (int j0 = 0; j0 < NR; j0 += 8) {
                __m256 r[8];
                for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(b + (j0 + j) * csb + k);
                transpose8(r);
                for (int kk = 0; kk < 8; kk++) _mm256_store_ps(dst + (k + kk) * NR + j0, r[kk]);
            }
        }
    }
#endif
    for (int j = 0; j < nr; j++) {
        for (int kk = k; kk < kc; kk++) dst[kk * NR + j] = b[kk * rsb + j * csb];
    }
    for (int j = nr; j < NR; j++) {
        for (int kk = k; kk < kc; kk++) dst[kk * NR + j] = 0.0f;
    }
}

#if defined(__AVX2__) && defined(__FMA__)
// c (MR, NR) = start + A @ b panel, all of the tile in twelve registers, where A[i][k] = a[i * ars +
// k * aks] (a packed panel: ars 1, aks MR; or A itself, unpacked) and start is c itself (row0 NULL:
// accumulating) or the row row0 (NR floats: the bias, or zeros) repeated down the tile
static void kernel(int kc, const float *a, long ars, long aks, const float *b, float *c, long ldc,
                   const float *row0) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    // ask for the tile of c now, so that it arrives while the loop below runs
    for (int i = 0; i < MR; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
    long r1 = ars, r2 = 2 * ars, r3 = 3 * ars, r4 = 4 * ars, r5 = 5 * ars;
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(b);
        __m256 b1 = _mm256_load_ps(b + 8);
        __m256 ai;
        ai = _mm256_broadcast_ss(a);
        c00 = _mm256_fmadd_ps(ai, b0, c00);
        c01 = _mm256_fmadd_ps(ai, b1, c01);
        ai = _mm256_broadcast_ss(a + r1);
        c10 = _mm256_fmadd_ps(ai, b0, c10);
        c11 = _mm256_fmadd_ps(ai, b1, c11);
        ai = _mm256_broadcast_ss(a + r2);
        c20 = _mm256_fmadd_ps(ai, b0, c20);
        c21 = _mm256_fmadd_ps(ai, b1, c21);
        ai = _mm256_broadcast_ss(a + r3);
        c30 = _mm256_fmadd_ps(ai, b0, c30);
        c31 = _mm256_fmadd_ps(ai, b1, c31);
        ai = _mm256_broadcast_ss(a + r4);
        c40 = _mm256_fmadd_ps(ai, b0, c40);
        c41 = _mm256_fmadd_ps(ai, b1, c41);
        ai = _mm256_broadcast_ss(a + r5);
        c50 = _mm256_fmadd_ps(ai, b0, c50);
        c51 = _mm256_fmadd_ps(ai, b1, c51);
        a += aks;
        b += NR;
    }
    __m256 rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * ldc;
        const float *start = row0 != NULL ? row0 : ci;
        _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(start), rows[i][0]));
        _mm256_storeu_ps(ci + 8, _mm256_add_ps(_mm256_loadu_ps(start + 8), rows[i][1]));
    }
}
#else
// portable: the same tile in an array the compiler can keep in vector registers
static void kernel(int kc, const float *a, long ars, long aks, const float *b, float *c, long ldc,
                   const float *row0) {
    float acc[MR][NR] = {{0.0f}};
    for (int k = 0; k < kc; k++) {
        for (int i = 0; i < MR; i++) {
            for (int j = 0; j < NR; j++) acc[i][j] += a[i * ars] * b[j];
        }
        a += aks;
        b += NR;
    }
    for (int i = 0; i < MR; i++) {
        for (int j = 0; j < NR; j++) {
            c[i * ldc + j] = (row0 != NULL ? row0[j] : c[i * ldc + j]) + acc[i][j];
        }
    }
}
#endif

static const float ZEROS[NR];  // the start of a tile that begins from nothing

// one MR x NR tile of c, of which the top-left mr x nr lie inside c. An edge tile is computed whole
// into a scratch tile (from zeros) and the valid part added to its start: the same operations as a
// full tile, element by element (0 + x is exactly x).
static void tile(int kc, const float *ap, long ars, long aks, const float *bp, float *c, long ldc, int mr,
                 int nr, const float *row0) {
    if (mr == MR && nr == NR) {
        kernel(kc, ap, ars, aks, bp, c, ldc, row0);
        return;
    }
    float t[MR * NR];
    kernel(kc, ap, ars, aks, bp, t, NR, ZEROS);
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < nr; j++) {
            c[i * ldc + j] = (row0 != NULL ? row0[j] : c[i * ldc + j]) + t[i * NR + j];
        }
    }
}

// The blocked loops over one rectangle of c, with its own packing buffers. For each KC x NC block of B
// (packed once), for each MC x KC block of A (packed once), every MR x NR tile of the block.
static void gemm_blocked(int M, int N, int K, const float *a, long rsa, long csa, const float *b,
                         long rsb, long csb, float *c, long ldc, int accumulate, const float *bias,
                         float *apack, float *bpack) {
    for (int jc = 0; jc < N; jc += NC) {
        int nc = imin(NC, N - jc);
        for (int pc = 0; pc < K; pc += KC) {
            int kc = imin(KC, K - pc);
            int acc = accumulate || pc > 0;  // else the first block starts from the bias (or 0)
            for (int jr = 0; jr < nc; jr += NR) {
                pack_b(bpack + (size_t)jr * kc, b + pc * rsb + (jc + jr) * csb, rsb, csb,
                       imin(NR, nc - jr), kc);
            }
            for (int ic = 0; ic < M; ic += MC) {
                int mc = imin(MC, M - ic);
                // A's whole row panels are read where they lie when its rows are contiguous (the kernel
                // walks six rows at once); the rest, and the last panel if it has fewer than MR rows,
                // are packed
                for (int ir = 0; ir < mc; ir += MR) {
                    if (csa != 1 || mc - ir < MR) {
                        pack_a(apack + (size_t)ir * kc, a + (ic + ir) * rsa + pc * csa, rsa, csa,
                               imin(MR, mc - ir), kc);
                    }
                }
                // the B panel (KC x NR) stays in L1 while the A panels stream past it from L2
                for (int jr = 0; jr < nc; jr += NR) {
                    const float *row0 = acc ? NULL : bias != NULL ? bias + jc + jr : ZEROS;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int mr = imin(MR, mc - ir), packed = csa != 1 || mr < MR;
                        const float *ap = packed ? apack + (size_t)ir * kc : a + (ic + ir) * rsa + pc;
                        tile(kc, ap, packed ? 1 : rsa, packed ? MR : 1, bpack + (size_t)jr * kc,
                             c + (ic + ir) * ldc + jc + jr, ldc, mr, imin(NR, nc - jr), row0);
                    }
                }
            }
        }
    }
}

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

// A few rows of A (decoding, one token at a time): packing would copy all of B, the whole weight, for a
// few rows of work, so each row is computed straight from B instead. Columns are split into fixed
// chunks over the threads, each element summed over k in order by one thread.
#define GEMV_MAX_ROWS 4
#define GEMV_CHUNK 256

static void gemv_rows(int M, int N, int K, const float *a, long rsa, long csa, const float *b, long rsb,
                      long csb, float *c, long ldc, int accumulate, const float *bias) {
#pragma omp parallel for schedule(static) if ((long)M * N * K > 2e5)
    for (int j0 = 0; j0 < N; j0 += GEMV_CHUNK) {
        int j1 = imin(N, j0 + GEMV_CHUNK);
        for (int i = 0; i < M; i++) {
            const float *ai = a + i * rsa;
            float *ci = c + i * ldc;
            float acc[GEMV_CHUNK];
            if (csb == 1) {  // rows of B contiguous (a weight W): acc += a[i][k] * W[k][j0 .. j1]
                for (int j = j0; j < j1; j++) acc[j - j0] = 0.0f;
                for (int k = 0; k < K; k++) {
                    float aik = ai[k * csa];
                    const float *bk = b + k * rsb;
#pragma omp simd
                    for (int j = j0; j < j1; j++) acc[j - j0] += aik * bk[j];
                }
            } else {  // columns of B contiguous (wte read transposed): one dot product per column
                for (int j = j0; j < j1; j++) {
                    const float *bj = b + j * csb;
                    float sum = 0.0f;
                    for (int k = 0; k < K; k++) sum += ai[k * csa] * bj[k * rsb];
                    acc[j - j0] = sum;
                }
            }
            for (int j = j0; j < j1; j++) {
                float start = accumulate ? ci[j] : bias != NULL ? bias[j] : 0.0f;
                ci[j] = start + acc[j - j0];
            }
        }
    }
}

// gemm, where an overwritten c starts from bias (N floats, one per column; NULL: from 0)
static int gemm_bias(int M, int N, int K, const float *a, long rsa, long csa, const float *b, long rsb,
                     long csb, float *c, long ldc, int accumulate, const float *bias) {
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0) {  // an empty sum
        for (int i = 0; i < M && !accumulate; i++) {
            for (int j = 0; j < N; j++) c[i * ldc + j] = bias != NULL ? bias[j] : 0.0f;
        }
        return 0;
    }
    if (M <= GEMV_MAX_ROWS) {
        gemv_rows(M, N, K, a, rsa, csa, b, rsb, csb, c, ldc, accumulate, bias);
        return 0;
    }
    // threads only pay off above a few hundred thousand multiply-adds; the result is the same either way
    int nt = 1;
#ifdef _OPENMP
    if ((double)M * N * K > 2e5) nt = omp_get_max_threads();
#endif
    // Split c into tr x tc rectangles of whole tiles, one per thread. Each thread packs all of A for its
    // rows and all of B for its columns, so the split weighs both: per unit of K, a tile costs about
    // MR * NR / 16 = 6 cycles of multiply-adds (16 per cycle), packing about one cycle per row or column.
    int mp = (M + MR - 1) / MR, np = (N + NR - 1) / NR;  // tiles down and across
    int tr = 1, tc = 1;
    long cheapest = -1;
    for (int r = 1; r <= nt; r++) {
        if (nt % r != 0) continue;
        long rows = (long)(mp + r - 1) / r, cols = (long)(np + nt / r - 1) / (nt / r);  // tiles per thread
        long cost = 6 * rows * cols + rows * MR + cols * NR;
        if (cheapest < 0 || cost < cheapest) cheapest = cost, tr = r, tc = nt / r;
    }
    // packing buffers for each rectangle, every panel 64-byte aligned (the kernel loads B aligned)
    size_t kcmax = (size_t)imin(K, KC);
    size_t asize = round_up(round_up((size_t)imin((mp + tr - 1) / tr * MR, MC), MR) * kcmax, 16);
    size_t bsize = round_up((size_t)imin((np + tc - 1) / tc * NR, NC), NR) * kcmax;
    // small products (attention's, one head at a time) pack on the stack, the rest on the heap
    size_t floats = (asize + bsize) * (size_t)(tr * tc);
    _Alignas(64) float local[8192];
    float *buf = floats <= 8192 ? local : aligned_alloc(64, round_up(floats * sizeof(float), 64));
    if (buf == NULL) return -1;
#pragma omp parallel num_threads(tr * tc) if (tr * tc > 1)
    {
        int first = 0, step = 1;
#ifdef _OPENMP
        first = omp_get_thread_num(), step = omp_get_num_threads();  // fewer threads than asked: loop
#endif
        for (int id = first; id < tr * tc; id += step) {
            int r = id / tc, q = id % tc;
            int i0 = (int)((long)mp * r / tr) * MR, i1 = imin(M, (int)((long)mp * (r + 1) / tr) * MR);
            int j0 = (int)((long)np * q / tc) * NR, j1 = imin(N, (int)((long)np * (q + 1) / tc) * NR);
            float *apack = buf + (size_t)id * (asize + bsize), *bpack = apack + asize;
            if (i0 < i1 && j0 < j1) {
                gemm_blocked(i1 - i0, j1 - j0, K, a + i0 * rsa, rsa, csa, b + j0 * csb, rsb, csb,
                             c + i0 * ldc + j0, ldc, accumulate, bias != NULL ? bias + j0 : NULL, apack,
                             bpack);
            }
        }
    }
    if (buf != local) free(buf);
    return 0;
}

int gemm(int M, int N, int K, const float *a, long rsa, long csa, const float *b, long rsb, long csb,
         float *c, long ldc, int accumulate) {
    return gemm_bias(M, N, K, a, rsa, csa, b, rsb, csb, c, ldc, accumulate, NULL);
}

// ----------------------------------------------------------------------------------------------------
// the layers' products on the fast gemm

// dbias (OC) += sum over the N rows of dout (N, OC). Columns are split into fixed chunks, each summed
// over rows in order in double, so the sum is the same for any thread count.
static void column_sum(float *dbias, const float *dout, int N, int OC) {
    enum { CHUNK = 64 };
#pragma omp parallel for schedule(static) if ((long)N * OC > 100000)
    for (int o0 = 0; o0 < OC; o0 += CHUNK) {
        int w = imin(CHUNK, OC - o0);
        double acc[CHUNK] = {0.0};
        for (int n = 0; n < N; n++) {
            const float *row = dout + (long)n * OC + o0;
            for (int j = 0; j < w; j++) acc[j] += row[j];
        }
        for (int j = 0; j < w; j++) dbias[o0 + j] += (float)acc[j];
    }
}

int matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int N, int C,
                   int OC) {
    // out (N, OC) = inp (N, C) @ weight (C, OC) + bias: every row starts from the bias (as the naive
    // loop does), added as each tile of out is first written
    return gemm_bias(N, OC, C, inp, C, 1, weight, OC, 1, out, OC, 0, bias);
}

int matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                    const float *weight, int N, int C, int OC) {
    // dinp (N, C) = dout (N, OC) @ weight^T: B[k][j] = weight[j][k]
    if (gemm(N, C, OC, dout, OC, 1, weight, 1, OC, dinp, C, 0) != 0) return -1;
    // dweight (C, OC) += inp^T (C, N) @ dout (N, OC): A[i][k] = inp[k][i]
    if (gemm(C, OC, N, inp, 1, C, dout, OC, 1, dweight, OC, 1) != 0) return -1;
    if (dbias != NULL) column_sum(dbias, dout, N, OC);
    return 0;
}

int head_forward(float *logits, const float *x, const float *wte, int N, int C, int V) {
    // logits (N, V) = x (N, C) @ wte^T (C, V): B[k][j] = wte[j][k]
    return gemm(N, V, C, x, C, 1, wte, 1, C, logits, V, 0);
}

int head_backward(float *dx, float *dwte, const float *dlogits, const float *x, const float *wte, int N,
                  int C, int V) {
    // dx (N, C) = dlogits (N, V) @ wte (V, C)
    if (gemm(N, C, V, dlogits, V, 1, wte, C, 1, dx, C, 0) != 0) return -1;
    // dwte (V, C) += dlogits^T (V, N) @ x (N, C): A[i][k] = dlogits[k][i]
    return gemm(V, C, N, dlogits, 1, V, x, C, 1, dwte, C, 1);
}
