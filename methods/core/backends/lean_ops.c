/* A llama decoder layer for the lean backend's float32 CPU path, as one call (lean_layer):
 * RMSNorm (with the residual add before it), rotary embedding with the cache write, attention
 * of a few query rows over the cache, SiLU(gate) * up, and the products through skinny_gemm.c.
 * In torch the element-wise parts alone are ~25 small calls per layer, which on a 2-core CPU
 * cost more than their arithmetic. The parts are exported too, for the tests.
 *
 * Plain C: loops marked `omp simd` are vectorised for the CPU the file is compiled on
 * (-march=native). Results equal torch's up to float32 rounding (other summation orders, and a
 * polynomial exp accurate to a few ulp); tests/test_lean_native.py compares them.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <omp.h>
#include <immintrin.h>
#include "lean_native.h"

/* exp(x) for x in about [-87, 88], written so that GCC vectorises it without -ffast-math
 * (floorf, fminf and memcpy type-punning each stop the vectoriser): x = n ln2 + r with
 * |r| <= ln2/2, exp(r) by its degree-7 Taylor polynomial (relative error < 1e-8 there), times
 * 2^n put into the exponent bits. n is rounded to nearest by adding and subtracting 1.5 * 2^23. */
static inline float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;  /* ln2 in two parts, so that n * ln2 loses nothing */
    r = r - n * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const union { int32_t i; float f; } two_to_n = {((int32_t)n + 127) << 23};
    return p * two_to_n.f;
}

/* Bump whenever a result or its speed can change (see skinny_sgemm_version). */
int lean_ops_version(void) { return 7; }

/* Every scratch buffer starts on a cache line. skinny_gemm.c reads its input rows 64 bytes at a
 * time, and malloc aligns to 16 bytes only: a row that starts mid-line makes every one of those
 * loads touch two lines, which costs more the more rows a block has. On a 2-core AMD EPYC
 * (AVX-512) a verification forward of the embedded model took 1-11% less time over 4 rows, 3-17%
 * over 6 and 9-23% over 8 with these buffers, the same within noise over 1-2 rows, and gave the
 * same logits bit for bit (after 200 and 600 cached tokens, medians of 21 interleaved forwards). */
static void *scratch(size_t bytes) { return aligned_alloc(64, (bytes + 63) / 64 * 64); }

/* Sums in one fixed order: 16 running lanes (lane l takes elements l, l+16, ...), then a fixed
 * tree over the lanes. C's rules forbid the compiler to reorder these float additions, so a
 * sum depends only on the values and their count, never on alignment or on how the loop was
 * vectorised; `omp simd reduction` would leave the order to the compiler. */
#define LANES 16

static inline float sum_lanes(const float *part) {
    float four[4];
    for (int l = 0; l < 4; l++) four[l] = (part[l] + part[l + 8]) + (part[l + 4] + part[l + 12]);
    return (four[0] + four[2]) + (four[1] + four[3]);
}

static inline float dot(int len, const float *a, const float *b) {
    float part[LANES] = {0};
    int k = 0;
    for (; k + LANES <= len; k += LANES)
        for (int l = 0; l < LANES; l++) part[l] += a[k + l] * b[k + l];
    for (int l = 0; k < len; k++, l++) part[l] += a[k] * b[k];
    return sum_lanes(part);
}

static inline float total(int len, const float *a) {
    float part[LANES] = {0};
    int k = 0;
    for (; k + LANES <= len; k += LANES)
        for (int l = 0; l < LANES; l++) part[l] += a[k + l];
    for (int l = 0; k < len; k++, l++) part[l] += a[k];
    return sum_lanes(part);
}

/* For each of n rows of width d: if add, x += add (the residual stream, updated in place);
 * then out = w * (x / sqrt(mean(x^2) + eps)). */
void rms_norm(int n, int d, float *x, const float *add, const float *w, float eps, float *out) {
    for (int i = 0; i < n; i++) {
        float *xi = x + (size_t)i * d;
        float *oi = out + (size_t)i * d;
        if (add) {
            const float *ai = add + (size_t)i * d;
            #pragma omp simd
            for (int j = 0; j < d; j++) xi[j] += ai[j];
        }
        const float squares = dot(d, xi, xi);
        const float inv = 1.0f / sqrtf(squares / (float)d + eps);
        #pragma omp simd
        for (int j = 0; j < d; j++) oi[j] = w[j] * (xi[j] * inv);
    }
}

/* x[:half] * c[:half] - x[half:] * s[:half] and x[half:] * c[half:] + x[:half] * s[half:]:
 * the rotate-half form of rotary embedding that Llama and Qwen2 use. */
static inline void rotate(int hd, const float *x, const float *c, const float *s, float *out) {
    const int half = hd / 2;
    float tmp[512];  /* head_dim <= 512 is checked by the caller */
    #pragma omp simd
    for (int j = 0; j < half; j++) tmp[j] = x[j] * c[j] - x[j + half] * s[j];
    #pragma omp simd
    for (int j = half; j < hd; j++) tmp[j] = x[j] * c[j] + x[j - half] * s[j];
    memcpy(out, tmp, sizeof(float) * hd);
}

/* qkv: n rows of [q (heads*hd) | k (kv_heads*hd) | v (kv_heads*hd)]. q is rotated in place;
 * the rotated k and v go to rows past .. past+n-1 of the caches [kv_heads, cap, hd]. */
void rope_store(int n, int heads, int kv_heads, int hd, float *qkv, const float *cos, const float *sin,
                float *keys, float *values, int cap, int past) {
    const int row = (heads + 2 * kv_heads) * hd;
    for (int i = 0; i < n; i++) {
        float *q = qkv + (size_t)i * row, *k = q + heads * hd, *v = k + kv_heads * hd;
        const float *c = cos + (size_t)i * hd, *s = sin + (size_t)i * hd;
        for (int h = 0; h < heads; h++) rotate(hd, q + h * hd, c, s, q + h * hd);
        for (int g = 0; g < kv_heads; g++) {
            const size_t at = ((size_t)g * cap + past + i) * hd;
            rotate(hd, k + g * hd, c, s, keys + at);
            memcpy(values + at, v + g * hd, sizeof(float) * hd);
        }
    }
}

/* Attention of n query rows (the block, whose keys are cache rows past .. past+n-1) over the
 * cache's first past+n rows: every row sees the first `common` rows (common <= past), and cache
 * row common + j when allowed[i*(past+n-common) + j] is nonzero. With common == past, allowed is
 * the block's own [n, n] mask over a prefix everyone sees (a target's verification); with
 * common < past, rows between belong to earlier blocks that only some rows see (an EAGLE draft's
 * tree entries, kept after the committed pairs until the next step overwrites them).
 * q comes from the rotated qkv rows; out is [n, heads*hd].
 *
 * Per kv head, the scores of all its query rows against the cache's keys (the prefix's, then the
 * block's) are one few-row product in skinny_gemm.c, whose every output depends only on its
 * query and its key. Then, per (row, head), the keys the row sees are taken as one list in cache
 * order, and the softmax and the weighted sum of values run over that list in a fixed order.
 * So a row's result depends only on its query and the keys it sees, not on where in the cache
 * they lie or on the other rows of the block: a tree node on the accepted path gets
 * bit-identical values to the same token decoded alone, and speculative decoding in float32
 * gives exactly the baseline's tokens (no near-tie can flip). */
/* acc[0 .. hd) = sum over c of weights[c] * v_c, v_c = values + slot[c] * hd: for each column,
 * multiply-adds over c in order with one rounding each (a vector FMA lane and fmaf round
 * alike). Up to 8 vectors of columns are summed at once, in registers, so that consecutive
 * keys' multiply-adds do not wait on each other. */
#if defined(__AVX512F__)
typedef __m512 vec;
#define VW 16
#define vzero _mm512_setzero_ps
#define vset1 _mm512_set1_ps
#define vload _mm512_loadu_ps
#define vstore _mm512_storeu_ps
#define vfma _mm512_fmadd_ps
#else
typedef __m256 vec;
#define VW 8
#define vzero _mm256_setzero_ps
#define vset1 _mm256_set1_ps
#define vload _mm256_loadu_ps
#define vstore _mm256_storeu_ps
#define vfma _mm256_fmadd_ps
#endif

/* rows (1 or 2) weighted sums over the same keys at once: twice the independent multiply-adds
 * per loaded value row, for heads that share a kv head. */
static inline __attribute__((always_inline)) void weighted_columns(
        const int rows, const int nv, int count, const float *const *weights, const int *slot,
        const float *values, int hd, int t0, float *const *acc) {
    vec a[2][8];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++) a[r][v] = vzero();
    for (int c = 0; c < count; c++) {
        const float *row = values + (size_t)slot[c] * hd + t0;
        for (int r = 0; r < rows; r++) {
            const vec p = vset1(weights[r][c]);
            for (int v = 0; v < nv; v++) a[r][v] = vfma(p, vload(row + v * VW), a[r][v]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++) vstore(acc[r] + t0 + v * VW, a[r][v]);
}

static inline __attribute__((always_inline)) void weighted_sums_of(
        const int rows, int count, const float *const *weights, const int *slot, const float *values, int hd,
        float *const *acc) {
    const int chunk = rows == 2 ? 4 : 8;  /* vectors of columns per pass: 8 accumulators either way */
    int t0 = 0;
    for (; t0 + chunk * VW <= hd; t0 += chunk * VW)
        weighted_columns(rows, chunk, count, weights, slot, values, hd, t0, acc);
    switch ((hd - t0) / VW) {  /* each case its own unrolled loop */
        case 7: weighted_columns(rows, 7, count, weights, slot, values, hd, t0, acc); break;
        case 6: weighted_columns(rows, 6, count, weights, slot, values, hd, t0, acc); break;
        case 5: weighted_columns(rows, 5, count, weights, slot, values, hd, t0, acc); break;
        case 4: weighted_columns(rows, 4, count, weights, slot, values, hd, t0, acc); break;
        case 3: weighted_columns(rows, 3, count, weights, slot, values, hd, t0, acc); break;
        case 2: weighted_columns(rows, 2, count, weights, slot, values, hd, t0, acc); break;
        case 1: weighted_columns(rows, 1, count, weights, slot, values, hd, t0, acc); break;
    }
    for (int r = 0; r < rows; r++)
        for (int t = t0 + (hd - t0) / VW * VW; t < hd; t++) {
            float a = 0.0f;
            for (int c = 0; c < count; c++) a = fmaf(weights[r][c], values[(size_t)slot[c] * hd + t], a);
            acc[r][t] = a;
        }
}

static void weighted_sums(int rows, int count, const float *const *weights, const int *slot, const float *values,
                          int hd, float *const *acc) {
    if (rows == 2) weighted_sums_of(2, count, weights, slot, values, hd, acc);
    else weighted_sums_of(1, count, weights, slot, values, hd, acc);
}

void attend(int n, int heads, int kv_heads, int hd, const float *qkv, const float *keys, const float *values,
            int cap, int past, int common, const unsigned char *allowed, float scale, float *out, int threads) {
    const int row = (heads + 2 * kv_heads) * hd;
    const int group = heads / kv_heads;
    const int m = n * group;  /* query rows per kv head, ordered (row, head in group) */
    const int end = past + n;  /* the block's keys follow the prefix's in the cache */
    const int span = end - common;  /* the cache rows the mask covers: allowed is [n, span] */
    float *queries = scratch(sizeof(float) * (size_t)m * hd);
    float *all_scores = scratch(sizeof(float) * (size_t)kv_heads * m * end);
    for (int g = 0; g < kv_heads; g++) {
        for (int i = 0; i < n; i++)
            memcpy(queries + (size_t)i * group * hd, qkv + (size_t)i * row + (size_t)g * group * hd,
                   sizeof(float) * group * hd);
        skinny_sgemm(m, end, hd, queries, keys + (size_t)g * cap * hd, all_scores + (size_t)g * m * end, threads);
    }
    #pragma omp parallel num_threads(threads) if (kv_heads * m * end > 4096)
    {
        float *weights = scratch(sizeof(float) * (size_t)group * end);
        int *slot = scratch(sizeof(int) * (size_t)end);
        #pragma omp for schedule(static)
        for (int task = 0; task < kv_heads * n; task++) {  /* a kv head and a block row: its heads */
            const int g = task / n, i = task % n;
            int count = common;  /* the keys the row sees, in cache order: the same for its heads */
            #pragma omp simd
            for (int j = 0; j < common; j++) slot[j] = j;
            for (int j = 0; j < span; j++)
                if (allowed[(size_t)i * span + j]) slot[count++] = common + j;
            for (int e = 0; e < group; e++) {
                const int r = i * group + e;
                const float *scores = all_scores + ((size_t)g * m + r) * end;
                float *w = weights + (size_t)e * end;
                #pragma omp simd
                for (int j = 0; j < common; j++) w[j] = scores[j] * scale;
                for (int c = common; c < count; c++) w[c] = scores[slot[c]] * scale;
                float top = -INFINITY;  /* a maximum is exact in any order */
                #pragma omp simd reduction(max:top)
                for (int c = 0; c < count; c++) top = w[c] > top ? w[c] : top;
                #pragma omp simd
                for (int c = 0; c < count; c++) w[c] = exp_approx(w[c] - top);
            }
            for (int e = 0; e < group; e += 2) {
                const int rows = group - e >= 2 ? 2 : 1;
                const float *ws[2] = {weights + (size_t)e * end, weights + (size_t)(e + rows - 1) * end};
                float *os[2] = {out + (size_t)i * heads * hd + (size_t)(g * group + e) * hd,
                                out + (size_t)i * heads * hd + (size_t)(g * group + e + rows - 1) * hd};
                weighted_sums(rows, count, ws, slot, values + (size_t)g * cap * hd, hd, os);
                for (int r = 0; r < rows; r++) {
                    const float inv = 1.0f / total(count, ws[r]);
                    #pragma omp simd
                    for (int t = 0; t < hd; t++) os[r][t] *= inv;
                }
            }
        }
        free(slot);
        free(weights);
    }
    free(all_scores);
    free(queries);
}

/* One new token for each of `rows` independent sequences (the corpus generator's batch): row r
 * is qkv row r at position positions[r], with its own caches keys[r], values[r] of capacity
 * caps[r]. Each row runs exactly rope_store(1, ...) and a one-thread attend(1, ...) over its own
 * cache, as it would decoded alone, so its values do not depend on the other rows; the rows are
 * shared among the threads. One call per layer instead of two per row from Python. */
void attend_rows(int rows, int heads, int kv_heads, int hd, float *qkv, const float *cos, const float *sin,
                 float *const *keys, float *const *values, const int *caps, const int *positions, float scale,
                 float *out, int threads) {
    const int row = (heads + 2 * kv_heads) * hd;
    const unsigned char sees_itself = 1;
    #pragma omp parallel for num_threads(threads) schedule(dynamic, 4) if (rows > 1)
    for (int r = 0; r < rows; r++) {
        float *q = qkv + (size_t)r * row;
        rope_store(1, heads, kv_heads, hd, q, cos + (size_t)r * hd, sin + (size_t)r * hd, keys[r], values[r], caps[r],
                   positions[r]);
        attend(1, heads, kv_heads, hd, q, keys[r], values[r], caps[r], positions[r], positions[r], &sees_itself,
               scale, out + (size_t)r * heads * hd, 1);
    }
}

static void silu_row(int inter, const float *restrict g, const float *restrict u, float *restrict o) {
    #pragma omp simd
    for (int j = 0; j < inter; j++) o[j] = g[j] / (1.0f + exp_approx(-g[j])) * u[j];
}

/* out = silu(gate) * up for n rows of gate_up = [gate (inter) | up (inter)]. */
void silu_mul(int n, int inter, const float *gate_up, float *out, int threads) {
    #pragma omp parallel for num_threads(threads) if (n * inter > 65536) schedule(static)
    for (int i = 0; i < n; i++)
        silu_row(inter, gate_up + (size_t)i * 2 * inter, gate_up + (size_t)i * 2 * inter + inter,
                 out + (size_t)i * inter);
}

/* Qwen3's per-head norms: every q head and every k head of the n qkv rows normed in place over
 * its hd dimensions (rms_norm's arithmetic, one head a row). */
static void head_norms(int n, int heads, int kv_heads, int hd, float *qkv, const float *q_norm,
                       const float *k_norm, float eps) {
    const int row = (heads + 2 * kv_heads) * hd;
    for (int i = 0; i < n; i++) {
        float *q = qkv + (size_t)i * row;
        rms_norm(heads, hd, q, NULL, q_norm, eps, q);
        rms_norm(kv_heads, hd, q + (size_t)heads * hd, NULL, k_norm, eps, q + (size_t)heads * hd);
    }
}

/* y = x w^T for one of the layer's four matrices, float32 or half as the layer says. */
static void product(const lean_layer_t *L, int n, int N, int K, const float *x, const void *w, float *y,
                    int threads) {
    if (L->half) skinny_hgemm(n, N, K, x, (const unsigned short *)w, y, threads);
    else skinny_sgemm(n, N, K, x, (const float *)w, y, threads);
}

static void add_bias(int n, int d, float *y, const float *bias) {
    if (!bias) return;
    for (int i = 0; i < n; i++) {
        float *yi = y + (size_t)i * d;
        #pragma omp simd
        for (int j = 0; j < d; j++) yi[j] += bias[j];
    }
}

/* One decoder layer (lean_layer_t, lean_native.h), everything the lean backend's Python loop did
 * per layer in one call. x (the residual stream, [n, width]) goes through the layer in place:
 *   h = rms(x); qkv = h Wqkv; [per-head norms of q and k;] rope, cache write; x += attention Wo;
 *   h = rms(x); x += (silu(h Wg) * h Wu) Wdown.
 * A NULL norm_in means the layer has no input norm and q, k, v read x itself: EAGLE's first
 * draft layer reads its fc output that way, as published. A non-NULL attn_in [n, in_width] is
 * what q, k, v read instead of the normed x (norm_in is then not used): EAGLE-3's draft layer
 * attends from [normed embedding, normed feature], twice the residual stream's width, and adds
 * the result to its own residual. `common` and `allowed` are attend's. */
/* The attention's inputs of n rows `in` [n, in_width]: qkv = in Wqkv (+ bias), the per-head norms,
 * then rope_store: q rotated in place in qkv [n, qkv width], the rotated keys and the values in
 * cache rows past .. past+n-1. */
static void project_store(const lean_layer_t *L, int n, const float *in, const float *cos, const float *sin,
                          float *keys, float *values, int cap, int past, float *qkv, int threads) {
    const int qkv_width = (L->heads + 2 * L->kv_heads) * L->hd;
    product(L, n, qkv_width, L->in_width, in, L->wqkv, qkv, threads);
    add_bias(n, qkv_width, qkv, L->bqkv);
    if (L->q_norm) head_norms(n, L->heads, L->kv_heads, L->hd, qkv, L->q_norm, L->k_norm, L->eps_qk);
    rope_store(n, L->heads, L->kv_heads, L->hd, qkv, cos, sin, keys, values, cap, past);
}

/* The keys and values a layer would store for n rows that q/k/v read as given (no input norm), and
 * nothing else: DFlash's context rows, which every draft layer sees but none transforms. */
void lean_kv(const lean_layer_t *L, int n, const float *in, const float *cos, const float *sin, float *keys,
             float *values, int cap, int past, int threads) {
    float *qkv = scratch(sizeof(float) * (size_t)n * (L->heads + 2 * L->kv_heads) * L->hd);
    project_store(L, n, in, cos, sin, keys, values, cap, past, qkv, threads);
    free(qkv);
}

void lean_layer(const lean_layer_t *L, int n, float *x, const float *attn_in, const float *cos, const float *sin,
                float *keys, float *values, int cap, int past, int common, const unsigned char *allowed,
                int threads) {
    const int width = L->width, qkv_width = (L->heads + 2 * L->kv_heads) * L->hd;
    float *h = scratch(sizeof(float) * (size_t)n * width);
    float *qkv = scratch(sizeof(float) * (size_t)n * qkv_width);
    float *attended = scratch(sizeof(float) * (size_t)n * L->heads * L->hd);
    float *gate_up = scratch(sizeof(float) * (size_t)n * 2 * L->inter);
    float *activated = scratch(sizeof(float) * (size_t)n * L->inter);
    float *delta = scratch(sizeof(float) * (size_t)n * width);

    const float *in = attn_in ? attn_in : (L->norm_in ? h : x);
    if (!attn_in && L->norm_in) rms_norm(n, width, x, NULL, L->norm_in, L->eps_in, h);
    project_store(L, n, in, cos, sin, keys, values, cap, past, qkv, threads);
    attend(n, L->heads, L->kv_heads, L->hd, qkv, keys, values, cap, past, common, allowed, L->scale, attended,
           threads);
    product(L, n, width, L->heads * L->hd, attended, L->wo, delta, threads);
    add_bias(n, width, delta, L->bo);
    rms_norm(n, width, x, delta, L->norm_post, L->eps_post, h);
    product(L, n, 2 * L->inter, width, h, L->wgu, gate_up, threads);
    add_bias(n, 2 * L->inter, gate_up, L->bgu);
    silu_mul(n, L->inter, gate_up, activated, threads);
    product(L, n, width, L->inter, activated, L->wdown, delta, threads);
    add_bias(n, width, delta, L->bdown);
    for (int i = 0; i < n; i++) {
        float *xi = x + (size_t)i * width;
        const float *di = delta + (size_t)i * width;
        #pragma omp simd
        for (int j = 0; j < width; j++) xi[j] += di[j];
    }

    free(delta);
    free(activated);
    free(gate_up);
    free(attended);
    free(qkv);
    free(h);
}
