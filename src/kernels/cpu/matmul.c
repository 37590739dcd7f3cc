/* matmul: the dispatching matrix products. Each public product becomes one
 * strided general product (yf_gemm, see matmul_impl.h); yf_gemm_run picks the path
 * (AMX, AVX-512, AVX2, scalar; few-row products go to the unpacked "gemv"
 * kernels), splits C between the threads of the pool (base/pool.h) and
 * calls the path on each piece. Paths are detected at run time (cpu.c) and capped by YF_KERNELS. */
#include "kernels/cpu/matmul_impl.h"

#include "kernels/cpu/cpu.h"
#include "base/pool.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- path and precision ------------------------------------------------- */

static const char *const g_names[YF_KPATH_COUNT] = {"ref", "scalar", "avx2", "avx512", "amx"};
static yf_kpath g_path;
static yf_precision g_prec = YF_PREC_EXACT;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

bool yf_kernels_path_supported(yf_kpath p) {
    const yf_cpu_features *f = yf_cpu();
    switch (p) {
    case YF_KPATH_REF:
    case YF_KPATH_SCALAR: return true;
    case YF_KPATH_AVX2: return YF_CC_AVX2 && f->avx2_fma;
    case YF_KPATH_AVX512: return YF_CC_AVX512 && f->avx512;
    case YF_KPATH_AMX: return YF_CC_AMX && f->amx_bf16 && YF_CC_AVX512 && f->avx512;
    default: return false;
    }
}

const char *yf_kpath_name(yf_kpath p) { return p >= 0 && p < YF_KPATH_COUNT ? g_names[p] : "?"; }

static void init_path(void) {
    yf_kpath best = YF_KPATH_AMX;
    while (!yf_kernels_path_supported(best)) best--;
    g_path = best;
    const char *env = getenv("YF_KERNELS");
    if (!env || !*env) return;
    int want = -1;
    for (int i = 0; i < YF_KPATH_COUNT; i++)
        if (strcmp(env, g_names[i]) == 0) want = i;
    if (want < 0) {
        fprintf(stderr, "yuanft: YF_KERNELS=%s is not one of ref|scalar|avx2|avx512|amx; using %s\n", env,
                g_names[best]);
        return;
    }
    if (want > (int)best)
        fprintf(stderr, "yuanft: YF_KERNELS=%s but this CPU (or build) lacks it; using %s\n", env, g_names[best]);
    else
        g_path = (yf_kpath)want;
}

yf_kpath yf_kernels_path(void) {
    pthread_once(&g_once, init_path);
    return g_path;
}

int yf_kernels_set_path(yf_kpath p) {
    pthread_once(&g_once, init_path);
    if (!yf_kernels_path_supported(p))
        return yf_errorf("kernels: path '%s' is not supported on this CPU or build", yf_kpath_name(p));
    g_path = p;
    return 0;
}

/* yf_kernels_set_rowstable: per calling thread (the one that chooses the kernel) */
static _Thread_local bool t_rowstable;

bool yf_kernels_set_rowstable(bool on) {
    bool was = t_rowstable;
    t_rowstable = on;
    return was;
}

int64_t yf_gemv_rows(void) { return t_rowstable ? YF_ROWSTABLE_M : YF_GEMV_MAX_M; }

void yf_kernels_set_precision(yf_precision p) { g_prec = p; }
yf_precision yf_kernels_precision(void) { return g_prec; }

/* the bf16 dot kernel: -1 until first asked (the CPU's default or YF_BF16_DOT) */
static int g_bf16_dot = -1;

static bool bf16_dot_setting(void) {
    if (g_bf16_dot < 0) {
        const char *env = getenv("YF_BF16_DOT");
        bool on = env && *env ? strcmp(env, "0") != 0 : yf_cpu()->bf16_dot_fast;
        g_bf16_dot = on && yf_cpu()->avx512_bf16 && YF_CC_AVX512;
    }
    return g_bf16_dot;
}

bool yf_kernels_set_bf16_dot(bool on) {
    bool was = bf16_dot_setting();
    g_bf16_dot = on && yf_cpu()->avx512_bf16 && YF_CC_AVX512;
    return was;
}

bool yf_kernels_bf16_dot(void) {
    return g_prec == YF_PREC_BF16 && yf_kernels_path() == YF_KPATH_AVX512 && bf16_dot_setting();
}

const yf_fma_isa *yf_fma_isa_now(yf_kpath path) {
    if (path == YF_KPATH_AVX2) return &yf_fma_avx2;
    return g_prec == YF_PREC_BF16 && bf16_dot_setting() ? &yf_fma_avx512_bf16 : &yf_fma_avx512;
}

/* ---- per-thread scratch ------------------------------------------------- */

/* freed when a thread that ends (serve's scheduler) exits (yf_tbuf) */
static _Thread_local yf_tbufs t_scratch;

void *yf_scratch(int slot, size_t bytes) { return yf_tbuf(&t_scratch, slot, bytes); }

static inline float aget(const yf_gemm *g, int64_t m, int64_t k) { return g->a[m * g->ars + k * g->acs]; }

/* ---- scalar path (CPUs without AVX2, other architectures) --------------- */

static void gemm_scalar(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    for (int64_t m = m0; m < m1; m++) {
        float *cr = g->c + m * g->ldc;
        if (!g->accumulate)
            for (int64_t n = n0; n < n1; n++) cr[n] = 0;
        if (g->bcs == 1) { /* rows of B contiguous: axpy order */
            for (int64_t k = 0; k < g->K; k++) {
                float a = aget(g, m, k);
                if (a == 0) continue;
                for (int64_t n = n0; n < n1; n++) cr[n] += a * yf_gemm_bget(g, k, n);
            }
        } else {
            for (int64_t n = n0; n < n1; n++) {
                float s = 0;
                for (int64_t k = 0; k < g->K; k++) s += aget(g, m, k) * yf_gemm_bget(g, k, n);
                cr[n] += s;
            }
        }
    }
}

/* ---- dispatch ----------------------------------------------------------- */

typedef enum { K_SCALAR, K_AVX2, K_AVX512, K_AMX, K_GEMV_AVX2, K_GEMV_AVX512, K_NARROW_AVX2, K_NARROW_AVX512 } kind;

/* Exact mode: parts of the split of A (see kernels.h, matmul_amx.c). */
#define EXACT_PARTS 3
/* Products with at most this many columns (LoRA's rank-r factors) go to the
 * unpacked kernels: packing would pad them to 32-wide blocks and copy the big
 * operand once more. The narrow kernels (yf_narrow_form) take those with a
 * dimension <= YF_NARROW_DIM first; the gemv kernels, a few rows of C at a
 * time, the rest. (Not by row count above YF_ROWSTABLE_M: the kernel, hence
 * the rounding, of a row must not depend on how many rows the product has,
 * e.g. scored rows only in a backward. yf_kernels_set_rowstable moves the
 * bound to YF_ROWSTABLE_M for decode steps: see kernels.h.) */
#define SMALL_DIM 16
/* Threads only for products of at least this many multiply-adds (~0.05 ms on
 * AMX, ~0.3 ms in fp32 on one core): a parallel region costs microseconds on
 * idle cores and up to a scheduler time slice (milliseconds) when the cores
 * are shared with other processes, which made small products 10-30x slower. */
#define MT_MIN_WORK ((double)(1 << 24))
/* The few-row kernels (decode steps) take threads from 2^20 multiply-adds or
 * 1 MiB of W: a batched decode step of a small model (32 rows through a
 * 704 x 256 weight) is 10-20 times the cost of a parallel region on idle
 * cores, and serving and extraction own their cores (docs/performance.md). */
#define MT_MIN_FEW ((double)(1 << 20))
/* The narrow kernels (LoRA's rank-r sides) do a multiply-add per element of
 * the big operand they stream, at ~70 GFLOP/s: 2^21 of them are ~0.05 ms as
 * well, so they take threads from there (a 384-row step has ~60 of 6-25M). */
#define MT_MIN_NARROW ((double)(1 << 21))

static kind choose(const yf_gemm *g, yf_kpath path, int *nparts) {
    /* a rank-r side (matmul_impl.h): fp32 in either precision, as AMX would
     * pad it to 32 and the packed kernels to 12 x 32 blocks */
    if (yf_narrow_form(g) != YF_NARROW_NONE && path >= YF_KPATH_AVX512) return K_NARROW_AVX512;
    if (yf_narrow_form(g) != YF_NARROW_NONE && path >= YF_KPATH_AVX2) return K_NARROW_AVX2;
    bool layout_ok = g->bcs == 1 || (g->brs == 1 && g->acs == 1);
    bool small = g->M <= yf_gemv_rows() || g->N <= SMALL_DIM;
    if (small && layout_ok && path >= YF_KPATH_AVX512) return K_GEMV_AVX512;
    if (small && layout_ok && path >= YF_KPATH_AVX2) return K_GEMV_AVX2;
    if (path >= YF_KPATH_AMX && g->M >= YF_AMX_MIN_M) {
        if (g_prec == YF_PREC_BF16) {
            *nparts = 1;
            return K_AMX;
        }
        if (g->bt == YF_BF16) { /* bf16 B times the split parts of A is exact */
            *nparts = EXACT_PARTS;
            return K_AMX;
        }
    }
    if (path >= YF_KPATH_AVX512) return K_AVX512;
    if (path >= YF_KPATH_AVX2) return K_AVX2;
    return K_SCALAR;
}

/* Columns of W a gemv block holds: ~256 KiB of W (L2 keeps it while each
 * group of rows reads it), a multiple of 16 columns. */
static int64_t gemv_cols(const yf_gemm *g) {
    int64_t per_col = g->K * (g->bt == YF_BF16 ? 2 : 4);
    int64_t nb = ((int64_t)256 << 10) / (per_col > 0 ? per_col : 1) / 16 * 16;
    return nb < 16 ? 16 : nb;
}

static void run_block(const yf_gemm *g, const yf_gemm_epi *e, kind k, int nparts, int64_t m0, int64_t m1, int64_t n0,
                      int64_t n1) {
    YF_CHECK(!e || k == K_AMX); /* fused work: AMX here, the FMA paths in yf_gemm_fma */
    switch (k) {
    case K_AMX: yf_gemm_amx(g, e, m0, m1, n0, n1, nparts); break;
    case K_NARROW_AVX512: yf_narrow_avx512(g, m0, m1, n0, n1); break;
    case K_NARROW_AVX2: yf_narrow_avx2(g, m0, m1, n0, n1); break;
    case K_GEMV_AVX512:
    case K_GEMV_AVX2: {
        if (g->bcs != 1) { /* x·W^T: all rows at once, W streamed once */
            if (k == K_GEMV_AVX512)
                yf_gemv_tiles_avx512(g, m0, m1, n0, n1);
            else
                yf_gemv_tiles_avx2(g, m0, m1, n0, n1);
            break;
        }
        /* rows in groups of YF_GEMV_MAX_M; with several groups, W a block of
         * columns at a time that stays in L2 while every group reads it, so
         * that W streams from memory once. Either way each element is the
         * same sum in the same order as in a one-row product. */
        int64_t step = YF_GEMV_MAX_M, nb = m1 - m0 <= step ? n1 - n0 : gemv_cols(g);
        for (int64_t n = n0; n < n1; n += nb) {
            int64_t ne = n1 - n < nb ? n1 : n + nb;
            for (int64_t m = m0; m < m1; m += step) {
                int64_t me = m1 - m < step ? m1 : m + step;
                if (k == K_GEMV_AVX512)
                    yf_gemv_avx512(g, m, me, n, ne);
                else
                    yf_gemv_avx2(g, m, me, n, ne);
            }
        }
        break;
    }
    default: gemm_scalar(g, m0, m1, n0, n1); break;
    }
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

typedef struct split_job {
    const yf_gemm *g;
    const yf_gemm_epi *e;
    kind k;
    int nparts;
    bool split_n;
    int64_t chunk, len;
} split_job;

static void split_piece(void *ctx, int64_t i) {
    const split_job *j = ctx;
    int64_t lo = i * j->chunk, hi = lo + j->chunk < j->len ? lo + j->chunk : j->len;
    if (lo >= hi) return;
    if (j->split_n)
        run_block(j->g, j->e, j->k, j->nparts, 0, j->g->M, lo, hi);
    else
        run_block(j->g, j->e, j->k, j->nparts, lo, hi, 0, j->g->N);
}

bool yf_gemm_on_amx(const yf_gemm *g, int *nparts) {
    *nparts = 1;
    return yf_kernels_path() != YF_KPATH_REF && choose(g, yf_kernels_path(), nparts) == K_AMX;
}

bool yf_gemm_on_fma(const yf_gemm *g) {
    int nparts = 1;
    kind k = choose(g, yf_kernels_path(), &nparts);
    return k == K_AVX512 || k == K_AVX2;
}

bool yf_gemm_on_narrow(const yf_gemm *g) {
    int nparts = 1;
    kind k = choose(g, yf_kernels_path(), &nparts);
    return k == K_NARROW_AVX512 || k == K_NARROW_AVX2;
}

static void run_inner(const yf_gemm *g, const yf_gemm_epi *e);

/* ---- AMX with a pre-packed B: A packed once for all threads -------------- */

typedef struct apack_job {
    const yf_gemm *g;
    int nparts;
    int64_t pstride;
    uint16_t *ap;
} apack_job;

static void apack_piece(void *ctx, int64_t ip) {
    const apack_job *j = ctx;
    int64_t m0 = 32 * ip;
    yf_amx_pack_a_panel(j->g, m0, j->g->M - m0 < 32 ? j->g->M - m0 : 32, j->nparts, j->ap + ip * j->pstride);
}

/* Each piece of a split product packs all of the operand it does not split;
 * with B pre-packed that is A, which each thread then converted whole (the
 * LM head's input gradient: 383 x 135040 floats, twice). Instead, per K
 * block, the threads first pack A's panels together into one buffer, then
 * run their pieces on it. The kernel calls per C block are the same as
 * without, so are the results. An A the caller packed (g->apk, all of K,
 * panels g->apk_ld apart) is used as it is, block by block. */
static void run_shared_a(const yf_gemm *g, const yf_gemm_epi *e, int nparts, bool split_n, int64_t chunk, int64_t len,
                         int64_t pieces) {
    int64_t KC = yf_amx_kc(g->K), npanels = (g->M + 31) / 32, nks_all = (g->K + 31) / 32;
    int64_t pstride = (KC / 32) * nparts * 1024; /* bf16 elements per panel */
    uint16_t *ap = g->apk ? NULL : yf_scratch(4, (size_t)(npanels * pstride) * sizeof(uint16_t));
    for (int64_t pc = 0; pc < g->K; pc += KC) {
        int64_t kb = g->K - pc < KC ? g->K - pc : KC;
        yf_gemm gk = *g; /* this K block: a product of its own, accumulating after the first */
        gk.a = g->a ? g->a + pc * g->acs : NULL;
        gk.K = kb;
        gk.accumulate = g->accumulate || pc > 0;
        yf_gemm_epi ek = e ? *e : (yf_gemm_epi){0};
        if (pc + kb < g->K) ek.lr_l = ek.lr_r = ek.pro_l = NULL; /* the low-rank terms once C is complete */
        gk.bpk = g->bpk + (pc / 32) * 1024;
        gk.bpk_ld = g->bpk_ld ? g->bpk_ld : nks_all * 1024;
        if (g->apk) {
            gk.apk = g->apk + (pc / 32) * 1024;
        } else {
            int64_t pst = ((kb + 31) / 32) * nparts * 1024;
            apack_job aj = {&gk, nparts, pst, ap};
            yf_par_for(npanels, apack_piece, &aj);
            gk.apk = ap;
            gk.apk_ld = 0;
        }
        split_job j = {&gk, e ? &ek : NULL, K_AMX, nparts, split_n, chunk, len};
        if (pieces <= 1)
            split_piece(&j, 0);
        else
            yf_par_for(pieces, split_piece, &j);
    }
}

void yf_gemm_run_here(const yf_gemm *g, const yf_gemm_epi *e) { run_shared_a(g, e, 1, true, g->N, g->N, 1); }

void yf_gemm_run(char op, const yf_gemm *g, const yf_gemm_epi *e) {
    if (!yf_kprof_on()) {
        run_inner(g, e);
        return;
    }
    double t0 = yf_kprof_now();
    run_inner(g, e);
    yf_kprof_add(op, g, yf_kprof_now() - t0);
}

static void run_inner(const yf_gemm *g, const yf_gemm_epi *e) {
    if (g->M <= 0 || g->N <= 0) return;
    if (g->K <= 0) {
        if (!g->accumulate)
            for (int64_t m = 0; m < g->M; m++) memset(g->c + m * g->ldc, 0, (size_t)g->N * sizeof(float));
        return;
    }
    int nparts = 1;
    kind k = choose(g, yf_kernels_path(), &nparts);
    double work = (double)g->M * (double)g->N * (double)g->K;
    /* a few rows (decode) are bound by reading B: threads pay from ~1 MiB of it */
    bool few = k == K_GEMV_AVX2 || k == K_GEMV_AVX512;
    double b_read = (double)g->N * (double)g->K * (g->bt == YF_BF16 ? 2 : 4);
    bool narrow = k == K_NARROW_AVX2 || k == K_NARROW_AVX512;
    double min_work = narrow ? MT_MIN_NARROW : few ? MT_MIN_FEW : MT_MIN_WORK;
    int nt = work < min_work && !(few && b_read >= (double)(1 << 20)) ? 1 : yf_par_threads();
    YF_CHECK(!g->apk || (k == K_AMX && nparts == 1 && g->bpk));
    if (k == K_AVX512 || k == K_AVX2) { /* its own split (gemm_fma.c) */
        yf_gemm_fma(g, e, yf_fma_isa_now(k == K_AVX512 ? YF_KPATH_AVX512 : YF_KPATH_AVX2), nt);
        return;
    }
    if (nt <= 1 && g->apk) { /* K block by K block, as below */
        run_shared_a(g, e, 1, true, g->N, g->N, 1);
        return;
    }
    if (nt <= 1) {
        run_block(g, e, k, nparts, 0, g->M, 0, g->N);
        return;
    }
    /* Split C into pieces for the pool. Each piece packs all of the operand
     * that is not split and its share of the other, so the bigger one is
     * split: along M when A (f32 activations, M x K) is larger than B (often
     * bf16 weights, K x N; the LM head's is 135040 x 2048), along N otherwise
     * or when there are few rows; the gemv products split along N unless N is
     * tiny. Two pieces per thread when they stay >= 128 wide (a late or
     * descheduled thread then leaves less behind), else one. Pieces are
     * multiples of 32 rows / columns so tiles do not straddle them (4 rows for
     * gemv's row blocks). */
    bool gemv = k == K_GEMV_AVX2 || k == K_GEMV_AVX512;
    double a_bytes = (double)g->M * (double)g->K * 4;
    double b_bytes = (double)g->N * (double)g->K * (g->bt == YF_BF16 ? 2 : 4);
    bool split_n = gemv ? g->N > SMALL_DIM : (g->M < 64 * nt || (b_bytes > a_bytes && g->N >= 64 * nt));
    /* A pre-packed B with rows enough for 4+ panels a thread: along M. Each
     * thread then reads all of B (the other's copy is in L3 by then) against
     * its own half of A, which leaves L2 room: at M = 384 the products ran
     * 5-20% faster than split along N (cold caches, as in a training step);
     * at M = 2304 the same */
    if (k == K_AMX && g->bpk && g->M >= 128 * nt) split_n = false;
    int64_t unit = gemv && !split_n ? YF_GEMV_MAX_M : 32;
    if (k == K_NARROW_AVX2 || k == K_NARROW_AVX512) { /* the big side, in whole register tiles */
        yf_narrow f = yf_narrow_form(g);
        split_n = f == YF_NARROW_M || (f == YF_NARROW_K && g->N > g->M);
        unit = f == YF_NARROW_N ? 8 : 64;
    }
    int64_t len = split_n ? g->N : g->M, units = ceil_div(len, unit);
    int64_t pieces = units >= 8 * nt ? 2 * nt : nt;
    int64_t chunk = ceil_div(units, pieces) * unit;
    pieces = ceil_div(len, chunk);
    if (k == K_AMX && g->bpk) {
        run_shared_a(g, e, nparts, split_n, chunk, len, pieces);
        return;
    }
    split_job j = {g, e, k, nparts, split_n, chunk, len};
    yf_par_for(pieces, split_piece, &j);
}

void yf_matmul_xwt(float *y, const float *x, const void *w, yf_dtype wt, int64_t M, int64_t N, int64_t K,
                   bool accumulate) {
    yf_matmul_xwt_pk(y, x, w, wt, NULL, M, N, K, accumulate);
}

void yf_matmul_xw(float *dx, const float *dy, const void *w, yf_dtype wt, int64_t M, int64_t N, int64_t K,
                  bool accumulate) {
    yf_matmul_xw_pk(dx, dy, w, wt, NULL, M, N, K, accumulate);
}

void yf_matmul_xwt_pk(float *y, const float *x, const void *w, yf_dtype wt, const yf_wpack *pk, int64_t M,
                      int64_t N, int64_t K, bool accumulate) {
    if (wt == YF_QMAT) { /* quantized: quant.c (no packs) */
        yf_qmat_xwt(w, N, K, y, N, x, M, 0, N, accumulate);
        return;
    }
    YF_CHECK(wt == YF_F32 || wt == YF_BF16);
    if (yf_kernels_path() == YF_KPATH_REF) {
        yf_matmul_xwt_ref(y, x, w, wt, M, N, K, accumulate);
        return;
    }
    /* A = x [M,K]; B(k,n) = W[n,k]; C = y [M,N] */
    yf_gemm g = {.c = y, .ldc = N, .a = x, .ars = K, .acs = 1, .b = w, .bt = wt, .brs = 1, .bcs = K,
                 .M = M, .N = N, .K = K, .accumulate = accumulate};
    yf_gemm_use_pack(&g, pk, w, N, K, YF_PACK_XWT);
    yf_gemm_run('f', &g, NULL);
}

void yf_matmul_xw_pk(float *dx, const float *dy, const void *w, yf_dtype wt, const yf_wpack *pk, int64_t M,
                     int64_t N, int64_t K, bool accumulate) {
    if (wt == YF_QMAT) {
        yf_qmat_xw(w, N, K, dx, K, dy, N, M, 0, N, accumulate);
        return;
    }
    YF_CHECK(wt == YF_F32 || wt == YF_BF16);
    if (yf_kernels_path() == YF_KPATH_REF) {
        yf_matmul_xw_ref(dx, dy, w, wt, M, N, K, accumulate);
        return;
    }
    /* A = dy [M,N]; B(j,k) = W[j,k]; C = dx [M,K]; the sum runs over N */
    yf_gemm g = {.c = dx, .ldc = K, .a = dy, .ars = N, .acs = 1, .b = w, .bt = wt, .brs = K, .bcs = 1,
                 .M = M, .N = K, .K = N, .accumulate = accumulate};
    yf_gemm_use_pack(&g, pk, w, N, K, YF_PACK_XW);
    yf_gemm_run('b', &g, NULL);
}

void yf_matmul_dw(float *dw, const float *dy, const float *x, int64_t M, int64_t N, int64_t K) {
    if (yf_kernels_path() == YF_KPATH_REF) {
        yf_matmul_dw_ref(dw, dy, x, M, N, K);
        return;
    }
    /* A(n,i) = dy[i,n]; B(i,k) = x[i,k]; C = dW [N,K]; the sum runs over M */
    yf_gemm g = {.c = dw, .ldc = K, .a = dy, .ars = 1, .acs = N, .b = x, .bt = YF_F32, .brs = K, .bcs = 1,
                 .M = N, .N = K, .K = M, .accumulate = true};
    yf_gemm_run('w', &g, NULL);
}
