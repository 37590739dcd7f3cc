/* quant_impl: what quant.c shares with the per-ISA quantized kernels
 * (quant_avx512.c, quant_avx2.c). Not a public header. */
#ifndef YF_QUANT_IMPL_H
#define YF_QUANT_IMPL_H

#include "kernels/cpu/matmul_impl.h"
#include "kernels/cpu/quant.h"

#include <math.h>

/* The in-register kernels take up to YF_QGEMV_MAX_M rows of x at a time;
 * products of up to YF_QPASS_MAX_M rows (batched decoding) run them in
 * passes over W, more rows go through fp32 blocks of W and the general
 * products. One core, a 2048 x 2048 weight: passes take 1.1 / 4.5 / 9.0 /
 * 18 ms at 8 / 32 / 64 / 128 rows (q4) against the blocks' 4.6 / 7.1 / 10.1
 * / 16; int8 1.6 / 5.9 / 12 against 5.0 / 6.7 / 9.7 (to 64 rows). */
#define YF_QGEMV_MAX_M 4
#define YF_QPASS_MAX_M YF_QMAT_GEMV_ROWS

/* y[m * ldy + n - n0] (+)= x[m, :] · W[n, :] for m < M <= YF_QGEMV_MAX_M,
 * n0 <= n < n1; x [M, K] contiguous. */
void yf_qgemv_avx512(const yf_qmat *qm, float *y, int64_t ldy, const float *x, int64_t M, int64_t n0, int64_t n1,
                     bool accumulate);
void yf_qgemv_avx2(const yf_qmat *qm, float *y, int64_t ldy, const float *x, int64_t M, int64_t n0, int64_t n1,
                   bool accumulate);
/* out[(n - n0) * ldo + k - k0] = W[n, k] dequantized for n0 <= n < n1,
 * k0 <= k < k1; q4: k0 and k1 multiples of the group (or k1 = K). */
void yf_qdequant_avx512(const yf_qmat *qm, int64_t n0, int64_t n1, int64_t k0, int64_t k1, float *out, int64_t ldo);
void yf_qdequant_avx2(const yf_qmat *qm, int64_t n0, int64_t n1, int64_t k0, int64_t k1, float *out, int64_t ldo);

/* Rows of x rounded to int8 for the integer dot products against a W
 * (yf_qmat.int8_act; docs/quantization.md): per group of G elements (q4:
 * W's group; int8: 32, the last one shorter where 32 does not divide K),
 * sx = max |x| / 127 and xq = rint(x * (1 / sx)) in -127..127 (a group
 * with a value that is not finite: sx NaN, xq 0). Laid out for a kernel
 * that loads C bytes of W at a time (64: AVX-512, 32: AVX2), a "chunk" of
 * E elements:
 *   q4 (split): E = 2C, the C low nibbles' elements, then the C high
 *     ones': lo byte i is element chunk start + (i / (G/2)) G + i % (G/2),
 *     hi byte i that + G/2; a 4-byte lane l covers lo's and hi's bytes
 *     4l..4l+3; corr[l] = -8 x the lane's sum of xq;
 *   int8: E = C elements in order, lane l elements 4l..4l+3; corr[l] =
 *     -128 x the lane's sum (the AVX-512 kernel reads W's bytes as
 *     unsigned, q + 128).
 * Per row and chunk: q [E], then per lane (C/4 of them, each inside one
 * group) corr, sx (its group's scale) and xs = sx x the lane's sum. Past
 * K: zeros. */
typedef struct yf_qx {
    int64_t K, G, C, E, nch; /* nch chunks a row */
    bool split;              /* the q4 layout */
    int8_t *q;               /* [M][nch][E] */
    int32_t *corr;           /* [M][nch][C/4] */
    float *sx, *xs;          /* [M][nch][C/4] */
} yf_qx;

/* Bytes yf_qx_quantize needs for M rows against qm. */
size_t yf_qx_bytes(const yf_qmat *qm, int64_t M, int64_t C);
/* x [M, qm->K] rounded for qm into buf (yf_qx_bytes bytes, 64-aligned). */
void yf_qx_quantize(yf_qx *qx, void *buf, const float *x, int64_t M, const yf_qmat *qm, int64_t C);
/* Row m of qx as the fp32 values it stands for (sx * xq) into out [K]. */
void yf_qx_dequant(const yf_qx *qx, int64_t m, float *out);

/* y[m * ldy + n - n0] (+)= x_m · W[n, :] for m < M <= YF_QGEMV_MAX_M, x
 * rounded in qx for W (C = YF_QX_C_AVX512 / YF_QX_C_AVX2): exact integer
 * dot products per lane, scaled and summed in fp32 (int8: W's row scale
 * applied to the sum). AVX-512 needs VNNI. */
#define YF_QX_C_AVX512 64
#define YF_QX_C_AVX2 32
void yf_qidot_avx512(const yf_qmat *qm, float *y, int64_t ldy, const yf_qx *qx, int64_t M, int64_t n0, int64_t n1,
                     bool accumulate);
void yf_qidot_avx2(const yf_qmat *qm, float *y, int64_t ldy, const yf_qx *qx, int64_t M, int64_t n0, int64_t n1,
                   bool accumulate);

/* Quantizes a row of K values (YF_F32 or YF_BF16 at src) into q4 groups of
 * G: bytes qb [K/2], scales sc [K/G], minimums mn [K/G] (NULL: symmetric),
 * as quant.c's generic code does, bit for bit. Returns 0, or 1 when a value
 * is not finite, 2 when one reaches YF_Q4_MAX_ABS. */
int yf_qrow_q4_avx512(const void *src, yf_dtype wt, int64_t K, int64_t G, uint8_t *qb, uint16_t *sc, uint16_t *mn);

/* |values| at or above this make an fp16 scale (max / 8 or range / 15) overflow */
#define YF_Q4_MAX_ABS 5.0e5f

/* fp32 <-> fp16 (nearest even): the instructions where the build targets
 * them, util.h's otherwise (the same values) */
#ifdef __F16C__
#include <immintrin.h>
static inline uint16_t yf_q_to_f16(float f) { return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }
static inline float yf_q_from_f16(uint16_t h) { return _cvtsh_ss(h); }
#else
static inline uint16_t yf_q_to_f16(float f) { return yf_f32_to_f16(f); }
static inline float yf_q_from_f16(uint16_t h) { return yf_f16_to_f32(h); }
#endif

/* A q4 group's stored scale (and min) from its smallest and largest values,
 * and the fp32 s, m and 1 / s (0 when s is) its values are rounded with:
 * with a minimum, s = (hi - lo) / 15 and m = lo; symmetric, s = the value of
 * largest magnitude / -8, m = -8 s. */
static inline void yf_q4_params(float lo, float hi, bool with_min, uint16_t *sc, uint16_t *mn, float *s, float *m,
                                float *inv) {
    if (with_min) {
        *sc = yf_q_to_f16((hi - lo) / 15.0f);
        *mn = yf_q_to_f16(lo);
        *s = yf_q_from_f16(*sc);
        *m = yf_q_from_f16(*mn);
    } else {
        *sc = yf_q_to_f16((fabsf(hi) >= fabsf(lo) ? hi : lo) / -8.0f);
        *s = yf_q_from_f16(*sc);
        *m = -8.0f * *s;
    }
    *inv = *s != 0 ? 1.0f / *s : 0;
}

#endif
