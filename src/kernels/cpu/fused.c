/* fused: the products of fused.h. Each checks that its fused route is
 * available (the product on AMX or on the AVX-512 / AVX2 packed driver; the
 * term on the narrow kernels, whose arithmetic the epilogues repeat bit for
 * bit) and otherwise runs the plain steps it stands for. */
#include "kernels/cpu/fused.h"
#include "kernels/cpu/matmul_impl.h"

static int64_t g_epi_calls; /* calls that ran their extra term inside the product (tests) */

/* Whether g can take the rank-r product term as its kernels' epilogue: g on
 * AMX or the FMA packed driver, and term (the rank-r product as it would run
 * on its own) on the narrow kernels, whose arithmetic the epilogue repeats
 * bit for bit. */
static bool term_inside(const yf_gemm *g, const yf_gemm *term) {
    int nparts = 1;
    return (yf_gemm_on_amx(g, &nparts) || yf_gemm_on_fma(g)) && yf_gemm_on_narrow(term);
}

void yf_matmul_xwt_pk_lr(float *y, const float *x, const void *w, yf_dtype wt, const yf_wpack *pk, int64_t M,
                         int64_t N, int64_t K, bool accumulate, const float *l, const float *r, int64_t rank) {
    YF_CHECK(wt == YF_F32 || wt == YF_BF16 || wt == YF_QMAT);
    YF_CHECK(rank >= 1 && rank <= YF_NARROW_DIM);
    yf_gemm g = {.c = y, .ldc = N, .a = x, .ars = K, .acs = 1, .b = w, .bt = wt, .brs = 1, .bcs = K,
                 .M = M, .N = N, .K = K, .accumulate = accumulate};
    yf_gemm_use_pack(&g, pk, w, N, K, YF_PACK_XWT);
    yf_gemm_epi e = {.lr_l = l, .lr_r = r, .lr_k = rank};
    /* the term as yf_matmul_xwt(y, l, r, YF_F32, M, N, rank, true) builds it */
    yf_gemm lr = {.M = M, .N = N, .K = rank, .a = l, .ars = rank, .acs = 1, .b = r, .bt = YF_F32, .brs = 1,
                  .bcs = rank};
    if (wt == YF_QMAT || !term_inside(&g, &lr)) { /* a quantized W: the plain steps */
        yf_matmul_xwt_pk(y, x, w, wt, pk, M, N, K, accumulate);
        yf_matmul_xwt(y, l, r, YF_F32, M, N, rank, true);
        return;
    }
    __atomic_add_fetch(&g_epi_calls, 1, __ATOMIC_RELAXED);
    yf_gemm_run('f', &g, &e);
}

int64_t yf_matmul_epilogue_calls(void) { return __atomic_load_n(&g_epi_calls, __ATOMIC_RELAXED); }

bool yf_matmul_xw_pk_drop(float *dx, const float *dy, const void *w, yf_dtype wt, const yf_wpack *pk, int64_t M,
                          int64_t N, int64_t K, bool accumulate, const float *l, const float *r, int64_t rank,
                          const yf_drop *drop) {
    YF_CHECK(wt == YF_F32 || wt == YF_BF16 || wt == YF_QMAT);
    YF_CHECK(rank >= 1 && rank <= YF_NARROW_DIM);
    yf_gemm g = {.c = dx, .ldc = K, .a = dy, .ars = N, .acs = 1, .b = w, .bt = wt, .brs = K, .bcs = 1,
                 .M = M, .N = K, .K = N, .accumulate = accumulate};
    yf_gemm_use_pack(&g, pk, w, N, K, YF_PACK_XW);
    yf_gemm_epi e = {.pro_l = l, .pro_r = r, .pro_k = rank, .pro_drop = *drop};
    /* the term as yf_matmul_xw(t, l, r, YF_F32, M, rank, K, false) builds it;
     * rows of dx a multiple of 16 apart, so the mask's 16-lane groups start
     * where yf_dropout's do */
    yf_gemm lr = {.M = M, .N = K, .K = rank, .a = l, .ars = rank, .acs = 1, .b = r, .bt = YF_F32, .brs = K,
                  .bcs = 1};
    if (wt == YF_QMAT || !term_inside(&g, &lr) || K % 16 != 0) return false;
    __atomic_add_fetch(&g_epi_calls, 1, __ATOMIC_RELAXED);
    yf_gemm_run('b', &g, &e);
    return true;
}

bool yf_blocks_usable(const yf_wpack *pk, int64_t M, int64_t N, int64_t K) {
    return pk && pk->kind == YF_PACK_XWT && yf_apk_usable(pk, M, N, K) && K <= yf_amx_kc(K);
}

void yf_matmul_xwt_rows_blocks(const uint16_t *xpk, const yf_wpack *pk, int64_t M, int64_t N, int64_t K, int64_t n0,
                               int64_t n1, yf_block_fn fn, void *ctx) {
    yf_check_rows(pk, pk ? pk->w : NULL, YF_BF16, N, K, n0, n1, YF_PACK_XWT, NULL, xpk);
    YF_CHECK(yf_blocks_usable(pk, M, N, K));
    yf_gemm g = yf_gemm_xwt_rows(NULL, NULL, xpk, pk->w, YF_BF16, pk, M, K, n0, n1);
    yf_gemm_epi e = {.blocks = fn, .blocks_ctx = ctx};
    yf_gemm_run_here(&g, &e); /* one K block, this thread */
}

