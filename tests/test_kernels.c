/* Every fast matmul path this CPU has, against the naive references, on odd
 * sizes (rows 1..64, N and K not multiples of 16/32/64, blocks crossing the
 * cache-blocking sizes), f32 and bf16 weights, accumulate on and off, both
 * precision modes. The error is measured relative to the magnitude of the
 * terms summed: err = max |fast - ref| / max sum_k |A(m,k) B(k,n)|. */
#include "harness.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/fused.h"
#include "kernels/cpu/kernels.h"
#include "model/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 88172645463325252ull;
static float frand(void) { return yt_frand(&g_rng); }

typedef enum { OP_XWT, OP_XW, OP_DW } op_t;
static const char *op_name[] = {"x.W^T", "dy.W", "dy^T.x"};

/* One product on the current path and on the reference; returns the relative
 * error (see the top). rounded: the reference (and the magnitudes) on the
 * operands bf16 mode's pair kernel sees, A and an f32 B rounded to bf16. */
static double check_one(op_t op, int64_t M, int64_t N, int64_t K, yf_dtype wt, bool acc, bool rounded) {
    int64_t na, nb, nc; /* A, weight/second operand, output sizes */
    if (op == OP_XWT) na = M * K, nb = N * K, nc = M * N;
    else if (op == OP_XW) na = M * N, nb = N * K, nc = M * K;
    else na = M * N, nb = M * K, nc = N * K;
    float *a = malloc(na * sizeof(float)), *bf = malloc(nb * sizeof(float));
    uint16_t *bh = malloc(nb * sizeof(uint16_t));
    float *c0 = malloc(nc * sizeof(float)), *c1 = malloc(nc * sizeof(float)), *cref = malloc(nc * sizeof(float));
    float *aa = malloc(na * sizeof(float)), *ba = malloc(nb * sizeof(float)), *scale = malloc(nc * sizeof(float));
    float *ar = malloc(na * sizeof(float)), *br = malloc(nb * sizeof(float)); /* the reference's operands */
    for (int64_t i = 0; i < na; i++) {
        a[i] = frand();
        ar[i] = rounded ? yf_bf16_to_f32(yf_f32_to_bf16(a[i])) : a[i];
        aa[i] = fabsf(ar[i]);
    }
    for (int64_t i = 0; i < nb; i++) {
        bh[i] = yf_f32_to_bf16(frand());
        bf[i] = wt == YF_BF16 ? yf_bf16_to_f32(bh[i]) : frand();
        br[i] = rounded ? yf_bf16_to_f32(yf_f32_to_bf16(bf[i])) : bf[i];
        ba[i] = fabsf(br[i]);
    }
    for (int64_t i = 0; i < nc; i++) c0[i] = frand();
    memcpy(c1, c0, nc * sizeof(float));
    memcpy(cref, c0, nc * sizeof(float));
    const void *w = wt == YF_BF16 ? (const void *)bh : (const void *)bf;
    const void *wr = rounded ? (const void *)br : w; /* bf16 W: br holds bh's values as floats */
    yf_dtype wrt = rounded ? YF_F32 : wt;
    if (op == OP_XWT) {
        yf_matmul_xwt(c1, a, w, wt, M, N, K, acc);
        yf_matmul_xwt_ref(cref, ar, wr, wrt, M, N, K, acc);
        yf_matmul_xwt_ref(scale, aa, ba, YF_F32, M, N, K, false);
    } else if (op == OP_XW) {
        yf_matmul_xw(c1, a, w, wt, M, N, K, acc);
        yf_matmul_xw_ref(cref, ar, wr, wrt, M, N, K, acc);
        yf_matmul_xw_ref(scale, aa, ba, YF_F32, M, N, K, false);
    } else {
        yf_matmul_dw(c1, a, bf, M, N, K);
        yf_matmul_dw_ref(cref, ar, br, M, N, K);
        memset(scale, 0, nc * sizeof(float));
        yf_matmul_dw_ref(scale, aa, ba, M, N, K);
    }
    double err = yt_max_abs_diff(c1, cref, nc), mag = yt_max_abs(scale, nc);
    for (int64_t i = 0; i < nc; i++)
        if (!isfinite(c1[i])) err = INFINITY; /* NaN would slip through a max */
    free(a), free(bf), free(bh), free(c0), free(c1), free(cref), free(aa), free(ba), free(scale), free(ar), free(br);
    return mag > 0 ? err / mag : err;
}

static const int64_t shapes[][3] = {
    {1, 75, 130}, {3, 33, 600}, {4, 1, 7}, {5, 40, 33}, {17, 75, 130},
    {17, 1100, 70}, {64, 33, 600}, {64, 75, 130}, {100, 50, 40}, {33, 16, 1},
};

/* Runs every shape, op, dtype and accumulate flag on the given path and
 * precision; checks the worst error per (op, dtype). */
static void sweep(yf_kpath path, yf_precision prec) {
    if (!yf_kernels_path_supported(path)) yt_skip("this CPU (or build) has no %s path", yf_kpath_name(path));
    CHECK(yf_kernels_set_path(path) == 0);
    yf_kernels_set_precision(prec);
    /* exact: fp32 accumulation error only (K <= 1100 terms); bf16: A (and f32
     * weights) rounded to bf16, relative error 2^-9 per factor */
    double tol = prec == YF_PREC_EXACT ? 1e-5 : 8e-3;
    for (int op = OP_XWT; op <= OP_DW; op++)
        for (int d = 0; d < 2; d++) {
            yf_dtype wt = d ? YF_BF16 : YF_F32;
            if (op == OP_DW && wt == YF_BF16) continue; /* dW and x are f32 */
            double worst = 0;
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
                for (int acc = 0; acc < 2; acc++) {
                    if (op == OP_DW && !acc) continue; /* dw always accumulates */
                    double e = check_one(op, shapes[s][0], shapes[s][1], shapes[s][2], wt, acc, false);
                    CHECK(e <= tol, "%s %s [%ld,%ld,%ld] acc=%d: rel err %g", op_name[op], yf_dtype_name(wt),
                          (long)shapes[s][0], (long)shapes[s][1], (long)shapes[s][2], acc, e);
                    if (e > worst) worst = e;
                }
            char what[160];
            snprintf(what, sizeof what, "%s %s %s weights %s: max rel err", yf_kpath_name(path),
                     prec == YF_PREC_EXACT ? "exact" : "bf16", yf_dtype_name(wt), op_name[op]);
            CHECK_NEAR(what, worst, tol);
        }
}

/* The bf16-pair kernel (bf16 mode, vdpbf16ps) against the reference on the
 * operands it sees: A, and f32 weights, rounded to bf16 first. What is left
 * is fp32 accumulation error, so the exact mode's tolerance holds; shapes
 * with odd K (a pair's zero half), K over several K blocks, rows and columns
 * not multiples of the 12 x 32 tile (sides of 16 or less go to the fp32
 * narrow kernels in either mode: none here). */
TEST(kernels_avx512_bf16_pairs_match_rounded_ref) {
    if (!yf_kernels_path_supported(YF_KPATH_AVX512) || !yf_cpu()->avx512_bf16)
        yt_skip("this CPU (or build) has no AVX512-BF16: the bf16-pair kernel is not used here");
    static const int64_t pshapes[][3] = {{17, 75, 131}, {64, 33, 600}, {100, 50, 41}, {40, 1100, 70},
                                         {19, 40, 17}, {300, 96, 513}, {29, 64, 33}};
    CHECK(yf_kernels_set_path(YF_KPATH_AVX512) == 0);
    yf_kernels_set_precision(YF_PREC_BF16);
    bool was = yf_kernels_set_bf16_dot(true);
    CHECK(yf_kernels_bf16_dot(), "the bf16 dot kernel did not switch on");
    const double tol = 1e-5;
    double worst = 0;
    for (int op = OP_XWT; op <= OP_DW; op++)
        for (int d = 0; d < 2; d++) {
            yf_dtype wt = d ? YF_BF16 : YF_F32;
            if (op == OP_DW && wt == YF_BF16) continue;
            for (size_t s = 0; s < sizeof pshapes / sizeof *pshapes; s++)
                for (int acc = 0; acc < 2; acc++) {
                    if (op == OP_DW && !acc) continue;
                    double e = check_one(op, pshapes[s][0], pshapes[s][1], pshapes[s][2], wt, acc, true);
                    CHECK(e <= tol, "%s %s [%ld,%ld,%ld] acc=%d: rel err %g against the rounded operands",
                          op_name[op], yf_dtype_name(wt), (long)pshapes[s][0], (long)pshapes[s][1],
                          (long)pshapes[s][2], acc, e);
                    if (e > worst) worst = e;
                }
        }
    yf_kernels_set_bf16_dot(was);
    yf_kernels_set_precision(YF_PREC_EXACT);
    CHECK_NEAR("avx512 bf16 pairs: max rel err against the reference on bf16-rounded operands", worst, tol);
}

TEST(kernels_scalar_matches_ref) { sweep(YF_KPATH_SCALAR, YF_PREC_EXACT); }
TEST(kernels_avx2_matches_ref) { sweep(YF_KPATH_AVX2, YF_PREC_EXACT); }
TEST(kernels_avx512_matches_ref) { sweep(YF_KPATH_AVX512, YF_PREC_EXACT); }
TEST(kernels_avx512_bf16_matches_ref) { sweep(YF_KPATH_AVX512, YF_PREC_BF16); }
TEST(kernels_amx_exact_matches_ref) { sweep(YF_KPATH_AMX, YF_PREC_EXACT); }
TEST(kernels_amx_bf16_matches_ref) { sweep(YF_KPATH_AMX, YF_PREC_BF16); }

/* Exact mode with bf16 weights must be as good as fp32 arithmetic: compare the
 * AMX split product and the fp32 FMA path against a double-precision sum. */
/* The narrow kernels (a dimension <= 16 of the internal product, the LoRA
 * rank side): every small size 1..16 in each position of each wrapper (so
 * each layout the wrappers produce: x.W^T and dy.W with the rank as N or K,
 * dy^T.x with it as M, N or K), against odd sizes on the other sides, f32 and
 * bf16 weights, accumulate on and off; plus one product per form big enough
 * to be split between threads. Tolerances as in sweep(). */
static void sweep_narrow(yf_kpath path, yf_precision prec) {
    if (!yf_kernels_path_supported(path)) yt_skip("this CPU (or build) has no %s path", yf_kpath_name(path));
    CHECK(yf_kernels_set_path(path) == 0);
    yf_kernels_set_precision(prec);
    double tol = prec == YF_PREC_EXACT ? 1e-5 : 8e-3, worst = 0;
    static const int64_t other[][2] = {{1, 37}, {17, 130}, {75, 33}, {40, 1100}};
    for (int64_t sd = 1; sd <= 16; sd++)
        for (size_t o = 0; o < sizeof other / sizeof *other; o++)
            for (int pos = 0; pos < 3; pos++)
                for (int op = OP_XWT; op <= OP_DW; op++)
                    for (int d = 0; d < 2; d++)
                        for (int acc = 0; acc < 2; acc++) {
                            yf_dtype wt = d ? YF_BF16 : YF_F32;
                            if (op == OP_DW && (wt == YF_BF16 || !acc)) continue;
                            if (pos == 0 && op != OP_DW) continue; /* a token count: not a narrow side */
                            int64_t dim[3], j = 0; /* sd at pos, the other pair around it */
                            for (int i = 0; i < 3; i++) dim[i] = i == pos ? sd : other[o][j++];
                            double e = check_one(op, dim[0], dim[1], dim[2], wt, acc, false);
                            CHECK(e <= tol, "%s %s [%ld,%ld,%ld] acc=%d: rel err %g", op_name[op], yf_dtype_name(wt),
                                  (long)dim[0], (long)dim[1], (long)dim[2], acc, e);
                            if (e > worst) worst = e;
                        }
    /* threaded: x.W^T N form, K form; dy^T.x M form, NT form */
    static const int64_t big[][4] = {{OP_XWT, 300, 8, 7000}, {OP_XWT, 300, 7000, 8}, {OP_XW, 300, 8, 7000},
                                     {OP_DW, 300, 8, 7000}, {OP_DW, 300, 7000, 8}};
    for (size_t i = 0; i < sizeof big / sizeof *big; i++) {
        double e = check_one((op_t)big[i][0], big[i][1], big[i][2], big[i][3], YF_F32, true, false);
        CHECK(e <= tol, "%s [%ld,%ld,%ld]: rel err %g", op_name[big[i][0]], (long)big[i][1], (long)big[i][2],
              (long)big[i][3], e);
        if (e > worst) worst = e;
    }
    char what[120];
    snprintf(what, sizeof what, "%s %s narrow products: max rel err", yf_kpath_name(path),
             prec == YF_PREC_EXACT ? "exact" : "bf16");
    CHECK_NEAR(what, worst, tol);
}

TEST(kernels_narrow_avx2_matches_ref) { sweep_narrow(YF_KPATH_AVX2, YF_PREC_EXACT); }
TEST(kernels_narrow_avx512_matches_ref) { sweep_narrow(YF_KPATH_AVX512, YF_PREC_EXACT); }
TEST(kernels_narrow_amx_bf16_matches_ref) { sweep_narrow(YF_KPATH_AMX, YF_PREC_BF16); }

/* A row of x.W^T / dy.W must not depend on how many rows the product has (a
 * backward may score only some rows): rows 5..21 of a 37-row product, and
 * row 9 alone, bit for bit, on every narrow form of those wrappers. */
TEST(kernels_narrow_rows_independent) {
    for (int p = YF_KPATH_SCALAR; p < YF_KPATH_COUNT; p++) {
        if (!yf_kernels_path_supported(p)) continue;
        CHECK(yf_kernels_set_path(p) == 0);
        yf_kernels_set_precision(YF_PREC_BF16);
        static const int64_t nk[][2] = {{8, 2048}, {13, 301}, {2048, 8}, {301, 13}, {16, 16}};
        for (size_t s = 0; s < sizeof nk / sizeof *nk; s++)
            for (int op = OP_XWT; op <= OP_XW; op++) {
                const int64_t M = 37, N = nk[s][0], K = nk[s][1];
                int64_t lda = op == OP_XWT ? K : N, ldc = op == OP_XWT ? N : K;
                float *a = malloc(M * lda * sizeof(float)), *w = malloc(N * K * sizeof(float));
                float *c = malloc(M * ldc * sizeof(float)), *c1 = malloc(M * ldc * sizeof(float));
                for (int64_t i = 0; i < M * lda; i++) a[i] = frand();
                for (int64_t i = 0; i < N * K; i++) w[i] = frand();
                memset(c1, 0, M * ldc * sizeof(float));
                if (op == OP_XWT) {
                    yf_matmul_xwt(c, a, w, YF_F32, M, N, K, false);
                    yf_matmul_xwt(c1 + 5 * ldc, a + 5 * lda, w, YF_F32, 17, N, K, false);
                    yf_matmul_xwt(c1 + 9 * ldc, a + 9 * lda, w, YF_F32, 1, N, K, false);
                } else {
                    yf_matmul_xw(c, a, w, YF_F32, M, N, K, false);
                    yf_matmul_xw(c1 + 5 * ldc, a + 5 * lda, w, YF_F32, 17, N, K, false);
                    yf_matmul_xw(c1 + 9 * ldc, a + 9 * lda, w, YF_F32, 1, N, K, false);
                }
                CHECK(memcmp(c + 5 * ldc, c1 + 5 * ldc, 17 * ldc * sizeof(float)) == 0,
                      "%s %s N=%ld K=%ld: rows differ with the row count", yf_kpath_name(p), op_name[op], (long)N,
                      (long)K);
                free(a), free(w), free(c), free(c1);
            }
    }
}

TEST(kernels_amx_exact_is_fp32_level) {
    if (!yf_kernels_path_supported(YF_KPATH_AMX)) yt_skip("this CPU (or build) has no AMX path");
    const int64_t M = 64, N = 96, K = 2048;
    float *x = malloc(M * K * sizeof(float)), *y = malloc(M * N * sizeof(float));
    uint16_t *w = malloc(N * K * sizeof(uint16_t));
    double *yd = malloc(M * N * sizeof(double));
    for (int64_t i = 0; i < M * K; i++) x[i] = frand() * 3;
    for (int64_t i = 0; i < N * K; i++) w[i] = yf_f32_to_bf16(frand() * 0.05f);
    double mag = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)x[i * K + k] * yf_bf16_to_f32(w[j * K + k]);
            yd[i * N + j] = s;
            if (fabs(s) > mag) mag = fabs(s);
        }
    double err[2];
    yf_kpath paths[2] = {YF_KPATH_AMX, YF_KPATH_AVX512};
    yf_kernels_set_precision(YF_PREC_EXACT);
    for (int p = 0; p < 2; p++) {
        CHECK(yf_kernels_set_path(paths[p]) == 0);
        yf_matmul_xwt(y, x, w, YF_BF16, M, N, K, false);
        err[p] = 0;
        for (int64_t i = 0; i < M * N; i++) err[p] = fmax(err[p], fabs(y[i] - yd[i]));
    }
    printf("    |y| max %.3g; error vs fp64: amx exact %.3g, avx512 fp32 %.3g\n", mag, err[0], err[1]);
    /* at most a few times the fp32 path's rounding, and far below 1e-4 */
    CHECK_NEAR("amx exact abs err (|y| ~ 5)", err[0], fmax(4 * err[1], 1e-6));
    free(x), free(y), free(w), free(yd);
}

TEST(kernels_set_path_rejects_unsupported) {
    yf_kpath p = YF_KPATH_AMX;
    if (yf_kernels_path_supported(p)) yt_skip("every path is supported here");
    CHECK(yf_kernels_set_path(p) == -1);
    CHECK(strstr(yf_last_error(), "not supported") != NULL, "message: %s", yf_last_error());
}

/* The runner forks a process per test, so the path is not chosen yet here. */
TEST(kernels_env_caps_path) {
    if (!yf_kernels_path_supported(YF_KPATH_AVX2)) yt_skip("this CPU (or build) has no avx2 path");
    setenv("YF_KERNELS", "avx2", 1);
    CHECK(yf_kernels_path() == YF_KPATH_AVX2, "path %s", yf_kpath_name(yf_kernels_path()));
}

/* Empty products: K = 0 writes zeros (or leaves C when accumulating); M or N
 * = 0 touches nothing. */
TEST(kernels_empty_dims) {
    float y[6] = {1, 2, 3, 4, 5, 6}, x[1] = {7};
    uint16_t w[1] = {0};
    for (int p = YF_KPATH_SCALAR; p < YF_KPATH_COUNT; p++) {
        if (!yf_kernels_path_supported(p)) continue;
        CHECK(yf_kernels_set_path(p) == 0);
        for (int i = 0; i < 6; i++) y[i] = (float)i + 1;
        yf_matmul_xwt(y, x, w, YF_BF16, 2, 3, 0, true);
        CHECK(y[5] == 6, "%s: accumulate with K=0 changed C", yf_kpath_name(p));
        yf_matmul_xwt(y, x, w, YF_BF16, 2, 3, 0, false);
        CHECK(y[0] == 0 && y[5] == 0, "%s: K=0 did not zero C", yf_kpath_name(p));
        y[0] = 9;
        yf_matmul_xw(y, x, w, YF_BF16, 0, 3, 2, false);
        yf_matmul_dw(y, x, x, 4, 0, 1);
        CHECK(y[0] == 9, "%s: M=0 or N=0 touched C", yf_kpath_name(p));
    }
}

/* A pre-packed weight gives the same products bit for bit as packing it per
 * call: both precisions, both products, shapes with edges in every dimension,
 * K over one K block (2048), enough work to be split between threads (then A
 * is packed once for all threads, K block by K block). */
TEST(kernels_amx_prepacked_weight_is_bitwise_identical) {
    if (!yf_kernels_path_supported(YF_KPATH_AMX)) yt_skip("this CPU (or build) has no amx path");
    CHECK(yf_kernels_set_path(YF_KPATH_AMX) == 0);
    static const int64_t pk_shapes[][3] = {{17, 75, 130}, {64, 33, 600}, {300, 1000, 70}, {40, 96, 2100}, {384, 512, 512},
                                           {100, 256, 4200}};
    for (int prec = 0; prec < 2; prec++) {
        yf_kernels_set_precision(prec ? YF_PREC_BF16 : YF_PREC_EXACT);
        for (size_t s = 0; s < sizeof pk_shapes / sizeof *pk_shapes; s++)
            for (int kind = 0; kind < 2; kind++) {
                int64_t M = pk_shapes[s][0], N = pk_shapes[s][1], K = pk_shapes[s][2];
                int64_t na = kind == YF_PACK_XWT ? M * K : M * N, nc = kind == YF_PACK_XWT ? M * N : M * K;
                float *a = malloc(na * sizeof(float)), *c0 = malloc(nc * sizeof(float)), *c1 = malloc(nc * sizeof(float));
                uint16_t *w = malloc(N * K * sizeof(uint16_t));
                for (int64_t i = 0; i < na; i++) a[i] = frand();
                for (int64_t i = 0; i < N * K; i++) w[i] = yf_f32_to_bf16(frand());
                for (int64_t i = 0; i < nc; i++) c0[i] = c1[i] = frand();
                yf_wpack *pk = yf_wpack_new(w, YF_BF16, N, K, (yf_pack_kind)kind, false);
                CHECK(pk != NULL, "%s", yf_last_error());
                bool acc = s % 2 == 1;
                if (kind == YF_PACK_XWT) {
                    yf_matmul_xwt(c0, a, w, YF_BF16, M, N, K, acc);
                    yf_matmul_xwt_pk(c1, a, w, YF_BF16, pk, M, N, K, acc);
                } else {
                    yf_matmul_xw(c0, a, w, YF_BF16, M, N, K, acc);
                    yf_matmul_xw_pk(c1, a, w, YF_BF16, pk, M, N, K, acc);
                }
                CHECK(memcmp(c0, c1, nc * sizeof(float)) == 0, "%s %s [%ld,%ld,%ld]: max diff %g",
                      kind == YF_PACK_XWT ? "x.W^T" : "dy.W", prec ? "bf16" : "exact", (long)M, (long)N, (long)K,
                      yt_max_abs_diff(c0, c1, nc));
                char what[96];
                snprintf(what, sizeof what, "%s %s [%ld,%ld,%ld]: max |packed - per call|", kind == YF_PACK_XWT ? "x.W^T" : "dy.W",
                         prec ? "bf16" : "exact", (long)M, (long)N, (long)K);
                CHECK_NEAR(what, yt_max_abs_diff(c0, c1, nc), 0.0);
                yf_wpack_free(pk);
                free(a), free(c0), free(c1), free(w);
            }
    }
    yf_kernels_set_precision(YF_PREC_EXACT);
}

/* x·W^T plus a low-rank term L·R^T (LoRA's up-projection): on AMX, with W
 * pre-packed or not, the term is added inside the product (checked to have happened),
 * bit for bit as the separate rank-r product adds it; edges in M and N, K
 * over one K block (2100: the term only once C is complete), ranks 1, 8
 * and 16, with and without accumulation, both precisions, and a C of 64 MB
 * (the streamed stores, where the term goes on before the block leaves). */
TEST(kernels_amx_lowrank_term_matches_separate_product) {
    if (!yf_kernels_path_supported(YF_KPATH_AMX)) yt_skip("this CPU (or build) has no amx path");
    CHECK(yf_kernels_set_path(YF_KPATH_AMX) == 0);
    static const int64_t shapes[][4] = {{17, 75, 130, 8}, {384, 2048, 256, 8}, {40, 300, 2100, 16}, {100, 256, 64, 1},
                                        {2048, 8192, 64, 8}};
    int64_t fused0 = yf_matmul_epilogue_calls(), calls = 0;
    for (int prec = 0; prec < 2; prec++) {
        yf_kernels_set_precision(prec ? YF_PREC_BF16 : YF_PREC_EXACT);
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], r = shapes[s][3];
            if (prec == 0 && M * N > 1000000) continue; /* the 64 MB case once */
            float *x = malloc(M * K * sizeof(float)), *c0 = malloc(M * N * sizeof(float));
            float *c1 = malloc(M * N * sizeof(float)), *l = malloc(M * r * sizeof(float)), *rr = malloc(N * r * sizeof(float));
            uint16_t *w = malloc(N * K * sizeof(uint16_t));
            for (int64_t i = 0; i < M * K; i++) x[i] = frand();
            for (int64_t i = 0; i < N * K; i++) w[i] = yf_f32_to_bf16(frand());
            for (int64_t i = 0; i < M * r; i++) l[i] = frand();
            for (int64_t i = 0; i < N * r; i++) rr[i] = frand();
            for (int64_t i = 0; i < M * N; i++) c0[i] = c1[i] = frand();
            yf_wpack *pk = yf_wpack_new(w, YF_BF16, N, K, YF_PACK_XWT, false);
            CHECK(pk != NULL, "%s", yf_last_error());
            bool acc = s % 2 == 1;
            float *cs = malloc(M * N * sizeof(float));
            memcpy(cs, c0, M * N * sizeof(float));
            for (int packed = 0; packed < 2; packed++) { /* W pre-packed, or packed by the product */
                const yf_wpack *p = packed ? pk : NULL;
                memcpy(c0, cs, M * N * sizeof(float));
                memcpy(c1, cs, M * N * sizeof(float));
                yf_matmul_xwt_pk(c0, x, w, YF_BF16, p, M, N, K, acc);
                yf_matmul_xwt(c0, l, rr, YF_F32, M, N, r, true);
                yf_matmul_xwt_pk_lr(c1, x, w, YF_BF16, p, M, N, K, acc, l, rr, r);
                calls++;
                char what[112];
                snprintf(what, sizeof what, "%s [%ld,%ld,%ld] rank %ld%s: max |fused - separate|",
                         prec ? "bf16" : "exact", (long)M, (long)N, (long)K, (long)r, packed ? ", packed W" : "");
                CHECK_NEAR(what, yt_max_abs_diff(c0, c1, M * N), 0.0);
            }
            free(cs);
            yf_wpack_free(pk);
            free(x), free(c0), free(c1), free(l), free(rr), free(w);
        }
    }
    yf_kernels_set_precision(YF_PREC_EXACT);
    CHECK(yf_matmul_epilogue_calls() - fused0 == calls, "%lld of %lld calls took the fused route",
          (long long)(yf_matmul_epilogue_calls() - fused0), (long long)calls);
}

/* LoRA's input gradient with dropout inside dy·W (yf_matmul_xw_pk_drop):
 * added to dx's finished blocks, written or accumulated, with W pre-packed
 * or not, against the steps it replaces: the same bits (and checked to have
 * run inside the product); edges in M and in dx's columns, dy·W over two K
 * blocks (N 2100: the term only after the last), ranks 1, 8 and 16,
 * p 0.1 and 0.5, both precisions. */
TEST(kernels_amx_dropout_term_matches_separate_steps) {
    if (!yf_kernels_path_supported(YF_KPATH_AMX)) yt_skip("this CPU (or build) has no amx path");
    CHECK(yf_kernels_set_path(YF_KPATH_AMX) == 0);
    static const int64_t shapes[][4] = {{17, 75, 144, 8}, {384, 300, 2048, 8}, {40, 2100, 272, 16}, {100, 64, 64, 1}};
    int64_t fused0 = yf_matmul_epilogue_calls(), calls = 0;
    for (int prec = 0; prec < 2; prec++) {
        yf_kernels_set_precision(prec ? YF_PREC_BF16 : YF_PREC_EXACT);
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], r = shapes[s][3];
            float p = s % 2 ? 0.5f : 0.1f;
            uint64_t seed = 0x1234567890abull + s;
            float *dy = malloc(M * N * sizeof(float)), *c0 = malloc(M * K * sizeof(float));
            float *c1 = malloc(M * K * sizeof(float)), *l = malloc(M * r * sizeof(float)), *rr = malloc(r * K * sizeof(float));
            uint16_t *w = malloc(N * K * sizeof(uint16_t));
            for (int64_t i = 0; i < M * N; i++) dy[i] = frand();
            for (int64_t i = 0; i < N * K; i++) w[i] = yf_f32_to_bf16(frand());
            for (int64_t i = 0; i < M * r; i++) l[i] = frand();
            for (int64_t i = 0; i < r * K; i++) rr[i] = frand();
            for (int64_t i = 0; i < M * K; i++) c0[i] = c1[i] = frand();
            yf_wpack *pk0 = yf_wpack_new(w, YF_BF16, N, K, YF_PACK_XW, false), *pk = s % 2 ? pk0 : NULL;
            CHECK(pk0 != NULL, "%s", yf_last_error());
            bool acc = (s + prec) % 2 == 1;
            float *t = malloc(M * K * sizeof(float));
            yf_matmul_xw(t, l, rr, YF_F32, M, r, K, false);
            yf_dropout(t, t, M * K, p, seed);
            yf_matmul_xw_pk(c0, dy, w, YF_BF16, pk, M, N, K, acc);
            for (int64_t i = 0; i < M * K; i++) c0[i] += t[i];
            free(t);
            yf_drop d = yf_dropout_params(p, seed);
            bool fused = yf_matmul_xw_pk_drop(c1, dy, w, YF_BF16, pk, M, N, K, acc, l, rr, r, &d);
            CHECK(fused, "[%ld,%ld,%ld]: not run inside the product", (long)M, (long)N, (long)K);
            calls++;
            char what[96];
            snprintf(what, sizeof what, "%s [%ld,%ld,%ld] rank %ld p %.1f%s%s: max |fused - separate|",
                     prec ? "bf16" : "exact", (long)M, (long)N, (long)K, (long)r, p, acc ? " accumulating" : "",
                     pk ? ", packed W" : "");
            CHECK_NEAR(what, fused ? yt_max_abs_diff(c0, c1, M * K) : 0.0, 0.0);
            yf_wpack_free(pk0);
            free(dy), free(c0), free(c1), free(l), free(rr), free(w);
        }
    }
    yf_kernels_set_precision(YF_PREC_EXACT);
    CHECK(yf_matmul_epilogue_calls() - fused0 == calls, "%lld of %lld calls counted as fused",
          (long long)(yf_matmul_epilogue_calls() - fused0), (long long)calls);
}

/* The left operand of dy·W handed over packed (yf_apk_put_row, as the LM
 * head's blocked loss writes its exp rows) gives the same product bit for bit as the
 * fp32 rows: edges in every dimension, N over one K block (2048), and enough
 * work for threads. */
TEST(kernels_amx_prepacked_activations_are_bitwise_identical) {
    if (!yf_kernels_path_supported(YF_KPATH_AMX)) yt_skip("this CPU (or build) has no amx path");
    CHECK(yf_kernels_set_path(YF_KPATH_AMX) == 0);
    yf_kernels_set_precision(YF_PREC_BF16);
    static const int64_t shapes[][3] = {{17, 75, 130}, {33, 2100, 96}, {100, 4200, 256}, {384, 512, 512}, {64, 40, 33}};
    double worst = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], np = (M + 31) / 32;
        float *a = malloc(M * N * sizeof(float)), *c0 = malloc(M * K * sizeof(float)), *c1 = malloc(M * K * sizeof(float));
        uint16_t *w = malloc(N * K * sizeof(uint16_t));
        uint16_t *apk = malloc((size_t)(np * yf_apk_panel_elems(N)) * sizeof(uint16_t));
        for (int64_t i = 0; i < M * N; i++) a[i] = frand();
        for (int64_t i = 0; i < N * K; i++) w[i] = yf_f32_to_bf16(frand());
        for (int64_t i = 0; i < M * K; i++) c0[i] = c1[i] = frand();
        yf_wpack *pk = yf_wpack_new(w, YF_BF16, N, K, YF_PACK_XW, false);
        CHECK(pk != NULL, "%s", yf_last_error());
        CHECK(yf_apk_usable(pk, M, N, K), "[%ld,%ld,%ld]: the packed-A product is not usable", (long)M, (long)N, (long)K);
        CHECK(!yf_apk_usable(pk, M, N + 1, K), "a pack of another shape was accepted");
        for (int64_t r = 0; r < 32 * np; r++) yf_apk_put_row(apk, N, r, r < M ? a + r * N : NULL);
        bool acc = s % 2 == 1;
        yf_matmul_xw_pk(c0, a, w, YF_BF16, pk, M, N, K, acc);
        yf_matmul_xw_rows(c1, K, NULL, apk, w, YF_BF16, pk, M, N, K, 0, N, acc);
        double e = yt_max_abs_diff(c0, c1, M * K);
        CHECK(memcmp(c0, c1, M * K * sizeof(float)) == 0, "dy.W [%ld,%ld,%ld]: max diff %g", (long)M, (long)N, (long)K, e);
        worst = e > worst ? e : worst;
        yf_wpack_free(pk);
        free(a), free(c0), free(c1), free(w), free(apk);
    }
    CHECK_NEAR("dy.W bf16: max |packed A - fp32 A| over the shapes", worst, 0.0);
    yf_kernels_set_precision(YF_PREC_EXACT);
}

/* yf_matmul_xwt_rows_blocks' blocks gathered into a [M, nb] matrix; each
 * element counted in hits (a block handed out twice or a wrong size shows).
 * With exps (e), every block's softmax step is asked for: its exps to
 * e + 1024 (block row * pairs + block column), rows of bit pattern live,
 * shifts sh, sums into acc. */
typedef struct gather_blocks {
    float *y;
    int *hits;
    int64_t M, nb;
    bool bad;
    uint16_t *e;
    const float *sh;
    double *acc;
    uint32_t live;
    bool over;
} gather_blocks;

static void gather_block(void *ctx, int64_t m, int64_t n, const float *blk, int64_t rows, int64_t cols,
                         yf_exp_spec *x) {
    gather_blocks *g = ctx;
    if (m % 32 || n % 32 || rows != (g->M - m < 32 ? g->M - m : 32) || cols != (g->nb - n < 32 ? g->nb - n : 32)) {
        g->bad = true;
        return;
    }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            g->y[(m + i) * g->nb + n + j] = blk[32 * i + j];
            g->hits[(m + i) * g->nb + n + j]++;
        }
    if (g->e)
        *x = (yf_exp_spec){g->e + ((m / 32) * ((g->nb + 31) / 32) + n / 32) * 1024, g->sh + m, g->acc + 16 * m,
                           g->live, 2.0f, &g->over};
}

/* The softmax step the kernel did during the blocks (gathered in g) against
 * yf_exp_block_bf16 on the same blocks, in the same order: the same bits
 * (both are yf_exp16_bf16_acc) and the same overflow flag. Returns the
 * number of differing values and sums. */
static int64_t check_block_exps(const gather_blocks *g) {
    int64_t nbp = (g->nb + 31) / 32, bad = 0;
    double *acc = calloc((size_t)(g->M + 32) * 16, sizeof(double));
    uint16_t d[1024];
    float blk[1024];
    bool over = false;
    for (int64_t j = 0; j < nbp; j++)
        for (int64_t p = 0; p < (g->M + 31) / 32; p++) {
            int64_t rows = g->M - 32 * p < 32 ? g->M - 32 * p : 32, cols = g->nb - 32 * j < 32 ? g->nb - 32 * j : 32;
            for (int64_t i = 0; i < rows; i++)
                for (int64_t c = 0; c < cols; c++) blk[32 * i + c] = g->y[(32 * p + i) * g->nb + 32 * j + c];
            over |= yf_exp_block_bf16(d, blk, rows, cols, g->live, g->sh + 32 * p, acc + 16 * 32 * p, 2.0f);
            bad += memcmp(d, g->e + (p * nbp + j) * 1024, sizeof d) != 0;
        }
    for (int64_t i = 0; i < g->M * 16; i++) bad += acc[i] != g->acc[i];
    bad += over != g->over;
    free(acc);
    return bad;
}

/* Products with a block of W's rows (as the LM head runs its vocabulary):
 * with W packed and the left operand packed, bit for bit the same as with
 * neither; x·W[n0:n1]^T also the same as those columns of the whole product,
 * and as the blocks yf_matmul_xwt_rows_blocks hands out (each once, of the
 * right size, partial ones at the edges), whose softmax step the kernel
 * runs as yf_exp_block_bf16 does (lim 2: both flags set); all within bf16
 * rounding of the naive product. Slices at the start, in the middle, at the end, and over
 * more than one K block of dy·W. */
TEST(kernels_amx_row_slices_of_packed_weights) {
    if (!yf_kernels_path_supported(YF_KPATH_AMX)) yt_skip("this CPU (or build) has no amx path");
    CHECK(yf_kernels_set_path(YF_KPATH_AMX) == 0);
    yf_kernels_set_precision(YF_PREC_BF16);
    static const int64_t cases[][5] = {{40, 300, 70, 32, 200}, {40, 300, 70, 0, 300}, {17, 300, 70, 256, 300},
                                       {33, 2500, 64, 64, 2400}, {100, 640, 256, 128, 640}};
    double worst_ref = 0, worst_bits = 0;
    for (size_t s = 0; s < sizeof cases / sizeof *cases; s++) {
        int64_t M = cases[s][0], N = cases[s][1], K = cases[s][2], n0 = cases[s][3], n1 = cases[s][4], nb = n1 - n0;
        int64_t np = (M + 31) / 32;
        float *x = malloc(M * K * sizeof(float)), *dy = malloc(M * nb * sizeof(float));
        float *yfull = malloc(M * N * sizeof(float)), *y0 = malloc(M * nb * sizeof(float)), *y1 = malloc(M * nb * sizeof(float));
        float *d0 = malloc(M * K * sizeof(float)), *d1 = malloc(M * K * sizeof(float)), *dr = malloc(M * K * sizeof(float));
        uint16_t *w = malloc(N * K * sizeof(uint16_t));
        uint16_t *xpk = malloc((size_t)(np * yf_apk_panel_elems(K)) * 2), *dpk = malloc((size_t)(np * yf_apk_panel_elems(nb)) * 2);
        for (int64_t i = 0; i < M * K; i++) x[i] = frand();
        for (int64_t i = 0; i < M * nb; i++) dy[i] = frand();
        for (int64_t i = 0; i < N * K; i++) w[i] = yf_f32_to_bf16(frand());
        for (int64_t i = 0; i < M * K; i++) d0[i] = d1[i] = frand();
        for (int64_t r = 0; r < 32 * np; r++) {
            yf_apk_put_row(xpk, K, r, r < M ? x + r * K : NULL);
            yf_apk_put_row(dpk, nb, r, r < M ? dy + r * nb : NULL);
        }
        yf_wpack *pt = yf_wpack_new(w, YF_BF16, N, K, YF_PACK_XWT, true), *pw = yf_wpack_new(w, YF_BF16, N, K, YF_PACK_XW, false);
        CHECK(pt && pw, "%s", yf_last_error());
        CHECK(yf_apk_usable(pt, M, N, K) && yf_apk_usable(pw, M, N, K), "case %zu: packed operands not usable", s);
        yf_matmul_xwt(yfull, x, w, YF_BF16, M, N, K, false);
        yf_matmul_xwt_rows(y0, x, NULL, w, YF_BF16, NULL, M, N, K, n0, n1);
        yf_matmul_xwt_rows(y1, NULL, xpk, w, YF_BF16, pt, M, N, K, n0, n1);
        CHECK(yf_blocks_usable(pt, M, N, K), "case %zu: blocks not usable", s);
        float *sh = malloc((size_t)(np * 32) * sizeof(float));
        for (int64_t i = 0; i < np * 32; i++) sh[i] = frand();
        int64_t nbp = (nb + 31) / 32;
        gather_blocks gb = {malloc(M * nb * sizeof(float)), calloc((size_t)(M * nb), sizeof(int)), M, nb, false,
                            malloc((size_t)(np * nbp * 1024) * sizeof(uint16_t)), sh,
                            calloc((size_t)(np * 32 * 16), sizeof(double)), 0xfffbfff7u, false};
        yf_matmul_xwt_rows_blocks(xpk, pt, M, N, K, n0, n1, gather_block, &gb);
        int64_t miss = 0;
        for (int64_t i = 0; i < M * nb; i++) miss += gb.hits[i] != 1;
        CHECK(!gb.bad && miss == 0, "case %zu: blocks of the wrong size or %lld elements not handed out once", s,
              (long long)miss);
        int64_t bad_exp = check_block_exps(&gb);
        CHECK(bad_exp == 0, "case %zu: %lld exps, sums or flags differ from yf_exp_block_bf16's", s,
              (long long)bad_exp);
        free(gb.e), free(gb.acc), free(sh);
        bool acc = s % 2 == 0;
        yf_matmul_xw_rows(d0, K, dy, NULL, w, YF_BF16, NULL, M, N, K, n0, n1, acc);
        yf_matmul_xw_rows(d1, K, NULL, dpk, w, YF_BF16, pw, M, N, K, n0, n1, acc);
        double e = 0;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < nb; j++) e = fmax(e, fabs(y0[i * nb + j] - yfull[i * N + n0 + j]));
        e = fmax(e, yt_max_abs_diff(y0, y1, M * nb));
        e = fmax(e, yt_max_abs_diff(y0, gb.y, M * nb));
        free(gb.y), free(gb.hits);
        e = fmax(e, yt_max_abs_diff(d0, d1, M * K));
        /* dx's rows K + 16 apart (the head's U): the same rows, the padding
         * untouched; on this path and on the naive one */
        int64_t ld = K + 16;
        float *dq = malloc((size_t)(M * K) * sizeof(float)), *dp = malloc((size_t)(M * ld) * sizeof(float));
        yf_kpath path = yf_kernels_path();
        for (int pass = 0; pass < 2; pass++) {
            if (pass) yf_kernels_set_path(YF_KPATH_REF);
            for (int64_t i = 0; i < M * ld; i++) dp[i] = 7.0f;
            yf_matmul_xw_rows(dq, K, dy, NULL, w, YF_BF16, NULL, M, N, K, n0, n1, false);
            yf_matmul_xw_rows(dp, ld, dy, NULL, w, YF_BF16, NULL, M, N, K, n0, n1, false);
            for (int64_t i = 0; i < M; i++) {
                e = fmax(e, yt_max_abs_diff(dp + i * ld, dq + i * K, K));
                for (int64_t k = K; k < ld; k++) e = fmax(e, fabs(dp[i * ld + k] - 7.0f));
            }
        }
        yf_kernels_set_path(path);
        free(dq), free(dp);
        CHECK(e == 0, "case %zu: slice products differ (max %g)", s, e);
        worst_bits = fmax(worst_bits, e);
        /* against the naive product on the slice (only dy's bf16 rounding differs:
         * ~2^-9 of each term, a random walk over the slice's rows) */
        if (!acc) {
            yf_matmul_xw_ref(dr, dy, w + n0 * K, YF_BF16, M, nb, K, false);
            worst_ref = fmax(worst_ref, yt_max_abs_diff(d1, dr, M * K) / sqrt((double)nb));
        }
        yf_wpack_free(pt), yf_wpack_free(pw);
        free(x), free(dy), free(yfull), free(y0), free(y1), free(d0), free(d1), free(dr), free(w), free(xpk), free(dpk);
    }
    CHECK_NEAR("row slices: max |packed - unpacked|, |slice - whole product's columns|, |blocks - slice|", worst_bits,
               0.0);
    CHECK_NEAR("row slices: dy.W[n0:n1] bf16 vs naive, max abs / sqrt(rows)", worst_ref, 5e-3);
    yf_kernels_set_precision(YF_PREC_EXACT);
}

/* Rows of W read back from its dy·W pack (the tied embedding's lookup once
 * the head's pages are given back): bit for bit W's rows, on sizes that are
 * not multiples of the 32-row steps or the 32-column pairs. */
TEST(kernels_rows_from_a_packed_weight) {
    if (!yf_kernels_path_supported(YF_KPATH_AMX)) yt_skip("this CPU (or build) has no amx path");
    CHECK(yf_kernels_set_path(YF_KPATH_AMX) == 0);
    static const int64_t shapes[][2] = {{70, 100}, {33, 64}, {300, 17}};
    int bad = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t N = shapes[s][0], K = shapes[s][1];
        uint16_t *w = malloc((size_t)(N * K) * sizeof(uint16_t));
        for (int64_t i = 0; i < N * K; i++) w[i] = yf_f32_to_bf16(frand());
        yf_wpack *xw = yf_wpack_new(w, YF_BF16, N, K, YF_PACK_XW, false);
        yf_wpack *xwt = yf_wpack_new(w, YF_BF16, N, K, YF_PACK_XWT, false);
        CHECK(xw && xwt, "packing a %lld x %lld weight failed", (long long)N, (long long)K);
        int64_t ids[70] = {0, N - 1, N / 2, 1, 32 % N, N - 1}, n = 70; /* 70: three pieces of 32 rows */
        for (int64_t i = 6; i < n; i++) ids[i] = (i * 37) % N;
        float *out = malloc((size_t)(n * K) * sizeof(float));
        CHECK(yf_wpack_rows(xw, ids, n, out));
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < K; k++) bad += out[i * K + k] != yf_bf16_to_f32(w[ids[i] * K + k]);
        CHECK(!yf_wpack_rows(xwt, ids, n, out), "an x.W^T pack is not read as rows");
        free(out), free(w);
        yf_wpack_free(xw);
        yf_wpack_free(xwt);
    }
    CHECK(bad == 0, "%d values differ from W's rows", bad);
}

/* With yf_kernels_set_rowstable on, each row of an x.W^T or dy.W product
 * of up to YF_ROWSTABLE_M rows has the bits of the one-row product (a
 * sequence decoded in a batch gets the tokens it gets alone): rows of 2..16-
 * row products against each row alone, f32 and bf16 weights, every path. */
TEST(kernels_few_rows_equal_one_row) {
    static const int64_t nk[][2] = {{96, 64}, {320, 64}, {64, 2048}, {2048, 40}};
    CHECK(yf_kernels_set_rowstable(true) == false, "off by default");
    for (int p = YF_KPATH_SCALAR; p < YF_KPATH_COUNT; p++) {
        if (!yf_kernels_path_supported(p)) continue;
        CHECK(yf_kernels_set_path(p) == 0);
        for (size_t s = 0; s < sizeof nk / sizeof *nk; s++)
            for (int op = OP_XWT; op <= OP_XW; op++)
                for (int dt = 0; dt < 2; dt++) {
                    const int64_t M = YF_ROWSTABLE_M, N = nk[s][0], K = nk[s][1];
                    int64_t lda = op == OP_XWT ? K : N, ldc = op == OP_XWT ? N : K;
                    float *a = malloc(M * lda * sizeof(float)), *w = malloc(N * K * sizeof(float));
                    float *c = malloc(M * ldc * sizeof(float)), *c1 = malloc(ldc * sizeof(float));
                    uint16_t *wb = malloc(N * K * sizeof(uint16_t));
                    for (int64_t i = 0; i < M * lda; i++) a[i] = frand();
                    for (int64_t i = 0; i < N * K; i++) wb[i] = yf_f32_to_bf16(w[i] = frand());
                    const void *W = dt ? (const void *)wb : (const void *)w;
                    yf_dtype wt = dt ? YF_BF16 : YF_F32;
                    int bad = 0;
                    for (int64_t m = 2; m <= M; m++) {
                        if (op == OP_XWT) yf_matmul_xwt(c, a, W, wt, m, N, K, false);
                        else yf_matmul_xw(c, a, W, wt, m, N, K, false);
                        for (int64_t r = 0; r < m; r++) {
                            if (op == OP_XWT) yf_matmul_xwt(c1, a + r * lda, W, wt, 1, N, K, false);
                            else yf_matmul_xw(c1, a + r * lda, W, wt, 1, N, K, false);
                            bad += memcmp(c1, c + r * ldc, (size_t)ldc * sizeof(float)) != 0;
                        }
                    }
                    CHECK(bad == 0, "%s %s %s N=%ld K=%ld: %d rows of 2..16-row products differ from the row alone",
                          yf_kpath_name(p), op_name[op], dt ? "bf16" : "f32", (long)N, (long)K, bad);
                    free(a), free(w), free(c), free(c1), free(wb);
                }
    }
}
