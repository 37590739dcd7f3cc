/* Dispatching matrix products. For now: OpenMP-parallel loops in a cache-
 * friendly order; fast AMX / AVX512-BF16 paths come in the kernels work. */
#include "kernels.h"

#include <string.h>

static inline float wget(const void *w, yf_dtype wt, int64_t i) {
    return wt == YF_BF16 ? yf_bf16_to_f32(((const uint16_t *)w)[i]) : ((const float *)w)[i];
}

void yf_matmul_xwt(float *y, const float *x, const void *w, yf_dtype wt, int64_t M, int64_t N, int64_t K,
                   bool accumulate) {
    YF_CHECK(wt == YF_F32 || wt == YF_BF16);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            const float *xr = x + i * K;
            float s = 0;
            if (wt == YF_F32) {
                const float *wr = (const float *)w + j * K;
                for (int64_t k = 0; k < K; k++) s += xr[k] * wr[k];
            } else {
                const uint16_t *wr = (const uint16_t *)w + j * K;
                for (int64_t k = 0; k < K; k++) s += xr[k] * yf_bf16_to_f32(wr[k]);
            }
            y[i * N + j] = accumulate ? y[i * N + j] + s : s;
        }
}

void yf_matmul_xw(float *dx, const float *dy, const void *w, yf_dtype wt, int64_t M, int64_t N, int64_t K,
                  bool accumulate) {
    YF_CHECK(wt == YF_F32 || wt == YF_BF16);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < M; i++) {
        float *dxr = dx + i * K;
        if (!accumulate) memset(dxr, 0, (size_t)K * sizeof(float));
        for (int64_t j = 0; j < N; j++) {
            float d = dy[i * N + j];
            if (d == 0) continue;
            for (int64_t k = 0; k < K; k++) dxr[k] += d * wget(w, wt, j * K + k);
        }
    }
}

void yf_matmul_dw(float *dw, const float *dy, const float *x, int64_t M, int64_t N, int64_t K) {
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < N; j++) {
        float *dwr = dw + j * K;
        for (int64_t i = 0; i < M; i++) {
            float d = dy[i * N + j];
            if (d == 0) continue;
            const float *xr = x + i * K;
            for (int64_t k = 0; k < K; k++) dwr[k] += d * xr[k];
        }
    }
}
