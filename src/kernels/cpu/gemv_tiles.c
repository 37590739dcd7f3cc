/* gemv_tiles: the few-row products x·W^T (W's rows contiguous along k) on
 * AVX-512 and AVX2: decode steps of up to YF_ROWSTABLE_M sequences and their
 * LM head. W is bf16 or f32; the scalar reference computes the same sums in
 * the same order.
 *
 * The order of an element's sum, for L lanes (16 on AVX-512, 8 on AVX2):
 * lane l of the accumulator of a (row, column) adds, by fused multiply-adds,
 *   f32 W:  x[qL + l]·W[qL + l] for q = 0, 1, ... (the last step masked);
 *   bf16 W, the pair order: x[2qL + 2l]·W[..], then x[2qL + 2l + 1]·W[..].
 *     A load of 2L bf16 weights holds two to a 32-bit lane; as fp32 the high
 *     halves (odd k: lane & 0xffff0000) and the low halves shifted up (even
 *     k: lane << 16) are two vectors at one instruction each, where widening
 *     L bf16 in k order takes two, one a shuffle on a port the FMAs need.
 * k past K count as zeros; then the lanes are added as _mm512_reduce_add_ps
 * adds them (halves, quarters, then (v0 + v2) + (v1 + v3); AVX2 from the
 * quarters). x is copied once per call into that order (xs). In bf16 mode
 * with the bf16 dot kernel (kernels.h) a bf16 W takes the dot form instead:
 * x rounded to bf16, each lane's pair of products added by vdpbf16ps (no
 * reference order: it is tested against double sums).
 *
 * Every element is that one sum whatever the number of rows, their grouping
 * into register tiles or the columns a thread takes: a row's result is the
 * one-row product's (row-stable). A register tile is up to 8 rows by 3-8
 * columns on AVX-512 (3 by 3-6 on AVX2): each W vector, loaded (and widened)
 * once, serves all rows of the tile; with more rows than a tile, W is taken
 * a block of columns at a time that stays in L2 while each group of rows
 * passes over it, so that it streams from memory once. A tile prefetches the
 * next tile's W while it reads its own (yf_prefetch_ahead). */
#include "kernels/cpu/matmul_impl.h"

#include <math.h>
#include <string.h>

/* C[m, n] = s, or += s when the product accumulates */
static inline void put_sum(const yf_gemm *g, int64_t m, int64_t n, float s) {
    float *cp = g->c + m * g->ldc + n;
    *cp = g->accumulate ? *cp + s : s;
}

/* ---- the reference --------------------------------------------------------- */

/* the lanes added as _mm512_reduce_add_ps adds them: halves (v[i] + v[i +
 * 8]), then quarters, then (v0 + v2) + (v1 + v3); 8 lanes from the second */
static float reduce_lanes(float *v, int lanes) {
    for (int h = lanes / 2; h >= 4; h /= 2)
        for (int i = 0; i < h; i++) v[i] = v[i + h] + v[i];
    return (v[0] + v[2]) + (v[1] + v[3]);
}

void yf_gemv_tiles_ref(const yf_gemm *g, int lanes, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    YF_CHECK(g->brs == 1 && g->acs == 1 && (lanes == 16 || lanes == 8));
    bool bf = g->bt == YF_BF16;
    int64_t step = bf ? 2 * lanes : lanes;
    for (int64_t m = m0; m < m1; m++) {
        const float *x = g->a + m * g->ars;
        for (int64_t n = n0; n < n1; n++) {
            float lane[16] = {0};
            for (int64_t q = 0; q < g->K; q += step)
                for (int part = 0; part < (bf ? 2 : 1); part++)
                    for (int l = 0; l < lanes; l++) {
                        int64_t k = bf ? q + 2 * l + part : q + l;
                        float xv = k < g->K ? x[k] : 0, wv = k < g->K ? yf_gemm_bget(g, k, n) : 0;
                        lane[l] = fmaf(xv, wv, lane[l]);
                    }
            put_sum(g, m, n, reduce_lanes(lane, lanes));
        }
    }
}

#if YF_CC_AVX2
#include <immintrin.h>
#endif

/* ---- the driver, for either width --------------------------------------- */

/* How the kernels read x: as floats in k order (f32 W), as floats with
 * each step's even k first (bf16 W), or rounded to bf16 in k order (the
 * bf16 dot kernel: bf16 W in bf16 mode). */
typedef enum { X_F32, X_PAIRS, X_BF16 } x_form;

#if YF_CC_AVX512
#define X512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

static inline __mmask32 mask32(int64_t n) { return n >= 32 ? 0xffffffffu : n <= 0 ? 0 : (__mmask32)((1u << n) - 1); }

/* tiles_x's steps of 32 k for one row x (K of them) with AVX-512: X_PAIRS
 * (each step's 16 even k, then its 16 odd) or X_BF16 (yf_f32_to_bf16's
 * rounding, lane by lane: the same bits), step q at d + q stride floats. x is
 * prepared once per call, but with few columns a thread that is a sizeable
 * part of the product. */
X512_TARGET static void x_steps_avx512(const float *x, int64_t K, int64_t kp, x_form form, float *d, int64_t stride) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int64_t k = 0; k < kp; k += 32, d += stride) {
        __mmask32 km = mask32(K - k); /* k < K: kp is K rounded up to the step */
        __m512 a = _mm512_maskz_loadu_ps((__mmask16)km, x + k);
        __m512 b = _mm512_maskz_loadu_ps((__mmask16)(km >> 16), x + k + 16);
        if (form == X_PAIRS) {
            _mm512_storeu_ps(d, _mm512_permutex2var_ps(a, even, b));
            _mm512_storeu_ps(d + 16, _mm512_permutex2var_ps(a, odd, b));
            continue;
        }
        __m256i h[2];
        for (int i = 0; i < 2; i++) { /* round to nearest even; a NaN stays NaN (quieted) */
            __m512i u = _mm512_castps_si512(i ? b : a);
            __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                                             _mm512_and_si512(_mm512_srli_epi32(u, 16),
                                                                              _mm512_set1_epi32(1))));
            __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                   _mm512_set1_epi32(0x7f800000));
            r = _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x400000)); /* (u >> 16) | 0x40, shifted up */
            h[i] = _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
        }
        _mm256_storeu_si256((__m256i *)d, h[0]);
        _mm256_storeu_si256((__m256i *)d + 1, h[1]);
    }
}
#endif

/* x's rows m0..m0+mm in the order of steps of `step` k (kp, a multiple of
 * it, with zeros past K): k order, or with pairs its step/2 even then step/2
 * odd k; interleaved by steps, row after row (xs + q step mm + m step, in
 * floats, or in bf16 for X_BF16) */
static void tiles_x(const yf_gemm *g, int64_t m0, int64_t mm, int64_t kp, int step, x_form form, float *xs) {
    int half = step / 2;
    for (int64_t m = 0; m < mm; m++) {
        const float *x = g->a + (m0 + m) * g->ars;
#if YF_CC_AVX512
        if (step == 32 && form != X_F32) { /* the AVX-512 tiles' steps; in floats, X_BF16's take 16 */
            int64_t e = form == X_BF16 ? 16 : 32;
            x_steps_avx512(x, g->K, kp, form, xs + m * e, mm * e);
            continue;
        }
#endif
        for (int64_t k = 0; k < kp; k += step) {
            float *d = xs + k * mm + m * step;
            int64_t have = g->K - k < step ? g->K - k : step; /* k < K from here on */
            if (form == X_BF16) {
                uint16_t *h = (uint16_t *)xs + k * mm + m * step;
                for (int64_t l = 0; l < step; l++) h[l] = l < have ? yf_f32_to_bf16(x[k + l]) : 0;
                continue;
            }
            if (form == X_F32) {
                memcpy(d, x + k, (size_t)have * sizeof(float));
                for (int64_t l = have; l < step; l++) d[l] = 0;
                continue;
            }
            for (int l = 0; l < half; l++) { /* the even k, then the odd */
                d[l] = 2 * l < have ? x[k + 2 * l] : 0;
                d[half + l] = 2 * l + 1 < have ? x[k + 2 * l + 1] : 0;
            }
        }
    }
}

/* x's vector in a register before its FMAs. Without this GCC folds the load
 * into each of the tile's nc FMAs: nc 64-byte loads where one does, and on a
 * core that takes one such load a cycle (Zen 4) the loads, not the FMAs, set
 * the pace. The AVX2 tiles keep the folded 32-byte loads, which measured
 * faster there (docs/performance.md). */
#define IN_REG(v) __asm__("" : "+v"(v))

/* Whether a tile of nc columns (esz bytes an element) prefetches into L1:
 * only the next tile's W (ahead == nc), and only when that fits beside its
 * own (yf_prefetch_ahead); a column block ahead goes to L2 */
static inline bool ahead_in_l1(int64_t ahead, int nc, int64_t bcs, int esz) {
    return ahead == nc && nc * bcs * esz <= YF_PREFETCH_L1;
}

/* rows(g, xs, m0, n0, n1, ahead): a group of rows (xs: tiles_x's), columns
 * n0..n1; each tile prefetches the W `ahead` columns on (0: the next tile's) */
typedef void (*tiles_rows_fn)(const yf_gemm *, const float *, int64_t, int64_t, int64_t, int64_t);

/* The rows function `name` of an ISA (its target attribute and its tile
 * function TILE(g, xs, m0, mm, n, nc, bf, ahead)): mm rows, columns n0..n1
 * in whole tiles of NC columns, then one at a time; mm, NC and bf constants. */
#define TILES_ROWS_FN(TARGET, TILE, name, mm, NC, bf)                                                              \
    TARGET static void name(const yf_gemm *g, const float *xs, int64_t m0, int64_t n0, int64_t n1,               \
                            int64_t ahead) {                                                                      \
        int64_t n = n0;                                                                                           \
        for (; n + (NC) <= n1; n += (NC)) TILE(g, xs, m0, mm, n, NC, bf, ahead ? ahead : (NC));                   \
        for (; n < n1; n++) TILE(g, xs, m0, mm, n, 1, bf, ahead ? ahead : 1);                                     \
    }

/* the rows of group gi of groups, r rows of M before it: the rest shared as
 * evenly as can be, the larger groups first */
static int64_t group_rows(int64_t M, int64_t r, int64_t groups, int64_t gi) {
    return (M - r) / (groups - gi) + ((M - r) % (groups - gi) != 0);
}

/* Rows in groups of at most maxr, as even as can be (16 = 8 + 8, 12 = 6 + 6;
 * rows_fn[r] the kernel of r rows); with one group W streams once anyway;
 * with more, a block of columns at a time (~256 KiB of W, a multiple of 24)
 * that stays in L2 while each group passes over it, and every pass
 * prefetches the next block into L2 (the first group would otherwise wait
 * for memory while the others leave it idle). step: k a step of the kernels
 * takes (bf16: two vectors' worth). */
static void tiles_run(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1, int step, int maxr,
                      const tiles_rows_fn *rows_fn, x_form form) {
    if (m1 <= m0 || n1 <= n0) return;
    YF_CHECK(g->brs == 1 && g->acs == 1 && (g->bt == YF_BF16 || g->bt == YF_F32));
    int64_t M = m1 - m0, kp = (g->K + step - 1) / step * step;
    float *xs = yf_scratch(0, (size_t)(M * kp) * sizeof(float));
    int64_t groups = (M + maxr - 1) / maxr;
    for (int64_t gi = 0, r = 0; gi < groups; r += group_rows(M, r, groups, gi), gi++)
        tiles_x(g, m0 + r, group_rows(M, r, groups, gi), kp, step, form, xs + r * kp);
    int64_t nb = n1 - n0;
    if (groups > 1) {
        nb = ((int64_t)256 << 10) / (g->K * (g->bt == YF_BF16 ? 2 : 4)) / 24 * 24;
        if (nb < 24) nb = 24;
    }
    for (int64_t n = n0; n < n1; n += nb) {
        int64_t ne = n1 - n < nb ? n1 : n + nb;
        for (int64_t gi = 0, r = 0; gi < groups; r += group_rows(M, r, groups, gi), gi++)
            rows_fn[group_rows(M, r, groups, gi)](g, xs + r * kp, m0 + r, n, ne, groups > 1 ? nb : 0);
    }
}

#if YF_CC_AVX512

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define INLINE AVX512_TARGET static inline __attribute__((always_inline))

enum { MAXR = 8 }; /* rows of a register tile */


/* One step of 32 k at k for a tile of mm rows by nc columns (both constants
 * in each inlined copy, so that the accumulators stay in registers); W read
 * under the mask km. The even products first, then the odd: each W vector is
 * widened right before its FMAs, from W's line in L1. */
INLINE void pair_step(__m512 acc[MAXR][8], const uint16_t *w, int64_t bcs, const float *xs, int64_t k, const int mm,
                      const int nc, __mmask32 km, const uint16_t *next, bool l1) {
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    __m512 wv[8];
#pragma GCC unroll 8
    for (int j = 0; j < nc; j++) {
        yf_prefetch_ahead(next, k * nc * 2 + j * 64, l1);
        wv[j] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_maskz_loadu_epi16(km, w + j * bcs + k), 16));
    }
#pragma GCC unroll 8
    for (int m = 0; m < mm; m++) {
        __m512 x = _mm512_loadu_ps(xs + k * mm + m * 32);
        IN_REG(x);
#pragma GCC unroll 8
        for (int j = 0; j < nc; j++) acc[m][j] = _mm512_fmadd_ps(x, wv[j], acc[m][j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < nc; j++)
        wv[j] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_maskz_loadu_epi16(km, w + j * bcs + k), hi));
#pragma GCC unroll 8
    for (int m = 0; m < mm; m++) {
        __m512 x = _mm512_loadu_ps(xs + k * mm + m * 32 + 16);
        IN_REG(x);
#pragma GCC unroll 8
        for (int j = 0; j < nc; j++) acc[m][j] = _mm512_fmadd_ps(x, wv[j], acc[m][j]);
    }
}

/* One step of 16 k at k with f32 W, under the mask km */
INLINE void f32_step(__m512 acc[MAXR][8], const float *w, int64_t bcs, const float *xs, int64_t k, const int mm,
                     const int nc, __mmask16 km, const float *next, bool l1) {
    __m512 wv[8];
#pragma GCC unroll 8
    for (int j = 0; j < nc; j++) {
        yf_prefetch_ahead(next, k * nc * 4 + j * 64, l1);
        wv[j] = _mm512_maskz_loadu_ps(km, w + j * bcs + k);
    }
#pragma GCC unroll 8
    for (int m = 0; m < mm; m++) {
        __m512 x = _mm512_loadu_ps(xs + k * mm + m * 16);
        IN_REG(x);
#pragma GCC unroll 8
        for (int j = 0; j < nc; j++) acc[m][j] = _mm512_fmadd_ps(x, wv[j], acc[m][j]);
    }
}

/* The lane sums of 16 vectors v[0..15], each added in the tree of
 * _mm512_reduce_add_ps (halves, quarters, then (v0 + v2) + (v1 + v3)), but
 * the 16 together: lane 4b + r of the result is the sum of v[4r + b]. Each
 * step adds the two halves of pairs of vectors brought together by one
 * shuffle each, ~3 instructions a sum where one reduce takes ~8. */
INLINE __m512 reduce16(const __m512 v[16]) {
    __m512 u[8], w[4], y[2];
#pragma GCC unroll 8
    for (int p = 0; p < 8; p++) /* halves: [v(2p)[i] + v(2p)[i + 8], v(2p+1)[i] + v(2p+1)[i + 8]] */
        u[p] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0xee));
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) /* quarters: 128-bit block b of w[r] is v(4r + b)'s four partials */
        w[r] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * r], u[2 * r + 1], 0x88),
                             _mm512_shuffle_f32x4(u[2 * r], u[2 * r + 1], 0xdd));
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) /* (p0 + p2), (p1 + p3) of w[2h] and w[2h + 1], in each block */
        y[h] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * h], w[2 * h + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(w[2 * h], w[2 * h + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_ps(y[0], y[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* C[m0 .. m0+mm, n .. n+nc] from a tile's accumulators: each the sum of its
 * lanes (reduce16's order, or _mm512_reduce_add_ps's, the same) */
INLINE void tile_sums(const yf_gemm *g, __m512 acc[MAXR][8], int64_t m0, const int mm, int64_t n, const int nc) {
    /* the accumulators in row order, 16 at a time (padded with zeros); fewer
     * than 8 left: one at a time */
    const int na = mm * nc;
#pragma GCC unroll 2
    for (int a0 = 0; a0 < na; a0 += 16) {
        const bool joint = na - a0 >= 8;
        float sums[16];
        if (joint) {
            __m512 v[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) v[i] = a0 + i < na ? acc[(a0 + i) / nc][(a0 + i) % nc] : _mm512_setzero_ps();
            _mm512_storeu_ps(sums, reduce16(v));
        }
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            if (a0 + i >= na) break;
            int m = (a0 + i) / nc, j = (a0 + i) % nc;
            put_sum(g, m0 + m, n + j, joint ? sums[4 * (i % 4) + i / 4] : _mm512_reduce_add_ps(acc[m][j]));
        }
    }
}

/* C[m0 .. m0+mm, n .. n+nc] from xs (those rows, tiles_x); bf: bf16 W (a
 * constant in each inlined copy, as mm and nc); the W of the nc columns
 * `ahead` columns on is prefetched meanwhile */
INLINE void tile(const yf_gemm *g, const float *xs, int64_t m0, const int mm, int64_t n, const int nc, const bool bf,
                 int64_t ahead) {
    const int64_t K = g->K, bcs = g->bcs, step = bf ? 32 : 16, kfull = K / step * step;
    const bool l1 = ahead_in_l1(ahead, nc, bcs, bf ? 2 : 4);
    __m512 acc[MAXR][8];
#pragma GCC unroll 8
    for (int m = 0; m < mm; m++)
#pragma GCC unroll 8
        for (int j = 0; j < nc; j++) acc[m][j] = _mm512_setzero_ps();
    if (bf) {
        const uint16_t *w = (const uint16_t *)g->b + n * bcs;
        for (int64_t k = 0; k < kfull; k += 32) pair_step(acc, w, bcs, xs, k, mm, nc, 0xffffffffu, w + ahead * bcs, l1);
        if (kfull < K) pair_step(acc, w, bcs, xs, kfull, mm, nc, mask32(K - kfull), w + ahead * bcs, l1);
    } else {
        const float *w = (const float *)g->b + n * bcs;
        for (int64_t k = 0; k < kfull; k += 16) f32_step(acc, w, bcs, xs, k, mm, nc, 0xffff, w + ahead * bcs, l1);
        if (kfull < K) f32_step(acc, w, bcs, xs, kfull, mm, nc, (__mmask16)mask32(K - kfull), w + ahead * bcs, l1);
    }
    tile_sums(g, acc, m0, mm, n, nc);
}

/* ---- the bf16 dot form (bf16 W in bf16 mode, yf_kernels_bf16_dot) ----------
 * x rounded to bf16 (X_BF16), W's bf16 as they are: lane l of an
 * accumulator adds x[32q + 2l]·W[..] + x[32q + 2l + 1]·W[..] by vdpbf16ps, a
 * step of 32 k one instruction a (row, column) where the fp32 form takes two
 * FMAs and two widenings; the lanes reduced as above. Row-stable as well. */
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

BF16_TARGET static inline __attribute__((always_inline)) void dot_step(__m512 acc[MAXR][8], const uint16_t *w,
                                                                        int64_t bcs, const uint16_t *xs, int64_t k,
                                                                        const int mm, const int nc, __mmask32 km,
                                                                        const uint16_t *next, bool l1) {
    __m512bh wv[8];
#pragma GCC unroll 8
    for (int j = 0; j < nc; j++) {
        yf_prefetch_ahead(next, k * nc * 2 + j * 64, l1);
        wv[j] = (__m512bh)_mm512_maskz_loadu_epi16(km, w + j * bcs + k);
    }
#pragma GCC unroll 8
    for (int m = 0; m < mm; m++) {
        __m512bh x = (__m512bh)_mm512_loadu_si512(xs + k * mm + m * 32);
        IN_REG(x);
#pragma GCC unroll 8
        for (int j = 0; j < nc; j++) acc[m][j] = _mm512_dpbf16_ps(acc[m][j], x, wv[j]);
    }
}

BF16_TARGET static inline __attribute__((always_inline)) void tile_dot(const yf_gemm *g, const float *xs, int64_t m0,
                                                                        const int mm, int64_t n, const int nc,
                                                                        const bool bf, int64_t ahead) {
    (void)bf;
    const int64_t K = g->K, bcs = g->bcs, kfull = K / 32 * 32;
    const uint16_t *x16 = (const uint16_t *)xs, *w = (const uint16_t *)g->b + n * bcs, *next = w + ahead * bcs;
    const bool l1 = ahead_in_l1(ahead, nc, bcs, 2);
    __m512 acc[MAXR][8];
#pragma GCC unroll 8
    for (int m = 0; m < mm; m++)
#pragma GCC unroll 8
        for (int j = 0; j < nc; j++) acc[m][j] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kfull; k += 32) dot_step(acc, w, bcs, x16, k, mm, nc, 0xffffffffu, next, l1);
    if (kfull < K) dot_step(acc, w, bcs, x16, kfull, mm, nc, mask32(K - kfull), next, l1);
    tile_sums(g, acc, m0, mm, n, nc);
}

#define TILE_DOT_ROWS(mm, NC) TILES_ROWS_FN(BF16_TARGET, tile_dot, dot_rows_##mm, mm, NC, true)
TILE_DOT_ROWS(1, 8)
TILE_DOT_ROWS(2, 6)
TILE_DOT_ROWS(3, 6)
TILE_DOT_ROWS(4, 5)
TILE_DOT_ROWS(5, 4)
TILE_DOT_ROWS(6, 4)
TILE_DOT_ROWS(7, 3)
TILE_DOT_ROWS(8, 3)
static const tiles_rows_fn g_dot_rows[MAXR + 1] = {NULL,       dot_rows_1, dot_rows_2, dot_rows_3, dot_rows_4,
                                                   dot_rows_5, dot_rows_6, dot_rows_7, dot_rows_8};

/* bf16 and f32 rows functions of mm rows, tiles of NC columns */
#define TILE_ROWS(mm, NC)                                                                                             \
    TILES_ROWS_FN(AVX512_TARGET, tile, bf16_rows_##mm, mm, NC, true)                                                  \
    TILES_ROWS_FN(AVX512_TARGET, tile, f32_rows_##mm, mm, NC, false)
TILE_ROWS(1, 8)
TILE_ROWS(2, 6)
TILE_ROWS(3, 6)
TILE_ROWS(4, 5)
TILE_ROWS(5, 4)
TILE_ROWS(6, 4)
TILE_ROWS(7, 3)
TILE_ROWS(8, 3)

static const tiles_rows_fn g_bf16_rows[MAXR + 1] = {NULL,        bf16_rows_1, bf16_rows_2, bf16_rows_3, bf16_rows_4,
                                                    bf16_rows_5, bf16_rows_6, bf16_rows_7, bf16_rows_8};
static const tiles_rows_fn g_f32_rows[MAXR + 1] = {NULL,       f32_rows_1, f32_rows_2, f32_rows_3, f32_rows_4,
                                                   f32_rows_5, f32_rows_6, f32_rows_7, f32_rows_8};

void yf_gemv_tiles_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    bool bf = g->bt == YF_BF16;
    if (bf && yf_kernels_bf16_dot())
        tiles_run(g, m0, m1, n0, n1, 32, MAXR, g_dot_rows, X_BF16);
    else
        tiles_run(g, m0, m1, n0, n1, bf ? 32 : 16, MAXR, bf ? g_bf16_rows : g_f32_rows, bf ? X_PAIRS : X_F32);
}

#else
void yf_gemv_tiles_avx512(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    (void)g, (void)m0, (void)m1, (void)n0, (void)n1;
    YF_CHECK(!"AVX-512 path not compiled in");
}
#endif

/* ---- AVX2: 8 lanes ----------------------------------------------------------- */

#if YF_CC_AVX2
#include "kernels/cpu/simd8.h" /* yf_hsum8: the lanes as reduce_lanes adds them */

#define AVX2_TARGET __attribute__((target("avx2,fma")))
#define INLINE2 AVX2_TARGET static inline __attribute__((always_inline))

enum { MAXR2 = 3 }; /* rows of a register tile (16 ymm: 9 accumulators) */

/* One step of 16 k at k (pair_step with 8 lanes); W as bf16 rows bcs apart */
INLINE2 void pair_step8(__m256 acc[MAXR2][6], const uint16_t *w, int64_t bcs, const float *xs, int64_t k,
                        const int mm, const int nc, const void *next, bool l1) {
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    __m256 wv[6];
#pragma GCC unroll 6
    for (int j = 0; j < nc; j++) {
        if (next && k % 32 == 0) yf_prefetch_ahead(next, k * nc * 2 + j * 64, l1);
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

/* One step of 8 k at k with f32 W */
INLINE2 void f32_step8(__m256 acc[MAXR2][6], const float *w, int64_t bcs, const float *xs, int64_t k, const int mm,
                       const int nc, const void *next, bool l1) {
    __m256 wv[6];
#pragma GCC unroll 6
    for (int j = 0; j < nc; j++) {
        if (next && k % 16 == 0) yf_prefetch_ahead(next, k * nc * 4 + j * 64, l1);
        wv[j] = _mm256_loadu_ps(w + j * bcs + k);
    }
#pragma GCC unroll 3
    for (int m = 0; m < mm; m++) {
        __m256 x = _mm256_loadu_ps(xs + k * mm + m * 8);
#pragma GCC unroll 6
        for (int j = 0; j < nc; j++) acc[m][j] = _mm256_fmadd_ps(x, wv[j], acc[m][j]);
    }
}

/* reduce16 with 8 lanes: the lane sums of v[0..7] in yf_hsum8's tree
 * (quarters, then (v0 + v2) + (v1 + v3)); lane 4b + r of the result is the
 * sum of v[2r + b]. */
INLINE2 __m256 reduce8x8(const __m256 v[8]) {
    __m256 u[4], y[2];
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) /* quarters: 128-bit block b of u[p] is v(2p + b)'s four partials */
        u[p] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * p], v[2 * p + 1], 0x20),
                             _mm256_permute2f128_ps(v[2 * p], v[2 * p + 1], 0x31));
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) /* (p0 + p2), (p1 + p3) of u[2h] and u[2h + 1], in each block */
        y[h] = _mm256_add_ps(_mm256_shuffle_ps(u[2 * h], u[2 * h + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(u[2 * h], u[2 * h + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm256_add_ps(_mm256_shuffle_ps(y[0], y[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm256_shuffle_ps(y[0], y[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

INLINE2 void tile8(const yf_gemm *g, const float *xs, int64_t m0, const int mm, int64_t n, const int nc,
                   const bool bf, int64_t ahead) {
    const int64_t K = g->K, bcs = g->bcs, step = bf ? 16 : 8, kfull = K / step * step;
    const bool l1 = ahead_in_l1(ahead, nc, bcs, bf ? 2 : 4);
    __m256 acc[MAXR2][6];
#pragma GCC unroll 3
    for (int m = 0; m < mm; m++)
#pragma GCC unroll 6
        for (int j = 0; j < nc; j++) acc[m][j] = _mm256_setzero_ps();
    /* the last step from a zero-padded copy: nothing read past a row */
    if (bf) {
        const uint16_t *w = (const uint16_t *)g->b + n * bcs;
        for (int64_t k = 0; k < kfull; k += 16) pair_step8(acc, w, bcs, xs, k, mm, nc, w + ahead * bcs, l1);
        if (kfull < K) {
            uint16_t t[6][16];
            memset(t, 0, sizeof t);
            for (int j = 0; j < nc; j++) memcpy(t[j], w + j * bcs + kfull, (size_t)(K - kfull) * sizeof(uint16_t));
            pair_step8(acc, &t[0][0], 16, xs + kfull * mm, 0, mm, nc, NULL, l1);
        }
    } else {
        const float *w = (const float *)g->b + n * bcs;
        for (int64_t k = 0; k < kfull; k += 8) f32_step8(acc, w, bcs, xs, k, mm, nc, w + ahead * bcs, l1);
        if (kfull < K) {
            float t[6][8];
            memset(t, 0, sizeof t);
            for (int j = 0; j < nc; j++) memcpy(t[j], w + j * bcs + kfull, (size_t)(K - kfull) * sizeof(float));
            f32_step8(acc, &t[0][0], 8, xs + kfull * mm, 0, mm, nc, NULL, l1);
        }
    }
    /* the accumulators in row order, 8 at a time; fewer than 4 left: one at a time */
    const int na = mm * nc;
#pragma GCC unroll 2
    for (int a0 = 0; a0 < na; a0 += 8) {
        const bool joint = na - a0 >= 4;
        float sums[8];
        if (joint) {
            __m256 v[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) v[i] = a0 + i < na ? acc[(a0 + i) / nc][(a0 + i) % nc] : _mm256_setzero_ps();
            _mm256_storeu_ps(sums, reduce8x8(v));
        }
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            if (a0 + i >= na) break;
            int m = (a0 + i) / nc, j = (a0 + i) % nc;
            put_sum(g, m0 + m, n + j, joint ? sums[4 * (i % 2) + i / 2] : yf_hsum8(acc[m][j]));
        }
    }
}

#define TILE8_ROWS(mm, NC)                                                                                            \
    TILES_ROWS_FN(AVX2_TARGET, tile8, bf16_rows8_##mm, mm, NC, true)                                                  \
    TILES_ROWS_FN(AVX2_TARGET, tile8, f32_rows8_##mm, mm, NC, false)
TILE8_ROWS(1, 6)
TILE8_ROWS(2, 4)
TILE8_ROWS(3, 3)

static const tiles_rows_fn g_bf16_rows8[MAXR2 + 1] = {NULL, bf16_rows8_1, bf16_rows8_2, bf16_rows8_3};
static const tiles_rows_fn g_f32_rows8[MAXR2 + 1] = {NULL, f32_rows8_1, f32_rows8_2, f32_rows8_3};

void yf_gemv_tiles_avx2(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    bool bf = g->bt == YF_BF16;
    tiles_run(g, m0, m1, n0, n1, bf ? 16 : 8, MAXR2, bf ? g_bf16_rows8 : g_f32_rows8, bf ? X_PAIRS : X_F32);
}

#else
void yf_gemv_tiles_avx2(const yf_gemm *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    (void)g, (void)m0, (void)m1, (void)n0, (void)n1;
    YF_CHECK(!"AVX2 path not compiled in");
}
#endif
