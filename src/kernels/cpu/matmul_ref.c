/* Naive reference matrix products: the ground truth for the fast kernels. */
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/quant.h"

static inline float wget(const void *w, yf_dtype wt, int64_t i) {
    return wt == YF_BF16 ? yf_bf16_to_f32(((const uint16_t *)w)[i]) : ((const float *)w)[i];
}

void yf_matmul_xwt_ref(float *y, const float *x, const void *w, yf_dtype wt, int64_t M, int64_t N, int64_t K,
                       bool accumulate) {
    if (wt == YF_QMAT) {
        yf_qmat_xwt_ref(yf_qmat_of(w, N, K), y, N, x, M, 0, N, accumulate);
        return;
    }
    YF_CHECK(wt == YF_F32 || wt == YF_BF16);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float s = 0;
            for (int64_t k = 0; k < K; k++) s += x[i * K + k] * wget(w, wt, j * K + k);
            y[i * N + j] = accumulate ? y[i * N + j] + s : s;
        }
}

void yf_matmul_xw_ref(float *dx, const float *dy, const void *w, yf_dtype wt, int64_t M, int64_t N, int64_t K,
                      bool accumulate) {
    if (wt == YF_QMAT) {
        yf_qmat_xw_ref(yf_qmat_of(w, N, K), dx, K, dy, N, M, 0, N, accumulate);
        return;
    }
    YF_CHECK(wt == YF_F32 || wt == YF_BF16);
    for (int64_t i = 0; i < M; i++)
        for (int64_t k = 0; k < K; k++) {
            float s = 0;
            for (int64_t j = 0; j < N; j++) s += dy[i * N + j] * wget(w, wt, j * K + k);
            dx[i * K + k] = accumulate ? dx[i * K + k] + s : s;
        }
}

void yf_matmul_dw_ref(float *dw, const float *dy, const float *x, int64_t M, int64_t N, int64_t K) {
    for (int64_t j = 0; j < N; j++)
        for (int64_t k = 0; k < K; k++) {
            float s = 0;
            for (int64_t i = 0; i < M; i++) s += dy[i * N + j] * x[i * K + k];
            dw[j * K + k] += s;
        }
}
