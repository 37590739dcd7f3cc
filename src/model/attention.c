/* attention: causal attention as blocked matrix products, so that it runs on
 * the matmul kernels (AMX / AVX-512) instead of scalar dot products. Queries
 * are T rows at positions pos0..pos0+T-1 of their sequence; keys and values
 * are those of positions 0..pos0+T-1 (pos0 = 0: whole sequences, the
 * training shape; pos0 > 0: rows that continue a prefix whose keys are held
 * before theirs, as a cache or a shared prefix holds them). For each
 * (sequence, head) and block of BR query rows t0..t1-1, only keys
 * 0..pos0+t1-1 can be seen:
 *   forward   S = Q_blk K^T, P = softmax(scale S) over the allowed keys,
 *             O_blk = P V, lse = log-sum-exp of the scaled scores;
 *   backward  P rebuilt from lse, dP = dO_blk V^T, dS = P (dP - rowsum(P dP)),
 *             dQ_blk = scale dS K, dK += scale dS^T Q_blk, dV += P^T dO_blk.
 * In bf16 mode the products round their operands to bf16 (as torch autocast
 * does for attention's batched products); in exact mode they are fp32.
 * The scalar versions in ops.c (yf_attention_fwd, and yf_attention_bwd_kv_ref)
 * are the references these are tested against. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/kernels.h"
#include "model/ops.h"
#include "base/pool.h"
#include "kernels/cpu/vecmath.h"

enum { BR = 64 }; /* query rows per block: S is BR x T floats */

/* Threads only above this much work (multiply-adds of the products). */
#define PAR_WORK(w) ((double)(w) >= (double)(1 << 22))

/* Row i of s (nk keys, the row at position t of its sequence) becomes the
 * softmax weights over keys j0..t (others 0); returns the log-sum-exp. */
static float softmax_row(float *s, int64_t nk, int64_t j0, int64_t t, float scale) {
    int64_t n = t + 1 - j0;
    float *r = s + j0;
    float mx = yf_max_of(r, n) * scale;
    double sum = yf_exp_affine_sum(r, r, n, scale, mx);
    float inv = (float)(1.0 / sum);
#pragma omp simd
    for (int64_t j = 0; j < n; j++) r[j] *= inv;
    if (j0 > 0) memset(s, 0, (size_t)j0 * sizeof(float));
    if (t + 1 < nk) memset(s + t + 1, 0, (size_t)(nk - t - 1) * sizeof(float));
    return mx + (float)log(sum);
}

/* per-thread buffers, grown as needed: scores, and keys / values packed;
 * freed when a thread that ends (serve's scheduler) exits (yf_tbuf) */
static _Thread_local yf_tbufs t_buf;

static void *thread_buf(int i, size_t bytes) { return yf_tbuf(&t_buf, i, bytes); }

/* A head's keys or values [T, hd] packed once for all of its blocks' products
 * (bf16 AMX; NULL otherwise: each product packs its own). */
static yf_wpack *head_pack(int i, const float *w, int64_t T, int64_t hd, yf_pack_kind kind) {
    uint16_t *tiles = thread_buf(2 + i, (size_t)yf_wpack_elems(T, hd) * sizeof(uint16_t));
    return yf_wpack_f32(w, T, hd, kind, tiles);
}

typedef struct attn_job {
    float *out, *lse, *dq, *dk, *dv;
    const float *dout, *q, *k, *v;
    const int64_t *start;
    int64_t B, H, T, ld, pos0, hd, nblk; /* T query rows; keys 0..pos0+T-1, ld rows apart per (b, h) */
    float scale;
} attn_job;

static void fwd_head(void *ctx, int64_t bh) {
    const attn_job *j = ctx;
    int64_t T = j->T, hd = j->hd, b = bh / j->H, p0 = j->pos0, nkt = p0 + T;
    float *s = thread_buf(0, (size_t)(BR * nkt) * sizeof(float));
    const float *kb = j->k + bh * j->ld * hd, *vb = j->v + bh * j->ld * hd;
    yf_wpack *pk = head_pack(0, kb, nkt, hd, YF_PACK_XWT), *pv = head_pack(1, vb, nkt, hd, YF_PACK_XW);
    for (int64_t blk = 0; blk < j->nblk; blk++) {
        int64_t t0 = blk * BR, rows = T - t0 < BR ? T - t0 : BR, nk = p0 + t0 + rows;
        yf_matmul_xwt_rows(s, j->q + (bh * T + t0) * hd, NULL, kb, YF_F32, pk, rows, nkt, hd, 0, nk);
        for (int64_t r = 0; r < rows; r++) {
            float l = softmax_row(s + r * nk, nk, j->start[b * T + t0 + r], p0 + t0 + r, j->scale);
            if (j->lse) j->lse[bh * T + t0 + r] = l;
        }
        yf_matmul_xw_rows(j->out + (bh * T + t0) * hd, hd, s, NULL, vb, YF_F32, pv, rows, nkt, hd, 0, nk, false);
    }
    yf_wpack_free(pk);
    yf_wpack_free(pv);
}

void yf_attention_fwd_kv(float *out, float *lse, const float *q, const float *k, const float *v, const int64_t *start,
                         int64_t B, int64_t H, int64_t T, int64_t ld, int64_t hd, int64_t pos0) {
    YF_CHECK(ld >= pos0 + T);
    attn_job j = {.out = out, .lse = lse, .q = q, .k = k, .v = v, .start = start, .B = B, .H = H, .T = T, .ld = ld,
                  .pos0 = pos0, .hd = hd, .nblk = (T + BR - 1) / BR, .scale = 1.0f / sqrtf((float)hd)};
    if (PAR_WORK((double)B * H * T * (pos0 + T) * hd) && B * H < 65536)
        yf_par_for(B * H, fwd_head, &j);
    else
        for (int64_t bh = 0; bh < B * H; bh++) fwd_head(&j, bh);
}

void yf_attention_fwd_train(float *out, float *lse, const float *q, const float *k, const float *v,
                            const int64_t *start, int64_t B, int64_t H, int64_t T, int64_t hd) {
    yf_attention_fwd_kv(out, lse, q, k, v, start, B, H, T, T, hd, 0);
}

static void bwd_head(void *ctx, int64_t bh) {
    const attn_job *j = ctx;
    int64_t T = j->T, hd = j->hd, b = bh / j->H, p0 = j->pos0, nkt = p0 + T, off = bh * T * hd, koff = bh * j->ld * hd;
    float scale = j->scale;
    const float *kb = j->k + koff, *vb = j->v + koff;
    float *dkb = j->dk + koff, *dvb = j->dv + koff;
    float *p = thread_buf(0, (size_t)(BR * nkt) * sizeof(float)), *dp = thread_buf(1, (size_t)(BR * nkt) * sizeof(float));
    yf_wpack *pk = head_pack(0, kb, nkt, hd, YF_PACK_XWT), *pv = head_pack(1, vb, nkt, hd, YF_PACK_XWT);
    yf_wpack *pkd = head_pack(2, kb, nkt, hd, YF_PACK_XW);
    memset(dkb, 0, (size_t)(nkt * hd) * sizeof(float));
    memset(dvb, 0, (size_t)(nkt * hd) * sizeof(float));
    for (int64_t blk = 0; blk < j->nblk; blk++) {
        int64_t t0 = blk * BR, rows = T - t0 < BR ? T - t0 : BR, nk = p0 + t0 + rows;
        const float *qb = j->q + off + t0 * hd, *gb = j->dout + off + t0 * hd;
        yf_matmul_xwt_rows(p, qb, NULL, kb, YF_F32, pk, rows, nkt, hd, 0, nk);
        yf_matmul_xwt_rows(dp, gb, NULL, vb, YF_F32, pv, rows, nkt, hd, 0, nk);
        for (int64_t i = 0; i < rows; i++) {
            int64_t t = p0 + t0 + i, j0 = j->start[b * T + t0 + i], n = t + 1 - j0;
            float *pr = p + i * nk, *dr = dp + i * nk;
            /* the forward's weights, from its log-sum-exp */
            yf_exp_affine_sum(pr + j0, pr + j0, n, scale, j->lse[bh * T + t0 + i]);
            float ds = (float)yf_dot_d(pr + j0, dr + j0, n);
#pragma omp simd
            for (int64_t c = j0; c <= t; c++) dr[c] = pr[c] * (dr[c] - ds) * scale; /* d score (pre-scale) */
            if (j0 > 0) {
                memset(pr, 0, (size_t)j0 * sizeof(float));
                memset(dr, 0, (size_t)j0 * sizeof(float));
            }
            if (t + 1 < nk) {
                memset(pr + t + 1, 0, (size_t)(nk - t - 1) * sizeof(float));
                memset(dr + t + 1, 0, (size_t)(nk - t - 1) * sizeof(float));
            }
        }
        yf_matmul_xw_rows(j->dq + off + t0 * hd, hd, dp, NULL, kb, YF_F32, pkd, rows, nkt, hd, 0, nk, false);
        yf_matmul_dw(dkb, dp, qb, rows, nk, hd);
        yf_matmul_dw(dvb, p, gb, rows, nk, hd);
    }
    yf_wpack_free(pk);
    yf_wpack_free(pv);
    yf_wpack_free(pkd);
}

void yf_attention_bwd_kv(float *dq, float *dk, float *dv, const float *dout, const float *lse, const float *q,
                         const float *k, const float *v, const int64_t *start, int64_t B, int64_t H, int64_t T,
                         int64_t ld, int64_t hd, int64_t pos0) {
    YF_CHECK(ld >= pos0 + T);
    attn_job j = {.lse = (float *)lse, .dq = dq, .dk = dk, .dv = dv, .dout = dout, .q = q, .k = k, .v = v,
                  .start = start, .B = B, .H = H, .T = T, .ld = ld, .pos0 = pos0, .hd = hd,
                  .nblk = (T + BR - 1) / BR, .scale = 1.0f / sqrtf((float)hd)};
    if (PAR_WORK((double)B * H * T * (pos0 + T) * hd) && B * H < 65536)
        yf_par_for(B * H, bwd_head, &j);
    else
        for (int64_t bh = 0; bh < B * H; bh++) bwd_head(&j, bh);
}

void yf_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *lse, const float *q,
                      const float *k, const float *v, const int64_t *start, int64_t B, int64_t H, int64_t T,
                      int64_t hd) {
    yf_attention_bwd_kv(dq, dk, dv, dout, lse, q, k, v, start, B, H, T, T, hd, 0);
}

/* ---- decode: one query row per (sequence, head) ---------------------------- */

#if defined(__AVX2__) && defined(__FMA__)
#include "kernels/cpu/simd8.h"
#endif

/* s[j] = q · k_j for n keys hd floats apart (8 lanes along hd, then added) */
static void scores(float *s, const float *q, const float *k, int64_t n, int64_t hd) {
    int64_t j = 0;
#if defined(__AVX2__) && defined(__FMA__)
    if (hd % 8 == 0) {
        for (; j + 4 <= n; j += 4) { /* four keys at a time: four chains, one load of q */
            const float *k0 = k + j * hd;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t i = 0; i < hd; i += 8) {
                __m256 x = _mm256_loadu_ps(q + i);
                a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k0 + i), a0);
                a1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k0 + hd + i), a1);
                a2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k0 + 2 * hd + i), a2);
                a3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k0 + 3 * hd + i), a3);
            }
            s[j] = yf_hsum8(a0), s[j + 1] = yf_hsum8(a1), s[j + 2] = yf_hsum8(a2), s[j + 3] = yf_hsum8(a3);
        }
        for (; j < n; j++) {
            __m256 a = _mm256_setzero_ps();
            for (int64_t i = 0; i < hd; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + j * hd + i), a);
            s[j] = yf_hsum8(a);
        }
    }
#endif
    for (; j < n; j++) {
        float a = 0;
        for (int64_t i = 0; i < hd; i++) a = fmaf(q[i], k[j * hd + i], a);
        s[j] = a;
    }
}

/* out = sum_j w[j] v_j over n values hd floats apart, j in order */
static void weighted_sum(float *out, const float *w, const float *v, int64_t n, int64_t hd) {
    int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    for (; i + 32 <= hd; i += 32) { /* 32 columns in four accumulators */
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t j = 0; j < n; j++) {
            __m256 x = _mm256_set1_ps(w[j]);
            const float *vj = v + j * hd + i;
            a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(vj), a0);
            a1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(vj + 8), a1);
            a2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(vj + 16), a2);
            a3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(vj + 24), a3);
        }
        _mm256_storeu_ps(out + i, a0), _mm256_storeu_ps(out + i + 8, a1);
        _mm256_storeu_ps(out + i + 16, a2), _mm256_storeu_ps(out + i + 24, a3);
    }
#endif
    for (; i < hd; i++) {
        float a = 0;
        for (int64_t j = 0; j < n; j++) a = fmaf(w[j], v[j * hd + i], a);
        out[i] = a;
    }
}

typedef struct dec_job {
    float *out, *lse;
    const float *q, *k, *v;
    const int64_t *start, *posb;
    int64_t H, ld, hd, pos0;
    float scale;
} dec_job;

static void dec_head(void *ctx, int64_t bh) {
    const dec_job *j = ctx;
    int64_t b = bh / j->H, hd = j->hd, j0 = j->start[b], j1 = j->pos0 + (j->posb ? j->posb[b] : 0), n = j1 + 1 - j0;
    const float *kb = j->k + (bh * j->ld + j0) * hd, *vb = j->v + (bh * j->ld + j0) * hd;
    float *s = thread_buf(0, (size_t)n * sizeof(float));
    scores(s, j->q + bh * hd, kb, n, hd);
    float mx = yf_max_of(s, n) * j->scale;
    double sum = yf_exp_affine_sum(s, s, n, j->scale, mx);
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) s[i] *= inv;
    weighted_sum(j->out + bh * hd, s, vb, n, hd);
    if (j->lse) j->lse[bh] = mx + (float)log(sum);
}

void yf_attention_decode(float *out, float *lse, const float *q, const float *k, const float *v, const int64_t *start,
                         int64_t B, int64_t H, int64_t ld, int64_t hd, int64_t pos0, const int64_t *posb) {
    dec_job j = {.out = out, .lse = lse, .q = q, .k = k, .v = v, .start = start, .posb = posb, .H = H, .ld = ld,
                 .hd = hd, .pos0 = pos0, .scale = 1.0f / sqrtf((float)hd)};
    int64_t maxpos = pos0;
    for (int64_t b = 0; posb && b < B; b++) maxpos = pos0 + posb[b] > maxpos ? pos0 + posb[b] : maxpos;
    YF_CHECK(ld > maxpos);
    if (PAR_WORK((double)B * H * (maxpos + 1) * hd * 2) && B * H > 1)
        yf_par_for(B * H, dec_head, &j);
    else
        for (int64_t bh = 0; bh < B * H; bh++) dec_head(&j, bh);
}
