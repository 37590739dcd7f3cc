/* ops_avx512: 16-lane forms of the elementwise ops (see ops_fast.h). Compiled
 * for the build's baseline with function-level target attributes, called only
 * when yf_cpu() reports AVX-512. Tails are masked loads/stores, so every
 * element goes through the same vector arithmetic. */
#include "kernels/cpu/ops_fast.h"

#include <math.h>

#if YF_OPS_AVX512
#include <immintrin.h>

#include "kernels/cpu/simd16.h"

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

static inline __mmask16 tail16(int64_t n) { return n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1); }

T512 void yf_exp_avx512(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail16(n - i);
        _mm512_mask_storeu_ps(y + i, m, yf_exp16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* the 16 floats added to two double accumulators */
T512 static inline void add_pd(__m512d *s0, __m512d *s1, __m512 v) {
    *s0 = _mm512_add_pd(*s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    *s1 = _mm512_add_pd(*s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
}

T512 double yf_xent_row_avx512(float *d, const float *x, int64_t V, int64_t tg, float scale) {
    float xt = x[tg];
    /* max: four independent chains (this pass streams the row from memory) */
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    int64_t i = 0;
    for (; i + 64 <= V; i += 64) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
        m2 = _mm512_max_ps(m2, _mm512_loadu_ps(x + i + 32));
        m3 = _mm512_max_ps(m3, _mm512_loadu_ps(x + i + 48));
    }
    for (; i < V; i += 16) m0 = _mm512_mask_max_ps(m0, tail16(V - i), m0, _mm512_maskz_loadu_ps(tail16(V - i), x + i));
    float mx = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
    /* sum of exp(x - mx) in double (the row is in L2 now); stored to d when
     * wanted. Four vectors are added in fp32 first (error <= 2 ulp of that
     * partial sum), then converted: converting every vector would be a
     * third of the loop's instructions. */
    __m512 vm = _mm512_set1_ps(mx);
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    for (i = 0; i + 64 <= V; i += 64) {
        /* this pass is compute-bound: meanwhile fetch the next row (the caller's
         * next one when rows are consecutive) for its memory-bound max pass */
        for (int c = 0; c < 64; c += 16) _mm_prefetch((const char *)(x + V + i + c), _MM_HINT_T1);
        __m512 e0 = yf_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        __m512 e1 = yf_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm));
        __m512 e2 = yf_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 32), vm));
        __m512 e3 = yf_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 48), vm));
        if (d) {
            _mm512_storeu_ps(d + i, e0), _mm512_storeu_ps(d + i + 16, e1);
            _mm512_storeu_ps(d + i + 32, e2), _mm512_storeu_ps(d + i + 48, e3);
        }
        add_pd(&s0, &s1, _mm512_add_ps(_mm512_add_ps(e0, e1), _mm512_add_ps(e2, e3)));
    }
    for (; i < V; i += 16) {
        __mmask16 m = tail16(V - i);
        __m512 e = _mm512_maskz_mov_ps(m, yf_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm)));
        if (d) _mm512_mask_storeu_ps(d + i, m, e);
        add_pd(&s0, &s1, e);
    }
    double sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    if (d) {
        __m512 k = _mm512_set1_ps((float)(scale / sum));
        for (i = 0; i + 16 <= V; i += 16) _mm512_storeu_ps(d + i, _mm512_mul_ps(_mm512_loadu_ps(d + i), k));
        if (i < V) {
            __mmask16 m = tail16(V - i);
            _mm512_mask_storeu_ps(d + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, d + i), k));
        }
        d[tg] -= scale;
    }
    return (double)mx + log(sum) - (double)xt;
}

T512 double yf_exp_sum_avx512(float *y, const float *x, int64_t n, float shift) {
    __m512 vm = _mm512_set1_ps(shift);
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 e0 = yf_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        __m512 e1 = yf_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm));
        _mm512_storeu_ps(y + i, e0), _mm512_storeu_ps(y + i + 16, e1);
        add_pd(&s0, &s1, _mm512_add_ps(e0, e1));
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail16(n - i);
        __m512 e = _mm512_maskz_mov_ps(m, yf_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm)));
        _mm512_mask_storeu_ps(y + i, m, e);
        add_pd(&s0, &s1, e);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

/* As yf_exp_sum_avx512, the same sums in the same order, each 32 values
 * rounded to bf16 (to nearest even) and stored as one 64-byte line. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma"))) double
yf_exp_sum_bf16_avx512(uint16_t *dst, int64_t stride, const float *x, int64_t n, float shift) {
    __m512 vm = _mm512_set1_ps(shift);
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32, dst += stride) {
        __m512 e0 = yf_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        __m512 e1 = yf_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm));
        _mm512_storeu_si512(dst, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
        add_pd(&s0, &s1, _mm512_add_ps(e0, e1));
    }
    if (i < n) { /* the tail, 16 at a time as yf_exp_sum_avx512 adds it */
        __mmask16 m0 = tail16(n - i), m1 = n - i > 16 ? tail16(n - i - 16) : 0;
        __m512 e0 = _mm512_maskz_mov_ps(m0, yf_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m0, x + i), vm)));
        __m512 e1 = _mm512_maskz_mov_ps(m1, yf_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m1, x + i + 16), vm)));
        add_pd(&s0, &s1, e0);
        if (m1) add_pd(&s0, &s1, e1);
        _mm512_storeu_si512(dst, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

YF_EXP16_BF16_TARGET bool yf_exp_block_bf16_avx512(uint16_t *dst, const float *blk, int64_t rows, int64_t cols,
                                                 uint32_t live, const float *shift, double *acc, float lim) {
    __mmask16 m[2] = {tail16(cols), cols > 16 ? tail16(cols - 16) : 0}, over = 0;
    for (int64_t i = 0; i < 32; i++)
        for (int h = 0; h < 2; h++) {
            uint16_t *d = dst + 32 * i + 16 * h;
            if (i >= rows || !(live >> i & 1))
                _mm256_storeu_si256((__m256i *)d, _mm256_setzero_si256());
            else
                over |= yf_exp16_bf16_acc(d, blk + 32 * i + 16 * h, m[h], shift[i], acc + 16 * i, lim);
        }
    return over != 0;
}

T512 void yf_swiglu_fwd_avx512(float *z, const float *g, const float *u, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail16(n - i);
        __m512 uu = _mm512_maskz_loadu_ps(m, u + i), gg = _mm512_maskz_loadu_ps(m, g + i);
        __m512 den = _mm512_add_ps(one, yf_exp16(_mm512_sub_ps(_mm512_setzero_ps(), uu)));
        _mm512_mask_storeu_ps(z + i, m, _mm512_mul_ps(gg, _mm512_div_ps(uu, den)));
    }
}

T512 void yf_swiglu_bwd_avx512(float *dg, float *du, const float *dz, const float *g, const float *u, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail16(n - i);
        __m512 uu = _mm512_maskz_loadu_ps(m, u + i), gg = _mm512_maskz_loadu_ps(m, g + i);
        __m512 d = _mm512_maskz_loadu_ps(m, dz + i);
        __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, yf_exp16(_mm512_sub_ps(_mm512_setzero_ps(), uu))));
        __m512 ds = _mm512_mul_ps(d, s);
        _mm512_mask_storeu_ps(dg + i, m, _mm512_mul_ps(ds, uu));
        /* d g s (1 + u (1 - s)) */
        __m512 f = _mm512_fmadd_ps(uu, _mm512_sub_ps(one, s), one);
        _mm512_mask_storeu_ps(du + i, m, _mm512_mul_ps(_mm512_mul_ps(ds, gg), f));
    }
}

T512 void yf_dropout_avx512(float *y, const float *x, int64_t i0, int64_t n, uint32_t thr, float keep_scale,
                            uint32_t s0, uint32_t s1) {
    const __m512 ks = _mm512_set1_ps(keep_scale);
    for (int64_t j = 0; j < n; j += 16) {
        __mmask16 m = tail16(n - j);
        __mmask16 keep = m & yf_drop16_keep((uint64_t)(i0 + j), thr, s0, s1); /* i0 + j a multiple of 16 */
        _mm512_mask_storeu_ps(y + j, m, _mm512_maskz_mul_ps(keep, _mm512_maskz_loadu_ps(m, x + j), ks));
    }
}

T512 double yf_sumsq_avx512(const float *x, int64_t n) {
    __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512d a = _mm512_cvtps_pd(_mm256_loadu_ps(x + i)), b = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
        if (i & 16)
            s0 = _mm512_fmadd_pd(a, a, s0), s1 = _mm512_fmadd_pd(b, b, s1);
        else
            s2 = _mm512_fmadd_pd(a, a, s2), s3 = _mm512_fmadd_pd(b, b, s3);
    }
    double s = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s0, s1), _mm512_add_pd(s2, s3)));
    for (; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

T512 double yf_dot3_avx512(const float *a, const float *b, const float *c, int64_t n) {
    /* (a b) c in double, as the plain loop */
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512d p0 = _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(a + i)), _mm512_cvtps_pd(_mm256_loadu_ps(b + i)));
        __m512d p1 =
            _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(a + i + 8)), _mm512_cvtps_pd(_mm256_loadu_ps(b + i + 8)));
        s0 = _mm512_fmadd_pd(p0, _mm512_cvtps_pd(_mm256_loadu_ps(c + i)), s0);
        s1 = _mm512_fmadd_pd(p1, _mm512_cvtps_pd(_mm256_loadu_ps(c + i + 8)), s1);
    }
    double s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    for (; i < n; i++) s += (double)a[i] * b[i] * c[i];
    return s;
}

#else
typedef int yf_ops_avx512_unused; /* no AVX-512 code in this build: ops.c never calls these */
#endif
