/* The AVX-512 forms of the elementwise ops (ops_avx512.c) against the plain C
 * loops (yf_ops_set_reference(true)) on odd sizes: below, across and above one
 * 16-lane vector, and above the size that runs in pool chunks; the vector exp
 * against exp in double; the RoPE interleave against a per-element version
 * with an odd head count. */
#include "harness.h"
#include "kernels/cpu/cpu.h"
#include "model/ops.h"
#include "kernels/cpu/vecmath.h"
#include "kernels/cpu/ops_fast.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static float *frand_n(int64_t n, float s) { return yt_frand_n(&g_rng, n, s); }
static float *copy_n(const float *x, int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    memcpy(p, x, (size_t)n * sizeof(float));
    return p;
}
/* max |a - b| / max(|b|, floor) */
static double rel_err(const float *a, const float *b, int64_t n, double floor) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(fabs((double)b[i]), floor);
        if (!(d <= e)) e = d; /* NaN counts as worst */
    }
    return e;
}

static bool have_fast(void) { return YF_OPS_AVX512 && yf_cpu()->avx512; }

/* sizes: empty, 1, under / over one vector, a prime, and above the pool chunking threshold (2^21) */
static const int64_t k_sizes[] = {0, 1, 15, 17, 100003, ((int64_t)1 << 21) + 37};
#define NSIZES ((int)(sizeof k_sizes / sizeof *k_sizes))

TEST(ops_exp_avx512_accuracy) {
    if (!have_fast()) yt_skip("no AVX-512 on this CPU or compiler: the vector exp is not used");
    /* every 1/4096 over the normal range, plus the edges */
    int64_t n = (int64_t)((88.72 + 87.33) * 4096);
    float *x = malloc((size_t)(n + 8) * sizeof(float)), *y = malloc((size_t)(n + 8) * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = -87.33f + (float)i / 4096.0f;
    float special[8] = {-INFINITY, -200.0f, -104.0f, -100.0f, 0.0f, 88.72f, 89.0f, INFINITY};
    memcpy(x + n, special, sizeof special);
    yf_exp_avx512(y, x, n + 8);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = exp((double)x[i]);
        if (e < FLT_MIN || e > FLT_MAX) continue;
        worst = fmax(worst, fabs(y[i] - e) / e);
    }
    CHECK_NEAR("vector exp vs exp in double, max relative error (2 ulp = 2.4e-7)", worst, 2.4e-7);
    CHECK(y[n] == 0 && y[n + 1] == 0 && y[n + 2] == 0, "exp(-inf), exp(-200), exp(-104) are 0: %g %g %g", y[n],
          y[n + 1], y[n + 2]);
    CHECK(fabs(y[n + 3] - exp(-100.0)) < 2e-45, "exp(-100) is the subnormal %g: %g", exp(-100.0), y[n + 3]);
    CHECK(y[n + 4] == 1.0f, "exp(0) = 1: %.9g", y[n + 4]);
    CHECK(isfinite(y[n + 5]) && isinf(y[n + 6]) && isinf(y[n + 7]), "exp(88.72) finite, exp(89), exp(inf) inf");
    free(x), free(y);
}

TEST(ops_swiglu_fast_matches_reference) {
    if (!have_fast()) yt_skip("no AVX-512 on this CPU or compiler: only the reference loops run");
    double ef = 0, eb = 0;
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = k_sizes[s];
        float *g = frand_n(n, 3), *u = frand_n(n, 12), *dz = frand_n(n, 1);
        if (n > 3) u[0] = -120, u[1] = 95, u[2] = 0; /* saturated sigmoid on both sides */
        float *z[2], *dg[2], *du[2];
        for (int r = 0; r < 2; r++) {
            z[r] = frand_n(n, 1), dg[r] = frand_n(n, 1), du[r] = frand_n(n, 1);
            yf_ops_set_reference(r == 1);
            yf_swiglu_fwd(z[r], g, u, n);
            yf_swiglu_bwd(dg[r], du[r], dz, g, u, n);
        }
        yf_ops_set_reference(false);
        /* forward relative to each value, floored at 1e-30 (tiny values from a saturated sigmoid);
         * backward relative to the largest value: du's factor 1 + u (1 - s) cancels near u = -1.28 */
        double gm = fmax(yt_max_abs(dg[1], (size_t)n), yt_max_abs(du[1], (size_t)n)) + 1e-30;
        double e1 = rel_err(z[0], z[1], n, 1e-30);
        double e2 = fmax(yt_max_abs_diff(dg[0], dg[1], (size_t)n), yt_max_abs_diff(du[0], du[1], (size_t)n)) / gm;
        CHECK(e1 <= 1e-6 && e2 <= 1e-6, "swiglu n=%lld: fwd rel err %g, bwd %g", (long long)n, e1, e2);
        ef = fmax(ef, e1), eb = fmax(eb, e2);
        free(g), free(u), free(dz);
        for (int r = 0; r < 2; r++) free(z[r]), free(dg[r]), free(du[r]);
    }
    CHECK_NEAR("swiglu forward, AVX-512 vs expf loop (relative)", ef, 1e-6);
    CHECK_NEAR("swiglu backward, AVX-512 vs expf loop (max abs / max)", eb, 1e-6);
}

/* The layer's backward writes the gradients of g and u over g and u. */
TEST(ops_swiglu_bwd_in_place_equals_out_of_place) {
    int diffs = 0;
    for (int path = 0; path < 2; path++) {
        if (path == 0 && !have_fast()) continue;
        yf_ops_set_reference(path == 1);
        for (int s = 0; s < NSIZES; s++) {
            int64_t n = k_sizes[s];
            float *g = frand_n(n, 3), *u = frand_n(n, 12), *dz = frand_n(n, 1);
            float *dg = frand_n(n, 1), *du = frand_n(n, 1), *gi = copy_n(g, n), *ui = copy_n(u, n);
            yf_swiglu_bwd(dg, du, dz, g, u, n);
            yf_swiglu_bwd(gi, ui, dz, gi, ui, n);
            diffs += memcmp(dg, gi, (size_t)n * sizeof(float)) != 0 || memcmp(du, ui, (size_t)n * sizeof(float)) != 0;
            free(g), free(u), free(dz), free(dg), free(du), free(gi), free(ui);
        }
    }
    yf_ops_set_reference(false);
    CHECK(diffs == 0, "%d sizes: the in-place swiglu backward differs from the out-of-place one", diffs);
}

/* A block of a mask is the whole mask's part (LoRA's dropped-out input is
 * made a block of rows at a time). */
TEST(ops_dropout_at_is_a_part_of_the_whole_mask) {
    int diffs = 0;
    for (int path = 0; path < 2; path++) {
        if (path == 0 && !have_fast()) continue;
        yf_ops_set_reference(path == 1);
        int64_t n = 3 * 65536 + 1000;
        float *x = frand_n(n, 1), *whole = frand_n(n, 1), *part = frand_n(n, 1);
        yf_dropout(whole, x, n, 0.1f, 0x5eed1234ull);
        int64_t bases[4] = {0, 16, 128 * 1024, 2 * 65536 + 48};
        for (int b = 0; b < 4; b++) {
            int64_t m = n - bases[b] < 70000 ? n - bases[b] : 70000;
            yf_dropout_at(part, x + bases[b], m, 0.1f, 0x5eed1234ull, bases[b]);
            diffs += memcmp(part, whole + bases[b], (size_t)m * sizeof(float)) != 0;
        }
        free(x), free(whole), free(part);
    }
    yf_ops_set_reference(false);
    CHECK(diffs == 0, "%d blocks of the dropout mask differ from the whole mask's", diffs);
}

TEST(ops_dropout_fast_equals_reference) {
    /* the mask is part of reproducibility: bit-identical on every path, in place or not */
    int diffs = 0;
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = k_sizes[s];
        float *x = frand_n(n, 1), *a = frand_n(n, 1), *b = frand_n(n, 1), *c = copy_n(x, n);
        float *d = frand_n(n, 1);
        yf_dropout(a, x, n, 0.1f, 0xfeedbeef12345ull);
        yf_dropout(c, c, n, 0.1f, 0xfeedbeef12345ull);
        yf_ops_set_avx512(false); /* the AVX2 form (x86-64-v3 build) */
        yf_dropout(d, x, n, 0.1f, 0xfeedbeef12345ull);
        yf_ops_set_avx512(true);
        yf_ops_set_reference(true);
        yf_dropout(b, x, n, 0.1f, 0xfeedbeef12345ull);
        yf_ops_set_reference(false);
        int64_t kept = 0;
        for (int64_t i = 0; i < n; i++) {
            diffs += memcmp(&a[i], &b[i], sizeof(float)) != 0 || memcmp(&c[i], &b[i], sizeof(float)) != 0 ||
                     memcmp(&d[i], &b[i], sizeof(float)) != 0;
            kept += b[i] != 0;
        }
        free(d);
        if (n > 100000) CHECK(fabs((double)kept / n - 0.9) < 0.01, "kept %lld of %lld at p = 0.1", (long long)kept, (long long)n);
        free(x), free(a), free(b), free(c);
    }
    CHECK(diffs == 0, "%d dropout outputs differ between the AVX-512, AVX2, in-place and reference forms", diffs);
    /* the mask of the old 64-bit-counter layout: element i keeps the same decision whatever n is */
    float x[40], y1[40], y2[19];
    for (int i = 0; i < 40; i++) x[i] = 1;
    yf_dropout(y1, x, 40, 0.5f, 7);
    yf_dropout(y2, x, 19, 0.5f, 7);
    CHECK(memcmp(y1, y2, sizeof y2) == 0, "the mask of an element does not depend on the length");
}

TEST(ops_rmsnorm_fast_matches_reference) {
    if (!have_fast()) yt_skip("no AVX-512 on this CPU or compiler: only the reference loops run");
    static const int64_t sh[][2] = {{1, 1}, {3, 15}, {5, 17}, {7, 2048}, {2, 1037}};
    double ef = 0, eb = 0;
    for (size_t s = 0; s < sizeof sh / sizeof *sh; s++) {
        int64_t N = sh[s][0], D = sh[s][1];
        float *x = frand_n(N * D, 2), *w = frand_n(D, 1), *dy = frand_n(N * D, 1);
        float *y[2], *rs[2], *dx[2], *dw[2];
        for (int r = 0; r < 2; r++) {
            y[r] = frand_n(N * D, 1), rs[r] = frand_n(N, 1), dx[r] = frand_n(N * D, 0), dw[r] = frand_n(D, 0);
            yf_ops_set_reference(r == 1);
            yf_rmsnorm_fwd(y[r], rs[r], x, w, N, D, 1e-6f);
        }
        for (int r = 0; r < 2; r++) { /* the same statistics into both: the backward's own error */
            yf_ops_set_reference(r == 1);
            yf_rmsnorm_bwd(dx[r], dw[r], dy, x, rs[1], w, N, D, true);
        }
        yf_ops_set_reference(false);
        double e1 = fmax(rel_err(y[0], y[1], N * D, 1e-3), rel_err(rs[0], rs[1], N, 1e-3));
        double e2 = fmax(yt_max_abs_diff(dx[0], dx[1], (size_t)(N * D)) / fmax(yt_max_abs(dx[1], (size_t)(N * D)), 1e-30),
                         rel_err(dw[0], dw[1], D, 1e-3));
        CHECK(e1 <= 1e-6 && e2 <= 1e-6, "rmsnorm [%lld,%lld]: fwd rel err %g, bwd %g", (long long)N, (long long)D, e1, e2);
        ef = fmax(ef, e1), eb = fmax(eb, e2);
        free(x), free(w), free(dy);
        for (int r = 0; r < 2; r++) free(y[r]), free(rs[r]), free(dx[r]), free(dw[r]);
    }
    CHECK_NEAR("rmsnorm forward, AVX-512 sums vs the double loop (relative)", ef, 1e-6);
    CHECK_NEAR("rmsnorm backward, AVX-512 sums vs the double loop (relative)", eb, 1e-6);
}

TEST(ops_xent_fast_matches_reference) {
    if (!have_fast()) yt_skip("no AVX-512 on this CPU or compiler: only the reference loops run");
    static const int64_t Vs[] = {1, 15, 17, 1037, 40003};
    double el = 0, eg = 0;
    for (size_t s = 0; s < sizeof Vs / sizeof *Vs; s++) {
        int64_t R = 4, V = Vs[s];
        float *x = frand_n(R * V, 15);
        int64_t tg[4] = {0, -1, V - 1, V / 2};
        x[3 * V + V / 2] = 60; /* a confident row */
        double loss[2], loss0[2];
        float *d[2];
        for (int r = 0; r < 2; r++) {
            yf_ops_set_reference(r == 1);
            d[r] = copy_n(x, R * V);
            loss0[r] = yf_xent(NULL, x, tg, R, V, 1.0f);
            loss[r] = yf_xent(d[r], d[r], tg, R, V, 0.25f); /* in place */
        }
        yf_ops_set_reference(false);
        double e1 = fmax(fabs(loss[0] - loss[1]), fabs(loss0[0] - loss0[1])) / fmax(fabs(loss[1]), 1.0);
        double e2 = yt_max_abs_diff(d[0], d[1], (size_t)(R * V)) / 0.25;
        CHECK(e1 <= 1e-7 && e2 <= 1e-7 && loss[0] == loss0[0], "xent V=%lld: loss rel err %g, grad err %g",
              (long long)V, e1, e2);
        for (int64_t i = 0; i < V; i++) CHECK(d[0][V + i] == 0, "an unscored row's gradient is 0");
        el = fmax(el, e1), eg = fmax(eg, e2);
        free(x), free(d[0]), free(d[1]);
    }
    CHECK_NEAR("cross-entropy loss, AVX-512 vs reference (relative, floor 1)", el, 1e-7);
    CHECK_NEAR("cross-entropy gradient, AVX-512 vs reference (max abs / scale)", eg, 1e-7);
}

/* yf_exp_sum (the LM head's blocked softmax): AVX-512 against the plain
 * loops on odd lengths, in place and not. */
TEST(ops_exp_sum_fast_matches_reference) {
    if (!have_fast()) yt_skip("no AVX-512 on this CPU or compiler: only the reference loops run");
    static const int64_t ns[] = {1, 15, 17, 33, 1037, 2048};
    double ey = 0, es = 0;
    for (size_t c = 0; c < sizeof ns / sizeof *ns; c++) {
        int64_t n = ns[c];
        float *x = frand_n(n, 20), *y[2];
        double s[2];
        for (int r = 0; r < 2; r++) {
            yf_ops_set_reference(r == 1);
            y[r] = copy_n(x, n);
            s[r] = yf_exp_sum(y[r], r == 0 ? y[r] : x, n, 7.5f); /* fast in place, reference not */
        }
        yf_ops_set_reference(false);
        for (int64_t i = 0; i < n; i++) ey = fmax(ey, fabs(y[0][i] - y[1][i]) / fmax(y[1][i], 1e-30));
        es = fmax(es, fabs(s[0] - s[1]) / s[1]);
        free(x), free(y[0]), free(y[1]);
    }
    CHECK_NEAR("exp(x - shift), AVX-512 vs reference (max relative)", ey, 1e-6);
    CHECK_NEAR("sum of exp(x - shift), AVX-512 vs reference (relative)", es, 1e-6);
}

/* the RoPE interleave element by element, as the architecture note states it */
static float cat_get(const float *qr, const float *kr, int64_t D, int64_t idx) { return idx < D ? qr[idx] : kr[idx - D]; }

TEST(ops_qk_rope_matches_elementwise) {
    static const int64_t sh[][4] = {{2, 5, 3, 6}, {1, 7, 4, 8}, {1, 3, 1, 2}}; /* B, T, H (odd too), hd */
    double ef = 0, eb = 0;
    for (size_t s = 0; s < sizeof sh / sizeof *sh; s++) {
        int64_t B = sh[s][0], T = sh[s][1], H = sh[s][2], hd = sh[s][3], D = H * hd, half = hd / 2, n = B * T * D;
        float *ct = malloc((size_t)(T * half) * sizeof(float)), *st = malloc((size_t)(T * half) * sizeof(float));
        yf_rope_tables(ct, st, T, hd, 10000);
        float *qp = frand_n(n, 1), *kp = frand_n(n, 1), *q = frand_n(n, 1), *k = frand_n(n, 1);
        float *wq = frand_n(n, 1), *wk = frand_n(n, 1), *dqp = frand_n(n, 1), *dkp = frand_n(n, 1);
        float *gq = frand_n(n, 1), *gk = frand_n(n, 1);
        yf_qk_rope_fwd(q, k, qp, kp, ct, st, B, T, H, hd, 0, NULL);
        yf_qk_rope_bwd(dqp, dkp, gq, gk, ct, st, B, T, H, hd, 0);
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++) {
                const float *qr = qp + (b * T + t) * D, *kr = kp + (b * T + t) * D;
                const float *cs = ct + t * half, *sn = st + t * half;
                float *bq = wq + (b * T + t) * D, *bk = wk + (b * T + t) * D;
                for (int64_t h = 0; h < H; h++) {
                    int64_t base = 2 * hd * h;
                    float *oq = q + ((b * H + h) * T + t) * hd, *ok = k + ((b * H + h) * T + t) * hd;
                    const float *g1 = gq + ((b * H + h) * T + t) * hd, *g2 = gk + ((b * H + h) * T + t) * hd;
                    for (int64_t i = 0; i < half; i++) {
                        float q1 = cat_get(qr, kr, D, base + i), q2 = cat_get(qr, kr, D, base + i + half);
                        float k1 = cat_get(qr, kr, D, base + hd + i), k2 = cat_get(qr, kr, D, base + hd + i + half);
                        ef = fmax(ef, fabs(oq[i] - (q1 * cs[i] - q2 * sn[i])));
                        ef = fmax(ef, fabs(oq[i + half] - (q2 * cs[i] + q1 * sn[i])));
                        ef = fmax(ef, fabs(ok[i] - (k1 * cs[i] - k2 * sn[i])));
                        ef = fmax(ef, fabs(ok[i + half] - (k2 * cs[i] + k1 * sn[i])));
                        /* the backward's outputs, placed as the element-wise form places them */
                        float v[4] = {g1[i] * cs[i] + g1[i + half] * sn[i], g1[i + half] * cs[i] - g1[i] * sn[i],
                                      g2[i] * cs[i] + g2[i + half] * sn[i], g2[i + half] * cs[i] - g2[i] * sn[i]};
                        int64_t at[4] = {base + i, base + i + half, base + hd + i, base + hd + i + half};
                        for (int j = 0; j < 4; j++) *(at[j] < D ? &bq[at[j]] : &bk[at[j] - D]) = v[j];
                    }
                }
            }
        eb = fmax(yt_max_abs_diff(dqp, wq, (size_t)n), yt_max_abs_diff(dkp, wk, (size_t)n));
        free(ct), free(st), free(qp), free(kp), free(q), free(k), free(wq), free(wk), free(dqp), free(dkp);
        free(gq), free(gk);
    }
    CHECK_NEAR("qk rope forward vs element-wise (max abs)", ef, 1e-6);
    CHECK_NEAR("qk rope backward vs element-wise (max abs)", eb, 1e-6);
}

/* yf_max_of (vecmath.h: four 8-lane chains, then 8-lane and scalar tails)
 * against the plain loop, with the maximum at every position of odd sizes */
TEST(ops_max_of_every_position) {
    static const int64_t sizes[] = {1, 7, 8, 9, 31, 32, 33, 40, 64, 100, 2051};
    int bad = 0, cases = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int64_t n = sizes[s];
        float *x = frand_n(n, 1);
        for (int64_t p = 0; p < n; p++, cases++) {
            float keep = x[p];
            x[p] = 5.0f + (float)p; /* above every other value */
            bad += yf_max_of(x, n) != x[p];
            x[p] = keep;
        }
        free(x);
    }
    CHECK(yf_max_of(NULL, 0) == -INFINITY, "the max of nothing is -inf");
    CHECK(bad == 0, "%d of %d maxima wrong", bad, cases);
}

/* yf_exp_block_bf16 (the LM head's fused blocks), AVX-512 against the plain
 * loop: live rows' values within one bf16 step (the two exps differ by ~1
 * ulp of fp32, which can move a rounding), their sums within 1e-6, exact
 * zeros in the other rows and past cols, the same overflow flags; on full
 * and partial blocks, with and without a logit past lim. */
TEST(ops_exp_block_bf16_fast_matches_plain) {
    if (!yf_cpu()->avx512_bf16) yt_skip("this CPU has no AVX512-BF16: the plain form is the only one");
    static const int64_t shapes[][2] = {{32, 32}, {32, 17}, {17, 32}, {5, 1}};
    int bad_zero = 0, bad_over = 0;
    double worst_val = 0, worst_sum = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int spike = 0; spike < 2; spike++) {
            int64_t rows = shapes[s][0], cols = shapes[s][1];
            float *blk = frand_n(32 * 32, 8 + (int)s), shift[32];
            for (int i = 0; i < 32; i++) shift[i] = 0.25f * (float)(i % 5) - 0.5f;
            if (spike) blk[32 * (rows - 1) + cols - 1] = shift[rows - 1] + 70; /* past lim = 64 */
            uint32_t live = 0xffffffffu & ~(1u << 3) & ~(1u << 20);
            uint16_t d[2][32 * 32];
            double acc[2][32 * 16];
            bool over[2];
            for (int ref = 0; ref < 2; ref++) {
                yf_ops_set_reference(ref == 1);
                memset(d[ref], 0xff, sizeof d[ref]);
                for (int k = 0; k < 32 * 16; k++) acc[ref][k] = 1.0;
                over[ref] = yf_exp_block_bf16(d[ref], blk, rows, cols, live, shift, acc[ref], 64.0f);
            }
            yf_ops_set_reference(false);
            bad_over += over[0] != over[1] || over[0] != (spike == 1);
            for (int64_t i = 0; i < 32; i++)
                for (int64_t c = 0; c < 32; c++) {
                    bool on = i < rows && (live >> i & 1) && c < cols;
                    if (!on) {
                        bad_zero += d[0][32 * i + c] != 0 || d[1][32 * i + c] != 0;
                        continue;
                    }
                    float a = yf_bf16_to_f32(d[0][32 * i + c]), b = yf_bf16_to_f32(d[1][32 * i + c]);
                    worst_val = fmax(worst_val, fabs(a - b) / fabs(b));
                }
            for (int k = 0; k < 32 * 16; k++) worst_sum = fmax(worst_sum, fabs(acc[0][k] - acc[1][k]) / acc[1][k]);
            free(blk);
        }
    CHECK(bad_zero == 0, "%d values that should be 0 are not", bad_zero);
    CHECK(bad_over == 0, "%d overflow flags wrong or differing", bad_over);
    CHECK_NEAR("exp block: max relative difference of the bf16 values (one bf16 step: 2^-7)", worst_val, 1.0 / 128);
    CHECK_NEAR("exp block: max relative difference of the sums", worst_sum, 1e-6);
}

/* yf_exp_sum_bf16: the sum bit for bit yf_exp_sum's, the values its rounded
 * to bf16 in 32-column lines (zeros past n), on the AVX-512 and plain paths */
TEST(ops_exp_sum_bf16_matches_exp_sum) {
    static const int64_t sizes[] = {1, 16, 17, 31, 32, 33, 70, 2053};
    int bad_sum = 0, bad_val = 0;
    for (int ref = 0; ref < 2; ref++) {
        yf_ops_set_reference(ref == 1);
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            int64_t n = sizes[s], steps = (n + 31) / 32, stride = 48;
            float *x = frand_n(n, 8), *e = malloc((size_t)n * sizeof(float));
            uint16_t *d = malloc((size_t)(steps * stride) * sizeof(uint16_t));
            memset(d, 0xff, (size_t)(steps * stride) * sizeof(uint16_t));
            double s0 = yf_exp_sum(e, x, n, 1.5f), s1 = yf_exp_sum_bf16(d, stride, x, n, 1.5f);
            bad_sum += memcmp(&s0, &s1, sizeof s0) != 0;
            for (int64_t k = 0; k < steps * 32; k++)
                bad_val += d[(k / 32) * stride + k % 32] != (k < n ? yf_f32_to_bf16(e[k]) : 0);
            free(x), free(e), free(d);
        }
    }
    yf_ops_set_reference(false);
    CHECK(bad_sum == 0, "%d sums differ from yf_exp_sum's", bad_sum);
    CHECK(bad_val == 0, "%d values differ from yf_exp_sum's rounded to bf16", bad_val);
}

/* The row-wise ops run their rows in pool pieces from 4 x 64K elements on
 * (ops.c's by_rows): the whole batch at once must give the same bits as one
 * call per sequence, each small enough to run on the caller alone. */
TEST(ops_rows_on_pool_equal_per_sequence) {
    /* P: positions in the tables, pos0 (2) + the largest posb (8) + T */
    const int64_t B = 4, T = 128, H = 8, hd = 64, D = H * hd, P = T + 10; /* B T D = 4 x 64K: pooled */
    float *x = frand_n(B * T * D, 1), *w = frand_n(D, 1), *dy = frand_n(B * T * D, 1);
    float *prev = frand_n(B * D, 1), *cs = frand_n(P * hd / 2, 1), *sn = frand_n(P * hd / 2, 1);
    float *k_in = frand_n(B * T * D, 1);
    int64_t posb[4] = {0, 3, 5, 8};
    float *a[2], *b[2], *rs[2];
    for (int v = 0; v < 2; v++) {
        a[v] = calloc((size_t)(B * T * 2 * D), sizeof(float));
        b[v] = calloc((size_t)(B * T * 2 * D), sizeof(float));
        rs[v] = calloc((size_t)(B * T), sizeof(float));
    }
    int diffs = 0;
#define SAME(what, n)                                                                                      \
    do {                                                                                                   \
        int d_ = memcmp(a[0], a[1], (size_t)(n) * sizeof(float)) != 0 ||                                   \
                 memcmp(b[0], b[1], (size_t)(n) * sizeof(float)) != 0;                                     \
        if (d_) printf("    %s: pooled and per-sequence results differ\n", what);                         \
        diffs += d_;                                                                                       \
    } while (0)
    /* RMSNorm forward and backward (accumulating into dx) */
    for (int v = 0; v < 2; v++) {
        memset(b[v], 0, (size_t)(B * T * D) * sizeof(float));
        for (int64_t s = 0; s < (v ? B : 1); s++) {
            int64_t n = v ? T : B * T, o = v ? s * T * D : 0;
            yf_rmsnorm_fwd(a[v] + o, rs[v] + o / D, x + o, w, n, D, 1e-6f);
            yf_rmsnorm_bwd(b[v] + o, NULL, dy + o, x + o, rs[v] + o / D, w, n, D, true);
        }
    }
    SAME("rmsnorm", B * T * D);
    /* the convolution's [before | current] pairs and their gradient */
    for (int v = 0; v < 2; v++)
        for (int64_t s = 0; s < (v ? B : 1); s++) {
            int64_t nb = v ? 1 : B, o = v ? s * T * D : 0;
            yf_conv_pack(a[v] + 2 * o, x + o, prev + (v ? s * D : 0), nb, T, D);
            yf_conv_unpack_bwd(b[v] + o, a[v] + 2 * o, nb, T, D, false);
        }
    SAME("conv pack / unpack", 2 * B * T * D);
    /* RoPE forward (per-sequence positions) and backward */
    for (int v = 0; v < 2; v++)
        for (int64_t s = 0; s < (v ? B : 1); s++) {
            int64_t nb = v ? 1 : B, o = v ? s * T * D : 0;
            yf_qk_rope_fwd(a[v] + o, b[v] + o, x + o, k_in + o, cs, sn, nb, T, H, hd, 2, posb + (v ? s : 0));
        }
    SAME("rope forward", B * T * D);
    for (int v = 0; v < 2; v++)
        for (int64_t s = 0; s < (v ? B : 1); s++) {
            int64_t nb = v ? 1 : B, o = v ? s * T * D : 0;
            yf_qk_rope_bwd(a[v] + o, b[v] + o, x + o, k_in + o, cs, sn, nb, T, H, hd, 1);
        }
    SAME("rope backward", B * T * D);
    /* [B, T, H, hd] <-> [B, H, T, hd] */
    for (int v = 0; v < 2; v++)
        for (int64_t s = 0; s < (v ? B : 1); s++) {
            int64_t nb = v ? 1 : B, o = v ? s * T * D : 0;
            yf_heads_split(a[v] + o, x + o, nb, T, H, hd);
            yf_heads_merge(b[v] + o, a[v] + o, nb, T, H, hd);
        }
    SAME("heads split / merge", B * T * D);
    CHECK(memcmp(b[0], x, (size_t)(B * T * D) * sizeof(float)) == 0, "merge(split(x)) == x");
    /* a + b */
    yf_add(a[0], x, dy, B * T * D);
    for (int64_t i = 0; i < B * T * D; i++) a[1][i] = x[i] + dy[i];
    memset(b[0], 0, sizeof(float)), memset(b[1], 0, sizeof(float));
    SAME("add", B * T * D);
#undef SAME
    CHECK(diffs == 0, "%d of 6 row-wise ops differ between the pooled and the per-sequence calls", diffs);
    for (int v = 0; v < 2; v++) free(a[v]), free(b[v]), free(rs[v]);
    free(x), free(w), free(dy), free(prev), free(cs), free(sn), free(k_in);
}
