/* simd16: 16-lane AVX-512 steps that run both as elementwise ops
 * (ops_avx512.c) and inside the kernels' epilogues (matmul_amx.c,
 * matmul_avx512.c), so that the two give the same bits: exp, the LM head's
 * fused softmax step, LoRA dropout's mask; and the 16 x 16 transpose the
 * AMX and AVX-512 kernels pack with. Static inline with function-level target
 * attributes: include only where YF_OPS_AVX512 (ops_fast.h) holds. */
#ifndef YF_SIMD16_H
#define YF_SIMD16_H

#include <immintrin.h>
#include <stdint.h>

#define YF_EXP16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define YF_EXP16_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

/* exp of 16 floats: x = n ln2 + r with |r| <= ln2/2 (ln2 in two parts, so r
 * is exact to ~1e-11 for |x| < 104), the degree-7 Taylor polynomial of e^r
 * (truncation 5e-9 relative), times 2^n by vscalefps, which also gives the
 * subnormal results, 0 below -104 and inf above 88.73 as expf does. 12 vector
 * instructions. Measured against exp in double over [-87, 88.7] and the
 * subnormal range (tests/test_ops.c, ops_exp_avx512_accuracy): max relative
 * error of normal results 1.3e-7 (~1 ulp; glibc's expf: < 1 ulp). */
YF_EXP16_TARGET static inline __m512 yf_exp16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f)); /* also -inf -> 0, not NaN */
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693145752f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* One step of the LM head's fused softmax (yf_exp_block_bf16): the lanes m
 * of the 16 logits at x become bf16(exp(x - shift)) at dst (16 bf16, zeros
 * outside m), each exp added to acc[lane] in double. Returns the lanes with
 * x - shift > lim. ~25 instructions: the AMX kernel runs one or two per
 * 32-step of K on the block before, in the shadow of the tile products. */
YF_EXP16_BF16_TARGET static inline __mmask16 yf_exp16_bf16_acc(uint16_t *dst, const float *x, __mmask16 m,
                                                                float shift, double *acc, float lim) {
    __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x), _mm512_set1_ps(shift));
    __mmask16 over = _mm512_mask_cmp_ps_mask(m, v, _mm512_set1_ps(lim), _CMP_GT_OQ);
    __m512 e = _mm512_maskz_mov_ps(m, yf_exp16(v));
    _mm256_storeu_si256((__m256i *)dst, (__m256i)_mm512_cvtneps_pbh(e));
    _mm512_storeu_pd(acc, _mm512_add_pd(_mm512_loadu_pd(acc), _mm512_cvtps_pd(_mm512_castps512_ps256(e))));
    _mm512_storeu_pd(acc + 8,
                     _mm512_add_pd(_mm512_loadu_pd(acc + 8), _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1))));
    return over;
}

/* Which of the 16 elements i .. i + 15 LoRA dropout keeps (yf_dropout):
 * a 32-bit hash of (seed, index) >= thr, s0 and s1 the seed's halves mixed
 * (yf_dropout_params). i a multiple of 16, so the lanes share i >> 32; the
 * same hash as ops.c's scalar drop_hash, lane by lane. */
YF_EXP16_TARGET static inline __mmask16 yf_drop16_keep(uint64_t i, uint32_t thr, uint32_t s0, uint32_t s1) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i h = _mm512_add_epi32(_mm512_set1_epi32((int)((uint32_t)i + s0)), lane);
    h = _mm512_xor_si512(h, _mm512_set1_epi32((int)(((uint32_t)(i >> 32) * 0xc2b2ae35u) ^ s1)));
    h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 16));
    h = _mm512_mullo_epi32(h, _mm512_set1_epi32((int)0x85ebca6bu));
    h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 13));
    h = _mm512_mullo_epi32(h, _mm512_set1_epi32((int)0xc2b2ae35u));
    h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 16));
    return _mm512_cmpge_epu32_mask(h, _mm512_set1_epi32((int)thr));
}

/* Permutation tables for the 16x16 32-bit transpose: stage b swaps bit b of the
 * row index with bit b of the column index (pairs of rows i, i+2^b). */
typedef struct yf_tr_tables {
    int32_t lo[4][16], hi[4][16];
} yf_tr_tables;

static inline void yf_tr_tables_init(yf_tr_tables *t) {
    for (int b = 0; b < 4; b++) {
        int d = 1 << b;
        for (int j = 0; j < 16; j++) {
            t->lo[b][j] = (j & d) ? 16 + j - d : j;
            t->hi[b][j] = (j & d) ? 16 + j : j + d;
        }
    }
}

/* r[i] lane j <-> r[j] lane i (32-bit lanes) */
YF_EXP16_TARGET static inline void yf_transpose16(__m512i r[16], const yf_tr_tables *t) {
    for (int b = 0; b < 4; b++) {
        int d = 1 << b;
        __m512i ilo = _mm512_loadu_si512(t->lo[b]), ihi = _mm512_loadu_si512(t->hi[b]);
        for (int i = 0; i < 16; i++) {
            if (i & d) continue;
            __m512i x = r[i], y = r[i + d];
            r[i] = _mm512_permutex2var_epi32(x, ilo, y);
            r[i + d] = _mm512_permutex2var_epi32(x, ihi, y);
        }
    }
}

#endif
