/* gemv_bf16: the few-row products x·W^T with bf16 W on AVX-512 and AVX2
 * (decode steps of up to YF_ROWSTABLE_M sequences, the LM head of a decode
 * step), and the scalar reference that computes the same sums in the same
 * order. Described for AVX-512; AVX2 is the same with 8 lanes (a 32-byte
 * load, steps of 16 k, the lanes added as the last three levels below).
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

/* the lanes added as _mm512_reduce_add_ps adds them: halves (v[i] + v[i +
 * 8]), then quarters, then (v0 + v2) + (v1 + v3); 8 lanes from the second */
static float reduce_lanes(float *v, int lanes) {
    for (int h = lanes / 2; h >= 4; h /= 2)
        for (int i = 0; i < h; i++) v[i] = v[i + h] + v[i];
    return (v[0] + v[2]) + (v[1] + v[3]);
}

void yf_gemv_bf16_ref(const yf_gemm *g, int lanes, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    YF_CHECK(g->bt == YF_BF16 && g->brs == 1 && g->acs == 1 && (lanes == 16 || lanes == 8));
    const uint16_t *w = g->b;
    for (int64_t m = m0; m < m1; m++) {
        const float *x = g->a + m * g->ars;
        for (int64_t n = n0; n < n1; n++) {
            const uint16_t *wr = w + n * g->bcs;
            float lane[16] = {0};
            for (int64_t q = 0; q < g->K; q += 2 * lanes)
                for (int odd = 0; odd < 2; odd++)
                    for (int l = 0; l < lanes; l++) {
                        int64_t k = q + 2 * l + odd;
                        float xv = k < g->K ? x[k] : 0, wv = k < g->K ? yf_bf16_to_f32(wr[k]) : 0;
                        lane[l] = fmaf(xv, wv, lane[l]);
                    }
            float s = reduce_lanes(lane, lanes), *cp = g->c + m * g->ldc + n;
            *cp = g->accumulate ? *cp + s : s;
        }
    }
}

#if YF_CC_AVX2
#include <immintrin.h>
#endif

/* ---- the driver, for either width --------------------------------------- */

/* x's rows m0..m0+mm in the pair order of steps of `step` k (kp, a multiple
 * of it, with zeros past K), interleaved by steps: step q holds each row's
 * step/2 even then step/2 odd values, row after row (xs + q step mm + m step) */
static void pair_x(const yf_gemm *g, int64_t m0, int64_t mm, int64_t kp, int step, float *xs) {
    int half = step / 2;
    for (int64_t m = 0; m < mm; m++) {
        const float *x = g->a + (m0 + m) * g->ars;
        for (int64_t k = 0; k < kp; k += step) {
            float *d = xs + k * mm + m * step;
            for (int l = 0; l < step; l++) {
                int64_t kk = k + 2 * (l % half) + l / half;
                d[l] = kk < g->K ? x[kk] : 0;
            }
        }
    }
}

/* pair_rows(g, xs, m0, n0, n1): a group of rows (xs: pair_x's), columns n0..n1 */
typedef void (*pair_rows_fn)(const yf_gemm *, const float *, int64_t, int64_t, int64_t);

/* Rows in groups of at most maxr, as even as can be (16 = 8 + 8, 12 = 6 + 6;
 * rows[r] the kernel of r rows); with one group W streams once anyway; with
 * more, a block of columns at a time (~256 KiB of W, a multiple of 24) that
 * stays in L2 while each group passes over it. */
static void pair_run(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1, int step, int maxr,
                     const pair_rows_fn *rows_fn) {
    if (m1 <= m0 || n1 <= n0) return;
    YF_CHECK(g->bt == YF_BF16 && g->brs == 1 && g->acs == 1);
    int64_t M = m1 - m0, kp = (g->K + step - 1) / step * step;
    float *xs = yf_scratch(0, (size_t)(M * kp) * sizeof(float));
    int64_t groups = (M + maxr - 1) / maxr, rows[64];
    YF_CHECK(groups <= 64);
    for (int64_t gi = 0, r = 0; gi < groups; r += rows[gi], gi++) {
        rows[gi] = (M - r) / (groups - gi) + ((M - r) % (groups - gi) != 0);
        pair_x(g, m0 + r, rows[gi], kp, step, xs + r * kp);
    }
    int64_t nb = n1 - n0;
    if (groups > 1) {
        nb = ((int64_t)256 << 10) / (g->K * 2) / 24 * 24;
        if (nb < 24) nb = 24;
    }
    for (int64_t n = n0; n < n1; n += nb) {
        int64_t ne = n1 - n < nb ? n1 : n + nb;
        for (int64_t gi = 0, r = 0; gi < groups; r += rows[gi], gi++) rows_fn[rows[gi]](g, xs + r * kp, m0 + r, n, ne);
    }
}

#if YF_CC_AVX512

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define INLINE AVX512_TARGET static inline __attribute__((always_inline))

enum { MAXR = 8 }; /* rows of a register tile */

static inline __mmask32 mask32(int64_t n) { return n >= 32 ? 0xffffffffu : n <= 0 ? 0 : (__mmask32)((1u << n) - 1); }

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

static const pair_rows_fn g_rows[MAXR + 1] = {NULL,       pair_rows_1, pair_rows_2, pair_rows_3, pair_rows_4,
                                              pair_rows_5, pair_rows_6, pair_rows_7, pair_rows_8};

void yf_gemv_bf16_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    pair_run(g, m0, m1, n0, n1, 32, MAXR, g_rows);
}

#else
void yf_gemv_bf16_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    (void)g, (void)m0, (void)m1, (void)n0, (void)n1;
    YF_CHECK(!"AVX-512 path not compiled in");
}
#endif

/* ---- AVX2: 8 lanes, steps of 16 k ------------------------------------------ */

#if YF_CC_AVX2
#define AVX2_TARGET __attribute__((target("avx2,fma")))
#define INLINE2 AVX2_TARGET static inline __attribute__((always_inline))

enum { MAXR2 = 3 }; /* rows of a register tile (16 ymm: 9 accumulators) */

/* One step of 16 k at k (pair_step with 8 lanes); W as bf16 rows bcs apart */
INLINE2 void pair_step8(__m256 acc[MAXR2][6], const uint16_t *w, int64_t bcs, const float *xs, int64_t k,
                        const int mm, const int nc, const bool pf) {
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    __m256 wv[6];
#pragma GCC unroll 6
    for (int j = 0; j < nc; j++) {
        if (pf && k % 32 == 0) _mm_prefetch((const char *)(w + j * bcs + k) + 512, _MM_HINT_T0);
        wv[j] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(w + j * bcs + k)), 16));
    }
#pragma GCC unroll 3
    for (int m = 0; m < mm; m++) {
        __m256 x = _mm256_loadu_ps(xs + k * mm + m * 16);
#pragma GCC unroll 6
        for (int j = 0; j < nc; j++) acc[m][j] = _mm256_fmadd_ps(x, wv[j], acc[m][j]);
    }
#pragma GCC unroll 6
    for (int j = 0; j < nc; j++)
        wv[j] = _mm256_castsi256_ps(_mm256_and_si256(_mm256_loadu_si256((const __m256i *)(w + j * bcs + k)), hi));
#pragma GCC unroll 3
    for (int m = 0; m < mm; m++) {
        __m256 x = _mm256_loadu_ps(xs + k * mm + m * 16 + 8);
#pragma GCC unroll 6
        for (int j = 0; j < nc; j++) acc[m][j] = _mm256_fmadd_ps(x, wv[j], acc[m][j]);
    }
}

/* the 8 lanes added as reduce_lanes adds them */
INLINE2 float reduce8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

INLINE2 void pair_tile8(const yf_gemm *g, const float *xs, int64_t m0, const int mm, int64_t n, const int nc) {
    const int64_t K = g->K, bcs = g->bcs, kfull = K / 16 * 16;
    const uint16_t *w = (const uint16_t *)g->b + n * bcs;
    __m256 acc[MAXR2][6];
#pragma GCC unroll 3
    for (int m = 0; m < mm; m++)
#pragma GCC unroll 6
        for (int j = 0; j < nc; j++) acc[m][j] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kfull; k += 16) pair_step8(acc, w, bcs, xs, k, mm, nc, true);
    if (kfull < K) { /* the last k, zero padded: nothing read past a row */
        uint16_t t[6][16];
        memset(t, 0, sizeof t);
        for (int j = 0; j < nc; j++) memcpy(t[j], w + j * bcs + kfull, (size_t)(K - kfull) * sizeof(uint16_t));
        pair_step8(acc, &t[0][0], 16, xs + kfull * mm, 0, mm, nc, false);
    }
#pragma GCC unroll 3
    for (int m = 0; m < mm; m++)
#pragma GCC unroll 6
        for (int j = 0; j < nc; j++) {
            float s = reduce8(acc[m][j]), *cp = g->c + (m0 + m) * g->ldc + n + j;
            *cp = g->accumulate ? *cp + s : s;
        }
}

#define PAIR8_ROWS(mm, NC)                                                                                            \
    AVX2_TARGET static void pair8_rows_##mm(const yf_gemm *g, const float *xs, int64_t m0, int64_t n0, int64_t n1) { \
        int64_t n = n0;                                                                                               \
        for (; n + NC <= n1; n += NC) pair_tile8(g, xs, m0, mm, n, NC);                                               \
        for (; n < n1; n++) pair_tile8(g, xs, m0, mm, n, 1);                                                          \
    }
PAIR8_ROWS(1, 6)
PAIR8_ROWS(2, 4)
PAIR8_ROWS(3, 3)

static const pair_rows_fn g_rows8[MAXR2 + 1] = {NULL, pair8_rows_1, pair8_rows_2, pair8_rows_3};

void yf_gemv_bf16_avx2(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    pair_run(g, m0, m1, n0, n1, 16, MAXR2, g_rows8);
}

#else
void yf_gemv_bf16_avx2(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    (void)g, (void)m0, (void)m1, (void)n0, (void)n1;
    YF_CHECK(!"AVX2 path not compiled in");
}
#endif
