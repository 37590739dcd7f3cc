/* gemv_bf16: the few-row products x·W^T with bf16 W on AVX-512 (decode steps
 * of up to YF_ROWSTABLE_M sequences, the LM head of a decode step), and the
 * scalar reference that computes the same sums in the same order.
 *
 * The pair order. A 64-byte load of a row of W holds 32 bf16 weights, two to
 * a 32-bit lane. As fp32, the high halves (odd k: lane & 0xffff0000) and the
 * low halves shifted up (even k: lane << 16) are two vectors of one
 * instruction each; widening 16 bf16 in k order takes two, one of them a
 * shuffle on the port the FMAs need. So lane l of the accumulator of a (row,
 * column) adds, for q = 0, 1, ...: x[32q + 2l]·W[32q + 2l], then
 * x[32q + 2l + 1]·W[32q + 2l + 1] (fused multiply-adds); k past K count as
 * zeros; the 16 lanes are added at the end as _mm512_reduce_add_ps does. x is
 * rearranged to match once per call (per 32 k: the 16 even, then the 16 odd).
 *
 * Every element is that one sum whatever the number of rows, their grouping
 * into register tiles or the columns a thread takes: a row's result is the
 * one-row product's (row-stable). A register tile is up to 8 rows by up to 8
 * columns (24 accumulators from 3 rows on): each W vector, widened once,
 * serves all rows of the tile; with more than 8 rows, W is taken a block of
 * columns at a time that stays in L2 while each group of rows passes over it,
 * so that it streams from memory once. */
#include "kernels/cpu/matmul_impl.h"

#include <math.h>
#include <string.h>

/* ---- the reference --------------------------------------------------------- */

/* the lanes added as _mm512_reduce_add_ps adds them (halves, then quarters, ...) */
static float reduce16(const float *v) {
    float a[8], b[4];
    for (int i = 0; i < 8; i++) a[i] = v[i + 8] + v[i];
    for (int i = 0; i < 4; i++) b[i] = a[i + 4] + a[i];
    return (b[0] + b[2]) + (b[1] + b[3]);
}

void yf_gemv_bf16_ref(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    YF_CHECK(g->bt == YF_BF16 && g->brs == 1 && g->acs == 1);
    const uint16_t *w = g->b;
    for (int64_t m = m0; m < m1; m++) {
        const float *x = g->a + m * g->ars;
        for (int64_t n = n0; n < n1; n++) {
            const uint16_t *wr = w + n * g->bcs;
            float lane[16] = {0};
            for (int64_t q = 0; q < g->K; q += 32)
                for (int odd = 0; odd < 2; odd++)
                    for (int l = 0; l < 16; l++) {
                        int64_t k = q + 2 * l + odd;
                        float xv = k < g->K ? x[k] : 0, wv = k < g->K ? yf_bf16_to_f32(wr[k]) : 0;
                        lane[l] = fmaf(xv, wv, lane[l]);
                    }
            float s = reduce16(lane), *cp = g->c + m * g->ldc + n;
            *cp = g->accumulate ? *cp + s : s;
        }
    }
}

#if YF_CC_AVX512
#include <immintrin.h>

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define INLINE AVX512_TARGET static inline __attribute__((always_inline))

enum { MAXR = 8 };

static inline __mmask32 mask32(int64_t n) { return n >= 32 ? 0xffffffffu : n <= 0 ? 0 : (__mmask32)((1u << n) - 1); }

/* x's rows m0..m0+mm in the pair order, K rounded up to kp (a multiple of 32)
 * with zeros, interleaved by steps: step q holds each row's 16 even then 16
 * odd values, row after row (xs + q * 32 * mm + m * 32) */
AVX512_TARGET static void pair_x(const yf_gemm *g, int64_t m0, int64_t mm, int64_t kp, float *xs) {
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    for (int64_t m = 0; m < mm; m++) {
        const float *x = g->a + (m0 + m) * g->ars;
        for (int64_t k = 0; k < kp; k += 32) {
            __mmask32 km = mask32(g->K - k);
            __m512 lo = _mm512_maskz_loadu_ps((__mmask16)km, x + k);
            __m512 hi = _mm512_maskz_loadu_ps((__mmask16)(km >> 16), x + k + 16);
            float *d = xs + k * mm + m * 32;
            _mm512_storeu_ps(d, _mm512_permutex2var_ps(lo, ev, hi));
            _mm512_storeu_ps(d + 16, _mm512_permutex2var_ps(lo, od, hi));
        }
    }
}

/* One step of 32 k at k for a tile of mm rows by nc columns (both constants
 * in each inlined copy, so that the accumulators stay in registers); W read
 * under the mask km. The even products first, then the odd: each W vector is
 * widened right before its FMAs, from W's line in L1. */
INLINE void pair_step(__m512 acc[MAXR][8], const uint16_t *w, int64_t bcs, const float *xs, int64_t k, const int mm,
                      const int nc, __mmask32 km) {
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    __m512 wv[8];
#pragma GCC unroll 8
    for (int j = 0; j < nc; j++) {
        _mm_prefetch((const char *)(w + j * bcs + k) + 512, _MM_HINT_T0);
        wv[j] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_maskz_loadu_epi16(km, w + j * bcs + k), 16));
    }
#pragma GCC unroll 8
    for (int m = 0; m < mm; m++) {
        __m512 x = _mm512_loadu_ps(xs + k * mm + m * 32);
#pragma GCC unroll 8
        for (int j = 0; j < nc; j++) acc[m][j] = _mm512_fmadd_ps(x, wv[j], acc[m][j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < nc; j++)
        wv[j] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_maskz_loadu_epi16(km, w + j * bcs + k), hi));
#pragma GCC unroll 8
    for (int m = 0; m < mm; m++) {
        __m512 x = _mm512_loadu_ps(xs + k * mm + m * 32 + 16);
#pragma GCC unroll 8
        for (int j = 0; j < nc; j++) acc[m][j] = _mm512_fmadd_ps(x, wv[j], acc[m][j]);
    }
}

/* C[m0 .. m0+mm, n .. n+nc] from xs (those rows, pair_x) */
INLINE void pair_tile(const yf_gemm *g, const float *xs, int64_t m0, const int mm, int64_t n, const int nc) {
    const int64_t K = g->K, bcs = g->bcs, kfull = K / 32 * 32;
    const uint16_t *w = (const uint16_t *)g->b + n * bcs;
    __m512 acc[MAXR][8];
#pragma GCC unroll 8
    for (int m = 0; m < mm; m++)
#pragma GCC unroll 8
        for (int j = 0; j < nc; j++) acc[m][j] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kfull; k += 32) pair_step(acc, w, bcs, xs, k, mm, nc, 0xffffffffu);
    if (kfull < K) pair_step(acc, w, bcs, xs, kfull, mm, nc, mask32(K - kfull));
#pragma GCC unroll 8
    for (int m = 0; m < mm; m++)
#pragma GCC unroll 8
        for (int j = 0; j < nc; j++) {
            float s = _mm512_reduce_add_ps(acc[m][j]), *cp = g->c + (m0 + m) * g->ldc + n + j;
            *cp = g->accumulate ? *cp + s : s;
        }
}

/* mm rows, columns n0..n1: whole tiles of NC columns, then one at a time */
#define PAIR_ROWS(mm, NC)                                                                                             \
    AVX512_TARGET static void pair_rows_##mm(const yf_gemm *g, const float *xs, int64_t m0, int64_t n0, int64_t n1) { \
        int64_t n = n0;                                                                                               \
        for (; n + NC <= n1; n += NC) pair_tile(g, xs, m0, mm, n, NC);                                                \
        for (; n < n1; n++) pair_tile(g, xs, m0, mm, n, 1);                                                           \
    }
PAIR_ROWS(1, 8)
PAIR_ROWS(2, 6)
PAIR_ROWS(3, 6)
PAIR_ROWS(4, 5)
PAIR_ROWS(5, 4)
PAIR_ROWS(6, 4)
PAIR_ROWS(7, 3)
PAIR_ROWS(8, 3)

typedef void (*pair_rows_fn)(const yf_gemm *, const float *, int64_t, int64_t, int64_t);
static const pair_rows_fn g_rows[MAXR + 1] = {NULL,       pair_rows_1, pair_rows_2, pair_rows_3, pair_rows_4,
                                              pair_rows_5, pair_rows_6, pair_rows_7, pair_rows_8};

void yf_gemv_bf16_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    if (m1 <= m0 || n1 <= n0) return;
    YF_CHECK(g->bt == YF_BF16 && g->brs == 1 && g->acs == 1);
    int64_t M = m1 - m0, kp = (g->K + 31) / 32 * 32;
    float *xs = yf_scratch(0, (size_t)(M * kp) * sizeof(float));
    /* groups of at most 8 rows, as even as can be (16 = 8 + 8, 12 = 6 + 6) */
    int64_t groups = (M + MAXR - 1) / MAXR, rows[64];
    YF_CHECK(groups <= 64);
    for (int64_t gi = 0, r = 0; gi < groups; r += rows[gi], gi++) {
        rows[gi] = (M - r) / (groups - gi) + ((M - r) % (groups - gi) != 0);
        pair_x(g, m0 + r, rows[gi], kp, xs + r * kp);
    }
    /* with one group W streams once anyway; with more, a block of columns
     * (~256 KiB of W, a multiple of 24 columns) at a time that stays in L2
     * while each group passes over it */
    int64_t nb = n1 - n0;
    if (groups > 1) {
        nb = ((int64_t)256 << 10) / (g->K * 2) / 24 * 24;
        if (nb < 24) nb = 24;
    }
    for (int64_t n = n0; n < n1; n += nb) {
        int64_t ne = n1 - n < nb ? n1 : n + nb;
        for (int64_t gi = 0, r = 0; gi < groups; r += rows[gi], gi++) g_rows[rows[gi]](g, xs + r * kp, m0 + r, n, ne);
    }
}

#else
void yf_gemv_bf16_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    (void)g, (void)m0, (void)m1, (void)n0, (void)n1;
    YF_CHECK(!"AVX-512 path not compiled in");
}
#endif
