/* model: loading a Yuan checkpoint into compute-ready weights, the layer
 * forward/backward (with LoRA/DoRA projections) and the loss drivers.
 * The exact computation is shared/docs/yuan-architecture.md; the structs and
 * the per-layer API are in model_internal.h. */
#include "model/model_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/bufcache.h"
#include "formats/checkpoint.h"
#include "formats/safetensors.h"
#include "kernels/cpu/kernels.h"
#include "model/ops.h"
#include "base/pool.h"
#include "kernels/cpu/vecmath.h"
#include "formats/weights.h"

/* ---- loading ---------------------------------------------------------------- */

/* Points w at t (converting to an owned fp32 copy when needed) and allocates
 * its gradient in full-finetune mode. */
static void bind(yf_model *m, yf_mw *w, const yf_tensor *t, const yf_wspec *s) {
    memset(w, 0, sizeof *w);
    char *name = yf_strdup(s->name);
    yf_table_own(&m->own, name);
    w->name = name;
    w->ndim = s->ndim;
    for (int i = 0; i < s->ndim; i++) w->shape[i] = s->shape[i];
    w->numel = yf_tensor_numel(t);
    w->src_dt = t->dtype;
    bool to_f32 = m->opts.full_finetune || m->opts.force_f32 || yf_wkind_is_vector(s->kind) || t->dtype != YF_BF16;
    if (to_f32 && t->dtype != YF_F32) {
        float *buf = yf_aligned_alloc((size_t)w->numel * sizeof(float));
        yf_tensor_to_f32(t, buf);
        yf_table_own(&m->own, buf);
        w->data = buf;
        w->dt = YF_F32;
    } else if (to_f32 && m->opts.full_finetune) {
        /* trainable: a private copy, the mapping is read-only */
        float *buf = yf_aligned_alloc((size_t)w->numel * sizeof(float));
        memcpy(buf, t->data, (size_t)w->numel * sizeof(float));
        yf_table_own(&m->own, buf);
        w->data = buf;
        w->dt = YF_F32;
    } else {
        w->data = t->data;
        w->dt = t->dtype;
    }
    if (m->opts.full_finetune) {
        w->g = yf_aligned_alloc((size_t)w->numel * sizeof(float));
        yf_table_own(&m->own, w->g);
    }
}

static int check_tensor(const yf_tensor *t, const yf_wspec *s, const yf_config *cfg, const char *what) {
    char have[128], want[128];
    yf_tensor tmp = {.ndim = s->ndim};
    for (int i = 0; i < s->ndim; i++) tmp.shape[i] = s->shape[i];
    bool ok = t->ndim == s->ndim;
    for (int i = 0; ok && i < s->ndim; i++) ok = t->shape[i] == s->shape[i];
    if (!ok)
        return yf_errorf("%s: tensor %s has shape %s but config.json (hidden_size %lld, intermediate_size %lld, "
                         "vocab_size %lld) needs %s: the weights do not match the config",
                         what, s->name, yf_shape_str(t, have, sizeof have), (long long)cfg->hidden_size,
                         (long long)cfg->intermediate_size, (long long)cfg->vocab_size,
                         yf_shape_str(&tmp, want, sizeof want));
    if (t->dtype != YF_F32 && t->dtype != YF_BF16 && t->dtype != YF_F16)
        return yf_errorf("%s: tensor %s has dtype %s; weights must be F32, BF16 or F16", what, s->name,
                         yf_dtype_name(t->dtype));
    return 0;
}

/* The compute tensor a checkpoint tensor binds to. */
static yf_mw *spec_slot(yf_model *m, const yf_wspec *s) {
    yf_layer_w *lw = s->layer >= 0 && s->layer < m->L ? &m->layers[s->layer] : NULL;
    switch (s->kind) {
    case YF_W_EMBED: return &m->embed;
    case YF_W_FINAL_NORM: return &m->norm;
    case YF_W_LM_HEAD: return &m->head;
    default: break;
    }
    YF_CHECK(lw != NULL);
    switch (s->kind) {
    case YF_W_LN1: return &lw->ln1;
    case YF_W_CONV1: return &lw->conv1;
    case YF_W_CONV1_B: return &lw->conv1_b;
    case YF_W_CONV2: return &lw->conv2;
    case YF_W_CONV2_B: return &lw->conv2_b;
    case YF_W_LF_LN: return &lw->lf_ln;
    case YF_W_LN2: return &lw->ln2;
    case YF_W_LINEAR: return &lw->proj[s->proj];
    default: YF_CHECK(!"unhandled tensor kind"); return NULL;
    }
}

/* Full fine-tuning's parameter list: every tensor in checkpoint order (a
 * tied head is the embedding, listed once). */
static void build_params(yf_model *m) {
    m->params = yf_calloc((size_t)m->nspecs, sizeof *m->params);
    for (int64_t i = 0; i < m->nspecs; i++) {
        const yf_mw *w = spec_slot(m, &m->specs[i]);
        yf_param *p = &m->params[i];
        p->name = w->name;
        p->w = (float *)w->data;
        p->g = w->g;
        p->numel = w->numel;
        p->ndim = w->ndim;
        for (int d = 0; d < w->ndim; d++) p->shape[d] = w->shape[d];
    }
    m->nparams = (int)m->nspecs;
}

/* Every forward reads all weights but the embedding (a few rows of it, unless
 * it is also the head): map them in at load, a few large requests instead of
 * a page fault per 4 KiB (or per 64 KiB of read-ahead) in the first products,
 * which made a first prefill up to twice as slow. */
static void prefault_weights(yf_model *m) {
    for (int64_t l = 0; l < m->L; l++) {
        yf_layer_w *lw = &m->layers[l];
        yf_mw *ws[] = {&lw->ln1, &lw->conv1, &lw->conv1_b, &lw->conv2, &lw->conv2_b, &lw->lf_ln, &lw->ln2};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++)
            yf_prefault(ws[i]->data, (size_t)ws[i]->numel * yf_dtype_size(ws[i]->dt));
        for (int p = 0; p < YF_NPROJ; p++)
            yf_prefault(lw->proj[p].data, (size_t)lw->proj[p].numel * yf_dtype_size(lw->proj[p].dt));
    }
    yf_prefault(m->norm.data, (size_t)m->norm.numel * yf_dtype_size(m->norm.dt));
    yf_prefault(m->head.data, (size_t)m->head.numel * yf_dtype_size(m->head.dt));
}

int yf_model_from_table(const yf_config *cfg, yf_table *tab, const yf_model_opts *opts, const char *what,
                        yf_model **out) {
    *out = NULL;
    int64_t D = cfg->hidden_size, H = cfg->num_attention_heads;
    if (D <= 0 || H <= 0 || D % H != 0 || (D / H) % 2 != 0 || D % 2 != 0 || cfg->vocab_size <= 0 ||
        cfg->intermediate_size <= 0 || cfg->num_hidden_layers <= 0 || cfg->max_position_embeddings <= 0) {
        yf_table_free(tab);
        return yf_errorf("%s: config needs positive sizes, hidden_size divisible by num_attention_heads "
                         "and an even head dimension (hidden_size %lld, heads %lld)",
                         what, (long long)D, (long long)H);
    }
    yf_model *m = yf_calloc(1, sizeof *m);
    m->pack_budget = (size_t)-1; /* set on first use */
    m->cfg = *cfg;
    if (opts) m->opts = *opts;
    m->D = D;
    m->H = H;
    m->hd = D / H;
    m->I = cfg->intermediate_size;
    m->V = cfg->vocab_size;
    m->L = cfg->num_hidden_layers;
    m->tied = cfg->tie_word_embeddings;
    m->tab = *tab;
    yf_table_init(tab);
    yf_table_init(&m->own);
    m->layers = yf_calloc((size_t)m->L, sizeof *m->layers);

    m->nspecs = yf_weight_specs(cfg, &m->specs);
    int rc = 0;
    for (int64_t i = 0; i < m->nspecs && rc == 0; i++) {
        const yf_wspec *s = &m->specs[i];
        yf_tensor *t = yf_table_find(&m->tab, s->name);
        if (!t && s->kind == YF_W_EMBED && m->tied) t = yf_table_find(&m->tab, "lm_head.weight");
        if (!t) {
            rc = yf_errorf("%s: tensor %s is missing (an incomplete checkpoint, or not a Yuan model for this "
                           "config.json)", what, s->name);
            break;
        }
        if ((rc = check_tensor(t, s, cfg, what)) != 0) break;
        bind(m, spec_slot(m, s), t, s);
    }
    if (rc == 0 && m->tied) {
        m->head = m->embed;
        char *hn = yf_strdup("lm_head.weight");
        yf_table_own(&m->own, hn);
        m->head.name = hn;
    }
    if (rc) {
        yf_model_free(m);
        return -1;
    }
    int64_t P = cfg->max_position_embeddings, half = m->hd / 2;
    m->rope_cos = yf_aligned_alloc((size_t)(P * half) * sizeof(float));
    m->rope_sin = yf_aligned_alloc((size_t)(P * half) * sizeof(float));
    yf_table_own(&m->own, m->rope_cos);
    yf_table_own(&m->own, m->rope_sin);
    yf_rope_tables(m->rope_cos, m->rope_sin, P, m->hd, cfg->rope_theta > 0 ? cfg->rope_theta : 10000.0);
    if (m->opts.full_finetune) build_params(m);
    prefault_weights(m);
    *out = m;
    return 0;
}

int yf_model_load(const char *dir, const yf_model_opts *opts, yf_model **out) {
    yf_config cfg;
    yf_table tab;
    yf_table_init(&tab);
    *out = NULL;
    if (yf_checkpoint_open(dir, &cfg, &tab) != 0) {
        yf_table_free(&tab);
        return -1;
    }
    return yf_model_from_table(&cfg, &tab, opts, dir, out);
}

/* ---- pre-packed weights ----------------------------------------------------------- */

static size_t default_pack_budget(void) {
    const char *e = getenv("YF_PACK_MB");
    if (e && *e) {
        char *end;
        double mb = strtod(e, &end);
        if (end != e && mb >= 0) return (size_t)(mb * 1048576.0);
        fprintf(stderr, "yuanft: YF_PACK_MB=%s is not a number of MiB; using the default\n", e);
    }
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
    double quarter = pages > 0 && psz > 0 ? (double)pages * (double)psz / 4 : 0;
    double cap = 4.0 * 1073741824.0;
    return (size_t)(quarter < cap ? quarter : cap);
}

static const yf_wpack *model_wpack(yf_model *m, yf_mw *W, yf_pack_kind kind, int64_t M, bool release_w) {
    if (W->pk[kind]) return W->pk[kind];
    /* matrices, and the localized filter's [out, in, 2, 1] convolutions, read as [out, 2 in] */
    if (W->dt != YF_BF16 || W->g || W->ndim < 2 || m->pack_failed || !yf_wpack_pays(M)) return NULL;
    int64_t rows = W->shape[0], cols = W->numel / W->shape[0];
    if (m->pack_budget == (size_t)-1) m->pack_budget = default_pack_budget();
    size_t need = (size_t)((rows + 31) / 32 * 32) * (size_t)((cols + 31) / 32 * 32) * 2;
    if (m->pack_bytes + need > m->pack_budget) return NULL;
    W->pk[kind] = yf_wpack_new(W->data, W->dt, rows, cols, kind, release_w);
    if (!W->pk[kind]) {
        m->pack_failed = true; /* out of memory: the products pack per call, as without */
        return NULL;
    }
    m->pack_bytes += yf_wpack_bytes(W->pk[kind]);
    return W->pk[kind];
}

const yf_wpack *yf_model_wpack(yf_model *m, yf_mw *W, yf_pack_kind kind, int64_t M) {
    return model_wpack(m, W, kind, M, false);
}

/* Rows ids of W as floats [n, W's columns]: from W's dy·W pack when it has
 * one (bit for bit W's values). A tied head gives its pages back once
 * packed, so reading the embedding's rows from W would fault them in again
 * every step (~7 ms of a 2-layer step). */
static void mw_rows(const yf_mw *W, const int64_t *ids, int64_t n, float *out) {
    if (!yf_wpack_rows(W->pk[YF_PACK_XW], ids, n, out)) yf_embed_fwd(out, W->data, W->dt, ids, n, W->shape[1]);
}

/* The embedding of ids [N] into h [N, D]; a tied head's packs are on m->head. */
static void embed_rows(const yf_model *m, const int64_t *ids, int64_t N, float *h) {
    mw_rows(m->tied ? &m->head : &m->embed, ids, N, h);
}

/* x·W^T's pack for a forward of N rows. In a training run also dy·W's when
 * the backward multiplies by W, and W's own pages are released: only
 * products of other row counts (none in a training step) read it. */
static const yf_wpack *fwd_pack(yf_model *m, yf_mw *W, int64_t N, bool backward, bool with_xw) {
    /* Inference reuses a weight at a pack's row counts only when prefilling
     * many prompts; a one-off prefill would pay the packing, the memory and
     * the page faults for nothing: packs are made for training only. */
    if (!backward || W->pk[YF_PACK_XWT]) return W->pk[YF_PACK_XWT];
    /* dy·W's pack first: x·W^T's reads W's rows in order, giving each back
     * once packed, so the peak holds W and one pack, not W and two (the LM
     * head: 553 MB less) */
    bool xw_ok = !with_xw || model_wpack(m, W, YF_PACK_XW, N, false) != NULL;
    return model_wpack(m, W, YF_PACK_XWT, N, xw_ok); /* W released only when no product reads it after */
}

/* Whether anything below a layer's q, k, v products takes a gradient of its
 * own (full-parameter training): its localized filter or its norms. */
static bool grads_below_qkv(const yf_layer_w *lw) {
    return lw->ln1.g || lw->lf_ln.g || lw->conv1.g || lw->conv1_b.g || lw->conv2.g || lw->conv2_b.g;
}

/* Whether the backward multiplies by layer l's weight of projection p (the
 * input gradient): not for the first layer's q, k, v in a LoRA run (see
 * yf_layer_bwd). */
static bool bwd_uses_w(const yf_run *r, int64_t l, yf_proj p) {
    if (l > 0 || (p != YF_Q && p != YF_K && p != YF_V)) return true;
    return r->m->embed.g || grads_below_qkv(&r->m->layers[0]);
}

static void mw_unpack(yf_mw *W) {
    for (int k = 0; k < 2; k++) {
        yf_wpack_free(W->pk[k]);
        W->pk[k] = NULL;
    }
}

void yf_model_free(yf_model *m) {
    if (!m) return;
    for (int64_t l = 0; m->layers && l < m->L; l++) {
        yf_layer_w *lw = &m->layers[l];
        mw_unpack(&lw->conv1);
        mw_unpack(&lw->conv2);
        for (int p = 0; p < YF_NPROJ; p++) mw_unpack(&lw->proj[p]);
    }
    mw_unpack(&m->head);
    yf_table_free(&m->tab);
    yf_table_free(&m->own);
    free(m->layers);
    free(m->params);
    free(m->specs);
    free(m);
}

const yf_config *yf_model_config(const yf_model *m) { return &m->cfg; }
const yf_table *yf_model_tensors(const yf_model *m) { return &m->tab; }

void yf_model_params(yf_model *m, yf_param_list *out) {
    out->n = m->opts.full_finetune ? m->nparams : 0;
    out->p = NULL;
    if (out->n) {
        out->p = yf_malloc((size_t)out->n * sizeof *out->p);
        memcpy(out->p, m->params, (size_t)out->n * sizeof *out->p);
    }
}

const yf_mw *yf_model_proj(const yf_model *m, int64_t layer, yf_proj p) { return &m->layers[layer].proj[p]; }

float *const *yf_dora_norms_override = NULL;

/* ---- run context, activations ------------------------------------------------- */

/* Buffers are carved out of one block; a first pass with base == NULL only
 * counts. Offsets stay multiples of 16 floats (64 bytes). */
typedef struct carver {
    float *base;
    int64_t off;
} carver;

static float *carve(carver *c, int64_t n) {
    float *p = c->base ? c->base + c->off : NULL;
    c->off += (n + 15) & ~(int64_t)15;
    return p;
}

static void ws_layout(yf_ws *w, carver *c, int64_t N, int64_t D, int64_t I, int64_t R, bool adapters,
                      bool backward) {
    int64_t Dm = D > I ? D : I;
    w->x2 = carve(c, 2 * N * D);
    w->qp = carve(c, N * D);
    w->kp = carve(c, N * D);
    w->e = carve(c, N * D);
    w->hh = carve(c, N * D);
    w->z = carve(c, N * I);
    w->lt = carve(c, N * R + 1);
    w->dlt = carve(c, N * R + 1);
    if (adapters) {
        w->xd = carve(c, N * Dm);
        w->t1 = carve(c, N * Dm);
        w->t2 = carve(c, N * Dm);
        w->t3 = carve(c, N * Dm);
    }
    if (backward) {
        w->dz = carve(c, N * I);
        w->dg = carve(c, N * I);
        w->du = carve(c, N * I);
        w->dm = carve(c, N * D);
        w->dh2 = carve(c, N * D);
        w->datt = carve(c, N * D);
        w->da = carve(c, N * D);
        w->df = carve(c, N * D);
        w->ds = carve(c, N * D);
        w->dx2 = carve(c, 2 * N * D);
        w->dq = carve(c, N * D);
        w->dk = carve(c, N * D);
        w->dv = carve(c, N * D);
        w->dc = carve(c, N * D / 2);
    }
}

void yf_run_init(yf_run *r, yf_model *m, const yf_lora *lo, int64_t B, int64_t T, int64_t pos0,
                 const int64_t *start, yf_rng *dropout_rng, bool backward) {
    memset(r, 0, sizeof *r);
    r->m = m;
    r->lo = lo;
    r->B = B;
    r->T = T;
    r->N = B * T;
    r->pos0 = pos0;
    r->posb = NULL;
    r->start = start;
    r->backward = backward;
    if (lo) {
        r->dora_n = yf_calloc((size_t)(m->L * YF_NPROJ), sizeof *r->dora_n);
        for (int64_t l = 0; l < m->L; l++)
            for (int p = 0; p < YF_NPROJ; p++) {
                yf_lora_mod *md = yf_lora_get(lo, l, (yf_proj)p);
                if (!md || !md->m) continue;
                const yf_mw *w = yf_model_proj(m, l, (yf_proj)p);
                float *n = yf_malloc((size_t)md->out * sizeof(float));
                if (yf_dora_norms_override && yf_dora_norms_override[l * YF_NPROJ + p])
                    memcpy(n, yf_dora_norms_override[l * YF_NPROJ + p], (size_t)md->out * sizeof(float));
                else
                    yf_lora_row_norms(md, lo->cfg.r, lo->scaling, w->data, w->dt, n);
                r->dora_n[l * YF_NPROJ + p] = n;
            }
        if (backward) { /* [N, r] per adapter: the backward does not multiply x' by A again */
            r->lt_saved = yf_buf_get((size_t)(m->L * YF_NPROJ * r->N * lo->cfg.r + 1) * sizeof(float));
            r->lt_valid = yf_calloc((size_t)(m->L * YF_NPROJ), sizeof(bool));
        }
        if (dropout_rng && lo->cfg.dropout > 0) {
            r->drop_p = lo->cfg.dropout;
            r->drop_seed = yf_malloc((size_t)(m->L * YF_NPROJ) * sizeof(uint64_t));
            for (int64_t i = 0; i < m->L * YF_NPROJ; i++) r->drop_seed[i] = yf_rng_u64(dropout_rng);
        }
    }
    int64_t R = lo ? lo->cfg.r : 0;
    carver c = {NULL, 0};
    ws_layout(&r->ws, &c, r->N, m->D, m->I, R, lo != NULL, backward);
    r->ws.block = yf_buf_get((size_t)c.off * sizeof(float)); /* recycled, not zeroed */
    c = (carver){r->ws.block, 0};
    ws_layout(&r->ws, &c, r->N, m->D, m->I, R, lo != NULL, backward);
}

void yf_run_free(yf_run *r) {
    if (r->dora_n) {
        for (int64_t i = 0; i < r->m->L * YF_NPROJ; i++) free(r->dora_n[i]);
        free(r->dora_n);
    }
    free(r->drop_seed);
    yf_buf_put(r->lt_saved);
    free(r->lt_valid);
    yf_buf_put(r->ws.block);
    memset(r, 0, sizeof *r);
}

static void act_layout(yf_act *a, carver *c, int64_t B, int64_t T, int64_t D, int64_t I, int64_t H, bool with_x) {
    int64_t N = B * T;
    a->x = with_x ? carve(c, N * D) : NULL;
    a->a = carve(c, N * D);
    a->rs1 = carve(c, N);
    a->c = carve(c, N * D / 2);
    a->s = carve(c, N * D);
    a->rslf = carve(c, N);
    a->f = carve(c, N * D);
    a->q = carve(c, N * D);
    a->k = carve(c, N * D);
    a->v = carve(c, N * D);
    a->lse = carve(c, B * H * T);
    a->att = carve(c, N * D);
    a->h2 = carve(c, N * D);
    a->rs2 = carve(c, N);
    a->mm = carve(c, N * D);
    a->g = carve(c, N * I);
    a->u = carve(c, N * I);
}

void yf_act_alloc(yf_act *a, const yf_model *m, int64_t B, int64_t T, bool with_x) {
    memset(a, 0, sizeof *a);
    carver c = {NULL, 0};
    act_layout(a, &c, B, T, m->D, m->I, m->H, with_x);
    a->block = yf_buf_get((size_t)c.off * sizeof(float));
    c = (carver){a->block, 0};
    act_layout(a, &c, B, T, m->D, m->I, m->H, with_x);
}

void yf_act_free(yf_act *a) {
    yf_buf_put(a->block);
    memset(a, 0, sizeof *a);
}

/* ---- projections with adapters --------------------------------------------------- */

static void scale_cols(float *y, const float *c, int64_t N, int64_t C) {
#pragma omp parallel for if ((int64_t)(N * C) >= ((int64_t)1 << 21)) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < C; i++) y[n * C + i] *= c[i];
}

static void scale(float *y, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= s;
}

/* magnitude / norm per output row of a DoRA module */
static void dora_ratio(float *mn, const yf_lora_mod *md, const float *n) {
    for (int64_t o = 0; o < md->out; o++) mn[o] = md->m[o] / n[o];
}

void yf_linear_fwd(yf_run *r, int64_t l, yf_proj p, const float *x, float *y) {
    yf_mw *W = &r->m->layers[l].proj[p];
    int64_t N = r->N, out = W->shape[0], in = W->shape[1];
    const yf_wpack *pk = fwd_pack(r->m, W, N, r->backward, bwd_uses_w(r, l, p));
    const yf_lora_mod *md = r->lo ? yf_lora_get(r->lo, l, p) : NULL;
    if (!md) {
        yf_matmul_xwt_pk(y, x, W->data, W->dt, pk, N, out, in, false);
        return;
    }
    yf_ws *ws = &r->ws;
    int64_t R = r->lo->cfg.r;
    float s = r->lo->scaling;
    const float *xin = x;
    if (r->drop_p > 0) {
        yf_dropout(ws->xd, x, N * in, r->drop_p, r->drop_seed[l * YF_NPROJ + p]);
        xin = ws->xd;
    }
    yf_matmul_xwt(ws->lt, xin, md->A, YF_F32, N, R, in, false);
    if (r->lt_saved) { /* for the backward */
        memcpy(r->lt_saved + (l * YF_NPROJ + p) * N * R, ws->lt, (size_t)(N * R) * sizeof(float));
        r->lt_valid[l * YF_NPROJ + p] = true;
    }
    scale(ws->lt, s, N * R);
    if (!md->m) { /* y = Wx + s B A x', the second term added inside the product where it can be */
        yf_matmul_xwt_pk_lr(y, x, W->data, W->dt, pk, N, out, in, false, ws->lt, md->B, R);
        return;
    }
    yf_matmul_xwt_pk(y, x, W->data, W->dt, pk, N, out, in, false);
    float *mn = yf_malloc((size_t)out * sizeof(float));
    dora_ratio(mn, md, r->dora_n[l * YF_NPROJ + p]);
    if (r->drop_p == 0) {
        /* y = (m/n) (W x + s B A x) */
        yf_matmul_xwt(y, ws->lt, md->B, YF_F32, N, out, R, true);
        scale_cols(y, mn, N, out);
    } else {
        /* y = W x - W x' + (m/n) (W x' + s B A x') */
        float *wx = ws->t3;
        yf_matmul_xwt_pk(wx, xin, W->data, W->dt, yf_model_wpack(r->m, W, YF_PACK_XWT, N), N, out, in, false);
        for (int64_t i = 0; i < N * out; i++) y[i] -= wx[i];
        yf_matmul_xwt(wx, ws->lt, md->B, YF_F32, N, out, R, true);
        scale_cols(wx, mn, N, out);
        yf_add(y, y, wx, N * out);
    }
    free(mn);
}

void yf_linear_bwd(yf_run *r, int64_t l, yf_proj p, const float *x, const float *dy, float *dx, bool acc) {
    yf_mw *W = &r->m->layers[l].proj[p];
    int64_t N = r->N, out = W->shape[0], in = W->shape[1];
    const yf_wpack *pkb = dx ? yf_model_wpack(r->m, W, YF_PACK_XW, N) : NULL;
    if (W->g) yf_matmul_dw(W->g, dy, x, N, out, in);
    const yf_lora_mod *md = r->lo ? yf_lora_get(r->lo, l, p) : NULL;
    if (!md) {
        if (dx) yf_matmul_xw_pk(dx, dy, W->data, W->dt, pkb, N, out, in, acc);
        return;
    }
    yf_lora_mod *gmd = r->glo ? yf_lora_get(r->glo, l, p) : NULL;
    yf_ws *ws = &r->ws;
    int64_t R = r->lo->cfg.r;
    float s = r->lo->scaling;
    bool drop = r->drop_p > 0;
    uint64_t seed = drop ? r->drop_seed[l * YF_NPROJ + p] : 0;
    const float *xin = x;
    if (drop) {
        yf_dropout(ws->xd, x, N * in, r->drop_p, seed);
        xin = ws->xd;
    }
    if (r->lt_valid && r->lt_valid[l * YF_NPROJ + p]) /* A x', as the forward computed it */
        memcpy(ws->lt, r->lt_saved + (l * YF_NPROJ + p) * N * R, (size_t)(N * R) * sizeof(float));
    else
        yf_matmul_xwt(ws->lt, xin, md->A, YF_F32, N, R, in, false);
    const float *dya = dy;  /* the gradient the adapter branch sees */
    float *mn = NULL;
    if (md->m) {
        mn = yf_malloc((size_t)out * sizeof(float));
        const float *n = r->dora_n[l * YF_NPROJ + p];
        dora_ratio(mn, md, n);
        if (gmd) {
            /* dm_o = sum_rows dy_o (W x' + s B A x')_o / n_o */
            float *t = ws->t3;
            yf_matmul_xwt_pk(t, xin, W->data, W->dt, yf_model_wpack(r->m, W, YF_PACK_XWT, N), N, out, in, false);
            float *lts = ws->dlt;
            for (int64_t i = 0; i < N * R; i++) lts[i] = s * ws->lt[i];
            yf_matmul_xwt(t, lts, md->B, YF_F32, N, out, R, true);
#pragma omp parallel for if ((int64_t)(N * out) >= ((int64_t)1 << 21)) schedule(static)
            for (int64_t o = 0; o < out; o++) {
                double acc_m = 0;
                for (int64_t i = 0; i < N; i++) acc_m += (double)dy[i * out + o] * t[i * out + o];
                gmd->gm[o] += (float)(acc_m / n[o]);
            }
        }
        float *t2 = ws->t2;
        memcpy(t2, dy, (size_t)(N * out) * sizeof(float));
        scale_cols(t2, mn, N, out);
        dya = t2;
    }
    if (gmd) {
        /* gB += s dya^T (A x') */
        scale(ws->lt, s, N * R);
        yf_matmul_dw(gmd->gB, dya, ws->lt, N, out, R);
    }
    /* dlt = s dya B */
    yf_matmul_xw(ws->dlt, dya, md->B, YF_F32, N, out, R, false);
    scale(ws->dlt, s, N * R);
    if (gmd) yf_matmul_dw(gmd->gA, ws->dlt, xin, N, R, in);
    if (!dx) {
        free(mn);
        return;
    }
    if (!drop) {
        /* x' = x: LoRA dx = W^T dy + A^T dlt; DoRA dx = W^T (m/n dy) + A^T dlt */
        yf_matmul_xw_pk(dx, dya, W->data, W->dt, pkb, N, out, in, acc);
        yf_matmul_xw(dx, ws->dlt, md->A, YF_F32, N, R, in, true);
    } else {
        /* gradient wrt x': A^T dlt (+ W^T ((m/n - 1) dy) for DoRA), then through
         * the mask, added to the base product's */
        float *gx = ws->t1;
        yf_drop d = yf_dropout_params(r->drop_p, seed);
        if (!mn && yf_matmul_xw_pk_drop(dx, dy, W->data, W->dt, pkb, N, out, in, acc, ws->dlt, md->A, R, &d))
            return; /* the same steps as below, inside the base product */
        yf_matmul_xw(gx, ws->dlt, md->A, YF_F32, N, R, in, false);
        if (mn) {
            float *t2 = ws->t2; /* = (m/n) dy: turn into (m/n - 1) dy */
            for (int64_t i = 0; i < N * out; i++) t2[i] -= dy[i];
            yf_matmul_xw_pk(gx, t2, W->data, W->dt, pkb, N, out, in, true);
        }
        yf_dropout(gx, gx, N * in, r->drop_p, seed);
        yf_matmul_xw_pk(dx, dy, W->data, W->dt, pkb, N, out, in, acc);
        yf_add(dx, dx, gx, N * in);
    }
    free(mn);
}

/* ---- one layer ------------------------------------------------------------------ */

static const float *F(const yf_mw *w) { return (const float *)w->data; }

void yf_layer_fwd(yf_run *r, int64_t l, yf_act *act, float *out, yf_layer_state *st) {
    yf_model *m = r->m;
    yf_layer_w *lw = &m->layers[l];
    yf_ws *ws = &r->ws;
    int64_t B = r->B, T = r->T, N = r->N, D = m->D, H = m->H, hd = m->hd, I = m->I;
    float eps = m->cfg.rms_norm_eps;

    yf_rmsnorm_fwd(act->a, act->rs1, act->x, F(&lw->ln1), N, D, eps);
    /* localized filtering: two causal width-2 convolutions, then RMSNorm(e + a) */
    yf_conv_pack(ws->x2, act->a, st ? st->a_prev : NULL, B, T, D);
    const yf_wpack *pk1 = fwd_pack(r->m, &lw->conv1, N, r->backward, bwd_uses_w(r, l, YF_Q));
    yf_matmul_xwt_pk(act->c, ws->x2, lw->conv1.data, lw->conv1.dt, pk1, N, D / 2, 2 * D, false);
    yf_bias_fwd(act->c, F(&lw->conv1_b), N, D / 2);
    yf_conv_pack(ws->x2, act->c, st ? st->c_prev : NULL, B, T, D / 2);
    const yf_wpack *pk2 = fwd_pack(r->m, &lw->conv2, N, r->backward, bwd_uses_w(r, l, YF_Q));
    yf_matmul_xwt_pk(ws->e, ws->x2, lw->conv2.data, lw->conv2.dt, pk2, N, D, D, false);
    yf_bias_fwd(ws->e, F(&lw->conv2_b), N, D);
    yf_add(act->s, ws->e, act->a, N * D);
    yf_rmsnorm_fwd(act->f, act->rslf, act->s, F(&lw->lf_ln), N, D, eps);
    if (st)
        for (int64_t b = 0; b < B; b++) {
            memcpy(st->a_prev + b * D, act->a + (b * T + T - 1) * D, (size_t)D * sizeof(float));
            memcpy(st->c_prev + b * D / 2, act->c + (b * T + T - 1) * D / 2, (size_t)(D / 2) * sizeof(float));
        }

    /* queries and keys from the filtered f, values from a */
    yf_linear_fwd(r, l, YF_Q, act->f, ws->qp);
    yf_linear_fwd(r, l, YF_K, act->f, ws->kp);
    yf_qk_rope_fwd(act->q, act->k, ws->qp, ws->kp, m->rope_cos, m->rope_sin, B, T, H, hd, r->pos0, r->posb);
    yf_linear_fwd(r, l, YF_V, act->a, ws->e);
    yf_heads_split(act->v, ws->e, B, T, H, hd);
    if (st) {
        for (int64_t bh = 0; bh < B * H; bh++) {
            int64_t p = r->pos0 + (r->posb ? r->posb[bh / H] : 0);
            memcpy(st->k + (bh * st->cap + p) * hd, act->k + bh * T * hd, (size_t)(T * hd) * sizeof(float));
            memcpy(st->v + (bh * st->cap + p) * hd, act->v + bh * T * hd, (size_t)(T * hd) * sizeof(float));
        }
        /* a sequence whose chunk starts at position 0 (a prompt's prefill)
         * sees only the chunk's own keys: the blocked training attention;
         * later chunks and decode steps read the cache. Chosen per sequence,
         * so a sequence's result does not depend on the batch around it. */
        int64_t fresh = 0;
        for (int64_t b = 0; b < B && T > 1; b++) fresh += r->pos0 + (r->posb ? r->posb[b] : 0) == 0;
        if (fresh == 0) {
            yf_attention_fwd(ws->hh, act->lse, act->q, st->k, st->v, r->start, B, H, T, st->cap, hd, r->pos0,
                             r->posb);
        } else {
            for (int64_t b = 0; b < B; b++) {
                int64_t o = b * H * T, p = r->pos0 + (r->posb ? r->posb[b] : 0);
                if (p == 0)
                    yf_attention_fwd_train(ws->hh + o * hd, act->lse + o, act->q + o * hd, act->k + o * hd,
                                           act->v + o * hd, r->start + b * T, 1, H, T, hd);
                else
                    yf_attention_fwd(ws->hh + o * hd, act->lse + o, act->q + o * hd, st->k + b * H * st->cap * hd,
                                     st->v + b * H * st->cap * hd, r->start + b * T, 1, H, T, st->cap, hd, p, NULL);
            }
        }
    } else {
        yf_attention_fwd_train(ws->hh, act->lse, act->q, act->k, act->v, r->start, B, H, T, hd);
    }
    yf_heads_merge(act->att, ws->hh, B, T, H, hd);
    yf_linear_fwd(r, l, YF_O, act->att, ws->e);
    yf_add(act->h2, act->x, ws->e, N * D);

    /* MLP: (m Wg^T) * silu(m Wu^T), then down */
    yf_rmsnorm_fwd(act->mm, act->rs2, act->h2, F(&lw->ln2), N, D, eps);
    yf_linear_fwd(r, l, YF_GATE, act->mm, act->g);
    yf_linear_fwd(r, l, YF_UP, act->mm, act->u);
    yf_swiglu_fwd(ws->z, act->g, act->u, N * I);
    yf_linear_fwd(r, l, YF_DOWN, ws->z, ws->e);
    yf_add(out, act->h2, ws->e, N * D);
}

void yf_layer_bwd(yf_run *r, int64_t l, yf_act *act, const float *dout, float *dx) {
    yf_model *m = r->m;
    yf_layer_w *lw = &m->layers[l];
    yf_ws *ws = &r->ws;
    int64_t B = r->B, T = r->T, N = r->N, D = m->D, H = m->H, hd = m->hd, I = m->I;

    /* MLP */
    yf_swiglu_fwd(ws->z, act->g, act->u, N * I); /* recomputed: cheaper than keeping it */
    yf_linear_bwd(r, l, YF_DOWN, ws->z, dout, ws->dz, false);
    yf_swiglu_bwd(ws->dg, ws->du, ws->dz, act->g, act->u, N * I);
    yf_linear_bwd(r, l, YF_GATE, act->mm, ws->dg, ws->dm, false);
    yf_linear_bwd(r, l, YF_UP, act->mm, ws->du, ws->dm, true);
    memcpy(ws->dh2, dout, (size_t)(N * D) * sizeof(float));
    yf_rmsnorm_bwd(ws->dh2, lw->ln2.g, ws->dm, act->h2, act->rs2, F(&lw->ln2), N, D, true);

    /* attention */
    yf_linear_bwd(r, l, YF_O, act->att, ws->dh2, ws->datt, false);
    yf_heads_split(ws->hh, ws->datt, B, T, H, hd);
    yf_attention_bwd(ws->dq, ws->dk, ws->dv, ws->hh, act->lse, act->q, act->k, act->v, r->start, B, H, T, hd);
    yf_heads_merge(ws->datt, ws->dv, B, T, H, hd);
    /* Below q, k, v only the input gradient and the gradients of the
     * localized filter and input norm remain. The first layer of a LoRA run
     * needs none of them: its q, k, v adapters take their gradients from
     * dq, dk, dv alone, so the products with Wq, Wk, Wv, the convolutions'
     * and the norms' backward are skipped (~1/6 of the layer's backward). */
    bool need_below = dx || grads_below_qkv(lw);
    yf_linear_bwd(r, l, YF_V, act->a, ws->datt, need_below ? ws->da : NULL, false);
    yf_qk_rope_bwd(ws->qp, ws->kp, ws->dq, ws->dk, m->rope_cos, m->rope_sin, B, T, H, hd, 0);
    yf_linear_bwd(r, l, YF_Q, act->f, ws->qp, need_below ? ws->df : NULL, false);
    yf_linear_bwd(r, l, YF_K, act->f, ws->kp, need_below ? ws->df : NULL, true);
    if (!need_below) return;

    /* localized filtering */
    yf_rmsnorm_bwd(ws->ds, lw->lf_ln.g, ws->df, act->s, act->rslf, F(&lw->lf_ln), N, D, false);
    for (int64_t i = 0; i < N * D; i++) ws->da[i] += ws->ds[i]; /* s = e + a */
    if (lw->conv2.g) {
        yf_bias_bwd(lw->conv2_b.g, ws->ds, N, D);
        yf_conv_pack(ws->x2, act->c, NULL, B, T, D / 2);
        yf_matmul_dw(lw->conv2.g, ws->ds, ws->x2, N, D, D);
    }
    yf_matmul_xw_pk(ws->dx2, ws->ds, lw->conv2.data, lw->conv2.dt, yf_model_wpack(r->m, &lw->conv2, YF_PACK_XW, N), N, D,
                    D, false);
    yf_conv_unpack_bwd(ws->dc, ws->dx2, B, T, D / 2, false);
    if (lw->conv1.g) {
        yf_bias_bwd(lw->conv1_b.g, ws->dc, N, D / 2);
        yf_conv_pack(ws->x2, act->a, NULL, B, T, D);
        yf_matmul_dw(lw->conv1.g, ws->dc, ws->x2, N, D / 2, 2 * D);
    }
    yf_matmul_xw_pk(ws->dx2, ws->dc, lw->conv1.data, lw->conv1.dt, yf_model_wpack(r->m, &lw->conv1, YF_PACK_XW, N), N,
                    D / 2, 2 * D, false);
    yf_conv_unpack_bwd(ws->da, ws->dx2, B, T, D, true);

    /* input norm and the residual */
    if (dx) {
        memcpy(dx, ws->dh2, (size_t)(N * D) * sizeof(float));
        yf_rmsnorm_bwd(dx, lw->ln1.g, ws->da, act->x, act->rs1, F(&lw->ln1), N, D, true);
    } else if (lw->ln1.g) {
        yf_rmsnorm_bwd(ws->df, lw->ln1.g, ws->da, act->x, act->rs1, F(&lw->ln1), N, D, false);
    }
}

/* ---- saving ------------------------------------------------------------------------ */

typedef struct save_src {
    const yf_mw **ws;
    const yf_tensor *ts;
} save_src;

/* tensor i in the dtype the file wants (a conversion where it differs) */
static int save_tensor(void *ctx, int64_t i, void *buf, const void **data) {
    const save_src *c = ctx;
    const yf_mw *w = c->ws[i];
    yf_dtype to = c->ts[i].dtype;
    if (to == w->dt) {
        *data = w->data;
        return 0;
    }
    for (int64_t k = 0; k < w->numel; k++) {
        float v = w->dt == YF_F32 ? ((const float *)w->data)[k] : yf_bf16_to_f32(((const uint16_t *)w->data)[k]);
        if (to == YF_F32) ((float *)buf)[k] = v;
        else if (to == YF_BF16) ((uint16_t *)buf)[k] = yf_f32_to_bf16(v);
        else ((uint16_t *)buf)[k] = yf_f32_to_f16(v);
    }
    return 0;
}

int yf_model_save(const yf_model *m, const char *dir, yf_dtype dt) {
    if (dt != YF_DTYPE_COUNT && dt != YF_F32 && dt != YF_BF16 && dt != YF_F16)
        return yf_errorf("model save: dtype must be F32, BF16 or F16");
    /* every tensor in checkpoint order; a tied head is the embedding, written once */
    int64_t n = m->nspecs;
    const yf_mw **ws = yf_malloc((size_t)n * sizeof *ws);
    yf_tensor *ts = yf_calloc((size_t)n, sizeof *ts);
    for (int64_t i = 0; i < n; i++) {
        const yf_mw *w = ws[i] = spec_slot((yf_model *)m, &m->specs[i]);
        ts[i].name = (char *)w->name;
        ts[i].dtype = dt == YF_DTYPE_COUNT ? w->src_dt : dt;
        ts[i].ndim = w->ndim;
        for (int d = 0; d < w->ndim; d++) ts[i].shape[d] = w->shape[d];
        ts[i].nbytes = (size_t)w->numel * yf_dtype_size(ts[i].dtype);
    }
    save_src ctx = {ws, ts};
    int rc = yf_model_dir_write(dir, &m->cfg, ts, n, save_tensor, &ctx, NULL);
    free(ts);
    free(ws);
    return rc;
}

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
 * fp32's range) makes the chunk run again unfused. Measured on the 2-layer
 * bench step (T 384, 2 threads, alternating runs): head 207 -> 200 ms with
 * the exps run after each block, -> 194 ms with them in the next block's
 * shadow; 940 -> ~975 tokens/s. */
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
    const yf_wpack *pt = fwd_pack(m, W, n, true, true), *pw = yf_model_wpack(m, W, YF_PACK_XW, n);
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
    for (int64_t v0 = 0, vb; !packed && v0 < V; v0 += vb) {
        vb = V - v0 < HEAD_VB + 64 ? V - v0 : HEAD_VB;
        yf_matmul_xwt_rows(lb, hc, NULL, W->data, W->dt, NULL, n, V, D, v0, v0 + vb);
        head_block f = {lb, NULL, dhc, mx, lt, sum, tc, n, D, D, v0, vb, 0, n};
        int64_t tasks = (f.rows + HEAD_ROWS_PER_TASK - 1) / HEAD_ROWS_PER_TASK;
        if (f.rows * vb >= ((int64_t)1 << 18))
            yf_par_for(tasks, head_block_rows, &f);
        else
            for (int64_t i = 0; i < tasks; i++) head_block_rows(&f, i);
        yf_matmul_xw_rows(dhc, D, lb, NULL, W->data, W->dt, NULL, n, V, D, v0, v0 + vb, v0 > 0);
    }
    double loss = 0;
    /* W[target] of the scored rows as floats, gathered in one call */
    int64_t *tg = yf_malloc((size_t)n * sizeof(int64_t)), ns = 0;
    for (int64_t r = 0; r < n; r++)
        if (tc[r] >= 0) tg[ns++] = tc[r];
    float *wt = yf_buf_get((size_t)(ns * D + 1) * sizeof(float));
    mw_rows(W, tg, ns, wt);
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
static double head_loss(yf_model *m, const float *hn, const int64_t *target, int64_t N, float *logits, float *dhn,
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
     * the head is not packed: 1.1 GB less) */
    bool blocked = dhn && !logits && target && !m->head.g && yf_kernels_precision() == YF_PREC_BF16 &&
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
            yf_matmul_xwt_pk(lg, hc, m->head.data, m->head.dt, fwd_pack(m, &m->head, n, dhn != NULL, true), n, V, D,
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
    embed_rows(m, ids, N, x0);
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
    if (labels || logits) loss = head_loss(m, hn, target, N, logits, dh2, bwd ? bo->loss_scale : 1.0f);
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
    return model_run(m, lora, lora, ids, labels, B, T, NULL, o ? o : &def, loss_sum, ntok);
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

int yf_model_forward_cached(yf_model *m, const yf_lora *lo, yf_layer_state *states, int64_t pos0,
                            const int64_t *posb, int64_t *doc_start, const int64_t *ids, int64_t B, int64_t T,
                            float *logits, bool last_only) {
    int64_t maxpos = pos0;
    for (int64_t b = 0; posb && b < B; b++)
        if (pos0 + posb[b] > maxpos) maxpos = pos0 + posb[b];
    if (check_inputs(m, lo, ids, NULL, B, T, maxpos) != 0) return -1;
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
    yf_run_init(&r, m, lo, B, T, pos0, start, NULL, false);
    r.posb = posb;
    yf_act act;
    yf_act_alloc(&act, m, B, T, false);
    float *xa = yf_aligned_alloc((size_t)(N * D) * sizeof(float)), *xb = yf_aligned_alloc((size_t)(N * D) * sizeof(float));
    embed_rows(m, ids, N, xa);
    for (int64_t l = 0; l < m->L; l++) {
        act.x = xa;
        yf_layer_fwd(&r, l, &act, xb, &states[l]);
        float *t = xa;
        xa = xb;
        xb = t;
    }
    if (last_only) { /* only each sequence's last row feeds the head */
        for (int64_t b = 0; b < B; b++) memmove(xa + b * D, xa + (b * T + T - 1) * D, (size_t)D * sizeof(float));
        N = B;
    }
    yf_rmsnorm_fwd(xb, NULL, xa, (const float *)m->norm.data, N, D, m->cfg.rms_norm_eps);
    if (logits) head_loss(m, xb, NULL, N, logits, NULL, 1.0f);
    free(xa);
    free(xb);
    free(start);
    yf_act_free(&act);
    yf_run_free(&r);
    return 0;
}
