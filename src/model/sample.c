#include "model/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void yf_sampling_default(yf_sampling *s) {
    s->temperature = 0;
    s->top_k = 0;
    s->top_p = 1;
    s->repetition_penalty = 1;
}

int yf_sampling_check(const yf_sampling *s) {
    if (!(s->temperature >= 0) || isinf(s->temperature)) return yf_errorf("--temperature must be >= 0 (0 = greedy), got %g", s->temperature);
    if (s->top_k < 0) return yf_errorf("--top-k must be >= 0 (0 = off), got %lld", (long long)s->top_k);
    if (!(s->top_p > 0 && s->top_p <= 1)) return yf_errorf("--top-p must be in (0, 1], got %g", s->top_p);
    if (!(s->repetition_penalty > 0) || isinf(s->repetition_penalty))
        return yf_errorf("--repetition-penalty must be > 0 (1 = off), got %g", s->repetition_penalty);
    return 0;
}

typedef struct { float v; int64_t i; } cand;

static int cmp_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? 1 : -1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int64_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

void yf_sample_penalize(float *logits, int64_t V, const yf_sampling *s, const int64_t *history, int64_t nhist) {
    if (s->repetition_penalty != 1) {
        /* each distinct token once, as torch's gather/scatter does */
        for (int64_t h = 0; h < nhist; h++) {
            int64_t id = history[h];
            if (id < 0 || id >= V) continue;
            bool seen = false;
            for (int64_t j = 0; j < h && !seen; j++) seen = history[j] == id;
            if (seen) continue;
            float x = logits[id];
            logits[id] = x < 0 ? x * s->repetition_penalty : x / s->repetition_penalty;
        }
    }
}

int64_t yf_sample(float *logits, int64_t V, const yf_sampling *s, const int64_t *history, int64_t nhist,
                  yf_rng *rng) {
    yf_sample_penalize(logits, V, s, history, nhist);
    if (s->temperature == 0) return argmax(logits, V);

    for (int64_t i = 0; i < V; i++) logits[i] /= s->temperature;
    int64_t n = V;
    cand *c = yf_malloc((size_t)V * sizeof *c);
    for (int64_t i = 0; i < V; i++) c[i] = (cand){logits[i], i};
    qsort(c, (size_t)V, sizeof *c, cmp_desc);
    if (s->top_k > 0 && s->top_k < n) n = s->top_k;
    double mx = c[0].v, sum = 0;
    for (int64_t i = 0; i < n; i++) sum += exp((double)c[i].v - mx);
    if (s->top_p < 1) {
        /* keep the smallest prefix whose probability reaches top_p (at least one) */
        double cum = 0;
        int64_t keep = n;
        for (int64_t i = 0; i < n; i++) {
            cum += exp((double)c[i].v - mx) / sum;
            if (cum >= s->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0;
        for (int64_t i = 0; i < n; i++) sum += exp((double)c[i].v - mx);
    }
    double u = yf_rng_uniform(rng) * sum, acc = 0;
    int64_t pick = c[0].i; /* if rounding leaves u past the sum: the last token of non-zero weight */
    for (int64_t i = 0; i < n; i++) {
        double e = exp((double)c[i].v - mx);
        acc += e;
        if (e > 0) pick = c[i].i;
        if (u < acc) {
            pick = c[i].i;
            break;
        }
    }
    free(c);
    return pick;
}
