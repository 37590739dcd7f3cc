/* matmul_avx512: fp32 FMA micro-kernel (12x32 block of C in 24 zmm
 * accumulators) and its bf16-pair form (vdpbf16ps), the few-row products with B contiguous along n (dy·W; the
 * other form is gemv_tiles.c's) and the narrow products (matmul_narrow.h) on
 * AVX-512. */
#include "kernels/cpu/matmul_impl.h"

#include <string.h>

#if YF_CC_AVX512
#include <immintrin.h>

#include "kernels/cpu/simd16.h"

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

enum { MR = YF_AVX512_MR, NR = YF_AVX512_NR };

static inline __mmask16 mask16(int64_t n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* The term of row r of a tile (yf_tile_term) added to its two vectors. */
AVX512_TARGET static inline __attribute__((always_inline)) void tile_term(const yf_tile_term *t, int r,
                                                                           __mmask16 k0, __mmask16 k1,
                                                                           __m512 *c0, __m512 *c1) {
    __m512 t0 = _mm512_setzero_ps(), t1 = _mm512_setzero_ps();
    const float *l = t->l + r * t->l_ld;
    for (int64_t k = 0; k < t->rank; k++) {
        __m512 lv = _mm512_set1_ps(l[k]);
        t0 = _mm512_fmadd_ps(lv, _mm512_maskz_loadu_ps(k0, t->rt + k * t->rt_ld), t0);
        t1 = _mm512_fmadd_ps(lv, _mm512_maskz_loadu_ps(k1, t->rt + k * t->rt_ld + 16), t1);
    }
    if (t->drop) {
        uint64_t b = t->base + (uint64_t)(r * t->mld);
        __m512 ks = _mm512_set1_ps(t->d.ks);
        t0 = _mm512_maskz_mul_ps(k0 & yf_drop16_keep(b, t->d.thr, t->d.s0, t->d.s1), t0, ks);
        t1 = _mm512_maskz_mul_ps(k1 & yf_drop16_keep(b + 16, t->d.thr, t->d.s0, t->d.s1), t1, ks);
    }
    *c0 = _mm512_add_ps(*c0, t0);
    *c1 = _mm512_add_ps(*c1, t1);
}

/* The tile's accumulators to C: C's old values added when loadc, then t's
 * term (yf_ukernel). */
AVX512_TARGET static inline __attribute__((always_inline)) void store_tile(__m512 acc[MR][2], float *c, int64_t ldc,
                                                                            bool loadc, int64_t rows, int64_t cols,
                                                                            const yf_tile_term *t) {
    __mmask16 k0 = mask16(cols), k1 = mask16(cols - 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        if (r >= rows) break;
        float *cr = c + r * ldc;
        if (loadc) {
            acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_maskz_loadu_ps(k0, cr));
            acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_maskz_loadu_ps(k1, cr + 16));
        }
        if (t) tile_term(t, r, k0, k1, &acc[r][0], &acc[r][1]);
        _mm512_mask_storeu_ps(cr, k0, acc[r][0]);
        _mm512_mask_storeu_ps(cr + 16, k1, acc[r][1]);
    }
}

AVX512_TARGET static void kernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc, bool loadc,
                                 int64_t rows, int64_t cols, const yf_tile_term *t) {
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
    store_tile(acc, c, ldc, loadc, rows, cols, t);
}

/* 16 values of B as floats from bf16 or f32 at element i, the first n valid
 * (the rest 0, not read) */
AVX512_TARGET static inline __m512 load16n(const void *b, yf_dtype bt, int64_t i, int64_t n) {
    if (bt == YF_BF16) {
        __m256i h = _mm256_maskz_loadu_epi16(mask16(n), (const uint16_t *)b + i);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_maskz_loadu_ps(mask16(n), (const float *)b + i);
}

/* A panel of B whose columns are contiguous along k (x.W^T: W's rows): 16
 * columns by 16 k loaded, transposed in registers, stored as 16 rows of the
 * panel. */
AVX512_TARGET static void pack_b_cols(const yf_gemm *g, int64_t k0, int64_t kb, int64_t n0, int64_t nn, float *bp) {
    yf_tr_tables tt;
    yf_tr_tables_init(&tt);
    for (int64_t k = 0; k < kb; k += 16) {
        int64_t kl = kb - k < 16 ? kb - k : 16;
        for (int h = 0; h < 2; h++) {
            __m512i v[16];
            for (int c = 0; c < 16; c++) {
                int64_t n = 16 * h + c;
                v[c] = n < nn ? _mm512_castps_si512(load16n(g->b, g->bt, (n0 + n) * g->bcs + k0 + k, kl))
                              : _mm512_setzero_si512();
            }
            yf_transpose16(v, &tt);
            for (int64_t kk = 0; kk < kl; kk++) _mm512_store_si512(bp + (k + kk) * NR + 16 * h, v[kk]);
        }
    }
}

/* A panel of B whose rows are contiguous along n (dy.W: W's rows; dW: x's) */
AVX512_TARGET static void pack_b_rows(const yf_gemm *g, int64_t k0, int64_t kb, int64_t n0, int64_t nn, float *bp) {
    for (int64_t k = 0; k < kb; k++) {
        int64_t i = (k0 + k) * g->brs + n0;
        _mm512_store_ps(bp + k * NR, load16n(g->b, g->bt, i, nn));
        _mm512_store_ps(bp + k * NR + 16, load16n(g->b, g->bt, i + 16, nn - 16));
    }
}

AVX512_TARGET static void widen(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) _mm512_store_ps(dst + i, load16n(src, YF_BF16, i, 16));
}

const yf_fma_isa yf_fma_avx512 = {MR, NR, 1, kernel, pack_b_cols, pack_b_rows, widen, NULL};

/* ---- the same tile on bf16 pairs (vdpbf16ps) ------------------------------
 * A word of a panel holds two bf16 of consecutive k (low half the first):
 * A's panel MR words a pair of k, B's NR words; vdpbf16ps adds both
 * products of a pair to the fp32 lane, so a K block takes half the
 * instructions of the fp32 tile. Operands are rounded to bf16 (nearest even,
 * vcvtne(2)ps2bf16) as they are packed; an odd K block's last pair has a zero
 * high half. */
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

BF16_TARGET static void kernel_bf16(int64_t kw, const float *ap, const float *bp, float *c, int64_t ldc, bool loadc,
                                    int64_t rows, int64_t cols, const yf_tile_term *t) {
    const int32_t *a = (const int32_t *)ap;
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kw; k++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(bp + k * NR), b1 = (__m512bh)_mm512_load_si512(bp + k * NR + 16);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32(a[k * MR + r]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
        }
    }
    store_tile(acc, c, ldc, loadc, rows, cols, t);
}

/* 16 floats of src (the first n valid, the rest 0, not read) as bf16 */
BF16_TARGET static inline __m256i bf16x16(const float *src, int64_t n) {
    return (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask16(n), src));
}

/* 16 words from two rows of 16 bf16: lo's in the low halves, hi's in the high */
BF16_TARGET static inline __m512i pair_words(__m256i lo, __m256i hi) {
    return _mm512_or_si512(_mm512_cvtepu16_epi32(lo), _mm512_slli_epi32(_mm512_cvtepu16_epi32(hi), 16));
}

/* 16 values of B (bf16 or f32) at element i as bf16, the first n valid */
BF16_TARGET static inline __m256i load16_bf16(const void *b, yf_dtype bt, int64_t i, int64_t n) {
    if (bt == YF_BF16) return _mm256_maskz_loadu_epi16(mask16(n), (const uint16_t *)b + i);
    return bf16x16((const float *)b + i, n);
}

/* A panel of A: rows m0.. (nm valid), k0..k0+kb-1 as pairs, MR words a pair */
BF16_TARGET static void pack_a_bf16(const yf_gemm *g, int64_t m0, int64_t nm, int64_t k0, int64_t kb, float *ap) {
    uint32_t *d = (uint32_t *)ap;
    int64_t kw = (kb + 1) / 2;
    if (g->acs == 1) { /* rows of A contiguous: 32 k of a row a step */
        for (int64_t r = 0; r < MR; r++) {
            const float *s = g->a + (m0 + r) * g->ars + k0;
            for (int64_t k = 0; k < kb; k += 32) {
                uint32_t w[16];
                int64_t kl = kb - k < 32 ? kb - k : 32;
                if (r < nm) {
                    __m512 lo = _mm512_maskz_loadu_ps(mask16(kl), s + k);
                    __m512 hi = _mm512_maskz_loadu_ps(mask16(kl - 16), s + k + 16);
                    _mm512_storeu_si512(w, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                } else {
                    memset(w, 0, sizeof w);
                }
                for (int64_t i = 0; i < (kl + 1) / 2; i++) d[(k / 2 + i) * MR + r] = w[i];
            }
        }
        return;
    }
    /* columns of A contiguous (dW's dy^T), or neither: two columns of MR rows a pair */
    for (int64_t p = 0; p < kw; p++) {
        __m256i h[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        for (int j = 0; j < 2 && 2 * p + j < kb; j++) {
            int64_t k = k0 + 2 * p + j;
            if (g->ars == 1) {
                h[j] = bf16x16(g->a + m0 + k * g->acs, nm);
            } else {
                float col[16] = {0};
                for (int64_t r = 0; r < nm; r++) col[r] = g->a[(m0 + r) * g->ars + k * g->acs];
                h[j] = bf16x16(col, 16);
            }
        }
        _mm512_mask_storeu_epi32(d + p * MR, (__mmask16)((1u << MR) - 1), pair_words(h[0], h[1]));
    }
}

/* A panel of B whose columns are contiguous along k (x.W^T: W's rows): 16
 * columns by 16 pairs loaded, transposed in registers as 32-bit words. */
BF16_TARGET static void pack_b_cols_bf16(const yf_gemm *g, int64_t k0, int64_t kb, int64_t n0, int64_t nn,
                                         float *bp) {
    yf_tr_tables tt;
    yf_tr_tables_init(&tt);
    for (int64_t k = 0; k < kb; k += 32) {
        int64_t kl = kb - k < 32 ? kb - k : 32;
        for (int h = 0; h < 2; h++) {
            __m512i v[16];
            for (int c = 0; c < 16; c++) {
                int64_t n = 16 * h + c, i = (n0 + n) * g->bcs + k0 + k;
                if (n >= nn)
                    v[c] = _mm512_setzero_si512();
                else if (g->bt == YF_BF16)
                    v[c] = _mm512_maskz_loadu_epi16(kl >= 32 ? ~0u : (__mmask32)((1u << kl) - 1),
                                                    (const uint16_t *)g->b + i);
                else
                    v[c] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(mask16(kl - 16), (const float *)g->b + i + 16),
                                                        _mm512_maskz_loadu_ps(mask16(kl), (const float *)g->b + i));
            }
            yf_transpose16(v, &tt);
            for (int64_t kk = 0; kk < (kl + 1) / 2; kk++) _mm512_store_si512(bp + (k / 2 + kk) * NR + 16 * h, v[kk]);
        }
    }
}

/* A panel of B whose rows are contiguous along n (dy.W: W's rows; dW: x's):
 * two rows a pair of k */
BF16_TARGET static void pack_b_rows_bf16(const yf_gemm *g, int64_t k0, int64_t kb, int64_t n0, int64_t nn,
                                         float *bp) {
    for (int64_t p = 0; p < (kb + 1) / 2; p++) {
        int64_t i = (k0 + 2 * p) * g->brs + n0;
        bool two = 2 * p + 1 < kb;
        for (int h = 0; h < 2; h++) {
            __m256i lo = load16_bf16(g->b, g->bt, i + 16 * h, nn - 16 * h);
            __m256i hi = two ? load16_bf16(g->b, g->bt, i + g->brs + 16 * h, nn - 16 * h) : _mm256_setzero_si256();
            _mm512_store_si512(bp + p * NR + 16 * h, pair_words(lo, hi));
        }
    }
}

const yf_fma_isa yf_fma_avx512_bf16 = {MR, NR, 2, kernel_bf16, pack_b_cols_bf16, pack_b_rows_bf16, NULL, pack_a_bf16};

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
                __m512 w = load16n(g->b, g->bt, k * g->brs + n + j, nc - j);
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
#define NW_SMAX 16
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
#include "kernels/cpu/matmul_narrow.h"

void yf_gemv_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    if (m1 <= m0 || n1 <= n0) return;
    YF_CHECK(m1 - m0 <= YF_GEMV_MAX_M && g->bcs == 1); /* the dot form: gemv_tiles.c */
    gemv_axpy(g, m0, m1, n0, n1);
}

#else
const yf_fma_isa yf_fma_avx512 = {YF_AVX512_MR, YF_AVX512_NR, 1, NULL, NULL, NULL, NULL, NULL};
const yf_fma_isa yf_fma_avx512_bf16 = {YF_AVX512_MR, YF_AVX512_NR, 2, NULL, NULL, NULL, NULL, NULL};
void yf_gemv_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    (void)g, (void)m0, (void)m1, (void)n0, (void)n1;
    YF_CHECK(!"AVX-512 path not compiled in");
}
void yf_narrow_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    (void)g, (void)m0, (void)m1, (void)n0, (void)n1;
    YF_CHECK(!"AVX-512 path not compiled in");
}
#endif
