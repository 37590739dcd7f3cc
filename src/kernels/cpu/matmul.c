/* matmul: the dispatching matrix products. Each public product becomes one
 * strided general product (yf_gemm, see matmul_impl.h); run() picks the path
 * (AMX, AVX-512, AVX2, scalar; few-row products go to the unpacked "gemv"
 * kernels), splits C between the OpenMP threads and calls the path on each
 * piece. Paths are detected at run time (cpu.c) and capped by YF_KERNELS. */
#include "kernels/cpu/matmul_impl.h"

#include "kernels/cpu/cpu.h"
#include "base/pool.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

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

void yf_kernels_set_precision(yf_precision p) { g_prec = p; }
yf_precision yf_kernels_precision(void) { return g_prec; }

/* ---- per-thread scratch ------------------------------------------------- */

static _Thread_local struct {
    void *p;
    size_t n;
} t_scratch[5];

void *yf_scratch(int slot, size_t bytes) {
    YF_CHECK(slot >= 0 && slot < 5);
    if (t_scratch[slot].n < bytes) {
        free(t_scratch[slot].p);
        t_scratch[slot].p = yf_aligned_alloc(bytes);
        t_scratch[slot].n = bytes;
    }
    return t_scratch[slot].p;
}

/* ---- the packed fp32 driver (AVX2 / AVX-512 micro-kernels) -------------- */

static inline float aget(const yf_gemm *g, int64_t m, int64_t k) { return g->a[m * g->ars + k * g->acs]; }

/* Ap[k*MR + r] = A(m0+r, k0+k), zero beyond nm rows. */
static void pack_a_f32(const yf_gemm *g, int64_t m0, int64_t nm, int64_t k0, int64_t kb, int MR, float *ap) {
    if (g->ars == 1 && nm == MR) { /* columns of A contiguous: copy runs */
        for (int64_t k = 0; k < kb; k++) memcpy(ap + k * MR, g->a + m0 + (k0 + k) * g->acs, MR * sizeof(float));
        return;
    }
    for (int64_t r = 0; r < MR; r++)
        for (int64_t k = 0; k < kb; k++) ap[k * MR + r] = r < nm ? aget(g, m0 + r, k0 + k) : 0.0f;
}

/* Bp[k*NR + c] = B(k0+k, n0+c) as f32, zero beyond nn columns. */
static void pack_b_f32(const yf_gemm *g, int64_t k0, int64_t kb, int64_t n0, int64_t nn, int NR, float *bp) {
    if (nn < NR) memset(bp, 0, (size_t)kb * NR * sizeof(float));
    if (g->bcs == 1) {
        for (int64_t k = 0; k < kb; k++) {
            float *d = bp + k * NR;
            if (g->bt == YF_F32)
                memcpy(d, (const float *)g->b + (k0 + k) * g->brs + n0, (size_t)nn * sizeof(float));
            else {
                const uint16_t *s = (const uint16_t *)g->b + (k0 + k) * g->brs + n0;
                for (int64_t c = 0; c < nn; c++) d[c] = yf_bf16_to_f32(s[c]);
            }
        }
    } else {
        for (int64_t c = 0; c < nn; c++) {
            int64_t base = (n0 + c) * g->bcs + k0 * g->brs;
            if (g->bt == YF_F32) {
                const float *s = (const float *)g->b + base;
                for (int64_t k = 0; k < kb; k++) bp[k * NR + c] = s[k * g->brs];
            } else {
                const uint16_t *s = (const uint16_t *)g->b + base;
                for (int64_t k = 0; k < kb; k++) bp[k * NR + c] = yf_bf16_to_f32(s[k * g->brs]);
            }
        }
    }
}

void yf_gemm_packed(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1, int MR, int NR,
                    yf_ukernel uk) {
    if (m1 <= m0 || n1 <= n0) return;
    /* the A panel (MR x KC) stays in L1, the B block (KC x NC) in L2 */
    const int64_t KC = 256, NC = ((int64_t)1 << 20) / (KC * 4) / NR * NR;
    float *bp = yf_scratch(2, (size_t)KC * NC * sizeof(float));
    float *ap = yf_scratch(3, (size_t)KC * MR * sizeof(float));
    for (int64_t jc = n0; jc < n1; jc += NC) {
        int64_t nb = n1 - jc < NC ? n1 - jc : NC;
        for (int64_t pc = 0; pc < g->K; pc += KC) {
            int64_t kb = g->K - pc < KC ? g->K - pc : KC;
            for (int64_t jr = 0; jr < nb; jr += NR)
                pack_b_f32(g, pc, kb, jc + jr, nb - jr < NR ? nb - jr : NR, NR, bp + jr * kb);
            bool loadc = g->accumulate || pc > 0;
            for (int64_t ic = m0; ic < m1; ic += MR) {
                int64_t rows = m1 - ic < MR ? m1 - ic : MR;
                pack_a_f32(g, ic, rows, pc, kb, MR, ap);
                for (int64_t jr = 0; jr < nb; jr += NR)
                    uk(kb, ap, bp + jr * kb, g->c + ic * g->ldc + jc + jr, g->ldc, loadc, rows,
                       nb - jr < NR ? nb - jr : NR);
            }
        }
    }
}

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

/* AMX pays for packing B and for 32-row tiles: below this many rows the
 * fp32 kernels are as fast. */
#define AMX_MIN_M 16
/* Exact mode: parts of the split of A (see kernels.h, matmul_amx.c). */
#define EXACT_PARTS 3
/* Products with at most this many columns (LoRA's rank-r factors) go to the
 * unpacked kernels: packing would pad them to 32-wide blocks and copy the big
 * operand once more. The narrow kernels (yf_narrow_form) take those with a
 * dimension <= YF_NARROW_DIM first; the gemv kernels, a few rows of C at a
 * time, the rest. (Not by row count above YF_GEMV_MAX_M: the kernel, hence
 * the rounding, of a row must not depend on how many rows the product has,
 * e.g. scored rows only in a backward.) */
#define SMALL_DIM 16
/* Threads only for products of at least this many multiply-adds (~0.05 ms on
 * AMX, ~0.3 ms in fp32 on one core): a parallel region costs microseconds on
 * idle cores and up to a scheduler time slice (milliseconds) when the cores
 * are shared with other processes, which made small products 10-30x slower. */
#define MT_MIN_WORK ((double)(1 << 24))
/* The narrow kernels (LoRA's rank-r sides) do a multiply-add per element of
 * the big operand they stream, at ~70 GFLOP/s: 2^21 of them are ~0.05 ms as
 * well. Left on one thread below MT_MIN_WORK, the 384-row step's (6-25M
 * each, ~60 a step) kept the other core waiting for ~4% of the step. */
#define MT_MIN_NARROW ((double)(1 << 21))

static kind choose(const yf_gemm *g, yf_kpath path, int *nparts) {
    /* a rank-r side (matmul_impl.h): fp32 in either precision, as AMX would
     * pad it to 32 and the packed kernels to 12 x 32 blocks */
    if (yf_narrow_form(g) != YF_NARROW_NONE && path >= YF_KPATH_AVX512) return K_NARROW_AVX512;
    if (yf_narrow_form(g) != YF_NARROW_NONE && path >= YF_KPATH_AVX2) return K_NARROW_AVX2;
    bool layout_ok = g->bcs == 1 || (g->brs == 1 && g->acs == 1);
    bool small = g->M <= YF_GEMV_MAX_M || g->N <= SMALL_DIM;
    if (small && layout_ok && path >= YF_KPATH_AVX512) return K_GEMV_AVX512;
    if (small && layout_ok && path >= YF_KPATH_AVX2) return K_GEMV_AVX2;
    if (path >= YF_KPATH_AMX && g->M >= AMX_MIN_M) {
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

static void run_block(const yf_gemm *g, kind k, int nparts, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    switch (k) {
    case K_AMX: yf_gemm_amx(g, m0, m1, n0, n1, nparts); break;
    case K_AVX512: yf_gemm_packed(g, m0, m1, n0, n1, YF_AVX512_MR, YF_AVX512_NR, yf_ukernel_avx512); break;
    case K_AVX2: yf_gemm_packed(g, m0, m1, n0, n1, YF_AVX2_MR, YF_AVX2_NR, yf_ukernel_avx2); break;
    case K_NARROW_AVX512: yf_narrow_avx512(g, m0, m1, n0, n1); break;
    case K_NARROW_AVX2: yf_narrow_avx2(g, m0, m1, n0, n1); break;
    case K_GEMV_AVX512:
    case K_GEMV_AVX2:
        int64_t step = YF_GEMV_MAX_M;
        for (int64_t m = m0; m < m1; m += step) {
            int64_t me = m1 - m < step ? m1 : m + step;
            if (k == K_GEMV_AVX512)
                yf_gemv_avx512(g, m, me, n0, n1);
            else
                yf_gemv_avx2(g, m, me, n0, n1);
        }
        break;
    default: gemm_scalar(g, m0, m1, n0, n1); break;
    }
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

typedef struct split_job {
    const yf_gemm *g;
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
        run_block(j->g, j->k, j->nparts, 0, j->g->M, lo, hi);
    else
        run_block(j->g, j->k, j->nparts, lo, hi, 0, j->g->N);
}

/* ---- YF_KPROF=1: time per product shape, printed at exit ------------- */

typedef struct kprof_row {
    int64_t M, N, K;
    char op;
    int64_t calls;
    double s;
} kprof_row;
static kprof_row g_kprof[256];
static int g_nkprof = -1; /* -1: not yet read YF_KPROF; -2: off */
static pthread_mutex_t g_kprof_mu = PTHREAD_MUTEX_INITIALIZER;

static void kprof_print(void) {
    double tot = 0;
    for (int i = 0; i < g_nkprof; i++) tot += g_kprof[i].s;
    fprintf(stderr, "YF_KPROF: %d product shapes, %.3f s in all\n   op        M        N        K  calls    total ms  GFLOP/s\n",
            g_nkprof, tot);
    for (int i = 0; i < g_nkprof; i++) {
        const kprof_row *r = &g_kprof[i];
        fprintf(stderr, "   %c %8lld %8lld %8lld %6lld %11.1f %8.0f\n", r->op, (long long)r->M, (long long)r->N,
                (long long)r->K, (long long)r->calls, r->s * 1e3, 2.0 * r->M * r->N * r->K * r->calls / r->s / 1e9);
    }
}

static double kprof_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static bool kprof_on(void) {
    if (g_nkprof == -1) {
        const char *e = getenv("YF_KPROF");
        g_nkprof = e && *e && strcmp(e, "0") != 0 ? 0 : -2;
        if (g_nkprof == 0) atexit(kprof_print);
    }
    return g_nkprof >= 0 && !yf_par_in_job();
}

static void kprof_add(char op, const yf_gemm *g, double s) {
    pthread_mutex_lock(&g_kprof_mu);
    int i = 0;
    while (i < g_nkprof && !(g_kprof[i].op == op && g_kprof[i].M == g->M && g_kprof[i].N == g->N && g_kprof[i].K == g->K)) i++;
    if (i < 256) {
        if (i == g_nkprof) g_kprof[g_nkprof++] = (kprof_row){g->M, g->N, g->K, op, 0, 0};
        g_kprof[i].calls++;
        g_kprof[i].s += s;
    }
    pthread_mutex_unlock(&g_kprof_mu);
}

static void run_inner(const yf_gemm *g);

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
static void run_shared_a(const yf_gemm *g, int nparts, bool split_n, int64_t chunk, int64_t len, int64_t pieces) {
    int64_t KC = yf_amx_kc(g->K), npanels = (g->M + 31) / 32, nks_all = (g->K + 31) / 32;
    int64_t pstride = (KC / 32) * nparts * 1024; /* bf16 elements per panel */
    uint16_t *ap = g->apk ? NULL : yf_scratch(4, (size_t)(npanels * pstride) * sizeof(uint16_t));
    for (int64_t pc = 0; pc < g->K; pc += KC) {
        int64_t kb = g->K - pc < KC ? g->K - pc : KC;
        yf_gemm gk = *g; /* this K block: a product of its own, accumulating after the first */
        gk.a = g->a ? g->a + pc * g->acs : NULL;
        gk.K = kb;
        gk.accumulate = g->accumulate || pc > 0;
        if (pc + kb < g->K) gk.lr_l = gk.lr_r = gk.pro_l = NULL; /* the low-rank terms once C is complete */
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
        split_job j = {&gk, K_AMX, nparts, split_n, chunk, len};
        if (pieces <= 1)
            split_piece(&j, 0);
        else
            yf_par_for(pieces, split_piece, &j);
    }
}

static void run_op(char op, const yf_gemm *g) {
    if (!kprof_on()) {
        run_inner(g);
        return;
    }
    double t0 = kprof_now();
    run_inner(g);
    kprof_add(op, g, kprof_now() - t0);
}

static void run_inner(const yf_gemm *g) {
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
    bool few = (k == K_GEMV_AVX2 || k == K_GEMV_AVX512) && g->M <= YF_GEMV_MAX_M;
    double b_read = (double)g->N * (double)g->K * (g->bt == YF_BF16 ? 2 : 4);
    bool narrow = k == K_NARROW_AVX2 || k == K_NARROW_AVX512;
    double min_work = narrow ? MT_MIN_NARROW : MT_MIN_WORK;
    int nt = work < min_work && !(few && b_read >= (double)(1 << 20)) ? 1 : yf_par_threads();
    YF_CHECK(!g->apk || (k == K_AMX && nparts == 1 && g->bpk));
    if (nt <= 1 && g->apk) { /* K block by K block, as below */
        run_shared_a(g, 1, true, g->N, g->N, 1);
        return;
    }
    if (nt <= 1) {
        run_block(g, k, nparts, 0, g->M, 0, g->N);
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
        run_shared_a(g, nparts, split_n, chunk, len, pieces);
        return;
    }
    split_job j = {g, k, nparts, split_n, chunk, len};
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

/* ---- pre-packed weights ------------------------------------------------- */

struct yf_wpack {
    const void *w;
    int64_t N, K; /* W's shape */
    yf_dtype wt;
    yf_pack_kind kind;
    uint16_t *tiles;
    size_t bytes;
    bool borrowed; /* tiles: the caller's (yf_wpack_f32) */
};

/* The B operand of the product a pack is for (no A or C). */
static yf_gemm weight_gemm(const void *w, yf_dtype wt, int64_t N, int64_t K, yf_pack_kind kind) {
    if (kind == YF_PACK_XWT) return (yf_gemm){.b = w, .bt = wt, .brs = 1, .bcs = K, .N = N, .K = K};
    return (yf_gemm){.b = w, .bt = wt, .brs = K, .bcs = 1, .N = K, .K = N};
}

/* Packs above this many rows gain little: packing W per call is then spread
 * over enough rows (the 24-layer B=6 T=384 step has 2304). */
#define PACK_MAX_M 1536

bool yf_wpack_pays(int64_t M) {
    return yf_kernels_path() == YF_KPATH_AMX && M >= AMX_MIN_M && M <= PACK_MAX_M;
}

typedef struct pack_job {
    const yf_gemm *g;
    int64_t pairs_per_piece, npairs, nks;
    uint16_t *tiles;
    const uint16_t *release_rows; /* XWT: W, whose rows 32 j0.. a piece releases once packed; or NULL */
} pack_job;

static void pack_piece(void *ctx, int64_t i) {
    const pack_job *j = ctx;
    int64_t j0 = i * j->pairs_per_piece, j1 = j0 + j->pairs_per_piece < j->npairs ? j0 + j->pairs_per_piece : j->npairs;
    if (j0 >= j1) return;
    yf_amx_pack_b(j->g, j0, j1, j->tiles + j0 * j->nks * 1024);
    if (j->release_rows) { /* rows 32 j0 .. 32 j1 of W (K bf16 each); pages shared with a neighbour stay */
        int64_t r1 = 32 * j1 < j->g->N ? 32 * j1 : j->g->N;
        yf_release_resident(j->release_rows + 32 * j0 * j->g->K, (size_t)((r1 - 32 * j0) * j->g->K) * 2);
    }
}

yf_wpack *yf_wpack_new(const void *w, yf_dtype wt, int64_t N, int64_t K, yf_pack_kind kind, bool release_w) {
    if (wt != YF_BF16) {
        yf_errorf("kernels: only bf16 weights are pre-packed");
        return NULL;
    }
    if (yf_kernels_path() != YF_KPATH_AMX) {
        yf_errorf("kernels: weights are pre-packed only for the AMX path");
        return NULL;
    }
    yf_gemm g = weight_gemm(w, wt, N, K, kind);
    int64_t npairs = (g.N + 31) / 32, nks = (g.K + 31) / 32;
    size_t bytes = (size_t)npairs * (size_t)nks * 1024 * sizeof(uint16_t);
    yf_wpack *p = calloc(1, sizeof *p);
    /* 2 MiB pages where the kernel allows them (transparent huge pages in
     * "madvise" mode): a 512th of the page faults when packing and of the TLB
     * misses when streaming the tiles */
    size_t huge = (size_t)2 << 20, alloc = (bytes + huge - 1) / huge * huge;
    uint16_t *tiles = aligned_alloc(huge, alloc);
#ifdef MADV_HUGEPAGE
    if (tiles) (void)madvise(tiles, alloc, MADV_HUGEPAGE); /* advice: without it, 4 KiB pages */
#endif
    if (!p || !tiles) {
        free(p);
        free(tiles);
        yf_errorf("kernels: out of memory packing a %lld x %lld weight (%.0f MiB)", (long long)N, (long long)K,
                  bytes / 1048576.0);
        return NULL;
    }
    *p = (yf_wpack){.w = w, .N = N, .K = K, .wt = wt, .kind = kind, .tiles = tiles, .bytes = bytes};
    /* XWT packs W's rows in order: with release_w, many pieces, each giving
     * back its rows, so W's resident part shrinks as the pack grows */
    bool by_rows = release_w && kind == YF_PACK_XWT;
    int64_t maxp = by_rows ? 1024 : 64, pieces = npairs < maxp ? npairs : maxp;
    pack_job j = {&g, (npairs + pieces - 1) / pieces, npairs, nks, tiles, by_rows ? w : NULL};
    yf_par_for(pieces, pack_piece, &j);
    if (release_w) yf_release_resident(w, (size_t)(N * K) * 2);
    return p;
}

size_t yf_wpack_bytes(const yf_wpack *p) { return p ? p->bytes : 0; }

void yf_wpack_free(yf_wpack *p) {
    if (!p) return;
    if (!p->borrowed) free(p->tiles);
    free(p);
}

typedef struct rows_job {
    const yf_wpack *p;
    const int64_t *ids;
    int64_t n;
    float *out;
} rows_job;

enum { ROWS_PER_PIECE = 32 };

/* Rows [32 i, 32 i + 32) of a yf_wpack_rows call. */
static void rows_piece(void *ctx, int64_t piece) {
    const rows_job *j = ctx;
    const yf_wpack *p = j->p;
    /* dy·W's layout (pack_b_block_rows): W[v, d] is in column pair d / 32,
     * step v / 32, tile (d % 32) / 16, tile row (v % 32) / 2, at
     * 2 (d % 16) + v % 2: a row of W is 64-byte tile rows, half of each */
    int64_t K = p->K, nks = (p->N + 31) / 32;
    int64_t i0 = piece * ROWS_PER_PIECE, i1 = i0 + ROWS_PER_PIECE < j->n ? i0 + ROWS_PER_PIECE : j->n;
    for (int64_t i = i0; i < i1; i++) {
        /* a row's 64-byte pieces are a pair's stride apart (8.6 MB for the
         * LM head): ask for the next row's lines while this one is copied */
        if (i + 1 < i1) {
            int64_t v = j->ids[i + 1];
            const uint16_t *t = p->tiles + (v / 32) * 1024 + ((v % 32) / 2) * 32;
            for (int64_t d = 0; d < K; d += 16) __builtin_prefetch(t + (d / 32) * nks * 1024 + ((d % 32) / 16) * 512);
        }
        int64_t v = j->ids[i];
        const uint16_t *t = p->tiles + (v / 32) * 1024 + ((v % 32) / 2) * 32 + v % 2;
        float *o = j->out + i * K;
        for (int64_t d0 = 0; d0 < K; d0 += 16) { /* one tile row: 16 columns, this row's every other value */
            const uint16_t *src = t + (d0 / 32) * nks * 1024 + ((d0 % 32) / 16) * 512;
            for (int64_t c = 0; c < 16 && d0 + c < K; c++) {
                uint32_t b = (uint32_t)src[2 * c] << 16;
                memcpy(&o[d0 + c], &b, sizeof b);
            }
        }
    }
}

bool yf_wpack_rows(const yf_wpack *p, const int64_t *ids, int64_t n, float *out) {
    if (!p || p->kind != YF_PACK_XW || p->wt != YF_BF16) return false;
    for (int64_t i = 0; i < n; i++) YF_CHECK(ids[i] >= 0 && ids[i] < p->N);
    rows_job j = {p, ids, n, out};
    yf_par_for((n + ROWS_PER_PIECE - 1) / ROWS_PER_PIECE, rows_piece, &j);
    return true;
}

int64_t yf_wpack_elems(int64_t N, int64_t K) { return ((N + 31) / 32) * ((K + 31) / 32) * 1024; }

yf_wpack *yf_wpack_f32(const float *w, int64_t N, int64_t K, yf_pack_kind kind, uint16_t *tiles) {
    if (yf_kernels_path() != YF_KPATH_AMX || g_prec != YF_PREC_BF16 || N <= 0 || K <= 0) return NULL;
    yf_gemm g = weight_gemm(w, YF_F32, N, K, kind);
    yf_amx_pack_b(&g, 0, (g.N + 31) / 32, tiles); /* the rounding the products' own packing does */
    yf_wpack *p = yf_malloc(sizeof *p);
    *p = (yf_wpack){.w = w, .N = N, .K = K, .wt = YF_F32, .kind = kind, .tiles = tiles,
                    .bytes = (size_t)yf_wpack_elems(N, K) * sizeof(uint16_t), .borrowed = true};
    return p;
}

static const uint16_t *pack_tiles(const yf_wpack *pk, const void *w, int64_t N, int64_t K, yf_pack_kind kind) {
    if (!pk) return NULL;
    YF_CHECK(pk->w == w && pk->N == N && pk->K == K && pk->kind == kind);
    return pk->tiles;
}

void yf_matmul_xwt_pk(float *y, const float *x, const void *w, yf_dtype wt, const yf_wpack *pk, int64_t M,
                      int64_t N, int64_t K, bool accumulate) {
    YF_CHECK(wt == YF_F32 || wt == YF_BF16);
    if (yf_kernels_path() == YF_KPATH_REF) {
        yf_matmul_xwt_ref(y, x, w, wt, M, N, K, accumulate);
        return;
    }
    /* A = x [M,K]; B(k,n) = W[n,k]; C = y [M,N] */
    yf_gemm g = {.c = y, .ldc = N, .a = x, .ars = K, .acs = 1, .b = w, .bt = wt, .brs = 1, .bcs = K,
                 .M = M, .N = N, .K = K, .accumulate = accumulate,
                 .bpk = pack_tiles(pk, w, N, K, YF_PACK_XWT)};
    run_op('f', &g);
}

static int64_t g_epi_calls; /* calls that ran their extra term inside the product (tests) */

/* Whether g can take the rank-r product term as its kernels' epilogue: g on
 * AMX, and term (the rank-r product as it would run on its own) on the
 * narrow kernels, whose arithmetic the epilogue repeats bit for bit. */
static bool term_inside(const yf_gemm *g, const yf_gemm *term) {
    int nparts = 1;
    if (yf_kernels_path() == YF_KPATH_REF || choose(g, yf_kernels_path(), &nparts) != K_AMX) return false;
    kind k = choose(term, yf_kernels_path(), &nparts);
    return k == K_NARROW_AVX512 || k == K_NARROW_AVX2;
}

void yf_matmul_xwt_pk_lr(float *y, const float *x, const void *w, yf_dtype wt, const yf_wpack *pk, int64_t M,
                         int64_t N, int64_t K, bool accumulate, const float *l, const float *r, int64_t rank) {
    YF_CHECK(wt == YF_F32 || wt == YF_BF16);
    YF_CHECK(rank >= 1 && rank <= YF_NARROW_DIM);
    yf_gemm g = {.c = y, .ldc = N, .a = x, .ars = K, .acs = 1, .b = w, .bt = wt, .brs = 1, .bcs = K,
                 .M = M, .N = N, .K = K, .accumulate = accumulate,
                 .bpk = pack_tiles(pk, w, N, K, YF_PACK_XWT), .lr_l = l, .lr_r = r, .lr_k = rank};
    /* the term as yf_matmul_xwt(y, l, r, YF_F32, M, N, rank, true) builds it */
    yf_gemm lr = {.M = M, .N = N, .K = rank, .a = l, .ars = rank, .acs = 1, .b = r, .bt = YF_F32, .brs = 1,
                  .bcs = rank};
    if (!term_inside(&g, &lr)) {
        yf_matmul_xwt_pk(y, x, w, wt, pk, M, N, K, accumulate);
        yf_matmul_xwt(y, l, r, YF_F32, M, N, rank, true);
        return;
    }
    __atomic_add_fetch(&g_epi_calls, 1, __ATOMIC_RELAXED);
    run_op('f', &g);
}

int64_t yf_matmul_epilogue_calls(void) { return __atomic_load_n(&g_epi_calls, __ATOMIC_RELAXED); }

bool yf_matmul_xw_pk_drop(float *dx, const float *dy, const void *w, yf_dtype wt, const yf_wpack *pk, int64_t M,
                          int64_t N, int64_t K, bool accumulate, const float *l, const float *r, int64_t rank,
                          const yf_drop *drop) {
    YF_CHECK(wt == YF_F32 || wt == YF_BF16);
    YF_CHECK(rank >= 1 && rank <= YF_NARROW_DIM);
    yf_gemm g = {.c = dx, .ldc = K, .a = dy, .ars = N, .acs = 1, .b = w, .bt = wt, .brs = K, .bcs = 1,
                 .M = M, .N = K, .K = N, .accumulate = accumulate, .bpk = pack_tiles(pk, w, N, K, YF_PACK_XW),
                 .pro_l = l, .pro_r = r, .pro_k = rank, .pro_drop = *drop};
    /* the term as yf_matmul_xw(t, l, r, YF_F32, M, rank, K, false) builds it;
     * rows of dx a multiple of 16 apart, so the mask's 16-lane groups start
     * where yf_dropout's do */
    yf_gemm lr = {.M = M, .N = K, .K = rank, .a = l, .ars = rank, .acs = 1, .b = r, .bt = YF_F32, .brs = K,
                  .bcs = 1};
    if (!term_inside(&g, &lr) || K % 16 != 0) return false;
    __atomic_add_fetch(&g_epi_calls, 1, __ATOMIC_RELAXED);
    run_op('b', &g);
    return true;
}

void yf_matmul_xw_pk(float *dx, const float *dy, const void *w, yf_dtype wt, const yf_wpack *pk, int64_t M,
                     int64_t N, int64_t K, bool accumulate) {
    YF_CHECK(wt == YF_F32 || wt == YF_BF16);
    if (yf_kernels_path() == YF_KPATH_REF) {
        yf_matmul_xw_ref(dx, dy, w, wt, M, N, K, accumulate);
        return;
    }
    /* A = dy [M,N]; B(j,k) = W[j,k]; C = dx [M,K]; the sum runs over N */
    yf_gemm g = {.c = dx, .ldc = K, .a = dy, .ars = N, .acs = 1, .b = w, .bt = wt, .brs = K, .bcs = 1,
                 .M = M, .N = K, .K = N, .accumulate = accumulate,
                 .bpk = pack_tiles(pk, w, N, K, YF_PACK_XW)};
    run_op('b', &g);
}

/* ---- pre-packed activations and row slices of W ------------------------ */

int64_t yf_apk_panel_elems(int64_t cols) { return 32 * ((cols + 31) / 32 * 32); }

uint16_t *yf_apk_row(uint16_t *apk, int64_t cols, int64_t r, int64_t *stride) {
    *stride = 1024; /* a 32-column step: two 16 x 32 tiles */
    return apk + (r / 32) * yf_apk_panel_elems(cols) + ((r % 32) / 16) * 512 + (r % 16) * 32;
}

void yf_apk_put_row(uint16_t *apk, int64_t cols, int64_t r, const float *row) {
    int64_t stride;
    uint16_t *d = yf_apk_row(apk, cols, r, &stride);
    yf_amx_put_a_row(d, stride, cols, row);
}

static const char *w_at(const void *w, yf_dtype wt, int64_t i) { return (const char *)w + i * (wt == YF_BF16 ? 2 : 4); }

/* x·W[n0:n1]^T: B(k,n) = W[n0+n,k]; a pack's pairs of rows follow each other */
static yf_gemm xwt_rows_gemm(float *y, const float *x, const uint16_t *xpk, const void *w, yf_dtype wt,
                             const yf_wpack *pk, int64_t M, int64_t K, int64_t n0, int64_t n1) {
    return (yf_gemm){.c = y, .ldc = n1 - n0, .a = x, .ars = K, .acs = 1, .b = w_at(w, wt, n0 * K), .bt = wt,
                     .brs = 1, .bcs = K, .M = M, .N = n1 - n0, .K = K,
                     .bpk = pk ? pk->tiles + (n0 / 32) * ((K + 31) / 32) * 1024 : NULL,
                     .apk = xpk, .apk_ld = xpk ? yf_apk_panel_elems(K) : 0};
}

/* dy·W[n0:n1]: B(j,k) = W[n0+j,k]; in a pack, rows n0.. are steps n0/32.. of every pair */
static yf_gemm xw_rows_gemm(float *dx, int64_t ldx, const float *dy, const uint16_t *dypk, const void *w,
                            yf_dtype wt, const yf_wpack *pk, int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1,
                            bool accumulate) {
    return (yf_gemm){.c = dx, .ldc = ldx, .a = dy, .ars = n1 - n0, .acs = 1, .b = w_at(w, wt, n0 * K), .bt = wt,
                     .brs = K, .bcs = 1, .M = M, .N = K, .K = n1 - n0, .accumulate = accumulate,
                     .bpk = pk ? pk->tiles + (n0 / 32) * 1024 : NULL, .bpk_ld = pk ? ((N + 31) / 32) * 1024 : 0,
                     .apk = dypk, .apk_ld = dypk ? yf_apk_panel_elems(n1 - n0) : 0};
}

static bool amx_bf16(const yf_gemm *g) {
    int nparts = 1;
    return g_prec == YF_PREC_BF16 && choose(g, yf_kernels_path(), &nparts) == K_AMX && nparts == 1;
}

bool yf_apk_usable(const yf_wpack *pk, int64_t M, int64_t N, int64_t K) {
    if (!pk || pk->N != N || pk->K != K) return false;
    yf_gemm g = pk->kind == YF_PACK_XWT ? xwt_rows_gemm(NULL, NULL, NULL, pk->w, YF_BF16, pk, M, K, 0, N)
                                        : xw_rows_gemm(NULL, K, NULL, NULL, pk->w, YF_BF16, pk, M, N, K, 0, N, false);
    return amx_bf16(&g);
}

static void check_rows(const yf_wpack *pk, const void *w, yf_dtype wt, int64_t N, int64_t K, int64_t n0, int64_t n1,
                       yf_pack_kind kind, const void *a, const uint16_t *apk) {
    YF_CHECK(0 <= n0 && n0 < n1 && n1 <= N && (a != NULL) != (apk != NULL));
    YF_CHECK(!pk || (pk->w == w && pk->N == N && pk->K == K && pk->kind == kind && n0 % 32 == 0 && wt == pk->wt));
    YF_CHECK(!apk || pk);
}

void yf_matmul_xwt_rows(float *y, const float *x, const uint16_t *xpk, const void *w, yf_dtype wt,
                        const yf_wpack *pk, int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1) {
    check_rows(pk, w, wt, N, K, n0, n1, YF_PACK_XWT, x, xpk);
    if (yf_kernels_path() == YF_KPATH_REF) {
        YF_CHECK(x);
        yf_matmul_xwt_ref(y, x, w_at(w, wt, n0 * K), wt, M, n1 - n0, K, false);
        return;
    }
    yf_gemm g = xwt_rows_gemm(y, x, xpk, w, wt, pk, M, K, n0, n1);
    YF_CHECK(!xpk || amx_bf16(&g));
    run_op('f', &g);
}

bool yf_blocks_usable(const yf_wpack *pk, int64_t M, int64_t N, int64_t K) {
    return pk && pk->kind == YF_PACK_XWT && yf_apk_usable(pk, M, N, K) && K <= yf_amx_kc(K);
}

void yf_matmul_xwt_rows_blocks(const uint16_t *xpk, const yf_wpack *pk, int64_t M, int64_t N, int64_t K, int64_t n0,
                               int64_t n1, yf_block_fn fn, void *ctx) {
    check_rows(pk, pk ? pk->w : NULL, YF_BF16, N, K, n0, n1, YF_PACK_XWT, NULL, xpk);
    YF_CHECK(yf_blocks_usable(pk, M, N, K));
    yf_gemm g = xwt_rows_gemm(NULL, NULL, xpk, pk->w, YF_BF16, pk, M, K, n0, n1);
    g.epi = fn;
    g.epi_ctx = ctx;
    run_shared_a(&g, 1, true, g.N, g.N, 1); /* one K block, this thread */
}

void yf_matmul_xw_rows(float *dx, int64_t ldx, const float *dy, const uint16_t *dypk, const void *w, yf_dtype wt,
                       const yf_wpack *pk, int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1, bool accumulate) {
    check_rows(pk, w, wt, N, K, n0, n1, YF_PACK_XW, dy, dypk);
    YF_CHECK(ldx >= K);
    if (yf_kernels_path() == YF_KPATH_REF) {
        YF_CHECK(dy);
        int64_t rows = ldx == K ? M : 1; /* the reference takes contiguous rows: rows ldx apart one at a time */
        for (int64_t m = 0; m < M; m += rows)
            yf_matmul_xw_ref(dx + m * ldx, dy + m * (n1 - n0), w_at(w, wt, n0 * K), wt, rows, n1 - n0, K, accumulate);
        return;
    }
    yf_gemm g = xw_rows_gemm(dx, ldx, dy, dypk, w, wt, pk, M, N, K, n0, n1, accumulate);
    YF_CHECK(!dypk || amx_bf16(&g));
    run_op('b', &g);
}

void yf_matmul_dw(float *dw, const float *dy, const float *x, int64_t M, int64_t N, int64_t K) {
    if (yf_kernels_path() == YF_KPATH_REF) {
        yf_matmul_dw_ref(dw, dy, x, M, N, K);
        return;
    }
    /* A(n,i) = dy[i,n]; B(i,k) = x[i,k]; C = dW [N,K]; the sum runs over M */
    yf_gemm g = {.c = dw, .ldc = K, .a = dy, .ars = 1, .acs = N, .b = x, .bt = YF_F32, .brs = K, .bcs = 1,
                 .M = N, .N = K, .K = M, .accumulate = true};
    run_op('w', &g);
}
