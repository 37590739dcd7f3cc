/* The fast paths added for training speed against their naive references on
 * odd sizes: the few-column (LoRA rank) matmul kernels, the blocked attention
 * (forward and backward, T = 1, 17, 70 across the 64-row blocks, document
 * resets, head dims not multiples of 16), the decode attention, the
 * vectorised cross-entropy, and
 * the buffer cache. Exact mode must match to fp32 rounding; bf16 mode to the
 * rounding of the products' operands. */
#include "harness.h"
#include "base/bufcache.h"
#include "kernels/cpu/kernels.h"
#include "model/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { return yt_frand(&g_rng); }
static float *frand_n(int64_t n, float s) { return yt_frand_n(&g_rng, n, s); }

/* ---- narrow products (N <= 16 columns, as LoRA's x A^T, dy B, dB, dA) ---- */

static double narrow_err(int op, int64_t M, int64_t N, int64_t K, bool acc) {
    int64_t na = op == 2 ? M * N : (op == 0 ? M * K : M * N), nb = op == 2 ? M * K : N * K;
    int64_t nc = op == 0 ? M * N : (op == 1 ? M * K : N * K);
    float *a = frand_n(na, 1), *b = frand_n(nb, 1), *c = frand_n(nc, 1), *r = malloc((size_t)nc * sizeof(float));
    memcpy(r, c, (size_t)nc * sizeof(float));
    if (op == 0) {
        yf_matmul_xwt(c, a, b, YF_F32, M, N, K, acc);
        yf_matmul_xwt_ref(r, a, b, YF_F32, M, N, K, acc);
    } else if (op == 1) {
        yf_matmul_xw(c, a, b, YF_F32, M, N, K, acc);
        yf_matmul_xw_ref(r, a, b, YF_F32, M, N, K, acc);
    } else {
        yf_matmul_dw(c, a, b, M, N, K);
        yf_matmul_dw_ref(r, a, b, M, N, K);
    }
    double e = yt_max_abs_diff(c, r, (size_t)nc) / sqrt((double)(op == 1 ? N : op == 2 ? M : K) + 1);
    for (int64_t i = 0; i < nc; i++)
        if (!isfinite(c[i])) e = INFINITY;
    free(a), free(b), free(c), free(r);
    return e;
}

TEST(fastops_narrow_matmuls_match_ref) {
    /* rank-like sizes (1, 8, 13, 16) on either side, rows not multiples of 4/16 */
    static const int64_t sh[][3] = {{37, 8, 70}, {37, 13, 5}, {1, 8, 33}, {50, 16, 130}, {3, 1, 17},
                                    {70, 8, 8}, {8, 70, 37}, {16, 33, 8}, {21, 5, 1}};
    double worst = 0;
    for (int prec = 0; prec < 2; prec++) {
        yf_kernels_set_precision(prec ? YF_PREC_BF16 : YF_PREC_EXACT);
        for (size_t s = 0; s < sizeof sh / sizeof *sh; s++)
            for (int op = 0; op < 3; op++)
                for (int acc = 0; acc < 2; acc++) {
                    double e = narrow_err(op, sh[s][0], sh[s][1], sh[s][2], acc || op == 2);
                    double tol = prec ? 2e-2 : 1e-6;
                    CHECK(e <= tol, "op %d [%lld,%lld,%lld] acc %d prec %d: err %g", op, (long long)sh[s][0],
                          (long long)sh[s][1], (long long)sh[s][2], acc, prec, e);
                    if (!prec && e > worst) worst = e;
                }
    }
    yf_kernels_set_precision(YF_PREC_EXACT);
    CHECK_NEAR("narrow products, exact mode (abs err / sqrt(terms))", worst, 1e-6);
}

/* ---- attention --------------------------------------------------------------- */

/* Tq query rows at positions pos0.. of B sequences; keys and values of
 * positions 0..pos0+Tq-1, ld >= pos0+Tq rows apart (a cache, or a shared
 * prefix followed by the rows' own). */
static void attn_case(int64_t B, int64_t H, int64_t T, int64_t hd, int64_t pos0, int64_t ld, bool reset,
                      yf_precision prec, double tol, double *ef, double *eb) {
    int64_t n = B * H * T * hd, nkv = B * H * ld * hd, P = pos0 + T;
    float *q = frand_n(n, 2), *k = frand_n(nkv, 2), *v = frand_n(nkv, 1), *g = frand_n(n, 1);
    int64_t *ids = malloc((size_t)(B * P) * sizeof(int64_t)), *sfull = malloc((size_t)(B * P) * sizeof(int64_t));
    int64_t *start = malloc((size_t)(B * T) * sizeof(int64_t));
    for (int64_t i = 0; i < B * P; i++) ids[i] = (frand() > 0.8f) ? 3 : 5; /* 3 = <eod> */
    yf_doc_starts(sfull, ids, B, P, 3, reset);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) start[b * T + t] = sfull[b * P + pos0 + t];
    float *o0 = malloc((size_t)n * sizeof(float)), *o1 = malloc((size_t)n * sizeof(float));
    float *l0 = malloc((size_t)(B * H * T) * sizeof(float)), *l1 = malloc((size_t)(B * H * T) * sizeof(float));
    float *d0[3], *d1[3];
    for (int i = 0; i < 3; i++) {
        int64_t m = i ? nkv : n;
        d0[i] = calloc((size_t)m, sizeof(float)), d1[i] = calloc((size_t)m, sizeof(float));
    }
    yf_kernels_set_precision(YF_PREC_EXACT);
    yf_attention_fwd(o0, l0, q, k, v, start, B, H, T, ld, hd, pos0, NULL);
    yf_attention_bwd_kv_ref(d0[0], d0[1], d0[2], g, l0, q, k, v, start, B, H, T, ld, hd, pos0);
    yf_kernels_set_precision(prec);
    if (pos0 == 0 && ld == T) { /* the training shape's names */
        yf_attention_fwd_train(o1, l1, q, k, v, start, B, H, T, hd);
        yf_attention_bwd(d1[0], d1[1], d1[2], g, l0, q, k, v, start, B, H, T, hd);
    } else {
        yf_attention_fwd_kv(o1, l1, q, k, v, start, B, H, T, ld, hd, pos0);
        yf_attention_bwd_kv(d1[0], d1[1], d1[2], g, l0, q, k, v, start, B, H, T, ld, hd, pos0);
    }
    yf_kernels_set_precision(YF_PREC_EXACT);
    double e = fmax(yt_max_abs_diff(o0, o1, (size_t)n), yt_max_abs_diff(l0, l1, (size_t)(B * H * T)));
    /* relative to the largest gradient entry (dq, dk are exactly 0 at T = 1);
     * rows past pos0 + Tq of dk, dv (ld padding) are not written by either */
    double e2 = 0, gmax = 1e-30;
    for (int i = 0; i < 3; i++) gmax = fmax(gmax, yt_max_abs(d0[i], (size_t)(i ? nkv : n)));
    for (int i = 0; i < 3; i++) e2 = fmax(e2, yt_max_abs_diff(d0[i], d1[i], (size_t)(i ? nkv : n)) / gmax);
    CHECK(e <= tol && e2 <= tol, "attention B%lld H%lld T%lld hd%lld pos0 %lld ld %lld reset %d: fwd err %g, bwd rel err %g",
          (long long)B, (long long)H, (long long)T, (long long)hd, (long long)pos0, (long long)ld, reset, e, e2);
    *ef = fmax(*ef, e), *eb = fmax(*eb, e2);
    free(q), free(k), free(v), free(g), free(ids), free(sfull), free(start), free(o0), free(o1), free(l0), free(l1);
    for (int i = 0; i < 3; i++) free(d0[i]), free(d1[i]);
}

TEST(fastops_attention_matches_ref) {
    /* B, H, T, hd, pos0, ld: whole sequences, then rows after 1..130 earlier
     * positions (a prefix over a block boundary, a cache with spare rows) */
    static const int64_t sh[][6] = {{1, 1, 1, 8, 0, 1},    {2, 3, 17, 6, 0, 17},   {1, 2, 70, 10, 0, 70},
                                    {3, 2, 64, 64, 0, 64}, {1, 1, 130, 18, 0, 130}, {1, 1, 1, 8, 5, 6},
                                    {2, 3, 17, 6, 1, 18},  {1, 2, 70, 10, 130, 210}, {2, 2, 9, 64, 64, 80},
                                    {1, 3, 65, 18, 63, 140}};
    for (int prec = 0; prec < 2; prec++) {
        double ef = 0, eb = 0, tol = prec ? 3e-2 : 2e-5;
        for (size_t s = 0; s < sizeof sh / sizeof *sh; s++)
            for (int reset = 0; reset < 2; reset++)
                attn_case(sh[s][0], sh[s][1], sh[s][2], sh[s][3], sh[s][4], sh[s][5], reset,
                          prec ? YF_PREC_BF16 : YF_PREC_EXACT, tol, &ef, &eb);
        CHECK_NEAR(prec ? "blocked attention forward, bf16 mode (max abs)" : "blocked attention forward (max abs)", ef,
                   tol);
        CHECK_NEAR(prec ? "blocked attention backward, bf16 mode (relative)" : "blocked attention backward (relative)",
                   eb, tol);
    }
}

/* The decode attention (one query row per sequence) against the scalar
 * reference: hd multiples of 8 and not, document starts, per-sequence
 * positions (posb), a cache with spare rows, enough work for threads; and
 * each sequence's row as it is alone, to the bit. */
TEST(fastops_attention_decode_matches_ref) {
    /* B, H, hd, pos0, ld */
    static const int64_t sh[][5] = {{1, 1, 8, 0, 1},     {3, 2, 64, 40, 50},  {2, 3, 6, 17, 20},
                                    {16, 8, 64, 120, 130}, {4, 16, 128, 300, 310}, {5, 2, 18, 3, 9}};
    double worst = 0;
    int not_alone = 0;
    for (size_t s = 0; s < sizeof sh / sizeof *sh; s++)
        for (int reset = 0; reset < 2; reset++)
            for (int use_posb = 0; use_posb < 2; use_posb++) {
                int64_t B = sh[s][0], H = sh[s][1], hd = sh[s][2], pos0 = sh[s][3], ld = sh[s][4];
                int64_t n = B * H * hd, nkv = B * H * ld * hd, posb[16] = {0}, start[16];
                for (int64_t b = 0; b < B; b++) {
                    posb[b] = use_posb ? (b * 7) % (ld - pos0) : 0;
                    start[b] = reset ? (pos0 + posb[b]) / (b + 2) : 0;
                }
                float *q = frand_n(n, 2), *k = frand_n(nkv, 2), *v = frand_n(nkv, 1);
                float *o0 = malloc((size_t)n * sizeof(float)), *o1 = malloc((size_t)n * sizeof(float));
                float *o2 = malloc((size_t)n * sizeof(float));
                float *l0 = malloc((size_t)(B * H) * sizeof(float)), *l1 = malloc((size_t)(B * H) * sizeof(float));
                float *l2 = malloc((size_t)(B * H) * sizeof(float));
                const int64_t *pb = use_posb ? posb : NULL;
                yf_attention_fwd(o0, l0, q, k, v, start, B, H, 1, ld, hd, pos0, pb);
                yf_attention_decode(o1, l1, q, k, v, start, B, H, ld, hd, pos0, pb);
                for (int64_t b = 0; b < B; b++) /* each sequence alone */
                    yf_attention_decode(o2 + b * H * hd, l2 + b * H, q + b * H * hd, k + b * H * ld * hd,
                                        v + b * H * ld * hd, start + b, 1, H, ld, hd, pos0, pb ? pb + b : NULL);
                worst = fmax(worst, fmax(yt_max_abs_diff(o0, o1, (size_t)n), yt_max_abs_diff(l0, l1, (size_t)(B * H))));
                not_alone += memcmp(o1, o2, (size_t)n * sizeof(float)) != 0 ||
                             memcmp(l1, l2, (size_t)(B * H) * sizeof(float)) != 0;
                free(q), free(k), free(v), free(o0), free(o1), free(o2), free(l0), free(l1), free(l2);
            }
    CHECK_NEAR("decode attention vs the scalar reference (max abs, outputs and log-sum-exp)", worst, 2e-5);
    CHECK(not_alone == 0, "%d batches differ from their sequences alone", not_alone);
}

/* ---- cross-entropy ------------------------------------------------------------ */

TEST(fastops_xent_matches_double) {
    const int64_t R = 5, V = 1037; /* V not a multiple of 8 */
    float *x = frand_n(R * V, 12), *d = malloc((size_t)(R * V) * sizeof(float));
    int64_t tg[5] = {0, 1036, -1, 500, 7};
    x[3 * V + 500] = 40; /* a confident row */
    double want = 0, gerr = 0;
    for (int64_t r = 0; r < R; r++) {
        if (tg[r] < 0) continue;
        double mx = -INFINITY, s = 0;
        for (int64_t i = 0; i < V; i++) mx = fmax(mx, x[r * V + i]);
        for (int64_t i = 0; i < V; i++) s += exp((double)x[r * V + i] - mx);
        want += mx + log(s) - x[r * V + tg[r]];
    }
    double got = yf_xent(NULL, x, tg, R, V, 1.0f);
    memcpy(d, x, (size_t)(R * V) * sizeof(float));
    double got2 = yf_xent(d, d, tg, R, V, 0.5f); /* in place, as the head does */
    for (int64_t r = 0; r < R; r++) {
        double mx = -INFINITY, s = 0;
        for (int64_t i = 0; i < V; i++) mx = fmax(mx, x[r * V + i]);
        for (int64_t i = 0; i < V; i++) s += exp((double)x[r * V + i] - mx);
        for (int64_t i = 0; i < V; i++) {
            double p = tg[r] < 0 ? 0 : 0.5 * (exp((double)x[r * V + i] - mx) / s - (i == tg[r]));
            gerr = fmax(gerr, fabs(p - d[r * V + i]));
        }
    }
    CHECK_NEAR("xent loss vs double (relative)", fabs(got - want) / want, 1e-6);
    CHECK_NEAR("xent loss with gradient == without", fabs(got2 - got), 0);
    CHECK_NEAR("xent gradient vs double (max abs)", gerr, 1e-7);
    free(x), free(d);
}

/* ---- buffer cache -------------------------------------------------------------- */

TEST(fastops_bufcache_recycles) {
    yf_buf_trim();
    char *a = yf_buf_get(1000), *b = yf_buf_get(5000);
    CHECK(((uintptr_t)a & 63) == 0 && ((uintptr_t)b & 63) == 0, "blocks are 64-byte aligned");
    memset(a, 1, 1000);
    memset(b, 2, 5000);
    yf_buf_put(a);
    yf_buf_put(b);
    char *c = yf_buf_get(3000); /* the smallest cached block that fits: b */
    CHECK(c == b, "a freed block of the right size is reused");
    char *d = yf_buf_get(100);
    CHECK(d == a, "the other one too");
    char *e = yf_buf_get(100000); /* bigger than anything cached: fresh */
    CHECK(e != a && e != b, "a bigger request gets a new block");
    memset(e, 3, 100000);
    yf_buf_put(c), yf_buf_put(d), yf_buf_put(e), yf_buf_put(NULL);
    yf_buf_trim();
}

/* ---- dropout: the vector and scalar forms give the same mask ------------------- */

TEST(fastops_dropout_vector_equals_scalar) {
    float x[37], a[37], b[7];
    for (int i = 0; i < 37; i++) x[i] = 1.0f + (float)i;
    yf_dropout(a, x, 37, 0.4f, 0x123456789abcull); /* 32 in vector form + 5 scalar */
    yf_dropout(b, x, 7, 0.4f, 0x123456789abcull);  /* all scalar */
    int diff = 0, kept = 0;
    for (int i = 0; i < 7; i++) diff += a[i] != b[i];
    for (int i = 0; i < 37; i++) kept += a[i] != 0;
    CHECK(diff == 0, "%d of the first 7 mask entries differ between the vector and scalar forms", diff);
    CHECK(kept > 8 && kept < 34, "kept %d of 37 at p = 0.4", kept);
    CHECK(a[0] == 0 || fabsf(a[0] - x[0] / 0.6f) < 1e-6f, "kept entries are scaled by 1/(1-p)");
}
