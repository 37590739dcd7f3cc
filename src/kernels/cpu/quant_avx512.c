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
 * dequantized exactly as the reference computes them. The loops are
 * quant_gemv.h's, and with int8 activations quant_idot.h's; the q4
 * quantizer of a row is this file's own. */
#include "kernels/cpu/quant_impl.h"

#include <float.h>

#if YF_CC_AVX512
#include <immintrin.h>

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))

static inline __mmask16 mask16(int64_t n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

AVX512_TARGET static inline __m512 q_iota(void) {
    return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

/* the 16 bytes at p widened to 16 lanes: vpermps reads the low 4 bits of a
 * lane, the low nibble; shifted right by 4, the high one */
AVX512_TARGET static inline void q_nib(const uint8_t *p, __m512 t, __m512 *lo, __m512 *hi) {
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
    *lo = _mm512_permutexvar_ps(v, t);
    *hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t);
}

#define QTARGET AVX512_TARGET
#define QV __m512
#define QL 16
#define QZERO() _mm512_setzero_ps()
#define QFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define QMUL(a, b) _mm512_mul_ps(a, b)
#define QSET1(f) _mm512_set1_ps(f)
#define QLOAD(p) _mm512_loadu_ps(p)
#define QLOADN(p, n) _mm512_maskz_loadu_ps(mask16(n), p)
#define QSTORE(p, v) _mm512_storeu_ps(p, v)
#define QSTOREN(p, n, v) _mm512_mask_storeu_ps(p, mask16(n), v)
#define QHSUM(v) _mm512_reduce_add_ps(v)
#define QI8(p, n) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask16(n), p)))
#define QT __m512 /* the group's 16 values: T[q] = fma(q, s, m) */
#define QTMAKE(s, m) _mm512_fmadd_ps(q_iota(), _mm512_set1_ps(s), _mm512_set1_ps(m))
#define QTMAKE_SYM(s) _mm512_mul_ps(_mm512_sub_ps(q_iota(), _mm512_set1_ps(8)), _mm512_set1_ps(s)) /* exact */
#define QNIB(p, t, lo, hi) q_nib(p, t, lo, hi)
#define QF16(dst, src, n) _mm512_store_ps(dst, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(n), src)))
#define QR_I8(m) ((m) == 1 ? 8 : 4)
#define QR_Q4(m) ((m) <= 2 ? 4 : 2)
#define QGEMV yf_qgemv_avx512
#define QDEQUANT yf_qdequant_avx512
#include "kernels/cpu/quant_gemv.h"

/* ---- int8 and q4 against int8 activations (quant_idot.h): vpdpbusd
 * (VNNI; yf_qmat_xwt takes the AVX2 kernel on a CPU without it) ---- */

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))

static inline __mmask64 mask64(int64_t n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }

VNNI_TARGET static inline void i_nib(__m512i w, __m512i *lo, __m512i *hi) {
    const __m512i f = _mm512_set1_epi8(15);
    *lo = _mm512_and_si512(w, f);
    *hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), f);
}

/* per lane, win[first + lane / lpg] (lpg 4 or 8) */
VNNI_TARGET static inline __m512 i_lanes(__m512 win, int64_t first, int64_t lpg) {
    __m512i l = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    l = lpg == 4 ? _mm512_srli_epi32(l, 2) : _mm512_srli_epi32(l, 3);
    return _mm512_permutexvar_ps(_mm512_add_epi32(l, _mm512_set1_epi32((int)first)), win);
}

#undef QTARGET
#define QTARGET VNNI_TARGET
#define FV __m512
#define IV __m512i
#define IC YF_QX_C_AVX512
#define IW 16
#define IZERO() _mm512_setzero_si512()
#define FZERO() _mm512_setzero_ps()
#define FFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define FMUL(a, b) _mm512_mul_ps(a, b)
#define FHSUM(v) _mm512_reduce_add_ps(v)
#define FLOAD(p) _mm512_loadu_ps(p)
#define ILOAD(p) _mm512_loadu_si512((const void *)(p))
#define IWQ(p, nb) ((nb) == 64 ? _mm512_loadu_si512((const void *)(p)) : _mm512_maskz_loadu_epi8(mask64(nb), p))
#define INIB(w, lo, hi) i_nib(w, lo, hi)
#define IDOT(acc, lo, xl, hi, xh) _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc, lo, xl), hi, xh)
#define ICVT(v) _mm512_cvtepi32_ps(v)
#define ISCALES(src, n) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(n), src))
#define ILANES(win, first, lpg) i_lanes(win, first, lpg)
#define IDOT8(corr, w, x) _mm512_dpbusd_epi32(ILOAD(corr), _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80)), x)
#define QR_IDOT(m) ((m) <= 2 ? 4 : 2)
#define QR_IDOT8(m) ((m) == 1 ? 8 : 4)
#define QIDOT yf_qidot_avx512
#include "kernels/cpu/quant_idot.h"

/* ---- quantizing a row ----------------------------------------------------------- */

/* 16 values at element i of a row, f32 or bf16, as floats */
AVX512_TARGET static inline __m512 q_row16(const void *src, yf_dtype wt, int64_t i) {
    if (wt == YF_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)src + i))), 16));
    return _mm512_loadu_ps((const float *)src + i);
}

AVX512_TARGET int yf_qrow_q4_avx512(const void *src, yf_dtype wt, int64_t K, int64_t G, uint8_t *qb, uint16_t *sc,
                                    uint16_t *mn) {
    int64_t nv = G / 16, half = G / 2; /* 16-float vectors a group: 2 or 4 */
    uint16_t mdummy;
    const __m512 fmax = _mm512_set1_ps(FLT_MAX);
    for (int64_t g = 0; g < K / G; g++) {
        __m512 x[4], lo = q_row16(src, wt, g * G), hi = lo;
        __mmask16 bad = 0;
        for (int64_t i = 0; i < nv; i++) {
            x[i] = q_row16(src, wt, g * G + 16 * i);
            bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(x[i]), fmax, _CMP_NLE_UQ); /* NaN or infinity */
            lo = _mm512_min_ps(lo, x[i]);
            hi = _mm512_max_ps(hi, x[i]);
        }
        if (bad) return 1;
        float l = _mm512_reduce_min_ps(lo), h = _mm512_reduce_max_ps(hi), s, m, inv;
        if (fabsf(l) >= YF_Q4_MAX_ABS || fabsf(h) >= YF_Q4_MAX_ABS) return 2;
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
    return 0;
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
void yf_qidot_avx512(const yf_qmat *qm, float *y, int64_t ldy, const yf_qx *qx, int64_t M, int64_t n0, int64_t n1,
                     bool accumulate) {
    (void)qm, (void)y, (void)ldy, (void)qx, (void)M, (void)n0, (void)n1, (void)accumulate;
    YF_CHECK(!"AVX-512 path not compiled in");
}
int yf_qrow_q4_avx512(const void *src, yf_dtype wt, int64_t K, int64_t G, uint8_t *qb, uint16_t *sc, uint16_t *mn) {
    (void)src, (void)wt, (void)K, (void)G, (void)qb, (void)sc, (void)mn;
    YF_CHECK(!"AVX-512 path not compiled in");
    return -1;
}
#endif
