/* kernels: matrix products, the hot path of every forward and backward.
 * Weights are in PyTorch [out, in] layout, f32 or bf16; accumulation is f32.
 * Each public kernel dispatches to the fastest path the CPU supports (checked
 * at run time); the *_ref versions are the naive references they are tested
 * against. */
#ifndef YF_KERNELS_H
#define YF_KERNELS_H

#include "../../tensor.h"

/* y[M,N] (+)= x[M,K] · W[N,K]^T        (a linear layer's forward) */
void yf_matmul_xwt(float *y, const float *x, const void *w, yf_dtype wt, int64_t M, int64_t N, int64_t K,
                   bool accumulate);
/* dx[M,K] (+)= dy[M,N] · W[N,K]        (its input gradient) */
void yf_matmul_xw(float *dx, const float *dy, const void *w, yf_dtype wt, int64_t M, int64_t N, int64_t K,
                  bool accumulate);
/* dW[N,K] += dy[M,N]^T · x[M,K]         (its weight gradient, f32) */
void yf_matmul_dw(float *dw, const float *dy, const float *x, int64_t M, int64_t N, int64_t K);

void yf_matmul_xwt_ref(float *y, const float *x, const void *w, yf_dtype wt, int64_t M, int64_t N, int64_t K,
                       bool accumulate);
void yf_matmul_xw_ref(float *dx, const float *dy, const void *w, yf_dtype wt, int64_t M, int64_t N, int64_t K,
                      bool accumulate);
void yf_matmul_dw_ref(float *dw, const float *dy, const float *x, int64_t M, int64_t N, int64_t K);

#endif
