/* matmul_avx2: fp32 FMA micro-kernel (6x16 block of C in 12 ymm
 * accumulators), the few-row products with B contiguous along n (the other
 * form is gemv_tiles.c's) and the narrow products (matmul_narrow.h) on AVX2 +
 * FMA. */
#include "kernels/cpu/matmul_impl.h"

#include <string.h>

#if YF_CC_AVX2
#include <immintrin.h>

#include "kernels/cpu/simd8.h"

#define AVX2_TARGET __attribute__((target("avx2,fma")))

enum { MR = YF_AVX2_MR, NR = YF_AVX2_NR };

AVX2_TARGET static inline __m256i mask8(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 0 ? 0 : n > 8 ? 8 : n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The term of row r of a tile (yf_tile_term) added to its two vectors;
 * columns past cols read as 0. */
AVX2_TARGET static inline __attribute__((always_inline)) void tile_term(const yf_tile_term *t, int r, int64_t cols,
                                                                         __m256 *c0, __m256 *c1) {
    __m256i m0 = mask8(cols), m1 = mask8(cols - 8);
    __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
    const float *l = t->l + r * t->l_ld;
    for (int64_t k = 0; k < t->rank; k++) {
        __m256 lv = _mm256_set1_ps(l[k]);
        t0 = _mm256_fmadd_ps(lv, _mm256_maskload_ps(t->rt + k * t->rt_ld, m0), t0);
        t1 = _mm256_fmadd_ps(lv, _mm256_maskload_ps(t->rt + k * t->rt_ld + 8, m1), t1);
    }
    if (t->drop) {
        uint64_t b = t->base + (uint64_t)(r * t->mld);
        __m256 ks = _mm256_set1_ps(t->d.ks);
        __m256i k0 = yf_drop8_keep(b, t->d.thr, t->d.s0, t->d.s1), k1 = yf_drop8_keep(b + 8, t->d.thr, t->d.s0, t->d.s1);
        t0 = _mm256_and_ps(_mm256_castsi256_ps(k0), _mm256_mul_ps(t0, ks));
        t1 = _mm256_and_ps(_mm256_castsi256_ps(k1), _mm256_mul_ps(t1, ks));
    }
    *c0 = _mm256_add_ps(*c0, t0);
    *c1 = _mm256_add_ps(*c1, t1);
}

AVX2_TARGET static void kernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, bool loadc,
                               int64_t rows, int64_t cols, const yf_tile_term *t) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(bp + k * NR), b1 = _mm256_load_ps(bp + k * NR + 8);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m256 a = _mm256_broadcast_ss(ap + k * MR + r);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    if (cols == NR) {
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            if (r >= rows) break;
            float *cr = c + r * ldc;
            if (loadc) {
                acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_loadu_ps(cr));
                acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_loadu_ps(cr + 8));
            }
            if (t) tile_term(t, r, cols, &acc[r][0], &acc[r][1]);
            _mm256_storeu_ps(cr, acc[r][0]);
            _mm256_storeu_ps(cr + 8, acc[r][1]);
        }
        return;
    }
    __m256i m0 = mask8(cols), m1 = mask8(cols - 8);
    /* unrolled as the loop above: an accumulator indexed at run time would
     * keep the array in memory, and the k loop then stored all 12 to the
     * stack every step (38-45 GFLOP/s a Zen 4 core: a third of its peak) */
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        if (r >= rows) break;
        float *cr = c + r * ldc;
        if (loadc) {
            acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_maskload_ps(cr, m0));
            acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_maskload_ps(cr + 8, m1));
        }
        if (t) tile_term(t, r, cols, &acc[r][0], &acc[r][1]);
        _mm256_maskstore_ps(cr, m0, acc[r][0]);
        _mm256_maskstore_ps(cr + 8, m1, acc[r][1]);
    }
}

/* 8 values of B as floats from bf16 or f32 at element i, the first n valid
 * (the rest 0, not read) */
AVX2_TARGET static inline __m256 load8n(const void *b, yf_dtype bt, int64_t i, int64_t n) {
    if (bt == YF_F32) return _mm256_maskload_ps((const float *)b + i, mask8(n));
    const uint16_t *h = (const uint16_t *)b + i;
    __m128i v;
    if (n >= 8) {
        v = _mm_loadu_si128((const __m128i *)h);
    } else {
        uint16_t t[8] = {0};
        for (int64_t j = 0; j < n; j++) t[j] = h[j];
        v = _mm_loadu_si128((const __m128i *)t);
    }
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
}

/* r[i] lane j <-> r[j] lane i */
AVX2_TARGET static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* A panel of B whose columns are contiguous along k (x.W^T: W's rows): 8
 * columns by 8 k loaded, transposed in registers, stored as 8 rows. */
AVX2_TARGET static void pack_b_cols(const yf_gemm *g, int64_t k0, int64_t kb, int64_t n0, int64_t nn, float *bp) {
    for (int64_t k = 0; k < kb; k += 8) {
        int64_t kl = kb - k < 8 ? kb - k : 8;
        for (int h = 0; h < 2; h++) {
            __m256 v[8];
            for (int c = 0; c < 8; c++) {
                int64_t n = 8 * h + c;
                v[c] = n < nn ? load8n(g->b, g->bt, (n0 + n) * g->bcs + k0 + k, kl) : _mm256_setzero_ps();
            }
            transpose8(v);
            for (int64_t kk = 0; kk < kl; kk++) _mm256_store_ps(bp + (k + kk) * NR + 8 * h, v[kk]);
        }
    }
}

/* A panel of B whose rows are contiguous along n (dy.W: W's rows; dW: x's) */
AVX2_TARGET static void pack_b_rows(const yf_gemm *g, int64_t k0, int64_t kb, int64_t n0, int64_t nn, float *bp) {
    for (int64_t k = 0; k < kb; k++) {
        int64_t i = (k0 + k) * g->brs + n0;
        _mm256_store_ps(bp + k * NR, load8n(g->b, g->bt, i, nn));
        _mm256_store_ps(bp + k * NR + 8, load8n(g->b, g->bt, i + 8, nn - 8));
    }
}

AVX2_TARGET static void widen(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i += 8) _mm256_store_ps(dst + i, load8n(src, YF_BF16, i, 8));
}

const yf_fma_isa yf_fma_avx2 = {MR, NR, 1, kernel, pack_b_cols, pack_b_rows, widen, NULL};

/* axpy style (see matmul_avx512.c); the n tail of each chunk in scalar. */
AVX2_TARGET static void gemv_axpy(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    enum { CH = 256 };
    float acc[YF_GEMV_MAX_M][CH] __attribute__((aligned(32)));
    int64_t mm = m1 - m0;
    for (int64_t n = n0; n < n1; n += CH) {
        int64_t nc = n1 - n < CH ? n1 - n : CH, nc8 = nc & ~(int64_t)7;
        memset(acc, 0, sizeof acc);
        for (int64_t k = 0; k < g->K; k++) {
            float a[YF_GEMV_MAX_M];
            bool any = false;
            for (int m = 0; m < mm; m++) {
                a[m] = g->a[(m0 + m) * g->ars + k * g->acs];
                any |= a[m] != 0;
            }
            if (!any) continue;
            for (int64_t j = 0; j < nc8; j += 8) {
                __m256 w = load8n(g->b, g->bt, k * g->brs + n + j, 8);
                for (int m = 0; m < mm; m++) {
                    __m256 *d = (__m256 *)&acc[m][j];
                    *d = _mm256_fmadd_ps(_mm256_set1_ps(a[m]), w, *d);
                }
            }
            for (int64_t j = nc8; j < nc; j++) {
                float w = yf_gemm_bget(g, k, n + j);
                for (int m = 0; m < mm; m++) acc[m][j] += a[m] * w;
            }
        }
        for (int m = 0; m < mm; m++) {
            float *cr = g->c + (m0 + m) * g->ldc + n;
            for (int64_t j = 0; j < nc; j++) cr[j] = g->accumulate ? cr[j] + acc[m][j] : acc[m][j];
        }
    }
}

/* ---- the narrow products (matmul_narrow.h) on 8-float vectors ---- */


AVX2_TARGET static inline __attribute__((always_inline)) __m256 bcast8(const float *p, int g) {
    switch (g) {
    case 1: return _mm256_broadcast_ss(p);
    case 2: {
        double d;
        memcpy(&d, p, sizeof d);
        return _mm256_castpd_ps(_mm256_set1_pd(d));
    }
    case 4: return _mm256_broadcast_ps((const __m128 *)p);
    default: return _mm256_loadu_ps(p);
    }
}

#define NW_TARGET AVX2_TARGET
#define NW_L 8
#define NW_V __m256
#define NW_NACC 12
#define NW_KRM 6 /* K form register tile: rows x vectors */
#define NW_SMAX 4
#define NW_KRV 2
#define NW_ZERO() _mm256_setzero_ps()
#define NW_LOAD(p) _mm256_loadu_ps(p)
#define NW_LOADN(p, n) _mm256_maskload_ps(p, mask8(n))
#define NW_STORE(p, v) _mm256_storeu_ps(p, v)
#define NW_STOREA(p, v) _mm256_store_ps(p, v)
#define NW_STOREN(p, n, v) _mm256_maskstore_ps(p, mask8(n), v)
#define NW_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define NW_ADD(a, b) _mm256_add_ps(a, b)
#define NW_SET1(x) _mm256_set1_ps(x)
#define NW_BCAST(p, g) bcast8(p, g)
#define NW_ENTRY yf_narrow_avx2
#include "kernels/cpu/matmul_narrow.h"

void yf_gemv_avx2(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    YF_CHECK(m1 - m0 <= YF_GEMV_MAX_M && g->bcs == 1); /* the dot form: gemv_tiles.c */
    if (m1 <= m0 || n1 <= n0) return;
    gemv_axpy(g, m0, m1, n0, n1);
}

#else
const yf_fma_isa yf_fma_avx2 = {YF_AVX2_MR, YF_AVX2_NR, 1, NULL, NULL, NULL, NULL, NULL};
void yf_gemv_avx2(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    (void)g, (void)m0, (void)m1, (void)n0, (void)n1;
    YF_CHECK(!"AVX2 path not compiled in");
}
void yf_narrow_avx2(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    (void)g, (void)m0, (void)m1, (void)n0, (void)n1;
    YF_CHECK(!"AVX2 path not compiled in");
}
#endif
