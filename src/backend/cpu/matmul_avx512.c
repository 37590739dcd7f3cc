/* matmul_avx512: fp32 FMA micro-kernel (12x32 block of C in 24 zmm
 * accumulators) and the few-row products (decode) on AVX-512. */
#include "matmul_impl.h"

#include <string.h>

#if YF_CC_AVX512
#include <immintrin.h>

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

enum { MR = YF_AVX512_MR, NR = YF_AVX512_NR };

static inline __mmask16 mask16(int64_t n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

AVX512_TARGET void yf_ukernel_avx512(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                                     bool loadc, int64_t rows, int64_t cols) {
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp + k * NR), b1 = _mm512_load_ps(bp + k * NR + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512 a = _mm512_set1_ps(ap[k * MR + r]);
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    __mmask16 k0 = mask16(cols), k1 = mask16(cols - 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        if (r >= rows) break;
        float *cr = c + r * ldc;
        if (loadc) {
            acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_maskz_loadu_ps(k0, cr));
            acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_maskz_loadu_ps(k1, cr + 16));
        }
        _mm512_mask_storeu_ps(cr, k0, acc[r][0]);
        _mm512_mask_storeu_ps(cr + 16, k1, acc[r][1]);
    }
}

/* 16 elements of B starting at element i (nn valid) as f32. */
AVX512_TARGET static inline __m512 load16(const void *b, yf_dtype bt, int64_t i, int64_t nn) {
    if (bt == YF_BF16) {
        __m256i h = _mm256_maskz_loadu_epi16(mask16(nn), (const uint16_t *)b + i);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_maskz_loadu_ps(mask16(nn), (const float *)b + i);
}

/* dot style: C(m,n) = sum_k A(m,k) B(k,n), both contiguous along k. Four
 * columns at a time give independent FMA chains for M = 1. */
AVX512_TARGET static void gemv_dot(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    int64_t mm = m1 - m0, K = g->K;
    for (int64_t n = n0; n < n1; n += 4) {
        int64_t nc = n1 - n < 4 ? n1 - n : 4;
        __m512 acc[YF_GEMV_MAX_M][4];
        for (int m = 0; m < YF_GEMV_MAX_M; m++)
            for (int j = 0; j < 4; j++) acc[m][j] = _mm512_setzero_ps();
        for (int64_t k = 0; k < K; k += 16) {
            int64_t kl = K - k;
            __m512 w[4];
            for (int j = 0; j < 4; j++)
                w[j] = j < nc ? load16(g->b, g->bt, (n + j) * g->bcs + k, kl) : _mm512_setzero_ps();
            for (int m = 0; m < mm; m++) {
                __m512 a = _mm512_maskz_loadu_ps(mask16(kl), g->a + (m0 + m) * g->ars + k);
                for (int j = 0; j < 4; j++) acc[m][j] = _mm512_fmadd_ps(a, w[j], acc[m][j]);
            }
        }
        for (int m = 0; m < mm; m++)
            for (int j = 0; j < nc; j++) {
                float s = _mm512_reduce_add_ps(acc[m][j]), *cp = g->c + (m0 + m) * g->ldc + n + j;
                *cp = g->accumulate ? *cp + s : s;
            }
    }
}

/* axpy style: C(m, n..) += A(m,k) * B(k, n..), B rows contiguous along n:
 * a chunk of C stays in L1 while every row of B is streamed once. */
AVX512_TARGET static void gemv_axpy(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    enum { CH = 256 };
    float acc[YF_GEMV_MAX_M][CH] __attribute__((aligned(64)));
    int64_t mm = m1 - m0;
    for (int64_t n = n0; n < n1; n += CH) {
        int64_t nc = n1 - n < CH ? n1 - n : CH;
        memset(acc, 0, sizeof acc);
        for (int64_t k = 0; k < g->K; k++) {
            float a[YF_GEMV_MAX_M];
            bool any = false;
            for (int m = 0; m < mm; m++) {
                a[m] = g->a[(m0 + m) * g->ars + k * g->acs];
                any |= a[m] != 0;
            }
            if (!any) continue; /* e.g. masked rows of dy */
            for (int64_t j = 0; j < nc; j += 16) {
                __m512 w = load16(g->b, g->bt, k * g->brs + n + j, nc - j);
                for (int m = 0; m < mm; m++) {
                    __m512 *d = (__m512 *)&acc[m][j];
                    *d = _mm512_fmadd_ps(_mm512_set1_ps(a[m]), w, *d);
                }
            }
        }
        for (int m = 0; m < mm; m++) {
            float *cr = g->c + (m0 + m) * g->ldc + n;
            for (int64_t j = 0; j < nc; j++) cr[j] = g->accumulate ? cr[j] + acc[m][j] : acc[m][j];
        }
    }
}

/* Few columns (LoRA's rank-r side), dot style: up to 8 columns x 2 rows of
 * C in 16 accumulators, so each row of A (the big activation) is read once. */
AVX512_TARGET static void gemv_dot_narrow(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    int64_t K = g->K;
    for (int64_t n = n0; n < n1; n += 8) {
        int64_t nc = n1 - n < 8 ? n1 - n : 8;
        for (int64_t m = m0; m < m1; m += 2) {
            int64_t mm = m1 - m < 2 ? 1 : 2;
            const float *a0 = g->a + m * g->ars, *a1 = g->a + (m + mm - 1) * g->ars;
            __m512 acc0[8], acc1[8];
            for (int j = 0; j < 8; j++) acc0[j] = acc1[j] = _mm512_setzero_ps();
            for (int64_t k = 0; k < K; k += 16) {
                __mmask16 km = mask16(K - k);
                __m512 x0 = _mm512_maskz_loadu_ps(km, a0 + k), x1 = _mm512_maskz_loadu_ps(km, a1 + k);
                for (int j = 0; j < 8; j++) {
                    if (j >= nc) break;
                    __m512 w = load16(g->b, g->bt, (n + j) * g->bcs + k, K - k);
                    acc0[j] = _mm512_fmadd_ps(x0, w, acc0[j]);
                    acc1[j] = _mm512_fmadd_ps(x1, w, acc1[j]);
                }
            }
            for (int r = 0; r < mm; r++)
                for (int j = 0; j < nc; j++) {
                    float s = _mm512_reduce_add_ps(r ? acc1[j] : acc0[j]), *cp = g->c + (m + r) * g->ldc + n + j;
                    *cp = g->accumulate ? *cp + s : s;
                }
        }
    }
}

/* Few columns, axpy style (B rows contiguous along n, at most 16 of them):
 * up to YF_NARROW_MAX_M rows of C stay in registers, independent FMA chains. */
AVX512_TARGET static void gemv_axpy_narrow(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    int64_t nc = n1 - n0, mm = m1 - m0;
    __mmask16 nm = mask16(nc);
    __m512 acc[YF_NARROW_MAX_M];
    for (int m = 0; m < YF_NARROW_MAX_M; m++) acc[m] = _mm512_setzero_ps();
    if (mm == YF_NARROW_MAX_M) {
        for (int64_t k = 0; k < g->K; k++) {
            __m512 w = load16(g->b, g->bt, k * g->brs + n0, nc);
            const float *a = g->a + m0 * g->ars + k * g->acs;
#pragma GCC unroll 16
            for (int m = 0; m < YF_NARROW_MAX_M; m++)
                acc[m] = _mm512_fmadd_ps(_mm512_set1_ps(a[m * g->ars]), w, acc[m]);
        }
    } else {
        for (int64_t k = 0; k < g->K; k++) {
            __m512 w = load16(g->b, g->bt, k * g->brs + n0, nc);
            for (int m = 0; m < mm; m++)
                acc[m] = _mm512_fmadd_ps(_mm512_set1_ps(g->a[(m0 + m) * g->ars + k * g->acs]), w, acc[m]);
        }
    }
    for (int m = 0; m < mm; m++) {
        float *cr = g->c + (m0 + m) * g->ldc + n0;
        if (g->accumulate) acc[m] = _mm512_add_ps(acc[m], _mm512_maskz_loadu_ps(nm, cr));
        _mm512_mask_storeu_ps(cr, nm, acc[m]);
    }
}

/* ---- the narrow products (matmul_narrow.h) on 16-float vectors ---- */

AVX512_TARGET static inline __attribute__((always_inline)) __m512 bcast16(const float *p, int g) {
    switch (g) {
    case 1: return _mm512_set1_ps(*p);
    case 2: {
        double d;
        memcpy(&d, p, sizeof d);
        return _mm512_castpd_ps(_mm512_set1_pd(d));
    }
    case 4: return _mm512_broadcast_f32x4(_mm_loadu_ps(p));
    case 8: return _mm512_broadcast_f32x8(_mm256_loadu_ps(p));
    default: return _mm512_loadu_ps(p);
    }
}

#define NW_TARGET AVX512_TARGET
#define NW_L 16
#define NW_V __m512
#define NW_NACC 24
#define NW_KRM 6 /* K form register tile: rows x vectors */
#define NW_KRV 4
#define NW_ZERO() _mm512_setzero_ps()
#define NW_LOAD(p) _mm512_loadu_ps(p)
#define NW_LOADN(p, n) _mm512_maskz_loadu_ps(mask16(n), p)
#define NW_STORE(p, v) _mm512_storeu_ps(p, v)
#define NW_STOREA(p, v) _mm512_store_ps(p, v)
#define NW_STOREN(p, n, v) _mm512_mask_storeu_ps(p, mask16(n), v)
#define NW_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define NW_ADD(a, b) _mm512_add_ps(a, b)
#define NW_SET1(x) _mm512_set1_ps(x)
#define NW_BCAST(p, g) bcast16(p, g)
#define NW_ENTRY yf_narrow_avx512
#include "matmul_narrow.h"

void yf_gemv_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    if (m1 <= m0 || n1 <= n0) return;
    if (g->bcs == 1 && n1 - n0 <= 16) {
        YF_CHECK(m1 - m0 <= YF_NARROW_MAX_M);
        gemv_axpy_narrow(g, m0, m1, n0, n1);
        return;
    }
    YF_CHECK(m1 - m0 <= YF_GEMV_MAX_M);
    if (g->bcs == 1)
        gemv_axpy(g, m0, m1, n0, n1);
    else if (n1 - n0 <= 16 && m1 - m0 > 1) {
        YF_CHECK(g->brs == 1 && g->acs == 1);
        gemv_dot_narrow(g, m0, m1, n0, n1);
    } else {
        YF_CHECK(g->brs == 1 && g->acs == 1);
        gemv_dot(g, m0, m1, n0, n1);
    }
}

#else
void yf_ukernel_avx512(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, bool loadc,
                       int64_t rows, int64_t cols) {
    (void)kc, (void)ap, (void)bp, (void)c, (void)ldc, (void)loadc, (void)rows, (void)cols;
    YF_CHECK(!"AVX-512 path not compiled in");
}
void yf_gemv_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    (void)g, (void)m0, (void)m1, (void)n0, (void)n1;
    YF_CHECK(!"AVX-512 path not compiled in");
}
void yf_narrow_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    (void)g, (void)m0, (void)m1, (void)n0, (void)n1;
    YF_CHECK(!"AVX-512 path not compiled in");
}
#endif
