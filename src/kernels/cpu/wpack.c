/* wpack: operands handed to the products already packed: pre-packed
 * weights (a frozen W packed once for all of its products: AMX tiles of a
 * bf16 W, or the FMA kernels' panels of a bf16 or f32 W), packed
 * activations written row by row by their producer (AMX), and the products
 * over row slices of a packed W. */
#include "kernels/cpu/matmul_impl.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/pool.h"

/* The B operand of the product a pack is for (no A or C). */
static yf_gemm weight_gemm(const void *w, yf_dtype wt, int64_t N, int64_t K, yf_pack_kind kind) {
    if (kind == YF_PACK_XWT) return (yf_gemm){.b = w, .bt = wt, .brs = 1, .bcs = K, .N = N, .K = K};
    return (yf_gemm){.b = w, .bt = wt, .brs = K, .bcs = 1, .N = K, .K = N};
}

/* Packs above this many rows gain little: packing W per call is then spread
 * over enough rows (the 24-layer B=6 T=384 step has 2304). */
#define PACK_MAX_M 1536

/* The width of the FMA kernels' panels on the path in use, or 0 (AMX,
 * scalar, ref). */
static int fma_nr(void) {
    yf_kpath p = yf_kernels_path();
    return p == YF_KPATH_AVX512 ? YF_AVX512_NR : p == YF_KPATH_AVX2 ? YF_AVX2_NR : 0;
}

/* k a word of those panels holds: 2 for the bf16-pair kernel (bf16 mode
 * with the bf16 dot kernel on), else 1 */
static int fma_kpair(void) { return fma_nr() > 0 ? yf_fma_isa_now(yf_kernels_path())->kpair : 1; }

/* whether pk's panels are the ones the products on this path read */
static bool panels_fit(const yf_wpack *pk) { return pk->panels && pk->nr == fma_nr() && pk->kpair == fma_kpair(); }

bool yf_wpack_pays(int64_t M, yf_dtype wt) {
    if (M > PACK_MAX_M) return false;
    if (yf_kernels_path() == YF_KPATH_AMX) return wt == YF_BF16 && M >= YF_AMX_MIN_M;
    /* the few-row products read W itself; a quantized W is never packed;
     * the bf16-pair kernel packs only bf16 weights (an f32 one's rows could
     * not be read back from bf16 pairs) */
    if (fma_kpair() == 2 && wt != YF_BF16) return false;
    return fma_nr() > 0 && (wt == YF_BF16 || wt == YF_F32) && M > yf_gemv_rows();
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

/* A pack of W [N, K] with room for bytes of packed data at *data, in 2 MiB
 * pages where the kernel allows them (transparent huge pages in "madvise"
 * mode): a 512th of the page faults when packing and of the TLB misses when
 * streaming the pack. NULL (with yf_errorf) when memory is short. */
static yf_wpack *pack_alloc(const void *w, yf_dtype wt, int64_t N, int64_t K, yf_pack_kind kind, size_t bytes,
                            void **data) {
    size_t huge = (size_t)2 << 20, alloc = (bytes + huge - 1) / huge * huge;
    yf_wpack *p = calloc(1, sizeof *p);
    *data = aligned_alloc(huge, alloc);
    if (!p || !*data) {
        free(p);
        free(*data);
        yf_errorf("kernels: out of memory packing a %lld x %lld weight (%.0f MiB)", (long long)N, (long long)K,
                  bytes / 1048576.0);
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(*data, alloc, MADV_HUGEPAGE); /* advice: without it, 4 KiB pages */
#endif
    *p = (yf_wpack){.w = w, .N = N, .K = K, .wt = wt, .kind = kind, .bytes = bytes};
    return p;
}

/* ---- the FMA kernels' panels ----------------------------------------------
 * Panel p holds columns p nr .. of the product's B for all of its K, row k
 * at k nr, in W's dtype (the kernels widen a bf16 panel as they go): what
 * gemm_fma.c would otherwise pack per call (x.W^T: a transpose of W). For
 * the bf16-pair kernel (kpair 2, bf16 W): ceil(K / 2) rows of nr words, the
 * pair k = 2i, 2i + 1 in row i, as that kernel's own packing writes them. */

typedef struct panel_job {
    const yf_gemm *g;
    int nr;
    const yf_fma_isa *isa; /* the bf16-pair kernel's, or NULL (panels in W's dtype) */
    int64_t per; /* panels a piece */
    char *dst;
    const char *release; /* XWT: W, whose rows a piece releases once packed; or NULL */
} panel_job;

static void panel_piece(void *ctx, int64_t i) {
    const panel_job *j = ctx;
    const yf_gemm *g = j->g;
    int64_t nr = j->nr, np = (g->N + nr - 1) / nr, p0 = i * j->per, p1 = p0 + j->per < np ? p0 + j->per : np;
    size_t esz = g->bt == YF_BF16 ? 2 : 4;
    for (int64_t p = p0; p < p1; p++) {
        int64_t nn = g->N - p * nr < nr ? g->N - p * nr : nr;
        if (j->isa) { /* bf16 pairs: the kernel's own packing, all of K at once */
            float *d = (float *)j->dst + p * ((g->K + 1) / 2) * nr;
            if (g->bcs == 1)
                j->isa->pack_b_rows(g, 0, g->K, p * nr, nn, d);
            else
                j->isa->pack_b_cols(g, 0, g->K, p * nr, nn, d);
        } else {
            char *d = j->dst + (size_t)(p * g->K * nr) * esz;
            if (nn < nr) memset(d, 0, (size_t)(g->K * nr) * esz);
            if (g->bcs == 1) { /* dy.W: rows of W, nn values each */
                for (int64_t k = 0; k < g->K; k++)
                    memcpy(d + (size_t)(k * nr) * esz, (const char *)g->b + (size_t)(k * g->brs + p * nr) * esz,
                           (size_t)nn * esz);
            } else {
                /* x.W^T: W's rows are the panel's columns; 64 k at a time, so
                 * the nr rows' runs and the panel's rows they go to stay in L1 */
                for (int64_t k0 = 0; k0 < g->K; k0 += 64) {
                    int64_t kb = g->K - k0 < 64 ? g->K - k0 : 64;
                    for (int64_t c = 0; c < nn; c++) {
                        const char *s = (const char *)g->b + (size_t)((p * nr + c) * g->bcs + k0) * esz;
                        if (esz == 2)
                            for (int64_t k = 0; k < kb; k++)
                                ((uint16_t *)d)[(k0 + k) * nr + c] = ((const uint16_t *)s)[k];
                        else
                            for (int64_t k = 0; k < kb; k++)
                                ((float *)d)[(k0 + k) * nr + c] = ((const float *)s)[k];
                    }
                }
            }
        }
        if (j->release) /* XWT: W's rows of this panel; pages shared with a neighbour stay */
            yf_release_resident(j->release + (size_t)(p * nr * g->K) * esz, (size_t)(nn * g->K) * esz);
    }
}

static yf_wpack *wpack_panels(const void *w, yf_dtype wt, int64_t N, int64_t K, yf_pack_kind kind, bool release_w) {
    yf_gemm g = weight_gemm(w, wt, N, K, kind);
    int nr = fma_nr(), kp = fma_kpair();
    if (kp == 2 && wt != YF_BF16) {
        yf_errorf("kernels: the bf16-pair kernel pre-packs only bf16 weights");
        return NULL;
    }
    int64_t np = (g.N + nr - 1) / nr;
    size_t esz = wt == YF_BF16 ? 2 : 4;
    size_t bytes = kp == 2 ? (size_t)np * (size_t)((g.K + 1) / 2) * (size_t)nr * 4
                           : (size_t)np * (size_t)g.K * (size_t)nr * esz;
    void *panels;
    yf_wpack *p = pack_alloc(w, wt, N, K, kind, bytes, &panels);
    if (!p) return NULL;
    p->panels = panels, p->nr = nr, p->kpair = kp;
    bool by_rows = release_w && kind == YF_PACK_XWT;
    int64_t pieces = np < 256 ? np : 256;
    panel_job j = {&g, nr, kp == 2 ? yf_fma_isa_now(yf_kernels_path()) : NULL, (np + pieces - 1) / pieces, panels,
                   by_rows ? w : NULL};
    yf_par_for(pieces, panel_piece, &j);
    if (release_w) yf_release_resident(w, (size_t)(N * K) * esz);
    return p;
}

/* ---- AMX tiles ------------------------------------------------------------ */

yf_wpack *yf_wpack_new(const void *w, yf_dtype wt, int64_t N, int64_t K, yf_pack_kind kind, bool release_w) {
    YF_CHECK(wt == YF_BF16 || wt == YF_F32);
    if (fma_nr() > 0) return wpack_panels(w, wt, N, K, kind, release_w);
    if (yf_kernels_path() != YF_KPATH_AMX) {
        yf_errorf("kernels: weights are pre-packed only for the AMX, AVX-512 and AVX2 paths");
        return NULL;
    }
    if (wt != YF_BF16) {
        yf_errorf("kernels: on the AMX path only bf16 weights are pre-packed");
        return NULL;
    }
    yf_gemm g = weight_gemm(w, wt, N, K, kind);
    int64_t npairs = (g.N + 31) / 32, nks = (g.K + 31) / 32;
    size_t bytes = (size_t)npairs * (size_t)nks * 1024 * sizeof(uint16_t);
    void *data;
    yf_wpack *p = pack_alloc(w, wt, N, K, kind, bytes, &data);
    if (!p) return NULL;
    uint16_t *tiles = p->tiles = data;
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
    free(p->panels);
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

/* The same from FMA panels: W[v, d] is in panel d / nr at v nr + d % nr;
 * in bf16 pairs, at bf16 2 ((v / 2) nr + d % nr) + v % 2. */
static void panel_rows_piece(void *ctx, int64_t piece) {
    const rows_job *j = ctx;
    const yf_wpack *p = j->p;
    int64_t K = p->K, nr = p->nr;
    int64_t i0 = piece * ROWS_PER_PIECE, i1 = i0 + ROWS_PER_PIECE < j->n ? i0 + ROWS_PER_PIECE : j->n;
    for (int64_t i = i0; i < i1; i++) {
        int64_t v = j->ids[i];
        float *o = j->out + i * K;
        if (p->kpair == 2) {
            const uint16_t *pan = p->panels;
            int64_t pstride = 2 * ((p->N + 1) / 2) * nr; /* bf16 a panel */
            for (int64_t d = 0; d < K; d++)
                o[d] = yf_bf16_to_f32(pan[(d / nr) * pstride + 2 * ((v / 2) * nr + d % nr) + v % 2]);
            continue;
        }
        for (int64_t d0 = 0; d0 < K; d0 += nr) {
            int64_t at = (d0 / nr) * p->N * nr + v * nr, nn = K - d0 < nr ? K - d0 : nr;
            if (p->wt == YF_F32)
                memcpy(o + d0, (const float *)p->panels + at, (size_t)nn * sizeof(float));
            else
                for (int64_t c = 0; c < nn; c++) o[d0 + c] = yf_bf16_to_f32(((const uint16_t *)p->panels)[at + c]);
        }
    }
}

bool yf_wpack_rows(const yf_wpack *p, const int64_t *ids, int64_t n, float *out) {
    if (!p || p->kind != YF_PACK_XW || (!p->panels && p->wt != YF_BF16)) return false;
    for (int64_t i = 0; i < n; i++) YF_CHECK(ids[i] >= 0 && ids[i] < p->N);
    rows_job j = {p, ids, n, out};
    yf_par_for((n + ROWS_PER_PIECE - 1) / ROWS_PER_PIECE, p->panels ? panel_rows_piece : rows_piece, &j);
    return true;
}

int64_t yf_wpack_elems(int64_t N, int64_t K) { return ((N + 31) / 32) * ((K + 31) / 32) * 1024; }

yf_wpack *yf_wpack_f32(const float *w, int64_t N, int64_t K, yf_pack_kind kind, uint16_t *tiles) {
    if (yf_kernels_path() != YF_KPATH_AMX || yf_kernels_precision() != YF_PREC_BF16 || N <= 0 || K <= 0) return NULL;
    yf_gemm g = weight_gemm(w, YF_F32, N, K, kind);
    yf_amx_pack_b(&g, 0, (g.N + 31) / 32, tiles); /* the rounding the products' own packing does */
    yf_wpack *p = yf_malloc(sizeof *p);
    *p = (yf_wpack){.w = w, .N = N, .K = K, .wt = YF_F32, .kind = kind, .tiles = tiles,
                    .bytes = (size_t)yf_wpack_elems(N, K) * sizeof(uint16_t), .borrowed = true};
    return p;
}

void yf_gemm_use_pack(yf_gemm *g, const yf_wpack *pk, const void *w, int64_t N, int64_t K, yf_pack_kind kind) {
    if (!pk) return;
    YF_CHECK(pk->w == w && pk->N == N && pk->K == K && pk->kind == kind);
    g->bpk = pk->tiles;
    if (panels_fit(pk)) /* made for this path (tests switch paths) */
        g->bpf = pk->panels, g->bpf_ld = (g->K + pk->kpair - 1) / pk->kpair * pk->nr;
}

/* a row slice's view of a pack's panels: x.W[n0:n1]^T starts at panel
 * n0 / nr; dy.W[n0:n1] at row n0 of every panel */
static void use_panels(yf_gemm *g, const yf_wpack *pk, int64_t n0) {
    if (!pk || !panels_fit(pk)) return;
    int kp = pk->kpair;
    if (pk->kind == YF_PACK_XW && n0 % kp != 0) return; /* a slice starting inside a pair: packed per call */
    size_t esz = yf_panel_esz(kp, pk->wt);
    int64_t kw = (pk->K + kp - 1) / kp, nw = (pk->N + kp - 1) / kp;
    if (pk->kind == YF_PACK_XWT)
        g->bpf = (const char *)pk->panels + (size_t)(n0 / pk->nr * kw * pk->nr) * esz, g->bpf_ld = kw * pk->nr;
    else
        g->bpf = (const char *)pk->panels + (size_t)(n0 / kp * pk->nr) * esz, g->bpf_ld = nw * pk->nr;
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
yf_gemm yf_gemm_xwt_rows(float *y, const float *x, const uint16_t *xpk, const void *w, yf_dtype wt,
                         const yf_wpack *pk, int64_t M, int64_t K, int64_t n0, int64_t n1) {
    yf_gemm g = {.c = y, .ldc = n1 - n0, .a = x, .ars = K, .acs = 1, .b = w_at(w, wt, n0 * K), .bt = wt,
                 .brs = 1, .bcs = K, .M = M, .N = n1 - n0, .K = K,
                 .bpk = pk && pk->tiles ? pk->tiles + (n0 / 32) * ((K + 31) / 32) * 1024 : NULL,
                 .apk = xpk, .apk_ld = xpk ? yf_apk_panel_elems(K) : 0};
    use_panels(&g, pk, n0);
    return g;
}

/* dy·W[n0:n1]: B(j,k) = W[n0+j,k]; in a pack, rows n0.. are steps n0/32.. of every pair */
static yf_gemm xw_rows_gemm(float *dx, int64_t ldx, const float *dy, const uint16_t *dypk, const void *w,
                            yf_dtype wt, const yf_wpack *pk, int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1,
                            bool accumulate) {
    yf_gemm g = {.c = dx, .ldc = ldx, .a = dy, .ars = n1 - n0, .acs = 1, .b = w_at(w, wt, n0 * K), .bt = wt,
                 .brs = K, .bcs = 1, .M = M, .N = K, .K = n1 - n0, .accumulate = accumulate,
                 .bpk = pk && pk->tiles ? pk->tiles + (n0 / 32) * 1024 : NULL,
                 .bpk_ld = pk && pk->tiles ? ((N + 31) / 32) * 1024 : 0,
                 .apk = dypk, .apk_ld = dypk ? yf_apk_panel_elems(n1 - n0) : 0};
    use_panels(&g, pk, n0);
    return g;
}

static bool amx_bf16(const yf_gemm *g) {
    int nparts = 1;
    return yf_kernels_precision() == YF_PREC_BF16 && yf_gemm_on_amx(g, &nparts) && nparts == 1;
}

bool yf_apk_usable(const yf_wpack *pk, int64_t M, int64_t N, int64_t K) {
    if (!pk || pk->N != N || pk->K != K) return false;
    yf_gemm g = pk->kind == YF_PACK_XWT ? yf_gemm_xwt_rows(NULL, NULL, NULL, pk->w, YF_BF16, pk, M, K, 0, N)
                                        : xw_rows_gemm(NULL, K, NULL, NULL, pk->w, YF_BF16, pk, M, N, K, 0, N, false);
    return amx_bf16(&g);
}

void yf_check_rows(const yf_wpack *pk, const void *w, yf_dtype wt, int64_t N, int64_t K, int64_t n0, int64_t n1,
                       yf_pack_kind kind, const void *a, const uint16_t *apk) {
    YF_CHECK(0 <= n0 && n0 < n1 && n1 <= N && (a != NULL) != (apk != NULL));
    YF_CHECK(!pk || (pk->w == w && pk->N == N && pk->K == K && pk->kind == kind && n0 % 32 == 0 && wt == pk->wt));
    YF_CHECK(!apk || pk);
}

void yf_matmul_xwt_rows(float *y, const float *x, const uint16_t *xpk, const void *w, yf_dtype wt,
                        const yf_wpack *pk, int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1) {
    yf_check_rows(pk, w, wt, N, K, n0, n1, YF_PACK_XWT, x, xpk);
    if (wt == YF_QMAT) {
        yf_qmat_xwt(w, N, K, y, n1 - n0, x, M, n0, n1, false);
        return;
    }
    if (yf_kernels_path() == YF_KPATH_REF) {
        YF_CHECK(x);
        yf_matmul_xwt_ref(y, x, w_at(w, wt, n0 * K), wt, M, n1 - n0, K, false);
        return;
    }
    yf_gemm g = yf_gemm_xwt_rows(y, x, xpk, w, wt, pk, M, K, n0, n1);
    YF_CHECK(!xpk || amx_bf16(&g));
    yf_gemm_run('f', &g, NULL);
}

void yf_matmul_xw_rows(float *dx, int64_t ldx, const float *dy, const uint16_t *dypk, const void *w, yf_dtype wt,
                       const yf_wpack *pk, int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1, bool accumulate) {
    yf_check_rows(pk, w, wt, N, K, n0, n1, YF_PACK_XW, dy, dypk);
    YF_CHECK(ldx >= K);
    if (wt == YF_QMAT) {
        yf_qmat_xw(w, N, K, dx, ldx, dy, n1 - n0, M, n0, n1, accumulate);
        return;
    }
    if (yf_kernels_path() == YF_KPATH_REF) {
        YF_CHECK(dy);
        int64_t rows = ldx == K ? M : 1; /* the reference takes contiguous rows: rows ldx apart one at a time */
        for (int64_t m = 0; m < M; m += rows)
            yf_matmul_xw_ref(dx + m * ldx, dy + m * (n1 - n0), w_at(w, wt, n0 * K), wt, rows, n1 - n0, K, accumulate);
        return;
    }
    yf_gemm g = xw_rows_gemm(dx, ldx, dy, dypk, w, wt, pk, M, N, K, n0, n1, accumulate);
    YF_CHECK(!dypk || amx_bf16(&g));
    yf_gemm_run('b', &g, NULL);
}

