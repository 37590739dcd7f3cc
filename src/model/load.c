/* model/load: a Yuan checkpoint into compute-ready weights (bound in
 * checkpoint order from the weight specs), the pre-packed weight tiles the
 * training products read, and writing the weights back as a model
 * directory. */
#include "model/model_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/checkpoint.h"
#include "kernels/cpu/kernels.h"
#include "model/ops.h"

/* ---- loading ---------------------------------------------------------------- */

/* Points w at t (converting to an owned fp32 copy when needed, or quantizing
 * it: model/quantize.c) and allocates its gradient in full-finetune mode. */
static int bind(yf_model *m, yf_mw *w, yf_tensor *t, const yf_wspec *s, const char *what) {
    memset(w, 0, sizeof *w);
    char *name = yf_strdup(s->name);
    yf_table_own(&m->own, name);
    w->name = name;
    w->ndim = s->ndim;
    for (int i = 0; i < s->ndim; i++) w->shape[i] = s->shape[i];
    w->numel = yf_tensor_numel(t);
    w->src_dt = t->dtype;
    if (yf_model_quantizes(&m->opts, s, m->tied)) return yf_mw_quantize(m, w, t, what);
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
    return 0;
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
yf_mw *yf_model_slot(yf_model *m, const yf_wspec *s) {
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
        const yf_mw *w = yf_model_slot(m, &m->specs[i]);
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
    if (opts && opts->quant.type != YF_QT_NONE && opts->full_finetune) {
        yf_table_free(tab);
        return yf_errorf("%s: --quantize keeps the base weights frozen: use it with LoRA/DoRA training or for "
                         "inference, not with --full-finetune", what);
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
        if (!t && (rc = yf_mw_bind_stored(m, yf_model_slot(m, s), s, what)) != 1) continue; /* stored quantized */
        rc = 0;
        if (!t) {
            rc = yf_errorf("%s: tensor %s is missing (an incomplete checkpoint, or not a Yuan model for this "
                           "config.json)", what, s->name);
            break;
        }
        if ((rc = check_tensor(t, s, cfg, what)) != 0) break;
        rc = bind(m, yf_model_slot(m, s), t, s, what);
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
    yf_model_quant_note(m);
    *out = m;
    return 0;
}

int yf_model_load(const char *dir, const yf_model_opts *opts, yf_model **out) {
    yf_config cfg;
    yf_table tab;
    yf_table_init(&tab);
    *out = NULL;
    yf_dtype qsrc = YF_BF16;
    if (yf_checkpoint_open(dir, &cfg, &tab) != 0 || (yf_table_has_stored_quant(&tab) && yf_stored_quant_check(dir, &qsrc))) {
        yf_table_free(&tab);
        return -1;
    }
    int rc = yf_model_from_table(&cfg, &tab, opts, dir, out);
    if (rc == 0) yf_model_stored_src_dt(*out, qsrc);
    return rc;
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
    if (W->g || W->ndim < 2 || m->pack_failed || !yf_wpack_pays(M, W->dt)) return NULL;
    int64_t rows = W->shape[0], cols = W->numel / W->shape[0];
    if (m->pack_budget == (size_t)-1) m->pack_budget = default_pack_budget();
    size_t need = (size_t)((rows + 31) / 32 * 32) * (size_t)((cols + 31) / 32 * 32) * (W->dt == YF_BF16 ? 2 : 4);
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
void yf_mw_rows(const yf_mw *W, const int64_t *ids, int64_t n, float *out) {
    if (W->dt == YF_QMAT) {
        yf_qmat_gather_rows(W->data, ids, n, out);
        return;
    }
    if (!yf_wpack_rows(W->pk[YF_PACK_XW], ids, n, out)) yf_embed_fwd(out, W->data, W->dt, ids, n, W->shape[1]);
}

/* The embedding of ids [N] into h [N, D]; a tied head's packs are on m->head. */
void yf_model_embed_rows(const yf_model *m, const int64_t *ids, int64_t N, float *h) {
    yf_mw_rows(m->tied ? &m->head : &m->embed, ids, N, h);
}

/* x·W^T's pack for a forward of N rows. In a training run also dy·W's when
 * the backward multiplies by W, and W's own pages are released: only
 * products of other row counts (none in a training step) read it. */
const yf_wpack *yf_model_fwd_pack(yf_model *m, yf_mw *W, int64_t N, bool backward, bool with_xw) {
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
bool yf_layer_grads_below_qkv(const yf_layer_w *lw) {
    return lw->ln1.g || lw->lf_ln.g || lw->conv1.g || lw->conv1_b.g || lw->conv2.g || lw->conv2_b.g;
}

/* Whether the backward multiplies by layer l's weight of projection p (the
 * input gradient): not for the first layer's q, k, v in a LoRA run (see
 * yf_layer_bwd). */
bool yf_model_bwd_uses_w(const yf_run *r, int64_t l, yf_proj p) {
    if (l > 0 || (p != YF_Q && p != YF_K && p != YF_V)) return true;
    return r->m->embed.g || yf_layer_grads_below_qkv(&r->m->layers[0]);
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

static size_t mw_bytes(const yf_mw *w, size_t *quantized) {
    if (w->dt != YF_QMAT) return (size_t)w->numel * yf_dtype_size(w->dt);
    *quantized += yf_qmat_bytes(w->data);
    return yf_qmat_bytes(w->data);
}

size_t yf_model_weight_bytes(const yf_model *m, size_t *quantized) {
    size_t q = 0, b = mw_bytes(&m->norm, &q) + mw_bytes(&m->head, &q);
    for (int64_t l = 0; l < m->L; l++) {
        const yf_layer_w *lw = &m->layers[l];
        const yf_mw *ws[] = {&lw->ln1, &lw->conv1, &lw->conv1_b, &lw->conv2, &lw->conv2_b, &lw->lf_ln, &lw->ln2};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++) b += mw_bytes(ws[i], &q);
        for (int p = 0; p < YF_NPROJ; p++) b += mw_bytes(&lw->proj[p], &q);
    }
    if (quantized) *quantized = q;
    return b;
}

/* ---- saving ------------------------------------------------------------------------ */

typedef struct save_src {
    const yf_mw **ws;
    const yf_tensor *ts;
} save_src;

/* tensor i in the dtype the file wants (a conversion where it differs) */
static int save_tensor(void *ctx, int64_t i, void *buf, const void **data) {
    const save_src *c = ctx;
    return yf_mw_bytes(c->ws[i], c->ts[i].dtype, buf, data);
}

int yf_mw_bytes(const yf_mw *w, yf_dtype to, void *buf, const void **data) {
    if (to == w->dt) {
        *data = w->data;
        return 0;
    }
    /* a quantized weight is written dequantized, 64 rows at a time */
    float *rows = w->dt == YF_QMAT ? yf_malloc((size_t)(64 * w->shape[1]) * sizeof(float)) : NULL;
    for (int64_t k = 0; k < w->numel; k++) {
        int64_t K = w->shape[1], r = rows ? k % (64 * K) : 0;
        if (rows && r == 0) {
            int64_t n0 = k / K, n1 = n0 + 64 < w->shape[0] ? n0 + 64 : w->shape[0];
            yf_qmat_dequant_rows(w->data, n0, n1, rows);
        }
        float v = rows           ? rows[r]
                  : w->dt == YF_F32 ? ((const float *)w->data)[k]
                                    : yf_bf16_to_f32(((const uint16_t *)w->data)[k]);
        if (to == YF_F32) ((float *)buf)[k] = v;
        else if (to == YF_BF16) ((uint16_t *)buf)[k] = yf_f32_to_bf16(v);
        else ((uint16_t *)buf)[k] = yf_f32_to_f16(v);
    }
    free(rows);
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
        const yf_mw *w = ws[i] = yf_model_slot((yf_model *)m, &m->specs[i]);
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

