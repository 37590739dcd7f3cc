/* model: the whole-model drivers: a forward (and backward) over a batch of
 * sequences through every layer and the head, and the incremental forward
 * over a key/value + localized-filter cache that generation runs on.
 * Loading is model/load.c, one layer model/layer.c, the head model/head.c;
 * the structs and the per-layer API are in model_internal.h. */
#include "model/model_internal.h"

#include <stdlib.h>
#include <string.h>

#include "base/bufcache.h"
#include "model/ops.h"

/* ---- whole-model drivers ------------------------------------------------------------ */

static int check_inputs(const yf_model *m, const yf_lora *lo, const int64_t *ids, const int64_t *labels, int64_t B,
                        int64_t T, int64_t pos0) {
    if (B <= 0 || T <= 0) return yf_errorf("model: empty batch (B=%lld, T=%lld)", (long long)B, (long long)T);
    if (pos0 + T > m->cfg.max_position_embeddings)
        return yf_errorf("model: sequence length %lld exceeds max_position_embeddings %lld of config.json",
                         (long long)(pos0 + T), (long long)m->cfg.max_position_embeddings);
    for (int64_t i = 0; i < B * T; i++) {
        if (ids[i] < 0 || ids[i] >= m->V)
            return yf_errorf("model: input_ids[%lld][%lld] = %lld is outside the vocabulary [0, %lld)",
                             (long long)(i / T), (long long)(i % T), (long long)ids[i], (long long)m->V);
        if (labels && labels[i] != -100 && (labels[i] < 0 || labels[i] >= m->V))
            return yf_errorf("model: labels[%lld][%lld] = %lld is neither -100 nor a token id in [0, %lld)",
                             (long long)(i / T), (long long)(i % T), (long long)labels[i], (long long)m->V);
    }
    if (lo && yf_lora_check_fits(lo, &m->cfg) != 0) return -1;
    return 0;
}

/* One call: forward (and backward when bo != NULL). */
static int model_run(yf_model *m, const yf_lora *lo, yf_lora *glo, const int64_t *ids, const int64_t *labels,
                     int64_t B, int64_t T, float *logits, const yf_backward_opts *bo, double *loss_sum,
                     int64_t *ntok) {
    if (check_inputs(m, lo, ids, labels, B, T, 0) != 0) return -1;
    if (bo && !labels) return yf_errorf("model: the backward needs labels");
    if (bo && m->opts.full_finetune && lo)
        return yf_errorf("model: full fine-tuning and an adapter at once are not supported");
    int64_t N = B * T, D = m->D, L = m->L;
    int64_t *start = yf_malloc((size_t)N * sizeof(int64_t));
    yf_doc_starts(start, ids, B, T, m->cfg.eod_token, m->cfg.reset_attention_mask);
    int64_t *target = NULL, nt = 0;
    if (labels) {
        target = yf_malloc((size_t)N * sizeof(int64_t));
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++) {
                int64_t y = t + 1 < T ? labels[b * T + t + 1] : -100;
                target[b * T + t] = y == -100 ? -1 : y;
                nt += y != -100;
            }
    }
    if (glo) yf_lora_alloc_grads(glo); /* no-op when allocated */
    bool bwd = bo != NULL, ckpt = bwd && bo->gradient_checkpointing;
    yf_run r;
    yf_run_init(&r, m, lo, B, T, 0, start, bwd ? bo->dropout_rng : NULL, bwd);
    r.glo = glo;

    /* activations: forward only: one act, two x buffers in turn; backward: an
     * act per layer; checkpointing: the layer inputs plus one act to recompute */
    int64_t nacts = bwd && !ckpt ? L : 1;
    yf_act *acts = yf_calloc((size_t)nacts, sizeof *acts);
    for (int64_t i = 0; i < nacts; i++) yf_act_alloc(&acts[i], m, B, T, !ckpt);
    int64_t nx = ckpt ? L + 1 : (bwd ? 1 : 2);
    float **xs = yf_calloc((size_t)nx, sizeof *xs);
    for (int64_t i = 0; i < nx; i++) xs[i] = yf_buf_get((size_t)(N * D) * sizeof(float));
    float *x0 = ckpt || !bwd ? xs[0] : acts[0].x;
    yf_model_embed_rows(m, ids, N, x0);
    float *hL = NULL;
    for (int64_t l = 0; l < L; l++) {
        yf_act *a;
        float *out;
        if (!bwd) {
            a = &acts[0];
            a->x = xs[l % 2];
            out = xs[(l + 1) % 2];
        } else if (!ckpt) {
            a = &acts[l];
            out = l + 1 < L ? acts[l + 1].x : xs[0];
        } else {
            a = &acts[0];
            a->x = xs[l];
            out = xs[l + 1];
        }
        yf_layer_fwd(&r, l, a, out, NULL);
        hL = out;
    }
    float *hn = yf_buf_get((size_t)(N * D) * sizeof(float));
    float *rsF = yf_malloc((size_t)N * sizeof(float));
    yf_rmsnorm_fwd(hn, rsF, hL, (const float *)m->norm.data, N, D, m->cfg.rms_norm_eps);
    float *dh = bwd ? yf_buf_get((size_t)(N * D) * sizeof(float)) : NULL;
    float *dh2 = bwd ? yf_buf_get((size_t)(N * D) * sizeof(float)) : NULL;
    double loss = 0;
    if (labels || logits) loss = yf_model_head_loss(m, hn, target, N, logits, dh2, bwd ? bo->loss_scale : 1.0f);
    if (bwd) {
        yf_rmsnorm_bwd(dh, m->norm.g, dh2, hL, rsF, (const float *)m->norm.data, N, D, false);
        float *trash = hn; /* the recomputed layer's output is not needed */
        for (int64_t l = L - 1; l >= 0; l--) {
            yf_act *a = ckpt ? &acts[0] : &acts[l];
            if (ckpt) {
                a->x = xs[l];
                yf_layer_fwd(&r, l, a, trash, NULL);
            }
            bool need_dx = l > 0 || m->embed.g;
            yf_layer_bwd(&r, l, a, dh, need_dx ? dh2 : NULL);
            float *t = dh;
            dh = dh2;
            dh2 = t;
        }
        if (m->embed.g) yf_embed_bwd(m->embed.g, dh, ids, N, D);
    }
    if (loss_sum) *loss_sum = loss;
    if (ntok) *ntok = nt;
    for (int64_t i = 0; i < nacts; i++) yf_act_free(&acts[i]);
    free(acts);
    for (int64_t i = 0; i < nx; i++) yf_buf_put(xs[i]);
    free(xs);
    yf_buf_put(hn);
    free(rsF);
    yf_buf_put(dh);
    yf_buf_put(dh2);
    free(start);
    free(target);
    yf_run_free(&r);
    return 0;
}

int yf_model_forward(yf_model *m, const yf_lora *lora, const int64_t *ids, const int64_t *labels, int64_t B,
                     int64_t T, float *logits, double *loss_sum, int64_t *ntok) {
    return model_run(m, lora, NULL, ids, labels, B, T, logits, NULL, loss_sum, ntok);
}

int yf_model_forward_backward(yf_model *m, yf_lora *lora, const int64_t *ids, const int64_t *labels, int64_t B,
                              int64_t T, const yf_backward_opts *o, double *loss_sum, int64_t *ntok) {
    yf_backward_opts def = {.loss_scale = 1.0f};
    if (!o) o = &def;
    if (o->shared_prefix != YF_SHARE_OFF) {
        if (check_inputs(m, lora, ids, labels, B, T, 0) != 0) return -1;
        if (!labels) return yf_errorf("model: the backward needs labels");
        if (m->opts.full_finetune && lora)
            return yf_errorf("model: full fine-tuning and an adapter at once are not supported");
        int64_t P = yf_common_prefix(ids, B, T);
        if (o->shared_prefix == YF_SHARE_ON || (B >= 2 && P >= YF_SHARE_AUTO_MIN)) {
            double ls = 0;
            int64_t nt = 0;
            int rc = yf_model_run_shared(m, lora, lora, ids, labels, B, T, P, o, &ls, &nt);
            if (loss_sum) *loss_sum = ls;
            if (ntok) *ntok = nt;
            return rc;
        }
    }
    return model_run(m, lora, lora, ids, labels, B, T, NULL, o, loss_sum, ntok);
}

/* ---- incremental forward (the generation path's building block) ---------------------- */

yf_layer_state *yf_layer_states_alloc(const yf_model *m, int64_t B, int64_t cap) {
    yf_layer_state *s = yf_calloc((size_t)m->L, sizeof *s);
    for (int64_t l = 0; l < m->L; l++) {
        s[l].cap = cap;
        s[l].k = yf_aligned_alloc((size_t)(B * m->H * cap * m->hd) * sizeof(float));
        s[l].v = yf_aligned_alloc((size_t)(B * m->H * cap * m->hd) * sizeof(float));
        s[l].a_prev = yf_aligned_alloc((size_t)(B * m->D) * sizeof(float));
        s[l].c_prev = yf_aligned_alloc((size_t)(B * m->D / 2) * sizeof(float));
    }
    return s;
}

void yf_layer_states_free(yf_layer_state *s, const yf_model *m) {
    if (!s) return;
    for (int64_t l = 0; l < m->L; l++) {
        free(s[l].k);
        free(s[l].v);
        free(s[l].a_prev);
        free(s[l].c_prev);
    }
    free(s);
}

void yf_layer_states_slot(yf_layer_state *view, const yf_layer_state *s, const yf_model *m, int64_t b) {
    for (int64_t l = 0; l < m->L; l++) {
        view[l] = s[l];
        view[l].k = s[l].k + b * m->H * s[l].cap * m->hd;
        view[l].v = s[l].v + b * m->H * s[l].cap * m->hd;
        view[l].a_prev = s[l].a_prev + b * m->D;
        view[l].c_prev = s[l].c_prev + b * m->D / 2;
    }
}

void yf_layer_states_restart(yf_layer_state *st, const yf_model *m) {
    for (int64_t l = 0; l < m->L; l++) {
        memset(st[l].a_prev, 0, (size_t)m->D * sizeof(float));
        memset(st[l].c_prev, 0, (size_t)(m->D / 2) * sizeof(float));
    }
}

int yf_model_forward_chunk(yf_model *m, const yf_lora *lo, yf_layer_state *states, int64_t pos0,
                           int64_t *doc_start, const int64_t *ids, int64_t B, int64_t T, float *logits) {
    return yf_model_forward_cached(m, lo, states, pos0, NULL, doc_start, ids, B, T, logits, false);
}

/* Whether lo and the adapters of ra (for B sequences) fit the model. */
static int check_adapters(const yf_model *m, const yf_lora *lo, const yf_row_adapters *ra, int64_t B) {
    if (lo && yf_lora_check_fits(lo, &m->cfg) != 0) return -1;
    for (int64_t a = 0; ra && a < ra->n; a++)
        if (yf_lora_check_fits(ra->lo[a], &m->cfg) != 0) return -1;
    for (int64_t b = 0; ra && b < B; b++)
        if (ra->row[b] < -1 || ra->row[b] >= ra->n)
            return yf_errorf("model: sequence %lld's adapter %d is not one of the %lld given", (long long)b,
                             (int)ra->row[b], (long long)ra->n);
    return 0;
}

/* yf_model_forward_cached with one adapter lo, or one a sequence (ra); with
 * a_rows / c_rows (NULL: not wanted) also each layer's input_layernorm and
 * conv1 rows: a_rows[l] [B*T, D], c_rows[l] [B*T, D/2] (what a prefix cache
 * keeps). */
static int forward_cached(yf_model *m, const yf_lora *lo, const yf_row_adapters *ra, yf_layer_state *states,
                          int64_t pos0, const int64_t *posb, int64_t *doc_start, const int64_t *ids, int64_t B,
                          int64_t T, float *logits, bool last_only, float *const *a_rows, float *const *c_rows) {
    int64_t maxpos = pos0;
    for (int64_t b = 0; posb && b < B; b++)
        if (pos0 + posb[b] > maxpos) maxpos = pos0 + posb[b];
    if (check_inputs(m, lo, ids, NULL, B, T, maxpos) != 0) return -1;
    if (check_adapters(m, NULL, ra, B) != 0) return -1;
    if (maxpos + T > states[0].cap)
        return yf_errorf("model: %lld positions do not fit the cache of %lld", (long long)(maxpos + T),
                         (long long)states[0].cap);
    int64_t N = B * T, D = m->D;
    int64_t *start = yf_malloc((size_t)N * sizeof(int64_t));
    for (int64_t b = 0; b < B; b++) {
        int64_t s = doc_start[b], p0 = pos0 + (posb ? posb[b] : 0);
        for (int64_t t = 0; t < T; t++) {
            start[b * T + t] = s;
            if (m->cfg.reset_attention_mask && ids[b * T + t] == m->cfg.eod_token) s = p0 + t + 1;
        }
        doc_start[b] = s;
    }
    yf_run r;
    if (ra)
        yf_run_init_rows(&r, m, ra, B, T, pos0, start);
    else
        yf_run_init(&r, m, lo, B, T, pos0, start, NULL, false);
    r.posb = posb;
    /* a decode step: each sequence's bits as decoded alone (kernels.h) */
    bool was_stable = yf_kernels_set_rowstable(T == 1 && B <= YF_ROWSTABLE_M);
    yf_act act;
    yf_act_alloc(&act, m, B, T, false);
    /* recycled (bufcache.h): a serve or extract loop makes these every step */
    float *xa = yf_buf_get((size_t)(N * D) * sizeof(float)), *xb = yf_buf_get((size_t)(N * D) * sizeof(float));
    yf_model_embed_rows(m, ids, N, xa);
    for (int64_t l = 0; l < m->L; l++) {
        act.x = xa;
        yf_layer_fwd(&r, l, &act, xb, &states[l]);
        if (a_rows) memcpy(a_rows[l], act.a, (size_t)(N * D) * sizeof(float));
        if (c_rows) memcpy(c_rows[l], act.c, (size_t)(N * D / 2) * sizeof(float));
        float *t = xa;
        xa = xb;
        xb = t;
    }
    if (last_only) { /* only each sequence's last row feeds the head */
        for (int64_t b = 0; b < B; b++) memmove(xa + b * D, xa + (b * T + T - 1) * D, (size_t)D * sizeof(float));
        N = B;
    }
    yf_rmsnorm_fwd(xb, NULL, xa, (const float *)m->norm.data, N, D, m->cfg.rms_norm_eps);
    if (logits) yf_model_head_loss(m, xb, NULL, N, logits, NULL, 1.0f);
    yf_kernels_set_rowstable(was_stable);
    yf_buf_put(xa);
    yf_buf_put(xb);
    free(start);
    yf_act_free(&act);
    yf_run_free(&r);
    return 0;
}

int yf_model_forward_cached(yf_model *m, const yf_lora *lo, yf_layer_state *states, int64_t pos0,
                            const int64_t *posb, int64_t *doc_start, const int64_t *ids, int64_t B, int64_t T,
                            float *logits, bool last_only) {
    return forward_cached(m, lo, NULL, states, pos0, posb, doc_start, ids, B, T, logits, last_only, NULL, NULL);
}

int yf_model_forward_cached_rows(yf_model *m, const yf_row_adapters *ra, yf_layer_state *states, int64_t pos0,
                                 const int64_t *posb, int64_t *doc_start, const int64_t *ids, int64_t B, int64_t T,
                                 float *logits, bool last_only) {
    return forward_cached(m, NULL, ra, states, pos0, posb, doc_start, ids, B, T, logits, last_only, NULL, NULL);
}

/* Rows one pass of yf_model_prefill_batch takes (more sequences go in
 * several passes): ~0.25 MB of activations and workspace a row on Yuan2-2B's
 * shape, and products of about this many rows run at the packed kernels'
 * full rate. */
#define PREFILL_PASS_ROWS 1024

/* One pass of yf_model_prefill_batch over q[0..n) (inputs checked); with
 * stable, the products are row-stable (at most YF_ROWSTABLE_M rows). */
static void prefill_pass(yf_model *m, const yf_lora *lo, const yf_row_adapters *ra, yf_prefill *const *q, int64_t n,
                         bool stable) {
    int64_t D = m->D, L = m->L, *off = yf_malloc((size_t)(n + 1) * sizeof(int64_t));
    int64_t *pos = yf_malloc((size_t)n * sizeof(int64_t));
    int32_t *row = yf_malloc((size_t)n * sizeof(int32_t));
    yf_layer_state **st = yf_malloc((size_t)n * sizeof *st);
    off[0] = 0;
    for (int64_t j = 0; j < n; j++) off[j + 1] = off[j] + q[j]->len, pos[j] = q[j]->pos, st[j] = q[j]->st, row[j] = q[j]->adapter;
    int64_t N = off[n];
    int64_t *flat = yf_malloc((size_t)N * sizeof(int64_t)), *start = yf_malloc((size_t)N * sizeof(int64_t));
    for (int64_t j = 0; j < n; j++) {
        int64_t s = q[j]->doc_start;
        for (int64_t t = 0; t < q[j]->len; t++) {
            flat[off[j] + t] = q[j]->ids[t];
            start[off[j] + t] = s;
            if (m->cfg.reset_attention_mask && q[j]->ids[t] == m->cfg.eod_token) s = q[j]->pos + t + 1;
        }
        q[j]->doc_start = s;
    }
    yf_row_adapters rs;
    if (ra) rs = *ra, rs.row = row;
    yf_run r;
    yf_run_init_prefill(&r, m, lo, ra ? &rs : NULL, n, off, st, pos, start);
    bool was_stable = yf_kernels_set_rowstable(stable);
    yf_act act;
    yf_act_alloc(&act, m, 1, N, false);
    float *xa = yf_buf_get((size_t)(N * D) * sizeof(float)), *xb = yf_buf_get((size_t)(N * D) * sizeof(float));
    yf_model_embed_rows(m, flat, N, xa);
    for (int64_t l = 0; l < L; l++) {
        act.x = xa;
        yf_layer_fwd(&r, l, &act, xb, NULL);
        for (int64_t j = 0; j < n; j++) { /* the filter rows, where wanted */
            if (q[j]->a_rows) memcpy(q[j]->a_rows[l], act.a + off[j] * D, (size_t)(q[j]->len * D) * sizeof(float));
            if (q[j]->c_rows) memcpy(q[j]->c_rows[l], act.c + off[j] * D / 2, (size_t)(q[j]->len * D / 2) * sizeof(float));
        }
        float *t = xa;
        xa = xb;
        xb = t;
    }
    for (int64_t j = 0; j < n; j++) /* each sequence's last row feeds the head */
        memmove(xa + j * D, xa + (off[j + 1] - 1) * D, (size_t)D * sizeof(float));
    yf_rmsnorm_fwd(xb, NULL, xa, (const float *)m->norm.data, n, D, m->cfg.rms_norm_eps);
    /* the head a row-stable product at a time: each row's bits as alone */
    yf_kernels_set_rowstable(true);
    for (int64_t j = 0; j < n; j++) {
        if (!q[j]->logits) continue;
        int64_t k = 1; /* a run of rows that want logits, into one buffer */
        while (j + k < n && k < YF_ROWSTABLE_M && q[j + k]->logits) k++;
        float *lg = yf_buf_get((size_t)(k * m->V) * sizeof(float));
        yf_model_head_loss(m, xb + j * D, NULL, k, lg, NULL, 1.0f);
        for (int64_t i = 0; i < k; i++) memcpy(q[j + i]->logits, lg + i * m->V, (size_t)m->V * sizeof(float));
        yf_buf_put(lg);
        j += k - 1;
    }
    yf_kernels_set_rowstable(was_stable);
    yf_buf_put(xa), yf_buf_put(xb);
    free(start), free(flat), free(off), free(pos), free(row), free(st);
    yf_act_free(&act);
    yf_run_free(&r);
}

int yf_model_prefill_batch(yf_model *m, const yf_lora *lo, const yf_row_adapters *ra, yf_prefill *seq, int64_t n) {
    if (n <= 0) return yf_errorf("model: a prefill of no sequences");
    if (lo && ra) return yf_errorf("model: a prefill takes one adapter or one a sequence, not both");
    if (check_adapters(m, lo, ra, 0) != 0) return -1; /* each sequence's index into ra below */
    for (int64_t j = 0; j < n; j++) {
        const yf_prefill *q = &seq[j];
        if (q->len <= 0) return yf_errorf("model: sequence %lld of a prefill has no ids", (long long)j);
        if (check_inputs(m, NULL, q->ids, NULL, 1, q->len, q->pos) != 0) return -1;
        if (q->pos + q->len > q->st[0].cap)
            return yf_errorf("model: %lld positions do not fit the cache of %lld", (long long)(q->pos + q->len),
                             (long long)q->st[0].cap);
        if (ra && (q->adapter < -1 || q->adapter >= ra->n))
            return yf_errorf("model: sequence %lld's adapter %d is not one of the %lld given", (long long)j,
                             (int)q->adapter, (long long)ra->n);
    }
    /* Sequences of YF_PREFILL_BATCH_MIN+ rows go in passes of up to
     * PREFILL_PASS_ROWS rows (their products take the packed kernels, as
     * alone); those of up to YF_GEMV_ROWS in passes of up to YF_ROWSTABLE_M
     * rows (alone their products take the few-row kernels, whose rows the
     * row-stable products keep); the others alone (alone they are too few
     * rows for AMX, together they would not be). A quantized weight's
     * products change kernels past YF_QMAT_GEMV_ROWS rows instead: with
     * one, sequences batch from the row count after it. */
    const int64_t batch_min = m->quant_bytes > 0 ? YF_QMAT_GEMV_ROWS + 1 : YF_PREFILL_BATCH_MIN;
    yf_prefill **q = yf_malloc((size_t)n * sizeof *q);
    for (int cls = 0; cls < 3; cls++) {
        int64_t k = 0, rows = 0, cap = cls == 0 ? PREFILL_PASS_ROWS : cls == 1 ? YF_ROWSTABLE_M : 0;
        for (int64_t j = 0; j <= n; j++) {
            int64_t len = j < n ? seq[j].len : 0;
            bool take = j < n && (cls == 0   ? len >= batch_min
                                  : cls == 1 ? len <= YF_GEMV_ROWS
                                             : len > YF_GEMV_ROWS && len < batch_min);
            if (k > 0 && (j == n || (take && rows + len > cap))) {
                prefill_pass(m, lo, ra, q, k, cls == 1);
                k = rows = 0;
            }
            if (take) q[k++] = &seq[j], rows += len;
        }
    }
    free(q);
    return 0;
}

int yf_model_prefill_rows(yf_model *m, const yf_lora *lo, yf_layer_state *states, int64_t pos0, int64_t *doc_start,
                          const int64_t *ids, int64_t T, float *const *a_rows, float *const *c_rows) {
    return forward_cached(m, lo, NULL, states, pos0, NULL, doc_start, ids, 1, T, NULL, false, a_rows, c_rows);
}
