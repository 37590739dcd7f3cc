/* fused: matrix products that do a second, smaller piece of work on each
 * block of their result while it is in cache, instead of a pass of its own
 * over the result. Each has the contract of the plain steps it replaces
 * (same bits), which is what it does itself wherever the fused route is not
 * available. The low-rank terms are fused on AMX (in the shadow of the tile
 * products: the vector units are idle meanwhile) and on the AVX-512 / AVX2
 * packed driver (in the kernel call of a tile's last K block, on its
 * registers: no pass over the result of their own); the LM head's block
 * callback on AMX only. Their users: LoRA's up-projection (a low-rank term),
 * its input gradient with dropout (a masked low-rank term), and the LM
 * head's loss (a block handed over with a row-wise exp step). */
#ifndef YF_FUSED_H
#define YF_FUSED_H

#include "kernels/cpu/epilogue.h"
#include "kernels/cpu/kernels.h"

/* y = x·W^T (+ y if accumulate), then y += L·R^T (L [M, r], R [N, r], r <=
 * 16): the same bits as yf_matmul_xwt_pk followed by yf_matmul_xwt(y, L, R,
 * YF_F32, M, N, r, true), which is what it does unless the product runs on
 * AMX or the FMA packed driver (with a pack pk or without): then each block
 * of y gets its low-rank term while it is still in cache (LoRA's
 * up-projection without a pass of its own over y). */
void yf_matmul_xwt_pk_lr(float *y, const float *x, const void *w, yf_dtype wt, const yf_wpack *pk, int64_t M,
                         int64_t N, int64_t K, bool accumulate, const float *l, const float *r, int64_t rank);
/* How many yf_matmul_xwt_pk_lr / yf_matmul_xw_pk_drop calls ran their
 * extra term inside the product (tests). */
int64_t yf_matmul_epilogue_calls(void);

/* dx = dy·W + drop(L·R), or with accumulate dx += dy·W, then + drop(L·R):
 * L [M, r] (r <= 16), R [r, K] rows, drop the mask of element (m, k) of dx
 * at index m K + k: the same bits as
 *   yf_matmul_xw(t, L, R, YF_F32, M, r, K, false); yf_dropout(t, t, ..);
 *   yf_matmul_xw_pk(dx, dy, W, wt, pk, M, N, K, accumulate); dx += t
 * (LoRA's input gradient with dropout, and the base weight's), which the
 * caller does when this returns false. Where it can (AMX, the FMA packed
 * driver), each finished block of dx takes the term while in cache: no
 * passes over dx of their own. */
bool yf_matmul_xw_pk_drop(float *dx, const float *dy, const void *w, yf_dtype wt, const yf_wpack *pk, int64_t M,
                          int64_t N, int64_t K, bool accumulate, const float *l, const float *r, int64_t rank,
                          const yf_drop *drop);
/* x·W[n0:n1]^T handed out a block of C at a time instead of stored: fn(ctx,
 * m, n, blk, rows, cols, exp) gets rows m.. and columns n.. (of the n1-n0)
 * of the product, rows x cols (<= 32 x 32) floats at blk, 32 floats a row,
 * while they are in L1, and may ask for the LM head's softmax step on them
 * by filling *exp (zeroed: nothing): yf_exp_block_bf16's work, which the
 * kernel then does a row at a time during the next block's tile products
 * (vector work in the shadow of the AMX unit), or at the end. x packed
 * (xpk), W pre-packed (pk, YF_PACK_XWT); runs on the calling thread, blocks
 * in order of columns, then rows. yf_blocks_usable: whether it can (AMX,
 * bf16, K <= 2048: one block along K). */
bool yf_blocks_usable(const yf_wpack *pk, int64_t M, int64_t N, int64_t K);
void yf_matmul_xwt_rows_blocks(const uint16_t *xpk, const yf_wpack *pk, int64_t M, int64_t N, int64_t K, int64_t n0,
                               int64_t n1, yf_block_fn fn, void *ctx);

#endif
