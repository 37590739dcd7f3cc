/* train_eval: what `yuanft train --eval-data` measures with the weights being
 * trained, one eval batch at a time (the trainer's eval hooks, train/trainer.h,
 * call these and combine the batches over the ranks):
 *   - the loss of tokenised eval examples, forward only (no gradient, no
 *     dropout): the batch's mean token loss, as HF's evaluation loop takes it;
 *   - the extraction scores of eval records: each input is extracted with the
 *     current weights (task/extract.h, batched greedy decoding) and the answer
 *     scored against the record's gold answer (task/eval.h); the batch gives
 *     additive counts, so batches and ranks sum exactly.
 *
 *   yf_teval e = {.model = m, .lora = lo, .ids = ..., .N = N, .T = T, .len = len};
 *   e.recs = &records, e.x = extractor;          // for the F1 only
 *   yf_teval_loss(&e, rows, n, &loss, &ntok);
 *   double c[YF_TEVAL_COUNTS] = {0};
 *   yf_teval_counts(&e, rows, n, c);  ...  yf_teval_metrics(c, names, values);
 *   yf_teval_free(&e);                             // the scratch buffers, cvocab */
#ifndef YF_TRAIN_EVAL_H
#define YF_TRAIN_EVAL_H

#include "task/data.h"
#include "task/eval.h"
#include "task/extract.h"

typedef struct yf_teval {
    yf_model *model;
    yf_lora *lora;                /* or NULL */
    /* the loss: eval examples, padded [N, T]; len[N] the positions that matter */
    const int64_t *ids, *labels, *len;
    int64_t N, T;
    /* the scores (NULL recs: none): records i = example i, extracted by x
     * (x.model and x.lora are set from the fields above at each call) */
    const yf_records *recs;
    yf_extractor x;
    yf_cvocab *cvocab;            /* owned: x.cvocab when set (freed by yf_teval_free) */
    /* scratch */
    int64_t *bids, *blab;
    int64_t cap;
} yf_teval;

/* The mean token loss of rows[0..n) as one batch cut to its longest row;
 * *ntok its scored tokens (*loss = 0 when none). */
int yf_teval_loss(yf_teval *e, const int64_t *rows, int64_t n, double *loss, int64_t *ntok);

/* counts[] += what scoring the extraction of records rows[0..n) counts:
 * per type tp, fp, fn (counts[3 t + 0, 1, 2]), then the items outside the
 * types, the records, the unparsable answers and the predicted strings not
 * found in the input. */
enum {
    YF_TEVAL_OTHER = 3 * YF_N_TYPES,
    YF_TEVAL_RECORDS,
    YF_TEVAL_UNPARSABLE,
    YF_TEVAL_NOT_IN_INPUT,
    YF_TEVAL_COUNTS
};
int yf_teval_counts(yf_teval *e, const int64_t *rows, int64_t n, double *counts);

/* f1, precision, recall (micro, as yuanft eval computes them) from summed
 * counts; returns 3. */
int yf_teval_metrics(const double *counts, const char **names, double *values);

void yf_teval_free(yf_teval *e);

#endif
