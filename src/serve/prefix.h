/* prefix: the prefix cache (model/prefix_cache.h) behind the scheduler's
 * yf_sched_prefix hook, so that a client sending the same template twice
 * pays its prefill once (docs/shared-prefix.md).
 *
 * Before a request's prefill, lookup makes the prompt short of its last
 * token held in the cache, computing only the positions past the longest
 * prefix of it already held (the template a previous request opened
 * with), and copies them into the request's slot; the scheduler then
 * prefills the last token. So every prompt is computed once, and its
 * common part with an earlier one not at all. Entries carry the adapter
 * they were computed with (one tag per adapter) and share one byte budget,
 * least recently used dropped first. Prompts shorter than
 * YF_PREFIX_CACHE_MIN + 1 tokens are prefilled as without the cache. The
 * tokens are those of the scheduler without it. */
#ifndef YF_SERVE_PREFIX_H
#define YF_SERVE_PREFIX_H

#include "model/prefix_cache.h"
#include "serve/sched.h"

typedef struct yf_serve_prefix yf_serve_prefix;

/* A store for model m and adapters[nadapters] (kept by the caller, as the
 * scheduler's) within budget_bytes. */
yf_serve_prefix *yf_serve_prefix_new(yf_model *m, const yf_lora *const *adapters, int64_t nadapters,
                                     size_t budget_bytes);
void yf_serve_prefix_free(yf_serve_prefix *p);
/* The hook to put in yf_sched_opts.prefix (valid while p lives). */
const yf_sched_prefix *yf_serve_prefix_hook(yf_serve_prefix *p);
/* The cache's counters (any thread). */
void yf_serve_prefix_get_stats(yf_serve_prefix *p, yf_prefix_cache_stats *out);

#endif
