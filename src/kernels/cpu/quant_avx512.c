/* quant_avx512: the quantized products' AVX-512 kernels (quant_impl.h): a
 * few rows of x against W dequantized in registers, and W dequantized into
 * fp32 blocks for the general products.
 *
 * int8: 16 weights a load, widened (vpmovsxbd) and converted to fp32; the
 * row's scale multiplies the finished sum.
 * q4: per group the 16 values its nibbles stand for, T[q] = fma(q, s, m),
 * are one register; vpermps looks each nibble up in it (it reads the low
 * 4 bits of each lane, so 16 bytes widened to 16 lanes give the low
 * nibbles, and shifted right by 4 the high ones): the weights come out
 * dequantized exactly as the reference computes them. */
#include "kernels/cpu/quant_impl.h"

#if YF_CC_AVX512
#include <immintrin.h>

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

static inline __mmask16 mask16(int64_t n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* ---- int8 ------------------------------------------------------------------ */

/* Rows n.. (nrows <= R valid; the others read row n again and are dropped)
 * of W against M rows of x. */
AVX512_TARGET INLINE void i8_block(const yf_qmat *qm, float *y, int64_t ldy, const float *x, const int M, const int R,
                                   int64_t n, int64_t nrows, bool accumulate) {
    int64_t K = qm->K;
    const int8_t *qr[8];
    for (int r = 0; r < R; r++) qr[r] = (const int8_t *)qm->q + (n + (r < nrows ? r : 0)) * K;
    __m512 a[8][4];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 8
        for (int m = 0; m < M; m++) a[r][m] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        if (k % 64 == 0)
            #pragma GCC unroll 8
            for (int r = 0; r < R; r++) _mm_prefetch((const char *)qr[r] + k + 256, _MM_HINT_T0);
        __m512 xv[4];
        #pragma GCC unroll 8
        for (int m = 0; m < M; m++) xv[m] = _mm512_loadu_ps(x + m * K + k);
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 w = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(qr[r] + k))));
            #pragma GCC unroll 8
            for (int m = 0; m < M; m++) a[r][m] = _mm512_fmadd_ps(xv[m], w, a[r][m]);
        }
    }
    if (k < K) {
        __mmask16 t = mask16(K - k);
        __m512 xv[4];
        #pragma GCC unroll 8
        for (int m = 0; m < M; m++) xv[m] = _mm512_maskz_loadu_ps(t, x + m * K + k);
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 w = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(t, qr[r] + k)));
            #pragma GCC unroll 8
            for (int m = 0; m < M; m++) a[r][m] = _mm512_fmadd_ps(xv[m], w, a[r][m]);
        }
    }
    const float *sc = (const float *)qm->scale + n;
    for (int r = 0; r < R && r < nrows; r++)
        #pragma GCC unroll 8
        for (int m = 0; m < M; m++) {
            float s = sc[r] * _mm512_reduce_add_ps(a[r][m]), *d = y + m * ldy + r;
            *d = accumulate ? *d + s : s;
        }
}

/* ---- q4 ------------------------------------------------------------------------ */

/* Rows n.. of W against M rows of x; H = G / 32 16-byte loads a group. */
AVX512_TARGET INLINE void q4_block(const yf_qmat *qm, float *y, int64_t ldy, const float *x, const int M, const int R,
                                   const int H, int64_t n, int64_t nrows, bool accumulate) {
    int64_t K = qm->K, G = 32 * H, half = 16 * H, ng = K / G;
    const uint8_t *qr[4];
    const uint16_t *sr[4], *mr[4];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        int64_t row = n + (r < nrows ? r : 0);
        qr[r] = (const uint8_t *)qm->q + row * (K / 2);
        sr[r] = (const uint16_t *)qm->scale + row * ng;
        mr[r] = qm->min ? qm->min + row * ng : NULL;
    }
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 iota8 = _mm512_sub_ps(iota, _mm512_set1_ps(8));
    __m512 a[4][4][2];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 8
        for (int m = 0; m < M; m++) a[r][m][0] = a[r][m][1] = _mm512_setzero_ps();
    float sf[4][16] __attribute__((aligned(64))), mf[4][16] __attribute__((aligned(64)));
    for (int64_t g0 = 0; g0 < ng; g0 += 16) {
        int64_t gc = ng - g0 < 16 ? ng - g0 : 16;
        __mmask16 t = mask16(gc);
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            _mm512_store_ps(sf[r], _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(t, sr[r] + g0)));
            if (mr[r]) _mm512_store_ps(mf[r], _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(t, mr[r] + g0)));
            for (int64_t l = 0; l < 16 * half; l += 64) /* the next 16 groups' bytes */
                _mm_prefetch((const char *)qr[r] + (g0 + 16) * half + l, _MM_HINT_T0);
        }
        for (int64_t j = 0; j < gc; j++) {
            const float *xg = x + (g0 + j) * G;
            __m512 xl[4][2], xh[4][2]; /* the group's x, once for every row of W */
            #pragma GCC unroll 8
            for (int m = 0; m < M; m++)
                #pragma GCC unroll 8
                for (int h = 0; h < H; h++) {
                    xl[m][h] = _mm512_loadu_ps(xg + m * K + 16 * h);
                    xh[m][h] = _mm512_loadu_ps(xg + m * K + half + 16 * h);
                }
            #pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                __m512 T = mr[r] ? _mm512_fmadd_ps(iota, _mm512_set1_ps(sf[r][j]), _mm512_set1_ps(mf[r][j]))
                                 : _mm512_mul_ps(iota8, _mm512_set1_ps(sf[r][j]));
                #pragma GCC unroll 8
                for (int h = 0; h < H; h++) {
                    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(qr[r] + (g0 + j) * half + 16 * h)));
                    __m512 lo = _mm512_permutexvar_ps(v, T), hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), T);
                    #pragma GCC unroll 8
                    for (int m = 0; m < M; m++) {
                        a[r][m][0] = _mm512_fmadd_ps(xl[m][h], lo, a[r][m][0]);
                        a[r][m][1] = _mm512_fmadd_ps(xh[m][h], hi, a[r][m][1]);
                    }
                }
            }
        }
    }
    for (int r = 0; r < R && r < nrows; r++)
        #pragma GCC unroll 8
        for (int m = 0; m < M; m++) {
            float s = _mm512_reduce_add_ps(_mm512_add_ps(a[r][m][0], a[r][m][1])), *d = y + m * ldy + r;
            *d = accumulate ? *d + s : s;
        }
}

/* Each (M, rows a block) instance, compiled with its loops unrolled. */
#define I8_RUN(M_, R_)                                                                                            \
    for (int64_t n = n0; n < n1; n += R_)                                                                         \
        i8_block(qm, y + (n - n0), ldy, x, M_, R_, n, n1 - n < R_ ? n1 - n : R_, accumulate);
#define Q4_RUN(M_, R_, H_)                                                                                        \
    for (int64_t n = n0; n < n1; n += R_)                                                                         \
        q4_block(qm, y + (n - n0), ldy, x, M_, R_, H_, n, n1 - n < R_ ? n1 - n : R_, accumulate);

AVX512_TARGET void yf_qgemv_avx512(const yf_qmat *qm, float *y, int64_t ldy, const float *x, int64_t M, int64_t n0,
                                   int64_t n1, bool accumulate) {
    YF_CHECK(M >= 1 && M <= YF_QGEMV_MAX_M);
    if (qm->type == YF_QT_INT8) {
        switch (M) {
        case 1: I8_RUN(1, 8) break;
        case 2: I8_RUN(2, 4) break;
        case 3: I8_RUN(3, 4) break;
        default: I8_RUN(4, 4) break;
        }
        return;
    }
    YF_CHECK(qm->group == 32 || qm->group == 64);
    bool h2 = qm->group == 64;
    switch (M) {
    case 1: if (h2) { Q4_RUN(1, 4, 2) } else { Q4_RUN(1, 4, 1) } break;
    case 2: if (h2) { Q4_RUN(2, 4, 2) } else { Q4_RUN(2, 4, 1) } break;
    case 3: if (h2) { Q4_RUN(3, 2, 2) } else { Q4_RUN(3, 2, 1) } break;
    default: if (h2) { Q4_RUN(4, 2, 2) } else { Q4_RUN(4, 2, 1) } break;
    }
}

/* ---- quantizing a row ----------------------------------------------------------- */

AVX512_TARGET bool yf_qrow_q4_avx512(const float *row, int64_t K, int64_t G, uint8_t *qb, uint16_t *sc, uint16_t *mn) {
    int64_t nv = G / 16, half = G / 2; /* 16-float vectors a group: 2 or 4 */
    uint16_t mdummy;
    for (int64_t g = 0; g < K / G; g++) {
        const float *v = row + g * G;
        __m512 x[4], lo = _mm512_loadu_ps(v), hi = lo;
        for (int64_t i = 0; i < nv; i++) {
            x[i] = _mm512_loadu_ps(v + 16 * i);
            lo = _mm512_min_ps(lo, x[i]);
            hi = _mm512_max_ps(hi, x[i]);
        }
        float l = _mm512_reduce_min_ps(lo), h = _mm512_reduce_max_ps(hi), s, m, inv;
        if (fabsf(l) >= YF_Q4_MAX_ABS || fabsf(h) >= YF_Q4_MAX_ABS) return false;
        yf_q4_params(l, h, mn != NULL, sc + g, mn ? mn + g : &mdummy, &s, &m, &inv);
        __m512i q[4];
        for (int64_t i = 0; i < nv; i++) {
            __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_sub_ps(x[i], _mm512_set1_ps(m)), _mm512_set1_ps(inv)),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r = _mm512_min_ps(_mm512_max_ps(r, _mm512_setzero_ps()), _mm512_set1_ps(15));
            q[i] = s != 0 ? _mm512_cvttps_epi32(r) : _mm512_set1_epi32(mn ? 0 : 8);
        }
        /* byte j: element j (low nibble), element j + G/2 (high) */
        for (int64_t i = 0; i < nv / 2; i++)
            _mm_storeu_si128((__m128i *)(qb + g * half + 16 * i),
                             _mm512_cvtepi32_epi8(_mm512_or_si512(q[i], _mm512_slli_epi32(q[i + nv / 2], 4))));
    }
    return true;
}

/* ---- dequantizing into fp32 blocks ------------------------------------------- */

AVX512_TARGET void yf_qdequant_avx512(const yf_qmat *qm, int64_t n0, int64_t n1, int64_t k0, int64_t k1, float *out,
                                      int64_t ldo) {
    int64_t K = qm->K;
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int64_t n = n0; n < n1; n++) {
        float *o = out + (n - n0) * ldo - k0;
        if (qm->type == YF_QT_INT8) {
            const int8_t *q = (const int8_t *)qm->q + n * K;
            __m512 s = _mm512_set1_ps(((const float *)qm->scale)[n]);
            for (int64_t k = k0; k < k1; k += 16) {
                __mmask16 t = mask16(k1 - k);
                __m512 w = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(t, q + k)));
                _mm512_mask_storeu_ps(o + k, t, _mm512_mul_ps(s, w));
            }
            continue;
        }
        int64_t G = qm->group, half = G / 2;
        for (int64_t g = k0 / G; g * G < k1; g++) {
            float s, m;
            yf_q4_group(qm, n, g, &s, &m);
            __m512 T = _mm512_fmadd_ps(iota, _mm512_set1_ps(s), _mm512_set1_ps(m));
            const uint8_t *b = (const uint8_t *)qm->q + n * (K / 2) + g * half;
            for (int64_t h = 0; h < half; h += 16) {
                __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(b + h)));
                _mm512_storeu_ps(o + g * G + h, _mm512_permutexvar_ps(v, T));
                _mm512_storeu_ps(o + g * G + half + h, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), T));
            }
        }
    }
}

#else
void yf_qgemv_avx512(const yf_qmat *qm, float *y, int64_t ldy, const float *x, int64_t M, int64_t n0, int64_t n1,
                     bool accumulate) {
    (void)qm, (void)y, (void)ldy, (void)x, (void)M, (void)n0, (void)n1, (void)accumulate;
    YF_CHECK(!"AVX-512 path not compiled in");
}
void yf_qdequant_avx512(const yf_qmat *qm, int64_t n0, int64_t n1, int64_t k0, int64_t k1, float *out, int64_t ldo) {
    (void)qm, (void)n0, (void)n1, (void)k0, (void)k1, (void)out, (void)ldo;
    YF_CHECK(!"AVX-512 path not compiled in");
}
bool yf_qrow_q4_avx512(const float *row, int64_t K, int64_t G, uint8_t *qb, uint16_t *sc, uint16_t *mn) {
    (void)row, (void)K, (void)G, (void)qb, (void)sc, (void)mn;
    YF_CHECK(!"AVX-512 path not compiled in");
    return false;
}
#endif
