/* The AVX-512 and AVX2 packed driver (gemm_fma.c) against itself and the
 * plain steps: pre-packed weights (bf16 and f32, both kinds of pack, row
 * slices) give the same bits as packing per call; the fused low-rank terms
 * give the same bits as the separate rank-r product (and dropout mask); the
 * embedding's rows read back from a pack. Odd sizes: rows not a multiple of
 * the register tile, columns not a multiple of the panels, K over several
 * K blocks, enough work to be split between threads. (The driver against
 * the naive reference: test_kernels.c's sweeps.) */
#include "harness.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/fused.h"
#include "kernels/cpu/kernels.h"
#include "model/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { return yt_frand(&g_rng); }

/* The driver's three forms: fp32 on AVX-512 and on AVX2, and bf16 pairs on
 * AVX-512 (bf16 mode with the bf16 dot kernel, where the CPU has
 * AVX512-BF16). */
typedef struct fma_mode {
    yf_kpath path;
    bool pairs;
    const char *name;
} fma_mode;
static const fma_mode fma_modes[] = {
    {YF_KPATH_AVX512, false, "avx512"}, {YF_KPATH_AVX2, false, "avx2"}, {YF_KPATH_AVX512, true, "avx512 bf16 pairs"}};

/* a weight [n, k] of dtype wt: bf16 values, or f32 ones */
static void *weight(yf_dtype wt, int64_t n, int64_t k) {
    if (wt == YF_BF16) {
        uint16_t *w = malloc((size_t)(n * k) * sizeof(uint16_t));
        for (int64_t i = 0; i < n * k; i++) w[i] = yf_f32_to_bf16(frand());
        return w;
    }
    float *w = malloc((size_t)(n * k) * sizeof(float));
    for (int64_t i = 0; i < n * k; i++) w[i] = frand();
    return w;
}

static float *filled(int64_t n) {
    float *x = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = frand();
    return x;
}

enum { NPATHS = sizeof fma_modes / sizeof *fma_modes };

static bool mode_supported(size_t pi) {
    return yf_kernels_path_supported(fma_modes[pi].path) && (!fma_modes[pi].pairs || yf_cpu()->avx512_bf16);
}

static int paths_run(void) {
    int n = 0;
    for (size_t p = 0; p < NPATHS; p++) n += mode_supported(p);
    return n;
}

/* Switches to fma_modes[pi] (path, precision, bf16 dot kernel); false when
 * this CPU (or build) lacks it. */
static bool use_path(size_t pi) {
    if (!mode_supported(pi) || yf_kernels_set_path(fma_modes[pi].path) != 0) return false;
    yf_kernels_set_precision(fma_modes[pi].pairs ? YF_PREC_BF16 : YF_PREC_EXACT);
    yf_kernels_set_bf16_dot(fma_modes[pi].pairs);
    CHECK(yf_kernels_bf16_dot() == fma_modes[pi].pairs, "%s: the bf16 dot kernel is %s", fma_modes[pi].name,
          yf_kernels_bf16_dot() ? "on" : "off");
    return true;
}

/* Back to exact mode and this CPU's choice of the bf16 dot kernel. */
static void paths_done(void) {
    yf_kernels_set_precision(YF_PREC_EXACT);
    yf_kernels_set_bf16_dot(yf_cpu()->bf16_dot_fast);
}

/* The weight dtypes a mode pre-packs: the pair kernel only bf16 ones. */
static bool packs_dtype(size_t pi, yf_dtype wt) { return !fma_modes[pi].pairs || wt == YF_BF16; }

TEST(kernels_fma_prepacked_weight_is_bitwise_identical) {
    if (!paths_run()) yt_skip("this CPU (or build) has neither the avx512 nor the avx2 path");
    static const int64_t shapes[][3] = {{17, 75, 130}, {64, 33, 600}, {300, 1000, 70}, {40, 96, 700}, {384, 512, 512},
                                        {5, 40, 33}};
    double worst = 0;
    for (size_t pi = 0; pi < NPATHS; pi++) {
        if (!use_path(pi)) continue;
        for (int d = 0; d < 2; d++) {
            yf_dtype wt = d ? YF_BF16 : YF_F32;
            if (!packs_dtype(pi, wt)) continue;
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
                for (int kind = 0; kind < 2; kind++) {
                    int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                    int64_t na = kind == YF_PACK_XWT ? M * K : M * N, nc = kind == YF_PACK_XWT ? M * N : M * K;
                    float *a = filled(na), *c0 = filled(nc), *c1 = malloc((size_t)nc * sizeof(float));
                    memcpy(c1, c0, (size_t)nc * sizeof(float));
                    void *w = weight(wt, N, K);
                    CHECK(yf_wpack_pays(M, wt), "%s: a pack of %ld rows is not used", fma_modes[pi].name,
                          (long)M);
                    yf_wpack *pk = yf_wpack_new(w, wt, N, K, (yf_pack_kind)kind, false);
                    CHECK(pk != NULL, "%s", yf_last_error());
                    bool acc = (s + kind) % 2 == 1;
                    if (kind == YF_PACK_XWT) {
                        yf_matmul_xwt(c0, a, w, wt, M, N, K, acc);
                        yf_matmul_xwt_pk(c1, a, w, wt, pk, M, N, K, acc);
                    } else {
                        yf_matmul_xw(c0, a, w, wt, M, N, K, acc);
                        yf_matmul_xw_pk(c1, a, w, wt, pk, M, N, K, acc);
                    }
                    double e = yt_max_abs_diff(c0, c1, nc);
                    CHECK(memcmp(c0, c1, (size_t)nc * sizeof(float)) == 0, "%s %s %s [%ld,%ld,%ld]: max diff %g",
                          fma_modes[pi].name, yf_dtype_name(wt), kind == YF_PACK_XWT ? "x.W^T" : "dy.W",
                          (long)M, (long)N, (long)K, e);
                    worst = fmax(worst, e);
                    yf_wpack_free(pk);
                    free(a), free(c0), free(c1), free(w);
                }
        }
    }
    paths_done();
    CHECK_NEAR("fma paths: max |pre-packed - packed per call|", worst, 0.0);
}

/* The fused low-rank terms against the steps they replace, bit for bit, and
 * run inside the product: x.W^T + L.R^T (LoRA's up-projection) and dy.W +
 * drop(L.R) (its input gradient with dropout; dx written or accumulated, p
 * 0.1 and 0.5); W f32 and bf16, pre-packed or not, ranks 1 to 16, dx's
 * columns a multiple of 16 but not of the panels. */
static double lowrank_case(int64_t M, int64_t N, int64_t K, int64_t r, yf_dtype wt, bool packed, bool acc) {
    float *x = filled(M * K), *c0 = filled(M * N), *c1 = malloc((size_t)(M * N) * sizeof(float));
    float *l = filled(M * r), *rr = filled(N * r);
    memcpy(c1, c0, (size_t)(M * N) * sizeof(float));
    void *w = weight(wt, N, K);
    yf_wpack *pk = packed ? yf_wpack_new(w, wt, N, K, YF_PACK_XWT, false) : NULL;
    CHECK(!packed || pk, "%s", yf_last_error());
    yf_matmul_xwt_pk(c0, x, w, wt, pk, M, N, K, acc);
    yf_matmul_xwt(c0, l, rr, YF_F32, M, N, r, true);
    yf_matmul_xwt_pk_lr(c1, x, w, wt, pk, M, N, K, acc, l, rr, r);
    double e = yt_max_abs_diff(c0, c1, M * N);
    yf_wpack_free(pk);
    free(x), free(c0), free(c1), free(l), free(rr), free(w);
    return e;
}

static double dropout_case(int64_t M, int64_t N, int64_t K, int64_t r, yf_dtype wt, bool packed, bool acc, float p,
                           uint64_t seed) {
    float *dy = filled(M * N), *c0 = filled(M * K), *c1 = malloc((size_t)(M * K) * sizeof(float));
    float *l = filled(M * r), *rr = filled(r * K), *t = malloc((size_t)(M * K) * sizeof(float));
    memcpy(c1, c0, (size_t)(M * K) * sizeof(float));
    void *w = weight(wt, N, K);
    yf_wpack *pk = packed ? yf_wpack_new(w, wt, N, K, YF_PACK_XW, false) : NULL;
    CHECK(!packed || pk, "%s", yf_last_error());
    yf_matmul_xw(t, l, rr, YF_F32, M, r, K, false);
    yf_dropout(t, t, M * K, p, seed);
    yf_matmul_xw_pk(c0, dy, w, wt, pk, M, N, K, acc);
    for (int64_t i = 0; i < M * K; i++) c0[i] += t[i];
    yf_drop d = yf_dropout_params(p, seed);
    bool fused = yf_matmul_xw_pk_drop(c1, dy, w, wt, pk, M, N, K, acc, l, rr, r, &d);
    double e = fused ? yt_max_abs_diff(c0, c1, M * K) : INFINITY;
    yf_wpack_free(pk);
    free(dy), free(c0), free(c1), free(l), free(rr), free(t), free(w);
    return e;
}

TEST(kernels_fma_terms_match_separate_steps) {
    if (!paths_run()) yt_skip("this CPU (or build) has neither the avx512 nor the avx2 path");
    static const int64_t shapes[][4] = {{17, 75, 144, 8}, {384, 600, 2048, 8}, {40, 700, 272, 16}, {100, 64, 64, 1},
                                        {13, 40, 48, 5}, {7, 33, 32, 3}};
    int64_t fused0 = yf_matmul_epilogue_calls(), calls = 0;
    double worst = 0;
    for (size_t pi = 0; pi < NPATHS; pi++) {
        if (!use_path(pi)) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int packed = 0; packed < 2; packed++) {
                int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], r = shapes[s][3];
                yf_dtype wt = (s + packed) % 2 ? YF_BF16 : YF_F32;
                if (packed && !packs_dtype(pi, wt)) wt = YF_BF16;
                bool acc = (s + packed) % 2 == 1;
                float p = s % 2 ? 0.5f : 0.1f;
                double el = lowrank_case(M, N, K, r, wt, packed, acc);
                double ed = dropout_case(M, N, K, r, wt, packed, acc, p, 0x1234567890abull + s);
                calls += 2;
                CHECK(el == 0 && ed == 0, "%s %s [%ld,%ld,%ld] rank %ld%s%s: max |fused - separate| low-rank %g, "
                      "dropout (p %.1f) %g", fma_modes[pi].name, yf_dtype_name(wt), (long)M, (long)N,
                      (long)K, (long)r, acc ? " accumulating" : "", packed ? ", packed W" : "", el, p, ed);
                worst = fmax(worst, fmax(el, ed));
            }
    }
    paths_done();
    CHECK_NEAR("fma paths: max |fused - separate| of the low-rank and dropout terms", worst, 0.0);
    CHECK(yf_matmul_epilogue_calls() - fused0 == calls, "%lld of %lld calls took the fused route",
          (long long)(yf_matmul_epilogue_calls() - fused0), (long long)calls);
}

/* Row slices of a pre-packed W (the LM head's vocabulary blocks): x.W[n0:n1]^T
 * and dy.W[n0:n1] with the pack give the same bits as without it, and the
 * x.W^T slice the same as those columns of the whole product. */
TEST(kernels_fma_row_slices_of_packed_weights) {
    if (!paths_run()) yt_skip("this CPU (or build) has neither the avx512 nor the avx2 path");
    static const int64_t cases[][5] = {{40, 300, 70, 32, 200}, {40, 300, 70, 0, 300}, {17, 300, 70, 256, 300},
                                       {33, 2500, 64, 64, 2400}, {100, 640, 300, 128, 640}};
    double worst = 0;
    for (size_t pi = 0; pi < NPATHS; pi++) {
        if (!use_path(pi)) continue;
        for (size_t s = 0; s < sizeof cases / sizeof *cases; s++) {
            int64_t M = cases[s][0], N = cases[s][1], K = cases[s][2], n0 = cases[s][3], n1 = cases[s][4], nb = n1 - n0;
            yf_dtype wt = s % 2 || !packs_dtype(pi, YF_F32) ? YF_BF16 : YF_F32;
            float *x = filled(M * K), *dy = filled(M * nb), *yfull = malloc((size_t)(M * N) * sizeof(float));
            float *y0 = malloc((size_t)(M * nb) * sizeof(float)), *y1 = malloc((size_t)(M * nb) * sizeof(float));
            float *d0 = filled(M * K), *d1 = malloc((size_t)(M * K) * sizeof(float));
            memcpy(d1, d0, (size_t)(M * K) * sizeof(float));
            void *w = weight(wt, N, K);
            yf_wpack *pt = yf_wpack_new(w, wt, N, K, YF_PACK_XWT, false), *pw = yf_wpack_new(w, wt, N, K, YF_PACK_XW, false);
            CHECK(pt && pw, "%s", yf_last_error());
            yf_matmul_xwt(yfull, x, w, wt, M, N, K, false);
            yf_matmul_xwt_rows(y0, x, NULL, w, wt, NULL, M, N, K, n0, n1);
            yf_matmul_xwt_rows(y1, x, NULL, w, wt, pt, M, N, K, n0, n1);
            bool acc = s % 2 == 0;
            yf_matmul_xw_rows(d0, K, dy, NULL, w, wt, NULL, M, N, K, n0, n1, acc);
            yf_matmul_xw_rows(d1, K, dy, NULL, w, wt, pw, M, N, K, n0, n1, acc);
            double e = fmax(yt_max_abs_diff(y0, y1, M * nb), yt_max_abs_diff(d0, d1, M * K));
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < nb; j++) e = fmax(e, fabs(y0[i * nb + j] - yfull[i * N + n0 + j]));
            CHECK(e == 0, "%s case %zu: slice products differ (max %g)", fma_modes[pi].name, s, e);
            worst = fmax(worst, e);
            yf_wpack_free(pt), yf_wpack_free(pw);
            free(x), free(dy), free(yfull), free(y0), free(y1), free(d0), free(d1), free(w);
        }
    }
    paths_done();
    CHECK_NEAR("fma paths: row slices, max |packed - unpacked|, |slice - whole product's columns|", worst, 0.0);
}

/* W's rows read back from its dy.W pack (the tied embedding once the head's
 * pages are given back): bit for bit, bf16 and f32 */
TEST(kernels_fma_rows_from_a_packed_weight) {
    if (!paths_run()) yt_skip("this CPU (or build) has neither the avx512 nor the avx2 path");
    static const int64_t shapes[][2] = {{70, 100}, {33, 64}, {300, 17}};
    int bad = 0;
    for (size_t pi = 0; pi < NPATHS; pi++) {
        if (!use_path(pi)) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int d = 0; d < 2; d++) {
                yf_dtype wt = d ? YF_BF16 : YF_F32;
                if (!packs_dtype(pi, wt)) continue;
                int64_t N = shapes[s][0], K = shapes[s][1];
                void *w = weight(wt, N, K);
                yf_wpack *xw = yf_wpack_new(w, wt, N, K, YF_PACK_XW, false);
                yf_wpack *xwt = yf_wpack_new(w, wt, N, K, YF_PACK_XWT, false);
                CHECK(xw && xwt, "packing a %lld x %lld weight failed", (long long)N, (long long)K);
                int64_t ids[70] = {0, N - 1, N / 2, 1, 32 % N, N - 1}, n = 70;
                for (int64_t i = 6; i < n; i++) ids[i] = (i * 37) % N;
                float *out = malloc((size_t)(n * K) * sizeof(float));
                CHECK(yf_wpack_rows(xw, ids, n, out));
                for (int64_t i = 0; i < n; i++)
                    for (int64_t k = 0; k < K; k++) {
                        int64_t at = ids[i] * K + k;
                        float v = wt == YF_BF16 ? yf_bf16_to_f32(((uint16_t *)w)[at]) : ((float *)w)[at];
                        bad += out[i * K + k] != v;
                    }
                CHECK(!yf_wpack_rows(xwt, ids, n, out), "an x.W^T pack is not read as rows");
                free(out), free(w);
                yf_wpack_free(xw);
                yf_wpack_free(xwt);
            }
    }
    paths_done();
    CHECK(bad == 0, "%d values differ from W's rows", bad);
}

/* Products whose packed A does not fit the driver's block (16 MiB): a long
 * K (the LM head's dy.W over the vocabulary: A taken a K range at a time)
 * and many rows (a row block at a time), against the naive reference. */
TEST(kernels_fma_big_operands_match_ref) {
    if (!paths_run()) yt_skip("this CPU (or build) has neither the avx512 nor the avx2 path");
    static const int64_t shapes[][3] = {{100, 17, 45000}, {17000, 17, 300}};
    double worst = 0;
    for (size_t pi = 0; pi < NPATHS; pi++) {
        if (!use_path(pi)) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            float *dy = filled(M * K), *c = filled(M * N), *cr = malloc((size_t)(M * N) * sizeof(float));
            float *aa = malloc((size_t)(M * K) * sizeof(float)), *ba = malloc((size_t)(N * K) * sizeof(float));
            float *mag = malloc((size_t)(M * N) * sizeof(float));
            memcpy(cr, c, (size_t)(M * N) * sizeof(float));
            uint16_t *w = weight(YF_BF16, K, N); /* dy.W: W [K, N], the sum over K */
            yf_matmul_xw(c, dy, w, YF_BF16, M, K, N, true);
            if (fma_modes[pi].pairs) /* the reference on the operands the pair kernel sees */
                for (int64_t i = 0; i < M * K; i++) dy[i] = yf_bf16_to_f32(yf_f32_to_bf16(dy[i]));
            yf_matmul_xw_ref(cr, dy, w, YF_BF16, M, K, N, true);
            for (int64_t i = 0; i < M * K; i++) aa[i] = fabsf(dy[i]);
            for (int64_t i = 0; i < N * K; i++) ba[i] = fabsf(yf_bf16_to_f32(w[i]));
            yf_matmul_xw_ref(mag, aa, ba, YF_F32, M, K, N, false);
            double e = yt_max_abs_diff(c, cr, M * N) / yt_max_abs(mag, M * N);
            CHECK(e <= 1e-5, "%s [%ld,%ld,%ld]: rel err %g", fma_modes[pi].name, (long)M, (long)N, (long)K, e);
            worst = fmax(worst, e);
            free(dy), free(c), free(cr), free(aa), free(ba), free(mag), free(w);
        }
    }
    paths_done();
    CHECK_NEAR("fma paths: long K / many rows, max rel err against the reference", worst, 1e-5);
}

/* Packs only where a product reads them: not for a quantized W (the
 * products read it unpacked: kernels.h), not for the rows the few-row
 * kernels take (up to YF_ROWSTABLE_M while decode steps keep rows stable). */
TEST(kernels_fma_packs_only_what_products_read) {
    if (!paths_run()) yt_skip("this CPU (or build) has neither the avx512 nor the avx2 path");
    for (size_t pi = 0; pi < NPATHS; pi++) {
        if (!use_path(pi)) continue;
        const char *name = fma_modes[pi].name;
        CHECK(yf_wpack_pays(384, YF_BF16), "%s: 384 rows of a bf16 W not packed", name);
        CHECK(yf_wpack_pays(384, YF_F32) == packs_dtype(pi, YF_F32), "%s: 384 rows of an f32 W %s", name,
              packs_dtype(pi, YF_F32) ? "not packed" : "packed");
        CHECK(!yf_wpack_pays(384, YF_QMAT), "%s: a quantized W is packed", name);
        CHECK(!yf_wpack_pays(4, YF_BF16), "%s: 4 rows (the gemv kernels') packed", name);
        CHECK(yf_wpack_pays(8, YF_BF16), "%s: 8 rows not packed", name);
        bool was = yf_kernels_set_rowstable(true);
        CHECK(!yf_wpack_pays(YF_ROWSTABLE_M, YF_BF16), "%s: %d rows packed while rows are kept stable", name,
              YF_ROWSTABLE_M);
        CHECK(yf_wpack_pays(YF_ROWSTABLE_M + 1, YF_BF16), "%s: %d rows not packed", name, YF_ROWSTABLE_M + 1);
        yf_kernels_set_rowstable(was);
    }
    paths_done();
}
