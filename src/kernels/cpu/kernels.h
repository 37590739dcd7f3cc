/* kernels: matrix products, the hot path of every forward and backward.
 * Weights are in PyTorch [out, in] layout, f32 or bf16, or quantized
 * (YF_QMAT: w is a yf_qmat, kernels/cpu/quant.h; packs are ignored for
 * them); accumulation is f32.
 * Each public kernel dispatches to the fastest path the CPU supports (checked
 * at run time); the *_ref versions are the naive references they are tested
 * against. */
#ifndef YF_KERNELS_H
#define YF_KERNELS_H

#include "base/tensor.h"

/* y[M,N] (+)= x[M,K] · W[N,K]^T        (a linear layer's forward) */
void yf_matmul_xwt(float *y, const float *x, const void *w, yf_dtype wt, int64_t M, int64_t N, int64_t K,
                   bool accumulate);
/* dx[M,K] (+)= dy[M,N] · W[N,K]        (its input gradient) */
void yf_matmul_xw(float *dx, const float *dy, const void *w, yf_dtype wt, int64_t M, int64_t N, int64_t K,
                  bool accumulate);
/* dW[N,K] += dy[M,N]^T · x[M,K]         (its weight gradient, f32) */
void yf_matmul_dw(float *dw, const float *dy, const float *x, int64_t M, int64_t N, int64_t K);

/* ---- pre-packed weights ---------------------------------------------------
 * A weight W[N,K] that is multiplied many times (a frozen base weight in
 * LoRA training) can be converted once into the layout one of its products
 * reads: YF_PACK_XWT for y = x·W^T, YF_PACK_XW for dx = dy·W (two different
 * layouts, each as big as W). On AMX (bf16 W only) that is the tile layout;
 * on AVX-512 and AVX2 (bf16 or f32 W) the fp32 kernels' panels of NR
 * columns, in W's dtype (for x·W^T a transpose of W). The *_pk products
 * then read the pack instead of packing W on every call, which at a few
 * hundred rows costs about as much as the tile products themselves on AMX
 * (on the FMA paths: the transpose, and W's cold rows streamed in a
 * product's first pass). Results are the same bit for bit as without the
 * pack; a pack made for another path is ignored. */
typedef struct yf_wpack yf_wpack;
typedef enum yf_pack_kind { YF_PACK_XWT = 0, YF_PACK_XW = 1 } yf_pack_kind;
/* Whether products of M rows with a W of dtype wt would use a pack now:
 * AMX (bf16 W, M rows enough for AMX), AVX-512 or AVX2 (a bf16 or f32 W,
 * never a quantized one; more rows than the few-row kernels take on the
 * calling thread: see yf_kernels_set_rowstable), and few enough rows
 * (<= 1536) that packing W per call is a real cost. */
bool yf_wpack_pays(int64_t M, yf_dtype wt);
/* NULL (with yf_errorf) when no pack is made on this path for this dtype,
 * or memory is short. With release_w, W's pages are released
 * (yf_release_resident) as its rows are packed (YF_PACK_XWT reads them in
 * order; at the end for YF_PACK_XW), so the pack does not add to the peak
 * on a mapped W. */
yf_wpack *yf_wpack_new(const void *w, yf_dtype wt, int64_t N, int64_t K, yf_pack_kind kind, bool release_w);
size_t yf_wpack_bytes(const yf_wpack *p);
void yf_wpack_free(yf_wpack *p);
/* out [n, K] = rows ids of W, as floats, read from a dy·W pack (a tied LM
 * head's pack serves the embedding lookup once W's own pages are given
 * back); false (nothing written) for another kind of pack. */
bool yf_wpack_rows(const yf_wpack *p, const int64_t *ids, int64_t n, float *out);
/* A pack of an fp32 W into the caller's tiles (yf_wpack_elems(N, K) bf16
 * elements), for a W that changes from call to call but is read by several
 * products (attention's keys and values, per head), on the calling thread.
 * NULL unless AMX products in bf16 precision are in use; the products then
 * give the same bits as packing W themselves. yf_wpack_free leaves the tiles. */
int64_t yf_wpack_elems(int64_t N, int64_t K);
yf_wpack *yf_wpack_f32(const float *w, int64_t N, int64_t K, yf_pack_kind kind, uint16_t *tiles);
/* As yf_matmul_xwt / yf_matmul_xw; pk (YF_PACK_XWT / YF_PACK_XW of w) may be NULL. */
void yf_matmul_xwt_pk(float *y, const float *x, const void *w, yf_dtype wt, const yf_wpack *pk, int64_t M,
                      int64_t N, int64_t K, bool accumulate);
void yf_matmul_xw_pk(float *dx, const float *dy, const void *w, yf_dtype wt, const yf_wpack *pk, int64_t M,
                     int64_t N, int64_t K, bool accumulate);

/* ---- pre-packed activations and row slices of W --------------------------
 * The left operand of a product can be handed over already in the AMX tile
 * layout, written row by row by whoever computes it (yf_apk_put_row, or
 * its own stores at yf_apk_row): the LM head's loss writes its softmax rows
 * this way (yf_exp_sum_bf16), and packs the head's input once for all of its
 * vocabulary blocks. The values are rounded to
 * bf16 as the product would round them, so results are the same bit for bit
 * as with the fp32 rows. Layout: 32-row panels, panel p at
 * p * yf_apk_panel_elems(cols) bf16 elements (rows past M, columns past
 * cols: zeros, written by yf_apk_put_row(.., NULL)).
 * The *_rows products use rows n0..n1-1 of W [N, K] only (n0 a multiple of
 * 32 when pk, a pack of all of W, is given), so a W too big to take whole
 * (the head's 135040 rows) goes a block at a time. */
/* Whether a packed left operand can be used: AMX path, bf16 precision, an
 * M x K (x·W^T) or M x N (dy·W) product the AMX kernel takes with pk. */
bool yf_apk_usable(const yf_wpack *pk, int64_t M, int64_t N, int64_t K);
int64_t yf_apk_panel_elems(int64_t cols);
/* Row r (of any panel) of a packed operand from cols floats; row NULL: zeros. */
void yf_apk_put_row(uint16_t *apk, int64_t cols, int64_t r, const float *row);
/* Where row r's columns 32 s .. 32 s + 31 go: 32 bf16 at the result + s * stride (for
 * whoever writes a row itself: yf_exp_sum_bf16). */
uint16_t *yf_apk_row(uint16_t *apk, int64_t cols, int64_t r, int64_t *stride);
/* y[M, n1-n0] = x·W[n0:n1]^T; x as floats [M, K] or packed (xpk; needs pk). */
void yf_matmul_xwt_rows(float *y, const float *x, const uint16_t *xpk, const void *w, yf_dtype wt,
                        const yf_wpack *pk, int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1);
/* dx[M,K] (+)= dy·W[n0:n1], dx's rows ldx >= K floats apart; dy as floats
 * [M, n1-n0] or packed (dypk; needs pk). A dx that the products accumulate
 * into block by block (the LM head's U) runs faster with ldx not a multiple
 * of 1024: rows a multiple of 4 KiB apart put a 32x32 block of C in one L1
 * set (K + 16: 4.5% on the head's U product, one thread). */
void yf_matmul_xw_rows(float *dx, int64_t ldx, const float *dy, const uint16_t *dypk, const void *w, yf_dtype wt,
                       const yf_wpack *pk, int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1, bool accumulate);

/* ---- paths and precision --------------------------------------------------
 * Paths, slowest first. The default is the fastest one this CPU (and this
 * compiler) supports; the environment variable YF_KERNELS=ref|scalar|avx2|
 * avx512|amx caps it (a path the CPU lacks falls back to the next one below,
 * with one note on stderr). "ref" runs the naive single-threaded references.
 * Products with a side <= 16 (LoRA's rank r: K <= 16, N <= 16, or M <= 16
 * rows of dW) use the "narrow" AVX-512/AVX2 kernels (matmul_narrow.h): fp32 in
 * either precision, the big operand streamed once, the small one kept in
 * registers/L1/L2; products with M <= 4 rows (decode) the unpacked gemv
 * kernels; AMX needs M >= 16. Products of 16M+ multiply-adds are split between the threads
 * of pool.h (OMP_NUM_THREADS of them; the bigger operand is split, 1-2
 * pieces per thread claimed dynamically); a call made from a pool job or an
 * OpenMP parallel region runs on the calling thread. Each thread keeps
 * up to ~14 MiB of packing scratch for its life (no packed weight copies). */
typedef enum yf_kpath {
    YF_KPATH_REF = 0,
    YF_KPATH_SCALAR, /* plain C loops, OpenMP */
    YF_KPATH_AVX2,   /* AVX2 + FMA, fp32 */
    YF_KPATH_AVX512, /* AVX-512 FMA, fp32; in bf16 mode vdpbf16ps where it pays
                        (yf_kernels_set_bf16_dot) */
    YF_KPATH_AMX,    /* AMX bf16 tiles */
    YF_KPATH_COUNT
} yf_kpath;

/* Precision of the products on bf16 hardware (AMX):
 * EXACT (default): fp32-level results. With bf16 weights the activations are
 *   split into three bf16 parts (hi + mid + lo carry all 24 mantissa bits)
 *   and each part is multiplied on AMX; bf16 x bf16 products are exact in
 *   fp32, so what is left is fp32 accumulation error (measured on 64x96x2048,
 *   |y| ~ 8: 4.7e-6 vs fp64, fp32 FMA 3.2e-6; two parts gave 2.4e-5, too
 *   close to the 1e-4 logit tolerance). Costs 3 tile products per product.
 *   f32 weights and yf_matmul_dw use fp32 FMA.
 * BF16: activations (and f32 weights, and both operands of yf_matmul_dw) are
 *   rounded to bf16 (relative error 2^-9 each) before the product, fp32
 *   accumulation, as torch autocast does; ~2.3x the exact mode's speed on AMX.
 *   On the AVX-512 path with the bf16 dot kernel on (below), the packed
 *   products do the same with vdpbf16ps (products of bf16 pairs, fp32
 *   accumulation); the few-row (decode) and rank-r products stay fp32.
 *   Otherwise the paths without AMX compute in fp32 either way. */
typedef enum yf_precision { YF_PREC_EXACT = 0, YF_PREC_BF16 = 1 } yf_precision;

void yf_kernels_set_precision(yf_precision p); /* process-wide */

/* Whether bf16 mode's packed products on the AVX-512 path run on bf16 pairs
 * (vdpbf16ps, yf_fma_avx512_bf16) rather than in fp32. The default is the
 * CPU's (cpu.h: bf16_dot_fast, where vdpbf16ps does twice the fp32 FMA's
 * work a cycle, as on AMD Zen 4), or YF_BF16_DOT=0|1; on only where the CPU
 * has AVX512-BF16. Process-wide; returns the previous setting. */
bool yf_kernels_set_bf16_dot(bool on);
/* Whether the products take the bf16 dot kernel now (path, precision and
 * setting). */
bool yf_kernels_bf16_dot(void);

/* Decode steps of a batch of sequences: while on (for products chosen on the
 * calling thread), a product of up to YF_ROWSTABLE_M rows gives each row the
 * bits of the same product of that row alone (the gemv kernels, W streamed
 * from memory once for all rows), so that a sequence decoded in a batch of
 * up to 32 gets the tokens it gets decoded alone. Off, such products take
 * the packed kernels from 5 rows on (and a row's kernel then depends on no
 * row count above 4). For a product used once, up to 32 rows, the tiles
 * are also the faster kernels: the packed ones pack W every call (at 32
 * rows the tiles measured 1.4-2.8x faster; level at ~64). Returns the
 * previous setting. */
#define YF_ROWSTABLE_M 32
/* Products of up to this many rows take the few-row kernels (rowstable off). */
#define YF_GEMV_ROWS 4
bool yf_kernels_set_rowstable(bool on);
yf_precision yf_kernels_precision(void);
/* The path in use (after YF_KERNELS), whether one is usable here, its name. */
yf_kpath yf_kernels_path(void);
bool yf_kernels_path_supported(yf_kpath p);
const char *yf_kpath_name(yf_kpath p);
/* Forces a path (tests, benchmarks); returns -1 with a message if unsupported. */
int yf_kernels_set_path(yf_kpath p);

void yf_matmul_xwt_ref(float *y, const float *x, const void *w, yf_dtype wt, int64_t M, int64_t N, int64_t K,
                       bool accumulate);
void yf_matmul_xw_ref(float *dx, const float *dy, const void *w, yf_dtype wt, int64_t M, int64_t N, int64_t K,
                      bool accumulate);
void yf_matmul_dw_ref(float *dw, const float *dy, const float *x, int64_t M, int64_t N, int64_t K);

#endif
