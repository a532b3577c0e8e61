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
 *
 * skinny_hgemm is the same kernel reading w as IEEE half precision (uint16 bits), each weight
 * widened to float32 as it is loaded and every product and sum done in float32 as above: half the
 * bytes for draft heads, whose few-row products are bound by reading their weights. The target's
 * own forward never uses it. Both entry points share one body (``half`` is a constant after
 * inlining), so skinny_sgemm's instructions are the ones it had before.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <immintrin.h>
#include "lean_native.h"

/* Where the next block of weights is prefetched into L2: `next` advances one cache line at a time
 * up to `end`, `per_step` lines per step of the inner loop, so the lines are spread over all the
 * work on the current block and memory and arithmetic overlap. */
typedef struct { const char *next, *end; int per_step; } prefetch_t;

/* Bump the version whenever a result or its speed can change: answers record it, and runs of
 * different versions are not resumed into one file or compared by speed.py. */
int skinny_sgemm_version(void) { return 4; }

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

/* 16 weights from element `at` of w, float32 or half (a constant after inlining). */
static inline __attribute__((always_inline)) __m512 load16(const int half, const void *w, size_t at) {
    if (half) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + at)));
    return _mm512_loadu_ps((const float *)w + at);
}

/* The last n < 16 weights from element `at`, zeros after them. */
static inline __attribute__((always_inline)) __m512 load_tail16(const int half, const void *w, size_t at, int n) {
    if (half) {
        uint16_t part[16] = {0};
        memcpy(part, (const uint16_t *)w + at, (size_t)n * sizeof(uint16_t));
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)part));
    }
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), (const float *)w + at);
}

/* rx (a constant after inlining) rows of x against the RW weight rows at w. */
static inline __attribute__((always_inline)) void block(
        const int rx, const int half, int K, int N, const float *x, const void *w, float *y, prefetch_t *pf) {
    __m512 acc[RX][RW];
    for (int i = 0; i < rx; i++)
        for (int j = 0; j < RW; j++) acc[i][j] = _mm512_setzero_ps();
    const size_t k_ = (size_t)K;
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 wv[RW];
        for (int j = 0; j < RW; j++) wv[j] = load16(half, w, j * k_ + k);
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
        for (int j = 0; j < RW; j++) wv[j] = load_tail16(half, w, j * k_ + k, K - k);
        for (int i = 0; i < rx; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + i * k_ + k);
            for (int j = 0; j < RW; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < rx; i++)
        _mm_storeu_ps(y + (size_t)i * N, sum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]));
}

/* The last N % RW weight rows against one row of x, summed exactly as inside a block. */
static inline __attribute__((always_inline)) void tail_rows(
        const int half, int rows, int K, const float *x, const void *w, float *y) {
    const __m512 zero = _mm512_setzero_ps();
    for (int j = 0; j < rows; j++) {
        __m512 a = _mm512_setzero_ps();
        int k = 0;
        for (; k + 16 <= K; k += 16)
            a = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), load16(half, w, (size_t)j * K + k), a);
        if (k < K) {
            __mmask16 m = (__mmask16)((1u << (K - k)) - 1u);
            a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + k), load_tail16(half, w, (size_t)j * K + k, K - k), a);
        }
        y[j] = _mm_cvtss_f32(sum4(a, zero, zero, zero));
    }
}

static inline __attribute__((always_inline)) void skinny(
        const int half, int M, int N, int K, const float *x, const void *w, float *y, int threads) {
    const size_t bytes = half ? sizeof(uint16_t) : sizeof(float);  /* per weight */
    const int blocks = N / RW;
    const int groups = (M + RX - 1) / RX;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int b = 0; b < blocks; b++) {
        const char *wb = (const char *)w + (size_t)b * RW * K * bytes;
        float *yb = y + (size_t)b * RW;
        prefetch_t pf = {wb + (size_t)RW * K * bytes, wb + (size_t)RW * K * bytes, (RW + groups - 1) / groups};
        if (b + 1 < blocks) pf.end += (size_t)RW * K * bytes;
        int i = 0;
        for (; i + RX <= M; i += RX) block(RX, half, K, N, x + (size_t)i * K, wb, yb + (size_t)i * N, &pf);
        const float *xi = x + (size_t)i * K;
        float *yi = yb + (size_t)i * N;
        switch (M - i) {  /* each case its own fully unrolled micro-kernel */
            case 5: block(5, half, K, N, xi, wb, yi, &pf); break;
            case 4: block(4, half, K, N, xi, wb, yi, &pf); break;
            case 3: block(3, half, K, N, xi, wb, yi, &pf); break;
            case 2: block(2, half, K, N, xi, wb, yi, &pf); break;
            case 1: block(1, half, K, N, xi, wb, yi, &pf); break;
        }
    }
    const int rest = N - blocks * RW;
    if (rest)
        for (int i = 0; i < M; i++)
            tail_rows(half, rest, K, x + (size_t)i * K, (const char *)w + (size_t)blocks * RW * K * bytes,
                      y + (size_t)i * N + (size_t)blocks * RW);
}

#else  /* AVX2 */

#define NR 8

static inline float hsum(__m256 v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    return ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
}

/* 8 weights from element `at` of w, float32 or half (a constant after inlining). */
static inline __attribute__((always_inline)) __m256 load8(const int half, const void *w, size_t at) {
    if (half) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + at)));
    return _mm256_loadu_ps((const float *)w + at);
}

static inline __attribute__((always_inline)) float load1(const int half, const void *w, size_t at) {
    return half ? _cvtsh_ss(((const uint16_t *)w)[at]) : ((const float *)w)[at];
}

/* One row of x against NR consecutive rows of w; per_step lines of the next block are prefetched
 * into L2 per 8 columns, as in the AVX-512 version. */
static inline __attribute__((always_inline)) void row_by_block(
        const int half, int K, const float *x, const void *w, float *y, prefetch_t *pf) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const size_t k_ = (size_t)K;
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        for (int p = 0; p < pf->per_step && pf->next < pf->end; p++, pf->next += 64)
            _mm_prefetch(pf->next, _MM_HINT_T1);
        __m256 xv = _mm256_loadu_ps(x + k);
        a0 = _mm256_fmadd_ps(xv, load8(half, w, 0 * k_ + k), a0);
        a1 = _mm256_fmadd_ps(xv, load8(half, w, 1 * k_ + k), a1);
        a2 = _mm256_fmadd_ps(xv, load8(half, w, 2 * k_ + k), a2);
        a3 = _mm256_fmadd_ps(xv, load8(half, w, 3 * k_ + k), a3);
        a4 = _mm256_fmadd_ps(xv, load8(half, w, 4 * k_ + k), a4);
        a5 = _mm256_fmadd_ps(xv, load8(half, w, 5 * k_ + k), a5);
        a6 = _mm256_fmadd_ps(xv, load8(half, w, 6 * k_ + k), a6);
        a7 = _mm256_fmadd_ps(xv, load8(half, w, 7 * k_ + k), a7);
    }
    float s[NR] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3), hsum(a4), hsum(a5), hsum(a6), hsum(a7)};
    for (; k < K; k++)  /* K not a multiple of 8 */
        for (int j = 0; j < NR; j++) s[j] += x[k] * load1(half, w, j * k_ + k);
    for (int j = 0; j < NR; j++) y[j] = s[j];
}

/* The last N % NR rows of w, summed exactly as inside a block. */
static inline __attribute__((always_inline)) void row_by_rest(
        const int half, int K, int rows, const float *x, const void *w, float *y) {
    for (int j = 0; j < rows; j++) {
        const size_t row = (size_t)j * K;
        __m256 a = _mm256_setzero_ps();
        int k = 0;
        for (; k + 8 <= K; k += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load8(half, w, row + k), a);
        float sum = hsum(a);
        for (; k < K; k++) sum += x[k] * load1(half, w, row + k);
        y[j] = sum;
    }
}

static inline __attribute__((always_inline)) void skinny(
        const int half, int M, int N, int K, const float *x, const void *w, float *y, int threads) {
    const size_t bytes = half ? sizeof(uint16_t) : sizeof(float);  /* per weight */
    const int blocks = N / NR;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int b = 0; b < blocks; b++) {
        const char *wb = (const char *)w + (size_t)b * NR * K * bytes;
        /* the next block's lines, spread over this block's M * K/8 steps */
        const size_t steps = (size_t)M * (K / 8) + 1, lines = (size_t)NR * K * bytes / 64 + 1;
        prefetch_t pf = {wb + (size_t)NR * K * bytes, wb + (size_t)NR * K * bytes, (int)((lines + steps - 1) / steps)};
        if (b + 1 < blocks) pf.end += (size_t)NR * K * bytes;
        for (int i = 0; i < M; i++)
            row_by_block(half, K, x + (size_t)i * K, wb, y + (size_t)i * N + (size_t)b * NR, &pf);
    }
    const int rest = N - blocks * NR;
    if (rest)
        for (int i = 0; i < M; i++)
            row_by_rest(half, K, rest, x + (size_t)i * K, (const char *)w + (size_t)blocks * NR * K * bytes,
                        y + (size_t)i * N + (size_t)blocks * NR);
}

#endif

void skinny_sgemm(int M, int N, int K, const float *x, const float *w, float *y, int threads) {
    skinny(0, M, N, K, x, w, y, threads);
}

void skinny_hgemm(int M, int N, int K, const float *x, const unsigned short *w, float *y, int threads) {
    skinny(1, M, N, K, x, w, y, threads);
}
