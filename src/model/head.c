/* model/head: the LM head and the token loss over the final hidden states,
 * in chunks of rows; in bf16 training a vocabulary block at a time without
 * storing the logits. */
#include "model/model_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/bufcache.h"
#include "base/pool.h"
#include "kernels/cpu/fused.h"
#include "kernels/cpu/vecmath.h"
#include "model/ops.h"

/* ---- the LM head's loss and input gradient, a vocabulary block at a time --
 * In training with bf16 products the logits are never stored whole (383 x
 * 135040 floats a chunk): per block of HEAD_VB vocabulary rows, the block's
 * logits L = h W_b^T, then per row the running max m and sum S of exp(L - m)
 * (rescaled when m grows, as the online softmax does), then
 * U += exp(L - m) W_b. At the end, loss = m + log S - L[target] and
 * d(scale * loss)/dh = scale (U / S - W[target]). Each block of W is read
 * by both products while the block's logits are still in cache, and with W
 * packed, h and the exp rows go to the products packed (yf_apk_put_row,
 * yf_exp_sum_bf16).
 * Against the two-pass softmax this rounds exp(L - m) to bf16 where that
 * rounded softmax - onehot, and subtracts W[target] in fp32: the same bf16
 * rounding per term as torch autocast, whose logits are bf16 too. */
enum { HEAD_VB = 2048 };

typedef struct head_block {
    float *lb;              /* [rows, vb]: the block's logits of rows r0.., then exp(L - m) */
    uint16_t *ppk;          /* those rows packed (its first panel is row r0's), or NULL */
    float *u;               /* [n, ldu] */
    float *mx, *lt;         /* [n] running max; the target's logit */
    double *sum;            /* [n] */
    const int64_t *tc;
    int64_t n, D, ldu, v0, vb;
    int64_t r0, rows;       /* rows r0 .. r0 + rows - 1; up to whole panels when packed */
} head_block;

static void head_block_row(const head_block *f, int64_t r) {
    int64_t i = r - f->r0; /* the row in lb and ppk */
    if (r >= f->n || f->tc[r] < 0) { /* a padding row of the packed panel, or not scored */
        if (f->ppk) yf_apk_put_row(f->ppk, f->vb, i, NULL);
        if (r < f->n && !f->ppk) memset(f->lb + i * f->vb, 0, (size_t)f->vb * sizeof(float));
        return;
    }
    float *l = f->lb + i * f->vb;
    int64_t tg = f->tc[r];
    if (tg >= f->v0 && tg < f->v0 + f->vb) f->lt[r] = l[tg - f->v0];
    float bm = yf_max_of(l, f->vb);
    if (bm > f->mx[r]) {
        if (f->mx[r] > -INFINITY) { /* earlier blocks counted against a smaller max */
            float c = expf(f->mx[r] - bm);
            f->sum[r] *= c;
            float *u = f->u + r * f->ldu;
            for (int64_t k = 0; k < f->D; k++) u[k] *= c;
        }
        f->mx[r] = bm;
    }
    if (f->ppk) { /* exp(L - m) straight to the packed row, as bf16 */
        int64_t stride;
        uint16_t *d = yf_apk_row(f->ppk, f->vb, i, &stride);
        f->sum[r] += yf_exp_sum_bf16(d, stride, l, f->vb, f->mx[r]);
    } else {
        f->sum[r] += yf_exp_sum(l, l, f->vb, f->mx[r]);
    }
}

enum { HEAD_ROWS_PER_TASK = 8 }; /* a row is a few microseconds: fewer, bigger pool tasks */

static void head_block_rows(void *ctx, int64_t i) {
    const head_block *f = ctx;
    for (int64_t r = i * HEAD_ROWS_PER_TASK; r < (i + 1) * HEAD_ROWS_PER_TASK && r < f->rows; r++) head_block_row(f, r);
}

/* The packed route: each thread takes whole panels of rows through every
 * vocabulary block on its own (both products of its rows, run inline, and
 * the rows between them): no fork and join per product, and a thread's
 * logits are still in its L2 when it reads them back. Each thread streams
 * all of W; the other's reads of a block find it in L3.
 * Fused blocks: after the first block, whose max becomes each row's fixed
 * shift m, the logits are never stored: the product hands each 32 x 32 block
 * to head_fused_block while it is in L1, which takes the target's logit and
 * asks for exp(L - m), packed, added to the row's sum (yf_exp_spec): the
 * kernel computes those during the next block's tile products. With m fixed
 * there is no rescaling; a logit more than HEAD_EXP_LIM above m (exp near
 * fp32's range) makes the chunk run again unfused (docs/performance.md: what
 * the fused blocks saved). */
enum { HEAD_EXP_LIM = 64 };

typedef struct head_task {
    const yf_mw *W;
    const yf_wpack *pt, *pw;
    const uint16_t *hpk;    /* h packed: [np panels] */
    uint16_t *ppk;          /* exp rows packed, panel p at p * panel_elems(vbmax) */
    float *lb;              /* row r's logits at r * vbmax */
    float *u;               /* U [32 np, ldu] */
    float *mx, *lt;
    double *sum;
    double *acc;            /* fused blocks: row r's exp sums at 16 r (16 lanes), or NULL: none */
    bool *over;             /* [tasks]: task t met a logit past HEAD_EXP_LIM */
    int64_t *fused;         /* [tasks]: blocks task t fused */
    const int64_t *tc;
    int64_t n, D, ldu, V, np, per, vbmax;
} head_task;

/* a fused block's rows: r0 + m.. of the chunk, columns v0 + n.. */
typedef struct head_fuse {
    const head_task *h;
    uint16_t *pp;           /* the task's exp rows packed, for this block's width */
    int64_t r0, v0, vb;
    bool over;
} head_fuse;

static void head_fused_block(void *ctx, int64_t m, int64_t n, const float *blk, int64_t rows, int64_t cols,
                             yf_exp_spec *x) {
    head_fuse *e = ctx;
    const head_task *h = e->h;
    int64_t r = e->r0 + m, stride;
    uint32_t live = 0;
    for (int64_t i = 0; i < rows && r + i < h->n; i++) {
        int64_t tg = h->tc[r + i];
        if (tg < 0) continue;
        live |= 1u << i;
        if (tg >= e->v0 + n && tg < e->v0 + n + cols) h->lt[r + i] = blk[32 * i + tg - e->v0 - n];
    }
    /* the exps, which the kernel computes while it runs the next block: rows
     * m.. of a panel are 32 apart */
    *x = (yf_exp_spec){yf_apk_row(e->pp, e->vb, m, &stride) + (n / 32) * stride, h->mx + r, h->acc + 16 * r, live,
                       (float)HEAD_EXP_LIM, &e->over};
}

static void head_rows_task(void *ctx, int64_t t) {
    const head_task *h = ctx;
    int64_t p0 = t * h->per, p1 = p0 + h->per < h->np ? p0 + h->per : h->np;
    if (p0 >= p1) return;
    /* whole panels: the padding rows of the last one are zeros in, zeros (or
     * nothing read) out, and a product without a partial panel needs no
     * edge path (a 383-row chunk had one in each of its 2 x 66 x 64 calls) */
    int64_t D = h->D, V = h->V, r0 = 32 * p0, m = 32 * (p1 - p0);
    const uint16_t *hp = h->hpk + p0 * yf_apk_panel_elems(D);
    uint16_t *pp = h->ppk + p0 * yf_apk_panel_elems(h->vbmax);
    float *lb = h->lb + r0 * h->vbmax;
    for (int64_t v0 = 0, vb; v0 < V; v0 += vb) {
        vb = V - v0 < HEAD_VB + 64 ? V - v0 : HEAD_VB;
        if (h->acc && v0 > 0) {
            head_fuse e = {h, pp, r0, v0, vb, false};
            yf_matmul_xwt_rows_blocks(hp, h->pt, m, V, D, v0, v0 + vb, head_fused_block, &e);
            if (e.over) {
                h->over[t] = true;
                return;
            }
            h->fused[t]++;
        } else {
            yf_matmul_xwt_rows(lb, NULL, hp, h->W->data, h->W->dt, h->pt, m, V, D, v0, v0 + vb);
            head_block f = {lb, pp, h->u, h->mx, h->lt, h->sum, h->tc, h->n, D, h->ldu, v0, vb, r0, 32 * (p1 - p0)};
            for (int64_t r = r0; r < r0 + f.rows; r++) head_block_row(&f, r);
        }
        yf_matmul_xw_rows(h->u + r0 * h->ldu, h->ldu, NULL, pp, h->W->data, h->W->dt, h->pw, m, V, D, v0, v0 + vb,
                          v0 > 0);
    }
    for (int64_t r = r0; h->acc && r < r0 + m && r < h->n; r++) /* the fused blocks' sums */
        for (int k = 0; k < 16; k++) h->sum[r] += h->acc[16 * r + k];
}

/* One chunk of n scored rows hc [n, D] (targets tc): returns the summed
 * loss and writes d(scale * loss)/dhc to dhc. */
static double head_chunk_blocked(yf_model *m, const float *hc, const int64_t *tc, int64_t n, float *dhc, float scale) {
    int64_t D = m->D, V = m->V, np = (n + 31) / 32;
    yf_mw *W = &m->head;
    const yf_wpack *pt = yf_model_fwd_pack(m, W, n, true, true), *pw = yf_model_wpack(m, W, YF_PACK_XW, n);
    bool packed = yf_apk_usable(pt, n, V, D) && yf_apk_usable(pw, n, V, D);
    /* blocks of HEAD_VB rows; a last one of fewer than 64 joins the one before
     * (a product with a handful of vocabulary rows would leave the AMX path) */
    int64_t vbmax = V < HEAD_VB + 63 ? V : HEAD_VB + 63;
    uint16_t *hpk = packed ? yf_buf_get((size_t)(np * yf_apk_panel_elems(D)) * sizeof(uint16_t)) : NULL;
    uint16_t *ppk = packed ? yf_buf_get((size_t)(np * yf_apk_panel_elems(vbmax)) * sizeof(uint16_t)) : NULL;
    for (int64_t r = 0; packed && r < 32 * np; r++) yf_apk_put_row(hpk, D, r, r < n ? hc + r * D : NULL);
    float *lb = yf_buf_get((size_t)((packed ? 32 * np : n) * vbmax) * sizeof(float));
    /* U, which the products add to block after block: rows D + 16 floats
     * apart, not a multiple of 4 KiB (then a 32 x 32 block of it sits in
     * one L1 set: its U product 4.5% slower); the unpacked route adds to
     * dhc itself */
    int64_t ldu = packed ? D + 16 : D;
    float *u = packed ? yf_buf_get((size_t)(32 * np * ldu) * sizeof(float)) : dhc;
    float *mx = yf_malloc((size_t)n * sizeof(float)), *lt = yf_calloc((size_t)n, sizeof(float));
    double *sum = yf_calloc((size_t)n, sizeof(double));
    for (int64_t r = 0; r < n; r++) mx[r] = -INFINITY;
    if (packed) {
        /* a task per thread; each has whole 32-row panels, so at least as
         * many rows as the n the packs were found usable for */
        int64_t tasks = yf_par_threads() < np ? yf_par_threads() : np, per = (np + tasks - 1) / tasks;
        bool fuse = !m->head_no_fuse && yf_blocks_usable(pt, 32 * per, V, D);
        bool *over = yf_calloc((size_t)tasks, sizeof(bool));
        int64_t *fused = yf_calloc((size_t)tasks, sizeof(int64_t));
        double *acc = fuse ? yf_calloc((size_t)(32 * np * 16), sizeof(double)) : NULL;
        head_task h = {W, pt, pw, hpk, ppk, lb, u, mx, lt, sum, acc, over, fused, tc, n, D, ldu, V, np, per, vbmax};
        yf_par_for(tasks, head_rows_task, &h);
        bool redo = false;
        for (int64_t t = 0; t < tasks; t++) redo |= over[t], m->head_fused += fused[t];
        if (redo) { /* a logit far above its row's first-block max: the chunk again, unfused */
            m->head_refits++;
            for (int64_t r = 0; r < n; r++) mx[r] = -INFINITY, sum[r] = 0, lt[r] = 0;
            h.acc = NULL;
            memset(over, 0, (size_t)tasks * sizeof(bool));
            yf_par_for(tasks, head_rows_task, &h);
        }
        free(acc), free(over), free(fused);
    }
    /* W's packs, when made (the FMA paths' panels), serve the row slices too:
     * W's own pages were given back when they were made */
    for (int64_t v0 = 0, vb; !packed && v0 < V; v0 += vb) {
        vb = V - v0 < HEAD_VB + 64 ? V - v0 : HEAD_VB;
        yf_matmul_xwt_rows(lb, hc, NULL, W->data, W->dt, pt, n, V, D, v0, v0 + vb);
        head_block f = {lb, NULL, dhc, mx, lt, sum, tc, n, D, D, v0, vb, 0, n};
        int64_t tasks = (f.rows + HEAD_ROWS_PER_TASK - 1) / HEAD_ROWS_PER_TASK;
        if (f.rows * vb >= ((int64_t)1 << 18))
            yf_par_for(tasks, head_block_rows, &f);
        else
            for (int64_t i = 0; i < tasks; i++) head_block_rows(&f, i);
        yf_matmul_xw_rows(dhc, D, lb, NULL, W->data, W->dt, pw, n, V, D, v0, v0 + vb, v0 > 0);
    }
    double loss = 0;
    /* W[target] of the scored rows as floats, gathered in one call */
    int64_t *tg = yf_malloc((size_t)n * sizeof(int64_t)), ns = 0;
    for (int64_t r = 0; r < n; r++)
        if (tc[r] >= 0) tg[ns++] = tc[r];
    float *wt = yf_buf_get((size_t)(ns * D + 1) * sizeof(float));
    yf_mw_rows(W, tg, ns, wt);
    for (int64_t r = 0, j = 0; r < n; r++) {
        float *d = dhc + r * D;
        const float *ur = u + r * ldu;
        if (tc[r] < 0) {
            memset(d, 0, (size_t)D * sizeof(float));
            continue;
        }
        loss += (double)mx[r] + log(sum[r]) - (double)lt[r];
        float k = (float)(scale / sum[r]);
        const float *w = wt + (j++) * D;
        for (int64_t i = 0; i < D; i++) d[i] = ur[i] * k - scale * w[i];
    }
    yf_buf_put(wt);
    free(tg);
    yf_buf_put(hpk);
    yf_buf_put(ppk);
    yf_buf_put(lb);
    if (u != dhc) yf_buf_put(u);
    free(mx), free(lt), free(sum);
    return loss;
}

/* The head and the loss over the final hidden states hn [N, D], in chunks of
 * rows so that [N, V] logits never exist at once unless the caller wants
 * them. Rows whose target < 0 are skipped unless logits are wanted. With
 * dhn != NULL, writes d(loss_scale * loss)/d hn there (rows not scored: 0)
 * and accumulates the head's gradient in full-finetune mode. */
double yf_model_head_loss(yf_model *m, const float *hn, const int64_t *target, int64_t N, float *logits, float *dhn,
                        float loss_scale) {
    int64_t D = m->D, V = m->V;
    int64_t *rows = yf_malloc((size_t)N * sizeof(int64_t));
    int64_t nr = 0;
    for (int64_t i = 0; i < N; i++)
        if (logits || target[i] >= 0) rows[nr++] = i;
    /* about 256 MB of logits per chunk: each chunk streams the whole [V, D]
     * head through the products (twice with the backward), so chunks of a few
     * dozen rows made the head weight-bandwidth bound (at V = 135040, 62-row
     * chunks ran at a third of the rate of 384-row ones) */
    int64_t R = ((int64_t)1 << 26) / V;
    /* training with bf16 products: a vocabulary block at a time, no logits;
     * a chunk's buffers are then [R, D] and [R, 2048], so up to 8192 rows go
     * in one chunk (the 24-layer B=6 step's 2304: W streamed once, not 5
     * times, and at that many rows packing W per product costs little, so
     * the head is not packed: 1.1 GB less). On the AVX-512 and AVX2 paths
     * exact mode too: their products are fp32 in both precisions, and the
     * blocked route's online softmax (fp32 exps, double sums) is fp32-level
     * as well; it saves the two passes over 200 MB of logits a chunk (the
     * 2-layer exact step: docs/performance.md, the non-AMX paths) */
    yf_kpath path = yf_kernels_path();
    bool fma = path == YF_KPATH_AVX512 || path == YF_KPATH_AVX2;
    bool blocked = dhn && !logits && target && !m->head.g && (yf_kernels_precision() == YF_PREC_BF16 || fma) &&
                   !m->head_two_pass;
    if (blocked) R = 8192;
    if (R < 1) R = 1;
    if (R > nr) R = nr;
    float *hc = yf_buf_get((size_t)(R * D + 1) * sizeof(float));
    float *lbuf = blocked ? NULL : yf_buf_get((size_t)(R * V + 1) * sizeof(float));
    float *dl = (dhn && logits) ? yf_buf_get((size_t)(R * V + 1) * sizeof(float)) : NULL; /* else in place */
    float *dhc = dhn ? yf_buf_get((size_t)((R + 31) / 32 * 32 * D + 1) * sizeof(float)) : NULL; /* whole panels */
    int64_t *tc = yf_malloc((size_t)(R + 1) * sizeof(int64_t));
    if (dhn) memset(dhn, 0, (size_t)(N * D) * sizeof(float));
    double loss = 0;
    for (int64_t c0 = 0; c0 < nr; c0 += R) {
        int64_t n = nr - c0 < R ? nr - c0 : R;
        for (int64_t i = 0; i < n; i++) {
            memcpy(hc + i * D, hn + rows[c0 + i] * D, (size_t)D * sizeof(float));
            tc[i] = target ? target[rows[c0 + i]] : -1;
        }
        if (blocked) {
            loss += head_chunk_blocked(m, hc, tc, n, dhc, loss_scale);
        } else {
            /* with logits wanted every row is in `rows`, in order, so the chunk is contiguous */
            float *lg = logits ? logits + rows[c0] * V : lbuf;
            yf_matmul_xwt_pk(lg, hc, m->head.data, m->head.dt, yf_model_fwd_pack(m, &m->head, n, dhn != NULL, true), n, V, D,
                             false);
            if (!target) continue;
            float *dlc = dl ? dl : lg;
            loss += yf_xent(dhn ? dlc : NULL, lg, tc, n, V, loss_scale);
            if (!dhn) continue;
            yf_matmul_xw_pk(dhc, dlc, m->head.data, m->head.dt, yf_model_wpack(m, &m->head, YF_PACK_XW, n), n, V, D,
                            false);
            if (m->head.g) yf_matmul_dw(m->head.g, dlc, hc, n, V, D);
        }
        for (int64_t i = 0; i < n; i++) memcpy(dhn + rows[c0 + i] * D, dhc + i * D, (size_t)D * sizeof(float));
    }
    free(rows);
    yf_buf_put(hc);
    yf_buf_put(lbuf);
    if (dl) yf_buf_put(dl);
    yf_buf_put(dhc);
    free(tc);
    return loss;
}

