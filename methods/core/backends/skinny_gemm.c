/* y = x @ w^T for a few rows of x: the shape of a decoding or verification forward.
 *
 * x is [M, K], w is [N, K] (a torch Linear weight, row-major, unchanged and not copied), y is
 * [M, N]; all float32 and contiguous. Each block of weight rows is read from memory once and
 * stays in L1 while it is multiplied with every row of x, so for M up to a few dozen the
 * weights stream at close to the memory bandwidth, where BLAS sgemm runs such shapes as M
 * separate matrix-vector products or pays for packing. Blocks of weight rows are split between
 * threads with OpenMP.
 *
 * Every output is one dot product summed in the same order whatever M and N are and wherever its
 * rows fall in the blocks, so y[i][j] depends on x[i] and w[j] only: a row's result does not
 * depend on which other rows share the call (lean_ops.c relies on this for its attention scores).
 *
 * Two versions, chosen at compile time (-march=native):
 * - AVX-512: 4 weight rows by up to 6 rows of x per micro-kernel (24 accumulators, 10 loads per
 *   24 FMAs), with the next block of weights prefetched into L2 spread over the block's work so
 *   that memory and arithmetic overlap. Measured on a 2-core AVX-512 Xeon against 4x5, 4x7,
 *   8x2 and 8x3, with and without spreading, T0/T1/T2 hints and 1-4 blocks ahead.
 * - AVX2: 1 row of x by 8 weight rows, chosen on a 2-core AVX2 CPU against 1x3 .. 4x3,
 *   2x4 .. 2x6 and 1x4 .. 1x12, with the same spread prefetch (measured with this version built
 *   for the AVX-512 Xeon: 10-17% faster at 2-8 rows, the same at 1).
 * benchmarks/forward_cost.py --kernel-rows measures the result in a whole forward.
 */
#include <stddef.h>
#include <immintrin.h>
#include "lean_native.h"

/* Where the next block of weights is prefetched into L2: `next` advances one cache line at a time
 * up to `end`, `per_step` lines per step of the inner loop, so the lines are spread over all the
 * work on the current block and memory and arithmetic overlap. */
typedef struct { const char *next, *end; int per_step; } prefetch_t;

/* Bump the version whenever a result or its speed can change: answers record it, and runs of
 * different versions are not resumed into one file or compared by speed.py. */
int skinny_sgemm_version(void) { return 3; }

int skinny_sgemm_vector_bits(void) {
#if defined(__AVX512F__)
    return 512;
#else
    return 256;
#endif
}

#if defined(__AVX512F__)

#define RW 4  /* weight rows per block */
#define RX 6  /* rows of x per micro-kernel at most */

/* The full sums of four 16-lane accumulators, as one 4-lane vector. */
static inline __m128 sum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    /* per 128-bit lane, t0 holds partial sums [a0 a1 a0 a1] and t1 [a2 a3 a2 a3] */
    __m512 u = _mm512_add_ps(_mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 v = _mm256_add_ps(_mm512_castps512_ps256(u), _mm512_extractf32x8_ps(u, 1));
    return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
}

/* rx (a constant after inlining) rows of x against the RW weight rows at w. */
static inline __attribute__((always_inline)) void block(
        const int rx, int K, int N, const float *x, const float *w, float *y, prefetch_t *pf) {
    __m512 acc[RX][RW];
    for (int i = 0; i < rx; i++)
        for (int j = 0; j < RW; j++) acc[i][j] = _mm512_setzero_ps();
    const size_t k_ = (size_t)K;
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 wv[RW];
        for (int j = 0; j < RW; j++) wv[j] = _mm512_loadu_ps(w + j * k_ + k);
        for (int p = 0; p < pf->per_step && pf->next < pf->end; p++, pf->next += 64)
            _mm_prefetch(pf->next, _MM_HINT_T1);
        for (int i = 0; i < rx; i++) {
            __m512 xv = _mm512_loadu_ps(x + i * k_ + k);
            for (int j = 0; j < RW; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (k < K) {  /* K not a multiple of 16: masked loads read zeros past the end */
        __mmask16 m = (__mmask16)((1u << (K - k)) - 1u);
        __m512 wv[RW];
        for (int j = 0; j < RW; j++) wv[j] = _mm512_maskz_loadu_ps(m, w + j * k_ + k);
        for (int i = 0; i < rx; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + i * k_ + k);
            for (int j = 0; j < RW; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < rx; i++)
        _mm_storeu_ps(y + (size_t)i * N, sum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]));
}

/* The last N % RW weight rows against one row of x, summed exactly as inside a block. */
static void tail_rows(int rows, int K, const float *x, const float *w, float *y) {
    const __m512 zero = _mm512_setzero_ps();
    for (int j = 0; j < rows; j++) {
        __m512 a = _mm512_setzero_ps();
        int k = 0;
        for (; k + 16 <= K; k += 16)
            a = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), _mm512_loadu_ps(w + (size_t)j * K + k), a);
        if (k < K) {
            __mmask16 m = (__mmask16)((1u << (K - k)) - 1u);
            a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + k), _mm512_maskz_loadu_ps(m, w + (size_t)j * K + k), a);
        }
        y[j] = _mm_cvtss_f32(sum4(a, zero, zero, zero));
    }
}

void skinny_sgemm(int M, int N, int K, const float *x, const float *w, float *y, int threads) {
    const int blocks = N / RW;
    const int groups = (M + RX - 1) / RX;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int b = 0; b < blocks; b++) {
        const float *wb = w + (size_t)b * RW * K;
        float *yb = y + (size_t)b * RW;
        prefetch_t pf = {(const char *)(wb + (size_t)RW * K), (const char *)(wb + (size_t)RW * K),
                         (RW + groups - 1) / groups};
        if (b + 1 < blocks) pf.end += (size_t)RW * K * sizeof(float);
        int i = 0;
        for (; i + RX <= M; i += RX) block(RX, K, N, x + (size_t)i * K, wb, yb + (size_t)i * N, &pf);
        const float *xi = x + (size_t)i * K;
        float *yi = yb + (size_t)i * N;
        switch (M - i) {  /* each case its own fully unrolled micro-kernel */
            case 5: block(5, K, N, xi, wb, yi, &pf); break;
            case 4: block(4, K, N, xi, wb, yi, &pf); break;
            case 3: block(3, K, N, xi, wb, yi, &pf); break;
            case 2: block(2, K, N, xi, wb, yi, &pf); break;
            case 1: block(1, K, N, xi, wb, yi, &pf); break;
        }
    }
    const int rest = N - blocks * RW;
    if (rest)
        for (int i = 0; i < M; i++)
            tail_rows(rest, K, x + (size_t)i * K, w + (size_t)blocks * RW * K, y + (size_t)i * N + (size_t)blocks * RW);
}

#else  /* AVX2 */

#define NR 8

static inline float hsum(__m256 v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    return ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
}

/* One row of x against NR consecutive rows of w; per_step lines of the next block are prefetched
 * into L2 per 8 columns, as in the AVX-512 version. */
static void row_by_block(int K, const float *x, const float *w, float *y, prefetch_t *pf) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const size_t k_ = (size_t)K;
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        for (int p = 0; p < pf->per_step && pf->next < pf->end; p++, pf->next += 64)
            _mm_prefetch(pf->next, _MM_HINT_T1);
        __m256 xv = _mm256_loadu_ps(x + k);
        a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + 0 * k_ + k), a0);
        a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + 1 * k_ + k), a1);
        a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + 2 * k_ + k), a2);
        a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + 3 * k_ + k), a3);
        a4 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + 4 * k_ + k), a4);
        a5 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + 5 * k_ + k), a5);
        a6 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + 6 * k_ + k), a6);
        a7 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + 7 * k_ + k), a7);
    }
    float s[NR] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3), hsum(a4), hsum(a5), hsum(a6), hsum(a7)};
    for (; k < K; k++)  /* K not a multiple of 8 */
        for (int j = 0; j < NR; j++) s[j] += x[k] * w[j * k_ + k];
    for (int j = 0; j < NR; j++) y[j] = s[j];
}

/* The last N % NR rows of w, summed exactly as inside a block. */
static void row_by_rest(int K, int rows, const float *x, const float *w, float *y) {
    for (int j = 0; j < rows; j++) {
        const float *wj = w + (size_t)j * K;
        __m256 a = _mm256_setzero_ps();
        int k = 0;
        for (; k + 8 <= K; k += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(wj + k), a);
        float sum = hsum(a);
        for (; k < K; k++) sum += x[k] * wj[k];
        y[j] = sum;
    }
}

void skinny_sgemm(int M, int N, int K, const float *x, const float *w, float *y, int threads) {
    const int blocks = N / NR;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int b = 0; b < blocks; b++) {
        const float *wb = w + (size_t)b * NR * K;
        /* the next block's lines, spread over this block's M * K/8 steps */
        const size_t steps = (size_t)M * (K / 8) + 1, lines = (size_t)NR * K * sizeof(float) / 64 + 1;
        prefetch_t pf = {(const char *)(wb + (size_t)NR * K), (const char *)(wb + (size_t)NR * K),
                         (int)((lines + steps - 1) / steps)};
        if (b + 1 < blocks) pf.end += (size_t)NR * K * sizeof(float);
        for (int i = 0; i < M; i++)
            row_by_block(K, x + (size_t)i * K, wb, y + (size_t)i * N + (size_t)b * NR, &pf);
    }
    const int rest = N - blocks * NR;
    if (rest)
        for (int i = 0; i < M; i++)
            row_by_rest(K, rest, x + (size_t)i * K, w + (size_t)blocks * NR * K,
                        y + (size_t)i * N + (size_t)blocks * NR);
}

#endif
