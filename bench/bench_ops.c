/* bench-ops: CPU time per call of the non-matmul ops on the Yuan2-2B LoRA
 * training shapes (T = 384, D = 2048, I = 8192, H = 32, V = 135040).
 * usage: OMP_NUM_THREADS=1 build/bench-ops [reps [name-part [ref]]]
 * (name-part "" = all; "ref" times the plain C reference loops instead of the
 * AVX-512 forms, yf_ops_set_reference).
 * Prints the best of `reps` runs (default 7) of each op in CPU milliseconds of
 * the process (what to compare on a machine shared with other jobs). */
#include "model/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *rnd(int64_t n, float s) {
    float *p = malloc((size_t)n * sizeof(float));
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
    for (int64_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = ((float)(x >> 40) * (1.0f / (1 << 23)) - 1.0f) * s;
    }
    return p;
}

static const char *g_only; /* argv[2]: run only the ops whose name contains it */
#define TIME(name, reps, stmt)                                                                     \
    if (!g_only || strstr(name, g_only))                                                           \
    do {                                                                                           \
        double best = 1e30;                                                                        \
        for (int r_ = 0; r_ < (reps); r_++) {                                                      \
            double t0_ = cpu_s();                                                                  \
            stmt;                                                                                  \
            double t_ = cpu_s() - t0_;                                                             \
            if (t_ < best) best = t_;                                                              \
        }                                                                                          \
        printf("%-28s %9.3f ms\n", name, best * 1e3);                                              \
    } while (0)

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    g_only = argc > 2 && argv[2][0] ? argv[2] : NULL;
#ifndef BENCH_OPS_BASE /* (for timing an older build that lacks the switch) */
    yf_ops_set_reference(argc > 3 && strcmp(argv[3], "ref") == 0);
#endif
    const int64_t T = 384, D = 2048, I = 8192, H = 32, hd = 64, V = 135040, R = 383;
    float *x = rnd(T * I, 2), *g = rnd(T * I, 2), *u = rnd(T * I, 4), *y = rnd(T * I, 1), *dz = rnd(T * I, 1);
    float *dg = rnd(T * I, 1), *du = rnd(T * I, 1), *w = rnd(D, 1), *rs = rnd(T, 1), *dw = rnd(D, 1);
    float *q = rnd(T * D, 1), *k = rnd(T * D, 1), *ct = rnd(T * hd / 2, 1), *st = rnd(T * hd / 2, 1);
    yf_rope_tables(ct, st, T, hd, 10000);
    float *lg = rnd(R * V, 8), *dl = malloc((size_t)(R * V) * sizeof(float));
    int64_t *tg = malloc((size_t)R * sizeof(int64_t));
    for (int64_t r = 0; r < R; r++) tg[r] = (r * 7919) % V;
    volatile double sink = 0;

    TIME("xent fwd+bwd R=383 V=135040", reps, {
        memcpy(dl, lg, (size_t)(R * V) * sizeof(float));
        sink += yf_xent(dl, dl, tg, R, V, 1.0f / R);
    });
    TIME("  (memcpy of those logits)", reps, memcpy(dl, lg, (size_t)(R * V) * sizeof(float)));
    TIME("xent loss only", reps, sink += yf_xent(NULL, lg, tg, R, V, 1.0f));
    TIME("swiglu_fwd n=384*8192", reps, yf_swiglu_fwd(y, g, u, T * I));
    TIME("swiglu_bwd n=384*8192", reps, yf_swiglu_bwd(dg, du, dz, g, u, T * I));
    TIME("dropout n=384*2048", reps, yf_dropout(y, x, T * D, 0.1f, 12345));
    TIME("dropout n=384*8192", reps, yf_dropout(y, x, T * I, 0.1f, 12345));
    TIME("dropout in place 384*2048", reps, yf_dropout(x, x, T * D, 0.1f, 12345));
    TIME("rmsnorm_fwd 384x2048", reps, yf_rmsnorm_fwd(y, rs, x, w, T, D, 1e-6f));
    for (int64_t i = 0; i < T; i++) rs[i] = fabsf(rs[i]) + 0.5f;
    TIME("rmsnorm_bwd 384x2048 (+dw)", reps, yf_rmsnorm_bwd(dg, dw, dz, x, rs, w, T, D, true));
    TIME("qk_rope_fwd 384 H32 hd64", reps, yf_qk_rope_fwd(y, dg, q, k, ct, st, 1, T, H, hd, 0, NULL));
    TIME("qk_rope_bwd 384 H32 hd64", reps, yf_qk_rope_bwd(q, k, y, dg, ct, st, 1, T, H, hd, 0));
    TIME("conv_pack 384x2048", reps, yf_conv_pack(y, x, NULL, 1, T, D));
    TIME("conv_unpack_bwd 384x2048 acc", reps, yf_conv_unpack_bwd(dg, y, 1, T, D, true));
    TIME("heads_split 384 H32 hd64", reps, yf_heads_split(y, q, 1, T, H, hd));
    TIME("heads_merge 384 H32 hd64", reps, yf_heads_merge(q, y, 1, T, H, hd));
    printf("(sink %g)\n", (double)sink);
    return 0;
}
