/* bench-kernels: GFLOP/s of the matmul paths on the Yuan2-2B LoRA shapes.
 * usage: build/bench-kernels [--quick] [--paths amx,avx512,avx2,scalar]
 * For every path the CPU has (and both precisions on AMX) it times y = x.W^T,
 * dx = dy.W and dW += dy^T.x on the training shapes (M = 2304 rows) and the
 * decode shapes (M = 1, and M = 16 row-stable: a decode step of 16
 * sequences), prints the best of several runs: the wall-clock
 * rate, and the rate per busy core (FLOP / CPU time of the process), which is
 * what to compare on a machine shared with other jobs, with its fraction of
 * one core's peak (measured with register-resident loops where the compiler
 * can emit them, else clock x FLOP/cycle). Products
 * whose estimated time is long on a slow path are left out (said so). */
#include "kernels/cpu/kernels.h"

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

/* Register-resident peak of one core, measured (GFLOP/s per CPU second): AMX
 * with four accumulator tiles and no loads, AVX-512 / AVX2 with 12 independent
 * FMA chains. What the kernels' rates are compared with besides the nominal. */
#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) ? __clang_major__ >= 12 : __GNUC__ >= 11)
#include <immintrin.h>
#define HAVE_PEAK 1
__attribute__((target("amx-tile,amx-bf16"))) static double peak_amx(void) {
    struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t colsb[16];
        uint8_t rows[16];
    } cfg;
    static char buf[4096] __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) cfg.colsb[i] = 64, cfg.rows[i] = 16;
    _tile_loadconfig(&cfg);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, buf, 64);
    _tile_loadd(5, buf + 1024, 64);
    _tile_loadd(6, buf + 2048, 64);
    _tile_loadd(7, buf + 3072, 64);
    long it = 1 << 20;
    double t0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (long i = 0; i < it; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, buf, 64);
    double t = clock_s(CLOCK_PROCESS_CPUTIME_ID) - t0;
    _tile_release();
    return it * 4.0 * 16 * 16 * 32 * 2 / t / 1e9;
}
__attribute__((target("avx512f"))) static double peak_avx512(void) {
    __m512 m = _mm512_set1_ps(0.999f), a = _mm512_set1_ps(1e-3f);
    __m512 c0 = _mm512_set1_ps(0), c1 = _mm512_set1_ps(1), c2 = _mm512_set1_ps(2), c3 = _mm512_set1_ps(3);
    __m512 c4 = _mm512_set1_ps(4), c5 = _mm512_set1_ps(5), c6 = _mm512_set1_ps(6), c7 = _mm512_set1_ps(7);
    __m512 c8 = _mm512_set1_ps(8), c9 = _mm512_set1_ps(9), c10 = _mm512_set1_ps(10), c11 = _mm512_set1_ps(11);
    long it = 1 << 24;
    double t0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (long i = 0; i < it; i++) {
        c0 = _mm512_fmadd_ps(c0, m, a), c1 = _mm512_fmadd_ps(c1, m, a), c2 = _mm512_fmadd_ps(c2, m, a);
        c3 = _mm512_fmadd_ps(c3, m, a), c4 = _mm512_fmadd_ps(c4, m, a), c5 = _mm512_fmadd_ps(c5, m, a);
        c6 = _mm512_fmadd_ps(c6, m, a), c7 = _mm512_fmadd_ps(c7, m, a), c8 = _mm512_fmadd_ps(c8, m, a);
        c9 = _mm512_fmadd_ps(c9, m, a), c10 = _mm512_fmadd_ps(c10, m, a), c11 = _mm512_fmadd_ps(c11, m, a);
    }
    double t = clock_s(CLOCK_PROCESS_CPUTIME_ID) - t0;
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return it * 12.0 * 32 / t / 1e9;
}
/* the same on 8-float vectors: half the AVX-512 rate where the FMA units
 * are 512 bits wide (Intel), the same where AVX-512 is split in two 256-bit
 * halves (AMD Zen 4) */
__attribute__((target("avx2,fma"))) static double peak_avx2(void) {
    __m256 c[12];
    for (int i = 0; i < 12; i++) c[i] = _mm256_set1_ps((float)i);
    __m256 m = _mm256_set1_ps(0.999f), a = _mm256_set1_ps(1e-3f);
    long it = 1 << 24;
    double t0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (long i = 0; i < it; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) c[j] = _mm256_fmadd_ps(c[j], m, a);
        __asm__ volatile("" : "+x"(m));
    }
    double t = clock_s(CLOCK_PROCESS_CPUTIME_ID) - t0;
    __m256 s = c[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, c[i]);
    float v[8];
    _mm256_storeu_ps(v, s);
    volatile float sink = v[0];
    (void)sink;
    return it * 12.0 * 16 / t / 1e9;
}

/* the same with vdpbf16ps (two multiply-adds a lane) */
__attribute__((target("avx512f,avx512bf16"))) static double peak_avx512_bf16(void) {
    __m512 c[12];
    for (int i = 0; i < 12; i++) c[i] = _mm512_set1_ps((float)i);
    __m512bh m = (__m512bh)_mm512_set1_epi16(0x3f80), a = (__m512bh)_mm512_set1_epi16(0x3a83);
    long it = 1 << 24;
    double t0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (long i = 0; i < it; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) c[j] = _mm512_dpbf16_ps(c[j], m, a);
        __asm__ volatile("" : "+v"(m));
    }
    double t = clock_s(CLOCK_PROCESS_CPUTIME_ID) - t0;
    __m512 s = c[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, c[i]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return it * 12.0 * 64 / t / 1e9;
}
#else
#define HAVE_PEAK 0
#endif

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
    /* a decode step of 16 sequences (serve, extract --batch 16): row-stable */
    {OP_XWT, 16, 8192, 2048, "decode16 mlp up"},
    {OP_XWT, 16, 2048, 8192, "decode16 mlp dn"},
    {OP_XWT, 16, 135040, 2048, "decode16 lm head"},
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
    printf("threads %d, clock %.0f MHz; wall = elapsed time; core = per busy core (FLOP / CPU time)\n", nt, mhz);

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

    /* per-core peak per path: measured where possible, else nominal */
    double peak[YF_KPATH_COUNT];
    for (int p = 0; p < YF_KPATH_COUNT; p++) peak[p] = mhz * 1e6 * flop_per_cycle(p) / 1e9;
#if HAVE_PEAK
    if (yf_kernels_path_supported(YF_KPATH_AVX512)) {
        peak[YF_KPATH_AVX512] = peak_avx512();
        printf("measured register-resident peak of one core: AVX-512 FMA %.0f GFLOP/s\n", peak[YF_KPATH_AVX512]);
    }
    if (yf_kernels_path_supported(YF_KPATH_AVX2)) {
        peak[YF_KPATH_AVX2] = peak_avx2();
        printf("measured register-resident peak of one core: AVX2 FMA %.0f GFLOP/s\n", peak[YF_KPATH_AVX2]);
    }
    if (yf_kernels_path_supported(YF_KPATH_AMX)) {
        peak[YF_KPATH_AMX] = peak_amx();
        printf("measured register-resident peak of one core: AMX bf16 %.0f GFLOP/s\n", peak[YF_KPATH_AMX]);
    }
#endif
    /* bf16 mode on AVX-512 with the bf16-pair kernel (kernels.h), where the
     * CPU has AVX512-BF16: its own row and peak */
    bool pairs = false;
    double peak_pairs = 0;
    if (yf_kernels_path_supported(YF_KPATH_AVX512)) {
        yf_kernels_set_bf16_dot(true); /* on where the CPU has it, whatever its default */
        yf_kernels_set_path(YF_KPATH_AVX512);
        yf_kernels_set_precision(YF_PREC_BF16);
        pairs = yf_kernels_bf16_dot();
        yf_kernels_set_precision(YF_PREC_EXACT);
    }
#if HAVE_PEAK
    if (pairs) {
        peak_pairs = peak_avx512_bf16();
        printf("measured register-resident peak of one core: AVX-512 vdpbf16ps %.0f GFLOP/s (the avx512 bf16 rows' peak)\n",
               peak_pairs);
    }
#endif
    printf("peak%% = core GF/s over that peak; AMX exact does 3 tile products per product (max 33%%)\n");
    printf("%-7s %-5s %-16s %-6s %6s %6s %6s %9s %10s %10s %6s\n", "path", "prec", "product", "op", "M", "N", "K",
           "wall ms", "wall GF/s", "core GF/s", "peak%");
    for (int p = YF_KPATH_AMX; p >= YF_KPATH_SCALAR; p--) {
        if (!yf_kernels_path_supported(p)) continue;
        if (only && !strstr(only, yf_kpath_name(p))) continue;
        yf_kernels_set_path(p);
        bool two = p == YF_KPATH_AMX || (p == YF_KPATH_AVX512 && pairs);
        for (int prec = 0; prec < (two ? 2 : 1); prec++) {
            double pk = p == YF_KPATH_AVX512 && prec && peak_pairs > 0 ? peak_pairs : peak[p];
            yf_kernels_set_precision(prec ? YF_PREC_BF16 : YF_PREC_EXACT);
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
                const shape *sh = &shapes[s];
                double flop = 2.0 * sh->M * sh->N * sh->K;
                /* rough time at 30% of peak; skip what would take long */
                double est = flop / (0.3 * pk * nt * 1e9);
                if (sh->M > YF_ROWSTABLE_M && (est > (quick ? 0.5 : 4.0))) {
                    printf("%-7s %-5s %-16s (left out: ~%.0f s a run on this path)\n", yf_kpath_name(p),
                           prec ? "bf16" : "exact", sh->what, est);
                    continue;
                }
                bool was_stable = yf_kernels_set_rowstable(sh->M > 1 && sh->M <= YF_ROWSTABLE_M);
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
                yf_kernels_set_rowstable(was_stable);
                double gf = flop / best / 1e9, gfc = flop / best_cpu / 1e9;
                const char *opn = sh->op == OP_XWT ? "xW^T" : sh->op == OP_XW ? "dyW" : "dy^Tx";
                printf("%-7s %-5s %-16s %-6s %6ld %6ld %6ld %9.2f %10.1f %10.1f", yf_kpath_name(p),
                       prec ? "bf16" : "exact", sh->what, opn, (long)sh->M, (long)sh->N, (long)sh->K, best * 1e3, gf,
                       gfc);
                if (p == YF_KPATH_SCALAR) /* compiler-vectorized loops: no meaningful peak */
                    printf("      -");
                else
                    printf(" %5.1f%%", 100 * gfc / pk);
                if (sh->M <= YF_ROWSTABLE_M) printf("  (weights %.1f GB/s)", sh->N * sh->K * 2.0 / best / 1e9);
                printf("\n");
                fflush(stdout);
            }
        }
    }
    free(a), free(c), free(bf), free(bh);
    return 0;
}
