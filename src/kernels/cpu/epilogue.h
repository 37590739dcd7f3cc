/* epilogue: the small pieces of work a fused product (fused.h) can do on
 * each block of its result, as data: a dropout mask's constants, and a
 * row-wise exp step on a block handed to a callback. */
#ifndef YF_EPILOGUE_H
#define YF_EPILOGUE_H

#include "base/tensor.h"

/* A dropout mask (the model's yf_dropout_params): element i is kept when a
 * hash of (i, s0, s1) >= thr (simd16.h, yf_drop16_keep), and then scaled
 * by ks. */
typedef struct yf_drop {
    uint32_t thr, s0, s1;
    float ks;
} yf_drop;

/* A row-wise step on a 32 x 32 block of a product, asked for by the block's
 * callback (yf_block_fn): for each live row i, dst row i = bf16(exp(blk row
 * i - shift[i])) and the exps summed into acc[16 i ..] (16 lanes); *over
 * set when a live value exceeds its shift by more than lim. The LM head's
 * softmax over a vocabulary block is its user. */
typedef struct yf_exp_spec {
    uint16_t *dst;          /* 32 x 32 bf16, row i at 32 i; NULL: no exps for this block */
    const float *shift;     /* [32] */
    double *acc;            /* [32 x 16] */
    uint32_t live;          /* rows to compute (the others, and rows past the block: zeros) */
    float lim;
    bool *over;             /* set when a live logit exceeds its shift by more than lim */
} yf_exp_spec;
typedef void (*yf_block_fn)(void *ctx, int64_t m, int64_t n, const float *blk, int64_t rows, int64_t cols,
                            yf_exp_spec *exp);

#endif
