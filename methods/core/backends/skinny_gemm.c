/* y = x @ w^T for a few rows of x: the shape of a decoding or verification forward.
 *
 * x is [M, K], w is [N, K] (a torch Linear weight, row-major, unchanged and not copied), y is
 * [M, N]; all float32 and contiguous. Every block of NR = 8 weight rows is read from memory once
 * and stays in L1 while it is multiplied with each of the M rows of x, eight dot products at a
 * time in AVX2 registers. For M up to a few dozen this streams the weights at close to the
 * memory bandwidth, where BLAS sgemm runs such shapes as M separate matrix-vector products or
 * pays for packing. Blocks of weight rows are split between threads with OpenMP.
 *
 * The register blocking (1 row of x by 8 of w) was chosen by measurement on a 2-core AVX2 CPU
 * against 1x3 .. 4x3, 2x4 .. 2x6 and 1x4 .. 1x12 (benchmarks/forward_cost.py measures the result).
 */
#include <stddef.h>
#include <immintrin.h>

#define NR 8

static inline float hsum(__m256 v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    return ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
}

/* One row of x against NR consecutive rows of w. */
static void row_by_block(int K, const float *x, const float *w, float *y) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const size_t k_ = (size_t)K;
    int k = 0;
    for (; k + 8 <= K; k += 8) {
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

/* The last N % NR rows of w, plainly. */
static void row_by_rest(int K, int rows, const float *x, const float *w, float *y) {
    for (int j = 0; j < rows; j++) {
        float s = 0.0f;
        for (int k = 0; k < K; k++) s += x[k] * w[(size_t)j * K + k];
        y[j] = s;
    }
}

int skinny_sgemm_version(void) { return 1; }

void skinny_sgemm(int M, int N, int K, const float *x, const float *w, float *y, int threads) {
    const int blocks = N / NR;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int b = 0; b < blocks; b++) {
        const float *wb = w + (size_t)b * NR * K;
        for (int i = 0; i < M; i++)
            row_by_block(K, x + (size_t)i * K, wb, y + (size_t)i * N + (size_t)b * NR);
    }
    const int rest = N - blocks * NR;
    if (rest)
        for (int i = 0; i < M; i++)
            row_by_rest(K, rest, x + (size_t)i * K, w + (size_t)blocks * NR * K,
                        y + (size_t)i * N + (size_t)blocks * NR);
}
