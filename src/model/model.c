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
    float *xa = yf_aligned_alloc((size_t)(N * D) * sizeof(float)), *xb = yf_aligned_alloc((size_t)(N * D) * sizeof(float));
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
    free(xa);
    free(xb);
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

/* One pass of yf_model_prefill_batch (inputs checked). */
static void prefill_pass(yf_model *m, const yf_lora *lo, const yf_row_adapters *ra, yf_layer_state *states,
                         int64_t n, const int64_t *slot, const int64_t *pos, int64_t *doc_start,
                         const int64_t *const *ids, const int64_t *len, float *logits) {
    int64_t D = m->D, *off = yf_malloc((size_t)(n + 1) * sizeof(int64_t));
    off[0] = 0;
    for (int64_t j = 0; j < n; j++) off[j + 1] = off[j] + len[j];
    int64_t N = off[n];
    int64_t *flat = yf_malloc((size_t)N * sizeof(int64_t)), *start = yf_malloc((size_t)N * sizeof(int64_t));
    for (int64_t j = 0; j < n; j++) {
        int64_t s = doc_start[j];
        for (int64_t t = 0; t < len[j]; t++) {
            flat[off[j] + t] = ids[j][t];
            start[off[j] + t] = s;
            if (m->cfg.reset_attention_mask && ids[j][t] == m->cfg.eod_token) s = pos[j] + t + 1;
        }
        doc_start[j] = s;
    }
    yf_run r;
    yf_run_init_prefill(&r, m, lo, ra, n, off, slot, pos, start);
    bool was_stable = yf_kernels_set_rowstable(false);
    yf_act act;
    yf_act_alloc(&act, m, 1, N, false);
    float *xa = yf_aligned_alloc((size_t)(N * D) * sizeof(float)), *xb = yf_aligned_alloc((size_t)(N * D) * sizeof(float));
    yf_model_embed_rows(m, flat, N, xa);
    for (int64_t l = 0; l < m->L; l++) {
        act.x = xa;
        yf_layer_fwd(&r, l, &act, xb, &states[l]);
        float *t = xa;
        xa = xb;
        xb = t;
    }
    for (int64_t j = 0; j < n; j++) /* each sequence's last row feeds the head */
        memmove(xa + j * D, xa + (off[j + 1] - 1) * D, (size_t)D * sizeof(float));
    yf_rmsnorm_fwd(xb, NULL, xa, (const float *)m->norm.data, n, D, m->cfg.rms_norm_eps);
    /* the head a row-stable product at a time: each row's bits as alone */
    yf_kernels_set_rowstable(true);
    for (int64_t j = 0; logits && j < n; j += YF_ROWSTABLE_M)
        yf_model_head_loss(m, xb + j * D, NULL, n - j < YF_ROWSTABLE_M ? n - j : YF_ROWSTABLE_M, logits + j * m->V,
                           NULL, 1.0f);
    yf_kernels_set_rowstable(was_stable);
    free(xa), free(xb), free(start), free(flat), free(off);
    yf_act_free(&act);
    yf_run_free(&r);
}

int yf_model_prefill_batch(yf_model *m, const yf_lora *lo, const yf_row_adapters *ra, yf_layer_state *states,
                           int64_t n, const int64_t *slot, const int64_t *pos, int64_t *doc_start,
                           const int64_t *const *ids, const int64_t *len, float *logits) {
    if (n <= 0) return yf_errorf("model: a prefill of no sequences");
    if (lo && ra) return yf_errorf("model: a prefill takes one adapter or one a sequence, not both");
    if (check_adapters(m, lo, ra, n) != 0) return -1;
    for (int64_t j = 0; j < n; j++) {
        if (len[j] <= 0) return yf_errorf("model: sequence %lld of a prefill has no ids", (long long)j);
        if (check_inputs(m, NULL, ids[j], NULL, 1, len[j], pos[j]) != 0) return -1;
        if (pos[j] + len[j] > states[0].cap)
            return yf_errorf("model: %lld positions do not fit the cache of %lld", (long long)(pos[j] + len[j]),
                             (long long)states[0].cap);
    }
    for (int64_t j0 = 0, j1; j0 < n; j0 = j1) { /* passes of up to PREFILL_PASS_ROWS rows (or one sequence) */
        int64_t rows = len[j0];
        for (j1 = j0 + 1; j1 < n && rows + len[j1] <= PREFILL_PASS_ROWS; j1++) rows += len[j1];
        const yf_row_adapters *rp = ra;
        yf_row_adapters sub;
        if (ra) sub = *ra, sub.row = ra->row + j0, rp = &sub;
        prefill_pass(m, lo, rp, states, j1 - j0, slot + j0, pos + j0, doc_start + j0, ids + j0, len + j0,
                     logits ? logits + j0 * m->V : NULL);
    }
    return 0;
}

int yf_model_prefill_rows(yf_model *m, const yf_lora *lo, yf_layer_state *states, int64_t pos0, int64_t *doc_start,
                          const int64_t *ids, int64_t T, float *const *a_rows, float *const *c_rows) {
    return forward_cached(m, lo, NULL, states, pos0, NULL, doc_start, ids, 1, T, NULL, false, a_rows, c_rows);
}
