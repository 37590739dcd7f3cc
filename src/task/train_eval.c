/* train_eval: eval batches for the trainer (see train_eval.h). */
#include "task/train_eval.h"

#include <stdlib.h>
#include <string.h>

int yf_teval_loss(yf_teval *e, const int64_t *rows, int64_t n, double *loss, int64_t *ntok) {
    int64_t Tb = 1;
    for (int64_t k = 0; k < n; k++) Tb = e->len[rows[k]] > Tb ? e->len[rows[k]] : Tb;
    if (n * Tb > e->cap) {
        e->cap = n * Tb;
        e->bids = yf_realloc(e->bids, (size_t)e->cap * sizeof *e->bids);
        e->blab = yf_realloc(e->blab, (size_t)e->cap * sizeof *e->blab);
    }
    for (int64_t k = 0; k < n; k++) {
        memcpy(e->bids + k * Tb, e->ids + rows[k] * e->T, (size_t)Tb * sizeof(int64_t));
        memcpy(e->blab + k * Tb, e->labels + rows[k] * e->T, (size_t)Tb * sizeof(int64_t));
    }
    double sum = 0;
    *ntok = 0;
    if (yf_model_forward(e->model, e->lora, e->bids, e->blab, n, Tb, NULL, &sum, ntok)) return -1;
    *loss = *ntok > 0 ? sum / (double)*ntok : 0;
    return 0;
}

int yf_teval_counts(yf_teval *e, const int64_t *rows, int64_t n, double *counts) {
    if (!e->recs) return yf_errorf("evaluation: scores need the eval records (text data)");
    const char **in = yf_malloc((size_t)(n > 0 ? n : 1) * sizeof *in), **gold = yf_malloc((size_t)(n > 0 ? n : 1) * sizeof *gold);
    for (int64_t k = 0; k < n; k++) {
        if (rows[k] < 0 || (size_t)rows[k] >= e->recs->n) {
            free(in), free(gold);
            return yf_errorf("evaluation: record %lld is outside the %zu eval records", (long long)rows[k], e->recs->n);
        }
        in[k] = e->recs->r[rows[k]].input;
        gold[k] = e->recs->r[rows[k]].output;
    }
    e->x.model = e->model;
    e->x.lora = e->lora;
    e->x.progress = false;
    char **pred = NULL;
    yf_eval_result res;
    int rc = yf_extract_run(&e->x, in, (size_t)n, &pred);
    if (rc == 0) rc = yf_eval_score((const char *const *)pred, gold, (size_t)n, "eval data", &res);
    if (rc == 0) {
        for (int t = 0; t < YF_N_TYPES; t++) {
            counts[3 * t] += (double)res.per_type[t].tp;
            counts[3 * t + 1] += (double)res.per_type[t].fp;
            counts[3 * t + 2] += (double)res.per_type[t].fn;
        }
        counts[YF_TEVAL_OTHER] += (double)res.n_other;
        counts[YF_TEVAL_RECORDS] += (double)res.n_records;
        counts[YF_TEVAL_UNPARSABLE] += (double)res.n_unparsable;
        counts[YF_TEVAL_NOT_IN_INPUT] += (double)yf_eval_not_in_input((const char *const *)pred, in, (size_t)n);
    }
    if (pred) yf_strv_free(pred, (size_t)n);
    free(in);
    free(gold);
    return rc;
}

int yf_teval_metrics(const double *c, const char **names, double *values) {
    yf_eval_result r;
    yf_eval_init(&r);
    for (int t = 0; t < YF_N_TYPES; t++) {
        r.per_type[t].tp = (int64_t)c[3 * t];
        r.per_type[t].fp = (int64_t)c[3 * t + 1];
        r.per_type[t].fn = (int64_t)c[3 * t + 2];
    }
    r.n_other = (int64_t)c[YF_TEVAL_OTHER];
    yf_eval_finish(&r);
    names[0] = "f1", values[0] = r.micro.f1;
    names[1] = "precision", values[1] = r.micro.precision;
    names[2] = "recall", values[2] = r.micro.recall;
    return 3;
}

void yf_teval_free(yf_teval *e) {
    free(e->bids);
    free(e->blab);
    e->bids = e->blab = NULL;
    e->cap = 0;
    yf_cvocab_free(e->cvocab);
    e->cvocab = NULL;
    e->x.cvocab = NULL;
}
