/* simd8: 8-lane AVX2 steps shared by the elementwise ops (model/ops.c,
 * attention.c) and the AVX2 kernels (matmul_avx2.c, gemv_tiles.c,
 * quant_avx2.c), so that all give the same bits: LoRA dropout's mask, the
 * sum of a vector's lanes. Static inline with function-level target
 * attributes: include only where the compiler can emit AVX2 (YF_CC_AVX2). */
#ifndef YF_SIMD8_H
#define YF_SIMD8_H

#include <immintrin.h>
#include <stdint.h>

#define YF_SIMD8_TARGET __attribute__((target("avx2,fma")))

/* Which of the 8 elements i .. i + 7 LoRA dropout keeps (all ones in a kept
 * lane): the hash of simd16.h's yf_drop16_keep and ops.c's scalar drop_hash,
 * lane by lane; i a multiple of 8, so the lanes share i >> 32. The unsigned
 * compare h >= thr is a signed one with both top bits flipped. */
YF_SIMD8_TARGET static inline __m256i yf_drop8_keep(uint64_t i, uint32_t thr, uint32_t s0, uint32_t s1) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), flip = _mm256_set1_epi32((int)0x80000000u);
    __m256i h = _mm256_add_epi32(_mm256_set1_epi32((int)((uint32_t)i + s0)), lane);
    h = _mm256_xor_si256(h, _mm256_set1_epi32((int)(((uint32_t)(i >> 32) * 0xc2b2ae35u) ^ s1)));
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
    h = _mm256_mullo_epi32(h, _mm256_set1_epi32((int)0x85ebca6bu));
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 13));
    h = _mm256_mullo_epi32(h, _mm256_set1_epi32((int)0xc2b2ae35u));
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
    __m256i drop = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(thr ^ 0x80000000u)), _mm256_xor_si256(h, flip));
    return _mm256_xor_si256(drop, _mm256_set1_epi32(-1));
}

/* v0 + ... + v7 as ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)): the
 * halves, then the quarters, then the pair (gemv_tiles.c's reference adds
 * its lanes in this order) */
YF_SIMD8_TARGET static inline float yf_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

#endif
