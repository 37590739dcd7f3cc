/* matmul_impl: what the dispatcher (matmul.c) and the per-ISA files
 * (matmul_avx2.c, matmul_avx512.c, matmul_amx.c) share. Not a public header.
 *
 * Every public product is one general product C[M,N] (+)= A[M,K] · B[K,N]
 * whose operands are strided views, so one packing/blocking scheme serves the
 * forward (x·W^T), the input gradient (dy·W) and the weight gradient (dy^T·x):
 *   A(m,k) = a[m*ars + k*acs]   (f32; ars or acs is 1)
 *   B(k,n) = b[k*brs + n*bcs]   (f32 or bf16; brs or bcs is 1)
 *   C(m,n) = c[m*ldc + n]       (f32) */
#ifndef YF_MATMUL_IMPL_H
#define YF_MATMUL_IMPL_H

#include "kernels/cpu/epilogue.h"
#include "kernels/cpu/kernels.h"

typedef struct yf_gemm {
    float *c;
    int64_t ldc;
    const float *a;
    int64_t ars, acs;
    const void *b;
    yf_dtype bt;
    int64_t brs, bcs;
    int64_t M, N, K;
    bool accumulate; /* false: C = A·B; true: C += A·B */
    /* B already in AMX tile layout (yf_wpack), or NULL: [pair of 16-column
     * groups][32-step of K][2 tiles], all of K, zero padded */
    const uint16_t *bpk;
    int64_t bpk_ld;      /* bf16 elements from one pair of bpk to the next; 0: all of K's */
    /* B already in the FMA kernels' panels (yf_wpack of an FMA path), or
     * NULL: panel p (columns p NR..) at bpf + p bpf_ld elements, its row k
     * (NR values of b's dtype) at k NR; all of K, zero padded */
    const void *bpf;
    int64_t bpf_ld;
    /* A already in AMX tile layout for all rows, or NULL: [32-row panel]
     * [32-step of K][part][2 tiles]. matmul.c packs it once per K block for
     * all threads of a call; a caller's (yf_apk_put_row) covers all of K,
     * which matmul.c walks block by block (the kernels take <= one K block). */
    const uint16_t *apk;
    int64_t apk_ld; /* bf16 elements from one panel of apk to the next; 0: this K block's */
} yf_gemm;

/* What a fused product (fused.h) does besides C (+)= A·B, block by block
 * of C, on the AMX path (matmul_amx.c works it in the shadow of the tile
 * products; it needs a pre-packed B). At most one of the three is set; a
 * product without one passes NULL. */
typedef struct yf_gemm_epi {
    /* each block of C (<= 32 x 32, rows 32 floats apart) handed to blocks()
     * instead of stored: one K block, not accumulating */
    yf_block_fn blocks;
    void *blocks_ctx;
    /* C += L·R^T once C is complete: L [M, lr_k] and R [N, lr_k] fp32 rows,
     * lr_k <= 16 (yf_matmul_xwt_pk_lr) */
    const float *lr_l, *lr_r;
    int64_t lr_k;
    /* C += drop(P·Q) once C is complete, with accumulate or without: P [M,
     * pro_k] and Q [pro_k, N] fp32 rows, the mask of element (m, n) at index
     * m ldc + n (yf_matmul_xw_pk_drop) */
    const float *pro_l, *pro_r;
    int64_t pro_k;
    yf_drop pro_drop;
} yf_gemm_epi;

/* What the compiler can emit (function-level target attributes), so a build
 * with an older compiler still links: missing paths are reported unsupported. */
#if defined(__x86_64__) && defined(__GNUC__)
#if defined(__clang__)
#define YF_CC_AVX2 1
#define YF_CC_AVX512 (__clang_major__ >= 9)
#define YF_CC_AMX (__clang_major__ >= 12)
#else
#define YF_CC_AVX2 (__GNUC__ >= 5)
#define YF_CC_AVX512 (__GNUC__ >= 10)
#define YF_CC_AMX (__GNUC__ >= 11)
#endif
#else
#define YF_CC_AVX2 0
#define YF_CC_AVX512 0
#define YF_CC_AMX 0
#endif

/* Each path computes the sub-block C[m0:m1, n0:n1] of g (all of K) on the
 * calling thread; the dispatcher splits C between OpenMP threads. */
/* The fp32 FMA paths (AVX-512, AVX2) share one packed driver (gemm_fma.c)
 * and differ in what yf_fma_isa holds: the register tile of the micro-kernel
 * (MR rows x NR columns of C), the kernel, and the vector forms of packing
 * B's panels. A panel of B is NR columns by kb rows of K, NR floats a row
 * (zero padded); a panel of A is MR rows by kb, MR floats per k.
 *
 * A tile's term (fused.h): C(i, j) += t(i, j), t = sum over k < rank of
 * l[i l_ld + k] rt[k rt_ld + j] as fused multiply-adds from 0 in k order (the
 * narrow kernels' K form); with drop, t first goes through the dropout mask
 * of element (i, j) at index base + i mld + j (yf_dropout's arithmetic).
 * So the tile ends as the plain product followed by the separate rank-r
 * product (and mask) would leave it, bit for bit. */
typedef struct yf_tile_term {
    const float *l, *rt;
    int64_t l_ld, rt_ld, rank;
    bool drop;
    uint64_t base;
    int64_t mld;
    yf_drop d;
} yf_tile_term;
/* C[rows x cols] (+ C if loadc) = Ap[kw x MR] . Bp[kw x NR], then t's term
 * (t may be NULL); rows <= MR, cols <= NR say how much of the tile is real.
 * The panels are kw rows of 32-bit words: floats (kpair 1), or bf16 pairs of
 * consecutive k (kpair 2: low half k, high half k + 1). */
typedef void (*yf_ukernel)(int64_t kw, const float *ap, const float *bp, float *c, int64_t ldc, bool loadc,
                           int64_t rows, int64_t cols, const yf_tile_term *t);
typedef struct yf_fma_isa {
    int mr, nr;
    int kpair; /* k a word of a panel holds: 1 (fp32 FMA), 2 (bf16 pairs, vdpbf16ps) */
    yf_ukernel kernel;
    /* a panel of B (columns n0.., nn <= NR valid; rows k0..k0+kb-1, as
     * ceil(kb / kpair) rows of words) where column n of B is contiguous
     * along k (brs == 1: x.W^T's W rows) */
    void (*pack_b_cols)(const yf_gemm *g, int64_t k0, int64_t kb, int64_t n0, int64_t nn, float *bp);
    /* the same where rows of B are contiguous along n (bcs == 1: dy.W's W rows, dW's x rows) */
    void (*pack_b_rows)(const yf_gemm *g, int64_t k0, int64_t kb, int64_t n0, int64_t nn, float *bp);
    /* dst[i] = src[i] widened from bf16, n a multiple of 16 (kpair 1: a
     * pre-packed bf16 panel; kpair 2 reads its pre-packed panels in place) */
    void (*widen)(float *dst, const uint16_t *src, int64_t n);
    /* a panel of A (rows m0.., nm <= MR valid; k0..k0+kb-1) as ceil(kb /
     * kpair) rows of MR words at ap; NULL: the driver's fp32 packing */
    void (*pack_a)(const yf_gemm *g, int64_t m0, int64_t nm, int64_t k0, int64_t kb, float *ap);
} yf_fma_isa;
#define YF_AVX512_MR 12
#define YF_AVX512_NR 32
#define YF_AVX2_MR 6
#define YF_AVX2_NR 16
/* yf_fma_avx512_bf16: the AVX-512 tile on bf16 pairs (kpair 2), for bf16
 * mode where vdpbf16ps pays (cpu.h's bf16_dot_fast; yf_kernels_set_bf16_dot):
 * both operands rounded to bf16 as they are packed, fp32 accumulation. */
extern const yf_fma_isa yf_fma_avx512, yf_fma_avx2, yf_fma_avx512_bf16;
/* Bytes an element of the FMA kernels' pre-packed panels takes: a word of
 * bf16 pairs (kpair 2), or W's dtype. */
static inline size_t yf_panel_esz(int kpair, yf_dtype wt) { return kpair == 2 || wt == YF_F32 ? 4 : 2; }
/* The FMA-driver ISA that products on the path (AVX-512 or AVX2) take now:
 * yf_fma_avx512_bf16 in bf16 mode with the bf16 dot kernel on. */
const yf_fma_isa *yf_fma_isa_now(yf_kpath path);
/* g (+ e's terms, or NULL) on the FMA path isa, split between nt threads. */
void yf_gemm_fma(const yf_gemm *g, const yf_gemm_epi *e, const yf_fma_isa *isa, int nt);
/* nparts: A is split into 1 (bf16 mode), 2 or 3 bf16 parts (exact mode).
 * e: the fused work, or NULL. */
void yf_gemm_amx(const yf_gemm *g, const yf_gemm_epi *e, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                 int nparts);
/* Packs column pairs j0..j1-1 (32 columns each) of g's B, all of K, into dst
 * in the bpk layout (dst points at pair j0). */
void yf_amx_pack_b(const yf_gemm *g, int64_t j0, int64_t j1, uint16_t *dst);
/* The K block AMX products use for K (a multiple of 32, at most 2048, K split
 * evenly). */
int64_t yf_amx_kc(int64_t K);
/* Packs the 32-row panel of A at row m0 (nm valid), all of g's K (<= one K
 * block), in nparts parts, into dst in the apk layout. */
void yf_amx_pack_a_panel(const yf_gemm *g, int64_t m0, int64_t nm, int nparts, uint16_t *dst);
/* A row of a bf16 apk, its 32-column steps at d, d + stride, ... (yf_apk_row):
 * row's n floats (rounded up to 32 with zeros), or zeros. */
void yf_amx_put_a_row(uint16_t *d, int64_t stride, int64_t n, const float *row);
/* Few rows of C (M <= YF_GEMV_MAX_M): no packing; weights streamed once.
 * B contiguous along k with A contiguous along k ("dot": brs == 1, acs == 1):
 * the register-tiled kernels of gemv_tiles.c, any number of rows, each
 * element's sum in an order of 16 lanes (AVX-512) or 8 (AVX2) that
 * yf_gemv_tiles_ref reproduces; B contiguous along n ("axpy": bcs == 1):
 * yf_gemv_avx512 / yf_gemv_avx2, at most YF_GEMV_MAX_M rows a call. */
#define YF_GEMV_MAX_M YF_GEMV_ROWS
/* The most rows a product on the calling thread gives the gemv kernels:
 * YF_GEMV_MAX_M, or YF_ROWSTABLE_M while yf_kernels_set_rowstable is on. */
int64_t yf_gemv_rows(void);
void yf_gemv_avx2(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
void yf_gemv_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
void yf_gemv_tiles_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
void yf_gemv_tiles_avx2(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
void yf_gemv_tiles_ref(const yf_gemm *g, int lanes, int64_t m0, int64_t m1, int64_t n0, int64_t n1);

/* Streaming W from memory (the few-row kernels: gemv_tiles.c, the quantized
 * ones): a kernel reads W a block of rows at a time (a register tile's
 * columns, R rows of a quantized W), the hardware prefetchers follow the
 * block's rows, and the kernel prefetches the *next* block at the pace it
 * reads this one: when it has read `off` bytes of this block, the line `off`
 * bytes into the next (yf_prefetch_ahead), into L1 when the two blocks fit
 * there together (the next at most YF_PREFETCH_L1 bytes), else into L2 (a
 * bf16 tile's next 32 KiB into L1 evicts the tile being read). Why not
 * ahead inside each row: a row of W is 1-4 KiB, and there the prefetches run
 * into the hardware's own streams (on Zen 4 they cost a third of the read
 * rate; docs/performance.md, "Decode at the read bound on Zen 4"). */
enum { YF_PREFETCH_L1 = 8 << 10 };
static inline __attribute__((always_inline)) void yf_prefetch_ahead(const void *next, int64_t off, bool l1) {
    if (l1) __builtin_prefetch((const char *)next + off, 0, 3); /* prefetcht0 */
    else __builtin_prefetch((const char *)next + off, 0, 2);    /* prefetcht1 */
}

/* Products with a dimension <= YF_NARROW_DIM (LoRA's rank-r side) go to the
 * narrow kernels (matmul_narrow.h), unpacked but for the small operand, in one
 * of these forms (the first that applies):
 *   K:  K <= 16: sums of K outer products; any layout (B packed unless f32
 *       with contiguous rows). x·B^T, dy·A with the rank as K.
 *   N:  N <= 16, A contiguous along k: several k per vector (B packed).
 *       x·A^T, dy·B.
 *   NT: N <= 16, A contiguous along m (f32 B): C^T as outer products over k.
 *       dW of a LoRA B factor.
 *   M:  M <= 16, A contiguous along m, not along k (only yf_matmul_dw's dy^T,
 *       whose rows are a weight's features, never tokens), B contiguous along
 *       n, f32: outer products over k. dW of a LoRA A factor.
 * The form depends on the shape's weight-side dimensions only, never on the
 * row count of an activation, and every element's sum order on K (and N). */
#define YF_NARROW_DIM 16
typedef enum { YF_NARROW_NONE, YF_NARROW_K, YF_NARROW_N, YF_NARROW_NT, YF_NARROW_M } yf_narrow;
static inline yf_narrow yf_narrow_form(const yf_gemm *g) {
    if (g->K <= YF_NARROW_DIM) return YF_NARROW_K;
    if (g->N <= YF_NARROW_DIM) {
        if (g->acs == 1) return YF_NARROW_N;
        if (g->ars == 1 && g->bt == YF_F32) return YF_NARROW_NT;
        return YF_NARROW_NONE;
    }
    if (g->M <= YF_NARROW_DIM && g->ars == 1 && g->acs != 1 && g->bcs == 1 && g->bt == YF_F32) return YF_NARROW_M;
    return YF_NARROW_NONE;
}
/* C[m0:m1, n0:n1] of a product whose yf_narrow_form is not NONE. */
void yf_narrow_avx2(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
void yf_narrow_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);

/* ---- quantized weights (wt == YF_QMAT: w is a yf_qmat, quant.h) ----------
 * The public products' route for them (quant.c): W checked to be [N, K];
 * y[m, n - n0] (+)= x[m, :] · W[n, :] for n0 <= n < n1, y's rows ldy apart;
 * dx[m, :] (+)= sum over n0 <= n < n1 of dy[m, n - n0] W[n, :], dy's rows
 * lddy apart, dx's ldx. A few rows of x dequantize W in registers (the
 * per-ISA kernels of quant_impl.h); more go through fp32 blocks of W and
 * yf_gemm_run. */
void yf_qmat_xwt(const void *w, int64_t N, int64_t K, float *y, int64_t ldy, const float *x, int64_t M, int64_t n0,
                 int64_t n1, bool accumulate);
void yf_qmat_xw(const void *w, int64_t N, int64_t K, float *dx, int64_t ldx, const float *dy, int64_t lddy, int64_t M,
                int64_t n0, int64_t n1, bool accumulate);

/* A per-thread scratch buffer (64-byte aligned), grown as needed and kept for
 * the thread's life; slot 0..3 are independent buffers. */
void *yf_scratch(int slot, size_t bytes); /* slot 4: a call's shared packed A (matmul.c) */

/* ---- what matmul.c, wpack.c, fused.c and kprof.c share ---------------- */

/* AMX pays for packing B and for 32-row tiles: below this many rows the
 * fp32 kernels are as fast. */
#define YF_AMX_MIN_M 16
/* Runs g (with e's fused work, or NULL) on the path chosen for it, split
 * between the threads; op ('f' x·W^T, 'b' dy·W, 'w' dW) labels YF_KPROF's
 * rows. */
void yf_gemm_run(char op, const yf_gemm *g, const yf_gemm_epi *e);
/* Runs g, whose B is pre-packed, on the calling thread, K block by K block
 * (AMX; what yf_matmul_xwt_rows_blocks needs). */
void yf_gemm_run_here(const yf_gemm *g, const yf_gemm_epi *e);
/* Whether g would run on AMX (*nparts: the split of A), or on the narrow
 * kernels. */
bool yf_gemm_on_amx(const yf_gemm *g, int *nparts);
bool yf_gemm_on_narrow(const yf_gemm *g);
/* Whether g would run on the AVX-512 / AVX2 packed driver (yf_gemm_fma). */
bool yf_gemm_on_fma(const yf_gemm *g);
/* A pre-packed operand (kernels.h): W [N, K] packed for one product. */
struct yf_wpack {
    const void *w;
    int64_t N, K; /* W's shape */
    yf_dtype wt;
    yf_pack_kind kind;
    uint16_t *tiles; /* AMX tiles, or NULL */
    void *panels;    /* or the FMA kernels' panels of B, nr wide, in W's dtype (yf_gemm's bpf) or, */
    int nr, kpair;   /* kpair 2, in bf16 pairs (yf_fma_avx512_bf16's) */
    size_t bytes;
    bool borrowed; /* tiles: the caller's (yf_wpack_f32) */
};
/* Hands g (a product of W [N, K] as kind says) the pack pk (checked against
 * it; NULL: nothing) in the form its path reads: AMX tiles, or FMA panels
 * when they are the current path's width. */
void yf_gemm_use_pack(yf_gemm *g, const yf_wpack *pk, const void *w, int64_t N, int64_t K, yf_pack_kind kind);
/* x·W[n0:n1]^T as a yf_gemm: x as floats or packed (xpk), W's rows n0..
 * from the pack pk when given. */
yf_gemm yf_gemm_xwt_rows(float *y, const float *x, const uint16_t *xpk, const void *w, yf_dtype wt,
                         const yf_wpack *pk, int64_t M, int64_t K, int64_t n0, int64_t n1);
/* Checks a row-slice product's arguments (programmer errors). */
void yf_check_rows(const yf_wpack *pk, const void *w, yf_dtype wt, int64_t N, int64_t K, int64_t n0, int64_t n1,
                   yf_pack_kind kind, const void *a, const uint16_t *apk);
/* YF_KPROF=1 (kprof.c): time and GFLOP/s per product shape, printed at exit.
 * yf_kprof_on: whether to time this call (not inside pool jobs). */
bool yf_kprof_on(void);
double yf_kprof_now(void);
void yf_kprof_add(char op, const yf_gemm *g, double s);

static inline float yf_gemm_bget(const yf_gemm *g, int64_t k, int64_t n) {
    int64_t i = k * g->brs + n * g->bcs;
    return g->bt == YF_BF16 ? yf_bf16_to_f32(((const uint16_t *)g->b)[i]) : ((const float *)g->b)[i];
}

#endif
