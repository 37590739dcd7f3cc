/* Backward passes against finite differences: every op on its own, then the
 * whole model (LoRA A/B, DoRA m, dropout, full-parameter mode) on two small
 * random f32 configurations of different shapes. Linear ops are checked with
 * the dot-product (adjoint) identity <f(x), g> = <x, f^T(g)>, which is exact.
 * Finite differences are central, of an objective accumulated in double. */
#include "harness.h"
#include "model/model_internal.h"
#include "model/ops.h"
#include "test_model_util.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static void fill(float *x, int64_t n, yf_rng *r, float s) {
    for (int64_t i = 0; i < n; i++) x[i] = s * yf_rng_normal(r);
}
static double dotd(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}
static float *fa(int64_t n) { return yf_aligned_alloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }

/* ---- ops -------------------------------------------------------------------------- */

/* objective: <rmsnorm(x; w), r> */
static double rms_obj(const float *x, const float *w, const float *r, int64_t N, int64_t D) {
    float *y = fa(N * D);
    yf_rmsnorm_fwd(y, NULL, x, w, N, D, 1e-6f);
    double s = dotd(y, r, N * D);
    free(y);
    return s;
}

TEST(gradcheck_rmsnorm) {
    int64_t N = 3, D = 7;
    yf_rng rng;
    yf_rng_seed(&rng, 1);
    float *x = fa(N * D), *w = fa(D), *r = fa(N * D), *dx = fa(N * D), *dw = fa(D), *rs = fa(N), *y = fa(N * D);
    fill(x, N * D, &rng, 1);
    fill(w, D, &rng, 1);
    fill(r, N * D, &rng, 1);
    yf_rmsnorm_fwd(y, rs, x, w, N, D, 1e-6f);
    yf_rmsnorm_bwd(dx, dw, r, x, rs, w, N, D, false);
    double eps = 1e-3, err = 0, mx = 0;
    for (int64_t i = 0; i < N * D; i++) {
        float o = x[i];
        x[i] = o + (float)eps;
        double p = rms_obj(x, w, r, N, D);
        x[i] = o - (float)eps;
        double q = rms_obj(x, w, r, N, D);
        x[i] = o;
        err = fmax(err, fabs((p - q) / (2 * eps) - dx[i]));
        mx = fmax(mx, fabs(dx[i]));
    }
    for (int64_t i = 0; i < D; i++) {
        float o = w[i];
        w[i] = o + (float)eps;
        double p = rms_obj(x, w, r, N, D);
        w[i] = o - (float)eps;
        double q = rms_obj(x, w, r, N, D);
        w[i] = o;
        err = fmax(err, fabs((p - q) / (2 * eps) - dw[i]));
    }
    CHECK_NEAR("rmsnorm dx, dw vs finite differences (max abs)", err / mx, 2e-3);
    free(x), free(w), free(r), free(dx), free(dw), free(rs), free(y);
}

TEST(gradcheck_conv_pack_adjoint) {
    int64_t B = 2, T = 5, C = 3;
    yf_rng rng;
    yf_rng_seed(&rng, 2);
    float *a = fa(B * T * C), *g = fa(B * T * 2 * C), *x2 = fa(B * T * 2 * C), *da = fa(B * T * C);
    fill(a, B * T * C, &rng, 1);
    fill(g, B * T * 2 * C, &rng, 1);
    yf_conv_pack(x2, a, NULL, B, T, C);
    yf_conv_unpack_bwd(da, g, B, T, C, false);
    double l = dotd(x2, g, B * T * 2 * C), r = dotd(a, da, B * T * C);
    CHECK_NEAR("conv pack: |<pack(a), g> - <a, unpack(g)>|", fabs(l - r) / fabs(l), 1e-6);
    /* causality: x2[t] holds a[t-1] then a[t], zero before each sequence */
    CHECK(x2[0] == 0 && x2[1] == a[0] && x2[2 * C] == a[0] && x2[2 * C + 1] == a[C]);
    CHECK(x2[T * 2 * C] == 0, "the second sequence must not see the first");
    free(a), free(g), free(x2), free(da);
}

TEST(gradcheck_rope_interleave_adjoint) {
    /* H = 3 makes the middle head straddle q_proj and k_proj outputs */
    int64_t B = 2, T = 4, H = 3, hd = 4, D = H * hd, pos0 = 2;
    yf_rng rng;
    yf_rng_seed(&rng, 3);
    float *cs = fa(16 * hd / 2), *sn = fa(16 * hd / 2);
    yf_rope_tables(cs, sn, 16, hd, 10000);
    float *qp = fa(B * T * D), *kp = fa(B * T * D), *q = fa(B * T * D), *k = fa(B * T * D);
    float *gq = fa(B * T * D), *gk = fa(B * T * D), *dqp = fa(B * T * D), *dkp = fa(B * T * D);
    fill(qp, B * T * D, &rng, 1);
    fill(kp, B * T * D, &rng, 1);
    fill(gq, B * T * D, &rng, 1);
    fill(gk, B * T * D, &rng, 1);
    yf_qk_rope_fwd(q, k, qp, kp, cs, sn, B, T, H, hd, pos0, NULL);
    yf_qk_rope_bwd(dqp, dkp, gq, gk, cs, sn, B, T, H, hd, pos0);
    double l = dotd(q, gq, B * T * D) + dotd(k, gk, B * T * D);
    double r = dotd(qp, dqp, B * T * D) + dotd(kp, dkp, B * T * D);
    CHECK_NEAR("rope+interleave: relative adjoint mismatch", fabs(l - r) / fabs(l), 1e-5);
    /* head 0 at position pos0, first element: q = q'[0] cos - q'[hd/2] sin */
    float want = qp[0] * cs[pos0 * hd / 2] - qp[hd / 2] * sn[pos0 * hd / 2];
    CHECK(fabsf(q[0] - want) < 1e-6f, "q[0] = %g, want %g", q[0], want);
    /* head 0's key is q_proj's features hd..2hd-1; the last head's query comes from k_proj */
    float wantk = kp[0] * 0; (void)wantk;
    float kk = qp[hd] * cs[pos0 * hd / 2] - qp[hd + hd / 2] * sn[pos0 * hd / 2];
    CHECK(fabsf(k[0] - kk) < 1e-6f, "k[0] = %g, want %g (key of head 0 from q_proj)", k[0], kk);
    int64_t h = H - 1, base = 2 * hd * h - D; /* in k_proj's output */
    float ql = kp[base] * cs[pos0 * hd / 2] - kp[base + hd / 2] * sn[pos0 * hd / 2];
    CHECK(fabsf(q[h * T * hd] - ql) < 1e-6f, "last head query from k_proj");
    free(cs), free(sn), free(qp), free(kp), free(q), free(k), free(gq), free(gk), free(dqp), free(dkp);
}

static double att_obj(const float *q, const float *k, const float *v, const int64_t *st, const float *r, int64_t B,
                      int64_t H, int64_t T, int64_t hd) {
    float *o = fa(B * H * T * hd);
    yf_attention_fwd(o, NULL, q, k, v, st, B, H, T, T, hd, 0, NULL);
    double s = dotd(o, r, B * H * T * hd);
    free(o);
    return s;
}

TEST(gradcheck_attention_with_reset) {
    int64_t B = 2, H = 2, T = 6, hd = 4, n = B * H * T * hd;
    int64_t ids[12] = {5, 6, 3, 7, 3, 8, 9, 10, 11, 12, 3, 3};
    int64_t st[12];
    yf_doc_starts(st, ids, B, T, 3, true);
    CHECK(st[2] == 0 && st[3] == 3 && st[4] == 3 && st[5] == 5 && st[6 + 5] == 5, "document starts");
    yf_rng rng;
    yf_rng_seed(&rng, 4);
    float *q = fa(n), *k = fa(n), *v = fa(n), *r = fa(n), *o = fa(n), *lse = fa(B * H * T);
    float *dq = fa(n), *dk = fa(n), *dv = fa(n);
    fill(q, n, &rng, 1);
    fill(k, n, &rng, 1);
    fill(v, n, &rng, 1);
    fill(r, n, &rng, 1);
    yf_attention_fwd(o, lse, q, k, v, st, B, H, T, T, hd, 0, NULL);
    yf_attention_bwd(dq, dk, dv, r, lse, q, k, v, st, B, H, T, hd);
    double eps = 1e-3, err = 0, mx = 0;
    float *ps[3] = {q, k, v}, *gs[3] = {dq, dk, dv};
    for (int w = 0; w < 3; w++)
        for (int64_t i = 0; i < n; i++) {
            float old = ps[w][i];
            ps[w][i] = old + (float)eps;
            double p = att_obj(q, k, v, st, r, B, H, T, hd);
            ps[w][i] = old - (float)eps;
            double m = att_obj(q, k, v, st, r, B, H, T, hd);
            ps[w][i] = old;
            err = fmax(err, fabs((p - m) / (2 * eps) - gs[w][i]));
            mx = fmax(mx, fabs(gs[w][i]));
        }
    CHECK_NEAR("attention dq, dk, dv vs finite differences (relative to max)", err / mx, 2e-3);
    /* the reset: the token after <eod> at 2 sees only itself, so its output is its own value */
    for (int64_t i = 0; i < hd; i++) CHECK(fabsf(o[3 * hd + i] - v[3 * hd + i]) < 1e-6f);
    free(q), free(k), free(v), free(r), free(o), free(lse), free(dq), free(dk), free(dv);
}

/* objective: <attention of rows after pos0 earlier positions, r> */
static double att_kv_obj(const float *q, const float *k, const float *v, const int64_t *st, const float *r, int64_t H,
                         int64_t T, int64_t ld, int64_t hd, int64_t pos0) {
    float *o = fa(H * T * hd);
    yf_attention_fwd(o, NULL, q, k, v, st, 1, H, T, ld, hd, pos0, NULL);
    double s = dotd(o, r, H * T * hd);
    free(o);
    return s;
}

/* The reference backward of rows that continue earlier positions (the
 * shared prefix's attention) against finite differences, a reset inside
 * the earlier positions included: the gradients of those positions' keys
 * and values are what the prefix receives from each row. */
TEST(gradcheck_attention_over_earlier_positions) {
    int64_t H = 2, T = 4, hd = 4, pos0 = 5, ld = 10, nq = H * T * hd, nkv = H * ld * hd;
    int64_t ids[9] = {5, 3, 6, 7, 8, 9, 10, 3, 11}, sfull[9], st[4];
    yf_doc_starts(sfull, ids, 1, pos0 + T, 3, true);
    for (int64_t t = 0; t < T; t++) st[t] = sfull[pos0 + t];
    CHECK(st[0] == 2 && st[3] == 8, "starts %lld %lld", (long long)st[0], (long long)st[3]);
    yf_rng rng;
    yf_rng_seed(&rng, 41);
    float *q = fa(nq), *k = fa(nkv), *v = fa(nkv), *r = fa(nq), *o = fa(nq), *lse = fa(H * T);
    float *dq = fa(nq), *dk = fa(nkv), *dv = fa(nkv);
    fill(q, nq, &rng, 1);
    fill(k, nkv, &rng, 1);
    fill(v, nkv, &rng, 1);
    fill(r, nq, &rng, 1);
    yf_attention_fwd(o, lse, q, k, v, st, 1, H, T, ld, hd, pos0, NULL);
    yf_attention_bwd_kv_ref(dq, dk, dv, r, lse, q, k, v, st, 1, H, T, ld, hd, pos0);
    double eps = 1e-3, err = 0, mx = 0, unseen = 0;
    float *ps[3] = {q, k, v}, *gs[3] = {dq, dk, dv};
    for (int w = 0; w < 3; w++)
        for (int64_t i = 0; i < (w ? nkv : nq); i++) {
            int64_t row = w ? (i / hd) % ld : 0;
            if (w && row >= pos0 + T) continue; /* rows past the positions: not part of the contract */
            float old = ps[w][i];
            ps[w][i] = old + (float)eps;
            double p = att_kv_obj(q, k, v, st, r, H, T, ld, hd, pos0);
            ps[w][i] = old - (float)eps;
            double m = att_kv_obj(q, k, v, st, r, H, T, ld, hd, pos0);
            ps[w][i] = old;
            err = fmax(err, fabs((p - m) / (2 * eps) - gs[w][i]));
            mx = fmax(mx, fabs(gs[w][i]));
            if (w && row < 2) unseen = fmax(unseen, fabs(gs[w][i]));
        }
    CHECK_NEAR("attention over earlier positions: dq, dk, dv vs finite differences (relative to max)", err / mx, 2e-3);
    CHECK(unseen == 0, "positions before the reset got gradient %g", unseen);
    free(q), free(k), free(v), free(r), free(o), free(lse), free(dq), free(dk), free(dv);
}

TEST(gradcheck_conv_prev_adjoint) {
    /* pack with a previous row, then its gradient: <pack(a, prev), g> = <a, unpack(g)> + <prev, prev_bwd(g)> */
    int64_t B = 2, T = 3, C = 4;
    yf_rng rng;
    yf_rng_seed(&rng, 42);
    float *a = fa(B * T * C), *prev = fa(B * C), *g = fa(B * T * 2 * C), *x2 = fa(B * T * 2 * C), *da = fa(B * T * C);
    float *dp = fa(B * C);
    fill(a, B * T * C, &rng, 1);
    fill(prev, B * C, &rng, 1);
    fill(g, B * T * 2 * C, &rng, 1);
    memset(dp, 0, (size_t)(B * C) * sizeof(float));
    yf_conv_pack(x2, a, prev, B, T, C);
    yf_conv_unpack_bwd(da, g, B, T, C, false);
    yf_conv_prev_bwd(dp, g, B, T, C);
    double l = dotd(x2, g, B * T * 2 * C), r = dotd(a, da, B * T * C) + dotd(prev, dp, B * C);
    CHECK_NEAR("conv pack with prev: relative adjoint mismatch", fabs(l - r) / fabs(l), 1e-6);
    CHECK(x2[0] == prev[0] && x2[T * 2 * C] == prev[C], "each sequence's first row sees its prev");
    free(a), free(prev), free(g), free(x2), free(da), free(dp);
}

TEST(gradcheck_swiglu_and_xent) {
    int64_t n = 20, R = 4, V = 9;
    yf_rng rng;
    yf_rng_seed(&rng, 5);
    float *g = fa(n), *u = fa(n), *z = fa(n), *dz = fa(n), *dg = fa(n), *du = fa(n);
    fill(g, n, &rng, 1.5f);
    fill(u, n, &rng, 1.5f);
    fill(dz, n, &rng, 1);
    yf_swiglu_bwd(dg, du, dz, g, u, n);
    double eps = 1e-3, err = 0;
    for (int64_t i = 0; i < n; i++) {
        float zp, zm, o = u[i];
        u[i] = o + (float)eps;
        yf_swiglu_fwd(&zp, &g[i], &u[i], 1);
        u[i] = o - (float)eps;
        yf_swiglu_fwd(&zm, &g[i], &u[i], 1);
        u[i] = o;
        err = fmax(err, fabs((zp - zm) / (2 * eps) * dz[i] - du[i]));
        yf_swiglu_fwd(&z[i], &g[i], &u[i], 1);
        /* silu acts on u: z = g * u * sigmoid(u) */
        double want = g[i] * u[i] / (1 + exp(-u[i]));
        CHECK(fabs(z[i] - want) < 1e-5, "swiglu must put silu on up_proj");
        CHECK(fabsf(dg[i] - dz[i] * z[i] / g[i]) < 1e-4f * (1 + fabsf(dg[i])));
    }
    CHECK_NEAR("swiglu du vs finite differences", err, 2e-3);

    float *x = fa(R * V), *dx = fa(R * V);
    int64_t tg[4] = {2, -1, 8, 0};
    fill(x, R * V, &rng, 2);
    double l0 = yf_xent(dx, x, tg, R, V, 0.5f);
    err = 0;
    for (int64_t i = 0; i < R * V; i++) {
        float o = x[i];
        x[i] = o + (float)eps;
        double p = yf_xent(NULL, x, tg, R, V, 1);
        x[i] = o - (float)eps;
        double m = yf_xent(NULL, x, tg, R, V, 1);
        x[i] = o;
        err = fmax(err, fabs(0.5 * (p - m) / (2 * eps) - dx[i]));
    }
    CHECK(l0 > 0);
    for (int64_t i = 0; i < V; i++) CHECK(dx[V + i] == 0, "an ignored row gets no gradient");
    CHECK_NEAR("cross-entropy dlogits vs finite differences", err, 1e-3);
    free(g), free(u), free(z), free(dz), free(dg), free(du), free(x), free(dx);
}

TEST(gradcheck_dropout_adjoint) {
    int64_t n = 1000;
    yf_rng rng;
    yf_rng_seed(&rng, 6);
    float *x = fa(n), *y = fa(n), *g = fa(n), *gx = fa(n);
    fill(x, n, &rng, 1);
    fill(g, n, &rng, 1);
    yf_dropout(y, x, n, 0.3f, 99);
    yf_dropout(gx, g, n, 0.3f, 99);
    double l = dotd(y, g, n), r = dotd(x, gx, n);
    CHECK_NEAR("dropout: the same seed gives the same mask (adjoint)", fabs(l - r) / fabs(l), 1e-6);
    free(x), free(y), free(g), free(gx);
}

/* ---- whole model ------------------------------------------------------------------- */

typedef struct fd_case {
    yf_model *m;
    yf_lora *lo;
    const int64_t *ids, *labels;
    int64_t B, T;
    bool dropout, ckpt;
} fd_case;

/* sum of token losses (with the dropout mask of seed 7 when dropout is on) */
static double fd_loss(fd_case *c) {
    double ls;
    int64_t nt;
    if (c->dropout) {
        yf_rng rng;
        yf_rng_seed(&rng, 7);
        yf_backward_opts bo = {.loss_scale = 1, .dropout_rng = &rng};
        YF_CHECK(yf_model_forward_backward(c->m, c->lo, c->ids, c->labels, c->B, c->T, &bo, &ls, &nt) == 0);
    } else {
        YF_CHECK(yf_model_forward(c->m, c->lo, c->ids, c->labels, c->B, c->T, NULL, &ls, &nt) == 0);
    }
    return ls;
}

/* d loss / d t along direction d (or element k when d == NULL) at w0, by
 * central differences with Richardson extrapolation (error O(eps^4)). */
static double fd_along(fd_case *c, yf_param *p, const float *w0, const float *d, int64_t k, double eps) {
    double D[2];
    for (int s = 0; s < 2; s++) {
        double h = s ? eps / 2 : eps, l[2];
        for (int sg = 0; sg < 2; sg++) {
            double hh = sg ? -h : h;
            if (d)
                for (int64_t i = 0; i < p->numel; i++) p->w[i] = w0[i] + (float)hh * d[i];
            else
                p->w[k] = w0[k] + (float)hh;
            l[sg] = fd_loss(c);
        }
        memcpy(p->w, w0, (size_t)p->numel * sizeof(float));
        D[s] = (l[0] - l[1]) / (2 * h);
    }
    return (4 * D[1] - D[0]) / 3;
}

/* Checks every parameter's gradient: a directional derivative along a random
 * direction, and a few single elements. Returns the worst relative error. */
static double fd_check_params(fd_case *c, yf_param_list *pl, double eps, const char *what) {
    /* analytic gradients first (the evaluations below accumulate more into g) */
    for (int i = 0; i < pl->n; i++) memset(pl->p[i].g, 0, (size_t)pl->p[i].numel * sizeof(float));
    yf_rng drng;
    yf_rng_seed(&drng, 7);
    yf_backward_opts bo = {.loss_scale = 1, .gradient_checkpointing = c->ckpt, .dropout_rng = c->dropout ? &drng : NULL};
    double ls;
    int64_t nt;
    YF_CHECK(yf_model_forward_backward(c->m, c->lo, c->ids, c->labels, c->B, c->T, &bo, &ls, &nt) == 0);
    float **g = malloc((size_t)pl->n * sizeof *g);
    for (int i = 0; i < pl->n; i++) {
        g[i] = malloc((size_t)pl->p[i].numel * sizeof(float));
        memcpy(g[i], pl->p[i].g, (size_t)pl->p[i].numel * sizeof(float));
    }
    yf_rng rng;
    yf_rng_seed(&rng, 11);
    double worst = 0;
    for (int i = 0; i < pl->n; i++) {
        yf_param *p = &pl->p[i];
        float *w0 = malloc((size_t)p->numel * sizeof(float)), *d = malloc((size_t)p->numel * sizeof(float));
        memcpy(w0, p->w, (size_t)p->numel * sizeof(float));
        fill(d, p->numel, &rng, 1);
        double gd = dotd(g[i], d, p->numel), gmax = 0, gnorm = 0;
        for (int64_t k = 0; k < p->numel; k++) {
            gmax = fmax(gmax, fabs(g[i][k]));
            gnorm += (double)g[i][k] * g[i][k];
        }
        gnorm = sqrt(gnorm);
        double dn = sqrt(dotd(d, d, p->numel));
        for (int64_t k = 0; k < p->numel; k++) d[k] /= (float)dn; /* unit direction */
        gd /= dn;
        double fd = fd_along(c, p, w0, d, -1, eps);
        double rel = fabs(fd - gd) / fmax(gnorm, 0.1); /* 0.1: below that, float noise */
        /* single elements: the largest gradient entry and a random one */
        int64_t kmax = 0;
        for (int64_t k = 0; k < p->numel; k++)
            if (fabs(g[i][k]) > fabs(g[i][kmax])) kmax = k;
        int64_t ks[2] = {kmax, (int64_t)(yf_rng_u64(&rng) % (uint64_t)p->numel)};
        for (int j = 0; j < 2; j++) {
            double e = fabs(fd_along(c, p, w0, NULL, ks[j], eps / 5) - g[i][ks[j]]) / fmax(gmax, 0.1);
            rel = fmax(rel, e);
        }
        if (rel > worst) worst = rel;
        if (getenv("YT_VERBOSE") || rel > 1e-2)
            fprintf(stderr, "    %s: %s relative error %.3g (|g| %.3g, dir fd %.6g an %.6g)\n", what, p->name, rel,
                    gnorm, fd, gd);
        free(w0);
        free(d);
        free(g[i]);
    }
    free(g);
    return worst;
}

static void model_lora_fd(const yf_config *cfg, bool dora, bool rslora, float dropout, bool ckpt, unsigned targets,
                          uint64_t seed, const char *what) {
    omp_set_num_threads(1); /* thousands of tiny forwards: threads would only add overhead */
    yf_model *m = yt_random_model(cfg, seed, YF_F32, 6.0f, NULL);
    CHECK(m != NULL, "%s", yf_last_error());
    if (!m) return;
    yf_lora lo;
    yf_lora_cfg lc = {.r = 3, .alpha = 5, .dropout = dropout, .use_rslora = rslora, .use_dora = dora, .targets = targets};
    CHECK_OK(yf_lora_create(&lo, cfg, &lc));
    yt_randomize_lora(&lo, seed + 1, 0.3f);
    int64_t B = 2, T = 7;
    int64_t ids[14], labels[14];
    yt_random_batch(ids, labels, B, T, cfg->vocab_size, seed + 2);
    fd_case c = {m, &lo, ids, labels, B, T, dropout > 0, ckpt};
    yf_param_list pl;
    yf_lora_params(&lo, &pl);
    /* DoRA's gradient treats n = ||W + sBA|| as a constant: hold it there */
    float **norms = yf_calloc((size_t)(cfg->num_hidden_layers * YF_NPROJ), sizeof *norms);
    for (int64_t l = 0; dora && l < cfg->num_hidden_layers; l++)
        for (int p = 0; p < YF_NPROJ; p++) {
            yf_lora_mod *md = yf_lora_get(&lo, l, (yf_proj)p);
            if (!md) continue;
            const yf_mw *w = yf_model_proj(m, l, (yf_proj)p);
            norms[l * YF_NPROJ + p] = malloc((size_t)md->out * sizeof(float));
            yf_lora_row_norms(md, lo.cfg.r, lo.scaling, w->data, w->dt, norms[l * YF_NPROJ + p]);
        }
    yf_dora_norms_override = norms;
    double worst = fd_check_params(&c, &pl, 1e-2, what);
    yf_dora_norms_override = NULL;
    CHECK_NEAR(what, worst, 1e-2); /* float noise ~3e-3; a wrong gradient is off by O(1) */
    for (int64_t i = 0; i < cfg->num_hidden_layers * YF_NPROJ; i++) free(norms[i]);
    free(norms);
    free(pl.p);
    yf_lora_free(&lo);
    yf_model_free(m);
}

#define ALL7 ((1u << YF_NPROJ) - 1)

TEST(gradcheck_lora_all_targets) {
    yf_config cfg = yt_config(17, 8, 2, 12, 2, 32, true);
    model_lora_fd(&cfg, false, false, 0, false, ALL7, 100, "LoRA A/B (D=8 H=2 I=12 L=2)");
}

TEST(gradcheck_lora_other_shape_rslora_dropout) {
    /* H = 3: a head straddles q_proj/k_proj; untied head; some targets only */
    yf_config cfg = yt_config(23, 12, 3, 20, 3, 32, false);
    unsigned t = (1u << YF_Q) | (1u << YF_V) | (1u << YF_UP) | (1u << YF_DOWN);
    model_lora_fd(&cfg, false, true, 0.3f, false, t, 200, "LoRA rslora+dropout (D=12 H=3 I=20 L=3)");
}

TEST(gradcheck_dora_magnitude) {
    yf_config cfg = yt_config(17, 8, 2, 12, 2, 32, true);
    model_lora_fd(&cfg, true, false, 0, false, ALL7, 300, "DoRA A/B/m (D=8 H=2 I=12 L=2)");
}

TEST(gradcheck_dora_dropout_checkpointed) {
    yf_config cfg = yt_config(23, 12, 3, 20, 3, 32, false);
    model_lora_fd(&cfg, true, false, 0.25f, true, ALL7, 400, "DoRA+dropout, checkpointed (D=12 H=3 I=20 L=3)");
}

static void full_fd(const yf_config *cfg, uint64_t seed, bool ckpt, const char *what) {
    omp_set_num_threads(1); /* thousands of tiny forwards: threads would only add overhead */
    yf_model_opts o = {.full_finetune = true};
    yf_model *m = yt_random_model(cfg, seed, YF_F32, 6.0f, &o);
    CHECK(m != NULL, "%s", yf_last_error());
    if (!m) return;
    int64_t B = 2, T = 6;
    int64_t ids[12], labels[12];
    yt_random_batch(ids, labels, B, T, cfg->vocab_size, seed + 2);
    fd_case c = {m, NULL, ids, labels, B, T, false, ckpt};
    yf_param_list pl;
    yf_model_params(m, &pl);
    int64_t want = 1 + 14 * cfg->num_hidden_layers + 1 + (cfg->tie_word_embeddings ? 0 : 1);
    CHECK(pl.n == want, "%d parameters, want %lld", pl.n, (long long)want);
    CHECK(pl.n > 0 && !strcmp(pl.p[0].name, "model.embed_tokens.weight"));
    double worst = fd_check_params(&c, &pl, 1e-2, what);
    CHECK_NEAR(what, worst, 1e-2); /* float noise ~3e-3; a wrong gradient is off by O(1) */
    free(pl.p);
    yf_model_free(m);
}

TEST(gradcheck_full_finetune_tied) {
    yf_config cfg = yt_config(17, 8, 2, 12, 2, 32, true);
    full_fd(&cfg, 500, false, "full fine-tune, tied head (D=8 H=2 I=12 L=2)");
}

TEST(gradcheck_full_finetune_untied_checkpointed) {
    yf_config cfg = yt_config(23, 12, 3, 20, 3, 32, false);
    full_fd(&cfg, 600, true, "full fine-tune, untied, checkpointed (D=12 H=3 I=20 L=3)");
}

/* Checkpointing recomputes the same numbers: gradients must be identical. */
TEST(gradcheck_checkpointing_identical) {
    yf_config cfg = yt_config(29, 16, 4, 24, 3, 64, true);
    yf_model *m = yt_random_model(&cfg, 700, YF_BF16, 1.0f, NULL);
    CHECK(m != NULL);
    if (!m) return;
    yf_lora lo;
    yf_lora_cfg lc = {.r = 4, .alpha = 8, .dropout = 0.1f, .use_dora = true, .targets = ALL7};
    CHECK(yf_lora_create(&lo, &cfg, &lc) == 0);
    yt_randomize_lora(&lo, 701, 0.1f);
    int64_t B = 3, T = 20, ids[60], labels[60];
    yt_random_batch(ids, labels, B, T, cfg.vocab_size, 702);
    float *g[2];
    yf_param_list pl;
    yf_lora_params(&lo, &pl);
    int64_t tot = 0;
    for (int i = 0; i < pl.n; i++) tot += pl.p[i].numel;
    for (int run = 0; run < 2; run++) {
        yf_lora_zero_grads(&lo);
        yf_rng rng;
        yf_rng_seed(&rng, 9);
        yf_backward_opts bo = {.loss_scale = 0.01f, .gradient_checkpointing = run == 1, .dropout_rng = &rng};
        double ls;
        int64_t nt;
        CHECK(yf_model_forward_backward(m, &lo, ids, labels, B, T, &bo, &ls, &nt) == 0);
        g[run] = malloc((size_t)tot * sizeof(float));
        int64_t o = 0;
        for (int i = 0; i < pl.n; i++) {
            memcpy(g[run] + o, pl.p[i].g, (size_t)pl.p[i].numel * sizeof(float));
            o += pl.p[i].numel;
        }
    }
    CHECK(yt_max_abs(g[0], (size_t)tot) > 0);
    CHECK_NEAR("max |grad(checkpointed) - grad(stored)|", yt_max_abs_diff(g[0], g[1], (size_t)tot), 0);
    free(g[0]);
    free(g[1]);
    free(pl.p);
    yf_lora_free(&lo);
    yf_model_free(m);
}
