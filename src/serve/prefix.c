#include "serve/prefix.h"

#include <pthread.h>
#include <stdlib.h>

struct yf_serve_prefix {
    yf_sched_prefix hook;
    yf_model *m;
    const yf_lora *const *adapters;
    int64_t nadapters;
    yf_prefix_cache *pc;
    pthread_mutex_t mu; /* the scheduler thread against yf_serve_prefix_get_stats */
};

static int64_t lookup(void *ctx, int32_t adapter, const int64_t *prompt, int64_t plen, yf_layer_state *slot,
                      int64_t *doc_start) {
    yf_serve_prefix *p = ctx;
    if (plen - 1 < YF_PREFIX_CACHE_MIN || adapter < -1 || adapter >= p->nadapters) return 0;
    const yf_lora *lo = adapter >= 0 ? p->adapters[adapter] : NULL;
    pthread_mutex_lock(&p->mu);
    yf_prefix_cache_set_tag(p->pc, adapter);
    /* a failed prefill here leaves nothing held: the scheduler's prefill reports it */
    int64_t k = yf_prefix_cache_add(p->pc, p->m, lo, prompt, plen - 1) == 0
                    ? yf_prefix_cache_load(p->pc, prompt, plen, plen - 1, slot, doc_start)
                    : 0;
    pthread_mutex_unlock(&p->mu);
    return k;
}

/* The prompts (short of their last token) of requests admitted together
 * made held, each adapter's in one batched prefill; what fails here is
 * left to lookup, which then computes alone and reports. */
static void prepare(void *ctx, int64_t n, const int32_t *adapter, const int64_t *const *prompt, const int64_t *plen) {
    yf_serve_prefix *p = ctx;
    const int64_t **ids = yf_malloc((size_t)n * sizeof *ids);
    int64_t *len = yf_malloc((size_t)n * sizeof *len);
    bool *done = yf_calloc((size_t)n, sizeof *done);
    pthread_mutex_lock(&p->mu);
    for (int64_t i = 0; i < n; i++) {
        if (done[i]) continue;
        int32_t a = adapter[i];
        int64_t k = 0;
        for (int64_t j = i; j < n; j++) {
            if (done[j] || adapter[j] != a) continue;
            done[j] = true;
            if (plen[j] - 1 >= YF_PREFIX_CACHE_MIN) ids[k] = prompt[j], len[k++] = plen[j] - 1;
        }
        if (k == 0 || a < -1 || a >= p->nadapters) continue;
        yf_prefix_cache_set_tag(p->pc, a);
        yf_prefix_cache_add_many(p->pc, p->m, a >= 0 ? p->adapters[a] : NULL, ids, len, k);
    }
    pthread_mutex_unlock(&p->mu);
    free(ids), free(len), free(done);
}

yf_serve_prefix *yf_serve_prefix_new(yf_model *m, const yf_lora *const *adapters, int64_t nadapters,
                                     size_t budget_bytes) {
    yf_serve_prefix *p = yf_calloc(1, sizeof *p);
    p->m = m;
    p->adapters = adapters;
    p->nadapters = nadapters;
    p->pc = yf_prefix_cache_new(m, budget_bytes);
    pthread_mutex_init(&p->mu, NULL);
    p->hook = (yf_sched_prefix){.ctx = p, .lookup = lookup, .prepare = prepare};
    return p;
}

void yf_serve_prefix_free(yf_serve_prefix *p) {
    if (!p) return;
    yf_prefix_cache_free(p->pc);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

const yf_sched_prefix *yf_serve_prefix_hook(yf_serve_prefix *p) { return &p->hook; }

void yf_serve_prefix_get_stats(yf_serve_prefix *p, yf_prefix_cache_stats *out) {
    pthread_mutex_lock(&p->mu);
    yf_prefix_cache_get_stats(p->pc, out);
    pthread_mutex_unlock(&p->mu);
}
