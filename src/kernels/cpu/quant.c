/* quant: quantizing a weight matrix (int8 per row, q4 per group; layouts in
 * quant.h), dequantizing it, the naive reference products and the dispatch
 * of the fast ones: a few rows of x (decoding) on the per-ISA kernels that
 * dequantize in registers (quant_avx512.c, quant_avx2.c) or, with int8
 * activations, on their integer dot products over x rounded here (yf_qx),
 * more rows through fp32 blocks of W handed to the general products of
 * matmul.c. */
#include "kernels/cpu/quant_impl.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/bufcache.h"
#include "base/pool.h"
#include "kernels/cpu/cpu.h"

/* ---- names and sizes ----------------------------------------------------- */

int yf_qtype_parse(const char *s, yf_qtype *out) {
    if (!strcmp(s, "int8")) *out = YF_QT_INT8;
    else if (!strcmp(s, "q4")) *out = YF_QT_Q4;
    else if (!strcmp(s, "none")) *out = YF_QT_NONE;
    else return yf_errorf("unknown quantization '%s': use int8 or q4 (or none)", s);
    return 0;
}

const char *yf_qtype_name(yf_qtype t) { return t == YF_QT_INT8 ? "int8" : t == YF_QT_Q4 ? "q4" : "none"; }

static int64_t spec_group(const yf_qspec *s) { return s->group > 0 ? s->group : 32; }

const char *yf_qspec_str(const yf_qspec *s, char *buf, size_t cap) {
    if (s->type == YF_QT_Q4)
        snprintf(buf, cap, "q4 (groups of %lld%s)", (long long)spec_group(s), s->with_min ? ", with minimum" : "");
    else
        snprintf(buf, cap, "%s", yf_qtype_name(s->type));
    return buf;
}

bool yf_qspec_fits(const yf_qspec *s, int64_t K) {
    if (s->type != YF_QT_Q4) return s->type == YF_QT_INT8;
    int64_t G = spec_group(s);
    return (G == 32 || G == 64) && K % G == 0;
}

size_t yf_qspec_bytes(const yf_qspec *s, int64_t N, int64_t K) {
    if (s->type == YF_QT_INT8) return (size_t)N * (size_t)K + (size_t)N * sizeof(float);
    size_t groups = (size_t)N * (size_t)(K / spec_group(s));
    return (size_t)N * (size_t)(K / 2) + groups * 2 * (s->with_min ? 2 : 1);
}

size_t yf_qmat_bytes(const yf_qmat *qm) {
    yf_qspec s = yf_qmat_spec(qm);
    return yf_qspec_bytes(&s, qm->N, qm->K);
}

yf_qspec yf_qmat_spec(const yf_qmat *qm) {
    return (yf_qspec){.type = qm->type, .group = qm->type == YF_QT_Q4 ? (int)qm->group : 0, .with_min = qm->with_min};
}

const yf_qmat *yf_qmat_of(const void *w, int64_t N, int64_t K) {
    const yf_qmat *qm = w;
    YF_CHECK(qm && qm->N == N && qm->K == K && (qm->type == YF_QT_INT8 || qm->type == YF_QT_Q4));
    return qm;
}

/* ---- quantizing ------------------------------------------------------------ */

float yf_qmat_get(const yf_qmat *qm, int64_t n, int64_t k) {
    if (qm->type == YF_QT_INT8) return ((const float *)qm->scale)[n] * (float)((const int8_t *)qm->q)[n * qm->K + k];
    int64_t G = qm->group, g = k / G, j = k % G, half = G / 2;
    uint8_t b = ((const uint8_t *)qm->q)[n * (qm->K / 2) + g * half + j % half];
    float s, m;
    yf_q4_group(qm, n, g, &s, &m);
    return fmaf(s, (float)(j < half ? b & 15 : b >> 4), m);
}

typedef struct quant_job {
    yf_qmat *qm;
    const void *w;
    yf_dtype wt;
    int64_t rows_per_piece;
    int64_t bad_row;   /* first row with a non-finite value, or -1 */
    int64_t big_row;   /* first row whose q4 scale overflows fp16, or -1 */
    bool avx512;       /* q4 rows by yf_qrow_q4_avx512 (the same bits) */
} quant_job;

static void note_row(int64_t *slot, int64_t n) {
    int64_t cur = __atomic_load_n(slot, __ATOMIC_RELAXED);
    while ((cur < 0 || n < cur) && !__atomic_compare_exchange_n(slot, &cur, n, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

/* One q4 group of G values v (fp32) into G/2 bytes, its scale and min.
 * Rounding: q = rint((v - m) * (1 / s)), clamped (the loops vectorize;
 * yf_qrow_q4_avx512 does the same arithmetic). */
static bool quant_group_q4(const float *v, int64_t G, bool with_min, uint8_t *qb, uint16_t *sc, uint16_t *mn) {
    float lo = v[0], hi = v[0];
#pragma omp simd reduction(min : lo) reduction(max : hi)
    for (int64_t i = 1; i < G; i++) {
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    if (fabsf(lo) >= YF_Q4_MAX_ABS || fabsf(hi) >= YF_Q4_MAX_ABS) return false;
    float q[64], s, m, inv;
    yf_q4_params(lo, hi, with_min, sc, mn, &s, &m, &inv);
#pragma omp simd
    for (int64_t i = 0; i < G; i++) {
        float r = rintf((v[i] - m) * inv);
        q[i] = r < 0 ? 0 : r > 15 ? 15 : r;
    }
    if (s == 0)
        for (int64_t i = 0; i < G; i++) q[i] = with_min ? 0 : 8;
    int64_t half = G / 2;
#pragma omp simd
    for (int64_t j = 0; j < half; j++) qb[j] = (uint8_t)((int)q[j] | (int)q[j + half] << 4);
    return true;
}

static void quant_piece(void *ctx, int64_t piece) {
    quant_job *j = ctx;
    yf_qmat *qm = j->qm;
    int64_t K = qm->K, n0 = piece * j->rows_per_piece;
    int64_t n1 = n0 + j->rows_per_piece < qm->N ? n0 + j->rows_per_piece : qm->N;
    float *row = yf_malloc((size_t)K * sizeof(float));
    for (int64_t n = n0; n < n1; n++) {
        if (j->avx512) { /* q4 from the source row in one pass */
            int64_t G = qm->group, ng = K / G;
            const char *src = (const char *)j->w + (size_t)(n * K) * (j->wt == YF_BF16 ? 2 : 4);
            int st = yf_qrow_q4_avx512(src, j->wt, K, G, (uint8_t *)qm->q + n * (K / 2), (uint16_t *)qm->scale + n * ng,
                                       qm->min ? qm->min + n * ng : NULL);
            if (st) note_row(st == 1 ? &j->bad_row : &j->big_row, n);
            continue;
        }
        if (j->wt == YF_BF16) {
            const uint16_t *src = (const uint16_t *)j->w + n * K;
#pragma omp simd
            for (int64_t k = 0; k < K; k++) row[k] = yf_bf16_to_f32(src[k]);
        } else {
            memcpy(row, (const float *)j->w + n * K, (size_t)K * sizeof(float));
        }
        float amax = 0;
        int bad = 0;
#pragma omp simd reduction(max : amax) reduction(| : bad)
        for (int64_t k = 0; k < K; k++) {
            float a = fabsf(row[k]);
            amax = a > amax ? a : amax;
            bad |= !(a <= FLT_MAX); /* NaN or infinity */
        }
        if (bad) {
            note_row(&j->bad_row, n);
            continue;
        }
        if (qm->type == YF_QT_INT8) { /* q = rint(w * (1 / s)): |q| <= 127 */
            float s = amax / 127.0f, inv = s != 0 ? 1.0f / s : 0;
            int8_t *q = (int8_t *)qm->q + n * K;
            ((float *)qm->scale)[n] = s;
#pragma omp simd
            for (int64_t k = 0; k < K; k++) q[k] = (int8_t)(int)rintf(row[k] * inv);
            continue;
        }
        int64_t G = qm->group, ng = K / G;
        uint8_t *qb = (uint8_t *)qm->q + n * (K / 2);
        uint16_t *sc = (uint16_t *)qm->scale + n * ng, *mn = qm->min ? qm->min + n * ng : NULL;
        for (int64_t g = 0; g < ng; g++)
            if (!quant_group_q4(row + g * G, G, qm->with_min, qb + g * (G / 2), sc + g, mn ? mn + g : &(uint16_t){0}))
                note_row(&j->big_row, n);
    }
    free(row);
}

int yf_qmat_quantize(yf_qmat *qm, const void *w, yf_dtype wt, int64_t N, int64_t K, const yf_qspec *spec,
                     const char *what) {
    YF_CHECK(N > 0 && K > 0 && (wt == YF_F32 || wt == YF_BF16));
    memset(qm, 0, sizeof *qm);
    char sbuf[64];
    if (!yf_qspec_fits(spec, K))
        return yf_errorf("%s: %s needs the input dimension (%lld) a multiple of the group size", what,
                         yf_qspec_str(spec, sbuf, sizeof sbuf), (long long)K);
    int64_t G = spec->type == YF_QT_Q4 ? spec_group(spec) : K;
    size_t qbytes = spec->type == YF_QT_INT8 ? (size_t)N * (size_t)K : (size_t)N * (size_t)(K / 2);
    size_t sbytes = spec->type == YF_QT_INT8 ? (size_t)N * sizeof(float) : (size_t)N * (size_t)(K / G) * 2;
    size_t qpad = (qbytes + 63) / 64 * 64, spad = (sbytes + 63) / 64 * 64;
    size_t total = qpad + spad * (spec->type == YF_QT_Q4 && spec->with_min ? 2 : 1);
    char *buf = aligned_alloc(64, total);
    if (!buf)
        return yf_errorf("%s: out of memory quantizing a %lld x %lld weight (%.0f MiB)", what, (long long)N,
                         (long long)K, total / 1048576.0);
    *qm = (yf_qmat){.type = spec->type, .N = N, .K = K, .group = G, .q = buf, .scale = buf + qpad, .owned = buf,
                    .with_min = spec->type == YF_QT_Q4 && spec->with_min};
    if (qm->with_min) qm->min = (uint16_t *)(buf + qpad + spad);
    int64_t pieces = N < 256 ? 1 : 256;
    quant_job j = {qm, w, wt, (N + pieces - 1) / pieces, -1, -1,
                   spec->type == YF_QT_Q4 && yf_kernels_path() >= YF_KPATH_AVX512};
    yf_par_for((N + j.rows_per_piece - 1) / j.rows_per_piece, quant_piece, &j);
    int rc = 0;
    if (j.bad_row >= 0)
        rc = yf_errorf("%s: row %lld has a value that is not finite (NaN or infinity): the weights are damaged",
                       what, (long long)j.bad_row);
    else if (j.big_row >= 0)
        rc = yf_errorf("%s: row %lld has a value of magnitude >= %g, beyond q4's fp16 scales: use int8", what,
                       (long long)j.big_row, (double)YF_Q4_MAX_ABS);
    if (rc) yf_qmat_free(qm);
    return rc;
}

void yf_qmat_free(yf_qmat *qm) {
    if (!qm) return;
    free(qm->owned);
    memset(qm, 0, sizeof *qm);
}

/* ---- dequantizing ------------------------------------------------------------ */

static void dequant_scalar(const yf_qmat *qm, int64_t n0, int64_t n1, int64_t k0, int64_t k1, float *out,
                           int64_t ldo) {
    for (int64_t n = n0; n < n1; n++) {
        float *o = out + (n - n0) * ldo;
        if (qm->type == YF_QT_INT8) {
            float s = ((const float *)qm->scale)[n];
            const int8_t *q = (const int8_t *)qm->q + n * qm->K;
            for (int64_t k = k0; k < k1; k++) o[k - k0] = s * (float)q[k];
            continue;
        }
        int64_t G = qm->group, half = G / 2;
        for (int64_t g = k0 / G; g * G < k1; g++) {
            float s, m;
            yf_q4_group(qm, n, g, &s, &m);
            const uint8_t *b = (const uint8_t *)qm->q + n * (qm->K / 2) + g * half;
            float *og = o + g * G - k0;
            for (int64_t j = 0; j < half; j++) {
                og[j] = fmaf(s, (float)(b[j] & 15), m);
                og[j + half] = fmaf(s, (float)(b[j] >> 4), m);
            }
        }
    }
}

static void dequant_block(const yf_qmat *qm, int64_t n0, int64_t n1, int64_t k0, int64_t k1, float *out,
                          int64_t ldo) {
    yf_kpath p = yf_kernels_path();
    if (p >= YF_KPATH_AVX512)
        yf_qdequant_avx512(qm, n0, n1, k0, k1, out, ldo);
    else if (p >= YF_KPATH_AVX2)
        yf_qdequant_avx2(qm, n0, n1, k0, k1, out, ldo);
    else
        dequant_scalar(qm, n0, n1, k0, k1, out, ldo);
}

typedef struct deq_job {
    const yf_qmat *qm;
    int64_t n0, n1, k0, k1, ldo, chunk;
    float *out;
} deq_job;

static void deq_piece(void *ctx, int64_t i) {
    const deq_job *j = ctx;
    int64_t a = j->n0 + i * j->chunk, b = a + j->chunk < j->n1 ? a + j->chunk : j->n1;
    if (a < b) dequant_block(j->qm, a, b, j->k0, j->k1, j->out + (a - j->n0) * j->ldo, j->ldo);
}

/* dequant_block split between the threads, 32 rows a piece */
static void dequant_par(const yf_qmat *qm, int64_t n0, int64_t n1, int64_t k0, int64_t k1, float *out, int64_t ldo) {
    deq_job j = {qm, n0, n1, k0, k1, ldo, 32, out};
    int64_t pieces = (n1 - n0 + j.chunk - 1) / j.chunk;
    if ((n1 - n0) * (k1 - k0) < (1 << 16)) {
        for (int64_t i = 0; i < pieces; i++) deq_piece(&j, i);
        return;
    }
    yf_par_for(pieces, deq_piece, &j);
}

void yf_qmat_dequant_rows(const yf_qmat *qm, int64_t n0, int64_t n1, float *out) {
    YF_CHECK(0 <= n0 && n0 <= n1 && n1 <= qm->N);
    dequant_par(qm, n0, n1, 0, qm->K, out, qm->K);
}

void yf_qmat_gather_rows(const yf_qmat *qm, const int64_t *ids, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) {
        YF_CHECK(ids[i] >= 0 && ids[i] < qm->N);
        dequant_block(qm, ids[i], ids[i] + 1, 0, qm->K, out + i * qm->K, qm->K);
    }
}

/* ---- x rounded to int8 for the integer dot products ---------------------------- */

/* the chunks of a row and their bytes: q E, then corr, sx, xs (C/4 x 4 bytes each) */
static size_t qx_row_bytes(const yf_qmat *qm, int64_t C, int64_t *nch, int64_t *E) {
    *E = qm->type == YF_QT_Q4 ? 2 * C : C;
    *nch = (qm->K + *E - 1) / *E;
    return (size_t)*nch * (size_t)(*E + 3 * C);
}

size_t yf_qx_bytes(const yf_qmat *qm, int64_t M, int64_t C) {
    int64_t nch, E;
    return (size_t)M * qx_row_bytes(qm, C, &nch, &E);
}

/* one group's scale: sx = max |v| / 127 (NaN when a value is not finite), and 1 / sx (0 then) */
static float qx_scale(const float *v, int64_t n, float *inv) {
    float amax = 0;
    int bad = 0;
#pragma omp simd reduction(max : amax) reduction(| : bad)
    for (int64_t j = 0; j < n; j++) {
        float a = fabsf(v[j]);
        bad |= !(a <= FLT_MAX);
        amax = a > amax ? a : amax;
    }
    float s = bad ? NAN : amax / 127.0f;
    *inv = !bad && s != 0 ? 1.0f / s : 0;
    return s;
}

/* q[j] = rint(v[j] * inv) for finite v and inv (|v inv| <= 127 up to rounding) */
static void qx_round(const float *v, int64_t n, float inv, int8_t *q) {
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        float a = rintf(v[j] * inv);
        q[j] = (int8_t)(int)(a < -127 ? -127 : a > 127 ? 127 : a);
    }
}

/* Row m of x (xr [K]) rounded into qx (its part of the buffer zeroed here) */
static void qx_row(const yf_qx *qx, const float *xr, int64_t m) {
    int64_t K = qx->K, G = qx->G, C = qx->C, E = qx->E, nch = qx->nch, L = C / 4, half = G / 2;
    int8_t *q = qx->q + m * nch * E;
    int32_t *corrs = qx->corr + m * nch * L;
    float *sx = qx->sx + m * nch * L, *xss = qx->xs + m * nch * L;
    memset(q, 0, (size_t)(nch * E));
    memset(sx, 0, (size_t)(nch * L) * sizeof(float));
    for (int64_t k0 = 0; k0 < K; k0 += G) {
        int64_t n = K - k0 < G ? K - k0 : G;
        float inv, s = qx_scale(xr + k0, n, &inv);
        if (!qx->split) { /* elements in order: lane k / 4 */
            for (int64_t l = k0 / 4; l < (k0 + n + 3) / 4; l++) sx[l] = s;
            if (!isnan(s)) qx_round(xr + k0, n, inv, q + k0);
            continue;
        }
        /* the group's place in its chunk: lo byte i is element (i / half) G + i % half */
        int64_t c = k0 / E, i0 = k0 % E / G * half;
        for (int64_t l = 0; l < half / 4; l++) sx[c * L + i0 / 4 + l] = s;
        if (isnan(s)) continue; /* xq stay 0 */
        qx_round(xr + k0, half, inv, q + c * E + i0);
        qx_round(xr + k0 + half, half, inv, q + c * E + C + i0);
    }
    /* each lane's 4 (int8) or 4 lo and 4 hi (q4) bytes */
    for (int64_t c = 0; c < nch; c++) {
        const int8_t *lo = q + c * E, *hi = lo + C;
        int32_t *corr = corrs + c * L;
        float *xs = xss + c * L;
#pragma omp simd
        for (int64_t l = 0; l < L; l++) {
            int32_t sum = lo[4 * l] + lo[4 * l + 1] + lo[4 * l + 2] + lo[4 * l + 3];
            if (qx->split) sum += hi[4 * l] + hi[4 * l + 1] + hi[4 * l + 2] + hi[4 * l + 3];
            corr[l] = (qx->split ? -8 : -128) * sum;
            xs[l] = sx[c * L + l] * (float)sum;
        }
    }
}

typedef struct qx_job {
    const yf_qx *qx;
    const float *x;
} qx_job;

static void qx_piece(void *ctx, int64_t m) {
    const qx_job *j = ctx;
    qx_row(j->qx, j->x + m * j->qx->K, m);
}

void yf_qx_quantize(yf_qx *qx, void *buf, const float *x, int64_t M, const yf_qmat *qm, int64_t C) {
    YF_CHECK(C == 32 || C == 64);
    int64_t nch, E, K = qm->K;
    qx_row_bytes(qm, C, &nch, &E);
    bool split = qm->type == YF_QT_Q4;
    int64_t G = split ? qm->group : 32;
    YF_CHECK(!split || ((G == 32 || G == 64) && K % G == 0));
    int64_t L = C / 4, xrow = nch * E, lrow = nch * L;
    char *b = buf;
    *qx = (yf_qx){.K = K, .G = G, .C = C, .E = E, .nch = nch, .split = split, .q = (int8_t *)b};
    qx->corr = (int32_t *)(b + (size_t)M * (size_t)xrow);
    qx->sx = (float *)(qx->corr + M * lrow);
    qx->xs = qx->sx + M * lrow;
    /* the rows between the threads when there are several (batched decoding) */
    qx_job j = {qx, x};
    if (M >= 4) yf_par_for(M, qx_piece, &j);
    else
        for (int64_t m = 0; m < M; m++) qx_row(qx, x + m * K, m);
}

/* qx's rows from m0 on, as a yf_qx of their own */
static yf_qx qx_from_row(const yf_qx *qx, int64_t m0) {
    yf_qx v = *qx;
    int64_t lrow = qx->nch * (qx->C / 4);
    v.q += m0 * qx->nch * qx->E;
    v.corr += m0 * lrow;
    v.sx += m0 * lrow;
    v.xs += m0 * lrow;
    return v;
}

void yf_qx_dequant(const yf_qx *qx, int64_t m, float *out) {
    int64_t C = qx->C, E = qx->E, G = qx->G, half = G / 2, L = C / 4;
    const int8_t *q = qx->q + m * qx->nch * E;
    const float *sx = qx->sx + m * qx->nch * L;
    for (int64_t k = 0; k < qx->K; k++) {
        if (!qx->split) {
            out[k] = sx[k / 4] * (float)q[k];
            continue;
        }
        int64_t c = k / E, r = k % E, gi = r / G, j = r % G, i = gi * half + j % half;
        out[k] = sx[c * L + i / 4] * (float)q[c * E + (j >= half ? C : 0) + i];
    }
}

/* ---- the naive references ---------------------------------------------------- */

void yf_qmat_xwt_ref(const yf_qmat *qm, float *y, int64_t ldy, const float *x, int64_t M, int64_t n0, int64_t n1,
                     bool accumulate) {
    int64_t K = qm->K;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = n0; n < n1; n++) {
            float s = 0;
            for (int64_t k = 0; k < K; k++) s += x[m * K + k] * yf_qmat_get(qm, n, k);
            float *d = y + m * ldy + n - n0;
            *d = accumulate ? *d + s : s;
        }
}

void yf_qmat_xw_ref(const yf_qmat *qm, float *dx, int64_t ldx, const float *dy, int64_t lddy, int64_t M, int64_t n0,
                    int64_t n1, bool accumulate) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < qm->K; k++) {
            float s = 0;
            for (int64_t n = n0; n < n1; n++) s += dy[m * lddy + n - n0] * yf_qmat_get(qm, n, k);
            float *d = dx + m * ldx + k;
            *d = accumulate ? *d + s : s;
        }
}

/* ---- the fast products -------------------------------------------------------- */

typedef struct gemv_job {
    const yf_qmat *qm;
    float *y;
    int64_t ldy;
    const float *x;
    const yf_qx *qx; /* x rounded to int8 (yf_qmat.int8_act), or NULL */
    int64_t M, n0, n1, chunk, block;
    bool accumulate, avx512;
} gemv_job;

/* rows m0 .. m0 + mm (mm <= YF_QGEMV_MAX_M) of x against W's rows a..b */
static void gemv_pass(const gemv_job *j, int64_t m0, int64_t mm, int64_t a, int64_t b) {
    float *y = j->y + m0 * j->ldy + (a - j->n0);
    if (j->qx) {
        yf_qx pass = qx_from_row(j->qx, m0);
        if (j->avx512) yf_qidot_avx512(j->qm, y, j->ldy, &pass, mm, a, b, j->accumulate);
        else yf_qidot_avx2(j->qm, y, j->ldy, &pass, mm, a, b, j->accumulate);
        return;
    }
    const float *x = j->x + m0 * j->qm->K;
    if (j->avx512) yf_qgemv_avx512(j->qm, y, j->ldy, x, mm, a, b, j->accumulate);
    else yf_qgemv_avx2(j->qm, y, j->ldy, x, mm, a, b, j->accumulate);
}

/* A piece of W's rows: a block of them at a time (in L2), every pass of up
 * to YF_QGEMV_MAX_M rows of x over the block before the next, so that W
 * streams from memory once whatever the passes */
static void gemv_piece(void *ctx, int64_t i) {
    const gemv_job *j = ctx;
    int64_t a = j->n0 + i * j->chunk, b = a + j->chunk < j->n1 ? a + j->chunk : j->n1;
    for (int64_t c = a; c < b; c += j->block) {
        int64_t e = b - c < j->block ? b : c + j->block;
        for (int64_t m0 = 0; m0 < j->M; m0 += YF_QGEMV_MAX_M)
            gemv_pass(j, m0, j->M - m0 < YF_QGEMV_MAX_M ? j->M - m0 : YF_QGEMV_MAX_M, c, e);
    }
}

/* Blocks of W made fp32 for the general products: 4 MiB, in L2/L3 while
 * the product reads it; 1024 columns of the product is the packed
 * kernels' own block (matmul.c), so x is packed no more often than for a
 * bf16 W. */
enum { SLAB_N = 1024, SLAB_K = 1024 };

static void slab_xwt(const yf_qmat *qm, float *y, int64_t ldy, const float *x, int64_t M, int64_t n0, int64_t n1,
                     bool accumulate) {
    int64_t K = qm->K;
    float *slab = yf_buf_get((size_t)SLAB_N * SLAB_K * sizeof(float));
    for (int64_t nb0 = n0; nb0 < n1; nb0 += SLAB_N) {
        int64_t nb = n1 - nb0 < SLAB_N ? n1 - nb0 : SLAB_N;
        for (int64_t kb0 = 0; kb0 < K; kb0 += SLAB_K) {
            int64_t kb = K - kb0 < SLAB_K ? K - kb0 : SLAB_K;
            dequant_par(qm, nb0, nb0 + nb, kb0, kb0 + kb, slab, kb);
            /* A = x[:, kb0..]; B(k, n) = slab[n, k]; C = y[:, nb0 - n0 ..] */
            yf_gemm g = {.c = y + (nb0 - n0), .ldc = ldy, .a = x + kb0, .ars = K, .acs = 1, .b = slab, .bt = YF_F32,
                         .brs = 1, .bcs = kb, .M = M, .N = nb, .K = kb, .accumulate = accumulate || kb0 > 0};
            yf_gemm_run('f', &g, NULL);
        }
    }
    yf_buf_put(slab);
}

static void slab_xw(const yf_qmat *qm, float *dx, int64_t ldx, const float *dy, int64_t lddy, int64_t M, int64_t n0,
                    int64_t n1, bool accumulate) {
    int64_t K = qm->K;
    float *slab = yf_buf_get((size_t)SLAB_N * SLAB_K * sizeof(float));
    for (int64_t kb0 = 0; kb0 < K; kb0 += SLAB_K) {
        int64_t kb = K - kb0 < SLAB_K ? K - kb0 : SLAB_K;
        for (int64_t nb0 = n0; nb0 < n1; nb0 += SLAB_N) {
            int64_t nb = n1 - nb0 < SLAB_N ? n1 - nb0 : SLAB_N;
            dequant_par(qm, nb0, nb0 + nb, kb0, kb0 + kb, slab, kb);
            /* A = dy[:, nb0 - n0 ..]; B(j, k) = slab[j, k]; C = dx[:, kb0..]; the sum runs over W's rows */
            yf_gemm g = {.c = dx + kb0, .ldc = ldx, .a = dy + (nb0 - n0), .ars = lddy, .acs = 1, .b = slab,
                         .bt = YF_F32, .brs = kb, .bcs = 1, .M = M, .N = kb, .K = nb,
                         .accumulate = accumulate || nb0 > n0};
            yf_gemm_run('b', &g, NULL);
        }
    }
    yf_buf_put(slab);
}

void yf_qmat_xwt(const void *w, int64_t N, int64_t K, float *y, int64_t ldy, const float *x, int64_t M, int64_t n0,
                 int64_t n1, bool accumulate) {
    const yf_qmat *qm = yf_qmat_of(w, N, K);
    YF_CHECK(0 <= n0 && n0 <= n1 && n1 <= qm->N && ldy >= n1 - n0);
    if (M <= 0 || n1 <= n0) return;
    yf_kpath p = yf_kernels_path();
    bool idot = qm->int8_act && M <= YF_QPASS_MAX_M;
    bool vnni = p >= YF_KPATH_AVX512 && yf_cpu()->avx512_vnni;
    int64_t C = vnni || p < YF_KPATH_AVX2 ? YF_QX_C_AVX512 : YF_QX_C_AVX2;
    yf_qx qx;
    void *qxbuf = NULL;
    if (idot) {
        qxbuf = yf_buf_get(yf_qx_bytes(qm, M, C));
        yf_qx_quantize(&qx, qxbuf, x, M, qm, C);
    }
    if (idot && p < YF_KPATH_AVX2) { /* the definition: the rounded x, fp32 products */
        float *xd = yf_buf_get((size_t)(M * qm->K) * sizeof(float));
        for (int64_t m = 0; m < M; m++) yf_qx_dequant(&qx, m, xd + m * qm->K);
        if (p == YF_KPATH_REF) yf_qmat_xwt_ref(qm, y, ldy, xd, M, n0, n1, accumulate);
        else slab_xwt(qm, y, ldy, xd, M, n0, n1, accumulate);
        yf_buf_put(xd);
        yf_buf_put(qxbuf);
        return;
    }
    if (p == YF_KPATH_REF) {
        yf_qmat_xwt_ref(qm, y, ldy, x, M, n0, n1, accumulate);
        return;
    }
    if (M > YF_QPASS_MAX_M || p < YF_KPATH_AVX2) {
        slab_xwt(qm, y, ldy, x, M, n0, n1, accumulate);
        return;
    }
    /* decoding reads W once: threads pay from ~1 MiB of it (as matmul.c's
     * few-row products); pieces of 16 rows, two a thread when there are many */
    double bytes = (double)(n1 - n0) * (double)qm->K * (qm->type == YF_QT_INT8 ? 1.0 : 0.5);
    int nt = bytes < (double)(1 << 20) ? 1 : yf_par_threads();
    int64_t units = (n1 - n0 + 15) / 16, pieces = units >= 8 * nt ? 2 * nt : nt;
    if (pieces > units) pieces = units;
    /* up to YF_QPASS_MAX_M rows (batched decoding) in passes of up to 4 over
     * blocks of ~256 KiB of W (a multiple of 16 rows); one pass: the piece */
    double row_bytes = bytes / (double)(n1 - n0);
    int64_t block = M <= YF_QGEMV_MAX_M ? n1 - n0 : (int64_t)((double)(256 << 10) / row_bytes) / 16 * 16;
    gemv_job j = {qm, y, ldy, x, idot ? &qx : NULL, M, n0, n1, (units + pieces - 1) / pieces * 16,
                  block < 16 ? 16 : block, accumulate, idot ? vnni : p >= YF_KPATH_AVX512};
    pieces = (n1 - n0 + j.chunk - 1) / j.chunk;
    if (pieces <= 1)
        gemv_piece(&j, 0);
    else
        yf_par_for(pieces, gemv_piece, &j);
    if (qxbuf) yf_buf_put(qxbuf);
}

void yf_qmat_xw(const void *w, int64_t N, int64_t K, float *dx, int64_t ldx, const float *dy, int64_t lddy, int64_t M,
                int64_t n0, int64_t n1, bool accumulate) {
    const yf_qmat *qm = yf_qmat_of(w, N, K);
    YF_CHECK(0 <= n0 && n0 <= n1 && n1 <= qm->N && ldx >= qm->K && lddy >= n1 - n0);
    if (M <= 0) return;
    if (n1 <= n0) {
        for (int64_t m = 0; !accumulate && m < M; m++) memset(dx + m * ldx, 0, (size_t)qm->K * sizeof(float));
        return;
    }
    if (yf_kernels_path() == YF_KPATH_REF) {
        yf_qmat_xw_ref(qm, dx, ldx, dy, lddy, M, n0, n1, accumulate);
        return;
    }
    /* the input gradient runs in training only, over hundreds of rows: the
     * general products on fp32 blocks of W, whatever the row count */
    slab_xw(qm, dx, ldx, dy, lddy, M, n0, n1, accumulate);
}
