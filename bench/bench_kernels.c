/* bench-kernels: GFLOP/s of the matmul paths on the Yuan2-2B LoRA shapes.
 * usage: build/bench-kernels [--quick] [--paths amx,avx512,avx2,scalar]
 * For every path the CPU has (and both precisions on AMX) it times y = x.W^T,
 * dx = dy.W and dW += dy^T.x on the training shapes (M = 2304 rows) and the
 * decode shapes (M = 1), prints the best of several runs: the wall-clock
 * rate, and the rate per busy core (FLOP / CPU time of the process), which is
 * what to compare on a machine shared with other jobs, with its fraction of
 * one core's nominal peak (clock x FLOP/cycle; turbo can exceed it). Products
 * whose estimated time is long on a slow path are left out (said so). */
#include "kernels.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double cpu_mhz(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    double mhz = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "cpu MHz", 7) == 0 && sscanf(strchr(line, ':') + 1, "%lf", &mhz) == 1) break;
    if (f) fclose(f);
    return mhz > 0 ? mhz : 2600;
}

/* FLOP per cycle per core of each path (fp32 FMA: 2 units; AMX: one 16x16x32
 * TDPBF16PS per 16 cycles) */
static double flop_per_cycle(yf_kpath p) {
    switch (p) {
    case YF_KPATH_AMX: return 1024;
    case YF_KPATH_AVX512: return 64;
    case YF_KPATH_AVX2: return 32;
    default: return 2;
    }
}

typedef enum { OP_XWT, OP_XW, OP_DW } op_t;
typedef struct {
    op_t op;
    int64_t M, N, K;
    const char *what;
} shape;

static const shape shapes[] = {
    {OP_XWT, 2304, 2048, 2048, "fwd attn proj"},
    {OP_XWT, 2304, 8192, 2048, "fwd mlp up"},
    {OP_XWT, 2304, 2048, 8192, "fwd mlp down"},
    {OP_XW, 2304, 2048, 2048, "bwd dx attn"},
    {OP_XW, 2304, 8192, 2048, "bwd dx mlp up"},
    {OP_XW, 2304, 2048, 8192, "bwd dx mlp down"},
    {OP_DW, 2304, 2048, 2048, "dW full-param"},
    {OP_XWT, 2304, 135040, 2048, "fwd lm head"},
    {OP_XWT, 1, 2048, 2048, "decode attn"},
    {OP_XWT, 1, 8192, 2048, "decode mlp up"},
    {OP_XWT, 1, 2048, 8192, "decode mlp down"},
    {OP_XWT, 1, 135040, 2048, "decode lm head"},
};

int main(int argc, char **argv) {
    bool quick = false;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = true;
        else if (strcmp(argv[i], "--paths") == 0 && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--paths amx,avx512,avx2,scalar]\n", argv[0]);
            return 2;
        }
    }
    int nt = omp_get_max_threads();
    double mhz = cpu_mhz();
    printf("threads %d, clock %.0f MHz; wall = elapsed time; core = per busy core (CPU time), %% of one\n"
           "core's nominal peak (clock x FLOP/cycle: AMX 1024, AVX-512 64, AVX2 32)\n", nt, mhz);

    /* one set of buffers big enough for every shape */
    size_t maxa = 0, maxb = 0, maxc = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const shape *sh = &shapes[s];
        size_t a = sh->M * sh->K, b = sh->N * sh->K, c = sh->M * sh->N;
        if (sh->op != OP_XWT) a = sh->M * sh->N, c = sh->N * sh->K;
        if (sh->op == OP_DW) b = sh->M * sh->K;
        if (a > maxa) maxa = a;
        if (b > maxb) maxb = b;
        if (c > maxc) maxc = c;
    }
    float *a = malloc(maxa * 4), *c = malloc(maxc * 4), *bf = malloc(maxb * 4);
    uint16_t *bh = malloc(maxb * 2);
    if (!a || !c || !bf || !bh) {
        fprintf(stderr, "bench-kernels: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < maxa; i++) a[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < maxb; i++) {
        bf[i] = (float)((i * 40503u) % 1000) * 1e-4f - 0.05f;
        bh[i] = yf_f32_to_bf16(bf[i]);
    }
    memset(c, 0, maxc * 4);

    printf("%-7s %-5s %-16s %-6s %6s %6s %6s %9s %10s %10s %6s\n", "path", "prec", "product", "op", "M", "N", "K",
           "wall ms", "wall GF/s", "core GF/s", "peak%");
    for (int p = YF_KPATH_AMX; p >= YF_KPATH_SCALAR; p--) {
        if (!yf_kernels_path_supported(p)) continue;
        if (only && !strstr(only, yf_kpath_name(p))) continue;
        yf_kernels_set_path(p);
        double peak = mhz * 1e6 * flop_per_cycle(p) / 1e9; /* one core */
        for (int prec = 0; prec < (p == YF_KPATH_AMX ? 2 : 1); prec++) {
            yf_kernels_set_precision(prec ? YF_PREC_BF16 : YF_PREC_EXACT);
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
                const shape *sh = &shapes[s];
                double flop = 2.0 * sh->M * sh->N * sh->K;
                /* rough time at 30% of peak; skip what would take long */
                double est = flop / (0.3 * peak * nt * 1e9);
                if (sh->M > 1 && (est > (quick ? 0.5 : 4.0))) {
                    printf("%-7s %-5s %-16s (left out: ~%.0f s a run on this path)\n", yf_kpath_name(p),
                           prec ? "bf16" : "exact", sh->what, est);
                    continue;
                }
                double best = 1e30, best_cpu = 1e30, total = 0;
                for (int rep = 0; rep < 20 && (rep < 2 || total < (quick ? 0.3 : 1.0)); rep++) {
                    double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
                    if (sh->op == OP_XWT)
                        yf_matmul_xwt(c, a, bh, YF_BF16, sh->M, sh->N, sh->K, false);
                    else if (sh->op == OP_XW)
                        yf_matmul_xw(c, a, bh, YF_BF16, sh->M, sh->N, sh->K, false);
                    else
                        yf_matmul_dw(c, a, bf, sh->M, sh->N, sh->K);
                    double t = clock_s(CLOCK_MONOTONIC) - t0, tc = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
                    if (rep > 0 && t < best) best = t; /* rep 0 warms up */
                    if (rep > 0 && tc < best_cpu) best_cpu = tc;
                    total += t;
                }
                double gf = flop / best / 1e9, gfc = flop / best_cpu / 1e9;
                const char *opn = sh->op == OP_XWT ? "xW^T" : sh->op == OP_XW ? "dyW" : "dy^Tx";
                printf("%-7s %-5s %-16s %-6s %6ld %6ld %6ld %9.2f %10.1f %10.1f %5.1f%%", yf_kpath_name(p),
                       prec ? "bf16" : "exact", sh->what, opn, (long)sh->M, (long)sh->N, (long)sh->K, best * 1e3, gf,
                       gfc, 100 * gfc / peak);
                if (sh->M == 1) printf("  (weights %.1f GB/s)", sh->N * sh->K * 2.0 / best / 1e9);
                printf("\n");
                fflush(stdout);
            }
        }
    }
    free(a), free(c), free(bf), free(bh);
    return 0;
}
