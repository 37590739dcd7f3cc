/* model/quantize: which of a Yuan model's tensors are quantized at load
 * (yf_model_opts.quant: the seven projections of every layer; with
 * quantize_head the LM head, which is the embedding when tied), quantizing
 * them as they are bound, and the same on a bare table for `yuanft merge`.
 * Norms, the localized filter's convolutions and biases, and an untied
 * embedding keep their dtype. */
#include "model/model_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/checkpoint.h"
#include "formats/safetensors.h"

/* Whether a model loaded with o quantizes the tensor of spec s (tied: whether
 * the embedding, which is also the head, is). */
bool yf_model_quantizes(const yf_model_opts *o, const yf_wspec *s, bool tied) {
    if (o->quant.type == YF_QT_NONE) return false;
    if (s->kind == YF_W_LINEAR) return true;
    return o->quantize_head && (s->kind == YF_W_LM_HEAD || (s->kind == YF_W_EMBED && tied));
}

/* The spec a [N, K] tensor gets: q4 with K not a multiple of its group falls
 * back to groups of 32, then to int8 (counted in *fallbacks). */
static yf_qspec spec_for(const yf_qspec *want, int64_t K, int *fallbacks) {
    yf_qspec s = *want;
    if (yf_qspec_fits(&s, K)) return s;
    (*fallbacks)++;
    s.group = 32;
    if (yf_qspec_fits(&s, K)) return s;
    return (yf_qspec){.type = YF_QT_INT8};
}

/* t's values as a [N, K] matrix the quantizer takes (f32 or bf16): t's own
 * data, or an f32 copy of an f16 tensor in *tmp (free it). */
static const void *quantizer_input(const yf_tensor *t, yf_dtype *dt, float **tmp) {
    *tmp = NULL;
    *dt = t->dtype;
    if (t->dtype == YF_F32 || t->dtype == YF_BF16) return t->data;
    *tmp = yf_malloc((size_t)yf_tensor_numel(t) * sizeof(float));
    yf_tensor_to_f32(t, *tmp);
    *dt = YF_F32;
    return *tmp;
}

/* A new yf_qmat (owned by tab) of t, a [N, K] weight; NULL with a message. */
static yf_qmat *quantize_tensor(yf_table *own, const yf_tensor *t, const yf_qspec *want, int *fallbacks,
                                const char *what) {
    int64_t N = t->shape[0], K = yf_tensor_numel(t) / N;
    yf_qspec spec = spec_for(want, K, fallbacks);
    yf_dtype dt;
    float *tmp;
    const void *src = quantizer_input(t, &dt, &tmp);
    yf_qmat *qm = yf_malloc(sizeof *qm);
    char name[256];
    snprintf(name, sizeof name, "%s: tensor %s", what, t->name);
    int rc = yf_qmat_quantize(qm, src, dt, N, K, &spec, name);
    free(tmp);
    if (rc) {
        free(qm);
        return NULL;
    }
    yf_table_own(own, qm->owned);
    yf_table_own(own, qm);
    return qm;
}

int yf_mw_quantize(yf_model *m, yf_mw *w, yf_tensor *t, const char *what) {
    yf_qmat *qm = quantize_tensor(&m->own, t, &m->opts.quant, &m->quant_fallbacks, what);
    if (!qm) return -1;
    if (m->quant_fallbacks == 1 && !m->quant_fallback_name) m->quant_fallback_name = w->name;
    /* the checkpoint's bytes are not read again: give the mapping's pages
     * back, and let the table show the tensor as the model uses it (what an
     * adapter's DoRA initialisation reads: yf_model_tensors) */
    yf_release_resident(t->data, t->nbytes);
    t->dtype = YF_QMAT;
    t->data = qm;
    t->nbytes = yf_qmat_bytes(qm);
    w->data = qm;
    w->dt = YF_QMAT;
    m->quant_bytes += t->nbytes;
    qm->int8_act = m->opts.int8_act;
    m->int8_act_weights += qm->int8_act;
    return 0;
}

void yf_model_quant_note(const yf_model *m) {
    if (m->opts.int8_act && m->int8_act_weights == 0)
        fprintf(stderr, "yuanft: note: int8 activations apply to quantized weights, and this model holds none: no "
                        "effect\n");
    if (m->quant_fallbacks == 0) return;
    char sb[64];
    fprintf(stderr,
            "yuanft: note: %s needs each quantized weight's input dimension a multiple of its group; %d weight(s) "
            "(the first: %s) use groups of 32 or int8 instead\n",
            yf_qspec_str(&m->opts.quant, sb, sizeof sb), m->quant_fallbacks, m->quant_fallback_name);
}

/* ---- on a bare table (merge) -------------------------------------------------- */

int yf_table_dequantized(const yf_config *cfg, yf_table *tab, const yf_model_opts *o) {
    yf_wspec *specs = NULL;
    int64_t ns = yf_weight_specs(cfg, &specs);
    int fallbacks = 0, rc = 0;
    for (int64_t i = 0; i < ns && rc == 0; i++) {
        if (!yf_model_quantizes(o, &specs[i], cfg->tie_word_embeddings)) continue;
        yf_tensor *t = yf_table_find(tab, specs[i].name);
        if (!t && specs[i].kind == YF_W_EMBED) t = yf_table_find(tab, "lm_head.weight");
        if (!t) continue; /* the merge names what is missing */
        if (t->dtype != YF_F32 && t->dtype != YF_BF16 && t->dtype != YF_F16) {
            rc = yf_errorf("merge: tensor %s has dtype %s; weights must be F32, BF16 or F16", t->name,
                           yf_dtype_name(t->dtype));
            break;
        }
        yf_table own;
        yf_table_init(&own);
        yf_qmat *qm = quantize_tensor(&own, t, &o->quant, &fallbacks, "merge");
        if (!qm) {
            yf_table_free(&own);
            rc = -1;
            break;
        }
        /* in t's own dtype, 64 rows at a time: the whole model in fp32 would
         * take twice a bf16 checkpoint's memory */
        void *deq = yf_aligned_alloc(t->nbytes);
        yf_mw view = {.data = qm, .dt = YF_QMAT, .numel = qm->N * qm->K, .ndim = 2, .shape = {qm->N, qm->K}};
        for (int64_t n0 = 0; n0 < qm->N; n0 += 64) {
            int64_t rows = qm->N - n0 < 64 ? qm->N - n0 : 64;
            yf_qmat part = *qm;
            part.N = rows;
            part.q = (char *)qm->q + n0 * (qm->type == YF_QT_INT8 ? qm->K : qm->K / 2);
            part.scale = (char *)qm->scale + n0 * (qm->type == YF_QT_INT8 ? 4 : 2 * (qm->K / qm->group));
            part.min = qm->min ? qm->min + n0 * (qm->K / qm->group) : NULL;
            view.data = &part;
            view.numel = rows * qm->K;
            view.shape[0] = rows;
            const void *src;
            char *dst = (char *)deq + (size_t)(n0 * qm->K) * yf_dtype_size(t->dtype);
            yf_mw_bytes(&view, t->dtype, dst, &src);
        }
        yf_table_free(&own);
        yf_table_own(tab, deq);
        t->data = deq;
    }
    free(specs);
    return rc;
}

/* ---- stored quantized: yuanft quantize's model directories --------------------
 * A quantized weight NAME is stored as NAME.qweight (int8: I8 [N, K]; q4:
 * U8 [N, K/2]), NAME.qscale (int8: F32 [N]; q4: F16 [N, K/G]) and, for q4
 * with minimums, NAME.qmin (F16 [N, K/G]); the file's metadata names the
 * scheme (docs/quantization.md). */

#define QFILE_VERSION "1"

static yf_tensor *find_part(const yf_table *tab, const char *name, const char *part) {
    char n[200];
    snprintf(n, sizeof n, "%s.%s", name, part);
    return yf_table_find(tab, n);
}

static bool shape_is(const yf_tensor *t, yf_dtype dt, int64_t a, int64_t b) {
    return t && t->dtype == dt && t->ndim == (b ? 2 : 1) && t->shape[0] == a && (!b || t->shape[1] == b);
}

static bool f16_all_finite(const yf_tensor *t) {
    const uint16_t *h = t->data;
    for (int64_t i = 0; i < yf_tensor_numel(t); i++)
        if ((h[i] & 0x7c00) == 0x7c00) return false;
    return true;
}

int yf_mw_bind_stored(yf_model *m, yf_mw *w, const yf_wspec *s, const char *what) {
    const yf_tensor *qt = find_part(&m->tab, s->name, "qweight"), *st = find_part(&m->tab, s->name, "qscale");
    const yf_tensor *mt = find_part(&m->tab, s->name, "qmin");
    if (!qt) return 1;
    if (s->kind != YF_W_LINEAR && s->kind != YF_W_LM_HEAD && !(s->kind == YF_W_EMBED && m->tied))
        return yf_errorf("%s: %s is stored quantized (.qweight), but yuanft quantizes only the projections and the "
                         "LM head: a damaged or foreign file; run yuanft quantize again", what, s->name);
    int64_t N = s->shape[0], K = 1;
    for (int d = 1; d < s->ndim; d++) K *= s->shape[d];
    yf_qmat qm = {.N = N, .K = K, .q = qt->data};
    bool ok, finite = true;
    if (qt->dtype == YF_I8) { /* int8: a scale per row, finite and >= 0 */
        qm.type = YF_QT_INT8, qm.group = K;
        ok = shape_is(qt, YF_I8, N, K) && shape_is(st, YF_F32, N, 0) && !mt;
        for (int64_t i = 0; ok && finite && i < N; i++)
            finite = ((const float *)st->data)[i] >= 0 && isfinite(((const float *)st->data)[i]);
    } else { /* q4: the group from the scales' shape */
        int64_t ng = st && st->ndim == 2 ? st->shape[1] : 0;
        qm.type = YF_QT_Q4, qm.group = ng > 0 && K % ng == 0 ? K / ng : 0;
        ok = (qm.group == 32 || qm.group == 64) && shape_is(qt, YF_U8, N, K / 2) && shape_is(st, YF_F16, N, ng) &&
             (!mt || shape_is(mt, YF_F16, N, ng));
        finite = ok && f16_all_finite(st) && (!mt || f16_all_finite(mt));
        qm.with_min = mt != NULL;
        qm.min = mt ? mt->data : NULL;
    }
    if (!ok)
        return yf_errorf("%s: the stored quantized weight %s (.qweight %s, .qscale %s%s) does not fit a [%lld, %lld] "
                         "weight in int8 or q4 with groups of 32 or 64: a damaged file; run yuanft quantize again",
                         what, s->name, yf_dtype_name(qt->dtype), st ? yf_dtype_name(st->dtype) : "missing",
                         mt ? ", .qmin" : "", (long long)N, (long long)K);
    if (!finite)
        return yf_errorf("%s: the stored quantized weight %s has scales%s that are not finite (or negative int8 "
                         "scales): a damaged file; run yuanft quantize again", what, s->name, mt ? " or minimums" : "");
    qm.scale = st->data;
    if (m->opts.quant.type != YF_QT_NONE && m->opts.quant.type != qm.type && s->kind == YF_W_LINEAR)
        return yf_errorf("%s: its weights are stored quantized to %s (yuanft quantize): load it without --quantize, "
                         "or quantize the original model to %s", what, yf_qtype_name(qm.type),
                         yf_qtype_name(m->opts.quant.type));
    yf_qmat *p = yf_malloc(sizeof *p);
    *p = qm;
    p->int8_act = m->opts.int8_act;
    m->int8_act_weights += p->int8_act;
    yf_table_own(&m->own, p);
    memset(w, 0, sizeof *w);
    w->name = s->name; /* the spec outlives the model's binding: m->specs */
    w->ndim = s->ndim;
    for (int d = 0; d < s->ndim; d++) w->shape[d] = s->shape[d];
    w->numel = N * K;
    w->data = p;
    w->dt = YF_QMAT;
    w->src_dt = YF_BF16; /* yf_model_stored_src_dt: the file's word */
    m->quant_bytes += yf_qmat_bytes(p);
    yf_table_add(&m->tab, s->name, YF_QMAT, s->ndim, s->shape, p)->nbytes = yf_qmat_bytes(p); /* for DoRA's init */
    return 0;
}

void yf_model_stored_src_dt(yf_model *m, yf_dtype dt) {
    for (int64_t i = 0; i < m->nspecs; i++)
        if (find_part(&m->tab, m->specs[i].name, "qweight")) yf_model_slot(m, &m->specs[i])->src_dt = dt;
    if (m->tied) m->head.src_dt = m->embed.src_dt;
}

bool yf_table_has_stored_quant(const yf_table *tab) {
    for (int i = 0; i < tab->n; i++) {
        size_t l = strlen(tab->t[i].name);
        if (l > 8 && !strcmp(tab->t[i].name + l - 8, ".qweight")) return true;
    }
    return false;
}

int yf_stored_quant_check(const char *dir, yf_dtype *src_dt) {
    char *path = NULL, ver[32] = "", dt[16] = "";
    int rc = yf_checkpoint_weights_path(dir, &path);
    int a = rc ? -1 : yf_st_metadata(path, "yuanft_quantization_version", ver, sizeof ver);
    int b = a < 0 ? -1 : yf_st_metadata(path, "yuanft_source_dtype", dt, sizeof dt);
    if (rc == 0 && a == 0)
        rc = yf_errorf("%s: has quantized tensors (.qweight) but no yuanft_quantization_version metadata: not a "
                       "file yuanft quantize wrote, or a damaged one", path);
    else if (rc == 0 && a > 0 && strcmp(ver, QFILE_VERSION) != 0)
        rc = yf_errorf("%s: quantized weights in layout version %s, but this yuanft reads version %s: run yuanft "
                       "quantize again from the original model", path, ver, QFILE_VERSION);
    else if (a < 0 || b < 0)
        rc = -1;
    *src_dt = YF_BF16;
    if (rc == 0 && b > 0 && yf_dtype_parse(dt, src_dt) != 0) *src_dt = YF_BF16;
    free(path);
    return rc;
}

typedef struct save_parts {
    const yf_mw **ws; /* [n]: the weight to convert, or NULL: a stored part at ts[i].data */
    const yf_tensor *ts;
} save_parts;

static int save_part(void *ctx, int64_t i, void *buf, const void **data) {
    const save_parts *c = ctx;
    if (!c->ws[i]) {
        *data = c->ts[i].data;
        return 0;
    }
    return yf_mw_bytes(c->ws[i], c->ts[i].dtype, buf, data);
}

int yf_model_save_quantized(const yf_model *m, const char *dir, const char *copy_from) {
    /* every spec's tensor in checkpoint order, a quantized one as its parts */
    int64_t cap = 3 * m->nspecs, n = 0;
    yf_tensor *ts = yf_calloc((size_t)cap, sizeof *ts);
    const void **src = yf_calloc((size_t)cap, sizeof *src); /* a part's bytes, or NULL: convert ws[i] */
    const yf_mw **ws = yf_calloc((size_t)cap, sizeof *ws);
    yf_table names;
    yf_table_init(&names);
    yf_dtype src_dt = YF_BF16;
    for (int64_t i = 0; i < m->nspecs; i++) {
        const yf_mw *w = yf_model_slot((yf_model *)m, &m->specs[i]);
        YF_CHECK(!m->opts.full_finetune);
        if (w->dt != YF_QMAT) {
            ts[n] = (yf_tensor){.name = (char *)w->name, .dtype = w->src_dt, .ndim = w->ndim};
            for (int d = 0; d < w->ndim; d++) ts[n].shape[d] = w->shape[d];
            ts[n].nbytes = (size_t)w->numel * yf_dtype_size(w->src_dt);
            ws[n++] = w;
            continue;
        }
        const yf_qmat *q = w->data;
        bool i8 = q->type == YF_QT_INT8;
        int64_t ng = q->K / q->group;
        src_dt = w->src_dt;
        const char *parts[3] = {"qweight", "qscale", "qmin"};
        for (int p = 0; p < (q->min ? 3 : 2); p++) {
            char nm[200];
            snprintf(nm, sizeof nm, "%s.%s", w->name, parts[p]);
            yf_tensor *t = yf_table_add(&names, nm, YF_U8, 0, NULL, NULL);
            if (p == 0) ts[n] = (yf_tensor){.dtype = i8 ? YF_I8 : YF_U8, .ndim = 2, .shape = {q->N, i8 ? q->K : q->K / 2}};
            else ts[n] = (yf_tensor){.dtype = i8 ? YF_F32 : YF_F16, .ndim = i8 ? 1 : 2, .shape = {q->N, ng}};
            ts[n].name = t->name;
            ts[n].nbytes = (size_t)yf_tensor_numel(&ts[n]) * yf_dtype_size(ts[n].dtype);
            src[n++] = p == 0 ? q->q : p == 1 ? q->scale : (const void *)q->min;
        }
    }
    for (int64_t i = 0; i < n; i++) ts[i].data = (void *)src[i];
    char group[16];
    snprintf(group, sizeof group, "%d", m->opts.quant.group ? m->opts.quant.group : 32);
    bool q4 = m->opts.quant.type == YF_QT_Q4;
    const char *meta[] = {"yuanft_quantization", yf_qtype_name(m->opts.quant.type),
                          "yuanft_quantization_version", QFILE_VERSION,
                          "yuanft_q4_group", q4 ? group : "none",
                          "yuanft_q4_min", q4 && m->opts.quant.with_min ? "true" : "false",
                          "yuanft_quantized_head", m->head.dt == YF_QMAT ? "true" : "false",
                          "yuanft_source_dtype", yf_dtype_name(src_dt), NULL};
    save_parts ctx = {ws, ts};
    int rc = yf_model_dir_write_meta(dir, &m->cfg, ts, n, save_part, &ctx, copy_from, meta);
    yf_table_free(&names);
    free(ts), free(src), free(ws);
    return rc;
}
