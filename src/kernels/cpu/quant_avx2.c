/* quant_avx2: the quantized products' AVX2 kernels (quant_impl.h), the same
 * work as quant_avx512.c on 8-float vectors. vpermps looks up 8 entries
 * only, so q4 nibbles are converted (vcvtdq2ps) and dequantized with one
 * fma(q, s, m) each, the reference's arithmetic. The loops are quant_gemv.h's. */
#include "kernels/cpu/quant_impl.h"

#include <string.h>

#if YF_CC_AVX2
#include <immintrin.h>

#include "kernels/cpu/simd8.h"

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

/* 8 int8 (n <= 8 valid, the rest read as 0) as floats */
AVX2_TARGET static inline __m256 q_i8(const int8_t *p, int64_t n) {
    int64_t v = 0;
    if (n >= 8)
        memcpy(&v, p, 8);
    else
        for (int64_t i = 0; i < n; i++) v |= (int64_t)(uint8_t)p[i] << (8 * i);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(v)));
}

AVX2_TARGET static inline __m256 q_loadn(const float *p, int64_t n) {
    float t[8] = {0};
    for (int64_t i = 0; i < n; i++) t[i] = p[i];
    return _mm256_loadu_ps(t);
}

AVX2_TARGET static inline void q_storen(float *p, int64_t n, __m256 v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    for (int64_t i = 0; i < n; i++) p[i] = t[i];
}

typedef struct q_sm {
    __m256 s, m;
} q_sm;

/* 8 bytes at p widened to 8 lanes: the weights of their low and high nibbles */
AVX2_TARGET static inline void q_nib(const uint8_t *p, q_sm t, __m256 *lo, __m256 *hi) {
    int64_t v;
    memcpy(&v, p, 8);
    __m256i b = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v));
    *lo = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(15))), t.s, t.m);
    *hi = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4)), t.s, t.m);
}

AVX2_TARGET static inline void q_f16(float *dst, const uint16_t *src, int64_t n) {
    uint16_t t[16] = {0};
    memcpy(t, src, (size_t)n * sizeof *t);
    _mm256_storeu_ps(dst, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)t)));
    _mm256_storeu_ps(dst + 8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(t + 8))));
}

#define QTARGET AVX2_TARGET
#define QV __m256
#define QL 8
#define QZERO() _mm256_setzero_ps()
#define QFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define QMUL(a, b) _mm256_mul_ps(a, b)
#define QSET1(f) _mm256_set1_ps(f)
#define QLOAD(p) _mm256_loadu_ps(p)
#define QLOADN(p, n) q_loadn(p, n)
#define QSTORE(p, v) _mm256_storeu_ps(p, v)
#define QSTOREN(p, n, v) q_storen(p, n, v)
#define QHSUM(v) yf_hsum8(v)
#define QI8(p, n) q_i8(p, n)
#define QT q_sm
#define QTMAKE(s_, m_) ((q_sm){_mm256_set1_ps(s_), _mm256_set1_ps(m_)})
#define QTMAKE_SYM(s_) QTMAKE(s_, -8.0f * (s_))
#define QNIB(p, t, lo, hi) q_nib(p, t, lo, hi)
#define QF16(dst, src, n) q_f16(dst, src, n)
#define QR_I8(m) ((m) <= 2 ? 4 : 2) /* R x M (x 2 for q4) accumulators of the 16 ymm */
#define QR_Q4(m) ((m) == 1 ? 4 : (m) == 2 ? 2 : 1)
#define QGEMV yf_qgemv_avx2
#define QDEQUANT yf_qdequant_avx2
#include "kernels/cpu/quant_gemv.h"

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
