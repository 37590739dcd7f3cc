/* ops: per-op forward/backward kernels (see ops.h). Plain loops: elementwise
 * and row-wise ops on the thread pool (base/pool.h) in chunks, the scalar
 * attention over (batch, head) and a few others under OpenMP above PAR's
 * size; the matrix products live in kernels/cpu. The elementwise loops carry
 * `omp simd`: gcc -O2 vectorises no loop whose trip count or aliasing it
 * cannot prove (its "very cheap" cost model), and without reductions or fp
 * contraction (-std=c11) the vector loop computes the same bits. Exp-heavy
 * ops and the double sums have AVX-512 forms (kernels/cpu/ops_avx512.c). */
#include "model/ops.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/ops_fast.h"
#include "base/pool.h"
#include "kernels/cpu/vecmath.h"
#if defined(__AVX2__)
#include "kernels/cpu/simd8.h"
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Threads only pay off above some work: a parallel region costs microseconds
 * on idle cores, but on cores shared with other processes its closing barrier
 * waits for descheduled threads and libgomp's threads spin for milliseconds
 * after it; these loops are memory-bound, so they stay on one thread below
 * 2M elements (a 384 x 8192 activation is 3.1M) and the matmul pool does the
 * parallel work. */
#define PAR(work) ((int64_t)(work) >= ((int64_t)1 << 21))

static bool g_reference, g_no_avx512;
void yf_ops_set_reference(bool on) { g_reference = on; }
void yf_ops_set_avx512(bool on) { g_no_avx512 = !on; }

/* the AVX-512 forms (ops_avx512.c) */
static bool fast(void) { return YF_OPS_AVX512 && !g_reference && !g_no_avx512 && yf_cpu()->avx512; }

/* Elementwise ops above PAR's size run in chunks of CHUNK elements (a multiple
 * of 16, so the vector forms see aligned counters) on the thread pool: chunks
 * are handed out dynamically, so a descheduled thread does not hold the others
 * at a barrier as an OpenMP region's does. */
#define CHUNK ((int64_t)1 << 16)
static void chunked(int64_t n, yf_par_fn fn, void *ctx) {
    int64_t nc = (n + CHUNK - 1) / CHUNK;
    /* the pool hands out chunks for microseconds, so from 4 chunks on (a
     * [384, 2048] dropout: ~0.15 ms on one core) both threads take part */
    if (n >= 4 * CHUNK && nc < 65536)
        yf_par_for(nc, fn, ctx);
    else
        for (int64_t c = 0; c < nc; c++) fn(ctx, c);
}
static inline int64_t chunk_len(int64_t n, int64_t c) { return n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK; }

/* Row-wise ops (each row's result depends on that row alone, so the split
 * changes no bits) on the pool the same way: pieces of about CHUNK elements,
 * from 4 chunks' work on. Not an OpenMP region: below PAR's size it would
 * leave them on one thread, and at T = 384 the norms, RoPE and head
 * reshuffles of a training step would run on the caller while the other core
 * waits. */
typedef void (*rows_fn)(void *ctx, int64_t r0, int64_t r1);
typedef struct rows_job {
    rows_fn fn;
    void *ctx;
    int64_t n, per;
} rows_job;

static void rows_piece(void *ctx, int64_t i) {
    const rows_job *j = ctx;
    int64_t r0 = i * j->per, r1 = r0 + j->per < j->n ? r0 + j->per : j->n;
    if (r0 < r1) j->fn(j->ctx, r0, r1);
}

static void by_rows(int64_t n, int64_t row_elems, rows_fn fn, void *ctx) {
    if (n <= 0) return;
    int64_t per = row_elems >= CHUNK ? 1 : CHUNK / (row_elems > 0 ? row_elems : 1);
    if (n * row_elems < 4 * CHUNK || n < 2 || (n + per - 1) / per >= 65536) {
        fn(ctx, 0, n);
        return;
    }
    rows_job j = {fn, ctx, n, per};
    yf_par_for((n + per - 1) / per, rows_piece, &j);
}

/* ---- RMSNorm -------------------------------------------------------------- */

typedef struct norm_job {
    float *y, *dx, *rs;
    const float *x, *w, *dy;
    const float *rsc;
    int64_t D;
    float eps;
    bool acc;
} norm_job;

static void rmsnorm_fwd_rows(void *ctx, int64_t r0, int64_t r1) {
    const norm_job *j = ctx;
    int64_t D = j->D;
    for (int64_t n = r0; n < r1; n++) {
        const float *xr = j->x + n * D, *w = j->w;
        float *yr = j->y + n * D;
        double ss = 0;
#if YF_OPS_AVX512
        if (fast())
            ss = yf_sumsq_avx512(xr, D);
        else
#endif
            for (int64_t i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / (double)D + (double)j->eps));
        if (j->rs) j->rs[n] = r;
#pragma omp simd
        for (int64_t i = 0; i < D; i++) yr[i] = w[i] * (xr[i] * r);
    }
}

void yf_rmsnorm_fwd(float *y, float *rs, const float *x, const float *w, int64_t N, int64_t D, float eps) {
    norm_job j = {.y = y, .rs = rs, .x = x, .w = w, .D = D, .eps = eps};
    by_rows(N, D, rmsnorm_fwd_rows, &j);
}

static void rmsnorm_bwd_rows(void *ctx, int64_t r0, int64_t r1) {
    /* y_i = w_i x_i r with r = (mean(x^2)+eps)^-1/2, dr/dx_i = -r^3 x_i / D:
     * dx_i = r w_i dy_i - r^3 x_i / D * sum_j w_j dy_j x_j */
    const norm_job *j = ctx;
    int64_t D = j->D;
    const float *w = j->w;
    for (int64_t n = r0; n < r1; n++) {
        const float *xr = j->x + n * D, *dyr = j->dy + n * D;
        float *dxr = j->dx + n * D;
        float r = j->rsc[n];
        double dot = 0;
#if YF_OPS_AVX512
        if (fast())
            dot = yf_dot3_avx512(w, dyr, xr, D);
        else
#endif
            for (int64_t i = 0; i < D; i++) dot += (double)w[i] * dyr[i] * xr[i];
        float c = (float)(dot * r * r * r / (double)D);
        if (j->acc) {
#pragma omp simd
            for (int64_t i = 0; i < D; i++) dxr[i] += r * w[i] * dyr[i] - c * xr[i];
        } else {
#pragma omp simd
            for (int64_t i = 0; i < D; i++) dxr[i] = r * w[i] * dyr[i] - c * xr[i];
        }
    }
}

void yf_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *rs, const float *w,
                    int64_t N, int64_t D, bool acc) {
    norm_job j = {.dx = dx, .x = x, .w = w, .dy = dy, .rsc = rs, .D = D, .acc = acc};
    by_rows(N, D, rmsnorm_bwd_rows, &j);
    if (dw) {
        /* row by row: a column walk strides D floats a step (8% of a small
         * model's step); each column still sums its rows in order, in double */
        double *s = yf_calloc((size_t)D, sizeof(double));
        for (int64_t n = 0; n < N; n++) {
            const float *dyr = dy + n * D, *xr = x + n * D;
            double r = rs[n];
#pragma omp simd
            for (int64_t i = 0; i < D; i++) s[i] += (double)dyr[i] * xr[i] * r;
        }
        for (int64_t i = 0; i < D; i++) dw[i] += (float)s[i];
        free(s);
    }
}

/* ---- convolution helpers ---------------------------------------------------- */

typedef struct conv_job {
    float *out;
    const float *a, *prev;
    int64_t T, C;
    bool acc;
} conv_job;

static void conv_pack_rows(void *ctx, int64_t r0, int64_t r1) {
    const conv_job *j = ctx;
    int64_t T = j->T, C = j->C;
    for (int64_t n = r0; n < r1; n++) {
        int64_t b = n / T, t = n % T;
        const float *cur = j->a + n * C;
        const float *before = t > 0 ? j->a + (n - 1) * C : (j->prev ? j->prev + b * C : NULL);
        float *o = j->out + n * 2 * C;
        if (before) {
#pragma omp simd
            for (int64_t i = 0; i < C; i++) {
                o[2 * i] = before[i];
                o[2 * i + 1] = cur[i];
            }
        } else {
#pragma omp simd
            for (int64_t i = 0; i < C; i++) {
                o[2 * i] = 0.0f;
                o[2 * i + 1] = cur[i];
            }
        }
    }
}

void yf_conv_pack(float *x2, const float *a, const float *prev, int64_t B, int64_t T, int64_t C) {
    conv_job j = {.out = x2, .a = a, .prev = prev, .T = T, .C = C};
    by_rows(B * T, 2 * C, conv_pack_rows, &j);
}

static void conv_unpack_rows(void *ctx, int64_t r0, int64_t r1) {
    const conv_job *j = ctx;
    int64_t T = j->T, C = j->C;
    for (int64_t n = r0; n < r1; n++) {
        int64_t t = n % T;
        const float *g = j->a + n * 2 * C;
        /* a[t] is x2[t+1]'s "before"; the last row has none (+ 0.0f keeps the sums' signed zeros) */
        const float *gnext = t + 1 < T ? j->a + (n + 1) * 2 * C : NULL;
        float *o = j->out + n * C;
        if (gnext && j->acc) {
#pragma omp simd
            for (int64_t i = 0; i < C; i++) o[i] += g[2 * i + 1] + gnext[2 * i];
        } else if (gnext) {
#pragma omp simd
            for (int64_t i = 0; i < C; i++) o[i] = g[2 * i + 1] + gnext[2 * i];
        } else if (j->acc) {
#pragma omp simd
            for (int64_t i = 0; i < C; i++) o[i] += g[2 * i + 1] + 0.0f;
        } else {
#pragma omp simd
            for (int64_t i = 0; i < C; i++) o[i] = g[2 * i + 1] + 0.0f;
        }
    }
}

void yf_conv_unpack_bwd(float *da, const float *dx2, int64_t B, int64_t T, int64_t C, bool acc) {
    conv_job j = {.out = da, .a = dx2, .T = T, .C = C, .acc = acc};
    by_rows(B * T, 2 * C, conv_unpack_rows, &j);
}

void yf_conv_prev_bwd(float *dprev, const float *dx2, int64_t B, int64_t T, int64_t C) {
    for (int64_t b = 0; b < B; b++) {
        const float *g = dx2 + b * T * 2 * C; /* each sequence's first row: prev is its "before" */
        float *o = dprev + b * C;
#pragma omp simd
        for (int64_t i = 0; i < C; i++) o[i] += g[2 * i];
    }
}

void yf_bias_fwd(float *y, const float *b, int64_t N, int64_t C) {
#pragma omp parallel for if (PAR(N * C)) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float *yr = y + n * C;
#pragma omp simd
        for (int64_t i = 0; i < C; i++) yr[i] += b[i];
    }
}

void yf_bias_bwd(float *db, const float *dy, int64_t N, int64_t C) {
    double *s = yf_calloc((size_t)C, sizeof(double)); /* row by row, each column in row order */
    for (int64_t n = 0; n < N; n++) {
        const float *g = dy + n * C;
#pragma omp simd
        for (int64_t i = 0; i < C; i++) s[i] += g[i];
    }
    for (int64_t i = 0; i < C; i++) db[i] += (float)s[i];
    free(s);
}

/* ---- RoPE + query/key interleave ------------------------------------------------ */

void yf_rope_tables(float *cos_t, float *sin_t, int64_t P, int64_t hd, double theta) {
    /* As the reference: inv_freq, positions and their product in fp32, so the
     * angles round the same way; cos/sin of that fp32 angle. */
    int64_t half = hd / 2;
    for (int64_t i = 0; i < half; i++) {
        float inv = 1.0f / powf((float)theta, (float)(2 * i) / (float)hd);
        for (int64_t p = 0; p < P; p++) {
            float ang = (float)p * inv;
            cos_t[p * half + i] = (float)cos((double)ang);
            sin_t[p * half + i] = (float)sin((double)ang);
        }
    }
}

/* Element idx of the row's [q' | k'] concatenation. A head's four half
 * vectors (q1, q2, k1, k2 at base + {0, half, hd, hd + half}, base = 2 hd h,
 * D = H hd) never straddle q' and k' (that would need 2h < H < 2h + 1), so
 * each is resolved to a pointer once and the inner loops are plain vectorisable
 * loops. */
static inline const float *cat_at(const float *qr, const float *kr, int64_t D, int64_t idx) {
    return idx < D ? qr + idx : kr + (idx - D);
}

typedef struct rope_job {
    float *q, *k;
    const float *qp, *kp, *cos_t, *sin_t;
    int64_t T, H, hd, pos0;
    const int64_t *posb;
} rope_job;

static void rope_fwd_rows(void *ctx, int64_t r0, int64_t r1) {
    const rope_job *j = ctx;
    int64_t T = j->T, H = j->H, hd = j->hd, D = H * hd, half = hd / 2;
    for (int64_t n = r0; n < r1; n++) {
        int64_t b = n / T, t = n % T;
        const float *qr = j->qp + n * D, *kr = j->kp + n * D;
        int64_t p = j->pos0 + (j->posb ? j->posb[b] : 0) + t;
        const float *cs = j->cos_t + p * half, *sn = j->sin_t + p * half;
        for (int64_t h = 0; h < H; h++) {
            int64_t base = 2 * hd * h;
            const float *q1 = cat_at(qr, kr, D, base), *q2 = cat_at(qr, kr, D, base + half);
            const float *k1 = cat_at(qr, kr, D, base + hd), *k2 = cat_at(qr, kr, D, base + hd + half);
            float *oq = j->q + ((b * H + h) * T + t) * hd, *ok = j->k + ((b * H + h) * T + t) * hd;
#pragma omp simd
            for (int64_t i = 0; i < half; i++) {
                oq[i] = q1[i] * cs[i] - q2[i] * sn[i];
                oq[i + half] = q2[i] * cs[i] + q1[i] * sn[i];
                ok[i] = k1[i] * cs[i] - k2[i] * sn[i];
                ok[i + half] = k2[i] * cs[i] + k1[i] * sn[i];
            }
        }
    }
}

void yf_qk_rope_fwd(float *q, float *k, const float *qp, const float *kp, const float *cos_t, const float *sin_t,
                    int64_t B, int64_t T, int64_t H, int64_t hd, int64_t pos0, const int64_t *posb) {
    rope_job j = {q, k, qp, kp, cos_t, sin_t, T, H, hd, pos0, posb};
    by_rows(B * T, 2 * H * hd, rope_fwd_rows, &j);
}

static void rope_bwd_rows(void *ctx, int64_t r0, int64_t r1) {
    const rope_job *j = ctx;
    int64_t T = j->T, H = j->H, hd = j->hd, D = H * hd, half = hd / 2;
    for (int64_t n = r0; n < r1; n++) {
        int64_t b = n / T, t = n % T;
        float *qr = j->q + n * D, *kr = j->k + n * D; /* dqp, dkp */
        const float *cs = j->cos_t + (j->pos0 + t) * half, *sn = j->sin_t + (j->pos0 + t) * half;
        for (int64_t h = 0; h < H; h++) {
            int64_t base = 2 * hd * h;
            float *q1 = (float *)cat_at(qr, kr, D, base), *q2 = (float *)cat_at(qr, kr, D, base + half);
            float *k1 = (float *)cat_at(qr, kr, D, base + hd), *k2 = (float *)cat_at(qr, kr, D, base + hd + half);
            const float *gq = j->qp + ((b * H + h) * T + t) * hd, *gk = j->kp + ((b * H + h) * T + t) * hd;
#pragma omp simd
            for (int64_t i = 0; i < half; i++) { /* the rotation's transpose */
                q1[i] = gq[i] * cs[i] + gq[i + half] * sn[i];
                q2[i] = gq[i + half] * cs[i] - gq[i] * sn[i];
                k1[i] = gk[i] * cs[i] + gk[i + half] * sn[i];
                k2[i] = gk[i + half] * cs[i] - gk[i] * sn[i];
            }
        }
    }
}

void yf_qk_rope_bwd(float *dqp, float *dkp, const float *dq, const float *dk, const float *cos_t,
                    const float *sin_t, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t pos0) {
    rope_job j = {dqp, dkp, dq, dk, cos_t, sin_t, T, H, hd, pos0, NULL};
    by_rows(B * T, 2 * H * hd, rope_bwd_rows, &j);
}

/* [B, T, H, hd] <-> [B, H, T, hd], one (b, h) block of T rows of hd floats
 * per unit (rows: a loop, not a call to memcpy per row) */
typedef struct heads_job {
    float *dst;
    const float *src;
    int64_t T, H, hd;
    bool merge;
} heads_job;

static void heads_rows(void *ctx, int64_t u0, int64_t u1) {
    const heads_job *j = ctx;
    int64_t T = j->T, H = j->H, hd = j->hd;
    for (int64_t u = u0; u < u1; u++) {
        int64_t b = u / H, h = u % H;
        for (int64_t t = 0; t < T; t++) {
            int64_t flat = (b * T + t) * H * hd + h * hd, split = ((b * H + h) * T + t) * hd;
            float *o = j->dst + (j->merge ? flat : split);
            const float *in = j->src + (j->merge ? split : flat);
#pragma omp simd
            for (int64_t i = 0; i < hd; i++) o[i] = in[i];
        }
    }
}

void yf_heads_split(float *xh, const float *x, int64_t B, int64_t T, int64_t H, int64_t hd) {
    heads_job j = {xh, x, T, H, hd, false};
    by_rows(B * H, T * hd, heads_rows, &j);
}

void yf_heads_merge(float *x, const float *xh, int64_t B, int64_t T, int64_t H, int64_t hd) {
    heads_job j = {x, xh, T, H, hd, true};
    by_rows(B * H, T * hd, heads_rows, &j);
}

/* ---- attention ---------------------------------------------------------------- */

void yf_doc_starts(int64_t *start, const int64_t *ids, int64_t B, int64_t T, int64_t eod, bool reset) {
    for (int64_t b = 0; b < B; b++) {
        int64_t s = 0;
        for (int64_t t = 0; t < T; t++) {
            start[b * T + t] = s;
            /* tokens after an <eod> at t see nothing at <= t; the <eod> itself keeps its document */
            if (reset && ids[b * T + t] == eod) s = t + 1;
        }
    }
}

static inline float dot(const float *a, const float *b, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void yf_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v, const int64_t *start,
                      int64_t B, int64_t H, int64_t Tq, int64_t ld, int64_t hd, int64_t pos0, const int64_t *posb) {
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel if (PAR(B * H * Tq * (pos0 + Tq) * hd))
    {
        float *p = malloc((size_t)(ld > pos0 + Tq ? ld : pos0 + Tq) * sizeof(float));
#pragma omp for collapse(2) schedule(dynamic)
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++) {
                const float *kb = k + (b * H + h) * ld * hd, *vb = v + (b * H + h) * ld * hd;
                for (int64_t t = 0; t < Tq; t++) {
                    const float *qt = q + ((b * H + h) * Tq + t) * hd;
                    float *ot = out + ((b * H + h) * Tq + t) * hd;
                    int64_t j0 = start[b * Tq + t], j1 = pos0 + (posb ? posb[b] : 0) + t;
                    float mx = -INFINITY;
                    for (int64_t j = j0; j <= j1; j++) {
                        p[j] = dot(qt, kb + j * hd, hd) * scale;
                        if (p[j] > mx) mx = p[j];
                    }
                    double sum = 0;
                    for (int64_t j = j0; j <= j1; j++) {
                        p[j] = expf(p[j] - mx);
                        sum += p[j];
                    }
                    float inv = (float)(1.0 / sum);
                    memset(ot, 0, (size_t)hd * sizeof(float));
                    for (int64_t j = j0; j <= j1; j++) {
                        float w = p[j] * inv;
                        const float *vj = vb + j * hd;
                        for (int64_t i = 0; i < hd; i++) ot[i] += w * vj[i];
                    }
                    if (lse) lse[(b * H + h) * Tq + t] = mx + (float)log(sum);
                }
            }
        free(p);
    }
}

void yf_attention_bwd_kv_ref(float *dq, float *dk, float *dv, const float *dout, const float *lse, const float *q,
                             const float *k, const float *v, const int64_t *start, int64_t B, int64_t H, int64_t Tq,
                             int64_t ld, int64_t hd, int64_t pos0) {
    float scale = 1.0f / sqrtf((float)hd);
    int64_t nk = pos0 + Tq;
#pragma omp parallel if (PAR(B * H * Tq * nk * hd))
    {
        float *p = malloc((size_t)nk * sizeof(float)), *dp = malloc((size_t)nk * sizeof(float));
#pragma omp for collapse(2) schedule(dynamic)
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++) {
                int64_t off = (b * H + h) * Tq * hd, koff = (b * H + h) * ld * hd;
                const float *qb = q + off, *kb = k + koff, *vb = v + koff, *gb = dout + off;
                float *dqb = dq + off, *dkb = dk + koff, *dvb = dv + koff;
                memset(dkb, 0, (size_t)(nk * hd) * sizeof(float));
                memset(dvb, 0, (size_t)(nk * hd) * sizeof(float));
                for (int64_t t = 0; t < Tq; t++) {
                    const float *qt = qb + t * hd, *gt = gb + t * hd;
                    float *dqt = dqb + t * hd;
                    float l = lse[(b * H + h) * Tq + t];
                    int64_t j0 = start[b * Tq + t], j1 = pos0 + t;
                    double dsum = 0;
                    for (int64_t j = j0; j <= j1; j++) {
                        p[j] = expf(dot(qt, kb + j * hd, hd) * scale - l); /* the forward's softmax */
                        dp[j] = dot(gt, vb + j * hd, hd);
                        dsum += (double)p[j] * dp[j];
                    }
                    memset(dqt, 0, (size_t)hd * sizeof(float));
                    for (int64_t j = j0; j <= j1; j++) {
                        float ds = p[j] * (dp[j] - (float)dsum) * scale; /* d score (pre-scale) */
                        const float *kj = kb + j * hd;
                        float *dkj = dkb + j * hd, *dvj = dvb + j * hd;
                        for (int64_t i = 0; i < hd; i++) {
                            dqt[i] += ds * kj[i];
                            dkj[i] += ds * qt[i];
                            dvj[i] += p[j] * gt[i];
                        }
                    }
                }
            }
        free(p);
        free(dp);
    }
}

void yf_attention_bwd_ref(float *dq, float *dk, float *dv, const float *dout, const float *lse, const float *q,
                          const float *k, const float *v, const int64_t *start, int64_t B, int64_t H, int64_t T,
                          int64_t hd) {
    yf_attention_bwd_kv_ref(dq, dk, dv, dout, lse, q, k, v, start, B, H, T, T, hd, 0);
}

/* ---- SwiGLU -------------------------------------------------------------------- */

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

typedef struct {
    float *o1, *o2;
    const float *a, *b, *c;
    int64_t n;
    int64_t base; /* dropout: the mask index of element 0 */
    uint32_t thr, s0, s1;
    float ks;
} ew_job;

static void add_chunk(void *ctx, int64_t c) {
    const ew_job *j = ctx;
    int64_t i0 = c * CHUNK, n = chunk_len(j->n, c);
    float *y = j->o1 + i0;
    const float *a = j->a + i0, *b = j->b + i0;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void yf_add(float *y, const float *a, const float *b, int64_t n) {
    ew_job j = {.o1 = y, .a = a, .b = b, .n = n};
    chunked(n, add_chunk, &j);
}

static void swiglu_fwd_chunk(void *ctx, int64_t c) {
    const ew_job *j = ctx;
    int64_t i0 = c * CHUNK, n = chunk_len(j->n, c);
    float *z = j->o1 + i0;
    const float *g = j->a + i0, *u = j->b + i0;
#if YF_OPS_AVX512
    if (fast()) {
        yf_swiglu_fwd_avx512(z, g, u, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) z[i] = g[i] * (u[i] * sigmoidf(u[i]));
}

void yf_swiglu_fwd(float *z, const float *g, const float *u, int64_t n) {
    ew_job j = {.o1 = z, .a = g, .b = u, .n = n};
    chunked(n, swiglu_fwd_chunk, &j);
}

static void swiglu_bwd_chunk(void *ctx, int64_t c) {
    const ew_job *j = ctx;
    int64_t i0 = c * CHUNK, n = chunk_len(j->n, c);
    float *dg = j->o1 + i0, *du = j->o2 + i0;
    const float *dz = j->a + i0, *g = j->b + i0, *u = j->c + i0;
#if YF_OPS_AVX512
    if (fast()) {
        yf_swiglu_bwd_avx512(dg, du, dz, g, u, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) { /* every input read before the outputs: dg may be g, du u */
        float gi = g[i], ui = u[i], d = dz[i], s = sigmoidf(ui);
        dg[i] = d * ui * s;
        du[i] = d * gi * s * (1.0f + ui * (1.0f - s));
    }
}

void yf_swiglu_bwd(float *dg, float *du, const float *dz, const float *g, const float *u, int64_t n) {
    ew_job j = {.o1 = dg, .o2 = du, .a = dz, .b = g, .c = u, .n = n};
    chunked(n, swiglu_bwd_chunk, &j);
}

/* ---- cross-entropy -------------------------------------------------------------- */

typedef struct {
    float *dlogits;
    const float *logits;
    const int64_t *target;
    int64_t V;
    float scale;
    double *loss; /* per row, summed in row order afterwards: the same total on any thread count */
} xent_job;

static void xent_row(void *ctx, int64_t r) {
    const xent_job *j = ctx;
    int64_t V = j->V, tg = j->target[r];
    const float *x = j->logits + r * V;
    float *d = j->dlogits ? j->dlogits + r * V : NULL;
    j->loss[r] = 0;
    if (tg < 0) {
        if (d) memset(d, 0, (size_t)V * sizeof(float));
        return;
    }
#if YF_OPS_AVX512
    if (fast()) {
        j->loss[r] = yf_xent_row_avx512(d, x, V, tg, j->scale);
        return;
    }
#endif
    float xt = x[tg], mx = yf_max_of(x, V);
    double sum = 0;
    if (d) {
        /* the exponentials go to the gradient row (softmax = them / sum); may overwrite x when d == x */
        sum = yf_exp_affine_sum(d, x, V, 1.0f, mx);
        float k = (float)(j->scale / sum);
        for (int64_t i = 0; i < V; i++) d[i] *= k;
        d[tg] -= j->scale;
    } else {
        float e[1024]; /* else to a scratch piece */
        for (int64_t i = 0; i < V; i += 1024) sum += yf_exp_affine_sum(e, x + i, V - i < 1024 ? V - i : 1024, 1.0f, mx);
    }
    j->loss[r] = (double)mx + log(sum) - (double)xt;
}

double yf_xent(float *dlogits, const float *logits, const int64_t *target, int64_t R, int64_t V, float scale) {
    xent_job j = {dlogits, logits, target, V, scale, yf_malloc((size_t)(R > 0 ? R : 1) * sizeof(double))};
    if (PAR(R * V) && R < 65536)
        yf_par_for(R, xent_row, &j);
    else
        for (int64_t r = 0; r < R; r++) xent_row(&j, r);
    double total = 0;
    for (int64_t r = 0; r < R; r++) total += j.loss[r];
    free(j.loss);
    return total;
}

double yf_exp_sum(float *y, const float *x, int64_t n, float shift) {
#if YF_OPS_AVX512
    if (fast()) return yf_exp_sum_avx512(y, x, n, shift);
#endif
    return yf_exp_affine_sum(y, x, n, 1.0f, shift);
}

double yf_exp_sum_bf16(uint16_t *dst, int64_t stride, const float *x, int64_t n, float shift) {
#if YF_OPS_AVX512
    if (fast() && yf_cpu()->avx512_bf16) return yf_exp_sum_bf16_avx512(dst, stride, x, n, shift);
#endif
    float *e = yf_malloc((size_t)(n + 32) * sizeof(float));
    double sum = yf_exp_sum(e, x, n, shift);
    for (int64_t k = 0; k < n; k += 32)
        for (int64_t c = 0; c < 32; c++) dst[(k / 32) * stride + c] = k + c < n ? yf_f32_to_bf16(e[k + c]) : 0;
    free(e);
    return sum;
}

bool yf_exp_block_bf16(uint16_t *dst, const float *blk, int64_t rows, int64_t cols, uint32_t live,
                       const float *shift, double *acc, float lim) {
#if YF_OPS_AVX512
    if (fast() && yf_cpu()->avx512_bf16) return yf_exp_block_bf16_avx512(dst, blk, rows, cols, live, shift, acc, lim);
#endif
    bool over = false;
    for (int64_t i = 0; i < 32; i++) {
        uint16_t *d = dst + 32 * i;
        if (i >= rows || !(live >> i & 1)) {
            memset(d, 0, 32 * sizeof(uint16_t));
            continue;
        }
        const float *l = blk + 32 * i;
        float e[32] = {0};
        for (int64_t c = 0; c < cols; c++) {
            over |= l[c] - shift[i] > lim;
            e[c] = expf(l[c] - shift[i]);
        }
        for (int64_t c = 0; c < 32; c++) d[c] = c < cols ? yf_f32_to_bf16(e[c]) : 0;
        for (int64_t h = 0; h < 2; h++) /* as yf_exp16_bf16_acc: half by half, each exp added in double */
            for (int64_t c = 0; c < 16; c++) acc[16 * i + c] += (double)e[16 * h + c];
    }
    return over;
}

/* ---- embedding ------------------------------------------------------------------ */

void yf_embed_fwd(float *h, const void *w, yf_dtype wdtype, const int64_t *ids, int64_t N, int64_t D) {
#pragma omp parallel for if (PAR(N * D)) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float *o = h + n * D;
        if (wdtype == YF_F32) {
            memcpy(o, (const float *)w + ids[n] * D, (size_t)D * sizeof(float));
        } else {
            const uint16_t *r = (const uint16_t *)w + ids[n] * D;
            for (int64_t i = 0; i < D; i++) o[i] = yf_bf16_to_f32(r[i]);
        }
    }
}

void yf_embed_bwd(float *dw, const float *dh, const int64_t *ids, int64_t N, int64_t D) {
    for (int64_t n = 0; n < N; n++) {
        float *o = dw + ids[n] * D;
        const float *g = dh + n * D;
        for (int64_t i = 0; i < D; i++) o[i] += g[i];
    }
}

/* ---- dropout --------------------------------------------------------------------- */

static inline uint32_t drop_hash(uint64_t i, uint32_t s0, uint32_t s1) {
    uint32_t h = ((uint32_t)i + s0) ^ ((uint32_t)(i >> 32) * 0xc2b2ae35u) ^ s1;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    return h ^ (h >> 16);
}

#if defined(__AVX2__)
/* The mask 8 lanes at a time (the build's x86-64-v3 baseline; AVX-512 CPUs
 * take yf_dropout_avx512): the same hash as drop_hash (simd8.h). */
static int64_t dropout_avx2(float *y, const float *x, int64_t i0, int64_t n, uint32_t thr, float keep_scale,
                            uint32_t s0, uint32_t s1) {
    const __m256 ks = _mm256_set1_ps(keep_scale);
    int64_t nv = n & ~(int64_t)7;
    for (int64_t k = 0; k < nv; k += 8) {
        __m256i keep = yf_drop8_keep((uint64_t)(i0 + k), thr, s0, s1);
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + k), ks);
        _mm256_storeu_ps(y + k, _mm256_and_ps(_mm256_castsi256_ps(keep), v));
    }
    return nv;
}
#endif

static void dropout_chunk(void *ctx, int64_t c) {
    const ew_job *j = ctx;
    int64_t i0 = c * CHUNK, n = chunk_len(j->n, c), done = 0, b = j->base;
#if YF_OPS_AVX512
    if (fast()) {
        yf_dropout_avx512(j->o1 + i0, j->a + i0, b + i0, n, j->thr, j->ks, j->s0, j->s1);
        return;
    }
#endif
#if defined(__AVX2__)
    if (!g_reference) done = dropout_avx2(j->o1 + i0, j->a + i0, b + i0, n, j->thr, j->ks, j->s0, j->s1);
#endif
    for (int64_t i = i0 + done; i < i0 + n; i++)
        j->o1[i] = drop_hash((uint64_t)(b + i), j->s0, j->s1) >= j->thr ? j->a[i] * j->ks : 0.0f;
}

yf_drop yf_dropout_params(float p, uint64_t seed) {
    /* keep(i): a 32-bit hash of (seed, i) (murmur3's finaliser over the
     * counter mixed with the seed's halves) >= p 2^32, in 32-bit integer
     * arithmetic so that AVX-512 takes 16 lanes at a time (a 64-bit scalar
     * hash costs 5-7% of a LoRA step); the vector and scalar forms give the
     * same mask */
    double tf = (double)p * 4294967296.0;
    return (yf_drop){.thr = tf >= 4294967295.0 ? 0xffffffffu : (uint32_t)tf, .ks = 1.0f / (1.0f - p),
                     .s0 = (uint32_t)seed * 0x9e3779b9u, .s1 = (uint32_t)(seed >> 32) ^ 0x85ebca6bu};
}

void yf_dropout_at(float *y, const float *x, int64_t n, float p, uint64_t seed, int64_t base) {
    YF_CHECK(base % 16 == 0); /* the vector forms' lane groups start where the whole array's do */
    yf_drop d = yf_dropout_params(p, seed);
    ew_job j = {.o1 = y, .a = x, .n = n, .base = base, .ks = d.ks, .thr = d.thr, .s0 = d.s0, .s1 = d.s1};
    chunked(n, dropout_chunk, &j);
}

void yf_dropout(float *y, const float *x, int64_t n, float p, uint64_t seed) { yf_dropout_at(y, x, n, p, seed, 0); }
