/* ops_fast: the AVX-512 forms of the elementwise ops (ops_avx512.c), chosen
 * at run time by ops.c when the CPU has AVX-512 (yf_cpu) and the reference
 * loops are not forced (yf_ops_set_reference). Not a public header. Each
 * function computes what its plain C loop in ops.c computes, up to the
 * rounding of the vector exp (see yf_exp_avx512) and of the order of sums. */
#ifndef YF_OPS_FAST_H
#define YF_OPS_FAST_H

#include <stdbool.h>
#include <stdint.h>

/* Whether this build can emit the AVX-512 code (function target attributes). */
#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) ? __clang_major__ >= 9 : __GNUC__ >= 10)
#define YF_OPS_AVX512 1
#else
#define YF_OPS_AVX512 0
#endif

/* y[i] = exp(x[i]) with the 16-lane polynomial (y == x allowed): for tests. */
void yf_exp_avx512(float *y, const float *x, int64_t n);
/* y = exp(x - shift) (y == x allowed); returns the sum of y in double. */
double yf_exp_sum_avx512(float *y, const float *x, int64_t n, float shift);
/* yf_exp_sum_bf16 (needs AVX512-BF16 too) */
double yf_exp_sum_bf16_avx512(uint16_t *dst, int64_t stride, const float *x, int64_t n, float shift);
/* yf_exp_block_bf16 (needs AVX512-BF16 too) */
bool yf_exp_block_bf16_avx512(uint16_t *dst, const float *blk, int64_t rows, int64_t cols, uint32_t live,
                              const float *shift, double *acc, float lim);
/* One row of yf_xent: returns logsumexp(x) - x[tg]; d (may be x, or NULL for
 * the loss only) gets scale * (softmax - onehot(tg)). */
double yf_xent_row_avx512(float *d, const float *x, int64_t V, int64_t tg, float scale);
void yf_swiglu_fwd_avx512(float *z, const float *g, const float *u, int64_t n);
void yf_swiglu_bwd_avx512(float *dg, float *du, const float *dz, const float *g, const float *u, int64_t n);
/* y[i] for the global element indices [i0, i0 + n) (i0 a multiple of 16) of
 * yf_dropout's counter hash: keep when hash >= thr. */
void yf_dropout_avx512(float *y, const float *x, int64_t i0, int64_t n, uint32_t thr, float keep_scale, uint32_t s0,
                       uint32_t s1);
/* sum of x[i]^2, and sum of a[i] b[i] c[i], in double */
double yf_sumsq_avx512(const float *x, int64_t n);
double yf_dot3_avx512(const float *a, const float *b, const float *c, int64_t n);

#endif
