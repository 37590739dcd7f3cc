/* sample: choosing the next token from logits, as transformers' generate()
 * does: repetition penalty, then (when sampling) temperature, top-k, top-p. */
#ifndef YF_SAMPLE_H
#define YF_SAMPLE_H

#include "base/util.h"

typedef struct yf_sampling {
    float temperature;        /* 0 = greedy (the recipe's default) */
    int64_t top_k;            /* 0 = off */
    float top_p;              /* 1 = off */
    float repetition_penalty; /* 1 = off; >1 discourages tokens already in the sequence */
} yf_sampling;

void yf_sampling_default(yf_sampling *s);
/* Returns 0 or an error naming the bad parameter. */
int yf_sampling_check(const yf_sampling *s);

/* The repetition penalty alone (what yf_sample applies first). */
void yf_sample_penalize(float *logits, int64_t V, const yf_sampling *s, const int64_t *history, int64_t nhist);

/* Picks a token from logits[V] (modified in place). history: the ids of the
 * sequence so far (prompt + generated), for the repetition penalty. */
int64_t yf_sample(float *logits, int64_t V, const yf_sampling *s, const int64_t *history, int64_t nhist,
                  yf_rng *rng);

#endif
