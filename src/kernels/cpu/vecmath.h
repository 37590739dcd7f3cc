/* vecmath: vectorised exp for the softmax-style loops (cross-entropy,
 * attention). AVX2 + FMA (the build's baseline); a scalar fallback elsewhere. */
#ifndef YF_VECMATH_H
#define YF_VECMATH_H

#include <math.h>
#include <stdint.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define YF_HAVE_EXP8 1
/* exp of 8 floats: 2^n * p(r), x = n ln2 + r, |r| <= ln2/2, p the degree-7
 * Taylor polynomial (truncation 1.2e-7 relative): within ~2 ulp of expf.
 * Inputs below -87.3 (results below the normal range) give 0. */
static inline __m256 yf_exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.3f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.7f)), lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693145752f), x); /* ln2 in two parts */
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-1.42860677e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}
#endif

/* y[i] = exp(a * x[i] - b) (y == x allowed); returns the sum of y, in double. */
static inline double yf_exp_affine_sum(float *y, const float *x, int64_t n, float a, float b) {
    int64_t i = 0;
    double total = 0;
#ifdef YF_HAVE_EXP8
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    for (; i + 8 <= n; i += 8) {
        __m256 e = yf_exp8(_mm256_fmsub_ps(_mm256_loadu_ps(x + i), va, vb));
        _mm256_storeu_ps(y + i, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
    total = lanes[0] + lanes[1] + lanes[2] + lanes[3];
#endif
    for (; i < n; i++) {
        y[i] = expf(fmaf(x[i], a, -b));
        total += y[i];
    }
    return total;
}

/* sum of a[i] b[i], the products and the sum in double */
static inline double yf_dot_d(const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    double total = 0;
#ifdef YF_HAVE_EXP8
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(a + i), y = _mm256_loadu_ps(b + i);
        s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), _mm256_cvtps_pd(_mm256_castps256_ps128(y)), s0);
        s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(y, 1)),
                             s1);
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
    total = lanes[0] + lanes[1] + lanes[2] + lanes[3];
#endif
    for (; i < n; i++) total += (double)a[i] * b[i];
    return total;
}

/* max over x[0..n) (-INFINITY when n == 0) */
static inline float yf_max_of(const float *x, int64_t n) {
    float mx = -INFINITY;
    int64_t i = 0;
#ifdef YF_HAVE_EXP8
    /* four chains: one would wait on vmaxps's latency every 8 floats (the LM
     * head's rows, 2048 wide, 2 x 66 x 192 of them a step and thread) */
    __m256 m = _mm256_set1_ps(-INFINITY), m1 = m, m2 = m, m3 = m;
    for (; i + 32 <= n; i += 32) {
        m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
        m2 = _mm256_max_ps(m2, _mm256_loadu_ps(x + i + 16));
        m3 = _mm256_max_ps(m3, _mm256_loadu_ps(x + i + 24));
    }
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    m = _mm256_max_ps(_mm256_max_ps(m, m1), _mm256_max_ps(m2, m3));
    float lanes[8];
    _mm256_storeu_ps(lanes, m);
    for (int j = 0; j < 8; j++) mx = lanes[j] > mx ? lanes[j] : mx;
#endif
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

#endif
