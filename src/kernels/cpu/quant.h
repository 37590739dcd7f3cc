/* quant: weight matrices quantized in memory (int8, 4-bit) and the products
 * that read them. A frozen weight W [N, K] (PyTorch [out, in]) is quantized
 * once; the products dequantize it in registers (few rows: decoding) or a
 * block at a time into fp32 for the general products (many rows: prefill,
 * training), so every product equals the same product on the dequantized
 * weights up to fp32 summation order. Layouts (docs/quantization.md):
 *
 *   int8  symmetric per output row: W[n, k] = scale[n] * q[n, k],
 *         q int8 [N, K] in -127..127, scale fp32 [N] = max_k |W[n, k]| / 127.
 *   q4    groups of G = 32 or 64 along k: W[n, k] = fma(s, q, m) with
 *         q in 0..15 and s, m the group's (fp16, widened to fp32):
 *         symmetric (no minimum stored): m = -8 s, s = the group's value of
 *           largest magnitude / -8, so that value is exactly -8 s;
 *         with a minimum: s = (max - min) / 15, m = min (both rounded to fp16
 *           before the values are rounded).
 *         q4 [N, K/2] bytes, each group's G/2 bytes in order: byte j holds
 *         element j of the group in its low nibble and element j + G/2 in its
 *         high nibble (so one 16-byte load unpacks into two contiguous runs
 *         of 16). scale (and min) fp16 [N, K/G].
 *
 * Wherever the model passes a weight as (const void *w, yf_dtype wt), a
 * quantized one is wt = YF_QMAT with w pointing at its yf_qmat: the plain,
 * pre-packed (the pack is ignored), row-slice and fused products of
 * kernels.h / fused.h take it as they take bf16 (their QMAT route:
 * matmul_impl.h, quant.c). */
#ifndef YF_QUANT_H
#define YF_QUANT_H

#include "base/tensor.h"

#include <math.h>

typedef enum yf_qtype { YF_QT_NONE = 0, YF_QT_INT8, YF_QT_Q4 } yf_qtype;

/* What to quantize to. */
typedef struct yf_qspec {
    yf_qtype type;
    int group;     /* q4: 32 or 64 (0 means 32) */
    bool with_min; /* q4: a minimum per group besides the scale */
} yf_qspec;

typedef struct yf_qmat {
    yf_qtype type;
    int64_t N, K;
    int64_t group;   /* q4: G; int8: K */
    bool with_min;
    void *q;         /* int8 [N, K] or q4 bytes [N, K/2] */
    void *scale;     /* int8: float [N]; q4: fp16 [N, K/G] */
    uint16_t *min;   /* q4 with a minimum: fp16 [N, K/G]; else NULL */
    void *owned;     /* the one allocation behind q, scale, min; NULL when they point into a mapped file */
    /* The few-row products (decoding, up to YF_QPASS_MAX_M rows) round x
     * to int8 per group (q4: of G; int8: of 32; scale max |x| / 127) and
     * take integer dot products; the result is the product of the
     * dequantized W with that rounded x, to fp32 rounding. Faster where
     * widening the weights into floats is the limit; not exact in x. Off:
     * x stays fp32. */
    bool int8_act;
} yf_qmat;

/* Products of up to this many rows of x read a quantized W in registers
 * (decoding; with int8_act, over rounded x); more rows go through fp32
 * blocks of W. A row's result is the same bits for any row count on one
 * side of it, not across it. */
#define YF_QMAT_GEMV_ROWS 32

/* "int8" / "q4" (also "none"); -1 with a message naming what is accepted. */
int yf_qtype_parse(const char *s, yf_qtype *out);
const char *yf_qtype_name(yf_qtype t);
/* "int8", "q4 (groups of 32)", "q4 (groups of 64, with minimum)" into buf. */
const char *yf_qspec_str(const yf_qspec *s, char *buf, size_t cap);
/* Whether spec can quantize a matrix of K columns (q4: K a multiple of G). */
bool yf_qspec_fits(const yf_qspec *s, int64_t K);
/* Bytes a quantized [N, K] matrix takes. */
size_t yf_qspec_bytes(const yf_qspec *s, int64_t N, int64_t K);

/* Quantizes W [N, K] (YF_F32 or YF_BF16) into a new allocation (threads of
 * pool.h). -1 (with a message) when spec does not fit K, or a value of W is
 * not finite, or a q4 scale does not fit fp16 (|W| > 5e5); what names W. */
int yf_qmat_quantize(yf_qmat *qm, const void *w, yf_dtype wt, int64_t N, int64_t K, const yf_qspec *spec,
                     const char *what);
void yf_qmat_free(yf_qmat *qm);
size_t yf_qmat_bytes(const yf_qmat *qm);
yf_qspec yf_qmat_spec(const yf_qmat *qm);
/* out [n1-n0, K] = rows n0..n1-1 of W dequantized (fp32). */
void yf_qmat_dequant_rows(const yf_qmat *qm, int64_t n0, int64_t n1, float *out);
/* out [n, K] = rows ids[0..n-1] of W dequantized. */
void yf_qmat_gather_rows(const yf_qmat *qm, const int64_t *ids, int64_t n, float *out);

/* The naive references of the products (single thread, element by element;
 * the fast ones are the public products of kernels.h with wt == YF_QMAT):
 *   x·W^T: y[m, n - n0] (+)= x[m, :] · W[n, :] for m < M, n0 <= n < n1; x
 *          [M, K] contiguous, y's rows ldy floats apart;
 *   dy·W:  dx[m, :] (+)= sum over n0 <= n < n1 of dy[m, n - n0] W[n, :]; dy's
 *          rows lddy floats apart, dx's ldx >= K. */
void yf_qmat_xwt_ref(const yf_qmat *qm, float *y, int64_t ldy, const float *x, int64_t M, int64_t n0, int64_t n1,
                     bool accumulate);
void yf_qmat_xw_ref(const yf_qmat *qm, float *dx, int64_t ldx, const float *dy, int64_t lddy, int64_t M, int64_t n0,
                    int64_t n1, bool accumulate);
/* w as the yf_qmat a product with wt == YF_QMAT passes, checked to be [N, K]. */
const yf_qmat *yf_qmat_of(const void *w, int64_t N, int64_t K);
/* Element (n, k) dequantized, the reference's way. */
float yf_qmat_get(const yf_qmat *qm, int64_t n, int64_t k);

/* Row n's q4 group g: its scale and offset as floats (W = fma(s, q, m)). */
static inline void yf_q4_group(const yf_qmat *qm, int64_t n, int64_t g, float *s, float *m) {
    int64_t i = n * (qm->K / qm->group) + g;
    *s = yf_f16_to_f32(((const uint16_t *)qm->scale)[i]);
    *m = qm->min ? yf_f16_to_f32(qm->min[i]) : -8.0f * *s;
}

/* Row n of qm dequantized into out[K] (the values yf_qmat_get gives), on
 * the calling thread and without the ISA paths: for code outside the
 * kernels that reads a few rows (DoRA's row norms), which links without
 * them (the fuzz harnesses). */
static inline void yf_qmat_row(const yf_qmat *qm, int64_t n, float *out) {
    int64_t K = qm->K;
    if (qm->type == YF_QT_INT8) {
        const int8_t *q = (const int8_t *)qm->q + n * K;
        float s = ((const float *)qm->scale)[n];
        for (int64_t k = 0; k < K; k++) out[k] = s * (float)q[k];
        return;
    }
    int64_t G = qm->group, half = G / 2;
    const uint8_t *b = (const uint8_t *)qm->q + n * (K / 2);
    for (int64_t g = 0; g < K / G; g++) {
        float s, m;
        yf_q4_group(qm, n, g, &s, &m);
        for (int64_t j = 0; j < half; j++) {
            out[g * G + j] = fmaf(s, (float)(b[g * half + j] & 15), m);
            out[g * G + j + half] = fmaf(s, (float)(b[g * half + j] >> 4), m);
        }
    }
}

#endif
