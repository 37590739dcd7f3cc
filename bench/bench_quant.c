/* bench-quant: the quantized products against bf16 on the same shapes, in
 * one process (ratios measured together).
 *   decode: one row of x against 4 layers of Yuan2-2B-width weights (q k v o
 *           2048 x 2048, gate up 8192 x 2048, down 2048 x 8192: 537 MB in
 *           bf16, far beyond the caches), all threads: ms a pass, the weight
 *           bytes read per second, and with --bw GB/S (build/bench-membw's
 *           read bandwidth) that over it;
 *   head:   the same over the LM head's shape (135,040 x 2048, 553 MB in
 *           bf16), the product decoding a token ends with;
 *   core:   the same kernels on one thread over a 2048 x 2048 weight that
 *           stays in L2/L3: what one core can do when memory is not the limit;
 *   rows:   x·W^T and dy·W of 384 and 2304 rows (prefill, a training step)
 *           through a 8192 x 2048 weight: ms and GFLOP/s.
 * Weights: bf16, int8, q4, and int8 / q4 with int8 activations (i8x8,
 * q4x8: --int8-activations; the few-row products only).
 * The fastest of --reps repetitions (default 7).
 * usage: build/bench-quant [--reps N] [--no-rows] [--no-head] [--bw GB/S] */
#include "base/pool.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/quant.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { D = 2048, F = 8192, V = 135040, LAYERS = 4, NPROJ = 7, MAXREPS = 51 };

static double fastest(const double *v, int n) {
    double b = v[0];
    for (int i = 1; i < n; i++) b = v[i] < b ? v[i] : b;
    return b;
}

static float *filled(int64_t n, float scale) {
    float *x = yf_malloc((size_t)n * sizeof(float));
    uint64_t s = 0x2545F4914F6CDD1Dull;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = scale * ((float)(s >> 40) / (float)(1 << 24) - 0.5f);
    }
    return x;
}

typedef struct weight {
    int64_t N, K;
    uint16_t *bf16;
    yf_qmat q8, q4;
} weight;

static void proj_shape(int p, int64_t *N, int64_t *K) {
    *N = p == 4 || p == 5 ? F : D; /* gate, up: [F, D] */
    *K = p == 6 ? F : D;           /* down: [D, F] */
}

/* kinds 3 and 4: int8 and q4 with int8 activations (yf_qmat.int8_act) */
static bool is_q8(int kind) { return kind == 1 || kind == 3; }

static size_t wbytes(const weight *w, int kind) {
    return kind == 0 ? (size_t)(w->N * w->K) * 2 : is_q8(kind) ? yf_qmat_bytes(&w->q8) : yf_qmat_bytes(&w->q4);
}

static void product(weight *w, int kind, float *y, const float *x, int64_t M) {
    w->q8.int8_act = w->q4.int8_act = kind >= 3;
    if (kind == 0) yf_matmul_xwt(y, x, w->bf16, YF_BF16, M, w->N, w->K, false);
    else yf_matmul_xwt(y, x, is_q8(kind) ? (const void *)&w->q8 : (const void *)&w->q4, YF_QMAT, M, w->N, w->K, false);
}

enum { KINDS = 5 };
static const char *kind_name[KINDS] = {"bf16", "int8", "q4", "i8x8", "q4x8"};

/* w: an N x K weight of random values in bf16, int8 and q4 (g32) */
static int make_weight(weight *w, int64_t N, int64_t K) {
    yf_qspec s8 = {YF_QT_INT8, 0, false}, s4 = {YF_QT_Q4, 32, false};
    w->N = N, w->K = K;
    float *f = filled(N * K, 0.05f);
    w->bf16 = yf_malloc((size_t)(N * K) * 2);
    for (int64_t j = 0; j < N * K; j++) w->bf16[j] = yf_f32_to_bf16(f[j]);
    int rc = yf_qmat_quantize(&w->q8, f, YF_F32, N, K, &s8, "w") || yf_qmat_quantize(&w->q4, f, YF_F32, N, K, &s4, "w");
    if (rc) fprintf(stderr, "bench-quant: %s\n", yf_last_error());
    free(f);
    return rc;
}

static void free_weight(weight *w) {
    free(w->bf16);
    yf_qmat_free(&w->q8);
    yf_qmat_free(&w->q4);
}

/* One row of x through the n weights at ws, every kind, all threads: the
 * fastest of reps passes */
static void decode_rows(weight *ws, int n, int reps, double bw, const float *x, float *y) {
    printf("%-5s %10s %9s %9s %11s\n", "dtype", "MB", "ms/pass", "GB/s", "of read bw");
    double base_ms = 0;
    for (int kind = 0; kind < KINDS; kind++) {
        double t[MAXREPS], bytes = 0;
        for (int i = 0; i < n; i++) bytes += (double)wbytes(&ws[i], kind);
        for (int r = -1; r < reps; r++) {
            double t0 = yf_time();
            for (int i = 0; i < n; i++) product(&ws[i], kind, y, x, 1);
            if (r >= 0) t[r] = yf_time() - t0;
        }
        double ms = fastest(t, reps) * 1e3;
        if (kind == 0) base_ms = ms;
        printf("%-5s %10.1f %9.2f %9.2f %10.0f%%  (%.2fx bf16's speed)\n", kind_name[kind], bytes / 1e6, ms,
               bytes / ms / 1e6, bw > 0 ? 100 * bytes / ms / 1e6 / bw : 0.0, base_ms / ms);
    }
}

int main(int argc, char **argv) {
    int reps = 7;
    bool rows = true, head = true;
    double bw = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-rows")) rows = false;
        else if (!strcmp(argv[i], "--no-head")) head = false;
        else if (!strcmp(argv[i], "--bw") && i + 1 < argc) bw = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--reps N] [--no-rows] [--no-head] [--bw GB/S]\n", argv[0]);
            return strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        }
    }
    if (reps < 1 || reps > MAXREPS) reps = 7;
    weight ws[LAYERS * NPROJ];
    for (int i = 0; i < LAYERS * NPROJ; i++) {
        int64_t N, K;
        proj_shape(i % NPROJ, &N, &K);
        if (make_weight(&ws[i], N, K)) return 1;
    }
    printf("threads %d, path %s; read bandwidth (--bw) %.2f GB/s\n", yf_par_threads(), yf_kpath_name(yf_kernels_path()),
           bw);
    float *x = filled(4 * F, 1.0f), *y = yf_malloc((size_t)2304 * F * sizeof(float));
    printf("decode: 1 row x %d layers' 7 weights (Yuan2-2B width)\n", LAYERS);
    decode_rows(ws, LAYERS * NPROJ, reps, bw, x, y);
    if (head) {
        weight h;
        if (make_weight(&h, V, D)) return 1;
        float *yh = yf_malloc((size_t)V * sizeof(float));
        printf("head: 1 row x the LM head (%d x %d)\n", V, D);
        decode_rows(&h, 1, reps, bw, x, yh);
        free(yh);
        free_weight(&h);
    }
    printf("core: 1 row x one 2048 x 2048 weight, one thread, in cache\n");
    yf_kpath path = yf_kernels_path();
    int nthreads = omp_get_max_threads();
    omp_set_num_threads(1); /* the pool then runs every product on the caller */
    for (int kind = 0; kind < KINDS; kind++) {
        double t[MAXREPS];
        weight *w = &ws[0];
        for (int r = -3; r < reps; r++) {
            double t0 = yf_time();
            for (int k = 0; k < 20; k++) product(w, kind, y, x, 1);
            if (r >= 0) t[r] = (yf_time() - t0) / 20;
        }
        double ms = fastest(t, reps) * 1e3;
        printf("%-5s %9.3f ms  %7.2f GB/s of weights on %s\n", kind_name[kind], ms, (double)wbytes(w, kind) / ms / 1e6,
               yf_kpath_name(path));
    }
    omp_set_num_threads(nthreads);
    if (rows) {
        printf("rows: W 8192 x 2048 (gate/up), all threads\n");
        const weight *w = &ws[4];
        float *xx = filled(2304 * F, 1.0f);
        for (int mi = 0; mi < 2; mi++) {
            int64_t M = mi ? 2304 : 384;
            for (int op = 0; op < 2; op++)
                for (int kind = 0; kind < 3; kind++) {
                    double t[MAXREPS];
                    int nr = reps < 3 ? reps : 3;
                    for (int r = -1; r < nr; r++) {
                        double t0 = yf_time();
                        const void *wp = kind == 0 ? (const void *)w->bf16 : kind == 1 ? (const void *)&w->q8
                                                                                        : (const void *)&w->q4;
                        yf_dtype wt = kind == 0 ? YF_BF16 : YF_QMAT;
                        if (op == 0) yf_matmul_xwt(y, xx, wp, wt, M, w->N, w->K, false);
                        else yf_matmul_xw(y, xx, wp, wt, M, w->N, w->K, false);
                        if (r >= 0) t[r] = yf_time() - t0;
                    }
                    double ms = fastest(t, nr) * 1e3;
                    printf("%-5s %-6s M=%-5lld %9.2f ms %8.1f GFLOP/s\n", kind_name[kind], op ? "dy.W" : "x.W^T",
                           (long long)M, ms, 2.0 * M * w->N * w->K / ms / 1e6);
                }
        }
        free(xx);
    }
    for (int i = 0; i < LAYERS * NPROJ; i++) free_weight(&ws[i]);
    free(x), free(y);
    return 0;
}
