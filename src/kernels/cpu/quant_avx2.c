/* quant_avx2: the quantized products' AVX2 kernels (quant_impl.h), the same
 * work as quant_avx512.c on 8-float vectors. vpermps looks up 8 entries
 * only, so q4 nibbles are converted (vcvtdq2ps) and dequantized with one
 * fma(q, s, m) each, the reference's arithmetic. The loops are quant_gemv.h's
 * (with int8 activations quant_idot.h's). */
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

/* ---- int8 and q4 against int8 activations (quant_idot.h): vpmaddubsw +
 * vpmaddwd ---- */

AVX2_TARGET static inline __m256i i_wq(const uint8_t *p, int64_t nb) {
    if (nb == 32) return _mm256_loadu_si256((const __m256i *)p);
    uint8_t t[32] = {0};
    memcpy(t, p, (size_t)nb);
    return _mm256_loadu_si256((const __m256i *)t);
}

AVX2_TARGET static inline void i_nib(__m256i w, __m256i *lo, __m256i *hi) {
    const __m256i f = _mm256_set1_epi8(15);
    *lo = _mm256_and_si256(w, f);
    *hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), f);
}

/* the lanes' dot products: |pair sums| <= 2 x 15 x 127, so the 16-bit
 * sums of lo's and hi's pairs (<= 7620) do not saturate */
AVX2_TARGET static inline __m256i i_dot(__m256i acc, __m256i lo, __m256i xl, __m256i hi, __m256i xh) {
    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* int8 w and x: |w| x (x signed as w), pair sums <= 2 x 127 x 127: no saturation */
AVX2_TARGET static inline __m256i i_dot8(__m256i w, __m256i x) {
    __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

AVX2_TARGET static inline __m256 i_scales(const uint16_t *src, int64_t n) {
    uint16_t t[8] = {0};
    memcpy(t, src, (size_t)n * sizeof *t);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)t));
}

/* per lane, win[first + lane / lpg] (lpg 4 or 8) */
AVX2_TARGET static inline __m256 i_lanes(__m256 win, int64_t first, int64_t lpg) {
    __m256i l = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    l = lpg == 4 ? _mm256_srli_epi32(l, 2) : _mm256_srli_epi32(l, 3);
    return _mm256_permutevar8x32_ps(win, _mm256_add_epi32(l, _mm256_set1_epi32((int)first)));
}

#define FV __m256
#define IV __m256i
#define IC YF_QX_C_AVX2
#define IW 8
#define IZERO() _mm256_setzero_si256()
#define FZERO() _mm256_setzero_ps()
#define FFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define FMUL(a, b) _mm256_mul_ps(a, b)
#define FHSUM(v) yf_hsum8(v)
#define FLOAD(p) _mm256_loadu_ps(p)
#define ILOAD(p) _mm256_loadu_si256((const __m256i *)(p))
#define IWQ(p, nb) i_wq(p, nb)
#define INIB(w, lo, hi) i_nib(w, lo, hi)
#define IDOT(acc, lo, xl, hi, xh) i_dot(acc, lo, xl, hi, xh)
#define ICVT(v) _mm256_cvtepi32_ps(v)
#define ISCALES(src, n) i_scales(src, n)
#define ILANES(win, first, lpg) i_lanes(win, first, lpg)
#define IDOT8(corr, w, x) i_dot8(w, x)
#define QR_IDOT(m) ((m) <= 2 ? 2 : 1)
#define QR_IDOT8(m) ((m) <= 2 ? 4 : 2)
#define QIDOT yf_qidot_avx2
#include "kernels/cpu/quant_idot.h"

#else
void yf_qidot_avx2(const yf_qmat *qm, float *y, int64_t ldy, const yf_qx *qx, int64_t M, int64_t n0, int64_t n1,
                   bool accumulate) {
    (void)qm, (void)y, (void)ldy, (void)qx, (void)M, (void)n0, (void)n1, (void)accumulate;
    YF_CHECK(!"AVX2 path not compiled in");
}
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
