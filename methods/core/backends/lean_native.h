/* The lean backend's native layer: every function skinny_gemm.c and lean_ops.c export, and the
 * layer description lean_layer reads. Both C files include this header, so the compiler checks
 * their definitions against it; native_kernels.py mirrors it in ctypes (SIGNATURES, VERSIONS,
 * LayerWeights), and tests/test_native_header.py checks that the mirror matches it. */
#ifndef LEAN_NATIVE_H
#define LEAN_NATIVE_H

/* ---- skinny_gemm.c: y = x @ w^T for a few rows of x ---- */
int skinny_sgemm_version(void);
int skinny_sgemm_vector_bits(void);
void skinny_sgemm(int M, int N, int K, const float *x, const float *w, float *y, int threads);
/* the same with w in IEEE half precision (uint16 bits), widened to float32 as it is read */
void skinny_hgemm(int M, int N, int K, const float *x, const unsigned short *w, float *y, int threads);

/* ---- lean_ops.c: the element-wise parts of a decoder layer, and the whole layer ---- */
int lean_ops_version(void);
void rms_norm(int n, int d, float *x, const float *add, const float *w, float eps, float *out);
void rope_store(int n, int heads, int kv_heads, int hd, float *qkv, const float *cos, const float *sin,
                float *keys, float *values, int cap, int past);
void attend(int n, int heads, int kv_heads, int hd, const float *qkv, const float *keys, const float *values,
            int cap, int past, int common, const unsigned char *allowed, float scale, float *out, int threads);
void silu_mul(int n, int inter, const float *gate_up, float *out, int threads);
void attend_rows(int rows, int heads, int kv_heads, int hd, float *qkv, const float *cos, const float *sin,
                 float *const *keys, float *const *values, const int *caps, const int *positions, float scale,
                 float *out, int threads);

/* One decoder layer's sizes and weights (row-major torch tensors, not copied). */
typedef struct {
    int width, in_width, heads, kv_heads, hd, inter;  /* in_width: q/k/v's input (width but for attn_in) */
    float eps_in, eps_post, scale;
    const float *norm_in, *norm_post;  /* norm_in may be NULL: no input norm */
    /* The four matrices: float32, or IEEE half bits (uint16) when `half` is nonzero (a draft's
     * layer while drafting: skinny_hgemm widens each weight as it reads it). */
    const void *wqkv, *wo, *wgu, *wdown;
    const float *bqkv, *bo, *bgu, *bdown;  /* float32 always; may be NULL */
    /* Per-head RMSNorms of q and k after their projection, before rotation (Qwen3's layer, and
     * DFlash's draft layer): both NULL (no such norms) or both [hd] weights, eps eps_qk. */
    const float *q_norm, *k_norm;
    float eps_qk;
    int half;
} lean_layer_t;

void lean_layer(const lean_layer_t *L, int n, float *x, const float *attn_in, const float *cos, const float *sin,
                float *keys, float *values, int cap, int past, int common, const unsigned char *allowed,
                int threads);
/* a layer's keys and values of n rows read as given, stored in rows past .. past+n-1; no output */
void lean_kv(const lean_layer_t *L, int n, const float *in, const float *cos, const float *sin, float *keys,
             float *values, int cap, int past, int threads);

#endif
