/* model/quantize: which of a Yuan model's tensors are quantized at load
 * (yf_model_opts.quant: the seven projections of every layer; with
 * quantize_head the LM head, which is the embedding when tied), quantizing
 * them as they are bound, and the same on a bare table for `yuanft merge`.
 * Norms, the localized filter's convolutions and biases, and an untied
 * embedding keep their dtype. */
#include "model/model_internal.h"

#include <stdlib.h>
#include <string.h>

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
    return 0;
}

void yf_model_quant_note(const yf_model *m) {
    if (m->quant_fallbacks == 0) return;
    char sb[64];
    fprintf(stderr,
            "yuanft: note: %s needs each quantized weight's input dimension a multiple of its group; %d weight(s) "
            "(the first: %s) use groups of 32 or int8 instead\n",
            yf_qspec_str(&m->opts.quant, sb, sizeof sb), m->quant_fallbacks, m->quant_fallback_name);
}

/* ---- on a bare table (merge) -------------------------------------------------- */

int yf_table_dequantized(const yf_config *cfg, yf_table *tab, const yf_model_opts *o, yf_dtype *orig) {
    yf_wspec *specs = NULL;
    int64_t ns = yf_weight_specs(cfg, &specs);
    int fallbacks = 0, rc = 0;
    for (int i = 0; i < tab->n; i++) orig[i] = tab->t[i].dtype;
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
        float *deq = yf_aligned_alloc((size_t)(qm->N * qm->K) * sizeof(float));
        yf_qmat_dequant_rows(qm, 0, qm->N, deq);
        yf_table_free(&own);
        yf_table_own(tab, deq);
        t->data = deq;
        t->dtype = YF_F32;
        t->nbytes = (size_t)yf_tensor_numel(t) * sizeof(float);
    }
    free(specs);
    return rc;
}
