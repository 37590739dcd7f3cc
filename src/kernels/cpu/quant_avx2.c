/* quant_avx2: the quantized products' AVX2 kernels (quant_impl.h), the same
 * work as quant_avx512.c on 8-float vectors. vpermps looks up 8 entries
 * only, so q4 nibbles are converted (vcvtdq2ps) and dequantized with one
 * fma(q, s, m) each, the reference's arithmetic. */
#include "kernels/cpu/quant_impl.h"

#include <string.h>

#if YF_CC_AVX2
#include <immintrin.h>

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

/* 8 int8 (n <= 8 valid, the rest read as 0) as floats */
AVX2_TARGET INLINE __m256 i8_load8(const int8_t *p, int64_t n) {
    int64_t v = 0;
    if (n >= 8)
        memcpy(&v, p, 8);
    else
        for (int64_t i = 0; i < n; i++) v |= (int64_t)(uint8_t)p[i] << (8 * i);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(v)));
}

AVX2_TARGET INLINE __m256 f_load8(const float *p, int64_t n) {
    if (n >= 8) return _mm256_loadu_ps(p);
    float t[8] = {0};
    for (int64_t i = 0; i < n; i++) t[i] = p[i];
    return _mm256_loadu_ps(t);
}

AVX2_TARGET INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Rows n.. (nrows <= R valid; the others read row n again) against M rows of x. */
AVX2_TARGET INLINE void i8_block(const yf_qmat *qm, float *y, int64_t ldy, const float *x, const int M, const int R,
                                 int64_t n, int64_t nrows, bool accumulate) {
    int64_t K = qm->K;
    const int8_t *qr[4];
    for (int r = 0; r < R; r++) qr[r] = (const int8_t *)qm->q + (n + (r < nrows ? r : 0)) * K;
    __m256 a[4][4];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 8
        for (int m = 0; m < M; m++) a[r][m] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k += 8) {
        __m256 xv[4];
        #pragma GCC unroll 8
        for (int m = 0; m < M; m++) xv[m] = f_load8(x + m * K + k, K - k);
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m256 w = i8_load8(qr[r] + k, K - k);
            #pragma GCC unroll 8
            for (int m = 0; m < M; m++) a[r][m] = _mm256_fmadd_ps(xv[m], w, a[r][m]);
        }
    }
    const float *sc = (const float *)qm->scale + n;
    for (int r = 0; r < R && r < nrows; r++)
        #pragma GCC unroll 8
        for (int m = 0; m < M; m++) {
            float s = sc[r] * hsum8(a[r][m]), *d = y + m * ldy + r;
            *d = accumulate ? *d + s : s;
        }
}

/* 8 bytes at p widened to 8 lanes: their low nibbles and high nibbles */
AVX2_TARGET INLINE void nibbles8(const uint8_t *p, __m256i *lo, __m256i *hi) {
    int64_t v;
    memcpy(&v, p, 8);
    __m256i b = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v));
    *lo = _mm256_and_si256(b, _mm256_set1_epi32(15));
    *hi = _mm256_srli_epi32(b, 4);
}

/* q4: G = 32 H values a group, in 4 H runs of 8 (low nibbles of bytes
 * 0..half-1, then their high nibbles). */
AVX2_TARGET INLINE void q4_block(const yf_qmat *qm, float *y, int64_t ldy, const float *x, const int M, const int R,
                                 int64_t n, int64_t nrows, bool accumulate) {
    int64_t K = qm->K, G = qm->group, half = G / 2, ng = K / G;
    int64_t rows[4];
    for (int r = 0; r < R; r++) rows[r] = n + (r < nrows ? r : 0);
    __m256 a[4][4][2];
    #pragma GCC unroll 8
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 8
        for (int m = 0; m < M; m++) a[r][m][0] = a[r][m][1] = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; g++)
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            float sf, mf;
            yf_q4_group(qm, rows[r], g, &sf, &mf);
            __m256 s = _mm256_set1_ps(sf), mm = _mm256_set1_ps(mf);
            const uint8_t *qg = (const uint8_t *)qm->q + rows[r] * (K / 2) + g * half;
            for (int64_t h = 0; h < half; h += 8) {
                __m256i lo, hi;
                nibbles8(qg + h, &lo, &hi);
                __m256 wl = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), s, mm);
                __m256 wh = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), s, mm);
                #pragma GCC unroll 8
                for (int m = 0; m < M; m++) {
                    const float *xg = x + m * K + g * G + h;
                    a[r][m][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xg), wl, a[r][m][0]);
                    a[r][m][1] = _mm256_fmadd_ps(_mm256_loadu_ps(xg + half), wh, a[r][m][1]);
                }
            }
        }
    for (int r = 0; r < R && r < nrows; r++)
        #pragma GCC unroll 8
        for (int m = 0; m < M; m++) {
            float s = hsum8(_mm256_add_ps(a[r][m][0], a[r][m][1])), *d = y + m * ldy + r;
            *d = accumulate ? *d + s : s;
        }
}

#define BLOCKS(fn, M_, R_)                                                                                        \
    for (int64_t n = n0; n < n1; n += R_) fn(qm, y + (n - n0), ldy, x, M_, R_, n, n1 - n < R_ ? n1 - n : R_, accumulate);

AVX2_TARGET void yf_qgemv_avx2(const yf_qmat *qm, float *y, int64_t ldy, const float *x, int64_t M, int64_t n0,
                               int64_t n1, bool accumulate) {
    YF_CHECK(M >= 1 && M <= YF_QGEMV_MAX_M);
    if (qm->type == YF_QT_INT8) {
        switch (M) {
        case 1: BLOCKS(i8_block, 1, 4) break;
        case 2: BLOCKS(i8_block, 2, 4) break;
        case 3: BLOCKS(i8_block, 3, 2) break;
        default: BLOCKS(i8_block, 4, 2) break;
        }
        return;
    }
    switch (M) {
    case 1: BLOCKS(q4_block, 1, 4) break; /* R x M x 2 accumulators of the 16 ymm */
    case 2: BLOCKS(q4_block, 2, 2) break;
    case 3: BLOCKS(q4_block, 3, 1) break;
    default: BLOCKS(q4_block, 4, 1) break;
    }
}

AVX2_TARGET void yf_qdequant_avx2(const yf_qmat *qm, int64_t n0, int64_t n1, int64_t k0, int64_t k1, float *out,
                                  int64_t ldo) {
    int64_t K = qm->K;
    for (int64_t n = n0; n < n1; n++) {
        float *o = out + (n - n0) * ldo - k0;
        if (qm->type == YF_QT_INT8) {
            const int8_t *q = (const int8_t *)qm->q + n * K;
            __m256 s = _mm256_set1_ps(((const float *)qm->scale)[n]);
            int64_t k = k0;
            for (; k + 8 <= k1; k += 8) _mm256_storeu_ps(o + k, _mm256_mul_ps(s, i8_load8(q + k, 8)));
            for (; k < k1; k++) o[k] = ((const float *)qm->scale)[n] * (float)q[k];
            continue;
        }
        int64_t G = qm->group, half = G / 2;
        for (int64_t g = k0 / G; g * G < k1; g++) {
            float sf, mf;
            yf_q4_group(qm, n, g, &sf, &mf);
            __m256 s = _mm256_set1_ps(sf), mm = _mm256_set1_ps(mf);
            const uint8_t *b = (const uint8_t *)qm->q + n * (K / 2) + g * half;
            for (int64_t h = 0; h < half; h += 8) {
                __m256i lo, hi;
                nibbles8(b + h, &lo, &hi);
                _mm256_storeu_ps(o + g * G + h, _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), s, mm));
                _mm256_storeu_ps(o + g * G + half + h, _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), s, mm));
            }
        }
    }
}

#else
void yf_qgemv_avx2(const yf_qmat *qm, float *y, int64_t ldy, const float *x, int64_t M, int64_t n0, int64_t n1,
                   bool accumulate) {
    (void)qm, (void)y, (void)ldy, (void)x, (void)M, (void)n0, (void)n1, (void)accumulate;
    YF_CHECK(!"AVX2 path not compiled in");
}
void yf_qdequant_avx2(const yf_qmat *qm, int64_t n0, int64_t n1, int64_t k0, int64_t k1, float *out, int64_t ldo) {
    (void)qm, (void)n0, (void)n1, (void)k0, (void)k1, (void)out, (void)ldo;
    YF_CHECK(!"AVX2 path not compiled in");
}
#endif
