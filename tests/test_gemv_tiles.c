/* The few-row kernels (gemv_tiles.c), bf16 and f32 weights: the AVX-512 and
 * AVX2 kernels give the bits of the scalar reference with their lane count
 * for every row count 1..16, odd column counts, K not a multiple of the step
 * (the last, padded step) and accumulating; any split of rows or columns
 * gives the same bits; the reference is the product (against double sums);
 * the dispatcher sends decode products to them. */
#include "harness.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/matmul_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x51ed270b27e1c3a5ull;
static float frand(void) { return yt_frand(&g_rng); }

/* x [M, K], C [M, N], W [N, K] as bf16 (w) and as f32 (wf, other values) */
typedef struct prob {
    int64_t M, N, K;
    float *x, *c, *wf;
    uint16_t *w;
    yf_dtype dt; /* which W the products read */
} prob;

static prob make(int64_t M, int64_t N, int64_t K, yf_dtype dt) {
    prob p = {M, N, K, malloc((size_t)(M * K) * sizeof(float)), malloc((size_t)(M * N) * sizeof(float)),
              malloc((size_t)(N * K) * sizeof(float)), malloc((size_t)(N * K) * sizeof(uint16_t)), dt};
    for (int64_t i = 0; i < M * K; i++) p.x[i] = frand();
    for (int64_t i = 0; i < N * K; i++) p.w[i] = yf_f32_to_bf16(frand()), p.wf[i] = frand();
    for (int64_t i = 0; i < M * N; i++) p.c[i] = frand();
    return p;
}

static void drop(prob *p) { free(p->x), free(p->c), free(p->wf), free(p->w); }

static const void *wptr(const prob *p) { return p->dt == YF_BF16 ? (const void *)p->w : (const void *)p->wf; }
static float wget(const prob *p, int64_t i) { return p->dt == YF_BF16 ? yf_bf16_to_f32(p->w[i]) : p->wf[i]; }

/* y = x·W^T as the kernels see it */
static yf_gemm gemm(const prob *p, float *c, bool acc) {
    return (yf_gemm){.c = c, .ldc = p->N, .a = p->x, .ars = p->K, .acs = 1, .b = wptr(p), .bt = p->dt, .brs = 1,
                     .bcs = p->K, .M = p->M, .N = p->N, .K = p->K, .accumulate = acc};
}

static const yf_dtype dts[2] = {YF_BF16, YF_F32};

static float *copy(const float *v, int64_t n) {
    float *d = malloc((size_t)n * sizeof(float));
    memcpy(d, v, (size_t)n * sizeof(float));
    return d;
}

/* the kernel of a path and its lane count */
typedef struct isa {
    yf_kpath path;
    int lanes;
    void (*run)(const yf_gemm *, int64_t, int64_t, int64_t, int64_t);
} isa;
static const isa isas[] = {{YF_KPATH_AVX512, 16, yf_gemv_tiles_avx512}, {YF_KPATH_AVX2, 8, yf_gemv_tiles_avx2}};

/* the kernels' tests skip, rather than pass, where no path of theirs runs
 * (every CPU with AVX-512 has AVX2) */
static void need_a_path(void) {
    if (!yf_kernels_path_supported(YF_KPATH_AVX2)) yt_skip("no AVX2 on this CPU: no tiled kernel to test");
}

TEST(gemv_tiles_match_reference_bitwise) {
    need_a_path();
    static const int64_t nk[][2] = {{1, 32}, {7, 31}, {37, 33}, {64, 2048}, {29, 100}, {3, 8192}, {50, 1000}, {5, 17}};
    int bad = 0, cases = 0;
    for (size_t i = 0; i < 2; i++) {
        const isa *is = &isas[i];
        if (!yf_kernels_path_supported(is->path)) {
            printf("    (no %s here: not run)\n", yf_kpath_name(is->path));
            continue;
        }
        for (int d = 0; d < 2; d++)
            for (size_t s = 0; s < sizeof nk / sizeof *nk; s++)
                for (int64_t M = 1; M <= YF_ROWSTABLE_M; M++)
                    for (int acc = 0; acc < 2; acc++) {
                        prob p = make(M, nk[s][0], nk[s][1], dts[d]);
                        float *ref = copy(p.c, M * p.N), *fast = copy(p.c, M * p.N);
                        yf_gemm gr = gemm(&p, ref, acc), gf = gemm(&p, fast, acc);
                        yf_gemv_tiles_ref(&gr, is->lanes, 0, M, 0, p.N);
                        is->run(&gf, 0, M, 0, p.N);
                        if (memcmp(ref, fast, (size_t)(M * p.N) * sizeof(float)) != 0 && bad++ < 3)
                            fprintf(stderr, "  %s %s M=%ld N=%ld K=%ld accumulate=%d differs\n",
                                    yf_kpath_name(is->path), d ? "f32" : "bf16", (long)M, (long)p.N, (long)p.K, acc);
                        cases++;
                        free(ref), free(fast);
                        drop(&p);
                    }
    }
    CHECK(cases > 0, "nothing ran");
    CHECK(bad == 0, "%d of %d products differ from the reference's bits", bad, cases);
}

/* More rows than a decode step has (groups of 8 rows beyond 16): the
 * reference's bits still. */
TEST(gemv_tiles_many_rows) {
    need_a_path();
    int bad = 0;
    for (size_t i = 0; i < 2; i++) {
        const isa *is = &isas[i];
        if (!yf_kernels_path_supported(is->path)) continue;
        for (int d = 0; d < 2; d++) {
            prob p = make(530, 29, 70, dts[d]);
            float *ref = copy(p.c, p.M * p.N), *fast = copy(p.c, p.M * p.N);
            yf_gemm gr = gemm(&p, ref, true), gf = gemm(&p, fast, true);
            yf_gemv_tiles_ref(&gr, is->lanes, 0, p.M, 0, p.N);
            is->run(&gf, 0, p.M, 0, p.N);
            bad += memcmp(ref, fast, (size_t)(p.M * p.N) * sizeof(float)) != 0;
            free(ref), free(fast);
            drop(&p);
        }
    }
    CHECK(bad == 0, "%d products of 530 rows differ from the reference's bits", bad);
}

/* Rows in uneven row ranges and column ranges: the bits of the whole
 * product (what a decode step of a batch relies on). */
TEST(gemv_tiles_any_split_same_bits) {
    need_a_path();
    int bad = 0;
    for (size_t i = 0; i < 2; i++) {
        const isa *is = &isas[i];
        if (!yf_kernels_path_supported(is->path)) continue;
        for (int d = 0; d < 2; d++) {
            prob p = make(16, 101, 2050, dts[d]);
            float *whole = copy(p.c, 16 * p.N), *parts = copy(p.c, 16 * p.N);
            yf_gemm gw = gemm(&p, whole, false), gp = gemm(&p, parts, false);
            is->run(&gw, 0, 16, 0, p.N);
            static const int64_t cuts[][2] = {{0, 1}, {1, 4}, {4, 11}, {11, 16}};
            for (size_t c = 0; c < 4; c++) {
                is->run(&gp, cuts[c][0], cuts[c][1], 0, 37);
                is->run(&gp, cuts[c][0], cuts[c][1], 37, p.N);
            }
            bad += memcmp(whole, parts, (size_t)(16 * p.N) * sizeof(float)) != 0;
            free(whole), free(parts);
            drop(&p);
        }
    }
    CHECK(bad == 0, "split products differ from the whole in %d cases", bad);
}

/* The reference is the product: each element against a double sum, within
 * 1e-5 of the sum of |x·w| (fp32 rounding over K terms), both lane counts,
 * both dtypes. */
TEST(gemv_tiles_reference_is_the_product) {
    double worst = 0;
    for (int d = 0; d < 2; d++) {
        prob p = make(3, 40, 1000, dts[d]);
        for (int lanes = 8; lanes <= 16; lanes += 8) {
            float *c = copy(p.c, 3 * p.N);
            yf_gemm g = gemm(&p, c, true);
            yf_gemv_tiles_ref(&g, lanes, 0, 3, 0, p.N);
            for (int64_t m = 0; m < 3; m++)
                for (int64_t n = 0; n < p.N; n++) {
                    double s = p.c[m * p.N + n], mag = fabs(s);
                    for (int64_t k = 0; k < p.K; k++) {
                        double t = (double)p.x[m * p.K + k] * wget(&p, n * p.K + k);
                        s += t, mag += fabs(t);
                    }
                    double e = fabs(c[m * p.N + n] - s) / mag;
                    if (e > worst) worst = e;
                }
            free(c);
        }
        drop(&p);
    }
    CHECK_NEAR("relative error of the reference vs double sums", worst, 1e-5);
}

/* The last, padded step reads nothing past K: the next row of W all +Inf
 * leaves the rows before it finite and as the reference has them. */
TEST(gemv_tiles_k_tail_reads_only_its_row) {
    need_a_path();
    int bad = 0;
    for (size_t i = 0; i < 2; i++) {
        const isa *is = &isas[i];
        if (!yf_kernels_path_supported(is->path)) continue;
        for (int d = 0; d < 2; d++) {
            prob p = make(5, 4, 45, dts[d]);
            for (int64_t k = 0; k < p.K; k++) p.w[3 * p.K + k] = 0x7f80, p.wf[3 * p.K + k] = INFINITY;
            float *ref = copy(p.c, 5 * p.N), *fast = copy(p.c, 5 * p.N);
            yf_gemm gr = gemm(&p, ref, false), gf = gemm(&p, fast, false);
            yf_gemv_tiles_ref(&gr, is->lanes, 0, 5, 0, p.N);
            is->run(&gf, 0, 5, 0, p.N);
            for (int64_t m = 0; m < 5; m++)
                for (int64_t n = 0; n < 3; n++)
                    bad += !isfinite(fast[m * p.N + n]) || fast[m * p.N + n] != ref[m * p.N + n];
            free(ref), free(fast);
            drop(&p);
        }
    }
    CHECK(bad == 0, "%d elements of rows before the Inf row are not the reference's", bad);
}

/* A decode step's products (row-stable, 1..16 rows) on the AVX-512 and AVX2
 * paths are these kernels': yf_matmul_xwt gives the reference's bits. */
TEST(gemv_tiles_are_what_decode_products_run) {
    need_a_path();
    yf_kpath was_path = yf_kernels_path();
    bool was = yf_kernels_set_rowstable(true);
    int bad = 0, runs = 0;
    for (size_t i = 0; i < 2; i++) {
        const isa *is = &isas[i];
        if (!yf_kernels_path_supported(is->path)) continue;
        CHECK(yf_kernels_set_path(is->path) == 0);
        for (int d = 0; d < 2; d++)
            for (int64_t M = 1; M <= YF_ROWSTABLE_M; M += 5, runs++) {
                prob p = make(M, 3000, 512, dts[d]); /* enough to be split between threads */
                float *ref = copy(p.c, M * p.N), *fast = copy(p.c, M * p.N);
                yf_gemm gr = gemm(&p, ref, false);
                yf_gemv_tiles_ref(&gr, is->lanes, 0, M, 0, p.N);
                yf_matmul_xwt(fast, p.x, wptr(&p), p.dt, M, p.N, p.K, false);
                bad += memcmp(ref, fast, (size_t)(M * p.N) * sizeof(float)) != 0;
                free(ref), free(fast);
                drop(&p);
            }
    }
    yf_kernels_set_rowstable(was);
    yf_kernels_set_path(was_path);
    CHECK(bad == 0, "%d of %d decode products differ from the reference's bits", bad, runs);
}

/* The settings the bf16 dot form needs (the AVX-512 path, bf16 mode, the
 * dot kernel, row-stable products), and what they replaced */
typedef struct dot_mode {
    yf_kpath path;
    bool dot, rowstable;
} dot_mode;

static dot_mode dot_mode_on(void) {
    dot_mode was = {yf_kernels_path(), false, false};
    CHECK(yf_kernels_set_path(YF_KPATH_AVX512) == 0);
    yf_kernels_set_precision(YF_PREC_BF16);
    was.dot = yf_kernels_set_bf16_dot(true);
    was.rowstable = yf_kernels_set_rowstable(true);
    return was;
}

static void dot_mode_off(dot_mode was) {
    yf_kernels_set_rowstable(was.rowstable);
    yf_kernels_set_bf16_dot(was.dot);
    yf_kernels_set_precision(YF_PREC_EXACT);
    yf_kernels_set_path(was.path);
}

/* The bf16 dot form (bf16 W in bf16 mode with the bf16 dot kernel, AVX-512
 * with AVX512-BF16): each row gets the bits it gets alone, whatever the
 * number of rows (1..32, row-stable), and each element is the product of x
 * rounded to bf16 and W (against double sums: fp32 accumulation error
 * only, relative to the sum of |terms|); decode products in bf16 mode run
 * it (the bits of the kernel called directly). */
TEST(gemv_tiles_bf16_dot_rows_stable_and_the_product) {
    if (!yf_kernels_path_supported(YF_KPATH_AVX512) || !yf_cpu()->avx512_bf16)
        yt_skip("no AVX512-BF16 here: the bf16 dot form of the tiles is not used");
    dot_mode was = dot_mode_on();
    static const int64_t nk[][2] = {{37, 33}, {29, 100}, {64, 2048}, {21, 17}, {3000, 512}}; /* N > 16: not narrow */
    int bad_rows = 0, bad_disp = 0;
    double worst = 0;
    for (size_t s = 0; s < sizeof nk / sizeof *nk; s++)
        for (int64_t M = 1; M <= YF_ROWSTABLE_M; M += s == 4 ? 9 : 5) {
            prob p = make(M, nk[s][0], nk[s][1], YF_BF16);
            float *all = copy(p.c, M * p.N), *disp = copy(p.c, M * p.N), *one = copy(p.c, M * p.N);
            yf_gemm ga = gemm(&p, all, true);
            yf_gemv_tiles_avx512(&ga, 0, M, 0, p.N);
            for (int64_t m = 0; m < M; m++) { /* row m alone */
                yf_gemm g1 = gemm(&p, one, true);
                yf_gemv_tiles_avx512(&g1, m, m + 1, 0, p.N);
            }
            bad_rows += memcmp(all, one, (size_t)(M * p.N) * sizeof(float)) != 0;
            yf_matmul_xwt(disp, p.x, p.w, YF_BF16, M, p.N, p.K, true);
            bad_disp += memcmp(all, disp, (size_t)(M * p.N) * sizeof(float)) != 0;
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < p.N; n++) {
                    double sum = p.c[m * p.N + n], mag = fabs(sum);
                    for (int64_t k = 0; k < p.K; k++) {
                        double t = (double)yf_bf16_to_f32(yf_f32_to_bf16(p.x[m * p.K + k])) *
                                   yf_bf16_to_f32(p.w[n * p.K + k]);
                        sum += t, mag += fabs(t);
                    }
                    worst = fmax(worst, fabs(all[m * p.N + n] - sum) / mag);
                }
            free(all), free(disp), free(one);
            drop(&p);
        }
    dot_mode_off(was);
    CHECK(bad_rows == 0, "%d products: rows differ from the same rows alone", bad_rows);
    CHECK(bad_disp == 0, "%d decode products in bf16 mode differ from the dot kernel's bits", bad_disp);
    CHECK_NEAR("bf16 dot tiles vs double sums of bf16(x)·W, relative to the sum of |terms|", worst, 1e-5);
}

/* The dot form rounds x to bf16 as yf_f32_to_bf16 does, value by value:
 * ties to even, signs, the K tail zeros. With W the identity, each output is
 * one product by 1 plus zeros, so it is exactly the rounded x; but for a
 * subnormal x, which vdpbf16ps reads as zero (it treats subnormal inputs as
 * zeros, whatever MXCSR says): 0 there. */
TEST(gemv_tiles_bf16_dot_rounds_x_as_the_scalar_rule) {
    if (!yf_kernels_path_supported(YF_KPATH_AVX512) || !yf_cpu()->avx512_bf16)
        yt_skip("no AVX512-BF16 here: the bf16 dot form of the tiles is not used");
    dot_mode was = dot_mode_on();
    enum { K = 45, M = 3 }; /* one whole step of 32 and a tail of 13 */
    static const float special[] = {1.00390625f,      /* 1 + 2^-8: a tie, rounds down to even */
                                    1.01171875f,      /* 1 + 3 * 2^-8: a tie, rounds up to even */
                                    -1.00390625f,     1.0f + 0x1p-8f + 0x1p-20f, /* just above a tie */
                                    1e-40f,           /* subnormal: vdpbf16ps reads 0 */
                                    -3e-39f,          0x1p-126f, 65504.0f, -0.0f, 3.14159265f};
    float x[M * K], c[M * K];
    uint16_t w[K * K];
    memset(w, 0, sizeof w);
    for (int k = 0; k < K; k++) w[k * K + k] = yf_f32_to_bf16(1.0f);
    for (int i = 0; i < M * K; i++) x[i] = i % 4 == 0 ? special[(i / 4) % 10] : frand() * (i % 3 ? 1e3f : 1e-3f);
    yf_matmul_xwt(c, x, w, YF_BF16, M, K, K, false);
    int bad = 0;
    for (int i = 0; i < M * K; i++) {
        float want = fabsf(x[i]) < 0x1p-126f ? 0.0f : yf_bf16_to_f32(yf_f32_to_bf16(x[i]));
        if (memcmp(&c[i], &want, sizeof want) != 0 && !(want == 0 && c[i] == 0)) {
            if (bad < 5) printf("  x[%d] = %a: got %a, want %a\n", i, x[i], c[i], want);
            bad++;
        }
    }
    dot_mode_off(was);
    CHECK(bad == 0, "%d of %d values of x rounded otherwise than yf_f32_to_bf16", bad, M * K);
}
