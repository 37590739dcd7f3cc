/* model/prefix_train: the forward and backward of a training batch whose rows
 * share a prefix (docs/shared-prefix.md). The recipe's rows all open with
 * the same instruction template, ~130 of their ~207 tokens: computing it
 * once per micro-batch instead of once per row is exact, because causal
 * attention means the prefix never sees the rows after it.
 *
 *   prefix    ids[0..P) of row 0 (= every row's), one sequence of P rows;
 *   segments  row b's positions P..need_b-1 (need_b: up to its last scored
 *             position; rows needing no more than the prefix have none),
 *             ragged, back to back, each attending over the prefix's keys
 *             and values and its own, its filter seeing the prefix's last
 *             a / c rows as the row before it (yf_pfx_view);
 *   head      the prefix's rows once for each row that scores them, the
 *             segments' rows once;
 *   backward  per layer, the segments first, their gradients for the
 *             prefix's keys, values and last filter rows summed into one
 *             yf_pfx_grad, then the prefix's backward taking it in.
 * With gradient checkpointing both keep only their layer inputs and the
 * backward recomputes the prefix's layer before the segments' (which read
 * it). Positions after a row's last scored one (the padding of a batch) are
 * not computed at all: they cannot change the loss. */
#include "model/model_internal.h"

#include <stdlib.h>
#include <string.h>

#include "base/bufcache.h"
#include "model/ops.h"

int64_t yf_common_prefix(const int64_t *ids, int64_t B, int64_t T) {
    int64_t p = 0;
    for (; p < T; p++)
        for (int64_t b = 1; b < B; b++)
            if (ids[b * T + p] != ids[p]) return p;
    return p;
}

/* One of the two parts (the prefix, the segments): its run, activations
 * and gradients. */
typedef struct part {
    yf_run r;
    int64_t N;
    yf_act *acts;     /* [L] kept, or [1] recomputed (checkpointing) */
    float **xs;       /* checkpointing: [L + 1] layer inputs and the output; else [1]: the output */
    float *xblock;    /* what xs point into (one block: the buffer cache keeps few) */
    float *rs;        /* [N] the final norm's 1/rms */
    float *dh, *dh2;  /* [N, D] */
} part;

static void part_alloc(part *p, const yf_model *m, int64_t N, bool ckpt) {
    p->N = N;
    int64_t nacts = ckpt ? 1 : m->L, nx = ckpt ? m->L + 1 : 1;
    p->acts = yf_calloc((size_t)nacts, sizeof *p->acts);
    for (int64_t i = 0; i < nacts; i++) yf_act_alloc(&p->acts[i], m, 1, N, !ckpt);
    p->xs = yf_calloc((size_t)nx, sizeof *p->xs);
    p->xblock = yf_buf_get((size_t)(nx * N * m->D) * sizeof(float));
    for (int64_t i = 0; i < nx; i++) p->xs[i] = p->xblock + i * N * m->D;
    p->rs = yf_malloc((size_t)N * sizeof(float));
    p->dh = yf_buf_get((size_t)(N * m->D) * sizeof(float));
    p->dh2 = yf_buf_get((size_t)(N * m->D) * sizeof(float));
}

static void part_free(part *p, const yf_model *m, bool ckpt) {
    if (!p->acts) return;
    for (int64_t i = 0; i < (ckpt ? 1 : m->L); i++) yf_act_free(&p->acts[i]);
    yf_buf_put(p->xblock);
    free(p->acts), free(p->xs), free(p->rs);
    yf_buf_put(p->dh), yf_buf_put(p->dh2);
    yf_run_free(&p->r);
}

static float *part_in(part *p, int64_t l, bool ckpt) { return ckpt ? p->xs[l] : p->acts[l].x; }
static yf_act *part_act(part *p, int64_t l, bool ckpt) { return ckpt ? &p->acts[0] : &p->acts[l]; }
/* the last layer's output */
static float *part_top(part *p, const yf_model *m, bool ckpt) { return ckpt ? p->xs[m->L] : p->xs[0]; }

/* Layer l forward of a part; out NULL: the next layer's input. */
static void part_fwd(part *p, const yf_model *m, int64_t l, bool ckpt, float *out) {
    yf_act *a = part_act(p, l, ckpt);
    if (ckpt) a->x = p->xs[l];
    if (!out) out = ckpt ? p->xs[l + 1] : (l + 1 < m->L ? p->acts[l + 1].x : p->xs[0]);
    yf_layer_fwd(&p->r, l, a, out, NULL);
}

/* The prefix as the segments see it at a layer: its activations there. */
static void view_of(yf_pfx_view *v, const yf_act *a, int64_t P, int64_t D) {
    v->k = a->k, v->v = a->v;
    v->a_last = a->a + (P - 1) * D;
    v->c_last = a->c + (P - 1) * D / 2;
}

int yf_model_run_shared(yf_model *m, const yf_lora *lo, yf_lora *glo, const int64_t *ids, const int64_t *labels,
                        int64_t B, int64_t T, int64_t P, const yf_backward_opts *bo, double *loss_sum, int64_t *ntok) {
    int64_t D = m->D, L = m->L, nt = 0, maxneed = 0;
    bool ckpt = bo->gradient_checkpointing;
    /* targets (labels shifted), and the positions each row needs */
    int64_t *target = yf_malloc((size_t)(B * T) * sizeof(int64_t)), *need = yf_calloc((size_t)B, sizeof(int64_t));
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            int64_t y = t + 1 < T ? labels[b * T + t + 1] : -100;
            target[b * T + t] = y == -100 ? -1 : y;
            if (y != -100) nt++, need[b] = t + 1;
            if (need[b] > maxneed) maxneed = need[b];
        }
    if (maxneed == 0) { /* nothing scored: no loss, no gradient */
        free(target), free(need);
        *loss_sum = 0;
        *ntok = 0;
        return 0;
    }
    if (P > maxneed) P = maxneed; /* nobody needs prefix positions past its last scored one */
    int64_t *start = yf_malloc((size_t)(B * T) * sizeof(int64_t));
    yf_doc_starts(start, ids, B, T, m->cfg.eod_token, m->cfg.reset_attention_mask);

    /* the segments: their rows' ids, document starts and targets */
    int64_t *seg_off = yf_malloc((size_t)(B + 1) * sizeof(int64_t)), nseg = 0;
    seg_off[0] = 0;
    for (int64_t b = 0; b < B; b++)
        if (need[b] > P) seg_off[nseg + 1] = seg_off[nseg] + need[b] - P, nseg++;
    int64_t Nr = seg_off[nseg];
    int64_t *rid = yf_malloc((size_t)(Nr + 1) * sizeof(int64_t)), *rstart = yf_malloc((size_t)(Nr + 1) * sizeof(int64_t));
    /* head rows: the prefix's P, the segments' Nr, then a copy of prefix row t
     * for every further row that scores it */
    int64_t extra = 0;
    for (int64_t t = 0; t < P; t++) {
        int64_t k = 0;
        for (int64_t b = 0; b < B; b++) k += target[b * T + t] >= 0;
        extra += k > 1 ? k - 1 : 0;
    }
    int64_t M = P + Nr + extra;
    int64_t *tcat = yf_malloc((size_t)(M + 1) * sizeof(int64_t)), *dup = yf_malloc((size_t)(extra + 1) * sizeof(int64_t));
    for (int64_t t = 0, e = 0; t < P; t++) {
        tcat[t] = -1;
        for (int64_t b = 0; b < B; b++) {
            int64_t y = target[b * T + t];
            if (y < 0) continue;
            if (tcat[t] < 0) {
                tcat[t] = y;
            } else {
                dup[e] = t;
                tcat[P + Nr + e++] = y;
            }
        }
    }
    for (int64_t b = 0, s = 0; b < B; b++) {
        if (need[b] <= P) continue;
        for (int64_t t = P; t < need[b]; t++) {
            int64_t i = seg_off[s] + t - P;
            rid[i] = ids[b * T + t];
            rstart[i] = start[b * T + t];
            tcat[P + i] = target[b * T + t];
        }
        s++;
    }

    if (glo) yf_lora_alloc_grads(glo); /* no-op when allocated */
    part pp = {0}, pr = {0};
    yf_pfx_view view = {.P = P};
    yf_pfx_grad pg = {0};
    if (P > 0) {
        yf_run_init(&pp.r, m, lo, 1, P, 0, start, bo->dropout_rng, true); /* row 0's starts: the prefix's */
        pp.r.glo = glo;
        part_alloc(&pp, m, P, ckpt);
        yf_model_embed_rows(m, ids, P, part_in(&pp, 0, ckpt));
        pg.dk = yf_buf_get((size_t)(P * D) * sizeof(float));
        pg.dv = yf_buf_get((size_t)(P * D) * sizeof(float));
        pg.da_last = yf_malloc((size_t)D * sizeof(float));
        pg.dc_last = yf_malloc((size_t)(D / 2) * sizeof(float));
    }
    if (nseg > 0) {
        yf_run_init_segments(&pr.r, m, lo, nseg, seg_off, &view, rstart, bo->dropout_rng, true, P > 0 ? &pp.r : NULL);
        pr.r.glo = glo;
        pr.r.pfx_out = &pg;
        part_alloc(&pr, m, Nr, ckpt);
        yf_model_embed_rows(m, rid, Nr, part_in(&pr, 0, ckpt));
    }

    for (int64_t l = 0; l < L; l++) {
        if (P > 0) {
            part_fwd(&pp, m, l, ckpt, NULL);
            view_of(&view, part_act(&pp, l, ckpt), P, D);
        }
        if (nseg > 0) part_fwd(&pr, m, l, ckpt, NULL);
    }
    /* the final norm straight into the head's rows */
    float *hcat = yf_buf_get((size_t)(M * D) * sizeof(float)), *dcat = yf_buf_get((size_t)(M * D) * sizeof(float));
    float eps = m->cfg.rms_norm_eps;
    const float *nw = (const float *)m->norm.data;
    if (P > 0) yf_rmsnorm_fwd(hcat, pp.rs, part_top(&pp, m, ckpt), nw, P, D, eps);
    if (nseg > 0) yf_rmsnorm_fwd(hcat + P * D, pr.rs, part_top(&pr, m, ckpt), nw, Nr, D, eps);
    for (int64_t e = 0; e < extra; e++) memcpy(hcat + (P + Nr + e) * D, hcat + dup[e] * D, (size_t)D * sizeof(float));
    double loss = yf_model_head_loss(m, hcat, tcat, M, NULL, dcat, bo->loss_scale);
    for (int64_t e = 0; e < extra; e++) yf_add(dcat + dup[e] * D, dcat + dup[e] * D, dcat + (P + Nr + e) * D, D);
    if (P > 0) yf_rmsnorm_bwd(pp.dh, m->norm.g, dcat, part_top(&pp, m, ckpt), pp.rs, nw, P, D, false);
    if (nseg > 0) yf_rmsnorm_bwd(pr.dh, m->norm.g, dcat + P * D, part_top(&pr, m, ckpt), pr.rs, nw, Nr, D, false);

    for (int64_t l = L - 1; l >= 0; l--) {
        if (P > 0) { /* with checkpointing, recompute the layer: the prefix first, the segments read it */
            if (ckpt) part_fwd(&pp, m, l, ckpt, hcat);
            view_of(&view, part_act(&pp, l, ckpt), P, D);
        }
        if (ckpt && nseg > 0) part_fwd(&pr, m, l, ckpt, hcat + P * D);
        bool need_dx = l > 0 || m->embed.g;
        if (nseg > 0) {
            if (P > 0) {
                memset(pg.dk, 0, (size_t)(P * D) * sizeof(float));
                memset(pg.dv, 0, (size_t)(P * D) * sizeof(float));
                memset(pg.da_last, 0, (size_t)D * sizeof(float));
                memset(pg.dc_last, 0, (size_t)(D / 2) * sizeof(float));
            }
            yf_layer_bwd(&pr.r, l, part_act(&pr, l, ckpt), pr.dh, need_dx ? pr.dh2 : NULL);
            float *t = pr.dh;
            pr.dh = pr.dh2, pr.dh2 = t;
        }
        if (P > 0) {
            pp.r.pfx_in = nseg > 0 ? &pg : NULL;
            yf_layer_bwd(&pp.r, l, part_act(&pp, l, ckpt), pp.dh, need_dx ? pp.dh2 : NULL);
            float *t = pp.dh;
            pp.dh = pp.dh2, pp.dh2 = t;
        }
    }
    if (m->embed.g) {
        if (P > 0) yf_embed_bwd(m->embed.g, pp.dh, ids, P, D);
        if (nseg > 0) yf_embed_bwd(m->embed.g, pr.dh, rid, Nr, D);
    }
    if (bo->share_stats) {
        bo->share_stats->batches++;
        bo->share_stats->prefix_saved += (B - 1) * P;
        bo->share_stats->padding_skipped += B * T - P - Nr - (B - 1) * P;
    }
    *loss_sum = loss;
    *ntok = nt;

    part_free(&pp, m, ckpt);
    part_free(&pr, m, ckpt);
    yf_buf_put(pg.dk), yf_buf_put(pg.dv);
    free(pg.da_last), free(pg.dc_last);
    yf_buf_put(hcat), yf_buf_put(dcat);
    free(target), free(need), free(start), free(seg_off), free(rid), free(rstart), free(tcat), free(dup);
    return 0;
}
