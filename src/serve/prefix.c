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

yf_serve_prefix *yf_serve_prefix_new(yf_model *m, const yf_lora *const *adapters, int64_t nadapters,
                                     size_t budget_bytes) {
    yf_serve_prefix *p = yf_calloc(1, sizeof *p);
    p->m = m;
    p->adapters = adapters;
    p->nadapters = nadapters;
    p->pc = yf_prefix_cache_new(m, budget_bytes);
    pthread_mutex_init(&p->mu, NULL);
    p->hook = (yf_sched_prefix){.ctx = p, .lookup = lookup};
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
