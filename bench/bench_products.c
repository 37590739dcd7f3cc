/* bench-products: the 2-layer bench step's layer products on their own, as
 * the training step runs them (bf16, pre-packed weights, 384 rows), with a
 * 600 MB sweep between repetitions so each starts with the weights out of
 * the caches as the step has them. Medians over repetitions: steadier (±3%
 * here) than a training step's tokens/s (±5-10%), for changes of a few %.
 * usage: build/bench-products [--reps N] [--no-sweep]
 *   layers: 2 layers' 7 products x·W^T (q k v o gate up down), then their
 *           dy·W in reverse order: ms each way and GFLOP/s (the
 *           layers' products take ~110 ms of a ~360 ms step);
 *   terms:  the 384 x 2048 x 8192 products of the gate and up projections
 *           (4 weights, ms a product) and the 384 x 8192 x 2048 of the down
 *           projections (dy·W in one K block), plain and with the LoRA term the step
 *           adds inside the AMX kernels (yf_matmul_xwt_pk_lr, rank 8;
 *           yf_matmul_xw_pk_drop, rank 8 with dropout 0.1, writing dx or
 *           adding to it, +=): what the term costs on top. */
#include "kernels/cpu/fused.h"
#include "kernels/cpu/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { T = 384, D = 2048, F = 8192, LAYERS = 2, NPROJ = 7, MAXREPS = 101 };

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* a bf16 weight [n, k] of small varied values (the products' speed does not
 * depend on them) */
static uint16_t *weight(int64_t n, int64_t k) {
    uint16_t *w = malloc((size_t)(n * k) * sizeof(uint16_t));
    if (!w) return NULL;
    for (int64_t i = 0; i < n * k; i++) w[i] = (uint16_t)(0x3c00 + (i * 7) % 64);
    return w;
}

static float *filled(int64_t n, float step) {
    float *x = malloc((size_t)n * sizeof(float));
    if (!x) return NULL;
    for (int64_t i = 0; i < n; i++) x[i] = (float)(i % 13) * step;
    return x;
}

static volatile char g_sink;

static void sweep(char *buf, size_t n) {
    if (!buf) return;
    for (size_t o = 0; o < n; o += 64) buf[o]++;
    g_sink = buf[n / 2];
}

int main(int argc, char **argv) {
    int reps = 11;
    bool do_sweep = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--no-sweep")) {
            do_sweep = false;
        } else {
            fprintf(stderr, "usage: %s [--reps N] [--no-sweep]\n", argv[0]);
            return strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        }
    }
    if (reps < 1 || reps > MAXREPS) {
        fprintf(stderr, "bench-products: --reps takes 1..%d\n", MAXREPS);
        return 2;
    }
    yf_kernels_set_precision(YF_PREC_BF16);
    if (!yf_wpack_pays(T, YF_BF16)) {
        printf("bench-products: no AMX bf16 path here (pre-packed weights unused): nothing to measure\n");
        return 0;
    }
    /* [out, in] of each projection: q k v o gate up down */
    static const int64_t shp[NPROJ][2] = {{D, D}, {D, D}, {D, D}, {D, D}, {F, D}, {F, D}, {D, F}};
    enum { NW = LAYERS * NPROJ };
    uint16_t *w[NW];
    yf_wpack *pf[NW], *pb[NW];
    double flop = 0;
    for (int i = 0; i < NW; i++) {
        int64_t o = shp[i % NPROJ][0], in = shp[i % NPROJ][1];
        w[i] = weight(o, in);
        pf[i] = w[i] ? yf_wpack_new(w[i], YF_BF16, o, in, YF_PACK_XWT, false) : NULL;
        pb[i] = w[i] ? yf_wpack_new(w[i], YF_BF16, o, in, YF_PACK_XW, false) : NULL;
        if (!pf[i] || !pb[i]) {
            fprintf(stderr, "bench-products: out of memory packing the weights\n");
            return 1;
        }
        flop += 2.0 * T * (double)o * (double)in;
    }
    float *x = filled((int64_t)T * F, 0.01f), *y = malloc((size_t)T * F * sizeof(float));
    float *l = filled((int64_t)T * 8, 0.001f), *r = filled((int64_t)8 * F, 1e-5f);
    size_t sweep_bytes = (size_t)600 << 20;
    char *sw = do_sweep ? calloc(sweep_bytes, 1) : NULL;
    if (!x || !y || !l || !r || (do_sweep && !sw)) {
        fprintf(stderr, "bench-products: out of memory\n");
        return 1;
    }
    printf("bench-products: T %d, bf16, pre-packed weights, median of %d%s\n", T, reps,
           do_sweep ? ", 600 MB swept before each" : "");

    double tf[MAXREPS], tb[MAXREPS];
    for (int k = 0; k < reps; k++) {
        sweep(sw, sweep_bytes);
        double t0 = now_s();
        for (int i = 0; i < NW; i++)
            yf_matmul_xwt_pk(y, x, w[i], YF_BF16, pf[i], T, shp[i % NPROJ][0], shp[i % NPROJ][1], false);
        double t1 = now_s();
        for (int i = NW - 1; i >= 0; i--)
            yf_matmul_xw_pk(y, x, w[i], YF_BF16, pb[i], T, shp[i % NPROJ][0], shp[i % NPROJ][1], false);
        double t2 = now_s();
        tf[k] = (t1 - t0) * 1e3, tb[k] = (t2 - t1) * 1e3;
    }
    double mf = median(tf, reps), mb = median(tb, reps);
    printf("layers  x·W^T  %7.2f ms  %6.0f GFLOP/s   (%d products)\n", mf, flop / mf * 1e-6, NW);
    printf("layers  dy·W   %7.2f ms  %6.0f GFLOP/s\n", mb, flop / mb * 1e-6);

    /* the terms, on the gate and up projections of both layers (W [F, D]: four
     * different weights in a row after each sweep, as the step meets them;
     * dy·W over 4 K blocks), then on the down projections (W [D, F], twice
     * each: dy·W in one K block) */
    float *rt = filled((int64_t)F * 8, 1e-5f);
    if (!rt) {
        fprintf(stderr, "bench-products: out of memory\n");
        return 1;
    }
    yf_drop d = {.thr = 429496730u, .s0 = 0x9e3779b9u, .s1 = 0x85ebca6bu, .ks = 1.0f / 0.9f};
    const char *names[6] = {"dy·W plain",           "dy·W + dropout term",   "dy·W += plain",
                            "dy·W += , dropout term", "x·W^T plain",          "x·W^T + up-projection term"};
    static const int sets[2][4] = {{4, 5, NPROJ + 4, NPROJ + 5}, {6, NPROJ + 6, 6, NPROJ + 6}};
    static const char *set_names[2] = {"gate/up", "down"};
    static double tv[6][MAXREPS];
    bool inside = true;
    double term_flop = 2.0 * T * D * F;
    for (int st = 0; st < 2; st++) {
        const int *gu = sets[st];
        int64_t O = st ? D : F, I = st ? F : D; /* W [O, I] */
        for (int k = 0; k < reps; k++)
            for (int v = 0; v < 6; v++) {
                sweep(sw, sweep_bytes);
                double t0 = now_s();
                for (int j = 0; j < 4; j++) {
                    int i = gu[j];
                    if (v == 0 || v == 2)
                        yf_matmul_xw_pk(y, x, w[i], YF_BF16, pb[i], T, O, I, v == 2);
                    else if (v == 1 || v == 3)
                        inside &= yf_matmul_xw_pk_drop(y, x, w[i], YF_BF16, pb[i], T, O, I, v == 3, l, r, 8, &d);
                    else if (v == 4)
                        yf_matmul_xwt_pk(y, x, w[i], YF_BF16, pf[i], T, O, I, false);
                    else
                        yf_matmul_xwt_pk_lr(y, x, w[i], YF_BF16, pf[i], T, O, I, false, l, rt, 8);
                }
                tv[v][k] = (now_s() - t0) * 1e3 / 4;
            }
        for (int v = 0; v < 6; v++) {
            double m = median(tv[v], reps);
            printf("terms   %-8s %-28s %6.2f ms  %6.0f GFLOP/s", set_names[st], names[v], m, term_flop / m * 1e-6);
            if (v % 2) printf("   (+%.2f ms)", m - median(tv[v - 1], reps));
            printf("\n");
        }
    }
    if (!inside) printf("(the dropout term did not run inside the product here: its row is the separate steps)\n");

    for (int i = 0; i < NW; i++) yf_wpack_free(pf[i]), yf_wpack_free(pb[i]), free(w[i]);
    free(x), free(y), free(l), free(r), free(rt), free(sw);
    return 0;
}
