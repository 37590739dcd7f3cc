/* Quantized weights (kernels/cpu/quant.h): the quantizer's rounding bounds,
 * the dequantizers against the element-wise definition (bit for bit), and
 * every quantized product on every path this CPU has against the same
 * product on the dequantized weights in fp32 (the naive reference), on odd
 * sizes: rows 1..4 (the in-register kernels), 5+ (fp32 blocks of W), N and K
 * crossing the 1024-wide blocks, row slices, accumulate on and off.
 * err = max |fast - ref| / max sum_k |x(m,k) W(n,k)|, as in test_kernels.c;
 * tolerance 1e-5: fp32 summation order only (K <= 1100 terms). */
#include "harness.h"
#include "kernels/cpu/fused.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/matmul_impl.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_impl.h"
#include "kernels/cpu/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { return yt_frand(&g_rng); }

/* the specs every test runs: int8, q4 with groups of 32 / 64, with and without a minimum */
static const yf_qspec specs[] = {
    {YF_QT_INT8, 0, false}, {YF_QT_Q4, 32, false}, {YF_QT_Q4, 32, true}, {YF_QT_Q4, 64, false}, {YF_QT_Q4, 64, true},
};
enum { NSPECS = sizeof specs / sizeof *specs };

/* W [N, K] with trained-like tails: a few large values among many small */
static float *rand_w(int64_t N, int64_t K) {
    float *w = malloc((size_t)(N * K) * sizeof(float));
    for (int64_t i = 0; i < N * K; i++) {
        float u = frand();
        w[i] = 0.05f * u * (1 + 4 * u * u * u * u);
    }
    return w;
}

static yf_qmat quantize(const float *w, int64_t N, int64_t K, const yf_qspec *s) {
    yf_qmat qm;
    int rc = yf_qmat_quantize(&qm, w, YF_F32, N, K, s, "test weight");
    YF_CHECK(rc == 0);
    return qm;
}

/* every element within the rounding bound of its scale */
TEST(quant_rounding_bounds) {
    const int64_t N = 37, K = 320;
    float *w = rand_w(N, K);
    w[5] = 0; /* a row with zeros */
    for (int64_t k = 0; k < K; k++) w[3 * K + k] = 0; /* an all-zero row: scale 0 */
    for (int s = 0; s < NSPECS; s++) {
        yf_qmat qm = quantize(w, N, K, &specs[s]);
        double worst = 0; /* error over the bound */
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < K; k++) {
                double err = fabs((double)yf_qmat_get(&qm, n, k) - w[n * K + k]), bound;
                if (qm.type == YF_QT_INT8) {
                    bound = 0.5 * ((const float *)qm.scale)[n] * (1 + 1e-4); /* and s * q rounded to fp32 */
                } else {
                    int64_t g = n * (K / qm.group) + k / qm.group;
                    double sc = fabs(yf_f16_to_f32(((const uint16_t *)qm.scale)[g]));
                    /* symmetric: the side opposite the largest magnitude has 7
                     * steps, not 8 (at most a whole step off); with a minimum,
                     * half a step plus the fp16 rounding of min and scale */
                    bound = qm.with_min ? 0.5 * sc + 16 * sc * 0x1p-11 + fabs(yf_f16_to_f32(qm.min[g])) * 0x1p-11
                                        : sc * (1 + 1e-3);
                }
                if (err / (bound + 1e-30) > worst) worst = err / (bound + 1e-30);
            }
        char what[96], sb[64];
        snprintf(what, sizeof what, "%s: max error / rounding bound", yf_qspec_str(&specs[s], sb, sizeof sb));
        CHECK_NEAR(what, worst, 1.0);
        CHECK(yf_qmat_get(&qm, 3, 7) == 0, "an all-zero row dequantizes to zeros");
        yf_qmat_free(&qm);
    }
    free(w);
}

/* the dequantizers (per ISA, slab blocks, row gathers, yf_qmat_row) give the
 * element-wise definition's values bit for bit */
TEST(quant_dequant_is_exact_on_every_path) {
    const int64_t N = 45, K = 1152;
    float *w = rand_w(N, K), *d = malloc((size_t)(N * K) * sizeof(float)), *g = malloc((size_t)(3 * K) * sizeof(float));
    for (int p = YF_KPATH_SCALAR; p < YF_KPATH_COUNT; p++) {
        if (!yf_kernels_path_supported(p)) continue;
        CHECK(yf_kernels_set_path(p) == 0);
        for (int s = 0; s < NSPECS; s++) {
            yf_qmat qm = quantize(w, N, K, &specs[s]);
            yf_qmat_dequant_rows(&qm, 0, N, d);
            int64_t bad = 0;
            for (int64_t n = 0; n < N; n++)
                for (int64_t k = 0; k < K; k++) bad += d[n * K + k] != yf_qmat_get(&qm, n, k);
            int64_t ids[3] = {44, 0, 17};
            yf_qmat_gather_rows(&qm, ids, 3, g);
            for (int i = 0; i < 3; i++) bad += memcmp(g + i * K, d + ids[i] * K, (size_t)K * sizeof(float)) != 0;
            yf_qmat_row(&qm, 17, g); /* the one-row dequantizer for code outside the kernels */
            bad += memcmp(g, d + 17 * K, (size_t)K * sizeof(float)) != 0;
            char sb[64];
            CHECK(bad == 0, "%s %s: %lld values differ from the definition", yf_kpath_name(p),
                  yf_qspec_str(&specs[s], sb, sizeof sb), (long long)bad);
            yf_qmat_free(&qm);
        }
    }
    free(w), free(d), free(g);
}

/* One product (x·W^T rows n0..n1, or dy·W over rows n0..n1) on the current
 * path against the reference on the dequantized W; the relative error. */
static double check_product(const yf_qmat *qm, bool xw, int64_t M, int64_t n0, int64_t n1, bool acc, bool public_api) {
    int64_t N = qm->N, K = qm->K, nn = n1 - n0, na = xw ? M * nn : M * K, nc = xw ? M * K : M * nn;
    float *wd = malloc((size_t)(N * K) * sizeof(float)), *wa = malloc((size_t)(N * K) * sizeof(float));
    float *a = malloc((size_t)na * sizeof(float)), *aa = malloc((size_t)na * sizeof(float));
    float *c = malloc((size_t)nc * sizeof(float)), *cref = malloc((size_t)nc * sizeof(float));
    float *scale = malloc((size_t)nc * sizeof(float));
    yf_qmat_dequant_rows(qm, 0, N, wd);
    for (int64_t i = 0; i < N * K; i++) wa[i] = fabsf(wd[i]);
    for (int64_t i = 0; i < na; i++) aa[i] = fabsf(a[i] = frand());
    for (int64_t i = 0; i < nc; i++) c[i] = cref[i] = frand();
    const float *wdn = wd + n0 * K, *wan = wa + n0 * K;
    if (!xw) {
        if (public_api && n0 == 0 && n1 == N) yf_matmul_xwt(c, a, qm, YF_QMAT, M, N, K, acc);
        else if (public_api && !acc) yf_matmul_xwt_rows(c, a, NULL, qm, YF_QMAT, NULL, M, N, K, n0, n1);
        else yf_qmat_xwt(qm, N, K, c, nn, a, M, n0, n1, acc);
        yf_matmul_xwt_ref(cref, a, wdn, YF_F32, M, nn, K, acc);
        yf_matmul_xwt_ref(scale, aa, wan, YF_F32, M, nn, K, false);
    } else {
        if (public_api && n0 == 0 && n1 == N) yf_matmul_xw(c, a, qm, YF_QMAT, M, N, K, acc);
        else if (public_api) yf_matmul_xw_rows(c, K, a, NULL, qm, YF_QMAT, NULL, M, N, K, n0, n1, acc);
        else yf_qmat_xw(qm, N, K, c, K, a, nn, M, n0, n1, acc);
        yf_matmul_xw_ref(cref, a, wdn, YF_F32, M, nn, K, acc);
        yf_matmul_xw_ref(scale, aa, wan, YF_F32, M, nn, K, false);
    }
    double err = yt_max_abs_diff(c, cref, (size_t)nc), mag = yt_max_abs(scale, (size_t)nc);
    for (int64_t i = 0; i < nc; i++)
        if (!isfinite(c[i])) err = INFINITY;
    free(wd), free(wa), free(a), free(aa), free(c), free(cref), free(scale);
    return mag > 0 ? err / mag : err;
}

/* rows M, W [N, K]; q4 shapes need K a multiple of 64 */
static const int64_t qshapes[][3] = {{1, 75, 128}, {2, 33, 64}, {3, 40, 192}, {4, 1, 64}, {1, 1100, 64},
                                     {5, 17, 1088}, {17, 75, 128}, {64, 33, 320}, {4, 130, 1088}, {33, 1030, 64}};
static const int64_t i8shapes[][3] = {{1, 75, 130}, {3, 33, 7}, {4, 9, 1}, {1, 1100, 33}, {17, 40, 1030}};

static void sweep(yf_kpath path) {
    if (!yf_kernels_path_supported(path)) yt_skip("this CPU (or build) has no %s path", yf_kpath_name(path));
    CHECK(yf_kernels_set_path(path) == 0);
    const double tol = 1e-5;
    for (int s = 0; s < NSPECS; s++) {
        double worst = 0;
        int nsh = specs[s].type == YF_QT_INT8 ? 15 : 10;
        for (int i = 0; i < nsh; i++) {
            const int64_t *sh = i < 10 ? qshapes[i] : i8shapes[i - 10];
            int64_t M = sh[0], N = sh[1], K = sh[2];
            float *w = rand_w(N, K);
            yf_qmat qm = quantize(w, N, K, &specs[s]);
            for (int xw = 0; xw < 2; xw++)
                for (int acc = 0; acc < 2; acc++)
                    for (int api = 0; api < 2; api++) {
                        /* all rows, and a slice not starting at 0 */
                        int64_t n0 = api ? 0 : N / 3, n1 = api ? N : N - N / 5;
                        if (n1 <= n0) n0 = 0, n1 = N;
                        double e = check_product(&qm, xw, M, n0, n1, acc, api);
                        char sb[64];
                        CHECK(e <= tol, "%s %s %s M=%lld W[%lld:%lld of %lld, %lld] acc=%d: rel err %g",
                              yf_kpath_name(path), yf_qspec_str(&specs[s], sb, sizeof sb), xw ? "dy.W" : "x.W^T",
                              (long long)M, (long long)n0, (long long)n1, (long long)N, (long long)K, acc, e);
                        if (e > worst) worst = e;
                    }
            yf_qmat_free(&qm);
            free(w);
        }
        char what[128], sb[64];
        snprintf(what, sizeof what, "%s %s products vs fp32 on the dequantized W: max rel err", yf_kpath_name(path),
                 yf_qspec_str(&specs[s], sb, sizeof sb));
        CHECK_NEAR(what, worst, tol);
    }
}

TEST(quant_ref_matches_dequantized) { sweep(YF_KPATH_REF); }
TEST(quant_scalar_matches_ref) { sweep(YF_KPATH_SCALAR); }
TEST(quant_avx2_matches_ref) { sweep(YF_KPATH_AVX2); }
TEST(quant_avx512_matches_ref) { sweep(YF_KPATH_AVX512); }
TEST(quant_amx_matches_ref) { sweep(YF_KPATH_AMX); }

/* ---- q4 over int8 activations (yf_qmat.int8_act) ---- */

/* x rounded as yf_qx says, element by element: sx = max |x| / 127 per group,
 * xq = rint(x * (1 / sx)); qx's layout gives those values back. For q4 W
 * groups of 32 and 64; for int8 W groups of 32 and a K (330) that ends in a
 * part group and a part chunk. */
TEST(quant_int8_act_rounding) {
    const int64_t M = 3;
    for (int g = 0; g < 3; g++)
        for (int c = 0; c < 2; c++) {
            int64_t G = g == 1 ? 64 : 32, C = c ? YF_QX_C_AVX512 : YF_QX_C_AVX2, K = g == 2 ? 330 : 320;
            yf_qmat w = {.type = g == 2 ? YF_QT_INT8 : YF_QT_Q4, .N = 1, .K = K, .group = g == 2 ? K : G};
            float *x = malloc(M * K * sizeof(float)), *d = malloc(K * sizeof(float));
            for (int64_t i = 0; i < M * K; i++) x[i] = frand() * (i % 97 == 0 ? 30.0f : 1.0f);
            for (int64_t k = 64; k < 64 + G; k++) x[K + k] = 0; /* a zero group */
            x[2 * K + 5] = NAN;                                  /* a group with a NaN: NaN out */
            void *buf = aligned_alloc(64, (yf_qx_bytes(&w, M, C) + 63) / 64 * 64);
            yf_qx qx;
            yf_qx_quantize(&qx, buf, x, M, &w, C);
            int64_t bad = 0;
            for (int64_t m = 0; m < M; m++) {
                yf_qx_dequant(&qx, m, d);
                for (int64_t k0 = 0; k0 < K; k0 += G) {
                    float amax = 0;
                    int64_t k1 = k0 + G < K ? k0 + G : K;
                    for (int64_t k = k0; k < k1; k++) amax = fmaxf(amax, fabsf(x[m * K + k]));
                    float sx = amax / 127.0f, inv = sx != 0 ? 1.0f / sx : 0;
                    for (int64_t k = k0; k < k1; k++) {
                        float want = sx * rintf(x[m * K + k] * inv);
                        if (m == 2 && k0 == 0) bad += !isnan(d[k]);
                        else bad += d[k] != want || fabsf(want - x[m * K + k]) > 0.5f * sx * 1.0001f;
                    }
                }
            }
            CHECK(bad == 0, "%s W, G %lld, C %lld: %lld values differ from the definition", yf_qtype_name(w.type),
                  (long long)G, (long long)C, (long long)bad);
            free(buf), free(x), free(d);
        }
}

/* One x·W^T of M rows, rows n0..n1 of an int8 or q4 W with int8_act, through the
 * public product (and, for each kernel this CPU runs, the kernel itself):
 * against the reference on the dequantized W and the rounded x (1e-5 of
 * sum |x||W|), and against fp32 x within the rounding's bound, sum over
 * groups of (max |x| / 254) sum |W|. */
static void check_int8_act(yf_qmat *qm, int64_t M, int64_t n0, int64_t n1, bool acc, double *worst) {
    int64_t N = qm->N, K = qm->K, nn = n1 - n0;
    float *wd = malloc(N * K * sizeof(float)), *x = malloc(M * K * sizeof(float)), *xd = malloc(M * K * sizeof(float));
    float *ax = malloc(M * K * sizeof(float)), *aw = malloc(N * K * sizeof(float)), *c = malloc(M * nn * sizeof(float));
    float *cref = malloc(M * nn * sizeof(float)), *c0 = malloc(M * nn * sizeof(float)), *mag = malloc(M * nn * sizeof(float));
    float *bound = malloc(M * nn * sizeof(float)), *c32 = malloc(M * nn * sizeof(float));
    yf_qmat_dequant_rows(qm, 0, N, wd);
    for (int64_t i = 0; i < N * K; i++) aw[i] = fabsf(wd[i]);
    for (int64_t i = 0; i < M * K; i++) x[i] = frand() * (i % 61 == 0 ? 8.0f : 1.0f);
    for (int64_t i = 0; i < M * nn; i++) c0[i] = frand();
    void *buf = aligned_alloc(64, (yf_qx_bytes(qm, M, 64) + 63) / 64 * 64);
    yf_qx qx;
    yf_qx_quantize(&qx, buf, x, M, qm, 64);
    int64_t G = qm->type == YF_QT_Q4 ? qm->group : 32; /* x's groups */
    for (int64_t m = 0; m < M; m++) yf_qx_dequant(&qx, m, xd + m * K);
    for (int64_t i = 0; i < M * K; i++) ax[i] = fabsf(xd[i]);
    /* the rounded x's product (the definition) and its scale */
    memcpy(cref, c0, M * nn * sizeof(float));
    yf_matmul_xwt_ref(cref, xd, wd + n0 * K, YF_F32, M, nn, K, acc);
    yf_matmul_xwt_ref(mag, ax, aw + n0 * K, YF_F32, M, nn, K, false);
    /* the bound against fp32 x: per group max|x| / 254 (half a step) times sum |W| */
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < nn; n++) {
            double b = 0;
            for (int64_t k0 = 0; k0 < K; k0 += G) {
                double amax = 0, sw = 0;
                for (int64_t k = k0; k < k0 + G && k < K; k++) {
                    amax = fmax(amax, fabsf(x[m * K + k]));
                    sw += aw[(n0 + n) * K + k];
                }
                b += amax / 254 * sw;
            }
            bound[m * nn + n] = (float)b;
        }
    memcpy(c32, c0, M * nn * sizeof(float));
    yf_matmul_xwt_ref(c32, x, wd + n0 * K, YF_F32, M, nn, K, acc);
    /* the public product with int8_act, then each kernel directly (4 rows at most a call) */
    for (int way = 0; way < 3; way++) {
        int64_t C = way == 1 ? YF_QX_C_AVX2 : YF_QX_C_AVX512;
        if (way == 1 && !yf_kernels_path_supported(YF_KPATH_AVX2)) continue;
        if (way == 2 && !(yf_kernels_path_supported(YF_KPATH_AVX512) && yf_cpu()->avx512_vnni)) continue;
        memcpy(c, c0, M * nn * sizeof(float));
        if (way == 0) {
            qm->int8_act = true;
            if (n0 == 0 && n1 == N) yf_matmul_xwt(c, x, qm, YF_QMAT, M, N, K, acc);
            else yf_qmat_xwt(qm, N, K, c, nn, x, M, n0, n1, acc);
            qm->int8_act = false;
        } else {
            yf_qx q2;
            void *b2 = aligned_alloc(64, (yf_qx_bytes(qm, M, C) + 63) / 64 * 64);
            yf_qx_quantize(&q2, b2, x, M, qm, C);
            if (M <= YF_QGEMV_MAX_M)
                (way == 1 ? yf_qidot_avx2 : yf_qidot_avx512)(qm, c, nn, &q2, M, n0, n1, acc);
            else
                memcpy(c, cref, M * nn * sizeof(float)); /* the kernels take 4 rows; the public product passes */
            free(b2);
        }
        double e = 0, eb = 0;
        for (int64_t i = 0; i < M * nn; i++) {
            double d = fabs((double)c[i] - cref[i]) / (mag[i] > 0 ? mag[i] : 1);
            e = isfinite(c[i]) ? fmax(e, d) : INFINITY;
            eb = fmax(eb, fabs((double)c[i] - c32[i]) - (bound[i] + 1e-5 * mag[i]));
        }
        CHECK(e <= 1e-5, "way %d (0 public, 1 avx2 kernel, 2 avx512 kernel) %s: M=%lld W[%lld:%lld of %lld, %lld] "
              "acc=%d: rel err %g vs the rounded x's product", way, yf_kpath_name(yf_kernels_path()), (long long)M,
              (long long)n0, (long long)n1, (long long)N, (long long)K, acc, e);
        CHECK(eb <= 0, "way %d: M=%lld W[%lld, %lld]: beyond the rounding bound by %g", way, (long long)M,
              (long long)N, (long long)K, eb);
        if (e > *worst) *worst = e;
    }
    free(buf), free(wd), free(x), free(xd), free(ax), free(aw), free(c), free(cref), free(c0), free(mag), free(bound),
        free(c32);
}

TEST(quant_int8_act_products) {
    /* M, N, K: K a multiple of 64 and not of 128 (a part chunk), rows in passes of 4 up to 32, more rows fp32 */
    static const int64_t sh[][3] = {{1, 75, 128}, {2, 33, 64}, {3, 40, 192}, {4, 1, 64}, {1, 300, 2112},
                                    {5, 17, 1088}, {17, 75, 320}, {32, 9, 64}, {4, 130, 1088}, {1, 19, 96},
                                    /* int8 only: any K */
                                    {1, 75, 130}, {3, 33, 7}, {4, 9, 1}, {17, 40, 1030}, {2, 300, 2050}};
    double worst = 0;
    for (int p = YF_KPATH_REF; p <= YF_KPATH_AMX; p++) {
        if (!yf_kernels_path_supported(p)) continue;
        CHECK(yf_kernels_set_path(p) == 0);
        for (int s = 0; s < NSPECS; s++)
            for (size_t i = 0; i < sizeof sh / sizeof *sh; i++) {
                int64_t M = sh[i][0], N = sh[i][1], K = sh[i][2];
                if (!yf_qspec_fits(&specs[s], K)) continue;
                float *w = rand_w(N, K);
                yf_qmat qm = quantize(w, N, K, &specs[s]);
                for (int acc = 0; acc < 2; acc++) {
                    check_int8_act(&qm, M, 0, N, acc, &worst);
                    if (N >= 3) check_int8_act(&qm, M, N / 3, N - N / 5, acc, &worst);
                }
                yf_qmat_free(&qm);
                free(w);
            }
    }
    CHECK_NEAR("int8 and q4 W over int8 x vs the rounded x's fp32 product: max rel err", worst, 1e-5);
}

/* Products of up to YF_QMAT_GEMV_ROWS rows give each row the bits of the
 * same product of that row alone (batched decoding and the prefill
 * batching rule rely on it): every quantized type, fp32 and int8 x, on the
 * AVX2 and AVX-512 paths, 5 to 32 rows (passes of 4 over blocks of W) */
TEST(quant_rows_alone_bits) {
    const int64_t N = 300, K = 2112;
    float *w = rand_w(N, K), *x = malloc(32 * K * sizeof(float));
    float *yb = malloc(32 * N * sizeof(float)), *y1 = malloc(N * sizeof(float));
    for (int64_t i = 0; i < 32 * K; i++) x[i] = frand();
    int bad = 0, runs = 0;
    for (int p = YF_KPATH_AVX2; p <= YF_KPATH_AVX512; p++) {
        if (!yf_kernels_path_supported(p) || yf_kernels_set_path(p)) continue;
        for (int s = 0; s < NSPECS; s++) {
            yf_qmat qm = quantize(w, N, K, &specs[s]);
            for (int act = 0; act < 2; act++) {
                qm.int8_act = act;
                for (int64_t M = 5; M <= YF_QMAT_GEMV_ROWS; M += 9) {
                    yf_matmul_xwt(yb, x, &qm, YF_QMAT, M, N, K, false);
                    for (int64_t m = 0; m < M; m++) {
                        yf_matmul_xwt(y1, x + m * K, &qm, YF_QMAT, 1, N, K, false);
                        char sb[64];
                        if (memcmp(y1, yb + m * N, (size_t)N * sizeof(float)) != 0 && bad++ < 3)
                            fprintf(stderr, "  %s %s%s: row %lld of %lld differs from it alone\n", yf_kpath_name(p),
                                    yf_qspec_str(&specs[s], sb, sizeof sb), act ? ", int8 x" : "", (long long)m,
                                    (long long)M);
                        runs++;
                    }
                }
            }
            yf_qmat_free(&qm);
        }
    }
    CHECK(runs > 0, "no AVX2 or AVX-512 path here");
    CHECK(bad == 0, "%d of %d rows of a batched product differ from the row alone (tolerance: none)", bad, runs);
    free(w), free(x), free(yb), free(y1);
}

/* LoRA's fused entry points take a quantized W through their plain steps */
TEST(quant_fused_entry_points) {
    const int64_t M = 9, N = 70, K = 128, R = 4;
    float *w = rand_w(N, K), *x = malloc(M * K * sizeof(float)), *l = malloc(M * R * sizeof(float));
    float *r = malloc(N * R * sizeof(float)), *y0 = malloc(M * N * sizeof(float)), *y1 = malloc(M * N * sizeof(float));
    for (int64_t i = 0; i < M * K; i++) x[i] = frand();
    for (int64_t i = 0; i < M * R; i++) l[i] = frand();
    for (int64_t i = 0; i < N * R; i++) r[i] = frand();
    yf_qmat qm = quantize(w, N, K, &specs[1]);
    yf_matmul_xwt_pk_lr(y0, x, &qm, YF_QMAT, NULL, M, N, K, false, l, r, R);
    yf_matmul_xwt(y1, x, &qm, YF_QMAT, M, N, K, false);
    yf_matmul_xwt(y1, l, r, YF_F32, M, N, R, true);
    CHECK(memcmp(y0, y1, M * N * sizeof(float)) == 0, "x.W^T + L R^T differs from its plain steps");
    yf_drop d = {0};
    CHECK(!yf_matmul_xw_pk_drop(x, y0, &qm, YF_QMAT, NULL, M, N, K, false, l, r, R, &d),
          "the fused dropout term is left to the caller");
    yf_qmat_free(&qm);
    free(w), free(x), free(l), free(r), free(y0), free(y1);
}

TEST(quant_bad_input) {
    yf_qtype t;
    CHECK(yf_qtype_parse("int4", &t) == -1 && strstr(yf_last_error(), "int8 or q4"), "%s", yf_last_error());
    CHECK(yf_qtype_parse("q4", &t) == 0 && t == YF_QT_Q4);
    float w[2 * 96];
    for (int i = 0; i < 2 * 96; i++) w[i] = 0.01f * (float)(i % 7);
    yf_qmat qm;
    yf_qspec g64 = {YF_QT_Q4, 64, false};
    CHECK(!yf_qspec_fits(&g64, 96) && yf_qspec_fits(&specs[1], 96));
    CHECK(yf_qmat_quantize(&qm, w, YF_F32, 2, 96, &g64, "layers.0.mlp.down_proj.weight") == -1 &&
              strstr(yf_last_error(), "down_proj") && strstr(yf_last_error(), "multiple of the group"),
          "%s", yf_last_error());
    w[100] = NAN;
    CHECK(yf_qmat_quantize(&qm, w, YF_F32, 2, 96, &specs[0], "w") == -1 && strstr(yf_last_error(), "row 1"), "%s",
          yf_last_error());
    for (int p = YF_KPATH_AVX2; p <= YF_KPATH_AVX512; p++) { /* q4's generic and AVX-512 quantizers */
        if (!yf_kernels_path_supported(p) || yf_kernels_set_path(p)) continue;
        CHECK(yf_qmat_quantize(&qm, w, YF_F32, 2, 96, &specs[1], "w") == -1 && strstr(yf_last_error(), "not finite"),
              "%s: %s", yf_kpath_name(p), yf_last_error());
    }
    w[100] = 1e6f;
    CHECK(yf_qmat_quantize(&qm, w, YF_F32, 2, 96, &specs[1], "w") == -1 && strstr(yf_last_error(), "int8"), "%s",
          yf_last_error());
    CHECK(yf_qmat_quantize(&qm, w, YF_F32, 2, 96, &specs[0], "w") == 0, "int8 takes large values");
    yf_qmat_free(&qm);
}

/* the AVX-512 quantizer stores the same bytes as the generic code */
TEST(quant_avx512_quantizer_same_bits) {
    if (!yf_kernels_path_supported(YF_KPATH_AVX512)) yt_skip("this CPU (or build) has no avx512 path");
    const int64_t N = 300, K = 704;
    float *w = rand_w(N, K);
    for (int s = 1; s < NSPECS; s++) {
        if (!yf_qspec_fits(&specs[s], K)) continue;
        yf_qmat q[2];
        for (int p = 0; p < 2; p++) {
            CHECK(yf_kernels_set_path(p ? YF_KPATH_AVX512 : YF_KPATH_AVX2) == 0);
            q[p] = quantize(w, N, K, &specs[s]);
        }
        size_t groups = (size_t)(N * (K / q[0].group)) * 2;
        char sb[64];
        CHECK(memcmp(q[0].q, q[1].q, (size_t)(N * K / 2)) == 0 && memcmp(q[0].scale, q[1].scale, groups) == 0 &&
                  (!q[0].min || memcmp(q[0].min, q[1].min, groups) == 0),
              "%s: the AVX-512 quantizer's bytes differ", yf_qspec_str(&specs[s], sb, sizeof sb));
        yf_qmat_free(&q[0]);
        yf_qmat_free(&q[1]);
    }
    free(w);
}
